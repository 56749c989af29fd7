// The admin commands for groups, CSV import, device policies, course assignment and the audit
// log (declared in admin.hpp). Each change runs in one write transaction with its audit entry.
#include "kaban/server/admin.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>
#include <nlohmann/json.hpp>

#include "admin_output.hpp"
#include "channel_rows.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/policy.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/messaging.hpp"
#include "kaban/server/policies.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using detail::count_of;
using detail::explain;
using detail::find_channel;
using detail::format_time;
using detail::in_quotes;
using detail::in_transaction;
using detail::iso_time;
using detail::now;
using detail::open;
using detail::print_csv;
using detail::print_table;
using detail::record_admin_action;
using detail::shown_id;

constexpr const char* kIdRule =
    "1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit";

// Why `id` cannot name a new group, or "" if it can. "all" names everyone in announcements and
// course assignments, "default" the policy for everyone.
std::string group_id_problem(std::string_view id) {
  if (!protocol::is_valid_id(id))
    return in_quotes(id) + " is not a group id: " + kIdRule;
  if (id == detail::kAllAudience)
    return "\"all\" names everyone; choose another name";
  if (id == kDefaultPolicyAudience)
    return "\"default\" names the policy for everyone; choose another name";
  return {};
}

// Fails with errc::no_such_group unless `id` is a group. Throws SQLite::Exception.
Result<void> require_group(SQLite::Database& db, std::string_view id, std::string& why) {
  if (detail::is_group(db, id))
    return ok();
  why = "there is no group " + in_quotes(id) +
        "; `admin group list` shows them and `admin group add` makes one. Nothing was changed";
  return errc::no_such_group;
}

// Reads the whole of `file` if it holds at most `max` bytes; else fails with `too_large`, `why`
// naming the file.
Result<std::string> read_bounded(const fs::path& file, std::size_t max, errc too_large,
                                 std::string& why) {
  std::error_code ec;
  if (fs::is_directory(file, ec)) {
    why = file.string() + " is a directory; name a file. Nothing was changed";
    return std::make_error_code(std::errc::is_a_directory);
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    const int error = errno != 0 ? errno : EIO;
    why = "cannot read " + file.string() + ": " + std::strerror(error) + ". Nothing was changed";
    return std::error_code(error, std::generic_category());
  }
  auto refuse = [&]() -> Result<std::string> {
    why = file.string() + " is larger than " + std::to_string(max) +
          " bytes, the most this command reads. Nothing was changed";
    return too_large;
  };
  const auto size = fs::file_size(file, ec);
  if (!ec && size > max)
    return refuse();
  // In pieces, and checked again: the file may have grown since, or not be a regular file.
  std::string text;
  if (!ec)
    text.reserve(static_cast<std::size_t>(size));
  std::array<char, 64 * 1024> piece;
  while (in) {
    in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
    text.append(piece.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > max)
      return refuse();
  }
  if (in.bad()) {
    why = "reading " + file.string() + " failed. Nothing was changed";
    return std::make_error_code(std::errc::io_error);
  }
  return text;
}

std::vector<std::string> to_vector(std::span<const std::string> items) {
  return {items.begin(), items.end()};
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string text;
  for (const std::string& item : items)
    text += (text.empty() ? "" : std::string(separator)) + item;
  return text;
}

// ---- CSV import ----

struct CsvRecord {
  std::size_t line = 0;  // where the record starts (a quoted field may span lines)
  std::vector<std::string> fields;
};

bool is_line_end(char c) {
  return c == '\n' || c == '\r';
}

// Reads RFC 4180 text one record at a time: fields separated by ',', records by CRLF, LF or CR,
// a field in double quotes may hold commas, line breaks and doubled quotes. A UTF-8 byte order
// mark at the start (spreadsheets write one) is skipped.
class CsvReader {
 public:
  explicit CsvReader(std::string_view text) : text_(text) {
    if (text_.starts_with("\xEF\xBB\xBF"))
      text_.remove_prefix(3);
  }

