#include "kaban/crypto/ed25519.hpp"

#include <algorithm>

#include "kaban/crypto/error.hpp"
#include "openssl_util.hpp"
#include "private_key_pem.hpp"

namespace kaban::crypto {
namespace {
constexpr const char* kAlgorithm = "ED25519";
}  // namespace

Result<Ed25519PublicKey> Ed25519PublicKey::from_bytes(ByteView raw) {
  if (raw.size() != kEd25519PublicKeySize)
    return errc::invalid_key;
  Raw copy{};
  std::copy(raw.begin(), raw.end(), copy.begin());
  return Ed25519PublicKey(copy);
}

Result<void> Ed25519PublicKey::verify(ByteView message, ByteView signature) const {
  if (signature.size() != kEd25519SignatureSize)
    return errc::invalid_signature;
  detail::PkeyPtr pkey(
      EVP_PKEY_new_raw_public_key_ex(nullptr, kAlgorithm, nullptr, raw_.data(), raw_.size()));
  if (!pkey) {
    // Bytes OpenSSL will not take as a key verify nothing.
    ERR_clear_error();
    return errc::invalid_signature;
  }
  detail::MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, pkey.get(),
                                      nullptr) != 1) {
    detail::throw_openssl("Ed25519 verify init");
  }
  if (EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                       message.size()) != 1) {
    ERR_clear_error();
    return errc::invalid_signature;
  }
  return ok();
}

struct Ed25519PrivateKey::Impl {
  detail::PkeyPtr pkey;
};

Ed25519PrivateKey::Ed25519PrivateKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Ed25519PrivateKey::Ed25519PrivateKey(Ed25519PrivateKey&& other) noexcept = default;
Ed25519PrivateKey& Ed25519PrivateKey::operator=(Ed25519PrivateKey&& other) noexcept = default;
Ed25519PrivateKey::~Ed25519PrivateKey() = default;

Ed25519PrivateKey Ed25519PrivateKey::generate() {
  detail::PkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, kAlgorithm));
  if (!pkey)
    detail::throw_openssl("Ed25519 keygen");
  return Ed25519PrivateKey(std::make_unique<Impl>(Impl{std::move(pkey)}));
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_seed(ByteView seed) {
  if (seed.size() != kEd25519SeedSize)
    return errc::invalid_key;
  detail::PkeyPtr pkey(
      EVP_PKEY_new_raw_private_key_ex(nullptr, kAlgorithm, nullptr, seed.data(), seed.size()));
  if (!pkey)
    detail::throw_openssl("Ed25519 from seed");
  return Ed25519PrivateKey(std::make_unique<Impl>(Impl{std::move(pkey)}));
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_pem(ByteView pem) {
  KABAN_TRY(pkey, detail::read_private_key_pem(pem));
  if (EVP_PKEY_is_a(pkey.get(), kAlgorithm) != 1)
    return errc::invalid_key;
  return Ed25519PrivateKey(std::make_unique<Impl>(Impl{std::move(pkey)}));
}

SecretKey Ed25519PrivateKey::seed() const {
  SecretKey out(kEd25519SeedSize);
  std::size_t size = out.size();
  if (EVP_PKEY_get_raw_private_key(impl_->pkey.get(), out.mutable_bytes().data(), &size) != 1 ||
      size != kEd25519SeedSize) {
    detail::throw_openssl("Ed25519 seed");
  }
  return out;
}

SecretKey Ed25519PrivateKey::to_pem() const {
  return detail::write_private_key_pem(impl_->pkey.get());
}

Ed25519PublicKey Ed25519PrivateKey::public_key() const {
  Ed25519PublicKey::Raw raw{};
  std::size_t size = raw.size();
  if (EVP_PKEY_get_raw_public_key(impl_->pkey.get(), raw.data(), &size) != 1 ||
      size != raw.size()) {
    detail::throw_openssl("Ed25519 public key");
  }
  return Ed25519PublicKey::from_bytes(raw).value();
}

Ed25519Signature Ed25519PrivateKey::sign(ByteView message) const {
  Ed25519Signature signature{};
  std::size_t size = signature.size();
  detail::MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx ||
      EVP_DigestSignInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, impl_->pkey.get(),
                            nullptr) != 1 ||
      EVP_DigestSign(ctx.get(), signature.data(), &size, message.data(), message.size()) != 1 ||
      size != signature.size()) {
    detail::throw_openssl("Ed25519 sign");
  }
  return signature;
}

}  // namespace kaban::crypto
