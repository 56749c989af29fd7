// The message lane end to end: the real server (in this process, on 127.0.0.1 port 0) and the
// real agent library, over real TLS. Two people, several devices, messages, receipts,
// acknowledgements, learning records, attachments, an urgent announcement during a big
// download, and watch.
#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "kaban/agent/attachments.hpp"
#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/learning_log.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/messages.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/http_server.hpp"
#include "kaban/server/messaging.hpp"
#include "sync_support.hpp"
#include "test_support.hpp"

namespace kaban {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::server_now;
using testing::unix_now;
using testing::write_text;

// Passes requests to the real Api; chunk requests can be slowed down so a download lasts long
// enough for something to happen meanwhile.
class SlowChunks final : public server::Router {
 public:
  explicit SlowChunks(server::Router& inner) : inner_(inner) {}
  std::optional<std::size_t> body_limit(const server::HttpRequest& head,
                                        server::HttpResponse& refusal) override {
    return inner_.body_limit(head, refusal);
  }
  server::HttpResponse handle(const server::HttpRequest& request) override {
    return inner_.handle(request);
  }
  // The real Api's long poll is used (a request waits on the Api's thread, not an io thread),
  // unless the test asks for a simulated one held for a fixed time.
  void handle_async(server::HttpRequest request, Reply reply) override {
    const bool chunk = request.path.starts_with("/v1/chunks/");
    if (chunk && delay_.load().count() > 0)
      std::this_thread::sleep_for(delay_.load());
    if (request.path == "/v1/inbox")
      ++inbox_requests_;
    if (request.path == "/v1/inbox" && request.query.count("wait") && hold_.load().count() > 0) {
      ++polls_held_;
      std::this_thread::sleep_for(hold_.load());
      return reply(inner_.handle(request));
    }
    const bool get = request.method == "GET";
    inner_.handle_async(std::move(request), [this, chunk, get, reply](server::HttpResponse r) {
      if (chunk && get && r.status == 200) {
        ++chunks_served_;
        if (damage_.load() && !r.body.empty())
          r.body[r.body.size() / 2] = static_cast<char>(r.body[r.body.size() / 2] ^ 0x20);
      }
      reply(std::move(r));
    });
  }
  void stopping() override { inner_.stopping(); }
  void set_chunk_delay(std::chrono::milliseconds d) { delay_ = d; }
  void hold_long_polls(std::chrono::milliseconds d) { hold_ = d; }
  // Flips a bit in every chunk served, as a bad proxy would.
  void damage_chunks(bool on) { damage_ = on; }
  int chunks_served() const { return chunks_served_; }
  int polls_held() const { return polls_held_; }
  int inbox_requests() const { return inbox_requests_; }

 private:
  server::Router& inner_;
  std::atomic<std::chrono::milliseconds> delay_{0ms};
  std::atomic<std::chrono::milliseconds> hold_{0ms};
  std::atomic<bool> damage_{false};
  std::atomic<int> polls_held_{0};
  std::atomic<int> chunks_served_{0};
  std::atomic<int> inbox_requests_{0};
};

// One enrolled device: its store and the person it belongs to.
struct Device : testing::TestDevice {
  agent::Messages messages() { return agent::Messages(*store, login, user_name); }
  agent::Outbox outbox() { return agent::Outbox(*store); }
  agent::LearningLog log() {
    auto identity = agent::load_identity(*store);
    EXPECT_TRUE(identity);
    return agent::LearningLog(*store, agent::learner_of(identity.value()));
  }

  // A bare client with this device's certificate, for requests the agent would not make.
  agent::HttpsClient raw_client() { return testing::device_client(*store); }

  std::vector<agent::MessageView> list(std::string channel = "") {
    agent::MessageFilter filter;
    filter.channel = std::move(channel);
    auto l = messages().list(filter);
    EXPECT_TRUE(l) << l.error().message();
    return l ? l.value() : std::vector<agent::MessageView>{};
  }
};

class Messaging : public testing::ServerFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(init_server());
    router_.emplace(*api_);
    serve_through(*router_);
    ASSERT_NO_FATAL_FAILURE(start_server());

