// The walking skeleton end to end: the real server (in this process, on 127.0.0.1 port 0) and
// the real agent library and CLI, over real TLS.
#include <signal.h>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>

#include "child_process.hpp"
#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/server/api.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/http_server.hpp"
#include "sync_support.hpp"
#include "test_support.hpp"

extern char** environ;

namespace kaban {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::kTestPin;
using testing::server_now;
using testing::write_text;

constexpr const char* kDeviceFolder = "device";  // the enrolled device's data directory in tmp_

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s)
    c = static_cast<char>(gen());
  return s;
}

// Passes requests to the real Api and remembers which chunks it served, so tests can tell
// exactly what a sync fetched. An optional delay per chunk makes a download slow enough to
// interrupt.
class RecordingRouter final : public server::Router {
 public:
  explicit RecordingRouter(server::Router& inner) : inner_(inner) {}
  std::optional<std::size_t> body_limit(const server::HttpRequest& head,
                                        server::HttpResponse& refusal) override {
    return inner_.body_limit(head, refusal);
  }
  server::HttpResponse handle(const server::HttpRequest& request) override {
    if (request.path.starts_with("/v1/chunks/") && chunk_delay_.count() > 0)
      std::this_thread::sleep_for(chunk_delay_);
    server::HttpResponse r = inner_.handle(request);
    if (request.path.starts_with("/v1/chunks/") && r.status == 200) {
      std::lock_guard lock(mutex_);
      served_.push_back(request.path.substr(std::string("/v1/chunks/").size()));
    }
    return r;
  }
  std::vector<std::string> take_served() {
    std::lock_guard lock(mutex_);
    return std::exchange(served_, {});
  }
  std::size_t served_count() {
    std::lock_guard lock(mutex_);
    return served_.size();
  }
  void set_chunk_delay(std::chrono::milliseconds d) { chunk_delay_ = d; }

 private:
  server::Router& inner_;
  std::chrono::milliseconds chunk_delay_{0};
  std::mutex mutex_;
  std::vector<std::string> served_;
};

class Skeleton : public testing::ServerFixture {
 protected:
  void SetUp() override {
    server::ApiConfig api_config;
    api_config.changes_page = 2;  // several pages even for a few courses
    ASSERT_NO_FATAL_FAILURE(init_server(api_config));
    router_.emplace(*api_);
    serve_through(*router_);
    ASSERT_NO_FATAL_FAILURE(start_server());

    auto db = server::open_database(server_dir_);
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    add_user("aiko", "Aiko Tanaka");

    canary_ = testing::random_marker("shelter-canary");
    write_text(course_dir_ / "index.html", "<p>" + canary_ + "</p>");
    big_ = random_bytes(2 * 1024 * 1024 + 12345, 1);
    write_text(course_dir_ / "media/drill.mp4", big_);
    write_text(course_dir_ / "course.json",
               R"({"id": "shelter-opening", "title": "Opening a shelter",
      "lessons": [{"id": "welcome", "title": "Welcome", "kind": "html", "files": ["index.html"]},
                  {"id": "drill", "title": "Drill", "kind": "video", "duration_minutes": 4,
                   "files": ["media/drill.mp4"]}]})");
    publish(course_dir_);
  }

  // Enrolls a device of aiko's into device_dir_ and returns its open store.
  agent::Store enroll() {
    enroll_device("aiko", kDeviceFolder);
    auto store = agent::Store::open(device_dir_, kTestPin);
    EXPECT_TRUE(store);
    return std::move(store).value();
  }

  // A client with the pinned CA and, if given, a client identity; for raw endpoint checks.
  agent::HttpsClient client(std::optional<crypto::TlsClientIdentity> me = std::nullopt) {
    agent::HttpsClientConfig config;
    config.host = "127.0.0.1";
    config.port = port_;
    config.connect_timeout = 2s;
    config.request_timeout = 5s;
    crypto::TlsClientTrust trust;
    trust.ca_pem = identity_->ca_pem();
    return agent::HttpsClient(config, std::move(trust), std::move(me));
  }

  std::string error_code_of(const agent::HttpsResponse& r) {
    auto body = protocol::parse_error_body(r.body);
    return body ? body.value().code : "";
  }

  fs::path device_dir_ = tmp_.path() / kDeviceFolder, course_dir_ = tmp_.path() / "course";
  std::optional<RecordingRouter> router_;
  std::unique_ptr<SQLite::Database> db_;
  std::string canary_, big_;
};

