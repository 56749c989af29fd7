#include "channel_rows.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include "inbox_sequence.hpp"

namespace kaban::server::detail {

using protocol::ChannelKind;

std::string kind_text(ChannelKind kind) {
  return std::string(protocol::to_string(kind));
}

// Rows hold what kind_text() wrote; anything else reads as a group channel.
ChannelKind kind_from_text(const std::string& text) {
  return protocol::parse_channel_kind(text).value_or(ChannelKind::group);
}

std::string in_quotes(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

bool is_valid_body(std::string_view body) {
  return !body.empty() && body.size() <= protocol::kMaxMessageBody &&
         protocol::is_valid_message_text(body);
}

std::int64_t insert_message(SQLite::Database& db, const MessageRow& m, UnixTime now) {
  const std::int64_t seq = next_inbox_seq(db);
  SQLite::Statement insert(
      db,
      "INSERT INTO messages(seq, id, channel_id, sender, sender_name, body, priority, "
      "require_ack, created_at, accepted_at, device_id, device_seq) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  insert.bind(1, seq);
  insert.bind(2, m.id);
  insert.bind(3, m.channel);
  insert.bind(4, m.sender);
  insert.bind(5, m.sender_name);
  insert.bind(6, m.body);
  insert.bind(7, static_cast<int>(m.priority));
  insert.bind(8, m.require_ack ? 1 : 0);
  insert.bind(9, m.created_at);
  insert.bind(10, to_unix(now));
  if (m.device_id) {
    insert.bind(11, *m.device_id);
    insert.bind(12, m.device_seq);
  } else {
    insert.bind(11);
    insert.bind(12);
  }
  insert.exec();
  return seq;
}

std::optional<ChannelRow> find_channel(SQLite::Database& db, std::string_view id) {
  SQLite::Statement query(
      db, "SELECT id, kind, title, coalesce(audience, '') FROM channels WHERE id = ?");
  query.bind(1, std::string(id));
  if (!query.executeStep())
    return std::nullopt;
  return ChannelRow{query.getColumn(0).getString(), kind_from_text(query.getColumn(1).getString()),
                    query.getColumn(2).getString(), query.getColumn(3).getString()};
}

bool is_group(SQLite::Database& db, std::string_view id) {
  const auto channel = find_channel(db, id);
  return channel && channel->kind == ChannelKind::group;
}

void insert_channel(SQLite::Database& db, const ChannelRow& c, UnixTime now) {
  SQLite::Statement insert(
      db, "INSERT INTO channels(id, kind, title, audience, created_at) VALUES (?, ?, ?, ?, ?)");
  insert.bind(1, c.id);
  insert.bind(2, kind_text(c.kind));
  insert.bind(3, c.title);
  if (c.kind == ChannelKind::announcement)
    insert.bind(4, c.audience);
  else
    insert.bind(4);
  insert.bind(5, to_unix(now));
  insert.exec();
}

std::optional<std::string> user_name(SQLite::Database& db, std::string_view login) {
  SQLite::Statement query(db, "SELECT name FROM users WHERE login = ?");
  query.bind(1, std::string(login));
  if (!query.executeStep())
    return std::nullopt;
  return query.getColumn(0).getString();
}

bool holds_role(SQLite::Database& db, std::string_view channel, std::string_view login,
                const char* role) {
  SQLite::Statement query(db,
                          "SELECT removed FROM channel_members "
                          "WHERE channel_id = ? AND login = ? AND role = ?");
  query.bind(1, std::string(channel));
  query.bind(2, std::string(login));
  query.bind(3, role);
  return query.executeStep() && query.getColumn(0).getInt() == 0;
}

bool set_role(SQLite::Database& db, std::string_view channel, std::string_view login,
              const char* role, bool holds, UnixTime now) {
  if (holds_role(db, channel, login, role) == holds)
    return false;
  SQLite::Statement upsert(
      db,
      "INSERT INTO channel_members(channel_id, login, role, removed, seq, changed_at) "
      "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(channel_id, login, role) DO UPDATE SET "
      "removed = excluded.removed, seq = excluded.seq, changed_at = excluded.changed_at");
  upsert.bind(1, std::string(channel));
  upsert.bind(2, std::string(login));
  upsert.bind(3, role);
  upsert.bind(4, holds ? 0 : 1);
  upsert.bind(5, next_inbox_seq(db));
  upsert.bind(6, to_unix(now));
  upsert.exec();
  return true;
}

}  // namespace kaban::server::detail
