// Exactly once under faults: the real `kaban` CLI uploads its outbox through a proxy that cuts
// connections at random points, is killed with SIGKILL at random moments, and meets a real
// `kaban-server` that is itself killed mid-request and restarted. Afterwards the server must hold
// every outbox item exactly once, in the device's order, and the device must show each of its
// messages exactly once.
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "fault_proxy.hpp"
#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/messages.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/messaging.hpp"
#include "sync_support.hpp"
#include "test_support.hpp"

namespace kaban {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::kFastKdf;
using testing::TempDir;
using testing::text_of;
using testing::unix_now;

constexpr const char* kPin = "fault-test-pin-4821";
constexpr int kRounds = 24;
constexpr int kMessagesPerRound = 12;
// Bodies of this size make each round's upload tens of kilobytes, so most cuts and kills land
// inside an upload rather than in the handshake or the check-in before it.
constexpr std::size_t kBodySize = 3000;
constexpr auto kChildLimit = 60s;

class OutboxFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server::init_data_dir(server_dir_, {}));
    auto db = server::open_database(server_dir_);
    ASSERT_TRUE(db);
    const server::UnixTime now =
        std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    server::Directory directory(*db.value());
    ASSERT_TRUE(directory.add_user("kenji", "Kenji Mori", now));
    ASSERT_TRUE(directory.add_user("yui", "Yui Sato", now));
    server::Messaging messaging(*db.value());
    std::string why;
    ASSERT_TRUE(messaging.add_channel("depot-7", "Depot 7", now, why)) << why;
    ASSERT_TRUE(
        messaging.add_members("depot-7", std::vector<std::string>{"kenji", "yui"}, now, why))
        << why;
    auto code = directory.create_enroll_code("kenji", 1h, now);
    ASSERT_TRUE(code);
    auto identity = server::load_identity(server_dir_);
    ASSERT_TRUE(identity);

    start_server();
    proxy_.emplace(server_port_);

    const protocol::EnrollmentLine line{"127.0.0.1", proxy_->port(), code.value(),
                                        identity.value().ca_fingerprint};
    auto enrolled = agent::request_enrollment(line, {}, why);
    ASSERT_TRUE(enrolled) << why;
    device_id_ = enrolled.value().device_id;
    ASSERT_TRUE(agent::complete_enrollment(device_dir_, enrolled.value(), kPin, kFastKdf));
    // The first sync brings the channel onto the device.
    ASSERT_EQ(run_agent({"sync"}), 0) << text_of(agent_log_);
  }

  void TearDown() override {
    if (server_pid_ > 0) {
      kill(server_pid_, SIGTERM);
      testing::wait_exit_for(server_pid_, 10s);
    }
  }

  // Starts kaban-server on a free port and waits for it to say where it listens.
  void start_server() {
    const fs::path log = tmp_ / ("server-" + std::to_string(++server_starts_) + ".log");
    server_pid_ = testing::spawn_process(
        KABAN_SERVER_BIN, {"--data-dir", server_dir_.string(), "serve", "--listen", "127.0.0.1:0"},
        {"PATH=/usr/bin:/bin"}, log);
    ASSERT_GT(server_pid_, 0);
    const std::string marker = "listening on https://127.0.0.1:";
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {
      const std::string out = text_of(log);
      if (const auto at = out.find(marker); at != std::string::npos) {
        server_port_ = static_cast<std::uint16_t>(std::stoi(out.substr(at + marker.size())));
        return;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the server did not start: " << out;
      std::this_thread::sleep_for(10ms);
    }
  }

  pid_t spawn_agent(std::vector<std::string> args) {
    return testing::spawn_process(KABAN_AGENT_BIN, std::move(args),
                                  {"KABAN_HOME=" + device_dir_.string(),
                                   std::string("KABAN_PIN=") + kPin, "PATH=/usr/bin:/bin"},
                                  agent_log_);
  }

  int run_agent(std::vector<std::string> args) {
    const auto code = testing::wait_exit_for(spawn_agent(std::move(args)), kChildLimit);
    EXPECT_TRUE(code) << "the agent hung";
    return code.value_or(-1);
  }

  // Writes `count` messages on the device, offline; their ids in writing order.
  std::vector<std::string> write_messages(int count) {
    std::vector<std::string> ids;
    auto store = agent::Store::open(device_dir_, kPin);
    EXPECT_TRUE(store);
    if (!store)
      return ids;
    agent::Messages messages(store.value(), "kenji", "Kenji Mori");
    for (int i = 0; i < count; ++i) {
      std::string body = "load " + std::to_string(written_++) + " ";
      body.resize(kBodySize, 'x');
      auto sent = messages.send("depot-7", body, protocol::Priority::normal, false, unix_now());
      EXPECT_TRUE(sent);
      if (sent)
        ids.push_back(sent.value().id);
    }
    return ids;
  }

  TempDir tmp_;
  fs::path server_dir_ = tmp_ / "server";
  fs::path device_dir_ = tmp_ / "device";
  fs::path agent_log_ = tmp_ / "agent.log";
  pid_t server_pid_ = -1;
  std::uint16_t server_port_ = 0;
  int server_starts_ = 0;
  std::optional<testing::FaultProxy> proxy_;
  std::string device_id_;
  int written_ = 0;
};

