#include <array>
#include <atomic>
#include <regex>
#include <thread>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/policies.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using kaban::testing::TempDir;

const UnixTime kNow{std::chrono::seconds{1'800'000'000}};

std::string make_csr(const std::string& name = "device") {
  auto key = crypto::EcPrivateKey::generate();
  return crypto::CertificateRequest::create(key, name).value().to_pem();
}

protocol::DeviceDescription laptop() {
  return {"linux", "Debian 12", "ThinkPad X1", "alice-laptop", "0.1.0"};
}

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(init_data_dir(tmp_.path(), {}));
    auto identity = load_identity(tmp_.path());
    ASSERT_TRUE(identity);
    identity_ = std::make_unique<ServerIdentity>(std::move(identity).value());
    auto db = open_database(tmp_.path());
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    directory_ = std::make_unique<Directory>(*db_);
    ASSERT_TRUE(directory_->add_user("alice", "Alice Aoki", kNow));
  }

  std::string new_code(std::chrono::seconds ttl = 24h) {
    auto code = directory_->create_enroll_code("alice", ttl, kNow);
    EXPECT_TRUE(code);
    return code ? code.value() : std::string();
  }

  int count(const char* table) {
    return db_->execAndGet(std::string("SELECT count(*) FROM ") + table).getInt();
  }

  // Enrolls a device of alice with `key`, giving `token_hash`.
  EnrolledDevice enroll(const crypto::EcPrivateKey& key, const std::string& token_hash = "") {
    EnrollOptions options;
    options.report_token_hash = token_hash;
    options.peer_address = "192.0.2.7";
    auto csr = crypto::CertificateRequest::create(key, "device").value().to_pem();
    auto enrolled = directory_->enroll_device(new_code(), csr, laptop(), kNow, *identity_, options);
    EXPECT_TRUE(enrolled) << enrolled.error().message();
    return std::move(enrolled).value();
  }

  // The audit entries with `event`, oldest first.
  std::vector<AuditEntry> audited(const std::string& event) {
    auto entries = AuditLog(*db_).since(UnixTime{}, 1000);
    EXPECT_TRUE(entries);
    std::vector<AuditEntry> hits;
    for (auto& e : entries.value())
      if (e.event == event)
        hits.push_back(e);
    return hits;
  }

  std::string column(const std::string& device_id, const char* name) {
    SQLite::Statement q(*db_,
                        std::string("SELECT coalesce(") + name + ", '') FROM devices WHERE id = ?");
    q.bind(1, device_id);
    EXPECT_TRUE(q.executeStep());
    return q.getColumn(0).getString();
  }

  // A devices row with a chosen id (for prefix tests), without a certificate.
  void insert_device(const std::string& id) {
    SQLite::Statement q(*db_,
                        "INSERT INTO devices(id, login, serial, certificate_pem, platform, "
                        "os_version, model, name, agent_version, enrolled_at, last_checkin_at) "
                        "VALUES (?, 'alice', '01', '', 'linux', '', '', '', '', 0, 0)");
    q.bind(1, id);
    q.exec();
  }

  TempDir tmp_;
  std::unique_ptr<ServerIdentity> identity_;
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<Directory> directory_;
};

TEST_F(DirectoryTest, LoginsFollowTheProtocolRule) {
  EXPECT_TRUE(directory_->add_user("a.aoki-2_x", "A", kNow));
  EXPECT_TRUE(directory_->add_user(std::string(64, 'a'), "A", kNow));
  for (const std::string& bad :
       {std::string(65, 'a'), std::string(), std::string("Alice"), std::string("-alice"),
        std::string("al ice"), std::string("alice/x")}) {
    auto added = directory_->add_user(bad, "Someone", kNow);
    ASSERT_FALSE(added) << bad;
    EXPECT_EQ(added.error(), errc::invalid_login) << bad;
  }
  EXPECT_EQ(count("users"), 3);
}

