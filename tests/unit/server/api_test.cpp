// The /v1 outbox and inbox endpoints through Api::handle(), without the network: what a device
// sends in, what it gets back.
#include <chrono>
#include <future>
#include <map>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/crypto/x509.hpp"
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
                                        false, 1'800'000'000};
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

}  // namespace
}  // namespace kaban::server
