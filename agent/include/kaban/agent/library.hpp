// Library: the courses this device holds, from signed manifest to offline reading.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kaban/agent/store.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/ed25519.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// One chunk as downloaded: the hash it was asked for and the bytes that came back.
struct ChunkData {
  std::string sha256;  ///< 64 lower-case hex digits
  std::string bytes;
};

/// A chunk whose bytes matched its SHA-256 when verify() made it, and cannot change since:
/// Library::put_chunks stores these without hashing them again. Sync verifies each chunk as
/// it arrives (a damaged one is fetched again at once), so its commits need not hash twice.
class VerifiedChunk {
 public:
  /// The chunk, if SHA-256 of `bytes` is `sha256` (64 lower-case hex digits); else nullopt.
  static std::optional<VerifiedChunk> verify(std::string sha256, std::string bytes);

  const std::string& sha256() const noexcept { return sha256_; }
  const std::string& bytes() const noexcept { return bytes_; }
  /// Gives up the bytes; the chunk is of no further use.
  std::string take_bytes() && noexcept { return std::move(bytes_); }

 private:
  VerifiedChunk(std::string sha256, std::string bytes) noexcept
      : sha256_(std::move(sha256)), bytes_(std::move(bytes)) {}

  std::string sha256_;
  std::string bytes_;
};

/// A course as the reader sees it. Its fields come from the newest complete version, or, while
/// a course is downloaded for the first time, from the version being downloaded.
struct CourseInfo {
  std::string id;
  std::string title;
  std::string description;
  std::int64_t version = 0;  ///< the newest complete version, 0 if none yet
  std::size_t lessons = 0;
  std::uint64_t total_size = 0;     ///< bytes of all its files
  bool ready = false;               ///< true once a complete version can be read
  std::uint64_t pending_bytes = 0;  ///< bytes still missing for the newest incomplete version
  /// Bytes of the newest version's on-demand media not on the device (lessons not pinned).
  std::uint64_t on_demand_bytes = 0;
};

/// A lesson of a readable course.
struct LessonInfo {
  std::string course_id;
  std::string id;
  std::string title;
  std::string kind;  ///< see protocol::is_lesson_kind
  std::int64_t duration_minutes = 0;
  std::vector<std::string> files;   ///< files[0] is the one to open
  std::uint64_t size = 0;           ///< bytes of its files
  bool pinned = false;              ///< the person pinned it (`kaban pin`)
  std::uint64_t missing_bytes = 0;  ///< bytes of its files not on the device (on demand)
};

/// What the store holds of one lesson, for `kaban storage`.
struct LessonStorage {
  std::string id;
  std::string title;
  bool pinned = false;
  std::uint64_t size = 0;            ///< bytes of its files
  std::uint64_t held = 0;            ///< bytes of its files' chunks on the device
  std::uint64_t on_demand_size = 0;  ///< bytes of its files fetched only when pinned
};

/// What the store holds of one course, for `kaban storage`.
struct CourseStorage {
  std::string id;
  std::string title;
  std::int64_t version = 0;    ///< the version described: newest readable, else newest held
  std::uint64_t size = 0;      ///< bytes of its files
  std::uint64_t held = 0;      ///< bytes of chunks on the device that its versions use
  std::uint64_t freeable = 0;  ///< of those, media of lessons not pinned: `kaban storage --free`
  std::vector<LessonStorage> lessons;  ///< in manifest order
};

/// The store's course content, for `kaban storage`.
struct StorageReport {
  std::uint64_t on_demand_threshold = 0;  ///< bytes; 0 = every file is downloaded at sync
  std::uint64_t held = 0;                 ///< bytes of course chunks held
  std::uint64_t freeable = 0;             ///< bytes storage_free() would release
  std::vector<CourseStorage> courses;     ///< by id
};

/// The course content held in a Store. A version is added from its signed manifest, fills up
/// chunk batch by chunk batch (a stored chunk is never asked for again, which makes a download
/// resumable; each is checked against its SHA-256 before it is stored), and becomes readable
/// only once every chunk is stored; it then replaces the course's older version and chunks no
/// version uses are deleted. A file's whole SHA-256 is checked each time it is read.
///
/// Like Store, a Library is used from one thread at a time; it keeps a reference to the store,
/// which must outlive it. Every method returns errc::content_invalid for content that does not
/// verify, errc::not_found as documented, and a store failure with its store_error_code(), after
/// which nothing of that call is kept (each write is one transaction).
class Library {
 public:
  explicit Library(Store& store) noexcept : store_(store) {}

  /// Verifies `signing_key`'s Ed25519 signature (128 hex digits) over the exact manifest text,
  /// then parses it and checks it names the change's course id and version; only then stores it
  /// with its chunk list. Returns true if the version was stored, false if it was already held
  /// or is older than (or as old as) a version held of the same course. Storing a version drops
  /// the course's older incomplete versions: only the newest is downloaded. errc::content_invalid
  /// if anything fails to verify; nothing is stored then, and `why` (when given) says what: the
  /// signature, or the rule of the signed manifest that this agent's parser refuses.
  Result<bool> add_course_version(const protocol::CourseVersionChange& change,
                                  const crypto::Ed25519PublicKey& signing_key,
                                  std::string* why = nullptr);

