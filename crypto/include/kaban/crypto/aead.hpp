// AES-256-GCM authenticated encryption (NIST SP 800-38D), 96-bit nonces and 128-bit tags only.
#pragma once

#include <cstddef>
#include <memory>
#include <system_error>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/result.hpp"

namespace kaban::crypto {

inline constexpr std::size_t kAes256KeySize = 32;
inline constexpr std::size_t kGcmNonceSize = 12;
inline constexpr std::size_t kGcmTagSize = 16;

/// Encrypts `plaintext` and authenticates it together with `aad`; returns ciphertext || tag
/// (plaintext.size() + kGcmTagSize bytes). The nonce must never repeat under the same key.
/// Thread-safe. A key that is not kAes256KeySize bytes, a nonce that is not kGcmNonceSize bytes
/// or an input above 2 GiB is a caller bug: throws std::invalid_argument.
Bytes aes256gcm_seal(const SecretKey& key, ByteView nonce, ByteView aad, ByteView plaintext);

/// Reverses aes256gcm_seal. Fails with errc::authentication_failed if the tag does not match
/// (wrong key, nonce or aad, or altered data) or the input is shorter than a tag, and with
/// errc::invalid_argument for a key or nonce of the wrong size. Never returns unauthenticated
/// plaintext. Thread-safe.
Result<Bytes> aes256gcm_open(const SecretKey& key, ByteView nonce, ByteView aad,
                             ByteView ciphertext_and_tag);

/// AES-256-GCM under one key, for many messages: the key schedule is computed once, and seal and
/// open only set the nonce (no allocation per call). Move-only. One object must not be used by
/// two threads at once; give each thread its own. A moved-from object may only be assigned or
/// destroyed.
class Aes256Gcm {
 public:
  /// Throws std::invalid_argument if `key` is not kAes256KeySize bytes.
  explicit Aes256Gcm(const SecretKey& key);
  Aes256Gcm(Aes256Gcm&& other) noexcept;
  Aes256Gcm& operator=(Aes256Gcm&& other) noexcept;
  Aes256Gcm(const Aes256Gcm&) = delete;
  Aes256Gcm& operator=(const Aes256Gcm&) = delete;
  ~Aes256Gcm();

  /// Encrypts `plaintext` into `out` (same size; it may be the very same buffer, but must not
  /// otherwise overlap) and writes the kGcmTagSize-byte tag to `tag`. The nonce must never
  /// repeat under this key. Wrong sizes, or an input above 2 GiB, throw std::invalid_argument.
  void seal(ByteView nonce, ByteView aad, ByteView plaintext, MutableByteView out,
            MutableByteView tag);

  /// Decrypts `ciphertext` into `out` (same size; same buffer allowed, as for seal) if `tag`
  /// authenticates it with `aad`. Returns errc::authentication_failed for a tag mismatch and
  /// errc::invalid_argument for wrong sizes. On any failure `out` is zero-filled, so no
  /// unauthenticated plaintext is ever left in it.
  std::error_code open(ByteView nonce, ByteView aad, ByteView ciphertext, ByteView tag,
                       MutableByteView out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kaban::crypto
