#include "kaban/server/policies.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include "channel_rows.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace {

// Advances the 'policy' counter and returns its new value. Throws SQLite::Exception.
std::int64_t next_policy_version(SQLite::Database& db) {
  SQLite::Statement next(db,
                         "UPDATE counters SET value = value + 1 WHERE name = 'policy' "
                         "RETURNING value");
  if (!next.executeStep())
    throw SQLite::Exception("the policy counter is missing", -1);
  const std::int64_t version = next.getColumn(0).getInt64();
  next.reset();
  return version;
}

// A stored document back as the file IT set. This server wrote it with policy_file_to_json, so a
// document that does not parse was damaged, or written by a newer server with settings this one
// does not know.
Result<protocol::PolicyFile> read_document(const std::string& document) {
  auto file = protocol::parse_policy_file(document);
  if (!file)
    return errc::data_dir_damaged;
  return std::move(file).value();
}

}  // namespace

void advance_policy_version(SQLite::Database& db) {
  next_policy_version(db);
}

Result<std::int64_t> Policies::set(std::string_view audience, const protocol::PolicyFile& file,
                                   UnixTime now) {
  return detail::in_transaction(db_, [&]() -> Result<std::int64_t> {
    if (audience != kDefaultPolicyAudience && !detail::is_group(db_, audience))
      return errc::no_such_group;
    const std::int64_t version = next_policy_version(db_);
    SQLite::Statement upsert(db_,
                             "INSERT INTO policies(audience, document, revision, set_at) "
                             "VALUES (?, ?, ?, ?) ON CONFLICT(audience) DO UPDATE SET "
                             "document = excluded.document, revision = excluded.revision, "
                             "set_at = excluded.set_at");
    upsert.bind(1, std::string(audience));
    upsert.bind(2, protocol::policy_file_to_json(file));
    upsert.bind(3, version);
    upsert.bind(4, to_unix(now));
    upsert.exec();
    return version;
  });
}

Result<bool> Policies::remove(std::string_view audience) {
  return detail::in_transaction(db_, [&]() -> Result<bool> {
    SQLite::Statement erase(db_, "DELETE FROM policies WHERE audience = ?");
    erase.bind(1, std::string(audience));
    if (erase.exec() == 0)
      return false;
    advance_policy_version(db_);
    return true;
  });
}

Result<std::vector<AssignedPolicy>> Policies::list() {
  std::vector<AssignedPolicy> policies;
  try {
    SQLite::Statement query(db_,
                            "SELECT audience, document, revision, set_at FROM policies "
                            "ORDER BY audience <> 'default', audience");
    while (query.executeStep()) {
      AssignedPolicy p;
      p.audience = query.getColumn(0).getString();
      KABAN_TRY(file, read_document(query.getColumn(1).getString()));
      p.file = std::move(file);
      p.revision = query.getColumn(2).getInt64();
      p.set_at = UnixTime{std::chrono::seconds{query.getColumn(3).getInt64()}};
      policies.push_back(std::move(p));
    }
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  return policies;
}

Result<EffectivePolicy> Policies::effective_for(std::string_view login) {
  EffectivePolicy effective;
  std::vector<protocol::PolicyFile> files;
  try {
    // One statement, so the version and the documents come from one snapshot (also inside a
    // caller's transaction, where another BEGIN would fail): a device never gets a version
    // newer than the policy it is sent. The LEFT JOIN gives one row with a NULL audience when
    // no policy applies.
    SQLite::Statement query(
        db_,
        "SELECT c.value, p.audience, p.document FROM counters c LEFT JOIN policies p ON "
        "p.audience = 'default' OR EXISTS (SELECT 1 FROM channel_members m WHERE "
        "m.channel_id = p.audience AND m.login = :login AND m.role = 'member' AND "
        "m.removed = 0) "
        "WHERE c.name = 'policy' ORDER BY p.audience <> 'default', p.audience");
    query.bind(":login", std::string(login));
    while (query.executeStep()) {
      effective.version = query.getColumn(0).getInt64();
      if (query.getColumn(1).isNull())
        continue;
      KABAN_TRY(file, read_document(query.getColumn(2).getString()));
      effective.sources.push_back(query.getColumn(1).getString());
      files.push_back(std::move(file));
    }
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  effective.policy = protocol::effective_policy(files);
  return effective;
}

Result<std::int64_t> Policies::version() {
  try {
    SQLite::Statement query(db_, "SELECT value FROM counters WHERE name = 'policy'");
    if (!query.executeStep())
      return errc::storage_failed;
    return query.getColumn(0).getInt64();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::server
