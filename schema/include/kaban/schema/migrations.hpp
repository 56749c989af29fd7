// Schema migrations keyed by PRAGMA user_version.
#pragma once

#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "kaban/result.hpp"

namespace SQLite {
class Database;
}

namespace kaban::schema {

enum class errc {
  newer_schema = 1,  ///< the database is at a version above every migration this build knows
  migration_failed,  ///< a step failed; the database is left at the last complete version
  storage_failed,    ///< SQLite failed reading the version (I/O, permissions, disk full)
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

/// One step of a schema: the SQL that takes the database from version - 1 to `version`.
struct Migration {
  int version;
  std::string_view sql;
};

/// Applies, in order, every migration whose version is above the database's user_version, each
/// in its own transaction together with the user_version bump, so a crash or error leaves the
/// database at the last complete version. `migrations` must be sorted with versions 1, 2, 3...
/// Fails with errc::newer_schema if the database is ahead of the list (nothing changes), and with
/// errc::migration_failed if a step fails (that step is rolled back). Uses the connection from
/// the calling thread only.
Result<void> apply_migrations(SQLite::Database& db, std::span<const Migration> migrations);

}  // namespace kaban::schema

template <>
struct std::is_error_code_enum<kaban::schema::errc> : std::true_type {};
