// The CSPRNG (OpenSSL's DRBG, seeded by the operating system).
#pragma once

#include <cstddef>

#include "kaban/crypto/bytes.hpp"

namespace kaban::crypto {

/// Fills `out` with cryptographically secure random bytes. Thread-safe. Throws std::runtime_error
/// if the generator cannot be seeded (nothing sensible can continue without it).
void random_fill(MutableByteView out);

/// `size` random bytes.
Bytes random_bytes(std::size_t size);

}  // namespace kaban::crypto
