#include <algorithm>
#include <map>
#include <set>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>
#include <gtest/gtest.h>

#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/xapi.hpp"
#include "kaban/schema/migrations.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/messaging.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

using namespace std::chrono_literals;
using kaban::testing::TempDir;
using protocol::ChannelKind;
using protocol::OutboxItem;
using protocol::OutboxStatus;
using protocol::Priority;

const UnixTime kNow{std::chrono::seconds{1'800'000'000}};
constexpr const char* kAliceLaptop = "aaaa";
constexpr const char* kAlicePhone = "aaab";
constexpr const char* kBobPhone = "bbbb";
constexpr const char* kCarolPhone = "cccc";

OutboxItem message_item(std::int64_t seq, std::string channel, std::string body,
                        Priority priority = Priority::normal, bool require_ack = false) {
  OutboxItem item;
  item.id = protocol::new_uuid();
  item.seq = seq;
  item.kind = "message";
  item.message = protocol::NewMessage{std::move(channel), std::move(body), priority,
                                      require_ack,        1'799'999'000,   {}};
  return item;
}

OutboxItem receipt_item(std::int64_t seq, std::string state, std::vector<std::string> ids,
                        std::int64_t at) {
  OutboxItem item;
  item.id = protocol::new_uuid();
  item.seq = seq;
  item.kind = "receipt";
  item.receipt = protocol::ReceiptBatch{std::move(state), std::move(ids), at};
  return item;
}

OutboxItem ack_item(std::int64_t seq, std::string message_id, std::int64_t at) {
  OutboxItem item;
  item.id = protocol::new_uuid();
  item.seq = seq;
  item.kind = "ack";
  item.ack = protocol::Acknowledgement{std::move(message_id), at};
  return item;
}

protocol::xapi::NewStatement progress_statement(std::string login, int progress) {
  protocol::xapi::NewStatement s;
  s.id = protocol::new_uuid();
  s.login = std::move(login);
  s.user_name = "Someone";
  s.home_page = "https://kaban.example:8443";
  s.verb = std::string(protocol::xapi::verbs::kProgressed);
  s.course_id = "fire-safety";
  s.lesson_id = "intro";
  s.object_name = "Introduction";
  s.timestamp = 1'799'999'500;
  s.progress = progress;
  return s;
}

OutboxItem statement_item(std::int64_t seq, const protocol::xapi::NewStatement& s) {
  OutboxItem item;
  item.id = protocol::new_uuid();
  item.seq = seq;
  item.kind = "statement";
  item.statement = protocol::xapi::make_statement(s);
  return item;
}

constexpr std::uint64_t kMiB = protocol::kAttachmentChunkSize;
constexpr std::uint64_t kQuota = 64 * kMiB;

// A well-formed attachment of `size` bytes whose chunk hashes are `tag` repeated with the chunk
// index (the server never sees the bytes here, only hashes and sizes).
protocol::Attachment attachment(std::string name, std::uint64_t size, char tag) {
  protocol::Attachment a;
  a.name = std::move(name);
  a.media_type = "image/jpeg";
  a.size = size;
  a.sha256 = std::string(64, tag);
  char index = '0';
  for (const std::uint64_t chunk : protocol::attachment_chunk_sizes(size))
    a.chunks.push_back({std::string(63, tag) + index++, chunk});
  return a;
}

OutboxItem message_with(std::int64_t seq, std::string channel, std::string body,
                        std::vector<protocol::Attachment> attachments) {
  OutboxItem item = message_item(seq, std::move(channel), std::move(body));
  item.message->attachments = std::move(attachments);
  return item;
}

class MessagingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = create_database(tmp_.path());
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    Directory directory(*db_);
    ASSERT_TRUE(directory.add_user("alice", "Alice Aoki", kNow));
    ASSERT_TRUE(directory.add_user("bob", "Bob Baba", kNow));
    ASSERT_TRUE(directory.add_user("carol", "Carol Chiba", kNow));
    messaging_ = std::make_unique<Messaging>(*db_);
  }

  int count(const std::string& table, const std::string& where = "1") {
    return db_->execAndGet("SELECT count(*) FROM " + table + " WHERE " + where).getInt();
  }

  // Makes group channel `id` with these members.
  void group(const std::string& id, std::vector<std::string> logins) {
    std::string why;
    ASSERT_TRUE(messaging_->add_channel(id, "", kNow, why)) << why;
    auto added = messaging_->add_members(id, logins, kNow, why);
    ASSERT_TRUE(added) << why;
    ASSERT_EQ(added.value(), static_cast<int>(logins.size()));
  }

  std::vector<protocol::OutboxResult> upload(const char* device, const std::string& login,
                                             const std::vector<OutboxItem>& items) {
    auto answer = messaging_->apply_outbox(device, login, items, kNow);
    EXPECT_TRUE(answer);
    if (!answer)
      return {};
    EXPECT_EQ(answer.value().results.size(), items.size());
    return answer.value().results;
  }

  // One item, which must be accepted.
  void accepted(const char* device, const std::string& login, const OutboxItem& item) {
    auto results = upload(device, login, {item});
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].status, OutboxStatus::accepted)
        << results[0].code << ": " << results[0].reason;
  }

  // One item, which must be rejected with `code`; returns its reason.
  std::string rejected(const char* device, const std::string& login, const OutboxItem& item,
                       const std::string& code) {
    auto results = upload(device, login, {item});
    if (results.size() != 1)
      return "";
    EXPECT_EQ(results[0].status, OutboxStatus::rejected);
    EXPECT_EQ(results[0].code, code) << results[0].reason;
    EXPECT_FALSE(results[0].reason.empty());
    return results[0].reason;
  }

  // Every change after `after`, paged `limit` at a time.
  std::vector<protocol::InboxChange> feed(const std::string& login, std::int64_t after = 0,
                                          int limit = 200,
                                          InboxScope scope = InboxScope::everything) {
    std::vector<protocol::InboxChange> all;
    for (int pages = 0; pages < 1000; ++pages) {
      auto page = messaging_->inbox_since(login, after, limit, scope);
      EXPECT_TRUE(page);
      if (!page)
        break;
      EXPECT_LE(page.value().changes.size(), static_cast<std::size_t>(limit));
      EXPECT_GE(page.value().last_seq, after);
      for (auto& c : page.value().changes)
        all.push_back(std::move(c));
      after = page.value().last_seq;
      if (!page.value().more)
        break;
    }
    return all;
  }

  static std::vector<protocol::MessageInfo> messages(
      const std::vector<protocol::InboxChange>& changes) {
    std::vector<protocol::MessageInfo> out;
    for (const auto& c : changes) {
      if (c.kind == "message" && c.message)
        out.push_back(*c.message);
    }
    return out;
  }

  static std::vector<std::string> bodies(const std::vector<protocol::InboxChange>& changes) {
    std::vector<std::string> out;
    for (const auto& m : messages(changes))
      out.push_back(m.body);
    return out;
  }

  static std::vector<protocol::ChannelMembership> memberships(
      const std::vector<protocol::InboxChange>& changes) {
    std::vector<protocol::ChannelMembership> out;
    for (const auto& c : changes) {
      if (c.kind == "channel" && c.channel)
        out.push_back(*c.channel);
    }
    return out;
  }

  static std::vector<protocol::ReadState> read_states(
      const std::vector<protocol::InboxChange>& changes) {
    std::vector<protocol::ReadState> out;
    for (const auto& c : changes) {
      if (c.kind == "read_state" && c.read_state)
        out.push_back(*c.read_state);
    }
    return out;
  }

  std::int64_t latest() {
    auto seq = messaging_->latest_inbox_seq();
    EXPECT_TRUE(seq);
    return seq ? seq.value() : -1;
  }

  std::string announce(const std::string& audience, const std::string& body,
                       Priority priority = Priority::normal, bool require_ack = false) {
    std::string why;
    Announcement a;
    a.audience = audience;
    a.body = body;
    a.priority = priority;
    a.require_ack = require_ack;
    auto posted = messaging_->announce(a, kNow, why);
    EXPECT_TRUE(posted) << why;
    return posted ? posted.value().id : "";
  }

  // Uploads every chunk of `a` from `device` (claim, then record, as PUT /v1/chunks does).
  void upload_chunks(const char* device, const protocol::Attachment& a, UnixTime at = kNow) {
    for (const protocol::ChunkRef& c : a.chunks) {
      auto claimed = messaging_->claim_upload(device, c.sha256, c.size, kQuota, at);
      ASSERT_TRUE(claimed);
      ASSERT_EQ(claimed.value().status, UploadStatus::needed);
      auto recorded = messaging_->record_upload(device, c.sha256, c.size, kQuota, at);
      ASSERT_TRUE(recorded);
      ASSERT_EQ(recorded.value().status, UploadStatus::recorded);
    }
  }

  bool visible(const std::string& login, const std::string& device, const std::string& hash) {
    auto v = messaging_->attachment_chunk_visible(login, device, hash);
    EXPECT_TRUE(v);
    return v && v.value();
  }

  TempDir tmp_;
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<Messaging> messaging_;
};