    auto db = server::open_database(server_dir_);
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    add_user("aiko", "Aiko Tanaka");
    add_user("ken", "Ken Sato");
    std::string why;
    server::Messaging messaging(*db_);
    ASSERT_TRUE(messaging.add_channel("team-a", "Team A", server_now(), why)) << why;
    const std::vector<std::string> both{"aiko", "ken"};
    ASSERT_TRUE(messaging.add_members("team-a", both, server_now(), why)) << why;
  }

  // A device of `login`'s, its store open.
  Device enroll(const std::string& login, const std::string& device) {
    Device d{enroll_device(login, device)};
    d.open_store();
    return d;
  }

  server::PostedMessage announce(const std::string& body, protocol::Priority priority,
                                 bool require_ack = false) {
    server::Messaging messaging(*db_);
    server::Announcement a;
    a.audience = "all";
    a.body = body;
    a.priority = priority;
    a.require_ack = require_ack;
    std::string why;
    auto posted = messaging.announce(a, server_now(), why);
    EXPECT_TRUE(posted) << why;
    return posted ? posted.value() : server::PostedMessage{};
  }

  // The server's record of what `login` did with `message_id`.
  server::AckStatus marks_of(const std::string& message_id, const std::string& login) {
    server::Messaging messaging(*db_);
    std::string why;
    auto report = messaging.acks(message_id, why);
    EXPECT_TRUE(report) << why;
    if (report) {
      for (const server::AckStatus& s : report.value().people)
        if (s.login == login)
          return s;
    }
    return {};
  }

  void publish_big_course() {
    const fs::path dir = tmp_.path() / "course";
    std::mt19937 gen(7);
    std::string video(4 * 1024 * 1024 + 100, '\0');
    for (char& c : video)
      c = static_cast<char>(gen());
    write_text(dir / "media/drill.mp4", video);
    write_text(dir / "course.json",
               R"({"id": "shelter", "title": "Opening a shelter",
      "lessons": [{"id": "drill", "title": "Drill", "kind": "video", "files": ["media/drill.mp4"]}]})");
    publish(dir);
  }

  std::optional<SlowChunks> router_;
  std::unique_ptr<SQLite::Database> db_;
};

TEST_F(Messaging, AMessageWrittenOfflineReachesTheOtherPersonAndShowsOnceForTheSender) {
  Device aiko = enroll("aiko", "aiko-phone");
  Device ken = enroll("ken", "ken-phone");
  aiko.sync();
  ken.sync();

  auto sent = aiko.messages().send("team-a", "Bring the generator key.", protocol::Priority::normal,
                                   false, unix_now());
  ASSERT_TRUE(sent) << sent.error().message();
  ASSERT_EQ(aiko.list("team-a").size(), 1u);
  EXPECT_EQ(aiko.list("team-a")[0].state, agent::MessageState::pending);

  const agent::SyncReport up = aiko.sync();
  EXPECT_EQ(up.outbox_sent, 1u);
  EXPECT_EQ(up.outbox_rejected, 0u);
  auto mine = aiko.list("team-a");
  ASSERT_EQ(mine.size(), 1u) << "the server's echo must not add a second row";
  EXPECT_EQ(mine[0].id, sent.value().id);
  EXPECT_EQ(mine[0].state, agent::MessageState::sent);
  EXPECT_GT(mine[0].seq, 0);

  const agent::SyncReport down = ken.sync();
  EXPECT_EQ(down.messages_received, 1u);
  auto theirs = ken.list("team-a");
  ASSERT_EQ(theirs.size(), 1u);
  EXPECT_EQ(theirs[0].id, sent.value().id);
  EXPECT_EQ(theirs[0].body, "Bring the generator key.");
  EXPECT_EQ(theirs[0].sender, "aiko");
  EXPECT_FALSE(theirs[0].read);
  EXPECT_EQ(theirs[0].seq, mine[0].seq) << "every device shows the server's order";
  EXPECT_EQ(ken.outbox().counts().value().pending, 0u) << "the delivered receipt went up";
  EXPECT_NE(marks_of(sent.value().id, "ken").delivered_at, 0);

  const std::vector<std::string> team{"team-a"};
  ASSERT_EQ(ken.messages().mark_read(team, unix_now()).value(), 1u);
  ken.sync();
  EXPECT_NE(marks_of(sent.value().id, "ken").read_at, 0);
}

