#include "kaban/agent/messages.hpp"

#include <set>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "attachment_rows.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/protocol/outbox.hpp"
#include "statement_rows.hpp"

namespace kaban::agent {
namespace {

constexpr std::string_view kInboxCursorKey = "inbox_cursor";

// The columns list() and acknowledge() read, in this order.
constexpr std::string_view kMessageColumns = R"sql(
  m.id, m.seq, m.channel, coalesce(c.title, ''), m.sender, m.sender_name, m.body, m.priority,
  m.require_ack, m.created_at, m.accepted_at, m.state, m.reason, coalesce(k.read_at, 0),
  coalesce(k.acked_at, 0)
  FROM messages m
  LEFT JOIN message_marks k ON k.message_id = m.id
  LEFT JOIN channels c ON c.id = m.channel
)sql";

// A message of someone else that the server holds and the person has not read.
constexpr std::string_view kUnread =
    "m.seq IS NOT NULL AND m.sender != ?1 AND coalesce(k.read_at, 0) = 0";

// Rows hold what to_string() wrote; anything else reads as a group channel.
protocol::ChannelKind parse_kind(std::string_view text) {
  return protocol::parse_channel_kind(text).value_or(protocol::ChannelKind::group);
}

MessageState parse_state(std::string_view text) {
  if (text == "pending")
    return MessageState::pending;
  if (text == "rejected")
    return MessageState::rejected;
  return MessageState::sent;
}

protocol::Priority priority_of(int value) {
  switch (value) {
    case 1:
      return protocol::Priority::urgent;
    case 2:
      return protocol::Priority::emergency;
    default:
      return protocol::Priority::normal;
  }
}

MessageView read_message(SQLite::Statement& q, std::string_view me) {
  MessageView v;
  v.id = q.getColumn(0).getString();
  v.seq = q.getColumn(1).isNull() ? 0 : q.getColumn(1).getInt64();
  v.channel = q.getColumn(2).getString();
  v.channel_title = q.getColumn(3).getString();
  v.sender = q.getColumn(4).getString();
  v.sender_name = q.getColumn(5).getString();
  v.body = q.getColumn(6).getString();
  v.priority = priority_of(q.getColumn(7).getInt());
  v.require_ack = q.getColumn(8).getInt() != 0;
  v.created_at = q.getColumn(9).getInt64();
  v.accepted_at = q.getColumn(10).getInt64();
  v.state = parse_state(q.getColumn(11).getString());
  v.reason = q.getColumn(12).getString();
  v.read_at = q.getColumn(13).getInt64();
  v.acked_at = q.getColumn(14).getInt64();
  v.own = !v.sender.empty() && v.sender == me;
  v.read = v.own || v.read_at != 0;
  return v;
}

bool channel_known(SQLite::Database& db, const std::string& id) {
  SQLite::Statement q(db, R"sql(
    SELECT EXISTS (SELECT 1 FROM channels WHERE id = ?1)
        OR EXISTS (SELECT 1 FROM messages WHERE channel = ?1)
  )sql");
  q.bind(1, id);
  q.executeStep();
  return q.getColumn(0).getInt() != 0;
}

bool message_known(SQLite::Database& db, const std::string& id) {
  SQLite::Statement q(db, "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?)");
  q.bind(1, id);
  q.executeStep();
  return q.getColumn(0).getInt() != 0;
}

// One receipt item per kMaxReceiptMessages ids, in the caller's transaction.
Result<void> queue_receipts(Store& store, std::string_view state,
                            const std::vector<std::string>& ids, std::int64_t now) {
  Outbox outbox(store);
  for (std::size_t first = 0; first < ids.size(); first += protocol::kMaxReceiptMessages) {
    const std::size_t last = std::min(ids.size(), first + protocol::kMaxReceiptMessages);
    protocol::OutboxItem item;
    item.kind = "receipt";
    item.receipt = protocol::ReceiptBatch{
        std::string(state),
        std::vector<std::string>(ids.begin() + static_cast<std::ptrdiff_t>(first),
                                 ids.begin() + static_cast<std::ptrdiff_t>(last)),
        now};
    KABAN_TRYV(outbox.enqueue(std::move(item), now));
  }
  return ok();
}

// A direct channel has no title of its own: the device shows the other person's login.
std::string title_for(std::string_view channel, protocol::ChannelKind kind, std::string_view title,
                      std::string_view me) {
  if (title.empty() && kind == protocol::ChannelKind::direct)
    return protocol::direct_peer(channel, me);
  return std::string(title);
}

void upsert_mark(SQLite::Database& db, const std::string& message_id, std::int64_t read_at,
                 std::int64_t acked_at) {
  // A mark is never taken back by a later report of "not yet" (0): that device may simply not
  // have heard of this one's mark. Of two times, the earlier is when it happened.
  SQLite::Statement upsert(db, R"sql(
    INSERT INTO message_marks (message_id, read_at, acked_at) VALUES (?1, ?2, ?3)
    ON CONFLICT (message_id) DO UPDATE SET
      read_at = CASE WHEN excluded.read_at = 0 THEN read_at
                     WHEN read_at = 0 THEN excluded.read_at
                     ELSE min(read_at, excluded.read_at) END,
      acked_at = CASE WHEN excluded.acked_at = 0 THEN acked_at
                      WHEN acked_at = 0 THEN excluded.acked_at
                      ELSE min(acked_at, excluded.acked_at) END
  )sql");
  upsert.bind(1, message_id);
  upsert.bind(2, read_at);
  upsert.bind(3, acked_at);
  upsert.exec();
}

// What the inbox says a message carries, less any attachment that does not pass
// check_attachment (the parser refuses those; a caller may build changes by hand): its chunks
// could never be fetched and verified.
std::vector<protocol::Attachment> well_formed(const std::vector<protocol::Attachment>& all) {
  std::vector<protocol::Attachment> kept;
  for (const protocol::Attachment& a : all) {
    if (protocol::check_attachment(a).empty())
      kept.push_back(a);
  }
  return kept;
}

}  // namespace

