// HMAC-SHA256 and HKDF-SHA256 (RFC 2104, RFC 5869).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/secret_key.hpp"

namespace kaban::crypto {

inline constexpr std::size_t kHmacSha256Size = 32;
using Mac = std::array<std::uint8_t, kHmacSha256Size>;

/// HMAC-SHA256 of `data` under `key`. Thread-safe.
Mac hmac_sha256(ByteView key, ByteView data);

/// HKDF-SHA256 (extract then expand) of `ikm` into `length` bytes. `length` must be at most
/// 255 * 32; anything larger is errc::invalid_argument. Thread-safe.
Result<SecretKey> hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, std::size_t length);

}  // namespace kaban::crypto
