#include "kaban/agent/sync.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_set>

#include <SQLiteCpp/Column.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include "kaban/agent/attachments.hpp"
#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/guard.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/messages.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/agent/platform.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/inbox.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/outbox.hpp"
#include "kaban/protocol/timestamp.hpp"

namespace kaban::agent {
namespace {

// A long poll that comes back empty sooner than this is followed by a pause of the difference:
// a server that does not hold polls open (or an idle cursor moving past other people's news)
// must not turn watch into a busy loop.
constexpr std::chrono::seconds kMinPollSpacing{1};
// A chunk whose bytes do not match its hash (a bad proxy or cache, a flipped bit) is fetched
// once more before the sync gives up.
constexpr int kChunkAttempts = 2;
// Most attachment bytes uploaded before one outbox POST: one message's worth at most (a message
// always goes, alone if need be), so a batch never waits behind more than 16 MiB of chunks.
constexpr std::uint64_t kAttachmentBytesPerUpload =
    protocol::kMaxAttachments * protocol::kMaxAttachmentSize;
// A report token for a store enrolled before the guard existed, made at its first check-in.
constexpr std::size_t kReportTokenSize = 32;
constexpr std::uint64_t kMebibyte = 1024 * 1024;

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
  why = refusal_message(response);
  return errc::server_refused;
}

std::error_code failed_request(const HttpsClient& client, std::error_code e, std::string& why) {
  why = client.describe_last_failure();
  return e;
}

// GET `target`, asking for a gzip answer: for the course feed, whose manifests are mostly hex
// hashes and shrink to less than half.
HttpsRequest compressed_get(std::string_view target) {
  HttpsRequest get;
  get.target = target;
  get.accept_gzip = true;
  return get;
}

// `bytes` as `chunk`, if they are its size and hash.
std::optional<VerifiedChunk> matches(std::string bytes, const protocol::ChunkRef& chunk) {
  if (bytes.size() != chunk.size)
    return std::nullopt;
  return VerifiedChunk::verify(chunk.sha256, std::move(bytes));
}

// GET /v1/chunks/<sha256>, verified against the chunk's size and hash; fetched again if it
// arrives damaged, `attempts` times in all. `what` names it in the sentence ("chunk",
// "attachment chunk").
Result<VerifiedChunk> fetch_verified(HttpsClient& client, const protocol::ChunkRef& chunk,
                                     std::string_view what, std::string& why,
                                     int attempts = kChunkAttempts) {
  for (int attempt = 1;; ++attempt) {
    auto response = client.request("GET", "/v1/chunks/" + chunk.sha256);
    if (!response)
      return failed_request(client, response.error(), why);
    if (response.value().status != 200)
      return refused(response.value(), why);
    if (auto verified = matches(std::move(response.value().body), chunk))
      return std::move(*verified);
    if (attempt >= attempts) {
      why = std::string(what) + " " + chunk.sha256.substr(0, 12) +
            " arrived damaged twice and was discarded; check for a proxy that alters "
            "traffic, then sync again";
      return errc::content_invalid;
    }
  }
}

// The same, as bytes, for attachment chunks (their store checks them again).
Result<std::string> fetch_chunk(HttpsClient& client, const protocol::ChunkRef& chunk,
                                std::string_view what, std::string& why) {
  KABAN_TRY(verified, fetch_verified(client, chunk, what, why));
  return std::move(verified).take_bytes();
}

// A content mirror named by this sync's check-in (docs/content.md).
struct ContentMirror {
  std::string url;
  protocol::MirrorAddress address;
};

std::vector<ContentMirror> content_mirrors(const protocol::CheckinResponse& answer) {
  std::vector<ContentMirror> mirrors;
  for (const std::string& url : answer.content_mirrors) {
    if (const auto address = protocol::parse_mirror_url(url))
      mirrors.push_back({url, *address});
  }
  return mirrors;
}

class ClientFactory {
 public:
  ClientFactory(const DeviceIdentity& identity, const SyncOptions& options)
      : identity_(identity), options_(options) {}

  // `cancel` makes the client give up a request when the flag is set: for message-lane
  // connections, whose long polls would otherwise hold up a Ctrl-C. Chunk downloads do without,
  // so that a download in flight finishes and is kept.
  HttpsClient make(std::size_t max_body, std::chrono::milliseconds request_timeout = {},
                   const std::atomic<bool>* cancel = nullptr) const {
    HttpsClientConfig config;
    config.host = identity_.server_host;
    config.port = identity_.server_port;
    config.connect_timeout = options_.connect_timeout;
    config.request_timeout =
        request_timeout.count() > 0 ? request_timeout : options_.request_timeout;
    config.max_response_body = max_body;
    config.cancel = cancel;
    return build(std::move(config));
  }

  // A connection to a content mirror: the same device certificate and pinned CA as for the
  // server (a mirror's certificate is issued by the server's CA), and its own host name checked.
  HttpsClient make_for_mirror(const protocol::MirrorAddress& mirror, std::size_t max_body) const {
    HttpsClientConfig config;
    config.host = mirror.host;
    config.port = mirror.port;
    config.connect_timeout = options_.mirror_connect_timeout;
    config.request_timeout = options_.request_timeout;
    config.max_response_body = max_body;
    return build(std::move(config));
  }

 private:
  HttpsClient build(HttpsClientConfig config) const {
    config.user_agent = user_agent();
    crypto::TlsClientTrust trust;
    trust.ca_pem = identity_.ca_pem;
    crypto::TlsClientIdentity me{identity_.certificate_pem,
                                 crypto::SecretKey::from_bytes(identity_.private_key_pem.bytes())};
    return HttpsClient(std::move(config), std::move(trust), std::move(me));
  }

  const DeviceIdentity& identity_;
  const SyncOptions& options_;
};

// Fetches chunks on several connections and hands them to the store's thread, which commits
// them in batches. Download threads never touch the store. Chunks come from the content mirrors
// in turn while one serves them, else from the server.
class ChunkDownload {
 public:
  ChunkDownload(const ClientFactory& clients, const SyncOptions& options,
                std::vector<protocol::ChunkRef> chunks, std::vector<ContentMirror> mirrors)
      : clients_(clients),
        options_(options),
        chunks_(std::move(chunks)),
        mirrors_(std::move(mirrors)),
        commit_batch_(options.commit_batch_bytes),
        budget_(memory_budget(options.max_buffered_bytes, commit_batch_, chunks_)),
        served_(mirrors_.size(), 0) {}