TEST(MessagingSchema, ADatabaseFromBeforeMessagesGetsTheMessageLane) {
  TempDir tmp;
  {
    SQLite::Database db((tmp.path() / kDatabaseFile).string(),
                        SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    ASSERT_TRUE(schema::apply_migrations(db, server_migrations().first(1)));
    db.exec("INSERT INTO users(login, name, created_at) VALUES ('alice', 'Alice Aoki', 0)");
  }
  auto db = open_database(tmp.path());
  ASSERT_TRUE(db);
  EXPECT_EQ(db.value()->execAndGet("PRAGMA user_version").getInt(),
            server_migrations().back().version);
  Messaging messaging(*db.value());
  auto channels = messaging.list_channels();
  ASSERT_TRUE(channels);
  ASSERT_EQ(channels.value().size(), 1u);
  EXPECT_EQ(channels.value()[0].id, "announce:all");
  EXPECT_EQ(messaging.latest_inbox_seq().value(), 0);
  std::string why;
  Announcement a;
  a.audience = "all";
  a.body = "welcome";
  auto posted = messaging.announce(a, kNow, why);
  ASSERT_TRUE(posted) << why;
  EXPECT_EQ(posted.value().seq, 1);
  auto page = messaging.inbox_since("alice", 0, 10, InboxScope::everything);
  ASSERT_TRUE(page);
  ASSERT_EQ(page.value().changes.size(), 1u);
  EXPECT_EQ(page.value().changes[0].message->body, "welcome");
  EXPECT_EQ(page.value().last_seq, 1);
}

TEST_F(MessagingTest, AnnouncementToTenThousandIsOneRowThatEveryFeedShows) {
  {
    Directory directory(*db_);
    SQLite::Transaction transaction(*db_);
    for (int i = 0; i < 10'000; ++i)
      ASSERT_TRUE(directory.add_user("staff" + std::to_string(i), "Staff", kNow));
    transaction.commit();
  }
  const std::string id = announce("all", "Earthquake drill at 10:00", Priority::urgent, true);
  EXPECT_EQ(count("messages"), 1);
  EXPECT_EQ(count("receipts"), 0);

  std::set<std::string> seen;
  for (int i = 0; i < 10'000; ++i) {
    auto page =
        messaging_->inbox_since("staff" + std::to_string(i), 0, 200, InboxScope::everything);
    ASSERT_TRUE(page);
    auto found = messages(page.value().changes);
    ASSERT_EQ(found.size(), 1u) << i;
    EXPECT_EQ(found[0].id, id);
    seen.insert(found[0].channel);
  }
  EXPECT_EQ(seen, std::set<std::string>{"announce:all"});
  const auto m = messages(feed("alice"));
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].channel_kind, ChannelKind::announcement);
  EXPECT_EQ(m[0].sender, "");
  EXPECT_EQ(m[0].sender_name, "IT");
  EXPECT_EQ(m[0].priority, Priority::urgent);
  EXPECT_TRUE(m[0].require_ack);
  EXPECT_EQ(m[0].accepted_at, to_unix(kNow));

  std::string why;
  auto report = messaging_->acks(id, why);
  ASSERT_TRUE(report) << why;
  EXPECT_EQ(report.value().people.size(), 10'003u);
  EXPECT_TRUE(report.value().require_ack);
  // Nobody sees anything for an unknown login.
  EXPECT_TRUE(feed("nobody").empty());
}

TEST_F(MessagingTest, OnlyMembersPostAndReadAndARemovedMemberIsToldAndStopsSeeing) {
  group("team-a", {"alice", "bob"});
  accepted(kAliceLaptop, "alice", message_item(1, "team-a", "hello team"));
  EXPECT_EQ(bodies(feed("bob")), std::vector<std::string>{"hello team"});
  EXPECT_TRUE(bodies(feed("carol")).empty());

  const std::string reason =
      rejected(kCarolPhone, "carol", message_item(1, "team-a", "let me in"), "not_a_member");
  EXPECT_NE(reason.find("team-a"), std::string::npos) << reason;
  EXPECT_EQ(count("messages"), 1);
  rejected(kCarolPhone, "carol", message_item(2, "no-such-team", "hi"), "no_such_channel");

  const std::int64_t bob_cursor = latest();
  std::string why;
  auto removed = messaging_->remove_members("team-a", std::vector<std::string>{"bob"}, kNow, why);
  ASSERT_TRUE(removed) << why;
  EXPECT_EQ(removed.value(), 1);
  accepted(kAliceLaptop, "alice", message_item(2, "team-a", "bob left"));

  const auto changes = feed("bob", bob_cursor);
  EXPECT_TRUE(bodies(changes).empty());
  const auto left = memberships(changes);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].channel, "team-a");
  EXPECT_EQ(left[0].kind, ChannelKind::group);
  EXPECT_FALSE(left[0].member);
  EXPECT_FALSE(left[0].can_post);
  // From the start, too: nothing of the channel any more.
  EXPECT_TRUE(bodies(feed("bob")).empty());
  rejected(kBobPhone, "bob", message_item(1, "team-a", "still here?"), "not_a_member");
  EXPECT_EQ(bodies(feed("alice")), (std::vector<std::string>{"hello team", "bob left"}));

  // Removing again changes nothing and spends no sequence.
  const std::int64_t before = latest();
  removed = messaging_->remove_members("team-a", std::vector<std::string>{"bob"}, kNow, why);
  ASSERT_TRUE(removed);
  EXPECT_EQ(removed.value(), 0);
  EXPECT_EQ(latest(), before);
}