TEST_F(DirectoryTest, UsersAreAddedOnceAndListed) {
  ASSERT_TRUE(directory_->add_user("bob", "Bob Baba", kNow + 1s));
  auto dup = directory_->add_user("alice", "Someone Else", kNow);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error(), errc::user_exists);
  EXPECT_EQ(directory_->add_user("Bad Login", "x", kNow).error(), errc::invalid_login);
  EXPECT_EQ(directory_->add_user("carol", "", kNow).error(), errc::invalid_name);
  EXPECT_EQ(directory_->add_user("carol", std::string(kMaxUserNameSize + 1, 'c'), kNow).error(),
            errc::invalid_name);

  auto users = directory_->list_users();
  ASSERT_TRUE(users);
  ASSERT_EQ(users.value().size(), 2u);
  EXPECT_EQ(users.value()[0].login, "alice");
  EXPECT_EQ(users.value()[0].name, "Alice Aoki");
  EXPECT_EQ(users.value()[1].login, "bob");
  EXPECT_EQ(users.value()[1].created_at, kNow + 1s);

  auto found = directory_->find_user("bob");
  ASSERT_TRUE(found && found.value());
  EXPECT_EQ(found.value()->name, "Bob Baba");
  auto missing = directory_->find_user("nobody");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing.value());
}

TEST_F(DirectoryTest, CodesAreRandomCrockfordGroups) {
  const std::regex shape("[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}");
  const std::string a = new_code();
  const std::string b = new_code();
  EXPECT_TRUE(std::regex_match(a, shape)) << a;
  EXPECT_TRUE(std::regex_match(b, shape)) << b;
  EXPECT_NE(a, b);
  EXPECT_EQ(count("enroll_codes"), 2);

  auto unknown = directory_->create_enroll_code("nobody", 1h, kNow);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), errc::no_such_user);
  EXPECT_EQ(count("enroll_codes"), 2);
}

TEST_F(DirectoryTest, EnrollIssuesADeviceCertificateUnderTheCa) {
  const std::string code = new_code();
  auto enrolled = directory_->enroll_device(code, make_csr(), laptop(), kNow, *identity_);
  ASSERT_TRUE(enrolled) << enrolled.error().message();
  const EnrolledDevice& device = enrolled.value();
  EXPECT_EQ(device.login, "alice");
  EXPECT_EQ(device.user_name, "Alice Aoki");
  EXPECT_EQ(device.device_id, crypto::to_hex(crypto::sha256(device.certificate.der())));

  const std::array<crypto::Certificate, 1> trusted{identity_->ca_certificate};
  EXPECT_TRUE(crypto::verify_chain(device.certificate, trusted, std::chrono::system_clock::now()));
  // The default policy's certificate lifetime.
  const auto lifetime = device.certificate.not_after() - device.certificate.not_before();
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(lifetime),
            std::chrono::days(protocol::Policy{}.certificate_lifetime_days) +
                crypto::kCertificateBackdate);
  EXPECT_EQ(device.policy, protocol::Policy{});
  EXPECT_GE(device.policy_version, 1);

  auto stored = directory_->find_device(device.device_id);
  ASSERT_TRUE(stored && stored.value());
  EXPECT_EQ(stored.value()->login, "alice");
  EXPECT_EQ(stored.value()->description, laptop());
  EXPECT_EQ(stored.value()->serial, device.certificate.serial_hex());
  EXPECT_EQ(stored.value()->certificate_pem, device.certificate.to_pem());
  EXPECT_EQ(stored.value()->enrolled_at, kNow);
  EXPECT_FALSE(stored.value()->revoked);
}

TEST_F(DirectoryTest, CodeIsAcceptedAsTypedInLowerCaseWithoutDashes) {
  std::string typed = new_code();
  typed.erase(std::remove(typed.begin(), typed.end(), '-'), typed.end());
  std::transform(typed.begin(), typed.end(), typed.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_TRUE(directory_->enroll_device(typed, make_csr(), laptop(), kNow, *identity_));
}

TEST_F(DirectoryTest, CodeIsSingleUse) {
  const std::string code = new_code();
  ASSERT_TRUE(directory_->enroll_device(code, make_csr(), laptop(), kNow, *identity_));
  auto again = directory_->enroll_device(code, make_csr(), laptop(), kNow + 1s, *identity_);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::enroll_code_used);
  EXPECT_EQ(count("devices"), 1);
}

