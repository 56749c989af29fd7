// Messaging: channels, messages, receipts and acknowledgements, the outbox devices upload and the
// inbox feed they read (docs/server-data.md, "The message lane").
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/inbox.hpp"
#include "kaban/protocol/outbox.hpp"
#include "kaban/result.hpp"
#include "kaban/server/database.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

/// The sender name of a message from IT unless `admin announce --from` says otherwise.
inline constexpr std::string_view kDefaultAnnouncer = "IT";
/// The title of announce:all, and the prefix of announce:GROUP's ("Announcements: TITLE").
inline constexpr std::string_view kAnnouncementTitle = "Announcements";

/// A channel, for `admin channel list`.
struct ChannelSummary {
  std::string id;
  protocol::ChannelKind kind = protocol::ChannelKind::group;
  std::string title;
  std::string audience;      ///< announcement: "all" or a group id; "" otherwise
  std::int64_t members = 0;  ///< current members (group, direct)
  std::int64_t senders = 0;  ///< current named senders (announcement)
  std::int64_t messages = 0;
  UnixTime created_at;
};

/// A message from IT (`admin announce`).
struct Announcement {
  std::string audience;  ///< "all" or a group channel id
  std::string body;      ///< 1..protocol::kMaxMessageBody bytes, protocol::is_valid_message_text
  protocol::Priority priority = protocol::Priority::normal;
  bool require_ack = false;
  std::string sender_name{kDefaultAnnouncer};
};

/// A message the server accepted.
struct PostedMessage {
  std::string id;
  std::int64_t seq = 0;
};

/// One person of a message's audience and their marks; times are Unix seconds, 0 for "not yet".
struct AckStatus {
  std::string login;
  std::string name;
  std::int64_t delivered_at = 0;
  std::int64_t read_at = 0;
  std::int64_t acked_at = 0;
};

/// Who a message reached (`admin acks`).
struct AckReport {
  std::string message_id;
  std::string channel;
  bool require_ack = false;
  std::vector<AckStatus> people;  ///< the message's current audience, by login
};

/// Which changes an inbox page holds.
enum class InboxScope {
  everything,   ///< messages, memberships, read states and statements
  urgent_only,  ///< only messages of priority urgent or emergency
  it_only,      ///< only messages from IT (sender ""): what a blocked device may read
};

/// One page of the inbox feed.
struct InboxPage {
  std::vector<protocol::InboxChange> changes;  ///< in inbox sequence order
  /// The sequence the caller's cursor holds once it has applied `changes`: the last change's
  /// when `more`, else the latest sequence the page's snapshot had seen (so a caller whose
  /// people have nothing new still moves past other people's changes).
  std::int64_t last_seq = 0;
  bool more = false;
};

/// Where a chunk a device uploads (PUT /v1/chunks/<sha256>) stands.
enum class UploadStatus {
  held,        ///< the server holds it already (a course chunk, or uploaded before): nothing to do
  over_quota,  ///< it would take the device's pending uploads past the quota: refuse it
  needed,      ///< claim_upload: new; write its file, then call record_upload
  recorded,    ///< record_upload: now held, as this device's upload
};

/// What claim_upload and record_upload decided.
struct UploadCheck {
  UploadStatus status = UploadStatus::held;
  /// The bytes of the device's uploads that no accepted message uses yet, this chunk not
  /// counted.
  std::uint64_t pending_bytes = 0;
};

/// Messaging over one database connection. Not thread-safe: one Messaging per connection, used
/// by the connection's thread; the database must outlive it. Every method fails with
/// errc::storage_failed if SQLite fails, and then changes nothing. Methods taking `why` fill it
/// with a sentence naming the login, channel or message at fault when they fail otherwise.
class Messaging {
 public:
  explicit Messaging(SQLite::Database& db) : db_(db) {}

  /// Creates group channel `id` (protocol::is_valid_id: not a direct or announcement id) with
  /// `title` ("" means the id). Fails with errc::invalid_channel, errc::channel_exists.
  Result<void> add_channel(std::string_view id, std::string_view title, UnixTime now,
                           std::string& why);
  /// Every channel, by id.
  Result<std::vector<ChannelSummary>> list_channels();

  /// Makes `logins` members of group channel `channel`, all or none: fails with
  /// errc::no_such_channel, errc::invalid_channel (not a group channel), errc::no_such_user
  /// (`why` names the first unknown login). Each login that was not a member gets a new inbox
  /// sequence; returns how many those were. If any was, the policy version advances too
  /// (advance_policy_version, policies.hpp): members are under the group's policy.
  Result<int> add_members(std::string_view channel, std::span<const std::string> logins,
                          UnixTime now, std::string& why);
  /// The reverse of add_members: each current member among `logins` is marked removed under a
  /// new inbox sequence (their devices drop the channel), and the policy version advances if any
  /// was; returns how many those were.
  Result<int> remove_members(std::string_view channel, std::span<const std::string> logins,
                             UnixTime now, std::string& why);
  /// Lets `logins` post to the announcement channel of `audience` ("all" or a group channel
  /// id), creating announce:GROUP when needed. Fails as add_members, errc::no_such_channel
  /// naming the audience when it is neither "all" nor a group channel.
  Result<int> add_senders(std::string_view audience, std::span<const std::string> logins,
                          UnixTime now, std::string& why);
  /// The reverse of add_senders. Fails with errc::no_such_channel if the channel does not exist.
  Result<int> remove_senders(std::string_view audience, std::span<const std::string> logins,
                             UnixTime now, std::string& why);

