#include "kaban/protocol/channel.hpp"

#include <algorithm>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/protocol/manifest.hpp"

namespace kaban::protocol {
namespace {

constexpr std::string_view kDirectPrefix = "dm:";
constexpr std::string_view kAnnouncementPrefix = "announce:";
constexpr std::string_view kEveryone = "all";
constexpr std::size_t kUuidBytes = 16;
constexpr std::size_t kUuidTextSize = 36;
constexpr std::size_t kUuidDashes[] = {8, 13, 18, 23};

bool is_login_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_login_char(char c) {
  return is_login_start(c) || c == '.' || c == '_' || c == '-';
}

bool is_lower_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// The two logins of a well-formed direct id, or false.
bool split_direct(std::string_view channel_id, std::string_view& first, std::string_view& second) {
  if (!channel_id.starts_with(kDirectPrefix))
    return false;
  const std::string_view logins = channel_id.substr(kDirectPrefix.size());
  const std::size_t colon = logins.find(':');
  if (colon == std::string_view::npos)
    return false;
  first = logins.substr(0, colon);
  second = logins.substr(colon + 1);
  // Byte order makes the id of a pair unique, so two offline agents name the same channel.
  return is_valid_login(first) && is_valid_login(second) && first < second;
}

bool is_valid_audience(std::string_view audience) {
  return audience == kEveryone || is_valid_id(audience);
}

// The length of the UTF-8 sequence starting at text[i] and the code point it encodes, or 0 for
// an invalid sequence: truncated, a stray continuation byte, an overlong form, a surrogate, or
// beyond U+10FFFF.
std::size_t decode_utf8(std::string_view text, std::size_t i, char32_t& code_point) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  std::size_t length = 0;
  char32_t min = 0;
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  }
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    min = 0x80;
    code_point = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    min = 0x800;
    code_point = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    min = 0x10000;
    code_point = lead & 0x07;
  } else {
    return 0;
  }
  if (text.size() - i < length)
    return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80)
      return 0;
    code_point = (code_point << 6) | (byte(i + k) & 0x3F);
  }
  if (code_point < min || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF))
    return 0;
  return length;
}

bool is_control(char32_t c) {
  return c < 0x20 || (c >= 0x7F && c <= 0x9F);
}

}  // namespace

bool is_valid_login(std::string_view login) {
  if (login.empty() || login.size() > kMaxLoginSize || !is_login_start(login.front()))
    return false;
  return std::all_of(login.begin(), login.end(), is_login_char);
}

std::optional<ChannelKind> parse_channel_kind(std::string_view text) {
  for (const ChannelKind kind :
       {ChannelKind::group, ChannelKind::direct, ChannelKind::announcement}) {
    if (to_string(kind) == text)
      return kind;
  }
  return std::nullopt;
}

std::string_view to_string(ChannelKind kind) {
  switch (kind) {
    case ChannelKind::group:
      return "group";
    case ChannelKind::direct:
      return "direct";
    case ChannelKind::announcement:
      return "announcement";
  }
  return "";
}

std::optional<ChannelKind> channel_kind(std::string_view channel_id) {
  if (channel_id.starts_with(kDirectPrefix)) {
    std::string_view first, second;
    if (!split_direct(channel_id, first, second))
      return std::nullopt;
    return ChannelKind::direct;
  }
  if (channel_id.starts_with(kAnnouncementPrefix)) {
    if (!is_valid_audience(channel_id.substr(kAnnouncementPrefix.size())))
      return std::nullopt;
    return ChannelKind::announcement;
  }
  // Group ids cannot hold ':', so they never collide with the prefixed kinds above.
  if (!is_valid_id(channel_id))
    return std::nullopt;
  return ChannelKind::group;
}

bool is_valid_channel_id(std::string_view channel_id) {
  return channel_kind(channel_id).has_value();
}

std::string direct_channel_id(std::string_view login_a, std::string_view login_b) {
  if (!is_valid_login(login_a) || !is_valid_login(login_b) || login_a == login_b)
    return {};
  if (login_b < login_a)
    std::swap(login_a, login_b);
  std::string id(kDirectPrefix);
  id.append(login_a).append(":").append(login_b);
  return id;
}

std::string direct_peer(std::string_view channel_id, std::string_view me) {
  std::string_view first, second;
  if (!split_direct(channel_id, first, second))
    return {};
  if (me == first)
    return std::string(second);
  if (me == second)
    return std::string(first);
  return {};
}

std::string announcement_channel_id(std::string_view audience) {
  if (!is_valid_audience(audience))
    return {};
  return std::string(kAnnouncementPrefix).append(audience);
}

std::string announcement_audience(std::string_view channel_id) {
  if (channel_kind(channel_id) != ChannelKind::announcement)
    return {};
  return std::string(channel_id.substr(kAnnouncementPrefix.size()));
}

std::string_view to_string(Priority priority) {
  switch (priority) {
    case Priority::normal:
      return "normal";
    case Priority::urgent:
      return "urgent";
    case Priority::emergency:
      return "emergency";
  }
  return "";
}

std::optional<Priority> parse_priority(std::string_view text) {
  if (text == "normal")
    return Priority::normal;
  if (text == "urgent")
    return Priority::urgent;
  if (text == "emergency")
    return Priority::emergency;
  return std::nullopt;
}

bool is_valid_message_text(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    char32_t c = 0;
    const std::size_t length = decode_utf8(text, i, c);
    if (length == 0)
      return false;
    if (is_control(c) && c != '\t' && c != '\n')
      return false;
    i += length;
  }
  return true;
}

std::string new_uuid() {
  crypto::Bytes bytes = crypto::random_bytes(kUuidBytes);
  bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0F) | 0x40);  // version 4
  bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
  const std::string hex = crypto::to_hex(bytes);
  std::string text;
  text.reserve(kUuidTextSize);
  std::size_t from = 0;
  for (const std::size_t dash : kUuidDashes) {
    const std::size_t take = dash - text.size();
    text.append(hex, from, take).push_back('-');
    from += take;
  }
  text.append(hex, from, std::string::npos);
  return text;
}

bool is_valid_uuid(std::string_view text) {
  if (text.size() != kUuidTextSize)
    return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash_here =
        std::find(std::begin(kUuidDashes), std::end(kUuidDashes), i) != std::end(kUuidDashes);
    if (dash_here ? text[i] != '-' : !is_lower_hex_digit(text[i]))
      return false;
  }
  return true;
}

}  // namespace kaban::protocol
