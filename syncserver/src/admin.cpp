#include "kaban/server/admin.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "admin_output.hpp"
#include "channel_rows.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/course_folder.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/learning_records.hpp"
#include "kaban/server/messaging.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using detail::count_of;
using detail::explain;
using detail::format_size;
using detail::format_time;
using detail::in_transaction;
using detail::iso_time;
using detail::now;
using detail::open;
using detail::print_csv;
using detail::print_table;
using detail::record_admin_action;

// A mark's time in a listing: minutes in UTC for a person, RFC 3339 in CSV; "-" or "" if unset.
std::string mark_time(std::int64_t t, Listing how) {
  if (how == Listing::csv)
    return protocol::format_timestamp(t);
  return t == 0 ? "-" : format_time(UnixTime{std::chrono::seconds{t}});
}

// "2h 05m" for a person, whole seconds in CSV.
std::string time_spent(std::int64_t seconds, Listing how) {
  if (how == Listing::csv)
    return std::to_string(seconds);
  const std::int64_t minutes = seconds / 60;
  std::ostringstream s;
  if (minutes >= 60)
    s << minutes / 60 << "h " << std::setw(2) << std::setfill('0') << minutes % 60 << 'm';
  else
    s << minutes << 'm';
  return s.str();
}

// Adds or removes members or senders with `change`, records `event` if some changed, and says
// how many: "team-a: 2 of 3 added as members (the others already were)".
template <class Change>
Result<void> change_people(const fs::path& dir, const std::string& channel,
                           std::span<const std::string> logins, const char* event, const char* done,
                           const char* others, Change change, std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Messaging messaging(*db);
  auto counted = in_transaction(*db, [&]() -> Result<int> {
    KABAN_TRY(n, change(messaging, now()));
    if (n > 0) {
      KABAN_TRYV(record_admin_action(
          *db, event, channel,
          {{"logins", std::vector<std::string>(logins.begin(), logins.end())}, {"changed", n}}));
    }
    return n;
  });
  KABAN_TRY(changed, explain(std::move(counted), why));
  out << channel << ": " << changed << " of " << logins.size() << ' ' << done;
  if (static_cast<std::size_t>(changed) < logins.size())
    out << " (" << others << ')';
  out << '\n';
  return ok();
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
  auto added = in_transaction(*db, [&]() -> Result<void> {
    KABAN_TRYV(directory.add_user(login, name, now()));
    return record_admin_action(*db, "user_added", login, {{"name", std::string(name)}});
  });
  KABAN_TRYV(explain(std::move(added), why));
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
  // The entry names the person and the code's lifetime, never the code.
  auto created = in_transaction(*db, [&]() -> Result<std::string> {
    KABAN_TRY(c, directory.create_enroll_code(login, ttl, now()));
    KABAN_TRYV(
        record_admin_action(*db, "enroll_code_created", login, {{"ttl_seconds", ttl.count()}}));
    return c;
  });
  KABAN_TRY(code, explain(std::move(created), why));
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
  auto done = in_transaction(*db, [&]() -> Result<PublishedVersion> {
    KABAN_TRY(p, catalog.publish(course, identity.signing_key, now(), why));
    KABAN_TRYV(record_admin_action(
        *db, "course_published", p.course_id,
        {{"version", p.version}, {"files", p.files}, {"bytes", p.total_bytes}}));
    return p;
  });
  KABAN_TRY(published, explain(std::move(done), why));
  detail::print_published(out, published);
  return ok();
}

Result<void> admin_course_list(const fs::path& dir, Listing how, std::ostream& out,
                               std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);
  KABAN_TRY(courses, explain(catalog.list_courses(), why));
  const UnixTime t = now();
  // In use, expiring (with the date), expired, or retired.
  const auto status = [t](const CourseSummary& c) -> std::string {
    if (c.retired_at)
      return "retired " + format_time(*c.retired_at);
    if (c.expires_at)
      return (*c.expires_at <= t ? "expired " : "expires ") + format_time(*c.expires_at);
    return "in use";
  };
  const auto optional_time = [](const std::optional<UnixTime>& when) {
    return when ? json(iso_time(*when)) : json(nullptr);
  };
  if (how == Listing::json) {
    json list = json::array();
    for (const CourseSummary& c : courses)
      list.push_back({{"id", c.id},
                      {"title", c.title},
                      {"version", c.latest_version},
                      {"published_at", iso_time(c.published_at)},
                      {"files", c.file_count},
                      {"bytes", c.total_bytes},
                      {"expires_at", optional_time(c.expires_at)},
                      {"retired_at", optional_time(c.retired_at)}});
    out << list.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const CourseSummary& c : courses)
    rows.push_back({c.id, c.title, std::to_string(c.latest_version), format_time(c.published_at),
                    std::to_string(c.file_count), format_size(c.total_bytes), status(c)});
  print_table(out, {"ID", "TITLE", "VERSION", "PUBLISHED", "FILES", "SIZE", "STATUS"}, rows);
  return ok();
}

