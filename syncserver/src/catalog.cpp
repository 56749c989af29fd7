#include "kaban/server/catalog.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <map>
#include <set>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "channel_rows.hpp"
#include "chunk_store.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace fs = std::filesystem;
namespace {

using detail::ChunkBatch;
using detail::FileDescriptor;

// Whether course `c` is in use at :now: not retired, and not expired by its latest version's
// expiry. A content mirror may fetch the chunks of such a course, whoever it is assigned to.
constexpr std::string_view kCourseLive =
    "c.retired_at IS NULL AND coalesce((SELECT lv.expires_at FROM course_versions lv WHERE "
    "lv.course_id = c.id ORDER BY lv.version DESC LIMIT 1), :now + 1) > :now";
// Whether course `c` is assigned to :login: to "all" while the login exists, or to a group it is
// a current member of.
constexpr std::string_view kAssignedToLogin =
    "EXISTS (SELECT 1 FROM course_assignments ca WHERE ca.course_id = c.id AND ("
    "(ca.audience = 'all' AND EXISTS (SELECT 1 FROM users u WHERE u.login = :login)) OR "
    "EXISTS (SELECT 1 FROM channel_members m WHERE m.channel_id = ca.audience AND "
    "m.login = :login AND m.role = 'member' AND m.removed = 0)))";
// Which courses a login may see: in use and assigned to it. The one place this is decided:
// every query that filters by visibility uses this text, over courses `c`, with :login and :now
// parameters.
const std::string kVisibleToLogin =
    std::string(kCourseLive) + " AND " + std::string(kAssignedToLogin);

// The course's latest version: its number, manifest text, expiry and whether its chunks are
// held; version 0 when it has none.
struct LatestVersion {
  std::int64_t version = 0;
  std::string manifest;
  std::optional<std::int64_t> expires_at;
  bool chunks_held = false;
};
LatestVersion latest_version(SQLite::Database& db, std::string_view course_id) {
  SQLite::Statement query(db,
                          "SELECT version, manifest, expires_at, chunks_held FROM course_versions "
                          "WHERE course_id = ? ORDER BY version DESC LIMIT 1");
  query.bind(1, std::string(course_id));
  LatestVersion latest;
  if (query.executeStep()) {
    latest.version = query.getColumn(0).getInt64();
    latest.manifest = query.getColumn(1).getString();
    if (!query.getColumn(2).isNull())
      latest.expires_at = query.getColumn(2).getInt64();
    latest.chunks_held = query.getColumn(3).getInt() != 0;
  }
  return latest;
}

// Records a signed version and its place in the change feed (the next sequence). Throws
// SQLite::Exception.
void insert_version(SQLite::Database& db, const protocol::Manifest& manifest,
                    const std::string& manifest_json, const crypto::Ed25519Signature& signature,
                    UnixTime now) {
  SQLite::Statement last_seq(db, "SELECT coalesce(max(seq), 0) FROM course_versions");
  last_seq.executeStep();
  const std::int64_t seq = last_seq.getColumn(0).getInt64() + 1;
  SQLite::Statement insert(
      db,
      "INSERT INTO course_versions(course_id, version, manifest, signature, published_at, seq, "
      "file_count, total_bytes, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  insert.bind(1, manifest.course_id);
  insert.bind(2, manifest.version);
  insert.bind(3, manifest_json);
  insert.bind(4, crypto::to_hex(signature));
  insert.bind(5, to_unix(now));
  insert.bind(6, seq);
  insert.bind(7, static_cast<std::int64_t>(manifest.files.size()));
  insert.bind(8, static_cast<std::int64_t>(manifest.total_size()));
  if (manifest.expires_at.empty())
    insert.bind(9);
  else
    insert.bind(9, protocol::parse_timestamp(manifest.expires_at).value_or(0));
  insert.exec();
}

// Fills `buffer` as far as the file allows; returns the bytes read (less only at the end).
Result<std::size_t> read_up_to(int fd, crypto::MutableByteView buffer) {
  std::size_t done = 0;
  while (done < buffer.size()) {
    const ssize_t n = ::read(fd, buffer.data() + done, buffer.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return std::error_code(errno, std::generic_category());
    if (n == 0)
      break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

// Cuts one file into chunks where its content says, storing each chunk the server lacks. The
// buffer holds at most a few chunks' worth at once, never the whole file.
Result<protocol::ManifestFile> chunk_file(const SourceFile& source, const Chunker& chunker,
                                          std::vector<std::uint8_t>& buffer, ChunkBatch& batch,
                                          std::string& why) {
  // O_NOFOLLOW: read_course_folder refused symbolic links; do not follow one made since.
  FileDescriptor fd(::open(source.absolute_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    why = "file \"" + source.path + "\" can no longer be read as a regular file";
    return errc::file_missing;
  }
  protocol::ManifestFile file;
  file.path = source.path;
  file.media_type = source.media_type;
  crypto::Sha256 whole;
  // buffer[begin, filled) is read but not yet chunked. The chunker needs max_size bytes ahead of
  // a cut, or the end of the file.
  const std::size_t max_size = chunker.params().max_size;
  std::size_t begin = 0, filled = 0;
  bool at_end = false;
  while (true) {
    if (!at_end && filled - begin < max_size) {
      std::copy(buffer.begin() + static_cast<std::ptrdiff_t>(begin),
                buffer.begin() + static_cast<std::ptrdiff_t>(filled), buffer.begin());
      filled -= begin;
      begin = 0;
      auto n = read_up_to(fd.get(), crypto::MutableByteView(buffer).subspan(filled));
      if (!n) {
        why = "reading \"" + source.path + "\" failed: " + n.error().message();
        return errc::storage_failed;
      }
      filled += n.value();
      at_end = filled < buffer.size();
    }
    if (begin == filled)
      break;
    const crypto::ByteView rest(buffer.data() + begin, filled - begin);
    const crypto::ByteView chunk = rest.first(chunker.cut(rest));
    begin += chunk.size();
    whole.update(chunk);
    const std::string hash = crypto::to_hex(crypto::sha256(chunk));
    if (auto stored = batch.add(hash, chunk); !stored) {
      why = "storing a chunk of \"" + source.path + "\" failed: " + stored.error().message();
      return errc::storage_failed;
    }
    file.chunks.push_back({hash, chunk.size()});
    file.size += chunk.size();
  }
  file.sha256 = crypto::to_hex(whole.finish());
  return file;
}

// A publish refused because devices would refuse the manifest under `rule`.
std::error_code devices_would_refuse(const std::string& rule, std::string& why) {
  why = "devices would refuse this course's manifest: " + rule +
        "; nothing was published. Change the course to keep the limits in docs/protocol.md "
        "(e.g. split a lesson with too many files)";
  return errc::course_invalid;
}

}  // namespace

Catalog::Catalog(SQLite::Database& db, fs::path data_dir, const ChunkerParams& chunking)
    : db_(db), data_dir_(std::move(data_dir)), chunker_(chunking) {}

fs::path Catalog::chunk_path(std::string_view hash) const {
  return detail::chunk_path(data_dir_, hash);
}

Result<PublishedVersion> Catalog::publish(const CourseSource& course,
                                          const crypto::Ed25519PrivateKey& signing_key,
                                          UnixTime now, std::string& why) {
  // Chunks are written (one sync for all of them: ChunkBatch) before the transaction. If it
  // then fails, the chunk files stay but no row names them: they are harmless (a later publish
  // of the same bytes reuses them, and `admin gc` deletes them after an hour).
  protocol::Manifest manifest;
  manifest.course_id = course.id;
  manifest.title = course.title;
  manifest.description = course.description;
  manifest.published_at = protocol::format_timestamp(to_unix(now));
  manifest.lessons = course.lessons;
  // Devices parse the manifest with these rules, and one they would refuse is never signed.
  // The outline (files without content) meets every rule that does not depend on the bytes, so
  // a course that breaks one is refused before any chunk is written.
  {
    protocol::Manifest outline = manifest;
    outline.version = 1;
    for (const SourceFile& f : course.files)
      outline.files.push_back({f.path, f.media_type, 0, std::string(64, '0'), {}});
    if (std::string rule; !protocol::parse_manifest(protocol::manifest_to_json(outline), &rule))
      return devices_would_refuse(rule, why);
  }
  // Room for several chunks, so the file is read in large pieces and moved down rarely.
  std::vector<std::uint8_t> buffer(4 * chunker_.params().max_size);
  ChunkBatch batch(data_dir_);
  std::map<std::string, std::uint64_t> chunk_sizes;
  for (const auto& source : course.files) {
    KABAN_TRY(file, chunk_file(source, chunker_, buffer, batch, why));
    for (const auto& chunk : file.chunks)
      chunk_sizes.emplace(chunk.sha256, chunk.size);
    manifest.files.push_back(std::move(file));
  }
  if (auto committed = batch.commit(); !committed) {
    why = "storing the new chunks in " + (data_dir_ / kChunksDir).string() +
          " failed: " + committed.error().message();
    return errc::storage_failed;
  }

  PublishedVersion result;
  result.course_id = course.id;
  result.files = manifest.files.size();
  result.total_bytes = manifest.total_size();
  // in_transaction is IMMEDIATE: the version and sequence numbers read here must still be free at
  // commit. Inside the caller's transaction (`admin course publish` records the publish in the
  // audit log in the same one), it is a savepoint of it.
  auto recorded = detail::in_transaction(db_, [&]() -> Result<void> {
    try {
      // A new version keeps the expiry `admin course expire` gave the course.
      const LatestVersion previous = latest_version(db_, course.id);
      manifest.version = previous.version + 1;
      if (previous.expires_at)
        manifest.expires_at = protocol::format_timestamp(*previous.expires_at);

      const std::string manifest_json = protocol::manifest_to_json(manifest);
      if (manifest_json.size() > protocol::kMaxManifestSize) {
        why = "the manifest would be " + std::to_string(manifest_json.size()) +
              " bytes; the limit is " + std::to_string(protocol::kMaxManifestSize) +
              ". Split the course";
        return errc::course_invalid;
      }
      if (std::string rule; !protocol::parse_manifest(manifest_json, &rule))
        return devices_would_refuse(rule, why);
      const auto signature = signing_key.sign(crypto::as_bytes(manifest_json));

      SQLite::Statement retired(db_, "SELECT retired_at IS NOT NULL FROM courses WHERE id = ?");
      retired.bind(1, course.id);
      result.unretired = retired.executeStep() && retired.getColumn(0).getInt() != 0;
      SQLite::Statement upsert_course(db_,
                                      "INSERT INTO courses(id, title, created_at) VALUES (?, ?, ?) "
                                      "ON CONFLICT(id) DO UPDATE SET title = excluded.title, "
                                      "retired_at = NULL");
      upsert_course.bind(1, course.id);
      upsert_course.bind(2, course.title);
      upsert_course.bind(3, to_unix(now));
      upsert_course.exec();
      // A new course is for everyone until `admin course assign` says otherwise.
      if (manifest.version == 1) {
        SQLite::Statement assign_all(
            db_,
            "INSERT OR IGNORE INTO course_assignments(course_id, audience) "
            "VALUES (?, 'all')");
        assign_all.bind(1, course.id);
        assign_all.exec();
      }

      insert_version(db_, manifest, manifest_json, signature, now);

      SQLite::Statement insert_chunk(db_, "INSERT OR IGNORE INTO chunks(hash, size) VALUES (?, ?)");
      SQLite::Statement link_chunk(
          db_, "INSERT INTO version_chunks(course_id, version, hash) VALUES (?, ?, ?)");
      for (const auto& [hash, size] : chunk_sizes) {
        insert_chunk.bind(1, hash);
        insert_chunk.bind(2, static_cast<std::int64_t>(size));
        (insert_chunk.exec() == 1 ? result.new_chunks : result.reused_chunks) += 1;
        insert_chunk.reset();
        link_chunk.bind(1, course.id);
        link_chunk.bind(2, manifest.version);
        link_chunk.bind(3, hash);
        link_chunk.exec();
        link_chunk.reset();
      }
      return ok();
    } catch (const SQLite::Exception& e) {
      why = std::string("the database refused the new version: ") + e.what();
      return errc::storage_failed;
    }
  });
  if (!recorded && why.empty())
    why = "the database could not record the new version; nothing was published";
  KABAN_TRYV(recorded);
  result.version = manifest.version;
  return result;
}

Result<std::vector<CourseSummary>> Catalog::list_courses() {
  try {
    SQLite::Statement query(db_,
                            "SELECT c.id, c.title, v.version, v.published_at, v.file_count, "
                            "v.total_bytes, v.expires_at, c.retired_at FROM courses c "
                            "JOIN course_versions v ON v.course_id = c.id AND v.version = "
                            "(SELECT max(version) FROM course_versions WHERE course_id = c.id) "
                            "ORDER BY c.id");
    std::vector<CourseSummary> courses;
    while (query.executeStep()) {
      CourseSummary c;
      c.id = query.getColumn(0).getString();
      c.title = query.getColumn(1).getString();
      c.latest_version = query.getColumn(2).getInt64();
      c.published_at = UnixTime{std::chrono::seconds{query.getColumn(3).getInt64()}};
      c.file_count = query.getColumn(4).getInt64();
      c.total_bytes = static_cast<std::uint64_t>(query.getColumn(5).getInt64());
      if (!query.getColumn(6).isNull())
        c.expires_at = UnixTime{std::chrono::seconds{query.getColumn(6).getInt64()}};
      if (!query.getColumn(7).isNull())
        c.retired_at = UnixTime{std::chrono::seconds{query.getColumn(7).getInt64()}};
      courses.push_back(std::move(c));
    }
    return courses;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<CourseVersionRecord>> Catalog::changes_since(std::string_view login,
                                                                std::int64_t after_seq, int limit,
                                                                UnixTime now) {
  std::vector<CourseVersionRecord> changes;
  if (limit <= 0)
    return changes;
  limit = std::min(limit, protocol::kMaxChangesPage);
  try {
    SQLite::Statement query(db_, std::string("SELECT v.seq, v.course_id, v.version, v.manifest, "
                                             "v.signature FROM course_versions v JOIN courses c "
                                             "ON c.id = v.course_id WHERE v.seq > :after AND ") +
                                     kVisibleToLogin + " ORDER BY v.seq LIMIT :limit");
    query.bind(":login", std::string(login));
    query.bind(":now", to_unix(now));
    query.bind(":after", after_seq);
    query.bind(":limit", limit);
    while (query.executeStep()) {
      changes.push_back({query.getColumn(0).getInt64(), query.getColumn(1).getString(),
                         query.getColumn(2).getInt64(), query.getColumn(3).getString(),
                         query.getColumn(4).getString()});
    }
    return changes;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<bool> Catalog::chunk_visible(std::string_view login, std::string_view hash, UnixTime now) {
  if (!protocol::is_sha256_hex(hash))
    return false;
  try {
    SQLite::Statement query(db_, std::string("SELECT EXISTS (SELECT 1 FROM version_chunks vc "
                                             "JOIN courses c ON c.id = vc.course_id "
                                             "WHERE vc.hash = :hash AND ") +
                                     kVisibleToLogin + ")");
    query.bind(":login", std::string(login));
    query.bind(":now", to_unix(now));
    query.bind(":hash", std::string(hash));
    query.executeStep();
    return query.getColumn(0).getInt() != 0;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<void> Catalog::assign(std::string_view course_id, std::span<const std::string> audiences,
                             std::string* why) {
  auto say = [why](std::string sentence) {
    if (why != nullptr)
      *why = std::move(sentence);
  };
  if (audiences.empty()) {
    say("name who may see course " + detail::in_quotes(course_id) +
        ": \"all\" or one or more groups");
    return errc::invalid_channel;
  }
  const std::set<std::string> chosen(audiences.begin(), audiences.end());
  return detail::in_transaction(db_, [&]() -> Result<void> {
    SQLite::Statement course(db_, "SELECT 1 FROM courses WHERE id = ?");
    course.bind(1, std::string(course_id));
    if (!course.executeStep()) {
      say("there is no course " + detail::in_quotes(course_id) +
          "; `admin course list` shows the published ones. Nothing was changed");
      return errc::no_such_course;
    }
    for (const std::string& audience : chosen) {
      if (audience == detail::kAllAudience)
        continue;
      if (!detail::is_group(db_, audience)) {
        say("there is no group " + detail::in_quotes(audience) +
            "; an audience is \"all\" or a group made with `admin group add`. Nothing was "
            "changed");
        return errc::no_such_group;
      }
    }
    SQLite::Statement clear(db_, "DELETE FROM course_assignments WHERE course_id = ?");
    clear.bind(1, std::string(course_id));
    clear.exec();
    SQLite::Statement insert(db_,
                             "INSERT INTO course_assignments(course_id, audience) VALUES (?, ?)");
    for (const std::string& audience : chosen) {
      insert.bind(1, std::string(course_id));
      insert.bind(2, audience);
      insert.exec();
      insert.reset();
    }
    return ok();
  });
}

Result<std::vector<std::string>> Catalog::audiences(std::string_view course_id) {
  try {
    SQLite::Statement course(db_, "SELECT 1 FROM courses WHERE id = ?");
    course.bind(1, std::string(course_id));
    if (!course.executeStep())
      return errc::no_such_course;
    SQLite::Statement query(db_,
                            "SELECT audience FROM course_assignments WHERE course_id = ? "
                            "ORDER BY audience <> 'all', audience");
    query.bind(1, std::string(course_id));
    std::vector<std::string> audiences;
    while (query.executeStep())
      audiences.push_back(query.getColumn(0).getString());
    return audiences;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<std::string>> Catalog::visible_courses(std::string_view login, UnixTime now) {
  try {
    SQLite::Statement query(
        db_, std::string("SELECT c.id FROM courses c WHERE ") + kVisibleToLogin + " ORDER BY c.id");
    query.bind(":login", std::string(login));
    query.bind(":now", to_unix(now));
    std::vector<std::string> courses;
    while (query.executeStep())
      courses.push_back(query.getColumn(0).getString());
    return courses;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<bool> Catalog::retire(std::string_view course_id, UnixTime now) {
  return detail::in_transaction(db_, [&]() -> Result<bool> {
    SQLite::Statement course(db_, "SELECT retired_at IS NULL FROM courses WHERE id = ?");
    course.bind(1, std::string(course_id));
    if (!course.executeStep())
      return errc::no_such_course;
    if (course.getColumn(0).getInt() == 0)
      return false;
    SQLite::Statement retire(db_, "UPDATE courses SET retired_at = ? WHERE id = ?");
    retire.bind(1, to_unix(now));
    retire.bind(2, std::string(course_id));
    retire.exec();
    return true;
  });
}

Result<PublishedVersion> Catalog::set_expiry(std::string_view course_id,
                                             std::optional<UnixTime> expires_at,
                                             const crypto::Ed25519PrivateKey& signing_key,
                                             UnixTime now, std::string& why) {
  const std::string id(course_id);
  return detail::in_transaction(db_, [&]() -> Result<PublishedVersion> {
    SQLite::Statement course(db_, "SELECT retired_at IS NOT NULL FROM courses WHERE id = ?");
    course.bind(1, id);
    if (!course.executeStep()) {
      why = "there is no course " + detail::in_quotes(id) +
            "; `admin course list` shows the published ones";
      return errc::no_such_course;
    }
    if (course.getColumn(0).getInt() != 0) {
      why = "course " + detail::in_quotes(id) +
            " is retired; publish it again first if it should come back";
      return errc::course_retired;
    }
    const LatestVersion previous = latest_version(db_, id);
    const std::optional<std::int64_t> wanted =
        expires_at ? std::optional<std::int64_t>(to_unix(*expires_at)) : std::nullopt;
    if (previous.expires_at == wanted) {
      PublishedVersion same;
      same.course_id = id;
      same.version = previous.version;
      same.unchanged = true;
      return same;
    }
    if (!previous.chunks_held) {
      why = "the files of course " + detail::in_quotes(id) +
            " were collected by `admin gc`; publish the course again from its folder";
      return errc::no_such_version;
    }
    auto parsed = protocol::parse_manifest(previous.manifest);
    if (!parsed) {
      why = "the stored manifest of course " + detail::in_quotes(id) +
            " does not parse; publish the course again from its folder";
      return errc::storage_failed;
    }
    protocol::Manifest manifest = std::move(parsed).value();
    manifest.version = previous.version + 1;
    manifest.published_at = protocol::format_timestamp(to_unix(now));
    manifest.expires_at = expires_at ? protocol::format_timestamp(to_unix(*expires_at)) : "";
    const std::string manifest_json = protocol::manifest_to_json(manifest);
    insert_version(db_, manifest, manifest_json, signing_key.sign(crypto::as_bytes(manifest_json)),
                   now);
    SQLite::Statement link(db_,
                           "INSERT INTO version_chunks(course_id, version, hash) "
                           "SELECT course_id, ?, hash FROM version_chunks "
                           "WHERE course_id = ? AND version = ?");
    link.bind(1, manifest.version);
    link.bind(2, id);
    link.bind(3, previous.version);
    PublishedVersion result;
    result.course_id = id;
    result.version = manifest.version;
    result.files = manifest.files.size();
    result.total_bytes = manifest.total_size();
    result.reused_chunks = static_cast<std::size_t>(link.exec());
    return result;
  });
}

Result<GcReport> Catalog::collect_garbage(std::chrono::seconds keep, UnixTime now, bool dry_run) {
  const std::int64_t cutoff = to_unix(now) - keep.count();
  GcReport report;
  std::vector<std::string> released;
  try {
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    // Versions with a newer version published before the cutoff: devices have had `keep` to
    // move on from them.
    db_.exec(
        "CREATE TEMP TABLE gc_versions AS SELECT course_id, version FROM course_versions v "
        "WHERE EXISTS (SELECT 1 FROM course_versions w WHERE w.course_id = v.course_id AND "
        "w.version > v.version AND w.published_at <= " +
        std::to_string(cutoff) + ")");
    report.versions =
        static_cast<std::size_t>(db_.execAndGet("SELECT count(*) FROM gc_versions").getInt64());
    db_.exec(
        "DELETE FROM version_chunks WHERE (course_id, version) IN "
        "(SELECT course_id, version FROM gc_versions)");
    db_.exec(
        "DELETE FROM course_versions WHERE (course_id, version) IN "
        "(SELECT course_id, version FROM gc_versions)");
    db_.exec("DROP TABLE gc_versions");
    // Courses retired, or expired, before the cutoff: their chunks go; the latest manifest
    // stays for completion reports.
    SQLite::Statement ended(
        db_,
        "UPDATE course_versions SET chunks_held = 0 WHERE chunks_held = 1 AND course_id IN "
        "(SELECT c.id FROM courses c WHERE c.retired_at <= :cutoff OR (SELECT lv.expires_at "
        "FROM course_versions lv WHERE lv.course_id = c.id ORDER BY lv.version DESC LIMIT 1) "
        "<= :cutoff) RETURNING course_id");
    ended.bind(":cutoff", cutoff);
    std::set<std::string> ended_courses;
    while (ended.executeStep())
      ended_courses.insert(ended.getColumn(0).getString());
    report.courses = ended_courses.size();
    db_.exec(
        "DELETE FROM version_chunks WHERE (course_id, version) IN "
        "(SELECT course_id, version FROM course_versions WHERE chunks_held = 0)");
    // Chunks nothing names: no held version, no message attachment, no pending upload.
    SQLite::Statement unused(
        db_,
        "DELETE FROM chunks WHERE NOT EXISTS (SELECT 1 FROM version_chunks vc WHERE vc.hash = "
        "chunks.hash) AND NOT EXISTS (SELECT 1 FROM attachment_chunks ac WHERE ac.hash = "
        "chunks.hash) AND NOT EXISTS (SELECT 1 FROM uploaded_chunks uc WHERE uc.hash = "
        "chunks.hash) RETURNING hash, size");
    while (unused.executeStep()) {
      released.push_back(unused.getColumn(0).getString());
      report.bytes += static_cast<std::uint64_t>(unused.getColumn(1).getInt64());
    }
    report.chunks = released.size();
    if (!dry_run)
      transaction.commit();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  if (dry_run)
    return report;
  // The rows are gone; now the files. One touched within the grace period is kept: a publish
  // beside this gc may be about to name it (it becomes a stray file for the next gc if not).
  const std::int64_t grace_cutoff = to_unix(now) - kGcFileGraceSeconds;
  const auto old_enough = [&](const fs::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_mtime <= grace_cutoff;
  };
  for (const std::string& hash : released) {
    const fs::path p = chunk_path(hash);
    if (old_enough(p))
      ::unlink(p.c_str());
  }
  // Files no row names: chunks of a publish that failed, temporary files of a crashed write.
  std::optional<SQLite::Statement> named;
  try {
    named.emplace(db_,
                  "SELECT EXISTS (SELECT 1 FROM chunks WHERE hash = :h) OR EXISTS "
                  "(SELECT 1 FROM uploaded_chunks WHERE hash = :h) OR EXISTS "
                  "(SELECT 1 FROM attachment_chunks WHERE hash = :h)");
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  std::error_code ec;
  for (fs::recursive_directory_iterator it(data_dir_ / kChunksDir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (!it->is_regular_file(ec) || !old_enough(it->path()))
      continue;
    const std::string name = it->path().filename().string();
    if (protocol::is_sha256_hex(name)) {
      try {
        named->reset();
        named->bind(":h", name);
        named->executeStep();
        if (named->getColumn(0).getInt() != 0)
          continue;
      } catch (const SQLite::Exception&) {
        return errc::storage_failed;
      }
    } else if (!name.starts_with(".") || !name.ends_with(".tmp")) {
      continue;  // not Kaban's: leave it
    }
    const std::uintmax_t size = it->file_size(ec);
    if (::unlink(it->path().c_str()) == 0) {
      report.stray_files += 1;
      report.bytes += ec ? 0 : size;
    }
    ec.clear();
  }
  return report;
}

Result<bool> Catalog::chunk_live(std::string_view hash, UnixTime now) {
  if (!protocol::is_sha256_hex(hash))
    return false;
  // `admin gc` deletes the version_chunks rows of versions whose chunks it released, so a row
  // means the file is held.
  try {
    SQLite::Statement query(db_,
                            "SELECT EXISTS (SELECT 1 FROM version_chunks vc JOIN courses c "
                            "ON c.id = vc.course_id WHERE vc.hash = :hash AND " +
                                std::string(kCourseLive) + ")");
    query.bind(":hash", std::string(hash));
    query.bind(":now", to_unix(now));
    query.executeStep();
    return query.getColumn(0).getInt() != 0;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<CourseVersionRecord> Catalog::find_version(std::string_view course_id,
                                                  std::int64_t version) {
  try {
    SQLite::Statement course(db_, "SELECT 1 FROM courses WHERE id = ?");
    course.bind(1, std::string(course_id));
    if (!course.executeStep())
      return errc::no_such_course;
    SQLite::Statement query(db_,
                            "SELECT seq, version, manifest, signature FROM course_versions "
                            "WHERE course_id = :course AND (version = :version OR (:version = 0 "
                            "AND version = (SELECT max(version) FROM course_versions "
                            "WHERE course_id = :course)))");
    query.bind(":course", std::string(course_id));
    query.bind(":version", version);
    if (!query.executeStep())
      return errc::no_such_version;
    return CourseVersionRecord{query.getColumn(0).getInt64(), std::string(course_id),
                               query.getColumn(1).getInt64(), query.getColumn(2).getString(),
                               query.getColumn(3).getString()};
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::int64_t> Catalog::latest_seq() {
  try {
    SQLite::Statement query(db_, "SELECT coalesce(max(seq), 0) FROM course_versions");
    query.executeStep();
    return query.getColumn(0).getInt64();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::server
