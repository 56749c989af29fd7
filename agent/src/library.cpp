#include "kaban/agent/library.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <unordered_set>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "chunk_rows.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/timestamp.hpp"

namespace kaban::agent {
namespace {

using Sink = std::function<Result<void>(crypto::ByteView)>;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string version_name(std::string_view course_id, std::int64_t version) {
  return std::string(course_id) + "@" + std::to_string(version);
}

std::string hex_sha256(std::string_view bytes) {
  return crypto::to_hex(crypto::sha256(crypto::as_bytes(bytes)));
}

std::optional<std::int64_t> newest_version(SQLite::Database& db, std::string_view course_id,
                                           bool complete) {
  SQLite::Statement query(
      db, "SELECT max(version) FROM course_versions WHERE course_id = ? AND complete = ?");
  query.bind(1, std::string(course_id));
  query.bind(2, complete ? 1 : 0);
  query.executeStep();
  if (query.getColumn(0).isNull())
    return std::nullopt;
  return query.getColumn(0).getInt64();
}

Result<protocol::Manifest> load_manifest(SQLite::Database& db, std::string_view course_id,
                                         std::int64_t version) {
  SQLite::Statement query(
      db, "SELECT manifest FROM course_versions WHERE course_id = ? AND version = ?");
  query.bind(1, std::string(course_id));
  query.bind(2, version);
  if (!query.executeStep())
    return errc::not_found;
  // The text verified and parsed when it was added; failing now means this build reads it
  // differently, which is no reason to show content that was never checked by this build.
  auto manifest = protocol::parse_manifest(query.getColumn(0).getString());
  if (!manifest)
    return errc::content_invalid;
  return manifest;
}

Result<protocol::Manifest> newest_complete_manifest(SQLite::Database& db,
                                                    std::string_view course_id) {
  const auto version = newest_version(db, course_id, true);
  if (!version)
    return errc::not_found;
  return load_manifest(db, course_id, *version);
}

// One chunk row at a time, straight from SQLite's buffer into the hash and the sink: a file of
// any size costs one chunk of memory.
Result<void> stream_file(SQLite::Database& db, const protocol::ManifestFile& file,
                         const Sink& sink) {
  SQLite::Statement query(db, "SELECT data FROM chunks WHERE hash = ?");
  crypto::Sha256 hash;
  std::uint64_t length = 0;
  for (const protocol::ChunkRef& chunk : file.chunks) {
    query.reset();
    query.bind(1, chunk.sha256);
    if (!query.executeStep())
      return errc::content_invalid;
    const SQLite::Column data = query.getColumn(0);
    const crypto::ByteView bytes(static_cast<const std::uint8_t*>(data.getBlob()),
                                 static_cast<std::size_t>(data.getBytes()));
    hash.update(bytes);
    length += bytes.size();
    KABAN_TRYV(sink(bytes));
  }
  if (length != file.size || crypto::to_hex(hash.finish()) != file.sha256)
    return errc::content_invalid;
  return ok();
}

// Chunks no version uses. Reads only the hash column, so the chunk data is never paged in.
void collect_garbage(SQLite::Database& db) {
  db.exec(R"sql(
    DELETE FROM chunks
    WHERE NOT EXISTS (SELECT 1 FROM version_chunks vc WHERE vc.hash = chunks.hash)
  )sql");
}

constexpr std::string_view kOnDemandKey = "on_demand_threshold";

// A version `cv` that is the newest its course has: what downloads fill (an incomplete one, or
// a complete one whose pinned media is still missing). Older versions only wait to be dropped.
constexpr std::string_view kNewestHeld = R"sql(
  cv.version = (SELECT max(n.version) FROM course_versions n WHERE n.course_id = cv.course_id)
)sql";

std::uint64_t read_threshold(SQLite::Database& db) {
  SQLite::Statement query(db, "SELECT value FROM meta WHERE key = ?");
  query.bind(1, std::string(kOnDemandKey));
  if (!query.executeStep())
    return 0;
  return static_cast<std::uint64_t>(query.getColumn(0).getInt64());
}

std::unordered_set<std::string> pinned_lessons(SQLite::Database& db, std::string_view course_id) {
  SQLite::Statement query(db, "SELECT lesson_id FROM pinned_lessons WHERE course_id = ?");
  query.bind(1, std::string(course_id));
  std::unordered_set<std::string> pinned;
  while (query.executeStep())
    pinned.insert(query.getColumn(0).getString());
  return pinned;
}

// The paths of the files of `manifest` fetched only on demand: at least `threshold` bytes,
// used by some lesson and by no pinned one. A file no lesson names cannot be pinned, so it is
// always fetched.
std::unordered_set<std::string> on_demand_files(const protocol::Manifest& manifest,
                                                std::uint64_t threshold,
                                                const std::unordered_set<std::string>& pinned) {
  std::unordered_set<std::string> on_demand;
  if (threshold == 0)
    return on_demand;
  std::unordered_set<std::string> kept;
  for (const protocol::Lesson& lesson : manifest.lessons) {
    const bool is_pinned = pinned.count(lesson.id) > 0;
    for (const std::string& path : lesson.files) {
      const protocol::ManifestFile* file = manifest.find_file(path);
      if (file == nullptr || file->size < threshold || is_pinned)
        kept.insert(path);
      else
        on_demand.insert(path);
    }
  }
  for (const std::string& path : kept)
    on_demand.erase(path);
  return on_demand;
}

// The chunks only on-demand files use: the ones a sync does not fetch.
std::unordered_set<std::string> deferred_chunks(const protocol::Manifest& manifest,
                                                const std::unordered_set<std::string>& on_demand) {
  std::unordered_set<std::string> deferred;
  if (on_demand.empty())
    return deferred;
  std::unordered_set<std::string> needed;
  for (const protocol::ManifestFile& file : manifest.files)
    for (const protocol::ChunkRef& chunk : file.chunks)
      (on_demand.count(file.path) ? deferred : needed).insert(chunk.sha256);
  for (const std::string& hash : needed)
    deferred.erase(hash);
  return deferred;
}

// Marks again what every held version of `course_id` (every course if empty) defers, after the
// threshold or a pin changed.
void mark_deferred(SQLite::Database& db, std::string_view course_id) {
  const std::uint64_t threshold = read_threshold(db);
  SQLite::Statement versions(db, course_id.empty()
                                     ? "SELECT course_id, version, manifest FROM course_versions"
                                     : "SELECT course_id, version, manifest FROM course_versions "
                                       "WHERE course_id = ?");
  if (!course_id.empty())
    versions.bind(1, std::string(course_id));
  SQLite::Statement clear(
      db, "UPDATE version_chunks SET deferred = 0 WHERE course_id = ? AND version = ?");
  SQLite::Statement defer(db, R"sql(
    UPDATE version_chunks SET deferred = 1 WHERE course_id = ? AND version = ? AND hash = ?
  )sql");
  while (versions.executeStep()) {
    const std::string id = versions.getColumn(0).getString();
    const std::int64_t version = versions.getColumn(1).getInt64();
    clear.reset();
    clear.bind(1, id);
    clear.bind(2, version);
    clear.exec();
    if (threshold == 0)
      continue;
    auto manifest = protocol::parse_manifest(versions.getColumn(2).getString());
    if (!manifest)
      continue;  // never stored unparsed; a build that reads it differently fetches it all
    const auto deferred = deferred_chunks(
        manifest.value(), on_demand_files(manifest.value(), threshold, pinned_lessons(db, id)));
    for (const std::string& hash : deferred) {
      defer.reset();
      defer.bind(1, id);
      defer.bind(2, version);
      defer.bind(3, hash);
      defer.exec();
    }
  }
}

// Held chunks that only deferred rows name (of `course_id`'s versions, or of any if empty).
constexpr std::string_view kFreeableChunks = R"sql(
  FROM chunks
  WHERE EXISTS (SELECT 1 FROM version_chunks vc WHERE vc.hash = chunks.hash AND vc.deferred = 1
                  AND (?1 = '' OR vc.course_id = ?1))
    AND NOT EXISTS (SELECT 1 FROM version_chunks vc
                    WHERE vc.hash = chunks.hash AND vc.deferred = 0)
)sql";

