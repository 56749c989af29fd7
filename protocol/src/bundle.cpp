#include "kaban/protocol/bundle.hpp"

#include <algorithm>
#include <array>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/protocol/error.hpp"

namespace kaban::protocol {
namespace {

using detail::JsonReader;
using detail::Unknown;
using nlohmann::json;

constexpr std::size_t kLengthSize = 4;
constexpr std::size_t kMaxCreatedAt = 40;
constexpr std::size_t kSignatureHexDigits = 128;
constexpr std::size_t kSigningKeyHexDigits = 64;

bool is_lower_hex(std::string_view text, std::size_t digits) {
  return text.size() == digits && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::array<std::uint8_t, kLengthSize> encode_length(std::uint32_t n) {
  return {static_cast<std::uint8_t>(n >> 24), static_cast<std::uint8_t>(n >> 16),
          static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)};
}

std::uint32_t decode_length(const char* p) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(p);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}

std::error_code refuse(errc code, std::string message, std::string* why) {
  if (why)
    *why = std::move(message);
  return code;
}

// What reader and writer both hold the JSON header's fields to, so a writer never makes a bundle
// a reader refuses. The format and the manifest are checked by each on its own.
Result<void> check_fields(const BundleHeader& h, std::string* why) {
  if (!is_valid_id(h.course_id))
    return refuse(errc::invalid_value,
                  "the bundle's header: course_id \"" + h.course_id + "\" is not a valid id", why);
  if (h.version < 1)
    return refuse(errc::invalid_value, "the bundle's header: version must be 1 or more", why);
  if (!is_lower_hex(h.signature, kSignatureHexDigits))
    return refuse(errc::invalid_value,
                  "the bundle's header: signature is not 128 lower-case hex digits", why);
  if (!is_lower_hex(h.signing_key, kSigningKeyHexDigits))
    return refuse(errc::invalid_value,
                  "the bundle's header: signing_key is not 64 lower-case hex digits", why);
  if (h.chunk_count > kMaxBundleChunks)
    return refuse(errc::too_large,
                  "the bundle's header announces " + std::to_string(h.chunk_count) +
                      " chunks; the limit is " + std::to_string(kMaxBundleChunks),
                  why);
  if (h.chunk_bytes < h.chunk_count || h.chunk_bytes > h.chunk_count * kMaxChunkSize)
    return refuse(errc::invalid_value,
                  "the bundle's header: " + std::to_string(h.chunk_count) + " chunks cannot hold " +
                      std::to_string(h.chunk_bytes) + " bytes (each holds 1 to " +
                      std::to_string(kMaxChunkSize) + ")",
                  why);
  if (h.created_at.size() > kMaxCreatedAt)
    return refuse(errc::too_large,
                  "the bundle's header: created_at is longer than " +
                      std::to_string(kMaxCreatedAt) + " bytes",
                  why);
  return ok();
}

std::string header_json(const BundleHeader& h) {
  const json j = {{"format", h.format},           {"course_id", h.course_id},
                  {"version", h.version},         {"signature", h.signature},
                  {"signing_key", h.signing_key}, {"chunk_count", h.chunk_count},
                  {"chunk_bytes", h.chunk_bytes}, {"created_at", h.created_at}};
  return j.dump();
}

// "chunk 5 of 12" (1-based, as a person counts).
std::string chunk_name(std::uint64_t index, std::uint64_t count) {
  return "chunk " + std::to_string(index + 1) + " of " + std::to_string(count);
}

}  // namespace

std::vector<ChunkRef> bundle_chunks(const Manifest& manifest) {
  std::vector<ChunkRef> chunks;
  std::unordered_set<std::string_view> seen;
  for (const ManifestFile& file : manifest.files)
    for (const ChunkRef& chunk : file.chunks)
      if (seen.insert(chunk.sha256).second)
        chunks.push_back(chunk);
  return chunks;
}

Result<void> check_bundle_header(const BundleHeader& header, const Manifest& manifest,
                                 std::string* why) {
  if (manifest.course_id != header.course_id || manifest.version != header.version)
    return refuse(errc::invalid_value,
                  "the bundle's header names " + header.course_id + " version " +
                      std::to_string(header.version) + ", but its signed manifest is " +
                      manifest.course_id + " version " + std::to_string(manifest.version),
                  why);
  const std::vector<ChunkRef> chunks = bundle_chunks(manifest);
  std::uint64_t bytes = 0;
  for (const ChunkRef& c : chunks)
    bytes += c.size;
  if (chunks.size() != header.chunk_count || bytes != header.chunk_bytes)
    return refuse(errc::invalid_value,
                  "the bundle's header announces " + std::to_string(header.chunk_count) +
                      " chunks of " + std::to_string(header.chunk_bytes) +
                      " bytes, but its signed manifest needs " + std::to_string(chunks.size()) +
                      " chunks of " + std::to_string(bytes) + " bytes",
                  why);
  return ok();
}

