// Outbox: everything this device owes the server (messages, receipts, acknowledgements,
// learning statements), kept in the store until the server says it holds each item.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/agent/store.hpp"
#include "kaban/protocol/outbox.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// One outbox row as `kaban outbox` shows it.
struct OutboxEntry {
  std::string id;
  std::int64_t seq = 0;
  std::string kind;  ///< "message" | "receipt" | "ack" | "statement"
  std::int64_t created_at = 0;
  bool rejected = false;
  std::string code;         ///< rejected: the server's snake_case word
  std::string reason;       ///< rejected: the server's sentence
  std::string description;  ///< one line for a person, e.g. "message to team-a: Bring the key"
};

struct OutboxCounts {
  std::size_t pending = 0;
  std::size_t rejected = 0;
};

/// What one answer did.
struct OutboxApplied {
  std::size_t accepted = 0;    ///< applied now by the server (row deleted)
  std::size_t duplicate = 0;   ///< the server held it already (row deleted)
  std::size_t rejected = 0;    ///< kept, marked rejected with the server's reason
  std::size_t unanswered = 0;  ///< items of the upload past the answered prefix: still pending
};

/// The outbox table of a Store: one mechanism for every kind of upload. Each item gets a client
/// UUID and a per-device seq that only ever grows (never reused, even after rows are deleted);
/// items go to the server in seq order, and a row is deleted only once the server answered
/// accepted or duplicate for it. A rejected item stays, with the server's code and reason, until
/// the person discards it; later items do not wait for it.
///
/// Like Store, an Outbox is used from one thread at a time (sync guards its store with a mutex
/// shared by its two lanes); it keeps a reference to the store, which must outlive it. A store
/// failure comes back with its store_error_code(), and nothing of that call is kept.
class Outbox {
 public:
  explicit Outbox(Store& store) noexcept : store_(store) {}

  /// Adds `item` (kind and the matching member set; `id` "" gets a new UUID, `seq` is assigned)
  /// and returns it as stored. Runs inside the caller's open transaction when there is one, so
  /// the item commits or rolls back with the caller's own change; otherwise it is one statement
  /// on its own. `now` (Unix seconds) is the row's created_at when the item carries no time.
  /// errc::invalid_input for an unknown kind, a kind without its member, or an id that is not a
  /// UUID; std::errc::file_exists if an item with that id is queued already.
  Result<protocol::OutboxItem> enqueue(protocol::OutboxItem item, std::int64_t now);

  /// The oldest pending items in seq order, at most `max_items` of them and at most `max_bytes`
  /// of upload JSON (always at least one item when any is pending). Empty when nothing is
  /// pending. Rejected items are skipped.
  Result<protocol::OutboxUpload> next_batch(
      std::size_t max_items = protocol::kMaxOutboxItems,
      std::size_t max_bytes = protocol::kMaxOutboxRequestSize);

  /// Applies the server's answer to `sent` in one transaction: an accepted or duplicate item is
  /// deleted (a message becomes "sent", a statement "uploaded"), a rejected one is kept with its
  /// code and reason (a message shows "not sent: REASON"; a rejected acknowledgement takes the
  /// local acknowledgement mark back). Items past the answered prefix stay pending, to be sent
  /// again. errc::bad_response if the answer is not a prefix of `sent` (more results than items,
  /// or an id or seq out of place); nothing is changed then. Items that are no longer in the
  /// store (another process got the answer first) are skipped.
  Result<OutboxApplied> apply_answer(const protocol::OutboxUpload& sent,
                                     const protocol::OutboxAnswer& answer);

  /// Every item, pending and rejected, in seq order.
  Result<std::vector<OutboxEntry>> list();

  Result<OutboxCounts> counts();

  /// Removes a rejected item and what it left behind: for a message, the "not sent" message in
  /// its channel, with its attachments; for a statement, the statement (the server will never hold
  /// it). errc::not_found if there is no such item; errc::not_allowed if it is still pending (it
  /// goes with the next sync).
  Result<void> discard(std::string_view id);

 private:
  Store& store_;
};

}  // namespace kaban::agent
