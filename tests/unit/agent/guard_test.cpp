// The guard: trusted time against a clock set back, the signed lease (offline block and wipe),
// the wrong-PIN counter, lock and unlock, wipes, and guard.json itself. Clocks are fake
// ClockReadings; nothing sleeps.
#include "kaban/agent/guard.hpp"

#include <sys/stat.h>

#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kaban/agent/error.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/ed25519.hpp"
#include "kaban/protocol/compliance.hpp"
#include "message_lane_support.hpp"
#include "test_support.hpp"

namespace kaban::agent {
namespace {

using testing::kFastKdf;
using testing::kNow;
using testing::kPin;

constexpr std::int64_t kMinute = 60;
constexpr std::int64_t kHour = 3600;
constexpr std::int64_t kDay = 86400;
constexpr std::string_view kWrongPin = "0000-0000";
constexpr std::string_view kUnlockCode = "ABCD-EFGH-JKLM";
const std::string kDeviceId(64, 'd');
const std::string kReportToken(64, 'e');

ClockReading clock_at(std::int64_t wall, std::int64_t since_boot, std::string boot = "boot-a") {
  return {wall, std::move(boot), since_boot};
}

// Signs policies and leases as the server would, with a throwaway key.
class FakeServer {
 public:
  std::string signing_key() const { return crypto::to_hex(key_.public_key().bytes()); }

  protocol::SignedText policy(std::int64_t version, const protocol::Policy& settings = {},
                              const std::string& device = kDeviceId) const {
    protocol::DevicePolicy p{device, version, kNow, settings};
    return protocol::sign_text(protocol::device_policy_text(p), key_);
  }

  protocol::SignedText lease(std::int64_t issued_at, std::int64_t block_after,
                             std::int64_t wipe_after,
                             protocol::Verdict verdict = protocol::Verdict::compliant,
                             const std::string& device = kDeviceId) const {
    protocol::Lease l{device, issued_at, block_after, wipe_after, 1, verdict};
    return protocol::sign_text(protocol::lease_text(l), key_);
  }

  // A lease as the server issues it at `issued_at` under the default offline rules.
  protocol::SignedText usual_lease(std::int64_t issued_at) const {
    return lease(issued_at, issued_at + 12 * kHour, issued_at + 90 * kDay);
  }

 private:
  crypto::Ed25519PrivateKey key_ = crypto::Ed25519PrivateKey::generate();
};

GuardState enrolled_state(const FakeServer& server) {
  GuardState s;
  s.device_id = kDeviceId;
  s.server_host = "sync.example.org";
  s.server_port = 8443;
  s.ca_pem = "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n";
  s.signing_key = server.signing_key();
  s.report_token = kReportToken;
  return s;
}

class GuardTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    store_.reset();  // open_guarded opens it; a wipe needs it closed
  }

  // Writes an enrolled guard that took `policy_settings` and a lease at a check-in at kNow
  // (boot "boot-a", 1000 s after boot).
  void enroll(const protocol::Policy& settings,
              std::optional<protocol::SignedText> lease = std::nullopt) {
    GuardState s = enrolled_state(server_);
    std::string why;
    const auto checkin = accept_checkin(
        s, server_.policy(1, settings), lease ? *lease : server_.usual_lease(kNow), reasons_,
        protocol::unlock_code_hash(kUnlockCode), clock_at(kNow, 1000), why);
    ASSERT_TRUE(checkin) << why;
    write(s);
  }

  void write(const GuardState& state) {
    const auto put = [&](GuardState& s) { s = state; };
    ASSERT_TRUE(update_guard(dir_, put));
  }

  GuardState guard() {
    auto s = load_guard(dir_);
    EXPECT_TRUE(s) << s.error().message();
    return s ? s.value() : GuardState{};
  }

  static protocol::Policy pin_policy(protocol::PinFailureAction action, int attempts = 3) {
    protocol::Policy p;
    p.pin_max_attempts = attempts;
    p.pin_failure_action = action;
    return p;
  }

  void expect_store_gone() {
    EXPECT_FALSE(Store::exists(dir_));
    EXPECT_FALSE(std::filesystem::exists(dir_ / Store::kDatabaseFile));
    EXPECT_FALSE(std::filesystem::exists(dir_ / Store::kEnvelopeFile));
    EXPECT_FALSE(std::filesystem::exists(dir_ / "store.db-journal"));
  }

  FakeServer server_;
  std::vector<protocol::ComplianceReason> reasons_;
};

// ---- trusted time ----------------------------------------------------------------------------

