// The /v1 endpoints through Api::handle(), without the network: what a device sends in, what it
// gets back; check-ins, compliance and blocking, renewal, device events and revocation.
#include <chrono>
#include <future>
#include <map>
#include <sstream>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/protocol/gzip.hpp"
#include "kaban/protocol/inbox.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/outbox.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/api.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/messaging.hpp"
#include "kaban/server/policies.hpp"
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
  crypto::Bytes enroll(const std::string& login) { return enroll_device(login).der; }

  struct EnrolledKey {
    crypto::Bytes der;
    std::string id;
    std::unique_ptr<crypto::EcPrivateKey> key;
  };

  // Enrolls a device for `login`, keeping its key; `report_token` (64 hex digits) if given.
  EnrolledKey enroll_device(const std::string& login, const std::string& report_token = "") {
    Directory directory(*db_);
    auto code = directory.create_enroll_code(login, std::chrono::hours(1), kNow);
    EXPECT_TRUE(code);
    auto key = std::make_unique<crypto::EcPrivateKey>(crypto::EcPrivateKey::generate());
    auto csr = crypto::CertificateRequest::create(*key, login).value().to_pem();
    EnrollOptions options;
    if (!report_token.empty())
      options.report_token_hash = protocol::report_token_hash(report_token);
    auto enrolled = directory.enroll_device(code.value(), csr, {"linux", "", "", login, "0.1.0"},
                                            kNow, *identity_, options);
    EXPECT_TRUE(enrolled);
    return {enrolled.value().certificate.der(), enrolled.value().device_id, std::move(key)};
  }

  // A posture that keeps every rule of the default policy, at the real time (the API's clock).
  static protocol::Posture good_posture() {
    protocol::Posture p;
    p.screen_lock = protocol::Fact::yes;
    p.disk_encryption = protocol::Fact::yes;
    p.rooted = protocol::Fact::not_applicable;
    p.os_version_number = "12";
    p.pin_length = 8;
    p.device_time = to_unix(
        std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()));
    return p;
  }

  static protocol::CheckinRequest checkin_request(protocol::Posture posture = good_posture(),
                                                  std::string csr_pem = "") {
    protocol::CheckinRequest req;
    req.device = {"linux", "Debian 12", "", "laptop", "0.5.0"};
    req.posture = std::move(posture);
    req.csr_pem = std::move(csr_pem);
    return req;
  }

  // POST /v1/checkin; the parsed answer (a failed expectation if it is not 200).
  protocol::CheckinResponse check_in(const crypto::Bytes& certificate,
                                     const protocol::CheckinRequest& req = checkin_request()) {
    HttpResponse r = post(certificate, "/v1/checkin", protocol::to_json(req));
    EXPECT_EQ(r.status, 200) << r.body;
    auto parsed = protocol::parse_checkin_response(r.body);
    EXPECT_TRUE(parsed) << r.body;
    return parsed ? std::move(parsed).value() : protocol::CheckinResponse{};
  }

  // POST /v1/device-events, without a client certificate.
  HttpResponse report(const std::string& device_id, const std::string& token,
                      std::vector<protocol::DeviceEvent> events) {
    protocol::DeviceEventsRequest body{device_id, token, std::move(events)};
    return post({}, "/v1/device-events", protocol::to_json(body));
  }

  void set_default_policy(const std::string& json_text) {
    auto file = protocol::parse_policy_file(json_text);
    ASSERT_TRUE(file) << json_text;
    ASSERT_TRUE(Policies(*db_).set(kDefaultPolicyAudience, file.value(), kNow));
  }

  // The whole audit log, oldest first.
  std::vector<AuditEntry> audit_entries() {
    auto entries = AuditLog(*db_).since(UnixTime{}, 1000);
    EXPECT_TRUE(entries);
    return entries ? std::move(entries).value() : std::vector<AuditEntry>{};
  }

  Device device_row(const std::string& id) {
    auto found = Directory(*db_).find_device(id);
    EXPECT_TRUE(found && found.value());
    return found && found.value() ? *found.value() : Device{};
  }

  // Runs an admin command; its output (a failed expectation if it fails).
  template <class Command>
  std::string admin(Command command) {
    std::ostringstream out;
    std::string why;
    auto done = command(out, why);
    EXPECT_TRUE(done) << why;
    return out.str();
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

TEST_F(ApiTest, TheCourseFeedIsGzippedOnlyWhenAskedAndDecodesToThePlainAnswer) {
  // A course of enough files that its manifest is a few kilobytes of hex.
  const std::filesystem::path course = tmp_.path() / "course";
  std::string lessons;
  for (int i = 0; i < 40; ++i) {
    const std::string name = "page-" + std::to_string(i) + ".html";
    kaban::testing::write_text(course / name, "<p>page " + std::to_string(i) + "</p>");
    lessons += std::string(i ? "," : "") + R"({"id": "p)" + std::to_string(i) +
               R"(", "title": "Page", "kind": "html", "files": [")" + name + R"("]})";
  }
  kaban::testing::write_text(course / "course.json",
                             R"({"id": "pages", "title": "Pages", "lessons": [)" + lessons + "]}");
  std::ostringstream out;
  std::string why;
  ASSERT_TRUE(admin_course_publish(tmp_.path(), course, out, why)) << why;

  const HttpResponse plain = get(alice_, "/v1/changes");
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_FALSE(plain.headers.contains("Content-Encoding"));
  EXPECT_GT(plain.body.size(), 4096u);

  const auto get_with = [&](const std::string& accept) {
    HttpRequest req;
    req.method = "GET";
    req.path = req.target = "/v1/changes";
    req.peer_address = "127.0.0.1";
    req.client_certificate = alice_;
    req.accept_encoding = accept;
    return api_->handle(req);
  };
  for (const std::string accept : {"gzip", "deflate, GZIP;q=0.5", " br , gzip "}) {
    const HttpResponse zipped = get_with(accept);
    ASSERT_EQ(zipped.status, 200);
    ASSERT_EQ(zipped.headers.count("Content-Encoding"), 1u) << accept;
    EXPECT_EQ(zipped.headers.at("Content-Encoding"), "gzip");
    EXPECT_EQ(zipped.headers.at("Vary"), "Accept-Encoding");
    EXPECT_LT(zipped.body.size(), plain.body.size() / 2) << accept;
    auto decoded = protocol::gzip_decompress(zipped.body, 1 << 20);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded.value(), plain.body);
  }
  for (const std::string accept : {"gzip;q=0", "deflate", "br, identity", "x-gzip2"})
    EXPECT_FALSE(get_with(accept).headers.contains("Content-Encoding")) << accept;
  // Messages stay plain whatever the device asks.
  HttpRequest inbox;
  inbox.method = "GET";
  inbox.path = inbox.target = "/v1/inbox";
  inbox.peer_address = "127.0.0.1";
  inbox.client_certificate = alice_;
  inbox.accept_encoding = "gzip";
  EXPECT_FALSE(api_->handle(inbox).headers.contains("Content-Encoding"));
}

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