TEST_F(Messaging, AnAttachmentTravelsWithItsMessageAndOnlyToThoseWhoMayReadIt) {
  {
    server::Directory directory(*db_);
    ASSERT_TRUE(directory.add_user("taro", "Taro Ito", server_now()));
  }
  Device aiko = enroll("aiko", "aiko-phone");
  Device ken = enroll("ken", "ken-phone");
  Device taro = enroll("taro", "taro-phone");  // not in team-a
  aiko.sync();
  ken.sync();

  // About 1.5 MiB: two chunks, the second one shorter.
  std::mt19937 gen(11);
  std::string plan(protocol::kAttachmentChunkSize + 512 * 1024 + 3, '\0');
  for (char& c : plan)
    c = static_cast<char>(gen());
  const std::vector<agent::AttachmentFile> files{{"floor-plan.pdf", "application/pdf", plan}};
  auto sent = aiko.messages().send("team-a", "Floor plan of shelter B attached.",
                                   protocol::Priority::normal, false, unix_now(), files);
  ASSERT_TRUE(sent) << sent.error().message();
  auto queued = aiko.outbox().next_batch();
  ASSERT_TRUE(queued);
  ASSERT_EQ(queued.value().items.size(), 1u);
  const std::vector<protocol::ChunkRef> chunks =
      queued.value().items[0].message->attachments.at(0).chunks;
  ASSERT_EQ(chunks.size(), 2u);

  const agent::SyncReport up = aiko.sync();
  EXPECT_EQ(up.outbox_sent, 1u);
  EXPECT_EQ(up.outbox_rejected, 0u) << "the server took the message once it held its chunks";
  auto mine = aiko.list("team-a");
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].state, agent::MessageState::sent);
  ASSERT_EQ(mine[0].attachments.size(), 1u);
  EXPECT_TRUE(mine[0].attachments[0].downloaded);

  const agent::SyncReport down = ken.sync();
  EXPECT_EQ(down.messages_received, 1u);
  EXPECT_EQ(down.attachments_fetched, 1u);
  EXPECT_EQ(down.attachment_bytes_fetched, plan.size());
  auto theirs = ken.list("team-a");
  ASSERT_EQ(theirs.size(), 1u);
  ASSERT_EQ(theirs[0].attachments.size(), 1u);
  EXPECT_EQ(theirs[0].attachments[0].name, "floor-plan.pdf");
  EXPECT_EQ(theirs[0].attachments[0].media_type, "application/pdf");
  EXPECT_EQ(theirs[0].attachments[0].size, plan.size());
  EXPECT_TRUE(theirs[0].attachments[0].downloaded);
  auto received = agent::Attachments(*ken.store).read(sent.value().id, "");
  ASSERT_TRUE(received) << received.error().message();
  EXPECT_TRUE(received.value() == plan) << "the file must arrive byte-identical";
  EXPECT_EQ(ken.sync().attachments_fetched, 0u) << "a held attachment is not fetched again";

  // A member may fetch the chunks; someone who may read no message using them may not.
  agent::HttpsClient as_ken = ken.raw_client();
  agent::HttpsClient as_taro = taro.raw_client();
  for (const protocol::ChunkRef& chunk : chunks) {
    auto allowed = as_ken.request("GET", "/v1/chunks/" + chunk.sha256);
    ASSERT_TRUE(allowed) << allowed.error().message();
    EXPECT_EQ(allowed.value().status, 200);
    EXPECT_EQ(allowed.value().body.size(), chunk.size);
    auto refused = as_taro.request("GET", "/v1/chunks/" + chunk.sha256);
    ASSERT_TRUE(refused) << refused.error().message();
    EXPECT_EQ(refused.value().status, 404) << "a chunk reached someone outside the channel";
  }
  const agent::SyncReport outsider = taro.sync();
  EXPECT_EQ(outsider.messages_received, 0u);
  EXPECT_EQ(outsider.attachments_fetched, 0u);
}

TEST_F(Messaging, ADamagedAttachmentChunkIsFetchedOnceMoreThenReportedAndFetchedLater) {
  Device aiko = enroll("aiko", "aiko-phone");
  Device ken = enroll("ken", "ken-phone");
  aiko.sync();
  ken.sync();
  const std::string photo(300 * 1024, 'p');
  auto sent =
      aiko.messages().send("team-a", "Photo of the damage.", protocol::Priority::normal, false,
                           unix_now(), std::vector<agent::AttachmentFile>{{"roof.jpg", "", photo}});
  ASSERT_TRUE(sent) << sent.error().message();
  aiko.sync();

  router_->damage_chunks(true);
  const int served_before = router_->chunks_served();
  std::string why;
  auto failed = agent::sync(*ken.store, {}, why);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), agent::errc::content_invalid);
  EXPECT_NE(why.find("attachment chunk"), std::string::npos) << why;
  EXPECT_NE(why.find("damaged twice"), std::string::npos) << why;
  EXPECT_EQ(router_->chunks_served() - served_before, 2) << "fetched once more, then given up";
  auto shown = ken.list("team-a");
  ASSERT_EQ(shown.size(), 1u) << "the message itself arrived";
  ASSERT_EQ(shown[0].attachments.size(), 1u);
  EXPECT_FALSE(shown[0].attachments[0].downloaded);
  EXPECT_EQ(agent::Attachments(*ken.store).read(sent.value().id, "roof.jpg").error(),
            agent::errc::not_found);
  EXPECT_NE(marks_of(sent.value().id, "ken").delivered_at, 0)
      << "the receipts still went up after the attachment failed";

  router_->damage_chunks(false);
  const agent::SyncReport healed = ken.sync();
  EXPECT_EQ(healed.attachments_fetched, 1u);
  EXPECT_EQ(agent::Attachments(*ken.store).read(sent.value().id, "roof.jpg").value(), photo);
}