TEST(TrustedTime, NeverGoesBackWhenTheWallClockIsSetBackAndRecordsTheStep) {
  GuardState s;
  EXPECT_EQ(trusted_time(s, clock_at(kNow, 500)), kNow);
  EXPECT_EQ(s.rollback_seconds, 0);

  // Within the tolerance (NTP's corrections): not a rollback worth reporting.
  EXPECT_EQ(trusted_time(s, clock_at(kNow - 100, 510)), kNow);
  EXPECT_EQ(s.rollback_seconds, 0);

  EXPECT_EQ(trusted_time(s, clock_at(kNow - 2 * kDay, 520)), kNow);
  EXPECT_EQ(s.rollback_seconds, 2 * kDay);
  // A smaller step back later does not shrink the record.
  EXPECT_EQ(trusted_time(s, clock_at(kNow - kHour, 530)), kNow);
  EXPECT_EQ(s.rollback_seconds, 2 * kDay);
  // Forward again: time goes on from the wall clock.
  EXPECT_EQ(trusted_time(s, clock_at(kNow + kHour, 540)), kNow + kHour);
  EXPECT_EQ(s.high_water, kNow + kHour);
}

TEST(TrustedTime, AdvancesWithTheBootClockAfterTheAnchorInTheSameBoot) {
  FakeServer server;
  GuardState s = enrolled_state(server);
  std::string why;
  ASSERT_TRUE(accept_checkin(s, server.policy(1), server.usual_lease(kNow), {}, "",
                             clock_at(kNow, 1000), why))
      << why;
  EXPECT_EQ(s.anchor_server_time, kNow);
  EXPECT_EQ(s.anchor_boot_id, "boot-a");
  EXPECT_EQ(s.anchor_since_boot, 1000);

  // Two hours of boot time later, with the wall clock set back a day.
  const std::int64_t t = trusted_time(s, clock_at(kNow - kDay, 1000 + 2 * kHour));
  EXPECT_EQ(t, kNow + 2 * kHour);
  EXPECT_EQ(s.rollback_seconds, kDay + 2 * kHour);
}

TEST(TrustedTime, DoesNotCarryTheAnchorAcrossAReboot) {
  FakeServer server;
  GuardState s = enrolled_state(server);
  std::string why;
  ASSERT_TRUE(accept_checkin(s, server.policy(1), server.usual_lease(kNow), {}, "",
                             clock_at(kNow, 1000), why))
      << why;
  ASSERT_EQ(trusted_time(s, clock_at(kNow + kHour, 1000 + kHour)), kNow + kHour);

  // After a reboot the boot clock restarts; a large since_boot from the new boot must not be
  // added to the old anchor. The high-water mark is the floor.
  GuardState rebooted = s;
  EXPECT_EQ(trusted_time(rebooted, clock_at(kNow - kDay, 50 * kDay, "boot-b")), kNow + kHour);
  // A platform that cannot tell the boot apart: no anchor either.
  GuardState unknown_boot = s;
  EXPECT_EQ(trusted_time(unknown_boot, clock_at(kNow - kDay, 50 * kDay, "")), kNow + kHour);
}

TEST(TrustedTime, AnchorIsIgnoredIfTheBootClockRunsBackwards) {
  GuardState s;
  s.anchor_server_time = kNow;
  s.anchor_boot_id = "boot-a";
  s.anchor_since_boot = 5000;
  s.high_water = kNow;
  EXPECT_EQ(trusted_time(s, clock_at(kNow - kDay, 10)), kNow);
}

TEST_F(GuardTest, HighWaterMarkSurvivesAReload) {
  const auto observe = [](GuardState& s) { trusted_time(s, clock_at(kNow + 5000, 10)); };
  ASSERT_TRUE(update_guard(dir_, observe));

  GuardState reloaded = guard();
  EXPECT_EQ(reloaded.high_water, kNow + 5000);
  // A new process with the wall clock set back still sees the time it saw before.
  EXPECT_EQ(trusted_time(reloaded, clock_at(kNow, 20, "boot-b")), kNow + 5000);
  EXPECT_EQ(reloaded.rollback_seconds, 5000);
}

TEST(TrustedTime, ACheckinCorrectsAWallClockThatOnceRanAhead) {
  FakeServer server;
  GuardState s = enrolled_state(server);
  ASSERT_EQ(trusted_time(s, clock_at(kNow + 365 * kDay, 100)), kNow + 365 * kDay);
  std::string why;
  ASSERT_TRUE(accept_checkin(s, server.policy(1), server.usual_lease(kNow), {}, "",
                             clock_at(kNow, 200), why))
      << why;
  EXPECT_EQ(s.high_water, kNow);
  const std::int64_t t = trusted_time(s, clock_at(kNow + 10, 210));
  EXPECT_EQ(t, kNow + 10);
  EXPECT_EQ(access_at(s, t), Access::open);
}

// ---- the lease -------------------------------------------------------------------------------

