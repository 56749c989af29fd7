#include "kaban/crypto/scrypt.hpp"

#include <openssl/core_names.h>
#include <openssl/kdf.h>

#include "kaban/crypto/error.hpp"
#include "openssl_util.hpp"

namespace kaban::crypto {
namespace {
// Upper bound on scrypt's working memory (128 * N * r * p style bound OpenSSL enforces).
constexpr std::uint64_t kScryptMaxMemory = 1ull << 30;
}  // namespace

Result<SecretKey> scrypt(ByteView password, ByteView salt, const ScryptParams& params,
                         std::size_t length) {
  if (length == 0 || params.n < 2 || (params.n & (params.n - 1)) != 0 || params.r == 0 ||
      params.p == 0) {
    return errc::invalid_argument;
  }
  detail::KdfPtr kdf(EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_SCRYPT, nullptr));
  if (!kdf)
    detail::throw_openssl("fetch scrypt");
  detail::KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx)
    detail::throw_openssl("scrypt context");
  std::uint64_t n = params.n;
  std::uint32_t r = params.r;
  std::uint32_t p = params.p;
  std::uint64_t maxmem = kScryptMaxMemory + 4096;
  auto ptr = [](ByteView v) { return const_cast<std::uint8_t*>(v.data()); };
  OSSL_PARAM ossl_params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, ptr(password), password.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, ptr(salt), salt.size()),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
      OSSL_PARAM_construct_end()};
  SecretKey out(length);
  if (EVP_KDF_derive(ctx.get(), out.mutable_bytes().data(), length, ossl_params) != 1) {
    detail::take_openssl_error();
    return errc::invalid_argument;
  }
  return out;
}

}  // namespace kaban::crypto
