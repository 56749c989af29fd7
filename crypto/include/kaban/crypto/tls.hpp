// TLS settings for Kaban's server and agent, applied to Boost.Asio SSL contexts. TLS 1.3, and 1.2
// with ECDHE and AEAD suites only; certificates from Kaban's private PKI (see x509.hpp).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/result.hpp"

namespace boost::asio::ssl {
class context;
}
struct ssl_st;  // OpenSSL's SSL, as returned by an Asio ssl::stream's native_handle()

namespace kaban::crypto {

/// What the server presents and whom it lets in.
struct TlsServerIdentity {
  std::string certificate_chain_pem;  ///< the server certificate, then the CA certificate
  SecretKey private_key_pem;          ///< PKCS#8 PEM of the server certificate's key
  std::string client_ca_pem;  ///< client certificates must chain to this CA (one or more PEM)
};

/// The server's own say over a client certificate that passed every check of the chain: true
/// lets the handshake go on, false fails it as revoked (X509_V_ERR_CERT_REVOKED, so
/// describe_verify_failure() says "revoked"). Gets the certificate's DER. Called from the
/// handshake on any thread, concurrently; it must be thread-safe. An exception fails the
/// handshake.
using ClientCertificateCheck = std::function<bool(ByteView der)>;

/// Configures a context made as ssl::context::tls_server: minimum TLS 1.2, TLS 1.2 ciphers
/// ECDHE with AES-GCM or ChaCha20-Poly1305 only (ECDSA or RSA), OpenSSL's default TLS 1.3
/// suites, the server's cipher preference, no compression, no renegotiation, the identity's
/// chain and key. A client certificate is requested (naming client_ca_pem's CAs) but not
/// required (enrollment has none); one that is sent must chain to client_ca_pem, and only to it
/// (no system CAs), be within its validity, be fit for client authentication, and pass
/// `check` (when given), or the handshake fails. Sessions resume from tickets only (no server
/// session cache), and a ticket whose client certificate `check` now refuses is not used: that
/// client goes through a full handshake, which fails. Fails with errc::invalid_encoding for a
/// chain or client_ca_pem that is empty or does not parse, and errc::invalid_key for a key that
/// does not parse or does not match the first certificate. Call before the context is used; the
/// context, which keeps `check`, is then safe to share between threads.
Result<void> configure_server_tls(boost::asio::ssl::context& ctx, const TlsServerIdentity& id,
                                  ClientCertificateCheck check = {});

/// How the agent decides to trust the server.
struct TlsClientTrust {
  /// Normal operation: the server chain must end at this CA (PEM).
  std::string ca_pem;
  /// Enrollment: no CA known yet, only its fingerprint from the enrollment line. The server's
  /// chain must contain a self-signed CA certificate with this SHA-256 (of its DER), and the
  /// server certificate must verify under it. Used only when ca_pem is empty.
  std::optional<Digest> pinned_ca_fingerprint;
};

/// A client certificate and its key, for mutual TLS.
struct TlsClientIdentity {
  std::string certificate_pem;
  SecretKey private_key_pem;
};

/// Configures a context made as ssl::context::tls_client: same versions and ciphers as the
/// server, peer verification by `trust` (never the system CAs), and the identity if given.
/// Host names are not checked unless expect_server_name() is called on each connection. Fails
/// with errc::invalid_argument if trust names neither a CA nor a fingerprint, and
/// errc::invalid_encoding or errc::invalid_key for bad PEM or a key that does not match the
/// certificate. Call before the context is used; it is then safe to share between threads.
Result<void> configure_client_tls(boost::asio::ssl::context& ctx, const TlsClientTrust& trust,
                                  const TlsClientIdentity* identity);

/// Per connection, before the handshake: sends `host` as SNI (unless it is an IP address) and
/// makes the handshake fail unless the server certificate names `host` (DNS name or IP address
/// in its subjectAltName; an IPv6 address without brackets). Applies in pinned mode too. Fails
/// with errc::invalid_argument for an empty host or one OpenSSL refuses.
Result<void> expect_server_name(ssl_st* ssl, const std::string& host);

/// After the handshake: the DER of the certificate the peer presented, empty if it sent none.
Bytes peer_certificate_der(ssl_st* ssl);

/// After a failed handshake: a short reason a person can act on, from OpenSSL's verify result
/// (e.g. "the server's certificate is not signed by the CA this device trusts: ..."), or "" if
/// the failure was not a certificate check. On the server's side of a connection it speaks of
/// the device's certificate. Same thread as the stream.
std::string describe_verify_failure(ssl_st* ssl);

/// After a TLS handshake or read failed with an Asio SSL error whose value is `ssl_error`
/// (OpenSSL's packed error code): true if it is the peer's alert refusing this side's
/// certificate (bad_certificate, certificate_revoked, certificate_expired, certificate_unknown,
/// unknown_ca, access_denied, certificate_required). Under TLS 1.3 a client learns this only at
/// its first read. Any thread.
bool is_certificate_refused_alert(unsigned long ssl_error) noexcept;

}  // namespace kaban::crypto