TEST_F(GuardTest, OfflineBlockIsReachedByTrustedTimeEvenWithTheWallClockSetBack) {
  enroll({});
  GuardState s = guard();

  // Eleven hours on: still within the lease.
  GuardState early = s;
  const std::int64_t t_early = trusted_time(early, clock_at(kNow - kDay, 1000 + 11 * kHour));
  EXPECT_EQ(access_at(early, t_early), Access::open);

  // Thirteen hours of boot time on, the wall clock set back two days: blocked all the same.
  const std::int64_t t = trusted_time(s, clock_at(kNow - 2 * kDay, 1000 + 13 * kHour));
  EXPECT_EQ(t, kNow + 13 * kHour);
  EXPECT_EQ(access_at(s, t), Access::offline_blocked);

  std::string why;
  auto content = check_access(s, Purpose::content, t, why);
  ASSERT_FALSE(content);
  EXPECT_EQ(content.error(), errc::access_blocked);
  EXPECT_NE(why.find("last synced 13 hours ago"), std::string::npos) << why;
  EXPECT_NE(why.find("allows 12 hours offline"), std::string::npos) << why;
  EXPECT_NE(why.find("kaban sync"), std::string::npos) << why;

  why.clear();
  auto it_messages = check_access(s, Purpose::it_messages, t, why);
  ASSERT_FALSE(it_messages);
  EXPECT_EQ(it_messages.error(), errc::access_blocked);

  why.clear();
  EXPECT_TRUE(check_access(s, Purpose::sync, t, why)) << why;

  // A check-in lifts it.
  ASSERT_TRUE(accept_checkin(s, server_.policy(1), server_.usual_lease(kNow + 14 * kHour), {}, "",
                             clock_at(kNow - 2 * kDay, 1000 + 14 * kHour), why))
      << why;
  const std::int64_t after = trusted_time(s, clock_at(kNow - 2 * kDay, 1000 + 14 * kHour + 5));
  EXPECT_TRUE(check_access(s, Purpose::content, after, why)) << why;
}

TEST_F(GuardTest, TheBlockMessageSaysHowLongInDays) {
  enroll({});
  GuardState s = guard();
  std::string why;
  ASSERT_FALSE(check_access(s, Purpose::content, kNow + 3 * kDay + 5 * kHour, why));
  EXPECT_NE(why.find("last synced 3 days ago"), std::string::npos) << why;
}

TEST_F(GuardTest, PastWipeAfterOpeningWipesTheStore) {
  enroll({});
  ASSERT_TRUE(Store::exists(dir_));

  std::string why;
  // A new boot, 91 days after the check-in by the wall clock.
  auto opened = open_guarded(dir_, kPin, clock_at(kNow + 91 * kDay, 100, "boot-b"), why);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), errc::device_wiped);
  EXPECT_NE(why.find("wiped"), std::string::npos) << why;
  expect_store_gone();

  const GuardState s = guard();
  EXPECT_EQ(s.wiped_at, kNow + 91 * kDay);
  EXPECT_EQ(s.wipe_reason, "offline");
  ASSERT_EQ(s.unreported.size(), 1u);
  EXPECT_EQ(s.unreported[0], (protocol::DeviceEvent{protocol::DeviceEventKind::wiped, "offline", 0,
                                                    kNow + 91 * kDay}));
  // What reports the wipe is kept; the policy and lease are gone.
  EXPECT_EQ(s.device_id, kDeviceId);
  EXPECT_EQ(s.report_token, kReportToken);
  EXPECT_EQ(s.server_host, "sync.example.org");
  EXPECT_FALSE(s.ca_pem.empty());
  EXPECT_TRUE(s.policy.text.empty());
  EXPECT_TRUE(s.lease.text.empty());
  EXPECT_EQ(access_at(s, kNow + 92 * kDay), Access::wiped);

  // Every later attempt is refused the same way, and queues nothing more.
  why.clear();
  auto again = open_guarded(dir_, kPin, clock_at(kNow + 92 * kDay, 200, "boot-b"), why);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::device_wiped);
  EXPECT_NE(why.find("enrollment code"), std::string::npos) << why;
  EXPECT_EQ(guard().unreported.size(), 1u);
}

TEST_F(GuardTest, AWipeVerdictWipesAtTheNextOpen) {
  reasons_ = {{"rooted_action", protocol::ComplianceAction::wipe, "this device is rooted"}};
  enroll({}, server_.lease(kNow, kNow, kNow, protocol::Verdict::wipe));
  std::string why;
  auto opened = open_guarded(dir_, kPin, clock_at(kNow + 5, 1005), why);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), errc::device_wiped);
  expect_store_gone();
  EXPECT_EQ(guard().wipe_reason, "verdict");
}

