// Ed25519 signatures (RFC 8032, pure Ed25519: no pre-hash, no context).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/result.hpp"

namespace kaban::crypto {

inline constexpr std::size_t kEd25519SeedSize = 32;
inline constexpr std::size_t kEd25519PublicKeySize = 32;
inline constexpr std::size_t kEd25519SignatureSize = 64;

using Ed25519Signature = std::array<std::uint8_t, kEd25519SignatureSize>;

/// A public key as its 32 raw bytes. A plain value: copyable, comparable, thread-safe.
class Ed25519PublicKey {
 public:
  using Raw = std::array<std::uint8_t, kEd25519PublicKeySize>;

  /// Fails with errc::invalid_key unless `raw` is kEd25519PublicKeySize bytes. Bytes that do not
  /// encode a curve point are accepted here; no signature verifies under them.
  static Result<Ed25519PublicKey> from_bytes(ByteView raw);

  const Raw& bytes() const noexcept { return raw_; }

  /// Succeeds only if `signature` is a valid signature of `message` under this key; anything
  /// else, a signature of the wrong length included, is errc::invalid_signature.
  Result<void> verify(ByteView message, ByteView signature) const;

  friend bool operator==(const Ed25519PublicKey&, const Ed25519PublicKey&) = default;

 private:
  explicit Ed25519PublicKey(const Raw& raw) : raw_(raw) {}
  Raw raw_;
};

/// A private signing key. Move-only; the key material lives in OpenSSL and is wiped when the
/// object goes away. Const methods may be called from several threads at once. A moved-from
/// object may only be assigned or destroyed.
class Ed25519PrivateKey {
 public:
  /// A new key from the CSPRNG. Throws only if OpenSSL fails (a broken invariant).
  static Ed25519PrivateKey generate();
  /// The key whose RFC 8032 secret is `seed`. Fails with errc::invalid_key unless
  /// kEd25519SeedSize bytes.
  static Result<Ed25519PrivateKey> from_seed(ByteView seed);
  /// Parses an unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"), as written by to_pem(). Fails with
  /// errc::invalid_encoding if it does not parse and errc::invalid_key if it is another key type.
  static Result<Ed25519PrivateKey> from_pem(ByteView pem);

  Ed25519PrivateKey(Ed25519PrivateKey&& other) noexcept;
  Ed25519PrivateKey& operator=(Ed25519PrivateKey&& other) noexcept;
  Ed25519PrivateKey(const Ed25519PrivateKey&) = delete;
  Ed25519PrivateKey& operator=(const Ed25519PrivateKey&) = delete;
  ~Ed25519PrivateKey();

  /// The 32-byte seed, which is the whole secret.
  SecretKey seed() const;
  /// The key as unencrypted PKCS#8 PEM text, for a file only its owner can read. Returned as a
  /// SecretKey so the text is wiped when dropped.
  SecretKey to_pem() const;
  Ed25519PublicKey public_key() const;
  /// The deterministic RFC 8032 signature of `message`.
  Ed25519Signature sign(ByteView message) const;

 private:
  struct Impl;
  explicit Ed25519PrivateKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kaban::crypto
