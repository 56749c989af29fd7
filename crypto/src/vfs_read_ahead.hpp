// Private to the VFS: sequential read-ahead for one open database file.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

namespace kaban::crypto::detail {

/// When SQLite reads a database's pages in ascending order (a table or index scan), a worker
/// thread fetches the next pages (reads and authenticates them) ahead of it, so decryption runs
/// on another core while SQLite works on the page before.
///
/// Safety rests on three rules the VFS keeps: fetched pages are used only while the connection
/// holds its shared lock without interruption (invalidate() when the lock is released, so no
/// other process can have written in between); nothing is fetched while this connection is
/// writing (set_writing()); and only pages that authenticated are kept, so every failure is met
/// again, and reported, by the caller's own read of that page.
///
/// All methods but the worker's are called by the thread that owns the SQLite file, one at a
/// time (SQLite serialises calls on one file).
class ReadAhead {
 public:
  static constexpr std::size_t kPageSize = 4096;
  /// Pages fetched ahead of the last read.
  static constexpr std::uint32_t kWindow = 64;
  /// Pages the worker reads with one call (one system call for 64 KiB rather than 16).
  static constexpr std::uint32_t kBatch = 16;

  /// Reads `count` pages from `first` into `pages` (count * kPageSize bytes) and authenticates
  /// each, setting `ok[i]` for those that did. Runs on the worker thread, one call at a time.
  using Fetch =
      std::function<void(std::uint32_t first, std::uint32_t count, std::uint8_t* pages, bool* ok)>;

  explicit ReadAhead(Fetch fetch);
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;
  /// Stops and joins the worker.
  ~ReadAhead();

  /// Copies page `pgno` into `out` and returns true if it was fetched ahead (waiting for it if
  /// the worker is fetching it right now); false if the caller must read it itself.
  bool take(std::uint32_t pgno, std::uint8_t* out);

  /// Records that SQLite read `pgno`; after a few ascending reads, asks for the pages after it.
  void note(std::uint32_t pgno);

  /// Forgets every page fetched or being fetched.
  void invalidate();

  /// While true, nothing is fetched and nothing is kept.
  void set_writing(bool writing);

 private:
  enum class SlotState { empty, in_flight, ready, failed };
  struct Slot {
    std::uint32_t pgno = 0;
    SlotState state = SlotState::empty;
    std::array<std::uint8_t, kPageSize> data;
  };

  void run();
  void clear_locked();
  bool next_batch_locked(std::uint32_t* first, std::uint32_t* count);

  Fetch fetch_;
  std::mutex mutex_;
  std::condition_variable work_;       // the worker waits here for pages to fetch
  std::condition_variable done_;       // take() waits here for a page in flight
  std::array<Slot, kWindow> slots_{};  // page p lives in slots_[p % kWindow]
  std::uint32_t want_from_ = 0;        // pages [want_from_, want_to_) are wanted
  std::uint32_t want_to_ = 0;
  std::uint64_t generation_ = 0;  // bumped by invalidate(); a fetch from an older one is dropped
  std::uint32_t last_pgno_ = 0;
  int ascending_ = 0;  // consecutive reads that moved forward by a little
  bool writing_ = false;
  bool worker_idle_ = false;  // waiting on work_: only then does note() need to wake it
  bool stop_ = false;
  bool disabled_ = false;  // the worker could not be started; read-ahead stays off
  std::thread worker_;
};

}  // namespace kaban::crypto::detail