  // The next record, or false at the end. Fails with errc::invalid_import naming the line.
  Result<bool> next(CsvRecord& record, std::string& why) {
    if (i_ >= text_.size())
      return false;
    record.line = line_;
    record.fields.clear();
    while (true) {
      std::string field;
      const std::size_t number = record.fields.size() + 1;
      if (i_ < text_.size() && text_[i_] == '"') {
        KABAN_TRYV(read_quoted(field, number, why));
      } else {
        while (i_ < text_.size() && text_[i_] != ',' && !is_line_end(text_[i_])) {
          if (text_[i_] == '"') {
            why = "line " + std::to_string(line_) + ": field " + std::to_string(number) +
                  " holds a quote but does not start with one; put the field in quotes and "
                  "write the quote as \"\"";
            return errc::invalid_import;
          }
          field += text_[i_++];
        }
      }
      record.fields.push_back(std::move(field));
      if (i_ < text_.size() && text_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < text_.size() && text_[i_] == '\r')
        ++i_;
      if (i_ < text_.size() && text_[i_] == '\n')
        ++i_;
      ++line_;
      return true;
    }
  }

 private:
  Result<void> read_quoted(std::string& field, std::size_t number, std::string& why) {
    const std::size_t opened = line_;
    ++i_;
    while (true) {
      if (i_ >= text_.size()) {
        why = "line " + std::to_string(opened) + ": the quote that opens field " +
              std::to_string(number) + " is never closed";
        return errc::invalid_import;
      }
      const char c = text_[i_++];
      if (c == '"') {
        if (i_ < text_.size() && text_[i_] == '"') {
          field += '"';
          ++i_;
          continue;
        }
        break;
      }
      if (c == '\n' || (c == '\r' && (i_ >= text_.size() || text_[i_] != '\n')))
        ++line_;
      field += c;
    }
    if (i_ < text_.size() && text_[i_] != ',' && !is_line_end(text_[i_])) {
      why = "line " + std::to_string(line_) + ": text follows the closing quote of field " +
            std::to_string(number) + "; write a quote inside a quoted field as \"\"";
      return errc::invalid_import;
    }
    return ok();
  }

  std::string_view text_;
  std::size_t i_ = 0;
  std::size_t line_ = 1;
};

std::string trimmed(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos)
    return {};
  const auto last = text.find_last_not_of(" \t");
  return std::string(text.substr(first, last - first + 1));
}

std::string lower(std::string text) {
  for (char& c : text)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return text;
}

bool is_blank(const CsvRecord& r) {
  return std::all_of(r.fields.begin(), r.fields.end(),
                     [](const std::string& f) { return trimmed(f).empty(); });
}

bool is_header(const CsvRecord& r) {
  const std::size_t n = r.fields.size();
  return (n == 2 || n == 3) && lower(trimmed(r.fields[0])) == "login" &&
         lower(trimmed(r.fields[1])) == "name" &&
         (n == 2 || lower(trimmed(r.fields[2])) == "groups");
}

struct ImportRow {
  std::string login;
  std::string name;
  std::vector<std::string> groups;
};

// One line of the import, checked. Fails with errc::invalid_import naming the line.
Result<ImportRow> read_row(const CsvRecord& r, bool first, std::string& why) {
  const std::string at = "line " + std::to_string(r.line) + ": ";
  if (r.fields.size() > 3) {
    why = at + std::to_string(r.fields.size()) +
          " fields; a line is login,name,groups (groups separated by ';'). Put a name that holds "
          "a comma in quotes";
    return errc::invalid_import;
  }
  ImportRow row;
  row.login = trimmed(r.fields[0]);
  if (!protocol::is_valid_login(row.login)) {
    why = at + in_quotes(row.login) + " is not a login: " + kIdRule +
          (first ? " (a header line is login,name,groups)" : "");
    return errc::invalid_import;
  }
  row.name = r.fields.size() > 1 ? trimmed(r.fields[1]) : std::string();
  if (row.name.empty()) {
    why = at + "the name of " + row.login +
          " is empty; every line names its person (a known user keeps their name)";
    return errc::invalid_import;
  }
  if (row.name.size() > kMaxUserNameSize || !protocol::is_valid_message_text(row.name) ||
      row.name.find_first_of("\t\n") != std::string::npos) {
    why = at + "the name of " + row.login + " must be one line of 1 to " +
          std::to_string(kMaxUserNameSize) + " bytes of text";
    return errc::invalid_import;
  }
  if (r.fields.size() == 3) {
    std::string_view rest = r.fields[2];
    while (!rest.empty()) {
      const auto end = rest.find(';');
      const std::string group = trimmed(rest.substr(0, end));
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      if (group.empty())
        continue;
      if (auto problem = group_id_problem(group); !problem.empty()) {
        why = at + "group " + problem;
        return errc::invalid_import;
      }
      row.groups.push_back(group);
    }
    if (row.groups.size() > kMaxImportGroupsPerRow) {
      why = at + std::to_string(row.groups.size()) + " groups; a line names at most " +
            std::to_string(kMaxImportGroupsPerRow);
      return errc::invalid_import;
    }
  }
  return row;
}

