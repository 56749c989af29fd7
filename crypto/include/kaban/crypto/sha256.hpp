// SHA-256 (FIPS 180-4), in one call or over a stream of pieces.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kaban/crypto/bytes.hpp"

namespace kaban::crypto {

inline constexpr std::size_t kSha256Size = 32;
using Digest = std::array<std::uint8_t, kSha256Size>;

/// SHA-256 of `data`. Thread-safe. Throws only if OpenSSL cannot allocate (a broken invariant).
Digest sha256(ByteView data);

/// SHA-256 of a message fed in pieces: update() any number of times, then finish(), which also
/// resets the object for the next message. Move-only; an object is used by one thread at a time
/// (distinct objects are independent). A moved-from object may only be assigned or destroyed.
/// Throws only if OpenSSL cannot allocate.
class Sha256 {
 public:
  Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  ~Sha256();

  void update(ByteView data);
  Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kaban::crypto
