#include "kaban/protocol/compliance.hpp"

#include <functional>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kaban/protocol/error.hpp"

namespace kaban::protocol {
namespace {

using nlohmann::json;

const std::string kToken(64, 'a');

DevicePolicy sample_policy() {
  DevicePolicy p;
  p.device_id = std::string(64, 'd');
  p.version = 12;
  p.issued_at = 1'795'435'200;
  p.settings.pin_min_length = 8;
  p.settings.pin_failure_action = PinFailureAction::lock;
  p.settings.min_os_version["android"] = {"13", ComplianceAction::block};
  p.settings.offline_wipe_days = 0;
  return p;
}

Lease sample_lease() {
  Lease l;
  l.device_id = std::string(64, 'd');
  l.issued_at = 1'795'435'200;
  l.block_after = l.issued_at + 720 * 60;
  l.wipe_after = l.issued_at + 90 * 86'400;
  l.policy_version = 12;
  l.verdict = Verdict::warn;
  return l;
}

TEST(ComplianceNames, EveryNameReadsBackAndOthersAreRefused) {
  for (Fact f : {Fact::unknown, Fact::yes, Fact::no, Fact::not_applicable})
    EXPECT_EQ(parse_fact(to_string(f)), f);
  EXPECT_EQ(to_string(Fact::not_applicable), "not_applicable");
  EXPECT_EQ(parse_fact("true"), std::nullopt);
  for (Verdict v : {Verdict::compliant, Verdict::warn, Verdict::blocked, Verdict::wipe})
    EXPECT_EQ(parse_verdict(to_string(v)), v);
  EXPECT_EQ(to_string(Verdict::blocked), "blocked");
  EXPECT_EQ(parse_verdict("block"), std::nullopt);
  for (CommandKind k : {CommandKind::wipe, CommandKind::lock})
    EXPECT_EQ(parse_command_kind(to_string(k)), k);
  EXPECT_EQ(parse_command_kind("reboot"), std::nullopt);
  for (DeviceEventKind k :
       {DeviceEventKind::wiped, DeviceEventKind::locked, DeviceEventKind::unlocked})
    EXPECT_EQ(parse_device_event_kind(to_string(k)), k);
  EXPECT_EQ(parse_device_event_kind("wipe"), std::nullopt);
}

TEST(ComplianceNames, VerdictForEachAction) {
  EXPECT_EQ(verdict_for(ComplianceAction::none), Verdict::compliant);
  EXPECT_EQ(verdict_for(ComplianceAction::warn), Verdict::warn);
  EXPECT_EQ(verdict_for(ComplianceAction::block), Verdict::blocked);
  EXPECT_EQ(verdict_for(ComplianceAction::wipe), Verdict::wipe);
  EXPECT_TRUE(Verdict::compliant < Verdict::warn && Verdict::warn < Verdict::blocked &&
              Verdict::blocked < Verdict::wipe);
}

class SignedTextTest : public ::testing::Test {
 protected:
  crypto::Ed25519PrivateKey key_ = crypto::Ed25519PrivateKey::generate();
  crypto::Ed25519PrivateKey other_ = crypto::Ed25519PrivateKey::generate();
};

TEST_F(SignedTextTest, AGoodSignatureVerifies) {
  const SignedText s = sign_text(device_policy_text(sample_policy()), key_);
  EXPECT_EQ(s.text, device_policy_text(sample_policy()));
  EXPECT_EQ(s.signature.size(), 128u);
  EXPECT_TRUE(verify_text(s, key_.public_key()));
}

TEST_F(SignedTextTest, AChangedTextIsRefused) {
  SignedText s = sign_text(lease_text(sample_lease()), key_);
  s.text.replace(s.text.find("\"warn\""), 6, "\"wipe\"");
  const auto r = verify_text(s, key_.public_key());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::bad_signature);
}

TEST_F(SignedTextTest, AChangedSignatureIsRefused) {
  SignedText s = sign_text(lease_text(sample_lease()), key_);
  s.signature[10] = s.signature[10] == '0' ? '1' : '0';
  EXPECT_EQ(verify_text(s, key_.public_key()).error(), errc::bad_signature);
}

TEST_F(SignedTextTest, AnUnsignedOrMalformedSignatureIsRefused) {
  const SignedText good = sign_text(lease_text(sample_lease()), key_);
  for (const std::string& bad :
       {std::string(), std::string(128, '0'), good.signature.substr(0, 126), good.signature + "00",
        std::string(128, 'z')}) {
    const auto r = verify_text({good.text, bad}, key_.public_key());
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error(), errc::bad_signature) << bad;
  }
}

