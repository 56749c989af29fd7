// Sync: check in, pull the change feed, download missing chunks, make complete courses readable.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kaban/agent/store.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

struct SyncOptions {
  /// Chunk downloads in flight at once, each on its own connection.
  int parallel_downloads = 4;
  /// Received chunks are committed to the store in one transaction per this many bytes (or at
  /// the end, or when stopped), so an interruption loses at most one batch.
  std::size_t commit_batch_bytes = 8 * 1024 * 1024;
  /// Changes asked for per page.
  int changes_page = 100;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds request_timeout{60'000};
  /// Set from another thread or a signal handler to stop: downloads in flight finish, what was
  /// received is committed, and sync() fails with errc::interrupted.
  const std::atomic<bool>* stop = nullptr;
  /// Called once before chunk downloads start, with the bytes and chunks to fetch.
  std::function<void(std::uint64_t bytes, std::size_t chunks)> on_download_start;
  /// Called from download threads as chunk bytes arrive.
  std::function<void(std::uint64_t bytes)> on_bytes;
};

struct SyncReport {
  std::int64_t server_time = 0;
  std::size_t new_versions = 0;  ///< course versions received from the change feed
  std::size_t chunks_downloaded = 0;
  std::uint64_t bytes_downloaded = 0;
  std::vector<std::string> made_ready;  ///< "course_id@version" now readable
};

/// One full sync of an enrolled store. Blocks; call from the thread that owns `store` (download
/// threads never touch it). Resumable: chunks already stored are never fetched again. Fails with
/// errc::not_enrolled, errc::server_unreachable, errc::server_untrusted, errc::network_failed,
/// errc::server_refused (the device was revoked or is unknown: `why` has the server's words),
/// errc::bad_response, errc::content_invalid (a manifest or chunk did not verify, twice),
/// errc::interrupted, or a store error. Whatever was committed before a failure stays.
Result<SyncReport> sync(Store& store, const SyncOptions& options, std::string& why);

}  // namespace kaban::agent
