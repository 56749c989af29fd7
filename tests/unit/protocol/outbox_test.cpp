#include "kaban/protocol/outbox.hpp"

#include <gtest/gtest.h>

#include "kaban/protocol/error.hpp"
#include "kaban/protocol/xapi.hpp"

namespace kaban::protocol {
namespace {

constexpr const char* kId1 = "5f0c6a4e-3b1d-4c2e-9a7f-0123456789ab";
constexpr const char* kId2 = "6a1d7b5f-4c2e-4d3f-8b80-123456789abc";
constexpr const char* kMessageId = "7b2e8c60-5d3f-4e40-9c91-23456789abcd";

std::string item(const std::string& id, std::int64_t seq, const std::string& rest) {
  return R"({"id":")" + id + R"(","seq":)" + std::to_string(seq) + (rest.empty() ? "" : ",") +
         rest + "}";
}

// The i-th of a series of distinct UUIDs (i < 10^12).
std::string numbered_uuid(std::size_t i) {
  const std::string digits = std::to_string(i);
  return "00000000-0000-4000-8000-" + std::string(12 - digits.size(), '0') + digits;
}

std::string upload(const std::string& items) {
  return R"({"items":[)" + items + "]}";
}

std::string message_item(const std::string& message_fields) {
  return item(kId1, 1, R"("kind":"message","message":{)" + message_fields + "}");
}

// Parses an upload of one item that must be kept, and returns that item.
OutboxItem only_item(const std::string& text) {
  std::string why;
  auto parsed = parse_outbox_upload(text, &why);
  EXPECT_TRUE(parsed) << why << "\n" << text;
  if (!parsed || parsed.value().items.size() != 1)
    return {};
  return parsed.value().items[0];
}

std::string statement_text() {
  xapi::NewStatement s;
  s.id = kId2;
  s.login = "aiko";
  s.user_name = "Aiko Tanaka";
  s.home_page = "https://kaban.example:8443";
  s.verb = std::string(xapi::verbs::kCompleted);
  s.course_id = "shelter-opening";
  s.lesson_id = "checklist";
  s.object_name = "Shelter opening checklist";
  s.timestamp = 1'795'435'200;
  s.completion = true;
  return xapi::make_statement(s);
}

OutboxUpload sample_upload() {
  OutboxUpload u;
  OutboxItem m;
  m.id = kId1;
  m.seq = 3;
  m.kind = "message";
  m.message = NewMessage{"announce:night-shift", "Shelter opens at 18:00.\nBring IDs.",
                         Priority::urgent,       true,
                         1'795'435'000,          {}};
  u.items.push_back(m);
  OutboxItem r;
  r.id = kId2;
  r.seq = 4;
  r.kind = "receipt";
  r.receipt = ReceiptBatch{"read", {kMessageId, kId1}, 1'795'435'100};
  u.items.push_back(r);
  OutboxItem a;
  a.id = "8c3f9d71-6e40-4f51-ada2-3456789abcde";
  a.seq = 9;
  a.kind = "ack";
  a.ack = Acknowledgement{kMessageId, 1'795'435'150};
  u.items.push_back(a);
  OutboxItem s;
  s.id = "9d40ae82-7f51-4062-beb3-456789abcdef";
  s.seq = 10;
  s.kind = "statement";
  s.statement = statement_text();
  u.items.push_back(s);
  return u;
}

TEST(Outbox, UploadRoundTripsEveryKind) {
  const OutboxUpload sent = sample_upload();
  std::string why;
  auto parsed = parse_outbox_upload(to_json(sent), &why);
  ASSERT_TRUE(parsed) << why;
  const auto& items = parsed.value().items;
  ASSERT_EQ(items.size(), 4u);
  for (std::size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(items[i].id, sent.items[i].id);
    EXPECT_EQ(items[i].seq, sent.items[i].seq);
    EXPECT_EQ(items[i].kind, sent.items[i].kind);
    EXPECT_EQ(items[i].invalid, "") << i;
  }
  ASSERT_TRUE(items[0].message);
  EXPECT_EQ(items[0].message->channel, "announce:night-shift");
  EXPECT_EQ(items[0].message->body, "Shelter opens at 18:00.\nBring IDs.");
  EXPECT_EQ(items[0].message->priority, Priority::urgent);
  EXPECT_TRUE(items[0].message->require_ack);
  EXPECT_EQ(items[0].message->created_at, 1'795'435'000);
  ASSERT_TRUE(items[1].receipt);
  EXPECT_EQ(items[1].receipt->state, "read");
  EXPECT_EQ(items[1].receipt->message_ids, (std::vector<std::string>{kMessageId, kId1}));
  EXPECT_EQ(items[1].receipt->at, 1'795'435'100);
  ASSERT_TRUE(items[2].ack);
  EXPECT_EQ(items[2].ack->message_id, kMessageId);
  EXPECT_EQ(items[2].ack->at, 1'795'435'150);
  EXPECT_FALSE(items[0].receipt || items[0].ack || items[1].message || items[2].message);
  // The statement travels as an object and comes back as the same canonical text.
  EXPECT_EQ(items[3].statement, sent.items[3].statement);
  EXPECT_NE(to_json(sent).find(R"("statement":{)"), std::string::npos);
}

TEST(Outbox, MessageDefaultsToNormalWithoutAcknowledgement) {
  const OutboxItem it = only_item(
      upload(message_item(R"("channel":"dm:aiko:ben","body":"hi","created_at":1700000000)")));
  EXPECT_EQ(it.invalid, "");
  ASSERT_TRUE(it.message);
  EXPECT_EQ(it.message->priority, Priority::normal);
  EXPECT_FALSE(it.message->require_ack);
  EXPECT_EQ(it.message->channel, "dm:aiko:ben");
}

TEST(Outbox, EmptyUploadIsAccepted) {
  auto parsed = parse_outbox_upload(R"({"items":[]})");
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed.value().items.empty());
}

TEST(Outbox, RefusesABadEnvelope) {
  struct Case {
    std::string text;
    errc code;
    std::string mentions;
  };
  const std::string ok_rest =
      R"("kind":"ack","ack":{"message":")" + std::string(kMessageId) + R"(","at":1})";
  const Case cases[] = {
      {"", errc::malformed, "JSON"},
      {"{", errc::malformed, "JSON"},
      {"[]", errc::malformed, "JSON"},
      {R"("items")", errc::malformed, "JSON"},
      {"{}", errc::missing_field, "items"},
      {R"({"items":{}})", errc::malformed, "items"},
      {R"({"items":"x"})", errc::malformed, "items"},
      {R"({"items":[],"device":"x"})", errc::unknown_field, "device"},
      {R"({"items":[7]})", errc::malformed, "item 1"},
      {R"({"items":[[]]})", errc::malformed, "item 1"},
      {upload(item(kId1, 1, ok_rest) + "," + R"({"seq":2})"), errc::missing_field, "item 2"},
      {upload(R"({"id":")" + std::string(kId1) + R"("})"), errc::missing_field, "seq"},
      {upload(item("not-a-uuid", 1, ok_rest)), errc::invalid_value, "id"},
      {upload(item("5F0C6A4E-3B1D-4C2E-9A7F-0123456789AB", 1, ok_rest)), errc::invalid_value, "id"},
      {upload(R"({"id":7,"seq":1})"), errc::malformed, "id"},
      {upload(item(kId1, 0, ok_rest)), errc::invalid_value, "seq"},
      {upload(item(kId1, -4, ok_rest)), errc::invalid_value, "seq"},
      {upload(R"({"id":")" + std::string(kId1) + R"(","seq":"1"})"), errc::malformed, "seq"},
      {upload(R"({"id":")" + std::string(kId1) + R"(","seq":1.5})"), errc::malformed, "seq"},
      {upload(R"({"id":")" + std::string(kId1) + R"(","seq":18446744073709551615})"),
       errc::invalid_value, "seq"},
      {upload(item(kId1, 2, ok_rest) + "," + item(kId2, 2, ok_rest)), errc::invalid_value, "seq"},
      {upload(item(kId1, 5, ok_rest) + "," + item(kId2, 3, ok_rest)), errc::invalid_value, "seq"},
      {upload(item(kId1, 1, ok_rest) + "," + item(kId1, 2, ok_rest)), errc::invalid_value, "twice"},
  };
  for (const Case& c : cases) {
    std::string why;
    auto parsed = parse_outbox_upload(c.text, &why);
    ASSERT_FALSE(parsed) << c.text;
    EXPECT_EQ(parsed.error(), c.code) << c.text << "\n" << why;
    EXPECT_NE(why.find(c.mentions), std::string::npos) << c.text << "\n" << why;
  }
}

TEST(Outbox, RefusesTooManyItemsAndTooManyBytes) {
  std::string items;
  for (std::size_t i = 0; i <= kMaxOutboxItems; ++i) {
    items += (i ? "," : "") +
             item(numbered_uuid(i), static_cast<std::int64_t>(i + 1),
                  R"("kind":"ack","ack":{"message":")" + std::string(kMessageId) + R"(","at":1})");
  }
  std::string why;
  auto parsed = parse_outbox_upload(upload(items), &why);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error(), errc::too_large);
  EXPECT_NE(why.find("items"), std::string::npos) << why;

  const std::string huge =
      R"({"items":[],"pad":")" + std::string(kMaxOutboxRequestSize, 'x') + "\"}";
  EXPECT_EQ(parse_outbox_upload(huge).error(), errc::too_large);
}

TEST(Outbox, RefusesDeepNestingWithoutCrashing) {
  const std::size_t depth = 200'000;
  const std::string deep =
      R"({"items":[)" + std::string(depth, '[') + std::string(depth, ']') + "]}";
  std::string why;
  auto parsed = parse_outbox_upload(deep, &why);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error(), errc::malformed);
  EXPECT_NE(why.find("levels"), std::string::npos) << why;

  // Brackets inside strings are text, not nesting.
  const std::string body = "[[[[" + std::string(100, '{') + "\\\"";
  const OutboxItem it = only_item(
      upload(message_item(R"("channel":"night-shift","body":")" + body + R"(","created_at":1)")));
  EXPECT_EQ(it.invalid, "");
}

TEST(Outbox, KeepsAnItemWithABadPayloadAndSaysWhy) {
  struct Case {
    std::string item;
    std::string mentions;
  };
  const std::string msg = kMessageId;
  const Case cases[] = {
      {item(kId1, 1, R"("kind":"poke","poke":{})"), "kind"},
      {item(kId1, 1, ""), "kind"},
      {item(kId1, 1, R"("kind":7)"), "kind"},
      {item(kId1, 1, R"("kind":"message")"), "message"},
      {item(kId1, 1, R"("kind":"message","message":"hi")"), "message"},
      {item(kId1, 1, R"("kind":"ack","ack":{"message":")" + msg + R"(","at":1},"x":1)"), "\"x\""},
      {item(kId1, 1, R"("kind":"ack","ack":{"message":")" + msg + R"(","at":1},"message":{})"),
       "\"message\""},
      {item(kId1, 1, R"("kind":"ack","ack":{"message":")" + msg + R"(","at":1,"by":"x"})"),
       "\"by\""},
      {item(kId1, 1, R"("kind":"ack","ack":{"message":"x","at":1})"), "message"},
      {item(kId1, 1, R"("kind":"ack","ack":{"at":1})"), "message"},
      {item(kId1, 1, R"("kind":"ack","ack":{"message":")" + msg + R"(","at":-1})"), "at"},
      {item(kId1, 1, R"("kind":"ack","ack":{"message":")" + msg + R"(","at":"now"})"), "at"},
      {message_item(R"("channel":"Night Shift","body":"hi","created_at":1)"), "channel"},
      {message_item(R"("channel":"dm:ben:aiko","body":"hi","created_at":1)"), "channel"},
      {message_item(R"("body":"hi","created_at":1)"), "channel"},
      {message_item(R"("channel":"night-shift","body":"","created_at":1)"), "body"},
      {message_item(R"("channel":"night-shift","created_at":1)"), "body"},
      {message_item(R"("channel":"night-shift","body":")" + std::string(kMaxMessageBody + 1, 'b') +
                    R"(","created_at":1)"),
       "body"},
      {message_item(R"("channel":"night-shift","body":"a\u0000b","created_at":1)"), "body"},
      {message_item(R"("channel":"night-shift","body":"bell\u0007","created_at":1)"), "body"},
      {message_item(R"("channel":"night-shift","body":"cr\r\n","created_at":1)"), "body"},
      {message_item(R"("channel":"night-shift","body":["hi"],"created_at":1)"), "body"},
      {message_item(R"("channel":"night-shift","body":"hi","priority":"low","created_at":1)"),
       "priority"},
      {message_item(R"("channel":"night-shift","body":"hi","priority":2,"created_at":1)"),
       "priority"},
      {message_item(R"("channel":"night-shift","body":"hi","require_ack":"yes","created_at":1)"),
       "require_ack"},
      {message_item(R"("channel":"night-shift","body":"hi","require_ack":true,"created_at":1)"),
       "require_ack"},
      {message_item(R"("channel":"night-shift","body":"hi")"), "created_at"},
      {message_item(R"("channel":"night-shift","body":"hi","created_at":1,"sender":"it")"),
       "sender"},
      {item(kId1, 1,
            R"("kind":"receipt","receipt":{"state":"seen","messages":[")" + msg + R"("],"at":1})"),
       "state"},
      {item(kId1, 1, R"("kind":"receipt","receipt":{"state":"read","messages":[],"at":1})"),
       "messages"},
      {item(kId1, 1, R"("kind":"receipt","receipt":{"state":"read","at":1})"), "messages"},
      {item(kId1, 1,
            R"("kind":"receipt","receipt":{"state":"read","messages":")" + msg + R"(","at":1})"),
       "messages"},
      {item(
           kId1, 1,
           R"("kind":"receipt","receipt":{"state":"read","messages":[")" + msg + R"(",7],"at":1})"),
       "messages"},
      {item(kId1, 1,
            R"("kind":"receipt","receipt":{"state":"read","messages":[")" + msg +
                R"(","nope"],"at":1})"),
       "messages"},
      {item(kId1, 1, R"("kind":"statement","statement":"{}")"), "statement"},
      {item(kId1, 1, R"("kind":"statement","statement":[{}])"), "statement"},
      {item(kId1, 1, R"("kind":"statement")"), "statement"},
      {item(kId1, 1,
            R"("kind":"statement","statement":{"pad":")" +
                std::string(xapi::kMaxStatementSize, 'p') + R"("})"),
       "statement"},
  };
  for (const Case& c : cases) {
    const OutboxItem it = only_item(upload(c.item));
    EXPECT_EQ(it.id, kId1) << c.item;
    EXPECT_EQ(it.seq, 1) << c.item;
    EXPECT_NE(it.invalid, "") << c.item;
    EXPECT_NE(it.invalid.find(c.mentions), std::string::npos) << c.item << "\n" << it.invalid;
    EXPECT_NE(it.invalid.find("item 1"), std::string::npos) << it.invalid;
    EXPECT_FALSE(it.message || it.receipt || it.ack) << c.item;
    EXPECT_EQ(it.statement, "") << c.item;
  }
}

