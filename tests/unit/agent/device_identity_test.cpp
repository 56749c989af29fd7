#include "kaban/agent/device_identity.hpp"

#include <optional>

#include <gtest/gtest.h>

#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/guard.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/compliance.hpp"
#include "message_lane_support.hpp"
#include "test_pki.hpp"
#include "test_support.hpp"

namespace kaban::agent {
namespace {

DeviceIdentity make_identity(std::string_view login, std::string_view key_text) {
  DeviceIdentity id;
  id.server_host = "sync.city.example";
  id.server_port = 8443;
  id.device_id = std::string(64, 'd');
  id.login = login;
  id.user_name = "Hanako Yamada";
  id.certificate_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  id.private_key_pem = crypto::SecretKey::from_bytes(crypto::as_bytes(key_text));
  id.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
  id.signing_key = crypto::to_hex(crypto::Ed25519PrivateKey::generate().public_key().bytes());
  id.server_epoch = "0123abcd";
  id.enrolled_at = 1'790'000'000;
  return id;
}

std::string text_of(const crypto::SecretKey& key) {
  return {reinterpret_cast<const char*>(key.bytes().data()), key.size()};
}

// A fresh encrypted store per test (see message_lane_support.hpp).
class DeviceIdentityTest : public testing::StoreFixture {};

TEST_F(DeviceIdentityTest, RoundTripsThroughAReopenedStore) {
  const std::string key_text = "-----BEGIN PRIVATE KEY-----\n" +
                               kaban::testing::random_marker("key-") +
                               "\n-----END PRIVATE KEY-----\n";
  const DeviceIdentity saved = make_identity("hanako", key_text);
  ASSERT_TRUE(save_identity(*store_, saved));
  reopen();

  auto loaded = load_identity(*store_);
  ASSERT_TRUE(loaded) << loaded.error().message();
  const DeviceIdentity& id = loaded.value();
  EXPECT_EQ(id.server_host, saved.server_host);
  EXPECT_EQ(id.server_port, saved.server_port);
  EXPECT_EQ(id.device_id, saved.device_id);
  EXPECT_EQ(id.login, saved.login);
  EXPECT_EQ(id.user_name, saved.user_name);
  EXPECT_EQ(id.certificate_pem, saved.certificate_pem);
  EXPECT_EQ(text_of(id.private_key_pem), key_text);
  EXPECT_EQ(id.ca_pem, saved.ca_pem);
  EXPECT_EQ(id.signing_key, saved.signing_key);
  EXPECT_EQ(id.server_epoch, saved.server_epoch);
  EXPECT_EQ(id.enrolled_at, saved.enrolled_at);
}

TEST_F(DeviceIdentityTest, ThePrivateKeyNeverReachesTheDiskInTheClear) {
  const std::string marker = kaban::testing::random_marker("key-");
  ASSERT_TRUE(save_identity(*store_, make_identity("hanako", marker)));
  EXPECT_EQ(text_of(load_identity(*store_).value().private_key_pem), marker);
  store_.reset();
  EXPECT_TRUE(kaban::testing::files_containing(dir_, marker).empty());
}

TEST_F(DeviceIdentityTest, AFreshStoreIsNotEnrolled) {
  auto loaded = load_identity(*store_);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error(), errc::not_enrolled);
}

TEST_F(DeviceIdentityTest, ASecondEnrollmentIsRefusedAndTheFirstKept) {
  ASSERT_TRUE(save_identity(*store_, make_identity("hanako", "first key")));
  auto again = save_identity(*store_, make_identity("taro", "second key"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::already_enrolled);
  auto loaded = load_identity(*store_);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded.value().login, "hanako");
  EXPECT_EQ(text_of(loaded.value().private_key_pem), "first key");
}

TEST_F(DeviceIdentityTest, TheSigningKeyParses) {
  const auto signer = crypto::Ed25519PrivateKey::generate();
  DeviceIdentity id = make_identity("hanako", "k");
  id.signing_key = crypto::to_hex(signer.public_key().bytes());
  auto key = content_signing_key(id);
  ASSERT_TRUE(key);
  EXPECT_EQ(key.value(), signer.public_key());
  id.signing_key = "abcd";
  EXPECT_FALSE(content_signing_key(id));
  id.signing_key = std::string(64, 'x');
  EXPECT_FALSE(content_signing_key(id));
}

TEST_F(DeviceIdentityTest, SyncStateRoundTripsAndIsReplaced) {
  auto fresh = load_sync_state(*store_);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh.value(), SyncState{});

  const SyncState first{"0123abcd.42", 1'790'000'100, 1'790'000'099};
  ASSERT_TRUE(save_sync_state(*store_, first));
  EXPECT_EQ(load_sync_state(*store_).value(), first);

