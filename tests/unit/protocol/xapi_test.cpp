#include "kaban/protocol/xapi.hpp"

#include <gtest/gtest.h>

#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/error.hpp"

namespace kaban::protocol::xapi {
namespace {

constexpr const char* kStatementId = "6a1d7b5f-4c2e-4d3f-8b80-123456789abc";

NewStatement sample() {
  NewStatement s;
  s.id = kStatementId;
  s.login = "aiko";
  s.user_name = "Aiko Tanaka";
  s.home_page = "https://kaban.example:8443";
  s.verb = std::string(verbs::kPassed);
  s.course_id = "shelter-opening";
  s.lesson_id = "checklist";
  s.object_name = "Shelter opening checklist";
  s.timestamp = 1'795'435'200;
  s.progress = 100;
  s.completion = true;
  s.success = true;
  s.score_scaled = 0.85;
  s.duration_seconds = 3723;
  return s;
}

// A statement that read_statement accepts, written by hand (keys in no particular order).
constexpr const char* kHandWritten = R"({
  "timestamp": "2026-11-23T21:00:00+09:00",
  "verb": {"display": {"en-US": "completed"}, "id": "http://adlnet.gov/expapi/verbs/completed"},
  "id": "6a1d7b5f-4c2e-4d3f-8b80-123456789abc",
  "object": {"id": "urn:kaban:course:shelter-opening", "objectType": "Activity"},
  "actor": {"account": {"name": "aiko", "homePage": "https://kaban.example"}},
  "result": {"completion": true, "duration": "PT10M"}
})";

// kHandWritten with `from` replaced by `to`.
std::string edited(const std::string& from, const std::string& to) {
  std::string text = kHandWritten;
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos)
    text.replace(at, from.size(), to);
  return text;
}

TEST(Xapi, VerbNamesMapBothWays) {
  const std::pair<std::string_view, std::string_view> pairs[] = {{verbs::kLaunched, "launched"},
                                                                 {verbs::kProgressed, "progressed"},
                                                                 {verbs::kCompleted, "completed"},
                                                                 {verbs::kPassed, "passed"},
                                                                 {verbs::kFailed, "failed"}};
  for (const auto& [iri, name] : pairs) {
    EXPECT_EQ(verb_name(iri), name);
    EXPECT_EQ(verb_iri(name), iri);
  }
  EXPECT_EQ(verb_name("http://adlnet.gov/expapi/verbs/attempted"), "");
  EXPECT_EQ(verb_name("completed"), "");
  EXPECT_EQ(verb_iri("attempted"), "");
  EXPECT_EQ(verb_iri("http://adlnet.gov/expapi/verbs/completed"), "");
  EXPECT_EQ(verb_iri(""), "");
}

TEST(Xapi, ActivityIdsNameCourseAndLesson) {
  EXPECT_EQ(activity_id("shelter-opening"), "urn:kaban:course:shelter-opening");
  EXPECT_EQ(activity_id("shelter-opening", "checklist"),
            "urn:kaban:course:shelter-opening:lesson:checklist");
}

