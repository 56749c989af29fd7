// SecretKey: key material that is never copied and is wiped when it goes away.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kaban/crypto/bytes.hpp"

namespace kaban::crypto {

/// Owns secret bytes on the heap. Move-only; the bytes are cleansed (OPENSSL_cleanse) on
/// destruction and on move-assignment. Not thread-safe for concurrent mutation.
class SecretKey {
 public:
  /// A key of `size` zero bytes, to be filled through mutable_bytes().
  explicit SecretKey(std::size_t size);
  /// Copies `bytes` into a new key; the caller remains responsible for wiping its own copy.
  static SecretKey from_bytes(ByteView bytes);
  /// `size` bytes from the CSPRNG.
  static SecretKey random(std::size_t size);

  SecretKey(SecretKey&& other) noexcept;
  SecretKey& operator=(SecretKey&& other) noexcept;
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  ~SecretKey();

  ByteView bytes() const noexcept { return {data_.get(), size_}; }
  MutableByteView mutable_bytes() noexcept { return {data_.get(), size_}; }
  std::size_t size() const noexcept { return size_; }

 private:
  void wipe() noexcept;

  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t size_ = 0;
};

}  // namespace kaban::crypto