// The hashes of the chunks a publish cuts `bytes` into.
std::vector<std::string> chunk_hashes(std::string_view bytes) {
  const server::Chunker chunker;
  std::vector<std::string> hashes;
  for (crypto::ByteView rest = crypto::as_bytes(bytes); !rest.empty();) {
    const crypto::ByteView chunk = rest.first(chunker.cut(rest));
    hashes.push_back(crypto::to_hex(crypto::sha256(chunk)));
    rest = rest.subspan(chunk.size());
  }
  return hashes;
}

std::string read_lesson(agent::Library& library, std::string_view course, std::string_view lesson) {
  std::string out;
  auto r = library.open_file(course, lesson, "", [&](crypto::ByteView b) -> Result<void> {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    return ok();
  });
  EXPECT_TRUE(r) << r.error().message();
  return out;
}

TEST_F(Skeleton, EnrollSyncAndReadOfflineByteIdentical) {
  {
    agent::Store store = enroll();
    std::string why;
    auto report = agent::sync(store, {}, why);
    ASSERT_TRUE(report) << why << " " << report.error().message();
    EXPECT_EQ(report.value().new_versions, 1u);
    EXPECT_EQ(report.value().made_ready, std::vector<std::string>{"shelter-opening@1"});
    // The page's one chunk and the video's.
    EXPECT_EQ(report.value().chunks_downloaded, 1 + chunk_hashes(big_).size());
  }
  server_->stop();  // offline from here on

  auto store = agent::Store::open(device_dir_, kTestPin);
  ASSERT_TRUE(store);
  agent::Library library(store.value());
  auto courses = library.courses();
  ASSERT_TRUE(courses);
  ASSERT_EQ(courses.value().size(), 1u);
  EXPECT_TRUE(courses.value()[0].ready);
  EXPECT_EQ(read_lesson(library, "shelter-opening", "drill"), big_);
  EXPECT_EQ(read_lesson(library, "shelter-opening", "welcome"), "<p>" + canary_ + "</p>");
  EXPECT_TRUE(testing::files_containing(device_dir_, canary_).empty())
      << "course text is readable in the device's data directory";
}

TEST_F(Skeleton, SecondSyncFetchesNothingAndUpdateFetchesOnlyNewChunks) {
  agent::Store store = enroll();
  std::string why;
  ASSERT_TRUE(agent::sync(store, {}, why)) << why;
  router_->take_served();
  auto again = agent::sync(store, {}, why);
  ASSERT_TRUE(again) << why;
  EXPECT_EQ(again.value().new_versions, 0u);
  EXPECT_TRUE(router_->take_served().empty());

  write_text(course_dir_ / "index.html", "<p>revised</p>");
  publish(course_dir_);
  auto update = agent::sync(store, {}, why);
  ASSERT_TRUE(update) << why;
  EXPECT_EQ(update.value().made_ready, std::vector<std::string>{"shelter-opening@2"});
  EXPECT_EQ(router_->take_served().size(), 1u) << "only the changed file's chunk";
  agent::Library library(store);
  EXPECT_EQ(read_lesson(library, "shelter-opening", "welcome"), "<p>revised</p>");
}

TEST_F(Skeleton, ManyCoursesArriveOverSeveralPages) {
  for (int i = 0; i < 5; ++i) {
    const fs::path dir = tmp_.path() / ("c" + std::to_string(i));
    write_text(dir / "a.txt", "course " + std::to_string(i));
    write_text(
        dir / "course.json",
        R"({"id": "c)" + std::to_string(i) +
            R"(", "title": "C", "lessons": [{"title": "A", "kind": "other", "files": ["a.txt"]}]})");
    publish(dir);
  }
  agent::Store store = enroll();
  std::string why;
  auto report = agent::sync(store, {}, why);
  ASSERT_TRUE(report) << why;
  EXPECT_EQ(report.value().new_versions, 6u);
  EXPECT_EQ(report.value().made_ready.size(), 6u);
}

