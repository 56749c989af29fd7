#include "kaban/protocol/bundle.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/error.hpp"
#include "test_support.hpp"

namespace kaban::protocol {
namespace {

using kaban::testing::noise;

std::string hex_sha256(std::string_view bytes) {
  return crypto::to_hex(crypto::sha256(crypto::as_bytes(bytes)));
}

std::string raw_sha256(std::string_view bytes) {
  const crypto::Digest d = crypto::sha256(crypto::as_bytes(bytes));
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

std::string u32(std::uint32_t n) {
  return {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
          static_cast<char>(n)};
}

// A course of two files whose chunks are a, b (file 1) and b, c (file 2): a bundle holds a, b, c.
struct Sample {
  std::vector<std::string> chunks;
  Manifest manifest;
  BundleHeader header;
};

Sample sample() {
  Sample s;
  s.chunks = {noise(300, 1), noise(200, 2), noise(100, 3)};
  const auto ref = [&](int i) { return ChunkRef{hex_sha256(s.chunks[i]), s.chunks[i].size()}; };
  Manifest& m = s.manifest;
  m.course_id = "shelter-basics";
  m.version = 3;
  m.title = "Opening a shelter";
  m.published_at = "2026-11-23T10:00:00Z";
  m.files.push_back(
      {"a.html", "text/html", 500, hex_sha256(s.chunks[0] + s.chunks[1]), {ref(0), ref(1)}});
  m.files.push_back(
      {"b.html", "text/html", 300, hex_sha256(s.chunks[1] + s.chunks[2]), {ref(1), ref(2)}});
  m.lessons.push_back({"intro", "Intro", "html", 5, {"a.html", "b.html"}});
  BundleHeader& h = s.header;
  h.course_id = m.course_id;
  h.version = m.version;
  h.manifest = manifest_to_json(m);
  h.signature = std::string(128, 'a');
  h.signing_key = std::string(64, 'b');
  h.chunk_count = 3;
  h.chunk_bytes = 600;
  h.created_at = "2026-11-24T08:00:00Z";
  return s;
}

BundleSink string_sink(std::string& out) {
  return [&out](crypto::ByteView bytes) -> Result<void> {
    out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return ok();
  };
}

std::string write_bundle(const Sample& s) {
  std::string out;
  std::string why;
  auto writer = BundleWriter::start(string_sink(out), s.header, &why);
  EXPECT_TRUE(writer) << why;
  for (const std::string& c : s.chunks)
    EXPECT_TRUE(writer.value().add_chunk(hex_sha256(c), crypto::as_bytes(c), &why)) << why;
  EXPECT_TRUE(writer.value().finish(&why)) << why;
  EXPECT_EQ(writer.value().bytes_written(), out.size());
  return out;
}

struct ReadOutcome {
  std::error_code error;  ///< empty if the whole bundle read
  std::string why;
  std::vector<BundleChunk> chunks;
  BundleHeader header;
};

ReadOutcome read_all(const std::string& bytes) {
  ReadOutcome r;
  std::istringstream in(bytes);
  auto reader = BundleReader::open(in, &r.why);
  if (!reader) {
    r.error = reader.error();
    return r;
  }
  r.header = reader.value().header();
  for (;;) {
    BundleChunk chunk;
    auto more = reader.value().next(chunk, &r.why);
    if (!more) {
      r.error = more.error();
      return r;
    }
    if (!more.value())
      return r;
    r.chunks.push_back(std::move(chunk));
  }
}

// A bundle put together from its parts, with a correct digest: for damage the digest alone
// would not show (the checks before it must catch it).
std::string assemble(const std::string& header_json, const std::string& manifest,
                     const std::vector<std::pair<std::string, std::string>>& hash_and_bytes) {
  std::string b(kBundleMagic);
  b += u32(static_cast<std::uint32_t>(header_json.size())) + header_json;
  b += u32(static_cast<std::uint32_t>(manifest.size())) + manifest;
  for (const auto& [hash, bytes] : hash_and_bytes)
    b += hash + u32(static_cast<std::uint32_t>(bytes.size())) + bytes;
  b += kBundleEndMarker;
  return b + raw_sha256(b);
}

nlohmann::json header_json_of(const BundleHeader& h) {
  return {{"format", h.format},           {"course_id", h.course_id},
          {"version", h.version},         {"signature", h.signature},
          {"signing_key", h.signing_key}, {"chunk_count", h.chunk_count},
          {"chunk_bytes", h.chunk_bytes}, {"created_at", h.created_at}};
}

std::vector<std::pair<std::string, std::string>> parts_of(const Sample& s) {
  std::vector<std::pair<std::string, std::string>> parts;
  for (const std::string& c : s.chunks)
    parts.emplace_back(raw_sha256(c), c);
  return parts;
}

// Where each region of `s`'s bundle starts.
struct Layout {
  std::size_t header_length = kBundleMagic.size();
  std::size_t header = 0;
  std::size_t manifest = 0;
  std::vector<std::size_t> chunk;
  std::size_t end_marker = 0;
  std::size_t digest = 0;
  std::size_t size = 0;
};

Layout layout_of(const Sample& s) {
  Layout l;
  l.header = l.header_length + 4;
  l.manifest = l.header + header_json_of(s.header).dump().size() + 4;
  std::size_t at = l.manifest + s.header.manifest.size();
  for (const std::string& c : s.chunks) {
    l.chunk.push_back(at);
    at += 32 + 4 + c.size();
  }
  l.end_marker = at;
  l.digest = at + kBundleEndMarker.size();
  l.size = l.digest + 32;
  return l;
}

bool says(const std::string& why, std::string_view words) {
  return why.find(words) != std::string::npos;
}

TEST(Bundle, RoundTripsHeaderManifestAndChunks) {
  const Sample s = sample();
  const std::string bytes = write_bundle(s);
  const Layout l = layout_of(s);
  ASSERT_EQ(bytes.size(), l.size) << "the layout the format documents";
  EXPECT_EQ(bytes.substr(0, kBundleMagic.size()), kBundleMagic);
  EXPECT_EQ(bytes.substr(l.end_marker, kBundleEndMarker.size()), kBundleEndMarker);
  EXPECT_EQ(bytes.substr(l.digest), raw_sha256(bytes.substr(0, l.digest)));

  std::istringstream in(bytes);
  auto reader = BundleReader::open(in);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader.value().header(), s.header);
  EXPECT_EQ(reader.value().offset(), l.chunk[0]);
  for (std::size_t i = 0; i < s.chunks.size(); ++i) {
    BundleChunk chunk;
    auto more = reader.value().next(chunk);
    ASSERT_TRUE(more && more.value());
    EXPECT_EQ(chunk.bytes, s.chunks[i]);
    EXPECT_EQ(chunk.sha256, hex_sha256(s.chunks[i]));
    EXPECT_EQ(chunk.index, i);
    EXPECT_EQ(chunk.offset, l.chunk[i]);
  }
  BundleChunk none;
  auto end = reader.value().next(none);
  ASSERT_TRUE(end);
  EXPECT_FALSE(end.value());
  EXPECT_EQ(reader.value().offset(), bytes.size());
  auto again = reader.value().next(none);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again.value()) << "the end stays the end";
}

TEST(Bundle, ACourseWithoutChunksRoundTrips) {
  Sample s = sample();
  s.chunks.clear();
  s.header.chunk_count = 0;
  s.header.chunk_bytes = 0;
  const ReadOutcome r = read_all(write_bundle(s));
  EXPECT_FALSE(r.error) << r.why;
  EXPECT_TRUE(r.chunks.empty());
  EXPECT_EQ(r.header, s.header);
}

TEST(Bundle, HoldsEachDistinctChunkOnceInManifestOrder) {
  const Sample s = sample();
  const std::vector<ChunkRef> chunks = bundle_chunks(s.manifest);
  ASSERT_EQ(chunks.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_EQ(chunks[i].sha256, hex_sha256(s.chunks[i]));
  EXPECT_TRUE(check_bundle_header(s.header, s.manifest));

  std::string why;
  BundleHeader other = s.header;
  other.version = 2;
  EXPECT_EQ(check_bundle_header(other, s.manifest, &why).error(), errc::invalid_value);
  EXPECT_TRUE(says(why, "version 3")) << why;
  other = s.header;
  other.chunk_count = 4;
  EXPECT_EQ(check_bundle_header(other, s.manifest, &why).error(), errc::invalid_value);
  EXPECT_TRUE(says(why, "needs 3 chunks of 600 bytes")) << why;
  other = s.header;
  other.chunk_bytes = 601;
  EXPECT_FALSE(check_bundle_header(other, s.manifest));
}

TEST(Bundle, TheWriterRefusesWhatAReaderWouldRefuse) {
  const Sample s = sample();
  std::string out, why;
  const auto start = [&](const BundleHeader& h) {
    out.clear();
    return BundleWriter::start(string_sink(out), h, &why);
  };

  BundleHeader h = s.header;
  h.format = 2;
  EXPECT_EQ(start(h).error(), errc::invalid_value);
  h = s.header;
  h.signature = std::string(128, 'A');
  EXPECT_EQ(start(h).error(), errc::invalid_value);
  EXPECT_TRUE(says(why, "signature")) << why;
  h = s.header;
  h.manifest.clear();
  EXPECT_EQ(start(h).error(), errc::invalid_value);
  h = s.header;
  h.chunk_count = kMaxBundleChunks + 1;
  h.chunk_bytes = h.chunk_count;
  EXPECT_EQ(start(h).error(), errc::too_large);
  h = s.header;
  h.course_id = "Not An Id";
  EXPECT_EQ(start(h).error(), errc::invalid_value);
  EXPECT_TRUE(out.empty()) << "nothing is written for a refused header";

  auto writer = start(s.header);
  ASSERT_TRUE(writer) << why;
  BundleWriter& w = writer.value();
  const std::string& a = s.chunks[0];
  EXPECT_EQ(w.add_chunk(hex_sha256(s.chunks[1]), crypto::as_bytes(a), &why).error(),
            errc::invalid_value);
  EXPECT_TRUE(says(why, "chunk 1 of 3") && says(why, "SHA-256")) << why;
  EXPECT_EQ(w.add_chunk(hex_sha256(""), {}, &why).error(), errc::invalid_value);
  const std::string too_big(kMaxChunkSize + 1, 'x');
  EXPECT_EQ(w.add_chunk(hex_sha256(too_big), crypto::as_bytes(too_big), &why).error(),
            errc::too_large);
  const std::size_t before = out.size();
  ASSERT_TRUE(w.add_chunk(hex_sha256(a), crypto::as_bytes(a)));
  EXPECT_GT(out.size(), before);
  EXPECT_EQ(w.finish(&why).error(), errc::invalid_value) << "2 of 3 chunks are missing";
  EXPECT_TRUE(says(why, "1 chunks of 300 bytes were written")) << why;
  ASSERT_TRUE(w.add_chunk(hex_sha256(s.chunks[1]), crypto::as_bytes(s.chunks[1])));
  const std::string longer = noise(101, 9);
  EXPECT_EQ(w.add_chunk(hex_sha256(longer), crypto::as_bytes(longer), &why).error(),
            errc::invalid_value)
      << "past the header's bytes";
  ASSERT_TRUE(w.add_chunk(hex_sha256(s.chunks[2]), crypto::as_bytes(s.chunks[2])));
  EXPECT_EQ(w.add_chunk(hex_sha256(a), crypto::as_bytes(a), &why).error(), errc::invalid_value)
      << "a fourth chunk";
  ASSERT_TRUE(w.finish());
  EXPECT_EQ(out, write_bundle(s)) << "refused calls wrote nothing";
  EXPECT_FALSE(w.finish());
}

TEST(Bundle, TheWriterPassesOnTheSinksError) {
  const Sample s = sample();
  int calls = 0;
  auto writer = BundleWriter::start(
      [&](crypto::ByteView) -> Result<void> {
        if (++calls > 5)
          return std::make_error_code(std::errc::no_space_on_device);
        return ok();
      },
      s.header);
  ASSERT_TRUE(writer);
  auto added = writer.value().add_chunk(hex_sha256(s.chunks[0]), crypto::as_bytes(s.chunks[0]));
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error(), std::errc::no_space_on_device);
}

TEST(Bundle, AFileThatIsNotABundleIsRefusedAtOnce) {
  for (const std::string& bytes :
       {std::string(), std::string("KABAN"), std::string("PK\x03\x04 a zip file, not a bundle"),
        std::string("KABAN-BUNDLE\r\n") + std::string(100, '\0')}) {
    const ReadOutcome r = read_all(bytes);
    EXPECT_EQ(r.error, errc::malformed) << bytes;
    EXPECT_TRUE(says(r.why, "not a Kaban bundle")) << r.why;
  }
}

TEST(Bundle, ANewerFormatIsRefusedWithWhatToDo) {
  const Sample s = sample();
  nlohmann::json j = header_json_of(s.header);
  j["format"] = 2;
  ReadOutcome r = read_all(assemble(j.dump(), s.header.manifest, parts_of(s)));
  EXPECT_EQ(r.error, errc::invalid_value);
  EXPECT_TRUE(says(r.why, "format 2") && says(r.why, "update Kaban")) << r.why;
  j["format"] = 0;
  r = read_all(assemble(j.dump(), s.header.manifest, parts_of(s)));
  EXPECT_EQ(r.error, errc::invalid_value) << r.why;
  j.erase("format");
  r = read_all(assemble(j.dump(), s.header.manifest, parts_of(s)));
  EXPECT_EQ(r.error, errc::missing_field) << r.why;
}

TEST(Bundle, UnknownHeaderFieldsAreIgnoredForNewerWriters) {
  const Sample s = sample();
  nlohmann::json j = header_json_of(s.header);
  j["server_name"] = "kaban.city.example";
  const ReadOutcome r = read_all(assemble(j.dump(), s.header.manifest, parts_of(s)));
  EXPECT_FALSE(r.error) << r.why;
  EXPECT_EQ(r.chunks.size(), 3u);
}

TEST(Bundle, HeaderFieldsAreCheckedAgainstTheirLimits) {
  const Sample s = sample();
  const auto read_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = header_json_of(s.header);
    edit(j);
    return read_all(assemble(j.dump(), s.header.manifest, parts_of(s)));
  };
  ReadOutcome r = read_with([](auto& j) { j["course_id"] = std::string(65, 'a'); });
  EXPECT_EQ(r.error, errc::too_large) << r.why;
  EXPECT_TRUE(says(r.why, "course_id")) << r.why;
  r = read_with([](auto& j) { j["course_id"] = "../etc"; });
  EXPECT_EQ(r.error, errc::invalid_value) << r.why;
  r = read_with([](auto& j) { j["signing_key"] = std::string(63, 'b'); });
  EXPECT_EQ(r.error, errc::invalid_value) << r.why;
  r = read_with([](auto& j) { j["signature"] = std::string(129, 'a'); });
  EXPECT_EQ(r.error, errc::too_large) << r.why;
  r = read_with([](auto& j) { j["created_at"] = std::string(41, '1'); });
  EXPECT_EQ(r.error, errc::too_large) << r.why;
  r = read_with([](auto& j) {
    j["chunk_count"] = kMaxBundleChunks + 1;
    j["chunk_bytes"] = kMaxBundleChunks + 1;
  });
  EXPECT_EQ(r.error, errc::too_large) << r.why;
  EXPECT_TRUE(says(r.why, std::to_string(kMaxBundleChunks))) << r.why;
  r = read_with([](auto& j) { j["chunk_bytes"] = 3 * kMaxChunkSize + 1; });
  EXPECT_EQ(r.error, errc::invalid_value) << r.why;
  r = read_with([](auto& j) { j["chunk_bytes"] = 2; });
  EXPECT_EQ(r.error, errc::invalid_value) << "3 chunks hold 3 bytes at least: " << r.why;
  r = read_with([](auto& j) { j["version"] = "3"; });
  EXPECT_EQ(r.error, errc::malformed) << r.why;

