#include "kaban/agent/outbox.hpp"

#include <SQLiteCpp/Transaction.h>

#include "kaban/agent/error.hpp"
#include "message_lane_support.hpp"

namespace kaban::agent {
namespace {

using namespace kaban::agent::testing;
using protocol::OutboxStatus;

protocol::OutboxItem receipt(std::vector<std::string> ids, std::string state = "delivered") {
  protocol::OutboxItem item;
  item.kind = "receipt";
  item.receipt = protocol::ReceiptBatch{std::move(state), std::move(ids), kNow};
  return item;
}

protocol::OutboxItem ack(std::string message_id) {
  protocol::OutboxItem item;
  item.kind = "ack";
  item.ack = protocol::Acknowledgement{std::move(message_id), kNow};
  return item;
}

protocol::OutboxItem new_message(std::string channel, std::string body) {
  protocol::OutboxItem item;
  item.kind = "message";
  item.message = protocol::NewMessage{
      std::move(channel), std::move(body), protocol::Priority::urgent, true, kNow - 1, {}};
  return item;
}

class OutboxTest : public StoreFixture {
 protected:
  protocol::OutboxItem enqueue(protocol::OutboxItem item) {
    auto queued = outbox().enqueue(std::move(item), kNow);
    EXPECT_TRUE(queued) << queued.error().message();
    return queued ? queued.value() : protocol::OutboxItem{};
  }

  protocol::OutboxUpload batch(std::size_t max_items = protocol::kMaxOutboxItems,
                               std::size_t max_bytes = protocol::kMaxOutboxRequestSize) {
    auto b = outbox().next_batch(max_items, max_bytes);
    EXPECT_TRUE(b) << b.error().message();
    return b ? b.value() : protocol::OutboxUpload{};
  }

  OutboxCounts counts() {
    auto c = outbox().counts();
    EXPECT_TRUE(c);
    return c ? c.value() : OutboxCounts{};
  }

  Outbox outbox() { return Outbox(store()); }
};

std::vector<std::string> ids_of(const protocol::OutboxUpload& u) {
  std::vector<std::string> ids;
  for (const auto& item : u.items)
    ids.push_back(item.id);
  return ids;
}

TEST_F(OutboxTest, ItemsGoInTheOrderTheyWereMadeWithIncreasingSeqs) {
  const auto a = enqueue(receipt({protocol::new_uuid()}));
  const auto b = enqueue(ack(protocol::new_uuid()));
  const auto c = enqueue(new_message("team-a", "Bring the generator key."));
  EXPECT_TRUE(protocol::is_valid_uuid(a.id));
  EXPECT_LT(a.seq, b.seq);
  EXPECT_LT(b.seq, c.seq);
  EXPECT_GE(a.seq, 1);

  const auto sent = batch();
  ASSERT_EQ(sent.items.size(), 3u);
  EXPECT_EQ(ids_of(sent), (std::vector<std::string>{a.id, b.id, c.id}));
  EXPECT_EQ(sent.items[0].seq, a.seq);
  EXPECT_EQ(sent.items[2].seq, c.seq);
  // Each kind comes back exactly as it was queued.
  EXPECT_EQ(sent.items[0].receipt->message_ids, a.receipt->message_ids);
  EXPECT_EQ(sent.items[0].receipt->state, "delivered");
  EXPECT_EQ(sent.items[1].ack->message_id, b.ack->message_id);
  ASSERT_TRUE(sent.items[2].message);
  EXPECT_EQ(sent.items[2].message->channel, "team-a");
  EXPECT_EQ(sent.items[2].message->body, "Bring the generator key.");
  EXPECT_EQ(sent.items[2].message->priority, protocol::Priority::urgent);
  EXPECT_TRUE(sent.items[2].message->require_ack);
  EXPECT_EQ(sent.items[2].message->created_at, kNow - 1);
  EXPECT_EQ(counts().pending, 3u);
}

TEST_F(OutboxTest, SeqsAreNeverReusedAfterDeletesOrAReopen) {
  enqueue(receipt({protocol::new_uuid()}));
  const auto last = enqueue(receipt({protocol::new_uuid()}));
  const auto sent = batch();
  auto applied = outbox().apply_answer(sent, answer_all(sent, OutboxStatus::accepted));
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied.value().accepted, 2u);
  EXPECT_EQ(counts().pending, 0u);
  EXPECT_EQ(count("SELECT count(*) FROM outbox"), 0) << "accepted items are deleted";

