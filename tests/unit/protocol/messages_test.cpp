#include "kaban/protocol/messages.hpp"

#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kaban/protocol/error.hpp"
#include "kaban/protocol/timestamp.hpp"

namespace kaban::protocol {
namespace {

DeviceDescription laptop() {
  return {"linux", "Debian 12", "ThinkPad", "desk-7", "0.1.0"};
}

TEST(Messages, EnrollRequestRoundTrips) {
  EnrollRequest req{"7KQ2-M9XD-4TNA-P3HV", "-----BEGIN CERTIFICATE REQUEST-----", laptop(), ""};
  auto parsed = parse_enroll_request(to_json(req));
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().code, req.code);
  EXPECT_EQ(parsed.value().csr_pem, req.csr_pem);
  EXPECT_EQ(parsed.value().device, req.device);
}

TEST(Messages, RequestsRefuseUnknownFieldsAndBadValues) {
  std::string why;
  auto r = parse_enroll_request(
      R"({"code":"x","csr":"y","device":{"platform":"linux"},"admin":true})", &why);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::unknown_field);
  EXPECT_NE(why.find("admin"), std::string::npos) << why;

  r = parse_enroll_request(R"({"code":"x","csr":"y","device":{"platform":"plan9"}})", &why);
  ASSERT_FALSE(r);
  EXPECT_NE(why.find("platform"), std::string::npos) << why;

  r = parse_enroll_request(R"({"code":"x","device":{"platform":"linux"}})", &why);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::missing_field);

  EXPECT_EQ(parse_checkin_request("{").error(), errc::malformed);
  EXPECT_EQ(parse_checkin_request(std::string(kMaxCheckinRequestSize + 1, ' ')).error(),
            errc::too_large);
  const std::string long_model(200, 'm');
  EXPECT_EQ(
      parse_checkin_request(R"({"device":{"platform":"linux","model":")" + long_model + "\"}}")
          .error(),
      errc::invalid_value);
}

TEST(Messages, ResponsesIgnoreFieldsFromNewerServers) {
  CheckinResponse resp;
  resp.device_id = "d";
  resp.login = "aiko";
  resp.server_time = 1'700'000'000;
  resp.server_epoch = "e1";
  std::string text = to_json(resp);
  text.insert(1, R"("quarantine":{"x":1},)");
  auto parsed = parse_checkin_response(text);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().server_time, 1'700'000'000);
  EXPECT_EQ(parsed.value().verdict, Verdict::compliant);
}

TEST(Messages, ChangesRoundTripAndSkipUnknownKinds) {
  ChangesResponse page;
  page.cursor = "ab.7";
  page.more = true;
  page.changes.push_back({"course_version", CourseVersionChange{"c", 2, "{}", "00"}});
  std::string text = to_json(page);
  text.replace(text.find("[") + 1, 0, R"({"kind":"message","message":{"id":1}},)");
  auto parsed = parse_changes_response(text);
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_EQ(parsed.value().changes.size(), 2u);
  EXPECT_EQ(parsed.value().changes[0].kind, "message");
  EXPECT_FALSE(parsed.value().changes[0].course_version);
  ASSERT_TRUE(parsed.value().changes[1].course_version);
  EXPECT_EQ(parsed.value().changes[1].course_version->version, 2);
  EXPECT_TRUE(parsed.value().more);
}

TEST(Messages, ErrorBodyRoundTrips) {
  auto parsed = parse_error_body(to_json(ErrorBody{"enroll_code_used", "used"}));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().code, "enroll_code_used");
  EXPECT_EQ(parsed.value().message, "used");
}

TEST(Messages, CursorIsEpochDotSequence) {
  auto c = Cursor::parse("0badf00d.42");
  ASSERT_TRUE(c);
  EXPECT_EQ(c.value().epoch, "0badf00d");
  EXPECT_EQ(c.value().seq, 42);
  EXPECT_EQ(c.value().to_string(), "0badf00d.42");
  EXPECT_TRUE(Cursor::parse(""));
  for (const char* bad : {".1", "ab.", "ab.-1", "AB.1", "ab.1x", "ab1", "zz.1"})
    EXPECT_FALSE(Cursor::parse(bad)) << bad;
}

