#include "kaban/protocol/policy.hpp"

#include <algorithm>
#include <iterator>
#include <type_traits>
#include <variant>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/protocol/error.hpp"

namespace kaban::protocol {
namespace {

using detail::JsonReader;
using detail::Unknown;
using nlohmann::json;
using nlohmann::ordered_json;
using VersionRules = std::map<std::string, VersionRule>;

constexpr std::size_t kMaxVersionText = 64;
constexpr std::size_t kMaxActionText = 16;
constexpr std::size_t kMaxVersionParts = 4;
constexpr std::size_t kMaxVersionPartDigits = 9;
constexpr int kMinutesPerDay = 24 * 60;

// How to pick the more restrictive of two values of a setting (effective_policy).
enum class Stricter {
  is_true,
  is_false,
  larger,
  smaller,
  smaller_nonzero,
  more_severe,
  per_platform
};

using Member = std::variant<bool Policy::*, int Policy::*, PinFailureAction Policy::*,
                            ComplianceAction Policy::*, VersionRules Policy::*>;

struct Setting {
  std::string_view name;
  Member member;
  Stricter stricter;
};

// One row per setting, in kPolicySettings order: reading, writing and merging all go through it,
// so a new setting cannot be forgotten by one of them.
constexpr Setting kSettings[] = {
    {"pin_required", &Policy::pin_required, Stricter::is_true},
    {"pin_min_length", &Policy::pin_min_length, Stricter::larger},
    {"pin_block_simple", &Policy::pin_block_simple, Stricter::is_true},
    {"pin_max_attempts", &Policy::pin_max_attempts, Stricter::smaller},
    {"pin_failure_action", &Policy::pin_failure_action, Stricter::more_severe},
    {"pin_idle_minutes", &Policy::pin_idle_minutes, Stricter::smaller},
    {"offline_block_minutes", &Policy::offline_block_minutes, Stricter::smaller_nonzero},
    {"offline_wipe_days", &Policy::offline_wipe_days, Stricter::smaller_nonzero},
    {"min_agent_version", &Policy::min_agent_version, Stricter::per_platform},
    {"min_os_version", &Policy::min_os_version, Stricter::per_platform},
    {"rooted_action", &Policy::rooted_action, Stricter::more_severe},
    {"require_screen_lock", &Policy::require_screen_lock, Stricter::is_true},
    {"require_disk_encryption", &Policy::require_disk_encryption, Stricter::is_true},
    {"allow_export", &Policy::allow_export, Stricter::is_false},
    {"max_cache_mb", &Policy::max_cache_mb, Stricter::smaller_nonzero},
    {"wifi_only_downloads", &Policy::wifi_only_downloads, Stricter::is_true},
    {"download_on_demand_mb", &Policy::download_on_demand_mb, Stricter::smaller_nonzero},
    {"certificate_lifetime_days", &Policy::certificate_lifetime_days, Stricter::smaller},
};

constexpr bool settings_follow_the_public_list() {
  if (std::size(kSettings) != std::size(kPolicySettings))
    return false;
  for (std::size_t i = 0; i < std::size(kSettings); ++i)
    if (kSettings[i].name != kPolicySettings[i])
      return false;
  return true;
}
static_assert(settings_follow_the_public_list(), "kSettings must follow kPolicySettings");

constexpr const IntegerSettingRange* integer_range(std::string_view name) {
  for (const IntegerSettingRange& range : kIntegerSettingRanges)
    if (range.name == name)
      return &range;
  return nullptr;
}

// By name, not through integer_range(): comparing an address with null is not a constant
// expression under -fsanitize=undefined.
constexpr bool has_integer_range(std::string_view name) {
  for (const IntegerSettingRange& range : kIntegerSettingRanges)
    if (range.name == name)
      return true;
  return false;
}

constexpr bool every_integer_setting_has_a_range() {
  for (const Setting& s : kSettings)
    if (std::holds_alternative<int Policy::*>(s.member) && !has_integer_range(s.name))
      return false;
  return std::size(kIntegerSettingRanges) == 8;
}
static_assert(every_integer_setting_has_a_range(), "an integer setting has no range");

bool is_known_setting(std::string_view name) {
  return std::find(std::begin(kPolicySettings), std::end(kPolicySettings), name) !=
         std::end(kPolicySettings);
}

bool is_given(const json& object, std::string_view name) {
  const auto it = object.find(name);
  return it != object.end() && !it->is_null();
}

std::string in_quotes(std::string_view name) {
  return "\"" + std::string(name) + "\"";
}

// The rules of one min_*_version setting: {"android": {"version": "13", "action": "block"}}.
// A newer server may name platforms this agent does not know; lenient readers skip them.
VersionRules read_version_rules(JsonReader& r, std::string_view name, Unknown unknown) {
  VersionRules rules;
  const json* object = r.object(name, /*required=*/false);
  if (!object)
    return rules;
  for (const auto& item : object->items()) {
    const std::string& platform = item.key();
    if (!is_known_platform(platform)) {
      if (unknown == Unknown::ignore)
        continue;
      r.fail(errc::invalid_value, r.where() + ": " + in_quotes(name) + " names the platform " +
                                      in_quotes(platform.substr(0, kMaxVersionText)) +
                                      ", which is not one of linux, macos, windows, android, ios");
      break;
    }
    JsonReader vr(item.value(), r.where() + ": " + in_quotes(name) + " for " + platform, unknown);
    VersionRule rule;
    rule.version = vr.text("version", kMaxVersionText);
    const std::string action = vr.text("action", kMaxActionText, /*required=*/false);
    if (vr.ok() && !is_valid_version(rule.version))
      vr.fail(errc::invalid_value, vr.where() + ": \"version\" " + in_quotes(rule.version) +
                                       " is not a dotted-decimal version such as \"13\" or "
                                       "\"0.5.0\" (1 to 4 numbers of at most 9 digits)");
    if (vr.ok() && !action.empty()) {
      const std::optional<ComplianceAction> a = parse_compliance_action(action);
      if (!a || *a == ComplianceAction::none)
        vr.fail(errc::invalid_value, vr.where() + ": \"action\" must be one of warn, block, wipe");
      else
        rule.action = *a;
    }
    std::string why;
    if (const Result<void> done = vr.finish(&why); !done) {
      r.fail(static_cast<errc>(done.error().value()), why);
      break;
    }
    rules.emplace(platform, std::move(rule));
  }
  return rules;
}

// Reads every setting `object` gives into `policy` (the others keep their values) and returns
// the names given. Problems are recorded on `r`.
std::set<std::string> read_settings(const json& object, JsonReader& r, Policy& policy,
                                    Unknown unknown) {
  std::set<std::string> given;
  for (const Setting& s : kSettings) {
    const bool present = is_given(object, s.name);
    std::visit(
        [&](auto member) {
          using T = std::remove_cvref_t<decltype(policy.*member)>;
          if constexpr (std::is_same_v<T, bool>) {
            const bool v = r.boolean(s.name, false);
            if (present)
              policy.*member = v;
          } else if constexpr (std::is_same_v<T, int>) {
            const IntegerSettingRange* range = integer_range(s.name);
            const auto v = r.integer(s.name, range->min, range->max, false);
            if (present)
              policy.*member = static_cast<int>(v);
          } else if constexpr (std::is_same_v<T, PinFailureAction>) {
            const std::string text = r.text(s.name, kMaxActionText, false);
            if (present && r.ok()) {
              if (const auto a = parse_pin_failure_action(text))
                policy.*member = *a;
              else
                r.fail(errc::invalid_value,
                       r.where() + ": " + in_quotes(s.name) + " must be lock or wipe");
            }
          } else if constexpr (std::is_same_v<T, ComplianceAction>) {
            const std::string text = r.text(s.name, kMaxActionText, false);
            if (present && r.ok()) {
              if (const auto a = parse_compliance_action(text))
                policy.*member = *a;
              else
                r.fail(errc::invalid_value, r.where() + ": " + in_quotes(s.name) +
                                                " must be one of none, warn, block, wipe");
            }
          } else {
            VersionRules rules = read_version_rules(r, s.name, unknown);
            if (present)
              policy.*member = std::move(rules);
          }
        },
        s.member);
    if (!r.ok())
      break;
    if (present)
      given.emplace(s.name);
  }
  return given;
}

ordered_json version_rules_json(const VersionRules& rules) {
  ordered_json j = ordered_json::object();
  for (const auto& [platform, rule] : rules)
    j[platform] = ordered_json{{"version", rule.version}, {"action", to_string(rule.action)}};
  return j;
}

ordered_json setting_json(const Policy& policy, const Setting& s) {
  return std::visit(
      [&](auto member) -> ordered_json {
        using T = std::remove_cvref_t<decltype(policy.*member)>;
        if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, int>)
          return policy.*member;
        else if constexpr (std::is_same_v<T, VersionRules>)
          return version_rules_json(policy.*member);
        else
          return std::string(to_string(policy.*member));
      },
      s.member);
}

std::string dump(const ordered_json& j) {
  // A string that is not UTF-8 (only a caller's bug puts one in a struct) becomes U+FFFD rather
  // than an exception.
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

VersionRules stricter_rules(VersionRules a, const VersionRules& b) {
  for (const auto& [platform, rule] : b) {
    auto [it, inserted] = a.emplace(platform, rule);
    if (inserted)
      continue;
    VersionRule& have = it->second;
    if (compare_versions(rule.version, have.version).value_or(0) > 0)
      have.version = rule.version;
    have.action = std::max(have.action, rule.action);
  }
  return a;
}

template <typename T>
T stricter(Stricter how, const T& a, const T& b) {
  if constexpr (std::is_same_v<T, bool>) {
    return how == Stricter::is_false ? (a && b) : (a || b);
  } else if constexpr (std::is_same_v<T, int>) {
    if (how == Stricter::larger)
      return std::max(a, b);
    if (how == Stricter::smaller_nonzero && (a == 0 || b == 0))
      return a == 0 ? b : a;  // 0 is "never" / "no limit", the least restrictive
    return std::min(a, b);
  } else if constexpr (std::is_same_v<T, VersionRules>) {
    return stricter_rules(a, b);
  } else {
    return std::max(a, b);  // the enums are declared least severe first
  }
}

// A file may not wipe a device before it blocks it: the block would never be seen.
void check_offline_order(const Policy& p, const std::set<std::string>& given, JsonReader& r) {
  if (!r.ok() || p.offline_block_minutes == 0 || p.offline_wipe_days == 0)
    return;
  if (static_cast<std::int64_t>(p.offline_wipe_days) * kMinutesPerDay >= p.offline_block_minutes)
    return;
  const int days_needed = (p.offline_block_minutes + kMinutesPerDay - 1) / kMinutesPerDay;
  r.fail(errc::invalid_value,
         r.where() + ": \"offline_wipe_days\" (" + std::to_string(p.offline_wipe_days) +
             (given.contains("offline_wipe_days") ? "" : ", the built-in default") +
             ") is shorter than \"offline_block_minutes\" (" +
             std::to_string(p.offline_block_minutes) +
             "), so a device would be wiped before it is blocked; set offline_wipe_days to at "
             "least " +
             std::to_string(days_needed) + ", or to 0 for never");
}

}  // namespace

std::string_view to_string(ComplianceAction action) noexcept {
  switch (action) {
    case ComplianceAction::none:
      return "none";
    case ComplianceAction::warn:
      return "warn";
    case ComplianceAction::block:
      return "block";
    case ComplianceAction::wipe:
      return "wipe";
  }
  return "none";
}

std::optional<ComplianceAction> parse_compliance_action(std::string_view text) noexcept {
  for (ComplianceAction a : {ComplianceAction::none, ComplianceAction::warn,
                             ComplianceAction::block, ComplianceAction::wipe})
    if (to_string(a) == text)
      return a;
  return std::nullopt;
}

std::string_view to_string(PinFailureAction action) noexcept {
  return action == PinFailureAction::lock ? "lock" : "wipe";
}

std::optional<PinFailureAction> parse_pin_failure_action(std::string_view text) noexcept {
  if (text == "lock")
    return PinFailureAction::lock;
  if (text == "wipe")
    return PinFailureAction::wipe;
  return std::nullopt;
}

bool is_known_platform(std::string_view platform) noexcept {
  return std::find(std::begin(kPlatformNames), std::end(kPlatformNames), platform) !=
         std::end(kPlatformNames);
}

bool is_valid_version(std::string_view text) noexcept {
  std::size_t parts = 0;
  std::size_t digits = 0;
  for (const char c : text) {
    if (c == '.') {
      if (digits == 0)
        return false;
      digits = 0;
    } else if (c >= '0' && c <= '9') {
      if (digits == 0 && ++parts > kMaxVersionParts)
        return false;
      if (++digits > kMaxVersionPartDigits)
        return false;
    } else {
      return false;
    }
  }
  return digits > 0;
}

std::optional<int> compare_versions(std::string_view a, std::string_view b) noexcept {
  const std::size_t end = a.find_first_not_of("0123456789.");
  if (end != std::string_view::npos)
    a = a.substr(0, end);
  if (!is_valid_version(a) || !is_valid_version(b))
    return std::nullopt;
  // Each part has at most 9 digits, so it fits an int64 without overflow.
  const auto next_part = [](std::string_view& rest) {
    std::int64_t n = 0;
    std::size_t i = 0;
    for (; i < rest.size() && rest[i] != '.'; ++i)
      n = n * 10 + (rest[i] - '0');
    rest = rest.substr(std::min(i + 1, rest.size()));
    return n;
  };
  while (!a.empty() || !b.empty()) {
    const std::int64_t x = next_part(a);
    const std::int64_t y = next_part(b);
    if (x != y)
      return x < y ? -1 : 1;
  }
  return 0;
}

Result<PolicyFile> parse_policy_file(std::string_view text, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_json(text, kMaxPolicyFileSize, j, why));
  // Names first, so that a misspelt setting is reported as such rather than as the first
  // problem further down.
  for (const auto& item : j.items()) {
    const std::string& name = item.key();
    if (name == "$schema" || name == "description" || is_known_setting(name)) {
      if (item.value().is_null()) {
        if (why)
          *why = "policy: " + in_quotes(name) + " is null; give a value or leave the setting out";
        return errc::malformed;
      }
      continue;
    }
    if (why)
      *why = "policy: unknown setting " + in_quotes(name.substr(0, kMaxVersionText)) +
             " (docs/policy.md lists the settings)";
    return errc::unknown_field;
  }
  JsonReader r(j, "policy", Unknown::refuse);
  PolicyFile file;
  r.text("$schema", kMaxPolicyDescriptionSize, /*required=*/false);
  file.description = r.text("description", kMaxPolicyDescriptionSize, /*required=*/false);
  file.given = read_settings(j, r, file.values, Unknown::refuse);
  check_offline_order(file.values, file.given, r);
  KABAN_TRYV(r.finish(why));
  return file;
}

