// What the admin commands (admin.cpp, admin_policy.cpp, admin_devices.cpp) share: opening the
// database, explaining a failure, printing times, sizes, tables and CSV, and recording an action
// in the audit log. Private to kaban::server.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <nlohmann/json.hpp>

#include "kaban/protocol/timestamp.hpp"
#include "kaban/result.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/database.hpp"

namespace kaban::server::detail {

inline UnixTime now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

/// "2026-11-23 10:04 UTC", or "never" for the epoch.
inline std::string format_time(UnixTime t) {
  if (t.time_since_epoch().count() == 0)
    return "never";
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

/// RFC 3339 in UTC, for JSON and CSV.
inline std::string iso_time(UnixTime t) {
  return protocol::format_timestamp(to_unix(t));
}

/// "512 B", "1.5 MiB".
inline std::string format_size(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::ostringstream s;
  if (u == 0)
    s << bytes << " B";
  else
    s << std::fixed << std::setprecision(1) << v << ' ' << units[u];
  return s.str();
}

/// "1 user", "3 users".
inline std::string count_of(std::size_t n, const char* one, const char* many) {
  return std::to_string(n) + ' ' + (n == 1 ? one : many);
}

/// Keeps `why` filled: the specific sentence when the callee gave one, else the error's message.
template <class T>
Result<T> explain(Result<T> r, std::string& why) {
  if (!r && why.empty())
    why = r.error().message();
  return r;
}

inline Result<std::unique_ptr<SQLite::Database>> open(const std::filesystem::path& dir,
                                                      std::string& why) {
  return explain(open_database(dir), why);
}

/// Prints rows as aligned columns under a header.
inline void print_table(std::ostream& out, const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t i = 0; i < header.size(); ++i)
    width[i] = header[i].size();
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out << cells[i];
      if (i + 1 < cells.size())
        out << std::string(width[i] - cells[i].size() + 2, ' ');
    }
    out << '\n';
  };
  line(header);
  for (const auto& row : rows)
    line(row);
}

/// One CSV cell (RFC 4180). A cell a spreadsheet would take for a formula gets a leading '.
inline std::string csv_cell(const std::string& text) {
  std::string cell = text;
  if (!cell.empty() && std::string_view("=+-@").find(cell.front()) != std::string_view::npos)
    cell.insert(cell.begin(), '\'');
  if (cell.find_first_of(",\"\r\n") == std::string::npos)
    return cell;
  std::string quoted = "\"";
  for (const char c : cell) {
    if (c == '"')
      quoted += '"';
    quoted += c;
  }
  return quoted + '"';
}

inline void print_csv(std::ostream& out, const std::vector<std::string>& header,
                      const std::vector<std::vector<std::string>>& rows) {
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i)
      out << (i == 0 ? "" : ",") << csv_cell(cells[i]);
    out << "\r\n";
  };
  line(header);
  for (const auto& row : rows)
    line(row);
}

/// Records an admin command's change in the audit log, as admin_actor(), now. Call inside the
/// command's transaction (detail::in_transaction) so the change and its record are kept
/// together or not at all. `details` is a JSON object and never holds a secret.
inline Result<void> record_admin_action(SQLite::Database& db, std::string_view event,
                                        std::string_view subject, const nlohmann::json& details) {
  return AuditLog(db).record(admin_actor(), event, subject, details.dump(), now());
}

/// The line a publish prints: "published ID version N (F files, SIZE, X new chunks, Y already
/// held)", and a second line if it brought a retired course back.
inline void print_published(std::ostream& out, const PublishedVersion& p) {
  out << "published " << p.course_id << " version " << p.version << " ("
      << count_of(p.files, "file", "files") << ", " << format_size(p.total_bytes) << ", "
      << p.new_chunks << " new chunks, " << p.reused_chunks << " already held)\n";
  if (p.unretired)
    out << "the course was retired; this publish brought it back\n";
}

/// Hex digits of a device id a table shows (admin commands take 8 or more); JSON and CSV show
/// the whole id.
inline constexpr std::size_t kShownIdDigits = 16;

/// A device id as a listing shows it: its first kShownIdDigits in a table, whole otherwise.
inline std::string shown_id(const std::string& id, Listing how) {
  return how == Listing::table ? id.substr(0, kShownIdDigits) : id;
}

}  // namespace kaban::server::detail