std::uint64_t freeable_bytes(SQLite::Database& db, std::string_view course_id) {
  SQLite::Statement query(db, "SELECT coalesce(sum(size), 0) " + std::string(kFreeableChunks));
  query.bind(1, std::string(course_id));
  query.executeStep();
  return static_cast<std::uint64_t>(query.getColumn(0).getInt64());
}

std::uint64_t free_deferred(SQLite::Database& db, std::string_view course_id) {
  const std::uint64_t bytes = freeable_bytes(db, course_id);
  SQLite::Statement drop(db, "DELETE " + std::string(kFreeableChunks));
  drop.bind(1, std::string(course_id));
  drop.exec();
  return bytes;
}

// The hashes of the chunks held that `course_id`'s version `version` uses.
std::unordered_set<std::string> held_chunks(SQLite::Database& db, std::string_view course_id,
                                            std::int64_t version) {
  SQLite::Statement query(db, R"sql(
    SELECT vc.hash FROM version_chunks vc
    WHERE vc.course_id = ? AND vc.version = ?
      AND EXISTS (SELECT 1 FROM chunks c WHERE c.hash = vc.hash)
  )sql");
  query.bind(1, std::string(course_id));
  query.bind(2, version);
  std::unordered_set<std::string> held;
  while (query.executeStep())
    held.insert(query.getColumn(0).getString());
  return held;
}

