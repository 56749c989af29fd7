// Known-answer vectors for the crypto tests, read from tests/data/kat/*.json.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "kaban/crypto/bytes.hpp"

namespace kaban::crypto::test {

/// The "vectors" array of tests/data/kat/`file`. Throws if the file is missing, malformed or
/// holds no vectors, so a lost file fails the test instead of passing it vacuously.
nlohmann::json load_vectors(std::string_view file);

/// Bytes from hex written in a vector file; throws on malformed hex.
Bytes hex(std::string_view text);

/// The bytes of an ASCII string field.
Bytes ascii(std::string_view text);

}  // namespace kaban::crypto::test