  const std::string not_json = "{\"format\": 1,";
  r = read_all(assemble(not_json, s.header.manifest, parts_of(s)));
  EXPECT_EQ(r.error, errc::malformed) << r.why;
}

// Each length is checked before what it announces is read: the crafted files below end right
// after the length, so a reader that tried to read first would say "cut short" instead.
TEST(Bundle, EveryLengthIsCheckedBeforeItIsRead) {
  const Sample s = sample();
  const std::string header = header_json_of(s.header).dump();
  const std::string start = std::string(kBundleMagic);

  ReadOutcome r = read_all(start + u32(kMaxBundleHeaderSize + 1));
  EXPECT_EQ(r.error, errc::too_large) << r.why;
  EXPECT_TRUE(says(r.why, "header claims")) << r.why;
  r = read_all(start + u32(0xFFFFFFFF));
  EXPECT_EQ(r.error, errc::too_large) << r.why;

  const std::string with_header = start + u32(static_cast<std::uint32_t>(header.size())) + header;
  r = read_all(with_header + u32(kMaxManifestSize + 1));
  EXPECT_EQ(r.error, errc::too_large) << r.why;
  EXPECT_TRUE(says(r.why, "manifest claims")) << r.why;
  r = read_all(with_header + u32(0));
  EXPECT_EQ(r.error, errc::invalid_value) << r.why;

  const std::string with_manifest =
      with_header + u32(static_cast<std::uint32_t>(s.header.manifest.size())) + s.header.manifest;
  r = read_all(with_manifest + raw_sha256(s.chunks[0]) + u32(kMaxChunkSize + 1));
  EXPECT_EQ(r.error, errc::too_large) << r.why;
  EXPECT_TRUE(says(r.why, "chunk 1 of 3") && says(r.why, "limit")) << r.why;
  r = read_all(with_manifest + raw_sha256("") + u32(0));
  EXPECT_EQ(r.error, errc::invalid_value) << r.why;
  EXPECT_TRUE(says(r.why, "empty")) << r.why;
  // The running total is checked against the header's 600 bytes too.
  r = read_all(with_manifest + raw_sha256(s.chunks[0]) + u32(599));
  EXPECT_EQ(r.error, errc::malformed) << "599 bytes fit the header's total; then it is cut short";
  r = read_all(with_manifest + raw_sha256(s.chunks[0]) + u32(601));
  EXPECT_EQ(r.error, errc::invalid_value) << r.why;
  EXPECT_TRUE(says(r.why, "600 bytes")) << r.why;
}

