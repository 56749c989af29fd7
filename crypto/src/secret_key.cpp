#include "kaban/crypto/secret_key.hpp"

#include <algorithm>

#include <openssl/crypto.h>

#include "kaban/crypto/random.hpp"

namespace kaban::crypto {

SecretKey::SecretKey(std::size_t size)
    : data_(std::make_unique<std::uint8_t[]>(size)), size_(size) {}

SecretKey SecretKey::from_bytes(ByteView bytes) {
  SecretKey key(bytes.size());
  std::copy(bytes.begin(), bytes.end(), key.data_.get());
  return key;
}

SecretKey SecretKey::random(std::size_t size) {
  SecretKey key(size);
  random_fill(key.mutable_bytes());
  return key;
}

SecretKey::SecretKey(SecretKey&& other) noexcept
    : data_(std::move(other.data_)), size_(std::exchange(other.size_, 0)) {}

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this != &other) {
    wipe();
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecretKey::~SecretKey() {
  wipe();
}

void SecretKey::wipe() noexcept {
  if (data_)
    OPENSSL_cleanse(data_.get(), size_);
}

}  // namespace kaban::crypto
