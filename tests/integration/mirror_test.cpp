// Content mirrors end to end (docs/content.md): the real server in this process on 127.0.0.1
// port 0, Debian's nginx as a child process configured by the nginx.conf `admin mirror add`
// writes, and the real agent library syncing through it over real TLS. A course crosses to the
// server once however many devices sync it; nginx refuses a certificate from another CA (and,
// with the list `admin mirror crl` writes, a revoked device); a mirror that is down, fails
// half-way or serves a damaged chunk costs the device nothing but a line in its report; and the
// mirror's own certificate reaches course chunks and nothing else, until it is removed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "child_process.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/http_server.hpp"
#include "sync_support.hpp"
#include "test_pki.hpp"
#include "test_support.hpp"

namespace kaban {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::kTestPin;
using testing::noise;
using testing::text_of;
using testing::write_text;

constexpr const char* kNginx = "/usr/sbin/nginx";
constexpr const char* kCourse = "shelter-basics";
constexpr const char* kLessonFile = "lesson.html";
constexpr const char* kChunkEndpoint = "GET /v1/chunks/:hash";
constexpr const char* kMirrorName = "ward3";
constexpr std::chrono::seconds kStartLimit{10};

// A port nobody listens on now: bound to 127.0.0.1 port 0, read back and released. nginx is
// then told to listen there (it cannot report a port it picked itself).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0)
      ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool accepts_connections(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool up = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (fd >= 0)
    ::close(fd);
  return up;
}

// Debian's nginx as a child process, with its own prefix, running the server block of the
// mirror's nginx.conf as written by `admin mirror add`, inside an http block of the test's.
class Nginx {
 public:
  Nginx(fs::path prefix, fs::path mirror_config, std::uint16_t port)
      : prefix_(std::move(prefix)), mirror_config_(std::move(mirror_config)), port_(port) {
    for (const char* dir : {"temp/body", "temp/proxy", "temp/fastcgi", "temp/uwsgi", "temp/scgi"})
      fs::create_directories(prefix_ / dir);
  }
  Nginx(const Nginx&) = delete;
  Nginx& operator=(const Nginx&) = delete;
  ~Nginx() { stop(); }

  // Starts nginx and waits until it accepts connections; false (with a failed expectation
  // showing the error log) if it does not.
  bool start() {
    const std::string p = prefix_.string();
    write_text(prefix_ / "nginx.conf",
               "# One process, whoever runs the test: as root, nginx's workers would otherwise\n"
               "# run as nobody, who may not enter the test's folders.\n"
               "master_process off;\n"
               "pid " +
                   p +
                   "/nginx.pid;\n"
                   "error_log " +
                   p +
                   "/error.log info;\n"
                   "events { worker_connections 256; }\n"
                   "http {\n"
                   "  log_format mirror '$status $upstream_cache_status $uri';\n"
                   "  access_log " +
                   p +
                   "/access.log mirror;\n"
                   "  client_body_temp_path " +
                   p +
                   "/temp/body;\n"
                   "  proxy_temp_path " +
                   p +
                   "/temp/proxy;\n"
                   "  fastcgi_temp_path " +
                   p +
                   "/temp/fastcgi;\n"
                   "  uwsgi_temp_path " +
                   p +
                   "/temp/uwsgi;\n"
                   "  scgi_temp_path " +
                   p +
                   "/temp/scgi;\n"
                   "  include " +
                   mirror_config_.string() +
                   ";\n"
                   "}\n");
    pid_ = testing::spawn_process(
        kNginx,
        {"-p", p + "/", "-c", p + "/nginx.conf", "-e", p + "/error.log", "-g", "daemon off;"},
        {"PATH=/usr/bin:/bin"}, prefix_ / "nginx.out");
    EXPECT_GT(pid_, 0);
    const auto deadline = std::chrono::steady_clock::now() + kStartLimit;
    while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
      if (accepts_connections(port_))
        return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "nginx did not start on port " << port_ << ":\n"
                  << text_of(prefix_ / "error.log") << text_of(prefix_ / "nginx.out");
    stop();
    return false;
  }