Result<void> admin_channel_add(const fs::path& dir, std::string_view id, std::string_view title,
                               std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Messaging messaging(*db);
  auto added = in_transaction(*db, [&]() -> Result<void> {
    KABAN_TRYV(messaging.add_channel(id, title, now(), why));
    return record_admin_action(*db, "channel_added", id,
                               {{"title", std::string(title.empty() ? id : title)}});
  });
  KABAN_TRYV(explain(std::move(added), why));
  out << "added channel " << id << " (" << (title.empty() ? id : title) << ")\n";
  return ok();
}

Result<void> admin_channel_list(const fs::path& dir, Listing how, std::ostream& out,
                                std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Messaging messaging(*db);
  KABAN_TRY(channels, explain(messaging.list_channels(), why));
  if (how == Listing::json) {
    json list = json::array();
    for (const ChannelSummary& c : channels) {
      json item = {{"id", c.id},
                   {"kind", std::string(protocol::to_string(c.kind))},
                   {"title", c.title},
                   {"members", c.members},
                   {"senders", c.senders},
                   {"messages", c.messages},
                   {"created_at", iso_time(c.created_at)}};
      if (!c.audience.empty())
        item["audience"] = c.audience;
      list.push_back(std::move(item));
    }
    out << list.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const ChannelSummary& c : channels) {
    const bool announcement = c.kind == protocol::ChannelKind::announcement;
    rows.push_back({c.id, std::string(protocol::to_string(c.kind)), c.title,
                    announcement ? (c.audience == "all" ? "everyone" : "members of " + c.audience)
                                 : std::to_string(c.members) + " members",
                    announcement ? std::to_string(c.senders) : "-", std::to_string(c.messages),
                    format_time(c.created_at)});
  }
  print_table(out, {"ID", "KIND", "TITLE", "READERS", "SENDERS", "MESSAGES", "CREATED"}, rows);
  return ok();
}

Result<void> admin_channel_members_add(const fs::path& dir, std::string_view channel,
                                       std::span<const std::string> logins, std::ostream& out,
                                       std::string& why) {
  return change_people(
      dir, std::string(channel), logins, "channel_members_added", "added as members",
      "the others already were",
      [&](Messaging& m, UnixTime t) { return m.add_members(channel, logins, t, why); }, out, why);
}

Result<void> admin_channel_members_remove(const fs::path& dir, std::string_view channel,
                                          std::span<const std::string> logins, std::ostream& out,
                                          std::string& why) {
  return change_people(
      dir, std::string(channel), logins, "channel_members_removed", "removed as members",
      "the others were not members",
      [&](Messaging& m, UnixTime t) { return m.remove_members(channel, logins, t, why); }, out,
      why);
}

Result<void> admin_channel_senders_add(const fs::path& dir, std::string_view audience,
                                       std::span<const std::string> logins, std::ostream& out,
                                       std::string& why) {
  return change_people(
      dir, protocol::announcement_channel_id(audience), logins, "channel_senders_added",
      "named senders", "the others already were",
      [&](Messaging& m, UnixTime t) { return m.add_senders(audience, logins, t, why); }, out, why);
}

Result<void> admin_channel_senders_remove(const fs::path& dir, std::string_view audience,
                                          std::span<const std::string> logins, std::ostream& out,
                                          std::string& why) {
  return change_people(
      dir, protocol::announcement_channel_id(audience), logins, "channel_senders_removed",
      "no longer senders", "the others were not senders",
      [&](Messaging& m, UnixTime t) { return m.remove_senders(audience, logins, t, why); }, out,
      why);
}

