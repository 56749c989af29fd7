#include "kaban/server/messaging.hpp"

#include <algorithm>
#include <optional>
#include <utility>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "attachment_rows.hpp"
#include "channel_rows.hpp"
#include "inbox_sequence.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/policies.hpp"

// Messaging's channels, announcements, acknowledgement reports and the inbox feed; the outbox is
// in messaging_outbox.cpp.

namespace kaban::server {
namespace {

using namespace detail;
using protocol::ChannelKind;

constexpr const char* kMessageColumns =
    "seq, id, sender, sender_name, body, priority, require_ack, created_at, accepted_at";

// What announcement_channel() does for a group that has no announcement channel yet.
enum class IfMissing { fail, create };

// The announcement channel of `audience` ("all" or a group channel id). Fails with
// errc::no_such_channel, `why` naming it.
Result<ChannelRow> announcement_channel(SQLite::Database& db, std::string_view audience,
                                        IfMissing if_missing, UnixTime now, std::string& why) {
  const std::string id = protocol::announcement_channel_id(audience);
  if (auto found = find_channel(db, id))
    return *found;
  std::optional<ChannelRow> group;
  if (audience != kAllAudience)
    group = find_channel(db, audience);
  if (!group || group->kind != ChannelKind::group) {
    why = "there is no group channel " + in_quotes(audience) +
          "; an audience is \"all\" or a group made with `admin channel add`";
    return errc::no_such_channel;
  }
  if (if_missing == IfMissing::fail) {
    why = "group " + in_quotes(audience) +
          " has no announcement channel yet (no senders were named); nothing to remove";
    return errc::no_such_channel;
  }
  ChannelRow channel{id, ChannelKind::announcement,
                     std::string(kAnnouncementTitle) + ": " + group->title, group->id};
  insert_channel(db, channel, now);
  return channel;
}

// The group channel `id`. Fails with errc::no_such_channel, or errc::invalid_channel for a
// channel of another kind, `why` naming it.
Result<ChannelRow> group_channel(SQLite::Database& db, std::string_view id, std::string& why) {
  auto channel = find_channel(db, id);
  if (!channel) {
    why = "there is no channel " + in_quotes(id) + "; create it with `admin channel add " +
          std::string(id) + "`";
    return errc::no_such_channel;
  }
  if (channel->kind != ChannelKind::group) {
    why = in_quotes(id) + (channel->kind == ChannelKind::direct
                               ? " is a direct conversation: its two people are its members"
                               : " is an announcement channel: its readers are its audience; use "
                                 "`admin channel senders` for who may post");
    return errc::invalid_channel;
  }
  return *channel;
}

// Gives or takes `role` for every login in `logins`, all or none: the caller commits. Returns
// how many changed.
Result<int> change_roles(SQLite::Database& db, const ChannelRow& channel,
                         std::span<const std::string> logins, const char* role, bool holds,
                         UnixTime now, std::string& why) {
  int changed = 0;
  for (const std::string& login : logins) {
    if (!user_name(db, login)) {
      why = "there is no user " + in_quotes(login) + "; add them first with `admin user add " +
            login + " --name NAME`. Nothing was changed";
      return errc::no_such_user;
    }
    if (set_role(db, channel.id, login, role, holds, now))
      ++changed;
  }
  return changed;
}

// The inbox feed: each reader appends one source's changes above `after`, at most `fetch`.

struct Entry {
  std::int64_t seq = 0;
  protocol::InboxChange change;
};

struct VisibleChannel {
  std::string id;
  ChannelKind kind = ChannelKind::group;
  std::string title;
};

void read_messages(SQLite::Database& db, const VisibleChannel& channel, std::int64_t after,
                   int fetch, InboxScope scope, std::vector<Entry>& out) {
  // The literal "priority >= 1" lets SQLite use the partial index messages_channel_urgent.
  const char* only = "";
  if (scope == InboxScope::urgent_only)
    only = " AND priority >= 1";
  else if (scope == InboxScope::it_only)
    only = " AND sender = ''";
  SQLite::Statement query(db, std::string("SELECT ") + kMessageColumns +
                                  " FROM messages WHERE channel_id = ? AND seq > ?" + only +
                                  " ORDER BY seq LIMIT ?");
  query.bind(1, channel.id);
  query.bind(2, after);
  query.bind(3, fetch);
  while (query.executeStep()) {
    protocol::MessageInfo m;
    m.seq = query.getColumn(0).getInt64();
    m.id = query.getColumn(1).getString();
    m.channel = channel.id;
    m.channel_kind = channel.kind;
    m.channel_title = channel.title;
    m.sender = query.getColumn(2).getString();
    m.sender_name = query.getColumn(3).getString();
    m.body = query.getColumn(4).getString();
    m.priority = static_cast<protocol::Priority>(std::clamp(
        query.getColumn(5).getInt(), 0, static_cast<int>(protocol::Priority::emergency)));
    m.require_ack = query.getColumn(6).getInt() != 0;
    m.created_at = query.getColumn(7).getInt64();
    m.accepted_at = query.getColumn(8).getInt64();
    Entry e;
    e.seq = m.seq;
    e.change.kind = "message";
    e.change.message = std::move(m);
    out.push_back(std::move(e));
  }
}

void read_memberships(SQLite::Database& db, std::string_view login, std::int64_t after, int fetch,
                      std::vector<Entry>& out) {
  // For a sender row: whether the person also reads the channel as its audience. For a group
  // membership: the group's announcement channel, if it has one, and whether they post there.
  SQLite::Statement query(
      db,
      "SELECT cm.seq, cm.channel_id, cm.role, cm.removed, c.kind, c.title, "
      "  c.audience = 'all' OR EXISTS (SELECT 1 FROM channel_members g WHERE "
      "    g.channel_id = c.audience AND g.login = cm.login AND g.role = 'member' AND "
      "    g.removed = 0), "
      "  a.id, a.title, EXISTS (SELECT 1 FROM channel_members s WHERE s.channel_id = a.id AND "
      "    s.login = cm.login AND s.role = 'sender' AND s.removed = 0) "
      "FROM channel_members cm JOIN channels c ON c.id = cm.channel_id "
      "LEFT JOIN channels a ON c.kind = 'group' AND a.id = 'announce:' || c.id "
      "WHERE cm.login = :login AND cm.seq > :after ORDER BY cm.seq LIMIT :limit");
  query.bind(":login", std::string(login));
  query.bind(":after", after);
  query.bind(":limit", fetch);
  while (query.executeStep()) {
    const std::int64_t seq = query.getColumn(0).getInt64();
    const bool removed = query.getColumn(3).getInt() != 0;
    protocol::ChannelMembership c;
    c.channel = query.getColumn(1).getString();
    c.kind = kind_from_text(query.getColumn(4).getString());
    c.title = query.getColumn(5).getString();
    if (query.getColumn(2).getString() == kSenderRole) {
      c.can_post = !removed;
      c.member = !removed || query.getColumn(6).getInt() != 0;
    } else {
      c.member = !removed;
      c.can_post = !removed;
    }
    Entry e;
    e.seq = seq;
    e.change.kind = "channel";
    e.change.channel = std::move(c);
    out.push_back(std::move(e));
    if (!query.getColumn(7).isNull()) {
      const bool sender = query.getColumn(9).getInt() != 0;
      Entry a;
      a.seq = seq;
      a.change.kind = "channel";
      a.change.channel =
          protocol::ChannelMembership{query.getColumn(7).getString(), ChannelKind::announcement,
                                      query.getColumn(8).getString(), !removed || sender, sender};
      out.push_back(std::move(a));
    }
  }
}

void read_read_states(SQLite::Database& db, std::string_view login, std::int64_t after, int fetch,
                      std::vector<Entry>& out) {
  SQLite::Statement query(db,
                          "SELECT seq, message_id, coalesce(read_at, 0), coalesce(acked_at, 0) "
                          "FROM receipts WHERE login = ? AND seq > ? ORDER BY seq LIMIT ?");
  query.bind(1, std::string(login));
  query.bind(2, after);
  query.bind(3, fetch);
  while (query.executeStep()) {
    Entry e;
    e.seq = query.getColumn(0).getInt64();
    e.change.kind = "read_state";
    e.change.read_state =
        protocol::ReadState{query.getColumn(1).getString(), query.getColumn(2).getInt64(),
                            query.getColumn(3).getInt64()};
    out.push_back(std::move(e));
  }
}

void read_statements(SQLite::Database& db, std::string_view login, std::int64_t after, int fetch,
                     std::vector<Entry>& out) {
  SQLite::Statement query(db,
                          "SELECT seq, statement FROM statements WHERE login = ? AND seq > ? "
                          "ORDER BY seq LIMIT ?");
  query.bind(1, std::string(login));
  query.bind(2, after);
  query.bind(3, fetch);
  while (query.executeStep()) {
    Entry e;
    e.seq = query.getColumn(0).getInt64();
    e.change.kind = "statement";
    e.change.statement = query.getColumn(1).getString();
    out.push_back(std::move(e));
  }
}

bool by_seq(const Entry& a, const Entry& b) {
  return a.seq < b.seq;
}

}  // namespace

Result<void> Messaging::add_channel(std::string_view id, std::string_view title, UnixTime now,
                                    std::string& why) {
  if (protocol::channel_kind(id) != ChannelKind::group || !protocol::is_valid_id(id)) {
    why = in_quotes(id) +
          " is not a group channel name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-', "
          "starting with a letter or digit";
    return errc::invalid_channel;
  }
  if (id == kAllAudience) {
    why = "\"all\" names everyone in announcements; choose another name";
    return errc::invalid_channel;
  }
  const std::string text(title.empty() ? id : title);
  if (text.size() > protocol::kMaxChannelTitle || !protocol::is_valid_message_text(text) ||
      text.find('\n') != std::string::npos) {
    why = "a channel title is one line of 1 to " + std::to_string(protocol::kMaxChannelTitle) +
          " bytes of text";
    return errc::invalid_channel;
  }
  try {
    SQLite::Statement insert(
        db_,
        "INSERT OR IGNORE INTO channels(id, kind, title, audience, created_at) "
        "VALUES (?, 'group', ?, NULL, ?)");
    insert.bind(1, std::string(id));
    insert.bind(2, text);
    insert.bind(3, to_unix(now));
    if (insert.exec() == 0) {
      why = "a channel named " + in_quotes(id) + " already exists; choose another name";
      return errc::channel_exists;
    }
    return ok();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<ChannelSummary>> Messaging::list_channels() {
  try {
    SQLite::Statement query(db_,
                            "SELECT c.id, c.kind, c.title, coalesce(c.audience, ''), c.created_at, "
                            "(SELECT count(*) FROM channel_members m WHERE m.channel_id = c.id AND "
                            "m.role = 'member' AND m.removed = 0), "
                            "(SELECT count(*) FROM channel_members m WHERE m.channel_id = c.id AND "
                            "m.role = 'sender' AND m.removed = 0), "
                            "(SELECT count(*) FROM messages m WHERE m.channel_id = c.id) "
                            "FROM channels c ORDER BY c.id");
    std::vector<ChannelSummary> channels;
    while (query.executeStep()) {
      ChannelSummary c;
      c.id = query.getColumn(0).getString();
      c.kind = kind_from_text(query.getColumn(1).getString());
      c.title = query.getColumn(2).getString();
      c.audience = query.getColumn(3).getString();
      c.created_at = UnixTime{std::chrono::seconds{query.getColumn(4).getInt64()}};
      c.members = query.getColumn(5).getInt64();
      c.senders = query.getColumn(6).getInt64();
      c.messages = query.getColumn(7).getInt64();
      channels.push_back(std::move(c));
    }
    return channels;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<int> Messaging::add_members(std::string_view channel, std::span<const std::string> logins,
                                   UnixTime now, std::string& why) {
  return in_transaction(db_, [&]() -> Result<int> {
    KABAN_TRY(target, group_channel(db_, channel, why));
    KABAN_TRY(changed, change_roles(db_, target, logins, kMemberRole, true, now, why));
    // Members are under the group's policy: their devices learn of it at the next check-in.
    if (changed > 0)
      advance_policy_version(db_);
    return changed;
  });
}

Result<int> Messaging::remove_members(std::string_view channel, std::span<const std::string> logins,
                                      UnixTime now, std::string& why) {
  return in_transaction(db_, [&]() -> Result<int> {
    KABAN_TRY(target, group_channel(db_, channel, why));
    KABAN_TRY(changed, change_roles(db_, target, logins, kMemberRole, false, now, why));
    if (changed > 0)
      advance_policy_version(db_);
    return changed;
  });
}

Result<int> Messaging::add_senders(std::string_view audience, std::span<const std::string> logins,
                                   UnixTime now, std::string& why) {
  return in_transaction(db_, [&]() -> Result<int> {
    KABAN_TRY(target, announcement_channel(db_, audience, IfMissing::create, now, why));
    return change_roles(db_, target, logins, kSenderRole, true, now, why);
  });
}

Result<int> Messaging::remove_senders(std::string_view audience,
                                      std::span<const std::string> logins, UnixTime now,
                                      std::string& why) {
  return in_transaction(db_, [&]() -> Result<int> {
    KABAN_TRY(target, announcement_channel(db_, audience, IfMissing::fail, now, why));
    return change_roles(db_, target, logins, kSenderRole, false, now, why);
  });
}

Result<PostedMessage> Messaging::announce(const Announcement& a, UnixTime now, std::string& why) {
  if (!is_valid_body(a.body)) {
    why = "an announcement is 1 to " + std::to_string(protocol::kMaxMessageBody) +
          " bytes of text (" + std::to_string(a.body.size()) + " given); nothing was sent";
    return errc::invalid_message;
  }
  if (a.sender_name.empty() || a.sender_name.size() > kMaxUserNameSize ||
      !protocol::is_valid_message_text(a.sender_name)) {
    why = "the sender's name is 1 to " + std::to_string(kMaxUserNameSize) +
          " bytes of text; nothing was sent";
    return errc::invalid_message;
  }
  // in_transaction: `admin announce` records the message in the audit log in the same one.
  return in_transaction(db_, [&]() -> Result<PostedMessage> {
    KABAN_TRY(channel, announcement_channel(db_, a.audience, IfMissing::create, now, why));
    MessageRow row;
    row.id = protocol::new_uuid();
    row.channel = channel.id;
    row.sender_name = a.sender_name;
    row.body = a.body;
    row.priority = a.priority;
    row.require_ack = a.require_ack;
    row.created_at = to_unix(now);
    return PostedMessage{row.id, insert_message(db_, row, now)};
  });
}

Result<AckReport> Messaging::acks(std::string_view message_id, std::string& why) {
  try {
    // One read snapshot for the message and its audience.
    SQLite::Transaction transaction(db_);
    SQLite::Statement message(db_, "SELECT channel_id, require_ack FROM messages WHERE id = ?");
    message.bind(1, std::string(message_id));
    if (!message.executeStep()) {
      why =
          "there is no message " + in_quotes(message_id) + "; use the id `admin announce` printed";
      return errc::no_such_message;
    }
    AckReport report;
    report.message_id = std::string(message_id);
    report.channel = message.getColumn(0).getString();
    report.require_ack = message.getColumn(1).getInt() != 0;
    message.reset();
    auto channel = find_channel(db_, report.channel);
    if (!channel)
      return errc::storage_failed;  // a foreign key guarantees the channel
    // The channel whose members are the audience; "" for everyone.
    std::string audience = channel->id;
    if (channel->kind == ChannelKind::announcement)
      audience = channel->audience == kAllAudience ? "" : channel->audience;
    SQLite::Statement query(
        db_,
        "SELECT u.login, u.name, coalesce(r.delivered_at, 0), coalesce(r.read_at, 0), "
        "coalesce(r.acked_at, 0) FROM users u "
        "LEFT JOIN receipts r ON r.message_id = :id AND r.login = u.login "
        "WHERE :audience = '' OR EXISTS (SELECT 1 FROM channel_members cm WHERE "
        "cm.channel_id = :audience AND cm.login = u.login AND cm.role = 'member' AND "
        "cm.removed = 0) ORDER BY u.login");
    query.bind(":id", std::string(message_id));
    query.bind(":audience", audience);
    while (query.executeStep()) {
      report.people.push_back({query.getColumn(0).getString(), query.getColumn(1).getString(),
                               query.getColumn(2).getInt64(), query.getColumn(3).getInt64(),
                               query.getColumn(4).getInt64()});
    }
    query.reset();
    transaction.commit();
    return report;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<InboxPage> Messaging::inbox_since(std::string_view login, std::int64_t after_seq, int limit,
                                         InboxScope scope) {
  limit = std::clamp(limit, 1, protocol::kMaxInboxPage);
  // Each source gives at most one more than the page, so the merge knows whether more follow.
  const int fetch = limit + 1;
  try {
    // One read snapshot: every change numbered up to `latest` is in it.
    SQLite::Transaction snapshot(db_);
    const std::int64_t latest = detail::latest_inbox_seq(db_);
    std::vector<VisibleChannel> channels;
    {
      SQLite::Statement query(db_,
                              std::string("SELECT id, kind, title FROM channels WHERE id IN (") +
                                  kVisibleChannels + ") ORDER BY id");
      query.bind(":login", std::string(login));
      while (query.executeStep())
        channels.push_back({query.getColumn(0).getString(),
                            kind_from_text(query.getColumn(1).getString()),
                            query.getColumn(2).getString()});
    }
    std::vector<Entry> entries;
    for (const VisibleChannel& channel : channels) {
      read_messages(db_, channel, after_seq, fetch, scope, entries);
      // Messages have distinct sequences: keeping the lowest `fetch` bounds memory by the page,
      // not by the number of channels.
      if (entries.size() > static_cast<std::size_t>(fetch)) {
        std::sort(entries.begin(), entries.end(), by_seq);
        entries.resize(static_cast<std::size_t>(fetch));
      }
    }
    if (scope == InboxScope::everything) {
      read_memberships(db_, login, after_seq, fetch, entries);
      read_read_states(db_, login, after_seq, fetch, entries);
      read_statements(db_, login, after_seq, fetch, entries);
    }
    std::stable_sort(entries.begin(), entries.end(), by_seq);

    InboxPage page;
    std::size_t cut = entries.size();
    if (entries.size() > static_cast<std::size_t>(limit)) {
      page.more = true;
      cut = static_cast<std::size_t>(limit);
      // Never split the changes of one sequence: the cursor could not point between them.
      const std::int64_t split = entries[cut].seq;
      while (cut > 0 && entries[cut - 1].seq == split)
        --cut;
      if (cut == 0) {
        while (cut < entries.size() && entries[cut].seq == split)
          ++cut;
      }
      page.last_seq = entries[cut - 1].seq;
    } else {
      page.last_seq = std::max(after_seq, latest);
    }
    page.changes.reserve(cut);
    for (std::size_t i = 0; i < cut; ++i)
      page.changes.push_back(std::move(entries[i].change));
    fill_attachments(db_, page.changes);
    snapshot.commit();
    return page;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::int64_t> Messaging::latest_inbox_seq() {
  try {
    return detail::latest_inbox_seq(db_);
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::server
