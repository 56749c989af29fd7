// TestPki: a throwaway CA with a server certificate (localhost, 127.0.0.1) and a device
// certificate under it, for tests that make real TLS connections.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "kaban/crypto/tls.hpp"
#include "kaban/crypto/x509.hpp"

namespace kaban::testing {

inline constexpr const char* kTestDeviceName = "device-1";

struct TestPki {
  static constexpr std::chrono::hours kCaValidity{24};
  static constexpr std::chrono::hours kLeafValidity{1};

  explicit TestPki(const std::string& ca_name = "Kaban Test CA")
      : ca(crypto::make_self_signed_ca(ca_key, ca_name, kCaValidity).value()),
        server(issue(server_key, "kaban-test-server", crypto::CertificatePurpose::server)),
        device(issue(device_key, kTestDeviceName, crypto::CertificatePurpose::client)) {}

  crypto::Certificate issue(const crypto::EcPrivateKey& key, const std::string& name,
                            crypto::CertificatePurpose purpose) const {
    crypto::IssueOptions options;
    options.validity = kLeafValidity;
    options.purpose = purpose;
    if (purpose == crypto::CertificatePurpose::server) {
      options.dns_names = {"localhost"};
      options.ip_addresses = {"127.0.0.1"};
    }
    const auto csr = crypto::CertificateRequest::create(key, name).value();
    return crypto::issue_certificate(ca, ca_key, csr, options).value();
  }

  /// The server's chain and key; devices must chain to `client_ca_pem` (default: this CA).
  crypto::TlsServerIdentity server_identity(std::optional<std::string> client_ca_pem = {}) const {
    return {server.to_pem() + ca.to_pem(), server_key.to_pem(),
            client_ca_pem ? *client_ca_pem : ca.to_pem()};
  }
  crypto::TlsClientIdentity device_identity() const {
    return {device.to_pem(), device_key.to_pem()};
  }
  crypto::TlsClientTrust trust() const { return {ca.to_pem(), std::nullopt}; }

  // Declaration order is construction order: each key before its certificate.
  crypto::EcPrivateKey ca_key = crypto::EcPrivateKey::generate();
  crypto::EcPrivateKey server_key = crypto::EcPrivateKey::generate();
  crypto::EcPrivateKey device_key = crypto::EcPrivateKey::generate();
  crypto::Certificate ca;
  crypto::Certificate server;
  crypto::Certificate device;
};

}  // namespace kaban::testing
