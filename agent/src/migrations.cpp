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
};

}  // namespace

std::span<const schema::Migration> store_migrations() {
  return kStoreMigrations;
}

}  // namespace kaban::agent
