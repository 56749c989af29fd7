#include "long_poll.hpp"

#include <utility>

namespace kaban::server {

LongPoll::LongPoll(Version version, LongPollConfig config)
    : version_(std::move(version)), config_(config), thread_([this] { run(); }) {}

LongPoll::~LongPoll() {
  stop();
}

bool LongPoll::hold(std::int64_t seen, Clock::time_point until, Check check, Idle idle,
                    Router::Reply& reply) {
  std::lock_guard lock(mutex_);
  if (stopping_ || waiting_.size() >= config_.max_waiting)
    return false;
  waiting_.push_back({seen, until, std::move(check), std::move(idle), std::move(reply)});
  return true;
}

void LongPoll::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_)
      return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
  std::list<Waiter> left;
  {
    std::lock_guard lock(mutex_);
    left.swap(waiting_);
  }
  for (Waiter& waiter : left)
    answer(waiter, std::nullopt);
}

std::size_t LongPoll::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

void LongPoll::answer(Waiter& waiter, std::optional<HttpResponse> response) noexcept {
  try {
    waiter.reply(response ? std::move(*response) : waiter.idle());
  } catch (...) {
    // Dropping the reply unanswered makes the transport answer 500.
    waiter.reply = nullptr;
  }
}

void LongPoll::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, config_.poll_interval);
    if (stopping_)
      break;
    // Checks query the database: they run without the lock, on requests taken out of the list,
    // while hold() keeps appending to it.
    std::list<Waiter> batch;
    batch.swap(waiting_);
    lock.unlock();

    std::optional<std::int64_t> current;
    if (auto v = version_())
      current = v.value();
    const Clock::time_point now = Clock::now();
    for (auto it = batch.begin(); it != batch.end();) {
      std::optional<HttpResponse> news;
      bool done = false;
      if (current && *current != it->seen) {
        it->seen = *current;
        try {
          news = it->check();
        } catch (...) {
          it->reply = nullptr;  // answered 500 by the transport
          done = true;
        }
        done = done || news.has_value();
      }
      if (!done && now >= it->until)
        done = true;
      if (done) {
        if (it->reply)
          answer(*it, std::move(news));
        it = batch.erase(it);
      } else {
        ++it;
      }
    }

    lock.lock();
    waiting_.splice(waiting_.begin(), batch);
  }
}

}  // namespace kaban::server
