#include "kaban/server/chunker.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/manifest.hpp"

namespace kaban::server {
namespace {

// Deterministic bytes (SplitMix64), so a failure is the same on every run.
crypto::Bytes pseudo_random(std::size_t size, std::uint64_t seed) {
  crypto::Bytes bytes(size);
  std::uint64_t state = seed;
  for (std::size_t i = 0; i < size; i += 8) {
    state += 0x9e3779b97f4a7c15;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    z ^= z >> 31;
    for (std::size_t b = 0; b < 8 && i + b < size; ++b)
      bytes[i + b] = static_cast<std::uint8_t>(z >> (8 * b));
  }
  return bytes;
}

// The chunk lengths of `data`, cut the way publish cuts a file.
std::vector<std::size_t> cut_all(const Chunker& chunker, crypto::ByteView data) {
  std::vector<std::size_t> lengths;
  while (!data.empty()) {
    const std::size_t n = chunker.cut(data);
    EXPECT_GE(n, 1u);
    EXPECT_LE(n, data.size());
    lengths.push_back(n);
    data = data.subspan(n);
  }
  return lengths;
}

// The SHA-256 of each chunk.
std::vector<std::string> chunk_hashes(const Chunker& chunker, crypto::ByteView data) {
  std::vector<std::string> hashes;
  for (std::size_t n : cut_all(chunker, data)) {
    hashes.push_back(crypto::to_hex(crypto::sha256(data.first(n))));
    data = data.subspan(n);
  }
  return hashes;
}

// How many of `after`'s chunks `before` does not have: what a device holding `before` fetches.
std::size_t new_chunks(const std::vector<std::string>& before,
                       const std::vector<std::string>& after) {
  const std::set<std::string> held(before.begin(), before.end());
  std::size_t fresh = 0;
  for (const auto& h : after)
    fresh += held.count(h) == 0;
  return fresh;
}

TEST(ChunkerTest, ChunksStayWithinTheirBoundsAndClusterAroundTheAverage) {
  const Chunker chunker;
  const ChunkerParams& p = chunker.params();
  const crypto::Bytes data = pseudo_random(16 * 1024 * 1024, 1);
  const auto lengths = cut_all(chunker, data);
  std::size_t total = 0;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    total += lengths[i];
    EXPECT_LE(lengths[i], p.max_size);
    if (i + 1 < lengths.size()) {
      EXPECT_GE(lengths[i], p.min_size);
    }
  }
  EXPECT_EQ(total, data.size());
  // Normalized chunking puts the mean a little above avg_size (measured: docs/content.md).
  const double mean = static_cast<double>(total) / static_cast<double>(lengths.size());
  EXPECT_GT(mean, 0.8 * static_cast<double>(p.avg_size));
  EXPECT_LT(mean, 1.5 * static_cast<double>(p.avg_size));
  // Few chunks reach the maximum, which would mean no content-defined cut was found.
  std::size_t at_max = 0;
  for (std::size_t n : lengths)
    at_max += n == p.max_size;
  EXPECT_LT(at_max * 100, lengths.size());
}

TEST(ChunkerTest, TheSameBytesAreCutTheSameWayWhereverTheyStart) {
  const Chunker chunker;
  const crypto::Bytes data = pseudo_random(4 * 1024 * 1024, 2);
  EXPECT_EQ(cut_all(chunker, data), cut_all(chunker, data));
  // Publish hands the chunker at least max_size bytes or the rest of the file: a cut never
  // depends on bytes beyond max_size.
  crypto::Bytes longer = data;
  const crypto::Bytes tail = pseudo_random(1024 * 1024, 3);
  longer.insert(longer.end(), tail.begin(), tail.end());
  const auto a = cut_all(chunker, data);
  const auto b = cut_all(chunker, longer);
  ASSERT_GT(b.size(), a.size());
  EXPECT_TRUE(std::equal(a.begin(), a.end() - 1, b.begin()));
}

TEST(ChunkerTest, CutsAreFixedAcrossVersions) {
  // Changing the gear table or the masks would move every cut, and every device would download
  // every course again after a server upgrade. These lengths were recorded from this chunker;
  // if this test fails, the change must not ship.
  const Chunker chunker;
  const crypto::Bytes data = pseudo_random(1024 * 1024, 42);
  const auto lengths = cut_all(chunker, data);
  const std::vector<std::size_t> first(lengths.begin(),
                                       lengths.begin() + std::min<std::size_t>(6, lengths.size()));
  EXPECT_EQ(first, (std::vector<std::size_t>{84836, 74676, 35595, 63240, 93864, 70383}));
}

TEST(ChunkerTest, AnInsertionInTheMiddleChangesOnlyTheChunksAroundIt) {
  const Chunker chunker;
  const crypto::Bytes v1 = pseudo_random(8 * 1024 * 1024, 4);
  const auto before = chunk_hashes(chunker, v1);
  for (std::size_t inserted : {1u, 100u, 5000u, 300'000u}) {
    crypto::Bytes v2 = v1;
    const crypto::Bytes extra = pseudo_random(inserted, 5 + inserted);
    v2.insert(v2.begin() + 3'654'321, extra.begin(), extra.end());
    const auto after = chunk_hashes(chunker, v2);
    // The chunk the bytes land in, one more if the insertion moved a cut, and the inserted
    // bytes' own chunks.
    const std::size_t allowed = 2 + inserted / chunker.params().min_size;
    EXPECT_LE(new_chunks(before, after), allowed) << inserted << " bytes inserted";
  }
}

TEST(ChunkerTest, ADeletionOrOverwriteChangesOnlyTheChunksAroundIt) {
  const Chunker chunker;
  const crypto::Bytes v1 = pseudo_random(8 * 1024 * 1024, 6);
  const auto before = chunk_hashes(chunker, v1);

  crypto::Bytes deleted = v1;
  deleted.erase(deleted.begin() + 3'000'000, deleted.begin() + 3'040'000);
  EXPECT_LE(new_chunks(before, chunk_hashes(chunker, deleted)), 2u);

  crypto::Bytes overwritten = v1;
  for (std::size_t i = 6'000'000; i < 6'000'100; ++i)
    overwritten[i] ^= 0x5a;
  EXPECT_LE(new_chunks(before, chunk_hashes(chunker, overwritten)), 2u);
}

TEST(ChunkerTest, ShortAndUniformInputs) {
  const Chunker chunker;
  const ChunkerParams& p = chunker.params();
  EXPECT_EQ(chunker.cut({}), 0u);
  const crypto::Bytes small = pseudo_random(p.min_size, 7);
  EXPECT_EQ(chunker.cut(small), small.size());
  const crypto::Bytes one(1, 0x41);
  EXPECT_EQ(chunker.cut(one), 1u);
  // Bytes with no content to cut on (zeros) are cut at max_size.
  const crypto::Bytes zeros(3 * p.max_size + 10, 0);
  EXPECT_EQ(cut_all(chunker, zeros),
            (std::vector<std::size_t>{p.max_size, p.max_size, p.max_size, 10}));
}

TEST(ChunkerTest, OtherSizesKeepTheirBounds) {
  const Chunker small({2048, 8192, 32768});
  const crypto::Bytes data = pseudo_random(4 * 1024 * 1024, 8);
  const auto lengths = cut_all(small, data);
  for (std::size_t i = 0; i + 1 < lengths.size(); ++i) {
    EXPECT_GE(lengths[i], 2048u);
    EXPECT_LE(lengths[i], 32768u);
  }
  const double mean = static_cast<double>(data.size()) / static_cast<double>(lengths.size());
  EXPECT_GT(mean, 0.8 * 8192);
  EXPECT_LT(mean, 1.5 * 8192);
}

TEST(ChunkerTest, InvalidSizesAreRecognised) {
  EXPECT_TRUE(valid_chunker_params({}));
  EXPECT_FALSE(valid_chunker_params({32, 256, 1024}));         // min too small
  EXPECT_FALSE(valid_chunker_params({4096, 3000, 16384}));     // avg not a power of two
  EXPECT_FALSE(valid_chunker_params({65536, 65536, 262144}));  // min not below avg
  EXPECT_FALSE(valid_chunker_params({16384, 65536, 65536}));   // max not above avg
  EXPECT_FALSE(valid_chunker_params({16384, 65536, protocol::kMaxChunkSize + 1}));
}

}  // namespace
}  // namespace kaban::server