TEST_F(GuardTest, ARecordedWipeThatWasCutShortIsFinishedAtTheNextOpen) {
  enroll({});
  ASSERT_TRUE(record_wipe(dir_, "command", 42, kNow + 10));
  ASSERT_TRUE(Store::exists(dir_));  // as if the process died before erase_store

  std::string why;
  auto opened = open_guarded(dir_, kPin, clock_at(kNow + 20, 1020), why);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), errc::device_wiped);
  EXPECT_NE(why.find("IT asked for it"), std::string::npos) << why;
  expect_store_gone();
  const GuardState s = guard();
  ASSERT_EQ(s.unreported.size(), 1u);
  EXPECT_EQ(s.unreported[0].command_id, 42);
  EXPECT_EQ(s.unreported[0].reason, "command");
}

TEST_F(GuardTest, ABlockedVerdictAllowsOnlyItMessagesAndSync) {
  reasons_ = {
      {"require_disk_encryption", protocol::ComplianceAction::block, "the disk is not encrypted"},
      {"clock", protocol::ComplianceAction::warn, "the clock was set back"}};
  enroll({}, server_.lease(kNow, kNow, kNow + 90 * kDay, protocol::Verdict::blocked));
  const GuardState s = guard();
  const std::int64_t t = kNow + kMinute;
  EXPECT_EQ(access_at(s, t), Access::policy_blocked);

  std::string why;
  EXPECT_TRUE(check_access(s, Purpose::it_messages, t, why)) << why;
  EXPECT_TRUE(check_access(s, Purpose::sync, t, why)) << why;
  auto content = check_access(s, Purpose::content, t, why);
  ASSERT_FALSE(content);
  EXPECT_EQ(content.error(), errc::access_blocked);
  EXPECT_NE(why.find("the disk is not encrypted"), std::string::npos) << why;
  EXPECT_EQ(why.find("the clock was set back"), std::string::npos) << why;

  // The PIN still opens the store: what may be read is check_access's to say.
  why.clear();
  auto opened = open_guarded(dir_, kPin, clock_at(t, 1060), why);
  EXPECT_TRUE(opened) << why;
}

// ---- the PIN ---------------------------------------------------------------------------------

TEST_F(GuardTest, WrongPinsAreCountedOnDiskAndTheRightPinResetsTheCount) {
  enroll(pin_policy(protocol::PinFailureAction::lock, 5));
  std::string why;
  auto first = open_guarded(dir_, kWrongPin, clock_at(kNow + 10, 1010), why);
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error(), errc::wrong_pin);
  EXPECT_NE(why.find("4 attempts left"), std::string::npos) << why;
  // As a new process sees it: read from disk.
  EXPECT_EQ(guard().pin_failures, 1);

  auto second = open_guarded(dir_, kWrongPin, clock_at(kNow + 20, 1020), why);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), errc::wrong_pin);
  EXPECT_NE(why.find("3 attempts left"), std::string::npos) << why;
  EXPECT_EQ(guard().pin_failures, 2);

  auto right = open_guarded(dir_, kPin, clock_at(kNow + 30, 1030), why);
  ASSERT_TRUE(right) << why;
  EXPECT_EQ(guard().pin_failures, 0);
}

TEST_F(GuardTest, AFailureThatIsNotAboutThePinIsNotCounted) {
  enroll(pin_policy(protocol::PinFailureAction::wipe, 3));
  // The database is gone but the envelope is there: Store::open fails with no_store.
  std::filesystem::remove(dir_ / Store::kDatabaseFile);
  std::string why;
  auto opened = open_guarded(dir_, kWrongPin, clock_at(kNow + 10, 1010), why);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), errc::no_store);
  EXPECT_EQ(guard().pin_failures, 0);
}

TEST_F(GuardTest, TooManyWrongPinsLockAndOnlyItsUnlockCodeUnlocks) {
  enroll(pin_policy(protocol::PinFailureAction::lock, 3));
  std::string why;
  for (int i = 1; i <= 2; ++i) {
    auto wrong = open_guarded(dir_, kWrongPin, clock_at(kNow + i, 1000 + i), why);
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error(), errc::wrong_pin);
  }
  auto third = open_guarded(dir_, kWrongPin, clock_at(kNow + 3, 1003), why);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error(), errc::device_locked);
  EXPECT_NE(why.find("kaban unlock"), std::string::npos) << why;
  EXPECT_TRUE(Store::exists(dir_));  // locking keeps the data

  GuardState s = guard();
  EXPECT_TRUE(s.locked);
  EXPECT_EQ(s.lock_reason, "pin_attempts");
  EXPECT_EQ(s.locked_at, kNow + 3);
  ASSERT_EQ(s.unreported.size(), 1u);
  EXPECT_EQ(s.unreported[0], (protocol::DeviceEvent{protocol::DeviceEventKind::locked,
                                                    "pin_attempts", 0, kNow + 3}));

  // The right PIN is not even tried now.
  why.clear();
  auto right = open_guarded(dir_, kPin, clock_at(kNow + 4, 1004), why);
  ASSERT_FALSE(right);
  EXPECT_EQ(right.error(), errc::device_locked);
  EXPECT_NE(why.find("too many wrong PINs"), std::string::npos) << why;
  EXPECT_EQ(guard().pin_failures, 3);

  // A wrong code: refused, still locked.
  why.clear();
  auto wrong_code = unlock_device(dir_, "ABCD-EFGH-JKLN", kNow + 5, why);
  ASSERT_FALSE(wrong_code);
  EXPECT_EQ(wrong_code.error(), errc::invalid_input);
  EXPECT_FALSE(why.empty());
  EXPECT_TRUE(guard().locked);

  // The right code, typed in lower case with spaces.
  why.clear();
  ASSERT_TRUE(unlock_device(dir_, "abcd efgh jklm", kNow + 6, why)) << why;
  s = guard();
  EXPECT_FALSE(s.locked);
  EXPECT_EQ(s.pin_failures, 0);
  ASSERT_EQ(s.unreported.size(), 2u);
  EXPECT_EQ(s.unreported[1], (protocol::DeviceEvent{protocol::DeviceEventKind::unlocked,
                                                    "unlock_code", 0, kNow + 6}));

  auto opened = open_guarded(dir_, kPin, clock_at(kNow + 7, 1007), why);
  EXPECT_TRUE(opened) << why;
}

