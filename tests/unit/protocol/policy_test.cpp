#include "kaban/protocol/policy.hpp"

#include <algorithm>
#include <functional>
#include <iterator>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kaban/protocol/error.hpp"
#include "test_support.hpp"

namespace kaban::protocol {
namespace {

using nlohmann::json;

// A file with every setting at a value other than its default.
constexpr std::string_view kEverySetting = R"({
  "description": "Field staff on shared tablets",
  "pin_required": false,
  "pin_min_length": 8,
  "pin_block_simple": false,
  "pin_max_attempts": 5,
  "pin_failure_action": "lock",
  "pin_idle_minutes": 0,
  "offline_block_minutes": 60,
  "offline_wipe_days": 7,
  "min_agent_version": {"linux": {"version": "0.5.0", "action": "block"}},
  "min_os_version": {"android": {"version": "13", "action": "wipe"},
                     "ios": {"version": "17.4"}},
  "rooted_action": "wipe",
  "require_screen_lock": true,
  "require_disk_encryption": true,
  "allow_export": false,
  "max_cache_mb": 2048,
  "wifi_only_downloads": true,
  "download_on_demand_mb": 50,
  "certificate_lifetime_days": 7
})";

PolicyFile parse_ok(std::string_view text) {
  std::string why;
  auto parsed = parse_policy_file(text, &why);
  EXPECT_TRUE(parsed) << text << ": " << why;
  return parsed ? parsed.value() : PolicyFile{};
}

// The error code and `why` of a file that must be refused.
std::pair<std::error_code, std::string> refusal(std::string_view text) {
  std::string why;
  auto parsed = parse_policy_file(text, &why);
  EXPECT_FALSE(parsed) << text;
  return {parsed ? std::error_code{} : parsed.error(), why};
}

PolicyFile file_giving(std::string_view json_text) {
  return parse_ok(json_text);
}

TEST(PolicyFile, EmptyFileGivesNothingAndHoldsTheDefaults) {
  const PolicyFile f = parse_ok("{}");
  EXPECT_TRUE(f.given.empty());
  EXPECT_EQ(f.values, Policy{});
  EXPECT_EQ(f.description, "");
  EXPECT_EQ(policy_file_to_json(f), "{}");
}

TEST(PolicyFile, BuiltInDefaultsAreTheDocumentedOnes) {
  const Policy p;
  EXPECT_TRUE(p.pin_required);
  EXPECT_EQ(p.pin_min_length, 6);
  EXPECT_TRUE(p.pin_block_simple);
  EXPECT_EQ(p.pin_max_attempts, 10);
  EXPECT_EQ(p.pin_failure_action, PinFailureAction::wipe);
  EXPECT_EQ(p.pin_idle_minutes, 15);
  EXPECT_EQ(p.offline_block_minutes, 720);
  EXPECT_EQ(p.offline_wipe_days, 90);
  EXPECT_TRUE(p.min_agent_version.empty());
  EXPECT_TRUE(p.min_os_version.empty());
  EXPECT_EQ(p.rooted_action, ComplianceAction::block);
  EXPECT_FALSE(p.require_screen_lock);
  EXPECT_FALSE(p.require_disk_encryption);
  EXPECT_TRUE(p.allow_export);
  EXPECT_EQ(p.max_cache_mb, 0);
  EXPECT_FALSE(p.wifi_only_downloads);
  EXPECT_EQ(p.download_on_demand_mb, 0);
  EXPECT_EQ(p.certificate_lifetime_days, 30);
}

