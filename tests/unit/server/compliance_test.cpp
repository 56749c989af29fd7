// The server's compliance verdicts and leases: each rule of the device policy, broken and kept.
#include "kaban/server/compliance.hpp"

#include <chrono>

#include <gtest/gtest.h>

namespace kaban::server {
namespace {

using protocol::ComplianceAction;
using protocol::Fact;
using protocol::Verdict;
using namespace std::chrono_literals;

const UnixTime kNow{std::chrono::seconds{1'800'000'000}};

// A posture that keeps every rule of the default policy.
protocol::Posture good_posture() {
  protocol::Posture p;
  p.screen_lock = Fact::yes;
  p.disk_encryption = Fact::yes;
  p.rooted = Fact::no;
  p.os_version_number = "14";
  p.pin_set = true;
  p.pin_length = 8;
  p.pin_simple = false;
  p.device_time = to_unix(kNow);
  p.cache_bytes = 1024;
  p.network = "wifi";
  return p;
}

protocol::DeviceDescription phone() {
  return {"android", "Android 14", "Pixel 8", "aiko-phone", "0.5.0"};
}

ComplianceVerdict evaluate(const protocol::Policy& policy, const protocol::Posture& posture,
                           const protocol::DeviceDescription& device = phone()) {
  return evaluate_compliance(policy, device, posture, kNow);
}

// The one reason for `setting`, or a failed expectation.
const protocol::ComplianceReason* reason_for(const ComplianceVerdict& v,
                                             const std::string& setting) {
  const protocol::ComplianceReason* found = nullptr;
  for (const auto& r : v.reasons) {
    if (r.setting == setting) {
      EXPECT_EQ(found, nullptr) << "two reasons for " << setting;
      found = &r;
    }
  }
  return found;
}

// Expects exactly one reason, for `setting`, with `action`; returns its message.
std::string expect_only(const ComplianceVerdict& v, const std::string& setting,
                        ComplianceAction action) {
  EXPECT_EQ(v.reasons.size(), 1u);
  const auto* r = reason_for(v, setting);
  if (r == nullptr) {
    ADD_FAILURE() << "no reason for " << setting;
    return {};
  }
  EXPECT_EQ(r->action, action) << r->message;
  EXPECT_EQ(v.verdict, protocol::verdict_for(action));
  EXPECT_FALSE(r->message.empty());
  return r->message;
}

TEST(ComplianceTest, AGoodDeviceUnderTheStrictestRulesIsCompliant) {
  protocol::Policy policy;
  policy.require_screen_lock = true;
  policy.require_disk_encryption = true;
  policy.min_os_version["android"] = {"13", ComplianceAction::block};
  policy.min_agent_version["android"] = {"0.5.0", ComplianceAction::wipe};
  policy.max_cache_mb = 1;
  const auto v = evaluate(policy, good_posture());
  EXPECT_EQ(v.verdict, Verdict::compliant);
  EXPECT_TRUE(v.reasons.empty()) << v.reasons.front().message;
}

TEST(ComplianceTest, AnOlderOsGetsTheRulesActionAndSaysWhatItIsAndWhatIsRequired) {
  protocol::Policy policy;
  policy.min_os_version["android"] = {"13", ComplianceAction::block};
  auto posture = good_posture();
  posture.os_version_number = "11";
  const std::string message =
      expect_only(evaluate(policy, posture), "min_os_version", ComplianceAction::block);
  EXPECT_NE(message.find("Android 11 is older than the required 13"), std::string::npos) << message;
  // Equal counts as new enough ("13" == "13.0"); another platform's rule does not apply.
  posture.os_version_number = "13.0";
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
  posture.os_version_number = "9";
  policy.min_os_version.clear();
  policy.min_os_version["ios"] = {"17", ComplianceAction::wipe};
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
}

TEST(ComplianceTest, AnUnknownOsVersionUnderARuleWarns) {
  protocol::Policy policy;
  policy.min_os_version["android"] = {"13", ComplianceAction::wipe};
  auto posture = good_posture();
  posture.os_version_number = "";
  expect_only(evaluate(policy, posture), "min_os_version", ComplianceAction::warn);
  // Without a rule an unknown version is nobody's concern.
  policy.min_os_version.clear();
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
}

TEST(ComplianceTest, AnOlderAgentGetsTheRulesAction) {
  protocol::Policy policy;
  policy.min_agent_version["android"] = {"0.10.0", ComplianceAction::wipe};
  auto device = phone();
  device.agent_version = "0.9.3";
  const std::string message = expect_only(evaluate(policy, good_posture(), device),
                                          "min_agent_version", ComplianceAction::wipe);
  EXPECT_NE(message.find("0.9.3 is older than the required 0.10.0"), std::string::npos) << message;
  device.agent_version = "0.10.0-dev";
  EXPECT_EQ(evaluate(policy, good_posture(), device).verdict, Verdict::compliant);
  device.agent_version = "";
  expect_only(evaluate(policy, good_posture(), device), "min_agent_version",
              ComplianceAction::warn);
}

TEST(ComplianceTest, ARootedDeviceGetsTheRootedAction) {
  protocol::Policy policy;
  auto posture = good_posture();
  posture.rooted = Fact::yes;
  expect_only(evaluate(policy, posture), "rooted_action", ComplianceAction::block);
  policy.rooted_action = ComplianceAction::wipe;
  expect_only(evaluate(policy, posture), "rooted_action", ComplianceAction::wipe);
  policy.rooted_action = ComplianceAction::none;
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
  // Unknown or not applicable: nothing, whatever the action.
  policy.rooted_action = ComplianceAction::wipe;
  for (Fact f : {Fact::unknown, Fact::not_applicable, Fact::no}) {
    posture.rooted = f;
    EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant) << protocol::to_string(f);
  }
}

TEST(ComplianceTest, ScreenLockAndDiskEncryptionBlockWhenMissingAndWarnWhenUnknown) {
  protocol::Policy policy;
  auto posture = good_posture();
  posture.screen_lock = Fact::no;
  posture.disk_encryption = Fact::unknown;
  // Not required: nothing.
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);

  policy.require_screen_lock = true;
  expect_only(evaluate(policy, posture), "require_screen_lock", ComplianceAction::block);
  posture.screen_lock = Fact::unknown;
  expect_only(evaluate(policy, posture), "require_screen_lock", ComplianceAction::warn);
  posture.screen_lock = Fact::yes;

  policy.require_disk_encryption = true;
  expect_only(evaluate(policy, posture), "require_disk_encryption", ComplianceAction::warn);
  posture.disk_encryption = Fact::no;
  expect_only(evaluate(policy, posture), "require_disk_encryption", ComplianceAction::block);
  posture.disk_encryption = Fact::yes;
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
}

TEST(ComplianceTest, PinRules) {
  protocol::Policy policy;  // PIN required, at least 6, no simple ones
  auto posture = good_posture();
  posture.pin_set = false;
  expect_only(evaluate(policy, posture), "pin_required", ComplianceAction::block);
  policy.pin_required = false;
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
  policy.pin_required = true;

  posture.pin_set = true;
  posture.pin_length = 4;
  const std::string message =
      expect_only(evaluate(policy, posture), "pin_min_length", ComplianceAction::block);
  EXPECT_NE(message.find("at least 6"), std::string::npos) << message;
  posture.pin_length = 6;
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
  posture.pin_length = 0;  // a store from before PIN lengths were recorded
  expect_only(evaluate(policy, posture), "pin_min_length", ComplianceAction::warn);
  posture.pin_length = 6;

  posture.pin_simple = true;
  expect_only(evaluate(policy, posture), "pin_block_simple", ComplianceAction::block);
  policy.pin_block_simple = false;
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
}

TEST(ComplianceTest, AClockSetBackOrFarFromTheServersWarns) {
  protocol::Policy policy;
  auto posture = good_posture();
  posture.clock_rollback_seconds = 7200;
  std::string message = expect_only(evaluate(policy, posture), "clock", ComplianceAction::warn);
  EXPECT_NE(message.find("2 h"), std::string::npos) << message;
  posture.clock_rollback_seconds = 0;

  posture.device_time = to_unix(kNow) + 301;
  message = expect_only(evaluate(policy, posture), "clock", ComplianceAction::warn);
  EXPECT_NE(message.find("ahead"), std::string::npos) << message;
  posture.device_time = to_unix(kNow) - 3 * 86'400;
  message = expect_only(evaluate(policy, posture), "clock", ComplianceAction::warn);
  EXPECT_NE(message.find("3 d behind"), std::string::npos) << message;
  // Within the tolerance, or not reported: nothing.
  for (std::int64_t t : {to_unix(kNow) + 300, to_unix(kNow) - 300, std::int64_t{0}}) {
    posture.device_time = t;
    EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant) << t;
  }
}

TEST(ComplianceTest, AStoreOverTheCacheLimitWarns) {
  protocol::Policy policy;
  auto posture = good_posture();
  posture.cache_bytes = 600ull * 1024 * 1024;
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);  // 0: no limit
  policy.max_cache_mb = 500;
  const std::string message =
      expect_only(evaluate(policy, posture), "cache", ComplianceAction::warn);
  EXPECT_NE(message.find("600 MiB"), std::string::npos) << message;
  posture.cache_bytes = 500ull * 1024 * 1024;
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
}