TEST_F(MessagingTest, MembershipChangesNameUnknownPeopleAndChannelsAndChangeNothing) {
  std::string why;
  ASSERT_TRUE(messaging_->add_channel("team-a", "Team A", kNow, why));
  EXPECT_EQ(messaging_->add_channel("team-a", "", kNow, why).error(), errc::channel_exists);
  EXPECT_EQ(messaging_->add_channel("dm:alice:bob", "", kNow, why).error(), errc::invalid_channel);
  EXPECT_EQ(messaging_->add_channel("all", "", kNow, why).error(), errc::invalid_channel);
  EXPECT_EQ(messaging_->add_channel("Team", "", kNow, why).error(), errc::invalid_channel);

  why.clear();
  auto added =
      messaging_->add_members("team-a", std::vector<std::string>{"alice", "zed", "bob"}, kNow, why);
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error(), errc::no_such_user);
  EXPECT_NE(why.find("\"zed\""), std::string::npos) << why;
  EXPECT_EQ(count("channel_members"), 0);

  why.clear();
  added = messaging_->add_members("team-b", std::vector<std::string>{"alice"}, kNow, why);
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error(), errc::no_such_channel);
  EXPECT_NE(why.find("\"team-b\""), std::string::npos) << why;

  why.clear();
  added = messaging_->add_members("announce:all", std::vector<std::string>{"alice"}, kNow, why);
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error(), errc::invalid_channel);

  auto channels = messaging_->list_channels();
  ASSERT_TRUE(channels);
  ASSERT_EQ(channels.value().size(), 2u);
  EXPECT_EQ(channels.value()[0].id, "announce:all");
  EXPECT_EQ(channels.value()[0].audience, "all");
  EXPECT_EQ(channels.value()[1].id, "team-a");
  EXPECT_EQ(channels.value()[1].title, "Team A");
}

TEST_F(MessagingTest, TheSenderIsAlwaysTheDevicesUser) {
  group("team-a", {"alice", "bob"});
  // Nothing in an upload names its sender: whatever the device's user is, that is the sender.
  accepted(kBobPhone, "bob", message_item(1, "team-a", "from bob's phone"));
  const auto m = messages(feed("alice"));
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].sender, "bob");
  EXPECT_EQ(m[0].sender_name, "Bob Baba");
  auto row =
      db_->execAndGet("SELECT sender || '|' || device_id || '|' || device_seq FROM messages");
  EXPECT_EQ(row.getString(), "bob|bbbb|1");

  // A statement about someone else is refused, and so is posting in a conversation of others.
  auto forged = progress_statement("alice", 50);
  rejected(kBobPhone, "bob", statement_item(2, forged), "forged_actor");
  EXPECT_EQ(count("statements"), 0);
  rejected(kBobPhone, "bob", message_item(3, "dm:alice:carol", "psst"), "not_a_member");
  EXPECT_EQ(count("channels", "kind = 'direct'"), 0);
}

