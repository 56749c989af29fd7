#include "kaban/server/compliance.hpp"

#include <algorithm>
#include <cstdlib>
#include <string_view>

namespace kaban::server {
namespace {

using protocol::ComplianceAction;
using protocol::ComplianceReason;
using protocol::Fact;

constexpr std::int64_t kSecondsPerMinute = 60;
constexpr std::int64_t kSecondsPerHour = 3600;
constexpr std::int64_t kSecondsPerDay = 86'400;
constexpr std::uint64_t kBytesPerMiB = 1024 * 1024;

// How a platform is named in a sentence.
std::string platform_name(std::string_view platform) {
  if (platform == "linux")
    return "Linux";
  if (platform == "macos")
    return "macOS";
  if (platform == "windows")
    return "Windows";
  if (platform == "android")
    return "Android";
  if (platform == "ios")
    return "iOS";
  return platform.empty() ? std::string("the operating system") : std::string(platform);
}

std::string mib(std::uint64_t bytes) {
  return std::to_string(bytes / kBytesPerMiB) + " MiB";
}

class Evaluation {
 public:
  void add(std::string setting, ComplianceAction action, std::string message) {
    if (action == ComplianceAction::none)
      return;
    worst_ = std::max(worst_, action);
    reasons_.push_back({std::move(setting), action, std::move(message)});
  }

  ComplianceVerdict finish() && { return {protocol::verdict_for(worst_), std::move(reasons_)}; }