TEST_F(DirectoryTest, CodeExpires) {
  const std::string code = new_code(10min);
  auto late = directory_->enroll_device(code, make_csr(), laptop(), kNow + 10min, *identity_);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), errc::enroll_code_expired);
  EXPECT_EQ(count("devices"), 0);
  EXPECT_TRUE(directory_->enroll_device(code, make_csr(), laptop(), kNow + 10min - 1s, *identity_));
}

TEST_F(DirectoryTest, UnknownAndMalformedCodesAreInvalid) {
  new_code();
  for (const std::string code : {"ABCD-EFGH-JKMN-PQRS", "ABC", "", "ABCD-EFGH-JKMN-PQR!"}) {
    auto result = directory_->enroll_device(code, make_csr(), laptop(), kNow, *identity_);
    ASSERT_FALSE(result) << code;
    EXPECT_EQ(result.error(), errc::enroll_code_invalid) << code;
  }
  EXPECT_EQ(count("devices"), 0);
}

TEST_F(DirectoryTest, BadCsrLeavesTheCodeUnused) {
  const std::string code = new_code();
  auto bad = directory_->enroll_device(code, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n",
                                       laptop(), kNow, *identity_);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::csr_invalid);
  EXPECT_EQ(count("devices"), 0);
  EXPECT_TRUE(directory_->enroll_device(code, make_csr(), laptop(), kNow, *identity_));
}

TEST_F(DirectoryTest, CodeTextIsNotStored) {
  const std::string marker = kaban::testing::random_marker("user-name-");
  ASSERT_TRUE(directory_->add_user("dave", marker, kNow));
  auto code = directory_->create_enroll_code("dave", 1h, kNow);
  ASSERT_TRUE(code);
  std::string undashed = code.value();
  undashed.erase(std::remove(undashed.begin(), undashed.end(), '-'), undashed.end());
  // The search must see what the database holds: the name written alongside is found.
  EXPECT_FALSE(kaban::testing::files_containing(tmp_.path(), marker).empty());
  EXPECT_TRUE(kaban::testing::files_containing(tmp_.path(), code.value()).empty());
  EXPECT_TRUE(kaban::testing::files_containing(tmp_.path(), undashed).empty());
}

TEST_F(DirectoryTest, ConcurrentRedeemsOfOneCodeEnrollOneDevice) {
  const std::string code = new_code();
  const std::string csr_a = make_csr();
  const std::string csr_b = make_csr();
  std::atomic<int> ready{0};
  std::array<std::error_code, 2> outcomes;
  auto redeem = [&](int i, const std::string& csr) {
    try {
      auto db = open_database(tmp_.path());
      if (!db) {
        outcomes[i] = db.error();
        return;
      }
      Directory directory(*db.value());
      ++ready;
      while (ready.load() < 2) {
      }
      auto result = directory.enroll_device(code, csr, laptop(), kNow, *identity_);
      outcomes[i] = result ? std::error_code() : result.error();
    } catch (...) {
      outcomes[i] = std::make_error_code(std::errc::state_not_recoverable);
    }
  };
  std::thread a(redeem, 0, std::cref(csr_a));
  std::thread b(redeem, 1, std::cref(csr_b));
  a.join();
  b.join();
  const int successes = (!outcomes[0] ? 1 : 0) + (!outcomes[1] ? 1 : 0);
  EXPECT_EQ(successes, 1) << outcomes[0].message() << " / " << outcomes[1].message();
  EXPECT_TRUE(outcomes[0] == errc::enroll_code_used || outcomes[1] == errc::enroll_code_used);
  EXPECT_EQ(count("devices"), 1);
}

