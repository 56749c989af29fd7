#include "kaban/protocol/inbox.hpp"

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

constexpr std::size_t kMaxKind = 64;
constexpr std::size_t kMaxCursor = 128;
constexpr std::size_t kMaxUserName = 200;
constexpr std::size_t kMaxEnumText = 32;

json message_json(const MessageInfo& m) {
  json j = {{"id", m.id},
            {"seq", m.seq},
            {"channel", m.channel},
            {"channel_kind", to_string(m.channel_kind)},
            {"channel_title", m.channel_title},
            {"sender", m.sender},
            {"sender_name", m.sender_name},
            {"body", m.body},
            {"priority", to_string(m.priority)},
            {"require_ack", m.require_ack},
            {"created_at", m.created_at},
            {"accepted_at", m.accepted_at}};
  detail::write_attachments(m.attachments, j);
  return j;
}

json channel_json(const ChannelMembership& c) {
  return {{"channel", c.channel},
          {"kind", to_string(c.kind)},
          {"title", c.title},
          {"member", c.member},
          {"can_post", c.can_post}};
}

json read_state_json(const ReadState& s) {
  return {{"message", s.message_id}, {"read_at", s.read_at}, {"acked_at", s.acked_at}};
}

// A statement the server holds is an object; anything else (a server bug) goes as null, which
// the agent refuses rather than guess.
json statement_json(const std::string& statement) {
  if (detail::nests_deeper_than(statement, detail::kMaxJsonDepth))
    return nullptr;
  json j = json::parse(statement, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return nullptr;
  return j;
}

// Reads a channel id and checks that it names `kind` of channel; problems go to `r`.
std::string read_channel(JsonReader& r, std::string_view id_key, std::string_view kind_key,
                         ChannelKind& kind) {
  std::string id = r.text(id_key, kMaxChannelId);
  const std::string kind_text = r.text(kind_key, kMaxEnumText);
  if (!r.ok())
    return id;
  const std::optional<ChannelKind> named = channel_kind(id);
  if (!named) {
    r.fail(errc::invalid_value,
           r.where() + ": \"" + std::string(id_key) + "\" is not a valid channel id");
  } else if (kind_text != to_string(*named)) {
    r.fail(errc::invalid_value, r.where() + ": \"" + std::string(kind_key) +
                                    "\" does not match the channel id (" +
                                    std::string(to_string(*named)) + ")");
  } else {
    kind = *named;
  }
  return id;
}

void require_uuid(JsonReader& r, std::string_view key, const std::string& value) {
  if (r.ok() && !is_valid_uuid(value))
    r.fail(errc::invalid_value, r.where() + ": \"" + std::string(key) + "\" is not a UUID");
}

// Titles and names are shown as they are, so they follow the rules of message text.
void require_text(JsonReader& r, std::string_view key, const std::string& value) {
  if (r.ok() && !is_valid_message_text(value))
    r.fail(errc::invalid_value, r.where() + ": \"" + std::string(key) +
                                    "\" is not UTF-8 text without control characters");
}

MessageInfo read_message(const json& j, JsonReader& change) {
  JsonReader r(j, change.where() + " message", Unknown::ignore);
  MessageInfo m;
  m.id = r.text("id", kUuidSize);
  require_uuid(r, "id", m.id);
  m.seq = r.integer("seq", 1, INT64_MAX);
  m.channel = read_channel(r, "channel", "channel_kind", m.channel_kind);
  m.channel_title = r.text("channel_title", kMaxChannelTitle);
  m.sender = r.text("sender", kMaxLoginSize);
  m.sender_name = r.text("sender_name", kMaxUserName);
  m.body = r.text("body", kMaxMessageBody);
  const std::string priority = r.text("priority", kMaxEnumText);
  m.require_ack = r.boolean("require_ack");
  m.created_at = r.integer("created_at", 0, kLatestTime);
  m.accepted_at = r.integer("accepted_at", 0, kLatestTime);
  m.attachments = detail::read_attachments(r, Unknown::ignore);
  if (r.ok() && !m.sender.empty() && !is_valid_login(m.sender))
    r.fail(errc::invalid_value, r.where() + ": \"sender\" is not a valid login");
  if (r.ok() && (m.body.empty() || !is_valid_message_text(m.body)))
    r.fail(errc::invalid_value, r.where() + ": \"body\" is empty or not UTF-8 text");
  require_text(r, "channel_title", m.channel_title);
  require_text(r, "sender_name", m.sender_name);
  if (r.ok()) {
    if (const std::optional<Priority> p = parse_priority(priority))
      m.priority = *p;
    else
      r.fail(errc::invalid_value,
             r.where() + ": \"priority\" is not one of normal, urgent, emergency");
  }
  std::string why;
  if (!r.finish(&why))
    change.fail(errc::invalid_value, why);
  return m;
}

ChannelMembership read_membership(const json& j, JsonReader& change) {
  JsonReader r(j, change.where() + " channel", Unknown::ignore);
  ChannelMembership c;
  c.channel = read_channel(r, "channel", "kind", c.kind);
  c.title = r.text("title", kMaxChannelTitle);
  c.member = r.boolean("member");
  c.can_post = r.boolean("can_post");
  require_text(r, "title", c.title);
  std::string why;
  if (!r.finish(&why))
    change.fail(errc::invalid_value, why);
  return c;
}

ReadState read_read_state(const json& j, JsonReader& change) {
  JsonReader r(j, change.where() + " read_state", Unknown::ignore);
  ReadState s;
  s.message_id = r.text("message", kUuidSize);
  require_uuid(r, "message", s.message_id);
  s.read_at = r.integer("read_at", 0, kLatestTime);
  s.acked_at = r.integer("acked_at", 0, kLatestTime);
  std::string why;
  if (!r.finish(&why))
    change.fail(errc::invalid_value, why);
  return s;
}

std::string read_statement_text(const json& j, JsonReader& change) {
  std::string text = detail::dump_json(j);
  if (text.size() > xapi::kMaxStatementSize) {
    change.fail(errc::too_large, change.where() + ": \"statement\" is longer than " +
                                     std::to_string(xapi::kMaxStatementSize) + " bytes");
    return {};
  }
  return text;
}

}  // namespace

