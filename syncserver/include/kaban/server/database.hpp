// The sync server's SQLite database: how it is opened and the schema it holds (see
// docs/server-data.md for the tables).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

#include "kaban/result.hpp"
#include "kaban/schema/migrations.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

/// The database file inside the data directory (with its -wal and -shm companions).
inline constexpr const char* kDatabaseFile = "server.db";
/// How long a connection waits for another connection's write lock before failing.
inline constexpr std::chrono::milliseconds kBusyTimeout{5000};

/// Times in the database are Unix seconds.
using UnixTime = std::chrono::sys_seconds;
/// `t` as the INTEGER stored in the database.
inline std::int64_t to_unix(UnixTime t) noexcept {
  return t.time_since_epoch().count();
}

/// The server schema, oldest step first. Append only: a released step never changes.
std::span<const schema::Migration> server_migrations();

/// Opens DIR/server.db, which must exist, in WAL mode with synchronous=NORMAL, foreign keys on
/// and a busy timeout of kBusyTimeout, and brings its schema up to date. One connection per
/// thread: the server opens one per io thread, admin commands their own (WAL lets them run
/// beside a serving server). Fails with errc::no_data_dir if there is no database,
/// errc::newer_schema if a newer kaban-server wrote it and errc::storage_failed otherwise.
Result<std::unique_ptr<SQLite::Database>> open_database(const std::filesystem::path& dir);

/// As open_database(), but creates DIR/server.db (mode 0600) if it is missing. For init.
Result<std::unique_ptr<SQLite::Database>> create_database(const std::filesystem::path& dir);

}  // namespace kaban::server