// ---- BundleWriter ---------------------------------------------------------------------------

BundleWriter::BundleWriter(BundleSink sink, std::uint64_t chunk_count, std::uint64_t chunk_bytes)
    : sink_(std::move(sink)), chunk_count_(chunk_count), chunk_bytes_(chunk_bytes) {}

Result<BundleWriter> BundleWriter::start(BundleSink sink, const BundleHeader& header,
                                         std::string* why) {
  if (header.format != kBundleFormat)
    return refuse(errc::invalid_value,
                  "this build writes bundle format " + std::to_string(kBundleFormat) + ", not " +
                      std::to_string(header.format),
                  why);
  KABAN_TRYV(check_fields(header, why));
  if (header.manifest.empty())
    return refuse(errc::invalid_value, "the bundle's manifest is empty", why);
  if (header.manifest.size() > kMaxManifestSize)
    return refuse(errc::too_large,
                  "the manifest is " + std::to_string(header.manifest.size()) +
                      " bytes; the limit is " + std::to_string(kMaxManifestSize),
                  why);
  const std::string text = header_json(header);
  if (text.size() > kMaxBundleHeaderSize)
    return refuse(errc::too_large, "the bundle's header is over its limit", why);
  BundleWriter writer(std::move(sink), header.chunk_count, header.chunk_bytes);
  KABAN_TRYV(writer.put(crypto::as_bytes(kBundleMagic)));
  KABAN_TRYV(writer.put(encode_length(static_cast<std::uint32_t>(text.size()))));
  KABAN_TRYV(writer.put(crypto::as_bytes(text)));
  KABAN_TRYV(writer.put(encode_length(static_cast<std::uint32_t>(header.manifest.size()))));
  KABAN_TRYV(writer.put(crypto::as_bytes(header.manifest)));
  return writer;
}

Result<void> BundleWriter::put(crypto::ByteView bytes) {
  digest_.update(bytes);
  KABAN_TRYV(sink_(bytes));
  offset_ += bytes.size();
  return ok();
}

Result<void> BundleWriter::add_chunk(std::string_view sha256, crypto::ByteView bytes,
                                     std::string* why) {
  const std::string name = chunk_name(chunks_written_, chunk_count_);
  if (finished_ || chunks_written_ == chunk_count_)
    return refuse(errc::invalid_value,
                  "the bundle's header announces " + std::to_string(chunk_count_) +
                      " chunks; no more may be added",
                  why);
  if (bytes.empty())
    return refuse(errc::invalid_value, name + " is empty", why);
  if (bytes.size() > kMaxChunkSize)
    return refuse(errc::too_large,
                  name + " is " + std::to_string(bytes.size()) + " bytes; the limit is " +
                      std::to_string(kMaxChunkSize),
                  why);
  const crypto::Digest digest = crypto::sha256(bytes);
  if (!is_sha256_hex(sha256) || crypto::to_hex(digest) != sha256)
    return refuse(
        errc::invalid_value,
        name + " (" + std::string(sha256.substr(0, 12)) + "...) does not match its SHA-256", why);
  if (bytes_of_chunks_ + bytes.size() > chunk_bytes_)
    return refuse(
        errc::invalid_value,
        name + " takes the chunks past the header's " + std::to_string(chunk_bytes_) + " bytes",
        why);
  KABAN_TRYV(put(digest));
  KABAN_TRYV(put(encode_length(static_cast<std::uint32_t>(bytes.size()))));
  KABAN_TRYV(put(bytes));
  ++chunks_written_;
  bytes_of_chunks_ += bytes.size();
  return ok();
}

Result<void> BundleWriter::finish(std::string* why) {
  if (finished_)
    return refuse(errc::invalid_value, "the bundle is already finished", why);
  if (chunks_written_ != chunk_count_ || bytes_of_chunks_ != chunk_bytes_)
    return refuse(errc::invalid_value,
                  "the bundle's header announces " + std::to_string(chunk_count_) + " chunks of " +
                      std::to_string(chunk_bytes_) + " bytes, but " +
                      std::to_string(chunks_written_) + " chunks of " +
                      std::to_string(bytes_of_chunks_) + " bytes were written",
                  why);
  KABAN_TRYV(put(crypto::as_bytes(kBundleEndMarker)));
  const crypto::Digest digest = digest_.finish();
  // The digest covers everything before it, so it is not fed to itself.
  KABAN_TRYV(sink_(digest));
  offset_ += digest.size();
  finished_ = true;
  return ok();
}

