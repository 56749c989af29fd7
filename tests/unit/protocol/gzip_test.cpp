#include "kaban/protocol/gzip.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>

#include "kaban/protocol/error.hpp"
#include "test_support.hpp"

// This binary replaces the global operator new so the bomb test can see the largest single
// allocation made while it decompresses: the output must stop near the limit, not be built whole.
namespace {
std::atomic<bool> g_watch_allocations{false};
std::atomic<std::size_t> g_largest_allocation{0};

void* allocate(std::size_t n) {
  if (g_watch_allocations.load(std::memory_order_relaxed)) {
    std::size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
    while (n > seen && !g_largest_allocation.compare_exchange_weak(seen, n)) {
    }
  }
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) {
  return allocate(n);
}
void* operator new[](std::size_t n) {
  return allocate(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace kaban::protocol {
namespace {

using testing::noise;

constexpr std::size_t kMiB = 1024 * 1024;
constexpr std::size_t kGzipTrailerSize = 8;  // CRC-32 then the input size, both little-endian

// A course-feed-like JSON of about `size` bytes: file entries whose hashes are random hex.
std::string hex_json(std::size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::string random = noise(size, 7);
  std::size_t next = 0;
  auto hash = [&] {
    std::string h;
    for (int i = 0; i < 64; ++i)
      h += kHex[static_cast<unsigned char>(random[next++ % random.size()]) % 16];
    return h;
  };
  std::string json = R"({"courses":[{"id":"safety","files":[)";
  for (int n = 0; json.size() < size; ++n) {
    if (n > 0)
      json += ',';
    json += R"({"path":"lesson)" + std::to_string(n) + R"(.html","sha256":")" + hash() +
            R"(","chunks":[{"sha256":")" + hash() + R"(","size":65536}]})";
  }
  return json + "]}]}";
}

// One gzip member made by zlib from `copies` times `block`, fed block by block so the input is
// never held whole.
std::string gzip_repeated(const std::string& block, std::size_t copies) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out;
  char buffer[64 * 1024];
  for (std::size_t i = 0; i < copies; ++i) {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block.data()));
    zs.avail_in = static_cast<uInt>(block.size());
    const int flush = i + 1 == copies ? Z_FINISH : Z_NO_FLUSH;
    int rc = Z_OK;
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buffer);
      zs.avail_out = sizeof buffer;
      rc = deflate(&zs, flush);
      out.append(buffer, sizeof buffer - zs.avail_out);
    } while (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  }
  deflateEnd(&zs);
  return out;
}