 private:
  ComplianceAction worst_ = ComplianceAction::none;
  std::vector<ComplianceReason> reasons_;
};

// A minimum version rule for the device's platform, if the policy has one.
const protocol::VersionRule* rule_for(const std::map<std::string, protocol::VersionRule>& rules,
                                      const std::string& platform) {
  const auto it = rules.find(platform);
  return it == rules.end() ? nullptr : &it->second;
}

// `what` is the subject of the sentence ("Android", "Kaban"); `advice` what to do when older.
void check_version(Evaluation& e, const char* setting, const protocol::VersionRule* rule,
                   const std::string& what, const std::string& version, const std::string& advice) {
  if (rule == nullptr)
    return;
  const auto order = protocol::compare_versions(version, rule->version);
  if (!order) {
    e.add(setting, ComplianceAction::warn,
          "the " + what + " version is not known, and the policy requires " + rule->version +
              " or newer; " + advice + " if it is older");
    return;
  }
  if (*order < 0)
    e.add(setting, rule->action,
          what + " " + version + " is older than the required " + rule->version + "; " + advice);
}

// A yes/no requirement: "no" blocks, anything but "yes" warns.
void check_required(Evaluation& e, const char* setting, bool required, Fact fact,
                    const std::string& missing, const std::string& unknown) {
  if (!required || fact == Fact::yes)
    return;
  if (fact == Fact::no)
    e.add(setting, ComplianceAction::block, missing);
  else
    e.add(setting, ComplianceAction::warn, unknown);
}

void check_pin(Evaluation& e, const protocol::Policy& policy, const protocol::Posture& posture) {
  if (!posture.pin_set) {
    if (policy.pin_required)
      e.add("pin_required", ComplianceAction::block,
            "Kaban's data on this device is not protected by a PIN; set a PIN for Kaban");
    return;
  }
  const std::string minimum = std::to_string(policy.pin_min_length);
  if (posture.pin_length == 0)
    e.add("pin_min_length", ComplianceAction::warn,
          "the length of the Kaban PIN is not known, and the policy requires at least " + minimum +
              " characters; change the PIN to one that long if it is shorter");
  else if (posture.pin_length < policy.pin_min_length)
    e.add("pin_min_length", ComplianceAction::block,
          "the Kaban PIN has " + std::to_string(posture.pin_length) +
              " characters and the policy requires at least " + minimum +
              "; change it to a longer one");
  if (posture.pin_simple && policy.pin_block_simple)
    e.add("pin_block_simple", ComplianceAction::block,
          "the Kaban PIN is too simple (one repeated digit or a run like 123456); change it to "
          "another");
}

void check_clock(Evaluation& e, const protocol::Posture& posture, UnixTime now) {
  if (posture.clock_rollback_seconds > 0)
    e.add("clock", ComplianceAction::warn,
          "the device's clock was set back by " +
              describe_duration(std::chrono::seconds{posture.clock_rollback_seconds}) +
              " since the last check-in; keep the date and time set automatically");
  if (posture.device_time == 0)
    return;
  const std::int64_t skew = posture.device_time - to_unix(now);
  if (std::llabs(skew) > kMaxClockSkew.count())
    e.add("clock", ComplianceAction::warn,
          "the device's clock is " + describe_duration(std::chrono::seconds{std::llabs(skew)}) +
              (skew > 0 ? " ahead of" : " behind") +
              " the server's; correct the date and time (set them automatically)");
}

}  // namespace

std::string describe_duration(std::chrono::seconds duration) {
  const std::int64_t s = std::max<std::int64_t>(duration.count(), 0);
  if (s >= kSecondsPerDay)
    return std::to_string(s / kSecondsPerDay) + " d";
  if (s >= kSecondsPerHour)
    return std::to_string(s / kSecondsPerHour) + " h";
  if (s >= kSecondsPerMinute)
    return std::to_string(s / kSecondsPerMinute) + " min";
  return std::to_string(s) + " s";
}

ComplianceVerdict evaluate_compliance(const protocol::Policy& policy,
                                      const protocol::DeviceDescription& device,
                                      const protocol::Posture& posture, UnixTime now) {
  Evaluation e;
  // In kPolicySettings order, so reasons read the same from one check-in to the next.
  check_pin(e, policy, posture);
  check_version(e, "min_agent_version", rule_for(policy.min_agent_version, device.platform),
                "Kaban", device.agent_version, "update Kaban");
  const std::string os = platform_name(device.platform);
  check_version(e, "min_os_version", rule_for(policy.min_os_version, device.platform), os,
                posture.os_version_number, "update " + os);
  if (posture.rooted == Fact::yes)
    e.add("rooted_action", policy.rooted_action,
          "this device is rooted or jailbroken, which the policy does not allow for Kaban's data");
  check_required(e, "require_screen_lock", policy.require_screen_lock, posture.screen_lock,
                 "the device has no screen lock; set a PIN, password or pattern to unlock it",
                 "Kaban cannot tell whether the device has a screen lock; make sure one is set");
  check_required(e, "require_disk_encryption", policy.require_disk_encryption,
                 posture.disk_encryption,
                 "the device's storage is not encrypted; turn on device encryption",
                 "Kaban cannot tell whether the device's storage is encrypted; make sure it is");
  check_clock(e, posture, now);
  const std::uint64_t limit = static_cast<std::uint64_t>(policy.max_cache_mb) * kBytesPerMiB;
  if (policy.max_cache_mb > 0 && posture.cache_bytes > limit)
    e.add("cache", ComplianceAction::warn,
          "Kaban's data on this device takes " + mib(posture.cache_bytes) + ", more than the " +
              std::to_string(policy.max_cache_mb) +
              " MiB the policy allows; remove courses that are no longer needed");
  if (posture.content_waiting_bytes > 0)
    e.add("disk", ComplianceAction::warn,
          "the device's disk is nearly full: " + mib(posture.content_waiting_bytes) +
              " of course content waits for space (" + mib(posture.disk_free_bytes) +
              " free); free space on the device, or `kaban storage` there shows what Kaban "
              "can free");
  return std::move(e).finish();
}

protocol::Lease make_lease(std::string device_id, const protocol::Policy& policy,
                           std::int64_t policy_version, protocol::Verdict verdict, UnixTime now) {
  const std::int64_t t = to_unix(now);
  protocol::Lease lease;
  lease.device_id = std::move(device_id);
  lease.issued_at = t;
  lease.policy_version = policy_version;
  lease.verdict = verdict;
  const bool blocked = verdict == protocol::Verdict::blocked || verdict == protocol::Verdict::wipe;
  if (blocked)
    lease.block_after = t;
  else if (policy.offline_block_minutes > 0)
    lease.block_after = t + std::int64_t{policy.offline_block_minutes} * kSecondsPerMinute;
  if (verdict == protocol::Verdict::wipe)
    lease.wipe_after = t;
  else if (policy.offline_wipe_days > 0)
    lease.wipe_after = t + std::int64_t{policy.offline_wipe_days} * kSecondsPerDay;
  return lease;
}

std::string blocked_reason(const Device& device, UnixTime now) {
  const auto reasons = [&device] {
    std::string text;
    for (const ComplianceReason& r : device.reasons) {
      if (r.action < ComplianceAction::block)
        continue;
      text += text.empty() ? "" : "; ";
      text += r.message;
    }
    return text.empty() ? std::string("it does not meet the device policy") : text;
  };
  if (device.verdict == protocol::Verdict::wipe)
    return "the device policy requires Kaban's data on this device to be wiped (" + reasons() +
           "); only messages from IT can be read. A check-in that finds the device compliant "
           "lifts this: fix what is named, then run `kaban sync`";
  if (device.verdict == protocol::Verdict::blocked)
    return "this device is blocked by the device policy (" + reasons() +
           "); only messages from IT can be read. A check-in that finds the device compliant "
           "lifts the block: fix what is named, then run `kaban sync`";
  if (device.block_after != 0 && to_unix(now) >= device.block_after)
    return "this device has not checked in for " + describe_duration(now - device.last_checkin_at) +
           ", longer than the device policy allows; only messages from IT can be read. A "
           "check-in that finds the device compliant lifts the block: run `kaban sync`";
  return {};
}

}  // namespace kaban::server