TEST_F(Messaging, AnnouncementsAreAcknowledgedAndMarksFollowThePerson) {
  Device phone = enroll("ken", "ken-phone");
  Device laptop = enroll("ken", "ken-laptop");
  const server::PostedMessage drill =
      announce("Confirm you read the evacuation plan.", protocol::Priority::urgent, true);
  const agent::SyncReport first = phone.sync();
  EXPECT_EQ(first.urgent_received, 1u);
  laptop.sync();

  auto acked = phone.messages().acknowledge(drill.id, unix_now());
  ASSERT_TRUE(acked) << acked.error().message();
  phone.sync();
  EXPECT_NE(marks_of(drill.id, "ken").acked_at, 0);

  laptop.sync();
  auto on_laptop = laptop.list();
  ASSERT_EQ(on_laptop.size(), 1u);
  EXPECT_TRUE(on_laptop[0].read) << "read on the phone, so read on the laptop";
  EXPECT_NE(on_laptop[0].acked_at, 0);
  EXPECT_EQ(laptop.outbox().counts().value().pending, 0u)
      << "a mark from another device queues nothing";
}

TEST_F(Messaging, ARefusedMessageStaysVisibleWithTheServersReason) {
  Device aiko = enroll("aiko", "aiko-phone");
  aiko.sync();
  // Removed from the channel on the server while the phone was offline.
  server::Messaging messaging(*db_);
  std::string why;
  const std::vector<std::string> aiko_only{"aiko"};
  ASSERT_TRUE(messaging.remove_members("team-a", aiko_only, server_now(), why)) << why;
  auto sent = aiko.messages().send("team-a", "Anyone there?", protocol::Priority::normal, false,
                                   unix_now());
  ASSERT_TRUE(sent);

  const agent::SyncReport report = aiko.sync();
  EXPECT_EQ(report.outbox_rejected, 1u);
  auto shown = aiko.list();
  ASSERT_EQ(shown.size(), 1u) << "never silently dropped";
  EXPECT_EQ(shown[0].state, agent::MessageState::rejected);
  EXPECT_FALSE(shown[0].reason.empty());
  auto channels = aiko.messages().channels();
  ASSERT_TRUE(channels);
  for (const agent::ChannelInfo& c : channels.value())
    EXPECT_NE(c.id, "team-a") << "the device dropped the channel it was removed from";
  auto listed = aiko.outbox().list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed.value().size(), 1u);
  EXPECT_TRUE(listed.value()[0].rejected);
  EXPECT_EQ(listed.value()[0].code, "not_a_member");
  ASSERT_TRUE(aiko.outbox().discard(sent.value().id));
  EXPECT_TRUE(aiko.list().empty());
}

TEST_F(Messaging, ProgressFollowsThePersonToTheirOtherDevice) {
  Device phone = enroll("aiko", "aiko-phone");
  Device laptop = enroll("aiko", "aiko-laptop");
  const agent::LessonTarget lesson{"shelter", "drill", "Drill"};
  ASSERT_TRUE(phone.log().record_progress(lesson, 40, 600, unix_now() - 60));
  ASSERT_TRUE(phone.log().record_completion(lesson, 0.9, 900, unix_now()));
  ASSERT_EQ(phone.log().summary().value().at(0).pending_upload, 2u);
  const agent::SyncReport up = phone.sync();
  EXPECT_EQ(up.outbox_sent, 2u);
  EXPECT_EQ(phone.log().summary().value().at(0).pending_upload, 0u);

  const agent::SyncReport down = laptop.sync();
  EXPECT_EQ(down.statements_received, 2u);
  auto summary = laptop.log().summary();
  ASSERT_TRUE(summary);
  ASSERT_EQ(summary.value().size(), 1u);
  EXPECT_EQ(summary.value()[0].best_percent, 100);
  EXPECT_NE(summary.value()[0].completed_at, 0);
  EXPECT_EQ(summary.value()[0].seconds_spent, 1500);
  EXPECT_EQ(summary.value()[0].pending_upload, 0u);

  // Syncing again stores nothing twice.
  phone.sync();
  laptop.sync();
  EXPECT_EQ(laptop.log().summary().value()[0].statements, 2u);
  EXPECT_EQ(phone.log().summary().value()[0].statements, 2u);
}