  void stop() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGTERM);
    const auto code = testing::wait_exit_for(pid_, 10s);
    EXPECT_TRUE(code) << "nginx did not stop";
    pid_ = -1;
  }

  // "$status $upstream_cache_status $uri" lines for the chunk requests so far.
  std::vector<std::string> access_lines() const {
    std::vector<std::string> lines;
    std::istringstream in(text_of(prefix_ / "access.log"));
    for (std::string line; std::getline(in, line);)
      lines.push_back(line);
    return lines;
  }

  std::string error_log() const { return text_of(prefix_ / "error.log"); }

  std::size_t count(const std::string& status_and_cache) const {
    std::size_t n = 0;
    for (const std::string& line : access_lines())
      n += line.starts_with(status_and_cache + " ") ? 1 : 0;
    return n;
  }

 private:
  fs::path prefix_;
  fs::path mirror_config_;
  std::uint16_t port_;
  pid_t pid_ = -1;
};

// A stand-in for a mirror, for failures nginx does not make on cue: it presents the mirror's
// certificate, serves chunks from the server's data directory, and answers 503 to every
// request after the first `healthy`.
class FakeMirror final : public server::Router {
 public:
  FakeMirror(fs::path data_dir, const fs::path& mirror_files, std::uint16_t port)
      : data_dir_(std::move(data_dir)) {
    server::HttpServerConfig config;
    config.listen_port = port;
    config.drain_timeout = 2s;
    server_.emplace(
        config,
        crypto::TlsServerIdentity{
            text_of(mirror_files / "server.pem"),
            crypto::SecretKey::from_bytes(crypto::as_bytes(text_of(mirror_files / "server.key"))),
            text_of(mirror_files / "ca.pem")},
        *this, [](const std::string&) {});
  }
  ~FakeMirror() override { server_->stop(); }

  bool start() {
    auto started = server_->start();
    EXPECT_TRUE(started) << started.error().message();
    return static_cast<bool>(started);
  }

  std::size_t healthy = SIZE_MAX;  ///< requests answered before it goes wrong
  std::atomic<std::size_t> requests{0};

  std::optional<std::size_t> body_limit(const server::HttpRequest& head,
                                        server::HttpResponse& refusal) override {
    if (head.method == "GET")
      return 0;
    refusal.status = 405;
    return std::nullopt;
  }

  server::HttpResponse handle(const server::HttpRequest& req) override {
    server::HttpResponse r;
    const std::size_t n = ++requests;
    const std::string hash = req.path.substr(std::string("/v1/chunks/").size());
    if (n > healthy) {
      r.status = 503;
      r.body = "{}";
      return r;
    }
    r.content_type = "application/octet-stream";
    r.body = text_of(data_dir_ / server::kChunksDir / hash.substr(0, 2) / hash);
    if (r.body.empty())
      r.status = 404;
    return r;
  }

 private:
  fs::path data_dir_;
  std::optional<server::HttpsServer> server_;
};

// One enrolled device, opened as the CLI opens it.
struct Device : testing::TestDevice {
  // The lesson file as the device reads it offline.
  std::string lesson() {
    agent::Library library(*store);
    std::string out;
    auto read = library.open_file(kCourse, "intro", "", [&](crypto::ByteView b) -> Result<void> {
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
      return ok();
    });
    EXPECT_TRUE(read) << read.error().message();
    return out;
  }

  // A connection with this device's certificate to 127.0.0.1:`port` (the mirror).
  agent::HttpsClient client_to(std::uint16_t port) { return testing::device_client(*store, port); }
};

