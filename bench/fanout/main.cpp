// kaban-bench-fanout: what one announcement to everyone costs Kaban's sync server, against the
// design a user would otherwise get, mail-style fan-out (one inbox row per recipient).
//
// Kaban: a fresh server data directory with U users, N of them with an enrolled device; the real
// HttpsServer + Api on 127.0.0.1 (2 io threads); N agent::HttpsClients with the devices'
// certificates, driven by C threads, their keep-alive TLS connections opened and their inbox
// cursors caught up before anything is timed. Timed: Messaging::announce("all") until every
// device has fetched the announcement through GET /v1/inbox, parsed the page and checked the id.
// Then, reported beside it but outside the ratio, the same pages again through Api::handle()
// called in-process on 2 threads (the server's io threads): the server's own work without TLS
// or HTTP.
//
// Baseline: a plain SQLite file (same library, WAL, synchronous=NORMAL) in which the
// announcement is written as U rows of a per-recipient inbox table in one transaction, then read
// back by the same C threads, one SELECT per device by recipient. No TLS, no HTTP, no
// authentication: a lower bound for that design's server work.
//
// Rounds alternate which side goes first; prints a table of medians, then one JSON line.

#include <sys/resource.h>
#include <unistd.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kaban/agent/https_client.hpp"
#include "kaban/crypto/tls.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/inbox.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/server/api.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/http_server.hpp"
#include "kaban/server/messaging.hpp"
#include "temp_dir.hpp"

namespace {

namespace agent = kaban::agent;
namespace crypto = kaban::crypto;
namespace protocol = kaban::protocol;
namespace server = kaban::server;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keeps the fields in the order written
using Clock = std::chrono::steady_clock;

constexpr const char* kProgram = "kaban-bench-fanout";
constexpr const char* kBaselineName =
    "mail-style fan-out: one inbox row per recipient (plain SQLite, no TLS or HTTP)";
constexpr int kServerThreads = 2;
/// Rows one inbox page holds, on both sides (the server's default page).
constexpr int kPageRows = protocol::kMaxInboxPage;
/// The server must not close an idle kept-alive connection during a run: a reconnect would put a
/// TLS handshake inside the timed pull.
constexpr std::chrono::hours kIdleTimeout{1};
/// File descriptors the process needs besides two per device (client and server end).
constexpr rlim_t kSpareDescriptors = 128;

/// A failure that ends the run: one sentence for the person running it.
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string message_of(const std::error_code& ec) {
  return ec.message();
}

struct Options {
  int users = 10'000;
  int devices = 200;
  int concurrency = 16;
  int rounds = 3;
};

// ---- Progress on stderr -------------------------------------------------------------------

/// Counts steps of a long setup phase from any thread: a line rewritten in place on a terminal,
/// else one line at each quarter.
class Progress {
 public:
  Progress(std::string what, std::int64_t total)
      : what_(std::move(what)),
        total_(std::max<std::int64_t>(total, 1)),
        tty_(isatty(STDERR_FILENO) == 1) {}

  void step() {
    std::lock_guard lock(mutex_);
    const std::int64_t done = ++done_;
    const std::int64_t percent = done * 100 / total_;
    if (tty_) {
      if (percent != shown_ || done == total_) {
        shown_ = percent;
        std::cerr << "\r" << what_ << " " << done << "/" << total_ << " (" << percent << "%)"
                  << (done == total_ ? "\n" : "") << std::flush;
      }
    } else if (percent / 25 > quarters_shown_) {
      quarters_shown_ = percent / 25;
      std::cerr << what_ << ": " << done << "/" << total_ << " (" << percent << "%)" << std::endl;
    }
  }

 private:
  const std::string what_;
  const std::int64_t total_;
  const bool tty_;
  std::mutex mutex_;
  std::int64_t done_ = 0;
  std::int64_t shown_ = -1;          // terminal: the percentage on screen
  std::int64_t quarters_shown_ = 0;  // otherwise: the quarters printed
};

// ---- Running the same work on C threads at once -------------------------------------------

/// Collects the first failures of worker threads (they must not throw).
class Failures {
 public:
  void add(std::string what) {
    std::lock_guard lock(mutex_);
    ++count_;
    if (first_.size() < 3)
      first_.push_back(std::move(what));
  }
  /// Throws BenchError naming the first failures, if there were any.
  void throw_if_any(const std::string& during) const {
    std::lock_guard lock(mutex_);
    if (count_ == 0)
      return;
    std::string text = std::to_string(count_) + " failure(s) during " + during + ": ";
    for (std::size_t i = 0; i < first_.size(); ++i)
      text += (i == 0 ? "" : "; ") + first_[i];
    throw BenchError(text);
  }