TEST(PolicyFile, ParsesEverySetting) {
  const PolicyFile f = parse_ok(kEverySetting);
  const Policy& p = f.values;
  EXPECT_EQ(f.description, "Field staff on shared tablets");
  EXPECT_EQ(f.given, std::set<std::string>(std::begin(kPolicySettings), std::end(kPolicySettings)));
  EXPECT_FALSE(p.pin_required);
  EXPECT_EQ(p.pin_min_length, 8);
  EXPECT_FALSE(p.pin_block_simple);
  EXPECT_EQ(p.pin_max_attempts, 5);
  EXPECT_EQ(p.pin_failure_action, PinFailureAction::lock);
  EXPECT_EQ(p.pin_idle_minutes, 0);
  EXPECT_EQ(p.offline_block_minutes, 60);
  EXPECT_EQ(p.offline_wipe_days, 7);
  ASSERT_EQ(p.min_agent_version.size(), 1u);
  EXPECT_EQ(p.min_agent_version.at("linux"), (VersionRule{"0.5.0", ComplianceAction::block}));
  ASSERT_EQ(p.min_os_version.size(), 2u);
  EXPECT_EQ(p.min_os_version.at("android"), (VersionRule{"13", ComplianceAction::wipe}));
  // The action of a version rule defaults to warn.
  EXPECT_EQ(p.min_os_version.at("ios"), (VersionRule{"17.4", ComplianceAction::warn}));
  EXPECT_EQ(p.rooted_action, ComplianceAction::wipe);
  EXPECT_TRUE(p.require_screen_lock);
  EXPECT_TRUE(p.require_disk_encryption);
  EXPECT_FALSE(p.allow_export);
  EXPECT_EQ(p.max_cache_mb, 2048);
  EXPECT_TRUE(p.wifi_only_downloads);
  EXPECT_EQ(p.download_on_demand_mb, 50);
  EXPECT_EQ(p.certificate_lifetime_days, 7);
}

TEST(PolicyFile, SettingsLeftOutKeepTheirDefaultsAndAreNotGiven) {
  const PolicyFile f = parse_ok(R"({"pin_min_length": 9, "allow_export": false})");
  EXPECT_EQ(f.given, (std::set<std::string>{"pin_min_length", "allow_export"}));
  Policy expected;
  expected.pin_min_length = 9;
  expected.allow_export = false;
  EXPECT_EQ(f.values, expected);
}

TEST(PolicyFile, EachIntegerBoundPassesAndOneBeyondFailsNamingTheSetting) {
  for (const IntegerSettingRange& range : kIntegerSettingRanges) {
    const std::string name(range.name);
    // Offline blocking and wiping off, so that their order rule plays no part here.
    const auto with = [&](long long value) {
      json j = {{"offline_block_minutes", 0}, {"offline_wipe_days", 0}};
      j[name] = value;
      return j.dump();
    };
    const PolicyFile low = parse_ok(with(range.min));
    const PolicyFile high = parse_ok(with(range.max));
    EXPECT_TRUE(low.given.contains(name)) << name;
    EXPECT_NE(policy_file_to_json(low).find("\"" + name + "\":" + std::to_string(range.min)),
              std::string::npos)
        << name;
    EXPECT_NE(policy_file_to_json(high).find("\"" + name + "\":" + std::to_string(range.max)),
              std::string::npos)
        << name;
    for (const long long outside :
         {static_cast<long long>(range.min) - 1, static_cast<long long>(range.max) + 1}) {
      const auto [code, why] = refusal(with(outside));
      EXPECT_EQ(code, errc::invalid_value) << name << " = " << outside;
      EXPECT_NE(why.find(name), std::string::npos) << why;
    }
  }
}

TEST(PolicyFile, IntegerRangesAreTheDocumentedOnes) {
  const auto range_of = [](std::string_view name) {
    for (const IntegerSettingRange& r : kIntegerSettingRanges)
      if (r.name == name)
        return std::pair{r.min, r.max};
    ADD_FAILURE() << name << " has no range";
    return std::pair{0, 0};
  };
  EXPECT_EQ(range_of("pin_min_length"), (std::pair{4, 64}));
  EXPECT_EQ(range_of("pin_max_attempts"), (std::pair{3, 100}));
  EXPECT_EQ(range_of("pin_idle_minutes"), (std::pair{0, 1440}));
  EXPECT_EQ(range_of("offline_block_minutes"), (std::pair{0, 525600}));
  EXPECT_EQ(range_of("offline_wipe_days"), (std::pair{0, 3650}));
  EXPECT_EQ(range_of("max_cache_mb"), (std::pair{0, 1048576}));
  EXPECT_EQ(range_of("download_on_demand_mb"), (std::pair{0, 1048576}));
  EXPECT_EQ(range_of("certificate_lifetime_days"), (std::pair{1, 365}));
}

TEST(PolicyFile, RefusesValuesOfTheWrongTypeNamingTheSetting) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"pin_required", R"("yes")"}, {"pin_min_length", "6.5"},      {"pin_min_length", R"("6")"},
      {"pin_block_simple", "1"},    {"pin_failure_action", "true"}, {"min_os_version", R"("13")"},
      {"rooted_action", "[]"},      {"allow_export", R"("false")"}, {"max_cache_mb", "{}"},
  };
  for (const auto& [name, value] : cases) {
    const std::string text = "{\"" + std::string(name) + "\":" + std::string(value) + "}";
    const auto [code, why] = refusal(text);
    EXPECT_EQ(code, errc::malformed) << text;
    EXPECT_NE(why.find(name), std::string::npos) << why;
  }
  // A null is neither a value nor leaving the setting out.
  const auto [code, why] = refusal(R"({"pin_required": null})");
  EXPECT_EQ(code, errc::malformed);
  EXPECT_NE(why.find("pin_required"), std::string::npos) << why;
}