std::string to_json(const InboxResponse& v) {
  json changes = json::array();
  for (const InboxChange& c : v.changes) {
    json item = {{"kind", c.kind}};
    if (c.message)
      item["message"] = message_json(*c.message);
    if (c.channel)
      item["channel"] = channel_json(*c.channel);
    if (c.read_state)
      item["read_state"] = read_state_json(*c.read_state);
    if (c.kind == "statement")
      item["statement"] = statement_json(c.statement);
    changes.push_back(std::move(item));
  }
  return detail::dump_json(
      json{{"changes", std::move(changes)}, {"cursor", v.cursor}, {"more", v.more}});
}

Result<InboxResponse> parse_inbox_response(std::string_view text, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_nested_json(text, kMaxJsonResponseSize, j, why));
  JsonReader r(j, "inbox", Unknown::ignore);
  InboxResponse v;
  v.cursor = r.text("cursor", kMaxCursor);
  v.more = r.boolean("more");
  if (const json* changes = r.array("changes", static_cast<std::size_t>(kMaxInboxPage))) {
    v.changes.reserve(changes->size());
    for (const json& cj : *changes) {
      JsonReader cr(cj, "change " + std::to_string(v.changes.size() + 1), Unknown::ignore);
      InboxChange c;
      c.kind = cr.text("kind", kMaxKind);
      if (cr.ok()) {
        if (c.kind == "message") {
          if (const json* m = cr.object("message"))
            c.message = read_message(*m, cr);
        } else if (c.kind == "channel") {
          if (const json* m = cr.object("channel"))
            c.channel = read_membership(*m, cr);
        } else if (c.kind == "read_state") {
          if (const json* s = cr.object("read_state"))
            c.read_state = read_read_state(*s, cr);
        } else if (c.kind == "statement") {
          if (const json* s = cr.object("statement"))
            c.statement = read_statement_text(*s, cr);
        }
      }
      std::string inner;
      if (!cr.finish(&inner)) {
        r.fail(errc::invalid_value, inner);
        break;
      }
      v.changes.push_back(std::move(c));
    }
  }
  KABAN_TRYV(r.finish(why));
  return v;
}

}  // namespace kaban::protocol