using nlohmann::json;

const std::string kHash = std::string(64, 'c');

Posture full_posture() {
  Posture p;
  p.screen_lock = Fact::yes;
  p.disk_encryption = Fact::no;
  p.rooted = Fact::not_applicable;
  p.os_version_number = "17.4.1";
  p.pin_set = true;
  p.pin_length = 8;
  p.pin_simple = true;
  p.device_time = 1'795'435'200;
  p.clock_rollback_seconds = 3600;
  p.cache_bytes = 5'000'000'000ULL;
  p.network = "cellular";
  return p;
}

CheckinResponse full_checkin_response() {
  CheckinResponse r;
  r.device_id = std::string(64, 'd');
  r.login = "aiko";
  r.server_time = 1'795'435'200;
  r.verdict = Verdict::blocked;
  r.reasons = {{"min_os_version", ComplianceAction::block, "iOS 16 is older than the required 17"},
               {"clock", ComplianceAction::warn, "the clock was set back an hour"}};
  r.server_epoch = "e1";
  r.policy = {R"({"type":"kaban.policy"})", std::string(128, 'a')};
  r.lease = {R"({"type":"kaban.lease"})", std::string(128, 'b')};
  r.certificate_pem = "-----BEGIN CERTIFICATE-----";
  r.commands = {{3, CommandKind::lock}, {4, CommandKind::wipe}};
  r.courses = std::vector<std::string>{"safety-101", "forklift"};
  r.unlock_code_hash = kHash;
  return r;
}

// The code of a refused body, or success.
template <typename Parse>
std::error_code refusal(Parse parse, const std::string& text, std::string* why = nullptr) {
  auto parsed = parse(text, why);
  return parsed ? std::error_code{} : parsed.error();
}

TEST(Messages, EnrollRequestCarriesTheReportTokenHash) {
  EnrollRequest req{"7KQ2-M9XD-4TNA-P3HV", "csr", laptop(), kHash};
  auto parsed = parse_enroll_request(to_json(req));
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().report_token_hash, kHash);
  // An older agent sends none.
  req.report_token_hash.clear();
  EXPECT_EQ(to_json(req).find("report_token_hash"), std::string::npos);
  parsed = parse_enroll_request(to_json(req));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().report_token_hash, "");
  std::string why;
  req.report_token_hash = std::string(64, 'C');
  EXPECT_EQ(refusal(parse_enroll_request, to_json(req), &why), errc::invalid_value);
  EXPECT_NE(why.find("report_token_hash"), std::string::npos) << why;
}

TEST(Messages, EnrollResponseCarriesTheSignedPolicy) {
  EnrollResponse resp{std::string(64, 'd'),
                      "aiko",
                      "Aiko",
                      "cert",
                      "ca",
                      std::string(64, 'e'),
                      "e1",
                      SignedText{R"({"type":"kaban.policy"})", std::string(128, 'f')}};
  auto parsed = parse_enroll_response(to_json(resp));
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().policy, resp.policy);
  // An older server sends none: the text is empty.
  json j = json::parse(to_json(resp));
  j.erase("policy");
  parsed = parse_enroll_response(j.dump());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().policy, SignedText{});
  j["policy"] = {{"text", 5}};
  EXPECT_EQ(refusal(parse_enroll_response, j.dump()), errc::malformed);
}