TEST(Xapi, DurationsFormatInHoursMinutesSeconds) {
  EXPECT_EQ(format_duration(0), "PT0S");
  EXPECT_EQ(format_duration(-5), "PT0S");
  EXPECT_EQ(format_duration(3723), "PT1H2M3S");
  EXPECT_EQ(format_duration(59), "PT59S");
  EXPECT_EQ(format_duration(60), "PT1M");
  EXPECT_EQ(format_duration(3600), "PT1H");
  EXPECT_EQ(format_duration(3601), "PT1H1S");
  EXPECT_EQ(format_duration(93'600), "PT26H");
  for (std::int64_t s : std::initializer_list<std::int64_t>{0, 1, 59, 60, 61, 3599, 3600, 3723,
                                                            86'400, 1'000'000'000})
    EXPECT_EQ(parse_duration(format_duration(s)), s) << s;
}

TEST(Xapi, DurationsParse) {
  EXPECT_EQ(parse_duration("PT0S"), 0);
  EXPECT_EQ(parse_duration("PT1H2M3S"), 3723);
  EXPECT_EQ(parse_duration("P1DT2H"), 93'600);
  EXPECT_EQ(parse_duration("P2D"), 172'800);
  EXPECT_EQ(parse_duration("PT1.5S"), 1);
  EXPECT_EQ(parse_duration("PT0.999S"), 0);
  EXPECT_EQ(parse_duration("PT2,5S"), 2);
  EXPECT_EQ(parse_duration("PT90M"), 5400);
  EXPECT_EQ(parse_duration("PT1H30S"), 3630);
  EXPECT_EQ(parse_duration("P0DT0H0M0S"), 0);
  EXPECT_EQ(parse_duration("PT999999999999S"), 999'999'999'999);
  for (const char* bad : {"",
                          "P",
                          "PT",
                          "T1H",
                          "1H",
                          "PT1",
                          "PT1H2",
                          "PTS",
                          "PT.5S",
                          "PT1.S",
                          "PT1.5",
                          "P1DT",
                          "PT1S2M",
                          "PT2M1H",
                          "PT1H1H",
                          "P1M",
                          "P1Y",
                          "P1W",
                          "-PT1S",
                          "PT-1S",
                          "pt1s",
                          "PT1s",
                          "PT 1S",
                          "PT1S ",
                          "P1DT2H3",
                          "garbage",
                          "PT1.5M",
                          "PT1e3S",
                          "PT1000000000000S",
                          "P1000000000000D"})
    EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(Xapi, MadeStatementsReadBackWithTheirFacts) {
  const std::string text = make_statement(sample());
  std::string why;
  auto facts = read_statement(text, &why);
  ASSERT_TRUE(facts) << why << "\n" << text;
  const StatementFacts& f = facts.value();
  EXPECT_EQ(f.id, kStatementId);
  EXPECT_EQ(f.login, "aiko");
  EXPECT_EQ(f.user_name, "Aiko Tanaka");
  EXPECT_EQ(f.verb, verbs::kPassed);
  EXPECT_EQ(f.object_id, "urn:kaban:course:shelter-opening:lesson:checklist");
  EXPECT_EQ(f.course_id, "shelter-opening");
  EXPECT_EQ(f.lesson_id, "checklist");
  EXPECT_EQ(f.timestamp, 1'795'435'200);
  EXPECT_EQ(f.progress, 100);
  EXPECT_EQ(f.completion, true);
  EXPECT_EQ(f.success, true);
  EXPECT_EQ(f.score_scaled, 0.85);
  EXPECT_EQ(f.duration_seconds, 3723);
  EXPECT_EQ(f.canonical, text);
}

TEST(Xapi, MadeStatementHasTheXapiShape) {
  const std::string text = make_statement(sample());
  EXPECT_EQ(
      text,
      R"({"actor":{"account":{"homePage":"https://kaban.example:8443","name":"aiko"},)"
      R"("name":"Aiko Tanaka","objectType":"Agent"},)"
      R"("id":"6a1d7b5f-4c2e-4d3f-8b80-123456789abc",)"
      R"("object":{"definition":{"name":{"en-US":"Shelter opening checklist"}},)"
      R"("id":"urn:kaban:course:shelter-opening:lesson:checklist","objectType":"Activity"},)"
      R"("result":{"completion":true,"duration":"PT1H2M3S","extensions":)"
      R"({"https://w3id.org/xapi/cmi5/result/extensions/progress":100},)"
      R"("score":{"scaled":0.85},"success":true},)"
      R"("timestamp":"2026-11-23T12:00:00Z",)"
      R"("verb":{"display":{"en-US":"passed"},"id":"http://adlnet.gov/expapi/verbs/passed"}})");
  EXPECT_EQ(text.find("version"), std::string::npos);
  EXPECT_EQ(make_statement(sample()), text) << "the same input gives the same text";
}

TEST(Xapi, MinimalStatementLeavesOutWhatIsNotSet) {
  NewStatement s = sample();
  s.lesson_id.clear();
  s.object_name.clear();
  s.user_name.clear();
  s.verb = std::string(verbs::kLaunched);
  s.progress.reset();
  s.completion.reset();
  s.success.reset();
  s.score_scaled.reset();
  s.duration_seconds.reset();
  const std::string text = make_statement(s);
  EXPECT_EQ(text.find("result"), std::string::npos) << text;
  EXPECT_EQ(text.find("definition"), std::string::npos) << text;
  EXPECT_EQ(text.find("\"name\":\"Aiko"), std::string::npos) << text;
  auto facts = read_statement(text);
  ASSERT_TRUE(facts) << text;
  EXPECT_EQ(facts.value().course_id, "shelter-opening");
  EXPECT_EQ(facts.value().lesson_id, "");
  EXPECT_EQ(facts.value().user_name, "");
  EXPECT_FALSE(facts.value().progress || facts.value().completion || facts.value().success ||
               facts.value().score_scaled || facts.value().duration_seconds);
  EXPECT_EQ(facts.value().canonical, text);
}

TEST(Xapi, ScoresAndProgressAtTheirLimitsRoundTrip) {
  for (double scaled : {-1.0, 0.0, 1.0, 0.1, 1.0 / 3.0, -0.000001}) {
    NewStatement s = sample();
    s.score_scaled = scaled;
    s.progress = 0;
    const std::string text = make_statement(s);
    auto facts = read_statement(text);
    ASSERT_TRUE(facts) << text;
    EXPECT_EQ(facts.value().score_scaled, scaled);
    EXPECT_EQ(facts.value().progress, 0);
    EXPECT_EQ(facts.value().canonical, text);
  }
}

TEST(Xapi, ReadsAHandWrittenStatementWithAnOffset) {
  std::string why;
  auto facts = read_statement(kHandWritten, &why);
  ASSERT_TRUE(facts) << why;
  EXPECT_EQ(facts.value().timestamp, 1'795'435'200);
  EXPECT_EQ(facts.value().course_id, "shelter-opening");
  EXPECT_EQ(facts.value().lesson_id, "");
  EXPECT_EQ(facts.value().duration_seconds, 600);
  EXPECT_EQ(facts.value().user_name, "");
}

TEST(Xapi, CanonicalTextIsTheSameForTheSameContent) {
  const std::string reordered = R"({"result":{"duration":"PT10M","completion":true},)"
                                R"("actor":{"account":{"homePage":"https://kaban.example",)"
                                R"("name":"aiko"}},"object":{"objectType":"Activity",)"
                                R"("id":"urn:kaban:course:shelter-opening"},)"
                                R"("id":"6a1d7b5f-4c2e-4d3f-8b80-123456789abc",)"
                                R"("verb":{"id":"http://adlnet.gov/expapi/verbs/completed",)"
                                R"("display":{"en-US":"completed"}},)"
                                R"("timestamp":"2026-11-23T21:00:00+09:00"})";
  const auto a = read_statement(kHandWritten);
  const auto b = read_statement(reordered);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a.value().canonical, b.value().canonical);
  EXPECT_EQ(a.value().canonical.find(' '), std::string::npos);
  EXPECT_EQ(a.value().canonical.find('\n'), std::string::npos);
  EXPECT_LT(a.value().canonical.find("\"actor\""), a.value().canonical.find("\"id\""));

  // Escapes spell the same text.
  const auto escaped = read_statement(edited("\"aiko\"", "\"\\u0061iko\""));
  ASSERT_TRUE(escaped);
  EXPECT_EQ(escaped.value().canonical, a.value().canonical);

  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"PT10M", "PT11M"},
           {"\"completion\": true", "\"completion\": false"},
           {"21:00:00+09:00", "21:00:01+09:00"},
           // The same instant written differently is different content.
           {"2026-11-23T21:00:00+09:00", "2026-11-23T12:00:00Z"},
           {"\"en-US\": \"completed\"", "\"en-GB\": \"completed\""}}) {
    const auto changed = read_statement(edited(from, to));
    ASSERT_TRUE(changed) << to;
    EXPECT_NE(changed.value().canonical, a.value().canonical) << to;
  }
}

TEST(Xapi, AcceptsWhatAnLrsMayAdd) {
  const std::string text =
      edited("\"result\"", R"("version":"1.0.3","stored":"2026-11-23T12:00:01Z","authority":)"
                           R"({"objectType":"Agent","mbox":"mailto:lrs@example.org"},"context":)"
                           R"({"registration":"00000000-0000-4000-8000-000000000000"},)"
                           R"("attachments":[],"result")");
  std::string why;
  auto facts = read_statement(text, &why);
  ASSERT_TRUE(facts) << why;
  EXPECT_NE(facts.value().canonical.find("\"version\":\"1.0.3\""), std::string::npos);
  EXPECT_TRUE(read_statement(edited("\"result\"", R"("version":"1.0","result")")));
  EXPECT_TRUE(read_statement(edited("\"objectType\": \"Activity\"",
                                    R"("objectType":"Activity","definition":{"type":)"
                                    R"("http://adlnet.gov/expapi/activities/lesson",)"
                                    R"("description":{"en-US":"x"}})")));
  EXPECT_TRUE(read_statement(
      edited("\"urn:kaban:course:shelter-opening\"", "\"https://example.org/other-course\"")));
}

TEST(Xapi, RefusesStatementsOutsideTheSubset) {
  struct Case {
    std::string from;
    std::string to;
    errc code;
    std::string mentions;
  };
  const Case cases[] = {
      {"\"id\": \"6a1d", "\"id\": \"XXXX", errc::invalid_value, "id"},
      {"\"id\": \"6a1d7b5f-4c2e-4d3f-8b80-123456789abc\",", "", errc::missing_field, "id"},
      {"\"actor\"", "\"agent\"", errc::missing_field, "actor"},
      {"\"actor\": {", "\"actor\": {\"objectType\":\"Group\",", errc::invalid_value, "objectType"},
      {"\"actor\": {", "\"actor\": {\"mbox\":\"mailto:a@example.org\",", errc::unknown_field,
       "mbox"},
      {"\"actor\": {", "\"actor\": {\"name\":7,", errc::malformed, "name"},
      {"\"name\": \"aiko\"", "\"name\": \"Aiko\"", errc::invalid_value, "login"},
      {"\"name\": \"aiko\", ", "", errc::missing_field, "name"},
      {"\"https://kaban.example\"", "\"kaban.example\"", errc::invalid_value, "homePage"},
      {"\"https://kaban.example\"", "\"https://kaban example\"", errc::invalid_value, "homePage"},
      {"\"https://kaban.example\"", "\"1https://kaban.example\"", errc::invalid_value, "homePage"},
      {"\"https://kaban.example\"", "\"https:\"", errc::invalid_value, "homePage"},
      {"\"https://kaban.example\"", "\"https://kaban\\u0000.example\"", errc::invalid_value,
       "homePage"},
      {"\"https://kaban.example\"", "\"https://" + std::string(2048, 'k') + "\"", errc::too_large,
       "homePage"},
      {"\"id\": \"http://adlnet", "\"id\": \"adlnet", errc::invalid_value, "verb"},
      {"\"display\": {\"en-US\": \"completed\"}", "\"display\": {\"en-US\": 7}",
       errc::invalid_value, "display"},
      {"\"display\": {\"en-US\": \"completed\"}", "\"display\": \"completed\"", errc::malformed,
       "display"},
      {"\"objectType\": \"Activity\"", "\"objectType\": \"StatementRef\"", errc::invalid_value,
       "objectType"},
      {"urn:kaban:course:shelter-opening", "urn:kaban:course:Shelter", errc::invalid_value,
       "course"},
      {"urn:kaban:course:shelter-opening", "urn:kaban:course:a:lesson:", errc::invalid_value,
       "course"},
      {"urn:kaban:course:shelter-opening", "urn:kaban:course:a:lesson:b:c", errc::invalid_value,
       "course"},
      {"\"result\": {", "\"result\": {\"score\":{\"scaled\":1.5},", errc::invalid_value, "scaled"},
      {"\"result\": {", "\"result\": {\"score\":{\"scaled\":-1.01},", errc::invalid_value,
       "scaled"},
      {"\"result\": {", "\"result\": {\"score\":{\"scaled\":\"0.5\"},", errc::malformed, "scaled"},
      {"\"result\": {", "\"result\": {\"score\":{\"percent\":50},", errc::unknown_field, "percent"},
      {"\"result\": {", "\"result\": {\"score\":{\"raw\":5,\"min\":6},", errc::invalid_value,
       "raw"},
      {"\"result\": {", "\"result\": {\"score\":{\"min\":6,\"max\":5},", errc::invalid_value,
       "min"},
      {"\"result\": {", "\"result\": {\"score\":7,", errc::malformed, "score"},
      {"\"completion\": true", "\"completion\": \"true\"", errc::malformed, "completion"},
      {"\"completion\": true", "\"success\": 1", errc::malformed, "success"},
      {"PT10M", "10 minutes", errc::invalid_value, "duration"},
      {"PT10M", "P1Y", errc::invalid_value, "duration"},
      {"\"result\": {", "\"result\": {\"grade\":\"A\",", errc::unknown_field, "grade"},
      {"\"result\": {",
       "\"result\": {\"extensions\":{\"https://w3id.org/xapi/cmi5/result/extensions/"
       "progress\":101},",
       errc::invalid_value, "progress"},
      {"\"result\": {",
       "\"result\": {\"extensions\":{\"https://w3id.org/xapi/cmi5/result/extensions/"
       "progress\":50.5},",
       errc::invalid_value, "progress"},
      {"\"result\": {",
       "\"result\": {\"extensions\":{\"https://w3id.org/xapi/cmi5/result/extensions/"
       "progress\":-1},",
       errc::invalid_value, "progress"},
      {"\"result\": {",
       "\"result\": {\"extensions\":{\"https://w3id.org/xapi/cmi5/result/extensions/"
       "progress\":18446744073709551615},",
       errc::invalid_value, "progress"},
      {"\"result\": {", "\"result\": {\"extensions\":{\"progress\":5},", errc::invalid_value,
       "extensions"},
      {"\"result\": {", "\"result\": {\"extensions\":[],", errc::malformed, "extensions"},
      {"\"timestamp\": \"2026-11-23T21:00:00+09:00\",", "", errc::missing_field, "timestamp"},
      {"2026-11-23T21:00:00+09:00", "2026-02-30T21:00:00Z", errc::invalid_value, "timestamp"},
      {"2026-11-23T21:00:00+09:00", "yesterday", errc::invalid_value, "timestamp"},
      {"\"result\"", "\"version\":\"2.0.0\",\"result\"", errc::invalid_value, "version"},
      {"\"result\"", "\"version\":\"1.05\",\"result\"", errc::invalid_value, "version"},
      {"\"result\"", "\"version\":103,\"result\"", errc::malformed, "version"},
      {"\"result\"", "\"voided\":true,\"result\"", errc::unknown_field, "voided"},
      {"\"result\"", "\"context\":[],\"result\"", errc::malformed, "context"},
      {"\"result\"", "\"object\":7,\"result\"", errc::malformed, "object"},
  };
  for (const Case& c : cases) {
    const std::string text = edited(c.from, c.to);
    std::string why;
    auto facts = read_statement(text, &why);
    ASSERT_FALSE(facts) << text;
    EXPECT_EQ(facts.error(), c.code) << c.to << "\n" << why;
    EXPECT_NE(why.find(c.mentions), std::string::npos) << c.to << "\n" << why;
  }
}

TEST(Xapi, RefusesHostileInput) {
  EXPECT_EQ(read_statement("").error(), errc::malformed);
  EXPECT_EQ(read_statement("[]").error(), errc::malformed);
  EXPECT_EQ(read_statement("null").error(), errc::malformed);
  EXPECT_EQ(read_statement(std::string(kHandWritten) + "x").error(), errc::malformed);
  EXPECT_EQ(read_statement(std::string_view(kHandWritten).substr(0, 40)).error(), errc::malformed);
  EXPECT_EQ(read_statement(edited("\"result\"", "\"context\":{\"pad\":\"" +
                                                    std::string(kMaxStatementSize, ' ') +
                                                    "\"},\"result\""))
                .error(),
            errc::too_large);
  const std::string deep = edited("\"result\"", "\"context\":{\"x\":" + std::string(5000, '[') +
                                                    std::string(5000, ']') + "},\"result\"");
  EXPECT_EQ(read_statement(deep).error(), errc::malformed);
  // NUL outside a string, invalid UTF-8, lone surrogates.
  EXPECT_EQ(read_statement(edited("\"id\":", std::string("\"id\"\0:", 6))).error(),
            errc::malformed);
  EXPECT_EQ(read_statement(edited("\"aiko\"", "\"ai\xc0\xafko\"")).error(), errc::malformed);
  EXPECT_EQ(read_statement(edited("\"aiko\"", "\"ai\xed\xa0\x80ko\"")).error(), errc::malformed);
  EXPECT_EQ(read_statement(edited("\"aiko\"", "\"\\udc00\"")).error(), errc::malformed);
}

TEST(Xapi, MakeStatementNeverThrows) {
  NewStatement s = sample();
  s.user_name = "bad \xff byte";
  std::string text;
  ASSERT_NO_THROW(text = make_statement(s));
  auto facts = read_statement(text);
  ASSERT_TRUE(facts) << text;
  EXPECT_EQ(facts.value().user_name, "bad \xef\xbf\xbd byte");
  EXPECT_EQ(facts.value().canonical, text);
}

}  // namespace
}  // namespace kaban::protocol::xapi