  const auto after_delete = enqueue(ack(protocol::new_uuid()));
  EXPECT_GT(after_delete.seq, last.seq) << "the table was empty, yet the seq must not restart";
  const auto again = batch();
  ASSERT_TRUE(outbox().apply_answer(again, answer_all(again, OutboxStatus::accepted)));
  reopen();
  const auto after_reopen = enqueue(ack(protocol::new_uuid()));
  EXPECT_GT(after_reopen.seq, after_delete.seq);
}

TEST_F(OutboxTest, AnAnswerForAPrefixLeavesTheRestToBeSentAgain) {
  std::vector<protocol::OutboxItem> items;
  for (int i = 0; i < 5; ++i)
    items.push_back(enqueue(receipt({protocol::new_uuid()})));
  const auto sent = batch();
  ASSERT_EQ(sent.items.size(), 5u);
  auto applied = outbox().apply_answer(sent, answer_all(sent, OutboxStatus::accepted, 2));
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied.value().accepted, 2u);
  EXPECT_EQ(applied.value().unanswered, 3u);

  const auto rest = batch();
  EXPECT_EQ(ids_of(rest), (std::vector<std::string>{items[2].id, items[3].id, items[4].id}));
  EXPECT_EQ(rest.items[0].seq, items[2].seq) << "an item is resent under its own seq";
  // An empty prefix is an answer too: nothing changes.
  ASSERT_TRUE(outbox().apply_answer(rest, protocol::OutboxAnswer{}));
  EXPECT_EQ(counts().pending, 3u);
}

TEST_F(OutboxTest, DuplicateAnswersDeleteLikeAcceptedOnes) {
  enqueue(ack(protocol::new_uuid()));
  enqueue(ack(protocol::new_uuid()));
  const auto sent = batch();
  protocol::OutboxAnswer answer;
  answer.results.push_back(result(sent.items[0], OutboxStatus::duplicate));
  answer.results.push_back(result(sent.items[1], OutboxStatus::accepted));
  auto applied = outbox().apply_answer(sent, answer);
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied.value().duplicate, 1u);
  EXPECT_EQ(applied.value().accepted, 1u);
  EXPECT_EQ(count("SELECT count(*) FROM outbox"), 0);
}

TEST_F(OutboxTest, RejectedItemsStayWithTheirReasonUntilDiscarded) {
  const auto refused = enqueue(new_message("announce:all", "To everyone"));
  const auto fine = enqueue(receipt({protocol::new_uuid()}));
  const auto sent = batch();
  protocol::OutboxAnswer answer;
  answer.results.push_back(result(sent.items[0], OutboxStatus::rejected, "not_a_sender",
                                  "Only IT posts to announce:all."));
  answer.results.push_back(result(sent.items[1], OutboxStatus::accepted));
  auto applied = outbox().apply_answer(sent, answer);
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied.value().rejected, 1u);

  EXPECT_EQ(counts().pending, 0u);
  EXPECT_EQ(counts().rejected, 1u);
  EXPECT_TRUE(batch().items.empty()) << "a rejected item is never sent again";
  auto listed = outbox().list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed.value().size(), 1u);
  const OutboxEntry& e = listed.value()[0];
  EXPECT_EQ(e.id, refused.id);
  EXPECT_TRUE(e.rejected);
  EXPECT_EQ(e.code, "not_a_sender");
  EXPECT_EQ(e.reason, "Only IT posts to announce:all.");
  EXPECT_NE(e.description.find("announce:all"), std::string::npos) << e.description;

  // Later items do not wait behind a rejected one.
  const auto later = enqueue(ack(protocol::new_uuid()));
  EXPECT_EQ(ids_of(batch()), std::vector<std::string>{later.id});

  EXPECT_EQ(outbox().discard(later.id).error(), errc::not_allowed) << "pending items stay";
  EXPECT_EQ(outbox().discard(fine.id).error(), errc::not_found) << "already deleted";
  ASSERT_TRUE(outbox().discard(refused.id));
  EXPECT_EQ(counts().rejected, 0u);
  EXPECT_EQ(counts().pending, 1u);
}