TEST_F(DirectoryTest, CheckinUpdatesTheDeviceAndListShowsIt) {
  auto enrolled =
      directory_->enroll_device(new_code(), make_csr(), laptop(), kNow, *identity_).value();
  auto newer = laptop();
  newer.os_version = "Debian 13";
  newer.agent_version = "0.2.0";
  CheckinRecord record;
  record.description = newer;
  record.policy_version = 3;
  auto checked = directory_->record_checkin(enrolled.device_id, record, kNow + 1h);
  ASSERT_TRUE(checked);
  EXPECT_TRUE(checked.value());
  auto unknown = directory_->record_checkin(std::string(64, '0'), record, kNow);
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(unknown.value());

  ASSERT_TRUE(directory_->add_user("bob", "Bob Baba", kNow));
  auto code = directory_->create_enroll_code("bob", 1h, kNow).value();
  ASSERT_TRUE(directory_->enroll_device(code, make_csr(), laptop(), kNow, *identity_));

  auto devices = directory_->list_devices();
  ASSERT_TRUE(devices);
  ASSERT_EQ(devices.value().size(), 2u);
  const Device& first = devices.value()[0];
  EXPECT_EQ(first.login, "alice");
  EXPECT_EQ(first.id, enrolled.device_id);
  EXPECT_EQ(first.description, newer);
  EXPECT_EQ(first.enrolled_at, kNow);
  EXPECT_EQ(first.last_checkin_at, kNow + 1h);
  EXPECT_EQ(first.policy_version, 3);
  EXPECT_FALSE(first.revoked);
  EXPECT_EQ(devices.value()[1].login, "bob");

  auto revoked = directory_->revoke_device(enrolled.device_id, kNow + 2h);
  ASSERT_TRUE(revoked && revoked.value());
  EXPECT_TRUE(directory_->find_device(enrolled.device_id).value()->revoked);
}

TEST_F(DirectoryTest, EnrollmentRecordsTheFirstCertificateTokenAndUnlockCodeAndIsAudited) {
  const auto key = crypto::EcPrivateKey::generate();
  const std::string token_hash = protocol::report_token_hash(std::string(64, 'a'));
  const EnrolledDevice device = enroll(key, token_hash);
  // A request presenting the first certificate finds the device.
  auto found = directory_->find_device_by_certificate(device.device_id);
  ASSERT_TRUE(found && found.value());
  EXPECT_EQ(found.value()->id, device.device_id);
  EXPECT_EQ(found.value()->certificate_not_after,
            std::chrono::duration_cast<std::chrono::seconds>(
                device.certificate.not_after().time_since_epoch())
                .count());
  EXPECT_EQ(found.value()->policy_version, 0);  // enrolled, never checked in
  EXPECT_EQ(column(device.device_id, "report_token_hash"), token_hash);
  const std::regex shape("[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}");
  auto code = directory_->unlock_code(device.device_id);
  ASSERT_TRUE(code);
  EXPECT_TRUE(std::regex_match(code.value(), shape)) << code.value();
  EXPECT_EQ(directory_->unlock_code(device.device_id).value(), code.value());

  const auto entries = audited("device_enrolled");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].actor, "device:" + device.device_id);
  EXPECT_EQ(entries[0].subject, device.device_id);
  EXPECT_NE(entries[0].details.find("192.0.2.7"), std::string::npos) << entries[0].details;
  EXPECT_NE(entries[0].details.find("\"login\":\"alice\""), std::string::npos);

  // Without a report token hash nothing is stored for one, and no token matches.
  const EnrolledDevice old_agent = enroll(crypto::EcPrivateKey::generate());
  EXPECT_EQ(column(old_agent.device_id, "report_token_hash"), "");
  EXPECT_FALSE(directory_->report_token_matches(old_agent.device_id, std::string(64, 'a')).value());
  EXPECT_TRUE(directory_->report_token_matches(device.device_id, std::string(64, 'a')).value());
  EXPECT_FALSE(directory_->report_token_matches(device.device_id, std::string(64, 'b')).value());
  EXPECT_FALSE(
      directory_->report_token_matches(std::string(64, '0'), std::string(64, 'a')).value());
}