TEST(Bundle, TruncationAnywhereIsRefusedAndNamesTheRegion) {
  const Sample s = sample();
  const std::string bytes = write_bundle(s);
  const Layout l = layout_of(s);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const ReadOutcome r = read_all(bytes.substr(0, n));
    ASSERT_EQ(r.error, errc::malformed) << "cut at " << n << ": " << r.why;
    if (n >= kBundleMagic.size()) {
      EXPECT_TRUE(says(r.why, "cut short")) << "cut at " << n << ": " << r.why;
      EXPECT_TRUE(says(r.why, "ends at byte " + std::to_string(n))) << r.why;
    }
  }
  const auto why_cut_at = [&](std::size_t n) { return read_all(bytes.substr(0, n)).why; };
  EXPECT_TRUE(says(why_cut_at(l.header + 5), "inside the header ")) << why_cut_at(l.header + 5);
  EXPECT_TRUE(says(why_cut_at(l.manifest + 5), "inside the manifest "));
  EXPECT_TRUE(says(why_cut_at(l.chunk[1] + 100), "inside chunk 2 of 3"))
      << why_cut_at(l.chunk[1] + 100);
  EXPECT_TRUE(says(why_cut_at(l.end_marker), "inside the end marker")) << why_cut_at(l.end_marker);
  EXPECT_TRUE(says(why_cut_at(l.digest + 31), "inside its final digest"))
      << why_cut_at(l.digest + 31);
}