TEST_F(MessagingTest, AFirstDirectMessageOpensTheConversationForBoth) {
  const std::string dm = protocol::direct_channel_id("bob", "alice");
  ASSERT_EQ(dm, "dm:alice:bob");
  const std::int64_t bob_cursor = latest();
  accepted(kAliceLaptop, "alice", message_item(1, dm, "lunch?"));
  EXPECT_EQ(count("channels", "id = 'dm:alice:bob' AND kind = 'direct'"), 1);
  EXPECT_EQ(count("channel_members", "channel_id = 'dm:alice:bob' AND removed = 0"), 2);

  const auto changes = feed("bob", bob_cursor);
  const auto joined = memberships(changes);
  ASSERT_EQ(joined.size(), 1u);
  EXPECT_EQ(joined[0].channel, dm);
  EXPECT_EQ(joined[0].kind, ChannelKind::direct);
  EXPECT_TRUE(joined[0].member);
  EXPECT_TRUE(joined[0].can_post);
  // The membership comes before the message it opens.
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].kind, "channel");
  EXPECT_EQ(changes[1].kind, "message");
  EXPECT_EQ(changes[1].message->channel_kind, ChannelKind::direct);

  accepted(kBobPhone, "bob", message_item(1, dm, "yes"));
  EXPECT_EQ(count("channel_members"), 2);
  EXPECT_EQ(bodies(feed("alice")), (std::vector<std::string>{"lunch?", "yes"}));
  EXPECT_TRUE(bodies(feed("carol")).empty());
  rejected(kCarolPhone, "carol", message_item(1, dm, "hi both"), "not_a_member");
  rejected(kAliceLaptop, "alice", message_item(2, "dm:alice:zed", "hello?"), "no_such_user");
  rejected(kAliceLaptop, "alice", message_item(3, "dm:bob:alice", "wrong order"), "malformed");
  rejected(kAliceLaptop, "alice", message_item(4, dm, "sign this", Priority::normal, true),
           "ack_not_allowed");
}