TEST_F(GuardTest, UnlockingADeviceThatIsNotLockedIsNotAllowed) {
  enroll({});
  std::string why;
  auto unlocked = unlock_device(dir_, kUnlockCode, kNow, why);
  ASSERT_FALSE(unlocked);
  EXPECT_EQ(unlocked.error(), errc::not_allowed);
  EXPECT_TRUE(guard().unreported.empty());
}

TEST_F(GuardTest, TooManyWrongPinsWipeWhenThePolicySaysSo) {
  enroll(pin_policy(protocol::PinFailureAction::wipe, 3));
  std::string why;
  for (int i = 1; i <= 2; ++i)
    ASSERT_FALSE(open_guarded(dir_, kWrongPin, clock_at(kNow + i, 1000 + i), why));
  auto third = open_guarded(dir_, kWrongPin, clock_at(kNow + 3, 1003), why);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error(), errc::device_wiped);
  EXPECT_NE(why.find("3 wrong PINs"), std::string::npos) << why;
  expect_store_gone();
  const GuardState s = guard();
  EXPECT_EQ(s.wipe_reason, "pin_attempts");
  ASSERT_EQ(s.unreported.size(), 1u);
  EXPECT_EQ(s.unreported[0].kind, protocol::DeviceEventKind::wiped);

  // Even the right PIN finds nothing now.
  auto right = open_guarded(dir_, kPin, clock_at(kNow + 4, 1004), why);
  ASSERT_FALSE(right);
  EXPECT_EQ(right.error(), errc::device_wiped);
}

TEST_F(GuardTest, ALockCommandOnALockedDeviceIsStillReportedOnce) {
  enroll({});
  ASSERT_TRUE(lock_device(dir_, "pin_attempts", 0, kNow + 1));
  ASSERT_TRUE(lock_device(dir_, "command", 7, kNow + 2));
  ASSERT_TRUE(lock_device(dir_, "command", 7, kNow + 3));  // the command sent again
  const GuardState s = guard();
  EXPECT_EQ(s.lock_reason, "pin_attempts");
  ASSERT_EQ(s.unreported.size(), 2u);
  EXPECT_EQ(s.unreported[1].command_id, 7);
}

TEST_F(GuardTest, OpeningWhereThereIsNoStoreWritesNothing) {
  const auto nowhere = tmp_ / "not-enrolled";
  std::string why;
  auto opened = open_guarded(nowhere, kPin, clock_at(kNow, 1), why);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), errc::no_store);
  EXPECT_FALSE(std::filesystem::exists(nowhere));
}

TEST(PinNeeded, FollowsTheIdleMinutes) {
  protocol::Policy p;
  p.pin_idle_minutes = 15;
  EXPECT_FALSE(pin_needed(p, kNow, kNow + 15 * kMinute));
  EXPECT_TRUE(pin_needed(p, kNow, kNow + 15 * kMinute + 1));
  EXPECT_TRUE(pin_needed(p, kNow, kNow - 1));  // the clock went back: ask
  p.pin_idle_minutes = 0;
  EXPECT_TRUE(pin_needed(p, kNow, kNow));
}

// ---- accepting check-ins ---------------------------------------------------------------------

class AcceptCheckinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = enrolled_state(server_);
    std::string why;
    ASSERT_TRUE(accept_checkin(state_, server_.policy(5), server_.usual_lease(kNow), {}, "h1",
                               clock_at(kNow, 1000), why))
        << why;
    trusted_time(state_, clock_at(kNow - kDay, 1000 + kHour));  // leaves a rollback to clear
    before_ = state_;
  }

  // Expects a refusal that changed nothing.
  void expect_refused(const protocol::SignedText& policy, const protocol::SignedText& lease,
                      std::string_view words) {
    std::string why;
    auto r = accept_checkin(state_, policy, lease, {}, "h2", clock_at(kNow + kHour, 2000), why);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::policy_refused);
    EXPECT_NE(why.find(words), std::string::npos) << why;
    EXPECT_EQ(state_, before_);
  }

  FakeServer server_;
  GuardState state_;
  GuardState before_;
};