TEST(Outbox, ABadItemDoesNotSpoilTheOthers) {
  const std::string good =
      R"("kind":"ack","ack":{"message":")" + std::string(kMessageId) + R"(","at":1})";
  auto parsed =
      parse_outbox_upload(upload(item(kId1, 1, R"("kind":"poke")") + "," + item(kId2, 2, good)));
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed.value().items.size(), 2u);
  EXPECT_NE(parsed.value().items[0].invalid, "");
  EXPECT_EQ(parsed.value().items[1].invalid, "");
  ASSERT_TRUE(parsed.value().items[1].ack);
  EXPECT_EQ(parsed.value().items[1].ack->message_id, kMessageId);
}

TEST(Outbox, ReceiptsCarryAtMostTheirLimit) {
  auto receipt_with = [](std::size_t count) {
    std::string ids;
    for (std::size_t i = 0; i < count; ++i) {
      ids += std::string(i ? "," : "") + "\"" + numbered_uuid(i) + "\"";
    }
    return upload(item(
        kId1, 1,
        R"("kind":"receipt","receipt":{"state":"delivered","messages":[)" + ids + R"(],"at":1})"));
  };
  const OutboxItem full = only_item(receipt_with(kMaxReceiptMessages));
  EXPECT_EQ(full.invalid, "");
  ASSERT_TRUE(full.receipt);
  EXPECT_EQ(full.receipt->message_ids.size(), kMaxReceiptMessages);
  EXPECT_EQ(full.receipt->state, "delivered");
  const OutboxItem over = only_item(receipt_with(kMaxReceiptMessages + 1));
  EXPECT_NE(over.invalid.find("messages"), std::string::npos) << over.invalid;
}

