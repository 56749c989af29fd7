// What the agent keeps about its enrollment and its place in the change feed.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kaban/agent/store.hpp"
#include "kaban/crypto/ed25519.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// Everything enrollment gave this device: where its server is, who it is, its TLS identity and
/// the keys it pins. Move-only, because of the private key; the key is kept only in the
/// encrypted store and in memory.
struct DeviceIdentity {
  std::string server_host;
  std::uint16_t server_port = 0;
  std::string device_id;  ///< SHA-256 of the device certificate's DER, hex
  std::string login;
  std::string user_name;
  std::string certificate_pem;                        ///< the device certificate
  crypto::SecretKey private_key_pem{std::size_t{0}};  ///< its private key, PEM text
  std::string ca_pem;                                 ///< the pinned server CA
  std::string signing_key;       ///< the content-signing Ed25519 public key, 64 hex digits
  std::string server_epoch;      ///< the server database this device enrolled with
  std::int64_t enrolled_at = 0;  ///< Unix seconds
};

/// Stores `identity` in one transaction. errc::already_enrolled if the store holds one already
/// (it is left unchanged); a store failure keeps its code (see store_error_code). Uses the
/// store's connection: call from the thread that uses `store`.
Result<void> save_identity(Store& store, const DeviceIdentity& identity);

/// Reads the identity back. errc::not_enrolled if there is none; a store failure keeps its code.
Result<DeviceIdentity> load_identity(Store& store);

/// A PKCS#10 request (PEM) for the key whose PKCS#8 PEM is `private_key_pem`: what enrollment
/// sends for a new key, and what a check-in sends to have the certificate of the same key
/// renewed. crypto::errc::invalid_encoding or invalid_key if the key does not parse. Any thread.
Result<std::string> certificate_request_pem(const crypto::SecretKey& private_key_pem);

/// Replaces the device certificate with a renewed one (a check-in's certificate_pem) after
/// checking that it certifies the stored private key and chains to the pinned CA at `now`.
/// The device_id stays what enrollment made it: the server names the device by it, not by the
/// certificate in use. errc::bad_response with `why` for a certificate that does not parse, is
/// for another key, or does not verify (the stored one is kept then); errc::not_enrolled; a
/// store failure keeps its code. Same thread rule as save_identity.
Result<void> replace_certificate(Store& store, std::string_view certificate_pem,
                                 std::chrono::system_clock::time_point now, std::string& why);

/// What the device tells the server about its PIN (the posture), never the PIN itself.
struct PinFacts {
  bool set = false;     ///< false for an empty PIN (a policy without pin_required allows one)
  int length = 0;       ///< in bytes
  bool simple = false;  ///< protocol::is_simple_pin
  friend bool operator==(const PinFacts&, const PinFacts&) = default;
};
/// The facts of `pin`.
PinFacts pin_facts_of(std::string_view pin);

/// Records the facts of the PIN now protecting the store, inside the encrypted store (never
/// beside it: the length of a PIN helps whoever guesses it). Enrollment and every PIN change
/// call it. A store failure keeps its code. Same thread rule as save_identity.
Result<void> save_pin_facts(Store& store, const PinFacts& facts);
/// The recorded facts; std::nullopt for a store made before PINs were recorded.
Result<std::optional<PinFacts>> load_pin_facts(Store& store);

/// The content-signing key of `identity`, parsed. crypto::errc::invalid_encoding or
/// crypto::errc::invalid_key if signing_key is not 64 hex digits.
Result<crypto::Ed25519PublicKey> content_signing_key(const DeviceIdentity& identity);

/// Where the agent stands in the change feed.
struct SyncState {
  std::string cursor;                 ///< opaque, "" = from the beginning
  std::int64_t last_sync_at = 0;      ///< Unix seconds of the last completed sync, 0 = never
  std::int64_t last_server_time = 0;  ///< the server's clock at that sync (Unix seconds)
  friend bool operator==(const SyncState&, const SyncState&) = default;
};

/// The stored sync state, or a default one (empty cursor, zeros) if none was ever saved.
/// A store failure keeps its code. Same thread rule as save_identity.
Result<SyncState> load_sync_state(Store& store);

/// Replaces the stored sync state (one statement, so atomic). A store failure keeps its code.
Result<void> save_sync_state(Store& store, const SyncState& state);

}  // namespace kaban::agent
