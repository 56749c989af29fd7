#include "kaban/agent/sync.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/messages.hpp"

namespace kaban::agent {
namespace {

// Received chunks waiting for the committer may hold this many batches' worth of bytes before
// download threads wait: memory stays bounded however large the course.
constexpr std::size_t kBufferedBatches = 2;
// A chunk whose bytes do not match its hash (a bad proxy or cache, a flipped bit) is fetched
// once more before the sync gives up.
constexpr int kChunkAttempts = 2;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool stopped(const SyncOptions& options) {
  return options.stop && options.stop->load();
}

// Turns a non-2xx answer into server_refused with the server's own sentence.
std::error_code refused(const HttpsResponse& response, std::string& why) {
  auto body = protocol::parse_error_body(response.body);
  why = body && !body.value().message.empty()
            ? body.value().message
            : "the server answered HTTP " + std::to_string(response.status);
  return errc::server_refused;
}

std::error_code failed_request(const HttpsClient& client, std::error_code e, std::string& why) {
  why = client.describe_last_failure();
  return e;
}

class ClientFactory {
 public:
  ClientFactory(const DeviceIdentity& identity, const SyncOptions& options)
      : identity_(identity), options_(options) {}

  HttpsClient make(std::size_t max_body) const {
    HttpsClientConfig config;
    config.host = identity_.server_host;
    config.port = identity_.server_port;
    config.connect_timeout = options_.connect_timeout;
    config.request_timeout = options_.request_timeout;
    config.max_response_body = max_body;
    config.user_agent = user_agent();
    crypto::TlsClientTrust trust;
    trust.ca_pem = identity_.ca_pem;
    crypto::TlsClientIdentity me{identity_.certificate_pem,
                                 crypto::SecretKey::from_bytes(identity_.private_key_pem.bytes())};
    return HttpsClient(std::move(config), std::move(trust), std::move(me));
  }

 private:
  const DeviceIdentity& identity_;
  const SyncOptions& options_;
};

// Fetches chunks on several connections and hands them to the store's thread, which commits
// them in batches. Download threads never touch the store.
class ChunkDownload {
 public:
  ChunkDownload(const ClientFactory& clients, const SyncOptions& options,
                std::vector<protocol::ChunkRef> chunks)
      : clients_(clients), options_(options), chunks_(std::move(chunks)) {}

  Result<void> run(Library& library, SyncReport& report, std::string& why) {
    const int threads = std::clamp<int>(options_.parallel_downloads, 1,
                                        static_cast<int>(std::max<std::size_t>(chunks_.size(), 1)));
    running_ = threads;
    std::vector<std::thread> workers;
    for (int i = 0; i < threads; ++i)
      workers.emplace_back([this] { work(); });

    std::vector<ChunkData> batch;
    std::size_t batch_bytes = 0;
    std::error_code commit_error;
    for (;;) {
      std::unique_lock lock(mutex_);
      items_ready_.wait(lock, [&] { return !ready_.empty() || running_ == 0; });
      const bool finished = running_ == 0;
      while (!ready_.empty()) {
        batch_bytes += ready_.front().bytes.size();
        buffered_bytes_ -= ready_.front().bytes.size();
        batch.push_back(std::move(ready_.front()));
        ready_.pop_front();
      }
      space_free_.notify_all();
      lock.unlock();
      if (!batch.empty() && (finished || batch_bytes >= options_.commit_batch_bytes)) {
        if (auto put = library.put_chunks(batch); !put) {
          commit_error = put.error();
          abort();
          break;
        }
        report.chunks_downloaded += batch.size();
        report.bytes_downloaded += batch_bytes;
        batch.clear();
        batch_bytes = 0;
      }
      if (finished)
        break;
    }
    for (std::thread& t : workers)
      t.join();
    if (commit_error) {
      why = "received content could not be stored";
      return commit_error;
    }
    if (error_) {
      why = error_why_;
      return error_;
    }
    if (stopped(options_)) {
      why = "stopped; the chunks received so far are kept and the next sync resumes from there";
      return errc::interrupted;
    }
    return ok();
  }

 private:
  void abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    space_free_.notify_all();
  }

  void fail(std::error_code e, std::string why) {
    std::lock_guard lock(mutex_);
    if (!error_) {
      error_ = e;
      error_why_ = std::move(why);
    }
    aborted_ = true;
    space_free_.notify_all();
  }

  bool should_stop() {
    std::lock_guard lock(mutex_);
    return aborted_ || stopped(options_);
  }

  Result<std::string> fetch(HttpsClient& client, const protocol::ChunkRef& chunk,
                            std::string& why) {
    for (int attempt = 1;; ++attempt) {
      auto response = client.request("GET", "/v1/chunks/" + chunk.sha256);
      if (!response)
        return failed_request(client, response.error(), why);
      if (response.value().status != 200)
        return refused(response.value(), why);
      std::string& bytes = response.value().body;
      if (bytes.size() == chunk.size &&
          crypto::to_hex(crypto::sha256(crypto::ByteView(
              reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()))) == chunk.sha256)
        return std::move(bytes);
      if (attempt == kChunkAttempts) {
        why = "chunk " + chunk.sha256.substr(0, 12) +
              " arrived damaged twice and was discarded; check for a proxy that alters "
              "traffic, then sync again";
        return errc::content_invalid;
      }
    }
  }

