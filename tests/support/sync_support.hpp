// Helpers for the integration tests that run the real server and agent library together: the
// fast key derivation, the clocks, a client that speaks as an enrolled device, an enrolled test
// device, and ServerFixture, a GoogleTest fixture with the server running on 127.0.0.1 port 0.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.hpp"
#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/guard.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/crypto/scrypt.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/api.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/http_server.hpp"
#include "test_support.hpp"

namespace kaban::testing {

/// Cheap scrypt parameters for test stores (the real ones take a fifth of a second).
inline constexpr crypto::ScryptParams kFastKdf{1u << 10, 8, 1};

/// The PIN every test device is enrolled under.
inline constexpr const char* kTestPin = "2468-test-pin";

/// Now, as the server stores times.
inline server::UnixTime server_now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

/// Now, in Unix seconds, as the agent's APIs take times.
inline std::int64_t unix_now() {
  return server_now().time_since_epoch().count();
}

/// A bare client with the device certificate of the enrolled `store`, for requests the agent
/// itself would not make (a blocked device asking for a chunk, a non-member's GET). It connects
/// to the device's server, or to 127.0.0.1:`port` if given (a content mirror).
inline agent::HttpsClient device_client(agent::Store& store,
                                        std::optional<std::uint16_t> port = std::nullopt) {
  auto identity = agent::load_identity(store);
  EXPECT_TRUE(identity) << identity.error().message();
  agent::HttpsClientConfig config;
  config.host = port ? "127.0.0.1" : identity.value().server_host;
  config.port = port ? *port : identity.value().server_port;
  crypto::TlsClientTrust trust;
  trust.ca_pem = identity.value().ca_pem;
  crypto::TlsClientIdentity me{
      identity.value().certificate_pem,
      crypto::SecretKey::from_bytes(identity.value().private_key_pem.bytes())};
  return agent::HttpsClient(std::move(config), std::move(trust), std::move(me));
}

/// A device enrolled under kTestPin by ServerFixture::enroll_device(): its data directory and
/// whose it is, and its store once a test opens it. Move-only (the store is).
struct TestDevice {
  std::filesystem::path dir;
  std::string login;
  std::string user_name;
  std::optional<agent::Store> store;

  /// Opens the store as the CLI does, through the guard (leases, wipe and lock are applied).
  void open() {
    std::string why;
    auto opened = agent::open_guarded(dir, kTestPin, agent::read_clock_now(), why);
    ASSERT_TRUE(opened) << why << " (" << opened.error().message() << ")";
    store.emplace(std::move(opened).value());
  }

  /// Opens the store itself, without the guard, as the library's own tests do.
  void open_store() {
    auto opened = agent::Store::open(dir, kTestPin);
    ASSERT_TRUE(opened) << opened.error().message();
    store.emplace(std::move(opened).value());
  }

  void close() { store.reset(); }

  /// A sync of the open store that is expected to succeed: its report, or an empty report after
  /// a failed expectation.
  agent::SyncReport sync(const agent::SyncOptions& options = {}) {
    std::string why;
    auto report = agent::sync(*store, options, why);
    EXPECT_TRUE(report) << login << ": " << why << " (" << report.error().message() << ")";
    return report ? std::move(report).value() : agent::SyncReport{};
  }

  /// A sync that is expected to fail: its error and `why`.
  std::pair<std::error_code, std::string> failing_sync() {
    std::string why;
    auto report = agent::sync(*store, {}, why);
    EXPECT_FALSE(report) << login << ": the sync should have failed";
    return {report ? std::error_code{} : report.error(), why};
  }

  /// The guard beside the store (readable whether the store is open or not).
  agent::GuardState guard() const {
    auto state = agent::load_guard(dir);
    EXPECT_TRUE(state) << state.error().message();
    return state ? state.value() : agent::GuardState{};
  }

