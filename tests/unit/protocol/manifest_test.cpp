#include "kaban/protocol/manifest.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kaban/protocol/error.hpp"

namespace kaban::protocol {
namespace {

Manifest sample() {
  Manifest m;
  m.course_id = "safety-101";
  m.version = 3;
  m.title = "Shelter safety";
  m.description = "What to check when a shelter opens";
  m.published_at = "2026-11-23T10:00:00Z";
  m.files.push_back({"index.html",
                     "text/html",
                     5,
                     std::string(64, 'a'),
                     {{std::string(64, 'b'), 2}, {std::string(64, 'c'), 3}}});
  m.files.push_back(
      {"media/clip.wav", "audio/wav", 1, std::string(64, 'd'), {{std::string(64, 'e'), 1}}});
  m.lessons.push_back({"1", "Welcome", "html", 5, {"index.html"}});
  m.lessons.push_back({"sound", "Alarm sound", "audio", 1, {"media/clip.wav", "index.html"}});
  return m;
}

// Changes one field of the sample's JSON and returns the parse result.
template <class Edit>
Result<Manifest> parse_edited(Edit edit, std::string* why = nullptr) {
  auto j = nlohmann::json::parse(manifest_to_json(sample()));
  edit(j);
  return parse_manifest(j.dump(), why);
}

TEST(Manifest, RoundTripsThroughJson) {
  const Manifest m = sample();
  auto parsed = parse_manifest(manifest_to_json(m));
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value(), m);
  EXPECT_EQ(m.total_size(), 6u);
  EXPECT_EQ(m.find_lesson("sound")->files[0], "media/clip.wav");
  EXPECT_EQ(m.find_file("nope"), nullptr);
}

TEST(Manifest, AnExpiryIsOptionalAndLeftOutWhenUnset) {
  Manifest m = sample();
  EXPECT_EQ(manifest_to_json(m).find("expires_at"), std::string::npos);
  m.expires_at = "2027-03-31T00:00:00Z";
  auto parsed = parse_manifest(manifest_to_json(m));
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().expires_at, "2027-03-31T00:00:00Z");
  std::string why;
  auto bad = parse_edited([](auto& j) { j["expires_at"] = "next spring"; }, &why);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::invalid_value);
  EXPECT_NE(why.find("expires_at"), std::string::npos) << why;
  EXPECT_FALSE(parse_edited([](auto& j) { j["expires_at"] = 1; }));
}

TEST(Manifest, ContentPathsMustStayInside) {
  EXPECT_TRUE(is_valid_content_path("media/a b.mp4"));
  for (const char* bad :
       {"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a/", "..", "."})
    EXPECT_FALSE(is_valid_content_path(bad)) << bad;
  EXPECT_FALSE(is_valid_content_path(std::string("a\0b", 3)));
}

TEST(Manifest, IdsAreLowerCaseWords) {
  EXPECT_TRUE(is_valid_id("safety-101"));
  EXPECT_TRUE(is_valid_id("a.b_c"));
  for (const char* bad : {"", "Safety", "-x", "a b", "a/b", "é"})
    EXPECT_FALSE(is_valid_id(bad)) << bad;
  EXPECT_FALSE(is_valid_id(std::string(65, 'a')));
}

TEST(Manifest, RefusesInconsistentManifests) {
  std::string why;
  auto r = parse_edited([](auto& j) { j["files"][0]["chunks"][0]["size"] = 3; }, &why);
  ASSERT_FALSE(r);
  EXPECT_NE(why.find("add up"), std::string::npos) << why;

  r = parse_edited([](auto& j) { j["lessons"][0]["files"][0] = "missing.html"; }, &why);
  ASSERT_FALSE(r);
  EXPECT_NE(why.find("missing.html"), std::string::npos) << why;

  r = parse_edited([](auto& j) { j["files"][1]["path"] = "../escape"; });
  EXPECT_FALSE(r);
  r = parse_edited([](auto& j) { j["lessons"][1]["id"] = "1"; });
  EXPECT_FALSE(r);
  r = parse_edited([](auto& j) { j["files"][1]["path"] = "index.html"; });
  EXPECT_FALSE(r);
  r = parse_edited([](auto& j) { j["files"][0]["sha256"] = std::string(64, 'A'); });
  EXPECT_FALSE(r);
  r = parse_edited([](auto& j) { j["files"][0]["chunks"][0]["size"] = 0; });
  EXPECT_FALSE(r);
  r = parse_edited([](auto& j) { j["lessons"][0]["kind"] = "game"; });
  EXPECT_FALSE(r);
  r = parse_edited([](auto& j) { j["format"] = 2; });
  EXPECT_FALSE(r);
}

TEST(Manifest, RefusesUnknownFieldsAndWrongTypes) {
  auto r = parse_edited([](auto& j) { j["extra"] = 1; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::unknown_field);
  r = parse_edited([](auto& j) { j["version"] = "3"; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::malformed);
  r = parse_edited([](auto& j) { j.erase("title"); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::missing_field);
  EXPECT_FALSE(parse_manifest("not json"));
  EXPECT_FALSE(parse_manifest("[]"));
}

}  // namespace
}  // namespace kaban::protocol