TEST_F(Messaging, AnUrgentAnnouncementArrivesDuringABigDownload) {
  publish_big_course();
  Device ken = enroll("ken", "ken-phone");
  router_->set_chunk_delay(700ms);
  agent::SyncOptions options;
  options.parallel_downloads = 1;
  options.message_interval = 200ms;
  std::atomic<bool> downloading{false};
  options.on_download_start = [&](std::uint64_t, std::size_t) { downloading = true; };
  auto syncing = std::async(std::launch::async, [&] { return ken.sync(options); });
  while (!downloading)
    std::this_thread::sleep_for(10ms);

  const server::PostedMessage urgent =
      announce("Gas leak at shelter B.", protocol::Priority::emergency);
  // The device reports delivery as soon as the message is stored on it.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (marks_of(urgent.id, "ken").delivered_at == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  EXPECT_NE(marks_of(urgent.id, "ken").delivered_at, 0);
  EXPECT_LT(router_->chunks_served(), 5) << "the message waited for the course";

  const agent::SyncReport report = syncing.get();
  EXPECT_EQ(report.urgent_received, 1u);
  EXPECT_EQ(report.made_ready, std::vector<std::string>{"shelter@1"});
  auto shown = ken.list();
  ASSERT_EQ(shown.size(), 1u);
  EXPECT_EQ(shown[0].priority, protocol::Priority::emergency);
}

TEST_F(Messaging, WatchBringsANewMessageWithinSecondsAndStopsOnRequest) {
  Device ken = enroll("ken", "ken-phone");
  std::atomic<bool> stop{false};
  agent::WatchOptions options;
  options.sync.stop = &stop;
  options.wait_seconds = 5;
  std::mutex rounds_mutex;
  std::vector<agent::WatchRound> rounds;
  options.on_round = [&](const agent::WatchRound& round) {
    std::lock_guard lock(rounds_mutex);
    rounds.push_back(round);
  };
  std::string why;
  auto watching =
      std::async(std::launch::async, [&] { return agent::watch(*ken.store, options, why); });
  const auto has_round = [&](agent::WatchRound::Kind kind) {
    std::lock_guard lock(rounds_mutex);
    return std::any_of(rounds.begin(), rounds.end(),
                       [&](const agent::WatchRound& r) { return r.kind == kind && !r.error; });
  };
  const auto wait_for = [&](auto done) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!done() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    return done();
  };
  ASSERT_TRUE(wait_for([&] { return has_round(agent::WatchRound::Kind::full); }));
  // Idle, watch waits in the server's long poll instead of asking again and again.
  const int asked_before = router_->inbox_requests();
  std::this_thread::sleep_for(3s);
  EXPECT_LE(router_->inbox_requests() - asked_before, 2) << "watch polls hard while idle";

  const auto posted_at = std::chrono::steady_clock::now();
  const server::PostedMessage news =
      announce("Shelter B opens at 18:00.", protocol::Priority::normal);
  ASSERT_TRUE(wait_for([&] { return marks_of(news.id, "ken").delivered_at != 0; }));
  const auto took = std::chrono::steady_clock::now() - posted_at;
  std::cout << "a new message reached the watching device in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
  EXPECT_LT(took, 3s) << "the long poll did not bring the message at once";
  // The round is reported once the lane is done, a moment after the receipt reached the server.
  EXPECT_TRUE(wait_for([&] { return has_round(agent::WatchRound::Kind::messages); }));

  // Stop while a long poll is held open: watch must not wait for the server's answer.
  router_->hold_long_polls(4s);
  ASSERT_TRUE(wait_for([&] { return router_->polls_held() > 0; }));
  std::this_thread::sleep_for(200ms);
  const auto stopped_at = std::chrono::steady_clock::now();
  stop = true;
  ASSERT_EQ(watching.wait_for(10s), std::future_status::ready) << "watch did not stop";
  auto result = watching.get();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), agent::errc::interrupted);
  EXPECT_LT(std::chrono::steady_clock::now() - stopped_at, 1500ms)
      << "a long poll held up the stop";
  auto shown = ken.list();
  ASSERT_EQ(shown.size(), 1u);
  EXPECT_EQ(shown[0].id, news.id);
}

}  // namespace
}  // namespace kaban