TEST_F(DirectoryTest, TheCertificateLifetimeIsThePolicys) {
  protocol::PolicyFile file;
  file.values.certificate_lifetime_days = 7;
  file.given = {"certificate_lifetime_days"};
  ASSERT_TRUE(Policies(*db_).set(kDefaultPolicyAudience, file, kNow));
  const EnrolledDevice device = enroll(crypto::EcPrivateKey::generate());
  EXPECT_EQ(device.policy.certificate_lifetime_days, 7);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(device.certificate.not_after() -
                                                             device.certificate.not_before()),
            std::chrono::days(7) + crypto::kCertificateBackdate);
}

TEST_F(DirectoryTest, ARenewedCertificateNamesTheSameDeviceAndIsAudited) {
  const auto key = crypto::EcPrivateKey::generate();
  const EnrolledDevice device = enroll(key);
  const auto csr = crypto::CertificateRequest::create(key, "device").value();
  auto renewed = directory_->renew_certificate(device.device_id, csr, std::chrono::days(10),
                                               kNow + 1h, *identity_);
  ASSERT_TRUE(renewed) << renewed.error().message();
  EXPECT_EQ(renewed.value().public_key_der(), key.public_key_der());
  const std::string fingerprint = crypto::to_hex(renewed.value().fingerprint());
  EXPECT_NE(fingerprint, device.device_id);
  auto found = directory_->find_device_by_certificate(fingerprint);
  ASSERT_TRUE(found && found.value());
  EXPECT_EQ(found.value()->id, device.device_id);
  EXPECT_EQ(found.value()->certificate_not_after,
            std::chrono::duration_cast<std::chrono::seconds>(
                renewed.value().not_after().time_since_epoch())
                .count());
  // The first certificate still names it too.
  EXPECT_TRUE(directory_->find_device_by_certificate(device.device_id).value());
  EXPECT_EQ(count("device_certificates"), 2);
  const auto entries = audited("certificate_renewed");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_NE(entries[0].details.find(fingerprint), std::string::npos);

  EXPECT_EQ(
      directory_
          ->renew_certificate(std::string(64, '0'), csr, std::chrono::days(10), kNow, *identity_)
          .error(),
      errc::no_such_device);
  EXPECT_EQ(count("device_certificates"), 2);
  // An unknown certificate names no device.
  EXPECT_FALSE(directory_->find_device_by_certificate(std::string(64, 'f')).value());
}

TEST_F(DirectoryTest, RevocationCoversEveryCertificateOfTheDeviceOnly) {
  const auto key = crypto::EcPrivateKey::generate();
  const EnrolledDevice device = enroll(key);
  const EnrolledDevice other = enroll(crypto::EcPrivateKey::generate());
  const auto csr = crypto::CertificateRequest::create(key, "device").value();
  const std::string renewed = crypto::to_hex(
      directory_->renew_certificate(device.device_id, csr, std::chrono::days(10), kNow, *identity_)
          .value()
          .fingerprint());
  EXPECT_FALSE(directory_->certificate_revoked(device.device_id).value());
  ASSERT_TRUE(directory_->revoke_device(device.device_id, kNow).value());
  EXPECT_TRUE(directory_->certificate_revoked(device.device_id).value());
  EXPECT_TRUE(directory_->certificate_revoked(renewed).value());
  EXPECT_FALSE(directory_->certificate_revoked(other.device_id).value());
  EXPECT_FALSE(directory_->certificate_revoked(std::string(64, 'f')).value());
}