TEST(PolicyFile, RefusesAnUnknownSetting) {
  const auto [code, why] = refusal(R"({"pin_min_length": 8, "pin_len": 8})");
  EXPECT_EQ(code, errc::unknown_field);
  EXPECT_NE(why.find("unknown setting \"pin_len\""), std::string::npos) << why;
}

TEST(PolicyFile, RefusesActionsNotAllowedForTheSetting) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"pin_failure_action", R"({"pin_failure_action": "block"})"},
      {"pin_failure_action", R"({"pin_failure_action": "Wipe"})"},
      {"rooted_action", R"({"rooted_action": "lock"})"},
      {"min_os_version", R"({"min_os_version": {"android": {"version": "13", "action": "none"}}})"},
      {"min_agent_version",
       R"({"min_agent_version": {"linux": {"version": "1", "action": "lock"}}})"},
  };
  for (const auto& [name, text] : cases) {
    const auto [code, why] = refusal(text);
    EXPECT_EQ(code, errc::invalid_value) << text;
    EXPECT_NE(why.find(name), std::string::npos) << why;
  }
  // none is allowed for rooted_action: IT may choose not to care.
  EXPECT_EQ(parse_ok(R"({"rooted_action": "none"})").values.rooted_action, ComplianceAction::none);
}

TEST(PolicyFile, RefusesBadVersionRules) {
  const std::string_view cases[] = {
      R"({"min_os_version": {"plan9": {"version": "4"}}})",
      R"({"min_os_version": {"android": {"version": "13a"}}})",
      R"({"min_os_version": {"android": {"version": "1.2.3.4.5"}}})",
      R"({"min_os_version": {"android": {"version": "1234567890"}}})",
      R"({"min_os_version": {"android": {"version": ""}}})",
      R"({"min_os_version": {"android": {"action": "warn"}}})",
      R"({"min_os_version": {"android": {"version": "13", "minimum": true}}})",
      R"({"min_agent_version": {"linux": "0.5.0"}})",
  };
  for (const std::string_view text : cases) {
    const auto [code, why] = refusal(text);
    EXPECT_TRUE(code) << text;
    EXPECT_NE(why.find(text.find("agent") != std::string_view::npos ? "min_agent_version"
                                                                    : "min_os_version"),
              std::string::npos)
        << why;
  }
  const auto [code, why] = refusal(R"({"min_os_version": {"plan9": {"version": "4"}}})");
  EXPECT_EQ(code, errc::invalid_value);
  EXPECT_NE(why.find("plan9"), std::string::npos) << why;
}

TEST(PolicyFile, RefusesWipingBeforeBlocking) {
  auto [code, why] = refusal(R"({"offline_block_minutes": 2880, "offline_wipe_days": 1})");
  EXPECT_EQ(code, errc::invalid_value);
  EXPECT_NE(why.find("offline_wipe_days"), std::string::npos) << why;
  EXPECT_NE(why.find("at least 2"), std::string::npos) << why;
  // Equal is fine, and 0 on either side is "never".
  parse_ok(R"({"offline_block_minutes": 2880, "offline_wipe_days": 2})");
  parse_ok(R"({"offline_block_minutes": 525600, "offline_wipe_days": 0})");
  parse_ok(R"({"offline_block_minutes": 0, "offline_wipe_days": 1})");
  // A setting left out counts with its default (90 days).
  std::tie(code, why) = refusal(R"({"offline_block_minutes": 525600})");
  EXPECT_EQ(code, errc::invalid_value);
  EXPECT_NE(why.find("built-in default"), std::string::npos) << why;
  parse_ok(R"({"offline_block_minutes": 129600})");
}