Result<void> admin_announce(const fs::path& dir, const Announcement& announcement,
                            std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Messaging messaging(*db);
  auto done = in_transaction(*db, [&]() -> Result<PostedMessage> {
    KABAN_TRY(p, messaging.announce(announcement, now(), why));
    KABAN_TRYV(record_admin_action(
        *db, "announcement_posted", protocol::announcement_channel_id(announcement.audience),
        {{"message_id", p.id},
         {"priority", std::string(protocol::to_string(announcement.priority))},
         {"require_ack", announcement.require_ack},
         {"from", announcement.sender_name}}));
    return p;
  });
  KABAN_TRY(posted, explain(std::move(done), why));
  out << posted.id << '\n';
  return ok();
}

Result<void> admin_acks(const fs::path& dir, std::string_view message_id, Listing how,
                        std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Messaging messaging(*db);
  KABAN_TRY(report, explain(messaging.acks(message_id, why), why));
  std::vector<std::vector<std::string>> rows;
  std::size_t delivered = 0, read = 0, acked = 0;
  for (const AckStatus& p : report.people) {
    delivered += p.delivered_at != 0;
    read += p.read_at != 0;
    acked += p.acked_at != 0;
    rows.push_back({p.login, p.name, mark_time(p.delivered_at, how), mark_time(p.read_at, how),
                    mark_time(p.acked_at, how)});
  }
  const std::vector<std::string> header = {"LOGIN", "NAME", "DELIVERED", "READ", "ACKNOWLEDGED"};
  if (how == Listing::csv) {
    print_csv(out, header, rows);
    return ok();
  }
  print_table(out, header, rows);
  const std::size_t total = report.people.size();
  if (report.require_ack)
    out << acked << " of " << total << " acknowledged (" << read << " read, " << delivered
        << " delivered)\n";
  else
    out << "this message does not ask for acknowledgement; " << read << " of " << total << " read ("
        << delivered << " delivered)\n";
  return ok();
}

Result<void> admin_report_completion(const fs::path& dir, std::string_view course_id, Listing how,
                                     std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  LearningRecords records(*db);
  auto report = records.completion_report(course_id);
  if (!report && report.error() == errc::no_such_course)
    why = "there is no course \"" + std::string(course_id) +
          "\"; `admin course list` shows the published ones";
  KABAN_TRY(rows_in, explain(std::move(report), why));
  std::vector<std::vector<std::string>> rows;
  for (const CourseCompletion& c : rows_in)
    rows.push_back({c.course_id, c.login, c.name,
                    std::to_string(c.percent) + (how == Listing::csv ? "" : "%"),
                    mark_time(c.completed_at, how), time_spent(c.time_spent_seconds, how)});
  const std::vector<std::string> header = {"COURSE",   "LOGIN",     "NAME",
                                           "PROGRESS", "COMPLETED", "TIME SPENT"};
  if (how == Listing::csv)
    print_csv(out, header, rows);
  else
    print_table(out, header, rows);
  return ok();
}

Result<void> admin_export_statements(const fs::path& dir, UnixTime since, const fs::path& file,
                                     std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  LearningRecords records(*db);
  if (file.empty()) {
    KABAN_TRYV(explain(records.export_statements(since, out), why));
    return ok();
  }
  // Written under a temporary name and renamed: FILE is either the whole export or untouched.
  const fs::path temp = file.string() + "." + crypto::to_hex(crypto::random_bytes(4)) + ".tmp";
  std::ofstream stream(temp, std::ios::binary | std::ios::trunc);
  if (!stream) {
    why = "cannot write " + temp.string() + "; check the directory exists and is writable";
    return errc::storage_failed;
  }
  auto written = records.export_statements(since, stream);
  stream.close();
  std::error_code ec;
  if (!written || !stream) {
    fs::remove(temp, ec);
    why = written ? "writing " + file.string() + " failed (disk full?); nothing was exported"
                  : written.error().message();
    return written ? std::error_code(errc::storage_failed) : written.error();
  }
  fs::rename(temp, file, ec);
  if (ec) {
    fs::remove(temp, ec);
    why = "cannot create " + file.string() + ": " + ec.message();
    return errc::storage_failed;
  }
  out << "exported " << count_of(written.value(), "statement", "statements") << " to "
      << file.string() << '\n';
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
