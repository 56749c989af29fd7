#include "kaban/agent/messages.hpp"

#include <algorithm>

#include "kaban/agent/error.hpp"
#include "kaban/agent/outbox.hpp"
#include "message_lane_support.hpp"

namespace kaban::agent {
namespace {

using namespace kaban::agent::testing;
using protocol::OutboxStatus;
using protocol::Priority;

class MessagesTest : public StoreFixture {
 protected:
  Messages me() { return Messages(store(), "aiko", "Aiko Tanaka"); }

  InboxApplied apply(std::vector<protocol::InboxChange> changes, std::string cursor = "") {
    auto applied = me().apply_inbox(changes, cursor, kNow);
    EXPECT_TRUE(applied) << applied.error().message();
    return applied ? applied.value() : InboxApplied{};
  }

  std::vector<MessageView> list(MessageFilter filter = {}) {
    auto l = me().list(filter);
    EXPECT_TRUE(l) << l.error().message();
    return l ? l.value() : std::vector<MessageView>{};
  }

  protocol::OutboxUpload pending() {
    auto b = Outbox(store()).next_batch();
    EXPECT_TRUE(b);
    return b ? b.value() : protocol::OutboxUpload{};
  }

  // Every id in receipt items of `state`, in outbox order, and how many items carried them.
  std::pair<std::vector<std::string>, std::size_t> receipts(std::string_view state) {
    std::vector<std::string> ids;
    std::size_t items = 0;
    for (const auto& item : pending().items) {
      if (item.kind == "receipt" && item.receipt->state == state) {
        ++items;
        ids.insert(ids.end(), item.receipt->message_ids.begin(), item.receipt->message_ids.end());
      }
    }
    return {ids, items};
  }

  void answer_everything(OutboxStatus status) {
    const auto sent = pending();
    ASSERT_TRUE(Outbox(store()).apply_answer(sent, answer_all(sent, status)));
  }
};

TEST_F(MessagesTest, ASentMessageAppearsOnceBeforeAndAfterTheServerEchoesIt) {
  apply({joined("team-a")});
  auto sent = me().send("team-a", "Bring the generator key.", Priority::normal, false, kNow);
  ASSERT_TRUE(sent) << sent.error().message();
  const std::string id = sent.value().id;

  auto before = list();
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0].id, id);
  EXPECT_EQ(before[0].state, MessageState::pending);
  EXPECT_EQ(before[0].seq, 0);
  EXPECT_TRUE(before[0].own);
  EXPECT_EQ(before[0].sender, "aiko");
  const auto queued = pending();
  ASSERT_EQ(queued.items.size(), 1u);
  EXPECT_EQ(queued.items[0].id, id) << "the outbox item carries the message's own UUID";
  EXPECT_EQ(queued.items[0].message->body, "Bring the generator key.");

  answer_everything(OutboxStatus::accepted);
  ASSERT_EQ(list().size(), 1u);
  EXPECT_EQ(list()[0].state, MessageState::sent);

  const auto echo = apply({message(id, 42, "team-a", "aiko", "Bring the generator key.")});
  EXPECT_EQ(echo.new_messages, 0u) << "one's own message is not news";
  EXPECT_EQ(echo.echoed, 1u);
  auto after = list();
  ASSERT_EQ(after.size(), 1u) << "the echo must update the local row, not add a second one";
  EXPECT_EQ(after[0].id, id);
  EXPECT_EQ(after[0].seq, 42);
  EXPECT_EQ(after[0].accepted_at, kNow - 5);
  EXPECT_EQ(after[0].state, MessageState::sent);
  EXPECT_TRUE(pending().items.empty()) << "no delivered receipt for one's own message";

  // The same page again (a crash before the cursor was stored) changes nothing.
  apply({message(id, 42, "team-a", "aiko", "Bring the generator key.")});
  EXPECT_EQ(list().size(), 1u);
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 1);
}