  const SyncState second{"0123abcd.57", 1'790'000'500, 1'790'000'498};
  ASSERT_TRUE(save_sync_state(*store_, second));
  reopen();
  EXPECT_EQ(load_sync_state(*store_).value(), second);
}

// An identity whose key and certificate come from `pki` (its device key, its CA).
DeviceIdentity pki_identity(const kaban::testing::TestPki& pki) {
  DeviceIdentity id = make_identity("hanako", "");
  id.certificate_pem = pki.device.to_pem();
  id.private_key_pem = pki.device_key.to_pem();
  id.ca_pem = pki.ca.to_pem();
  return id;
}

crypto::Certificate renewal_for(const kaban::testing::TestPki& pki,
                                const crypto::EcPrivateKey& key) {
  return pki.issue(key, "hanako", crypto::CertificatePurpose::client);
}

TEST_F(DeviceIdentityTest, ARenewedCertificateForTheSameKeyReplacesTheOldAndKeepsTheDeviceId) {
  const kaban::testing::TestPki pki;
  ASSERT_TRUE(save_identity(*store_, pki_identity(pki)));
  const crypto::Certificate renewed = renewal_for(pki, pki.device_key);
  ASSERT_NE(renewed.to_pem(), pki.device.to_pem());

  std::string why;
  auto replaced =
      replace_certificate(*store_, renewed.to_pem(), std::chrono::system_clock::now(), why);
  ASSERT_TRUE(replaced) << why;
  reopen();
  const DeviceIdentity id = load_identity(*store_).value();
  EXPECT_EQ(id.certificate_pem, renewed.to_pem());
  EXPECT_EQ(id.device_id, std::string(64, 'd')) << "the device id is enrollment's, for good";
  EXPECT_EQ(text_of(id.private_key_pem), text_of(pki.device_key.to_pem()));
}

TEST_F(DeviceIdentityTest, ARenewedCertificateThatDoesNotCheckOutIsRefusedAndTheOldKept) {
  const kaban::testing::TestPki pki;
  const kaban::testing::TestPki other_pki("Another CA");
  ASSERT_TRUE(save_identity(*store_, pki_identity(pki)));
  const auto now = std::chrono::system_clock::now();
  const struct {
    const char* name;
    std::string pem;
    std::chrono::system_clock::time_point at;
  } cases[] = {
      {"for another key", renewal_for(pki, crypto::EcPrivateKey::generate()).to_pem(), now},
      {"from another CA", renewal_for(other_pki, pki.device_key).to_pem(), now},
      {"expired at the time given", renewal_for(pki, pki.device_key).to_pem(),
       now + std::chrono::hours(2)},
      {"not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", now},
  };
  for (const auto& c : cases) {
    std::string why;
    auto replaced = replace_certificate(*store_, c.pem, c.at, why);
    ASSERT_FALSE(replaced) << c.name;
    EXPECT_EQ(replaced.error(), errc::bad_response) << c.name;
    EXPECT_NE(why.find("kept"), std::string::npos) << c.name << ": " << why;
    EXPECT_EQ(load_identity(*store_).value().certificate_pem, pki.device.to_pem()) << c.name;
  }
}

TEST_F(DeviceIdentityTest, TheRenewalRequestIsForTheStoredKey) {
  const kaban::testing::TestPki pki;
  auto pem = certificate_request_pem(pki.device_key.to_pem());
  ASSERT_TRUE(pem) << pem.error().message();
  auto csr = crypto::CertificateRequest::from_pem(pem.value());
  ASSERT_TRUE(csr);
  EXPECT_TRUE(csr.value().verify());
  EXPECT_EQ(csr.value().public_key_der(), pki.device_key.public_key_der());
  EXPECT_FALSE(certificate_request_pem(crypto::SecretKey::from_bytes(crypto::as_bytes("junk"))));
}

TEST_F(DeviceIdentityTest, PinFactsAreKeptInsideTheStoreAndReplaced) {
  auto none = load_pin_facts(*store_);
  ASSERT_TRUE(none);
  EXPECT_FALSE(none.value()) << "a store made before PINs were recorded tells nothing";

  ASSERT_TRUE(save_pin_facts(*store_, pin_facts_of("123456")));
  reopen();
  EXPECT_EQ(load_pin_facts(*store_).value(), (PinFacts{true, 6, true}));

  ASSERT_TRUE(save_pin_facts(*store_, pin_facts_of("blue-harbour-71")));
  EXPECT_EQ(load_pin_facts(*store_).value(), (PinFacts{true, 15, false}));
  EXPECT_EQ(pin_facts_of(""), (PinFacts{false, 0, false}));
  EXPECT_EQ(count("SELECT count(*) FROM meta WHERE key = 'pin_facts'"), 1);
}