TEST(Messages, CheckinRequestRoundTripsWithPosture) {
  CheckinRequest req{laptop(), full_posture(), "-----BEGIN CERTIFICATE REQUEST-----", kHash};
  std::string why;
  auto parsed = parse_checkin_request(to_json(req), &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed.value().device, req.device);
  EXPECT_EQ(parsed.value().posture, req.posture);
  EXPECT_EQ(parsed.value().csr_pem, req.csr_pem);
  EXPECT_EQ(parsed.value().report_token_hash, kHash);
  const json j = json::parse(to_json(req));
  EXPECT_EQ(j["posture"]["rooted"], "not_applicable");
  EXPECT_EQ(j["posture"]["cache_bytes"], 5'000'000'000ULL);
  // Without a disk shortage the posture says nothing of one (an older server reads it as before).
  EXPECT_FALSE(j["posture"].contains("content_waiting_bytes"));
  EXPECT_FALSE(j["posture"].contains("disk_free_bytes"));
}

TEST(Messages, ADiskShortageTravelsInThePosture) {
  CheckinRequest req;
  req.device = laptop();
  req.posture = full_posture();
  req.posture.content_waiting_bytes = 700'000'000;
  req.posture.disk_free_bytes = 12'000'000;
  std::string why;
  auto parsed = parse_checkin_request(to_json(req), &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed.value().posture, req.posture);
  const json j = json::parse(to_json(req));
  EXPECT_EQ(j["posture"]["content_waiting_bytes"], 700'000'000);
  EXPECT_EQ(j["posture"]["disk_free_bytes"], 12'000'000);
}

TEST(Messages, AnOlderAgentsCheckinStillParses) {
  std::string why;
  auto parsed = parse_checkin_request(
      R"({"device":{"platform":"linux","os_version":"Debian 12","agent_version":"0.4.0"}})", &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed.value().device.agent_version, "0.4.0");
  EXPECT_EQ(parsed.value().posture, Posture{});
  EXPECT_EQ(parsed.value().csr_pem, "");
  EXPECT_EQ(parsed.value().report_token_hash, "");
  // A request without csr or token hash leaves those keys out.
  CheckinRequest req;
  req.device = laptop();
  const json j = json::parse(to_json(req));
  EXPECT_FALSE(j.contains("csr"));
  EXPECT_FALSE(j.contains("report_token_hash"));
  EXPECT_TRUE(j.contains("posture"));
}

TEST(Messages, CheckinRequestRefusesABadPosture) {
  struct Case {
    const char* key;
    json value;
    errc expected;
  };
  const Case cases[] = {
      {"screen_lock", "not_applicable", errc::invalid_value},
      {"disk_encryption", "maybe", errc::invalid_value},
      {"rooted", true, errc::malformed},
      {"os_version_number", "6.1.0-18-amd64", errc::invalid_value},
      {"os_version_number", std::string(65, '1'), errc::too_large},
      {"pin_length", -1, errc::invalid_value},
      {"pin_length", 1025, errc::invalid_value},
      {"device_time", -1, errc::invalid_value},
      {"clock_rollback_seconds", -30, errc::invalid_value},
      {"cache_bytes", -1, errc::invalid_value},
      {"network", "satellite", errc::invalid_value},
      {"pin_set", "yes", errc::malformed},
      {"battery", 80, errc::unknown_field},
  };
  for (const Case& c : cases) {
    json j = json::parse(to_json(CheckinRequest{laptop(), full_posture(), "", ""}));
    j["posture"][c.key] = c.value;
    std::string why;
    EXPECT_EQ(refusal(parse_checkin_request, j.dump(), &why), c.expected) << c.key << ": " << why;
    EXPECT_NE(why.find(c.key), std::string::npos) << why;
  }
  json j = json::parse(to_json(CheckinRequest{laptop(), full_posture(), "", ""}));
  j["posture"].erase("network");
  EXPECT_EQ(refusal(parse_checkin_request, j.dump()), errc::missing_field);
  j = json::parse(to_json(CheckinRequest{laptop(), full_posture(), "", ""}));
  j["report_token_hash"] = "xyz";
  EXPECT_EQ(refusal(parse_checkin_request, j.dump()), errc::invalid_value);
  j.erase("report_token_hash");
  j["csr"] = std::string(8 * 1024 + 1, 'c');
  EXPECT_EQ(refusal(parse_checkin_request, j.dump()), errc::too_large);
}

TEST(Messages, CheckinResponseRoundTrips) {
  const CheckinResponse r = full_checkin_response();
  std::string why;
  auto parsed = parse_checkin_response(to_json(r), &why);
  ASSERT_TRUE(parsed) << why;
  const CheckinResponse& p = parsed.value();
  EXPECT_EQ(p.device_id, r.device_id);
  EXPECT_EQ(p.login, r.login);
  EXPECT_EQ(p.server_time, r.server_time);
  EXPECT_EQ(p.verdict, Verdict::blocked);
  EXPECT_EQ(p.reasons, r.reasons);
  EXPECT_EQ(p.server_epoch, r.server_epoch);
  EXPECT_EQ(p.policy, r.policy);
  EXPECT_EQ(p.lease, r.lease);
  EXPECT_EQ(p.certificate_pem, r.certificate_pem);
  EXPECT_EQ(p.commands, r.commands);
  EXPECT_EQ(p.courses, r.courses);
  EXPECT_EQ(p.unlock_code_hash, kHash);
}

TEST(Messages, CheckinResponseTellsNoCoursesFromAnEmptyList) {
  CheckinResponse r = full_checkin_response();
  r.courses.reset();
  EXPECT_FALSE(json::parse(to_json(r)).contains("courses"));
  auto parsed = parse_checkin_response(to_json(r));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().courses, std::nullopt);
  r.courses = std::vector<std::string>{};
  EXPECT_EQ(json::parse(to_json(r))["courses"], json::array());
  parsed = parse_checkin_response(to_json(r));
  ASSERT_TRUE(parsed);
  ASSERT_TRUE(parsed.value().courses);
  EXPECT_TRUE(parsed.value().courses->empty());
}