Result<std::vector<ImportRow>> read_import(std::string_view text, const fs::path& file,
                                           std::string& why) {
  CsvReader reader(text);
  CsvRecord record;
  std::vector<ImportRow> rows;
  bool first = true;
  while (true) {
    KABAN_TRY(more, reader.next(record, why));
    if (!more)
      break;
    if (is_blank(record))
      continue;
    const bool header = first && is_header(record);
    const bool was_first = first;
    first = false;
    if (header)
      continue;
    if (rows.size() == kMaxImportRows) {
      why = file.string() + " names more than " + std::to_string(kMaxImportRows) +
            " users; split it into several files";
      return errc::invalid_import;
    }
    KABAN_TRY(row, read_row(record, was_first, why));
    rows.push_back(std::move(row));
  }
  if (rows.empty()) {
    why = file.string() + " names no users (it has only blank lines or a header); check the file";
    return errc::invalid_import;
  }
  return rows;
}

struct ImportCounts {
  std::size_t users_added = 0;
  std::vector<std::string> groups_created;
  std::size_t memberships = 0;  // named in the file, each (group, login) once
  std::size_t memberships_added = 0;
};

// Applies the rows inside the caller's transaction.
Result<ImportCounts> apply_import(SQLite::Database& db, const std::vector<ImportRow>& rows,
                                  std::string& why) {
  Directory directory(db);
  Messaging messaging(db);
  const UnixTime t = now();
  ImportCounts counts;
  std::map<std::string, std::set<std::string>> members;
  for (const ImportRow& row : rows) {
    auto added = directory.add_user(row.login, row.name, t);
    if (added)
      ++counts.users_added;
    else if (added.error() != errc::user_exists)
      return added.error();
    for (const std::string& group : row.groups)
      members[group].insert(row.login);
  }
  for (const auto& [group, logins] : members) {
    if (!find_channel(db, group)) {
      KABAN_TRYV(messaging.add_channel(group, "", t, why));
      counts.groups_created.push_back(group);
    }
    // add_members refuses a channel of another kind, naming it.
    const std::vector<std::string> list(logins.begin(), logins.end());
    KABAN_TRY(n, messaging.add_members(group, list, t, why));
    counts.memberships += list.size();
    counts.memberships_added += static_cast<std::size_t>(n);
  }
  return counts;
}

// ---- Policies ----

