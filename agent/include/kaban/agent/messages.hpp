// Messages: the person's channels and messages on this device, what they write while offline,
// and their read and acknowledgement marks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/agent/attachments.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/inbox.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

struct ChannelInfo {
  std::string id;
  protocol::ChannelKind kind = protocol::ChannelKind::group;
  std::string title;
  bool can_post = false;
  std::size_t unread = 0;
};

enum class MessageState {
  pending,   ///< written here, the server does not hold it yet
  sent,      ///< the server holds it
  rejected,  ///< the server refused it for good (`reason`); see Outbox::discard
};
std::string_view to_string(MessageState state);

struct MessageView {
  std::string id;
  std::int64_t seq = 0;  ///< the server's inbox sequence; 0 until the server echoed it
  std::string channel;
  std::string channel_title;
  std::string sender;  ///< a login; "" for IT
  std::string sender_name;
  std::string body;
  protocol::Priority priority = protocol::Priority::normal;
  bool require_ack = false;
  std::int64_t created_at = 0;   ///< the sender's device time
  std::int64_t accepted_at = 0;  ///< the server's time; 0 while pending
  MessageState state = MessageState::sent;
  std::string reason;  ///< rejected: the server's sentence
  bool own = false;    ///< written by the person (on this or another of their devices)
  bool read = false;   ///< own messages count as read
  std::int64_t read_at = 0;
  std::int64_t acked_at = 0;  ///< 0: not acknowledged
  /// In the message's order; read them with Attachments::read once `downloaded`.
  std::vector<AttachmentView> attachments;
};

struct MessageFilter {
  std::string channel;       ///< a channel id; "" for all
  bool unread_only = false;  ///< only messages of others that are not read yet
  /// Only messages from IT (sender ""): all a device the policy blocks may show.
  bool from_it_only = false;
};

/// What one inbox page changed.
struct InboxApplied {
  std::size_t new_messages = 0;  ///< messages the device did not hold (own echoes excluded)
  std::size_t urgent = 0;        ///< of those, urgent or emergency
  std::size_t echoed = 0;        ///< the person's own messages the server confirmed
  std::size_t channels_joined = 0;
  std::size_t channels_left = 0;
  std::size_t marks = 0;       ///< read or acknowledgement marks from the person's devices
  std::size_t statements = 0;  ///< learning statements not held before
  std::size_t skipped = 0;     ///< changes of unknown kinds, or that did not read
};

/// The messages part of a Store, seen as `login` (the enrolled user). Sending works offline:
/// the message shows at once as pending and its outbox item (same UUID) goes with the next
/// sync; when the server echoes it through the inbox the same row gets its seq, never a second
/// one. Receipts are queued in the outbox: "delivered" when inbox messages are stored, "read"
/// when the person marks them read, in batches of at most protocol::kMaxReceiptMessages ids;
/// never for the person's own messages.
///
/// Like Store, a Messages is used from one thread at a time (sync guards its store with a mutex
/// shared by its two lanes); it keeps a reference to the store, which must outlive it. Every
/// write is one transaction: on a store failure (its store_error_code()) nothing of the call is
/// kept.
class Messages {
 public:
  Messages(Store& store, std::string login, std::string user_name);

  /// The channel id a person typed: "@LOGIN" names the direct channel with that user, anything
  /// else must be a well-formed channel id (group, "dm:A:B" or "announce:..."). Does not check
  /// that the channel is on this device. errc::invalid_input otherwise (including "@" + one's
  /// own login).
  Result<std::string> resolve_channel(std::string_view name) const;

  /// Every channel on this device, by id, with its count of unread messages.
  Result<std::vector<ChannelInfo>> channels();

  /// Writes a message: stores it as pending, with its attachments (cut into chunks, each chunk
  /// and each whole file hashed), and queues its outbox item, in one transaction. The chunks
  /// are uploaded by the next sync before the message. A direct channel is created locally by
  /// its first message; a group or announcement channel must be on this device
  /// (errc::not_found). errc::invalid_input for an empty body, one over
  /// protocol::kMaxMessageBody or not is_valid_message_text, require_ack outside an
  /// announcement channel, more than protocol::kMaxAttachments attachments, one that is empty
  /// or over protocol::kMaxAttachmentSize, whose name is not is_valid_attachment_name or is
  /// another's of the same message, or whose media type is not "type/subtype"; errc::not_allowed
  /// for an announcement channel the person may not post to. `now` is the message's created_at.
  Result<MessageView> send(std::string_view channel_id, std::string_view body,
                           protocol::Priority priority, bool require_ack, std::int64_t now,
                           std::span<const AttachmentFile> attachments = {});

  /// Applies one inbox page in one transaction, and stores `cursor` in the same transaction
  /// unless it is "" (the urgent pass pages without storing). Messages are upserted by id (an
  /// echo of the person's own message fills in its seq and accepted time) with the attachments
  /// they carry (their chunks are fetched later: Attachments::missing_chunks); "delivered"
  /// receipts are queued for new messages of others; a channel change with member=false drops
  /// the channel and the server's messages in it, with their attachments and the attachment
  /// chunks no other message uses; read_state marks messages read or acknowledged
  /// without queueing anything; statements are stored once by id (see LearningLog). Changes of
  /// kinds this agent does not know, and statements that do not read or are not the person's,
  /// are skipped (counted). `now` is the receipts' time.
  Result<InboxApplied> apply_inbox(std::span<const protocol::InboxChange> changes,
                                   std::string_view cursor, std::int64_t now);

  /// The stored inbox cursor ("" before the first page).
  Result<std::string> inbox_cursor();
  /// Forgets the inbox cursor, so the next pull starts from the beginning (after the server's
  /// database was restored from a backup). What is held stays; pages are applied idempotently.
  Result<void> reset_inbox_cursor();

  /// Messages by server seq, then the ones the server does not hold yet, in writing order,
  /// each with its attachments.
  /// errc::not_found if `filter.channel` is set and neither a channel nor a message on this
  /// device names it.
  Result<std::vector<MessageView>> list(const MessageFilter& filter = {});

  /// Marks messages read and queues "read" receipts for them. Each target is a channel (id or
  /// "@LOGIN") or a message id; no targets means every message. Only messages of others the
  /// server holds are marked; marking one twice does nothing. Returns how many were marked.
  /// errc::not_found if a target names nothing on this device (nothing is marked then).
  Result<std::size_t> mark_read(std::span<const std::string> targets, std::int64_t now);

  /// The person acknowledges an announcement that asks for it: marks it acknowledged (and read)
  /// and queues the acknowledgement (and a read receipt if it was unread). Returns false if it
  /// was acknowledged already (nothing is queued). errc::not_found for an id that is not a
  /// message the server holds (unknown, pending or rejected); errc::not_allowed if the message
  /// does not ask for acknowledgement.
  Result<bool> acknowledge(std::string_view message_id, std::int64_t now);

  /// Messages of others not read yet, over all channels.
  Result<std::size_t> unread_count();

 private:
  Store& store_;
  std::string login_;
  std::string user_name_;
};

}  // namespace kaban::agent