TEST(PolicyFile, DescriptionAndSchemaAreAllowed) {
  const PolicyFile f = parse_ok(
      R"({"$schema": "https://example.org/policy.schema.json", "description": "x",
          "pin_min_length": 7})");
  EXPECT_EQ(f.description, "x");
  EXPECT_EQ(f.given, std::set<std::string>{"pin_min_length"});
  // The schema reference is not kept.
  EXPECT_EQ(policy_file_to_json(f), R"({"description":"x","pin_min_length":7})");

  parse_ok(json{{"description", std::string(kMaxPolicyDescriptionSize, 'd')}}.dump());
  const auto [code, why] =
      refusal(json{{"description", std::string(kMaxPolicyDescriptionSize + 1, 'd')}}.dump());
  EXPECT_EQ(code, errc::too_large);
  EXPECT_NE(why.find("description"), std::string::npos) << why;
  EXPECT_EQ(refusal(R"({"description": 7})").first, errc::malformed);
}

TEST(PolicyFile, RefusesWhatIsNotAPolicyObject) {
  EXPECT_EQ(refusal("[]").first, errc::malformed);
  EXPECT_EQ(refusal("{").first, errc::malformed);
  EXPECT_EQ(refusal("").first, errc::malformed);
  std::string big = R"({"description":")" + std::string(kMaxPolicyFileSize, 'x') + "\"}";
  EXPECT_EQ(refusal(big).first, errc::too_large);
}

TEST(PolicyFile, RoundTripsCanonically) {
  const PolicyFile f = parse_ok(kEverySetting);
  const std::string text = policy_file_to_json(f);
  EXPECT_EQ(text.find('\n'), std::string::npos) << "compact";
  const PolicyFile again = parse_ok(text);
  EXPECT_EQ(again, f);
  EXPECT_EQ(policy_file_to_json(again), text);
  // Keys in kPolicySettings order, after the description.
  std::size_t last = text.find("\"description\"");
  ASSERT_NE(last, std::string::npos);
  for (const std::string_view name : kPolicySettings) {
    const std::size_t at = text.find("\"" + std::string(name) + "\":");
    ASSERT_NE(at, std::string::npos) << name;
    EXPECT_GT(at, last) << name;
    last = at;
  }
  // Only the given settings are written.
  const PolicyFile some = parse_ok(R"({"wifi_only_downloads": true, "pin_required": true})");
  EXPECT_EQ(policy_file_to_json(some), R"({"pin_required":true,"wifi_only_downloads":true})");
}

TEST(Policy, ToJsonWritesEverySettingAndParsesBack) {
  const Policy p = parse_ok(kEverySetting).values;
  const std::string text = policy_to_json(p);
  auto parsed = parse_policy(text);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value(), p);
  const json j = json::parse(policy_to_json(Policy{}));
  EXPECT_EQ(j.size(), std::size(kPolicySettings));
  for (const std::string_view name : kPolicySettings)
    EXPECT_TRUE(j.contains(name)) << name;
}

TEST(Policy, ParseIsLenientAboutWhatANewerServerAdds) {
  std::string why;
  auto parsed = parse_policy(
      R"({"pin_min_length": 12, "screen_timeout": 5,
          "min_os_version": {"android": {"version": "14", "action": "block", "grace": 3},
                             "fuchsia": {"version": "1"}}})",
      &why);
  ASSERT_TRUE(parsed) << why;
  Policy expected;
  expected.pin_min_length = 12;
  expected.min_os_version["android"] = {"14", ComplianceAction::block};
  EXPECT_EQ(parsed.value(), expected);
  // Missing settings take their default.
  ASSERT_TRUE(parse_policy("{}"));
  EXPECT_EQ(parse_policy("{}").value(), Policy{});
}

TEST(Policy, ParseStillChecksTheValuesOfKnownSettings) {
  std::string why;
  auto parsed = parse_policy(R"({"pin_min_length": 3})", &why);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error(), errc::invalid_value);
  EXPECT_NE(why.find("pin_min_length"), std::string::npos) << why;
  EXPECT_EQ(parse_policy(R"({"rooted_action": "ignore"})").error(), errc::invalid_value);
  EXPECT_EQ(parse_policy(R"({"allow_export": "no"})").error(), errc::malformed);
  EXPECT_EQ(parse_policy("[1]").error(), errc::malformed);
}

// effective_policy over files written as JSON.
Policy effective(std::initializer_list<std::string_view> texts) {
  std::vector<PolicyFile> files;
  for (const std::string_view t : texts)
    files.push_back(file_giving(t));
  return effective_policy(files);
}

TEST(EffectivePolicy, NoFilesGiveTheBuiltInDefaults) {
  EXPECT_EQ(effective_policy({}), Policy{});
  EXPECT_EQ(effective({"{}", "{}"}), Policy{});
}