 private:
  mutable std::mutex mutex_;
  std::size_t count_ = 0;
  std::vector<std::string> first_;
};

struct Timing {
  double before_s = 0;  ///< how long `before` ran
  double work_s = 0;    ///< from the end of `before` until the last thread finished
};

/// Starts `threads` threads and waits until all are ready; runs `before` on this thread (timed),
/// then releases them all at once to run work(thread index) (timed until the last one is done).
/// `work` must not throw (a throw is recorded in `failures`); an exception from `before` is
/// rethrown once the threads are joined.
Timing run_together(int threads, const std::function<void()>& before,
                    const std::function<void(int)>& work, Failures& failures) {
  std::latch ready(threads);
  std::latch go(1);
  std::vector<Clock::time_point> finished(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.count_down();
      go.wait();
      try {
        work(t);
      } catch (const std::exception& e) {
        failures.add(e.what());
      } catch (...) {
        failures.add("unknown exception");
      }
      finished[static_cast<std::size_t>(t)] = Clock::now();
    });
  }
  ready.wait();
  std::exception_ptr before_failed;
  const Clock::time_point start = Clock::now();
  try {
    before();
  } catch (...) {
    before_failed = std::current_exception();
  }
  const Clock::time_point released = Clock::now();
  go.count_down();
  for (auto& thread : pool)
    thread.join();
  if (before_failed)
    std::rethrow_exception(before_failed);
  const Clock::time_point last = *std::max_element(finished.begin(), finished.end());
  return {std::chrono::duration<double>(released - start).count(),
          std::chrono::duration<double>(last - released).count()};
}

// ---- Kaban's side -------------------------------------------------------------------------

std::string login_of(int user) {
  std::array<char, 16> buf{};
  std::snprintf(buf.data(), buf.size(), "u%07d", user);
  return buf.data();
}

/// The announcement of round `round` (0-based), on both sides: some 200 bytes, like a real one.
std::string announcement_body(int round) {
  return "Fan-out bench, round " + std::to_string(round + 1) +
         ": the shelter drill moves to Thursday 09:30. Meet at the north entrance with your "
         "badge; read the updated evacuation course before then and acknowledge this notice.";
}

/// One enrolled device and what it saw in the current pull.
struct SimDevice {
  std::string login;
  std::string id;
  crypto::Bytes certificate_der;  ///< what the server sees of it after the TLS handshake
  std::optional<agent::HttpsClient> client;
  std::string cursor;        ///< its inbox cursor, as the agent stores it
  std::string round_cursor;  ///< the cursor it held when the round's announcement was made
  std::vector<std::string> message_ids;  ///< messages received in the last pull
  int matched = 0;                       ///< of message_ids, how many were the expected id
  int requests = 0;                      ///< GET /v1/inbox in the last pull
};

/// How a pull reaches the server.
enum class Path {
  kHttps,      ///< the device's HttpsClient: TLS, HTTP, the server's sessions, then the Api
  kApiDirect,  ///< Api::handle() called in-process with the device's certificate: no transport
};

/// One GET /v1/inbox?cursor=`cursor` of device `d`: the status and body. Throws BenchError if
/// the request fails.
std::pair<int, std::string> get_inbox(SimDevice& d, const std::string& cursor, Path path,
                                      server::Api* api) {
  if (path == Path::kApiDirect) {
    server::HttpRequest request;
    request.method = "GET";
    request.path = "/v1/inbox";
    request.target = request.path + "?cursor=" + cursor;
    request.query["cursor"] = cursor;
    request.peer_address = "127.0.0.1";
    request.client_certificate = d.certificate_der;
    server::HttpResponse response = api->handle(request);
    return {response.status, std::move(response.body)};
  }
  auto response = d.client->request("GET", "/v1/inbox?cursor=" + cursor);
  if (!response) {
    const std::string& detail = d.client->describe_last_failure();
    throw BenchError("device of " + d.login + ": GET /v1/inbox failed: " +
                     message_of(response.error()) + (detail.empty() ? "" : " (" + detail + ")"));
  }
  return {response.value().status, std::move(response.value().body)};
}