TEST(Messages, AnOlderServersCheckinAnswerStillParses) {
  std::string why;
  auto parsed = parse_checkin_response(
      R"({"device_id":"d","login":"aiko","server_time":5,"verdict":"compliant","server_epoch":"e"})",
      &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed.value().verdict, Verdict::compliant);
  EXPECT_TRUE(parsed.value().policy.text.empty());
  EXPECT_TRUE(parsed.value().lease.text.empty());
  EXPECT_TRUE(parsed.value().reasons.empty());
  EXPECT_TRUE(parsed.value().commands.empty());
  EXPECT_EQ(parsed.value().courses, std::nullopt);
  EXPECT_EQ(parsed.value().unlock_code_hash, "");
}

TEST(Messages, CheckinResponseSkipsCommandsOfUnknownKinds) {
  json j = json::parse(to_json(full_checkin_response()));
  j["commands"] =
      json::array({{{"id", 1}, {"kind", "reboot"}, {"delay", 5}}, {{"id", 2}, {"kind", "wipe"}}});
  auto parsed = parse_checkin_response(j.dump());
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_EQ(parsed.value().commands.size(), 1u);
  EXPECT_EQ(parsed.value().commands[0], (DeviceCommand{2, CommandKind::wipe}));
}

TEST(Messages, CheckinResponseRefusesWhatItCannotUse) {
  struct Case {
    const char* label;
    std::function<void(json&)> change;
    errc expected;
    const char* named;
  };
  const Case cases[] = {
      {"unknown verdict", [](json& j) { j["verdict"] = "quarantined"; }, errc::invalid_value,
       "verdict"},
      {"no verdict", [](json& j) { j.erase("verdict"); }, errc::missing_field, "verdict"},
      {"too many reasons",
       [](json& j) {
         const json one = j["reasons"][0];
         j["reasons"] = json::array();
         for (int i = 0; i < 33; ++i)
           j["reasons"].push_back(one);
       },
       errc::too_large, "reasons"},
      {"reason action", [](json& j) { j["reasons"][1]["action"] = "lock"; }, errc::invalid_value,
       "action"},
      {"long reason", [](json& j) { j["reasons"][0]["message"] = std::string(1001, 'm'); },
       errc::too_large, "message"},
      {"too many commands",
       [](json& j) {
         j["commands"] = json::array();
         for (int i = 1; i <= 65; ++i)
           j["commands"].push_back({{"id", i}, {"kind", "lock"}});
       },
       errc::too_large, "commands"},
      {"command id 0", [](json& j) { j["commands"][0]["id"] = 0; }, errc::invalid_value, "id"},
      {"bad course id", [](json& j) { j["courses"].push_back("../etc"); }, errc::invalid_value,
       "courses"},
      {"course not a string", [](json& j) { j["courses"].push_back(7); }, errc::invalid_value,
       "courses"},
      {"too many courses",
       [](json& j) {
         j["courses"] = json::array();
         for (int i = 0; i < 10'001; ++i)
           j["courses"].push_back("c" + std::to_string(i));
       },
       errc::too_large, "courses"},
      {"unlock hash", [](json& j) { j["unlock_code_hash"] = "1234"; }, errc::invalid_value,
       "unlock_code_hash"},
      {"lease not an object", [](json& j) { j["lease"] = "text"; }, errc::malformed, "lease"},
      {"long signature", [](json& j) { j["policy"]["signature"] = std::string(129, 'a'); },
       errc::too_large, "signature"},
  };
  for (const Case& c : cases) {
    json j = json::parse(to_json(full_checkin_response()));
    c.change(j);
    std::string why;
    EXPECT_EQ(refusal(parse_checkin_response, j.dump(), &why), c.expected)
        << c.label << ": " << why;
    EXPECT_NE(why.find(c.named), std::string::npos) << c.label << ": " << why;
  }
  // At the limits: 32 reasons, 64 commands, 10,000 courses.
  json j = json::parse(to_json(full_checkin_response()));
  const json reason = j["reasons"][0];
  j["reasons"] = json::array();
  for (int i = 0; i < 32; ++i)
    j["reasons"].push_back(reason);
  j["commands"] = json::array();
  for (int i = 1; i <= 64; ++i)
    j["commands"].push_back({{"id", i}, {"kind", "lock"}});
  j["courses"] = json::array();
  for (int i = 0; i < 10'000; ++i)
    j["courses"].push_back("c" + std::to_string(i));
  auto parsed = parse_checkin_response(j.dump());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().reasons.size(), 32u);
  EXPECT_EQ(parsed.value().commands.size(), 64u);
  EXPECT_EQ(parsed.value().courses->size(), 10'000u);
}

TEST(Timestamp, IsRfc3339Utc) {
  EXPECT_EQ(format_timestamp(1'795'435'200), "2026-11-23T12:00:00Z");
  EXPECT_EQ(format_timestamp(1), "1970-01-01T00:00:01Z");
  EXPECT_EQ(format_timestamp(0), "");
}

TEST(Reasons, RoundTripAndRefuseWhatIsNotAReasonList) {
  const std::vector<ComplianceReason> reasons{
      {"min_os_version", ComplianceAction::block, "Android 11 is older than the required 13"},
      {"clock", ComplianceAction::warn, "the clock was set back by 2 hours"}};
  auto back = parse_reasons(reasons_to_json(reasons));
  ASSERT_TRUE(back);
  EXPECT_EQ(back.value(), reasons);
  EXPECT_TRUE(parse_reasons("[]"));
  EXPECT_EQ(parse_reasons("{}").error(), errc::malformed);
  EXPECT_EQ(parse_reasons("not json").error(), errc::malformed);
  std::string why;
  EXPECT_FALSE(parse_reasons(R"([{"setting":"x","action":"explode","message":"m"}])", &why));
  EXPECT_NE(why.find("action"), std::string::npos) << why;
}

TEST(Reasons, ThePostureIsWrittenAsTheCheckInCarriesIt) {
  Posture p;
  p.screen_lock = Fact::yes;
  p.rooted = Fact::not_applicable;
  p.pin_length = 8;
  const auto j = nlohmann::json::parse(to_json(p));
  EXPECT_EQ(j.at("screen_lock"), "yes");
  EXPECT_EQ(j.at("rooted"), "not_applicable");
  EXPECT_EQ(j.at("pin_length"), 8);
  EXPECT_EQ(j.at("disk_encryption"), "unknown");
}

// Content mirrors (docs/content.md): an optional list in the check-in answer.

CheckinResponse minimal_checkin() {
  CheckinResponse resp;
  resp.device_id = "d";
  resp.login = "aiko";
  resp.server_time = 1'700'000'000;
  resp.server_epoch = "e1";
  return resp;
}

TEST(ContentMirrors, RoundTripInOrderAndAreLeftOutWhenThereAreNone) {
  CheckinResponse resp = minimal_checkin();
  EXPECT_EQ(to_json(resp).find("content_mirrors"), std::string::npos);
  auto parsed = parse_checkin_response(to_json(resp));
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_TRUE(parsed.value().content_mirrors.empty());

  resp.content_mirrors = {"https://ward3.city.example:8443", "https://10.0.3.5:443",
                          "https://[fd00::5]:8443"};
  parsed = parse_checkin_response(to_json(resp));
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().content_mirrors, resp.content_mirrors);
}

TEST(ContentMirrors, AnAnswerFromAnOlderServerHasNone) {
  const std::string older = R"({"device_id":"d","login":"aiko","server_time":1700000000,
      "verdict":"compliant","reasons":[],"server_epoch":"e1","policy":{"text":"","signature":""},
      "lease":{"text":"","signature":""},"certificate":"","commands":[],"unlock_code_hash":""})";
  auto parsed = parse_checkin_response(older);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_TRUE(parsed.value().content_mirrors.empty());
}

TEST(ContentMirrors, UnreadableEntriesAreSkippedAndWrongTypesOrSizesRefused) {
  json j = json::parse(to_json(minimal_checkin()));
  j["content_mirrors"] = {"ftp://old.example", "https://ok.example", "https://x.example/path",
                          "https://ok.example:99999"};
  auto parsed = parse_checkin_response(j.dump());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().content_mirrors, std::vector<std::string>{"https://ok.example:443"});

  std::string why;
  j["content_mirrors"] = {42};
  EXPECT_EQ(parse_checkin_response(j.dump(), &why).error(), errc::invalid_value);
  EXPECT_NE(why.find("content_mirrors"), std::string::npos) << why;
  j["content_mirrors"] = {"https://" + std::string(kMaxMirrorUrlSize, 'a')};
  EXPECT_EQ(parse_checkin_response(j.dump()).error(), errc::invalid_value);
  j["content_mirrors"] = std::vector<std::string>(kMaxContentMirrors + 1, "https://m.example");
  EXPECT_FALSE(parse_checkin_response(j.dump()));
}