TEST(ComplianceTest, ContentWaitingForDiskSpaceWarns) {
  protocol::Policy policy;
  auto posture = good_posture();
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::compliant);
  posture.content_waiting_bytes = 300ull * 1024 * 1024;
  posture.disk_free_bytes = 20ull * 1024 * 1024;
  const std::string message =
      expect_only(evaluate(policy, posture), "disk", ComplianceAction::warn);
  EXPECT_NE(message.find("300 MiB"), std::string::npos) << message;
  EXPECT_NE(message.find("20 MiB free"), std::string::npos) << message;
}

TEST(ComplianceTest, TheVerdictIsTheWorstActionAndEveryReasonIsListed) {
  protocol::Policy policy;
  policy.require_screen_lock = true;
  policy.min_os_version["android"] = {"13", ComplianceAction::wipe};
  auto posture = good_posture();
  posture.screen_lock = Fact::unknown;  // warn
  posture.pin_simple = true;            // block
  posture.clock_rollback_seconds = 60;  // warn
  auto v = evaluate(policy, posture);
  EXPECT_EQ(v.verdict, Verdict::blocked);
  ASSERT_EQ(v.reasons.size(), 3u);
  // In the order of the policy's settings, the clock after them.
  EXPECT_EQ(v.reasons[0].setting, "pin_block_simple");
  EXPECT_EQ(v.reasons[1].setting, "require_screen_lock");
  EXPECT_EQ(v.reasons[2].setting, "clock");

  posture.os_version_number = "12";  // wipe
  v = evaluate(policy, posture);
  EXPECT_EQ(v.verdict, Verdict::wipe);
  EXPECT_EQ(v.reasons.size(), 4u);

  posture = good_posture();
  posture.clock_rollback_seconds = 60;
  EXPECT_EQ(evaluate(policy, posture).verdict, Verdict::warn);
}

