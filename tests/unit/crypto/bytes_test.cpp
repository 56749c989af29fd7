#include "kaban/crypto/bytes.hpp"

#include <gtest/gtest.h>

#include "kaban/crypto/error.hpp"

namespace kaban::crypto {
namespace {

TEST(Hex, EncodesLowerCase) {
  const Bytes data{0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  EXPECT_EQ(to_hex(data), "00017f80abff");
  EXPECT_EQ(to_hex({}), "");
}

TEST(Hex, DecodesEitherCase) {
  EXPECT_EQ(from_hex("00017f80abff").value(), (Bytes{0x00, 0x01, 0x7f, 0x80, 0xab, 0xff}));
  EXPECT_EQ(from_hex("ABCDEF").value(), (Bytes{0xab, 0xcd, 0xef}));
  EXPECT_TRUE(from_hex("").value().empty());
}

TEST(Hex, RoundTripsEveryByte) {
  Bytes all(256);
  for (std::size_t i = 0; i < all.size(); ++i)
    all[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(from_hex(to_hex(all)).value(), all);
}

TEST(Hex, RejectsOddLengthAndNonHexDigits) {
  EXPECT_EQ(from_hex("abc").error(), errc::invalid_encoding);
  EXPECT_EQ(from_hex("0g").error(), errc::invalid_encoding);
  EXPECT_EQ(from_hex("  ").error(), errc::invalid_encoding);
  EXPECT_EQ(from_hex("0x00").error(), errc::invalid_encoding);
}

TEST(ConstantTimeEqual, ComparesContentAndLength) {
  const Bytes a{1, 2, 3};
  EXPECT_TRUE(constant_time_equal(a, Bytes{1, 2, 3}));
  EXPECT_FALSE(constant_time_equal(a, Bytes{1, 2, 4}));
  EXPECT_FALSE(constant_time_equal(a, Bytes{1, 2}));
  EXPECT_TRUE(constant_time_equal({}, {}));
}

}  // namespace
}  // namespace kaban::crypto
