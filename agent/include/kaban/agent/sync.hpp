// Sync: check in, exchange messages (outbox up, inbox down), pull the change feed, download
// missing chunks, make complete courses readable; and watch, which keeps doing so.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "kaban/agent/store.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

struct SyncOptions {
  /// Chunk downloads in flight at once, each on its own connection.
  int parallel_downloads = 4;
  /// Received chunks are committed to the store in one transaction per this many bytes (or at
  /// the end, or when stopped), so an interruption loses at most one batch.
  std::size_t commit_batch_bytes = 8 * 1024 * 1024;
  /// Chunks held in memory at most, from the request to the commit: downloading, waiting for
  /// the store and being committed (at least commit_batch_bytes plus the largest chunk). Download
  /// threads wait for room, so memory stays bounded however large the course.
  std::size_t max_buffered_bytes = 16 * 1024 * 1024;
  /// Changes asked for per page.
  int changes_page = 100;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds request_timeout{60'000};
  /// Connecting to a content mirror (DNS, TCP, TLS): a mirror is near the device, so one that
  /// does not answer within this is passed over for the next, or for the server.
  std::chrono::milliseconds mirror_connect_timeout{3'000};
  /// Set from another thread or a signal handler to stop: downloads in flight finish, what was
  /// received is committed, and sync() fails with errc::interrupted.
  const std::atomic<bool>* stop = nullptr;
  /// Called once before chunk downloads start, with the bytes and chunks to fetch.
  std::function<void(std::uint64_t bytes, std::size_t chunks)> on_download_start;
  /// Called from download threads as chunk bytes arrive.
  std::function<void(std::uint64_t bytes)> on_bytes;
  /// While chunks download, the message lane (outbox upload, urgent and normal inbox pull)
  /// repeats this often on a connection of its own, so a big course never holds up a message.
  std::chrono::milliseconds message_interval{5'000};
  /// Inbox changes asked for per page (1..protocol::kMaxInboxPage).
  int inbox_page = 100;
  /// The kind of network in use ("wifi", "cellular", "wired", "unknown"), for the posture and
  /// wifi_only_downloads. Empty: platform::network_kind(). An app whose OS says more (a metered
  /// network flag) passes its own answer.
  std::function<std::string()> network_kind;
  /// Free bytes on the file system holding the store. Empty: Store::free_space. Tests give
  /// their own to play a nearly full disk.
  std::function<Result<std::uint64_t>(const std::filesystem::path& dir)> free_space;
};

/// Why course downloads waited although the feed had new content.
enum class DownloadDeferral {
  none,
  wifi_only,    ///< the policy's wifi_only_downloads, on a cellular network
  cache_limit,  ///< the policy's max_cache_mb: the store would grow past it
  disk_full,    ///< the disk holding the store lacks room for them (Store::room_needed)
};

struct SyncReport {
  std::int64_t server_time = 0;
  /// The check-in's verdict and why it is not compliant. Blocked: only IT's messages were
  /// fetched (see sync()).
  protocol::Verdict verdict = protocol::Verdict::compliant;
  std::vector<protocol::ComplianceReason> reasons;
  bool certificate_renewed = false;          ///< the check-in brought a new device certificate
  std::vector<std::string> courses_removed;  ///< ids of courses the device may no longer hold
  std::vector<std::string> courses_expired;  ///< ids of courses removed because they expired
  /// A course version from the feed whose manifest did not verify (signature or format): it was
  /// skipped, the other courses synced, and the course's next version is taken as usual.
  struct RefusedVersion {
    std::string course_id;
    std::int64_t version = 0;
    std::string reason;
  };
  std::vector<RefusedVersion> courses_refused;
  DownloadDeferral downloads_deferred = DownloadDeferral::none;
  std::uint64_t deferred_bytes = 0;      ///< course bytes not downloaded because of it
  std::uint64_t cache_limit_bytes = 0;   ///< cache_limit: the policy's limit, in bytes
  std::uint64_t cache_needed_bytes = 0;  ///< cache_limit: what the store would need in all
  std::uint64_t disk_free_bytes = 0;     ///< disk_full: free bytes on the store's disk
  std::uint64_t disk_needed_bytes = 0;   ///< disk_full: free bytes all of it would need
  std::size_t new_versions = 0;          ///< course versions received from the change feed
  std::size_t chunks_downloaded = 0;
  std::uint64_t bytes_downloaded = 0;
  /// Content mirrors (the check-in's content_mirrors, docs/content.md): the one course chunks
  /// came from ("" if none served any) and how many of chunks_downloaded it served.
  std::string content_mirror;
  std::size_t chunks_from_mirror = 0;
  /// Chunks a mirror served damaged and the server then served whole (the mirror's cache holds
  /// bad copies; its operator should clear them).
  std::size_t mirror_chunks_refetched = 0;
  /// Set when a mirror failed during this sync (could not be reached, answered an error): one
  /// sentence naming it, why, and where the remaining chunks came from. The next sync tries the
  /// mirrors again.
  std::string mirror_fallback;
  std::vector<std::string> made_ready;  ///< "course_id@version" now readable
  std::size_t messages_received = 0;    ///< new messages of others stored on the device
  std::size_t urgent_received = 0;      ///< of those, urgent or emergency
  std::size_t statements_received = 0;  ///< learning statements from the person's other devices
  std::size_t outbox_sent = 0;          ///< outbox items the server now holds (deleted here)
  std::size_t outbox_rejected = 0;      ///< outbox items the server refused (kept: `kaban outbox`)
  std::size_t attachments_fetched = 0;  ///< message attachments now wholly on the device
  std::uint64_t attachment_bytes_fetched = 0;  ///< bytes of attachment chunks received
  /// False if the server has no message lane (an older server answered 404 for /v1/inbox):
  /// messages wait on the device, courses still sync.
  bool messages_offered = true;
};

/// One full sync of an enrolled store, under the device policy. Blocks; call from the thread
/// that owns `store`, which the caller opened with open_guarded() and check_access(sync).
///
/// Before connecting: queued device events are reported, and a device certificate whose
/// not_after is behind trusted time fails with errc::certificate_expired (`why` says when it
/// expired and to ask IT for a new enrollment code). The check-in sends the posture (security
/// facts, network, PIN facts, clocks, cache size) and a request to renew the certificate; its
/// answer's policy and lease go into the guard (accept_checkin: errc::policy_refused if they do
/// not verify), a renewed certificate replaces the stored one once it verifies, and then:
/// - a wipe (IT's command or the verdict): recorded in the guard (record_wipe), and sync fails
///   with errc::device_wiped; the caller closes the store, reports the event
///   (report_device_events) and erases the store (erase_store);
/// - a lock command: the device is locked (lock_device), the event is reported, and sync fails
///   with errc::device_locked;
/// - courses the device holds that the answer does not list are removed; a listed course the
///   device lacks restarts the course feed from the beginning (versions held are skipped);
/// - verdict blocked: only an inbox pass of IT's messages (`from=it`, its cursor not stored);
///   no outbox, no other messages, no course feed or chunks.
/// Course chunks wait on a cellular network under wifi_only_downloads, and stop before the
/// store would pass max_cache_mb or the disk holding it would run out of room (whole course
/// versions that fit are fetched; downloads_deferred says which limit; messages still flow).
/// A shortage of disk space is kept and reported in the next check-in's posture. Files of at
/// least the policy's download_on_demand_mb are fetched only for pinned lessons.
/// Course chunks come from the first content mirror the check-in names that answers (with the
/// device certificate, checked against the pinned CA and the mirror's host name), each checked
/// against its hash as always: a damaged one is fetched once more from the server, and a mirror
/// that fails to connect or answers anything but 200 is left for the next one, or, once it had
/// served chunks, for the server, for the rest of the sync (mirror_fallback says so). Mirrors
/// are not remembered between syncs; message attachments always come from the server.
///
/// In order, otherwise: check-in; the message lane (urgent inbox pass, outbox upload with the
/// chunks of its messages' attachments put first, inbox pages, the attachment chunks the device
/// lacks, then the receipts those pages queued); the course feed; chunk downloads, during which a
/// thread of its own repeats the message lane every message_interval. Store access from the two
/// lanes is serialised by a mutex inside sync; download threads never touch the store. Resumable:
/// chunks already stored are never fetched again, both cursors move only after their page is
/// committed, and the outbox keeps every item until the server answered for it. A failure of
/// the message lane does not stop the course lane: sync still fetches courses, then fails with
/// the message lane's error. Fails with errc::not_enrolled, errc::server_unreachable,
/// errc::server_untrusted, errc::network_failed, errc::server_refused (the device was revoked
/// or is unknown: `why` has the server's words), errc::bad_response, errc::content_invalid (a
/// manifest or chunk did not verify, twice; an attachment chunk that arrives damaged twice
/// fails the message lane so), errc::interrupted, errc::certificate_expired,
/// errc::policy_refused, errc::device_locked, errc::device_wiped, or a store error. Whatever was
/// committed before a failure stays.
Result<SyncReport> sync(Store& store, const SyncOptions& options, std::string& why);

/// One round of watch(): a full sync, or a message lane run after the long poll brought news.
struct WatchRound {
  enum class Kind { full, messages };
  Kind kind = Kind::full;
  SyncReport report;      ///< what arrived and went (message rounds fill the message fields)
  std::error_code error;  ///< empty on success
  std::string why;        ///< with `error`: the details
  std::chrono::milliseconds retry_in{0};  ///< with `error`: the wait before the next try
};

struct WatchOptions {
  /// Used for every full round. Its `stop` flag ends watch(), and also cuts short a long poll
  /// or a wait between tries.
  SyncOptions sync;
  /// A full round (course content too) at least this often; messages come between rounds.
  std::chrono::seconds full_interval{300};
  /// How long the server may hold the inbox long poll open (clamped to
  /// protocol::kMaxInboxWaitSeconds by the server).
  int wait_seconds = 25;
  /// The long poll's request timeout is wait_seconds plus this, so a slow answer is not
  /// mistaken for a dead connection.
  std::chrono::seconds long_poll_margin{15};
  /// After a failure the next try waits a random time (full jitter) up to first_backoff doubled
  /// for each failure in a row, at most max_backoff; a success resets it.
  std::chrono::milliseconds first_backoff{1'000};
  std::chrono::milliseconds max_backoff{300'000};
  /// Called on the calling thread after every round (not after a long poll that brought
  /// nothing).
  std::function<void(const WatchRound&)> on_round;
};

/// Keeps an enrolled store in sync until stopped: a full sync round, then long polls of the
/// inbox (GET /v1/inbox?wait=S); when one brings changes it is committed and the message lane
/// runs at once (so a new message arrives within seconds), and when items wait in the outbox
/// the lane runs before the next poll. A full round runs every full_interval. Failures back off
/// exponentially with full jitter and are reported through on_round; they do not end the
/// watch, except those another try cannot mend: errc::not_enrolled, errc::newer_schema,
/// errc::server_untrusted, errc::device_locked, errc::device_wiped (the caller then does what
/// sync() asks), errc::certificate_expired, a wrong key or a damaged store (returned at once).
/// While the last check-in's verdict is blocked, no long poll runs: only the full rounds, each
/// with its pass of IT's messages. Returns
/// errc::interrupted once `options.sync.stop` is set, after committing what arrived. Blocks;
/// same thread rule as sync().
Result<void> watch(Store& store, const WatchOptions& options, std::string& why);

}  // namespace kaban::agent