TEST(Outbox, InvalidUtf8IsRefusedAsJson) {
  // nlohmann refuses invalid UTF-8 inside strings, so it never reaches the body checks.
  for (const std::string& body : {std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                                  std::string("\xff"), std::string("\\ud800")}) {
    const std::string text =
        upload(message_item(R"("channel":"night-shift","body":")" + body + R"(","created_at":1)"));
    auto parsed = parse_outbox_upload(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error(), errc::malformed);
  }
}

TEST(Outbox, StatementsKeepTheirContentNotTheirSpelling) {
  const std::string a = R"({"b":1,"a":{"y":"\u00e9","x":[1,2]}})";
  const std::string b = "{ \"a\" : { \"x\" : [ 1 , 2 ], \"y\" : \"\xc3\xa9\" }, \"b\" : 1 }";
  const OutboxItem ia = only_item(upload(item(kId1, 1, R"("kind":"statement","statement":)" + a)));
  const OutboxItem ib = only_item(upload(item(kId1, 1, R"("kind":"statement","statement":)" + b)));
  EXPECT_EQ(ia.invalid, "");
  EXPECT_EQ(ia.statement, "{\"a\":{\"x\":[1,2],\"y\":\"\xc3\xa9\"},\"b\":1}");
  EXPECT_EQ(ia.statement, ib.statement);
}