TEST_F(MessagesTest, ListsByServerSeqThenPendingInWritingOrder) {
  apply({joined("team-a"), message(protocol::new_uuid(), 9, "team-a", "ken", "third"),
         message(protocol::new_uuid(), 3, "team-a", "ken", "first")});
  ASSERT_TRUE(me().send("team-a", "mine one", Priority::normal, false, kNow));
  ASSERT_TRUE(me().send("team-a", "mine two", Priority::normal, false, kNow));
  apply({message(protocol::new_uuid(), 5, "team-a", "ken", "second")});
  std::vector<std::string> bodies;
  for (const MessageView& m : list())
    bodies.push_back(m.body);
  EXPECT_EQ(bodies, (std::vector<std::string>{"first", "second", "third", "mine one", "mine two"}));
}

TEST_F(MessagesTest, ADirectChannelIsCreatedByItsFirstMessageOffline) {
  auto channel = me().resolve_channel("@ken");
  ASSERT_TRUE(channel);
  EXPECT_EQ(channel.value(), protocol::direct_channel_id("aiko", "ken"));
  ASSERT_TRUE(me().send(channel.value(), "Are you at the shelter?", Priority::normal, false, kNow));
  auto channels = me().channels();
  ASSERT_TRUE(channels);
  ASSERT_EQ(channels.value().size(), 1u);
  EXPECT_EQ(channels.value()[0].id, channel.value());
  EXPECT_EQ(channels.value()[0].kind, protocol::ChannelKind::direct);
  EXPECT_EQ(channels.value()[0].title, "ken");
  EXPECT_TRUE(channels.value()[0].can_post);

  EXPECT_EQ(me().resolve_channel("@aiko").error(), errc::invalid_input) << "not with oneself";
  EXPECT_EQ(me().resolve_channel("@Not A Login").error(), errc::invalid_input);
  EXPECT_EQ(me().resolve_channel("no spaces allowed").error(), errc::invalid_input);
  EXPECT_EQ(me().resolve_channel("announce:all").value(), "announce:all");
}

TEST_F(MessagesTest, ADirectChannelFromTheServerIsTitledWithTheOtherPerson) {
  const std::string dm = protocol::direct_channel_id("aiko", "ken");
  auto change = message(protocol::new_uuid(), 1, dm, "ken");
  change.message->channel_title = "";
  auto membership = joined(dm, true, "x");
  membership.channel->title = "";
  apply({membership, change});
  auto channels = me().channels();
  ASSERT_TRUE(channels);
  ASSERT_EQ(channels.value().size(), 1u);
  EXPECT_EQ(channels.value()[0].title, "ken");
  EXPECT_EQ(list()[0].channel_title, "ken");
}

TEST_F(MessagesTest, RefusesWhatTheServerWouldRefuseAndStoresNothing) {
  apply({joined("team-a"), joined("announce:all", false), joined("announce:team-a", true)});
  EXPECT_EQ(me().send("team-b", "hi", Priority::normal, false, kNow).error(), errc::not_found);
  EXPECT_EQ(me().send("announce:all", "hi", Priority::urgent, false, kNow).error(),
            errc::not_allowed);
  EXPECT_EQ(me().send("team-a", "hi", Priority::normal, true, kNow).error(), errc::invalid_input)
      << "acknowledgement is for announcements";
  EXPECT_EQ(me().send("team-a", "", Priority::normal, false, kNow).error(), errc::invalid_input);
  EXPECT_EQ(me().send("team-a", std::string(protocol::kMaxMessageBody + 1, 'x'), Priority::normal,
                      false, kNow)
                .error(),
            errc::invalid_input);
  EXPECT_EQ(me().send("team-a", "bell\a", Priority::normal, false, kNow).error(),
            errc::invalid_input);
  EXPECT_EQ(me().send("dm:ken:taro", "hi", Priority::normal, false, kNow).error(),
            errc::not_allowed)
      << "a conversation between two others";
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 0);
  EXPECT_TRUE(pending().items.empty());

  // A named sender may post, and ask for acknowledgement.
  auto announced = me().send("announce:team-a", "Drill at 15:00", Priority::urgent, true, kNow);
  ASSERT_TRUE(announced) << announced.error().message();
  EXPECT_TRUE(pending().items[0].message->require_ack);
}

