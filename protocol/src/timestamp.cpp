#include "kaban/protocol/timestamp.hpp"

#include <ctime>

namespace kaban::protocol {
namespace {

constexpr std::int64_t kSecondsPerDay = 86'400;

// Reads exactly `count` digits at `pos`, advancing it; false if they are not all digits.
bool read_digits(std::string_view text, std::size_t& pos, std::size_t count, int& value) {
  if (text.size() - pos < count)
    return false;
  value = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9')
      return false;
    value = value * 10 + (c - '0');
  }
  pos += count;
  return true;
}

bool read_char(std::string_view text, std::size_t& pos, char expected) {
  if (pos >= text.size() || text[pos] != expected)
    return false;
  ++pos;
  return true;
}

bool is_leap_year(int year) {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int days_in_month(int year, int month) {
  constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap_year(year) ? 29 : kDays[month - 1];
}

// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's days_from_civil):
// plain arithmetic, so no dependence on the process time zone, unlike mktime, and no timegm,
// which is not standard.
std::int64_t days_from_civil(int year, int month, int day) {
  const std::int64_t y = static_cast<std::int64_t>(year) - (month <= 2 ? 1 : 0);
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t year_of_era = y - era * 400;
  const std::int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const std::int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146'097 + day_of_era - 719'468;
}

}  // namespace

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

std::optional<std::int64_t> parse_timestamp(std::string_view text) {
  std::size_t pos = 0;
  int year = 0, month = 0, day = 0;
  if (!read_digits(text, pos, 4, year) || !read_char(text, pos, '-') ||
      !read_digits(text, pos, 2, month) || !read_char(text, pos, '-') ||
      !read_digits(text, pos, 2, day))
    return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
    return std::nullopt;
  const std::int64_t midnight = days_from_civil(year, month, day) * kSecondsPerDay;
  if (pos == text.size())
    return midnight;

  if (!read_char(text, pos, 'T') && !read_char(text, pos, 't'))
    return std::nullopt;
  int hour = 0, minute = 0, second = 0;
  if (!read_digits(text, pos, 2, hour) || !read_char(text, pos, ':') ||
      !read_digits(text, pos, 2, minute) || !read_char(text, pos, ':') ||
      !read_digits(text, pos, 2, second))
    return std::nullopt;
  if (hour > 23 || minute > 59 || second > 60)
    return std::nullopt;
  // A leap second has no Unix time of its own; the second before it is the nearest that does.
  if (second == 60)
    second = 59;
  if (read_char(text, pos, '.')) {
    const std::size_t digits_start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9')
      ++pos;
    if (pos == digits_start)
      return std::nullopt;
  }

  std::int64_t offset = 0;
  if (read_char(text, pos, 'Z') || read_char(text, pos, 'z')) {
    offset = 0;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const bool east = text[pos] == '+';
    ++pos;
    int offset_hours = 0, offset_minutes = 0;
    if (!read_digits(text, pos, 2, offset_hours) || !read_char(text, pos, ':') ||
        !read_digits(text, pos, 2, offset_minutes) || offset_hours > 23 || offset_minutes > 59)
      return std::nullopt;
    offset = (offset_hours * 60 + offset_minutes) * 60;
    if (!east)
      offset = -offset;
  } else {
    return std::nullopt;
  }
  if (pos != text.size())
    return std::nullopt;
  // Local time minus its offset is UTC.
  return midnight + hour * 3600 + minute * 60 + second - offset;
}

}  // namespace kaban::protocol