// A setting's value as a person reads it: text without quotes, anything else as compact JSON.
std::string setting_text(const json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

Result<void> refuse_default_group(std::string_view group, std::string& why) {
  if (group != kDefaultPolicyAudience)
    return ok();
  why = "\"default\" is the policy for everyone: leave out --group. Nothing was changed";
  return errc::no_such_group;
}

Result<void> show_policies(SQLite::Database& db, Listing how, std::ostream& out, std::string& why) {
  Policies policies(db);
  // One read snapshot for the version and the list.
  SQLite::Transaction snapshot(db);
  KABAN_TRY(version, explain(policies.version(), why));
  KABAN_TRY(list, explain(policies.list(), why));
  snapshot.commit();
  if (how == Listing::json) {
    json items = json::array();
    for (const AssignedPolicy& p : list)
      items.push_back({{"audience", p.audience},
                       {"revision", p.revision},
                       {"set_at", iso_time(p.set_at)},
                       {"document", json::parse(protocol::policy_file_to_json(p.file))}});
    out << json{{"version", version}, {"policies", std::move(items)}}.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const AssignedPolicy& p : list) {
    const json document = json::parse(protocol::policy_file_to_json(p.file));
    const std::string set = how == Listing::csv ? iso_time(p.set_at) : format_time(p.set_at);
    bool any = false;
    for (const std::string_view setting : protocol::kPolicySettings) {
      const auto value = document.find(std::string(setting));
      if (value == document.end())
        continue;
      rows.push_back({p.audience, std::string(setting), setting_text(*value), set});
      any = true;
    }
    if (!any)
      rows.push_back({p.audience, "-", "(no setting: the built-in defaults)", set});
  }
  const std::vector<std::string> header = {"AUDIENCE", "SETTING", "VALUE", "SET"};
  if (how == Listing::csv) {
    print_csv(out, header, rows);
    return ok();
  }
  if (list.empty()) {
    out << "no policy is set: every device is under the built-in defaults (docs/policy.md); "
           "policy version "
        << version << '\n';
    return ok();
  }
  print_table(out, header, rows);
  out << "policy version " << version << '\n';
  return ok();
}

Result<void> show_effective(SQLite::Database& db, std::string_view login, Listing how,
                            std::ostream& out, std::string& why) {
  Policies policies(db);
  SQLite::Transaction snapshot(db);
  KABAN_TRY(user, explain(Directory(db).find_user(login), why));
  if (!user) {
    why = "there is no user " + in_quotes(login) + "; `admin user list` shows them";
    return errc::no_such_user;
  }
  KABAN_TRY(effective, explain(policies.effective_for(login), why));
  KABAN_TRY(list, explain(policies.list(), why));
  snapshot.commit();

  // The files that took part, by audience, as JSON of their given settings.
  std::vector<std::pair<std::string, json>> sources;
  for (const AssignedPolicy& p : list) {
    if (std::find(effective.sources.begin(), effective.sources.end(), p.audience) !=
        effective.sources.end())
      sources.emplace_back(p.audience, json::parse(protocol::policy_file_to_json(p.file)));
  }
  const json values = json::parse(protocol::policy_to_json(effective.policy));
  // Where each setting came from: the files giving the value in force, or every file giving it
  // when the value merges several (per-platform versions); "built-in" when none gives it.
  json from = json::object();
  std::vector<std::vector<std::string>> rows;
  for (const std::string_view name : protocol::kPolicySettings) {
    const std::string setting(name);
    std::vector<std::string> giving, matching;
    for (const auto& [audience, document] : sources) {
      const auto value = document.find(setting);
      if (value == document.end())
        continue;
      giving.push_back(audience);
      if (values.contains(setting) && *value == values[setting])
        matching.push_back(audience);
    }
    std::vector<std::string> origin = giving.empty()     ? std::vector<std::string>{"built-in"}
                                      : matching.empty() ? giving
                                                         : matching;
    rows.push_back({setting, values.contains(setting) ? setting_text(values[setting]) : "",
                    join(origin, ", ")});
    from[setting] = std::move(origin);
  }
  if (how == Listing::json) {
    out << json{{"login", std::string(login)},
                {"version", effective.version},
                {"sources", effective.sources},
                {"policy", values},
                {"from", std::move(from)}}
               .dump(2)
        << '\n';
    return ok();
  }
  const std::vector<std::string> header = {"SETTING", "VALUE", "FROM"};
  if (how == Listing::csv) {
    print_csv(out, header, rows);
    return ok();
  }
  out << login << ": policy version " << effective.version << ", from "
      << (effective.sources.empty() ? std::string("the built-in defaults")
                                    : join(effective.sources, ", "))
      << '\n';
  print_table(out, header, rows);
  return ok();
}

std::string audience_text(const std::vector<std::string>& audiences) {
  std::vector<std::string> groups;
  bool everyone = false;
  for (const std::string& a : audiences) {
    if (a == detail::kAllAudience)
      everyone = true;
    else
      groups.push_back(a);
  }
  if (everyone)
    return groups.empty() ? "everyone" : "everyone (and " + join(groups, ", ") + ")";
  return "the members of " + join(groups, ", ");
}

}  // namespace

