#include "kaban/server/mirrors.hpp"

#include <algorithm>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include "kaban/protocol/manifest.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace {

constexpr const char* kMirrorColumns =
    "id, name, url, client_fingerprint, created_at, removed_at FROM mirrors";

Mirror read_mirror(SQLite::Statement& row) {
  Mirror m;
  m.id = row.getColumn(0).getInt64();
  m.name = row.getColumn(1).getString();
  m.url = row.getColumn(2).getString();
  m.client_fingerprint = row.getColumn(3).getString();
  m.created_at = UnixTime{std::chrono::seconds{row.getColumn(4).getInt64()}};
  if (!row.getColumn(5).isNull())
    m.removed_at = UnixTime{std::chrono::seconds{row.getColumn(5).getInt64()}};
  return m;
}

}  // namespace

bool is_valid_mirror_name(std::string_view name) {
  const auto allowed = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  return !name.empty() && name.size() <= kMaxMirrorName && allowed(name.front()) &&
         std::all_of(name.begin(), name.end(), [&](char c) { return allowed(c) || c == '-'; });
}

Result<std::int64_t> Mirrors::add(std::string_view name, std::string_view url,
                                  std::string_view client_fingerprint, UnixTime now) {
  if (!is_valid_mirror_name(name))
    return errc::invalid_mirror;
  try {
    SQLite::Statement taken(db_,
                            "SELECT 1 FROM mirrors WHERE (name = ? AND removed_at IS NULL) OR "
                            "client_fingerprint = ?");
    taken.bind(1, std::string(name));
    taken.bind(2, std::string(client_fingerprint));
    if (taken.executeStep())
      return errc::mirror_exists;
    SQLite::Statement insert(db_,
                             "INSERT INTO mirrors(name, url, client_fingerprint, created_at) "
                             "VALUES (?, ?, ?, ?)");
    insert.bind(1, std::string(name));
    insert.bind(2, std::string(url));
    insert.bind(3, std::string(client_fingerprint));
    insert.bind(4, to_unix(now));
    insert.exec();
    return db_.getLastInsertRowid();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<Mirror>> Mirrors::list() {
  try {
    SQLite::Statement query(db_, std::string("SELECT ") + kMirrorColumns +
                                     " ORDER BY removed_at IS NOT NULL, created_at, id");
    std::vector<Mirror> mirrors;
    while (query.executeStep())
      mirrors.push_back(read_mirror(query));
    return mirrors;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::optional<Mirror>> Mirrors::remove(std::string_view name, UnixTime now) {
  try {
    SQLite::Statement query(
        db_, std::string("SELECT ") + kMirrorColumns + " WHERE name = ? AND removed_at IS NULL");
    query.bind(1, std::string(name));
    if (!query.executeStep())
      return std::optional<Mirror>{};
    Mirror mirror = read_mirror(query);
    SQLite::Statement update(db_, "UPDATE mirrors SET removed_at = ? WHERE id = ?");
    update.bind(1, to_unix(now));
    update.bind(2, mirror.id);
    update.exec();
    return std::optional<Mirror>(std::move(mirror));
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::optional<Mirror>> Mirrors::find_by_certificate(std::string_view fingerprint) {
  try {
    SQLite::Statement query(
        db_, std::string("SELECT ") + kMirrorColumns + " WHERE client_fingerprint = ?");
    query.bind(1, std::string(fingerprint));
    if (!query.executeStep())
      return std::optional<Mirror>{};
    return std::optional<Mirror>(read_mirror(query));
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<std::string>> Mirrors::urls(std::size_t limit) {
  try {
    SQLite::Statement query(
        db_, "SELECT url FROM mirrors WHERE removed_at IS NULL ORDER BY created_at, id LIMIT ?");
    query.bind(1, static_cast<std::int64_t>(limit));
    std::vector<std::string> urls;
    while (query.executeStep())
      urls.push_back(query.getColumn(0).getString());
    return urls;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::server
