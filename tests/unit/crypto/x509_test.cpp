#include "kaban/crypto/x509.hpp"

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kaban/crypto/ed25519.hpp"
#include "kaban/crypto/error.hpp"
#include "kat.hpp"

namespace kaban::crypto {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

// DER of the extendedKeyUsage OIDs id-kp-serverAuth / id-kp-clientAuth (RFC 5280 4.2.1.12).
const Bytes kServerAuthOid{0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
const Bytes kClientAuthOid{0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};

bool contains(const Bytes& haystack, const Bytes& needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

std::string text(const SecretKey& pem) {
  return std::string(pem.bytes().begin(), pem.bytes().end());
}

class X509Test : public ::testing::Test {
 protected:
  EcPrivateKey ca_key = EcPrivateKey::generate();
  Certificate ca = make_self_signed_ca(ca_key, "Kaban Test CA", 24h * 365).value();
  EcPrivateKey device_key = EcPrivateKey::generate();
  CertificateRequest csr = CertificateRequest::create(device_key, "device-1").value();

  static IssueOptions client(std::chrono::seconds validity = 24h * 30) {
    return {validity, CertificatePurpose::client, {}, {}};
  }
  static IssueOptions server() {
    return {24h * 30,
            CertificatePurpose::server,
            {"sync.example.test", "localhost"},
            {"127.0.0.1", "::1"}};
  }
  std::error_code verify_error(const Certificate& leaf, std::vector<Certificate> trusted,
                               Clock::time_point at = Clock::now()) {
    auto result = verify_chain(leaf, trusted, at);
    return result ? std::error_code() : result.error();
  }
};

TEST_F(X509Test, CaCertificateDescribesItself) {
  EXPECT_EQ(ca.common_name(), "Kaban Test CA");
  EXPECT_EQ(ca.public_key_der(), ca_key.public_key_der());
  EXPECT_EQ(ca.not_after() - ca.not_before(), 24h * 365 + kCertificateBackdate);
  EXPECT_LE(ca.not_before(), Clock::now());
  EXPECT_FALSE(ca.serial_hex().empty());
  EXPECT_LE(ca.serial_hex().size(), 32u);  // at most 128 bits
  EXPECT_LT(ca.serial_hex()[0], '8');      // positive: top bit clear when all 16 bytes are used
  EXPECT_EQ(verify_error(ca, {ca}), std::error_code());  // self-signed and trusted
}

TEST_F(X509Test, SerialsAreRandom) {
  const auto other = make_self_signed_ca(ca_key, "Kaban Test CA", 24h).value();
  EXPECT_NE(other.serial_hex(), ca.serial_hex());
}

TEST_F(X509Test, FingerprintIsSha256OfDer) {
  EXPECT_EQ(ca.fingerprint(), sha256(ca.der()));
  EXPECT_EQ(device_key.public_key_fingerprint(), sha256(device_key.public_key_der()));
}

TEST_F(X509Test, ClientCertificateIssuesAndVerifies) {
  ASSERT_TRUE(csr.verify());
  auto leaf = issue_certificate(ca, ca_key, csr, client());
  ASSERT_TRUE(leaf) << leaf.error().message();
  const auto& cert = leaf.value();
  EXPECT_EQ(cert.common_name(), "device-1");
  EXPECT_EQ(cert.public_key_der(), device_key.public_key_der());
  EXPECT_EQ(cert.not_after() - cert.not_before(), 24h * 30 + kCertificateBackdate);
  EXPECT_TRUE(contains(cert.der(), kClientAuthOid));
  EXPECT_FALSE(contains(cert.der(), kServerAuthOid));
  EXPECT_EQ(verify_error(cert, {ca}), std::error_code());
}

TEST_F(X509Test, ServerCertificateCarriesItsNames) {
  auto leaf = issue_certificate(ca, ca_key, csr, server());
  ASSERT_TRUE(leaf) << leaf.error().message();
  const auto& der = leaf.value().der();
  EXPECT_TRUE(contains(der, kServerAuthOid));
  EXPECT_FALSE(contains(der, kClientAuthOid));
  EXPECT_TRUE(contains(der, test::ascii("sync.example.test")));
  EXPECT_TRUE(contains(der, Bytes{0x87, 0x04, 127, 0, 0, 1}));  // [7] iPAddress 127.0.0.1
  Bytes v6_loopback{0x87, 0x10};
  v6_loopback.resize(17, 0);
  v6_loopback.push_back(1);
  EXPECT_TRUE(contains(der, v6_loopback));  // [7] iPAddress ::1
  EXPECT_EQ(verify_error(leaf.value(), {ca}), std::error_code());
}

TEST_F(X509Test, LeafFromAnotherCaIsUntrusted) {
  const auto other_key = EcPrivateKey::generate();
  const auto other_ca = make_self_signed_ca(other_key, "Other CA", 24h * 365).value();
  const auto leaf = issue_certificate(other_ca, other_key, csr, client()).value();
  EXPECT_EQ(verify_error(leaf, {ca}), errc::certificate_untrusted);
  EXPECT_EQ(verify_error(leaf, {}), errc::certificate_untrusted);
  EXPECT_EQ(verify_error(leaf, {ca, other_ca}), std::error_code());
}

TEST_F(X509Test, CaWithTheSameNameButAnotherKeyIsUntrusted) {
  const auto impostor_key = EcPrivateKey::generate();
  const auto impostor = make_self_signed_ca(impostor_key, "Kaban Test CA", 24h * 365).value();
  const auto leaf = issue_certificate(impostor, impostor_key, csr, client()).value();
  EXPECT_EQ(verify_error(leaf, {ca}), errc::certificate_untrusted);
}

TEST_F(X509Test, ExpiredAndNotYetValidCertificatesFail) {
  const auto leaf = issue_certificate(ca, ca_key, csr, client(1h)).value();
  EXPECT_EQ(verify_error(leaf, {ca}, Clock::now() + 30min), std::error_code());
  EXPECT_EQ(verify_error(leaf, {ca}, leaf.not_after() + 1s), errc::certificate_expired);
  EXPECT_EQ(verify_error(leaf, {ca}, Clock::now() + 2h), errc::certificate_expired);
  EXPECT_EQ(verify_error(leaf, {ca}, leaf.not_before() - 1s), errc::certificate_expired);
  // An expired CA fails the chain too, even while the leaf is in its validity.
  EXPECT_EQ(verify_error(ca, {ca}, ca.not_after() + 24h), errc::certificate_expired);
}

TEST_F(X509Test, LeafValidityMustFitInsideTheCas) {
  EXPECT_EQ(issue_certificate(ca, ca_key, csr, client(24h * 366)).error(), errc::invalid_argument);
  EXPECT_EQ(issue_certificate(ca, ca_key, csr, client(0s)).error(), errc::invalid_argument);
  EXPECT_EQ(make_self_signed_ca(ca_key, "CA", 0s).error(), errc::invalid_argument);
}

TEST_F(X509Test, TamperedRequestFailsVerification) {
  Bytes der = csr.der();
  const Bytes name = test::ascii("device-1");
  auto at = std::search(der.begin(), der.end(), name.begin(), name.end());
  ASSERT_NE(at, der.end());
  at[7] = '2';  // the request now asks for "device-2", under the device's signature for "-1"
  auto tampered = CertificateRequest::from_der(der);
  ASSERT_TRUE(tampered) << "the edit keeps the DER well-formed";
  EXPECT_EQ(tampered.value().common_name(), "device-2");
  EXPECT_EQ(tampered.value().verify().error(), errc::invalid_request);
  EXPECT_EQ(issue_certificate(ca, ca_key, tampered.value(), client()).error(),
            errc::invalid_request);
}

TEST_F(X509Test, RequestWithASwappedKeyFails) {
  // Put another key into the request body, keeping the device's signature over the original.
  Bytes der = csr.der();
  const Bytes original = device_key.public_key_der();
  const Bytes swapped = EcPrivateKey::generate().public_key_der();
  ASSERT_EQ(original.size(), swapped.size());
  auto at = std::search(der.begin(), der.end(), original.begin(), original.end());
  ASSERT_NE(at, der.end());
  std::copy(swapped.begin(), swapped.end(), at);
  auto forged = CertificateRequest::from_der(der);
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged.value().public_key_der(), swapped);
  EXPECT_EQ(forged.value().verify().error(), errc::invalid_request);
  EXPECT_EQ(issue_certificate(ca, ca_key, forged.value(), client()).error(), errc::invalid_request);
}

TEST_F(X509Test, WrongCaKeyOrNonCaIssuerIsRefused) {
  EXPECT_EQ(issue_certificate(ca, device_key, csr, client()).error(), errc::invalid_key);
  const auto leaf = issue_certificate(ca, ca_key, csr, client()).value();
  EXPECT_EQ(issue_certificate(leaf, device_key, csr, client()).error(), errc::invalid_argument);
}

TEST_F(X509Test, NamesMustSuitThePurpose) {
  auto options = server();
  options.dns_names.clear();
  options.ip_addresses.clear();
  EXPECT_EQ(issue_certificate(ca, ca_key, csr, options).error(), errc::invalid_argument);

  auto client_with_name = client();
  client_with_name.dns_names = {"device.example.test"};
  EXPECT_EQ(issue_certificate(ca, ca_key, csr, client_with_name).error(), errc::invalid_argument);

  for (const char* bad : {"", "two words", "a,IP:10.0.0.1", "x\ny"}) {
    auto bad_dns = server();
    bad_dns.dns_names = {bad};
    EXPECT_EQ(issue_certificate(ca, ca_key, csr, bad_dns).error(), errc::invalid_argument) << bad;
  }
  for (const char* bad : {"", "256.0.0.1", "localhost", "1.2.3"}) {
    auto bad_ip = server();
    bad_ip.ip_addresses = {bad};
    EXPECT_EQ(issue_certificate(ca, ca_key, csr, bad_ip).error(), errc::invalid_argument) << bad;
  }
}

TEST_F(X509Test, CommonNameBounds) {
  EXPECT_EQ(CertificateRequest::create(device_key, "").error(), errc::invalid_argument);
  EXPECT_EQ(CertificateRequest::create(device_key, std::string(65, 'x')).error(),
            errc::invalid_argument);
  EXPECT_EQ(CertificateRequest::create(device_key, std::string(64, 'x')).value().common_name(),
            std::string(64, 'x'));
  EXPECT_EQ(make_self_signed_ca(ca_key, "", 24h).error(), errc::invalid_argument);
  EXPECT_EQ(CertificateRequest::create(device_key, "Gérard’s laptop").value().common_name(),
            "Gérard’s laptop");
}

TEST_F(X509Test, CertificatePemAndDerRoundTrip) {
  const std::string pem = ca.to_pem();
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);
  auto from_pem = Certificate::from_pem(pem);
  ASSERT_TRUE(from_pem);
  EXPECT_EQ(from_pem.value().der(), ca.der());
  EXPECT_EQ(from_pem.value().fingerprint(), ca.fingerprint());
  EXPECT_EQ(from_pem.value().serial_hex(), ca.serial_hex());
  EXPECT_EQ(from_pem.value().not_after(), ca.not_after());
  auto from_der = Certificate::from_der(ca.der());
  ASSERT_TRUE(from_der);
  EXPECT_EQ(from_der.value().to_pem(), pem);
}

TEST_F(X509Test, MalformedCertificatesAreEncodingErrors) {
  EXPECT_EQ(Certificate::from_pem("").error(), errc::invalid_encoding);
  EXPECT_EQ(Certificate::from_pem(std::string_view()).error(), errc::invalid_encoding);
  EXPECT_EQ(Certificate::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .error(),
            errc::invalid_encoding);
  EXPECT_EQ(Certificate::from_pem(csr.to_pem()).error(), errc::invalid_encoding);
  EXPECT_EQ(Certificate::from_der({}).error(), errc::invalid_encoding);
  Bytes truncated = ca.der();
  truncated.pop_back();
  EXPECT_EQ(Certificate::from_der(truncated).error(), errc::invalid_encoding);
  Bytes trailing = ca.der();
  trailing.push_back(0);
  EXPECT_EQ(Certificate::from_der(trailing).error(), errc::invalid_encoding);
}

TEST_F(X509Test, RequestPemRoundTrips) {
  const std::string pem = csr.to_pem();
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE REQUEST-----\n", 0), 0u);
  auto parsed = CertificateRequest::from_pem(pem);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().der(), csr.der());
  EXPECT_EQ(parsed.value().common_name(), "device-1");
  EXPECT_EQ(parsed.value().public_key_der(), device_key.public_key_der());
  EXPECT_TRUE(parsed.value().verify());
  EXPECT_EQ(CertificateRequest::from_pem("junk").error(), errc::invalid_request);
  EXPECT_EQ(CertificateRequest::from_pem(std::string_view()).error(), errc::invalid_request);
  EXPECT_EQ(CertificateRequest::from_pem(ca.to_pem()).error(), errc::invalid_request);
  EXPECT_EQ(CertificateRequest::from_der(Bytes{0x30, 0x00}).error(), errc::invalid_request);
}

