// Channels and the names on them: logins, channel ids, message priorities, UUIDs. Shared by the
// agent (which must name a channel while offline) and the server (which decides who may post).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kaban::protocol {

/// Longest login, in bytes.
inline constexpr std::size_t kMaxLoginSize = 64;
/// Longest message body, in bytes of UTF-8.
inline constexpr std::size_t kMaxMessageBody = 8 * 1024;
/// Longest channel title, in bytes of UTF-8.
inline constexpr std::size_t kMaxChannelTitle = 200;

/// A login: 1..kMaxLoginSize of [a-z0-9._-], starting with a letter or digit.
bool is_valid_login(std::string_view login);

/// The three kinds of channel. Ids tell them apart, so an offline agent can name any of them:
///   group         a name IT chose: 1..64 of [a-z0-9._-] (protocol::is_valid_id), members by login;
///   direct        "dm:A:B", the two logins in byte order, created by the first message;
///   announcement  "announce:all" or "announce:GROUP" (GROUP a group channel's id): everyone in the
///                 audience reads it, only IT and the channel's named senders post to it.
enum class ChannelKind { group, direct, announcement };

std::string_view to_string(ChannelKind kind);
/// The kind to_string() names, or std::nullopt.
std::optional<ChannelKind> parse_channel_kind(std::string_view text);
/// The kind an id names, or std::nullopt if the id is not well formed (a direct id whose logins
/// are invalid, equal or out of order; an announcement audience that is not "all" or a valid id).
std::optional<ChannelKind> channel_kind(std::string_view channel_id);
bool is_valid_channel_id(std::string_view channel_id);

/// "dm:A:B" for two different valid logins, in either order; "" if they are not.
std::string direct_channel_id(std::string_view login_a, std::string_view login_b);
/// For a direct channel id, the login of the other party; "" if `me` is not one of the two.
std::string direct_peer(std::string_view channel_id, std::string_view me);
/// "announce:" + audience ("all" or a group channel id).
std::string announcement_channel_id(std::string_view audience);
/// The audience of an announcement channel id ("all" or a group); "" for other ids.
std::string announcement_audience(std::string_view channel_id);

/// How a message asks for attention. Ordered: urgent and emergency messages travel first.
enum class Priority { normal = 0, urgent = 1, emergency = 2 };
std::string_view to_string(Priority priority);
std::optional<Priority> parse_priority(std::string_view text);

/// True for valid UTF-8 with no NUL and no control characters other than tab and newline.
bool is_valid_message_text(std::string_view text);

/// A random (version 4) UUID in lower-case 8-4-4-4-12 form. Thread-safe.
std::string new_uuid();
/// True for the lower-case 8-4-4-4-12 hex form (any version).
bool is_valid_uuid(std::string_view text);

}  // namespace kaban::protocol