TEST(ComplianceTest, LeaseTimesFollowTheVerdictAndThePolicy) {
  protocol::Policy policy;
  policy.offline_block_minutes = 720;
  policy.offline_wipe_days = 90;
  const std::int64_t t = to_unix(kNow);
  for (Verdict v : {Verdict::compliant, Verdict::warn}) {
    const auto lease = make_lease("dev", policy, 7, v, kNow);
    EXPECT_EQ(lease.device_id, "dev");
    EXPECT_EQ(lease.issued_at, t);
    EXPECT_EQ(lease.policy_version, 7);
    EXPECT_EQ(lease.verdict, v);
    EXPECT_EQ(lease.block_after, t + 720 * 60);
    EXPECT_EQ(lease.wipe_after, t + 90 * 86'400);
  }
  auto blocked = make_lease("dev", policy, 7, Verdict::blocked, kNow);
  EXPECT_EQ(blocked.block_after, t);
  EXPECT_EQ(blocked.wipe_after, t + 90 * 86'400);
  auto wipe = make_lease("dev", policy, 7, Verdict::wipe, kNow);
  EXPECT_EQ(wipe.block_after, t);
  EXPECT_EQ(wipe.wipe_after, t);

  // 0 means never, for the offline windows; a verdict still blocks or wipes at once.
  policy.offline_block_minutes = 0;
  policy.offline_wipe_days = 0;
  auto never = make_lease("dev", policy, 7, Verdict::compliant, kNow);
  EXPECT_EQ(never.block_after, 0);
  EXPECT_EQ(never.wipe_after, 0);
  blocked = make_lease("dev", policy, 7, Verdict::blocked, kNow);
  EXPECT_EQ(blocked.block_after, t);
  EXPECT_EQ(blocked.wipe_after, 0);
  wipe = make_lease("dev", policy, 7, Verdict::wipe, kNow);
  EXPECT_EQ(wipe.wipe_after, t);
}

TEST(ComplianceTest, ABlockedDeviceIsToldWhyAndHowToLiftIt) {
  Device d;
  d.last_checkin_at = kNow - 26h;
  d.block_after = 0;
  EXPECT_EQ(blocked_reason(d, kNow), "");
  d.block_after = to_unix(kNow) + 1;
  EXPECT_EQ(blocked_reason(d, kNow), "");
  d.block_after = to_unix(kNow);
  std::string why = blocked_reason(d, kNow);
  EXPECT_NE(why.find("not checked in for 1 d"), std::string::npos) << why;
  EXPECT_NE(why.find("kaban sync"), std::string::npos) << why;

  d.block_after = 0;
  d.verdict = Verdict::warn;
  EXPECT_EQ(blocked_reason(d, kNow), "");
  d.verdict = Verdict::blocked;
  d.reasons = {{"pin_block_simple", ComplianceAction::block, "the Kaban PIN is too simple"},
               {"clock", ComplianceAction::warn, "the clock is off"}};
  why = blocked_reason(d, kNow);
  EXPECT_NE(why.find("the Kaban PIN is too simple"), std::string::npos) << why;
  EXPECT_EQ(why.find("the clock is off"), std::string::npos) << why;
  EXPECT_NE(why.find("compliant"), std::string::npos) << why;
  d.verdict = Verdict::wipe;
  EXPECT_NE(blocked_reason(d, kNow).find("wiped"), std::string::npos);
}

TEST(ComplianceTest, DurationsReadInTheirLargestUnit) {
  EXPECT_EQ(describe_duration(45s), "45 s");
  EXPECT_EQ(describe_duration(12min + 30s), "12 min");
  EXPECT_EQ(describe_duration(5h + 59min), "5 h");
  EXPECT_EQ(describe_duration(std::chrono::days(3) + 23h), "3 d");
  EXPECT_EQ(describe_duration(-5s), "0 s");
}

}  // namespace
}  // namespace kaban::server