TEST(Outbox, StatementTextThatIsNotAnObjectIsSentForTheServerToReject) {
  OutboxUpload u;
  OutboxItem s;
  s.id = kId1;
  s.seq = 1;
  s.kind = "statement";
  s.statement = "not json";
  u.items.push_back(s);
  const OutboxItem back = only_item(to_json(u));
  EXPECT_NE(back.invalid.find("statement"), std::string::npos) << back.invalid;
}

TEST(Outbox, ToJsonDoesNotThrowOnTextThatIsNotUtf8) {
  OutboxUpload u = sample_upload();
  u.items[0].message->body = "caf\xc3";
  std::string text;
  ASSERT_NO_THROW(text = to_json(u));
  const OutboxItem back = parse_outbox_upload(text).value().items[0];
  EXPECT_EQ(back.invalid, "");
  EXPECT_EQ(back.message->body, "caf\xef\xbf\xbd");
}

// One attachment as JSON, with `extra` fields spliced in ("" for none).
std::string attachment_json(const std::string& name, std::uint64_t size, const std::string& chunks,
                            const std::string& extra = "") {
  return R"({"name":")" + name + R"(","media_type":"image/jpeg","size":)" + std::to_string(size) +
         R"(,"sha256":")" + std::string(64, 'a') + R"(","chunks":)" + chunks + extra + "}";
}

