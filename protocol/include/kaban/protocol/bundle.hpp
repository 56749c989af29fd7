// Offline course bundles: one file holding a course version's signed manifest and every chunk
// it needs, written by `kaban-server admin course bundle` and read by `kaban import` on a device
// with no network. Both sides stream it: a bundle is never held whole in memory.
//
// The byte format (docs/content.md, "Offline bundles"), every integer unsigned big-endian:
//
//   magic        13 bytes  "KABAN-BUNDLE\n"
//   header       u32 J (2..kMaxBundleHeaderSize), then J bytes of JSON: BundleHeader's fields
//   manifest     u32 M (1..kMaxManifestSize), then the M bytes the signature covers, as signed
//   chunk_count times, in manifest order, each distinct chunk once (bundle_chunks()):
//     hash       32 bytes  SHA-256 of the chunk's bytes
//     length     u32 L (1..kMaxChunkSize)
//     bytes      L bytes
//   end marker   10 bytes  "KABAN-END\n"
//   digest       32 bytes  SHA-256 of every byte before it, magic through end marker
//
// Nothing may follow the digest. The digest catches a cut or damaged copy before anything of it
// is made readable; it is not a signature (anyone can recompute it): what makes the content
// trustworthy is the manifest's Ed25519 signature and each chunk's hash, which the device checks
// against the key it pinned at enrollment.
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/result.hpp"

namespace kaban::protocol {

/// The first bytes of every bundle.
inline constexpr std::string_view kBundleMagic = "KABAN-BUNDLE\n";
/// The bytes between the last chunk and the digest.
inline constexpr std::string_view kBundleEndMarker = "KABAN-END\n";
/// The format this build writes and the only one it reads. A change an older reader could not
/// skip over raises it; fields added to the JSON header do not (readers ignore unknown ones).
inline constexpr std::int64_t kBundleFormat = 1;
/// The largest JSON header: its fields are short (the manifest travels on its own).
inline constexpr std::size_t kMaxBundleHeaderSize = 64 * 1024;
/// The most chunks a bundle may hold: a manifest of kMaxManifestSize bytes cannot name more
/// distinct chunks, each named by 64 hex digits.
inline constexpr std::uint64_t kMaxBundleChunks = kMaxManifestSize / 64;

/// What precedes a bundle's chunks: the JSON header's fields and the signed manifest.
struct BundleHeader {
  std::int64_t format = kBundleFormat;
  std::string course_id;  ///< the manifest's course_id
  std::int64_t version = 0;
  std::string manifest;           ///< the exact manifest text the signature covers
  std::string signature;          ///< Ed25519 over `manifest`, 128 hex digits
  std::string signing_key;        ///< the signing server's Ed25519 public key, 64 hex digits
  std::uint64_t chunk_count = 0;  ///< how many chunks follow (at most kMaxBundleChunks)
  std::uint64_t chunk_bytes = 0;  ///< the total of their lengths
  std::string created_at;         ///< RFC 3339 UTC; for people, nothing checks it
  friend bool operator==(const BundleHeader&, const BundleHeader&) = default;
};

/// The chunks a bundle of `manifest` holds, in order: every file's chunks in manifest order,
/// each distinct hash at its first use only.
std::vector<ChunkRef> bundle_chunks(const Manifest& manifest);

/// Checks that `header` describes a bundle of `manifest` (parsed from header.manifest after its
/// signature verified): the same course id and version, and chunk_count and chunk_bytes those of
/// bundle_chunks(manifest). errc::invalid_value with `why` naming the field otherwise.
Result<void> check_bundle_header(const BundleHeader& header, const Manifest& manifest,
                                 std::string* why = nullptr);

/// Where a BundleWriter puts its bytes, in order. Returns the error that stops the bundle (the
/// OS error of a failed write).
using BundleSink = std::function<Result<void>(crypto::ByteView bytes)>;

/// Writes one bundle to a sink: the magic, header and manifest at start(), then each chunk, then
/// the end marker and digest at finish(). Refuses, before writing a byte of it, anything a reader
/// would refuse: each chunk must be the next of the header's count, 1 to kMaxChunkSize bytes, and
/// match its hash; finish() checks the count and total. A failed call leaves the sink's bytes an
/// unfinished bundle, which every reader refuses; the caller discards it. Move-only; one thread
/// at a time.
class BundleWriter {
 public:
  /// Checks `header` (the limits and forms a reader checks; `format` must be kBundleFormat) and
  /// writes the bundle's start to `sink`. errc::invalid_value or errc::too_large with `why` for a
  /// header a reader would refuse, or the sink's error.
  static Result<BundleWriter> start(BundleSink sink, const BundleHeader& header,
                                    std::string* why = nullptr);