TEST(Bundle, AFlippedBitAnywhereIsRefused) {
  const Sample s = sample();
  const std::string bytes = write_bundle(s);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x04);
    const ReadOutcome r = read_all(damaged);
    ASSERT_TRUE(r.error) << "a flip at byte " << i << " went unnoticed";
    EXPECT_FALSE(r.why.empty()) << i;
  }
}

TEST(Bundle, AFlippedByteInEachRegionIsNamed) {
  const Sample s = sample();
  const std::string bytes = write_bundle(s);
  const Layout l = layout_of(s);
  const auto why_flipped_at = [&](std::size_t i) {
    std::string damaged = bytes;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x01);
    return read_all(damaged).why;
  };
  EXPECT_TRUE(says(why_flipped_at(0), "not a Kaban bundle"));
  // A title letter of the manifest: only the digest can tell (a device's signature check too).
  const std::size_t title = bytes.find("Opening a shelter", l.manifest);
  ASSERT_NE(title, std::string::npos);
  EXPECT_TRUE(says(why_flipped_at(title), "digest")) << why_flipped_at(title);
  EXPECT_TRUE(says(why_flipped_at(l.chunk[1] + 36 + 50), "chunk 2 of 3"))
      << why_flipped_at(l.chunk[1] + 36 + 50);
  EXPECT_TRUE(
      says(why_flipped_at(l.chunk[2] + 3),
           "chunk 3 of 3 (at byte " + std::to_string(l.chunk[2]) + ") does not match its SHA-256"));
  EXPECT_TRUE(says(why_flipped_at(l.end_marker + 2), "no end marker"));
  EXPECT_TRUE(says(why_flipped_at(l.digest + 7), "digest at byte " + std::to_string(l.digest)));
}