TEST_F(MessagesTest, ARejectedMessageShowsTheReasonUntilDiscarded) {
  apply({joined("team-a")});
  auto sent = me().send("team-a", "Hello?", Priority::normal, false, kNow);
  ASSERT_TRUE(sent);
  const auto upload = pending();
  protocol::OutboxAnswer answer;
  answer.results.push_back(result(upload.items[0], OutboxStatus::rejected, "not_a_member",
                                  "You were removed from team-a."));
  ASSERT_TRUE(Outbox(store()).apply_answer(upload, answer));
  auto shown = list();
  ASSERT_EQ(shown.size(), 1u) << "a refused message is never silently dropped";
  EXPECT_EQ(shown[0].state, MessageState::rejected);
  EXPECT_EQ(shown[0].reason, "You were removed from team-a.");
  ASSERT_TRUE(Outbox(store()).discard(sent.value().id));
  EXPECT_TRUE(list().empty());
}

TEST_F(MessagesTest, DeliveredReceiptsAreQueuedInBatchesForOthersMessagesOnly) {
  std::vector<protocol::InboxChange> page{joined("announce:all", false)};
  std::vector<std::string> others;
  for (std::size_t i = 0; i < protocol::kMaxReceiptMessages + 1; ++i) {
    others.push_back(protocol::new_uuid());
    page.push_back(message(others.back(), static_cast<std::int64_t>(i + 1), "announce:all",
                           i % 2 ? "" : "ken"));
  }
  page.push_back(message(protocol::new_uuid(), 9000, "announce:all", "aiko"));  // other device
  const auto applied = apply(page, "e.9000");
  EXPECT_EQ(applied.new_messages, others.size());

  auto [ids, items] = receipts("delivered");
  EXPECT_EQ(items, 2u) << "at most kMaxReceiptMessages ids per item";
  EXPECT_EQ(ids, others) << "every message of others once, and none of one's own";
  for (const auto& item : pending().items)
    EXPECT_LE(item.receipt->message_ids.size(), protocol::kMaxReceiptMessages);

  // The page again (the cursor was lost): nothing is new, so nothing more is queued.
  EXPECT_EQ(apply(page).new_messages, 0u);
  EXPECT_EQ(receipts("delivered").second, 2u);
}

TEST_F(MessagesTest, UrgentMessagesAreCounted) {
  const auto applied = apply(
      {message(protocol::new_uuid(), 1, "announce:all", "", "Quake drill", Priority::emergency),
       message(protocol::new_uuid(), 2, "announce:all", "", "Shelter B", Priority::urgent),
       message(protocol::new_uuid(), 3, "announce:all", "", "Lunch")});
  EXPECT_EQ(applied.new_messages, 3u);
  EXPECT_EQ(applied.urgent, 2u);
  EXPECT_EQ(list()[0].priority, Priority::emergency);
}

TEST_F(MessagesTest, ReadOnAnotherDeviceMarksReadHereWithoutQueueingAnything) {
  const std::string early = protocol::new_uuid();
  const std::string later = protocol::new_uuid();
  // A mark may come before its message does.
  apply({read_state(early, kNow - 2)});
  apply({joined("team-a"), message(early, 1, "team-a", "ken"), message(later, 2, "team-a", "ken"),
         read_state(later, kNow - 1)});
  const std::size_t queued = pending().items.size();
  auto shown = list();
  ASSERT_EQ(shown.size(), 2u);
  EXPECT_TRUE(shown[0].read);
  EXPECT_EQ(shown[0].read_at, kNow - 2);
  EXPECT_TRUE(shown[1].read);
  EXPECT_EQ(me().unread_count().value(), 0u);
  EXPECT_EQ(receipts("read").second, 0u) << "the other device already reported it";
  EXPECT_EQ(queued, 1u) << "only the delivered receipt";

  // A later "not read" report does not take a mark back.
  apply({read_state(later, 0)});
  EXPECT_TRUE(list()[1].read);
}

