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

using detail::FileDescriptor;
using detail::store_chunk;
using detail::sync_directory;

// Which courses a login may see: those assigned to "all" while the login exists, and those
// assigned to a group it is a current member of. The one place this is decided: every query that
// filters by visibility uses this text, over courses `c`, with a :login parameter.
constexpr const char* kVisibleToLogin =
    "EXISTS (SELECT 1 FROM course_assignments ca WHERE ca.course_id = c.id AND ("
    "(ca.audience = 'all' AND EXISTS (SELECT 1 FROM users u WHERE u.login = :login)) OR "
    "EXISTS (SELECT 1 FROM channel_members m WHERE m.channel_id = ca.audience AND "
    "m.login = :login AND m.role = 'member' AND m.removed = 0)))";

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

// Reads one file in kChunkSize pieces, storing each missing chunk; the whole file is never in
// memory at once.
Result<protocol::ManifestFile> chunk_file(const SourceFile& source, const Catalog& catalog,
                                          std::vector<std::uint8_t>& buffer,
                                          std::set<fs::path>& touched_dirs, std::string& why) {
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
  while (true) {
    auto n = read_up_to(fd.get(), buffer);
    if (!n) {
      why = "reading \"" + source.path + "\" failed: " + n.error().message();
      return errc::storage_failed;
    }
    if (n.value() == 0)
      break;
    const crypto::ByteView chunk(buffer.data(), n.value());
    whole.update(chunk);
    const std::string hash = crypto::to_hex(crypto::sha256(chunk));
    const fs::path path = catalog.chunk_path(hash);
    if (auto stored = store_chunk(path, chunk); !stored) {
      why = "storing a chunk of \"" + source.path + "\" in " + path.parent_path().string() +
            " failed: " + stored.error().message();
      return errc::storage_failed;
    }
    touched_dirs.insert(path.parent_path());
    file.chunks.push_back({hash, n.value()});
    file.size += n.value();
    if (n.value() < buffer.size())
      break;
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

Catalog::Catalog(SQLite::Database& db, fs::path data_dir)
    : db_(db), data_dir_(std::move(data_dir)) {}

fs::path Catalog::chunk_path(std::string_view hash) const {
  return detail::chunk_path(data_dir_, hash);
}

Result<PublishedVersion> Catalog::publish(const CourseSource& course,
                                          const crypto::Ed25519PrivateKey& signing_key,
                                          UnixTime now, std::string& why) {
  // Chunks are written before the transaction. If it then fails, the chunk files stay but no
  // row names them: they are harmless (a later publish of the same bytes reuses them).
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
  std::vector<std::uint8_t> buffer(kChunkSize);
  std::set<fs::path> touched_dirs;
  std::map<std::string, std::uint64_t> chunk_sizes;
  for (const auto& source : course.files) {
    KABAN_TRY(file, chunk_file(source, *this, buffer, touched_dirs, why));
    for (const auto& chunk : file.chunks)
      chunk_sizes.emplace(chunk.sha256, chunk.size);
    manifest.files.push_back(std::move(file));
  }
  for (const auto& dir : touched_dirs) {
    if (auto synced = sync_directory(dir); !synced) {
      why = "syncing " + dir.string() + " failed: " + synced.error().message();
      return errc::storage_failed;
    }
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
      SQLite::Statement last_version(
          db_, "SELECT coalesce(max(version), 0) FROM course_versions WHERE course_id = ?");
      last_version.bind(1, course.id);
      last_version.executeStep();
      manifest.version = last_version.getColumn(0).getInt64() + 1;
      SQLite::Statement last_seq(db_, "SELECT coalesce(max(seq), 0) FROM course_versions");
      last_seq.executeStep();
      const std::int64_t seq = last_seq.getColumn(0).getInt64() + 1;

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

      SQLite::Statement upsert_course(db_,
                                      "INSERT INTO courses(id, title, created_at) VALUES (?, ?, ?) "
                                      "ON CONFLICT(id) DO UPDATE SET title = excluded.title");
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

      SQLite::Statement insert_version(
          db_,
          "INSERT INTO course_versions(course_id, version, manifest, signature, published_at, seq, "
          "file_count, total_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
      insert_version.bind(1, course.id);
      insert_version.bind(2, manifest.version);
      insert_version.bind(3, manifest_json);
      insert_version.bind(4, crypto::to_hex(signature));
      insert_version.bind(5, to_unix(now));
      insert_version.bind(6, seq);
      insert_version.bind(7, static_cast<std::int64_t>(manifest.files.size()));
      insert_version.bind(8, static_cast<std::int64_t>(result.total_bytes));
      insert_version.exec();

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
                            "v.total_bytes FROM courses c JOIN course_versions v "
                            "ON v.course_id = c.id AND v.version = (SELECT max(version) FROM "
                            "course_versions WHERE course_id = c.id) ORDER BY c.id");
    std::vector<CourseSummary> courses;
    while (query.executeStep()) {
      CourseSummary c;
      c.id = query.getColumn(0).getString();
      c.title = query.getColumn(1).getString();
      c.latest_version = query.getColumn(2).getInt64();
      c.published_at = UnixTime{std::chrono::seconds{query.getColumn(3).getInt64()}};
      c.file_count = query.getColumn(4).getInt64();
      c.total_bytes = static_cast<std::uint64_t>(query.getColumn(5).getInt64());
      courses.push_back(std::move(c));
    }
    return courses;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<CourseVersionRecord>> Catalog::changes_since(std::string_view login,
                                                                std::int64_t after_seq, int limit) {
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

Result<bool> Catalog::chunk_visible(std::string_view login, std::string_view hash) {
  if (!protocol::is_sha256_hex(hash))
    return false;
  try {
    SQLite::Statement query(db_, std::string("SELECT EXISTS (SELECT 1 FROM version_chunks vc "
                                             "JOIN courses c ON c.id = vc.course_id "
                                             "WHERE vc.hash = :hash AND ") +
                                     kVisibleToLogin + ")");
    query.bind(":login", std::string(login));
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

Result<std::vector<std::string>> Catalog::visible_courses(std::string_view login) {
  try {
    SQLite::Statement query(
        db_, std::string("SELECT c.id FROM courses c WHERE ") + kVisibleToLogin + " ORDER BY c.id");
    query.bind(":login", std::string(login));
    std::vector<std::string> courses;
    while (query.executeStep())
      courses.push_back(query.getColumn(0).getString());
    return courses;
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