TEST_F(AcceptCheckinTest, RefusesAnUnsignedPolicyOrLease) {
  auto policy = server_.policy(6);
  policy.signature.clear();
  expect_refused(policy, server_.usual_lease(kNow + kHour), "without a signature");
  auto lease = server_.usual_lease(kNow + kHour);
  lease.signature.clear();
  expect_refused(server_.policy(6), lease, "without a signature");
}

TEST_F(AcceptCheckinTest, RefusesATamperedLease) {
  auto lease = server_.usual_lease(kNow + kHour);
  const auto at = lease.text.find(std::to_string(kNow + kHour + 12 * kHour));
  ASSERT_NE(at, std::string::npos);
  lease.text.replace(at, 10, std::to_string(kNow + kHour + 365 * kDay).substr(0, 10));
  expect_refused(server_.policy(6), lease, "not signed with the server's key");
}

TEST_F(AcceptCheckinTest, RefusesDocumentsSignedByAnotherKey) {
  FakeServer impostor;
  expect_refused(impostor.policy(6), server_.usual_lease(kNow + kHour), "not signed");
  expect_refused(server_.policy(6), impostor.usual_lease(kNow + kHour), "not signed");
}

TEST_F(AcceptCheckinTest, RefusesAnotherDevicesPolicyOrLease) {
  const std::string other(64, 'f');
  expect_refused(server_.policy(6, {}, other), server_.usual_lease(kNow + kHour), "another device");
  expect_refused(
      server_.policy(6),
      server_.lease(kNow + kHour, kNow + 2 * kHour, 0, protocol::Verdict::compliant, other),
      "another device");
}

TEST_F(AcceptCheckinTest, RefusesAnOlderPolicyVersionOrAnOlderLease) {
  expect_refused(server_.policy(4), server_.usual_lease(kNow + kHour), "older than version 5");
  expect_refused(server_.policy(6), server_.usual_lease(kNow - 1), "older than the one held");
}

TEST_F(AcceptCheckinTest, RefusesADocumentOfTheWrongType) {
  // A lease signed by the right key offered as a policy.
  expect_refused(server_.usual_lease(kNow + kHour), server_.usual_lease(kNow + kHour),
                 "could not be read");
}

TEST_F(AcceptCheckinTest, AcceptsANewerPolicyAndLease) {
  protocol::Policy settings;
  settings.pin_max_attempts = 4;
  const auto policy = server_.policy(6, settings);
  const auto lease = server_.usual_lease(kNow + kHour);
  const std::vector<protocol::ComplianceReason> reasons = {
      {"min_os_version", protocol::ComplianceAction::warn, "Debian 11 is older than 12"}};
  std::string why;
  ASSERT_TRUE(
      accept_checkin(state_, policy, lease, reasons, "h2", clock_at(kNow - kDay, 2000), why))
      << why;
  EXPECT_EQ(state_.policy, policy);
  EXPECT_EQ(state_.lease, lease);
  EXPECT_EQ(state_.reasons, reasons);
  EXPECT_EQ(state_.unlock_code_hash, "h2");
  EXPECT_EQ(state_.last_checkin_at, kNow + kHour);
  EXPECT_EQ(state_.anchor_server_time, kNow + kHour);
  EXPECT_EQ(state_.anchor_since_boot, 2000);
  EXPECT_EQ(state_.rollback_seconds, 0);
  EXPECT_EQ(current_policy(state_).pin_max_attempts, 4);
  ASSERT_TRUE(current_lease(state_));
  EXPECT_EQ(current_lease(state_)->issued_at, kNow + kHour);

  // The same version again is not older.
  EXPECT_TRUE(accept_checkin(state_, policy, server_.usual_lease(kNow + 2 * kHour), {}, "h2",
                             clock_at(kNow, 3000), why))
      << why;
}

TEST(AcceptPolicy, TakesTheEnrollmentPolicyAndRefusesAnotherDevices) {
  FakeServer server;
  GuardState s = enrolled_state(server);
  EXPECT_EQ(current_policy(s), protocol::Policy{});  // the defaults before any
  protocol::Policy settings;
  settings.pin_min_length = 8;
  std::string why;
  const GuardState before = s;
  auto refused = accept_policy(s, server.policy(1, settings, std::string(64, 'f')), why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::policy_refused);
  EXPECT_EQ(s, before);

  ASSERT_TRUE(accept_policy(s, server.policy(1, settings), why)) << why;
  EXPECT_EQ(current_policy(s).pin_min_length, 8);
  EXPECT_FALSE(current_lease(s));
  EXPECT_EQ(access_at(s, kNow + 365 * kDay), Access::open);  // no lease, no offline rule yet
}