Result<void> admin_group_add(const fs::path& dir, std::string_view id, std::string_view title,
                             std::ostream& out, std::string& why) {
  if (auto problem = group_id_problem(id); !problem.empty()) {
    why = problem + ". Nothing was changed";
    return errc::invalid_channel;
  }
  const std::string shown(title.empty() ? id : title);
  KABAN_TRY(db, open(dir, why));
  Messaging messaging(*db);
  auto added = in_transaction(*db, [&]() -> Result<void> {
    auto made = messaging.add_channel(id, title, now(), why);
    if (!made && made.error() == errc::channel_exists)
      why = "a group or channel named " + in_quotes(id) +
            " already exists; choose another name, or add people to it with `admin group "
            "members add " +
            std::string(id) + " LOGIN...`";
    KABAN_TRYV(made);
    return record_admin_action(*db, "group_added", id, {{"title", shown}});
  });
  KABAN_TRYV(explain(std::move(added), why));
  out << "added group " << id << " (" << shown << ")\n";
  return ok();
}

Result<void> admin_group_list(const fs::path& dir, Listing how, std::ostream& out,
                              std::string& why) {
  KABAN_TRY(db, open(dir, why));
  KABAN_TRY(channels, explain(Messaging(*db).list_channels(), why));
  KABAN_TRY(policies, explain(Policies(*db).list(), why));
  std::set<std::string> with_policy;
  for (const AssignedPolicy& p : policies)
    with_policy.insert(p.audience);
  json list = json::array();
  std::vector<std::vector<std::string>> rows;
  for (const ChannelSummary& c : channels) {
    if (c.kind != protocol::ChannelKind::group)
      continue;
    const bool policy = with_policy.contains(c.id);
    list.push_back({{"id", c.id},
                    {"title", c.title},
                    {"members", c.members},
                    {"policy", policy},
                    {"created_at", iso_time(c.created_at)}});
    rows.push_back({c.id, c.title, std::to_string(c.members), policy ? "yes" : "-",
                    how == Listing::csv ? iso_time(c.created_at) : format_time(c.created_at)});
  }
  const std::vector<std::string> header = {"GROUP", "TITLE", "MEMBERS", "POLICY", "CREATED"};
  if (how == Listing::json)
    out << list.dump(2) << '\n';
  else if (how == Listing::csv)
    print_csv(out, header, rows);
  else
    print_table(out, header, rows);
  return ok();
}

namespace {

enum class Membership { add, remove };

Result<void> change_group_members(const fs::path& dir, std::string_view group,
                                  std::span<const std::string> logins, Membership change,
                                  std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Messaging messaging(*db);
  const bool adding = change == Membership::add;
  auto changed = in_transaction(*db, [&]() -> Result<int> {
    KABAN_TRYV(require_group(*db, group, why));
    // Messaging advances the policy version when someone joins or leaves: the group's policy
    // now applies to other people.
    KABAN_TRY(n, adding ? messaging.add_members(group, logins, now(), why)
                        : messaging.remove_members(group, logins, now(), why));
    if (n > 0) {
      KABAN_TRYV(record_admin_action(*db, adding ? "group_members_added" : "group_members_removed",
                                     group, {{"logins", to_vector(logins)}, {"changed", n}}));
    }
    return n;
  });
  KABAN_TRY(n, explain(std::move(changed), why));
  out << group << ": " << n << " of " << logins.size() << (adding ? " added" : " removed");
  if (static_cast<std::size_t>(n) < logins.size())
    out << (adding ? " (the others already were members)" : " (the others were not members)");
  out << '\n';
  return ok();
}

}  // namespace

