#include "kaban/crypto/aead.hpp"

#include <climits>
#include <functional>
#include <stdexcept>

#include <openssl/crypto.h>

#include "kaban/crypto/error.hpp"
#include "openssl_util.hpp"

namespace kaban::crypto {
namespace {

// EVP lengths are ints.
constexpr std::size_t kMaxGcmInput = INT_MAX;

enum class Direction { seal, open };

const EVP_CIPHER* aes256gcm_cipher() {
  static const detail::CipherPtr cipher = [] {
    detail::CipherPtr fetched(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
    if (!fetched)
      detail::throw_openssl("fetch AES-256-GCM");
    return fetched;
  }();
  return cipher.get();
}

// The expensive part (key schedule, GHASH tables) happens here, once per key and direction.
detail::CipherCtxPtr keyed_context(ByteView key, Direction direction) {
  detail::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  const int enc = direction == Direction::seal ? 1 : 0;
  if (!ctx ||
      EVP_CipherInit_ex2(ctx.get(), aes256gcm_cipher(), key.data(), nullptr, enc, nullptr) != 1) {
    detail::throw_openssl("AES-256-GCM key setup");
  }
  return ctx;
}

bool fits(ByteView aad, ByteView text) {
  return aad.size() <= kMaxGcmInput && text.size() <= kMaxGcmInput;
}

// In-place is fine for EVP; a shifted overlap would read bytes already overwritten.
bool overlaps_partially(ByteView in, MutableByteView out) {
  if (in.empty() || out.empty() || in.data() == out.data())
    return false;
  std::less<const std::uint8_t*> before;
  return before(in.data(), out.data() + out.size()) && before(out.data(), in.data() + in.size());
}

// Sizes were checked by the caller. Re-initialising with only a nonce keeps the key schedule.
void seal_with(EVP_CIPHER_CTX* ctx, ByteView nonce, ByteView aad, ByteView plaintext,
               std::uint8_t* out, std::uint8_t* tag) {
  int len = 0;
  if (EVP_EncryptInit_ex2(ctx, nullptr, nullptr, nonce.data(), nullptr) != 1 ||
      (!aad.empty() &&
       EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      (!plaintext.empty() && EVP_EncryptUpdate(ctx, out, &len, plaintext.data(),
                                               static_cast<int>(plaintext.size())) != 1) ||
      EVP_EncryptFinal_ex(ctx, out + plaintext.size(), &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kGcmTagSize), tag) != 1) {
    detail::throw_openssl("AES-256-GCM seal");
  }
}

// True if the tag verified. `out` then holds the plaintext; otherwise the caller wipes it.
bool open_with(EVP_CIPHER_CTX* ctx, ByteView nonce, ByteView aad, ByteView ciphertext, ByteView tag,
               std::uint8_t* out) {
  int len = 0;
  // EVP_CTRL_AEAD_SET_TAG takes a non-const pointer but only copies from it.
  auto* tag_bytes = const_cast<std::uint8_t*>(tag.data());
  if (EVP_DecryptInit_ex2(ctx, nullptr, nullptr, nonce.data(), nullptr) != 1 ||
      (!aad.empty() &&
       EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      (!ciphertext.empty() && EVP_DecryptUpdate(ctx, out, &len, ciphertext.data(),
                                                static_cast<int>(ciphertext.size())) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kGcmTagSize), tag_bytes) !=
          1) {
    detail::throw_openssl("AES-256-GCM open");
  }
  if (EVP_DecryptFinal_ex(ctx, out + ciphertext.size(), &len) != 1) {
    ERR_clear_error();
    return false;
  }
  return true;
}

void wipe(MutableByteView out) noexcept {
  if (!out.empty())
    OPENSSL_cleanse(out.data(), out.size());
}

}  // namespace

Bytes aes256gcm_seal(const SecretKey& key, ByteView nonce, ByteView aad, ByteView plaintext) {
  if (key.size() != kAes256KeySize || nonce.size() != kGcmNonceSize || !fits(aad, plaintext)) {
    throw std::invalid_argument("aes256gcm_seal: wrong key or nonce size, or input too large");
  }
  Bytes out(plaintext.size() + kGcmTagSize);
  auto ctx = keyed_context(key.bytes(), Direction::seal);
  seal_with(ctx.get(), nonce, aad, plaintext, out.data(), out.data() + plaintext.size());
  return out;
}

Result<Bytes> aes256gcm_open(const SecretKey& key, ByteView nonce, ByteView aad,
                             ByteView ciphertext_and_tag) {
  if (key.size() != kAes256KeySize || nonce.size() != kGcmNonceSize)
    return errc::invalid_argument;
  if (ciphertext_and_tag.size() < kGcmTagSize)
    return errc::authentication_failed;
  const auto ciphertext = ciphertext_and_tag.first(ciphertext_and_tag.size() - kGcmTagSize);
  const auto tag = ciphertext_and_tag.last(kGcmTagSize);
  if (!fits(aad, ciphertext))
    return errc::invalid_argument;
  Bytes out(ciphertext.size());
  auto ctx = keyed_context(key.bytes(), Direction::open);
  if (!open_with(ctx.get(), nonce, aad, ciphertext, tag, out.data())) {
    wipe(out);
    return errc::authentication_failed;
  }
  return out;
}

struct Aes256Gcm::Impl {
  detail::CipherCtxPtr seal_ctx;
  detail::CipherCtxPtr open_ctx;
};

Aes256Gcm::Aes256Gcm(const SecretKey& key) {
  if (key.size() != kAes256KeySize)
    throw std::invalid_argument("Aes256Gcm: wrong key size");
  impl_ = std::make_unique<Impl>(Impl{keyed_context(key.bytes(), Direction::seal),
                                      keyed_context(key.bytes(), Direction::open)});
}

Aes256Gcm::Aes256Gcm(Aes256Gcm&& other) noexcept = default;
Aes256Gcm& Aes256Gcm::operator=(Aes256Gcm&& other) noexcept = default;
Aes256Gcm::~Aes256Gcm() = default;

void Aes256Gcm::seal(ByteView nonce, ByteView aad, ByteView plaintext, MutableByteView out,
                     MutableByteView tag) {
  if (nonce.size() != kGcmNonceSize || out.size() != plaintext.size() ||
      tag.size() != kGcmTagSize || !fits(aad, plaintext) || overlaps_partially(plaintext, out)) {
    throw std::invalid_argument("Aes256Gcm::seal: bad nonce, output or tag buffer");
  }
  seal_with(impl_->seal_ctx.get(), nonce, aad, plaintext, out.data(), tag.data());
}

std::error_code Aes256Gcm::open(ByteView nonce, ByteView aad, ByteView ciphertext, ByteView tag,
                                MutableByteView out) {
  if (nonce.size() != kGcmNonceSize || out.size() != ciphertext.size() ||
      tag.size() != kGcmTagSize || !fits(aad, ciphertext) || overlaps_partially(ciphertext, out)) {
    wipe(out);
    return errc::invalid_argument;
  }
  if (!open_with(impl_->open_ctx.get(), nonce, aad, ciphertext, tag, out.data())) {
    wipe(out);
    return errc::authentication_failed;
  }
  return {};
}

}  // namespace kaban::crypto