TEST(AcceptPolicy, RefusesWithoutAUsableSigningKey) {
  FakeServer server;
  GuardState s = enrolled_state(server);
  s.signing_key = "not hex";
  std::string why;
  auto r = accept_policy(s, server.policy(1), why);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::policy_refused);
  EXPECT_NE(why.find("signing key"), std::string::npos) << why;
}

// ---- guard.json ------------------------------------------------------------------------------

class GuardFileTest : public ::testing::Test {
 protected:
  kaban::testing::TempDir tmp_;
  std::filesystem::path dir_ = tmp_ / "device";
  std::filesystem::path file_ = dir_ / "guard.json";
};

TEST_F(GuardFileTest, AMissingFileIsTheDefaultState) {
  auto s = load_guard(dir_);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s.value(), GuardState{});
}

TEST_F(GuardFileTest, RoundTripsEveryFieldWithOwnerOnlyPermissions) {
  FakeServer server;
  GuardState s = enrolled_state(server);
  s.policy = server.policy(3);
  s.lease = server.usual_lease(kNow);
  s.reasons = {{"clock", protocol::ComplianceAction::warn, "the clock was set back"}};
  s.unlock_code_hash = std::string(64, 'a');
  s.last_checkin_at = kNow;
  s.high_water = kNow + 1;
  s.anchor_server_time = kNow;
  s.anchor_boot_id = "boot-a";
  s.anchor_since_boot = 99;
  s.rollback_seconds = 400;
  s.pin_failures = 2;
  s.locked = true;
  s.lock_reason = "command";
  s.locked_at = kNow + 2;
  s.wiped_at = kNow + 3;
  s.wipe_reason = "command";
  s.unreported = {{protocol::DeviceEventKind::locked, "command", 9, kNow + 2},
                  {protocol::DeviceEventKind::wiped, "command", 10, kNow + 3}};
  const auto put = [&](GuardState& g) { g = s; };
  auto written = update_guard(dir_, put);
  ASSERT_TRUE(written) << written.error().message();
  EXPECT_EQ(written.value(), s);

  auto read = load_guard(dir_);
  ASSERT_TRUE(read);
  EXPECT_EQ(read.value(), s);

  struct stat st {};
  ASSERT_EQ(::stat(file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "guard.json.tmp"));
}

TEST_F(GuardFileTest, AnUnreadableFileIsAStorageFailureNotAnEmptyGuard) {
  for (const std::string text :
       {"", "{not json", "[1, 2]", R"({"pin_failures": "three"})", R"({"locked": 1})",
        R"({"reasons": [{"action": "explode"}]})", R"({"unreported": [{"kind": "melted"}]})",
        R"({"server_port": 70000})"}) {
    kaban::testing::write_text(file_, text);
    auto s = load_guard(dir_);
    ASSERT_FALSE(s) << text;
    EXPECT_EQ(s.error(), errc::storage_failed) << text;
    // update_guard refuses as well, and leaves the file as it was.
    const auto change = [](GuardState& g) { g.pin_failures = 0; };
    EXPECT_FALSE(update_guard(dir_, change)) << text;
    EXPECT_EQ(kaban::testing::text_of(file_), text);
  }
}

TEST_F(GuardFileTest, AnOversizedFileIsRefused) {
  kaban::testing::write_text(file_, R"({"device_id": ")" + std::string(1024 * 1024, 'x') + R"("})");
  auto s = load_guard(dir_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), errc::storage_failed);
}

TEST_F(GuardFileTest, UnknownFieldsOfANewerAgentAreIgnoredAndKept) {
  kaban::testing::write_text(file_, R"({"device_id": "abc", "pin_failures": 1,
                                        "newer_setting": {"x": [1, 2]}})");
  auto s = load_guard(dir_);
  ASSERT_TRUE(s);
  EXPECT_EQ(s.value().device_id, "abc");
  EXPECT_EQ(s.value().pin_failures, 1);

  const auto change = [](GuardState& g) { ++g.pin_failures; };
  ASSERT_TRUE(update_guard(dir_, change));
  EXPECT_EQ(load_guard(dir_).value().pin_failures, 2);
  EXPECT_NE(kaban::testing::text_of(file_).find("newer_setting"), std::string::npos);
}

TEST_F(GuardFileTest, UpdatesFromTwoThreadsAtOnceLoseNothing) {
  constexpr int kPerThread = 20;
  const auto count = [](GuardState& g) { ++g.pin_failures; };
  const auto work = [&] {
    for (int i = 0; i < kPerThread; ++i)
      ASSERT_TRUE(update_guard(dir_, count));
  };
  std::thread a(work);
  std::thread b(work);
  a.join();
  b.join();
  EXPECT_EQ(load_guard(dir_).value().pin_failures, 2 * kPerThread);
}

