// scrypt password-based key derivation (RFC 7914).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/secret_key.hpp"

namespace kaban::crypto {

/// Cost parameters. N must be a power of two greater than 1; memory use is about 128 * N * r.
struct ScryptParams {
  std::uint64_t n = 1u << 15;
  std::uint32_t r = 8;
  std::uint32_t p = 1;
};

/// Derives `length` bytes from `password` and `salt`. Fails with errc::invalid_argument for
/// parameters scrypt rejects (N not a power of two, memory above 1 GiB). Thread-safe.
Result<SecretKey> scrypt(ByteView password, ByteView salt, const ScryptParams& params,
                         std::size_t length);

}  // namespace kaban::crypto
