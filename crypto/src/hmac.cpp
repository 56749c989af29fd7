#include "kaban/crypto/hmac.hpp"

#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include "kaban/crypto/error.hpp"
#include "openssl_util.hpp"

namespace kaban::crypto {

Mac hmac_sha256(ByteView key, ByteView data) {
  Mac out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
           out.data(), &len) == nullptr ||
      len != out.size()) {
    detail::throw_openssl("HMAC-SHA256");
  }
  return out;
}

Result<SecretKey> hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, std::size_t length) {
  if (length == 0 || length > 255 * kHmacSha256Size)
    return errc::invalid_argument;
  detail::KdfPtr kdf(EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr));
  if (!kdf)
    detail::throw_openssl("fetch HKDF");
  detail::KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx)
    detail::throw_openssl("HKDF context");
  // OpenSSL's params take non-const pointers but do not write through them.
  auto ptr = [](ByteView v) { return const_cast<std::uint8_t*>(v.data()); };
  char digest[] = "SHA256";
  // An empty salt or info is left out rather than passed empty, which OpenSSL rejects; HKDF
  // then uses a zero salt, as RFC 5869 specifies.
  OSSL_PARAM params[5];
  OSSL_PARAM* p = params;
  *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ptr(ikm), ikm.size());
  if (!salt.empty()) {
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, ptr(salt), salt.size());
  }
  if (!info.empty()) {
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, ptr(info), info.size());
  }
  *p = OSSL_PARAM_construct_end();
  SecretKey out(length);
  if (EVP_KDF_derive(ctx.get(), out.mutable_bytes().data(), length, params) != 1) {
    detail::take_openssl_error();
    return errc::invalid_argument;
  }
  return out;
}

}  // namespace kaban::crypto