TEST(Bundle, ChunksThatDoNotMatchTheirHashAreRefusedEvenWithAGoodDigest) {
  const Sample s = sample();
  auto parts = parts_of(s);
  parts[1].second[0] = static_cast<char>(parts[1].second[0] ^ 1);
  const ReadOutcome r =
      read_all(assemble(header_json_of(s.header).dump(), s.header.manifest, parts));
  EXPECT_EQ(r.error, errc::invalid_value);
  EXPECT_TRUE(says(r.why, "chunk 2 of 3")) << r.why;
  EXPECT_EQ(r.chunks.size(), 1u) << "the chunk before it was whole";
}

TEST(Bundle, MoreOrFewerChunksThanTheHeaderSaysAreRefused) {
  const Sample s = sample();
  auto parts = parts_of(s);
  parts.push_back({raw_sha256("extra"), "extra"});
  ReadOutcome r = read_all(assemble(header_json_of(s.header).dump(), s.header.manifest, parts));
  EXPECT_EQ(r.error, errc::invalid_value);
  EXPECT_TRUE(says(r.why, "no end marker") && says(r.why, "more chunks")) << r.why;

  // Fewer: the end marker comes where chunk 3's hash was expected.
  parts = parts_of(s);
  parts.pop_back();
  r = read_all(assemble(header_json_of(s.header).dump(), s.header.manifest, parts));
  EXPECT_TRUE(r.error) << r.why;
}

TEST(Bundle, BytesAfterTheEndAreRefused) {
  const ReadOutcome r = read_all(write_bundle(sample()) + "x");
  EXPECT_EQ(r.error, errc::invalid_value);
  EXPECT_TRUE(says(r.why, "bytes follow the end")) << r.why;
}

TEST(Bundle, AFailedReaderKeepsFailing) {
  const Sample s = sample();
  const Layout l = layout_of(s);
  const std::string bytes = write_bundle(s).substr(0, l.chunk[1] + 10);
  std::istringstream in(bytes);
  auto reader = BundleReader::open(in);
  ASSERT_TRUE(reader);
  BundleChunk chunk;
  ASSERT_TRUE(reader.value().next(chunk));
  std::string first, second;
  auto failed = reader.value().next(chunk, &first);
  ASSERT_FALSE(failed);
  auto again = reader.value().next(chunk, &second);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), failed.error());
  EXPECT_EQ(second, first);
}

}  // namespace
}  // namespace kaban::protocol