TEST(ContentMirrors, UrlsAreHttpsHostAndPortOnly) {
  auto a = parse_mirror_url("https://ward3.city.example:8443");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "ward3.city.example");
  EXPECT_EQ(a->port, 8443);
  EXPECT_EQ(a->url(), "https://ward3.city.example:8443");

  a = parse_mirror_url("https://depot-2.example/");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->port, 443);
  EXPECT_EQ(a->url(), "https://depot-2.example:443");

  a = parse_mirror_url("https://[fd00::5]:8443");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "fd00::5");
  EXPECT_EQ(a->url(), "https://[fd00::5]:8443");

  a = parse_mirror_url("https://127.0.0.1:4443");
  ASSERT_TRUE(a);
  EXPECT_EQ((MirrorAddress{"127.0.0.1", 4443}), *a);

  for (const char* bad :
       {"", "http://m.example", "https://", "https://:443",
        "https://m.example:", "https://m.example:0", "https://m.example:65536",
        "https://m.example:80x", "https://m.example/kaban", "https://m.example?x=1",
        "https://user@m.example", "https://-m.example", "https://[fd00::5", "https://[fd00::5]x",
        "https://[zz]:443", "https://m example", " https://m.example"})
    EXPECT_FALSE(parse_mirror_url(bad)) << bad;
}

}  // namespace
}  // namespace kaban::protocol
