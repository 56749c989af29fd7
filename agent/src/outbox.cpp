#include "kaban/agent/outbox.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include "attachment_rows.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/protocol/xapi.hpp"

namespace kaban::agent {
namespace {

using nlohmann::json;

// Longest piece of a message body `kaban outbox` shows on its one line.
constexpr std::size_t kPreviewBytes = 60;

bool known_kind(std::string_view kind) {
  return kind == "message" || kind == "receipt" || kind == "ack" || kind == "statement";
}

json attachments_json(const std::vector<protocol::Attachment>& attachments) {
  json list = json::array();
  for (const protocol::Attachment& a : attachments) {
    json chunks = json::array();
    for (const protocol::ChunkRef& c : a.chunks)
      chunks.push_back({{"sha256", c.sha256}, {"size", c.size}});
    list.push_back({{"name", a.name},
                    {"media_type", a.media_type},
                    {"size", a.size},
                    {"sha256", a.sha256},
                    {"chunks", std::move(chunks)}});
  }
  return list;
}

// Throws json::exception on a missing or mistyped field, like the rest of decode_payload.
std::vector<protocol::Attachment> read_attachments(const json& list) {
  std::vector<protocol::Attachment> attachments;
  for (const json& j : list) {
    protocol::Attachment a;
    a.name = j.at("name").get<std::string>();
    a.media_type = j.at("media_type").get<std::string>();
    a.size = j.at("size").get<std::uint64_t>();
    a.sha256 = j.at("sha256").get<std::string>();
    for (const json& c : j.at("chunks"))
      a.chunks.push_back({c.at("sha256").get<std::string>(), c.at("size").get<std::uint64_t>()});
    attachments.push_back(std::move(a));
  }
  return attachments;
}

// The payload column: the kind's own fields, so the item can be rebuilt exactly as queued.
Result<std::string> encode_payload(const protocol::OutboxItem& item) {
  if (item.kind == "message" && item.message) {
    const protocol::NewMessage& m = *item.message;
    json payload{{"channel", m.channel},
                 {"body", m.body},
                 {"priority", std::string(protocol::to_string(m.priority))},
                 {"require_ack", m.require_ack},
                 {"created_at", m.created_at}};
    if (!m.attachments.empty())
      payload["attachments"] = attachments_json(m.attachments);
    return payload.dump();
  }
  if (item.kind == "receipt" && item.receipt) {
    const protocol::ReceiptBatch& r = *item.receipt;
    return json{{"state", r.state}, {"message_ids", r.message_ids}, {"at", r.at}}.dump();
  }
  if (item.kind == "ack" && item.ack)
    return json{{"message_id", item.ack->message_id}, {"at", item.ack->at}}.dump();
  if (item.kind == "statement" && !item.statement.empty())
    return item.statement;
  return errc::invalid_input;
}

// The inverse of encode_payload. The text was written by this agent, so a failure means the
// row was damaged or written by a build that encoded differently.
Result<protocol::OutboxItem> decode_payload(std::string id, std::int64_t seq, std::string kind,
                                            std::string payload) {
  protocol::OutboxItem item;
  item.id = std::move(id);
  item.seq = seq;
  item.kind = std::move(kind);
  try {
    if (item.kind == "statement") {
      item.statement = std::move(payload);
      return item;
    }
    const json j = json::parse(payload);
    if (item.kind == "message") {
      protocol::NewMessage m;
      m.channel = j.at("channel").get<std::string>();
      m.body = j.at("body").get<std::string>();
      const auto priority = protocol::parse_priority(j.at("priority").get<std::string>());
      if (!priority)
        return errc::bad_response;
      m.priority = *priority;
      m.require_ack = j.at("require_ack").get<bool>();
      m.created_at = j.at("created_at").get<std::int64_t>();
      // Rows queued before attachments existed have no such field.
      if (const auto found = j.find("attachments"); found != j.end())
        m.attachments = read_attachments(*found);
      for (const protocol::Attachment& a : m.attachments) {
        if (!protocol::check_attachment(a).empty())
          return errc::bad_response;
      }
      item.message = std::move(m);
    } else if (item.kind == "receipt") {
      protocol::ReceiptBatch r;
      r.state = j.at("state").get<std::string>();
      r.message_ids = j.at("message_ids").get<std::vector<std::string>>();
      r.at = j.at("at").get<std::int64_t>();
      item.receipt = std::move(r);
    } else if (item.kind == "ack") {
      protocol::Acknowledgement a;
      a.message_id = j.at("message_id").get<std::string>();
      a.at = j.at("at").get<std::int64_t>();
      item.ack = std::move(a);
    } else {
      return errc::bad_response;
    }
    return item;
  } catch (const json::exception&) {
    return errc::bad_response;
  }
}

std::int64_t item_time(const protocol::OutboxItem& item, std::int64_t now) {
  if (item.message && item.message->created_at)
    return item.message->created_at;
  if (item.receipt && item.receipt->at)
    return item.receipt->at;
  if (item.ack && item.ack->at)
    return item.ack->at;
  return now;
}

// Cuts at a UTF-8 character boundary and folds line breaks, for a one-line listing.
std::string preview(std::string_view text) {
  std::string out;
  std::size_t end = std::min(text.size(), kPreviewBytes);
  while (end < text.size() && end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80)
    --end;
  for (std::size_t i = 0; i < end; ++i)
    out += (text[i] == '\n' || text[i] == '\t') ? ' ' : text[i];
  if (end < text.size())
    out += "...";
  return out;
}

std::string describe(const protocol::OutboxItem& item) {
  if (item.message) {
    std::string text = "message to " + item.message->channel + ": " + preview(item.message->body);
    const std::size_t n = item.message->attachments.size();
    if (n)
      text += " (" + std::to_string(n) + " attachment" + (n == 1 ? ")" : "s)");
    return text;
  }
  if (item.receipt) {
    const std::size_t n = item.receipt->message_ids.size();
    return item.receipt->state + " receipt for " + std::to_string(n) + " message" +
           (n == 1 ? "" : "s");
  }
  if (item.ack)
    return "acknowledgement of message " + item.ack->message_id;
  if (item.kind == "statement") {
    auto facts = protocol::xapi::read_statement(item.statement);
    if (!facts)
      return "learning statement";
    std::string verb(protocol::xapi::verb_name(facts.value().verb));
    std::string object = facts.value().course_id;
    if (!facts.value().lesson_id.empty())
      object += "/" + facts.value().lesson_id;
    return "learning statement: " + (verb.empty() ? facts.value().verb : verb) + " " +
           (object.empty() ? facts.value().object_id : object);
  }
  return item.kind;
}

// The side effects of an answer on the rows the item stands for.
void settle(SQLite::Database& db, const protocol::OutboxItem& item,
            const protocol::OutboxResult& r) {
  if (r.status == protocol::OutboxStatus::rejected) {
    const std::string reason = r.reason.empty() ? "the server refused it" : r.reason;
    SQLite::Statement mark(
        db, "UPDATE outbox SET state = 'rejected', code = ?, reason = ? WHERE id = ?");
    mark.bind(1, r.code);
    mark.bind(2, reason);
    mark.bind(3, item.id);
    mark.exec();
    if (item.kind == "message") {
      SQLite::Statement message(db, R"sql(
        UPDATE messages SET state = 'rejected', reason = ? WHERE id = ? AND seq IS NULL
      )sql");
      message.bind(1, reason);
      message.bind(2, item.id);
      message.exec();
    } else if (item.kind == "ack" && item.ack) {
      // The person's acknowledgement did not count: show the message as still needing one,
      // unless a mark from the server (another time) has replaced this one since.
      SQLite::Statement unmark(
          db, "UPDATE message_marks SET acked_at = 0 WHERE message_id = ? AND acked_at = ?");
      unmark.bind(1, item.ack->message_id);
      unmark.bind(2, item.ack->at);
      unmark.exec();
    }
    return;
  }
  SQLite::Statement remove(db, "DELETE FROM outbox WHERE id = ?");
  remove.bind(1, item.id);
  remove.exec();
  if (item.kind == "message") {
    SQLite::Statement message(
        db, "UPDATE messages SET state = 'sent', reason = '' WHERE id = ? AND state = 'pending'");
    message.bind(1, item.id);
    message.exec();
  } else if (item.kind == "statement") {
    SQLite::Statement statement(db, "UPDATE statements SET uploaded = 1 WHERE id = ?");
    statement.bind(1, item.id);
    statement.exec();
  }
}

}  // namespace

Result<protocol::OutboxItem> Outbox::enqueue(protocol::OutboxItem item, std::int64_t now) {
  if (!known_kind(item.kind))
    return errc::invalid_input;
  if (item.id.empty())
    item.id = protocol::new_uuid();
  if (!protocol::is_valid_uuid(item.id))
    return errc::invalid_input;
  KABAN_TRY(payload, encode_payload(item));
  try {
    SQLite::Statement insert(store_.db(), R"sql(
      INSERT INTO outbox (id, kind, payload, created_at) VALUES (?, ?, ?, ?)
    )sql");
    insert.bind(1, item.id);
    insert.bind(2, item.kind);
    insert.bind(3, payload);
    insert.bind(4, item_time(item, now));
    insert.exec();
    item.seq = store_.db().getLastInsertRowid();
    return item;
  } catch (const SQLite::Exception& e) {
    if (e.getExtendedErrorCode() == SQLITE_CONSTRAINT_UNIQUE)
      return std::make_error_code(std::errc::file_exists);
    return store_error_code(e);
  }
}

Result<protocol::OutboxUpload> Outbox::next_batch(std::size_t max_items, std::size_t max_bytes) {
  protocol::OutboxUpload upload;
  try {
    SQLite::Statement query(store_.db(), R"sql(
      SELECT seq, id, kind, payload FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?
    )sql");
    query.bind(1, static_cast<std::int64_t>(std::max<std::size_t>(max_items, 1)));
    std::vector<std::string> unreadable;
    // The upload is a JSON array of the items: its size is the empty envelope plus each item's
    // own text plus the commas between them, so each item is serialised once, alone.
    const std::size_t envelope = protocol::to_json(protocol::OutboxUpload{}).size();
    std::size_t bytes = envelope;
    while (query.executeStep()) {
      auto item = decode_payload(query.getColumn(1).getString(), query.getColumn(0).getInt64(),
                                 query.getColumn(2).getString(), query.getColumn(3).getString());
      if (!item) {
        unreadable.push_back(query.getColumn(1).getString());
        continue;
      }
      protocol::OutboxUpload alone;
      alone.items.push_back(item.value());
      const std::size_t item_bytes =
          protocol::to_json(alone).size() - envelope + (upload.items.empty() ? 0 : 1);
      if (!upload.items.empty() && bytes + item_bytes > max_bytes)
        break;
      bytes += item_bytes;
      upload.items.push_back(std::move(item).value());
    }
    query.reset();
    // An item this build cannot read back would block nothing (later items still go) but would
    // be retried forever: it is set aside as rejected, where the person sees it.
    for (const std::string& id : unreadable) {
      SQLite::Statement mark(store_.db(), R"sql(
        UPDATE outbox SET state = 'rejected', code = 'unreadable',
                          reason = 'this item could not be read back from the store; discard it'
        WHERE id = ?
      )sql");
      mark.bind(1, id);
      mark.exec();
    }
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
  // The estimate is exact for a plain JSON array; this guards a serialiser that is not.
  while (upload.items.size() > 1 && protocol::to_json(upload).size() > max_bytes)
    upload.items.pop_back();
  return upload;
}

Result<OutboxApplied> Outbox::apply_answer(const protocol::OutboxUpload& sent,
                                           const protocol::OutboxAnswer& answer) {
  if (answer.results.size() > sent.items.size())
    return errc::bad_response;
  for (std::size_t i = 0; i < answer.results.size(); ++i) {
    const protocol::OutboxResult& r = answer.results[i];
    if (r.id != sent.items[i].id || (r.seq != 0 && r.seq != sent.items[i].seq))
      return errc::bad_response;
  }
  OutboxApplied applied;
  applied.unanswered = sent.items.size() - answer.results.size();
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    SQLite::Statement held(db, "SELECT 1 FROM outbox WHERE id = ? AND state = 'pending'");
    for (std::size_t i = 0; i < answer.results.size(); ++i) {
      const protocol::OutboxResult& r = answer.results[i];
      held.reset();
      held.bind(1, r.id);
      if (!held.executeStep())
        continue;
      held.reset();
      settle(db, sent.items[i], r);
      switch (r.status) {
        case protocol::OutboxStatus::accepted:
          ++applied.accepted;
          break;
        case protocol::OutboxStatus::duplicate:
          ++applied.duplicate;
          break;
        case protocol::OutboxStatus::rejected:
          ++applied.rejected;
          break;
      }
    }
    tx.commit();
    return applied;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<OutboxEntry>> Outbox::list() {
  try {
    SQLite::Statement query(store_.db(), R"sql(
      SELECT seq, id, kind, payload, created_at, state, code, reason FROM outbox ORDER BY seq
    )sql");
    std::vector<OutboxEntry> entries;
    while (query.executeStep()) {
      OutboxEntry e;
      e.seq = query.getColumn(0).getInt64();
      e.id = query.getColumn(1).getString();
      e.kind = query.getColumn(2).getString();
      e.created_at = query.getColumn(4).getInt64();
      e.rejected = query.getColumn(5).getString() == "rejected";
      e.code = query.getColumn(6).getString();
      e.reason = query.getColumn(7).getString();
      auto item = decode_payload(e.id, e.seq, e.kind, query.getColumn(3).getString());
      e.description = item ? describe(item.value()) : e.kind + " (unreadable)";
      entries.push_back(std::move(e));
    }
    return entries;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<OutboxCounts> Outbox::counts() {
  try {
    SQLite::Statement query(store_.db(), R"sql(
      SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'rejected'), 0) FROM outbox
    )sql");
    query.executeStep();
    OutboxCounts counts;
    counts.pending = static_cast<std::size_t>(query.getColumn(0).getInt64());
    counts.rejected = static_cast<std::size_t>(query.getColumn(1).getInt64());
    return counts;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<void> Outbox::discard(std::string_view id) {
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    SQLite::Statement query(db, "SELECT kind, state FROM outbox WHERE id = ?");
    query.bind(1, std::string(id));
    if (!query.executeStep())
      return errc::not_found;
    const std::string kind = query.getColumn(0).getString();
    if (query.getColumn(1).getString() != "rejected")
      return errc::not_allowed;
    query.reset();
    SQLite::Statement remove(db, "DELETE FROM outbox WHERE id = ?");
    remove.bind(1, std::string(id));
    remove.exec();
    if (kind == "message") {
      // Its attachments go with it (ON DELETE CASCADE), and their chunks if nothing else uses
      // them.
      SQLite::Statement message(db, "DELETE FROM messages WHERE id = ? AND state = 'rejected'");
      message.bind(1, std::string(id));
      if (message.exec() > 0)
        detail::collect_attachment_garbage(db);
    } else if (kind == "statement") {
      // The server will never hold it, so it would show as "pending upload" for ever.
      SQLite::Statement statement(db, "DELETE FROM statements WHERE id = ? AND uploaded = 0");
      statement.bind(1, std::string(id));
      statement.exec();
    }
    tx.commit();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

}  // namespace kaban::agent
