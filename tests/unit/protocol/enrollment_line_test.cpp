#include "kaban/protocol/enrollment_line.hpp"

#include <gtest/gtest.h>

#include "kaban/protocol/error.hpp"

namespace kaban::protocol {
namespace {

const std::string kFingerprint(64, 'a');

TEST(EnrollmentLine, RoundTrips) {
  EnrollmentLine line{"city.example", 8443, "7KQ2-M9XD-4TNA-P3HV", kFingerprint};
  auto parsed = EnrollmentLine::parse(line.to_string());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().host, "city.example");
  EXPECT_EQ(parsed.value().port, 8443);
  EXPECT_EQ(parsed.value().code, "7KQ2-M9XD-4TNA-P3HV");
  EXPECT_EQ(parsed.value().ca_fingerprint, kFingerprint);
}

TEST(EnrollmentLine, AcceptsWhatPeopleType) {
  auto parsed = EnrollmentLine::parse(
      "  kaban://[::1]:443/?code=7kq2m9xd4tnap3hv&ca=" + std::string(64, 'A') + "\n");
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed.value().host, "[::1]");
  EXPECT_EQ(parsed.value().code, "7KQ2-M9XD-4TNA-P3HV");
  EXPECT_EQ(parsed.value().ca_fingerprint, kFingerprint);
}

TEST(EnrollmentLine, CodeConfusablesAreMapped) {
  auto code = normalize_enrollment_code("oooo-iiii-llll-0000");
  ASSERT_TRUE(code);
  EXPECT_EQ(code.value(), "0000-1111-1111-0000");
  EXPECT_FALSE(normalize_enrollment_code("7KQ2-M9XD-4TNA-P3H"));    // 15 characters
  EXPECT_FALSE(normalize_enrollment_code("7KQ2-M9XD-4TNA-P3HVX"));  // 17
  EXPECT_FALSE(normalize_enrollment_code("7KQ2-M9XD-4TNA-P3HU"));   // U is not Crockford
}

TEST(EnrollmentLine, RefusesBadLinesWithAReason) {
  const std::string ca = "&ca=" + kFingerprint;
  const struct {
    std::string line;
    errc code;
  } cases[] = {
      {"https://host:1?code=7KQ2M9XD4TNAP3HV" + ca, errc::malformed},
      {"kaban://host?code=7KQ2M9XD4TNAP3HV" + ca, errc::missing_field},
      {"kaban://host:0?code=7KQ2M9XD4TNAP3HV" + ca, errc::invalid_value},
      {"kaban://host:70000?code=7KQ2M9XD4TNAP3HV" + ca, errc::invalid_value},
      {"kaban://ho st:1?code=7KQ2M9XD4TNAP3HV" + ca, errc::invalid_value},
      {"kaban://host:1?ca=" + kFingerprint, errc::missing_field},
      {"kaban://host:1?code=7KQ2M9XD4TNAP3HV", errc::missing_field},
      {"kaban://host:1?code=short" + ca, errc::invalid_value},
      {"kaban://host:1?code=7KQ2M9XD4TNAP3HV&ca=abc", errc::invalid_value},
  };
  for (const auto& c : cases) {
    std::string why;
    auto parsed = EnrollmentLine::parse(c.line, &why);
    ASSERT_FALSE(parsed) << c.line;
    EXPECT_EQ(parsed.error(), c.code) << c.line;
    EXPECT_FALSE(why.empty()) << c.line;
  }
}

}  // namespace
}  // namespace kaban::protocol