  /// Posts a message from IT to the announcement channel of `a.audience` (creating
  /// announce:GROUP for an existing group channel): one row, whatever the audience's size.
  /// Fails with errc::no_such_channel, errc::invalid_message (body, or a sender name that is
  /// empty or over kMaxUserNameSize bytes).
  Result<PostedMessage> announce(const Announcement& a, UnixTime now, std::string& why);

  /// The marks of every person in the message's current audience: every user for
  /// announce:all, the members of GROUP for announce:GROUP, the members of a group or direct
  /// channel. Fails with errc::no_such_message.
  Result<AckReport> acks(std::string_view message_id, std::string& why);

  /// Applies a device's upload in item order, in one write transaction with synchronous=FULL
  /// (an item answered accepted survives power loss: the device deletes it on that answer).
  /// `login` is the device's user: it is the sender of every message and the owner of every
  /// receipt, acknowledgement and statement, whatever the items say. Each item is applied at
  /// most once, ever: an item whose id and seq the server already holds for this device is
  /// answered duplicate (or rejected again with its first code and reason); an id or a seq that
  /// matches another item is rejected "id_reused". Rejection codes: malformed, no_such_channel,
  /// no_such_user, not_a_member, not_a_sender, ack_not_allowed, id_reused, not_visible,
  /// ack_not_required, forged_actor, conflict, out_of_order, attachment_missing (docs/errors.md).
  /// A message's attachments are checked again (protocol::check_attachment) and each of their
  /// chunks must be held (uploaded, or a course chunk) with the size named; they are stored with
  /// the message. An item that fails
  /// for a storage reason is rolled back alone and ends the answer there: the results cover the
  /// items before it (the device sends the rest again); errc::storage_failed if that is none.
  Result<protocol::OutboxAnswer> apply_outbox(std::string_view device_id, std::string_view login,
                                              std::span<const protocol::OutboxItem> items,
                                              UnixTime now);

  /// Up to `limit` (1..protocol::kMaxInboxPage) changes above `after_seq` for `login`, from
  /// one read snapshot: messages of the channels the user may see now (group and direct: a
  /// current member; announcements: the audience is "all", or a group the user is a current
  /// member of, or the user is a named sender), the user's membership changes (a group
  /// membership also reports its announce:GROUP channel, under the same sequence), the user's
  /// read and acknowledgement marks, and the user's statements. Changes of one sequence are
  /// never split across pages. With InboxScope::urgent_only, only messages of priority urgent
  /// or emergency; with InboxScope::it_only, only messages from IT (sender ""). Messages carry
  /// their attachments in order. Nothing for an unknown login.
  Result<InboxPage> inbox_since(std::string_view login, std::int64_t after_seq, int limit,
                                InboxScope scope);

  /// Chunk uploads, step one: whether a device may upload the chunk `hash` of `size` bytes
  /// (the caller has checked that its bytes hash to `hash`). held: the server has it already
  /// (an upload's time is refreshed, so the sweep keeps it another day); over_quota: the
  /// device's uploads that no accepted message uses would pass `quota_bytes` with it; needed:
  /// store the file (detail::store_chunk), then call record_upload. One write transaction.
  Result<UploadCheck> claim_upload(std::string_view device_id, std::string_view hash,
                                   std::uint64_t size, std::uint64_t quota_bytes, UnixTime now);
  /// Chunk uploads, step two, once the file is stored: decides again in its own write
  /// transaction (another request may have come first) and records the chunk as `device_id`'s
  /// upload: recorded, or held or over_quota as claim_upload says (the file then stays, unnamed
  /// by any row, which is harmless).
  Result<UploadCheck> record_upload(std::string_view device_id, std::string_view hash,
                                    std::uint64_t size, std::uint64_t quota_bytes, UnixTime now);

  /// True if `hash` is a chunk of an attachment of a message `login` may read now (the rule of
  /// inbox_since), or a chunk `device_id` uploaded. False for an unknown hash, login or device.
  /// Course chunks are Catalog::chunk_visible's.
  Result<bool> attachment_chunk_visible(std::string_view login, std::string_view device_id,
                                        std::string_view hash);

  /// Forgets every upload older than `uploaded_before` that no message uses and that is not a
  /// course chunk: deletes its row and calls `remove_file(hash)` for it, inside the write
  /// transaction (so a new upload of the same bytes waits and then stores its file anew).
  /// Returns how many were forgotten.
  Result<std::size_t> sweep_uploads(
      UnixTime uploaded_before, const std::function<void(const std::string& hash)>& remove_file);

  /// The latest inbox sequence handed out (0 before the first change). One indexed read:
  /// cheap enough to poll.
  Result<std::int64_t> latest_inbox_seq();

 private:
  SQLite::Database& db_;
};

}  // namespace kaban::server
