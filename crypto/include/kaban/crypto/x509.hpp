// X.509 for Kaban's private PKI: ECDSA P-256 keys, a self-signed CA, certificate requests, client
// and server certificates signed with SHA-256, and chain verification.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/result.hpp"

namespace kaban::crypto {

namespace detail {
struct X509Access;  // lets x509.cpp reach the OpenSSL objects behind these classes
}  // namespace detail

/// An ECDSA P-256 private key. Move-only; the key material lives in OpenSSL and is wiped when
/// the object goes away. Const methods may be called from several threads at once. A moved-from
/// object may only be assigned or destroyed.
class EcPrivateKey {
 public:
  /// A new key from the CSPRNG. Throws only if OpenSSL fails (a broken invariant).
  static EcPrivateKey generate();
  /// Parses an unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"), as written by to_pem(). Fails with
  /// errc::invalid_encoding if it does not parse and errc::invalid_key unless it is a P-256 key.
  static Result<EcPrivateKey> from_pem(ByteView pem);

  EcPrivateKey(EcPrivateKey&& other) noexcept;
  EcPrivateKey& operator=(EcPrivateKey&& other) noexcept;
  EcPrivateKey(const EcPrivateKey&) = delete;
  EcPrivateKey& operator=(const EcPrivateKey&) = delete;
  ~EcPrivateKey();

  /// The key as unencrypted PKCS#8 PEM text, for a file only its owner can read. Returned as a
  /// SecretKey so the text is wiped when dropped.
  SecretKey to_pem() const;
  /// The public half as DER SubjectPublicKeyInfo.
  Bytes public_key_der() const;
  /// SHA-256 of public_key_der(): names the key pair (e.g. to pin it).
  Digest public_key_fingerprint() const;

 private:
  friend struct detail::X509Access;
  struct Impl;
  explicit EcPrivateKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// A parsed X.509 certificate. Immutable: copies share it, and every method may be called from
/// several threads at once.
class Certificate {
 public:
  /// Parses one PEM certificate ("BEGIN CERTIFICATE"; text after it is ignored) or DER. Fails
  /// with errc::invalid_encoding.
  static Result<Certificate> from_pem(std::string_view pem);
  static Result<Certificate> from_der(ByteView der);

  std::string to_pem() const;
  const Bytes& der() const noexcept;
  /// SHA-256 of der().
  Digest fingerprint() const;
  /// The subject's common name, or "" if it has none.
  std::string common_name() const;
  /// The serial number as lower-case hex, without leading zero bytes.
  std::string serial_hex() const;
  std::chrono::system_clock::time_point not_before() const;
  std::chrono::system_clock::time_point not_after() const;
  /// The certified public key as DER SubjectPublicKeyInfo.
  Bytes public_key_der() const;

