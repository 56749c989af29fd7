#include "kaban/protocol/inbox.hpp"

#include <gtest/gtest.h>

#include "kaban/protocol/error.hpp"
#include "kaban/protocol/xapi.hpp"

namespace kaban::protocol {
namespace {

constexpr const char* kMessageId = "7b2e8c60-5d3f-4e40-9c91-23456789abcd";

MessageInfo sample_message() {
  MessageInfo m;
  m.id = kMessageId;
  m.seq = 41;
  m.channel = "announce:night-shift";
  m.channel_kind = ChannelKind::announcement;
  m.channel_title = "Night shift announcements";
  m.sender = "it.ops";
  m.sender_name = "IT Operations";
  m.body = "Shelter opens at 18:00.\nBring IDs.";
  m.priority = Priority::emergency;
  m.require_ack = true;
  m.created_at = 1'795'435'000;
  m.accepted_at = 1'795'435'002;
  return m;
}

InboxResponse sample_page() {
  InboxResponse page;
  page.cursor = "0badf00d.42";
  page.more = true;
  page.changes.push_back({"channel", std::nullopt,
                          ChannelMembership{"dm:aiko:ben", ChannelKind::direct, "Ben", true, true},
                          std::nullopt, ""});
  page.changes.push_back({"message", sample_message(), std::nullopt, std::nullopt, ""});
  page.changes.push_back(
      {"read_state", std::nullopt, std::nullopt, ReadState{kMessageId, 1'795'435'100, 0}, ""});
  InboxChange statement;
  statement.kind = "statement";
  statement.statement = R"({"id":"6a1d7b5f-4c2e-4d3f-8b80-123456789abc","verb":{"id":"x:y"}})";
  page.changes.push_back(statement);
  return page;
}

// One-change page whose change is `change_json`.
std::string page_with(const std::string& change_json) {
  return R"({"changes":[)" + change_json + R"(],"cursor":"ab.1","more":false})";
}

// `sample_message()` as JSON with `key` set to the JSON value `value`.
std::string message_with(const std::string& key, const std::string& value) {
  InboxResponse page;
  page.changes.push_back({"message", sample_message(), std::nullopt, std::nullopt, ""});
  std::string text = to_json(page);
  const std::string needle = "\"" + key + "\":";
  const std::size_t at = text.find(needle);
  EXPECT_NE(at, std::string::npos) << key;
  const std::size_t start = at + needle.size();
  std::size_t end = start;
  if (text[start] == '"')
    end = text.find('"', start + 1) + 1;
  else
    end = text.find_first_of(",}", start);
  text.replace(start, end - start, value);
  return text;
}

TEST(Inbox, PageRoundTripsEveryKind) {
  const InboxResponse sent = sample_page();
  std::string why;
  auto parsed = parse_inbox_response(to_json(sent), &why);
  ASSERT_TRUE(parsed) << why;
  const InboxResponse& page = parsed.value();
  EXPECT_EQ(page.cursor, "0badf00d.42");
  EXPECT_TRUE(page.more);
  ASSERT_EQ(page.changes.size(), 4u);

  ASSERT_TRUE(page.changes[0].channel);
  EXPECT_EQ(page.changes[0].kind, "channel");
  EXPECT_EQ(page.changes[0].channel->channel, "dm:aiko:ben");
  EXPECT_EQ(page.changes[0].channel->kind, ChannelKind::direct);
  EXPECT_EQ(page.changes[0].channel->title, "Ben");
  EXPECT_TRUE(page.changes[0].channel->member);
  EXPECT_TRUE(page.changes[0].channel->can_post);

  ASSERT_TRUE(page.changes[1].message);
  const MessageInfo& m = *page.changes[1].message;
  const MessageInfo want = sample_message();
  EXPECT_EQ(m.id, want.id);
  EXPECT_EQ(m.seq, want.seq);
  EXPECT_EQ(m.channel, want.channel);
  EXPECT_EQ(m.channel_kind, ChannelKind::announcement);
  EXPECT_EQ(m.channel_title, want.channel_title);
  EXPECT_EQ(m.sender, want.sender);
  EXPECT_EQ(m.sender_name, want.sender_name);
  EXPECT_EQ(m.body, want.body);
  EXPECT_EQ(m.priority, Priority::emergency);
  EXPECT_TRUE(m.require_ack);
  EXPECT_EQ(m.created_at, want.created_at);
  EXPECT_EQ(m.accepted_at, want.accepted_at);

  ASSERT_TRUE(page.changes[2].read_state);
  EXPECT_EQ(page.changes[2].read_state->message_id, kMessageId);
  EXPECT_EQ(page.changes[2].read_state->read_at, 1'795'435'100);
  EXPECT_EQ(page.changes[2].read_state->acked_at, 0);

  EXPECT_EQ(page.changes[3].kind, "statement");
  EXPECT_EQ(page.changes[3].statement, sent.changes[3].statement);
  EXPECT_FALSE(page.changes[3].message || page.changes[3].channel || page.changes[3].read_state);
}

TEST(Inbox, MessageFromItHasNoSender) {
  auto parsed = parse_inbox_response(message_with("sender", R"("")"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().changes[0].message->sender, "");
}

TEST(Inbox, SkipsUnknownKindsAndIgnoresUnknownFields) {
  std::string text = to_json(sample_page());
  text.replace(text.find('[') + 1, 0, R"({"kind":"poll","poll":{"q":1}},)");
  text.insert(1, R"("server_time":5,)");
  text.replace(text.find(R"("body")"), 0, R"("edited":true,)");
  std::string why;
  auto parsed = parse_inbox_response(text, &why);
  ASSERT_TRUE(parsed) << why;
  ASSERT_EQ(parsed.value().changes.size(), 5u);
  const InboxChange& skipped = parsed.value().changes[0];
  EXPECT_EQ(skipped.kind, "poll");
  EXPECT_FALSE(skipped.message || skipped.channel || skipped.read_state);
  EXPECT_EQ(skipped.statement, "");
  ASSERT_TRUE(parsed.value().changes[2].message);
}

TEST(Inbox, RefusesAMessageThatBreaksARule) {
  struct Case {
    std::string key;
    std::string value;
  };
  const Case cases[] = {
      {"id", R"("x")"},
      {"id", "7"},
      {"seq", "0"},
      {"seq", R"("41")"},
      {"channel", R"("Night Shift")"},
      {"channel", R"("dm:ben:aiko")"},
      {"channel_kind", R"("group")"},
      {"channel_kind", R"("broadcast")"},
      {"channel_title", '"' + std::string(kMaxChannelTitle + 1, 't') + '"'},
      {"channel_title", R"("bell\u0007")"},
      {"sender", R"("IT Ops")"},
      {"sender_name", R"("a\u0000b")"},
      {"body", R"("")"},
      {"body", '"' + std::string(kMaxMessageBody + 1, 'b') + '"'},
      {"body", R"("nul\u0000")"},
      {"body", R"("esc\u001b[2J")"},
      {"body", "null"},
      {"priority", R"("high")"},
      {"require_ack", "1"},
      {"created_at", "-1"},
      {"accepted_at", "1e3"},
      {"accepted_at", "99999999999999"},
  };
  for (const Case& c : cases) {
    const std::string text = message_with(c.key, c.value);
    std::string why;
    auto parsed = parse_inbox_response(text, &why);
    ASSERT_FALSE(parsed) << c.key << "=" << c.value;
    EXPECT_NE(why.find(c.key.substr(0, c.key.find('_'))), std::string::npos)
        << c.key << "=" << c.value << "\n"
        << why;
    EXPECT_NE(why.find("change 1"), std::string::npos) << why;
  }
}

TEST(Inbox, RefusesOtherBadChanges) {
  const std::string id = kMessageId;
  for (const std::string& bad : {
           page_with(R"({"kind":"message"})"),
           page_with(R"({"kind":"message","message":[]})"),
           page_with(R"({"kind":"channel","channel":{"channel":"x","kind":"direct","title":"",)"
                     R"("member":true,"can_post":false}})"),
           page_with(R"({"kind":"channel","channel":{"channel":"dm:a:b","kind":"direct",)"
                     R"("title":"","member":"yes","can_post":false}})"),
           page_with(R"({"kind":"channel","channel":{"channel":"dm:a:b","kind":"direct",)"
                     R"("title":"","can_post":false}})"),
           page_with(R"({"kind":"read_state","read_state":{"message":"x","read_at":0,)"
                     R"("acked_at":0}})"),
           page_with(R"({"kind":"read_state","read_state":{"message":")" + id +
                     R"(","read_at":-5,"acked_at":0}})"),
           page_with(R"({"kind":"statement","statement":"{}"})"),
           page_with(R"({"kind":"statement"})"),
           page_with(R"({"kind":"statement","statement":{"p":")" +
                     std::string(xapi::kMaxStatementSize, 'p') + R"("}})"),
           page_with(R"({"kind":7})"),
           page_with(R"({})"),
           page_with("7"),
           page_with("[]"),
       }) {
    EXPECT_FALSE(parse_inbox_response(bad)) << bad;
  }
}

Attachment sample_attachment(std::string name, std::uint64_t size, char digit) {
  Attachment a;
  a.name = std::move(name);
  a.media_type = "application/pdf";
  a.size = size;
  a.sha256 = std::string(64, digit);
  char chunk_digit = '0';
  for (const std::uint64_t chunk : attachment_chunk_sizes(size))
    a.chunks.push_back({std::string(64, chunk_digit++), chunk});
  return a;
}

TEST(Inbox, MessageAttachmentsRoundTripInOrder) {
  InboxResponse page;
  MessageInfo m = sample_message();
  m.attachments = {sample_attachment("rota.pdf", 3 * kAttachmentChunkSize, 'b'),
                   sample_attachment("map.pdf", 5, 'c')};
  page.changes.push_back({"message", m, std::nullopt, std::nullopt, ""});
  std::string why;
  auto parsed = parse_inbox_response(to_json(page), &why);
  ASSERT_TRUE(parsed) << why;
  ASSERT_TRUE(parsed.value().changes[0].message);
  EXPECT_EQ(parsed.value().changes[0].message->attachments, m.attachments);

  const std::string plain = to_json(sample_page());
  EXPECT_EQ(plain.find("attachments"), std::string::npos) << plain;
  EXPECT_TRUE(parse_inbox_response(plain).value().changes[1].message->attachments.empty());
}

TEST(Inbox, AttachmentsIgnoreNewFieldsButRefuseBadValues) {
  const std::string hash(64, 'a');
  const std::string chunk = R"([{"sha256":")" + hash + R"(","size":10,"zone":1}])";
  auto with = [&](const std::string& name, std::uint64_t size, const std::string& chunks) {
    return message_with("accepted_at", "1795435002,\"attachments\":[{\"name\":\"" + name +
                                           "\",\"media_type\":\"\",\"size\":" +
                                           std::to_string(size) + ",\"sha256\":\"" + hash +
                                           "\",\"chunks\":" + chunks + ",\"thumb\":null}]");
  };
  std::string why;
  auto parsed = parse_inbox_response(with("a.txt", 10, chunk), &why);
  ASSERT_TRUE(parsed) << why;
  ASSERT_EQ(parsed.value().changes[0].message->attachments.size(), 1u);
  EXPECT_EQ(parsed.value().changes[0].message->attachments[0].name, "a.txt");

  for (const std::string& bad :
       {with("..", 10, chunk), with("a/b", 10, chunk), with("a.txt", 11, chunk),
        with("a.txt", 10, "[]"), with("a.txt", 10, R"([{"sha256":"x","size":10}])"),
        with("a.txt", kMaxAttachmentSize + 1, chunk),
        message_with("accepted_at", R"(1,"attachments":{})"),
        message_with("accepted_at", R"(1,"attachments":[1])")}) {
    auto refused = parse_inbox_response(bad, &why);
    ASSERT_FALSE(refused) << bad;
    EXPECT_NE(why.find("change 1 message"), std::string::npos) << why;
  }
  std::string five;
  for (std::size_t i = 0; i <= kMaxAttachments; ++i)
    five += std::string(i ? "," : "") + R"({"name":"f","size":10,"sha256":")" + hash +
            R"(","chunks":)" + chunk + "}";
  auto refused =
      parse_inbox_response(message_with("accepted_at", "1,\"attachments\":[" + five + "]"), &why);
  ASSERT_FALSE(refused);
  EXPECT_NE(why.find("attachments"), std::string::npos) << why;
}