TEST_F(SignedTextTest, AnotherKeysSignatureIsRefused) {
  const SignedText s = sign_text(lease_text(sample_lease()), other_);
  EXPECT_TRUE(verify_text(s, other_.public_key()));
  EXPECT_EQ(verify_text(s, key_.public_key()).error(), errc::bad_signature);
}

TEST(DevicePolicyText, IsCompactJsonWithTheTypeFirstAndRoundTrips) {
  const DevicePolicy p = sample_policy();
  const std::string text = device_policy_text(p);
  EXPECT_EQ(text.rfind(R"({"type":"kaban.policy",)", 0), 0u) << text;
  EXPECT_EQ(text.find(' '), std::string::npos) << text;
  std::string why;
  auto parsed = parse_device_policy_text(text, &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed.value(), p);
  // The same policy gives the same bytes.
  EXPECT_EQ(device_policy_text(parsed.value()), text);
}

TEST(DevicePolicyText, RefusesAnotherTypeOfDocument) {
  std::string why;
  auto parsed = parse_device_policy_text(lease_text(sample_lease()), &why);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error(), errc::invalid_value);
  EXPECT_NE(why.find("kaban.lease"), std::string::npos) << why;

  json j = json::parse(device_policy_text(sample_policy()));
  j.erase("type");
  EXPECT_EQ(parse_device_policy_text(j.dump()).error(), errc::missing_field);
  j["type"] = "kaban.manifest";
  EXPECT_EQ(parse_device_policy_text(j.dump()).error(), errc::invalid_value);
}

TEST(DevicePolicyText, ChecksTheSettingsAndToleratesNewFields) {
  json j = json::parse(device_policy_text(sample_policy()));
  j["issued_by"] = "a newer server";
  j["settings"]["screen_timeout"] = 5;
  auto parsed = parse_device_policy_text(j.dump());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value(), sample_policy());

  j["settings"]["pin_max_attempts"] = 1;
  std::string why;
  auto bad = parse_device_policy_text(j.dump(), &why);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::invalid_value);
  EXPECT_NE(why.find("pin_max_attempts"), std::string::npos) << why;

  j = json::parse(device_policy_text(sample_policy()));
  j.erase("settings");
  EXPECT_EQ(parse_device_policy_text(j.dump()).error(), errc::missing_field);
  EXPECT_EQ(parse_device_policy_text("not json").error(), errc::malformed);
}

TEST(LeaseText, IsCompactJsonWithTheTypeFirstAndRoundTrips) {
  const Lease l = sample_lease();
  const std::string text = lease_text(l);
  EXPECT_EQ(text.rfind(R"({"type":"kaban.lease",)", 0), 0u) << text;
  std::string why;
  auto parsed = parse_lease_text(text, &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed.value(), l);

  Lease never;
  never.device_id = "x";
  never.verdict = Verdict::blocked;
  auto again = parse_lease_text(lease_text(never));
  ASSERT_TRUE(again);
  EXPECT_EQ(again.value(), never);
}

TEST(LeaseText, RefusesAnotherTypeAndBadValues) {
  std::string why;
  auto parsed = parse_lease_text(device_policy_text(sample_policy()), &why);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error(), errc::invalid_value);
  EXPECT_NE(why.find("kaban.policy"), std::string::npos) << why;

  json j = json::parse(lease_text(sample_lease()));
  j["verdict"] = "fine";
  EXPECT_EQ(parse_lease_text(j.dump()).error(), errc::invalid_value);
  j = json::parse(lease_text(sample_lease()));
  j["block_after"] = -1;
  EXPECT_EQ(parse_lease_text(j.dump()).error(), errc::invalid_value);
  j = json::parse(lease_text(sample_lease()));
  j.erase("wipe_after");
  EXPECT_EQ(parse_lease_text(j.dump()).error(), errc::missing_field);
}

