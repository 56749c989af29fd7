// The inbox sequence (counters row 'inbox'), shared by Messaging and LearningRecords. Private to
// kaban::server.
#pragma once

#include <cstdint>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

namespace kaban::server::detail {

// The next inbox sequence number. Call only inside a write transaction: SQLite lets one writer at
// a time run, so numbers are handed out in commit order and a reader that sees number N also sees
// every change numbered below N. A rolled-back transaction leaves a gap, which is harmless.
// Throws SQLite::Exception.
inline std::int64_t next_inbox_seq(SQLite::Database& db) {
  SQLite::Statement next(db,
                         "UPDATE counters SET value = value + 1 WHERE name = 'inbox' "
                         "RETURNING value");
  if (!next.executeStep())
    throw SQLite::Exception("the inbox counter is missing", -1);
  const std::int64_t seq = next.getColumn(0).getInt64();
  next.reset();
  return seq;
}

// The last inbox sequence number handed out. Throws SQLite::Exception.
inline std::int64_t latest_inbox_seq(SQLite::Database& db) {
  SQLite::Statement query(db, "SELECT value FROM counters WHERE name = 'inbox'");
  return query.executeStep() ? query.getColumn(0).getInt64() : 0;
}

}  // namespace kaban::server::detail