TEST_F(Skeleton, CodeIsSingleUseAndExpires) {
  const protocol::EnrollmentLine line = enrollment_line("aiko");
  std::string why;
  ASSERT_TRUE(agent::request_enrollment(line, {}, why)) << why;
  auto reused = agent::request_enrollment(line, {}, why);
  ASSERT_FALSE(reused);
  EXPECT_EQ(reused.error(), agent::errc::server_refused);
  EXPECT_NE(why.find("already"), std::string::npos) << why;

  auto expired = agent::request_enrollment(enrollment_line("aiko", 1h, server_now() - 2h), {}, why);
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error(), agent::errc::server_refused);
  EXPECT_NE(why.find("expired"), std::string::npos) << why;
}

TEST_F(Skeleton, WrongPinIsRefusedBeforeAnythingIsSent) {
  protocol::EnrollmentLine line = enrollment_line("aiko");
  const protocol::EnrollmentLine good = line;
  line.ca_fingerprint = std::string(64, 'a');
  std::string why;
  auto r = agent::request_enrollment(line, {}, why);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), agent::errc::server_untrusted);
  // The code was never sent, so it still works.
  EXPECT_TRUE(agent::request_enrollment(good, {}, why)) << why;
}

TEST_F(Skeleton, UnreachableServerIsNamed) {
  protocol::EnrollmentLine line = enrollment_line("aiko");
  server_->stop();
  std::string why;
  auto r = agent::request_enrollment(line, {.connect_timeout = 1s}, why);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), agent::errc::server_unreachable);
}

TEST_F(Skeleton, EndpointsNeedAKnownUnrevokedDevice) {
  auto anonymous = client();
  auto r = anonymous.request("POST", "/v1/checkin", R"({"device":{"platform":"linux"}})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value().status, 401);
  EXPECT_EQ(error_code_of(r.value()), "certificate_required");

  // A certificate from another CA does not get past the handshake.
  auto other_ca_key = crypto::EcPrivateKey::generate();
  auto other_ca = crypto::make_self_signed_ca(other_ca_key, "Other CA", 24h).value();
  auto device_key = crypto::EcPrivateKey::generate();
  auto csr = crypto::CertificateRequest::create(device_key, "mallory").value();
  auto foreign = crypto::issue_certificate(other_ca, other_ca_key, csr,
                                           {.validity = 1h,
                                            .purpose = crypto::CertificatePurpose::client,
                                            .dns_names = {},
                                            .ip_addresses = {}})
                     .value();
  auto impostor = client(crypto::TlsClientIdentity{foreign.to_pem(), device_key.to_pem()});
  auto refused = impostor.request("POST", "/v1/checkin", R"({"device":{"platform":"linux"}})");
  EXPECT_FALSE(refused && refused.value().status == 200);

  // A revoked device is refused.
  agent::Store store = enroll();
  auto identity = agent::load_identity(store).value();
  server::Directory directory(*db_);
  ASSERT_TRUE(directory.revoke_device(identity.device_id, server_now()));
  std::string why;
  auto sync = agent::sync(store, {}, why);
  ASSERT_FALSE(sync);
  EXPECT_EQ(sync.error(), agent::errc::server_refused);
  EXPECT_NE(why.find("revoked"), std::string::npos) << why;
}

TEST_F(Skeleton, ChunkOfACourseTheUserMayNotSeeIsRefused) {
  agent::Store store = enroll();
  auto identity = agent::load_identity(store).value();
  auto me = client(crypto::TlsClientIdentity{
      identity.certificate_pem, crypto::SecretKey::from_bytes(identity.private_key_pem.bytes())});
  const std::string hash = chunk_hashes(big_).front();
  auto visible = me.request("GET", "/v1/chunks/" + hash);
  ASSERT_TRUE(visible);
  ASSERT_EQ(visible.value().status, 200);
  EXPECT_EQ(visible.value().body, big_.substr(0, visible.value().body.size()));
  EXPECT_EQ(crypto::to_hex(crypto::sha256(crypto::as_bytes(visible.value().body))), hash);

  db_->exec("UPDATE course_assignments SET audience = 'none' WHERE course_id = 'shelter-opening'");
  auto hidden = me.request("GET", "/v1/chunks/" + hash);
  ASSERT_TRUE(hidden);
  EXPECT_EQ(hidden.value().status, 404);
  EXPECT_EQ(error_code_of(hidden.value()), "chunk_not_found");
  std::string why;
  auto report = agent::sync(store, {}, why);
  ASSERT_TRUE(report) << why;
  EXPECT_EQ(report.value().new_versions, 0u) << "the hidden course was listed";
}

TEST_F(Skeleton, BadEnrollmentsGetClearErrorsAndARateLimit) {
  auto anonymous = client();
  auto r = anonymous.request("POST", "/v1/enroll", "{not json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value().status, 400);
  r = anonymous.request("POST", "/v1/enroll", std::string(20 * 1024, ' '));
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value().status, 413);
  const std::string unknown_field =
      R"({"code":"7KQ2-M9XD-4TNA-P3HV","csr":"x","device":{"platform":"linux"},"admin":1})";
  r = anonymous.request("POST", "/v1/enroll", unknown_field);
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value().status, 400);
  EXPECT_NE(r.value().body.find("admin"), std::string::npos);

  auto key = crypto::EcPrivateKey::generate();
  const std::string csr = crypto::CertificateRequest::create(key, "x").value().to_pem();
  protocol::EnrollRequest wrong{"7KQ2-M9XD-4TNA-P3HV", csr, {"linux", "", "", "", ""}, ""};
  int status = 0;
  for (int i = 0; i < 11; ++i) {
    auto attempt = anonymous.request("POST", "/v1/enroll", protocol::to_json(wrong));
    ASSERT_TRUE(attempt);
    status = attempt.value().status;
    if (i < 10) {
      EXPECT_EQ(status, 401) << "attempt " << i;
    }
  }
  EXPECT_EQ(status, 429);
  EXPECT_TRUE(server_logged("\"status\":429")) << "refusals are logged";
}