TEST(Inbox, RefusesABadEnvelope) {
  EXPECT_EQ(parse_inbox_response("").error(), errc::malformed);
  EXPECT_EQ(parse_inbox_response("[]").error(), errc::malformed);
  EXPECT_EQ(parse_inbox_response("{\"changes\":[],\"cursor\":\"a.1\"").error(), errc::malformed);
  EXPECT_EQ(parse_inbox_response(R"({"changes":[],"more":false})").error(), errc::missing_field);
  EXPECT_EQ(parse_inbox_response(R"({"changes":[],"cursor":"a.1"})").error(), errc::missing_field);
  EXPECT_EQ(parse_inbox_response(R"({"changes":{},"cursor":"a.1","more":false})").error(),
            errc::malformed);
  EXPECT_EQ(parse_inbox_response(R"({"changes":[],"cursor":7,"more":false})").error(),
            errc::malformed);
  EXPECT_EQ(parse_inbox_response(R"({"changes":[],"cursor":")" + std::string(200, 'a') +
                                 R"(","more":false})")
                .error(),
            errc::too_large);
}

TEST(Inbox, RefusesMoreThanAPage) {
  std::string changes;
  for (int i = 0; i <= kMaxInboxPage; ++i)
    changes += std::string(i ? "," : "") + R"({"kind":"poll"})";
  auto parsed =
      parse_inbox_response(R"({"changes":[)" + changes + R"(],"cursor":"a.1","more":true})");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error(), errc::too_large);

  changes = changes.substr(changes.find(',') + 1);
  parsed = parse_inbox_response(R"({"changes":[)" + changes + R"(],"cursor":"a.1","more":true})");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().changes.size(), static_cast<std::size_t>(kMaxInboxPage));
}