void expect_round_trip(const std::string& data) {
  const std::string packed = gzip_compress(data);
  ASSERT_GE(packed.size(), 18u);  // a 10-byte header, the deflate data, the 8-byte trailer
  EXPECT_EQ(static_cast<unsigned char>(packed[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(packed[1]), 0x8b);
  EXPECT_EQ(static_cast<unsigned char>(packed[2]), 8);  // deflate
  const Result<std::string> unpacked = gzip_decompress(packed, data.size());
  ASSERT_TRUE(unpacked) << unpacked.error().message();
  EXPECT_TRUE(unpacked.value() == data);
}

TEST(Gzip, RoundTripsEmptyInput) {
  expect_round_trip("");
}

TEST(Gzip, RoundTripsSmallText) {
  expect_round_trip("Kaban course feed\n");
}

TEST(Gzip, RoundTripsAndShrinksAHexJson) {
  const std::string json = hex_json(500 * 1000);
  expect_round_trip(json);
  // Hex digits carry 4 bits a byte; the JSON around them compresses further.
  EXPECT_LT(gzip_compress(json).size(), json.size() / 2);
}

TEST(Gzip, RoundTripsIncompressibleBytes) {
  const std::string random = noise(kMiB, 1);
  expect_round_trip(random);
  // Stored blocks cost 5 bytes per 64 KiB at most, on top of the header and trailer.
  EXPECT_LT(gzip_compress(random).size(), random.size() + random.size() / 1000 + 64);
}

TEST(Gzip, ReadsAMemberMadeByTheGzipTool) {
  // `printf 'Kaban course feed\n' | gzip -n -9`
  const unsigned char member[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03,
                                  0xf3, 0x4e, 0x4c, 0x4a, 0xcc, 0x53, 0x48, 0xce, 0x2f, 0x2d,
                                  0x2a, 0x4e, 0x55, 0x48, 0x4b, 0x4d, 0x4d, 0xe1, 0x02, 0x00,
                                  0x99, 0xb5, 0xe4, 0x7e, 0x12, 0x00, 0x00, 0x00};
  const Result<std::string> text =
      gzip_decompress({reinterpret_cast<const char*>(member), sizeof member}, 1024);
  ASSERT_TRUE(text) << text.error().message();
  EXPECT_EQ(text.value(), "Kaban course feed\n");
}

TEST(Gzip, RefusesInputThatIsNotGzip) {
  EXPECT_EQ(gzip_decompress("", 1024).error(), errc::malformed);
  EXPECT_EQ(gzip_decompress(R"({"courses":[]})", 1024).error(), errc::malformed);
  // A zlib (RFC 1950) stream is not a gzip member.
  std::string zlib_stream(compressBound(5), '\0');
  uLongf size = zlib_stream.size();
  ASSERT_EQ(compress(reinterpret_cast<Bytef*>(zlib_stream.data()), &size,
                     reinterpret_cast<const Bytef*>("hello"), 5),
            Z_OK);
  zlib_stream.resize(size);
  EXPECT_EQ(gzip_decompress(zlib_stream, 1024).error(), errc::malformed);
}

TEST(Gzip, RefusesEveryTruncation) {
  const std::string packed = gzip_compress(hex_json(2000));
  for (std::size_t n = 0; n < packed.size(); ++n) {
    const Result<std::string> r = gzip_decompress(packed.substr(0, n), kMiB);
    ASSERT_FALSE(r) << "a member cut to " << n << " of " << packed.size() << " bytes was read";
    EXPECT_EQ(r.error(), errc::malformed) << "cut to " << n << " bytes";
  }
}

TEST(Gzip, RefusesAFlippedChecksumOrLength) {
  const std::string packed = gzip_compress("Kaban course feed\n");
  for (std::size_t i = packed.size() - kGzipTrailerSize; i < packed.size(); ++i) {
    std::string altered = packed;
    altered[i] = static_cast<char>(altered[i] ^ 0x01);
    const Result<std::string> r = gzip_decompress(altered, 1024);
    ASSERT_FALSE(r) << "trailer byte " << i << " flipped and the member was still read";
    EXPECT_EQ(r.error(), errc::malformed);
  }
}

TEST(Gzip, RefusesAlteredDeflateData) {
  const std::string packed = gzip_compress(hex_json(20 * 1000));
  std::string altered = packed;
  altered[packed.size() / 2] = static_cast<char>(altered[packed.size() / 2] ^ 0x40);
  const Result<std::string> r = gzip_decompress(altered, kMiB);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::malformed);
}

TEST(Gzip, RefusesBytesAfterTheMember) {
  const std::string packed = gzip_compress("Kaban course feed\n");
  EXPECT_EQ(gzip_decompress(packed + "x", 1024).error(), errc::malformed);
  EXPECT_EQ(gzip_decompress(packed + std::string(1, '\0'), 1024).error(), errc::malformed);
  EXPECT_EQ(gzip_decompress(packed + noise(100 * 1000, 3), 1024).error(), errc::malformed);
}

TEST(Gzip, RefusesASecondMember) {
  const std::string two = gzip_compress("first\n") + gzip_compress("second\n");
  EXPECT_EQ(gzip_decompress(two, 1024).error(), errc::malformed);
  // Even an empty second member, which adds no output.
  EXPECT_EQ(gzip_decompress(gzip_compress("first\n") + gzip_compress(""), 1024).error(),
            errc::malformed);
}

TEST(Gzip, AcceptsOutputOfExactlyTheLimitAndRefusesOneByteMore) {
  const std::string json = hex_json(300 * 1000);
  const std::string packed = gzip_compress(json);
  EXPECT_TRUE(gzip_decompress(packed, json.size()));
  EXPECT_TRUE(gzip_decompress(packed, json.size() + 1));
  EXPECT_EQ(gzip_decompress(packed, json.size() - 1).error(), errc::too_large);
  EXPECT_EQ(gzip_decompress(packed, 0).error(), errc::too_large);
  EXPECT_TRUE(gzip_decompress(gzip_compress(""), 0));
}

TEST(Gzip, RefusesABombWithoutBuildingItsOutput) {
  constexpr std::size_t kLimit = 16 * kMiB;
  // 100 MiB of zeros in a member of about 100 KB.
  const std::string bomb = gzip_repeated(std::string(kMiB, '\0'), 100);
  ASSERT_LT(bomb.size(), 200u * 1000);

  g_largest_allocation = 0;
  g_watch_allocations = true;
  const auto start = std::chrono::steady_clock::now();
  const Result<std::string> r = gzip_decompress(bomb, kLimit);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  g_watch_allocations = false;

  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::too_large);
  // The output buffer never grew past the limit and its one byte of overrun.
  EXPECT_LE(g_largest_allocation.load(), kLimit + 1 + 64);
  // Inflating 16 MiB of zeros takes milliseconds; seconds would mean the whole bomb was read.
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

}  // namespace
}  // namespace kaban::protocol