TEST_F(Skeleton, RestoredServerDatabaseForcesAResync) {
  agent::Store store = enroll();
  auto state = agent::load_sync_state(store).value();
  state.cursor = "0123456789abcdef.99";  // another epoch
  ASSERT_TRUE(agent::save_sync_state(store, state));
  std::string why;
  auto report = agent::sync(store, {}, why);
  ASSERT_TRUE(report) << why;
  EXPECT_EQ(report.value().new_versions, 1u);
}

TEST_F(Skeleton, StoppedSyncResumesWithoutFetchingStoredChunksAgain) {
  std::string big2 = random_bytes(20 * 1024 * 1024, 2);
  write_text(course_dir_ / "media/drill.mp4", big2);
  publish(course_dir_);
  agent::Store store = enroll();
  std::atomic<bool> stop{false};
  agent::SyncOptions options;
  options.parallel_downloads = 2;
  options.commit_batch_bytes = 2 * 1024 * 1024;
  std::atomic<std::uint64_t> seen{0};
  options.on_bytes = [&](std::uint64_t n) {
    if ((seen += n) > 9 * 1024 * 1024)
      stop = true;
  };
  options.stop = &stop;
  std::string why;
  auto first = agent::sync(store, options, why);
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error(), agent::errc::interrupted);
  router_->take_served();
  agent::Library library(store);
  auto missing = library.missing_chunks();
  ASSERT_TRUE(missing);
  EXPECT_LT(missing.value().size(), chunk_hashes(big2).size() + 1) << "nothing was committed";

  stop = false;
  options.on_bytes = nullptr;
  auto second = agent::sync(store, options, why);
  ASSERT_TRUE(second) << why;
  std::vector<std::string> served = router_->take_served();
  std::set<std::string> expected;
  for (const auto& c : missing.value())
    expected.insert(c.sha256);
  EXPECT_EQ(std::set<std::string>(served.begin(), served.end()), expected);
  EXPECT_EQ(served.size(), expected.size()) << "a chunk was fetched twice";
  EXPECT_EQ(read_lesson(library, "shelter-opening", "drill"), big2);
}

