// HMAC-SHA256, HKDF-SHA256 and scrypt against their RFC vectors.
#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "kaban/crypto/error.hpp"
#include "kaban/crypto/hmac.hpp"
#include "kaban/crypto/scrypt.hpp"
#include "kat.hpp"

namespace kaban::crypto {
namespace {

using test::hex;

std::string hex_of(const SecretKey& key) {
  return to_hex(key.bytes());
}

TEST(HmacSha256, MatchesRfc4231) {
  for (const auto& v : test::load_vectors("hmac_sha256_rfc4231.json")) {
    SCOPED_TRACE(v.at("name").get<std::string>());
    const auto expected = v.at("mac").get<std::string>();
    const Mac mac =
        hmac_sha256(hex(v.at("key").get<std::string>()), hex(v.at("data").get<std::string>()));
    // Test case 5 publishes only the first 128 bits.
    EXPECT_EQ(to_hex(mac).substr(0, expected.size()), expected);
  }
}

TEST(HmacSha256, DependsOnKeyAndData) {
  const Mac base = hmac_sha256(test::ascii("key"), test::ascii("data"));
  EXPECT_NE(hmac_sha256(test::ascii("kez"), test::ascii("data")), base);
  EXPECT_NE(hmac_sha256(test::ascii("key"), test::ascii("datb")), base);
}

TEST(HkdfSha256, MatchesRfc5869) {
  for (const auto& v : test::load_vectors("hkdf_sha256_rfc5869.json")) {
    SCOPED_TRACE(v.at("name").get<std::string>());
    auto okm =
        hkdf_sha256(hex(v.at("ikm").get<std::string>()), hex(v.at("salt").get<std::string>()),
                    hex(v.at("info").get<std::string>()), v.at("length").get<std::size_t>());
    ASSERT_TRUE(okm) << okm.error().message();
    EXPECT_EQ(hex_of(okm.value()), v.at("okm").get<std::string>());
  }
}

TEST(HkdfSha256, RejectsLengthsOutsideRfc5869Bounds) {
  const Bytes ikm(32, 1);
  const Bytes salt = test::ascii("salt");
  EXPECT_EQ(hkdf_sha256(ikm, salt, {}, 0).error(), errc::invalid_argument);
  EXPECT_EQ(hkdf_sha256(ikm, salt, {}, 255 * 32 + 1).error(), errc::invalid_argument);
  EXPECT_EQ(hkdf_sha256(ikm, salt, {}, 255 * 32).value().size(), 255u * 32);
}

// The RFC's fourth vector (N = 2^20) needs 1 GiB and several seconds: kept out of the unit run.
constexpr std::uint64_t kMaxUnitTestScryptN = 1u << 14;

void check_scrypt_vector(const nlohmann::json& v) {
  SCOPED_TRACE(v.at("name").get<std::string>());
  const ScryptParams params{v.at("n").get<std::uint64_t>(), v.at("r").get<std::uint32_t>(),
                            v.at("p").get<std::uint32_t>()};
  auto key = scrypt(test::ascii(v.at("password").get<std::string>()),
                    test::ascii(v.at("salt").get<std::string>()), params,
                    v.at("length").get<std::size_t>());
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(hex_of(key.value()), v.at("derived").get<std::string>());
}

TEST(Scrypt, MatchesRfc7914) {
  int checked = 0;
  for (const auto& v : test::load_vectors("scrypt_rfc7914.json")) {
    if (v.at("n").get<std::uint64_t>() > kMaxUnitTestScryptN)
      continue;
    check_scrypt_vector(v);
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

// Run with --gtest_also_run_disabled_tests.
TEST(Scrypt, DISABLED_MatchesRfc7914LargeVector) {
  for (const auto& v : test::load_vectors("scrypt_rfc7914.json")) {
    if (v.at("n").get<std::uint64_t>() > kMaxUnitTestScryptN)
      check_scrypt_vector(v);
  }
}

TEST(Scrypt, RejectsBadParameters) {
  const auto password = test::ascii("pw");
  const auto salt = test::ascii("salt");
  EXPECT_EQ(scrypt(password, salt, {1000, 8, 1}, 32).error(), errc::invalid_argument);
  EXPECT_EQ(scrypt(password, salt, {1, 8, 1}, 32).error(), errc::invalid_argument);
  EXPECT_EQ(scrypt(password, salt, {16, 0, 1}, 32).error(), errc::invalid_argument);
  EXPECT_EQ(scrypt(password, salt, {16, 1, 0}, 32).error(), errc::invalid_argument);
  EXPECT_EQ(scrypt(password, salt, {16, 1, 1}, 0).error(), errc::invalid_argument);
  // 128 * N * r = 2 GiB, over the 1 GiB cap: refused before any work is done.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(scrypt(password, salt, {1u << 21, 8, 1}, 32).error(), errc::invalid_argument);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

}  // namespace
}  // namespace kaban::crypto
