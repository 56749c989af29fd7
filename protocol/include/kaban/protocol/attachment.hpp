// Message attachments: small files that travel with a message, chunked and addressed by SHA-256
// like course content. The device uploads the chunks (PUT /v1/chunks/<sha256>) before the
// message that names them; readers fetch them with GET /v1/chunks/<sha256>, which serves a chunk
// only to someone who may read a message (or a course) that uses it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/protocol/manifest.hpp"

namespace kaban::protocol {

/// Most attachments on one message, largest attachment, and the chunk size attachments are cut
/// into (every chunk but the last is exactly this long).
inline constexpr std::size_t kMaxAttachments = 4;
inline constexpr std::uint64_t kMaxAttachmentSize = 4 * 1024 * 1024;
inline constexpr std::size_t kAttachmentChunkSize = 1024 * 1024;
/// Longest attachment file name and media type, in bytes.
inline constexpr std::size_t kMaxAttachmentName = 255;
inline constexpr std::size_t kMaxMediaType = 127;

/// One attached file.
struct Attachment {
  std::string name;        ///< a file name (is_valid_attachment_name), shown to people
  std::string media_type;  ///< e.g. "image/jpeg"; "" when unknown
  std::uint64_t size = 0;  ///< 1..kMaxAttachmentSize bytes
  std::string sha256;      ///< of the whole file, 64 lower-case hex digits
  /// The file's chunks in order: every one kAttachmentChunkSize bytes except the last
  /// (1..kAttachmentChunkSize), sizes adding up to `size`.
  std::vector<ChunkRef> chunks;
  friend bool operator==(const Attachment&, const Attachment&) = default;
};

/// A file name with no directory part: 1..kMaxAttachmentName bytes of valid UTF-8 with no
/// control characters, '/', '\' or ':', and not "." or "..".
bool is_valid_attachment_name(std::string_view name);

/// "" if `a` is well formed (name, media type "type/subtype" of printable ASCII or "", size,
/// hashes, the chunk rule above); otherwise a sentence naming what is wrong.
std::string check_attachment(const Attachment& a);

/// Cuts `size` bytes into the chunk sizes an attachment of that size has.
std::vector<std::uint64_t> attachment_chunk_sizes(std::uint64_t size);

}  // namespace kaban::protocol
