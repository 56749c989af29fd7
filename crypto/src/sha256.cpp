#include "kaban/crypto/sha256.hpp"

#include "openssl_util.hpp"

namespace kaban::crypto {
namespace {

// Fetching is a lookup under a lock in OpenSSL 3; do it once, not per digest.
const EVP_MD* sha256_md() {
  static const detail::MdPtr md = [] {
    detail::MdPtr fetched(EVP_MD_fetch(nullptr, "SHA256", nullptr));
    if (!fetched)
      detail::throw_openssl("fetch SHA256");
    return fetched;
  }();
  return md.get();
}

}  // namespace

Digest sha256(ByteView data) {
  Digest out{};
  if (EVP_Digest(data.data(), data.size(), out.data(), nullptr, sha256_md(), nullptr) != 1) {
    detail::throw_openssl("SHA-256");
  }
  return out;
}

struct Sha256::Impl {
  detail::MdCtxPtr ctx;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx.reset(EVP_MD_CTX_new());
  if (!impl_->ctx || EVP_DigestInit_ex2(impl_->ctx.get(), sha256_md(), nullptr) != 1) {
    detail::throw_openssl("SHA-256 init");
  }
}

Sha256::Sha256(Sha256&& other) noexcept = default;
Sha256& Sha256::operator=(Sha256&& other) noexcept = default;
Sha256::~Sha256() = default;

void Sha256::update(ByteView data) {
  if (EVP_DigestUpdate(impl_->ctx.get(), data.data(), data.size()) != 1) {
    detail::throw_openssl("SHA-256 update");
  }
}

Digest Sha256::finish() {
  Digest out{};
  if (EVP_DigestFinal_ex(impl_->ctx.get(), out.data(), nullptr) != 1 ||
      EVP_DigestInit_ex2(impl_->ctx.get(), sha256_md(), nullptr) != 1) {
    detail::throw_openssl("SHA-256 final");
  }
  return out;
}

}  // namespace kaban::crypto