TEST(EffectivePolicy, ASettingNoFileGivesTakesTheBuiltInDefault) {
  // The values a file holds for settings it does not give play no part.
  PolicyFile odd;
  odd.values.pin_min_length = 40;
  odd.values.allow_export = false;
  odd.values.offline_block_minutes = 5;
  odd.given = {"pin_required"};
  odd.values.pin_required = true;
  const std::vector<PolicyFile> files = {odd};
  EXPECT_EQ(effective_policy(files), Policy{});
}

TEST(EffectivePolicy, OneFileGivingALaxerValueThanTheDefaultIsTaken) {
  // Most restrictive among the files that give the setting, not against the built-in default.
  const Policy p = effective({R"({"pin_min_length": 4, "offline_block_minutes": 0,
                                  "allow_export": true, "rooted_action": "none"})"});
  EXPECT_EQ(p.pin_min_length, 4);
  EXPECT_EQ(p.offline_block_minutes, 0);
  EXPECT_EQ(p.rooted_action, ComplianceAction::none);
}

struct MergeCase {
  std::string_view a;
  std::string_view b;
  std::function<bool(const Policy&)> holds;
  std::string_view label;
};

TEST(EffectivePolicy, TheMostRestrictiveValueWinsForEverySetting) {
  const MergeCase cases[] = {
      {R"({"pin_required": false})", R"({"pin_required": true})",
       [](const Policy& p) { return p.pin_required; }, "pin_required"},
      {R"({"pin_required": false})", R"({"pin_required": false})",
       [](const Policy& p) { return !p.pin_required; }, "pin_required both false"},
      {R"({"pin_min_length": 8})", R"({"pin_min_length": 5})",
       [](const Policy& p) { return p.pin_min_length == 8; }, "pin_min_length"},
      {R"({"pin_block_simple": true})", R"({"pin_block_simple": false})",
       [](const Policy& p) { return p.pin_block_simple; }, "pin_block_simple"},
      {R"({"pin_max_attempts": 20})", R"({"pin_max_attempts": 4})",
       [](const Policy& p) { return p.pin_max_attempts == 4; }, "pin_max_attempts"},
      {R"({"pin_failure_action": "wipe"})", R"({"pin_failure_action": "lock"})",
       [](const Policy& p) { return p.pin_failure_action == PinFailureAction::wipe; },
       "pin_failure_action"},
      {R"({"pin_failure_action": "lock"})", R"({"pin_failure_action": "lock"})",
       [](const Policy& p) { return p.pin_failure_action == PinFailureAction::lock; },
       "pin_failure_action both lock"},
      {R"({"pin_idle_minutes": 30})", R"({"pin_idle_minutes": 0})",
       [](const Policy& p) { return p.pin_idle_minutes == 0; }, "pin_idle_minutes 0 = every time"},
      {R"({"offline_block_minutes": 60})", R"({"offline_block_minutes": 30})",
       [](const Policy& p) { return p.offline_block_minutes == 30; }, "offline_block_minutes"},
      {R"({"offline_block_minutes": 0})", R"({"offline_block_minutes": 60})",
       [](const Policy& p) { return p.offline_block_minutes == 60; },
       "offline_block_minutes 0 = never"},
      {R"({"offline_block_minutes": 0})", R"({"offline_block_minutes": 0})",
       [](const Policy& p) { return p.offline_block_minutes == 0; },
       "offline_block_minutes both never"},
      {R"({"offline_wipe_days": 30})", R"({"offline_wipe_days": 10})",
       [](const Policy& p) { return p.offline_wipe_days == 10; }, "offline_wipe_days"},
      {R"({"offline_wipe_days": 10})", R"({"offline_wipe_days": 0})",
       [](const Policy& p) { return p.offline_wipe_days == 10; }, "offline_wipe_days 0 = never"},
      {R"({"offline_wipe_days": 0})", R"({"offline_wipe_days": 0})",
       [](const Policy& p) { return p.offline_wipe_days == 0; }, "offline_wipe_days both never"},
      {R"({"rooted_action": "warn"})", R"({"rooted_action": "wipe"})",
       [](const Policy& p) { return p.rooted_action == ComplianceAction::wipe; }, "rooted_action"},
      {R"({"rooted_action": "none"})", R"({"rooted_action": "warn"})",
       [](const Policy& p) { return p.rooted_action == ComplianceAction::warn; },
       "rooted_action none"},
      {R"({"require_screen_lock": true})", R"({"require_screen_lock": false})",
       [](const Policy& p) { return p.require_screen_lock; }, "require_screen_lock"},
      {R"({"require_disk_encryption": false})", R"({"require_disk_encryption": true})",
       [](const Policy& p) { return p.require_disk_encryption; }, "require_disk_encryption"},
      {R"({"allow_export": true})", R"({"allow_export": false})",
       [](const Policy& p) { return !p.allow_export; }, "allow_export"},
      {R"({"allow_export": true})", R"({"allow_export": true})",
       [](const Policy& p) { return p.allow_export; }, "allow_export both true"},
      {R"({"max_cache_mb": 500})", R"({"max_cache_mb": 2000})",
       [](const Policy& p) { return p.max_cache_mb == 500; }, "max_cache_mb"},
      {R"({"max_cache_mb": 0})", R"({"max_cache_mb": 2000})",
       [](const Policy& p) { return p.max_cache_mb == 2000; }, "max_cache_mb 0 = no limit"},
      {R"({"max_cache_mb": 0})", R"({"max_cache_mb": 0})",
       [](const Policy& p) { return p.max_cache_mb == 0; }, "max_cache_mb both no limit"},
      {R"({"wifi_only_downloads": false})", R"({"wifi_only_downloads": true})",
       [](const Policy& p) { return p.wifi_only_downloads; }, "wifi_only_downloads"},
      {R"({"download_on_demand_mb": 50})", R"({"download_on_demand_mb": 200})",
       [](const Policy& p) { return p.download_on_demand_mb == 50; }, "download_on_demand_mb"},
      {R"({"download_on_demand_mb": 0})", R"({"download_on_demand_mb": 200})",
       [](const Policy& p) { return p.download_on_demand_mb == 200; },
       "download_on_demand_mb 0 = off"},
      {R"({"certificate_lifetime_days": 90})", R"({"certificate_lifetime_days": 14})",
       [](const Policy& p) { return p.certificate_lifetime_days == 14; },
       "certificate_lifetime_days"},
  };
  std::set<std::string> covered;
  for (const MergeCase& c : cases) {
    EXPECT_TRUE(c.holds(effective({c.a, c.b}))) << c.label;
    // The order of the files does not matter.
    EXPECT_TRUE(c.holds(effective({c.b, c.a}))) << c.label << " (reversed)";
    const std::string label(c.label);
    covered.insert(label.substr(0, label.find(' ')));
  }
  covered.insert({"min_agent_version", "min_os_version"});  // VersionRulesMergePerPlatform
  EXPECT_EQ(covered, std::set<std::string>(std::begin(kPolicySettings), std::end(kPolicySettings)));
}