 private:
  friend struct detail::X509Access;
  struct Impl;
  explicit Certificate(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

/// A PKCS#10 certificate signing request: a public key and a common name, signed by the key.
/// Immutable: copies share it, and every method may be called from several threads at once.
class CertificateRequest {
 public:
  /// A request for `common_name` (1 to 64 characters, UTF-8), signed by `key`. Fails with
  /// errc::invalid_argument for a common name outside those bounds.
  static Result<CertificateRequest> create(const EcPrivateKey& key, std::string common_name);
  /// Parses a PEM ("BEGIN CERTIFICATE REQUEST") or DER request. Fails with errc::invalid_request.
  /// Parsing does not check the signature: call verify().
  static Result<CertificateRequest> from_pem(std::string_view pem);
  static Result<CertificateRequest> from_der(ByteView der);

  std::string to_pem() const;
  const Bytes& der() const noexcept;
  /// The requested common name, or "" if it has none.
  std::string common_name() const;
  /// The requested public key as DER SubjectPublicKeyInfo; empty if the key does not parse.
  Bytes public_key_der() const;
  /// Succeeds if the request carries a P-256 key and is signed by it; errc::invalid_request
  /// otherwise (a tampered or forged request).
  Result<void> verify() const;

 private:
  friend struct detail::X509Access;
  struct Impl;
  explicit CertificateRequest(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

/// How long before "now" a new certificate starts being valid, to tolerate clocks that lag the
/// issuer's.
inline constexpr std::chrono::seconds kCertificateBackdate = std::chrono::minutes(5);

/// A self-signed CA certificate for `key`: subject and issuer CN=`common_name`, a random
/// positive 128-bit serial, valid from now - kCertificateBackdate to now + `validity`,
/// basicConstraints critical CA:TRUE with pathlen 0 (it signs leaf certificates only), keyUsage
/// critical keyCertSign and cRLSign, and a subject key identifier. Fails with
/// errc::invalid_argument for a common name outside 1..64 characters or a validity that is not
/// positive. Thread-safe.
Result<Certificate> make_self_signed_ca(const EcPrivateKey& key, std::string common_name,
                                        std::chrono::seconds validity);

/// What a leaf certificate is for: its extendedKeyUsage.
enum class CertificatePurpose {
  client,  ///< TLS client authentication (an enrolled device)
  server,  ///< TLS server authentication (the sync server)
};

struct IssueOptions {
  std::chrono::seconds validity{0};
  CertificatePurpose purpose = CertificatePurpose::client;
  /// subjectAltName entries; server certificates need at least one, client ones take none.
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  ///< IPv4 or IPv6 in text form, e.g. "127.0.0.1"
};

/// Issues a certificate for the request's key and common name, signed by `ca` with `ca_key`:
/// a random positive 128-bit serial, valid from now - kCertificateBackdate to now +
/// options.validity, basicConstraints critical CA:FALSE, keyUsage critical digitalSignature,
/// extendedKeyUsage for options.purpose, subject and authority key identifiers, and the
/// subjectAltNames. Nothing else from the request (its other name parts or extensions) is copied.
/// Fails with errc::invalid_request if `csr` does not verify; errc::invalid_key if `ca_key` is
/// not the key of `ca`; errc::invalid_argument if `ca` is not a CA, the validity is not positive
/// or ends after the CA's, or the names do not suit the purpose (an empty or malformed name, a
/// server certificate without one, a client certificate with one). Thread-safe.
Result<Certificate> issue_certificate(const Certificate& ca, const EcPrivateKey& ca_key,
                                      const CertificateRequest& csr, const IssueOptions& options);

/// Verifies that `leaf` chains to one of `trusted` (the CA certificates the caller trusts) and
/// that every certificate on the chain is valid at time `at`. Fails with
/// errc::certificate_expired if a certificate on the chain is expired or not yet valid at `at`,
/// and errc::certificate_untrusted for any other failure (unknown issuer, bad signature, a CA
/// without the CA extensions). Does not check names or purpose. Thread-safe.
Result<void> verify_chain(const Certificate& leaf, std::span<const Certificate> trusted,
                          std::chrono::system_clock::time_point at);

/// One entry of a certificate revocation list.
struct RevokedCertificate {
  std::string serial_hex;  ///< the certificate's serial, as Certificate::serial_hex() gives it
  std::chrono::system_clock::time_point revoked_at;
};

/// A certificate revocation list (X.509 v2 CRL, PEM "BEGIN X509 CRL") issued by `ca` and signed
/// with `ca_key` (ECDSA with SHA-256): every entry of `revoked`, thisUpdate `this_update`,
/// nextUpdate `next_update` (after which verifiers refuse every certificate of the CA until a
/// newer list arrives), an authority key identifier and the CRL number `number` (larger for
/// each newer list). For TLS servers that check client certificates against a list, such as
/// nginx's ssl_crl. Fails with errc::invalid_argument if `ca` is not a CA, next_update is not
/// after this_update, or a serial is not hex digits; errc::invalid_key if `ca_key` is not the
/// key of `ca`. Thread-safe.
Result<std::string> make_crl(const Certificate& ca, const EcPrivateKey& ca_key,
                             std::span<const RevokedCertificate> revoked,
                             std::chrono::system_clock::time_point this_update,
                             std::chrono::system_clock::time_point next_update,
                             std::uint64_t number);

}  // namespace kaban::crypto
