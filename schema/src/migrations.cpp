#include "kaban/schema/migrations.hpp"

#include <string>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>

#include "kaban/error_category.hpp"

namespace kaban::schema {
namespace {

const char* describe(errc e) noexcept {
  switch (e) {
    case errc::newer_schema:
      return "the database was written by a newer version of Kaban; update Kaban";
    case errc::migration_failed:
      return "upgrading the database schema failed; the database was left as it was";
    case errc::storage_failed:
      return "the database could not be read or written (disk full, permissions or I/O error)";
  }
  return "unknown kaban.schema error";
}

}  // namespace

const std::error_category& error_category() noexcept {
  static const ErrcCategory<errc> category("kaban.schema", describe);
  return category;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
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

}  // namespace kaban::schema
