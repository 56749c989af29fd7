#include "kaban/protocol/messages.hpp"

#include <gtest/gtest.h>

#include "kaban/protocol/error.hpp"
#include "kaban/protocol/timestamp.hpp"

namespace kaban::protocol {
namespace {

DeviceDescription laptop() {
  return {"linux", "Debian 12", "ThinkPad", "desk-7", "0.1.0"};
}

TEST(Messages, EnrollRequestRoundTrips) {
  EnrollRequest req{"7KQ2-M9XD-4TNA-P3HV", "-----BEGIN CERTIFICATE REQUEST-----", laptop()};
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
  CheckinResponse resp{"d", "aiko", 1'700'000'000, "compliant", "e1"};
  std::string text = to_json(resp);
  text.insert(1, R"("lease":{"x":1},)");
  auto parsed = parse_checkin_response(text);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().server_time, 1'700'000'000);
  EXPECT_EQ(parsed.value().verdict, "compliant");
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

TEST(Timestamp, IsRfc3339Utc) {
  EXPECT_EQ(format_timestamp(1'795'435'200), "2026-11-23T12:00:00Z");
  EXPECT_EQ(format_timestamp(1), "1970-01-01T00:00:01Z");
  EXPECT_EQ(format_timestamp(0), "");
}

}  // namespace
}  // namespace kaban::protocol