TEST(Inbox, RefusesHostileNestingAndBytes) {
  const std::size_t depth = 500'000;
  const std::string deep = R"({"changes":[{"kind":"statement","statement":{"a":)" +
                           std::string(depth, '[') + std::string(depth, ']') +
                           R"(}}],"cursor":"a.1","more":false})";
  EXPECT_EQ(parse_inbox_response(deep).error(), errc::malformed);

  std::string nul_inside = page_with(R"({"kind":"poll"})");
  nul_inside.insert(nul_inside.find("poll"), std::string(1, '\0'));
  EXPECT_EQ(parse_inbox_response(nul_inside).error(), errc::malformed);

  for (const std::string& bytes : {std::string("\xc0\xaf"), std::string("\xe0\x80\xaf"),
                                   std::string("\xed\xb0\x80"), std::string("\xf4\x90\x80\x80")}) {
    const std::string text = message_with("body", '"' + bytes + '"');
    EXPECT_EQ(parse_inbox_response(text).error(), errc::malformed) << text;
  }
}

TEST(Inbox, StatementChangeIsCanonicalText) {
  auto parsed = parse_inbox_response(
      page_with(R"({"kind":"statement","statement":{ "verb" : {"id":"x:y"}, "id" : "s" }})"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().changes[0].statement, R"({"id":"s","verb":{"id":"x:y"}})");
}

}  // namespace
}  // namespace kaban::protocol