/// Pages GET /v1/inbox from `cursor` until more=false, as the agent does, parses each page and
/// checks each message against `expected_id`; leaves the last page's cursor in `cursor`. Throws
/// BenchError on any failure.
void pull_inbox(SimDevice& d, std::string& cursor, const std::string& expected_id, Path path,
                server::Api* api = nullptr) {
  d.message_ids.clear();
  d.matched = 0;
  d.requests = 0;
  for (;;) {
    auto [status, body] = get_inbox(d, cursor, path, api);
    ++d.requests;
    if (status != 200) {
      throw BenchError("device of " + d.login + ": GET /v1/inbox answered " +
                       std::to_string(status) + ": " + body);
    }
    std::string why;
    auto page = protocol::parse_inbox_response(body, &why);
    if (!page) {
      throw BenchError("device of " + d.login + ": the inbox page does not parse: " + why);
    }
    for (const auto& change : page.value().changes) {
      if (change.kind == "message" && change.message) {
        d.matched += change.message->id == expected_id ? 1 : 0;
        d.message_ids.push_back(change.message->id);
      }
    }
    cursor = std::move(page.value().cursor);
    if (!page.value().more)
      return;
  }
}

/// Devices of thread `t` of `threads`: every threads-th one, from t.
template <class F>
void for_devices_of(std::vector<SimDevice>& devices, int t, int threads, F f) {
  for (std::size_t i = static_cast<std::size_t>(t); i < devices.size();
       i += static_cast<std::size_t>(threads))
    f(devices[i]);
}

/// The server with its users and devices, and the devices' connections.
class KabanSide {
 public:
  KabanSide(const fs::path& dir, const Options& options) : dir_(dir), options_(options) {
    if (auto made = server::init_data_dir(dir_, {}); !made)
      throw BenchError("init_data_dir " + dir_.string() + ": " + message_of(made.error()));
    auto identity = server::load_identity(dir_);
    if (!identity)
      throw BenchError("load_identity: " + message_of(identity.error()));
    identity_.emplace(std::move(identity).value());
    auto db = server::open_database(dir_);
    if (!db)
      throw BenchError("open_database: " + message_of(db.error()));
    db_ = std::move(db).value();
  }
  KabanSide(const KabanSide&) = delete;
  KabanSide& operator=(const KabanSide&) = delete;
  ~KabanSide() { shut_down(); }

  void add_users() {
    const auto now = server_now();
    SQLite::Transaction transaction(*db_);
    server::Directory directory(*db_);
    for (int u = 0; u < options_.users; ++u) {
      const std::string login = login_of(u);
      if (auto added = directory.add_user(login, "Staff member " + login, now); !added)
        throw BenchError("add_user " + login + ": " + message_of(added.error()));
    }
    transaction.commit();
  }

  /// Enrolls one device for each of N users spread evenly over the U, as the API would: a
  /// one-time code, a P-256 key, a CSR, enroll_device.
  void enroll_devices() {
    server::Directory directory(*db_);
    Progress progress("enrolling devices", options_.devices);
    devices_.resize(static_cast<std::size_t>(options_.devices));
    for (int i = 0; i < options_.devices; ++i) {
      SimDevice& d = devices_[static_cast<std::size_t>(i)];
      d.login = login_of(
          static_cast<int>(static_cast<std::int64_t>(i) * options_.users / options_.devices));
      const auto now = server_now();
      auto code = directory.create_enroll_code(d.login, std::chrono::hours(1), now);
      if (!code)
        throw BenchError("create_enroll_code " + d.login + ": " + message_of(code.error()));
      const crypto::EcPrivateKey key = crypto::EcPrivateKey::generate();
      auto csr = crypto::CertificateRequest::create(key, d.login);
      if (!csr)
        throw BenchError("CSR for " + d.login + ": " + message_of(csr.error()));
      auto enrolled = directory.enroll_device(code.value(), csr.value().to_pem(),
                                              {"linux", "bench", "simulated", d.login, "0.1.0"},
                                              now, *identity_);
      if (!enrolled)
        throw BenchError("enroll_device " + d.login + ": " + message_of(enrolled.error()));
      d.id = enrolled.value().device_id;
      d.certificate_der = enrolled.value().certificate.der();
      identities_.push_back(
          crypto::TlsClientIdentity{enrolled.value().certificate.to_pem(), key.to_pem()});
      progress.step();
    }
  }

  void start_server() {
    api_.emplace(dir_, *identity_);
    server::HttpServerConfig config;
    config.listen_host = "127.0.0.1";
    config.listen_port = 0;
    config.threads = kServerThreads;
    config.max_connections = static_cast<std::size_t>(options_.devices) + 64;
    config.idle_timeout = kIdleTimeout;
    config.header_timeout = kIdleTimeout;
    config.drain_timeout = std::chrono::seconds(5);
    server_.emplace(config, identity_->tls_identity(), *api_, [this](const std::string& line) {
      if (line.find("\"error\"") != std::string::npos) {
        std::lock_guard lock(log_mutex_);
        if (server_errors_.size() < 3)
          server_errors_.push_back(line);
        ++server_error_count_;
      }
    });
    if (auto started = server_->start(); !started)
      throw BenchError("starting the server on 127.0.0.1: " + message_of(started.error()));
  }