Result<void> admin_group_members_add(const fs::path& dir, std::string_view group,
                                     std::span<const std::string> logins, std::ostream& out,
                                     std::string& why) {
  return change_group_members(dir, group, logins, Membership::add, out, why);
}

Result<void> admin_group_members_remove(const fs::path& dir, std::string_view group,
                                        std::span<const std::string> logins, std::ostream& out,
                                        std::string& why) {
  return change_group_members(dir, group, logins, Membership::remove, out, why);
}

Result<void> admin_group_import(const fs::path& dir, const fs::path& csv_file, std::ostream& out,
                                std::string& why) {
  KABAN_TRY(text, read_bounded(csv_file, kMaxImportFileSize, errc::invalid_import, why));
  auto rows = read_import(text, csv_file, why);
  if (!rows) {
    why += "; nothing was imported";
    return rows.error();
  }
  KABAN_TRY(db, open(dir, why));
  auto imported = in_transaction(*db, [&]() -> Result<ImportCounts> {
    KABAN_TRY(counts, apply_import(*db, rows.value(), why));
    KABAN_TRYV(record_admin_action(*db, "users_imported", csv_file.filename().string(),
                                   {{"file", csv_file.string()},
                                    {"lines", rows.value().size()},
                                    {"users_added", counts.users_added},
                                    {"groups_created", counts.groups_created},
                                    {"memberships_added", counts.memberships_added}}));
    return counts;
  });
  KABAN_TRY(counts, explain(std::move(imported), why));
  const std::size_t lines = rows.value().size();
  out << "imported " << count_of(lines, "line", "lines") << " of " << csv_file.string() << ": "
      << count_of(counts.users_added, "user", "users") << " added (" << lines - counts.users_added
      << " already known), " << count_of(counts.groups_created.size(), "group", "groups")
      << " created";
  if (!counts.groups_created.empty())
    out << " (" << join(counts.groups_created, ", ") << ')';
  out << ", " << count_of(counts.memberships_added, "membership", "memberships") << " added ("
      << counts.memberships - counts.memberships_added << " already held)\n";
  return ok();
}

Result<void> admin_policy_set(const fs::path& dir, const fs::path& policy_file,
                              std::string_view group, std::ostream& out, std::string& why) {
  KABAN_TRYV(refuse_default_group(group, why));
  KABAN_TRY(text,
            read_bounded(policy_file, protocol::kMaxPolicyFileSize, errc::invalid_policy, why));
  std::string parse_why;
  auto file = protocol::parse_policy_file(text, &parse_why);
  if (!file) {
    why = (parse_why.empty() ? file.error().message() : parse_why) + " (in " +
          policy_file.string() + "); nothing was changed. docs/policy.md lists the settings";
    return errc::invalid_policy;
  }
  const std::string audience(group.empty() ? kDefaultPolicyAudience : group);
  KABAN_TRY(db, open(dir, why));
  Policies policies(*db);
  auto set = in_transaction(*db, [&]() -> Result<std::int64_t> {
    if (!group.empty()) {
      KABAN_TRYV(require_group(*db, group, why));
    }
    KABAN_TRY(version, policies.set(audience, file.value(), now()));
    KABAN_TRYV(record_admin_action(
        *db, "policy_set", audience,
        {{"version", version},
         {"file", policy_file.string()},
         {"document", json::parse(protocol::policy_file_to_json(file.value()))}}));
    return version;
  });
  KABAN_TRY(version, explain(std::move(set), why));
  out << (group.empty() ? std::string("set the default policy")
                        : "set the policy of group " + std::string(group))
      << " (" << count_of(file.value().given.size(), "setting", "settings") << "); policy version "
      << version << ": devices get it at their next check-in\n";
  return ok();
}

