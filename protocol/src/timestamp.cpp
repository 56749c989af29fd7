#include "kaban/protocol/timestamp.hpp"

#include <ctime>

namespace kaban::protocol {

std::string format_timestamp(std::int64_t unix_seconds) {
  if (unix_seconds == 0)
    return {};
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char text[sizeof "YYYY-MM-DDTHH:MM:SSZ" + 8];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace kaban::protocol