  /// Makes each device's client, opens its connection (TLS handshake with its certificate) and
  /// catches its inbox up from the empty cursor, on C threads. Returns the seconds it took.
  double connect_devices() {
    crypto::TlsClientTrust trust;
    trust.ca_pem = identity_->ca_pem();
    agent::HttpsClientConfig config;
    config.host = "127.0.0.1";
    config.port = server_->port();
    config.connect_timeout = std::chrono::seconds(30);
    config.request_timeout = std::chrono::seconds(60);
    config.user_agent = std::string(kProgram) + "/0.1.0";
    for (std::size_t i = 0; i < devices_.size(); ++i)
      devices_[i].client.emplace(config, trust, std::move(identities_[i]));
    identities_.clear();

    Progress progress("connecting devices", options_.devices);
    Failures failures;
    const Timing t = run_together(
        options_.concurrency, [] {},
        [&](int thread) {
          for_devices_of(devices_, thread, options_.concurrency, [&](SimDevice& d) {
            pull_inbox(d, d.cursor, "", Path::kHttps);
            progress.step();
          });
        },
        failures);
    failures.throw_if_any("the devices' first connection and catch-up");
    expect_connections("after connecting");
    return t.work_s;
  }

  /// An untimed pull by every device that must bring nothing new.
  void catch_up() {
    Failures failures;
    run_together(
        options_.concurrency, [] {},
        [&](int thread) {
          for_devices_of(devices_, thread, options_.concurrency,
                         [&](SimDevice& d) { pull_inbox(d, d.cursor, "", Path::kHttps); });
        },
        failures);
    failures.throw_if_any("the catch-up before a round");
    for (const SimDevice& d : devices_) {
      if (!d.message_ids.empty())
        throw BenchError("the device of " + d.login + " had " +
                         std::to_string(d.message_ids.size()) +
                         " message(s) pending before the round; its inbox was not caught up");
    }
  }

  struct Round {
    double announce_s = 0;
    double pull_s = 0;
    double api_only_s = 0;  ///< the same pages through Api::handle() on 2 threads, no TLS/HTTP
    std::int64_t message_rows = 0;
    std::int64_t receipt_rows = 0;
    std::int64_t requests = 0;
  };

  /// Announces to "all" on the bench's own connection, and has every device pull it over its
  /// connection (timed); then, untimed in `ours`, the same pages again through Api::handle()
  /// directly, which splits the pull into the server's own work and the transport's.
  Round run_round(int round) {
    const auto [messages_before, receipts_before] = message_and_receipt_rows();
    for (SimDevice& d : devices_)
      d.round_cursor = d.cursor;
    server::Messaging messaging(*db_);
    server::Announcement a;
    a.audience = "all";
    a.body = announcement_body(round);
    a.priority = protocol::Priority::urgent;
    a.require_ack = true;
    std::string expected_id;
    std::string why;
    const std::string which = "round " + std::to_string(round + 1);
    Failures failures;
    const Timing pull = run_together(
        options_.concurrency,
        [&] {
          auto posted = messaging.announce(a, server_now(), why);
          if (!posted)
            throw BenchError("announce: " + message_of(posted.error()) + ": " + why);
          expected_id = posted.value().id;
        },
        [&](int thread) {
          for_devices_of(devices_, thread, options_.concurrency,
                         [&](SimDevice& d) { pull_inbox(d, d.cursor, expected_id, Path::kHttps); });
        },
        failures);
    failures.throw_if_any("the timed pull of " + which);
    Round r;
    r.requests = expect_exactly(expected_id, which);
    expect_connections("after " + which);

    // As many threads as the server has io threads: the server's parallelism, not the clients'.
    const int direct_threads = std::min(options_.concurrency, kServerThreads);
    const Timing direct = run_together(
        direct_threads, [] {},
        [&](int thread) {
          for_devices_of(devices_, thread, direct_threads, [&](SimDevice& d) {
            std::string cursor = d.round_cursor;
            pull_inbox(d, cursor, expected_id, Path::kApiDirect, &*api_);
          });
        },
        failures);
    failures.throw_if_any("the direct Api pull of " + which);
    expect_exactly(expected_id, which + " (direct Api pull)");

    const auto [messages_after, receipts_after] = message_and_receipt_rows();
    r.announce_s = pull.before_s;
    r.pull_s = pull.work_s;
    r.api_only_s = direct.work_s;
    r.message_rows = messages_after - messages_before;
    r.receipt_rows = receipts_after - receipts_before;
    return r;
  }

