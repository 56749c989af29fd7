#include "long_poll.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

namespace kaban::server {
namespace {

using namespace std::chrono_literals;
using Clock = LongPoll::Clock;

constexpr auto kPoll = 20ms;
constexpr auto kPatience = 2s;

HttpResponse answer_with(std::string body) {
  HttpResponse r;
  r.body = std::move(body);
  return r;
}

// A reply that records what it was given, for a test thread to wait on.
struct Recorder {
  std::promise<HttpResponse> promise;
  std::future<HttpResponse> future = promise.get_future();
  std::atomic<int> calls{0};
  Router::Reply reply() {
    return [this](HttpResponse r) {
      if (++calls == 1)
        promise.set_value(std::move(r));
    };
  }
};

class LongPollTest : public ::testing::Test {
 protected:
  LongPollTest()
      : poll_([this]() -> Result<std::int64_t> { return counter_.load(); },
              LongPollConfig{kPoll, 2}) {}

  bool hold(std::int64_t seen, std::chrono::milliseconds wait, LongPoll::Check check,
            Recorder& recorder) {
    Router::Reply reply = recorder.reply();
    return poll_.hold(
        seen, Clock::now() + wait, std::move(check), [] { return answer_with("idle"); }, reply);
  }

  std::atomic<std::int64_t> counter_{5};
  LongPoll poll_;
};

TEST_F(LongPollTest, AnswersWhenTheCounterMovesAndThereIsNews) {
  std::atomic<bool> news{false};
  std::atomic<int> checks{0};
  Recorder r;
  ASSERT_TRUE(hold(
      5, 10s,
      [&]() -> std::optional<HttpResponse> {
        ++checks;
        if (!news)
          return std::nullopt;
        return answer_with("news");
      },
      r));
  std::this_thread::sleep_for(kPoll * 5);
  EXPECT_EQ(checks, 0) << "looked for news although the counter did not move";
  EXPECT_EQ(poll_.waiting(), 1u);

  news = true;
  counter_ = 6;
  ASSERT_EQ(r.future.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(r.future.get().body, "news");
  EXPECT_EQ(checks, 1);
  EXPECT_EQ(poll_.waiting(), 0u);
}

TEST_F(LongPollTest, KeepsWaitingWhenTheCounterMovesForSomeoneElse) {
  std::atomic<int> checks{0};
  Recorder r;
  ASSERT_TRUE(hold(
      5, 10s,
      [&]() -> std::optional<HttpResponse> {
        ++checks;
        return std::nullopt;
      },
      r));
  counter_ = 6;
  const auto deadline = Clock::now() + kPatience;
  while (checks == 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(kPoll);
  std::this_thread::sleep_for(kPoll * 3);
  EXPECT_EQ(checks, 1) << "checked again without a new change";
  EXPECT_EQ(r.calls, 0);
  EXPECT_EQ(poll_.waiting(), 1u);
  poll_.stop();  // answers r while it still exists
}

TEST_F(LongPollTest, ChecksAtOnceWhenTheCounterMovedBeforeTheRequestWasHeld) {
  Recorder r;
  // Seen 4, counter already 5: the change landed between the caller's look and hold().
  ASSERT_TRUE(hold(
      4, 10s, [] { return std::optional<HttpResponse>(answer_with("news")); }, r));
  ASSERT_EQ(r.future.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(r.future.get().body, "news");
}

TEST_F(LongPollTest, AnswersIdleWhenTheWaitEnds) {
  Recorder r;
  const auto begin = Clock::now();
  ASSERT_TRUE(hold(
      5, 100ms, [] { return std::optional<HttpResponse>(); }, r));
  ASSERT_EQ(r.future.wait_for(kPatience), std::future_status::ready);
  EXPECT_GE(Clock::now() - begin, 100ms);
  EXPECT_EQ(r.future.get().body, "idle");
}

TEST_F(LongPollTest, RefusesPastItsLimitAndLeavesTheReplyToTheCaller) {
  Recorder a, b, c;
  auto nothing = [] { return std::optional<HttpResponse>(); };
  ASSERT_TRUE(hold(5, 10s, nothing, a));
  ASSERT_TRUE(hold(5, 10s, nothing, b));
  Router::Reply reply = c.reply();
  EXPECT_FALSE(poll_.hold(
      5, Clock::now() + 10s, nothing, [] { return answer_with("idle"); }, reply));
  ASSERT_TRUE(reply) << "a refused hold took the reply";
  reply(answer_with("mine"));
  EXPECT_EQ(c.future.get().body, "mine");
  poll_.stop();  // answers a and b while they still exist
}

TEST_F(LongPollTest, StopAnswersEveryoneAndRefusesNewRequests) {
  Recorder a, b;
  auto nothing = [] { return std::optional<HttpResponse>(); };
  ASSERT_TRUE(hold(5, 10s, nothing, a));
  poll_.stop();
  ASSERT_EQ(a.future.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(a.future.get().body, "idle");
  EXPECT_FALSE(hold(5, 10s, nothing, b));
  EXPECT_EQ(poll_.waiting(), 0u);
  poll_.stop();  // idempotent
}

TEST_F(LongPollTest, DropsTheReplyOfACheckThatThrows) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> alive = token;
  std::atomic<int> calls{0};
  Router::Reply reply = [token = std::move(token), &calls](HttpResponse) { ++calls; };
  ASSERT_TRUE(poll_.hold(
      4, Clock::now() + 10s,
      []() -> std::optional<HttpResponse> { throw std::runtime_error("database gone"); },
      [] { return answer_with("idle"); }, reply));
  const auto deadline = Clock::now() + kPatience;
  while (!alive.expired() && Clock::now() < deadline)
    std::this_thread::sleep_for(kPoll);
  EXPECT_TRUE(alive.expired()) << "the reply of a failed check was kept";
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(poll_.waiting(), 0u);
}

}  // namespace
}  // namespace kaban::server