// ---- BundleReader ---------------------------------------------------------------------------

BundleReader::BundleReader(std::istream& in) : in_(&in) {}

Result<bool> BundleReader::fail(std::error_code code, std::string message, std::string* why) {
  failed_ = code;
  failed_why_ = std::move(message);
  if (why)
    *why = failed_why_;
  return failed_;
}

Result<void> BundleReader::read(char* into, std::size_t size, std::string_view what,
                                std::string* why) {
  std::size_t done = 0;
  while (done < size && in_->good()) {
    in_->read(into + done, static_cast<std::streamsize>(size - done));
    done += static_cast<std::size_t>(in_->gcount());
  }
  const std::uint64_t start = offset_;
  offset_ += done;
  digest_.update(crypto::ByteView(reinterpret_cast<const std::uint8_t*>(into), done));
  if (done == size)
    return ok();
  auto failed = fail(errc::malformed,
                     "the bundle ends at byte " + std::to_string(start + done) + ", inside " +
                         std::string(what) + " (which starts at byte " + std::to_string(start) +
                         "): the file was cut short. Copy it again",
                     why);
  return failed.error();
}

Result<BundleReader> BundleReader::open(std::istream& in, std::string* why) {
  BundleReader r(in);
  const auto refused = [&](std::error_code code, std::string message) -> Result<BundleReader> {
    (void)r.fail(code, std::move(message), why);
    return code;
  };

  std::string magic(kBundleMagic.size(), '\0');
  if (!r.read(magic.data(), magic.size(), "the bundle's first line", nullptr) ||
      magic != kBundleMagic)
    return refused(errc::malformed,
                   "this is not a Kaban bundle: it does not start with \"KABAN-BUNDLE\"");

  char length[kLengthSize];
  KABAN_TRYV(r.read(length, kLengthSize, "the header's length", why));
  const std::uint32_t header_size = decode_length(length);
  if (header_size > kMaxBundleHeaderSize)
    return refused(errc::too_large, "the bundle's header claims " + std::to_string(header_size) +
                                        " bytes (at byte " + std::to_string(r.offset_ - 4) +
                                        "); the limit is " + std::to_string(kMaxBundleHeaderSize));
  std::string text(header_size, '\0');
  KABAN_TRYV(r.read(text.data(), text.size(), "the header", why));

  json j;
  std::string parse_why;
  if (!detail::parse_json(text, kMaxBundleHeaderSize, j, &parse_why))
    return refused(errc::malformed, "the bundle's header (at byte " +
                                        std::to_string(kBundleMagic.size() + kLengthSize) +
                                        ") is not a JSON object: the bundle is damaged");
  // A newer server may add fields; a change this reader could not skip raises the format.
  JsonReader jr(j, "the bundle's header", Unknown::ignore);
  BundleHeader& h = r.header_;
  h.format = jr.integer("format", 1, INT64_MAX);
  if (jr.ok() && h.format != kBundleFormat)
    return refused(errc::invalid_value, "the bundle is in format " + std::to_string(h.format) +
                                            ", newer than this version of Kaban reads (format " +
                                            std::to_string(kBundleFormat) +
                                            "): update Kaban on this device");
  h.course_id = jr.text("course_id", 64);
  h.version = jr.integer("version", 1, INT64_MAX);
  h.signature = jr.text("signature", kSignatureHexDigits);
  h.signing_key = jr.text("signing_key", kSigningKeyHexDigits);
  h.chunk_count = static_cast<std::uint64_t>(jr.integer("chunk_count", 0, INT64_MAX));
  h.chunk_bytes = static_cast<std::uint64_t>(jr.integer("chunk_bytes", 0, INT64_MAX));
  h.created_at = jr.text("created_at", kMaxCreatedAt);
  std::string field_why;
  if (auto read = jr.finish(&field_why); !read)
    return refused(read.error(), field_why);
  if (auto checked = check_fields(h, &field_why); !checked)
    return refused(checked.error(), field_why);

  KABAN_TRYV(r.read(length, kLengthSize, "the manifest's length", why));
  const std::uint32_t manifest_size = decode_length(length);
  if (manifest_size == 0)
    return refused(errc::invalid_value, "the bundle's manifest (at byte " +
                                            std::to_string(r.offset_ - 4) +
                                            ") is empty: the bundle is damaged");
  if (manifest_size > kMaxManifestSize)
    return refused(errc::too_large, "the bundle's manifest claims " +
                                        std::to_string(manifest_size) + " bytes (at byte " +
                                        std::to_string(r.offset_ - 4) + "); the limit is " +
                                        std::to_string(kMaxManifestSize));
  h.manifest.resize(manifest_size);
  KABAN_TRYV(r.read(h.manifest.data(), h.manifest.size(), "the manifest", why));
  return r;
}