std::string chunk_json(char digit, std::uint64_t size) {
  return R"({"sha256":")" + std::string(64, digit) + R"(","size":)" + std::to_string(size) + "}";
}

std::string message_with_attachments(const std::string& list) {
  return upload(message_item(R"("channel":"night-shift","body":"see attached","created_at":1,)"
                             R"("attachments":)" +
                             list));
}

Attachment photo(std::uint64_t size, char digit) {
  Attachment a;
  a.name = "photo-" + std::string(1, digit) + ".jpg";
  a.media_type = "image/jpeg";
  a.size = size;
  a.sha256 = std::string(64, digit);
  char chunk_digit = '0';
  for (const std::uint64_t chunk : attachment_chunk_sizes(size))
    a.chunks.push_back({std::string(64, chunk_digit++), chunk});
  return a;
}

TEST(Outbox, MessageAttachmentsRoundTripInOrder) {
  OutboxUpload u = sample_upload();
  u.items[0].message->attachments = {photo(kAttachmentChunkSize + 1, 'b'), photo(12, 'c')};
  u.items[0].message->attachments[1].media_type = "";
  const std::string text = to_json(u);
  std::string why;
  auto parsed = parse_outbox_upload(text, &why);
  ASSERT_TRUE(parsed) << why;
  const OutboxItem& back = parsed.value().items[0];
  EXPECT_EQ(back.invalid, "");
  ASSERT_TRUE(back.message);
  EXPECT_EQ(back.message->attachments, u.items[0].message->attachments);
  ASSERT_EQ(back.message->attachments.size(), 2u);
  EXPECT_EQ(back.message->attachments[0].chunks.size(), 2u);
  EXPECT_EQ(back.message->attachments[0].name, "photo-b.jpg");
}