TEST_F(ApiTest, ACheckinAnswersTheSignedPolicyLeaseCoursesAndUnlockCodeHash) {
  const auto alice = enroll_device("alice");
  const auto before =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  const protocol::CheckinResponse answer = check_in(alice.der);
  EXPECT_EQ(answer.device_id, alice.id);
  EXPECT_EQ(answer.login, "alice");
  EXPECT_EQ(answer.verdict, protocol::Verdict::compliant);
  EXPECT_TRUE(answer.reasons.empty());
  EXPECT_GE(answer.server_time, to_unix(before));
  EXPECT_EQ(answer.certificate_pem, "");  // a fresh certificate is not due
  EXPECT_TRUE(answer.commands.empty());
  ASSERT_TRUE(answer.courses);
  EXPECT_TRUE(answer.courses->empty());

  const auto key = identity_->signing_key.public_key();
  ASSERT_TRUE(protocol::verify_text(answer.policy, key));
  ASSERT_TRUE(protocol::verify_text(answer.lease, key));
  auto policy = protocol::parse_device_policy_text(answer.policy.text);
  ASSERT_TRUE(policy);
  EXPECT_EQ(policy.value().device_id, alice.id);
  EXPECT_EQ(policy.value().version, Policies(*db_).version().value());
  EXPECT_EQ(policy.value().settings, protocol::Policy{});
  auto lease = protocol::parse_lease_text(answer.lease.text);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease.value().device_id, alice.id);
  EXPECT_EQ(lease.value().issued_at, answer.server_time);
  EXPECT_EQ(lease.value().block_after, answer.server_time + 720 * 60);
  EXPECT_EQ(lease.value().wipe_after, answer.server_time + 90 * 86'400);
  EXPECT_EQ(lease.value().verdict, protocol::Verdict::compliant);

  const std::string code = Directory(*db_).unlock_code(alice.id).value();
  EXPECT_EQ(answer.unlock_code_hash, protocol::unlock_code_hash(code));
  const Device stored = device_row(alice.id);
  EXPECT_EQ(stored.policy_version, policy.value().version);
  EXPECT_EQ(stored.block_after, lease.value().block_after);
  EXPECT_EQ(stored.description.agent_version, "0.5.0");
}