  /// The id the server gave this device at enrollment.
  std::string device_id() const { return guard().device_id; }
};

/// What one run of the kaban CLI did.
struct CliRun {
  int code = -1;       ///< its exit code; -1 if it did not start or hung
  std::string output;  ///< stdout and stderr together
};

/// A GoogleTest fixture with the real server running: a fresh data directory (server_dir_) in
/// tmp_, the real Api, and HttpsServer on 127.0.0.1 port 0 (port_) over real TLS, its log lines
/// kept for server_log(). Helpers act as IT does (admin(), add_user(), publish()) and enroll
/// devices as a person does (enroll_device()).
///
/// SetUp() does it all with the default ApiConfig. A test that needs other settings, or its own
/// router in front of the Api, overrides SetUp() and calls init_server(), serve_through() and
/// start_server() itself, each under ASSERT_NO_FATAL_FAILURE. TearDown() stops the server; an
/// override calls it last.
class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(init_server());
    ASSERT_NO_FATAL_FAILURE(start_server());
  }

  void TearDown() override { stop_server(); }

  /// Creates the server's data directory and the Api on it.
  void init_server(server::ApiConfig config = {}) {
    server_dir_ = tmp_.path() / "server";
    ASSERT_TRUE(server::init_data_dir(server_dir_, {}));
    auto identity = server::load_identity(server_dir_);
    ASSERT_TRUE(identity) << identity.error().message();
    identity_.emplace(std::move(identity).value());
    api_.emplace(server_dir_, *identity_, config);
    handler_ = &*api_;
  }

  /// Makes the server pass its requests to `router` (which passes them on to api_) instead of
  /// to api_ itself; from the next start_server().
  void serve_through(server::Router& router) { handler_ = &router; }

  /// Starts the server on 127.0.0.1:`port` (0: any free port); port_ is the port it bound. A
  /// stopped server starts again on its old port with start_server(port_).
  void start_server(std::uint16_t port = 0) {
    server::HttpServerConfig config;
    config.listen_host = "127.0.0.1";
    config.listen_port = port;
    config.drain_timeout = std::chrono::seconds(2);
    server_.emplace(config, identity_->tls_identity(), *handler_, [this](const std::string& line) {
      std::lock_guard lock(log_mutex_);
      log_.push_back(line);
    });
    auto started = server_->start();
    ASSERT_TRUE(started) << started.error().message();
    port_ = server_->port();
  }

  void stop_server() {
    if (server_)
      server_->stop();
    server_.reset();
  }

  /// The server's log so far, one JSON line per request or connection error.
  std::vector<std::string> server_log_lines() {
    std::lock_guard lock(log_mutex_);
    return log_;
  }

  /// The same lines as one text, each ended by a newline.
  std::string server_log() {
    std::string text;
    for (const std::string& line : server_log_lines())
      text += line + "\n";
    return text;
  }

  /// True once a line of the server's log holds `text`. The server writes a line after its
  /// answer is sent (or a handshake has failed), so a client may see the outcome first: this
  /// waits up to `limit` for the line.
  bool server_logged(std::string_view text,
                     std::chrono::milliseconds limit = std::chrono::seconds(1)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      {
        std::lock_guard lock(log_mutex_);
        for (const std::string& line : log_)
          if (line.find(text) != std::string::npos)
            return true;
      }
      if (std::chrono::steady_clock::now() >= deadline)
        return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  /// Runs an admin function as `kaban-server admin` would, expecting it to succeed; its output.
  /// `f` is called as f(std::ostream& out, std::string& why) and returns a Result<void>.
  template <typename F>
  std::string admin(F&& f) {
    std::ostringstream out;
    std::string why;
    const Result<void> r = f(out, why);
    EXPECT_TRUE(r) << why << " (" << (r ? "" : r.error().message()) << ")";
    return out.str();
  }

  /// `admin user add`.
  void add_user(const std::string& login, const std::string& name) {
    admin([&](std::ostream& out, std::string& why) {
      return server::admin_user_add(server_dir_, login, name, out, why);
    });
  }

  /// `admin policy set`: `json` becomes the policy of everyone, or of `group`'s members.
  void set_policy(const std::string& json, const std::string& group = "") {
    const std::filesystem::path file =
        tmp_.path() / ("policy-" + std::to_string(++policy_files_) + ".json");
    write_text(file, json);
    admin([&](std::ostream& out, std::string& why) {
      return server::admin_policy_set(server_dir_, file, group, out, why);
    });
  }

  /// `admin course publish` of the course folder `folder` (a course.json and its files), on this
  /// server or on the one whose data directory is `data_dir`.
  void publish(const std::filesystem::path& folder) { publish(folder, server_dir_); }
  void publish(const std::filesystem::path& folder, const std::filesystem::path& data_dir) {
    admin([&](std::ostream& out, std::string& why) {
      return server::admin_course_publish(data_dir, folder, out, why);
    });
  }

  /// A fresh enrollment code of `login`'s as the line a person types: this server, its port and
  /// its CA fingerprint. The code lasts `ttl` from `now`.
  protocol::EnrollmentLine enrollment_line(const std::string& login,
                                           std::chrono::seconds ttl = std::chrono::hours(1),
                                           server::UnixTime now = server_now()) {
    auto db = server::open_database(server_dir_);
    EXPECT_TRUE(db);
    server::Directory directory(*db.value());
    auto code = directory.create_enroll_code(login, ttl, now);
    EXPECT_TRUE(code);
    return {"127.0.0.1", port_, code ? code.value() : "", identity_->ca_fingerprint};
  }

  /// Enrolls a device of `login`'s with a fresh code, as `kaban enroll` does, into the folder
  /// `name` of tmp_ under kTestPin (with kFastKdf). Its store is left closed.
  TestDevice enroll_device(const std::string& login, const std::string& name) {
    std::string why;
    auto identity = agent::request_enrollment(enrollment_line(login), {}, why);
    EXPECT_TRUE(identity) << why;
    TestDevice device;
    device.dir = tmp_.path() / name;
    device.login = login;
    if (!identity)
      return device;
    device.login = identity.value().login;
    device.user_name = identity.value().user_name;
    auto done = agent::complete_enrollment(device.dir, identity.value(), kTestPin, kFastKdf);
    EXPECT_TRUE(done) << done.error().message();
    return device;
  }

  /// Runs the kaban CLI `agent_bin` on the device in `device_dir` with `args`, the PIN in
  /// KABAN_PIN and HOME in tmp_; a run that lasts past `limit` is killed and fails the test.
  CliRun run_cli(const std::filesystem::path& agent_bin, const std::filesystem::path& device_dir,
                 std::vector<std::string> args,
                 std::chrono::seconds limit = std::chrono::seconds(60)) {
    const std::filesystem::path out = tmp_.path() / ("cli-" + std::to_string(++cli_runs_) + ".out");
    args.insert(args.begin(), {"--data-dir", device_dir.string()});
    const pid_t pid =
        spawn_process(agent_bin, args,
                      {"KABAN_PIN=" + std::string(kTestPin), "HOME=" + tmp_.path().string()}, out);
    EXPECT_GT(pid, 0) << "cannot start " << agent_bin;
    if (pid <= 0)
      return {};
    const auto code = wait_exit_for(pid, limit);
    EXPECT_TRUE(code) << "kaban hung";
    return {code ? *code : -1, text_of(out)};
  }

  TempDir tmp_;
  std::filesystem::path server_dir_;
  std::optional<server::ServerIdentity> identity_;
  std::optional<server::Api> api_;
  std::optional<server::HttpsServer> server_;
  std::uint16_t port_ = 0;

 private:
  server::Router* handler_ = nullptr;  ///< api_, or a test's router in front of it
  std::mutex log_mutex_;
  std::vector<std::string> log_;
  int cli_runs_ = 0;
  int policy_files_ = 0;
};

}  // namespace kaban::testing