Result<bool> BundleReader::next(BundleChunk& chunk, std::string* why) {
  if (failed_) {
    if (why)
      *why = failed_why_;
    return failed_;
  }
  if (done_)
    return false;
  const std::uint64_t count = header_.chunk_count;

  if (chunks_read_ == count) {
    const std::uint64_t marker_at = offset_;
    std::string marker(kBundleEndMarker.size(), '\0');
    KABAN_TRYV(read(marker.data(), marker.size(), "the end marker", why));
    if (marker != kBundleEndMarker)
      return fail(errc::invalid_value,
                  "there is no end marker at byte " + std::to_string(marker_at) + ", after " +
                      (count == 0 ? std::string("the manifest") : chunk_name(count - 1, count)) +
                      ": the bundle is damaged, or holds more chunks than its header says",
                  why);
    if (bytes_of_chunks_ != header_.chunk_bytes)
      return fail(errc::invalid_value,
                  "the chunks add up to " + std::to_string(bytes_of_chunks_) + " bytes, not the " +
                      std::to_string(header_.chunk_bytes) +
                      " its header says: the bundle is damaged",
                  why);
    // The digest covers everything before it: finish it before reading the stored one.
    const crypto::Digest expected = digest_.finish();
    const std::uint64_t digest_at = offset_;
    crypto::Digest stored{};
    std::size_t done = 0;
    while (done < stored.size() && in_->good()) {
      in_->read(reinterpret_cast<char*>(stored.data()) + done,
                static_cast<std::streamsize>(stored.size() - done));
      done += static_cast<std::size_t>(in_->gcount());
    }
    offset_ += done;
    if (done != stored.size())
      return fail(errc::malformed,
                  "the bundle ends at byte " + std::to_string(offset_) +
                      ", inside its final digest (which starts at byte " +
                      std::to_string(digest_at) + "): the file was cut short. Copy it again",
                  why);
    if (!crypto::constant_time_equal(stored, expected))
      return fail(errc::invalid_value,
                  "the digest at byte " + std::to_string(digest_at) +
                      " does not match the bundle's bytes: the bundle was altered or damaged "
                      "after it was written",
                  why);
    if (in_->peek() != std::istream::traits_type::eof())
      return fail(errc::invalid_value,
                  "bytes follow the end of the bundle at byte " + std::to_string(offset_) +
                      ": the file was altered, or another file was joined to it",
                  why);
    done_ = true;
    return false;
  }

  const std::string name = chunk_name(chunks_read_, count);
  chunk.offset = offset_;
  chunk.index = chunks_read_;
  std::array<std::uint8_t, crypto::kSha256Size> hash{};
  KABAN_TRYV(read(reinterpret_cast<char*>(hash.data()), hash.size(), name, why));
  char length[kLengthSize];
  KABAN_TRYV(read(length, kLengthSize, name, why));
  const std::uint32_t size = decode_length(length);
  if (size == 0)
    return fail(
        errc::invalid_value,
        name + " (at byte " + std::to_string(chunk.offset) + ") is empty: the bundle is damaged",
        why);
  if (size > kMaxChunkSize)
    return fail(errc::too_large,
                name + " (at byte " + std::to_string(chunk.offset) + ") claims " +
                    std::to_string(size) + " bytes; the limit is " + std::to_string(kMaxChunkSize) +
                    ": the bundle is damaged",
                why);
  if (bytes_of_chunks_ + size > header_.chunk_bytes)
    return fail(errc::invalid_value,
                name + " (at byte " + std::to_string(chunk.offset) +
                    ") takes the chunks past the " + std::to_string(header_.chunk_bytes) +
                    " bytes its header says: the bundle is damaged",
                why);
  chunk.bytes.resize(size);
  KABAN_TRYV(read(chunk.bytes.data(), size, name, why));
  if (crypto::sha256(crypto::as_bytes(chunk.bytes)) != hash)
    return fail(errc::invalid_value,
                name + " (at byte " + std::to_string(chunk.offset) +
                    ") does not match its SHA-256: the bundle is damaged. Copy it again",
                why);
  chunk.sha256 = crypto::to_hex(hash);
  ++chunks_read_;
  bytes_of_chunks_ += size;
  return true;
}

}  // namespace kaban::protocol