TEST_F(X509Test, PrivateKeyPemRoundTripsAsPkcs8) {
  const auto pem = ca_key.to_pem();
  EXPECT_EQ(text(pem).rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u);
  auto parsed = EcPrivateKey::from_pem(pem.bytes());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().public_key_der(), ca_key.public_key_der());
  // The parsed key still issues certificates the CA certificate vouches for.
  const auto leaf = issue_certificate(ca, parsed.value(), csr, client()).value();
  EXPECT_EQ(verify_error(leaf, {ca}), std::error_code());
}

TEST_F(X509Test, PrivateKeyPemOfTheWrongKindIsRefused) {
  EXPECT_EQ(EcPrivateKey::from_pem(test::ascii("nope")).error(), errc::invalid_encoding);
  EXPECT_EQ(EcPrivateKey::from_pem(Ed25519PrivateKey::generate().to_pem().bytes()).error(),
            errc::invalid_key);
  EXPECT_EQ(Ed25519PrivateKey::from_pem(ca_key.to_pem().bytes()).error(), errc::invalid_key);
}

TEST_F(X509Test, CertificatesAreSharedValues) {
  std::vector<Certificate> trusted{ca, ca};
  Certificate copy = ca;
  EXPECT_EQ(copy.der(), ca.der());
  EXPECT_EQ(verify_error(issue_certificate(copy, ca_key, csr, client()).value(), trusted),
            std::error_code());
}

TEST_F(X509Test, SharedCertificatesVerifyFromSeveralThreads) {
  const auto leaf = issue_certificate(ca, ca_key, csr, client()).value();
  const std::vector<Certificate> trusted{ca};
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        if (verify_chain(leaf, trusted, Clock::now()) &&
            issue_certificate(ca, ca_key, csr, client())) {
          ++verified;
        }
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  EXPECT_EQ(verified.load(), 100);
}

}  // namespace
}  // namespace kaban::crypto