TEST_F(Skeleton, ARevisedCourseUpdatesByFetchingOnlyTheChunksAroundTheEdit) {
  agent::Store store = enroll();
  std::string why;
  ASSERT_TRUE(agent::sync(store, {}, why)) << why;
  const std::vector<std::string> before = chunk_hashes(big_);
  router_->take_served();

  // Bytes inserted in the middle of the video, as an editor splicing in a clip would.
  std::string revised = big_;
  revised.insert(revised.size() / 2, random_bytes(5000, 9));
  write_text(course_dir_ / "media/drill.mp4", revised);
  publish(course_dir_);
  auto report = agent::sync(store, {}, why);
  ASSERT_TRUE(report) << why;
  EXPECT_EQ(report.value().made_ready, std::vector<std::string>{"shelter-opening@2"});

  std::set<std::string> expected;
  for (const std::string& h : chunk_hashes(revised))
    if (std::find(before.begin(), before.end(), h) == before.end())
      expected.insert(h);
  const std::vector<std::string> served = router_->take_served();
  EXPECT_EQ(std::set<std::string>(served.begin(), served.end()), expected);
  EXPECT_EQ(served.size(), expected.size());
  EXPECT_LE(served.size(), 3u) << "an insertion costs the chunks around it only";
  agent::Library library(store);
  EXPECT_EQ(read_lesson(library, "shelter-opening", "drill"), revised);
  // The old version's chunks the new one does not use are gone from the device.
  EXPECT_EQ(store.db().execAndGet("SELECT count(*) FROM course_versions").getInt(), 1);
}

TEST_F(Skeleton, ARetiredCourseLeavesTheDeviceAtItsNextSync) {
  agent::Store store = enroll();
  std::string why;
  ASSERT_TRUE(agent::sync(store, {}, why)) << why;
  server::Catalog catalog(*db_, server_dir_);
  ASSERT_TRUE(catalog.retire("shelter-opening", server_now()));
  auto report = agent::sync(store, {}, why);
  ASSERT_TRUE(report) << why;
  EXPECT_EQ(report.value().courses_removed, std::vector<std::string>{"shelter-opening"});
  EXPECT_TRUE(agent::Library(store).courses().value().empty());
  EXPECT_EQ(store.db().execAndGet("SELECT count(*) FROM chunks").getInt(), 0);
}

TEST_F(Skeleton, ACourseWhoseManifestDoesNotVerifyIsSkippedAndTheOthersSync) {
  // Another course, published after the first, whose signature the device will refuse.
  const fs::path other = tmp_.path() / "other";
  write_text(other / "index.html", "<p>Radio check</p>");
  write_text(other / "course.json", R"({"id": "radio", "title": "Radio",
      "lessons": [{"id": "check", "title": "Check", "kind": "html", "files": ["index.html"]}]})");
  publish(other);
  db_->exec("UPDATE course_versions SET signature = '" + std::string(128, '0') +
            "' WHERE course_id = 'shelter-opening'");
  agent::Store store = enroll();
  std::string why;
  auto report = agent::sync(store, {}, why);
  ASSERT_TRUE(report) << why;
  ASSERT_EQ(report.value().courses_refused.size(), 1u);
  EXPECT_EQ(report.value().courses_refused[0].course_id, "shelter-opening");
  EXPECT_NE(report.value().courses_refused[0].reason.find("signature"), std::string::npos)
      << report.value().courses_refused[0].reason;
  EXPECT_EQ(report.value().made_ready, std::vector<std::string>{"radio@1"});
  // The course's next version, signed properly, is taken as usual.
  publish(course_dir_);
  report = agent::sync(store, {}, why);
  ASSERT_TRUE(report) << why;
  EXPECT_EQ(report.value().made_ready, std::vector<std::string>{"shelter-opening@2"});
}

#ifdef KABAN_AGENT_BIN
// Runs the kaban CLI with the device's data directory and PIN; returns its pid.
pid_t spawn_agent(const fs::path& home, std::vector<std::string> args, const fs::path& output) {
  return testing::spawn_process(
      KABAN_AGENT_BIN, std::move(args),
      {"KABAN_HOME=" + home.string(), std::string("KABAN_PIN=") + kTestPin, "PATH=/usr/bin:/bin"},
      output);
}

