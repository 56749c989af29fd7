#include "kaban/server/admin.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <charconv>
#include <ctime>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/course_folder.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

UnixTime now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

// "2026-11-23 10:04" in UTC, or "never" for the epoch.
std::string format_time(UnixTime t) {
  if (t.time_since_epoch().count() == 0)
    return "never";
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

std::string iso_time(UnixTime t) {
  return protocol::format_timestamp(to_unix(t));
}

std::string format_size(std::uint64_t bytes) {
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

// Keeps `why` filled: the specific sentence when the callee gave one, else the error's message.
template <class T>
Result<T> explain(Result<T> r, std::string& why) {
  if (!r && why.empty())
    why = r.error().message();
  return r;
}

Result<std::unique_ptr<SQLite::Database>> open(const fs::path& dir, std::string& why) {
  return explain(open_database(dir), why);
}

// Prints rows as aligned columns under a header.
void print_table(std::ostream& out, const std::vector<std::string>& header,
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

}  // namespace

std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
  if (text.size() < 2)
    return std::nullopt;
  const char unit = text.back();
  text.remove_suffix(1);
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n <= 0 || n > 1'000'000)
    return std::nullopt;
  switch (unit) {
    case 's':
      return std::chrono::seconds(n);
    case 'm':
      return std::chrono::minutes(n);
    case 'h':
      return std::chrono::hours(n);
    case 'd':
      return std::chrono::days(n);
  }
  return std::nullopt;
}

Result<void> admin_user_add(const fs::path& dir, std::string_view login, std::string_view name,
                            std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Directory directory(*db);
  KABAN_TRYV(explain(directory.add_user(login, name, now()), why));
  out << "added user " << login << " (" << name << ")\n";
  return ok();
}

Result<void> admin_user_list(const fs::path& dir, Listing how, std::ostream& out,
                             std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Directory directory(*db);
  KABAN_TRY(users, explain(directory.list_users(), why));
  if (how == Listing::json) {
    json list = json::array();
    for (const User& u : users)
      list.push_back(
          {{"login", u.login}, {"name", u.name}, {"created_at", iso_time(u.created_at)}});
    out << list.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const User& u : users)
    rows.push_back({u.login, u.name, format_time(u.created_at)});
  print_table(out, {"LOGIN", "NAME", "ADDED"}, rows);
  return ok();
}

Result<void> admin_enroll_code(const fs::path& dir, std::string_view login,
                               std::chrono::seconds ttl, std::string_view server, std::ostream& out,
                               std::string& why) {
  if (ttl <= std::chrono::seconds::zero() || ttl > kMaxEnrollCodeTtl) {
    why = "the code's lifetime must be between 1s and 30d";
    return make_error_code(std::errc::invalid_argument);
  }
  KABAN_TRY(identity, explain(load_identity(dir), why));
  KABAN_TRY(db, open(dir, why));
  std::string address(server);
  if (address.empty()) {
    try {
      SQLite::Statement q(*db, "SELECT value FROM server_meta WHERE key = ?");
      q.bind(1, kListenAddressKey);
      if (q.executeStep())
        address = q.getColumn(0).getString();
    } catch (const SQLite::Exception&) {
      why = "the server database could not be read";
      return errc::storage_failed;
    }
  }
  if (address.empty()) {
    why =
        "no server address known yet: start `kaban-server serve` once, or give "
        "--server HOST:PORT (the address devices will connect to)";
    return make_error_code(std::errc::invalid_argument);
  }
  Directory directory(*db);
  KABAN_TRY(code, explain(directory.create_enroll_code(login, ttl, now()), why));
  const std::string text =
      "kaban://" + address + "?code=" + code + "&ca=" + identity.ca_fingerprint;
  std::string parse_why;
  auto line = protocol::EnrollmentLine::parse(text, &parse_why);
  if (!line) {
    why = "the server address \"" + address +
          "\" does not make a valid enrollment line: " + parse_why;
    return line.error();
  }
  out << line.value().to_string() << '\n';
  return ok();
}

Result<void> admin_course_publish(const fs::path& dir, const fs::path& folder, std::ostream& out,
                                  std::string& why) {
  KABAN_TRY(course, explain(read_course_folder(folder, why), why));
  KABAN_TRY(identity, explain(load_identity(dir), why));
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);
  KABAN_TRY(published, explain(catalog.publish(course, identity.signing_key, now(), why), why));
  out << "published " << published.course_id << " version " << published.version << " ("
      << published.files << (published.files == 1 ? " file, " : " files, ")
      << format_size(published.total_bytes) << ", " << published.new_chunks << " new chunks, "
      << published.reused_chunks << " already held)\n";
  return ok();
}

Result<void> admin_course_list(const fs::path& dir, Listing how, std::ostream& out,
                               std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);
  KABAN_TRY(courses, explain(catalog.list_courses(), why));
  if (how == Listing::json) {
    json list = json::array();
    for (const CourseSummary& c : courses)
      list.push_back({{"id", c.id},
                      {"title", c.title},
                      {"version", c.latest_version},
                      {"published_at", iso_time(c.published_at)},
                      {"files", c.file_count},
                      {"bytes", c.total_bytes}});
    out << list.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const CourseSummary& c : courses)
    rows.push_back({c.id, c.title, std::to_string(c.latest_version), format_time(c.published_at),
                    std::to_string(c.file_count), format_size(c.total_bytes)});
  print_table(out, {"ID", "TITLE", "VERSION", "PUBLISHED", "FILES", "SIZE"}, rows);
  return ok();
}

Result<void> admin_device_list(const fs::path& dir, Listing how, std::ostream& out,
                               std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Directory directory(*db);
  KABAN_TRY(devices, explain(directory.list_devices(), why));
  if (how == Listing::json) {
    json list = json::array();
    for (const Device& d : devices)
      list.push_back({{"id", d.id},
                      {"login", d.login},
                      {"platform", d.description.platform},
                      {"os_version", d.description.os_version},
                      {"name", d.description.name},
                      {"agent_version", d.description.agent_version},
                      {"enrolled_at", iso_time(d.enrolled_at)},
                      {"last_checkin_at", iso_time(d.last_checkin_at)},
                      {"revoked", d.revoked}});
    out << list.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const Device& d : devices)
    rows.push_back({d.login, d.id, d.description.platform, d.description.name,
                    format_time(d.enrolled_at), format_time(d.last_checkin_at),
                    d.revoked ? "revoked" : "active"});
  print_table(out, {"LOGIN", "DEVICE", "PLATFORM", "NAME", "ENROLLED", "LAST CHECK-IN", "STATUS"},
              rows);
  return ok();
}

Result<void> record_listen_address(const fs::path& dir, std::string_view address) {
  KABAN_TRY(db, open_database(dir));
  try {
    SQLite::Statement q(*db, "INSERT OR REPLACE INTO server_meta(key, value) VALUES (?, ?)");
    q.bind(1, kListenAddressKey);
    q.bind(2, std::string(address));
    q.exec();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  return ok();
}

}  // namespace kaban::server
