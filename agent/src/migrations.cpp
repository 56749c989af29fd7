#include "kaban/agent/migrations.hpp"

namespace kaban::agent {
namespace {

// Append only: a released migration never changes, a new one gets the next version.
constexpr schema::Migration kStoreMigrations[] = {
    {1, R"sql(
      -- Small facts about this device and its enrollment (ids, pinned keys, cursors).
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
      ) WITHOUT ROWID;
    )sql"},
    {2, R"sql(
      -- The enrollment: at most one row. The private key never leaves the encrypted store.
      CREATE TABLE device_identity (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        server_host     TEXT NOT NULL,
        server_port     INTEGER NOT NULL,
        device_id       TEXT NOT NULL,
        login           TEXT NOT NULL,
        user_name       TEXT NOT NULL,
        certificate_pem TEXT NOT NULL,
        private_key_pem BLOB NOT NULL,
        ca_pem          TEXT NOT NULL,
        signing_key     TEXT NOT NULL,
        server_epoch    TEXT NOT NULL,
        enrolled_at     INTEGER NOT NULL
      );

      -- Where the change feed stands: at most one row; none means "never synced".
      CREATE TABLE sync_state (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        cursor           TEXT NOT NULL,
        last_sync_at     INTEGER NOT NULL,
        last_server_time INTEGER NOT NULL
      );

      -- Course versions whose manifest signature verified. The manifest is kept as the exact
      -- signed text; title .. total_size are copied out of it so listings need not parse it.
      -- complete = 1 once every chunk is stored and every file's hash verified.
      CREATE TABLE course_versions (
        course_id   TEXT NOT NULL,
        version     INTEGER NOT NULL,
        manifest    TEXT NOT NULL,
        signature   TEXT NOT NULL,
        complete    INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
        received_at INTEGER NOT NULL,
        title       TEXT NOT NULL,
        description TEXT NOT NULL,
        lessons     INTEGER NOT NULL,
        total_size  INTEGER NOT NULL,
        PRIMARY KEY (course_id, version)
      ) WITHOUT ROWID;

      -- Content chunks by SHA-256 (lower-case hex), each stored once however many versions use
      -- it. A rowid table: rows are large (up to 4 MiB), which WITHOUT ROWID handles badly.
      CREATE TABLE chunks (
        hash TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
      );

      -- Which chunks each version needs (each distinct hash once), in the order the manifest
      -- first uses them. A chunk no row references is garbage.
      CREATE TABLE version_chunks (
        course_id TEXT NOT NULL,
        version   INTEGER NOT NULL,
        hash      TEXT NOT NULL,
        size      INTEGER NOT NULL,
        ordinal   INTEGER NOT NULL,
        PRIMARY KEY (course_id, version, hash),
        FOREIGN KEY (course_id, version) REFERENCES course_versions (course_id, version)
          ON DELETE CASCADE
      ) WITHOUT ROWID;
      CREATE INDEX version_chunks_by_hash ON version_chunks (hash);
    )sql"},
};

}  // namespace

std::span<const schema::Migration> store_migrations() {
  return kStoreMigrations;
}

}  // namespace kaban::agent
