// Catalog: published courses, their signed manifests, the change feed and the content chunks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/crypto/ed25519.hpp"
#include "kaban/result.hpp"
#include "kaban/server/chunker.hpp"
#include "kaban/server/course_folder.hpp"
#include "kaban/server/database.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

/// What a publish did.
struct PublishedVersion {
  std::string course_id;
  std::int64_t version = 0;
  std::size_t files = 0;
  std::uint64_t total_bytes = 0;
  std::size_t new_chunks = 0;     ///< chunks the server did not hold before
  std::size_t reused_chunks = 0;  ///< chunks it already held (from any course)
  bool unretired = false;         ///< the course was retired, and this publish brought it back
  bool unchanged = false;  ///< set_expiry: the course had this expiry already; nothing published
};

/// `admin gc` spares a chunk file modified less than this long ago: a publish writes (or renews)
/// its chunk files before its transaction names them.
inline constexpr std::int64_t kGcFileGraceSeconds = 3600;

/// A course and its latest version, for `admin course list`.
struct CourseSummary {
  std::string id;
  std::string title;
  std::int64_t latest_version = 0;
  UnixTime published_at;
  std::int64_t file_count = 0;
  std::uint64_t total_bytes = 0;
  std::optional<UnixTime> expires_at;  ///< of the latest version
  std::optional<UnixTime> retired_at;
};

/// What `admin gc` collected (or, in a dry run, would collect).
struct GcReport {
  std::size_t versions = 0;     ///< superseded versions deleted
  std::size_t courses = 0;      ///< retired or expired courses whose chunks were released
  std::size_t chunks = 0;       ///< chunk rows and files deleted
  std::uint64_t bytes = 0;      ///< their bytes
  std::size_t stray_files = 0;  ///< files in chunks/ no row named (a publish that failed), deleted
};

/// One entry of the change feed: a published course version.
struct CourseVersionRecord {
  std::int64_t seq = 0;
  std::string course_id;
  std::int64_t version = 0;
  std::string manifest;   ///< the exact JSON text the signature covers
  std::string signature;  ///< Ed25519, 128 hex digits
};

/// The catalog over one database connection and the data directory's chunk store. Not
/// thread-safe: one Catalog per connection, used by the connection's thread; the database must
/// outlive it. Every method fails with errc::storage_failed if SQLite or the disk fails.
class Catalog {
 public:
  /// `chunking` says where files are cut when published (the default is what `admin course
  /// publish` uses; benchmarks and tests may choose others).
  Catalog(SQLite::Database& db, std::filesystem::path data_dir, const ChunkerParams& chunking = {});

  /// Publishes `course` as its next version (1 for a new course): cuts each file into chunks
  /// where its content says (Chunker; never a whole file in memory), stores chunks the server lacks
  /// under chunks/, signs the manifest with `signing_key` and records the version, its chunks and
  /// the next change-feed sequence in one transaction (a savepoint of the caller's transaction, if
  /// one is open). On failure the database is unchanged and
  /// `why` names the file (errc::file_missing if one vanished or changed type since it was read,
  /// errc::storage_failed for a read or write error).
  Result<PublishedVersion> publish(const CourseSource& course,
                                   const crypto::Ed25519PrivateKey& signing_key, UnixTime now,
                                   std::string& why);

  /// Every course with its latest version, by id.
  Result<std::vector<CourseSummary>> list_courses();

  /// Up to `limit` (at most protocol::kMaxChangesPage) course versions with a sequence above
  /// `after_seq`, in sequence order, of the courses `login` may see at `now`. None for an unknown
  /// login.
  Result<std::vector<CourseVersionRecord>> changes_since(std::string_view login,
                                                         std::int64_t after_seq, int limit,
                                                         UnixTime now);

  /// True if `hash` is a chunk of some held version of a course `login` may see at `now`; false
  /// for an unknown hash or login.
  Result<bool> chunk_visible(std::string_view login, std::string_view hash, UnixTime now);

  /// Where the chunk with this hash (64 lower-case hex digits) is stored: chunks/ab/<hash>.
  std::filesystem::path chunk_path(std::string_view hash) const;

  /// True if `hash` is a chunk of a held version of a course in use at `now` (not retired, not
  /// expired), whoever it is assigned to: what a content mirror may fetch. False for an unknown
  /// or malformed hash.
  Result<bool> chunk_live(std::string_view hash, UnixTime now);

  /// Sets who may see the course: "all" or group ids (replacing what was set; a new course is
  /// "all"; a repeated audience counts once). errc::no_such_course, errc::no_such_group (nothing
  /// changed then), errc::invalid_channel for an empty list; `why`, when given, names the course
  /// or group. Inside the caller's transaction it runs in a savepoint of it.
  Result<void> assign(std::string_view course_id, std::span<const std::string> audiences,
                      std::string* why = nullptr);
  /// Who may see the course, sorted ("all" first). errc::no_such_course for a course never
  /// published.
  Result<std::vector<std::string>> audiences(std::string_view course_id);
  /// The ids of every course `login` may see at `now` (sorted): assigned to "all" or to a group
  /// `login` is a current member of, not retired and not expired. What the check-in answer lists;
  /// a course a device holds that is not here is removed from it.
  Result<std::vector<std::string>> visible_courses(std::string_view login, UnixTime now);

  /// Retires the course (see admin_course_retire). Returns false if it was retired already.
  /// errc::no_such_course. Inside the caller's transaction it runs in a savepoint of it.
  Result<bool> retire(std::string_view course_id, UnixTime now);

  /// Publishes the course's latest manifest again as the next version, with `expires_at` set
  /// (or cleared) and the same files and chunks, signed with `signing_key`; when the latest
  /// version has that expiry already, publishes nothing and says so (`unchanged`, `version` the
  /// latest). errc::no_such_course,
  /// errc::course_retired, errc::no_such_version if its chunks were collected (publish it again);
  /// `why` then says so.
  Result<PublishedVersion> set_expiry(std::string_view course_id,
                                      std::optional<UnixTime> expires_at,
                                      const crypto::Ed25519PrivateKey& signing_key, UnixTime now,
                                      std::string& why);

  /// Deletes what nothing needs any more (see admin_gc): versions superseded before
  /// `now - keep` (never a course's latest), the chunk links of courses retired or expired before
  /// `now - keep` (their latest manifest stays, for reports), then every chunk no version,
  /// message or pending upload names, with its file. A file is deleted only if it was not
  /// touched in the last kGcFileGraceSeconds, so a publish running beside gc keeps its chunks.
  /// With `dry_run` nothing changes and the report says what would go.
  Result<GcReport> collect_garbage(std::chrono::seconds keep, UnixTime now, bool dry_run);

  /// The signed manifest of `course_id` at `version`, or at its latest version when `version` is
  /// 0. errc::no_such_course for a course never published, errc::no_such_version for a version
  /// it does not hold (never published, or collected by `admin gc`).
  Result<CourseVersionRecord> find_version(std::string_view course_id, std::int64_t version);

  /// The highest change-feed sequence so far; 0 before the first publish.
  Result<std::int64_t> latest_seq();

 private:
  SQLite::Database& db_;
  std::filesystem::path data_dir_;
  Chunker chunker_;
};

}  // namespace kaban::server
