// Schema migrations keyed by PRAGMA user_version.
#pragma once

#include <span>
#include <string_view>

#include "kaban/result.hpp"

namespace SQLite {
class Database;
}

namespace kaban::agent {

/// One step of a schema: the SQL that takes the database from version - 1 to `version`.
struct Migration {
  int version;
  std::string_view sql;
};

/// Applies, in order, every migration whose version is above the database's user_version, each
/// in its own transaction together with the user_version bump, so a crash or error leaves the
/// database at the last complete version. `migrations` must be sorted with versions 1, 2, 3...
/// Fails with errc::newer_schema if the database is ahead of the list (nothing changes), and with
/// errc::migration_failed if a step fails (that step is rolled back).
Result<void> apply_migrations(SQLite::Database& db, std::span<const Migration> migrations);

/// The agent store's schema, oldest first.
std::span<const Migration> store_migrations();

}  // namespace kaban::agent
