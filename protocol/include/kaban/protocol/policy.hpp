// Device policy: what IT requires of a device before Kaban's data may live on it, online and
// offline. docs/policy.md describes every setting, its default and what happens online and
// offline; protocol/policy.schema.json is the JSON Schema of a policy file.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "kaban/result.hpp"

namespace kaban::protocol {

/// What happens to a device that breaks a rule, least to most severe (the order is what "most
/// restrictive" means). `block`: the device gets the policy and messages from IT only, no course
/// content, and the agent shows no course or message but IT's until a check-in finds it
/// compliant. `wipe`: the agent crypto-shreds its store.
enum class ComplianceAction { none, warn, block, wipe };
std::string_view to_string(ComplianceAction action) noexcept;
/// "none", "warn", "block", "wipe"; std::nullopt for anything else.
std::optional<ComplianceAction> parse_compliance_action(std::string_view text) noexcept;

/// What the agent does when pin_max_attempts wrong PINs were typed in a row (least severe
/// first). `lock`: no PIN is accepted until the unlock code IT reads out (`admin device unlock`)
/// is typed with `kaban unlock`; `wipe`: the store is crypto-shredded.
enum class PinFailureAction { lock, wipe };
std::string_view to_string(PinFailureAction action) noexcept;
std::optional<PinFailureAction> parse_pin_failure_action(std::string_view text) noexcept;

/// The platforms a device may report (DeviceDescription::platform).
inline constexpr std::string_view kPlatformNames[] = {"linux", "macos", "windows", "android",
                                                      "ios"};
bool is_known_platform(std::string_view platform) noexcept;

/// A minimum version for one platform and what happens below it. `action` is warn, block or
/// wipe (never none).
struct VersionRule {
  std::string version;  ///< dotted decimal, 1 to 4 parts of at most 9 digits: "13", "0.5.0"
  ComplianceAction action = ComplianceAction::warn;
  friend bool operator==(const VersionRule&, const VersionRule&) = default;
};

/// True for a dotted-decimal version as VersionRule::version describes.
bool is_valid_version(std::string_view text) noexcept;
/// Compares two versions part by part as numbers, a missing part counting as 0 ("12" == "12.0",
/// "1.10" > "1.9"). Returns std::nullopt if either is not is_valid_version. The leading run of
/// digits and dots of `a` is what counts, so "0.5.0-dev" compares as "0.5.0".
std::optional<int> compare_versions(std::string_view a, std::string_view b) noexcept;

/// Every setting with its built-in default (docs/policy.md gives ranges and meaning). Minutes and
/// days of 0 mean "never" where the comment says so.
struct Policy {
  bool pin_required = true;
  int pin_min_length = 6;        ///< 4..64
  bool pin_block_simple = true;  ///< refuse PINs of one repeated digit or a run like 123456
  int pin_max_attempts = 10;     ///< 3..100 wrong PINs in a row, then pin_failure_action
  PinFailureAction pin_failure_action = PinFailureAction::wipe;
  int pin_idle_minutes = 15;  ///< 0..1440: ask the PIN again after this long idle; 0 = every time
  int offline_block_minutes = 720;  ///< 0..525600, 0 = never: no check-in this long -> blocked
  int offline_wipe_days = 90;       ///< 0..3650, 0 = never: no check-in this long -> wiped
  std::map<std::string, VersionRule> min_agent_version;      ///< by platform (kPlatformNames)
  std::map<std::string, VersionRule> min_os_version;         ///< by platform
  ComplianceAction rooted_action = ComplianceAction::block;  ///< device reports rooted = yes
  bool require_screen_lock = false;      ///< reported "no": block; "unknown": warn
  bool require_disk_encryption = false;  ///< reported "no": block; "unknown": warn
  bool allow_export = true;              ///< `kaban open --out` may write lesson files out
  int max_cache_mb = 0;                  ///< 0..1048576, 0 = no limit: the store's largest size
  bool wifi_only_downloads = false;      ///< course content only over Wi-Fi or wired networks
  int download_on_demand_mb = 0;         ///< 0..1048576, 0 = off: files this large only when pinned
  int certificate_lifetime_days = 30;    ///< 1..365: device certificates renewed at check-in
  friend bool operator==(const Policy&, const Policy&) = default;
};

/// The setting names, in the order docs/policy.md and the JSON use.
inline constexpr std::string_view kPolicySettings[] = {"pin_required",
                                                       "pin_min_length",
                                                       "pin_block_simple",
                                                       "pin_max_attempts",
                                                       "pin_failure_action",
                                                       "pin_idle_minutes",
                                                       "offline_block_minutes",
                                                       "offline_wipe_days",
                                                       "min_agent_version",
                                                       "min_os_version",
                                                       "rooted_action",
                                                       "require_screen_lock",
                                                       "require_disk_encryption",
                                                       "allow_export",
                                                       "max_cache_mb",
                                                       "wifi_only_downloads",
                                                       "download_on_demand_mb",
                                                       "certificate_lifetime_days"};

/// The range each integer setting must be in (inclusive). parse_policy_file and parse_policy
/// check these; protocol/policy.schema.json and docs/policy.md state the same numbers.
struct IntegerSettingRange {
  std::string_view name;
  int min;
  int max;
};
inline constexpr IntegerSettingRange kIntegerSettingRanges[] = {
    {"pin_min_length", 4, 64},
    {"pin_max_attempts", 3, 100},
    {"pin_idle_minutes", 0, 1440},
    {"offline_block_minutes", 0, 525600},
    {"offline_wipe_days", 0, 3650},
    {"max_cache_mb", 0, 1048576},
    {"download_on_demand_mb", 0, 1048576},
    {"certificate_lifetime_days", 1, 365}};

/// Longest PolicyFile::description, in bytes.
inline constexpr std::size_t kMaxPolicyDescriptionSize = 1000;

/// A policy as IT writes it: some settings (`given`, names from kPolicySettings); `values` holds
/// those and the built-in defaults for the rest.
struct PolicyFile {
  Policy values;
  std::set<std::string> given;
  std::string description;  ///< optional free text for IT ("description"), at most 1000 bytes
  friend bool operator==(const PolicyFile&, const PolicyFile&) = default;
};

/// Largest policy file, in bytes.
inline constexpr std::size_t kMaxPolicyFileSize = 64 * 1024;

/// Parses a policy file: one JSON object of settings, each optional; also "description" and
/// "$schema" (ignored). Unknown names are refused ("unknown setting \"pin_len\""), as are values
/// of the wrong type or out of range, an unknown platform, an action not allowed for the
/// setting, and offline_wipe_days shorter than offline_block_minutes (both non-zero; a setting the
/// file leaves out counts with its built-in default). Fails with
/// errc::malformed, unknown_field, invalid_value or too_large; `why` names the setting.
Result<PolicyFile> parse_policy_file(std::string_view json, std::string* why = nullptr);
/// The file as canonical compact JSON: only the given settings (and the description when not
/// empty), keys in kPolicySettings order. parse_policy_file(policy_file_to_json(f)) == f.
std::string policy_file_to_json(const PolicyFile& file);

/// The policy a device is under: for each setting, the most restrictive value among the files
/// that give it (a device is under the default policy and its groups' policies), or the built-in
/// default if none does. Most restrictive: true for pin_required, pin_block_simple, require_*,
/// wifi_only_downloads; false for allow_export; the larger pin_min_length; the smaller
/// pin_max_attempts, pin_idle_minutes, certificate_lifetime_days; the smaller non-zero
/// offline_block_minutes, offline_wipe_days, max_cache_mb, download_on_demand_mb (0 counts as
/// "never"/"no limit"/"off");
/// wipe over lock; the more severe rooted_action; per platform, the higher version and the more
/// severe action of min_agent_version and min_os_version (taken separately).
Policy effective_policy(std::span<const PolicyFile> files);

/// Every setting, as compact JSON in kPolicySettings order (what a device receives).
std::string policy_to_json(const Policy& policy);
/// Parses what policy_to_json wrote. Lenient as response parsers are: unknown settings (from a
/// newer server) are ignored and missing ones take their default; values of a known setting are
/// checked as parse_policy_file does. Fails with errc::malformed or errc::invalid_value.
Result<Policy> parse_policy(std::string_view json, std::string* why = nullptr);

/// A PIN rule check for a new PIN under `policy`: at least pin_min_length characters (if
/// pin_required, or if not empty), not simple if pin_block_simple. Returns "" if the PIN is
/// acceptable, else a sentence for the person ("the PIN must have at least 8 characters").
std::string pin_rule_violation(const Policy& policy, std::string_view pin);
/// True for a PIN of one repeated character ("000000") or a run of consecutive digits up or
/// down ("123456", "987654").
bool is_simple_pin(std::string_view pin) noexcept;

}  // namespace kaban::protocol
