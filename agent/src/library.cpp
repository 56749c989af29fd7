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
      INSERT INTO version_chunks (course_id, version, hash, size, ordinal) VALUES (?, ?, ?, ?, ?)
    )sql");
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
      WHERE cv.complete = 0 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = vc.hash)
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
      SELECT course_id, version FROM course_versions WHERE complete = 0 ORDER BY course_id, version
    )sql");
    SQLite::Statement query(store_.db(), R"sql(
      SELECT vc.hash, vc.size FROM version_chunks vc
      WHERE vc.course_id = ? AND vc.version = ?
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

Result<void> Library::put_chunks(std::span<const ChunkData> chunks) {
  // Hash the whole batch before the first write: one bad chunk keeps the batch out.
  for (const ChunkData& chunk : chunks) {
    if (hex_sha256(chunk.bytes) != chunk.sha256)
      return errc::content_invalid;
  }
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    SQLite::Statement used(db, "SELECT 1 FROM version_chunks WHERE hash = ? LIMIT 1");
    for (const ChunkData& chunk : chunks) {
      used.reset();
      used.bind(1, chunk.sha256);
      // A chunk nothing uses would never be collected until some version happened to use it.
      if (!used.executeStep())
        return errc::content_invalid;
    }
    SQLite::Statement insert(db, R"sql(
      INSERT INTO chunks (hash, size, data) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING
    )sql");
    for (const ChunkData& chunk : chunks) {
      insert.reset();
      insert.bind(1, chunk.sha256);
      insert.bind(2, static_cast<std::int64_t>(chunk.bytes.size()));
      insert.bindNoCopy(3, chunk.bytes.data(), static_cast<int>(chunk.bytes.size()));
      insert.exec();
    }
    tx.commit();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
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
      WHERE course_id = ? AND version = ?
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
    KABAN_TRY(manifest, newest_complete_manifest(store_.db(), course_id));
    std::vector<LessonInfo> lessons;
    lessons.reserve(manifest.lessons.size());
    for (const protocol::Lesson& lesson : manifest.lessons) {
      LessonInfo info{
          manifest.course_id, lesson.id, lesson.title, lesson.kind, lesson.duration_minutes,
          lesson.files,       0};
      for (const std::string& path : lesson.files) {
        if (const protocol::ManifestFile* file = manifest.find_file(path))
          info.size += file->size;
      }
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
    if (removed)
      collect_garbage(db);
    tx.commit();
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
    for (const std::string& id : removed) {
      drop.reset();
      drop.bind(1, id);
      drop.exec();
    }
    collect_garbage(db);
    tx.commit();
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

}  // namespace kaban::agent
