#include "kaban/crypto/random.hpp"

#include <set>

#include <gtest/gtest.h>

namespace kaban::crypto {
namespace {

TEST(Random, BytesHaveTheRequestedSize) {
  EXPECT_EQ(random_bytes(0).size(), 0u);
  EXPECT_EQ(random_bytes(1).size(), 1u);
  EXPECT_EQ(random_bytes(1000).size(), 1000u);
}

TEST(Random, OutputsDoNotRepeat) {
  std::set<Bytes> seen;
  for (int i = 0; i < 100; ++i)
    seen.insert(random_bytes(16));
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Random, FillOverwritesTheWholeBuffer) {
  // The chance that a given byte stays zero in all of 8 fills of 4096 bytes is 2^-64.
  Bytes touched(4096, 0);
  for (int round = 0; round < 8; ++round) {
    Bytes buffer(4096, 0);
    random_fill(buffer);
    for (std::size_t i = 0; i < buffer.size(); ++i)
      touched[i] |= buffer[i];
  }
  for (std::size_t i = 0; i < touched.size(); ++i)
    ASSERT_NE(touched[i], 0) << "byte " << i;
}

TEST(Random, LooksUniformOverManyBytes) {
  // 256 KiB: each byte value expects 1024 hits; 700..1350 is far beyond 8 standard deviations.
  const Bytes data = random_bytes(256 * 1024);
  std::size_t counts[256] = {};
  for (auto b : data)
    ++counts[b];
  for (int v = 0; v < 256; ++v) {
    EXPECT_GT(counts[v], 700u) << v;
    EXPECT_LT(counts[v], 1350u) << v;
  }
}

}  // namespace
}  // namespace kaban::crypto