// Bytes of the distinct chunks of `paths`' files, all of them and those in `held`.
struct FileBytes {
  std::uint64_t total = 0;
  std::uint64_t held = 0;
};
FileBytes file_bytes(const protocol::Manifest& manifest, const std::vector<std::string>& paths,
                     const std::unordered_set<std::string>& held) {
  FileBytes out;
  std::unordered_set<std::string_view> seen;
  for (const std::string& path : paths) {
    const protocol::ManifestFile* file = manifest.find_file(path);
    if (file == nullptr)
      continue;
    out.total += file->size;
    for (const protocol::ChunkRef& chunk : file->chunks)
      if (held.count(chunk.sha256) && seen.insert(chunk.sha256).second)
        out.held += chunk.size;
  }
  return out;
}

}  // namespace

Result<bool> Library::add_course_version(const protocol::CourseVersionChange& change,
                                         const crypto::Ed25519PublicKey& signing_key,
                                         std::string* why) {
  const auto refuse = [&](std::string reason) -> Result<bool> {
    if (why)
      *why = std::move(reason);
    return errc::content_invalid;
  };
  // The parser never sees unsigned bytes: only text the content-signing key vouches for.
  if (change.manifest.size() > protocol::kMaxManifestSize)
    return refuse("the manifest is larger than " + std::to_string(protocol::kMaxManifestSize) +
                  " bytes");
  auto signature = crypto::from_hex(change.signature);
  if (!signature || signature.value().size() != crypto::kEd25519SignatureSize ||
      !signing_key.verify(crypto::as_bytes(change.manifest), signature.value()))
    return refuse("its signature does not verify against the server's signing key");
  std::string rule;
  auto parsed = protocol::parse_manifest(change.manifest, &rule);
  if (!parsed)
    return refuse("it is signed, but this agent cannot accept it: " + rule +
                  " (the server published a course its devices refuse; tell IT)");
  const protocol::Manifest& manifest = parsed.value();
  // A valid signature over another course's manifest must not land under this change's name.
  if (manifest.course_id != change.course_id || manifest.version != change.version)
    return refuse("it names another course or version than the change that carried it");

  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    SQLite::Statement newest(db, "SELECT max(version) FROM course_versions WHERE course_id = ?");
    newest.bind(1, manifest.course_id);
    newest.executeStep();
    if (!newest.getColumn(0).isNull() && newest.getColumn(0).getInt64() >= manifest.version)
      return false;
    newest.reset();

    // Every version still held is older than this one: finishing an older download would only
    // have it replaced at once, so only the newest is downloaded.
    SQLite::Statement drop(db, "DELETE FROM course_versions WHERE course_id = ? AND complete = 0");
    drop.bind(1, manifest.course_id);
    const bool dropped = drop.exec() > 0;

    SQLite::Statement insert(db, R"sql(
      INSERT INTO course_versions (course_id, version, manifest, signature, complete, received_at,
                                   title, description, lessons, total_size, expires_at)
      VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)
    )sql");
    insert.bind(1, manifest.course_id);
    insert.bind(2, manifest.version);
    insert.bindNoCopy(3, change.manifest);
    insert.bind(4, change.signature);
    insert.bind(5, unix_now());
    insert.bind(6, manifest.title);
    insert.bind(7, manifest.description);
    insert.bind(8, static_cast<std::int64_t>(manifest.lessons.size()));
    insert.bind(9, static_cast<std::int64_t>(manifest.total_size()));
    if (const auto expires = protocol::parse_timestamp(manifest.expires_at))
      insert.bind(10, *expires);
    else
      insert.bind(10);
    insert.exec();

    SQLite::Statement need(db, R"sql(
      INSERT INTO version_chunks (course_id, version, hash, size, ordinal, deferred)
      VALUES (?, ?, ?, ?, ?, ?)
    )sql");
    const auto deferred = deferred_chunks(
        manifest,
        on_demand_files(manifest, read_threshold(db), pinned_lessons(db, manifest.course_id)));
    std::unordered_set<std::string> seen;
    std::int64_t ordinal = 0;
    for (const protocol::ManifestFile& file : manifest.files) {
      for (const protocol::ChunkRef& chunk : file.chunks) {
        if (!seen.insert(chunk.sha256).second)
          continue;
        need.reset();
        need.bind(1, manifest.course_id);
        need.bind(2, manifest.version);
        need.bind(3, chunk.sha256);
        need.bind(4, static_cast<std::int64_t>(chunk.size));
        need.bind(5, ordinal++);
        need.bind(6, deferred.count(chunk.sha256) ? 1 : 0);
        need.exec();
      }
    }
    if (dropped)
      collect_garbage(db);
    tx.commit();
    return true;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<protocol::ChunkRef>> Library::missing_chunks() {
  try {
    SQLite::Statement query(store_.db(), R"sql(
      SELECT vc.hash, vc.size
      FROM version_chunks vc JOIN course_versions cv USING (course_id, version)
      WHERE vc.deferred = 0 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = vc.hash)
        AND )sql" + std::string(kNewestHeld) +
                                             R"sql(
      ORDER BY vc.course_id, vc.version, vc.ordinal
    )sql");
    return detail::distinct_chunks(query);
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<Library::MissingVersion>> Library::missing_by_version() {
  try {
    SQLite::Statement versions(store_.db(), R"sql(
      SELECT course_id, version FROM course_versions cv
      WHERE )sql" + std::string(kNewestHeld) + R"sql(
      ORDER BY course_id, version
    )sql");
    SQLite::Statement query(store_.db(), R"sql(
      SELECT vc.hash, vc.size FROM version_chunks vc
      WHERE vc.course_id = ? AND vc.version = ? AND vc.deferred = 0
        AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = vc.hash)
      ORDER BY vc.ordinal
    )sql");
    std::vector<MissingVersion> out;
    while (versions.executeStep()) {
      MissingVersion v{versions.getColumn(0).getString(), versions.getColumn(1).getInt64(), {}};
      query.reset();
      query.bind(1, v.course_id);
      query.bind(2, v.version);
      v.chunks = detail::distinct_chunks(query);
      if (!v.chunks.empty())
        out.push_back(std::move(v));
    }
    return out;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

std::optional<VerifiedChunk> VerifiedChunk::verify(std::string sha256, std::string bytes) {
  if (hex_sha256(bytes) != sha256)
    return std::nullopt;
  return VerifiedChunk(std::move(sha256), std::move(bytes));
}

namespace {

const std::string& hash_of(const ChunkData& chunk) {
  return chunk.sha256;
}
const std::string& hash_of(const VerifiedChunk& chunk) {
  return chunk.sha256();
}
const std::string& bytes_of(const ChunkData& chunk) {
  return chunk.bytes;
}
const std::string& bytes_of(const VerifiedChunk& chunk) {
  return chunk.bytes();
}

// Stores a batch whose bytes match their hashes in one transaction (chunks already held are
// skipped), once every chunk is known to be one some held version uses.
template <class Chunk>
Result<void> store_chunks(SQLite::Database& db, std::span<const Chunk> chunks) {
  try {
    SQLite::Transaction tx(db);
    SQLite::Statement used(db, "SELECT 1 FROM version_chunks WHERE hash = ? LIMIT 1");
    for (const Chunk& chunk : chunks) {
      used.reset();
      used.bind(1, hash_of(chunk));
      // A chunk nothing uses would never be collected until some version happened to use it.
      if (!used.executeStep())
        return errc::content_invalid;
    }
    SQLite::Statement insert(db, R"sql(
      INSERT INTO chunks (hash, size, data) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING
    )sql");
    for (const Chunk& chunk : chunks) {
      const std::string& bytes = bytes_of(chunk);
      insert.reset();
      insert.bind(1, hash_of(chunk));
      insert.bind(2, static_cast<std::int64_t>(bytes.size()));
      insert.bindNoCopy(3, bytes.data(), static_cast<int>(bytes.size()));
      insert.exec();
    }
    tx.commit();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

}  // namespace

Result<void> Library::put_chunks(std::span<const ChunkData> chunks) {
  // Hash the whole batch before the first write: one bad chunk keeps the batch out.
  for (const ChunkData& chunk : chunks) {
    if (hex_sha256(chunk.bytes) != chunk.sha256)
      return errc::content_invalid;
  }
  return store_chunks(store_.db(), chunks);
}

Result<void> Library::put_chunks(std::span<const VerifiedChunk> chunks) {
  return store_chunks(store_.db(), chunks);
}

Result<std::vector<std::string>> Library::complete_versions() {
  try {
    SQLite::Database& db = store_.db();
    struct Candidate {
      std::string course_id;
      std::int64_t version;
    };
    std::vector<Candidate> candidates;
    {
      SQLite::Statement query(db, R"sql(
        SELECT course_id, version FROM course_versions cv
        WHERE complete = 0
          AND NOT EXISTS (SELECT 1 FROM version_chunks vc
                          WHERE vc.course_id = cv.course_id AND vc.version = cv.version
                            AND vc.deferred = 0
                            AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = vc.hash))
        ORDER BY course_id, version
      )sql");
      while (query.executeStep())
        candidates.push_back({query.getColumn(0).getString(), query.getColumn(1).getInt64()});
    }

    // Every chunk was checked against its SHA-256 before it was stored (put_chunks), and the
    // signed manifest lists each file's chunks in order, so a version whose chunks are all held
    // is the signed content: reading it all back to hash each file again would cost a second
    // pass over every byte (a gigabyte for a large course) and prove nothing more. A file's
    // whole hash is still checked each time it is read (open_file).
    std::vector<std::string> completed;
    for (const Candidate& candidate : candidates) {
      SQLite::Transaction tx(db);
      SQLite::Statement mark(
          db, "UPDATE course_versions SET complete = 1 WHERE course_id = ? AND version = ?");
      mark.bind(1, candidate.course_id);
      mark.bind(2, candidate.version);
      mark.exec();
      SQLite::Statement drop(db, "DELETE FROM course_versions WHERE course_id = ? AND version < ?");
      drop.bind(1, candidate.course_id);
      drop.bind(2, candidate.version);
      drop.exec();
      collect_garbage(db);
      tx.commit();
      completed.push_back(version_name(candidate.course_id, candidate.version));
    }
    return completed;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<CourseInfo>> Library::courses() {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Statement ids(db, "SELECT DISTINCT course_id FROM course_versions ORDER BY course_id");
    SQLite::Statement details(db, R"sql(
      SELECT title, description, lessons, total_size FROM course_versions
      WHERE course_id = ? AND version = ?
    )sql");
    SQLite::Statement pending(db, R"sql(
      SELECT coalesce(sum(size), 0) FROM version_chunks vc
      WHERE course_id = ? AND version = ? AND deferred = 0
        AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = vc.hash)
    )sql");
    SQLite::Statement on_demand(db, R"sql(
      SELECT coalesce(sum(size), 0) FROM version_chunks vc
      WHERE course_id = ? AND version = ? AND deferred = 1
        AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = vc.hash)
    )sql");
    std::vector<CourseInfo> courses;
    while (ids.executeStep()) {
      CourseInfo info;
      info.id = ids.getColumn(0).getString();
      const auto complete = newest_version(db, info.id, true);
      const auto incomplete = newest_version(db, info.id, false);
      info.ready = complete.has_value();
      info.version = complete.value_or(0);
      details.reset();
      details.bind(1, info.id);
      details.bind(2, complete ? *complete : incomplete.value_or(0));
      if (details.executeStep()) {
        info.title = details.getColumn(0).getString();
        info.description = details.getColumn(1).getString();
        info.lessons = static_cast<std::size_t>(details.getColumn(2).getInt64());
        info.total_size = static_cast<std::uint64_t>(details.getColumn(3).getInt64());
      }
      on_demand.reset();
      on_demand.bind(1, info.id);
      on_demand.bind(2, std::max(complete.value_or(0), incomplete.value_or(0)));
      on_demand.executeStep();
      info.on_demand_bytes = static_cast<std::uint64_t>(on_demand.getColumn(0).getInt64());
      if (incomplete) {
        pending.reset();
        pending.bind(1, info.id);
        pending.bind(2, *incomplete);
        pending.executeStep();
        info.pending_bytes = static_cast<std::uint64_t>(pending.getColumn(0).getInt64());
      }
      courses.push_back(std::move(info));
    }
    return courses;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<LessonInfo>> Library::lessons(std::string_view course_id) {
  try {
    SQLite::Database& db = store_.db();
    KABAN_TRY(manifest, newest_complete_manifest(db, course_id));
    const auto held = held_chunks(db, manifest.course_id, manifest.version);
    const auto pinned = pinned_lessons(db, manifest.course_id);
    std::vector<LessonInfo> lessons;
    lessons.reserve(manifest.lessons.size());
    for (const protocol::Lesson& lesson : manifest.lessons) {
      LessonInfo info{manifest.course_id,      lesson.id,   lesson.title, lesson.kind,
                      lesson.duration_minutes, lesson.files};
      const FileBytes bytes = file_bytes(manifest, lesson.files, held);
      info.size = bytes.total;
      info.pinned = pinned.count(lesson.id) > 0;
      // Chunks shared between files count once in `held`; a file is missing what it lacks.
      for (const std::string& path : lesson.files)
        if (const protocol::ManifestFile* file = manifest.find_file(path))
          for (const protocol::ChunkRef& chunk : file->chunks)
            if (!held.count(chunk.sha256))
              info.missing_bytes += chunk.size;
      lessons.push_back(std::move(info));
    }
    return lessons;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<void> Library::open_file(std::string_view course_id, std::string_view lesson_id,
                                std::string_view path, const Sink& sink) {
  try {
    KABAN_TRY(manifest, newest_complete_manifest(store_.db(), course_id));
    const protocol::Lesson* lesson = manifest.find_lesson(lesson_id);
    if (lesson == nullptr || lesson->files.empty())
      return errc::not_found;
    if (path.empty())
      path = lesson->files.front();
    else if (std::find(lesson->files.begin(), lesson->files.end(), path) == lesson->files.end())
      return errc::not_found;
    const protocol::ManifestFile* file = manifest.find_file(path);
    if (file == nullptr)
      return errc::not_found;
    // Before the first byte reaches the sink: a file fetched on demand may not be here yet.
    SQLite::Statement held(store_.db(), "SELECT 1 FROM chunks WHERE hash = ?");
    for (const protocol::ChunkRef& chunk : file->chunks) {
      held.reset();
      held.bind(1, chunk.sha256);
      if (!held.executeStep())
        return errc::not_downloaded;
    }
    return stream_file(store_.db(), *file, sink);
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<bool> Library::remove_course(std::string_view course_id) {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    // version_chunks rows go with their versions (ON DELETE CASCADE); the chunks they named are
    // garbage unless another course's version names them too.
    SQLite::Statement drop(db, "DELETE FROM course_versions WHERE course_id = ?");
    drop.bind(1, std::string(course_id));
    const bool removed = drop.exec() > 0;
    SQLite::Statement unpin(db, "DELETE FROM pinned_lessons WHERE course_id = ?");
    unpin.bind(1, std::string(course_id));
    unpin.exec();
    if (removed)
      collect_garbage(db);
    tx.commit();
    if (removed) {
      KABAN_TRYV(store_.release_free_pages());
    }
    return removed;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<std::string>> Library::remove_expired(std::int64_t now) {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    // The newest version held of each course decides: an expiry set and then cleared by IT
    // arrives as a newer version without one.
    SQLite::Statement expired(db, R"sql(
      SELECT v.course_id FROM course_versions v
      WHERE v.version = (SELECT max(version) FROM course_versions WHERE course_id = v.course_id)
        AND v.expires_at IS NOT NULL AND v.expires_at <= ?
      ORDER BY v.course_id
    )sql");
    expired.bind(1, now);
    std::vector<std::string> removed;
    while (expired.executeStep())
      removed.push_back(expired.getColumn(0).getString());
    if (removed.empty())
      return removed;
    SQLite::Statement drop(db, "DELETE FROM course_versions WHERE course_id = ?");
    SQLite::Statement unpin(db, "DELETE FROM pinned_lessons WHERE course_id = ?");
    for (const std::string& id : removed) {
      drop.reset();
      drop.bind(1, id);
      drop.exec();
      unpin.reset();
      unpin.bind(1, id);
      unpin.exec();
    }
    collect_garbage(db);
    tx.commit();
    KABAN_TRYV(store_.release_free_pages());
    return removed;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::uint64_t> Library::stored_bytes() {
  try {
    return static_cast<std::uint64_t>(
        store_.db().execAndGet("SELECT coalesce(sum(size), 0) FROM chunks").getInt64());
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<void> Library::set_on_demand_threshold(std::uint64_t bytes) {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    if (read_threshold(db) == bytes)
      return ok();
    SQLite::Statement write(db, R"sql(
      INSERT INTO meta (key, value) VALUES (?, ?)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value
    )sql");
    write.bind(1, std::string(kOnDemandKey));
    write.bind(2, static_cast<std::int64_t>(bytes));
    write.exec();
    mark_deferred(db, "");
    tx.commit();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::uint64_t> Library::on_demand_threshold() {
  try {
    return read_threshold(store_.db());
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<bool> Library::pin_lesson(std::string_view course_id, std::string_view lesson_id) {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    // Any version held will do: a lesson of the version still downloading can be pinned too.
    bool known = false;
    SQLite::Statement versions(db, "SELECT manifest FROM course_versions WHERE course_id = ?");
    versions.bind(1, std::string(course_id));
    while (!known && versions.executeStep()) {
      auto manifest = protocol::parse_manifest(versions.getColumn(0).getString());
      known = manifest && manifest.value().find_lesson(lesson_id) != nullptr;
    }
    if (!known)
      return errc::not_found;
    SQLite::Statement pin(db, R"sql(
      INSERT INTO pinned_lessons (course_id, lesson_id, pinned_at) VALUES (?, ?, ?)
      ON CONFLICT DO NOTHING
    )sql");
    pin.bind(1, std::string(course_id));
    pin.bind(2, std::string(lesson_id));
    pin.bind(3, unix_now());
    if (pin.exec() == 0)
      return false;
    mark_deferred(db, course_id);
    tx.commit();
    return true;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::optional<std::uint64_t>> Library::unpin_lesson(std::string_view course_id,
                                                           std::string_view lesson_id) {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    SQLite::Statement unpin(db, "DELETE FROM pinned_lessons WHERE course_id = ? AND lesson_id = ?");
    unpin.bind(1, std::string(course_id));
    unpin.bind(2, std::string(lesson_id));
    if (unpin.exec() == 0)
      return std::optional<std::uint64_t>();
    mark_deferred(db, course_id);
    const std::uint64_t freed = free_deferred(db, course_id);
    tx.commit();
    if (freed > 0) {
      KABAN_TRYV(store_.release_free_pages());
    }
    return std::optional<std::uint64_t>(freed);
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::uint64_t> Library::storage_free() {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    const std::uint64_t freed = free_deferred(db, "");
    tx.commit();
    if (freed > 0) {
      KABAN_TRYV(store_.release_free_pages());
    }
    return freed;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<StorageReport> Library::storage() {
  try {
    SQLite::Database& db = store_.db();
    StorageReport report;
    report.on_demand_threshold = read_threshold(db);
    report.held = static_cast<std::uint64_t>(
        db.execAndGet("SELECT coalesce(sum(size), 0) FROM chunks").getInt64());
    report.freeable = freeable_bytes(db, "");
    SQLite::Statement held_bytes(db, R"sql(
      SELECT coalesce(sum(c.size), 0) FROM chunks c
      WHERE EXISTS (SELECT 1 FROM version_chunks vc WHERE vc.hash = c.hash AND vc.course_id = ?)
    )sql");
    KABAN_TRY(courses, this->courses());
    for (const CourseInfo& course : courses) {
      CourseStorage out;
      out.id = course.id;
      out.title = course.title;
      out.size = course.total_size;
      held_bytes.reset();
      held_bytes.bind(1, course.id);
      held_bytes.executeStep();
      out.held = static_cast<std::uint64_t>(held_bytes.getColumn(0).getInt64());
      out.freeable = freeable_bytes(db, course.id);
      const auto version = course.ready ? std::optional<std::int64_t>(course.version)
                                        : newest_version(db, course.id, false);
      if (version) {
        KABAN_TRY(manifest, load_manifest(db, course.id, *version));
        out.version = *version;
        const auto held = held_chunks(db, course.id, *version);
        const auto pinned = pinned_lessons(db, course.id);
        const auto on_demand = on_demand_files(manifest, report.on_demand_threshold, {});
        for (const protocol::Lesson& lesson : manifest.lessons) {
          LessonStorage l{lesson.id, lesson.title, pinned.count(lesson.id) > 0};
          const FileBytes bytes = file_bytes(manifest, lesson.files, held);
          l.size = bytes.total;
          l.held = bytes.held;
          for (const std::string& path : lesson.files)
            if (on_demand.count(path))
              l.on_demand_size += manifest.find_file(path)->size;
          out.lessons.push_back(std::move(l));
        }
      }
      report.courses.push_back(std::move(out));
    }
    return report;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

}  // namespace kaban::agent
