// Byte buffers and their hex form.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/result.hpp"

namespace kaban::crypto {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
using MutableByteView = std::span<std::uint8_t>;

/// Views the characters of a string as bytes (no copy).
inline ByteView as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

/// Lower-case hex of `data`.
std::string to_hex(ByteView data);

/// Parses hex (either case). Fails with errc::invalid_encoding on an odd length or a non-hex digit.
Result<Bytes> from_hex(std::string_view hex);

/// Compares two buffers in time that depends only on their length.
bool constant_time_equal(ByteView a, ByteView b) noexcept;

}  // namespace kaban::crypto

namespace kaban::crypto {

/// Overwrites `data` with zeros in a way the compiler may not elide (OPENSSL_cleanse).
void secure_wipe(MutableByteView data) noexcept;

/// secure_wipe over a string's characters (for URIs or PINs that held key material).
void secure_wipe(std::string& s) noexcept;

}  // namespace kaban::crypto
