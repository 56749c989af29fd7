// Timestamps as they appear on the wire and in listings: RFC 3339, UTC, whole seconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kaban::protocol {

/// "2026-11-23T10:00:00Z" for Unix time `unix_seconds`; "" for 0 (never). Thread-safe.
std::string format_timestamp(std::int64_t unix_seconds);

/// Reads RFC 3339 date-times ("2026-11-23T10:00:00Z", "2026-11-23T19:00:00+09:00", with or
/// without fractional seconds, which are dropped) and plain dates "2026-11-23" (midnight UTC):
/// Unix seconds, or std::nullopt for anything else (including impossible dates).
std::optional<std::int64_t> parse_timestamp(std::string_view text);

}  // namespace kaban::protocol