std::string_view to_string(MessageState state) {
  switch (state) {
    case MessageState::pending:
      return "pending";
    case MessageState::sent:
      return "sent";
    case MessageState::rejected:
      return "rejected";
  }
  return "sent";
}

Messages::Messages(Store& store, std::string login, std::string user_name)
    : store_(store), login_(std::move(login)), user_name_(std::move(user_name)) {}

Result<std::string> Messages::resolve_channel(std::string_view name) const {
  if (name.starts_with('@')) {
    std::string id = protocol::direct_channel_id(login_, name.substr(1));
    if (id.empty())
      return errc::invalid_input;
    return id;
  }
  if (!protocol::is_valid_channel_id(name))
    return errc::invalid_input;
  return std::string(name);
}

Result<std::vector<ChannelInfo>> Messages::channels() {
  try {
    SQLite::Statement q(store_.db(), std::string(R"sql(
      SELECT c.id, c.kind, c.title, c.can_post,
             (SELECT count(*) FROM messages m LEFT JOIN message_marks k ON k.message_id = m.id
              WHERE m.channel = c.id AND )sql") +
                                         std::string(kUnread) +
                                         R"sql()
      FROM channels c ORDER BY c.id
    )sql");
    q.bind(1, login_);
    std::vector<ChannelInfo> out;
    while (q.executeStep()) {
      ChannelInfo c;
      c.id = q.getColumn(0).getString();
      c.kind = parse_kind(q.getColumn(1).getString());
      c.title = q.getColumn(2).getString();
      c.can_post = q.getColumn(3).getInt() != 0;
      c.unread = static_cast<std::size_t>(q.getColumn(4).getInt64());
      out.push_back(std::move(c));
    }
    return out;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<MessageView> Messages::send(std::string_view channel_id, std::string_view body,
                                   protocol::Priority priority, bool require_ack, std::int64_t now,
                                   std::span<const AttachmentFile> attachments) {
  if (body.empty() || body.size() > protocol::kMaxMessageBody ||
      !protocol::is_valid_message_text(body))
    return errc::invalid_input;
  const auto kind = protocol::channel_kind(channel_id);
  if (!kind)
    return errc::invalid_input;
  if (require_ack && *kind != protocol::ChannelKind::announcement)
    return errc::invalid_input;
  KABAN_TRY(described, detail::describe_files(attachments));
  const std::string channel(channel_id);
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    SQLite::Statement known(db, "SELECT can_post, title FROM channels WHERE id = ?");
    known.bind(1, channel);
    std::string title;
    if (known.executeStep()) {
      title = known.getColumn(1).getString();
      if (*kind == protocol::ChannelKind::announcement && known.getColumn(0).getInt() == 0)
        return errc::not_allowed;
    } else if (*kind == protocol::ChannelKind::direct) {
      // The server creates a direct channel on its first message, so the device does too.
      title = protocol::direct_peer(channel, login_);
      if (title.empty())
        return errc::not_allowed;  // a conversation between two other people
      SQLite::Statement add(db, R"sql(
        INSERT INTO channels (id, kind, title, can_post) VALUES (?, 'direct', ?, 1)
      )sql");
      add.bind(1, channel);
      add.bind(2, title);
      add.exec();
    } else {
      return errc::not_found;
    }
    known.reset();

    MessageView v;
    v.id = protocol::new_uuid();
    v.channel = channel;
    v.channel_title = title;
    v.sender = login_;
    v.sender_name = user_name_;
    v.body = std::string(body);
    v.priority = priority;
    v.require_ack = require_ack;
    v.created_at = now;
    v.state = MessageState::pending;
    v.own = true;
    v.read = true;
    SQLite::Statement insert(db, R"sql(
      INSERT INTO messages (id, seq, channel, sender, sender_name, body, priority, require_ack,
                            created_at, state)
      VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, 'pending')
    )sql");
    insert.bind(1, v.id);
    insert.bind(2, v.channel);
    insert.bind(3, v.sender);
    insert.bind(4, v.sender_name);
    insert.bind(5, v.body);
    insert.bind(6, static_cast<int>(v.priority));
    insert.bind(7, v.require_ack ? 1 : 0);
    insert.bind(8, v.created_at);
    insert.exec();

    detail::AttachmentWriter writer(db);
    writer.replace(v.id, described);
    for (std::size_t i = 0; i < described.size(); ++i) {
      writer.store_chunks(described[i], attachments[i].bytes);
      v.attachments.push_back({described[i].name, described[i].media_type, described[i].size,
                               described[i].sha256, true});
    }

    protocol::OutboxItem item;
    item.id = v.id;
    item.kind = "message";
    item.message = protocol::NewMessage{v.channel,     v.body, v.priority,
                                        v.require_ack, now,    std::move(described)};
    KABAN_TRYV(Outbox(store_).enqueue(std::move(item), now));
    tx.commit();
    return v;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<InboxApplied> Messages::apply_inbox(std::span<const protocol::InboxChange> changes,
                                           std::string_view cursor, std::int64_t now) {
  InboxApplied applied;
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    SQLite::Statement held(db, "SELECT seq IS NOT NULL FROM messages WHERE id = ?");
    SQLite::Statement update(db, R"sql(
      UPDATE messages SET seq = ?2, channel = ?3, sender = ?4, sender_name = ?5, body = ?6,
                          priority = ?7, require_ack = ?8, created_at = ?9, accepted_at = ?10,
                          state = 'sent', reason = ''
      WHERE id = ?1
    )sql");
    SQLite::Statement insert(db, R"sql(
      INSERT INTO messages (id, seq, channel, sender, sender_name, body, priority, require_ack,
                            created_at, accepted_at, state)
      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'sent')
    )sql");
    // A message names its channel: enough to list it before (or without) a membership change.
    SQLite::Statement seen_channel(db, R"sql(
      INSERT INTO channels (id, kind, title, can_post) VALUES (?1, ?2, ?3, ?4)
      ON CONFLICT (id) DO UPDATE SET title = excluded.title WHERE excluded.title != ''
    )sql");
    SQLite::Statement joined(db, R"sql(
      INSERT INTO channels (id, kind, title, can_post) VALUES (?1, ?2, ?3, ?4)
      ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, title = excluded.title,
                                     can_post = excluded.can_post
    )sql");
    detail::AttachmentWriter attachments(db);
    // Set when attachment rows went away: their chunks may be used by nothing now.
    bool collect = false;
    std::vector<std::string> delivered;

    for (const protocol::InboxChange& change : changes) {
      if (change.kind == "message" && change.message) {
        const protocol::MessageInfo& m = *change.message;
        const bool own = !m.sender.empty() && m.sender == login_;
        held.reset();
        held.bind(1, m.id);
        const bool exists = held.executeStep();
        const bool had_seq = exists && held.getColumn(0).getInt() != 0;
        held.reset();
        SQLite::Statement& write = exists ? update : insert;
        write.reset();
        write.bind(1, m.id);
        write.bind(2, m.seq);
        write.bind(3, m.channel);
        write.bind(4, m.sender);
        write.bind(5, m.sender_name);
        write.bind(6, m.body);
        write.bind(7, static_cast<int>(m.priority));
        write.bind(8, m.require_ack ? 1 : 0);
        write.bind(9, m.created_at);
        write.bind(10, m.accepted_at);
        write.exec();
        if (attachments.replace(m.id, well_formed(m.attachments)))
          collect = true;

        seen_channel.reset();
        seen_channel.bind(1, m.channel);
        seen_channel.bind(2, std::string(protocol::to_string(m.channel_kind)));
        seen_channel.bind(3, title_for(m.channel, m.channel_kind, m.channel_title, login_));
        seen_channel.bind(4, m.channel_kind == protocol::ChannelKind::announcement ? 0 : 1);
        seen_channel.exec();

        if (own) {
          if (!had_seq)
            ++applied.echoed;
        } else if (!exists) {
          ++applied.new_messages;
          if (m.priority != protocol::Priority::normal)
            ++applied.urgent;
          delivered.push_back(m.id);
        }
      } else if (change.kind == "channel" && change.channel) {
        const protocol::ChannelMembership& c = *change.channel;
        if (c.member) {
          joined.reset();
          joined.bind(1, c.channel);
          joined.bind(2, std::string(protocol::to_string(c.kind)));
          joined.bind(3, title_for(c.channel, c.kind, c.title, login_));
          joined.bind(4, c.can_post || c.kind != protocol::ChannelKind::announcement ? 1 : 0);
          joined.exec();
          ++applied.channels_joined;
        } else {
          // The person's own messages the server never took stay: their outbox items are still
          // answered, and a refusal shows in their place. Attachments go with their messages
          // (ON DELETE CASCADE); their chunks once nothing else uses them.
          SQLite::Statement marks(db, R"sql(
            DELETE FROM message_marks WHERE message_id IN
              (SELECT id FROM messages WHERE channel = ? AND seq IS NOT NULL)
          )sql");
          marks.bind(1, c.channel);
          marks.exec();
          SQLite::Statement messages(db,
                                     "DELETE FROM messages WHERE channel = ? AND seq IS NOT NULL");
          messages.bind(1, c.channel);
          messages.exec();
          SQLite::Statement channel(db, "DELETE FROM channels WHERE id = ?");
          channel.bind(1, c.channel);
          channel.exec();
          std::erase_if(delivered, [&](const std::string& id) { return !message_known(db, id); });
          collect = true;
          ++applied.channels_left;
        }
      } else if (change.kind == "read_state" && change.read_state) {
        upsert_mark(db, change.read_state->message_id, change.read_state->read_at,
                    change.read_state->acked_at);
        ++applied.marks;
      } else if (change.kind == "statement" && !change.statement.empty()) {
        switch (detail::store_statement(db, change.statement, login_, detail::Uploaded::yes)) {
          case detail::StatementStored::added:
            ++applied.statements;
            break;
          case detail::StatementStored::held:
            break;
          case detail::StatementStored::skipped:
            ++applied.skipped;
            break;
        }
      } else {
        ++applied.skipped;
      }
    }

    if (collect)
      detail::collect_attachment_garbage(db);
    KABAN_TRYV(queue_receipts(store_, "delivered", delivered, now));
    if (!cursor.empty()) {
      SQLite::Statement save(db, R"sql(
        INSERT INTO meta (key, value) VALUES (?, ?)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value
      )sql");
      save.bind(1, std::string(kInboxCursorKey));
      save.bind(2, std::string(cursor));
      save.exec();
    }
    tx.commit();
    return applied;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::string> Messages::inbox_cursor() {
  try {
    SQLite::Statement q(store_.db(), "SELECT value FROM meta WHERE key = ?");
    q.bind(1, std::string(kInboxCursorKey));
    if (!q.executeStep())
      return std::string();
    return q.getColumn(0).getString();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<void> Messages::reset_inbox_cursor() {
  try {
    SQLite::Statement q(store_.db(), "DELETE FROM meta WHERE key = ?");
    q.bind(1, std::string(kInboxCursorKey));
    q.exec();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<MessageView>> Messages::list(const MessageFilter& filter) {
  try {
    SQLite::Database& db = store_.db();
    if (!filter.channel.empty() && !channel_known(db, filter.channel))
      return errc::not_found;
    SQLite::Statement q(db, "SELECT " + std::string(kMessageColumns) +
                                " WHERE (?2 = '' OR m.channel = ?2) AND (?3 = 0 OR (" +
                                std::string(kUnread) +
                                ")) AND (?4 = 0 OR m.sender = '') "
                                "ORDER BY m.seq IS NULL, m.seq, m.rowid");
    q.bind(1, login_);
    q.bind(2, filter.channel);
    q.bind(3, filter.unread_only ? 1 : 0);
    q.bind(4, filter.from_it_only ? 1 : 0);
    detail::AttachmentReader attachments(db);
    std::vector<MessageView> out;
    while (q.executeStep()) {
      out.push_back(read_message(q, login_));
      out.back().attachments = attachments.of(out.back().id);
    }
    return out;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::size_t> Messages::mark_read(std::span<const std::string> targets, std::int64_t now) {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    std::set<std::string> channels;
    std::set<std::string> ids;
    for (const std::string& target : targets) {
      auto channel = resolve_channel(target);
      if (channel && channel_known(db, channel.value()))
        channels.insert(std::move(channel).value());
      else if (message_known(db, target))
        ids.insert(target);
      else
        return errc::not_found;
    }
    SQLite::Statement unread(db,
                             "SELECT m.id, m.channel FROM messages m "
                             "LEFT JOIN message_marks k ON k.message_id = m.id WHERE " +
                                 std::string(kUnread) + " ORDER BY m.seq");
    unread.bind(1, login_);
    std::vector<std::string> marked;
    while (unread.executeStep()) {
      std::string id = unread.getColumn(0).getString();
      if (targets.empty() || ids.count(id) || channels.count(unread.getColumn(1).getString()))
        marked.push_back(std::move(id));
    }
    unread.reset();
    for (const std::string& id : marked)
      upsert_mark(db, id, now, 0);
    KABAN_TRYV(queue_receipts(store_, "read", marked, now));
    tx.commit();
    return marked.size();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<bool> Messages::acknowledge(std::string_view message_id, std::int64_t now) {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    SQLite::Statement q(db, "SELECT " + std::string(kMessageColumns) + " WHERE m.id = ?2");
    q.bind(1, login_);
    q.bind(2, std::string(message_id));
    if (!q.executeStep())
      return errc::not_found;
    const MessageView m = read_message(q, login_);
    q.reset();
    if (m.state != MessageState::sent || m.seq == 0)
      return errc::not_found;
    if (!m.require_ack)
      return errc::not_allowed;
    if (m.acked_at != 0)
      return false;
    upsert_mark(db, m.id, m.read ? 0 : now, now);
    if (!m.read) {
      KABAN_TRYV(queue_receipts(store_, "read", {m.id}, now));
    }
    protocol::OutboxItem item;
    item.kind = "ack";
    item.ack = protocol::Acknowledgement{m.id, now};
    KABAN_TRYV(Outbox(store_).enqueue(std::move(item), now));
    tx.commit();
    return true;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::size_t> Messages::unread_count() {
  try {
    SQLite::Statement q(store_.db(),
                        "SELECT count(*) FROM messages m "
                        "LEFT JOIN message_marks k ON k.message_id = m.id WHERE " +
                            std::string(kUnread));
    q.bind(1, login_);
    q.executeStep();
    return static_cast<std::size_t>(q.getColumn(0).getInt64());
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

}  // namespace kaban::agent