TEST_F(MessagingTest, ReadAndAcknowledgedTravelToTheUsersOtherDevicesDeliveryDoesNot) {
  const std::string drill = announce("all", "Drill at 10:00", Priority::normal, true);
  const std::int64_t phone_cursor = latest();

  accepted(kAliceLaptop, "alice", receipt_item(1, "delivered", {drill}, 1'800'000'100));
  EXPECT_TRUE(read_states(feed("alice", phone_cursor)).empty());

  accepted(kAliceLaptop, "alice", receipt_item(2, "read", {drill}, 1'800'000'200));
  auto states = read_states(feed("alice", phone_cursor));
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].message_id, drill);
  EXPECT_EQ(states[0].read_at, 1'800'000'200);
  EXPECT_EQ(states[0].acked_at, 0);
  EXPECT_TRUE(read_states(feed("bob", phone_cursor)).empty());

  // Read again later: nothing new to tell.
  const std::int64_t after_read = latest();
  accepted(kAliceLaptop, "alice", receipt_item(3, "read", {drill}, 1'800'000'300));
  EXPECT_TRUE(read_states(feed("alice", after_read)).empty());

  accepted(kAliceLaptop, "alice", ack_item(4, drill, 1'800'000'400));
  states = read_states(feed("alice", after_read));
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].read_at, 1'800'000'200);
  EXPECT_EQ(states[0].acked_at, 1'800'000'400);
  // The phone, from where it was, sees the one latest state.
  EXPECT_EQ(read_states(feed("alice", phone_cursor)).size(), 1u);

  // Bob acknowledges without a read receipt first: that marks it read and delivered too.
  accepted(kBobPhone, "bob", ack_item(1, drill, 1'800'000'500));
  std::string why;
  auto report = messaging_->acks(drill, why);
  ASSERT_TRUE(report) << why;
  std::map<std::string, AckStatus> by_login;
  for (const auto& p : report.value().people)
    by_login[p.login] = p;
  ASSERT_EQ(by_login.size(), 3u);
  EXPECT_EQ(by_login["alice"].delivered_at, 1'800'000'100);
  EXPECT_EQ(by_login["alice"].read_at, 1'800'000'200);
  EXPECT_EQ(by_login["alice"].acked_at, 1'800'000'400);
  EXPECT_EQ(by_login["alice"].name, "Alice Aoki");
  EXPECT_EQ(by_login["bob"].delivered_at, 1'800'000'500);
  EXPECT_EQ(by_login["bob"].read_at, 1'800'000'500);
  EXPECT_EQ(by_login["bob"].acked_at, 1'800'000'500);
  EXPECT_EQ(by_login["carol"].delivered_at, 0);
  EXPECT_EQ(by_login["carol"].acked_at, 0);

  why.clear();
  auto unknown = messaging_->acks("00000000-0000-4000-8000-000000000000", why);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), errc::no_such_message);
  EXPECT_NE(why.find("00000000-0000-4000-8000-000000000000"), std::string::npos);
}

TEST_F(MessagingTest, AcksAndReceiptsNeedAVisibleMessageThatAsksForThem) {
  group("team-a", {"alice", "bob"});
  const std::string plain = announce("all", "FYI");
  OutboxItem secret = message_item(1, "team-a", "team only");
  accepted(kBobPhone, "bob", secret);

  rejected(kAliceLaptop, "alice", ack_item(1, plain, 1), "ack_not_required");
  const std::string reason =
      rejected(kCarolPhone, "carol", receipt_item(1, "read", {plain, secret.id}, 1), "not_visible");
  EXPECT_NE(reason.find(secret.id), std::string::npos) << reason;
  // The whole item was refused: not even the visible message got a receipt.
  EXPECT_EQ(count("receipts"), 0);
  rejected(kCarolPhone, "carol", ack_item(2, secret.id, 1), "not_visible");
  rejected(kCarolPhone, "carol",
           receipt_item(3, "read", {"00000000-0000-4000-8000-000000000000"}, 1), "not_visible");
  rejected(kCarolPhone, "carol", receipt_item(4, "seen", {plain}, 1), "malformed");
}

TEST_F(MessagingTest, AReplayedUploadIsAnsweredFromTheLogAndWritesNothing) {
  group("team-a", {"alice"});
  const std::string plain = announce("all", "FYI");
  OutboxItem bad = message_item(3, "team-a", "x");
  bad.kind = "mystery";
  bad.message.reset();
  bad.invalid = "item 3: unknown kind \"mystery\"";
  const std::vector<OutboxItem> batch = {message_item(1, "team-a", "once"), ack_item(2, plain, 5),
                                         bad, statement_item(4, progress_statement("alice", 10))};

  auto first = upload(kAliceLaptop, "alice", batch);
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0].status, OutboxStatus::accepted);
  EXPECT_EQ(first[1].status, OutboxStatus::rejected);
  EXPECT_EQ(first[1].code, "ack_not_required");
  EXPECT_EQ(first[2].status, OutboxStatus::rejected);
  EXPECT_EQ(first[2].code, "malformed");
  EXPECT_EQ(first[2].reason, bad.invalid);
  EXPECT_EQ(first[3].status, OutboxStatus::accepted);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    EXPECT_EQ(first[i].id, batch[i].id);
    EXPECT_EQ(first[i].seq, batch[i].seq);
  }
  const int messages_before = count("messages");
  const int log_before = count("outbox_log");
  const std::int64_t seq_before = latest();

  auto again = upload(kAliceLaptop, "alice", batch);
  ASSERT_EQ(again.size(), 4u);
  EXPECT_EQ(again[0].status, OutboxStatus::duplicate);
  EXPECT_EQ(again[1].status, OutboxStatus::rejected);
  EXPECT_EQ(again[1].code, first[1].code);
  EXPECT_EQ(again[1].reason, first[1].reason);
  EXPECT_EQ(again[2].status, OutboxStatus::rejected);
  EXPECT_EQ(again[2].reason, first[2].reason);
  EXPECT_EQ(again[3].status, OutboxStatus::duplicate);
  EXPECT_EQ(count("messages"), messages_before);
  EXPECT_EQ(count("statements"), 1);
  EXPECT_EQ(count("outbox_log"), log_before);
  EXPECT_EQ(latest(), seq_before);

  // An id with another seq, or a seq with another id, is another item reusing it.
  OutboxItem moved = batch[0];
  moved.seq = 9;
  rejected(kAliceLaptop, "alice", moved, "id_reused");
  OutboxItem renamed = message_item(1, "team-a", "other");
  rejected(kAliceLaptop, "alice", renamed, "id_reused");
  // Another device sending an id already taken is refused too.
  group("team-b", {"bob"});
  OutboxItem stolen = batch[0];
  stolen.message->channel = "team-b";
  rejected(kBobPhone, "bob", stolen, "id_reused");
  EXPECT_EQ(count("messages"), messages_before);
  EXPECT_EQ(count("outbox_log"), log_before);
}

TEST_F(MessagingTest, ADevicesMessagesKeepItsOrderAndALateItemIsRefused) {
  group("team-a", {"alice", "bob"});
  upload(kAliceLaptop, "alice",
         {message_item(1, "team-a", "one"), message_item(2, "team-a", "two")});
  accepted(kBobPhone, "bob", message_item(1, "team-a", "bob"));
  upload(kAliceLaptop, "alice",
         {message_item(5, "team-a", "five"), message_item(7, "team-a", "seven")});

  SQLite::Statement rows(*db_,
                         "SELECT device_seq FROM messages WHERE device_id = 'aaaa' ORDER BY seq");
  std::vector<std::int64_t> device_seqs;
  while (rows.executeStep())
    device_seqs.push_back(rows.getColumn(0).getInt64());
  EXPECT_EQ(device_seqs, (std::vector<std::int64_t>{1, 2, 5, 7}));
  EXPECT_EQ(bodies(feed("bob")), (std::vector<std::string>{"one", "two", "bob", "five", "seven"}));

  const std::string reason =
      rejected(kAliceLaptop, "alice", message_item(6, "team-a", "six, late"), "out_of_order");
  EXPECT_NE(reason.find('7'), std::string::npos) << reason;
  EXPECT_EQ(count("messages", "body = 'six, late'"), 0);
  // Another device of the same person has a numbering of its own.
  accepted(kAlicePhone, "alice", message_item(1, "team-a", "from the phone"));
}

TEST_F(MessagingTest, StatementsAreKeptOnceAndNeverChange) {
  auto s = progress_statement("alice", 40);
  accepted(kAliceLaptop, "alice", statement_item(1, s));
  // The same statement again, as a new item or from another device: a duplicate.
  auto results = upload(kAlicePhone, "alice", {statement_item(1, s)});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, OutboxStatus::duplicate);
  EXPECT_EQ(count("statements"), 1);

  auto changed = s;
  changed.progress = 90;
  const std::string reason =
      rejected(kAliceLaptop, "alice", statement_item(2, changed), "conflict");
  EXPECT_NE(reason.find(s.id), std::string::npos) << reason;
  EXPECT_EQ(db_->execAndGet("SELECT progress FROM statements").getInt(), 40);

  OutboxItem garbage = statement_item(3, s);
  garbage.statement = R"({"id": "not a uuid"})";
  rejected(kAliceLaptop, "alice", garbage, "malformed");

  // The user's statements reach the user's other devices.
  std::vector<std::string> echoed;
  for (const auto& c : feed("alice")) {
    if (c.kind == "statement")
      echoed.push_back(c.statement);
  }
  EXPECT_EQ(echoed, std::vector<std::string>{protocol::xapi::make_statement(s)});
  for (const auto& c : feed("bob"))
    EXPECT_NE(c.kind, "statement");
}

TEST_F(MessagingTest, UrgentOnlyPagesOverUrgentAndEmergencyMessages) {
  group("team-a", {"alice", "bob"});
  const Priority pattern[] = {Priority::normal,    Priority::urgent, Priority::normal,
                              Priority::emergency, Priority::normal, Priority::urgent,
                              Priority::urgent,    Priority::normal};
  std::vector<std::string> urgent;
  std::int64_t seq = 0;
  for (const Priority p : pattern) {
    const std::string body = "m" + std::to_string(++seq);
    if (seq % 2 == 0)
      announce("all", body, p);
    else
      accepted(kAliceLaptop, "alice", message_item(seq, "team-a", body, p));
    if (p != Priority::normal)
      urgent.push_back(body);
  }
  std::vector<std::string> got;
  std::int64_t after = 0;
  std::vector<bool> more;
  for (int i = 0; i < 10; ++i) {
    auto page = messaging_->inbox_since("bob", after, 2, InboxScope::urgent_only);
    ASSERT_TRUE(page);
    for (const auto& c : page.value().changes) {
      ASSERT_EQ(c.kind, "message");
      EXPECT_NE(c.message->priority, Priority::normal);
      got.push_back(c.message->body);
    }
    more.push_back(page.value().more);
    after = page.value().last_seq;
    if (!page.value().more)
      break;
  }
  EXPECT_EQ(got, urgent);
  EXPECT_EQ(more, (std::vector<bool>{true, false}));
  // The whole feed pages too, in sequence order, each change once.
  EXPECT_EQ(bodies(feed("bob", 0, 3)).size(), std::size(pattern));
}

TEST_F(MessagingTest, PagesNeverSplitASequenceAndEndAtTheLatestSequence) {
  group("team-a", {"alice"});
  group("night", {"bob"});
  std::string why;
  ASSERT_TRUE(messaging_->add_senders("night", std::vector<std::string>{"carol"}, kNow, why))
      << why;
  EXPECT_EQ(count("channels", "id = 'announce:night' AND audience = 'night'"), 1);
  const std::int64_t cursor = latest();
  ASSERT_TRUE(messaging_->add_members("night", std::vector<std::string>{"alice"}, kNow, why));

  // Joining a group that has announcements tells of both channels under one sequence.
  auto page = messaging_->inbox_since("alice", cursor, 1, InboxScope::everything);
  ASSERT_TRUE(page);
  const auto joined = memberships(page.value().changes);
  ASSERT_EQ(joined.size(), 2u);
  EXPECT_EQ(joined[0].channel, "night");
  EXPECT_EQ(joined[1].channel, "announce:night");
  EXPECT_EQ(joined[1].kind, ChannelKind::announcement);
  EXPECT_TRUE(joined[1].member);
  EXPECT_FALSE(joined[1].can_post);

  // Carol, a sender but not in the audience, reads what she may post to.
  const auto carol = memberships(feed("carol"));
  ASSERT_EQ(carol.size(), 1u);
  EXPECT_EQ(carol[0].channel, "announce:night");
  EXPECT_TRUE(carol[0].member);
  EXPECT_TRUE(carol[0].can_post);
  const OutboxItem sign =
      message_item(1, "announce:night", "sign in at the desk", Priority::urgent, true);
  accepted(kCarolPhone, "carol", sign);
  rejected(kBobPhone, "bob", message_item(1, "announce:night", "me too"), "not_a_sender");
  rejected(kBobPhone, "bob", message_item(2, "announce:all", "hello all"), "not_a_sender");
  EXPECT_EQ(bodies(feed("bob")), std::vector<std::string>{"sign in at the desk"});
  EXPECT_TRUE(bodies(feed("carol")).size() == 1);

  // A page with nothing of the caller's still moves the cursor past other people's changes.
  accepted(kBobPhone, "bob", receipt_item(3, "read", {sign.id}, 1'800'000'100));
  const std::int64_t now_latest = latest();
  auto quiet = messaging_->inbox_since("alice", now_latest - 1, 50, InboxScope::everything);
  ASSERT_TRUE(quiet);
  EXPECT_TRUE(quiet.value().changes.empty());
  EXPECT_FALSE(quiet.value().more);
  EXPECT_EQ(quiet.value().last_seq, now_latest);
}

TEST_F(MessagingTest, AStorageFailureEndsTheAnswerAfterTheItemsApplied) {
  group("team-a", {"alice"});
  db_->exec("DROP TABLE statements");
  const std::vector<OutboxItem> batch = {message_item(1, "team-a", "kept"),
                                         statement_item(2, progress_statement("alice", 5)),
                                         message_item(3, "team-a", "sent again later")};
  auto answer = messaging_->apply_outbox(kAliceLaptop, "alice", batch, kNow);
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer.value().results.size(), 1u);
  EXPECT_EQ(answer.value().results[0].status, OutboxStatus::accepted);
  EXPECT_EQ(count("messages"), 1);
  EXPECT_EQ(count("outbox_log"), 1);

  // Nothing applicable at all: the whole request fails and nothing is kept.
  auto none = messaging_->apply_outbox(kAliceLaptop, "alice",
                                       std::vector<OutboxItem>{batch[1], batch[2]}, kNow);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), errc::storage_failed);
  EXPECT_EQ(count("messages"), 1);
  EXPECT_EQ(count("outbox_log"), 1);
  // The connection is back to its normal durability setting.
  EXPECT_EQ(db_->execAndGet("PRAGMA synchronous").getInt(), 1);
}

TEST_F(MessagingTest, AnnouncementsToAGroupReachItsMembersOnly) {
  group("night", {"alice", "bob"});
  std::string why;
  Announcement a;
  a.audience = "day";
  a.body = "x";
  auto refused = messaging_->announce(a, kNow, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::no_such_channel);
  EXPECT_NE(why.find("\"day\""), std::string::npos);
  a.audience = "night";
  a.body = "";
  EXPECT_EQ(messaging_->announce(a, kNow, why).error(), errc::invalid_message);

  const std::string id = announce("night", "Night shift starts at 22:00", Priority::emergency);
  EXPECT_EQ(count("channels", "id = 'announce:night'"), 1);
  EXPECT_EQ(bodies(feed("alice")), std::vector<std::string>{"Night shift starts at 22:00"});
  EXPECT_TRUE(bodies(feed("carol")).empty());
  auto report = messaging_->acks(id, why);
  ASSERT_TRUE(report);
  ASSERT_EQ(report.value().people.size(), 2u);
  EXPECT_EQ(report.value().people[0].login, "alice");
  EXPECT_EQ(report.value().people[1].login, "bob");

  ASSERT_TRUE(messaging_->remove_members("night", std::vector<std::string>{"bob"}, kNow, why));
  EXPECT_TRUE(bodies(feed("bob")).empty());
  EXPECT_EQ(messaging_->acks(id, why).value().people.size(), 1u);
  auto no_senders = messaging_->remove_senders("day", std::vector<std::string>{"bob"}, kNow, why);
  ASSERT_FALSE(no_senders);
  EXPECT_EQ(no_senders.error(), errc::no_such_channel);
}

TEST_F(MessagingTest, AMessageWithAttachmentsIsAcceptedWhenItsChunksAreHeldAndReadInOrder) {
  group("team-a", {"alice", "bob"});
  const protocol::Attachment photo = attachment("site.jpg", 2 * kMiB + 5, 'a');
  const protocol::Attachment plan = attachment("plan.pdf", 70, 'b');
  upload_chunks(kAliceLaptop, photo);
  // A course chunk of the right size counts as held too.
  db_->exec("INSERT INTO chunks(hash, size) VALUES ('" + plan.chunks[0].sha256 + "', 70)");
  const std::int64_t bob_cursor = latest();
  accepted(kAliceLaptop, "alice", message_with(1, "team-a", "see attached", {photo, plan}));
  EXPECT_EQ(count("message_attachments"), 2);
  EXPECT_EQ(count("attachment_chunks"), 4);

  // A plain message between, and another with one attachment: each message its own list.
  const protocol::Attachment again = attachment("site-2.jpg", 10, 'c');
  upload_chunks(kAlicePhone, again);
  accepted(kAliceLaptop, "alice", message_item(2, "team-a", "no files"));
  accepted(kAliceLaptop, "alice", message_with(3, "team-a", "one more", {again}));

  const auto got = messages(feed("bob", bob_cursor));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].attachments, (std::vector<protocol::Attachment>{photo, plan}));
  EXPECT_TRUE(got[1].attachments.empty());
  EXPECT_EQ(got[2].attachments, std::vector<protocol::Attachment>{again});
  // Small pages carry them too (one query per page, whatever is on it).
  const auto paged = messages(feed("bob", bob_cursor, 1));
  ASSERT_EQ(paged.size(), 3u);
  EXPECT_EQ(paged[0].attachments, got[0].attachments);
  EXPECT_EQ(paged[2].attachments, got[2].attachments);
}

TEST_F(MessagingTest, AnAttachmentWhoseChunksAreNotHeldIsRejectedAndLeavesNothing) {
  group("team-a", {"alice", "bob"});
  const protocol::Attachment photo = attachment("site.jpg", kMiB + 1, 'a');
  // Only the first chunk arrived.
  ASSERT_TRUE(messaging_->claim_upload(kAliceLaptop, photo.chunks[0].sha256, kMiB, kQuota, kNow));
  ASSERT_TRUE(messaging_->record_upload(kAliceLaptop, photo.chunks[0].sha256, kMiB, kQuota, kNow));
  std::string reason = rejected(kAliceLaptop, "alice", message_with(1, "team-a", "x", {photo}),
                                "attachment_missing");
  EXPECT_NE(reason.find("\"site.jpg\""), std::string::npos) << reason;
  EXPECT_NE(reason.find("chunk 2 of 2"), std::string::npos) << reason;

  // Held, but with another size than the attachment names.
  protocol::Attachment lying = attachment("small.txt", 10, 'd');
  upload_chunks(kAliceLaptop, lying);
  lying.chunks[0].size = 11;
  lying.size = 11;
  rejected(kAliceLaptop, "alice", message_with(2, "team-a", "x", {lying}), "attachment_missing");

  // A first direct message whose attachment is missing opens no conversation.
  rejected(kAliceLaptop, "alice", message_with(3, "dm:alice:bob", "x", {photo}),
           "attachment_missing");
  EXPECT_EQ(count("channels", "kind = 'direct'"), 0);
  EXPECT_EQ(count("messages"), 0);
  EXPECT_EQ(count("message_attachments"), 0);
  EXPECT_EQ(count("attachment_chunks"), 0);
}

TEST_F(MessagingTest, TheServerChecksAttachmentsAgainWhateverTheParserLetThrough) {
  group("team-a", {"alice"});
  protocol::Attachment bad = attachment("site.jpg", 2 * kMiB, 'a');
  upload_chunks(kAliceLaptop, bad);
  bad.size = 2 * kMiB + 1;  // the chunks no longer add up
  std::string reason =
      rejected(kAliceLaptop, "alice", message_with(1, "team-a", "x", {bad}), "malformed");
  EXPECT_NE(reason.find("add up"), std::string::npos) << reason;
  protocol::Attachment escape = attachment("../etc/passwd", 10, 'e');
  upload_chunks(kAliceLaptop, escape);
  rejected(kAliceLaptop, "alice", message_with(2, "team-a", "x", {escape}), "malformed");
  const protocol::Attachment ok = attachment("ok.txt", 10, 'f');
  upload_chunks(kAliceLaptop, ok);
  reason = rejected(kAliceLaptop, "alice",
                    message_with(3, "team-a", "x", std::vector<protocol::Attachment>(5, ok)),
                    "malformed");
  EXPECT_NE(reason.find("at most 4"), std::string::npos) << reason;
  EXPECT_EQ(count("messages"), 0);
}

TEST_F(MessagingTest, AttachmentChunksAreVisibleToWhoMayReadTheMessageAndToTheirUploader) {
  group("team-a", {"alice", "bob"});
  const protocol::Attachment photo = attachment("site.jpg", 10, 'a');
  const std::string& hash = photo.chunks[0].sha256;
  upload_chunks(kAliceLaptop, photo);
  // Before any message uses it: only the device that uploaded it.
  EXPECT_TRUE(visible("alice", kAliceLaptop, hash));
  EXPECT_FALSE(visible("alice", kAlicePhone, hash));
  EXPECT_FALSE(visible("bob", kBobPhone, hash));

  accepted(kAliceLaptop, "alice", message_with(1, "team-a", "x", {photo}));
  EXPECT_TRUE(visible("alice", kAlicePhone, hash));
  EXPECT_TRUE(visible("bob", kBobPhone, hash));
  EXPECT_FALSE(visible("carol", kCarolPhone, hash));
  EXPECT_FALSE(visible("nobody", "zzzz", hash));
  EXPECT_FALSE(visible("bob", kBobPhone, std::string(64, '9')));

  // A direct conversation: its two people only.
  const protocol::Attachment note = attachment("note.txt", 20, 'b');
  upload_chunks(kAlicePhone, note);
  accepted(kAlicePhone, "alice", message_with(1, "dm:alice:bob", "for you", {note}));
  EXPECT_TRUE(visible("bob", kBobPhone, note.chunks[0].sha256));
  EXPECT_FALSE(visible("carol", kCarolPhone, note.chunks[0].sha256));

  // A removed member stops seeing them, as they stop seeing the message.
  std::string why;
  ASSERT_TRUE(messaging_->remove_members("team-a", std::vector<std::string>{"bob"}, kNow, why));
  EXPECT_FALSE(visible("bob", kBobPhone, hash));
}

TEST_F(MessagingTest, UploadsCountAgainstTheQuotaUntilAMessageUsesThem) {
  group("team-a", {"alice"});
  const std::uint64_t quota = 3 * kMiB;
  const protocol::Attachment big = attachment("big.bin", 3 * kMiB, 'a');
  for (const auto& c : big.chunks) {
    ASSERT_EQ(messaging_->claim_upload(kAliceLaptop, c.sha256, c.size, quota, kNow).value().status,
              UploadStatus::needed);
    ASSERT_EQ(messaging_->record_upload(kAliceLaptop, c.sha256, c.size, quota, kNow).value().status,
              UploadStatus::recorded);
  }
  const std::string next(64, '7');
  auto refused = messaging_->claim_upload(kAliceLaptop, next, 1, quota, kNow);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused.value().status, UploadStatus::over_quota);
  EXPECT_EQ(refused.value().pending_bytes, 3 * kMiB);
  // Another device has a quota of its own; what is held already is never refused.
  EXPECT_EQ(messaging_->claim_upload(kAlicePhone, next, 1, quota, kNow).value().status,
            UploadStatus::needed);
  EXPECT_EQ(messaging_->claim_upload(kAliceLaptop, big.chunks[0].sha256, kMiB, quota, kNow)
                .value()
                .status,
            UploadStatus::held);
  // Step two decides again: over the quota, nothing is recorded.
  EXPECT_EQ(messaging_->record_upload(kAliceLaptop, next, 1, quota, kNow).value().status,
            UploadStatus::over_quota);
  EXPECT_EQ(count("uploaded_chunks"), 3);

  accepted(kAliceLaptop, "alice", message_with(1, "team-a", "sent", {big}));
  auto room = messaging_->claim_upload(kAliceLaptop, next, 1, quota, kNow);
  ASSERT_TRUE(room);
  EXPECT_EQ(room.value().status, UploadStatus::needed);
  EXPECT_EQ(room.value().pending_bytes, 0u);
}

TEST_F(MessagingTest, TheSweepForgetsOldUploadsNoMessageUses) {
  group("team-a", {"alice"});
  const UnixTime long_ago = kNow - 48h;
  const protocol::Attachment used = attachment("used.txt", 10, 'a');
  const protocol::Attachment unused = attachment("unused.txt", 10, 'b');
  const protocol::Attachment fresh = attachment("fresh.txt", 10, 'c');
  const protocol::Attachment course = attachment("course.txt", 10, 'd');
  upload_chunks(kAliceLaptop, used, long_ago);
  upload_chunks(kAliceLaptop, unused, long_ago);
  upload_chunks(kAliceLaptop, fresh, kNow);
  upload_chunks(kAliceLaptop, course, long_ago);
  db_->exec("INSERT INTO chunks(hash, size) VALUES ('" + course.chunks[0].sha256 + "', 10)");
  accepted(kAliceLaptop, "alice", message_with(1, "team-a", "x", {used}));

  // Uploaded again (long ago too, but then again now): kept another day.
  const protocol::Attachment again = attachment("again.txt", 10, 'e');
  upload_chunks(kAlicePhone, again, long_ago);
  EXPECT_EQ(messaging_->claim_upload(kAliceLaptop, again.chunks[0].sha256, 10, kQuota, kNow)
                .value()
                .status,
            UploadStatus::held);

  std::vector<std::string> removed;
  auto swept = messaging_->sweep_uploads(kNow - 24h,
                                         [&](const std::string& hash) { removed.push_back(hash); });
  ASSERT_TRUE(swept);
  EXPECT_EQ(swept.value(), 1u);
  EXPECT_EQ(removed, std::vector<std::string>{unused.chunks[0].sha256});
  EXPECT_EQ(count("uploaded_chunks"), 4);
  EXPECT_EQ(count("uploaded_chunks", "hash = '" + unused.chunks[0].sha256 + "'"), 0);
  // Forgotten means not held: a message using it now is told so.
  rejected(kAliceLaptop, "alice", message_with(2, "team-a", "late", {unused}),
           "attachment_missing");
}

}  // namespace
}  // namespace kaban::server