TEST_F(MessagesTest, MarkingReadQueuesReadReceiptsOnce) {
  const std::string a1 = protocol::new_uuid(), a2 = protocol::new_uuid(), b1 = protocol::new_uuid();
  apply({joined("team-a"), joined("team-b"), message(a1, 1, "team-a", "ken"),
         message(a2, 2, "team-a", "ken"), message(b1, 3, "team-b", "taro")});
  ASSERT_TRUE(me().send("team-a", "mine", Priority::normal, false, kNow));
  EXPECT_EQ(me().unread_count().value(), 3u);
  auto channels = me().channels();
  ASSERT_TRUE(channels);
  EXPECT_EQ(channels.value()[0].unread, 2u);
  EXPECT_EQ(channels.value()[1].unread, 1u);

  const std::vector<std::string> team_a{"team-a"};
  EXPECT_EQ(me().mark_read(team_a, kNow).value(), 2u);
  EXPECT_EQ(receipts("read").first, (std::vector<std::string>{a1, a2}));
  EXPECT_EQ(me().mark_read(team_a, kNow).value(), 0u) << "already read";
  EXPECT_EQ(receipts("read").second, 1u);

  const std::vector<std::string> nowhere{"team-z"};
  EXPECT_EQ(me().mark_read(nowhere, kNow).error(), errc::not_found);
  EXPECT_EQ(me().unread_count().value(), 1u) << "nothing marked on a bad name";

  MessageFilter unread;
  unread.unread_only = true;
  auto left_unread = list(unread);
  ASSERT_EQ(left_unread.size(), 1u);
  EXPECT_EQ(left_unread[0].id, b1);

  const std::vector<std::string> one_message{b1};
  EXPECT_EQ(me().mark_read(one_message, kNow).value(), 1u);
  EXPECT_EQ(me().mark_read({}, kNow).value(), 0u) << "everything is read now";
  EXPECT_EQ(me().unread_count().value(), 0u);
}

TEST_F(MessagesTest, LeavingAChannelDropsItAndTheServersMessagesInIt) {
  const std::string theirs = protocol::new_uuid();
  apply({joined("team-a"), joined("team-b"), message(theirs, 1, "team-a", "ken"),
         read_state(theirs, kNow), message(protocol::new_uuid(), 2, "team-b", "ken")});
  ASSERT_TRUE(me().send("team-a", "still to go", Priority::normal, false, kNow));

  const auto applied = apply({left("team-a")});
  EXPECT_EQ(applied.channels_left, 1u);
  auto channels = me().channels();
  ASSERT_TRUE(channels);
  ASSERT_EQ(channels.value().size(), 1u);
  EXPECT_EQ(channels.value()[0].id, "team-b");
  MessageFilter in_a;
  in_a.channel = "team-a";
  auto remaining = list(in_a);
  ASSERT_EQ(remaining.size(), 1u) << "the unsent message stays until the server answers for it";
  EXPECT_EQ(remaining[0].state, MessageState::pending);
  EXPECT_EQ(count("SELECT count(*) FROM message_marks WHERE message_id = '" + theirs + "'"), 0);
  EXPECT_EQ(list().size(), 2u);
}

TEST_F(MessagesTest, AcknowledgementIsAnExplicitActionOnMessagesThatAskForIt) {
  const std::string asks = protocol::new_uuid(), plain = protocol::new_uuid();
  apply({joined("announce:all", false),
         message(asks, 1, "announce:all", "", "Confirm you read the evacuation plan",
                 Priority::urgent, true),
         message(plain, 2, "announce:all", "", "Canteen closed")});
  const std::size_t before = pending().items.size();

  EXPECT_EQ(me().acknowledge(plain, kNow).error(), errc::not_allowed);
  EXPECT_EQ(me().acknowledge(protocol::new_uuid(), kNow).error(), errc::not_found);
  EXPECT_EQ(pending().items.size(), before) << "a refusal queues nothing";

  auto acked = me().acknowledge(asks, kNow);
  ASSERT_TRUE(acked) << acked.error().message();
  EXPECT_TRUE(acked.value());
  auto items = pending().items;
  ASSERT_EQ(items.size(), before + 2);
  EXPECT_EQ(items[before].kind, "receipt") << "acknowledging reads it too";
  EXPECT_EQ(items[before + 1].kind, "ack");
  EXPECT_EQ(items[before + 1].ack->message_id, asks);
  EXPECT_EQ(list()[0].acked_at, kNow);
  EXPECT_TRUE(list()[0].read);
  EXPECT_FALSE(me().acknowledge(asks, kNow + 1).value()) << "once is enough";
  EXPECT_EQ(pending().items.size(), before + 2);

  // The server refuses it: the message needs acknowledgement again, and the reason is kept.
  const auto upload = pending();
  protocol::OutboxAnswer answer = answer_all(upload, OutboxStatus::accepted, before + 1);
  answer.results.push_back(
      result(upload.items[before + 1], OutboxStatus::rejected, "too_late", "The drill is over."));
  ASSERT_TRUE(Outbox(store()).apply_answer(upload, answer));
  EXPECT_EQ(list()[0].acked_at, 0);
  EXPECT_EQ(Outbox(store()).counts().value().rejected, 1u);
}