TEST_F(DirectoryTest, ADeviceIsNamedByItsIdOrAUniquePrefixOfEightHexDigits) {
  insert_device("abcdef01" + std::string(56, '1'));
  insert_device("abcdef01" + std::string(56, '2'));
  insert_device("12345678" + std::string(56, '3'));
  EXPECT_EQ(directory_->resolve_device("12345678").value().id, "12345678" + std::string(56, '3'));
  EXPECT_EQ(directory_->resolve_device("ABCDEF011").value().id, "abcdef01" + std::string(56, '1'));
  EXPECT_EQ(directory_->resolve_device("abcdef01" + std::string(56, '2')).value().id,
            "abcdef01" + std::string(56, '2'));
  EXPECT_EQ(directory_->resolve_device("abcdef01").error(), errc::ambiguous_device);
  EXPECT_EQ(directory_->resolve_device("1234567").error(), errc::no_such_device);  // too short
  EXPECT_EQ(directory_->resolve_device("99999999").error(), errc::no_such_device);
  EXPECT_EQ(directory_->resolve_device("abcdef0g").error(), errc::no_such_device);
  EXPECT_EQ(directory_->resolve_device("").error(), errc::no_such_device);
}

TEST_F(DirectoryTest, AVerdictChangeIsAuditedWithBothVerdictsAndTheReasons) {
  const EnrolledDevice device = enroll(crypto::EcPrivateKey::generate());
  CheckinRecord record;
  record.description = laptop();
  record.policy_version = 1;
  record.block_after = to_unix(kNow) + 3600;
  ASSERT_TRUE(directory_->record_checkin(device.device_id, record, kNow).value());
  EXPECT_TRUE(audited("verdict_changed").empty());  // compliant, as enrolled

  record.verdict = protocol::Verdict::blocked;
  record.reasons = {{"pin_block_simple", protocol::ComplianceAction::block, "too simple"}};
  record.block_after = to_unix(kNow);
  record.report_token_hash = std::string(64, 'c');
  ASSERT_TRUE(directory_->record_checkin(device.device_id, record, kNow + 1min).value());
  ASSERT_TRUE(directory_->record_checkin(device.device_id, record, kNow + 2min).value());
  const auto entries = audited("verdict_changed");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_NE(entries[0].details.find("\"from\":\"compliant\""), std::string::npos);
  EXPECT_NE(entries[0].details.find("\"to\":\"blocked\""), std::string::npos);
  EXPECT_NE(entries[0].details.find("too simple"), std::string::npos);

  const Device stored = directory_->find_device(device.device_id).value().value();
  EXPECT_EQ(stored.verdict, protocol::Verdict::blocked);
  EXPECT_EQ(stored.reasons, record.reasons);
  EXPECT_EQ(stored.block_after, to_unix(kNow));
  EXPECT_EQ(column(device.device_id, "report_token_hash"), std::string(64, 'c'));
  // A check-in without a token hash keeps the one held.
  record.report_token_hash.clear();
  ASSERT_TRUE(directory_->record_checkin(device.device_id, record, kNow + 3min).value());
  EXPECT_EQ(column(device.device_id, "report_token_hash"), std::string(64, 'c'));
}