TEST_F(OutboxTest, AnAnswerThatIsNotAPrefixChangesNothing) {
  enqueue(ack(protocol::new_uuid()));
  enqueue(ack(protocol::new_uuid()));
  const auto sent = batch();

  protocol::OutboxAnswer swapped;
  swapped.results.push_back(result(sent.items[1], OutboxStatus::accepted));
  swapped.results.push_back(result(sent.items[0], OutboxStatus::accepted));
  EXPECT_EQ(outbox().apply_answer(sent, swapped).error(), errc::bad_response);

  protocol::OutboxAnswer too_long = answer_all(sent, OutboxStatus::accepted);
  too_long.results.push_back(too_long.results.back());
  EXPECT_EQ(outbox().apply_answer(sent, too_long).error(), errc::bad_response);

  protocol::OutboxAnswer wrong_seq = answer_all(sent, OutboxStatus::accepted);
  wrong_seq.results[1].seq += 7;
  EXPECT_EQ(outbox().apply_answer(sent, wrong_seq).error(), errc::bad_response);

  EXPECT_EQ(counts().pending, 2u) << "a refused answer must not delete anything";
}

TEST_F(OutboxTest, BatchesKeepToTheItemAndByteLimits) {
  for (std::size_t i = 0; i < protocol::kMaxOutboxItems + 20; ++i)
    enqueue(receipt({protocol::new_uuid()}));
  EXPECT_EQ(batch().items.size(), protocol::kMaxOutboxItems);

  const std::size_t small = 2000;
  const auto limited = batch(protocol::kMaxOutboxItems, small);
  ASSERT_FALSE(limited.items.empty());
  EXPECT_LT(limited.items.size(), protocol::kMaxOutboxItems);
  EXPECT_LE(protocol::to_json(limited).size(), small);
  // One item more would have crossed the limit: the batch is as full as it may be.
  auto fuller = batch(limited.items.size() + 1);
  EXPECT_GT(protocol::to_json(fuller).size(), small);

  // An item larger than the limit still goes on its own rather than blocking the outbox.
  EXPECT_EQ(batch(protocol::kMaxOutboxItems, 10).items.size(), 1u);
}

TEST_F(OutboxTest, AnEnqueueInsideTheCallersTransactionRollsBackWithIt) {
  {
    SQLite::Transaction tx(store().db());
    enqueue(ack(protocol::new_uuid()));
    EXPECT_EQ(counts().pending, 1u);
  }  // rolled back
  EXPECT_EQ(counts().pending, 0u);
  {
    SQLite::Transaction tx(store().db());
    enqueue(ack(protocol::new_uuid()));
    tx.commit();
  }
  EXPECT_EQ(counts().pending, 1u);
}

TEST_F(OutboxTest, RefusesMalformedItemsAndDuplicateIds) {
  protocol::OutboxItem unknown;
  unknown.kind = "poke";
  EXPECT_EQ(outbox().enqueue(unknown, kNow).error(), errc::invalid_input);
  protocol::OutboxItem empty_ack;
  empty_ack.kind = "ack";
  EXPECT_EQ(outbox().enqueue(empty_ack, kNow).error(), errc::invalid_input);
  auto bad_id = ack(protocol::new_uuid());
  bad_id.id = "not-a-uuid";
  EXPECT_EQ(outbox().enqueue(bad_id, kNow).error(), errc::invalid_input);

  const auto first = enqueue(ack(protocol::new_uuid()));
  auto same_id = ack(protocol::new_uuid());
  same_id.id = first.id;
  EXPECT_EQ(outbox().enqueue(same_id, kNow).error(), std::errc::file_exists);
  EXPECT_EQ(counts().pending, 1u);
}

TEST_F(OutboxTest, StatementsTravelAsTheExactTextQueued) {
  protocol::OutboxItem item;
  item.kind = "statement";
  item.id = protocol::new_uuid();
  item.statement =
      R"({"id":")" + item.id + R"(","verb":{"id":"http://adlnet.gov/expapi/verbs/completed"}})";
  enqueue(item);
  const auto sent = batch();
  ASSERT_EQ(sent.items.size(), 1u);
  EXPECT_EQ(sent.items[0].kind, "statement");
  EXPECT_EQ(sent.items[0].statement, item.statement);
  EXPECT_EQ(sent.items[0].id, item.id);
}

}  // namespace
}  // namespace kaban::agent