  /// Closes the devices' connections (in parallel: each close waits for close_notify), then
  /// stops the server. Idempotent.
  void shut_down() noexcept {
    try {
      if (!devices_.empty() && server_) {
        Failures ignored;
        run_together(
            options_.concurrency, [] {},
            [&](int thread) {
              for_devices_of(devices_, thread, options_.concurrency, [](SimDevice& d) {
                if (d.client)
                  d.client->close();
              });
            },
            ignored);
      }
      devices_.clear();
      if (server_)
        server_->stop();
      server_.reset();
      api_.reset();
    } catch (...) {
      // Shutting down after a failure: the failure is what gets reported.
    }
  }

  /// Throws if the server logged a failed request or connection.
  void expect_no_server_errors() {
    std::lock_guard lock(log_mutex_);
    if (server_error_count_ == 0)
      return;
    std::string text = "the server logged " + std::to_string(server_error_count_) + " error(s): ";
    for (std::size_t i = 0; i < server_errors_.size(); ++i)
      text += (i == 0 ? "" : "; ") + server_errors_[i];
    throw BenchError(text);
  }

 private:
  static server::UnixTime server_now() {
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  }

  std::pair<std::int64_t, std::int64_t> message_and_receipt_rows() {
    SQLite::Statement count(
        *db_, "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM receipts)");
    count.executeStep();
    return {count.getColumn(0).getInt64(), count.getColumn(1).getInt64()};
  }

  /// Every device must hold exactly the announced message from its last pull; returns the
  /// requests they made.
  std::int64_t expect_exactly(const std::string& expected_id, const std::string& when) const {
    std::int64_t requests = 0;
    for (const SimDevice& d : devices_) {
      if (d.message_ids.size() != 1 || d.matched != 1) {
        std::string got;
        for (const auto& id : d.message_ids)
          got += (got.empty() ? "" : ", ") + id;
        throw BenchError(when + ": the device of " + d.login + " received [" + got +
                         "], not exactly the announcement " + expected_id);
      }
      requests += d.requests;
    }
    return requests;
  }

  /// Every device must still be on the connection it opened before the timer.
  void expect_connections(const std::string& when) {
    const std::size_t open = server_->connection_count();
    if (open != devices_.size()) {
      throw BenchError("the server holds " + std::to_string(open) + " connections " + when +
                       ", not one per device (" + std::to_string(devices_.size()) +
                       "); a connection was dropped or reopened");
    }
  }

  const fs::path dir_;
  const Options options_;
  std::optional<server::ServerIdentity> identity_;
  std::unique_ptr<SQLite::Database> db_;
  std::vector<SimDevice> devices_;
  std::vector<crypto::TlsClientIdentity> identities_;
  std::optional<server::Api> api_;
  std::optional<server::HttpsServer> server_;
  std::mutex log_mutex_;
  std::vector<std::string> server_errors_;
  std::int64_t server_error_count_ = 0;
};

// ---- The baseline -------------------------------------------------------------------------

