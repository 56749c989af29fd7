// The sync server's data directory: its keys, certificates, database and content chunks.
//
//   DIR/            0700
//     server.db     (+ -wal, -shm) the database, see database.hpp
//     ca.pem        the CA that signs the server's and the devices' certificates
//     ca.key        0600, its P-256 key (PKCS#8 PEM)
//     tls.pem       the server certificate, then the CA certificate
//     tls.key       0600, the server certificate's key
//     signing.key   0600, the Ed25519 key that signs course manifests (PKCS#8 PEM)
//     chunks/ab/<64 hex>  content chunks by SHA-256
//     tmp/          0700, made on first use: one scorm-<16 hex> folder per running
//                   `course import-scorm`, removed when it ends (one left by a killed import
//                   can be deleted when no import runs)
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "kaban/crypto/ed25519.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/crypto/tls.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/result.hpp"

namespace kaban::server {

inline constexpr const char* kCaCertificateFile = "ca.pem";
inline constexpr const char* kCaKeyFile = "ca.key";
inline constexpr const char* kTlsChainFile = "tls.pem";
inline constexpr const char* kTlsKeyFile = "tls.key";
inline constexpr const char* kSigningKeyFile = "signing.key";
inline constexpr const char* kChunksDir = "chunks";
/// Bytes of randomness in a server epoch (shown as twice as many hex digits).
inline constexpr std::size_t kServerEpochSize = 16;
/// The server_meta key that holds the epoch.
inline constexpr const char* kServerEpochKey = "server_epoch";

/// What `kaban-server init` makes.
struct InitOptions {
  /// Names the server certificate is valid for: those that parse as IP addresses become IP
  /// subjectAltNames, the others DNS names. The first is also the common name. At least one.
  std::vector<std::string> names{"localhost", "127.0.0.1"};
  std::chrono::seconds ca_validity = std::chrono::years(10);
  std::chrono::seconds server_certificate_validity = std::chrono::years(2);
  std::string ca_name = "Kaban server CA";
};

/// Creates a data directory at `dir` (mode 0700): a P-256 CA, a server TLS certificate for
/// options.names signed by it, an Ed25519 signing key, and the database with a random server
/// epoch. Keys are written 0600 and synced. Fails with errc::data_dir_exists, touching nothing,
/// if `dir` exists and is not empty; with the crypto error if a name or validity is refused
/// (nothing is left behind); errc::storage_failed or the OS error if a file cannot be written.
/// Call from one thread; no server may be using `dir`.
Result<void> init_data_dir(const std::filesystem::path& dir, const InitOptions& options);

/// Everything the server needs from its data directory to speak TLS, issue device
/// certificates and sign manifests. Move-only (it holds private keys); const methods may be
/// called from several threads at once.
struct ServerIdentity {
  crypto::Certificate ca_certificate;
  crypto::EcPrivateKey ca_key;
  std::string tls_chain_pem;      ///< server certificate, then CA certificate
  crypto::SecretKey tls_key_pem;  ///< PKCS#8 PEM of the server certificate's key
  crypto::Ed25519PrivateKey signing_key;
  std::string signing_public_key;  ///< the signing key's 32 raw bytes as 64 hex digits
  std::string server_epoch;        ///< 32 hex digits; names this database for change cursors
  std::string ca_fingerprint;      ///< SHA-256 of the CA certificate's DER, 64 hex digits

  /// The CA certificate as PEM.
  std::string ca_pem() const;
  /// What crypto::configure_server_tls needs: the chain, a copy of the key, and the CA as the
  /// issuer devices' certificates must chain to.
  crypto::TlsServerIdentity tls_identity() const;
};

/// Reads the identity of the data directory at `dir`. Fails with errc::no_data_dir if `dir`
/// holds no data directory, errc::data_dir_damaged if a key or certificate is missing or does
/// not parse (or the CA key is not the CA's), and database errors from open_database().
/// Thread-safe (opens its own database connection).
Result<ServerIdentity> load_identity(const std::filesystem::path& dir);

}  // namespace kaban::server