// Enrollment, without a server: what request_enrollment would hand complete_enrollment.
class EnrollmentTest : public ::testing::Test {
 protected:
  Enrollment enrollment(const protocol::Policy& policy, bool signed_policy = true) {
    Enrollment e;
    static_cast<DeviceIdentity&>(e) = pki_identity(pki_);
    e.signing_key = crypto::to_hex(signer_.public_key().bytes());
    e.report_token = std::string(64, '7');
    e.policy = policy;
    if (signed_policy) {
      protocol::DevicePolicy device_policy;
      device_policy.device_id = e.device_id;
      device_policy.version = 3;
      device_policy.issued_at = testing::kNow;
      device_policy.settings = policy;
      e.signed_policy = protocol::sign_text(protocol::device_policy_text(device_policy), signer_);
    }
    return e;
  }

  static protocol::Policy long_pins() {
    protocol::Policy p;
    p.pin_min_length = 8;
    return p;
  }

  kaban::testing::TestPki pki_;
  crypto::Ed25519PrivateKey signer_ = crypto::Ed25519PrivateKey::generate();
  kaban::testing::TempDir tmp_;
  std::filesystem::path dir_ = tmp_ / "device";
};

TEST_F(EnrollmentTest, ThePolicysPinRulesApplyToTheFirstPin) {
  std::string why;
  EXPECT_TRUE(check_new_pin("246813", why)) << "the built-in rules take 6 characters";
  auto refused = check_new_pin("246813", long_pins(), why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_input);
  EXPECT_NE(why.find('8'), std::string::npos) << why;
  EXPECT_TRUE(check_new_pin("24681357", long_pins(), why)) << why;
  EXPECT_FALSE(check_new_pin("12345678", long_pins(), why)) << "a run of digits is simple";
  EXPECT_FALSE(check_new_pin("2468\n1357", long_pins(), why));

  auto made = complete_enrollment(dir_, enrollment(long_pins()), "246813", testing::kFastKdf);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error(), errc::invalid_input);
  EXPECT_FALSE(Store::exists(dir_)) << "nothing is created for a PIN the policy refuses";
}

TEST_F(EnrollmentTest, CompletingWritesTheStoreThePinFactsAndTheGuard) {
  const Enrollment e = enrollment(long_pins());
  ASSERT_TRUE(complete_enrollment(dir_, e, "24681357", testing::kFastKdf));

  auto store = Store::open(dir_, "24681357");
  ASSERT_TRUE(store);
  EXPECT_EQ(load_identity(store.value()).value().device_id, e.device_id);
  EXPECT_EQ(load_pin_facts(store.value()).value(), (PinFacts{true, 8, false}));

  auto guard = load_guard(dir_);
  ASSERT_TRUE(guard);
  EXPECT_EQ(guard.value().device_id, e.device_id);
  EXPECT_EQ(guard.value().server_host, e.server_host);
  EXPECT_EQ(guard.value().server_port, e.server_port);
  EXPECT_EQ(guard.value().ca_pem, e.ca_pem);
  EXPECT_EQ(guard.value().signing_key, e.signing_key);
  EXPECT_EQ(guard.value().report_token, e.report_token);
  EXPECT_EQ(guard.value().policy, e.signed_policy);
  EXPECT_EQ(current_policy(guard.value()).pin_min_length, 8);
}

TEST_F(EnrollmentTest, APolicyThatDoesNotVerifyCreatesNothing) {
  Enrollment e = enrollment(long_pins());
  e.signed_policy.text.replace(e.signed_policy.text.find("\"pin_min_length\":8"), 18,
                               "\"pin_min_length\":4");
  auto made = complete_enrollment(dir_, e, "24681357", testing::kFastKdf);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error(), errc::policy_refused);
  EXPECT_FALSE(Store::exists(dir_));
}

TEST_F(EnrollmentTest, ANewEnrollmentReplacesTheGuardOfAWipedOne) {
  ASSERT_TRUE(complete_enrollment(dir_, enrollment({}, false), "2468-1357", testing::kFastKdf));
  ASSERT_TRUE(wipe_device(dir_, "command", 4, testing::kNow));
  ASSERT_GT(load_guard(dir_).value().wiped_at, 0);

  const Enrollment again = enrollment(long_pins());
  ASSERT_TRUE(complete_enrollment(dir_, again, "24681357", testing::kFastKdf));
  auto guard = load_guard(dir_);
  ASSERT_TRUE(guard);
  EXPECT_EQ(guard.value().wiped_at, 0);
  EXPECT_TRUE(guard.value().unreported.empty());
  std::string why;
  auto opened = open_guarded(dir_, "24681357", {testing::kNow, "", 0}, why);
  EXPECT_TRUE(opened) << why;
}

}  // namespace
}  // namespace kaban::agent
