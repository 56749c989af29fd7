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
#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/xapi.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/learning_records.hpp"

// Messaging::apply_outbox: what a device uploads, applied at most once per item.

namespace kaban::server {
namespace {

using namespace detail;
using protocol::ChannelKind;
using protocol::OutboxStatus;

constexpr const char* kStateDelivered = "delivered";
constexpr const char* kStateRead = "read";

struct Outcome {
  OutboxStatus status = OutboxStatus::accepted;
  std::string code;
  std::string reason;
};

Outcome accepted() {
  return {};
}

Outcome rejected(std::string code, std::string reason) {
  return {OutboxStatus::rejected, std::move(code), std::move(reason)};
}

std::string status_text(OutboxStatus status) {
  return std::string(protocol::to_string(status));
}

// What one device's upload is applied as.
struct Poster {
  SQLite::Database& db;
  std::string device_id;
  std::string login;
  std::string name;
  UnixTime now;
};

// The message `message_id` if :login may read it now: its require_ack, or std::nullopt.
std::optional<bool> visible_message(SQLite::Database& db, std::string_view login,
                                    std::string_view message_id) {
  SQLite::Statement query(db, std::string("SELECT require_ack FROM messages WHERE id = :id AND "
                                          "channel_id IN (") +
                                  kVisibleChannels + ")");
  query.bind(":id", std::string(message_id));
  query.bind(":login", std::string(login));
  if (!query.executeStep())
    return std::nullopt;
  return query.getColumn(0).getInt() != 0;
}

enum class Mark { delivered, read, acked };

// Records a person's mark on a message. Delivery only ever moves earlier and travels nowhere;
// the first read and the first acknowledgement take a new inbox sequence, which carries them to
// the person's other devices. Later marks of the same kind change nothing.
void record_mark(SQLite::Database& db, std::string_view message_id, std::string_view login,
                 Mark mark, std::int64_t at) {
  SQLite::Statement query(db,
                          "SELECT delivered_at, read_at, acked_at FROM receipts "
                          "WHERE message_id = ? AND login = ?");
  query.bind(1, std::string(message_id));
  query.bind(2, std::string(login));
  std::optional<std::int64_t> delivered, read, acked;
  const bool exists = query.executeStep();
  if (exists) {
    auto column = [&](int i) -> std::optional<std::int64_t> {
      if (query.getColumn(i).isNull())
        return std::nullopt;
      return query.getColumn(i).getInt64();
    };
    delivered = column(0);
    read = column(1);
    acked = column(2);
  }
  query.reset();
  bool travels = false;
  delivered = delivered ? std::min(*delivered, at) : at;
  if ((mark == Mark::read || mark == Mark::acked) && !read) {
    read = at;
    travels = true;
  }
  if (mark == Mark::acked && !acked) {
    acked = at;
    travels = true;
  }
  SQLite::Statement write(db, exists ? "UPDATE receipts SET delivered_at = :delivered, read_at = "
                                       ":read, acked_at = :acked, seq = coalesce(:seq, seq) "
                                       "WHERE message_id = :id AND login = :login"
                                     : "INSERT INTO receipts(message_id, login, delivered_at, "
                                       "read_at, acked_at, seq) VALUES (:id, :login, :delivered, "
                                       ":read, :acked, :seq)");
  auto bind = [&](const char* name, const std::optional<std::int64_t>& v) {
    if (v)
      write.bind(name, *v);
    else
      write.bind(name);
  };
  write.bind(":id", std::string(message_id));
  write.bind(":login", std::string(login));
  bind(":delivered", delivered);
  bind(":read", read);
  bind(":acked", acked);
  bind(":seq", travels ? std::optional<std::int64_t>(detail::next_inbox_seq(db)) : std::nullopt);
  write.exec();
}

Outcome apply_message(Poster& p, const protocol::OutboxItem& item) {
  const protocol::NewMessage& m = *item.message;
  const auto kind = protocol::channel_kind(m.channel);
  if (!kind)
    return rejected("malformed", in_quotes(m.channel) + " is not a channel id");
  if (!is_valid_body(m.body))
    return rejected("malformed", "a message is 1 to " + std::to_string(protocol::kMaxMessageBody) +
                                     " bytes of text");
  // The parser checked the attachments too; the rows must not depend on that.
  if (m.attachments.size() > protocol::kMaxAttachments)
    return rejected("malformed", "a message carries at most " +
                                     std::to_string(protocol::kMaxAttachments) + " attachments");
  for (const protocol::Attachment& a : m.attachments) {
    if (std::string problem = protocol::check_attachment(a); !problem.empty())
      return rejected("malformed", std::move(problem));
  }
  if (m.require_ack && *kind != ChannelKind::announcement)
    return rejected("ack_not_allowed",
                    "only announcements can ask for acknowledgement; send it without asking");
  {
    SQLite::Statement taken(p.db, "SELECT 1 FROM messages WHERE id = ?");
    taken.bind(1, item.id);
    if (taken.executeStep())
      return rejected("id_reused", "another message already has the id " + item.id +
                                       "; the agent must give each message a new id");
  }
  // Before the channel checks: those may open a direct conversation, which a rejection must not
  // leave behind.
  if (const MissingChunk missing = find_missing_chunk(p.db, m.attachments); missing.attachment)
    return rejected("attachment_missing",
                    "the attachment " + in_quotes(missing.attachment->name) +
                        " did not reach the server (chunk " +
                        std::to_string(missing.chunk_index + 1) + " of " +
                        std::to_string(missing.attachment->chunks.size()) +
                        " is missing); send the message again with the file attached");
  auto channel = find_channel(p.db, m.channel);
  switch (*kind) {
    case ChannelKind::group:
      if (!channel)
        return rejected("no_such_channel",
                        "there is no channel " + in_quotes(m.channel) + "; ask IT to create it");
      if (!holds_role(p.db, m.channel, p.login, kMemberRole))
        return rejected("not_a_member",
                        "you are not a member of " + in_quotes(m.channel) + "; ask IT to add you");
      break;
    case ChannelKind::announcement:
      if (!channel)
        return rejected("no_such_channel", "there is no announcement channel " +
                                               in_quotes(m.channel) + "; ask IT to create it");
      if (!holds_role(p.db, m.channel, p.login, kSenderRole))
        return rejected("not_a_sender", "only IT and the senders it names post to " +
                                            in_quotes(m.channel) + "; ask IT to name you a sender");
      break;
    case ChannelKind::direct: {
      const std::string peer = protocol::direct_peer(m.channel, p.login);
      if (peer.empty())
        return rejected("not_a_member",
                        in_quotes(m.channel) + " is a conversation of two other people");
      if (!user_name(p.db, peer))
        return rejected("no_such_user", "there is no user " + in_quotes(peer) + " to write to");
      if (!channel) {
        // The first message opens the conversation. Its title stays empty: each side shows the
        // other person.
        insert_channel(p.db, {m.channel, ChannelKind::direct, "", ""}, p.now);
        set_role(p.db, m.channel, p.login, kMemberRole, true, p.now);
        set_role(p.db, m.channel, peer, kMemberRole, true, p.now);
      } else if (!holds_role(p.db, m.channel, p.login, kMemberRole)) {
        return rejected("not_a_member", "you are not a member of " + in_quotes(m.channel));
      }
      break;
    }
  }
  MessageRow row;
  row.id = item.id;
  row.channel = m.channel;
  row.sender = p.login;  // never taken from the upload: a device speaks for its user only
  row.sender_name = p.name;
  row.body = m.body;
  row.priority = m.priority;
  row.require_ack = m.require_ack;
  row.created_at = m.created_at;
  row.device_id = std::string(p.device_id);
  row.device_seq = item.seq;
  insert_message(p.db, row, p.now);
  insert_attachments(p.db, item.id, m.attachments);
  return accepted();
}

Outcome apply_receipt(Poster& p, const protocol::OutboxItem& item) {
  const protocol::ReceiptBatch& r = *item.receipt;
  if (r.state != kStateDelivered && r.state != kStateRead)
    return rejected("malformed",
                    "a receipt's state is \"delivered\" or \"read\", not " + in_quotes(r.state));
  if (r.message_ids.empty() || r.message_ids.size() > protocol::kMaxReceiptMessages)
    return rejected("malformed", "a receipt names 1 to " +
                                     std::to_string(protocol::kMaxReceiptMessages) + " messages");
  for (const std::string& id : r.message_ids) {
    if (!visible_message(p.db, p.login, id))
      return rejected("not_visible", "message " + id + " is not one you can see");
  }
  const Mark mark = r.state == kStateRead ? Mark::read : Mark::delivered;
  for (const std::string& id : r.message_ids)
    record_mark(p.db, id, p.login, mark, r.at);
  return accepted();
}

Outcome apply_ack(Poster& p, const protocol::OutboxItem& item) {
  const protocol::Acknowledgement& a = *item.ack;
  const auto require_ack = visible_message(p.db, p.login, a.message_id);
  if (!require_ack)
    return rejected("not_visible", "message " + a.message_id + " is not one you can see");
  if (!*require_ack)
    return rejected("ack_not_required",
                    "message " + a.message_id + " does not ask for acknowledgement");
  record_mark(p.db, a.message_id, p.login, Mark::acked, a.at);
  return accepted();
}

Result<Outcome> apply_statement(Poster& p, const protocol::OutboxItem& item) {
  std::string why;
  auto facts = protocol::xapi::read_statement(item.statement, &why);
  if (!facts)
    return rejected("malformed", why.empty() ? facts.error().message() : why);
  if (facts.value().login != p.login)
    return rejected("forged_actor", "the statement's actor is " + in_quotes(facts.value().login) +
                                        "; a device records statements for its own user only");
  LearningRecords records(p.db);
  KABAN_TRY(outcome, records.store(facts.value(), p.device_id, p.now));
  switch (outcome) {
    case StatementOutcome::stored:
      return accepted();
    case StatementOutcome::duplicate:
      return Outcome{OutboxStatus::duplicate, "", ""};
    case StatementOutcome::conflict:
      break;
  }
  return rejected("conflict", "statement " + facts.value().id +
                                  " is already stored with other content; a statement never "
                                  "changes, so record a new one with a new id");
}

Result<Outcome> apply_item(Poster& p, const protocol::OutboxItem& item) {
  if (!item.invalid.empty())
    return rejected("malformed", item.invalid);
  if (item.kind == "message" && item.message)
    return apply_message(p, item);
  if (item.kind == "receipt" && item.receipt)
    return apply_receipt(p, item);
  if (item.kind == "ack" && item.ack)
    return apply_ack(p, item);
  if (item.kind == "statement")
    return apply_statement(p, item);
  return rejected("malformed",
                  "an outbox item of kind " + in_quotes(item.kind) + " without its content");
}

// What the log says about an item the device sent before: its first answer again (accepted
// turns into duplicate), or id_reused if the id or the seq belongs to another item; std::nullopt
// for an item never seen.
std::optional<Outcome> find_logged(Poster& p, const protocol::OutboxItem& item) {
  SQLite::Statement query(p.db,
                          "SELECT device_id, seq, item_id, status, code, reason FROM outbox_log "
                          "WHERE (device_id = ? AND seq = ?) OR item_id = ?");
  query.bind(1, p.device_id);
  query.bind(2, item.seq);
  query.bind(3, item.id);
  std::optional<Outcome> clash;
  while (query.executeStep()) {
    const bool same_seq =
        query.getColumn(0).getString() == p.device_id && query.getColumn(1).getInt64() == item.seq;
    const bool same_id = query.getColumn(2).getString() == item.id;
    if (same_seq && same_id) {
      if (query.getColumn(3).getString() == status_text(OutboxStatus::rejected))
        return rejected(query.getColumn(4).getString(), query.getColumn(5).getString());
      return Outcome{OutboxStatus::duplicate, "", ""};
    }
    clash = same_id ? rejected("id_reused", "the id " + item.id +
                                                " was already used by another outbox item; the "
                                                "agent must give each item a new id")
                    : rejected("id_reused", "this device already sent item " +
                                                std::to_string(item.seq) +
                                                " with another id; the agent must number items "
                                                "without reusing a number");
  }
  return clash;
}

void log_item(Poster& p, const protocol::OutboxItem& item, const Outcome& outcome) {
  SQLite::Statement insert(p.db,
                           "INSERT INTO outbox_log(device_id, seq, item_id, kind, status, code, "
                           "reason, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  insert.bind(1, p.device_id);
  insert.bind(2, item.seq);
  insert.bind(3, item.id);
  insert.bind(4, item.kind);
  insert.bind(5, status_text(outcome.status));
  insert.bind(6, outcome.code);
  insert.bind(7, outcome.reason);
  insert.bind(8, to_unix(p.now));
  insert.exec();
}

// Sets the connection's synchronous mode for the life of the object, then back to NORMAL.
class SynchronousFull {
 public:
  explicit SynchronousFull(SQLite::Database& db) : db_(db) { db_.exec("PRAGMA synchronous=FULL"); }
  SynchronousFull(const SynchronousFull&) = delete;
  SynchronousFull& operator=(const SynchronousFull&) = delete;
  ~SynchronousFull() {
    try {
      db_.exec("PRAGMA synchronous=NORMAL");
    } catch (const SQLite::Exception&) {
      // FULL only costs time; the connection stays usable.
    }
  }

 private:
  SQLite::Database& db_;
};

}  // namespace

Result<protocol::OutboxAnswer> Messaging::apply_outbox(std::string_view device_id,
                                                       std::string_view login,
                                                       std::span<const protocol::OutboxItem> items,
                                                       UnixTime now) {
  protocol::OutboxAnswer answer;
  try {
    SynchronousFull full(db_);
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    auto name = user_name(db_, login);
    if (!name)
      return errc::no_such_user;
    Poster poster{db_, std::string(device_id), std::string(login), std::move(*name), now};
    SQLite::Statement last(db_, "SELECT coalesce(max(seq), 0) FROM outbox_log WHERE device_id = ?");
    last.bind(1, poster.device_id);
    last.executeStep();
    std::int64_t last_seq = last.getColumn(0).getInt64();
    last.reset();

    for (const protocol::OutboxItem& item : items) {
      // Each item in a savepoint of its own: one that fails for a storage reason is undone
      // alone, and the answer covers the items before it.
      db_.exec("SAVEPOINT outbox_item");
      Result<Outcome> outcome = errc::storage_failed;
      bool logged_before = false;
      try {
        if (auto logged = find_logged(poster, item)) {
          outcome = std::move(*logged);
          logged_before = true;
        } else if (item.seq < last_seq) {
          outcome = rejected("out_of_order", "item " + std::to_string(item.seq) +
                                                 " arrived after item " + std::to_string(last_seq) +
                                                 " of this device; items are applied in order");
        } else {
          outcome = apply_item(poster, item);
        }
        if (outcome && !logged_before) {
          log_item(poster, item, outcome.value());
          last_seq = std::max(last_seq, item.seq);
        }
      } catch (const SQLite::Exception&) {
        outcome = errc::storage_failed;
      }
      if (!outcome) {
        db_.exec("ROLLBACK TO outbox_item; RELEASE outbox_item");
        break;
      }
      db_.exec("RELEASE outbox_item");
      answer.results.push_back({item.id, item.seq, outcome.value().status,
                                std::move(outcome.value().code),
                                std::move(outcome.value().reason)});
    }
    if (answer.results.empty() && !items.empty())
      return errc::storage_failed;
    transaction.commit();
    return answer;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::server