TEST_F(MessagesTest, OwnPendingMessagesCannotBeAcknowledged) {
  apply({joined("announce:team-a", true)});
  auto sent = me().send("announce:team-a", "Drill", Priority::urgent, true, kNow);
  ASSERT_TRUE(sent);
  EXPECT_EQ(me().acknowledge(sent.value().id, kNow).error(), errc::not_found);
}

TEST_F(MessagesTest, TheInboxCursorIsStoredWithItsPageOnly) {
  EXPECT_EQ(me().inbox_cursor().value(), "");
  apply({message(protocol::new_uuid(), 1, "announce:all", "", "urgent one", Priority::urgent)});
  EXPECT_EQ(me().inbox_cursor().value(), "") << "the urgent pass never stores its cursor";
  apply({}, "abcd.7");
  EXPECT_EQ(me().inbox_cursor().value(), "abcd.7");
  reopen();
  EXPECT_EQ(me().inbox_cursor().value(), "abcd.7");
  ASSERT_TRUE(me().reset_inbox_cursor());
  EXPECT_EQ(me().inbox_cursor().value(), "");
}

TEST_F(MessagesTest, UnknownKindsAndForeignStatementsAreSkipped) {
  protocol::InboxChange future;
  future.kind = "poll";
  protocol::InboxChange junk;
  junk.kind = "statement";
  junk.statement = "{}";
  const auto applied = apply({future, junk}, "abcd.2");
  EXPECT_EQ(applied.skipped, 2u);
  EXPECT_EQ(me().inbox_cursor().value(), "abcd.2") << "a skipped change does not stall the lane";
}

TEST_F(MessagesTest, ListingAnUnknownChannelIsNotFound) {
  MessageFilter filter;
  filter.channel = "team-z";
  EXPECT_EQ(me().list(filter).error(), errc::not_found);
}

TEST_F(MessagesTest, TheItOnlyFilterShowsOnlyItsMessages) {
  apply({joined("team-a"), joined("announce:all", false),
         message("m-it", 1, "announce:all", "", "Update the OS by Friday."),
         message("m-kenji", 2, "team-a", "kenji", "Shift swap?"),
         message("m-it-2", 3, "team-a", "", "Your device is out of policy.")});
  ASSERT_TRUE(me().send("team-a", "My own note", Priority::normal, false, kNow));

  MessageFilter it_only;
  it_only.from_it_only = true;
  const auto shown = list(it_only);
  ASSERT_EQ(shown.size(), 2u);
  EXPECT_EQ(shown[0].id, "m-it");
  EXPECT_EQ(shown[1].id, "m-it-2");
  for (const MessageView& m : shown)
    EXPECT_TRUE(m.sender.empty()) << m.id;

  it_only.channel = "team-a";
  const auto in_channel = list(it_only);
  ASSERT_EQ(in_channel.size(), 1u);
  EXPECT_EQ(in_channel[0].id, "m-it-2");
  EXPECT_EQ(list().size(), 4u) << "without the filter everything shows";
}

}  // namespace
}  // namespace kaban::agent