class Mirror : public testing::ServerFixture {
 protected:
  void SetUp() override {
    if (::access(kNginx, X_OK) != 0)
      GTEST_SKIP() << kNginx << " is not installed (Debian package nginx)";
    ASSERT_NO_FATAL_FAILURE(ServerFixture::SetUp());
    add_user("aiko", "Aiko Tanaka");
    publish_lesson();

    mirror_port_ = free_port();
    ASSERT_NE(mirror_port_, 0);
    mirror_files_ = tmp_.path() / "mirror";
    server::MirrorOptions options;
    options.name = kMirrorName;
    options.host = "127.0.0.1:" + std::to_string(mirror_port_);
    options.origin = "127.0.0.1:" + std::to_string(port_);
    options.out = mirror_files_;
    options.cache_dir = tmp_.path() / "nginx-cache";
    admin([&](std::ostream& out, std::string& why) {
      return server::admin_mirror_add(server_dir_, options, out, why);
    });
    mirror_url_ = "https://127.0.0.1:" + std::to_string(mirror_port_);
    nginx_.emplace(tmp_.path() / "nginx", mirror_files_ / "nginx.conf", mirror_port_);
  }

  void TearDown() override {
    if (HasFailure() && nginx_)
      std::cerr << "nginx's error log:\n" << nginx_->error_log();
    nginx_.reset();
    ServerFixture::TearDown();
  }

  // One lesson of pseudo-random bytes: some fifteen chunks of about 64 KiB.
  void publish_lesson() {
    const fs::path dir = tmp_.path() / "course";
    lesson_ = noise(1024 * 1024, 1);
    write_text(dir / kLessonFile, lesson_);
    write_text(dir / "course.json", R"({"id": ")" + std::string(kCourse) +
                                        R"(", "title": "Opening a shelter", "lessons": [{"id":
        "intro", "title": "Intro", "kind": "html", "files": [")" +
                                        kLessonFile + R"("]}]})");
    publish(dir);
    auto db = server::open_database(server_dir_);
    ASSERT_TRUE(db);
    chunks_ = static_cast<std::size_t>(
        db.value()->execAndGet("SELECT count(DISTINCT hash) FROM version_chunks").getInt());
    ASSERT_GT(chunks_, 8u);
  }

  // A device of aiko's, its store open.
  Device enroll(const std::string& name) {
    Device d{enroll_device("aiko", name)};
    d.open();
    return d;
  }

  // Chunk requests the server answered 200, by caller ("mirror:ward3" or a device id).
  std::map<std::string, std::size_t> chunks_served() {
    std::map<std::string, std::size_t> served;
    for (const std::string& text : server_log_lines()) {
      const nlohmann::json line = nlohmann::json::parse(text, nullptr, false);
      if (line.is_object() && line.value("endpoint", "") == kChunkEndpoint &&
          line.value("status", 0) == 200)
        ++served[line.value("device", "")];
    }
    return served;
  }

  std::size_t chunks_served_to(const std::string& caller) {
    const auto served = chunks_served();
    const auto it = served.find(caller);
    return it == served.end() ? 0 : it->second;
  }

  std::string lesson_;
  std::size_t chunks_ = 0;
  std::uint16_t mirror_port_ = 0;
  fs::path mirror_files_;
  std::string mirror_url_;
  std::optional<Nginx> nginx_;
};

const std::string kFromMirror = std::string("mirror:") + kMirrorName;

TEST_F(Mirror, ACourseCrossesToTheServerOnceAndTheSecondDeviceIsServedFromTheCache) {
  ASSERT_TRUE(nginx_->start());
  Device first = enroll("first");
  const agent::SyncReport report = first.sync();
  EXPECT_EQ(report.chunks_downloaded, chunks_);
  EXPECT_EQ(report.chunks_from_mirror, chunks_);
  EXPECT_EQ(report.content_mirror, mirror_url_);
  EXPECT_TRUE(report.mirror_fallback.empty()) << report.mirror_fallback;
  EXPECT_EQ(report.mirror_chunks_refetched, 0u);
  EXPECT_EQ(first.lesson(), lesson_);
  // The server served each chunk once, to the mirror; none to the device itself.
  EXPECT_EQ(chunks_served_to(kFromMirror), chunks_);
  EXPECT_EQ(chunks_served_to(first.device_id()), 0u);
  EXPECT_EQ(nginx_->count("200 MISS"), chunks_);

  Device second = enroll("second");
  const agent::SyncReport again = second.sync();
  EXPECT_EQ(again.chunks_from_mirror, chunks_);
  EXPECT_EQ(second.lesson(), lesson_);
  EXPECT_EQ(chunks_served_to(kFromMirror), chunks_) << "every chunk was a cache hit";
  EXPECT_EQ(chunks_served_to(second.device_id()), 0u);
  EXPECT_EQ(nginx_->count("200 HIT"), chunks_);
}