/// Mail-style fan-out in a plain SQLite file: the announcement becomes one inbox row per
/// recipient; a device reads its own rows by recipient.
class BaselineSide {
 public:
  BaselineSide(const fs::path& file, const Options& options, std::vector<std::string> readers)
      : file_(file), options_(options), readers_(std::move(readers)), cursors_(readers_.size(), 0) {
    db_ = open();
    db_->exec(R"sql(
      CREATE TABLE users (
        login TEXT PRIMARY KEY,
        name  TEXT NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE inbox (
        seq         INTEGER PRIMARY KEY,
        recipient   TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        sender_name TEXT NOT NULL,
        body        TEXT NOT NULL,
        priority    INTEGER NOT NULL,
        require_ack INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        read_at     INTEGER,
        acked_at    INTEGER
      );
      CREATE INDEX inbox_recipient ON inbox(recipient, seq);
    )sql");
    SQLite::Transaction transaction(*db_);
    SQLite::Statement insert(*db_, "INSERT INTO users(login, name) VALUES (?, ?)");
    for (int u = 0; u < options_.users; ++u) {
      const std::string login = login_of(u);
      insert.bind(1, login);
      insert.bind(2, "Staff member " + login);
      insert.exec();
      insert.reset();
    }
    transaction.commit();
    // One connection per reader thread, opened before anything is timed.
    for (int t = 0; t < options_.concurrency; ++t)
      reader_dbs_.push_back(open());
  }

  struct Round {
    double write_s = 0;
    double read_s = 0;
    std::int64_t rows_written = 0;
  };

  Round run_round(int round) {
    const std::string id = protocol::new_uuid();
    const std::string body = announcement_body(round);
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    std::vector<int> matched(readers_.size(), 0);
    std::vector<int> rows(readers_.size(), 0);
    Round r;
    Failures failures;
    const Timing t = run_together(
        options_.concurrency,
        [&] {
          SQLite::Transaction transaction(*db_);
          SQLite::Statement insert(
              *db_,
              "INSERT INTO inbox(recipient, message_id, sender_name, body, priority, "
              "require_ack, created_at) SELECT login, ?, 'IT', ?, 1, 1, ? FROM users");
          insert.bind(1, id);
          insert.bind(2, body);
          insert.bind(3, static_cast<std::int64_t>(now));
          r.rows_written = insert.exec();
          transaction.commit();
        },
        [&](int thread) { read(thread, id, matched, rows); }, failures);
    failures.throw_if_any("the baseline's reads in round " + std::to_string(round + 1));
    for (std::size_t i = 0; i < readers_.size(); ++i) {
      if (rows[i] != 1 || matched[i] != 1) {
        throw BenchError("round " + std::to_string(round + 1) + ": the baseline's reader for " +
                         readers_[i] + " found " + std::to_string(rows[i]) +
                         " new row(s), not exactly the announcement " + id);
      }
    }
    if (r.rows_written != options_.users) {
      throw BenchError("the baseline wrote " + std::to_string(r.rows_written) +
                       " inbox rows, not one per user (" + std::to_string(options_.users) + ")");
    }
    r.write_s = t.before_s;
    r.read_s = t.work_s;
    return r;
  }

 private:
  std::unique_ptr<SQLite::Database> open() {
    auto db = std::make_unique<SQLite::Database>(file_.string(),
                                                 SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db->setBusyTimeout(static_cast<int>(server::kBusyTimeout.count()));
    db->exec("PRAGMA journal_mode=WAL");
    db->exec("PRAGMA synchronous=NORMAL");
    return db;
  }

  // Reader thread `thread`: for each of its devices, the rows after its cursor, a page at a
  // time (one query when nothing more is waiting), every column read as the server would.
  void read(int thread, const std::string& expected_id, std::vector<int>& matched,
            std::vector<int>& rows) {
    SQLite::Database& db = *reader_dbs_[static_cast<std::size_t>(thread)];
    SQLite::Statement select(db,
                             "SELECT seq, message_id, sender_name, body, priority, require_ack, "
                             "created_at FROM inbox WHERE recipient = ? AND seq > ? "
                             "ORDER BY seq LIMIT ?");
    for (std::size_t i = static_cast<std::size_t>(thread); i < readers_.size();
         i += static_cast<std::size_t>(options_.concurrency)) {
      for (;;) {
        select.bind(1, readers_[i]);
        select.bind(2, cursors_[i]);
        select.bind(3, kPageRows);
        int page_rows = 0;
        while (select.executeStep()) {
          ++page_rows;
          cursors_[i] = select.getColumn(0).getInt64();
          const std::string message_id = select.getColumn(1).getString();
          const std::string sender_name = select.getColumn(2).getString();
          const std::string body = select.getColumn(3).getString();
          const int priority = select.getColumn(4).getInt();
          const int require_ack = select.getColumn(5).getInt();
          const std::int64_t created_at = select.getColumn(6).getInt64();
          matched[i] += message_id == expected_id && !body.empty() && !sender_name.empty() &&
                                priority == 1 && require_ack == 1 && created_at > 0
                            ? 1
                            : 0;
        }
        select.reset();
        rows[i] += page_rows;
        if (page_rows < kPageRows)
          break;
      }
    }
  }

  const fs::path file_;
  const Options options_;
  const std::vector<std::string> readers_;
  std::vector<std::int64_t> cursors_;
  std::unique_ptr<SQLite::Database> db_;
  std::vector<std::unique_ptr<SQLite::Database>> reader_dbs_;
};

// ---- Summaries ----------------------------------------------------------------------------

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

std::string fixed(double v, int decimals) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%.*f", decimals, v);
  return buf.data();
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width)
    s.insert(0, width - s.size(), ' ');
  return s;
}

std::string pad_right(std::string s, std::size_t width) {
  if (s.size() < width)
    s.append(width - s.size(), ' ');
  return s;
}