TEST_F(DirectoryTest, ACommandIsQueuedOnceAndSentUntilTheDeviceReportsItDone) {
  const EnrolledDevice device = enroll(crypto::EcPrivateKey::generate());
  auto wipe =
      directory_->queue_command(device.device_id, protocol::CommandKind::wipe, "admin:it", kNow);
  ASSERT_TRUE(wipe);
  // Asked again while pending: the same command.
  EXPECT_EQ(
      directory_
          ->queue_command(device.device_id, protocol::CommandKind::wipe, "admin:it", kNow + 1s)
          .value(),
      wipe.value());
  auto lock = directory_->queue_command(device.device_id, protocol::CommandKind::lock, "admin:it",
                                        kNow + 2s);
  ASSERT_TRUE(lock);
  EXPECT_NE(lock.value(), wipe.value());
  EXPECT_EQ(audited("wipe_requested").size(), 1u);
  EXPECT_EQ(audited("lock_requested").size(), 1u);
  EXPECT_EQ(audited("lock_requested")[0].actor, "admin:it");

  for (int i = 0; i < 2; ++i) {
    auto sent = directory_->take_commands_to_send(device.device_id, kNow + 1h);
    ASSERT_TRUE(sent);
    EXPECT_EQ(sent.value(),
              (std::vector<protocol::DeviceCommand>{{wipe.value(), protocol::CommandKind::wipe},
                                                    {lock.value(), protocol::CommandKind::lock}}));
  }
  EXPECT_EQ(directory_->pending_commands(device.device_id).value()[0].sent_at, to_unix(kNow + 1h));

  const std::vector<protocol::DeviceEvent> events = {
      {protocol::DeviceEventKind::locked, "command", lock.value(), to_unix(kNow)}};
  ASSERT_EQ(directory_->record_device_events(device.device_id, events, kNow + 2h).value(), 1u);
  auto left = directory_->take_commands_to_send(device.device_id, kNow + 3h).value();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].kind, protocol::CommandKind::wipe);
  EXPECT_EQ(directory_->find_device(device.device_id).value()->locked_at, to_unix(kNow + 2h));
  EXPECT_EQ(directory_->find_device(device.device_id).value()->lock_reason, "command");

  const std::vector<protocol::DeviceEvent> wiped = {
      {protocol::DeviceEventKind::wiped, "command", wipe.value(), to_unix(kNow)}};
  ASSERT_EQ(directory_->record_device_events(device.device_id, wiped, kNow + 4h).value(), 1u);
  EXPECT_TRUE(directory_->take_commands_to_send(device.device_id, kNow + 5h).value().empty());
  EXPECT_EQ(directory_->find_device(device.device_id).value()->wiped_at, to_unix(kNow + 4h));
  EXPECT_EQ(audited("device_wiped").size(), 1u);
  EXPECT_EQ(audited("device_locked").size(), 1u);

  // A revoked device gets no new commands; an unknown one neither.
  ASSERT_TRUE(directory_->revoke_device(device.device_id, kNow).value());
  EXPECT_EQ(
      directory_->queue_command(device.device_id, protocol::CommandKind::lock, "admin:it", kNow)
          .error(),
      errc::device_revoked);
  EXPECT_EQ(
      directory_->queue_command(std::string(64, '0'), protocol::CommandKind::lock, "admin:it", kNow)
          .error(),
      errc::no_such_device);
}

TEST_F(DirectoryTest, UnlockingUsesUpTheCode) {
  const EnrolledDevice device = enroll(crypto::EcPrivateKey::generate());
  const std::string before = directory_->unlock_code(device.device_id).value();
  const std::vector<protocol::DeviceEvent> locked = {
      {protocol::DeviceEventKind::locked, "pin_attempts", 0, to_unix(kNow)}};
  ASSERT_TRUE(directory_->record_device_events(device.device_id, locked, kNow));
  EXPECT_EQ(directory_->unlock_code(device.device_id).value(), before);
  const std::vector<protocol::DeviceEvent> unlocked = {
      {protocol::DeviceEventKind::unlocked, "unlock_code", 0, to_unix(kNow)}};
  ASSERT_TRUE(directory_->record_device_events(device.device_id, unlocked, kNow + 1min));
  const std::string after = directory_->unlock_code(device.device_id).value();
  EXPECT_NE(after, before);
  EXPECT_EQ(directory_->find_device(device.device_id).value()->locked_at, 0);
  EXPECT_EQ(audited("device_unlocked").size(), 1u);
  // The codes never reach the audit log.
  const auto entries = AuditLog(*db_).since(UnixTime{}, 1000).value();
  for (const auto& e : entries) {
    EXPECT_EQ(e.details.find(before), std::string::npos) << e.event;
    EXPECT_EQ(e.details.find(after), std::string::npos) << e.event;
  }
  EXPECT_EQ(directory_->record_device_events(std::string(64, '0'), unlocked, kNow).error(),
            errc::no_such_device);
}

}  // namespace
}  // namespace kaban::server