TEST(Outbox, MessageWithoutAttachmentsWritesNoKey) {
  const std::string text = to_json(sample_upload());
  EXPECT_EQ(text.find("attachments"), std::string::npos) << text;
  for (const std::string& none : {std::string("[]"), std::string("null")}) {
    const OutboxItem it = only_item(message_with_attachments(none));
    EXPECT_EQ(it.invalid, "") << none;
    ASSERT_TRUE(it.message) << none;
    EXPECT_TRUE(it.message->attachments.empty()) << none;
  }
}

TEST(Outbox, AnAttachmentProblemMarksTheItemInvalid) {
  struct Case {
    std::string list;
    std::string mentions;
  };
  const std::size_t mib = kAttachmentChunkSize;
  const std::string one = "[" + chunk_json('1', 10) + "]";
  const Case cases[] = {
      {"[" + attachment_json("..", 10, one) + "]", "name"},
      {"[" + attachment_json("a/b", 10, one) + "]", "name"},
      {"[" + attachment_json("a\\\\b", 10, one) + "]", "name"},
      {"[" + attachment_json("tab\\tname", 10, one) + "]", "name"},
      {"[" + attachment_json(std::string(kMaxAttachmentName + 1, 'n'), 10, one) + "]", "name"},
      {"[" + attachment_json("big.bin", kMaxAttachmentSize + 1, "[]") + "]",
       "\"big.bin\" is 4194305 bytes"},
      {"[" + attachment_json("sum.bin", 11, one) + "]", "\"sum.bin\": its chunks add up to 10"},
      {"[" +
           attachment_json("empty.bin", 10,
                           "[" + chunk_json('1', 10) + "," + chunk_json('2', 0) + "]") +
           "]",
       "chunk 2 is empty"},
      {"[" + attachment_json("over.bin", mib + 1, "[" + chunk_json('1', mib + 1) + "]") + "]",
       "\"over.bin\": chunk 1"},
      {"[" + attachment_json("hex.bin", 10, R"([{"sha256":"xyz","size":10}])") + "]", "sha256"},
      {"[" + attachment_json("x.bin", 10, one, R"(,"owner":"ben")") + "]", "owner"},
      {"[" + attachment_json("x.bin", 10, "[" + chunk_json('1', 10) + "]") + ",7]", "attachment 2"},
      {"[" + attachment_json("x.bin", -1, one) + "]", "size"},
      {R"([{"media_type":"image/jpeg","size":10,"sha256":")" + std::string(64, 'a') +
           R"(","chunks":)" + one + "}]",
       "name"},
      {R"({"name":"x"})", "attachments"},
  };
  for (const Case& c : cases) {
    const OutboxItem it = only_item(message_with_attachments(c.list));
    EXPECT_NE(it.invalid, "") << c.list;
    EXPECT_NE(it.invalid.find(c.mentions), std::string::npos) << c.list << "\n" << it.invalid;
    EXPECT_NE(it.invalid.find("item 1"), std::string::npos) << it.invalid;
    EXPECT_FALSE(it.message) << c.list;
  }
}