TEST(EffectivePolicy, VersionRulesMergePerPlatform) {
  const Policy p = effective({
      R"({"min_os_version": {"android": {"version": "12", "action": "wipe"},
                             "ios": {"version": "16"}},
          "min_agent_version": {"linux": {"version": "1.9", "action": "block"}}})",
      R"({"min_os_version": {"android": {"version": "13", "action": "warn"},
                             "windows": {"version": "10.0.19045", "action": "block"}},
          "min_agent_version": {"linux": {"version": "1.10"}}})",
      R"({"pin_min_length": 6})",
  });
  // Per platform the higher version and, separately, the more severe action.
  EXPECT_EQ(p.min_os_version.at("android"), (VersionRule{"13", ComplianceAction::wipe}));
  EXPECT_EQ(p.min_os_version.at("ios"), (VersionRule{"16", ComplianceAction::warn}));
  EXPECT_EQ(p.min_os_version.at("windows"), (VersionRule{"10.0.19045", ComplianceAction::block}));
  EXPECT_EQ(p.min_os_version.size(), 3u);
  // "1.10" is higher than "1.9" as numbers; the two settings merge separately.
  EXPECT_EQ(p.min_agent_version.at("linux"), (VersionRule{"1.10", ComplianceAction::block}));
  EXPECT_EQ(p.min_agent_version.size(), 1u);
  EXPECT_FALSE(p.min_agent_version.contains("android"));
}

TEST(Versions, ValidVersionsAreOneToFourShortNumbers) {
  for (const char* good : {"13", "0.5.0", "17.4.1", "10.0.19045.3803", "999999999", "0"})
    EXPECT_TRUE(is_valid_version(good)) << good;
  for (const char* bad : {"", ".", "1.", ".1", "1..2", "1.2.3.4.5", "1234567890", "v1", "1.2a",
                          "1 2", "-1", "1.2-rc"})
    EXPECT_FALSE(is_valid_version(bad)) << bad;
}