TEST_F(OutboxFaults, EveryItemArrivesExactlyOnceAndInOrder) {
  std::mt19937 random(20261123);
  std::vector<std::string> written;
  int agent_kills = 0, server_kills = 0, partial_rounds = 0;
  // Messages the server holds from this device now.
  const auto held_count = [this] {
    SQLite::Database db((server_dir_ / "server.db").string(), SQLite::OPEN_READONLY);
    SQLite::Statement count(db, "SELECT COUNT(*) FROM messages WHERE device_id = ?");
    count.bind(1, device_id_);
    count.executeStep();
    return count.getColumn(0).getInt64();
  };
  for (int round = 0; round < kRounds; ++round) {
    for (auto& id : write_messages(kMessagesPerRound))
      written.push_back(std::move(id));

    // Most connections of this round are cut somewhere in the handshake, the request or the
    // answer; some get through.
    proxy_->set_policy([&random] {
      testing::FaultProxy::Cut cut;
      if (std::uniform_int_distribution<int>(0, 3)(random) != 0) {
        cut.budget = std::uniform_int_distribution<std::uint64_t>(200, 80'000)(random);
        cut.reset = std::uniform_int_distribution<int>(0, 1)(random) == 0;
      }
      return cut;
    });
    const pid_t agent = spawn_agent({"sync"});
    ASSERT_GT(agent, 0);
    const auto delay =
        std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 400)(random));
    std::this_thread::sleep_for(delay);
    if (round % 4 == 3) {
      // The server dies mid-request (or between requests) and comes back on another port.
      kill(server_pid_, SIGKILL);
      testing::wait_exit(server_pid_);
      ++server_kills;
      testing::wait_exit_for(agent, kChildLimit);
      start_server();
      proxy_->set_target(server_port_);
    } else if (round % 2 == 0) {
      kill(agent, SIGKILL);
      ++agent_kills;
      testing::wait_exit_for(agent, kChildLimit);
    } else {
      const auto code = testing::wait_exit_for(agent, kChildLimit);
      ASSERT_TRUE(code) << "the agent hung under faults";
    }
    const std::int64_t held_now = held_count();
    if (held_now > 0 && held_now < static_cast<std::int64_t>(written.size()))
      ++partial_rounds;
  }
  std::cout << "rounds " << kRounds << ", left the server with part of the outbox "
            << partial_rounds << ", agent kills " << agent_kills << ", server kills "
            << server_kills << ", connections " << proxy_->connections() << ", cut "
            << proxy_->cuts() << "\n";
  EXPECT_GT(partial_rounds, 0) << "no fault ever stopped an upload";
  EXPECT_GT(proxy_->cuts(), 0u) << "the proxy never cut a connection";

  // The network heals: sync until the outbox is empty and the echoes are in.
  proxy_->set_policy(nullptr);
  ASSERT_EQ(run_agent({"sync"}), 0) << text_of(agent_log_);
  ASSERT_EQ(run_agent({"sync"}), 0) << text_of(agent_log_);

  // The server: each message once, in the order the device wrote them.
  SQLite::Database db((server_dir_ / "server.db").string(), SQLite::OPEN_READONLY);
  SQLite::Statement rows(db,
                         "SELECT id, device_seq FROM messages WHERE device_id = ? ORDER BY seq");
  rows.bind(1, device_id_);
  std::vector<std::string> held;
  std::int64_t last_device_seq = 0;
  while (rows.executeStep()) {
    held.push_back(rows.getColumn(0).getString());
    const std::int64_t device_seq = rows.getColumn(1).getInt64();
    EXPECT_GT(device_seq, last_device_seq) << "out of the device's order at " << held.back();
    last_device_seq = device_seq;
  }
  // Compared by count and first difference: a dump of hundreds of UUIDs helps nobody.
  EXPECT_EQ(held.size(), written.size()) << "the server holds a different number of messages";
  const auto differ = std::mismatch(held.begin(), held.end(), written.begin(), written.end());
  EXPECT_TRUE(differ.first == held.end() && differ.second == written.end())
      << "first difference at message " << (differ.first - held.begin()) << " of " << written.size()
      << " (agent kills " << agent_kills << ", server kills " << server_kills << ", cuts "
      << proxy_->cuts() << ")";
  SQLite::Statement logged(db,
                           "SELECT COUNT(*), COUNT(DISTINCT item_id) FROM outbox_log "
                           "WHERE device_id = ? AND kind = 'message'");
  logged.bind(1, device_id_);
  ASSERT_TRUE(logged.executeStep());
  EXPECT_EQ(logged.getColumn(0).getInt64(), static_cast<std::int64_t>(written.size()));
  EXPECT_EQ(logged.getColumn(1).getInt64(), static_cast<std::int64_t>(written.size()));

  // The device: nothing left to send, each message once, confirmed by the server.
  auto store = agent::Store::open(device_dir_, kPin);
  ASSERT_TRUE(store);
  agent::Outbox outbox(store.value());
  auto counts = outbox.counts();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts.value().pending, 0u);
  EXPECT_EQ(counts.value().rejected, 0u);
  agent::Messages messages(store.value(), "kenji", "Kenji Mori");
  auto shown = messages.list();
  ASSERT_TRUE(shown);
  std::map<std::string, int> times_shown;
  for (const auto& m : shown.value()) {
    ++times_shown[m.id];
    EXPECT_EQ(m.state, agent::MessageState::sent) << m.id;
    EXPECT_GT(m.seq, 0) << "the server's echo did not reach " << m.id;
  }
  for (const auto& id : written)
    EXPECT_EQ(times_shown[id], 1) << id;
}

}  // namespace
}  // namespace kaban
