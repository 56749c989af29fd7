// A course version's manifest: what the content-signing key signs and the agent verifies.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/result.hpp"

namespace kaban::protocol {

inline constexpr std::size_t kMaxChunkSize = 4 * 1024 * 1024;
inline constexpr std::size_t kMaxManifestSize = 16 * 1024 * 1024;
inline constexpr std::size_t kMaxLessons = 10'000;
inline constexpr std::size_t kMaxFiles = 100'000;
/// The most files one lesson may use.
inline constexpr std::size_t kMaxLessonFiles = 1000;

/// A content chunk, addressed by the SHA-256 of its bytes (64 lower-case hex digits).
struct ChunkRef {
  std::string sha256;
  std::uint64_t size = 0;
  friend bool operator==(const ChunkRef&, const ChunkRef&) = default;
};

/// One file of a course: its path inside the course ("media/intro.mp4": relative, '/'-separated,
/// no "." or ".." segments, no empty segments, no backslash or NUL), its media type, its size and
/// SHA-256, and the chunks whose concatenation it is.
struct ManifestFile {
  std::string path;
  std::string media_type;
  std::uint64_t size = 0;
  std::string sha256;
  std::vector<ChunkRef> chunks;
  friend bool operator==(const ManifestFile&, const ManifestFile&) = default;
};

/// What a lesson is, for the reader's app to choose how to show it.
/// One of: "html", "pdf", "video", "audio", "document", "other".
bool is_lesson_kind(std::string_view kind);

/// A lesson: its id (unique within the course, [a-z0-9][a-z0-9._-]{0,63}), title, kind, how long
/// it takes, and the paths of the files it uses (files[0] is the one to open).
struct Lesson {
  std::string id;
  std::string title;
  std::string kind;
  std::int64_t duration_minutes = 0;
  std::vector<std::string> files;
  friend bool operator==(const Lesson&, const Lesson&) = default;
};

/// A course version. `version` grows by one with each publish of the same course id.
struct Manifest {
  std::string course_id;  ///< [a-z0-9][a-z0-9._-]{0,63}
  std::int64_t version = 0;
  std::string title;
  std::string description;
  std::string published_at;  ///< RFC 3339 UTC, e.g. "2026-11-23T10:00:00Z"
  /// RFC 3339 UTC: devices drop the course from this moment on (by their trusted clock, offline
  /// too). "" for a course that does not expire; then the field is left out of the JSON, so
  /// agents older than the field still read the manifest.
  std::string expires_at;
  std::vector<Lesson> lessons;
  std::vector<ManifestFile> files;
  friend bool operator==(const Manifest&, const Manifest&) = default;

  /// The total of the file sizes.
  std::uint64_t total_size() const;
  /// The file with this path, or nullptr.
  const ManifestFile* find_file(std::string_view path) const;
  const Lesson* find_lesson(std::string_view id) const;
};

/// The manifest as compact JSON. The signature covers exactly these bytes, so the text travels
/// as a string and is parsed only after the signature verifies.
std::string manifest_to_json(const Manifest& manifest);

/// Parses and validates: every limit above, ids and paths well formed, each file's chunk sizes
/// adding up to its size, every chunk at most kMaxChunkSize and not empty, every lesson's file
/// listed, no duplicate lesson ids or file paths, unknown fields refused. Fails with an errc
/// from kaban/protocol/error.hpp.
Result<Manifest> parse_manifest(std::string_view json, std::string* why = nullptr);

/// True for an id of the form [a-z0-9][a-z0-9._-]{0,63} (course and lesson ids).
bool is_valid_id(std::string_view id);
/// True for a relative content path as described at ManifestFile.
bool is_valid_content_path(std::string_view path);
/// True for 64 lower-case hex digits.
bool is_sha256_hex(std::string_view text);

}  // namespace kaban::protocol