TEST_F(Mirror, NginxRefusesACertificateFromAnotherCaAndOneOfARevokedDeviceWithTheList) {
  ASSERT_TRUE(nginx_->start());
  Device aiko = enroll("aiko");
  auto db = server::open_database(server_dir_);
  ASSERT_TRUE(db);
  const std::string chunk =
      db.value()->execAndGet("SELECT hash FROM version_chunks LIMIT 1").getString();
  const std::string target = "/v1/chunks/" + chunk;

  // A device certificate from another CA, presented to a mirror this client trusts.
  testing::TestPki other("Some other CA");
  agent::HttpsClientConfig config;
  config.host = "127.0.0.1";
  config.port = mirror_port_;
  agent::HttpsClient stranger(config, crypto::TlsClientTrust{identity_->ca_pem(), std::nullopt},
                              other.device_identity());
  auto refused = stranger.request("GET", target);
  ASSERT_TRUE(refused) << stranger.describe_last_failure();
  EXPECT_EQ(refused.value().status, 400) << refused.value().body;
  agent::HttpsClient nobody(config, crypto::TlsClientTrust{identity_->ca_pem(), std::nullopt},
                            std::nullopt);
  auto anonymous = nobody.request("GET", target);
  ASSERT_TRUE(anonymous) << nobody.describe_last_failure();
  EXPECT_EQ(anonymous.value().status, 400);
  EXPECT_EQ(chunks_served_to(kFromMirror), 0u) << "nothing of theirs reached the server";

  // nginx cannot ask the server per request: a revoked device still gets chunks from a mirror
  // without the revocation list...
  Device ken = enroll("ken");
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_revoke(server_dir_, ken.device_id(), out, why);
  });
  auto before = ken.client_to(mirror_port_).request("GET", target);
  ASSERT_TRUE(before);
  EXPECT_EQ(before.value().status, 200) << "the documented limit of a mirror without ssl_crl";

  // ...and is refused once the list is in place; other devices are not.
  nginx_->stop();
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_mirror_crl(server_dir_, mirror_files_ / "devices.crl", 24h, out, why);
  });
  std::string config_text = text_of(mirror_files_ / "nginx.conf");
  const std::size_t crl_line = config_text.find("# ssl_crl ");
  ASSERT_NE(crl_line, std::string::npos);
  config_text.erase(crl_line, 2);
  write_text(mirror_files_ / "nginx.conf", config_text);
  ASSERT_TRUE(nginx_->start());
  auto after = ken.client_to(mirror_port_).request("GET", target);
  ASSERT_TRUE(after);
  EXPECT_EQ(after.value().status, 400);
  auto allowed = aiko.client_to(mirror_port_).request("GET", target);
  ASSERT_TRUE(allowed);
  EXPECT_EQ(allowed.value().status, 200);
  EXPECT_EQ(allowed.value().headers["cache-control"], "public, max-age=31536000, immutable");
}

TEST_F(Mirror, AMirrorThatIsDownCostsTheDeviceOnlyALine) {
  // nginx never started: nothing listens at the mirror's address.
  Device aiko = enroll("aiko");
  const agent::SyncReport report = aiko.sync();
  EXPECT_EQ(report.chunks_downloaded, chunks_);
  EXPECT_EQ(report.chunks_from_mirror, 0u);
  EXPECT_TRUE(report.content_mirror.empty());
  EXPECT_NE(report.mirror_fallback.find(mirror_url_), std::string::npos) << report.mirror_fallback;
  EXPECT_NE(report.mirror_fallback.find("from the server"), std::string::npos)
      << report.mirror_fallback;
  EXPECT_EQ(aiko.lesson(), lesson_);
  EXPECT_EQ(chunks_served_to(aiko.device_id()), chunks_);

  // The CLI says so in one line.
  Device ken = enroll("ken");
  ken.store.reset();
  const testing::CliRun run = run_cli(KABAN_AGENT_BIN, ken.dir, {"sync"});
  const std::string& said = run.output;
  EXPECT_EQ(run.code, 0) << said;
  std::size_t lines = 0;
  std::istringstream in(said);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("content mirror " + mirror_url_ + " failed (") &&
        line.ends_with("; the remaining chunks came from the server"))
      ++lines;
  }
  EXPECT_EQ(lines, 1u) << said;
}

