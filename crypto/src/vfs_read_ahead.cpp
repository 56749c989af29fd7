#include "vfs_read_ahead.hpp"

#include <cstring>
#include <memory>
#include <system_error>

namespace kaban::crypto::detail {
namespace {

// A read at most this many pages after the previous one continues an ascending run: a table's
// leaves are allocated in order but interleaved with pages of its indexes.
constexpr std::uint32_t kMaxStep = 4;
// Ascending reads in a row before the worker starts fetching.
constexpr int kRunBeforeFetching = 3;

}  // namespace

ReadAhead::ReadAhead(Fetch fetch) : fetch_(std::move(fetch)) {}

ReadAhead::~ReadAhead() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_.notify_all();
  if (worker_.joinable())
    worker_.join();
}

bool ReadAhead::take(std::uint32_t pgno, std::uint8_t* out) {
  std::unique_lock lock(mutex_);
  if (pgno < want_from_ || pgno >= want_to_)
    return false;
  Slot& slot = slots_[pgno % kWindow];
  done_.wait(lock, [&] { return slot.pgno != pgno || slot.state != SlotState::in_flight; });
  if (slot.pgno != pgno || slot.state != SlotState::ready)
    return false;
  std::memcpy(out, slot.data.data(), kPageSize);
  slot.state = SlotState::empty;  // SQLite caches it now; a second read goes to the file
  return true;
}

void ReadAhead::note(std::uint32_t pgno) {
  std::unique_lock lock(mutex_);
  ascending_ = pgno > last_pgno_ && pgno - last_pgno_ <= kMaxStep ? ascending_ + 1 : 0;
  last_pgno_ = pgno;
  if (writing_ || disabled_ || ascending_ < kRunBeforeFetching)
    return;
  want_from_ = pgno + 1;
  want_to_ = pgno + 1 + kWindow;
  if (!worker_.joinable()) {
    try {
      worker_ = std::thread([this] { run(); });
    } catch (const std::system_error&) {
      disabled_ = true;  // no thread to be had: reads simply go to the file
      want_from_ = want_to_ = 0;
    }
    return;
  }
  if (worker_idle_) {
    worker_idle_ = false;
    lock.unlock();
    work_.notify_one();
  }
}

void ReadAhead::invalidate() {
  std::lock_guard lock(mutex_);
  clear_locked();
}

void ReadAhead::set_writing(bool writing) {
  std::lock_guard lock(mutex_);
  writing_ = writing;
  clear_locked();
}

void ReadAhead::clear_locked() {
  ++generation_;
  for (Slot& slot : slots_) {
    slot.pgno = 0;
    slot.state = SlotState::empty;
  }
  want_from_ = want_to_ = 0;
  ascending_ = 0;
  done_.notify_all();
}

// The next run of wanted pages that no slot holds yet (fetched, failed, or already taken),
// at most kBatch long.
bool ReadAhead::next_batch_locked(std::uint32_t* first, std::uint32_t* count) {
  std::uint32_t p = want_from_;
  while (p < want_to_ && slots_[p % kWindow].pgno == p)
    ++p;
  if (p >= want_to_)
    return false;
  std::uint32_t n = 0;
  while (n < kBatch && p + n < want_to_ && slots_[(p + n) % kWindow].pgno != p + n)
    ++n;
  *first = p;
  *count = n;
  return true;
}

void ReadAhead::run() {
  auto buffer = std::make_unique<std::uint8_t[]>(kBatch * kPageSize);
  std::array<bool, kBatch> ok{};
  std::unique_lock lock(mutex_);
  while (!stop_) {
    std::uint32_t first = 0;
    std::uint32_t count = 0;
    if (writing_ || !next_batch_locked(&first, &count)) {
      worker_idle_ = true;
      work_.wait(lock);
      continue;
    }
    for (std::uint32_t i = 0; i < count; ++i) {
      Slot& slot = slots_[(first + i) % kWindow];
      slot.pgno = first + i;
      slot.state = SlotState::in_flight;
    }
    const std::uint64_t generation = generation_;
    lock.unlock();
    ok.fill(false);
    fetch_(first, count, buffer.get(), ok.data());
    lock.lock();
    for (std::uint32_t i = 0; i < count; ++i) {
      // Dropped if the file may have changed meanwhile, or the slot was given up.
      Slot& slot = slots_[(first + i) % kWindow];
      if (slot.pgno != first + i || slot.state != SlotState::in_flight)
        continue;
      if (generation != generation_) {
        slot.pgno = 0;
        slot.state = SlotState::empty;
      } else if (ok[i]) {
        std::memcpy(slot.data.data(), buffer.get() + i * kPageSize, kPageSize);
        slot.state = SlotState::ready;
      } else {
        slot.state = SlotState::failed;
      }
    }
    done_.notify_all();
  }
}

}  // namespace kaban::crypto::detail