TEST(Versions, CompareAsNumbersPartByPart) {
  EXPECT_EQ(compare_versions("12", "12.0"), 0);
  EXPECT_EQ(compare_versions("12.0.0", "12"), 0);
  EXPECT_EQ(compare_versions("1.10", "1.9"), 1);
  EXPECT_EQ(compare_versions("1.9", "1.10"), -1);
  EXPECT_EQ(compare_versions("12.0.1", "12"), 1);
  EXPECT_EQ(compare_versions("11", "13"), -1);
  EXPECT_EQ(compare_versions("010", "10"), 0);
  EXPECT_EQ(compare_versions("999999999.1", "999999999"), 1);
  // The device's version may carry a suffix; the leading digits and dots count.
  EXPECT_EQ(compare_versions("0.5.0-dev", "0.5.0"), 0);
  EXPECT_EQ(compare_versions("0.5.0-dev", "0.5.1"), -1);
  EXPECT_EQ(compare_versions("6.1.0-18-amd64", "6.1"), 0);
  // Nothing to compare: no valid version on either side.
  EXPECT_EQ(compare_versions("", "1"), std::nullopt);
  EXPECT_EQ(compare_versions("beta", "1"), std::nullopt);
  EXPECT_EQ(compare_versions("1..2", "1"), std::nullopt);
  EXPECT_EQ(compare_versions("1", "0.5.0-dev"), std::nullopt);
  EXPECT_EQ(compare_versions("1", ""), std::nullopt);
}

TEST(Pin, SimplePinsAreRepeatsAndRuns) {
  for (const char* simple : {"000000", "1111", "aaaaaa", "123456", "987654", "0123456789", "3210"})
    EXPECT_TRUE(is_simple_pin(simple)) << simple;
  for (const char* fine : {"", "123457", "135790", "121212", "384920", "abcdef", "890123", "1233"})
    EXPECT_FALSE(is_simple_pin(fine)) << fine;
}

TEST(Pin, RuleViolationsNameTheRule) {
  const Policy p;  // at least 6, simple PINs refused, PIN required
  EXPECT_EQ(pin_rule_violation(p, "384920"), "");
  const std::string short_pin = pin_rule_violation(p, "38492");
  EXPECT_NE(short_pin.find("at least 6 characters"), std::string::npos) << short_pin;
  const std::string simple = pin_rule_violation(p, "123456");
  EXPECT_NE(simple.find("too easy"), std::string::npos) << simple;
  EXPECT_NE(pin_rule_violation(p, "").find("requires a PIN"), std::string::npos);

  Policy lax;
  lax.pin_required = false;
  lax.pin_block_simple = false;
  lax.pin_min_length = 8;
  EXPECT_EQ(pin_rule_violation(lax, ""), "");  // no PIN at all is allowed
  EXPECT_EQ(pin_rule_violation(lax, "12345678"), "");
  // A PIN that is set still meets the length.
  EXPECT_NE(pin_rule_violation(lax, "1234567").find("at least 8"), std::string::npos);
  // Characters, not bytes: six two-byte characters are six.
  EXPECT_NE(pin_rule_violation(lax, "\u00e9\u00e8\u00ea\u00eb\u00e0\u00e2").find("at least 8"),
            std::string::npos);
  EXPECT_EQ(pin_rule_violation(lax, "\u00e9\u00e8\u00ea\u00eb\u00e0\u00e2\u00e7\u00f4"), "");
}

TEST(PolicyNames, ActionsAndPlatformsReadBack) {
  for (ComplianceAction a : {ComplianceAction::none, ComplianceAction::warn,
                             ComplianceAction::block, ComplianceAction::wipe})
    EXPECT_EQ(parse_compliance_action(to_string(a)), a);
  EXPECT_EQ(parse_compliance_action("Block"), std::nullopt);
  EXPECT_EQ(parse_pin_failure_action("lock"), PinFailureAction::lock);
  EXPECT_EQ(parse_pin_failure_action(to_string(PinFailureAction::wipe)), PinFailureAction::wipe);
  EXPECT_EQ(parse_pin_failure_action("block"), std::nullopt);
  EXPECT_TRUE(ComplianceAction::none < ComplianceAction::warn &&
              ComplianceAction::warn < ComplianceAction::block &&
              ComplianceAction::block < ComplianceAction::wipe);
  for (const std::string_view platform : kPlatformNames)
    EXPECT_TRUE(is_known_platform(platform));
  EXPECT_FALSE(is_known_platform("Linux"));
  EXPECT_FALSE(is_known_platform(""));
}