/// Two descriptors per device (the client's and the server's end) and some to spare: raises
/// the soft limit to the hard one when needed, or says what to do.
void ensure_descriptors(int devices) {
  const rlim_t needed = 2 * static_cast<rlim_t>(devices) + kSpareDescriptors;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
    return;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    limit.rlim_cur = std::min(needed, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    throw BenchError("--devices " + std::to_string(devices) + " needs about " +
                     std::to_string(needed) + " open files, but the limit is " +
                     std::to_string(limit.rlim_cur) +
                     "; raise it (ulimit -n) or use fewer devices");
  }
}

int run(int argc, char** argv) {
  Options options;
  CLI::App app{
      "Kaban fan-out benchmark: one announcement to every user is one message row, which N\n"
      "simulated devices pull over mutual TLS from an in-process server; against mail-style\n"
      "fan-out (one inbox row per recipient) in plain SQLite, read back without TLS or HTTP.\n"
      "Prints a table of medians and, as the last line, one JSON object (ratio = Kaban's time /\n"
      "the baseline's)."};
  app.add_option("--users", options.users,
                 "Users on the server: the announcement's audience (U); the baseline writes one "
                 "inbox row for each")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--devices", options.devices,
                 "Users with an enrolled device (N, at most U), spread evenly over the users; each "
                 "pulls the announcement over its own kept-alive TLS connection")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--concurrency", options.concurrency,
                 "Threads pulling for the devices (C, at most N), each owning every C-th device; "
                 "the baseline reads with as many threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--rounds", options.rounds,
                 "Rounds, each a new announcement and a new baseline message; medians are "
                 "reported")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.footer(
      "Setup (not timed): a fresh server data directory in $TMPDIR, U users, N devices enrolled\n"
      "in-process, the server on 127.0.0.1 with 2 io threads, each device connected and its inbox\n"
      "caught up. Timed per round: Kaban from Messaging::announce(\"all\") until every device has\n"
      "parsed it from GET /v1/inbox; the baseline from its U-row write until every device's row\n"
      "was read. TLS handshakes are not in the timed part (reported as connect_s).\n"
      "Also reported, outside the ratio: the same inbox pages fetched again through Api::handle()\n"
      "in-process on 2 threads (pull_api_only_s), the server's work without TLS or HTTP.\n");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (options.devices > options.users) {
    std::cerr << kProgram << ": --devices (" << options.devices << ") cannot exceed --users ("
              << options.users << "): each device belongs to a different user\n";
    return 2;
  }
  if (options.concurrency > options.devices) {
    std::cerr << kProgram << ": --concurrency (" << options.concurrency
              << ") cannot exceed --devices (" << options.devices
              << "): each thread pulls for at least one device\n";
    return 2;
  }
  ensure_descriptors(options.devices);

  const kaban::bench::TempDir dir("fanout");
  std::cerr << "setup: " << options.users << " users, " << options.devices
            << " devices, server data in " << dir.path().string() << std::endl;
  KabanSide kaban(dir.path() / "server", options);
  kaban.add_users();
  kaban.enroll_devices();
  kaban.start_server();
  const double connect_s = kaban.connect_devices();

  std::vector<std::string> readers;
  for (int i = 0; i < options.devices; ++i)
    readers.push_back(
        login_of(static_cast<int>(static_cast<std::int64_t>(i) * options.users / options.devices)));
  BaselineSide baseline(dir.path() / "baseline.db", options, std::move(readers));

  std::vector<KabanSide::Round> ours;
  std::vector<BaselineSide::Round> theirs;
  for (int round = 0; round < options.rounds; ++round) {
    kaban.catch_up();
    // Alternate which side goes first, so neither always runs on a cooler (or warmer) machine.
    if (round % 2 == 0) {
      ours.push_back(kaban.run_round(round));
      theirs.push_back(baseline.run_round(round));
    } else {
      theirs.push_back(baseline.run_round(round));
      ours.push_back(kaban.run_round(round));
    }
    const auto& o = ours.back();
    const auto& b = theirs.back();
    std::cerr << "round " << round + 1 << "/" << options.rounds << ": kaban "
              << fixed(o.announce_s + o.pull_s, 4) << " s (announce " << fixed(o.announce_s, 4)
              << ", pull " << fixed(o.pull_s, 4) << ") | baseline "
              << fixed(b.write_s + b.read_s, 4) << " s (write " << fixed(b.write_s, 4) << ", read "
              << fixed(b.read_s, 4) << ")" << std::endl;
  }
  kaban.expect_no_server_errors();
  kaban.shut_down();
  kaban.expect_no_server_errors();

  auto med = [](const auto& v, auto f) {
    std::vector<double> x;
    for (const auto& r : v)
      x.push_back(static_cast<double>(f(r)));
    return median(std::move(x));
  };
  const double announce_s = med(ours, [](const auto& r) { return r.announce_s; });
  const double pull_s = med(ours, [](const auto& r) { return r.pull_s; });
  const double api_only_s = med(ours, [](const auto& r) { return r.api_only_s; });
  const double ours_s = med(ours, [](const auto& r) { return r.announce_s + r.pull_s; });
  const double write_s = med(theirs, [](const auto& r) { return r.write_s; });
  const double read_s = med(theirs, [](const auto& r) { return r.read_s; });
  const double theirs_s = med(theirs, [](const auto& r) { return r.write_s + r.read_s; });
  const double message_rows = med(ours, [](const auto& r) { return r.message_rows; });
  const double receipt_rows = med(ours, [](const auto& r) { return r.receipt_rows; });
  const double requests = med(ours, [](const auto& r) { return r.requests; });
  const double baseline_rows = med(theirs, [](const auto& r) { return r.rows_written; });
  const auto server_rows = static_cast<std::int64_t>(message_rows + receipt_rows);

  // ---- Human-readable table ----
  std::cout << "fanout bench: 1 announcement to " << options.users << " users, pulled by "
            << options.devices << " devices on " << options.concurrency << " threads, "
            << options.rounds << " round(s), medians; SQLite " << sqlite3_libversion() << "\n"
            << "  kaban   : in-process server (" << kServerThreads
            << " io threads), mutual TLS keep-alive connections opened before the timer ("
            << fixed(connect_s, 3) << " s to connect all)\n"
            << "  baseline: " << kBaselineName << ", WAL, synchronous=NORMAL\n";
  const std::size_t w = 40;
  std::cout << pad_right("", w) << pad("seconds", 10) << pad("rows written", 14) << "\n";
  std::cout << pad_right("kaban    announce", w) << pad(fixed(announce_s, 4), 10)
            << pad(std::to_string(server_rows), 14) << "\n";
  std::cout << pad_right("kaban    pull (" + fixed(requests, 0) + " x GET /v1/inbox)", w)
            << pad(fixed(pull_s, 4), 10) << "\n";
  std::cout << pad_right("kaban    same, Api::handle on 2 threads", w)
            << pad(fixed(api_only_s, 4), 10) << "\n";
  std::cout << pad_right("kaban    total (ours)", w) << pad(fixed(ours_s, 4), 10) << "\n";
  std::cout << pad_right("baseline write (1 txn)", w) << pad(fixed(write_s, 4), 10)
            << pad(fixed(baseline_rows, 0), 14) << "\n";
  std::cout << pad_right("baseline read (" + std::to_string(options.devices) + " x SELECT)", w)
            << pad(fixed(read_s, 4), 10) << "\n";
  std::cout << pad_right("baseline total (theirs)", w) << pad(fixed(theirs_s, 4), 10) << "\n";
  std::cout << pad_right("ratio ours/theirs", w) << pad(fixed(ours_s / theirs_s, 2) + "x", 10)
            << "\n";
  std::cout << "every device received exactly the announced id in every round; server rows per "
               "announcement: "
            << fixed(message_rows, 0) << " message + " << fixed(receipt_rows, 0) << " receipt\n";
  if (server_rows != 1) {
    std::cout << "warning: the server wrote " << server_rows
              << " rows for one announcement; the design says one message row\n";
  }

  // ---- The one JSON line ----
  const json out = {
      {"bench", "fanout"},
      {"ours", ours_s},
      {"baseline", kBaselineName},
      {"theirs", theirs_s},
      {"unit", "s"},
      {"ratio", ours_s / theirs_s},
      {"announce_s", announce_s},
      {"pull_s", pull_s},
      {"pull_api_only_s", api_only_s},
      {"baseline_write_s", write_s},
      {"baseline_read_s", read_s},
      {"server_rows_written", server_rows},
      {"server_message_rows", static_cast<std::int64_t>(message_rows)},
      {"server_receipt_rows", static_cast<std::int64_t>(receipt_rows)},
      {"baseline_rows_written", static_cast<std::int64_t>(baseline_rows)},
      {"users", options.users},
      {"devices", options.devices},
      {"concurrency", options.concurrency},
      {"rounds", options.rounds},
      {"requests", static_cast<std::int64_t>(requests)},
      {"handshake_included", false},
      {"connect_s", connect_s},
      {"server_threads", kServerThreads},
      {"sqlite_version", sqlite3_libversion()},
  };
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << kProgram << ": " << e.what()
              << "\n(the temporary server and databases were removed; no results were printed)\n";
    return 1;
  }
}