TEST_F(ApiTest, ANonCompliantDeviceIsToldWhyAndBlocked) {
  const auto alice = enroll_device("alice");
  auto posture = good_posture();
  posture.pin_simple = true;
  posture.clock_rollback_seconds = 3600;
  const auto answer = check_in(alice.der, checkin_request(posture));
  EXPECT_EQ(answer.verdict, protocol::Verdict::blocked);
  ASSERT_EQ(answer.reasons.size(), 2u);
  EXPECT_EQ(answer.reasons[0].setting, "pin_block_simple");
  EXPECT_EQ(answer.reasons[1].setting, "clock");
  EXPECT_FALSE(answer.courses) << "a blocked device keeps what it has, unreadable";
  auto lease = protocol::parse_lease_text(answer.lease.text).value();
  EXPECT_EQ(lease.block_after, lease.issued_at);
  EXPECT_EQ(lease.verdict, protocol::Verdict::blocked);

  const std::string hash = hash_of("x");
  for (const HttpResponse& r :
       {get(alice.der, "/v1/changes"), get(alice.der, "/v1/chunks/" + hash),
        put(alice.der, "/v1/chunks/" + hash, "x"),
        post(alice.der, "/v1/outbox", protocol::to_json(protocol::OutboxUpload{})),
        get(alice.der, "/v1/inbox")}) {
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_EQ(error_code(r), "device_blocked");
    EXPECT_NE(r.body.find("too simple"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("compliant"), std::string::npos) << r.body;
    EXPECT_EQ(r.log_device, alice.id);
  }
  EXPECT_EQ(db_->execAndGet("SELECT count(*) FROM uploaded_chunks").getInt(), 0);

  // The other people's devices are not affected.
  EXPECT_EQ(get(bob_, "/v1/changes").status, 200);

  // A compliant check-in lifts it.
  const auto fixed = check_in(alice.der);
  EXPECT_EQ(fixed.verdict, protocol::Verdict::compliant);
  EXPECT_TRUE(fixed.courses);
  EXPECT_EQ(get(alice.der, "/v1/changes").status, 200);
}

TEST_F(ApiTest, ABlockedDeviceReadsOnlyMessagesFromIt) {
  const auto alice = enroll_device("alice");
  std::string why;
  Messaging messaging(*db_);
  ASSERT_TRUE(messaging.add_members("team-a", std::vector<std::string>{"alice"}, kNow, why));
  Announcement a;
  a.audience = "all";
  a.body = "Update your PIN, please";
  ASSERT_TRUE(messaging.announce(a, kNow, why)) << why;
  ASSERT_EQ(post_message(bob_, 1, "team-a", {}).status, protocol::OutboxStatus::accepted);

  auto posture = good_posture();
  posture.pin_set = false;
  ASSERT_EQ(check_in(alice.der, checkin_request(posture)).verdict, protocol::Verdict::blocked);
  EXPECT_EQ(get(alice.der, "/v1/inbox").status, 403);
  EXPECT_EQ(get(alice.der, "/v1/inbox", {{"priority", "urgent"}}).status, 403);
  HttpResponse r = get(alice.der, "/v1/inbox", {{"from", "it"}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto page = protocol::parse_inbox_response(r.body);
  ASSERT_TRUE(page);
  ASSERT_EQ(page.value().changes.size(), 1u);
  ASSERT_TRUE(page.value().changes[0].message);
  EXPECT_EQ(page.value().changes[0].message->body, "Update your PIN, please");
  EXPECT_EQ(page.value().changes[0].message->sender, "");

  EXPECT_EQ(error_code(get(alice.der, "/v1/inbox", {{"from", "bob"}})), "device_blocked");
  r = get(bob_, "/v1/inbox", {{"from", "bob"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\\\"it\\\""), std::string::npos) << r.body;
}

TEST_F(ApiTest, ADeviceOfflinePastItsLeaseIsBlockedUntilItChecksIn) {
  const auto alice = enroll_device("alice");
  // Enrolled and never checked in: no lease yet, nothing to block on.
  EXPECT_EQ(get(alice.der, "/v1/changes").status, 200);
  check_in(alice.der);
  EXPECT_EQ(get(alice.der, "/v1/changes").status, 200);
  // Its lease ran out an hour ago.
  const std::int64_t an_hour_ago = to_unix(std::chrono::time_point_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now())) -
                                   3600;
  SQLite::Statement expire(*db_,
                           "UPDATE devices SET block_after = ?, last_checkin_at = ? WHERE id = ?");
  expire.bind(1, an_hour_ago);
  expire.bind(2, an_hour_ago - 12 * 3600);
  expire.bind(3, alice.id);
  ASSERT_EQ(expire.exec(), 1);
  HttpResponse r = get(alice.der, "/v1/changes");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(error_code(r), "device_blocked");
  EXPECT_NE(r.body.find("not checked in for 13 h"), std::string::npos) << r.body;
  EXPECT_EQ(get(alice.der, "/v1/inbox", {{"from", "it"}}).status, 200);
  check_in(alice.der);
  EXPECT_EQ(get(alice.der, "/v1/changes").status, 200);
}

TEST_F(ApiTest, ACertificateIsRenewedOnlyWhenDueAndWhileInGoodStanding) {
  const auto alice = enroll_device("alice");
  const std::string csr = crypto::CertificateRequest::create(*alice.key, "alice").value().to_pem();
  // Fresh (30 days left of 30): not due.
  EXPECT_EQ(check_in(alice.der, checkin_request(good_posture(), csr)).certificate_pem, "");

  // The policy shortened the lifetime below what the certificate has left: due.
  set_default_policy(R"({"certificate_lifetime_days": 7})");
  auto answer = check_in(alice.der, checkin_request(good_posture(), csr));
  ASSERT_NE(answer.certificate_pem, "");
  auto renewed = crypto::Certificate::from_pem(answer.certificate_pem);
  ASSERT_TRUE(renewed);
  EXPECT_EQ(renewed.value().public_key_der(), alice.key->public_key_der());
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(renewed.value().not_after() -
                                                             renewed.value().not_before()),
            std::chrono::days(7) + crypto::kCertificateBackdate);
  const std::array<crypto::Certificate, 1> trusted{identity_->ca_certificate};
  EXPECT_TRUE(crypto::verify_chain(renewed.value(), trusted, std::chrono::system_clock::now()));
  // The new certificate speaks for the same device; so does the old one, until it expires.
  const crypto::Bytes second = renewed.value().der();
  HttpResponse r = get(second, "/v1/changes");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.log_device, alice.id);
  EXPECT_EQ(check_in(second).device_id, alice.id);
  EXPECT_EQ(get(alice.der, "/v1/changes").status, 200);
  // The renewed one has its whole (new) lifetime left: not due.
  EXPECT_EQ(check_in(second, checkin_request(good_posture(), csr)).certificate_pem, "");

  // Less than half the lifetime left: due. (A certificate of one day, recorded as the device's.)
  auto short_lived =
      crypto::issue_certificate(identity_->ca_certificate, identity_->ca_key,
                                crypto::CertificateRequest::from_pem(csr).value(),
                                {std::chrono::days(1), crypto::CertificatePurpose::client, {}, {}});
  ASSERT_TRUE(short_lived);
  SQLite::Statement record(*db_,
                           "INSERT INTO device_certificates(fingerprint, device_id, serial, "
                           "issued_at, not_after) VALUES (?, ?, '01', 0, 0)");
  record.bind(1, crypto::to_hex(short_lived.value().fingerprint()));
  record.bind(2, alice.id);
  record.exec();
  const crypto::Bytes third = short_lived.value().der();
  EXPECT_NE(check_in(third, checkin_request(good_posture(), csr)).certificate_pem, "");

  // Not while blocked, due or not.
  auto posture = good_posture();
  posture.pin_set = false;
  answer = check_in(third, checkin_request(posture, csr));
  EXPECT_EQ(answer.verdict, protocol::Verdict::blocked);
  EXPECT_EQ(answer.certificate_pem, "");
  EXPECT_EQ(db_->execAndGet("SELECT count(*) FROM device_certificates WHERE device_id = '" +
                            alice.id + "'")
                .getInt(),
            4);
}

TEST_F(ApiTest, ARenewalRequestForAnotherKeyIsRefusedAndNothingIsRecorded) {
  const auto alice = enroll_device("alice");
  set_default_policy(R"({"certificate_lifetime_days": 7})");  // renewal due
  const auto other = crypto::EcPrivateKey::generate();
  const std::string foreign = crypto::CertificateRequest::create(other, "alice").value().to_pem();
  auto posture = good_posture();
  posture.pin_set = false;  // would change the verdict if it were recorded
  HttpResponse r =
      post(alice.der, "/v1/checkin", protocol::to_json(checkin_request(posture, foreign)));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "csr_key_mismatch");
  EXPECT_NE(r.body.find("Nothing was recorded"), std::string::npos) << r.body;
  r = post(alice.der, "/v1/checkin",
           protocol::to_json(
               checkin_request(posture,
                               "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                               "REQUEST-----\n")));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "csr_invalid");
  const Device stored = device_row(alice.id);
  EXPECT_EQ(stored.policy_version, 0);
  EXPECT_EQ(stored.verdict, protocol::Verdict::compliant);
  EXPECT_EQ(db_->execAndGet("SELECT count(*) FROM device_certificates WHERE device_id = '" +
                            alice.id + "'")
                .getInt(),
            1);
}

TEST_F(ApiTest, DeviceEventsWithAWrongTokenAreRefusedAndChangeNothing) {
  ApiConfig config;
  config.enroll_failures_allowed = 3;
  api_ = std::make_unique<Api>(tmp_.path(), *identity_, config);
  const std::string token(64, '7');
  const auto alice = enroll_device("alice", token);
  const protocol::DeviceEvent locked{protocol::DeviceEventKind::locked, "pin_attempts", 0,
                                     1'800'000'000};
  for (const std::string& wrong : {std::string(64, '8'), std::string(64, '0')}) {
    HttpResponse r = report(alice.id, wrong, {locked});
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(error_code(r), "bad_token");
  }
  // Another device's token does not do either.
  const auto bob = enroll_device("bob", std::string(64, '9'));
  EXPECT_EQ(report(alice.id, std::string(64, '9'), {locked}).status, 401);
  EXPECT_EQ(device_row(alice.id).locked_at, 0);
  const auto entries = audit_entries();
  EXPECT_GE(entries.size(), 2u);  // the enrollments
  for (const auto& e : entries)
    EXPECT_NE(e.event, "device_locked");
  // Three failures from this address: now even the right token waits.
  HttpResponse r = report(alice.id, token, {locked});
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(error_code(r), "too_many_attempts");

  // From a fresh limiter the right token is taken.
  api_ = std::make_unique<Api>(tmp_.path(), *identity_, config);
  r = report(alice.id, token, {locked});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body), (nlohmann::json{{"accepted", 1}}));
  EXPECT_EQ(r.log_device, alice.id);
  EXPECT_NE(device_row(alice.id).locked_at, 0);
  EXPECT_EQ(device_row(alice.id).lock_reason, "pin_attempts");

  // A malformed body is a bad request, not a wrong token.
  r = post({}, "/v1/device-events", R"({"device_id":"x"})");
  EXPECT_EQ(r.status, 400);
  HttpRequest head;
  head.method = "POST";
  head.path = "/v1/device-events";
  HttpResponse refusal;
  EXPECT_EQ(api_->body_limit(head, refusal), protocol::kMaxDeviceEventsRequestSize);
  head.method = "GET";
  EXPECT_FALSE(api_->body_limit(head, refusal));
  EXPECT_EQ(refusal.status, 405);
}

TEST_F(ApiTest, AWipeCommandIsSentAtEveryCheckinUntilTheDeviceReportsTheWipe) {
  const std::string token(64, 'a');
  const auto alice = enroll_device("alice", token);
  const std::string printed = admin([&](std::ostream& out, std::string& why) {
    return admin_device_wipe(tmp_.path(), alice.id.substr(0, 10), out, why);
  });
  EXPECT_NE(printed.find("queued"), std::string::npos) << printed;
  const auto pending = Directory(*db_).pending_commands(alice.id).value();
  ASSERT_EQ(pending.size(), 1u);
  const protocol::DeviceCommand wipe{pending[0].id, protocol::CommandKind::wipe};
  EXPECT_NE(printed.find(std::to_string(wipe.id)), std::string::npos) << printed;
  // Asked twice, it is still one command.
  admin([&](std::ostream& out, std::string& why) {
    return admin_device_wipe(tmp_.path(), alice.id, out, why);
  });
  EXPECT_EQ(Directory(*db_).pending_commands(alice.id).value().size(), 1u);

  EXPECT_EQ(check_in(alice.der).commands, std::vector<protocol::DeviceCommand>{wipe});
  EXPECT_EQ(check_in(alice.der).commands, std::vector<protocol::DeviceCommand>{wipe});
  HttpResponse r = report(alice.id, token,
                          {{protocol::DeviceEventKind::wiped, "command", wipe.id, 1'800'000'000}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(check_in(alice.der).commands.empty());
  EXPECT_NE(device_row(alice.id).wiped_at, 0);
  // The report shows it wiped.
  const auto report_json = nlohmann::json::parse(admin([&](std::ostream& out, std::string& why) {
    return admin_report_compliance(tmp_.path(), Listing::json, out, why);
  }));
  for (const auto& d : report_json) {
    if (d["id"] == alice.id) {
      EXPECT_EQ(d["lease"], "wiped");
    }
  }
}

TEST_F(ApiTest, UnlockingRotatesTheUnlockCode) {
  const std::string token(64, 'b');
  const auto alice = enroll_device("alice", token);
  const std::string first_hash = check_in(alice.der).unlock_code_hash;
  const std::string shown = admin([&](std::ostream& out, std::string& why) {
    return admin_device_unlock(tmp_.path(), alice.id.substr(0, 8), out, why);
  });
  const std::string code = Directory(*db_).unlock_code(alice.id).value();
  EXPECT_NE(shown.find(code), std::string::npos) << shown;
  EXPECT_EQ(protocol::unlock_code_hash(code), first_hash);
  ASSERT_EQ(report(alice.id, token,
                   {{protocol::DeviceEventKind::locked, "pin_attempts", 0, 1'800'000'000},
                    {protocol::DeviceEventKind::unlocked, "unlock_code", 0, 1'800'000'100}})
                .status,
            200);
  const std::string second_hash = check_in(alice.der).unlock_code_hash;
  EXPECT_NE(second_hash, first_hash);
  EXPECT_EQ(protocol::unlock_code_hash(Directory(*db_).unlock_code(alice.id).value()), second_hash);
  // Showing the code is audited; the code itself is not in the log.
  const auto entries = audit_entries();
  int shown_entries = 0;
  for (const auto& e : entries) {
    shown_entries += e.event == "unlock_code_shown";
    EXPECT_EQ(e.details.find(code), std::string::npos) << e.event;
  }
  EXPECT_EQ(shown_entries, 1);
}

TEST_F(ApiTest, ARevokedDevicesCertificatesAreRefusedAndOthersAreNot) {
  const auto alice = enroll_device("alice");
  set_default_policy(R"({"certificate_lifetime_days": 7})");
  const std::string csr = crypto::CertificateRequest::create(*alice.key, "alice").value().to_pem();
  const auto renewed = check_in(alice.der, checkin_request(good_posture(), csr)).certificate_pem;
  ASSERT_NE(renewed, "");
  const crypto::Bytes second = crypto::Certificate::from_pem(renewed).value().der();
  EXPECT_TRUE(api_->accept_client_certificate(alice.der));
  EXPECT_TRUE(api_->accept_client_certificate(second));

  const std::string printed = admin([&](std::ostream& out, std::string& why) {
    return admin_device_revoke(tmp_.path(), alice.id.substr(0, 12), out, why);
  });
  EXPECT_NE(printed.find("revoked device " + alice.id), std::string::npos) << printed;
  EXPECT_FALSE(api_->accept_client_certificate(alice.der));
  EXPECT_FALSE(api_->accept_client_certificate(second));
  EXPECT_TRUE(api_->accept_client_certificate(bob_));
  // A certificate no device has is left to the request (403 unknown_device).
  const auto stranger = crypto::Certificate::from_pem(identity_->tls_chain_pem).value().der();
  EXPECT_TRUE(api_->accept_client_certificate(stranger));
  EXPECT_EQ(error_code(get(alice.der, "/v1/changes")), "device_revoked");
  EXPECT_EQ(error_code(post(second, "/v1/checkin", protocol::to_json(checkin_request()))),
            "device_revoked");

  // Nothing more can be queued for it, and the command says why.
  std::ostringstream out;
  std::string why;
  auto queued = admin_device_lock(tmp_.path(), alice.id, out, why);
  ASSERT_FALSE(queued);
  EXPECT_NE(why.find("revoked"), std::string::npos) << why;
  int revocations = 0;
  for (const auto& e : audit_entries())
    revocations += e.event == "device_revoked" && e.subject == alice.id;
  EXPECT_EQ(revocations, 1);
}

TEST_F(ApiTest, AdminDeviceCommandsNameADeviceByAUniquePrefix) {
  std::ostringstream out;
  std::string why;
  auto r = admin_device_wipe(tmp_.path(), "1234", out, why);
  ASSERT_FALSE(r);
  EXPECT_NE(why.find("at least 8 hex digits"), std::string::npos) << why;
  why.clear();
  r = admin_device_lock(tmp_.path(), "0000000000", out, why);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::no_such_device);
  EXPECT_NE(why.find("admin device list"), std::string::npos) << why;
  EXPECT_TRUE(out.str().empty());
}

TEST_F(ApiTest, TheComplianceReportShowsWhereEachLeaseStands) {
  Directory directory(*db_);
  for (const char* login : {"carol", "dave", "erin"})
    ASSERT_TRUE(directory.add_user(login, login, kNow));
  const auto alice = enroll_device("alice");  // offline too long, by today's policy
  const auto carol = enroll_device("carol");  // never checked in
  const auto dave = enroll_device("dave");    // past the lease's wipe_after
  const auto erin = enroll_device("erin");    // revoked
  const std::string bob_id = crypto::to_hex(crypto::sha256(bob_));
  check_in(bob_);
  check_in(alice.der);
  check_in(dave.der);
  check_in(erin.der);
  auto posture = good_posture();
  posture.pin_simple = true;
  const auto now_s =
      to_unix(std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()));
  // Alice last checked in two days ago; her lease (as stored) would still run, but the policy's
  // 12 hours have passed: she is listed blocked although her device never heard so.
  SQLite::Statement back(*db_,
                         "UPDATE devices SET last_checkin_at = ?, block_after = ? "
                         "WHERE id = ?");
  back.bind(1, now_s - 2 * 86'400);
  back.bind(2, now_s + 3600);
  back.bind(3, alice.id);
  ASSERT_EQ(back.exec(), 1);
  SQLite::Statement wipe_due(*db_, "UPDATE devices SET wipe_after = ? WHERE id = ?");
  wipe_due.bind(1, now_s - 60);
  wipe_due.bind(2, dave.id);
  ASSERT_EQ(wipe_due.exec(), 1);
  admin([&](std::ostream& out, std::string& why) {
    return admin_device_revoke(tmp_.path(), erin.id, out, why);
  });
  admin([&](std::ostream& out, std::string& why) {
    return admin_device_lock(tmp_.path(), bob_id, out, why);
  });

  const auto report_json = nlohmann::json::parse(admin([&](std::ostream& out, std::string& why) {
    return admin_report_compliance(tmp_.path(), Listing::json, out, why);
  }));
  std::map<std::string, nlohmann::json> by_id;
  for (const auto& d : report_json)
    by_id[d["id"].get<std::string>()] = d;
  ASSERT_EQ(by_id.size(), 6u);  // with the device alice enrolled first, never checked in
  EXPECT_EQ(by_id[bob_id]["lease"], "within grace");
  EXPECT_EQ(by_id[bob_id]["login"], "bob");
  EXPECT_EQ(by_id[bob_id]["verdict"], "compliant");
  ASSERT_EQ(by_id[bob_id]["pending_commands"].size(), 1u);
  EXPECT_EQ(by_id[bob_id]["pending_commands"][0]["kind"], "lock");
  EXPECT_EQ(by_id[alice.id]["lease"], "blocked (no check-in for 2 d)");
  EXPECT_EQ(by_id[carol.id]["lease"], "never checked in");
  EXPECT_TRUE(by_id[carol.id]["verdict"].is_null());
  EXPECT_EQ(by_id[dave.id]["lease"], "wipe due");
  EXPECT_EQ(by_id[erin.id]["lease"], "revoked");

  // A blocking verdict is its own state, with its reasons.
  check_in(alice.der, checkin_request(posture));
  const auto table = admin([&](std::ostream& out, std::string& why) {
    return admin_report_compliance(tmp_.path(), Listing::table, out, why);
  });
  EXPECT_NE(table.find("blocked (not compliant)"), std::string::npos) << table;
  EXPECT_NE(table.find("too simple"), std::string::npos) << table;
  const auto csv = admin([&](std::ostream& out, std::string& why) {
    return admin_report_compliance(tmp_.path(), Listing::csv, out, why);
  });
  EXPECT_EQ(csv.rfind("DEVICE,LOGIN,PLATFORM,VERDICT,REASONS,LAST CHECK-IN,LEASE,COMMANDS\r\n", 0),
            0u)
      << csv;
  EXPECT_NE(csv.find(alice.id), std::string::npos);

  // The device list shows the same devices with their state.
  const auto list = nlohmann::json::parse(admin([&](std::ostream& out, std::string& why) {
    return admin_device_list(tmp_.path(), Listing::json, out, why);
  }));
  ASSERT_EQ(list.size(), 6u);
  for (const auto& d : list) {
    EXPECT_TRUE(d.contains("id") && d.contains("login")) << d.dump();
    if (d["id"] == erin.id) {
      EXPECT_TRUE(d["revoked"].get<bool>());
    }
    if (d["id"] == alice.id) {
      EXPECT_EQ(d["verdict"], "blocked");
    }
  }
}

TEST_F(ApiTest, EnrollmentAnswersASignedPolicyAndFailuresAreAuditedWithoutTheCode) {
  Directory directory(*db_);
  const std::string code =
      directory
          .create_enroll_code(
              "alice", std::chrono::hours(1),
              std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()))
          .value();
  auto key = crypto::EcPrivateKey::generate();
  protocol::EnrollRequest req;
  req.csr_pem = crypto::CertificateRequest::create(key, "alice").value().to_pem();
  req.device = {"linux", "Debian 12", "", "laptop", "0.5.0"};
  req.report_token_hash = protocol::report_token_hash(std::string(64, 'd'));
  req.code = "ZZZZ-ZZZZ-ZZZZ-ZZZZ";
  HttpResponse r = post({}, "/v1/enroll", protocol::to_json(req));
  EXPECT_EQ(r.status, 401);
  req.code = code;
  r = post({}, "/v1/enroll", protocol::to_json(req));
  ASSERT_EQ(r.status, 200) << r.body;
  auto answer = protocol::parse_enroll_response(r.body);
  ASSERT_TRUE(answer) << r.body;
  ASSERT_TRUE(protocol::verify_text(answer.value().policy, identity_->signing_key.public_key()));
  auto policy = protocol::parse_device_policy_text(answer.value().policy.text);
  ASSERT_TRUE(policy);
  EXPECT_EQ(policy.value().device_id, answer.value().device_id);
  EXPECT_EQ(policy.value().settings, protocol::Policy{});
  EXPECT_TRUE(
      Directory(*db_).report_token_matches(answer.value().device_id, std::string(64, 'd')).value());
  // Used again: refused, and audited as a failure.
  r = post({}, "/v1/enroll", protocol::to_json(req));
  EXPECT_EQ(error_code(r), "enroll_code_used");

  std::vector<std::string> reasons;
  for (const auto& e : audit_entries()) {
    EXPECT_EQ(e.details.find(code), std::string::npos) << e.event;
    EXPECT_EQ(e.details.find("ZZZZ"), std::string::npos) << e.event;
    if (e.event == "enroll_failed") {
      EXPECT_EQ(e.actor, "address:127.0.0.1");
      reasons.push_back(nlohmann::json::parse(e.details)["reason"].get<std::string>());
    }
  }
  EXPECT_EQ(reasons, (std::vector<std::string>{"enroll_code_invalid", "enroll_code_used"}));
}

}  // namespace
}  // namespace kaban::server