// The JSON Schema IT may use in an editor must say what the parser does: the same property
// names, the same integer bounds, the same enums and the same version form.
class PolicySchema : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string text = kaban::testing::text_of(KABAN_POLICY_SCHEMA);
    ASSERT_FALSE(text.empty()) << "cannot read " << KABAN_POLICY_SCHEMA;
    schema_ = json::parse(text);
  }
  const json& property(std::string_view name) const {
    return schema_.at("properties").at(std::string(name));
  }
  json schema_;
};

TEST_F(PolicySchema, NamesExactlyTheSettings) {
  EXPECT_EQ(schema_["$schema"], "https://json-schema.org/draft/2020-12/schema");
  EXPECT_EQ(schema_["type"], "object");
  EXPECT_EQ(schema_["additionalProperties"], false);
  std::set<std::string> names;
  for (const auto& item : schema_["properties"].items())
    names.insert(item.key());
  std::set<std::string> expected(std::begin(kPolicySettings), std::end(kPolicySettings));
  expected.insert({"$schema", "description"});
  EXPECT_EQ(names, expected);
  EXPECT_EQ(property("description")["maxLength"], kMaxPolicyDescriptionSize);
}

TEST_F(PolicySchema, TypesBoundsAndEnumsMatchTheParser) {
  // policy_to_json writes each setting with the JSON type the parser wants.
  const json defaults = json::parse(policy_to_json(Policy{}));
  for (const std::string_view name : kPolicySettings) {
    const json& p = property(name);
    const json& value = defaults.at(std::string(name));
    if (value.is_boolean()) {
      EXPECT_EQ(p["type"], "boolean") << name;
    } else if (value.is_number_integer()) {
      EXPECT_EQ(p["type"], "integer") << name;
      const auto* range =
          std::find_if(std::begin(kIntegerSettingRanges), std::end(kIntegerSettingRanges),
                       [&](const IntegerSettingRange& r) { return r.name == name; });
      ASSERT_NE(range, std::end(kIntegerSettingRanges)) << name;
      EXPECT_EQ(p["minimum"], range->min) << name;
      EXPECT_EQ(p["maximum"], range->max) << name;
    } else if (value.is_string()) {
      ASSERT_TRUE(p.contains("enum")) << name;
      // Every enum value parses; a near miss of each does not.
      for (const json& v : p["enum"]) {
        const std::string text = json{{std::string(name), v}}.dump();
        EXPECT_TRUE(parse_policy_file(text)) << text;
        std::string upper = v.get<std::string>();
        upper[0] = static_cast<char>(upper[0] - 'a' + 'A');
        EXPECT_FALSE(parse_policy_file(json{{std::string(name), upper}}.dump())) << upper;
      }
      const std::size_t accepted =
          name == "pin_failure_action" ? 2 : 4;  // lock/wipe; none/warn/block/wipe
      EXPECT_EQ(p["enum"].size(), accepted) << name;
    } else {
      EXPECT_EQ(p["$ref"], "#/$defs/versionRules") << name;
    }
  }
}

TEST_F(PolicySchema, VersionRulesMatchTheParser) {
  const json& rules = schema_["$defs"]["versionRules"];
  EXPECT_EQ(rules["additionalProperties"], false);
  std::set<std::string> platforms;
  for (const auto& item : rules["properties"].items())
    platforms.insert(item.key());
  EXPECT_EQ(platforms, std::set<std::string>(std::begin(kPlatformNames), std::end(kPlatformNames)));
  const json& rule = schema_["$defs"]["versionRule"];
  EXPECT_EQ(rule["additionalProperties"], false);
  EXPECT_EQ(rule["required"], json::array({"version"}));
  EXPECT_EQ(rule["properties"]["action"]["enum"], json::array({"warn", "block", "wipe"}));
  const std::regex pattern(rule["properties"]["version"]["pattern"].get<std::string>());
  for (const char* v : {"13", "0.5.0", "10.0.19045.3803", "999999999", "", "1.", "1..2",
                        "1.2.3.4.5", "1234567890", "v1", "1.2-rc"})
    EXPECT_EQ(std::regex_match(v, pattern), is_valid_version(v)) << v;
}

}  // namespace
}  // namespace kaban::protocol
