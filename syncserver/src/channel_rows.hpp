// Reading and writing channel and membership rows: what Messaging's admin commands
// (messaging.cpp), its outbox (messaging_outbox.cpp), groups, policies and course assignment
// share, and the write transaction they run in. Private to kaban::server. Every function but
// in_transaction throws SQLite::Exception when SQLite fails; call inside the caller's transaction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>

#include "kaban/protocol/channel.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server::detail {

/// Runs `work` (returning a Result) in one write transaction (BEGIN IMMEDIATE), committed only if
/// it succeeds. Inside a transaction the caller opened, it runs in a savepoint of it instead, so
/// an admin command can make a change and record it in the audit log in one transaction: a
/// failure undoes only `work`, and nothing is kept until the caller commits. A SQLite failure
/// becomes errc::storage_failed, with nothing of `work` kept.
template <class Work>
auto in_transaction(SQLite::Database& db, Work work) -> decltype(work()) {
  try {
    if (sqlite3_get_autocommit(db.getHandle()) == 0) {
      // Not SQLite::Savepoint: its destructor rolls back without releasing, leaving the
      // savepoint open in the caller's transaction.
      db.exec("SAVEPOINT kaban_work");
      bool kept = false;
      struct Undo {
        SQLite::Database& db;
        const bool& kept;
        ~Undo() {
          if (kept)
            return;
          try {
            db.exec("ROLLBACK TO kaban_work; RELEASE kaban_work");
          } catch (const SQLite::Exception&) {
            // The caller's transaction fails too and rolls everything back.
          }
        }
      } undo{db, kept};
      auto result = work();
      if (result) {
        db.exec("RELEASE kaban_work");
        kept = true;
      }
      return result;
    }
    SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
    auto result = work();
    if (result)
      transaction.commit();
    return result;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

/// channel_members.role: belongs to a group or direct channel, or may post to an announcement
/// channel.
inline constexpr const char* kMemberRole = "member";
inline constexpr const char* kSenderRole = "sender";
/// The audience of announce:all.
inline constexpr std::string_view kAllAudience = "all";

/// The ids of the channels :login may read now, as a subquery with a :login parameter. The one
/// place this is decided: the inbox feed, receipts and acknowledgements all use it. Rows of
/// channel_members with role 'member' exist only for group and direct channels, rows with role
/// 'sender' only for announcement channels; a named sender reads what they may post to.
inline constexpr const char* kVisibleChannels =
    "SELECT cm.channel_id FROM channel_members cm WHERE cm.login = :login AND cm.removed = 0 "
    "UNION SELECT 'announce:all' FROM users u WHERE u.login = :login "
    "UNION SELECT a.id FROM channels a JOIN channel_members g ON g.channel_id = a.audience "
    "WHERE a.kind = 'announcement' AND g.login = :login AND g.role = 'member' "
    "AND g.removed = 0";

/// A channels row. `audience` is "" unless kind is announcement.
struct ChannelRow {
  std::string id;
  protocol::ChannelKind kind = protocol::ChannelKind::group;
  std::string title;
  std::string audience;
};

/// channels.kind for a kind, and back (an unknown text reads as group).
std::string kind_text(protocol::ChannelKind kind);
protocol::ChannelKind kind_from_text(const std::string& text);

/// `text` in double quotes, for sentences that name a login, channel or id.
std::string in_quotes(std::string_view text);
/// 1..protocol::kMaxMessageBody bytes of protocol::is_valid_message_text.
bool is_valid_body(std::string_view body);

/// A message as the messages table holds it. IT's announcements have no device.
struct MessageRow {
  std::string id;
  std::string channel;
  std::string sender;  ///< a login; "" for IT
  std::string sender_name;
  std::string body;
  protocol::Priority priority = protocol::Priority::normal;
  bool require_ack = false;
  std::int64_t created_at = 0;
  std::optional<std::string> device_id;
  std::int64_t device_seq = 0;
};

/// Inserts `m`, accepted at `now`, under a new inbox sequence (inside the caller's write
/// transaction) and returns that sequence. Throws SQLite::Exception.
std::int64_t insert_message(SQLite::Database& db, const MessageRow& m, UnixTime now);

std::optional<ChannelRow> find_channel(SQLite::Database& db, std::string_view id);
/// True if `id` is a group channel: what policies and course assignments may name.
bool is_group(SQLite::Database& db, std::string_view id);
void insert_channel(SQLite::Database& db, const ChannelRow& channel, UnixTime now);
/// The user's display name, or std::nullopt for an unknown login.
std::optional<std::string> user_name(SQLite::Database& db, std::string_view login);

/// True if `login` holds `role` in `channel` now.
bool holds_role(SQLite::Database& db, std::string_view channel, std::string_view login,
                const char* role);
/// Gives (`holds`) or takes `role` in `channel` for `login` under a new inbox sequence, which is
/// how the person's devices learn of it; false, and no sequence spent, if nothing changes. A
/// caller changing a group's members also calls advance_policy_version() (policies.hpp) once
/// something changed: group members are under the group's policy.
bool set_role(SQLite::Database& db, std::string_view channel, std::string_view login,
              const char* role, bool holds, UnixTime now);

}  // namespace kaban::server::detail
