#include "kaban/agent/migrations.hpp"

#include <string>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>

#include "kaban/agent/error.hpp"

namespace kaban::agent {
namespace {

// Append only: a released migration never changes, a new one gets the next version.
constexpr Migration kStoreMigrations[] = {
    {1, R"sql(
      -- Small facts about this device and its enrollment (ids, pinned keys, cursors).
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
      ) WITHOUT ROWID;
    )sql"},
};

}  // namespace

std::span<const Migration> store_migrations() {
  return kStoreMigrations;
}

Result<void> apply_migrations(SQLite::Database& db, std::span<const Migration> migrations) {
  try {
    const int current = db.execAndGet("PRAGMA user_version").getInt();
    const int latest = migrations.empty() ? 0 : migrations.back().version;
    if (current > latest)
      return errc::newer_schema;
    for (const Migration& m : migrations) {
      if (m.version <= current)
        continue;
      try {
        SQLite::Transaction tx(db);
        db.exec(std::string(m.sql));
        db.exec("PRAGMA user_version = " + std::to_string(m.version));
        tx.commit();
      } catch (const SQLite::Exception&) {
        return errc::migration_failed;
      }
    }
    return ok();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::agent
