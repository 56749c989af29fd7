// The upload lane: POST /v1/outbox carries a device's outbox (messages, receipts,
// acknowledgements, learning statements) in order; the answer says, item by item, what the server
// holds. See docs/protocol.md ("Outbox").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/result.hpp"

namespace kaban::protocol {

/// Most items in one upload, and the most bytes of its body (HTTP 413 above).
inline constexpr std::size_t kMaxOutboxItems = 100;
inline constexpr std::size_t kMaxOutboxRequestSize = 1024 * 1024;
/// Most message ids one receipt item may carry.
inline constexpr std::size_t kMaxReceiptMessages = 500;

/// Kind "message": a new message the person wrote.
struct NewMessage {
  std::string channel;  ///< a channel id (see channel.hpp)
  std::string body;     ///< 1..kMaxMessageBody bytes, is_valid_message_text
  Priority priority = Priority::normal;
  bool require_ack = false;     ///< only on announcement channels
  std::int64_t created_at = 0;  ///< device time, Unix seconds
  /// At most kMaxAttachments, each check_attachment()-valid; their chunks must have been
  /// uploaded (PUT /v1/chunks/<sha256>) before this item is sent.
  std::vector<Attachment> attachments;
};

/// Kind "receipt": these messages reached the device ("delivered") or the person read them
/// ("read"). Read implies delivered.
struct ReceiptBatch {
  std::string state;  ///< "delivered" | "read"
  std::vector<std::string> message_ids;  ///< 1..kMaxReceiptMessages UUIDs
  std::int64_t at = 0;                   ///< device time, Unix seconds
};

/// Kind "ack": the person acknowledged an announcement that asked for it.
struct Acknowledgement {
  std::string message_id;
  std::int64_t at = 0;  ///< device time, Unix seconds
};

/// One outbox item. `kind` says which member is set ("statement": `statement` holds the xAPI
/// statement as canonical JSON text, see xapi.hpp).
struct OutboxItem {
  std::string id;        ///< client-generated UUID, unique across all items of all devices
  std::int64_t seq = 0;  ///< per device, >= 1, increasing within and across uploads
  std::string kind;      ///< "message" | "receipt" | "ack" | "statement"
  std::optional<NewMessage> message;
  std::optional<ReceiptBatch> receipt;
  std::optional<Acknowledgement> ack;
  std::string statement;
  /// Filled by parse_outbox_upload() when the item's id and seq are readable but the rest is
  /// not (an unknown kind, a bad field): the server rejects that item with this sentence and
  /// goes on with the others. Empty for a well-formed item; never sent.
  std::string invalid;
};

/// POST /v1/outbox. Items are in increasing seq order.
struct OutboxUpload {
  std::vector<OutboxItem> items;
};

/// What the server did with one item.
enum class OutboxStatus {
  accepted,   ///< applied now
  duplicate,  ///< applied before (the same id): nothing changed
  rejected,   ///< never applied, and never will be: `code` and `reason` say why
};
std::string_view to_string(OutboxStatus status);

struct OutboxResult {
  std::string id;
  std::int64_t seq = 0;
  OutboxStatus status = OutboxStatus::accepted;
  std::string code;    ///< rejected: a stable snake_case word ("not_a_member", "conflict", ...)
  std::string reason;  ///< rejected: a sentence for the person
};

/// 200 answer: one result per item, in item order, covering a prefix of the upload (possibly
/// all of it). The agent deletes an item only once it has its result and sends the rest again.
struct OutboxAnswer {
  std::vector<OutboxResult> results;
};

std::string to_json(const OutboxUpload& v);
std::string to_json(const OutboxAnswer& v);

/// Refuses (errc) an upload whose envelope is wrong: not an object, too large, more than
/// kMaxOutboxItems, an item without a valid id (UUID) or seq (>= 1), seqs not strictly
/// increasing, an id twice, an unknown top-level field. A readable item with a bad payload (an
/// unknown kind or field, a bad value) is kept with `invalid` set instead, so one bad item never
/// blocks the items behind it.
Result<OutboxUpload> parse_outbox_upload(std::string_view json, std::string* why = nullptr);
Result<OutboxAnswer> parse_outbox_answer(std::string_view json, std::string* why = nullptr);

}  // namespace kaban::protocol