TEST(Outbox, AtMostKMaxAttachmentsPerMessage) {
  std::string list;
  for (std::size_t i = 0; i < kMaxAttachments; ++i)
    list += std::string(i ? "," : "") +
            attachment_json("f" + std::to_string(i), 10, "[" + chunk_json('1', 10) + "]");
  const OutboxItem full = only_item(message_with_attachments("[" + list + "]"));
  EXPECT_EQ(full.invalid, "");
  ASSERT_TRUE(full.message);
  EXPECT_EQ(full.message->attachments.size(), kMaxAttachments);
  list += "," + attachment_json("f", 10, "[" + chunk_json('1', 10) + "]");
  const OutboxItem over = only_item(message_with_attachments("[" + list + "]"));
  EXPECT_NE(over.invalid.find("attachments"), std::string::npos) << over.invalid;
  EXPECT_FALSE(over.message);
}

TEST(Outbox, AnswerRoundTrips) {
  OutboxAnswer answer;
  answer.results.push_back({kId1, 1, OutboxStatus::accepted, "", ""});
  answer.results.push_back({kId2, 2, OutboxStatus::duplicate, "", ""});
  answer.results.push_back(
      {kMessageId, 3, OutboxStatus::rejected, "not_a_member", "You are not in night-shift."});
  const std::string text = to_json(answer);
  EXPECT_EQ(text.find("code"), text.rfind("code")) << "code only for the rejected item: " << text;
  std::string why;
  auto parsed = parse_outbox_answer(text, &why);
  ASSERT_TRUE(parsed) << why;
  ASSERT_EQ(parsed.value().results.size(), 3u);
  EXPECT_EQ(parsed.value().results[0].status, OutboxStatus::accepted);
  EXPECT_EQ(parsed.value().results[1].status, OutboxStatus::duplicate);
  EXPECT_EQ(parsed.value().results[1].seq, 2);
  const OutboxResult& rejected = parsed.value().results[2];
  EXPECT_EQ(rejected.id, kMessageId);
  EXPECT_EQ(rejected.status, OutboxStatus::rejected);
  EXPECT_EQ(rejected.code, "not_a_member");
  EXPECT_EQ(rejected.reason, "You are not in night-shift.");
  EXPECT_EQ(to_string(OutboxStatus::rejected), "rejected");
}

TEST(Outbox, AnswerIgnoresFieldsFromNewerServersButNotBadValues) {
  const std::string id = kId1;
  auto parsed = parse_outbox_answer(R"({"results":[{"id":")" + id +
                                    R"(","seq":1,"status":"accepted","stored_at":5}],"v":2})");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value().results.size(), 1u);

  for (const std::string& bad :
       {std::string("{"), std::string("{}"), std::string(R"({"results":{}})"),
        R"({"results":[{"id":")" + id + R"(","seq":1,"status":"maybe"}]})",
        std::string(R"({"results":[{"id":"x","seq":1,"status":"accepted"}]})"),
        R"({"results":[{"id":")" + id + R"(","seq":0,"status":"accepted"}]})",
        R"({"results":[{"id":")" + id + R"(","status":"accepted"}]})",
        R"({"results":[{"id":")" + id + R"(","seq":1,"status":"rejected","code":7}]})",
        std::string(R"({"results":[1]})")}) {
    EXPECT_FALSE(parse_outbox_answer(bad)) << bad;
  }
}

}  // namespace
}  // namespace kaban::protocol
