#include <array>
#include <atomic>
#include <regex>
#include <thread>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
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
  const auto lifetime = device.certificate.not_after() - device.certificate.not_before();
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(lifetime),
            kDeviceCertificateValidity + crypto::kCertificateBackdate);

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
  auto checked = directory_->record_checkin(enrolled.device_id, newer, kNow + 1h);
  ASSERT_TRUE(checked);
  EXPECT_TRUE(checked.value());
  auto unknown = directory_->record_checkin(std::string(64, '0'), newer, kNow);
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
  EXPECT_FALSE(first.revoked);
  EXPECT_EQ(devices.value()[1].login, "bob");

  auto revoked = directory_->revoke_device(enrolled.device_id, kNow + 2h);
  ASSERT_TRUE(revoked && revoked.value());
  EXPECT_TRUE(directory_->find_device(enrolled.device_id).value()->revoked);
}

}  // namespace
}  // namespace kaban::server