  /// The distinct chunks incomplete versions need and the store does not hold, in manifest order
  /// (course id, then version).
  Result<std::vector<protocol::ChunkRef>> missing_chunks();

  /// The same, per incomplete version (course id, then version): each version's distinct
  /// missing chunks in manifest order. A chunk two versions lack is listed under both, so a
  /// caller can tell what one version needs to complete.
  struct MissingVersion {
    std::string course_id;
    std::int64_t version = 0;
    std::vector<protocol::ChunkRef> chunks;
  };
  Result<std::vector<MissingVersion>> missing_by_version();

  /// Checks every chunk's bytes against its SHA-256, and that some held version uses it, before
  /// writing anything; then stores the whole batch in one transaction (chunks already held are
  /// skipped). errc::content_invalid if any chunk fails; nothing of the batch is stored then.
  Result<void> put_chunks(std::span<const ChunkData> chunks);
  /// The same for chunks verified already: only the check that some held version uses each.
  Result<void> put_chunks(std::span<const VerifiedChunk> chunks);

  /// Completes every incomplete version whose chunks are all stored: in one transaction per
  /// version, marks it complete, drops the course's older versions and deletes the chunks no
  /// remaining version uses. Returns "course_id@version" for each version made readable. Nothing
  /// is read back: each chunk verified against the signed manifest's hash when it was stored.
  Result<std::vector<std::string>> complete_versions();

  /// Every course held, by id, readable or still downloading for the first time.
  Result<std::vector<CourseInfo>> courses();

  /// The lessons of the newest complete version of `course_id`, in manifest order.
  /// errc::not_found if no version of it is complete.
  Result<std::vector<LessonInfo>> lessons(std::string_view course_id);

  /// Streams a file of a lesson of the newest complete version to `sink`, chunk by chunk in
  /// order; `path` "" means the lesson's first file. Each view is valid only during its call;
  /// a sink's error stops the stream and is returned. The file's SHA-256 is checked while
  /// streaming: errc::content_invalid after the last chunk if it does not match (the bytes were
  /// already handed to the sink; discard them). errc::not_found for an unknown or not yet
  /// readable course, an unknown lesson, or a path the lesson does not use.
  Result<void> open_file(std::string_view course_id, std::string_view lesson_id,
                         std::string_view path,
                         const std::function<Result<void>(crypto::ByteView)>& sink);

  /// Removes a course from the device (the person may no longer see it): every version of it,
  /// complete or not, and the chunks no other course's version uses, in one transaction.
  /// Returns false if nothing of it was held. The person's learning records of it stay: they are
  /// the person's own, and the server holds them.
  Result<bool> remove_course(std::string_view course_id);

  /// Removes every course whose newest version held expired at or before `now` (Unix seconds,
  /// the guard's trusted time), as remove_course does, in one transaction. Returns their ids,
  /// sorted. Sync calls it, and so does every command that reads content, so an expired course
  /// goes offline too.
  Result<std::vector<std::string>> remove_expired(std::int64_t now);

  /// Bytes of chunk content held (complete and in-progress versions alike).
  Result<std::uint64_t> stored_bytes();

  // ---- Download on demand (docs/content.md) ----
  // A file of at least the threshold (the device policy's download_on_demand_mb) is fetched
  // only for a lesson that is pinned; a version becomes readable once every other file is
  // stored. Its chunks, once held, stay until the lesson is unpinned or storage_free() runs.

  /// Sets the threshold in bytes (0: every file is fetched) and, if it changed, marks what
  /// every version held defers. Kept in the store: the CLI and sync apply the policy's.
  Result<void> set_on_demand_threshold(std::uint64_t bytes);
  Result<std::uint64_t> on_demand_threshold();

  /// Pins a lesson of a held course: its files are fetched at the next sync whatever their
  /// size, and it stays pinned across versions. False if it already was. errc::not_found if no
  /// version held has that lesson.
  Result<bool> pin_lesson(std::string_view course_id, std::string_view lesson_id);

  /// Unpins a lesson and deletes the chunks of its on-demand files that nothing else needs.
  /// Returns the bytes freed, or std::nullopt if the lesson was not pinned.
  Result<std::optional<std::uint64_t>> unpin_lesson(std::string_view course_id,
                                                    std::string_view lesson_id);

  /// What is held, per course and lesson, and what could be freed.
  Result<StorageReport> storage();

  /// Deletes every held chunk that only on-demand files of lessons not pinned use (media a
  /// bundle brought, or of a lesson unpinned while it was being read). Returns bytes freed.
  Result<std::uint64_t> storage_free();

 private:
  Store& store_;
};

}  // namespace kaban::agent