  void work() {
    try {
      HttpsClient client = clients_.make(protocol::kMaxChunkSize);
      for (;;) {
        if (should_stop())
          break;
        const std::size_t index = next_.fetch_add(1);
        if (index >= chunks_.size())
          break;
        std::string why;
        auto bytes = fetch(client, chunks_[index], why);
        if (!bytes) {
          fail(bytes.error(), why);
          break;
        }
        const std::size_t size = bytes.value().size();
        if (options_.on_bytes)
          options_.on_bytes(size);
        std::unique_lock lock(mutex_);
        space_free_.wait(lock, [&] {
          return aborted_ || buffered_bytes_ < options_.commit_batch_bytes * kBufferedBatches;
        });
        if (aborted_)
          break;
        buffered_bytes_ += size;
        ready_.push_back({chunks_[index].sha256, std::move(bytes).value()});
        items_ready_.notify_one();
      }
      client.close();
    } catch (const std::exception& e) {
      fail(errc::network_failed, e.what());
    }
    std::lock_guard lock(mutex_);
    --running_;
    items_ready_.notify_one();
  }

  const ClientFactory& clients_;
  const SyncOptions& options_;
  const std::vector<protocol::ChunkRef> chunks_;
  std::atomic<std::size_t> next_{0};

  std::mutex mutex_;
  std::condition_variable items_ready_;
  std::condition_variable space_free_;
  std::deque<ChunkData> ready_;
  std::size_t buffered_bytes_ = 0;
  int running_ = 0;
  bool aborted_ = false;
  std::error_code error_;
  std::string error_why_;
};

Result<void> check_in(HttpsClient& client, const DeviceIdentity& identity, SyncReport& report,
                      std::string& why) {
  auto response = client.request("POST", "/v1/checkin",
                                 protocol::to_json(protocol::CheckinRequest{this_device()}));
  if (!response)
    return failed_request(client, response.error(), why);
  if (response.value().status != 200)
    return refused(response.value(), why);
  std::string parse_why;
  auto answer = protocol::parse_checkin_response(response.value().body, &parse_why);
  if (!answer || answer.value().device_id != identity.device_id) {
    why = answer ? "the server answered for another device" : parse_why;
    return errc::bad_response;
  }
  report.server_time = answer.value().server_time;
  return ok();
}

Result<void> pull_changes(HttpsClient& client, Store& store, const DeviceIdentity& identity,
                          const SyncOptions& options, SyncState& state, SyncReport& report,
                          std::string& why) {
  KABAN_TRY(signing_key, content_signing_key(identity));
  Library library(store);
  bool reset_once = false;
  for (;;) {
    if (stopped(options)) {
      why = "stopped; the next sync continues from the last page received";
      return errc::interrupted;
    }
    const std::string target =
        "/v1/changes?cursor=" + state.cursor + "&limit=" + std::to_string(options.changes_page);
    auto response = client.request("GET", target);
    if (!response)
      return failed_request(client, response.error(), why);
    if (response.value().status == 409 && !reset_once) {
      // The server's database was replaced: start the feed again. What is held stays, and
      // versions already held are recognised and skipped.
      reset_once = true;
      state.cursor.clear();
      continue;
    }
    if (response.value().status != 200)
      return refused(response.value(), why);
    std::string parse_why;
    auto page = protocol::parse_changes_response(response.value().body, &parse_why);
    if (!page || !protocol::Cursor::parse(page.value().cursor)) {
      why = page ? "the server sent a malformed cursor" : parse_why;
      return errc::bad_response;
    }
    for (const protocol::Change& change : page.value().changes) {
      if (!change.course_version)
        continue;  // a kind this agent does not know yet
      auto added = library.add_course_version(*change.course_version, signing_key);
      if (!added) {
        why = "the manifest of course \"" + change.course_version->course_id +
              "\" did not verify against the server's signing key; it was not stored";
        return added.error();
      }
      if (added.value())
        ++report.new_versions;
    }
    // Only after the page is stored: a crash before this line fetches the page again, and
    // adding a version twice is a no-op.
    state.cursor = page.value().cursor;
    KABAN_TRYV(save_sync_state(store, state));
    if (!page.value().more)
      return ok();
  }
}

}  // namespace

Result<SyncReport> sync(Store& store, const SyncOptions& options, std::string& why) {
  KABAN_TRY(identity, load_identity(store));
  KABAN_TRY(state, load_sync_state(store));
  ClientFactory clients(identity, options);
  SyncReport report;
  {
    HttpsClient control = clients.make(protocol::kMaxJsonResponseSize);
    KABAN_TRYV(check_in(control, identity, report, why));
    KABAN_TRYV(pull_changes(control, store, identity, options, state, report, why));
    control.close();
  }

  Library library(store);
  KABAN_TRY(missing, library.missing_chunks());
  if (!missing.empty()) {
    std::uint64_t total = 0;
    for (const protocol::ChunkRef& c : missing)
      total += c.size;
    if (options.on_download_start)
      options.on_download_start(total, missing.size());
    ChunkDownload download(clients, options, std::move(missing));
    KABAN_TRYV(download.run(library, report, why));
  }
  auto ready = library.complete_versions();
  if (!ready) {
    why =
        "a downloaded file did not match its signed hash; its chunks were discarded and "
        "the next sync fetches them again";
    return ready.error();
  }
  report.made_ready = std::move(ready).value();
  state.last_sync_at = unix_now();
  state.last_server_time = report.server_time;
  KABAN_TRYV(save_sync_state(store, state));
  return report;
}

}  // namespace kaban::agent
