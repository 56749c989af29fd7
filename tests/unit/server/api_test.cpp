// The /v1 outbox and inbox endpoints through Api::handle(), without the network: what a device
// sends in, what it gets back.
#include <chrono>
#include <future>
#include <map>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/inbox.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/outbox.hpp"
#include "kaban/server/api.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/messaging.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

using kaban::testing::TempDir;

const UnixTime kNow{std::chrono::seconds{1'800'000'000}};

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(init_data_dir(tmp_.path(), {}));
    auto identity = load_identity(tmp_.path());
    ASSERT_TRUE(identity);
    identity_ = std::make_unique<ServerIdentity>(std::move(identity).value());
    auto db = open_database(tmp_.path());
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    Directory directory(*db_);
    ASSERT_TRUE(directory.add_user("alice", "Alice Aoki", kNow));
    ASSERT_TRUE(directory.add_user("bob", "Bob Baba", kNow));
    alice_ = enroll("alice");
    bob_ = enroll("bob");
    std::string why;
    Messaging messaging(*db_);
    ASSERT_TRUE(messaging.add_channel("team-a", "Team A", kNow, why));
    ASSERT_TRUE(
        messaging.add_members("team-a", std::vector<std::string>{"alice", "bob"}, kNow, why));
    ApiConfig config;
    config.inbox_page = 3;
    config.inbox_poll_interval = std::chrono::milliseconds(20);
    api_ = std::make_unique<Api>(tmp_.path(), *identity_, config);
  }

  // Enrolls a device for `login`; its certificate's DER.
  crypto::Bytes enroll(const std::string& login) {
    Directory directory(*db_);
    auto code = directory.create_enroll_code(login, std::chrono::hours(1), kNow);
    EXPECT_TRUE(code);
    auto key = crypto::EcPrivateKey::generate();
    auto csr = crypto::CertificateRequest::create(key, login).value().to_pem();
    auto enrolled = directory.enroll_device(code.value(), csr, {"linux", "", "", login, "0.1.0"},
                                            kNow, *identity_);
    EXPECT_TRUE(enrolled);
    return enrolled.value().certificate.der();
  }

  HttpResponse get(const crypto::Bytes& certificate, const std::string& path,
                   std::map<std::string, std::string> query = {}) {
    HttpRequest req;
    req.method = "GET";
    req.path = path;
    req.target = path;
    req.query = std::move(query);
    req.peer_address = "127.0.0.1";
    req.client_certificate = certificate;
    return api_->handle(req);
  }

  HttpResponse post(const crypto::Bytes& certificate, const std::string& path, std::string body) {
    HttpRequest req;
    req.method = "POST";
    req.path = path;
    req.target = path;
    req.content_type = "application/json";
    req.body = std::move(body);
    req.peer_address = "127.0.0.1";
    req.client_certificate = certificate;
    return api_->handle(req);
  }

  HttpResponse put(const crypto::Bytes& certificate, const std::string& path, std::string body,
                   Api* api = nullptr) {
    HttpRequest req;
    req.method = "PUT";
    req.path = path;
    req.target = path;
    req.content_type = "application/octet-stream";
    req.body = std::move(body);
    req.peer_address = "127.0.0.1";
    req.client_certificate = certificate;
    return (api ? *api : *api_).handle(req);
  }

  // PUT /v1/chunks/<its hash> of `bytes`.
  HttpResponse put_chunk(const crypto::Bytes& certificate, const std::string& bytes,
                         Api* api = nullptr) {
    return put(certificate, "/v1/chunks/" + hash_of(bytes), bytes, api);
  }

  static std::string hash_of(const std::string& bytes) {
    return crypto::to_hex(crypto::sha256(crypto::as_bytes(bytes)));
  }

  // A one-chunk attachment of `bytes`.
  static protocol::Attachment attachment(std::string name, const std::string& bytes) {
    protocol::Attachment a;
    a.name = std::move(name);
    a.media_type = "text/plain";
    a.size = bytes.size();
    a.sha256 = hash_of(bytes);
    a.chunks.push_back({hash_of(bytes), bytes.size()});
    return a;
  }

  // Posts one message with `attachments` to `channel` from `certificate`'s device; its result.
  protocol::OutboxResult post_message(const crypto::Bytes& certificate, std::int64_t seq,
                                      const std::string& channel,
                                      std::vector<protocol::Attachment> attachments) {
    protocol::OutboxUpload upload;
    upload.items.push_back(message(seq, "see attached"));
    upload.items[0].message->channel = channel;
    upload.items[0].message->attachments = std::move(attachments);
    HttpResponse r = post(certificate, "/v1/outbox", protocol::to_json(upload));
    EXPECT_EQ(r.status, 200) << r.body;
    auto answer = protocol::parse_outbox_answer(r.body);
    EXPECT_TRUE(answer) << r.body;
    if (!answer || answer.value().results.size() != 1)
      return {};
    return answer.value().results[0];
  }

  // GET through handle_async(): the answer, whenever it comes.
  std::future<HttpResponse> get_async(const crypto::Bytes& certificate, const std::string& path,
                                      std::map<std::string, std::string> query) {
    HttpRequest req;
    req.method = "GET";
    req.path = path;
    req.target = path;
    req.query = std::move(query);
    req.peer_address = "127.0.0.1";
    req.client_certificate = certificate;
    auto promise = std::make_shared<std::promise<HttpResponse>>();
    auto future = promise->get_future();
    api_->handle_async(std::move(req),
                       [promise](HttpResponse r) { promise->set_value(std::move(r)); });
    return future;
  }

  // The cursor after everything `certificate`'s user can see now.
  std::string caught_up(const crypto::Bytes& certificate) {
    std::string cursor;
    for (;;) {
      auto page =
          protocol::parse_inbox_response(get(certificate, "/v1/inbox", {{"cursor", cursor}}).body);
      EXPECT_TRUE(page);
      if (!page)
        return cursor;
      cursor = page.value().cursor;
      if (!page.value().more)
        return cursor;
    }
  }

  static std::string error_code(const HttpResponse& r) {
    auto body = protocol::parse_error_body(r.body);
    return body ? body.value().code : "(not an error body: " + r.body + ")";
  }

  static protocol::OutboxItem message(std::int64_t seq, std::string body) {
    protocol::OutboxItem item;
    item.id = protocol::new_uuid();
    item.seq = seq;
    item.kind = "message";
    item.message = protocol::NewMessage{"team-a", std::move(body), protocol::Priority::normal,
                                        false,    1'800'000'000,   {}};
    return item;
  }

  TempDir tmp_;
  std::unique_ptr<ServerIdentity> identity_;
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<Api> api_;
  crypto::Bytes alice_;
  crypto::Bytes bob_;
};

TEST_F(ApiTest, AnUploadedMessageReachesTheOtherMembersInbox) {
  protocol::OutboxUpload upload;
  for (int i = 1; i <= 4; ++i)
    upload.items.push_back(message(i, "message " + std::to_string(i)));
  HttpResponse r = post(alice_, "/v1/outbox", protocol::to_json(upload));
  ASSERT_EQ(r.status, 200) << r.body;
  auto answer = protocol::parse_outbox_answer(r.body);
  ASSERT_TRUE(answer) << r.body;
  ASSERT_EQ(answer.value().results.size(), 4u);
  for (const auto& result : answer.value().results)
    EXPECT_EQ(result.status, protocol::OutboxStatus::accepted) << result.reason;
  EXPECT_EQ(r.log_device.size(), 64u);

  // Sent again (the answer was lost): the same items, nothing new.
  r = post(alice_, "/v1/outbox", protocol::to_json(upload));
  ASSERT_EQ(r.status, 200) << r.body;
  answer = protocol::parse_outbox_answer(r.body);
  ASSERT_TRUE(answer);
  for (const auto& result : answer.value().results)
    EXPECT_EQ(result.status, protocol::OutboxStatus::duplicate);

  // Bob pages through with the configured page size (3), the cursor carrying the epoch.
  std::vector<std::string> bodies;
  std::string cursor;
  for (int pages = 0; pages < 10; ++pages) {
    r = get(bob_, "/v1/inbox", {{"cursor", cursor}, {"limit", "50"}});
    ASSERT_EQ(r.status, 200) << r.body;
    auto page = protocol::parse_inbox_response(r.body);
    ASSERT_TRUE(page) << r.body;
    EXPECT_LE(page.value().changes.size(), 3u);
    for (const auto& c : page.value().changes) {
      if (c.kind == "message") {
        EXPECT_EQ(c.message->sender, "alice");
        bodies.push_back(c.message->body);
      }
    }
    auto parsed = protocol::Cursor::parse(page.value().cursor);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed.value().epoch, identity_->server_epoch);
    cursor = page.value().cursor;
    if (!page.value().more)
      break;
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{"message 1", "message 2", "message 3", "message 4"}));
  // Nothing new: an empty page, and the cursor stays.
  r = get(bob_, "/v1/inbox", {{"cursor", cursor}, {"wait", "0"}});
  ASSERT_EQ(r.status, 200);
  auto empty = protocol::parse_inbox_response(r.body);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty.value().changes.empty());
  EXPECT_EQ(empty.value().cursor, cursor);

  // Urgent only: none of these.
  r = get(bob_, "/v1/inbox", {{"priority", "urgent"}});
  ASSERT_EQ(r.status, 200);
  auto urgent = protocol::parse_inbox_response(r.body);
  ASSERT_TRUE(urgent);
  EXPECT_TRUE(urgent.value().changes.empty());
}