  /// Writes the next chunk. `sha256` is 64 lower-case hex digits. errc::invalid_value with `why`
  /// if the bytes do not match it, are empty, or the header's count is already written;
  /// errc::too_large past kMaxChunkSize; or the sink's error.
  Result<void> add_chunk(std::string_view sha256, crypto::ByteView bytes,
                         std::string* why = nullptr);

  /// Writes the end marker and the digest. errc::invalid_value with `why` if fewer chunks or
  /// other bytes than the header said were written; or the sink's error.
  Result<void> finish(std::string* why = nullptr);

  /// Bytes handed to the sink so far.
  std::uint64_t bytes_written() const noexcept { return offset_; }

 private:
  BundleWriter(BundleSink sink, std::uint64_t chunk_count, std::uint64_t chunk_bytes);
  Result<void> put(crypto::ByteView bytes);

  BundleSink sink_;
  crypto::Sha256 digest_;
  std::uint64_t chunk_count_ = 0;
  std::uint64_t chunk_bytes_ = 0;
  std::uint64_t chunks_written_ = 0;
  std::uint64_t bytes_of_chunks_ = 0;
  std::uint64_t offset_ = 0;
  bool finished_ = false;
};

/// One chunk as read from a bundle; its bytes matched its hash.
struct BundleChunk {
  std::string sha256;        ///< 64 lower-case hex digits
  std::string bytes;         ///< 1 to kMaxChunkSize bytes
  std::uint64_t index = 0;   ///< 0-based position among the bundle's chunks
  std::uint64_t offset = 0;  ///< where its 32-byte hash starts in the file
};

/// Reads one bundle from a stream, checking every length against its limit before reading what
/// it announces (so a hostile file costs at most one chunk of memory), each chunk against its
/// hash, and at the end the end marker, the digest and that nothing follows. Every refusal is an
/// errc from kaban/protocol/error.hpp with a sentence in `why` that names the region and byte
/// offset: errc::malformed for a file that is not a bundle or is cut short, errc::too_large for a
/// length over its limit, errc::invalid_value for a field out of range, a format this build does
/// not read, or bytes that do not match their hash or the digest. A stream that fails to read
/// counts as cut short. Move-only; one thread at a time; the stream must outlive the reader.
///
/// The reader does not verify the manifest's signature (it has no key): the caller does, and
/// checks each chunk's hash against the signed manifest's list (bundle_chunks()).
class BundleReader {
 public:
  /// Reads and checks the magic, the JSON header and the manifest's length and bytes.
  static Result<BundleReader> open(std::istream& in, std::string* why = nullptr);

  const BundleHeader& header() const noexcept { return header_; }

  /// Reads the next chunk into `chunk` and returns true; after the last one, reads and checks
  /// the end marker, the digest and the end of the file and returns false (once: later calls
  /// return false again). After a failure every call fails the same way.
  Result<bool> next(BundleChunk& chunk, std::string* why = nullptr);

  /// Bytes read from the stream so far.
  std::uint64_t offset() const noexcept { return offset_; }

 private:
  explicit BundleReader(std::istream& in);
  Result<void> read(char* into, std::size_t size, std::string_view what, std::string* why);
  Result<bool> fail(std::error_code code, std::string message, std::string* why);

  std::istream* in_;
  crypto::Sha256 digest_;
  BundleHeader header_;
  std::uint64_t offset_ = 0;
  std::uint64_t chunks_read_ = 0;
  std::uint64_t bytes_of_chunks_ = 0;
  bool done_ = false;
  std::error_code failed_;
  std::string failed_why_;
};

}  // namespace kaban::protocol