std::string policy_file_to_json(const PolicyFile& file) {
  ordered_json j = ordered_json::object();
  if (!file.description.empty())
    j["description"] = file.description;
  for (const Setting& s : kSettings)
    if (file.given.contains(std::string(s.name)))
      j[std::string(s.name)] = setting_json(file.values, s);
  return dump(j);
}

Policy effective_policy(std::span<const PolicyFile> files) {
  Policy out;
  for (const Setting& s : kSettings) {
    const std::string name(s.name);
    std::visit(
        [&](auto member) {
          bool any = false;
          for (const PolicyFile& f : files) {
            if (!f.given.contains(name))
              continue;
            out.*member =
                any ? stricter(s.stricter, out.*member, f.values.*member) : f.values.*member;
            any = true;
          }
        },
        s.member);
  }
  return out;
}

std::string policy_to_json(const Policy& policy) {
  ordered_json j = ordered_json::object();
  for (const Setting& s : kSettings)
    j[std::string(s.name)] = setting_json(policy, s);
  return dump(j);
}

Result<Policy> parse_policy(std::string_view text, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_json(text, kMaxPolicyFileSize, j, why));
  JsonReader r(j, "policy", Unknown::ignore);
  Policy policy;
  read_settings(j, r, policy, Unknown::ignore);
  KABAN_TRYV(r.finish(why));
  return policy;
}

