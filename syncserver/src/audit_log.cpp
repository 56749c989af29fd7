#include "kaban/server/audit_log.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <nlohmann/json.hpp>

#include "kaban/server/error.hpp"

namespace kaban::server {
namespace {

// A user name fit for the log: what a terminal shows as one word (no control characters, spaces
// or separators an entry could be misread by), at most 64 bytes.
bool is_plain_name(std::string_view name) {
  constexpr std::size_t kMaxNameSize = 64;
  return !name.empty() && name.size() <= kMaxNameSize &&
         std::all_of(name.begin(), name.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return u > 0x20 && u != 0x7f && c != ',' && c != '"';
         });
}

}  // namespace

Result<void> AuditLog::record(std::string_view actor, std::string_view event,
                              std::string_view subject, std::string_view details, UnixTime at) {
  // Stored compact whatever the caller wrote, so every entry reads the same way.
  const auto object = nlohmann::json::parse(details, nullptr, false);
  if (object.is_discarded() || !object.is_object())
    throw std::invalid_argument("AuditLog::record: details must be a JSON object");
  try {
    SQLite::Statement insert(
        db_, "INSERT INTO audit_log(at, actor, event, subject, details) VALUES (?, ?, ?, ?, ?)");
    insert.bind(1, to_unix(at));
    insert.bind(2, std::string(actor));
    insert.bind(3, std::string(event));
    insert.bind(4, std::string(subject));
    insert.bind(5, object.dump());
    insert.exec();
    return ok();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<AuditEntry>> AuditLog::since(UnixTime since, std::size_t limit) {
  std::vector<AuditEntry> entries;
  if (limit == 0)
    return entries;
  try {
    SQLite::Statement query(db_,
                            "SELECT seq, at, actor, event, subject, details FROM audit_log "
                            "WHERE at >= ? ORDER BY at, seq LIMIT ?");
    query.bind(1, to_unix(since));
    query.bind(2, static_cast<std::int64_t>(
                      std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max())));
    while (query.executeStep()) {
      AuditEntry e;
      e.seq = query.getColumn(0).getInt64();
      e.at = UnixTime{std::chrono::seconds{query.getColumn(1).getInt64()}};
      e.actor = query.getColumn(2).getString();
      e.event = query.getColumn(3).getString();
      e.subject = query.getColumn(4).getString();
      e.details = query.getColumn(5).getString();
      entries.push_back(std::move(e));
    }
    return entries;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

std::string admin_actor() {
  // sudo keeps who asked in SUDO_USER; `sudo -u kaban` would otherwise log every admin as kaban.
  if (const char* sudo_user = std::getenv("SUDO_USER"); sudo_user && is_plain_name(sudo_user))
    return "admin:" + std::string(sudo_user);
  const uid_t uid = ::geteuid();
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(size > 0 ? static_cast<std::size_t>(size) : 16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr &&
      is_plain_name(found->pw_name))
    return "admin:" + std::string(found->pw_name);
  return "admin:uid" + std::to_string(uid);
}

}  // namespace kaban::server
