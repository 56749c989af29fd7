#include "kaban/crypto/sha256.hpp"

#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "kat.hpp"

namespace kaban::crypto {
namespace {

using test::hex;

// The message of a vector: `message` repeated `repeat` times.
Bytes message_of(const nlohmann::json& v) {
  std::string text;
  const auto unit = v.at("message").get<std::string>();
  for (int i = 0; i < v.at("repeat").get<int>(); ++i)
    text += unit;
  return test::ascii(text);
}

std::string hex_of(const Digest& d) {
  return to_hex(d);
}

TEST(Sha256, OneShotMatchesFips180Vectors) {
  for (const auto& v : test::load_vectors("sha256_fips180_2.json")) {
    SCOPED_TRACE(v.at("name").get<std::string>());
    EXPECT_EQ(hex_of(sha256(message_of(v))), v.at("digest").get<std::string>());
  }
}

TEST(Sha256, StreamingMatchesFips180VectorsInOddPieces) {
  for (const auto& v : test::load_vectors("sha256_fips180_2.json")) {
    SCOPED_TRACE(v.at("name").get<std::string>());
    const Bytes message = message_of(v);
    Sha256 hasher;
    // 997 is prime, so the pieces straddle the 64-byte block boundaries in every way.
    for (std::size_t offset = 0; offset < message.size(); offset += 997) {
      hasher.update(
          ByteView(message).subspan(offset, std::min<std::size_t>(997, message.size() - offset)));
    }
    EXPECT_EQ(hex_of(hasher.finish()), v.at("digest").get<std::string>());
  }
}

TEST(Sha256, StreamingAgreesWithOneShotAtEverySplit) {
  const Bytes message = test::ascii(
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq and some more to pass 2 blocks..");
  const Digest expected = sha256(message);
  for (std::size_t split = 0; split <= message.size(); ++split) {
    Sha256 hasher;
    hasher.update(ByteView(message).first(split));
    hasher.update(ByteView(message).subspan(split));
    ASSERT_EQ(hasher.finish(), expected) << "split at " << split;
  }
}

TEST(Sha256, FinishResetsForTheNextMessage) {
  Sha256 hasher;
  hasher.update(test::ascii("first message"));
  hasher.finish();
  hasher.update(test::ascii("abc"));
  EXPECT_EQ(hex_of(hasher.finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hasher.finish(), sha256({}));  // nothing fed since the last finish
}

TEST(Sha256, MovedHasherKeepsItsState) {
  Sha256 a;
  a.update(test::ascii("ab"));
  Sha256 b(std::move(a));
  b.update(test::ascii("c"));
  Sha256 c;
  c = std::move(b);
  EXPECT_EQ(hex_of(c.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace kaban::crypto
