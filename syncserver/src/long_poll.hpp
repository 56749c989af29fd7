// LongPoll: holds requests that wait for news (GET /v1/inbox?wait=S) and answers them when a
// change counter moves or their wait ends. One thread of its own does all the checking, so a
// waiting request holds no io thread and no database connection.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include "kaban/result.hpp"
#include "kaban/server/http_server.hpp"

namespace kaban::server {

struct LongPollConfig {
  /// How often the change counter is read. A new message reaches a waiting device within about
  /// this long (plus its own query).
  std::chrono::milliseconds poll_interval{250};
  /// Requests held at most; past it hold() refuses and the caller answers at once (the device
  /// simply asks again), so a flood of waiting devices cannot grow memory without bound.
  std::size_t max_waiting = 20'000;
};

class LongPoll {
 public:
  using Clock = std::chrono::steady_clock;
  /// Reads the change counter. Runs on the LongPoll's thread.
  using Version = std::function<Result<std::int64_t>()>;
  /// Looks for news for one request: a response, or std::nullopt while there is none. Runs on
  /// the LongPoll's thread, only after the counter moved past what the request last saw.
  using Check = std::function<std::optional<HttpResponse>()>;
  /// The answer when the wait ends with no news (or the server stops).
  using Idle = std::function<HttpResponse()>;

  LongPoll(Version version, LongPollConfig config = {});
  ~LongPoll();  ///< stop()
  LongPoll(const LongPoll&) = delete;
  LongPoll& operator=(const LongPoll&) = delete;

  /// Holds `reply` until check() answers, `until` passes (idle() answers) or stop(). `seen` is
  /// the counter as read before the caller's own first look for news, so a change that lands
  /// between that look and this call still wakes the request. Thread-safe. False (and `reply`
  /// untouched) when full or stopped: the caller answers itself.
  bool hold(std::int64_t seen, Clock::time_point until, Check check, Idle idle,
            Router::Reply& reply);

  /// Answers every held request with its idle() answer and refuses new ones. Idempotent;
  /// thread-safe; not from inside a Check.
  void stop();

  /// Requests held now (for tests and logs).
  std::size_t waiting() const;

 private:
  struct Waiter {
    std::int64_t seen;
    Clock::time_point until;
    Check check;
    Idle idle;
    Router::Reply reply;
  };

  void run();
  static void answer(Waiter& waiter, std::optional<HttpResponse> response) noexcept;

  const Version version_;
  const LongPollConfig config_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::list<Waiter> waiting_;  // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_
  std::thread thread_;
};

}  // namespace kaban::server