TEST_F(Mirror, AMirrorThatFailsHalfWayLeavesTheRestToTheServer) {
  FakeMirror fake(server_dir_, mirror_files_, mirror_port_);
  fake.healthy = 4;
  ASSERT_TRUE(fake.start());
  Device aiko = enroll("aiko");
  const agent::SyncReport report = aiko.sync();
  EXPECT_EQ(report.chunks_downloaded, chunks_);
  EXPECT_EQ(report.chunks_from_mirror, 4u);
  EXPECT_EQ(report.content_mirror, mirror_url_);
  EXPECT_NE(report.mirror_fallback.find("HTTP 503"), std::string::npos) << report.mirror_fallback;
  EXPECT_NE(report.mirror_fallback.find("the remaining chunks came from the server"),
            std::string::npos)
      << report.mirror_fallback;
  EXPECT_EQ(chunks_served_to(aiko.device_id()), chunks_ - 4);
  EXPECT_EQ(aiko.lesson(), lesson_);
}

TEST_F(Mirror, AChunkDamagedInTheCacheIsFetchedAgainFromTheServer) {
  ASSERT_TRUE(nginx_->start());
  Device first = enroll("first");
  first.sync();
  ASSERT_EQ(chunks_served_to(kFromMirror), chunks_);

  // Flip the last byte of one cached chunk (the end of the cache file is the body's end).
  std::vector<fs::path> cached;
  for (const auto& entry : fs::recursive_directory_iterator(tmp_.path() / "nginx-cache"))
    if (entry.is_regular_file())
      cached.push_back(entry.path());
  ASSERT_EQ(cached.size(), chunks_);
  testing::flip_bit(cached.front(), fs::file_size(cached.front()) - 1);

  Device second = enroll("second");
  const agent::SyncReport report = second.sync();
  EXPECT_EQ(report.chunks_downloaded, chunks_);
  EXPECT_EQ(report.mirror_chunks_refetched, 1u);
  EXPECT_EQ(report.chunks_from_mirror, chunks_ - 1);
  EXPECT_TRUE(report.mirror_fallback.empty()) << "one bad copy does not condemn the mirror";
  EXPECT_EQ(second.lesson(), lesson_) << "byte-identical";
  EXPECT_EQ(chunks_served_to(second.device_id()), 1u);
  EXPECT_EQ(chunks_served_to(kFromMirror), chunks_);
}

TEST_F(Mirror, AChunkDamagedAtTheMirrorAndAtTheServerStopsTheSyncKeepingTheRest) {
  // The server's own copy of one chunk is damaged on its disk; the mirror serves the same bytes.
  auto db = server::open_database(server_dir_);
  ASSERT_TRUE(db);
  const std::string chunk =
      db.value()->execAndGet("SELECT hash FROM version_chunks LIMIT 1").getString();
  testing::flip_bit(server_dir_ / server::kChunksDir / chunk.substr(0, 2) / chunk, 100);
  FakeMirror fake(server_dir_, mirror_files_, mirror_port_);
  ASSERT_TRUE(fake.start());
  Device aiko = enroll("aiko");
  std::string why;
  agent::SyncOptions options;
  options.commit_batch_bytes = 64 * 1024;  // every chunk committed as it arrives
  auto report = agent::sync(*aiko.store, options, why);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error(), agent::errc::content_invalid);
  EXPECT_NE(why.find(chunk.substr(0, 12)), std::string::npos) << why;
  EXPECT_NE(why.find("content mirror " + mirror_url_ + " and from the server"), std::string::npos)
      << why;
  EXPECT_EQ(chunks_served_to(aiko.device_id()), 1u) << "the server was asked once, not more";
  agent::Library library(*aiko.store);
  auto missing = library.missing_chunks();
  ASSERT_TRUE(missing);
  EXPECT_LT(missing.value().size(), chunks_) << "the chunks that arrived whole were kept";
}