TEST_F(ApiTest, BadRequestsAreRefusedNamingWhatIsWrong) {
  HttpResponse r = post(alice_, "/v1/outbox", "{\"items\": 5}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "bad_request");
  r = post(alice_, "/v1/outbox", "not json");
  EXPECT_EQ(r.status, 400);

  EXPECT_EQ(error_code(get(alice_, "/v1/inbox", {{"cursor", "nonsense"}})), "bad_cursor");
  r = get(alice_, "/v1/inbox", {{"cursor", "ffffffffffffffffffffffffffffffff.3"}});
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(error_code(r), "cursor_reset");
  r = get(alice_, "/v1/inbox", {{"limit", "many"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "bad_request");
  r = get(alice_, "/v1/inbox", {{"priority", "low"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("urgent"), std::string::npos);
  r = get(alice_, "/v1/inbox", {{"wait", "soon"}});
  EXPECT_EQ(r.status, 400);
  // A wait past the limit is clamped, not refused.
  EXPECT_EQ(get(alice_, "/v1/inbox", {{"wait", "3600"}}).status, 200);

  EXPECT_EQ(get({}, "/v1/inbox").status, 401);
  HttpRequest head;
  head.method = "GET";
  head.path = "/v1/outbox";
  HttpResponse refusal;
  EXPECT_FALSE(api_->body_limit(head, refusal));
  EXPECT_EQ(refusal.status, 405);
  head.method = "POST";
  EXPECT_EQ(api_->body_limit(head, refusal), protocol::kMaxOutboxRequestSize);
  head.method = "GET";
  head.path = "/v1/inbox";
  EXPECT_EQ(api_->body_limit(head, refusal), 0u);
}

TEST_F(ApiTest, AWaitingInboxRequestIsAnsweredWhenAMessageArrives) {
  const std::string cursor = caught_up(bob_);
  auto answer = get_async(bob_, "/v1/inbox", {{"cursor", cursor}, {"wait", "30"}});
  EXPECT_EQ(answer.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
      << "answered at once although nothing was new";

  // A message for someone else moves the sequence but must not wake Bob with an empty page.
  std::string why;
  Messaging messaging(*db_);
  ASSERT_TRUE(messaging.add_channel("team-b", "Team B", kNow, why));
  ASSERT_TRUE(messaging.add_members("team-b", std::vector<std::string>{"alice"}, kNow, why));
  EXPECT_EQ(answer.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);

  const auto begin = std::chrono::steady_clock::now();
  Announcement a;
  a.audience = "all";
  a.body = "Shelters open at 18:00";
  a.priority = protocol::Priority::urgent;
  ASSERT_TRUE(messaging.announce(a, kNow, why)) << why;
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(2));
  HttpResponse r = answer.get();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.log_endpoint, "GET /v1/inbox");
  EXPECT_EQ(r.log_device.size(), 64u);
  auto page = protocol::parse_inbox_response(r.body);
  ASSERT_TRUE(page) << r.body;
  ASSERT_EQ(page.value().changes.size(), 1u);
  EXPECT_EQ(page.value().changes[0].message->body, "Shelters open at 18:00");
}

TEST_F(ApiTest, AWaitingInboxRequestEndsEmptyAtItsDeadlineOrWhenTheServerStops) {
  const std::string cursor = caught_up(bob_);
  const auto begin = std::chrono::steady_clock::now();
  auto answer = get_async(bob_, "/v1/inbox", {{"cursor", cursor}, {"wait", "1"}});
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_GE(std::chrono::steady_clock::now() - begin, std::chrono::seconds(1));
  auto page = protocol::parse_inbox_response(answer.get().body);
  ASSERT_TRUE(page);
  EXPECT_TRUE(page.value().changes.empty());
  EXPECT_EQ(page.value().cursor, cursor);

  auto held = get_async(bob_, "/v1/inbox", {{"cursor", cursor}, {"wait", "60"}});
  EXPECT_EQ(held.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  api_->stopping();
  ASSERT_EQ(held.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(held.get().status, 200);
  // After stopping, a waiting request is answered at once.
  auto late = get_async(bob_, "/v1/inbox", {{"cursor", cursor}, {"wait", "60"}});
  ASSERT_EQ(late.wait_for(std::chrono::seconds(0)), std::future_status::ready);
}

TEST_F(ApiTest, AChunkIsUploadedOnceAndKeptUnderItsHash) {
  const std::string bytes = "a photo of the shelter door";
  HttpResponse r = put_chunk(alice_, bytes);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body, R"({"stored":true})");
  EXPECT_EQ(r.log_endpoint, "PUT /v1/chunks/:hash");
  EXPECT_EQ(r.log_device.size(), 64u);
  const std::string hash = hash_of(bytes);
  const auto path = tmp_.path() / kChunksDir / hash.substr(0, 2) / hash;
  const auto stored = kaban::testing::read_file(path);
  EXPECT_EQ(std::string(stored.begin(), stored.end()), bytes);
  EXPECT_EQ(db_->execAndGet("SELECT count(*) FROM uploaded_chunks").getInt(), 1);

  // Again, from this device or another: held already.
  r = put_chunk(alice_, bytes);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"stored":false})");
  r = put_chunk(bob_, bytes);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(db_->execAndGet("SELECT count(*) FROM uploaded_chunks").getInt(), 1);
}

TEST_F(ApiTest, AChunkWhoseBytesDoNotMatchItsNameOrThatIsEmptyIsRefused) {
  const std::string claimed = hash_of("what the device meant to send");
  const std::string sent = "what arrived";
  HttpResponse r = put(alice_, "/v1/chunks/" + claimed, sent);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "chunk_mismatch");
  EXPECT_NE(r.body.find(claimed.substr(0, 12)), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(hash_of(sent).substr(0, 12)), std::string::npos) << r.body;

  r = put(alice_, "/v1/chunks/" + hash_of(""), "");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "bad_request");
  r = put(alice_, "/v1/chunks/NOT-A-HASH", "x");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(put({}, "/v1/chunks/" + hash_of("x"), "x").status, 401);
  EXPECT_EQ(db_->execAndGet("SELECT count(*) FROM uploaded_chunks").getInt(), 0);
  EXPECT_FALSE(std::filesystem::exists(tmp_.path() / kChunksDir / claimed.substr(0, 2) / claimed));

  // Over a chunk's size: refused before the body is read, and again if it got through.
  const std::string big(protocol::kAttachmentChunkSize + 1, 'b');
  r = put_chunk(alice_, big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(error_code(r), "too_large");
  EXPECT_EQ(put_chunk(alice_, std::string(protocol::kAttachmentChunkSize, 'b')).status, 201);
}

TEST_F(ApiTest, ChunksTakeGetAndPutWithTheirOwnLimits) {
  HttpRequest head;
  head.path = "/v1/chunks/" + hash_of("x");
  HttpResponse refusal;
  head.method = "PUT";
  EXPECT_EQ(api_->body_limit(head, refusal), protocol::kAttachmentChunkSize);
  head.method = "GET";
  EXPECT_EQ(api_->body_limit(head, refusal), 0u);
  for (const char* method : {"POST", "DELETE", "PATCH"}) {
    head.method = method;
    refusal = {};
    EXPECT_FALSE(api_->body_limit(head, refusal)) << method;
    EXPECT_EQ(refusal.status, 405) << method;
    EXPECT_EQ(error_code(refusal), "method_not_allowed");
    EXPECT_NE(refusal.body.find("PUT"), std::string::npos) << refusal.body;
  }
}

TEST_F(ApiTest, UploadsPastTheQuotaWaitForTheMessagesThatUseThem) {
  ApiConfig config;
  config.upload_quota_bytes = 20;
  Api small(tmp_.path(), *identity_, config);
  const std::string first(12, '1');
  const std::string second(12, '2');
  ASSERT_EQ(put_chunk(alice_, first, &small).status, 201);
  HttpResponse r = put_chunk(alice_, second, &small);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(error_code(r), "upload_quota");
  EXPECT_NE(r.body.find("Send the messages that use them first"), std::string::npos) << r.body;
  // Bob has a quota of his own.
  EXPECT_EQ(put_chunk(bob_, second, &small).status, 201);

  // Once a message uses the first, Alice has room again.
  const auto sent = post_message(alice_, 1, "team-a", {attachment("one.txt", first)});
  EXPECT_EQ(sent.status, protocol::OutboxStatus::accepted) << sent.code << ": " << sent.reason;
  EXPECT_EQ(put_chunk(alice_, std::string(12, '3'), &small).status, 201);
}

TEST_F(ApiTest, AttachmentChunksReachWhoMayReadTheMessageOnly) {
  Directory directory(*db_);
  ASSERT_TRUE(directory.add_user("carol", "Carol Chiba", kNow));
  const crypto::Bytes carol = enroll("carol");
  const std::string bytes = "the evacuation map";
  const std::string path = "/v1/chunks/" + hash_of(bytes);
  ASSERT_EQ(put_chunk(alice_, bytes).status, 201);
  // The uploader's device may fetch it back; nobody else yet.
  HttpResponse r = get(alice_, path);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, bytes);
  EXPECT_EQ(r.content_type, "application/octet-stream");
  EXPECT_EQ(r.headers["Cache-Control"], "private, max-age=31536000, immutable");
  EXPECT_EQ(r.headers["ETag"], "\"" + hash_of(bytes) + "\"");
  EXPECT_EQ(get(bob_, path).status, 404);

  // A message naming a chunk never uploaded is refused.
  const auto missing = post_message(alice_, 1, "team-a", {attachment("gone.txt", "not here")});
  EXPECT_EQ(missing.status, protocol::OutboxStatus::rejected);
  EXPECT_EQ(missing.code, "attachment_missing");
  EXPECT_NE(missing.reason.find("\"gone.txt\""), std::string::npos) << missing.reason;

  const std::string bob_cursor = caught_up(bob_);
  const auto sent = post_message(alice_, 2, "team-a", {attachment("map.txt", bytes)});
  ASSERT_EQ(sent.status, protocol::OutboxStatus::accepted) << sent.code << ": " << sent.reason;
  r = get(bob_, path);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, bytes);
  r = get(carol, path);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(error_code(r), "chunk_not_found");

  // Bob's inbox carries the attachment as sent.
  auto page = protocol::parse_inbox_response(get(bob_, "/v1/inbox", {{"cursor", bob_cursor}}).body);
  ASSERT_TRUE(page);
  ASSERT_EQ(page.value().changes.size(), 1u);
  ASSERT_TRUE(page.value().changes[0].message);
  EXPECT_EQ(page.value().changes[0].message->attachments,
            std::vector<protocol::Attachment>{attachment("map.txt", bytes)});

  // Someone else's direct conversation stays closed to Carol.
  const std::string note = "for bob only";
  ASSERT_EQ(put_chunk(alice_, note).status, 201);
  const auto direct = post_message(alice_, 3, "dm:alice:bob", {attachment("note.txt", note)});
  ASSERT_EQ(direct.status, protocol::OutboxStatus::accepted) << direct.reason;
  EXPECT_EQ(get(bob_, "/v1/chunks/" + hash_of(note)).status, 200);
  EXPECT_EQ(get(carol, "/v1/chunks/" + hash_of(note)).status, 404);
}

}  // namespace
}  // namespace kaban::server
