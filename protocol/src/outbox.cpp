#include "kaban/protocol/outbox.hpp"

#include <set>

#include <nlohmann/json.hpp>

#include "attachment_json.hpp"
#include "json_reader.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/xapi.hpp"
#include "wire_limits.hpp"

namespace kaban::protocol {
namespace {

using detail::JsonReader;
using detail::kLatestTime;
using detail::kMaxChannelId;
using detail::kUuidSize;
using detail::Unknown;
using nlohmann::json;

constexpr std::size_t kMaxKind = 32;
constexpr std::size_t kMaxPriority = 16;
constexpr std::size_t kMaxReceiptState = 16;
constexpr std::size_t kMaxCode = 64;
constexpr std::size_t kMaxReason = 4096;

json message_json(const NewMessage& m) {
  json j = {{"channel", m.channel},
            {"body", m.body},
            {"priority", to_string(m.priority)},
            {"require_ack", m.require_ack},
            {"created_at", m.created_at}};
  detail::write_attachments(m.attachments, j);
  return j;
}

json receipt_json(const ReceiptBatch& r) {
  return {{"state", r.state}, {"messages", r.message_ids}, {"at", r.at}};
}

json ack_json(const Acknowledgement& a) {
  return {{"message", a.message_id}, {"at", a.at}};
}

// The statement travels as a JSON object. Text that is not one (an agent's bug) goes as a string,
// which the server rejects as that item alone.
json statement_json(const std::string& statement) {
  if (detail::nests_deeper_than(statement, detail::kMaxJsonDepth))
    return statement;
  json j = json::parse(statement, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return statement;
  return j;
}

json item_json(const OutboxItem& item) {
  json j = {{"id", item.id}, {"seq", item.seq}, {"kind", item.kind}};
  if (item.message)
    j["message"] = message_json(*item.message);
  if (item.receipt)
    j["receipt"] = receipt_json(*item.receipt);
  if (item.ack)
    j["ack"] = ack_json(*item.ack);
  if (item.kind == "statement")
    j["statement"] = statement_json(item.statement);
  return j;
}

// Reads `key` as a message id; a problem is recorded on `r`.
std::string read_message_id(JsonReader& r, std::string_view key) {
  std::string id = r.text(key, kUuidSize);
  if (r.ok() && !is_valid_uuid(id))
    r.fail(errc::invalid_value, r.where() + ": \"" + std::string(key) + "\" is not a UUID");
  return id;
}

NewMessage read_message(const json& j, const std::string& where, JsonReader& item) {
  JsonReader r(j, where + " message", Unknown::refuse);
  NewMessage m;
  m.channel = r.text("channel", kMaxChannelId);
  m.body = r.text("body", kMaxMessageBody);
  const std::string priority = r.text("priority", kMaxPriority, /*required=*/false);
  m.require_ack = r.boolean("require_ack", /*required=*/false);
  m.created_at = r.integer("created_at", 0, kLatestTime);
  m.attachments = detail::read_attachments(r, Unknown::refuse);
  const std::optional<ChannelKind> kind = channel_kind(m.channel);
  if (r.ok() && !kind)
    r.fail(errc::invalid_value, r.where() + ": \"channel\" is not a valid channel id");
  if (r.ok() && m.body.empty())
    r.fail(errc::invalid_value, r.where() + ": \"body\" is empty");
  if (r.ok() && !is_valid_message_text(m.body))
    r.fail(errc::invalid_value, r.where() +
                                    ": \"body\" is not UTF-8 text (control characters other "
                                    "than tab and newline are not allowed)");
  if (r.ok() && !priority.empty()) {
    if (const std::optional<Priority> p = parse_priority(priority))
      m.priority = *p;
    else
      r.fail(errc::invalid_value,
             r.where() + ": \"priority\" is not one of normal, urgent, emergency");
  }
  if (r.ok() && m.require_ack && kind != ChannelKind::announcement)
    r.fail(errc::invalid_value,
           r.where() + ": \"require_ack\" is only for messages on announcement channels");
  std::string why;
  if (!r.finish(&why))
    item.fail(errc::invalid_value, why);
  return m;
}

ReceiptBatch read_receipt(const json& j, const std::string& where, JsonReader& item) {
  JsonReader r(j, where + " receipt", Unknown::refuse);
  ReceiptBatch b;
  b.state = r.text("state", kMaxReceiptState);
  if (r.ok() && b.state != "delivered" && b.state != "read")
    r.fail(errc::invalid_value, r.where() + ": \"state\" is not one of delivered, read");
  if (const json* ids = r.array("messages", kMaxReceiptMessages)) {
    if (ids->empty())
      r.fail(errc::invalid_value, r.where() + ": \"messages\" is empty");
    for (const json& id : *ids) {
      if (!id.is_string() || !is_valid_uuid(id.get_ref<const std::string&>())) {
        r.fail(errc::invalid_value, r.where() + ": \"messages\" must be a list of UUIDs");
        break;
      }
      b.message_ids.push_back(id.get<std::string>());
    }
  }
  b.at = r.integer("at", 0, kLatestTime);
  std::string why;
  if (!r.finish(&why))
    item.fail(errc::invalid_value, why);
  return b;
}

Acknowledgement read_ack(const json& j, const std::string& where, JsonReader& item) {
  JsonReader r(j, where + " ack", Unknown::refuse);
  Acknowledgement a;
  a.message_id = read_message_id(r, "message");
  a.at = r.integer("at", 0, kLatestTime);
  std::string why;
  if (!r.finish(&why))
    item.fail(errc::invalid_value, why);
  return a;
}

// The xAPI content is the server's to judge (xapi::read_statement); here only its size.
std::string read_statement_text(const json& j, JsonReader& item) {
  std::string text = detail::dump_json(j);
  if (text.size() > xapi::kMaxStatementSize) {
    item.fail(errc::too_large, item.where() + ": \"statement\" is longer than " +
                                   std::to_string(xapi::kMaxStatementSize) + " bytes");
    return {};
  }
  return text;
}

// Reads everything but id and seq. Problems end up in `item.invalid`, not in the upload's result.
void read_payload(const json& j, const std::string& where, OutboxItem& item) {
  JsonReader r(j, where, Unknown::refuse);
  // The caller has read id and seq; reading them again tells the reader they are known fields.
  r.text("id", kUuidSize);
  r.integer("seq", 1, INT64_MAX);
  item.kind = r.text("kind", kMaxKind);
  if (r.ok()) {
    if (item.kind == "message") {
      if (const json* m = r.object("message"))
        item.message = read_message(*m, where, r);
    } else if (item.kind == "receipt") {
      if (const json* b = r.object("receipt"))
        item.receipt = read_receipt(*b, where, r);
    } else if (item.kind == "ack") {
      if (const json* a = r.object("ack"))
        item.ack = read_ack(*a, where, r);
    } else if (item.kind == "statement") {
      if (const json* s = r.object("statement"))
        item.statement = read_statement_text(*s, r);
    } else {
      // The kind is not echoed: the reason is shown to a person, and this text came from anyone.
      r.fail(errc::invalid_value,
             where + ": \"kind\" is not one of message, receipt, ack, statement");
    }
  }
  std::string why;
  if (!r.finish(&why))
    item.invalid = std::move(why);
}

void drop_payload(OutboxItem& item) {
  item.message.reset();
  item.receipt.reset();
  item.ack.reset();
  item.statement.clear();
}

}  // namespace

std::string_view to_string(OutboxStatus status) {
  switch (status) {
    case OutboxStatus::accepted:
      return "accepted";
    case OutboxStatus::duplicate:
      return "duplicate";
    case OutboxStatus::rejected:
      return "rejected";
  }
  return "";
}

std::string to_json(const OutboxUpload& v) {
  json items = json::array();
  for (const OutboxItem& item : v.items)
    items.push_back(item_json(item));
  return detail::dump_json(json{{"items", std::move(items)}});
}

std::string to_json(const OutboxAnswer& v) {
  json results = json::array();
  for (const OutboxResult& r : v.results) {
    json j = {{"id", r.id}, {"seq", r.seq}, {"status", to_string(r.status)}};
    if (r.status == OutboxStatus::rejected) {
      j["code"] = r.code;
      j["reason"] = r.reason;
    }
    results.push_back(std::move(j));
  }
  return detail::dump_json(json{{"results", std::move(results)}});
}

Result<OutboxUpload> parse_outbox_upload(std::string_view text, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_nested_json(text, kMaxOutboxRequestSize, j, why));
  JsonReader r(j, "upload", Unknown::refuse);
  OutboxUpload v;
  std::set<std::string, std::less<>> ids;
  if (const json* items = r.array("items", kMaxOutboxItems)) {
    for (const json& ij : *items) {
      const std::string where = "item " + std::to_string(v.items.size() + 1);
      JsonReader envelope(ij, where, Unknown::ignore);
      OutboxItem item;
      item.id = read_message_id(envelope, "id");
      item.seq = envelope.integer("seq", 1, INT64_MAX);
      if (envelope.ok() && !v.items.empty() && item.seq <= v.items.back().seq)
        envelope.fail(errc::invalid_value, where + ": \"seq\" " + std::to_string(item.seq) +
                                               " is not greater than the previous item's " +
                                               std::to_string(v.items.back().seq));
      if (envelope.ok() && !ids.insert(item.id).second)
        envelope.fail(errc::invalid_value, where + ": the id " + item.id + " is used twice");
      std::string inner;
      if (const Result<void> readable = envelope.finish(&inner); !readable) {
        r.fail(static_cast<errc>(readable.error().value()), inner);
        break;
      }
      read_payload(ij, where, item);
      if (!item.invalid.empty())
        drop_payload(item);
      v.items.push_back(std::move(item));
    }
  }
  KABAN_TRYV(r.finish(why));
  return v;
}

Result<OutboxAnswer> parse_outbox_answer(std::string_view text, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_nested_json(text, kMaxJsonResponseSize, j, why));
  JsonReader r(j, "outbox answer", Unknown::ignore);
  OutboxAnswer v;
  if (const json* results = r.array("results", kMaxOutboxItems)) {
    for (const json& rj : *results) {
      JsonReader rr(rj, "result " + std::to_string(v.results.size() + 1), Unknown::ignore);
      OutboxResult result;
      result.id = read_message_id(rr, "id");
      result.seq = rr.integer("seq", 1, INT64_MAX);
      const std::string status = rr.text("status", kMaxKind);
      if (status == "accepted") {
        result.status = OutboxStatus::accepted;
      } else if (status == "duplicate") {
        result.status = OutboxStatus::duplicate;
      } else if (status == "rejected") {
        result.status = OutboxStatus::rejected;
        result.code = rr.text("code", kMaxCode, /*required=*/false);
        result.reason = rr.text("reason", kMaxReason, /*required=*/false);
      } else if (rr.ok()) {
        rr.fail(errc::invalid_value,
                rr.where() + ": \"status\" is not one of accepted, duplicate, rejected");
      }
      std::string inner;
      if (!rr.finish(&inner)) {
        r.fail(errc::invalid_value, inner);
        break;
      }
      v.results.push_back(std::move(result));
    }
  }
  KABAN_TRYV(r.finish(why));
  return v;
}

}  // namespace kaban::protocol
