#include "kaban/protocol/timestamp.hpp"

#include <gtest/gtest.h>

namespace kaban::protocol {
namespace {

TEST(ParseTimestamp, ReadsUtcDateTimes) {
  EXPECT_EQ(parse_timestamp("2026-11-23T12:00:00Z"), 1'795'435'200);
  EXPECT_EQ(parse_timestamp("1970-01-01T00:00:01Z"), 1);
  EXPECT_EQ(parse_timestamp("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_timestamp("1969-12-31T23:59:59Z"), -1);
  EXPECT_EQ(parse_timestamp("2000-02-29T00:00:00Z"), 951'782'400);
  EXPECT_EQ(parse_timestamp("9999-12-31T23:59:59Z"), 253'402'300'799);
  EXPECT_EQ(parse_timestamp("0000-01-01T00:00:00Z"), -62'167'219'200);
}

TEST(ParseTimestamp, RoundTripsWithFormat) {
  for (std::int64_t t :
       std::initializer_list<std::int64_t>{1, 59, 86'399, 86'400, 951'782'400, 1'700'000'000,
                                           1'795'435'200, 4'102'444'800, 253'402'300'799}) {
    const std::string text = format_timestamp(t);
    EXPECT_EQ(parse_timestamp(text), t) << text;
  }
}

TEST(ParseTimestamp, AppliesOffsetsAndDropsFractions) {
  EXPECT_EQ(parse_timestamp("2026-11-23T21:00:00+09:00"), 1'795'435'200);
  EXPECT_EQ(parse_timestamp("2026-11-23T06:30:00-05:30"), 1'795'435'200);
  EXPECT_EQ(parse_timestamp("2026-11-23T12:00:00+00:00"), 1'795'435'200);
  EXPECT_EQ(parse_timestamp("2026-11-23T12:00:00-00:00"), 1'795'435'200);
  EXPECT_EQ(parse_timestamp("2026-11-23T12:00:00.999Z"), 1'795'435'200);
  EXPECT_EQ(parse_timestamp("2026-11-23T12:00:00.123456789+01:00"), 1'795'431'600);
  EXPECT_EQ(parse_timestamp("2026-11-24T00:30:00+23:59"), 1'795'393'860);
  // RFC 3339 allows lower-case separators.
  EXPECT_EQ(parse_timestamp("2026-11-23t12:00:00z"), 1'795'435'200);
}

TEST(ParseTimestamp, ReadsPlainDatesAsMidnightUtc) {
  EXPECT_EQ(parse_timestamp("2026-11-23"), 1'795'392'000);
  EXPECT_EQ(parse_timestamp("1970-01-01"), 0);
  EXPECT_EQ(parse_timestamp("2024-02-29"), 1'709'164'800);
}

TEST(ParseTimestamp, ReadsALeapSecondAsTheSecondBefore) {
  EXPECT_EQ(parse_timestamp("2016-12-31T23:59:60Z"), parse_timestamp("2016-12-31T23:59:59Z"));
}

TEST(ParseTimestamp, RefusesImpossibleDatesAndTimes) {
  for (const char* bad :
       {"2026-02-29", "2100-02-29", "1900-02-29T00:00:00Z", "2026-04-31", "2026-13-01",
        "2026-00-10", "2026-01-00", "2026-01-32", "2026-11-23T24:00:00Z", "2026-11-23T23:60:00Z",
        "2026-11-23T23:59:61Z", "2026-11-23T12:00:00+24:00", "2026-11-23T12:00:00+09:60"})
    EXPECT_FALSE(parse_timestamp(bad)) << bad;
}

TEST(ParseTimestamp, RefusesOtherShapes) {
  for (const char* bad : {"",
                          "2026",
                          "2026-11",
                          "26-11-23",
                          "2026-1-23",
                          "2026/11/23",
                          "2026-11-23T",
                          "2026-11-23T12:00Z",
                          "2026-11-23T12:00:00",
                          "2026-11-23 12:00:00Z",
                          "2026-11-23T12:00:00.Z",
                          "2026-11-23T12:00:00+0900",
                          "2026-11-23T12:00:00+09",
                          "2026-11-23T12:00:00ZZ",
                          "2026-11-23T12:00:00Z ",
                          " 2026-11-23",
                          "2026-11-23x",
                          "+2026-11-23",
                          "2026-11-23T1:00:00Z",
                          "2026-11-23T12:00:00+09:00:00",
                          "١٩٧٠-01-01",
                          "now"})
    EXPECT_FALSE(parse_timestamp(bad)) << bad;
  EXPECT_FALSE(parse_timestamp(std::string_view("2026-11-23\0", 11)));
}

}  // namespace
}  // namespace kaban::protocol