TEST_F(Mirror, TheMirrorsCertificateReachesCourseChunksOnlyUntilItIsRemoved) {
  Device aiko = enroll("aiko");
  aiko.sync();  // mirror down: the device's content comes from the server
  auto db = server::open_database(server_dir_);
  ASSERT_TRUE(db);
  const std::string chunk =
      db.value()->execAndGet("SELECT hash FROM version_chunks LIMIT 1").getString();
  // An attachment chunk the device uploads: private to its conversations.
  const std::string note = "the evacuation map";
  const std::string note_hash = crypto::to_hex(crypto::sha256(crypto::as_bytes(note)));
  auto uploaded = testing::device_client(*aiko.store)
                      .request("PUT", "/v1/chunks/" + note_hash, note, "application/octet-stream");
  ASSERT_TRUE(uploaded);
  ASSERT_EQ(uploaded.value().status, 201);

  const auto mirror_client = [&] {
    agent::HttpsClientConfig config;
    config.host = "127.0.0.1";
    config.port = port_;
    return agent::HttpsClient(
        config, crypto::TlsClientTrust{identity_->ca_pem(), std::nullopt},
        crypto::TlsClientIdentity{text_of(mirror_files_ / "client.pem"),
                                  crypto::SecretKey::from_bytes(
                                      crypto::as_bytes(text_of(mirror_files_ / "client.key")))});
  };
  agent::HttpsClient as_mirror = mirror_client();
  auto got = as_mirror.request("GET", "/v1/chunks/" + chunk);
  ASSERT_TRUE(got) << as_mirror.describe_last_failure();
  EXPECT_EQ(got.value().status, 200);
  EXPECT_EQ(got.value().headers["cache-control"], "public, max-age=31536000, immutable");
  EXPECT_EQ(got.value().headers["etag"], "\"" + chunk + "\"");
  got = as_mirror.request("GET", "/v1/chunks/" + note_hash);
  ASSERT_TRUE(got);
  EXPECT_EQ(got.value().status, 404);
  for (const auto& [method, target] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/inbox?cursor="}, {"POST", "/v1/checkin"}, {"GET", "/v1/changes?cursor="}}) {
    got = as_mirror.request(method, target, method == "POST" ? "{}" : "");
    ASSERT_TRUE(got) << method << ' ' << target;
    EXPECT_EQ(got.value().status, 403) << method << ' ' << target << ": " << got.value().body;
    EXPECT_NE(got.value().body.find("mirror_forbidden"), std::string::npos) << got.value().body;
  }
  as_mirror.close();

  // Removed: its certificate is refused in the handshake, and nginx's misses with it.
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_mirror_remove(server_dir_, kMirrorName, out, why);
  });
  agent::HttpsClient removed = mirror_client();
  auto after = removed.request("GET", "/v1/chunks/" + chunk);
  ASSERT_FALSE(after) << "status " << after.value().status;
  EXPECT_EQ(after.error(), agent::errc::server_refused) << removed.describe_last_failure();

  ASSERT_TRUE(nginx_->start());
  auto through = aiko.client_to(mirror_port_).request("GET", "/v1/chunks/" + chunk);
  ASSERT_TRUE(through);
  EXPECT_EQ(through.value().status, 502) << "nginx could not fetch the miss";
  // And devices are no longer told of it: the next sync goes to the server without a word.
  const agent::SyncReport report = aiko.sync();
  EXPECT_TRUE(report.mirror_fallback.empty()) << report.mirror_fallback;
}

}  // namespace
}  // namespace kaban