TEST_F(GuardFileTest, EraseStoreKeepsWhatReportsTheWipe) {
  FakeServer server;
  GuardState s = enrolled_state(server);
  s.policy = server.policy(1);
  s.lease = server.usual_lease(kNow);
  s.unlock_code_hash = "h";
  s.reasons = {{"clock", protocol::ComplianceAction::warn, "w"}};
  const auto put = [&](GuardState& g) { g = s; };
  ASSERT_TRUE(update_guard(dir_, put));
  ASSERT_TRUE(Store::create(dir_, kPin, kFastKdf));

  ASSERT_TRUE(wipe_device(dir_, "command", 3, kNow + 1));
  ASSERT_TRUE(record_wipe(dir_, "command", 3, kNow + 2));  // again: nothing more is queued
  EXPECT_FALSE(Store::exists(dir_));
  const GuardState after = load_guard(dir_).value();
  EXPECT_EQ(after.device_id, s.device_id);
  EXPECT_EQ(after.server_host, s.server_host);
  EXPECT_EQ(after.server_port, s.server_port);
  EXPECT_EQ(after.ca_pem, s.ca_pem);
  EXPECT_EQ(after.report_token, s.report_token);
  EXPECT_EQ(after.wiped_at, kNow + 1);
  EXPECT_EQ(after.wipe_reason, "command");
  EXPECT_TRUE(after.policy.text.empty());
  EXPECT_TRUE(after.lease.text.empty());
  EXPECT_TRUE(after.reasons.empty());
  EXPECT_TRUE(after.unlock_code_hash.empty());
  ASSERT_EQ(after.unreported.size(), 1u);
  EXPECT_EQ(after.unreported[0],
            (protocol::DeviceEvent{protocol::DeviceEventKind::wiped, "command", 3, kNow + 1}));
}

// ---- reporting -------------------------------------------------------------------------------

TEST(DeviceEventRequests, SplitsTheQueueIntoRequestsOfAtMostTheLimit) {
  FakeServer server;
  GuardState s = enrolled_state(server);
  EXPECT_TRUE(device_event_requests(s).empty());
  for (int i = 0; i < 20; ++i)
    s.unreported.push_back({protocol::DeviceEventKind::locked, "command", i + 1, kNow + i});

  const auto requests = device_event_requests(s);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].events.size(), protocol::kMaxDeviceEvents);
  EXPECT_EQ(requests[1].events.size(), 20 - protocol::kMaxDeviceEvents);
  EXPECT_EQ(requests[0].events.front().command_id, 1);
  EXPECT_EQ(requests[1].events.back().command_id, 20);
  for (const auto& r : requests) {
    EXPECT_EQ(r.device_id, kDeviceId);
    EXPECT_EQ(r.report_token, kReportToken);
    // What goes on the wire is what the server's parser accepts.
    std::string why;
    const std::string body = protocol::to_json(r);
    EXPECT_LE(body.size(), protocol::kMaxDeviceEventsRequestSize);
    auto parsed = protocol::parse_device_events_request(body, &why);
    ASSERT_TRUE(parsed) << why;
    EXPECT_EQ(parsed.value().events, r.events);
  }
}

TEST(ReportDeviceEvents, NothingQueuedSendsNothing) {
  kaban::testing::TempDir tmp;
  std::string why;
  auto sent = report_device_events(tmp.path(), {}, why);
  ASSERT_TRUE(sent) << why;
  EXPECT_EQ(sent.value(), 0u);
}

TEST(ReportDeviceEvents, AGuardWithoutAReportTokenKeepsItsEvents) {
  kaban::testing::TempDir tmp;
  const auto put = [](GuardState& g) {
    g.unreported.push_back({protocol::DeviceEventKind::wiped, "offline", 0, kNow});
  };
  ASSERT_TRUE(update_guard(tmp.path(), put));
  std::string why;
  auto sent = report_device_events(tmp.path(), {}, why);
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error(), errc::not_enrolled);
  EXPECT_FALSE(why.empty());
  EXPECT_EQ(load_guard(tmp.path()).value().unreported.size(), 1u);
}

TEST(AccessNames, AreTheWordsOfTheHeader) {
  EXPECT_EQ(to_string(Access::open), "open");
  EXPECT_EQ(to_string(Access::policy_blocked), "policy_blocked");
  EXPECT_EQ(to_string(Access::offline_blocked), "offline_blocked");
  EXPECT_EQ(to_string(Access::wipe_due), "wipe_due");
  EXPECT_EQ(to_string(Access::locked), "locked");
  EXPECT_EQ(to_string(Access::wiped), "wiped");
}

}  // namespace
}  // namespace kaban::agent
