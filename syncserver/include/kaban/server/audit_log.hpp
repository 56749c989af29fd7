// AuditLog: the append-only record of admin actions and security events (docs/admin.md lists
// the events). Rows are never updated or deleted (triggers refuse it), and never hold a secret:
// an enrollment code, unlock code, report token or key is named, never shown.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/result.hpp"
#include "kaban/server/database.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

struct AuditEntry {
  std::int64_t seq = 0;  ///< set by record()
  UnixTime at;
  std::string actor;    ///< "admin:<os user>", "device:<id>", "address:<ip>" or "server"
  std::string event;    ///< snake_case: "device_enrolled", "enroll_failed", "device_revoked"...
  std::string subject;  ///< a login, device id, group, course or policy audience; or ""
  std::string details;  ///< a JSON object (compact), "{}" when there is nothing more
};

/// The log over one database connection. Not thread-safe: one per connection, used by the
/// connection's thread. Fails with errc::storage_failed if SQLite fails.
class AuditLog {
 public:
  explicit AuditLog(SQLite::Database& db) : db_(db) {}

  /// Appends one entry (inside the caller's transaction, if one is open, so the action and its
  /// record commit together). `details` must be a JSON object (stored compact); anything else is
  /// a bug in the caller and throws std::invalid_argument.
  Result<void> record(std::string_view actor, std::string_view event, std::string_view subject,
                      std::string_view details, UnixTime at);
  /// Entries at or after `since`, oldest first, at most `limit`.
  Result<std::vector<AuditEntry>> since(UnixTime since, std::size_t limit);

 private:
  SQLite::Database& db_;
};

/// "admin:" and the name of the person running an admin command: $SUDO_USER when set (sudo
/// keeps who asked), else the login name of the effective user id, else "admin:uid<N>".
std::string admin_actor();

}  // namespace kaban::server
