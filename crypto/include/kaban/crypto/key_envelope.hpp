// The key envelope: the store's random data key, wrapped under a key derived from the PIN.
#pragma once

#include <filesystem>
#include <string_view>

#include "kaban/crypto/scrypt.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/result.hpp"

namespace kaban::crypto {

/// The format is in docs/store-format.md: version, scrypt parameters and salt in the clear (and
/// authenticated), then the data key sealed with AES-256-GCM under scrypt(PIN, salt).
/// All functions are safe to call from any thread on different paths; two writers on one path
/// must be serialised by the caller. Every write goes to a temporary file that is synced and
/// renamed into place, so a crash leaves the old envelope or the new one, never half of either.
class KeyEnvelope {
 public:
  /// Parameters for new envelopes: N=2^15, r=8, p=1 (about 32 MiB and 0.1 s here).
  static constexpr ScryptParams kDefaultParams{};

  /// Makes a random data key, writes its envelope at `path` (mode 0600) and returns the key.
  /// Fails with std::errc::file_exists if `path` exists, errc::io_error if it cannot be written.
  static Result<SecretKey> create(const std::filesystem::path& path, std::string_view pin,
                                  const ScryptParams& params = kDefaultParams);

  /// Unwraps the data key. errc::wrong_key for a wrong PIN; errc::damaged for an envelope that is
  /// not one (wrong size, unknown version, implausible parameters);
  /// std::errc::no_such_file_or_directory if there is none.
  static Result<SecretKey> open(const std::filesystem::path& path, std::string_view pin);

  /// Rewraps the same data key under `new_pin` (new salt); the store itself is not touched.
  /// errc::wrong_key if `old_pin` is wrong, and then nothing changes.
  static Result<void> change_pin(const std::filesystem::path& path, std::string_view old_pin,
                                 std::string_view new_pin,
                                 const ScryptParams& params = kDefaultParams);

  /// Crypto-shredding: overwrites the envelope with random bytes, syncs, and removes it. Without
  /// the envelope the data key, and so every file encrypted under it, is unrecoverable.
  /// Succeeds if there is no envelope.
  static Result<void> destroy(const std::filesystem::path& path);
};

}  // namespace kaban::crypto