bool is_simple_pin(std::string_view pin) noexcept {
  if (pin.empty())
    return false;
  if (std::all_of(pin.begin(), pin.end(), [&](char c) { return c == pin.front(); }))
    return true;
  if (pin.size() < 2 ||
      !std::all_of(pin.begin(), pin.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  const int step = pin[1] - pin[0];
  if (step != 1 && step != -1)
    return false;
  for (std::size_t i = 1; i < pin.size(); ++i)
    if (pin[i] - pin[i - 1] != step)
      return false;
  return true;
}

std::string pin_rule_violation(const Policy& policy, std::string_view pin) {
  if (pin.empty())
    return policy.pin_required ? "this device's policy requires a PIN; choose one of at least " +
                                     std::to_string(policy.pin_min_length) + " characters"
                               : "";
  // Characters, not bytes: a UTF-8 continuation byte does not start one.
  const auto length = std::count_if(pin.begin(), pin.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  });
  if (length < policy.pin_min_length)
    return "the PIN must have at least " + std::to_string(policy.pin_min_length) +
           " characters; choose a longer one";
  if (policy.pin_block_simple && is_simple_pin(pin))
    return "the PIN is too easy to guess (one repeated character or a run such as 123456); "
           "choose another";
  return "";
}

}  // namespace kaban::protocol
