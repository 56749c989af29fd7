// Timestamps as they appear on the wire and in listings: RFC 3339, UTC, whole seconds.
#pragma once

#include <cstdint>
#include <string>

namespace kaban::protocol {

/// "2026-11-23T10:00:00Z" for Unix time `unix_seconds`; "" for 0 (never). Thread-safe.
std::string format_timestamp(std::int64_t unix_seconds);

}  // namespace kaban::protocol