Result<void> admin_policy_remove(const fs::path& dir, std::string_view group, std::ostream& out,
                                 std::string& why) {
  KABAN_TRYV(refuse_default_group(group, why));
  const std::string audience(group.empty() ? kDefaultPolicyAudience : group);
  KABAN_TRY(db, open(dir, why));
  Policies policies(*db);
  // The new policy version, or std::nullopt if there was nothing to remove.
  auto removed = in_transaction(*db, [&]() -> Result<std::optional<std::int64_t>> {
    if (!group.empty()) {
      KABAN_TRYV(require_group(*db, group, why));
    }
    KABAN_TRY(was_set, policies.remove(audience));
    if (!was_set)
      return std::nullopt;
    KABAN_TRY(version, policies.version());
    KABAN_TRYV(record_admin_action(*db, "policy_removed", audience, {{"version", version}}));
    return version;
  });
  KABAN_TRY(version, explain(std::move(removed), why));
  if (!version)
    out << (group.empty() ? std::string("the default policy is the built-in defaults already")
                          : "group " + std::string(group) + " has no policy")
        << "; nothing was changed\n";
  else
    out << (group.empty() ? std::string("reset the default policy to the built-in defaults")
                          : "removed the policy of group " + std::string(group) +
                                ": its members are under the other policies that apply to them")
        << "; policy version " << *version << '\n';
  return ok();
}

Result<void> admin_policy_show(const fs::path& dir, std::string_view login, Listing how,
                               std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  try {
    if (login.empty())
      return show_policies(*db, how, out, why);
    return show_effective(*db, login, how, out, why);
  } catch (const SQLite::Exception& e) {
    why = std::string("the server database could not be read: ") + e.what();
    return errc::storage_failed;
  }
}

Result<void> admin_course_assign(const fs::path& dir, std::string_view course_id,
                                 std::span<const std::string> audiences, std::ostream& out,
                                 std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);
  std::vector<std::string> previous;
  auto assigned = in_transaction(*db, [&]() -> Result<std::vector<std::string>> {
    auto before = catalog.audiences(course_id);  // a course that does not exist: assign says so
    KABAN_TRYV(catalog.assign(course_id, audiences, &why));
    KABAN_TRY(was, std::move(before));
    previous = was;
    KABAN_TRY(now_assigned, catalog.audiences(course_id));
    KABAN_TRYV(record_admin_action(*db, "course_assigned", course_id,
                                   {{"audiences", now_assigned}, {"previous", was}}));
    return now_assigned;
  });
  KABAN_TRY(current, explain(std::move(assigned), why));
  out << course_id << ": visible to " << audience_text(current);
  if (previous != current)
    out << " (was: " << audience_text(previous)
        << "); devices of people who no longer see it remove it at their next sync";
  out << '\n';
  return ok();
}

Result<void> admin_audit(const fs::path& dir, UnixTime since, Listing how, std::ostream& out,
                         std::string& why) {
  KABAN_TRY(db, open(dir, why));
  KABAN_TRY(entries,
            explain(AuditLog(*db).since(since, std::numeric_limits<std::size_t>::max()), why));
  if (how == Listing::json) {
    json list = json::array();
    for (const AuditEntry& e : entries)
      list.push_back({{"seq", e.seq},
                      {"at", iso_time(e.at)},
                      {"actor", e.actor},
                      {"event", e.event},
                      {"subject", e.subject},
                      {"details", json::parse(e.details, nullptr, false)}});
    out << list.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> rows;
  constexpr std::string_view kDeviceActor = "device:";
  for (const AuditEntry& e : entries) {
    // A table names devices by the short id `admin device list` shows.
    std::string actor = e.actor;
    if (actor.starts_with(kDeviceActor))
      actor = std::string(kDeviceActor) + shown_id(actor.substr(kDeviceActor.size()), how);
    const std::string subject =
        protocol::is_sha256_hex(e.subject) ? shown_id(e.subject, how) : e.subject;
    rows.push_back({how == Listing::csv ? iso_time(e.at) : format_time(e.at), actor, e.event,
                    subject, e.details});
  }
  const std::vector<std::string> header = {"AT", "ACTOR", "EVENT", "SUBJECT", "DETAILS"};
  if (how == Listing::csv)
    print_csv(out, header, rows);
  else
    print_table(out, header, rows);
  return ok();
}

}  // namespace kaban::server
