// The message lane: GET /v1/inbox?cursor=C&limit=N[&wait=S][&priority=urgent] gives what the
// caller's user may see since C: messages of the user's channels, the user's channel memberships,
// the user's own read and acknowledgement marks, and the user's learning statements (so a second
// device of the same person catches up). See docs/protocol.md ("Inbox").
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

/// Most changes in one inbox page; the agent may ask for fewer.
inline constexpr int kMaxInboxPage = 200;
/// Longest long-poll the server grants, in seconds (`wait` is clamped to it).
inline constexpr int kMaxInboxWaitSeconds = 60;

/// A message as the server accepted it.
struct MessageInfo {
  std::string id;  ///< the sender's UUID
  std::int64_t seq = 0;  ///< the server's inbox sequence: the order every device shows
  std::string channel;
  ChannelKind channel_kind = ChannelKind::group;
  std::string channel_title;
  std::string sender;       ///< the sender's login; "" for a message from IT (`admin announce`)
  std::string sender_name;  ///< for display
  std::string body;
  Priority priority = Priority::normal;
  bool require_ack = false;
  std::int64_t created_at = 0;   ///< the sender's device time
  std::int64_t accepted_at = 0;  ///< server time
  std::vector<Attachment> attachments;  ///< fetch their chunks with GET /v1/chunks/<sha256>
};

/// The caller's user joined or left a channel, or became or stopped being one of its senders.
struct ChannelMembership {
  std::string channel;
  ChannelKind kind = ChannelKind::group;
  std::string title;
  bool member = true;     ///< false: removed (the agent drops the channel and its messages)
  bool can_post = false;  ///< for announcement channels: a named sender
};

/// The caller's user's own marks on a message, from any of the user's devices.
struct ReadState {
  std::string message_id;
  std::int64_t read_at = 0;   ///< 0: not read
  std::int64_t acked_at = 0;  ///< 0: not acknowledged
};

/// One inbox entry. `kind` says which member is set; an agent skips kinds it does not know.
struct InboxChange {
  std::string kind;  ///< "message" | "channel" | "read_state" | "statement"
  std::optional<MessageInfo> message;
  std::optional<ChannelMembership> channel;
  std::optional<ReadState> read_state;
  std::string statement;  ///< canonical xAPI statement JSON text (kind "statement")
};

/// 200 answer. Apply `changes`, commit, then store `cursor`; ask again while `more` is true.
/// With priority=urgent the page holds only urgent and emergency messages after the cursor, and
/// `cursor` continues that same query only: the agent pages with it but never stores it.
struct InboxResponse {
  std::vector<InboxChange> changes;
  std::string cursor;  ///< a protocol::Cursor
  bool more = false;
};

std::string to_json(const InboxResponse& v);
Result<InboxResponse> parse_inbox_response(std::string_view json, std::string* why = nullptr);

}  // namespace kaban::protocol