  // `store_mutex` guards the store against the message-lane thread that runs meanwhile.
  Result<void> run(Library& library, std::mutex& store_mutex, SyncReport& report,
                   std::string& why) {
    const int threads = std::clamp<int>(options_.parallel_downloads, 1,
                                        static_cast<int>(std::max<std::size_t>(chunks_.size(), 1)));
    running_ = threads;
    std::vector<std::thread> workers;
    for (int i = 0; i < threads; ++i)
      workers.emplace_back([this] { work(); });

    std::vector<VerifiedChunk> batch;
    std::size_t batch_bytes = 0;
    std::error_code commit_error;
    for (;;) {
      std::unique_lock lock(mutex_);
      items_ready_.wait(lock, [&] { return !ready_.empty() || running_ == 0; });
      const bool finished = running_ == 0;
      while (!ready_.empty()) {
        batch_bytes += ready_.front().bytes().size();
        batch.push_back(std::move(ready_.front()));
        ready_.pop_front();
      }
      lock.unlock();
      if (!batch.empty() && (finished || batch_bytes >= commit_batch_)) {
        Result<void> put = ok();
        {
          std::lock_guard store_lock(store_mutex);
          put = library.put_chunks(batch);
        }
        if (!put) {
          commit_error = put.error();
          abort();
          break;
        }
        report.chunks_downloaded += batch.size();
        report.bytes_downloaded += batch_bytes;
        batch.clear();
        release(batch_bytes);
        batch_bytes = 0;
      }
      if (finished)
        break;
    }
    for (std::thread& t : workers)
      t.join();
    report_mirrors(report);
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

  // Chunks in memory, from the request to the commit, may hold this many bytes. A batch must be
  // able to fill up to the commit size with every download thread waiting for room, or the
  // committer would wait for a full batch that never comes.
  static std::size_t memory_budget(std::size_t buffered, std::size_t commit_batch,
                                   const std::vector<protocol::ChunkRef>& chunks) {
    std::uint64_t largest = 0;
    for (const protocol::ChunkRef& c : chunks)
      largest = std::max(largest, c.size);
    return std::max<std::size_t>(buffered, commit_batch + static_cast<std::size_t>(largest));
  }

  // Waits until `size` more bytes fit in the budget (or nothing is held: a chunk larger than
  // the budget still goes, alone) and takes them. False if the download was aborted meanwhile.
  bool reserve(std::size_t size) {
    std::unique_lock lock(mutex_);
    space_free_.wait(lock,
                     [&] { return aborted_ || held_bytes_ == 0 || held_bytes_ + size <= budget_; });
    if (aborted_)
      return false;
    held_bytes_ += size;
    return true;
  }

  void release(std::size_t size) {
    std::lock_guard lock(mutex_);
    held_bytes_ -= size;
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

  // The connections of one download thread, each made when first needed.
  struct Connections {
    std::optional<HttpsClient> server;
    std::optional<HttpsClient> mirror;
    std::size_t mirror_index = 0;  ///< the mirror `mirror` connects to

    void close() {
      if (server)
        server->close();
      if (mirror)
        mirror->close();
    }
  };

  HttpsClient& server(Connections& c) const {
    if (!c.server)
      c.server.emplace(clients_.make(protocol::kMaxChunkSize));
    return *c.server;
  }

  // Where chunks come from now: mirrors_[i], or the server at mirrors_.size().
  std::size_t source() {
    std::lock_guard lock(mutex_);
    return source_;
  }

  void mirror_served(std::size_t m) {
    std::lock_guard lock(mutex_);
    ++served_[m];
  }

  void mirror_damaged() {
    std::lock_guard lock(mutex_);
    ++refetched_;
  }

  // Mirror `m` failed. Before it served anything the next mirror is tried, as if it had not
  // been named; once it has served chunks, a failure means it went wrong meanwhile, and the
  // server, which surely has every chunk, serves the rest. Other threads that saw the same
  // failure find the source already moved on.
  void leave_mirror(std::size_t m, const std::string& reason) {
    std::lock_guard lock(mutex_);
    if (source_ != m)
      return;
    source_ = served_[m] > 0 ? mirrors_.size() : m + 1;
    fallback_ += (fallback_.empty() ? "" : "; ") +
                 ("content mirror " + mirrors_[m].url + " failed (" + reason + ")");
  }

  void report_mirrors(SyncReport& report) {
    std::lock_guard lock(mutex_);
    std::size_t most = 0;
    for (std::size_t m = 0; m < mirrors_.size(); ++m) {
      report.chunks_from_mirror += served_[m];
      if (served_[m] > most) {
        most = served_[m];
        report.content_mirror = mirrors_[m].url;
      }
    }
    report.mirror_chunks_refetched += refetched_;
    if (!fallback_.empty())
      report.mirror_fallback =
          fallback_ + (source_ < mirrors_.size()
                           ? "; the chunks came from " + mirrors_[source_].url + " instead"
                           : "; the remaining chunks came from the server");
  }

  // One chunk, from the mirror in use or from the server. A chunk the mirror serves damaged is
  // fetched once from the server, whose copy is the one the manifest was made from.
  Result<VerifiedChunk> fetch(const protocol::ChunkRef& chunk, Connections& c, std::string& why) {
    for (;;) {
      const std::size_t m = source();
      if (m == mirrors_.size())
        return fetch_verified(server(c), chunk, "chunk", why);
      if (!c.mirror || c.mirror_index != m) {
        if (c.mirror)
          c.mirror->close();
        c.mirror.emplace(clients_.make_for_mirror(mirrors_[m].address, protocol::kMaxChunkSize));
        c.mirror_index = m;
      }
      auto response = c.mirror->request("GET", "/v1/chunks/" + chunk.sha256);
      if (!response) {
        const std::string& said = c.mirror->describe_last_failure();
        leave_mirror(m, said.empty() ? response.error().message() : said);
        c.mirror.reset();
        continue;
      }
      if (response.value().status != 200) {
        leave_mirror(m, "it answered HTTP " + std::to_string(response.value().status));
        c.mirror->close();
        c.mirror.reset();
        continue;
      }
      if (auto verified = matches(std::move(response.value().body), chunk)) {
        mirror_served(m);
        return std::move(*verified);
      }
      mirror_damaged();
      auto again = fetch_verified(server(c), chunk, "chunk", why, 1);
      if (!again && again.error() == errc::content_invalid)
        why = "chunk " + chunk.sha256.substr(0, 12) + " arrived damaged from content mirror " +
              mirrors_[m].url +
              " and from the server, and was discarded; check for a proxy that alters "
              "traffic, then sync again";
      return again;
    }
  }

  void work() {
    try {
      Connections connections;
      for (;;) {
        if (should_stop())
          break;
        const std::size_t index = next_.fetch_add(1);
        if (index >= chunks_.size())
          break;
        // Its size is known before it arrives (the fetch checks it): room is taken first, so
        // a chunk in flight counts as much as one waiting for the store.
        const auto size = static_cast<std::size_t>(chunks_[index].size);
        if (!reserve(size))
          break;
        std::string why;
        auto fetched = fetch(chunks_[index], connections, why);
        if (!fetched) {
          release(size);
          fail(fetched.error(), why);
          break;
        }
        if (options_.on_bytes)
          options_.on_bytes(size);
        std::lock_guard lock(mutex_);
        ready_.push_back(std::move(fetched).value());
        items_ready_.notify_one();
      }
      connections.close();
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
  const std::vector<ContentMirror> mirrors_;
  const std::size_t commit_batch_;
  const std::size_t budget_;  ///< see memory_budget()
  std::atomic<std::size_t> next_{0};

  std::mutex mutex_;
  std::condition_variable items_ready_;
  std::condition_variable space_free_;
  std::deque<VerifiedChunk> ready_;
  std::size_t held_bytes_ = 0;  ///< reserved by chunks in flight, waiting or being committed
  int running_ = 0;
  bool aborted_ = false;
  std::error_code error_;
  std::string error_why_;
  // Guarded by mutex_: the source in use, and what the report says of the mirrors.
  std::size_t source_ = 0;
  std::vector<std::size_t> served_;  ///< chunks each mirror served
  std::size_t refetched_ = 0;
  std::string fallback_;
};

protocol::Fact fact_of(const std::string& text) {
  return protocol::parse_fact(text).value_or(protocol::Fact::unknown);
}

// The guard as this sync starts: trusted time raised to the clocks now, and, for a store
// enrolled before the guard existed, whom to report to (from the identity) and a report token.
Result<GuardState> prepare_guard(const std::filesystem::path& dir, const DeviceIdentity& identity,
                                 const ClockReading& clock, std::int64_t& now, std::string& why) {
  const std::string token = crypto::to_hex(crypto::random_bytes(kReportTokenSize));
  auto guard = update_guard(dir, [&](GuardState& g) {
    if (g.device_id.empty()) {
      g.device_id = identity.device_id;
      g.server_host = identity.server_host;
      g.server_port = identity.server_port;
      g.ca_pem = identity.ca_pem;
      g.signing_key = identity.signing_key;
    }
    if (g.report_token.empty())
      g.report_token = token;
    now = trusted_time(g, clock);
  });
  if (!guard)
    why =
        "the device guard (guard.json) could not be read or written; nothing was sent. Check "
        "the data directory's permissions and free space";
  return guard;
}

// A device whose certificate expired cannot check in again: the server would refuse the
// handshake, and only a new enrollment makes a new certificate.
Result<void> check_certificate_current(const DeviceIdentity& identity, std::int64_t now,
                                       std::string& why) {
  auto certificate = crypto::Certificate::from_pem(identity.certificate_pem);
  if (!certificate)
    return ok();  // the TLS layer says what is wrong with it
  const std::int64_t not_after = std::chrono::duration_cast<std::chrono::seconds>(
                                     certificate.value().not_after().time_since_epoch())
                                     .count();
  if (not_after >= now)
    return ok();
  why = "this device's certificate expired on " + protocol::format_timestamp(not_after) +
        " (it was not renewed: the device did not check in before then). Nothing was sent; ask "
        "IT for a new enrollment code and enroll this device again";
  return errc::certificate_expired;
}

// What the last sync left waiting for disk space, kept for the next check-in's posture (the
// check-in comes before the feed, so a sync reports the shortage the one before it met).
constexpr std::string_view kWaitingKey = "content_waiting_bytes";
constexpr std::string_view kDiskFreeKey = "disk_free_bytes";

Result<void> save_disk_shortage(Store& store, const SyncReport& report) {
  const bool short_of_disk = report.downloads_deferred == DownloadDeferral::disk_full;
  try {
    SQLite::Statement write(store.db(), R"sql(
      INSERT INTO meta (key, value) VALUES (?, ?)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value
    )sql");
    const std::pair<std::string_view, std::uint64_t> rows[] = {
        {kWaitingKey, short_of_disk ? report.deferred_bytes : 0},
        {kDiskFreeKey, short_of_disk ? report.disk_free_bytes : 0}};
    for (const auto& [key, value] : rows) {
      write.reset();
      write.bind(1, std::string(key));
      write.bind(2, static_cast<std::int64_t>(value));
      write.exec();
    }
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

std::uint64_t load_meta_count(Store& store, std::string_view key) {
  try {
    SQLite::Statement read(store.db(), "SELECT value FROM meta WHERE key = ?");
    read.bind(1, std::string(key));
    return read.executeStep() ? static_cast<std::uint64_t>(read.getColumn(0).getInt64()) : 0;
  } catch (const SQLite::Exception&) {
    return 0;  // the posture is then silent about it, as an older agent's is
  }
}

// What the device says about itself at check-in: a fact it cannot tell is "unknown".
Result<protocol::Posture> posture_of(Store& store, const GuardState& guard,
                                     const ClockReading& clock, const std::string& network) {
  const platform::SecurityFacts facts = platform::describe_security(store.dir());
  protocol::Posture p;
  p.screen_lock = fact_of(facts.screen_lock);
  p.disk_encryption = fact_of(facts.disk_encryption);
  p.rooted = fact_of(facts.rooted);
  p.os_version_number = facts.os_version_number;
  KABAN_TRY(pin, load_pin_facts(store));
  if (pin) {
    p.pin_set = pin->set;
    p.pin_length = pin->length;
    p.pin_simple = pin->simple;
  }
  p.device_time = clock.wall;
  p.clock_rollback_seconds = guard.rollback_seconds;
  p.cache_bytes = Store::disk_size(store.dir());
  p.network = network;
  p.content_waiting_bytes = load_meta_count(store, kWaitingKey);
  if (p.content_waiting_bytes > 0)
    p.disk_free_bytes = load_meta_count(store, kDiskFreeKey);
  return p;
}

Result<protocol::CheckinResponse> check_in(HttpsClient& client, Store& store,
                                           const DeviceIdentity& identity, const GuardState& guard,
                                           const ClockReading& clock, const std::string& network,
                                           SyncReport& report, std::string& why) {
  protocol::CheckinRequest request;
  request.device = this_device();
  KABAN_TRY(posture, posture_of(store, guard, clock, network));
  request.posture = std::move(posture);
  // Without a request the server cannot renew the certificate, but the check-in still counts.
  if (auto csr = certificate_request_pem(identity.private_key_pem))
    request.csr_pem = std::move(csr).value();
  request.report_token_hash = protocol::report_token_hash(guard.report_token);
  auto response = client.request("POST", "/v1/checkin", protocol::to_json(request));
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
  report.verdict = answer.value().verdict;
  report.reasons = answer.value().reasons;
  return answer;
}

// Takes the check-in's signed policy and lease into the guard. An older server sends neither:
// the device then stays under what it holds, and its lease is not renewed.
Result<GuardState> accept_answer(const std::filesystem::path& dir,
                                 const protocol::CheckinResponse& answer, const ClockReading& clock,
                                 std::string& why) {
  std::error_code refusal;
  std::string refusal_why;
  auto written = update_guard(dir, [&](GuardState& g) {
    if (answer.policy.text.empty() && answer.lease.text.empty())
      return;
    auto accepted = accept_checkin(g, answer.policy, answer.lease, answer.reasons,
                                   answer.unlock_code_hash, clock, refusal_why);
    if (!accepted)
      refusal = accepted.error();
  });
  if (!written) {
    why =
        "the check-in's policy and lease could not be written to the device guard "
        "(guard.json); the device stays under the ones it held. Check free disk space";
    return written.error();
  }
  if (refusal) {
    // The guard's sentence already says what to do; this adds only what was kept.
    why = refusal_why + "; the device stays under the policy and lease it held";
    return refusal;
  }
  return written;
}

// IT's commands and a wipe verdict. A wipe wins over a lock: it is the more severe.
Result<void> obey_commands(const std::filesystem::path& dir, const GuardState& guard,
                           const protocol::CheckinResponse& answer, std::int64_t now,
                           std::string& why) {
  std::optional<std::int64_t> wipe_command;
  std::optional<std::int64_t> lock_command;
  for (const protocol::DeviceCommand& command : answer.commands) {
    if (command.kind == protocol::CommandKind::wipe && !wipe_command)
      wipe_command = command.id;
    // A lock already carried out but not reported yet is not carried out twice (the person may
    // have unlocked since).
    const bool done = std::any_of(
        guard.unreported.begin(), guard.unreported.end(), [&](const protocol::DeviceEvent& e) {
          return e.kind == protocol::DeviceEventKind::locked && e.command_id == command.id;
        });
    if (command.kind == protocol::CommandKind::lock && !done && !lock_command)
      lock_command = command.id;
  }
  if (wipe_command || answer.verdict == protocol::Verdict::wipe) {
    KABAN_TRYV(
        record_wipe(dir, wipe_command ? "command" : "verdict", wipe_command.value_or(0), now));
    why = wipe_command ? "IT asked for Kaban's data on this device to be wiped"
                       : "the device policy's verdict for this device is wipe";
    return errc::device_wiped;
  }
  if (lock_command) {
    KABAN_TRYV(lock_device(dir, "command", *lock_command, now));
    std::string report_why;
    // Best effort: an event not sent now stays queued and goes with the next report.
    (void)report_device_events(dir, ReportOptions{}, report_why);
    why =
        "IT locked this device; your data is kept. Ask IT for the unlock code and run `kaban "
        "unlock CODE`.";
    return errc::device_locked;
  }
  return ok();
}

// Removes the courses the answer does not list. True if a listed course is not on the device:
// the course feed then starts again from the beginning, since the device may have passed that
// course's versions while it could not see them.
Result<bool> keep_only_courses(Store& store, const std::vector<std::string>& allowed,
                               SyncReport& report, std::string& why) {
  Library library(store);
  KABAN_TRY(held, library.courses());
  std::unordered_set<std::string> held_ids;
  for (const CourseInfo& course : held) {
    held_ids.insert(course.id);
    if (std::find(allowed.begin(), allowed.end(), course.id) != allowed.end())
      continue;
    auto removed = library.remove_course(course.id);
    if (!removed) {
      why = "course \"" + course.id +
            "\" could not be removed from the store; it is removed at "
            "the next sync";
      return removed.error();
    }
    report.courses_removed.push_back(course.id);
  }
  return std::any_of(allowed.begin(), allowed.end(),
                     [&](const std::string& id) { return held_ids.count(id) == 0; });
}

// The chunks to download: none on a cellular network under wifi_only_downloads; otherwise the
// chunks of whole course versions (in the feed's order) that fit both under max_cache_mb and in
// the free space of the store's disk (Store::room_needed), so no version is begun that a limit
// would leave half downloaded.
std::vector<protocol::ChunkRef> chunks_allowed(const std::vector<Library::MissingVersion>& needs,
                                               const protocol::Policy& policy,
                                               const std::string& network,
                                               const std::filesystem::path& dir,
                                               const SyncOptions& options, SyncReport& report) {
  std::vector<protocol::ChunkRef> all;
  std::unordered_set<std::string> listed;
  std::uint64_t total = 0;
  for (const Library::MissingVersion& v : needs)
    for (const protocol::ChunkRef& c : v.chunks)
      if (listed.insert(c.sha256).second) {
        all.push_back(c);
        total += c.size;
      }
  if (policy.wifi_only_downloads && network == "cellular") {
    report.downloads_deferred = DownloadDeferral::wifi_only;
    report.deferred_bytes = total;
    return {};
  }
  if (all.empty())
    return all;
  const std::uint64_t size = Store::disk_size(dir);
  const std::uint64_t limit = policy.max_cache_mb > 0
                                  ? static_cast<std::uint64_t>(policy.max_cache_mb) * kMebibyte
                                  : std::numeric_limits<std::uint64_t>::max();
  // A disk whose free space cannot be read is not held against the download: SQLite still
  // refuses cleanly (errc::disk_full) if it does fill.
  const auto free = options.free_space ? options.free_space(dir) : Store::free_space(dir);
  const std::uint64_t room = free ? free.value() : std::numeric_limits<std::uint64_t>::max();
  std::uint64_t taken = 0;
  bool over_cache = false;
  bool over_disk = false;
  std::vector<protocol::ChunkRef> allowed;
  std::unordered_set<std::string> chosen;
  for (const Library::MissingVersion& v : needs) {
    std::uint64_t extra = 0;
    for (const protocol::ChunkRef& c : v.chunks)
      if (!chosen.count(c.sha256))
        extra += c.size;
    if (size + taken + extra > limit) {
      over_cache = true;
      continue;
    }
    if (Store::room_needed(taken + extra) > room) {
      over_disk = true;
      continue;
    }
    taken += extra;
    for (const protocol::ChunkRef& c : v.chunks)
      if (chosen.insert(c.sha256).second)
        allowed.push_back(c);
  }
  if (!over_cache && !over_disk)
    return allowed;
  report.deferred_bytes = total - taken;
  if (over_disk) {
    // The device's own limit, and the one the person can do something about at once.
    report.downloads_deferred = DownloadDeferral::disk_full;
    report.disk_free_bytes = room;
    report.disk_needed_bytes = Store::room_needed(total);
  } else {
    report.downloads_deferred = DownloadDeferral::cache_limit;
  }
  if (over_cache) {
    report.cache_limit_bytes = limit;
    report.cache_needed_bytes = size + total;
  }
  return allowed;
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
    auto response = client.request(compressed_get(target));
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
      std::string refusal;
      auto added = library.add_course_version(*change.course_version, signing_key, &refusal);
      if (!added && added.error() == errc::content_invalid) {
        // One course that does not verify must not hold up every other course: it is skipped
        // and reported, and its next version is taken as usual.
        report.courses_refused.push_back({change.course_version->course_id,
                                          change.course_version->version,
                                          refusal.empty() ? added.error().message() : refusal});
        continue;
      }
      if (!added) {
        why = "the manifest of course \"" + change.course_version->course_id +
              "\" was not stored: " + (refusal.empty() ? added.error().message() : refusal);
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

// An older server without the message lane answers 404 "not_found" for its endpoints: courses
// still sync, and messages wait on the device until the server has the lane.
bool lane_missing(const HttpsResponse& response) {
  if (response.status != 404)
    return false;
  auto body = protocol::parse_error_body(response.body);
  return body && body.value().code == "not_found";
}

void add_message_counts(SyncReport& into, const SyncReport& from) {
  into.messages_received += from.messages_received;
  into.urgent_received += from.urgent_received;
  into.statements_received += from.statements_received;
  into.outbox_sent += from.outbox_sent;
  into.outbox_rejected += from.outbox_rejected;
  into.attachments_fetched += from.attachments_fetched;
  into.attachment_bytes_fetched += from.attachment_bytes_fetched;
  into.messages_offered = into.messages_offered && from.messages_offered;
}

// The message lane: what the person wrote goes up, what others wrote comes down. Every store
// access holds `store_mutex` (never across a request), so the chunk committer on the sync
// thread and a lane on another thread take turns on the one SQLite connection.
class MessageLane {
 public:
  MessageLane(Store& store, std::mutex& store_mutex, const DeviceIdentity& identity,
              const SyncOptions& options)
      : store_mutex_(store_mutex),
        options_(options),
        messages_(store, identity.login, identity.user_name),
        outbox_(store),
        attachments_(store) {}

  // Urgent and emergency messages first, then the outbox, the inbox, the attachments the
  // device lacks, and the receipts the inbox queued (those go even if an attachment could not
  // be fetched).
  Result<void> run(HttpsClient& client, SyncReport& report, std::string& why) {
    KABAN_TRYV(pull(client, Pass::urgent, 0, report, why, nullptr));
    if (!report.messages_offered)
      return ok();
    KABAN_TRYV(upload(client, report, why));
    KABAN_TRYV(pull(client, Pass::normal, 0, report, why, nullptr));
    auto fetched = fetch_attachments(client, report, why);
    if (!fetched && fetched.error() == errc::interrupted)
      return fetched;
    std::string upload_why;
    if (auto uploaded = upload(client, report, upload_why); !uploaded) {
      why = upload_why;
      return uploaded;
    }
    return fetched;
  }

  // While the policy blocks the device: IT's messages only, from the stored cursor on. Nothing
  // goes up and the cursor is not stored, so the normal pass sees them again once the device
  // is compliant (they are stored once, by id).
  Result<void> run_it_only(HttpsClient& client, SyncReport& report, std::string& why) {
    return pull(client, Pass::it, 0, report, why, nullptr);
  }

  // One long poll from the stored cursor; its page is committed like any other. True if it
  // brought changes (more may wait: run() fetches them).
  Result<bool> poll(HttpsClient& client, int wait_seconds, SyncReport& report, std::string& why) {
    bool news = false;
    KABAN_TRYV(pull(client, Pass::normal, wait_seconds, report, why, &news));
    return news;
  }

  Result<std::size_t> pending() {
    std::lock_guard lock(store_mutex_);
    KABAN_TRY(counts, outbox_.counts());
    return counts.pending;
  }

 private:
  enum class Pass { urgent, it, normal };

  // The urgent and IT passes page with the cursors they are given but never store them: the
  // normal pass must still see everything after the stored cursor.
  Result<void> pull(HttpsClient& client, Pass pass, int wait_seconds, SyncReport& report,
                    std::string& why, bool* news) {
    std::string cursor;
    {
      std::lock_guard lock(store_mutex_);
      KABAN_TRY(stored, messages_.inbox_cursor());
      cursor = std::move(stored);
    }
    const int limit = std::clamp(options_.inbox_page, 1, protocol::kMaxInboxPage);
    bool reset_once = false;
    for (;;) {
      if (stopped(options_)) {
        why = "stopped; the messages received so far are kept";
        return errc::interrupted;
      }
      std::string target = "/v1/inbox?cursor=" + cursor + "&limit=" + std::to_string(limit);
      if (pass == Pass::urgent)
        target += "&priority=urgent";
      if (pass == Pass::it)
        target += "&from=it";
      if (wait_seconds > 0)
        target += "&wait=" + std::to_string(wait_seconds);
      auto response = client.request("GET", target);
      if (!response)
        return failed_request(client, response.error(), why);
      if (lane_missing(response.value())) {
        report.messages_offered = false;
        return ok();
      }
      if (response.value().status == 409) {
        // The server's database was replaced. The normal pass starts the inbox again (pages
        // are applied by id, so what is held is not doubled); the other passes leave it to it.
        if (pass != Pass::normal)
          return ok();
        if (!reset_once) {
          reset_once = true;
          std::lock_guard lock(store_mutex_);
          KABAN_TRYV(messages_.reset_inbox_cursor());
          cursor.clear();
          continue;
        }
      }
      if (response.value().status != 200)
        return refused(response.value(), why);
      std::string parse_why;
      auto page = protocol::parse_inbox_response(response.value().body, &parse_why);
      if (!page || !protocol::Cursor::parse(page.value().cursor)) {
        why = page ? "the server sent a malformed inbox cursor" : parse_why;
        return errc::bad_response;
      }
      {
        std::lock_guard lock(store_mutex_);
        auto applied = messages_.apply_inbox(
            page.value().changes, pass == Pass::normal ? page.value().cursor : std::string(),
            unix_now());
        if (!applied) {
          why = "received messages could not be stored; the inbox is fetched again next time";
          return applied.error();
        }
        report.messages_received += applied.value().new_messages;
        report.urgent_received += applied.value().urgent;
        report.statements_received += applied.value().statements;
      }
      if (news && (!page.value().changes.empty() || page.value().more))
        *news = true;
      cursor = page.value().cursor;
      if (!page.value().more || wait_seconds > 0)
        return ok();
    }
  }

  // Batches in seq order until the outbox holds nothing pending. An answer may cover a prefix
  // only: the rest stays pending and goes in the next batch.
  Result<void> upload(HttpsClient& client, SyncReport& report, std::string& why) {
    for (;;) {
      if (stopped(options_)) {
        why = "stopped; the outbox is kept and goes with the next sync";
        return errc::interrupted;
      }
      protocol::OutboxUpload batch;
      {
        std::lock_guard lock(store_mutex_);
        KABAN_TRY(next, outbox_.next_batch());
        batch = std::move(next);
      }
      if (batch.items.empty())
        return ok();
      trim_to_attachment_budget(batch);
      KABAN_TRYV(upload_chunks(client, batch, why));
      auto response = client.request("POST", "/v1/outbox", protocol::to_json(batch));
      if (!response)
        return failed_request(client, response.error(), why);
      if (lane_missing(response.value())) {
        report.messages_offered = false;
        return ok();
      }
      if (response.value().status != 200)
        return refused(response.value(), why);
      std::string parse_why;
      auto answer = protocol::parse_outbox_answer(response.value().body, &parse_why);
      if (!answer) {
        why = parse_why;
        return errc::bad_response;
      }
      {
        std::lock_guard lock(store_mutex_);
        auto applied = outbox_.apply_answer(batch, answer.value());
        if (!applied) {
          why = applied.error() == errc::bad_response
                    ? "the server's outbox answer does not match what was sent; every item "
                      "is kept and sent again"
                    : "the server's outbox answer could not be stored; every item is kept and "
                      "sent again";
          return applied.error();
        }
        report.outbox_sent += applied.value().accepted + applied.value().duplicate;
        report.outbox_rejected += applied.value().rejected;
      }
      // An answer that covers nothing would have the same batch sent for ever: the rest waits
      // for the next round.
      if (answer.value().results.empty())
        return ok();
    }
  }

  // Ends the batch before the message whose attachments would take the chunk uploads past
  // kAttachmentBytesPerUpload; the first item always stays. The rest goes in the next batch.
  static void trim_to_attachment_budget(protocol::OutboxUpload& batch) {
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < batch.items.size(); ++i) {
      if (!batch.items[i].message)
        continue;
      for (const protocol::Attachment& a : batch.items[i].message->attachments)
        bytes += a.size;
      if (i > 0 && bytes > kAttachmentBytesPerUpload) {
        batch.items.resize(i);
        return;
      }
    }
  }

  // PUT /v1/chunks/<sha256> for every chunk of every attachment of the batch's messages, each
  // once: the server takes a message only once it holds its chunks. It keeps what it was given
  // (200 for a chunk it held already), so a batch sent again costs requests but no harm. Chunks
  // are read from the store one at a time. A chunk this device no longer holds is skipped: the
  // server then refuses that message ("attachment_missing"), which shows as not sent, instead
  // of the message blocking the outbox for ever.
  Result<void> upload_chunks(HttpsClient& client, const protocol::OutboxUpload& batch,
                             std::string& why) {
    std::unordered_set<std::string> done;
    for (const protocol::OutboxItem& item : batch.items) {
      if (!item.message)
        continue;
      for (const protocol::Attachment& a : item.message->attachments) {
        for (const protocol::ChunkRef& chunk : a.chunks) {
          if (!done.insert(chunk.sha256).second)
            continue;
          if (stopped(options_)) {
            why = "stopped; the outbox is kept and goes with the next sync";
            return errc::interrupted;
          }
          std::string bytes;
          {
            std::lock_guard lock(store_mutex_);
            auto held = attachments_.chunk(chunk.sha256);
            if (!held && held.error() == errc::not_found)
              continue;
            if (!held) {
              why = "an attachment could not be read from the store; the outbox is kept";
              return held.error();
            }
            bytes = std::move(held).value();
          }
          auto response = client.request("PUT", "/v1/chunks/" + chunk.sha256, bytes,
                                         "application/octet-stream");
          if (!response)
            return failed_request(client, response.error(), why);
          if (response.value().status != 200 && response.value().status != 201)
            return refused(response.value(), why);
        }
      }
    }
    return ok();
  }

  // GET /v1/chunks/<sha256> for each chunk the device's attachments lack, each committed on
  // its own. A chunk the server will not give, or that arrives damaged twice, does not hold up
  // the others: the lane fails with the first such problem once the rest are in. A broken
  // connection or a store failure ends it at once.
  Result<void> fetch_attachments(HttpsClient& client, SyncReport& report, std::string& why) {
    std::vector<protocol::ChunkRef> missing;
    {
      std::lock_guard lock(store_mutex_);
      KABAN_TRY(lacking, attachments_.missing_chunks());
      missing = std::move(lacking);
    }
    std::error_code first_error;
    std::string first_why;
    for (const protocol::ChunkRef& chunk : missing) {
      if (stopped(options_)) {
        why = "stopped; the attachments received so far are kept";
        return errc::interrupted;
      }
      std::string chunk_why;
      auto bytes = fetch_chunk(client, chunk, "attachment chunk", chunk_why);
      if (!bytes) {
        if (bytes.error() != errc::server_refused && bytes.error() != errc::content_invalid) {
          why = chunk_why;
          return bytes.error();
        }
        if (!first_error) {
          first_error = bytes.error();
          first_why = bytes.error() == errc::server_refused
                          ? "the server would not give attachment chunk " +
                                chunk.sha256.substr(0, 12) + " (" + chunk_why +
                                "); its attachment shows as not downloaded yet and is asked "
                                "for again at the next sync"
                          : chunk_why;
        }
        continue;
      }
      std::lock_guard lock(store_mutex_);
      auto stored = attachments_.put_chunk(chunk.sha256, bytes.value());
      // The bytes verified above, so content_invalid here means no message uses the chunk any
      // more (another process dropped it meanwhile): nothing to keep.
      if (!stored && stored.error() == errc::content_invalid)
        continue;
      if (!stored) {
        why = "a received attachment could not be stored; it is fetched again next time";
        return stored.error();
      }
      report.attachments_fetched += stored.value();
      report.attachment_bytes_fetched += chunk.size;
    }
    if (first_error) {
      why = first_why;
      return first_error;
    }
    return ok();
  }

  std::mutex& store_mutex_;
  const SyncOptions& options_;
  Messages messages_;
  Outbox outbox_;
  Attachments attachments_;
};

// Repeats the message lane on a connection of its own while chunks download, so a new urgent
// message reaches the device within one message_interval however big the course.
class MessageLaneThread {
 public:
  MessageLaneThread(MessageLane& lane, const ClientFactory& clients, const SyncOptions& options)
      : lane_(lane), clients_(clients), options_(options) {}
  MessageLaneThread(const MessageLaneThread&) = delete;
  MessageLaneThread& operator=(const MessageLaneThread&) = delete;
  ~MessageLaneThread() { end(); }

  void start() {
    thread_ = std::thread([this] { loop(); });
  }

  // Ends the thread (a pass in progress finishes first) and adds what it moved to `report`.
  void finish(SyncReport& report) {
    end();
    add_message_counts(report, totals_);
  }

 private:
  void end() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable())
      thread_.join();
  }

  void loop() {
    try {
      HttpsClient client = clients_.make(protocol::kMaxJsonResponseSize, {}, options_.stop);
      for (;;) {
        {
          std::unique_lock lock(mutex_);
          wake_.wait_for(lock, options_.message_interval, [&] { return done_; });
          if (done_)
            break;
        }
        if (stopped(options_))
          break;
        SyncReport pass;
        std::string why;
        // A failed pass is not the download's failure: everything it did not finish stays in
        // the store, and the next pass, or the next sync, tries again.
        (void)lane_.run(client, pass, why);
        add_message_counts(totals_, pass);
        if (!pass.messages_offered)
          break;
      }
      client.close();
    } catch (const std::exception&) {
      // Only allocation failure lands here; the download goes on without this lane, and the
      // next sync runs it again.
    }
  }

  MessageLane& lane_;
  const ClientFactory& clients_;
  const SyncOptions& options_;
  SyncReport totals_;  ///< written by the thread only, read after join
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
};

// Failures another try cannot mend: watch() ends on them.
bool cannot_mend(std::error_code e) {
  return e == errc::not_enrolled || e == errc::no_store || e == errc::newer_schema ||
         e == errc::server_untrusted || e == errc::device_locked || e == errc::device_wiped ||
         e == errc::certificate_expired || e == crypto::errc::wrong_key ||
         e == crypto::errc::damaged;
}

}  // namespace

Result<SyncReport> sync(Store& store, const SyncOptions& options, std::string& why) {
  KABAN_TRY(identity, load_identity(store));
  KABAN_TRY(state, load_sync_state(store));
  const std::filesystem::path dir = store.dir();
  const ClockReading clock = read_clock_now();
  std::int64_t now = 0;
  KABAN_TRY(guard, prepare_guard(dir, identity, clock, now, why));
  KABAN_TRYV(check_certificate_current(identity, now, why));
  if (!guard.unreported.empty()) {
    // Before the check-in, so the server does not send a command the device already carried
    // out. A failure leaves them queued; a server out of reach would be so for the check-in too.
    std::string report_why;
    auto reported =
        report_device_events(dir, {options.connect_timeout, options.request_timeout}, report_why);
    if (!reported && reported.error() == errc::server_unreachable) {
      why = report_why;
      return reported.error();
    }
  }
  const std::string network =
      options.network_kind ? options.network_kind() : platform::network_kind();
  ClientFactory clients(identity, options);
  SyncReport report;
  // Guards the store once the message-lane thread runs beside the chunk committer. Before and
  // after that only this thread uses the store.
  std::mutex store_mutex;
  MessageLane lane(store, store_mutex, identity, options);
  std::error_code lane_error;
  std::string lane_why;
  // This sync's check-in names them; they are not kept, so a later sync goes by its own.
  std::vector<ContentMirror> mirrors;
  {
    HttpsClient control = clients.make(protocol::kMaxJsonResponseSize);
    KABAN_TRY(answer, check_in(control, store, identity, guard, clock, network, report, why));
    mirrors = content_mirrors(answer);
    KABAN_TRY(accepted, accept_answer(dir, answer, clock, why));
    guard = std::move(accepted);
    KABAN_TRYV(obey_commands(dir, guard, answer, now, why));
    if (!answer.certificate_pem.empty()) {
      KABAN_TRYV(replace_certificate(
          store, answer.certificate_pem,
          std::chrono::system_clock::time_point(std::chrono::seconds(now)), why));
      // The connections made from here on present the renewed certificate.
      KABAN_TRY(renewed, load_identity(store));
      identity = std::move(renewed);
      report.certificate_renewed = true;
    }
    if (answer.verdict == protocol::Verdict::blocked) {
      if (auto ran = lane.run_it_only(control, report, lane_why); !ran) {
        why = lane_why;
        return ran.error();
      }
      control.close();
      state.last_sync_at = unix_now();
      state.last_server_time = report.server_time;
      KABAN_TRYV(save_sync_state(store, state));
      return report;
    }
    if (answer.courses) {
      KABAN_TRY(restart_feed, keep_only_courses(store, *answer.courses, report, why));
      if (restart_feed)
        state.cursor.clear();
    }
    // Messages before course content. A message-lane failure does not hold up the courses
    // either: it is reported once they are synced.
    if (auto ran = lane.run(control, report, lane_why); !ran) {
      if (ran.error() == errc::interrupted) {
        why = lane_why;
        return ran.error();
      }
      lane_error = ran.error();
    }
    // Before the feed, so new versions are marked by the policy this check-in brought.
    const std::uint64_t on_demand_mb =
        static_cast<std::uint64_t>(current_policy(guard).download_on_demand_mb);
    KABAN_TRYV(Library(store).set_on_demand_threshold(on_demand_mb * kMebibyte));
    KABAN_TRYV(pull_changes(control, store, identity, options, state, report, why));
    control.close();
  }

  Library library(store);
  // After the feed: a version IT published to set or clear an expiry has arrived by now.
  KABAN_TRY(expired, library.remove_expired(now));
  report.courses_expired = std::move(expired);
  KABAN_TRY(needs, library.missing_by_version());
  std::vector<protocol::ChunkRef> missing =
      chunks_allowed(needs, current_policy(guard), network, dir, options, report);
  KABAN_TRYV(save_disk_shortage(store, report));
  if (!missing.empty()) {
    std::uint64_t total = 0;
    for (const protocol::ChunkRef& c : missing)
      total += c.size;
    if (options.on_download_start)
      options.on_download_start(total, missing.size());
    ChunkDownload download(clients, options, std::move(missing), std::move(mirrors));
    MessageLaneThread messages(lane, clients, options);
    if (report.messages_offered && !lane_error)
      messages.start();
    auto downloaded = download.run(library, store_mutex, report, why);
    messages.finish(report);
    if (!downloaded)
      return downloaded.error();
  }
  auto ready = library.complete_versions();
  if (!ready) {
    why = "the downloaded course versions could not be made readable in the store (" +
          ready.error().message() +
          "); every chunk is kept, and the next `kaban sync` completes them without fetching "
          "them again";
    return ready.error();
  }
  report.made_ready = std::move(ready).value();
  if (lane_error) {
    why = (lane_why.empty() ? std::string("messages could not be exchanged") : lane_why) +
          "; courses were synced, and messages wait on the device for the next sync";
    return lane_error;
  }
  state.last_sync_at = unix_now();
  state.last_server_time = report.server_time;
  KABAN_TRYV(save_sync_state(store, state));
  return report;
}

Result<void> watch(Store& store, const WatchOptions& options, std::string& why) {
  using Clock = std::chrono::steady_clock;
  const SyncOptions& sync_options = options.sync;
  KABAN_TRY(identity, load_identity(store));
  ClientFactory clients(identity, sync_options);
  const int wait = std::clamp(options.wait_seconds, 1, protocol::kMaxInboxWaitSeconds);
  // watch's own message rounds run on this thread only; the lane wants a mutex all the same.
  std::mutex store_mutex;
  MessageLane lane(store, store_mutex, identity, sync_options);
  HttpsClient poller =
      clients.make(protocol::kMaxJsonResponseSize,
                   std::chrono::seconds(wait) + options.long_poll_margin, sync_options.stop);
  std::mt19937_64 random(std::random_device{}());
  int failures = 0;
  bool offered = true;
  // The last check-in's verdict was blocked: no long polls (they would bring everyone's
  // messages), only full rounds, each with its pass of IT's messages.
  bool blocked = false;
  // After a lane run the next step is a poll, even if items are still pending (a server that
  // answered for none of them): otherwise this loop would hammer it.
  bool poll_next = false;
  Clock::time_point next_full = Clock::now();
  Clock::time_point polled_at;

  const auto sleep_for = [&](Clock::duration d) {
    const Clock::time_point until = Clock::now() + d;
    while (!stopped(sync_options) && Clock::now() < until)
      std::this_thread::sleep_for(std::min<Clock::duration>(kCancelPoll, until - Clock::now()));
  };

  while (!stopped(sync_options)) {
    WatchRound round;
    Result<void> outcome = ok();
    if (Clock::now() >= next_full) {
      round.kind = WatchRound::Kind::full;
      auto synced = sync(store, sync_options, round.why);
      if (synced) {
        round.report = std::move(synced).value();
        offered = round.report.messages_offered;
        blocked = round.report.verdict == protocol::Verdict::blocked;
        next_full = Clock::now() + options.full_interval;
        if (round.report.certificate_renewed) {
          // The long poll's connection goes on with the renewed certificate.
          if (auto renewed = load_identity(store)) {
            identity = std::move(renewed).value();
            poller.close();
            poller = clients.make(protocol::kMaxJsonResponseSize,
                                  std::chrono::seconds(wait) + options.long_poll_margin,
                                  sync_options.stop);
          }
        }
      } else {
        outcome = synced.error();
      }
    } else if (!offered || blocked) {
      sleep_for(next_full - Clock::now());
      continue;
    } else {
      round.kind = WatchRound::Kind::messages;
      bool run_lane = false;
      auto pending = lane.pending();
      if (!pending) {
        outcome = pending.error();
      } else {
        run_lane = pending.value() > 0 && !poll_next;
        poll_next = false;
        if (!run_lane) {
          polled_at = Clock::now();
          const auto left =
              std::chrono::duration_cast<std::chrono::seconds>(next_full - Clock::now()).count();
          const int this_wait = static_cast<int>(std::clamp<std::int64_t>(left, 1, wait));
          auto news = lane.poll(poller, this_wait, round.report, round.why);
          if (news)
            run_lane = news.value();
          else
            outcome = news.error();
        }
        if (outcome && run_lane) {
          outcome = lane.run(poller, round.report, round.why);
          poll_next = true;
        }
      }
      offered = round.report.messages_offered;
      if (outcome && !run_lane) {
        failures = 0;
        sleep_for(polled_at + kMinPollSpacing - Clock::now());
        continue;  // the poll brought nothing: not a round worth a line
      }
    }
    if (!outcome) {
      if (outcome.error() == errc::interrupted)
        break;
      if (cannot_mend(outcome.error())) {
        why = round.why;
        return outcome.error();
      }
      round.error = outcome.error();
      ++failures;
      const int doublings = std::min(failures - 1, 20);
      const std::chrono::milliseconds cap = std::min<std::chrono::milliseconds>(
          options.max_backoff, options.first_backoff * (std::int64_t{1} << doublings));
      round.retry_in = std::chrono::milliseconds(std::uniform_int_distribution<std::int64_t>(
          0, std::max<std::int64_t>(cap.count(), 0))(random));
      if (options.on_round)
        options.on_round(round);
      sleep_for(round.retry_in);
      continue;
    }
    failures = 0;
    if (options.on_round)
      options.on_round(round);
  }
  poller.close();
  why = "stopped; everything received so far is kept";
  return errc::interrupted;
}

}  // namespace kaban::agent