DeviceEventsRequest sample_events() {
  DeviceEventsRequest r;
  r.device_id = std::string(64, 'd');
  r.report_token = kToken;
  r.events.push_back({DeviceEventKind::wiped, "command", 7, 1'795'435'200});
  r.events.push_back({DeviceEventKind::locked, "pin_attempts", 0, 1'795'435'100});
  r.events.push_back({DeviceEventKind::unlocked, "unlock_code", 0, 1'795'435'150});
  return r;
}

// The request's JSON with `change` applied; the refusal's code, or success.
std::error_code events_refusal(const std::function<void(json&)>& change, std::string* why) {
  json j = json::parse(to_json(sample_events()));
  change(j);
  auto parsed = parse_device_events_request(j.dump(), why);
  return parsed ? std::error_code{} : parsed.error();
}

TEST(DeviceEvents, RoundTrips) {
  const DeviceEventsRequest r = sample_events();
  std::string why;
  auto parsed = parse_device_events_request(to_json(r), &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed.value().device_id, r.device_id);
  EXPECT_EQ(parsed.value().report_token, r.report_token);
  EXPECT_EQ(parsed.value().events, r.events);
}

TEST(DeviceEvents, RefusesBadRequests) {
  struct Case {
    const char* label;
    std::function<void(json&)> change;
    errc expected;
    const char* named;
  };
  const Case cases[] = {
      {"no events", [](json& j) { j["events"] = json::array(); }, errc::invalid_value, "events"},
      {"too many events",
       [](json& j) {
         const json one = j["events"][1];
         j["events"] = json::array();
         for (std::size_t i = 0; i <= kMaxDeviceEvents; ++i)
           j["events"].push_back(one);
       },
       errc::too_large, "events"},
      {"short token", [](json& j) { j["report_token"] = std::string(63, 'a'); },
       errc::invalid_value, "report_token"},
      {"upper-case token", [](json& j) { j["report_token"] = std::string(64, 'A'); },
       errc::invalid_value, "report_token"},
      {"no token", [](json& j) { j.erase("report_token"); }, errc::missing_field, "report_token"},
      {"empty device", [](json& j) { j["device_id"] = ""; }, errc::invalid_value, "device_id"},
      {"long device", [](json& j) { j["device_id"] = std::string(65, 'd'); }, errc::too_large,
       "device_id"},
      {"unknown field", [](json& j) { j["admin"] = true; }, errc::unknown_field, "admin"},
      {"unknown event field", [](json& j) { j["events"][0]["note"] = "x"; }, errc::unknown_field,
       "note"},
      {"unknown kind", [](json& j) { j["events"][0]["kind"] = "rebooted"; }, errc::invalid_value,
       "kind"},
      {"unknown reason", [](json& j) { j["events"][1]["reason"] = "bored"; }, errc::invalid_value,
       "reason"},
      {"command without id", [](json& j) { j["events"][0].erase("command_id"); },
       errc::invalid_value, "command_id"},
      {"id without command", [](json& j) { j["events"][1]["command_id"] = 3; }, errc::invalid_value,
       "command_id"},
      {"negative time", [](json& j) { j["events"][2]["at"] = -5; }, errc::invalid_value, "at"},
      {"time past 9999", [](json& j) { j["events"][2]["at"] = 253'402'300'800LL; },
       errc::invalid_value, "at"},
  };
  for (const Case& c : cases) {
    std::string why;
    EXPECT_EQ(events_refusal(c.change, &why), c.expected) << c.label << ": " << why;
    EXPECT_NE(why.find(c.named), std::string::npos) << c.label << ": " << why;
  }
  // The sixteenth event is still fine.
  std::string why;
  EXPECT_EQ(events_refusal(
                [](json& j) {
                  const json one = j["events"][1];
                  j["events"] = json::array();
                  for (std::size_t i = 0; i < kMaxDeviceEvents; ++i)
                    j["events"].push_back(one);
                },
                &why),
            std::error_code{})
      << why;
}

TEST(DeviceEvents, RefusesABodyOverTheLimit) {
  const std::string body(kMaxDeviceEventsRequestSize + 1, ' ');
  EXPECT_EQ(parse_device_events_request(body).error(), errc::too_large);
  EXPECT_EQ(parse_device_events_request("[]").error(), errc::malformed);
}

TEST(Hashes, ReportTokenHashIsSha256OfTheToken) {
  EXPECT_EQ(report_token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(report_token_hash(kToken).size(), 64u);
  EXPECT_NE(report_token_hash(kToken), report_token_hash(std::string(64, 'b')));
}

TEST(Hashes, UnlockCodesAreNormalisedBeforeHashing) {
  const std::string expected = "9ac2197d9258257b1ae8463e4214e4cd0a578bc1517f2415928b91be4283fc48";
  EXPECT_EQ(unlock_code_hash("ABCDEFGH"), expected);  // SHA-256 of "ABCDEFGH"
  EXPECT_EQ(unlock_code_hash("abcd-efgh"), expected);
  EXPECT_EQ(unlock_code_hash(" ab cd-EF gh "), expected);
  EXPECT_NE(unlock_code_hash("ABCDEFGI"), expected);
  EXPECT_NE(unlock_code_hash("ABCDEFG"), expected);
}

}  // namespace
}  // namespace kaban::protocol