using testing::wait_exit;

TEST_F(Skeleton, CliKilledMidDownloadResumesWithoutRefetchingStoredChunks) {
  std::string big2 = random_bytes(30 * 1024 * 1024, 3);
  write_text(course_dir_ / "media/drill.mp4", big2);
  publish(course_dir_);
  { agent::Store store = enroll(); }
  router_->set_chunk_delay(10ms);
  const fs::path out = tmp_.path() / "agent.out";
  const pid_t pid = spawn_agent(device_dir_, {"sync", "--parallel", "2"}, out);
  ASSERT_GT(pid, 0);
  // The CLI commits every 8 MiB: after 12 MiB of chunks at least one batch is on disk.
  const std::size_t total_chunks = chunk_hashes(big2).size() + 1;  // and the page's
  const std::size_t enough = total_chunks * 12 / 30;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (router_->served_count() < enough && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  // Requests of the killed agent may still be in the router (sleeping, then recording): wait
  // until the server has let go of its connections before the count starts afresh.
  const auto drained = std::chrono::steady_clock::now() + 10s;
  while (server_->connection_count() > 0 && std::chrono::steady_clock::now() < drained)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(server_->connection_count(), 0u);
  router_->take_served();

  std::set<std::string> missing_after_kill;
  {
    auto store = agent::Store::open(device_dir_, kTestPin);
    ASSERT_TRUE(store) << "the store survives a kill -9";
    agent::Library library(store.value());
    auto missing = library.missing_chunks().value();
    std::set<std::string> still_missing;
    for (const auto& c : missing)
      still_missing.insert(c.sha256);
    EXPECT_LT(still_missing.size(), total_chunks) << "nothing was committed before the kill";
    missing_after_kill = std::move(still_missing);
  }
  router_->set_chunk_delay(0ms);
  const auto agent_output = [&] { return testing::text_of(out); };
  EXPECT_EQ(wait_exit(spawn_agent(device_dir_, {"sync"}, out)), 0) << agent_output();
  const std::vector<std::string> served = router_->take_served();
  for (const std::string& hash : served)
    EXPECT_TRUE(missing_after_kill.contains(hash)) << "fetched again although stored: " << hash;
  EXPECT_EQ(std::set<std::string>(served.begin(), served.end()).size(), served.size());

  const fs::path copy = tmp_.path() / "drill.mp4";
  EXPECT_EQ(wait_exit(spawn_agent(device_dir_,
                                  {"open", "shelter-opening/drill", "--out", copy.string()}, out)),
            0);
  const auto bytes = testing::read_file(copy);
  EXPECT_TRUE(std::string(bytes.begin(), bytes.end()) == big2) << agent_output();
}

TEST_F(Skeleton, AnExpiredCourseLeavesTheDeviceOfflineToo) {
  { agent::Store store = enroll(); }
  const fs::path out = tmp_.path() / "agent.out";
  const auto agent_output = [&] { return testing::text_of(out); };
  // Expires in two seconds: the device learns the date at this sync, then is offline.
  server::Catalog catalog(*db_, server_dir_);
  std::string why;
  ASSERT_TRUE(catalog.set_expiry("shelter-opening", server_now() + 2s, identity_->signing_key,
                                 server_now(), why))
      << why;
  ASSERT_EQ(wait_exit(spawn_agent(device_dir_, {"sync"}, out)), 0) << agent_output();
  server_->stop();
  ASSERT_EQ(wait_exit(spawn_agent(device_dir_, {"courses"}, out)), 0) << agent_output();
  EXPECT_NE(agent_output().find("shelter-opening"), std::string::npos) << agent_output();
  std::this_thread::sleep_for(2500ms);
  ASSERT_EQ(wait_exit(spawn_agent(device_dir_, {"courses"}, out)), 0) << agent_output();
  EXPECT_NE(agent_output().find("course shelter-opening has expired"), std::string::npos)
      << agent_output();
  auto store = agent::Store::open(device_dir_, kTestPin);
  ASSERT_TRUE(store);
  EXPECT_TRUE(agent::Library(store.value()).courses().value().empty());
}
#endif

}  // namespace
}  // namespace kaban
