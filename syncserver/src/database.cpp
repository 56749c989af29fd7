#include "kaban/server/database.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>

#include "kaban/server/error.hpp"

namespace kaban::server {
namespace fs = std::filesystem;
namespace {

// Append only: a released migration never changes, a new one gets the next version.
constexpr schema::Migration kServerMigrations[] = {
    {1, R"sql(
      -- Small facts about this server (its epoch).
      CREATE TABLE server_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE users (
        login      TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- Only the SHA-256 of the normalised code is kept: the database never holds a code that
      -- could enroll a device.
      CREATE TABLE enroll_codes (
        code_hash  BLOB PRIMARY KEY,
        login      TEXT NOT NULL REFERENCES users(login),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER,
        device_id  TEXT
      ) WITHOUT ROWID;
      CREATE INDEX enroll_codes_login ON enroll_codes(login);

      CREATE TABLE devices (
        id              TEXT PRIMARY KEY,  -- hex SHA-256 of the certificate DER
        login           TEXT NOT NULL REFERENCES users(login),
        serial          TEXT NOT NULL,
        certificate_pem TEXT NOT NULL,
        platform        TEXT NOT NULL,
        os_version      TEXT NOT NULL,
        model           TEXT NOT NULL,
        name            TEXT NOT NULL,
        agent_version   TEXT NOT NULL,
        enrolled_at     INTEGER NOT NULL,
        last_checkin_at INTEGER NOT NULL,
        revoked_at      INTEGER
      ) WITHOUT ROWID;
      CREATE INDEX devices_login ON devices(login);

      CREATE TABLE courses (
        id         TEXT PRIMARY KEY,
        title      TEXT NOT NULL,
        audience   TEXT NOT NULL DEFAULT 'all',
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- seq orders the change feed across all courses.
      CREATE TABLE course_versions (
        course_id    TEXT NOT NULL REFERENCES courses(id),
        version      INTEGER NOT NULL,
        manifest     TEXT NOT NULL,
        signature    TEXT NOT NULL,
        published_at INTEGER NOT NULL,
        seq          INTEGER UNIQUE NOT NULL,
        file_count   INTEGER NOT NULL,
        total_bytes  INTEGER NOT NULL,
        PRIMARY KEY (course_id, version)
      ) WITHOUT ROWID;

      CREATE TABLE chunks (
        hash TEXT PRIMARY KEY,  -- 64 lower-case hex digits; the file is chunks/<2 hex>/<hash>
        size INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE version_chunks (
        course_id TEXT NOT NULL,
        version   INTEGER NOT NULL,
        hash      TEXT NOT NULL REFERENCES chunks(hash),
        PRIMARY KEY (course_id, version, hash),
        FOREIGN KEY (course_id, version) REFERENCES course_versions(course_id, version)
      ) WITHOUT ROWID;
      CREATE INDEX version_chunks_hash ON version_chunks(hash);
    )sql"},
};

Result<std::unique_ptr<SQLite::Database>> open_connection(const fs::path& dir, bool create) {
  const fs::path file = dir / kDatabaseFile;
  std::error_code ec;
  if (!create && !fs::is_regular_file(file, ec))
    return errc::no_data_dir;
  if (create) {
    // SQLite would create the file with the umask's mode; make it owner-only first.
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      return std::error_code(errno, std::generic_category());
    ::close(fd);
  }
  std::unique_ptr<SQLite::Database> db;
  try {
    db = std::make_unique<SQLite::Database>(file.string(), SQLite::OPEN_READWRITE,
                                            static_cast<int>(kBusyTimeout.count()));
    // WAL lets admin commands and readers work beside the serving connections; NORMAL in WAL
    // mode may lose the last commits on power loss but never corrupts the database.
    db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  if (auto migrated = schema::apply_migrations(*db, kServerMigrations); !migrated) {
    if (migrated.error() == schema::errc::newer_schema)
      return errc::newer_schema;
    return errc::storage_failed;
  }
  return db;
}

}  // namespace

std::span<const schema::Migration> server_migrations() {
  return kServerMigrations;
}

Result<std::unique_ptr<SQLite::Database>> open_database(const fs::path& dir) {
  return open_connection(dir, false);
}

Result<std::unique_ptr<SQLite::Database>> create_database(const fs::path& dir) {
  return open_connection(dir, true);
}

}  // namespace kaban::server
