// Limits shared by the message-lane parsers (outbox, inbox, xAPI). Internal to kaban::protocol.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/result.hpp"

namespace kaban::protocol::detail {

/// Longest channel id: "dm:" plus two 64-byte logins and a colon.
inline constexpr std::size_t kMaxChannelId = 3 + 64 + 1 + 64;
inline constexpr std::size_t kUuidSize = 36;
/// Latest time a device or the server may state: 9999-12-31T23:59:59Z, the last second RFC 3339
/// can write.
inline constexpr std::int64_t kLatestTime = 253'402'300'799;
/// Deepest nesting of arrays and objects a message-lane body may have. nlohmann's dump(), copy
/// and comparison recurse, so a body nested a million levels deep would overflow the stack.
inline constexpr std::size_t kMaxJsonDepth = 64;

/// True if `text` opens more than `limit` arrays or objects inside one another. Looks only at
/// brackets outside strings, so it is cheap enough to run before the parser.
inline bool nests_deeper_than(std::string_view text, std::size_t limit) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit)
        return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

/// parse_json() for a message-lane body, refusing one nested deeper than kMaxJsonDepth
/// (errc::malformed) before the parser sees it.
inline Result<void> parse_nested_json(std::string_view text, std::size_t max_size,
                                      nlohmann::json& out, std::string* why) {
  if (text.size() <= max_size && nests_deeper_than(text, kMaxJsonDepth)) {
    if (why)
      *why = "the body nests arrays and objects more than " + std::to_string(kMaxJsonDepth) +
             " levels deep";
    return errc::malformed;
  }
  return parse_json(text, max_size, out, why);
}

/// Compact JSON text that never throws: a string that is not UTF-8 (which only a caller's bug
/// can put in a struct) is written with U+FFFD in place of the bad bytes.
inline std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace kaban::protocol::detail
