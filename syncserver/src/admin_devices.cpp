// The admin commands for devices and compliance (declared in admin.hpp): the device list, the
// compliance report, revocation, IT's wipe and lock, and unlock codes. Every action is recorded
// in the audit log in the transaction that makes it.
#include "kaban/server/admin.hpp"

#include <map>

#include <SQLiteCpp/Database.h>
#include <nlohmann/json.hpp>

#include "admin_output.hpp"
#include "channel_rows.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/compliance.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/policies.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using detail::explain;
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

constexpr std::int64_t kSecondsPerMinute = 60;
constexpr std::int64_t kSecondsPerDay = 86'400;

UnixTime from_unix(std::int64_t seconds) {
  return UnixTime{std::chrono::seconds{seconds}};
}

// A time of the device record (Unix seconds, 0 = none): RFC 3339 or null in JSON.
json json_time(std::int64_t t) {
  return t == 0 ? json(nullptr) : json(protocol::format_timestamp(t));
}

// The device an admin names: an id or a unique prefix of at least 8 hex digits.
Result<Device> named_device(Directory& directory, std::string_view name, std::string& why) {
  auto device = directory.resolve_device(name);
  if (device)
    return device;
  const std::string quoted = in_quotes(name);
  if (device.error() == errc::no_such_device)
    why = name.size() < kMinDevicePrefix
              ? "give at least " + std::to_string(kMinDevicePrefix) +
                    " hex digits of the device id; `admin device list` shows them"
              : "no device id starts with " + quoted + "; `admin device list` shows them";
  else if (device.error() == errc::ambiguous_device)
    why = "more than one device id starts with " + quoted + "; give more of the id";
  return explain(std::move(device), why);
}

std::string who(const Device& d) {
  return d.id + " (" + d.login + (d.description.name.empty() ? "" : ", " + d.description.name) +
         ")";
}

json reasons_json(const std::vector<protocol::ComplianceReason>& reasons) {
  json list = json::array();
  for (const auto& r : reasons)
    list.push_back({{"setting", r.setting},
                    {"action", std::string(protocol::to_string(r.action))},
                    {"message", r.message}});
  return list;
}

std::string reasons_text(const std::vector<protocol::ComplianceReason>& reasons) {
  if (reasons.empty())
    return "-";
  std::string text;
  for (const auto& r : reasons)
    text += (text.empty() ? "" : "; ") + r.message;
  return text;
}

json commands_json(const std::vector<QueuedCommand>& commands) {
  json list = json::array();
  for (const QueuedCommand& c : commands)
    list.push_back({{"id", c.id},
                    {"kind", std::string(protocol::to_string(c.kind))},
                    {"requested_by", c.requested_by},
                    {"requested_at", json_time(c.requested_at)},
                    {"sent_at", json_time(c.sent_at)}});
  return list;
}

// "wipe #3 (sent), lock #4" or "-".
std::string commands_text(const std::vector<QueuedCommand>& commands) {
  if (commands.empty())
    return "-";
  std::string text;
  for (const QueuedCommand& c : commands) {
    text += text.empty() ? "" : ", ";
    text += std::string(protocol::to_string(c.kind)) + " #" + std::to_string(c.id) +
            (c.sent_at != 0 ? " (sent)" : " (not sent yet)");
  }
  return text;
}

std::string status_text(const Device& d) {
  if (d.revoked)
    return "revoked";
  if (d.wiped_at != 0)
    return "wiped";
  if (d.locked_at != 0)
    return "locked";
  return "active";
}

// The earlier of two deadlines, either 0 for "none".
std::int64_t earliest(std::int64_t a, std::int64_t b) {
  if (a == 0)
    return b;
  if (b == 0)
    return a;
  return std::min(a, b);
}

// Where the device's lease stands at `now`. A device that has been offline longer than its
// policy allows counts as blocked (or due for a wipe) even if it never heard so: the deadlines
// are the lease it holds and those its policy gives today, whichever come first.
std::string lease_state(const Device& d, const protocol::Policy& policy, UnixTime now) {
  if (d.revoked)
    return "revoked";
  if (d.wiped_at != 0)
    return "wiped";
  if (d.policy_version == 0)
    return "never checked in";
  const std::int64_t t = to_unix(now);
  const std::int64_t last = to_unix(d.last_checkin_at);
  const std::int64_t wipe_at =
      earliest(d.wipe_after,
               policy.offline_wipe_days > 0 ? last + policy.offline_wipe_days * kSecondsPerDay : 0);
  if (d.verdict == protocol::Verdict::wipe || (wipe_at != 0 && t >= wipe_at))
    return "wipe due";
  if (d.verdict == protocol::Verdict::blocked)
    return "blocked (not compliant)";
  const std::int64_t block_at =
      earliest(d.block_after, policy.offline_block_minutes > 0
                                  ? last + policy.offline_block_minutes * kSecondsPerMinute
                                  : 0);
  if (block_at != 0 && t >= block_at)
    return "blocked (no check-in for " + describe_duration(now - d.last_checkin_at) + ")";
  return "within grace";
}

// Each device with its pending commands, read on one connection.
struct DeviceRow {
  Device device;
  std::vector<QueuedCommand> commands;
};

Result<std::vector<DeviceRow>> read_devices(Directory& directory) {
  KABAN_TRY(devices, directory.list_devices());
  std::vector<DeviceRow> rows;
  rows.reserve(devices.size());
  for (Device& d : devices) {
    KABAN_TRY(commands, directory.pending_commands(d.id));
    rows.push_back({std::move(d), std::move(commands)});
  }
  return rows;
}

// Queues a wipe or lock, or names the one already pending.
Result<void> queue(const fs::path& dir, std::string_view name, protocol::CommandKind kind,
                   std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Directory directory(*db);
  KABAN_TRY(device, named_device(directory, name, why));
  const std::string kind_text(protocol::to_string(kind));
  KABAN_TRY(pending, explain(directory.pending_commands(device.id), why));
  for (const QueuedCommand& c : pending) {
    if (c.kind == kind) {
      out << "a " << kind_text << " is already pending for device " << who(device) << " as command "
          << c.id << " (requested " << format_time(from_unix(c.requested_at)) << " by "
          << c.requested_by << "); nothing changed\n";
      return ok();
    }
  }
  auto queued = directory.queue_command(device.id, kind, admin_actor(), now());
  if (!queued && queued.error() == errc::device_revoked)
    why = "device " + who(device) + " is revoked: it will not check in again, so a " + kind_text +
          " would never reach it. Nothing was queued";
  KABAN_TRY(id, explain(std::move(queued), why));
  out << kind_text << " queued for device " << who(device) << " as command " << id
      << ": it is sent at the device's next check-in and stays pending until the device "
         "reports it done ("
      << (kind == protocol::CommandKind::wipe ? "`admin device list` shows when"
                                              : "`admin device unlock` gives the code to undo it")
      << ")\n";
  return ok();
}

}  // namespace

Result<void> admin_device_list(const fs::path& dir, Listing how, std::ostream& out,
                               std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Directory directory(*db);
  KABAN_TRY(rows, explain(read_devices(directory), why));
  if (how == Listing::json) {
    json list = json::array();
    for (const DeviceRow& row : rows) {
      const Device& d = row.device;
      list.push_back({{"id", d.id},
                      {"login", d.login},
                      {"platform", d.description.platform},
                      {"os_version", d.description.os_version},
                      {"model", d.description.model},
                      {"name", d.description.name},
                      {"agent_version", d.description.agent_version},
                      {"enrolled_at", iso_time(d.enrolled_at)},
                      {"last_checkin_at", iso_time(d.last_checkin_at)},
                      {"verdict", std::string(protocol::to_string(d.verdict))},
                      {"reasons", reasons_json(d.reasons)},
                      {"certificate_not_after", json_time(d.certificate_not_after)},
                      {"revoked", d.revoked},
                      {"revoked_at", json_time(d.revoked_at)},
                      {"wiped", d.wiped_at != 0},
                      {"wiped_at", json_time(d.wiped_at)},
                      {"wipe_reason", d.wipe_reason},
                      {"locked", d.locked_at != 0},
                      {"locked_at", json_time(d.locked_at)},
                      {"lock_reason", d.lock_reason},
                      {"pending_commands", commands_json(row.commands)}});
    }
    out << list.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> table;
  for (const DeviceRow& row : rows) {
    const Device& d = row.device;
    table.push_back(
        {d.login, shown_id(d.id, how), d.description.platform, d.description.name,
         how == Listing::csv ? iso_time(d.last_checkin_at) : format_time(d.last_checkin_at),
         std::string(protocol::to_string(d.verdict)), status_text(d), commands_text(row.commands)});
  }
  const std::vector<std::string> header = {"LOGIN",         "DEVICE",  "PLATFORM", "NAME",
                                           "LAST CHECK-IN", "VERDICT", "STATUS",   "COMMANDS"};
  if (how == Listing::csv)
    print_csv(out, header, table);
  else
    print_table(out, header, table);
  return ok();
}

Result<void> admin_device_revoke(const fs::path& dir, std::string_view device_name,
                                 std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Directory directory(*db);
  KABAN_TRY(device, named_device(directory, device_name, why));
  if (device.revoked) {
    out << "device " << who(device) << " was already revoked on "
        << format_time(from_unix(device.revoked_at)) << "; nothing changed\n";
    return ok();
  }
  KABAN_TRYV(explain(
      in_transaction(
          *db,
          [&]() -> Result<void> {
            KABAN_TRYV(directory.revoke_device(device.id, now()));
            return record_admin_action(*db, "device_revoked", device.id, {{"login", device.login}});
          }),
      why));
  out << "revoked device " << who(device)
      << ": its certificates are refused from its next connection. To use Kaban on it again, "
         "give "
      << device.login << " a new enrollment code (`admin enroll-code " << device.login << "`)\n";
  return ok();
}

Result<void> admin_device_wipe(const fs::path& dir, std::string_view device, std::ostream& out,
                               std::string& why) {
  return queue(dir, device, protocol::CommandKind::wipe, out, why);
}

Result<void> admin_device_lock(const fs::path& dir, std::string_view device, std::ostream& out,
                               std::string& why) {
  return queue(dir, device, protocol::CommandKind::lock, out, why);
}

Result<void> admin_device_unlock(const fs::path& dir, std::string_view device_name,
                                 std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Directory directory(*db);
  KABAN_TRY(device, named_device(directory, device_name, why));
  // Recorded before it is shown: a code nobody can account for is never printed.
  auto code = in_transaction(*db, [&]() -> Result<std::string> {
    KABAN_TRY(text, directory.unlock_code(device.id));
    KABAN_TRYV(record_admin_action(*db, "unlock_code_shown", device.id, {{"login", device.login}}));
    return text;
  });
  KABAN_TRY(text, explain(std::move(code), why));
  out << "unlock code for device " << who(device) << ": " << text << '\n'
      << "Read it out to " << device.login
      << ", who types it with `kaban unlock`. It works once; the device gets a new one when it "
         "is used.";
  if (device.locked_at == 0)
    out << " (The server has no report that this device is locked; it may have locked itself "
           "since its last check-in.)";
  out << '\n';
  return ok();
}

Result<void> admin_report_compliance(const fs::path& dir, Listing how, std::ostream& out,
                                     std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Directory directory(*db);
  Policies policies(*db);
  KABAN_TRY(rows, explain(read_devices(directory), why));
  const UnixTime t = now();
  std::map<std::string, protocol::Policy> policy_of;
  json list = json::array();
  std::vector<std::vector<std::string>> table;
  for (const DeviceRow& row : rows) {
    const Device& d = row.device;
    auto cached = policy_of.find(d.login);
    if (cached == policy_of.end()) {
      KABAN_TRY(effective, explain(policies.effective_for(d.login), why));
      cached = policy_of.emplace(d.login, effective.policy).first;
    }
    const std::string lease = lease_state(d, cached->second, t);
    const bool checked_in = d.policy_version != 0;
    const std::string verdict =
        checked_in ? std::string(protocol::to_string(d.verdict)) : std::string("-");
    if (how == Listing::json) {
      list.push_back(
          {{"id", d.id},
           {"login", d.login},
           {"platform", d.description.platform},
           {"name", d.description.name},
           {"verdict", checked_in ? json(verdict) : json(nullptr)},
           {"reasons", reasons_json(d.reasons)},
           {"last_checkin_at", checked_in ? json(iso_time(d.last_checkin_at)) : json(nullptr)},
           {"lease", lease},
           {"block_after", json_time(d.block_after)},
           {"wipe_after", json_time(d.wipe_after)},
           {"pending_commands", commands_json(row.commands)}});
      continue;
    }
    std::string last = "never";
    if (checked_in)
      last = how == Listing::csv ? iso_time(d.last_checkin_at) : format_time(d.last_checkin_at);
    table.push_back({shown_id(d.id, how), d.login, d.description.platform, verdict,
                     reasons_text(d.reasons), last, lease, commands_text(row.commands)});
  }
  if (how == Listing::json) {
    out << list.dump(2) << '\n';
    return ok();
  }
  const std::vector<std::string> header = {"DEVICE",  "LOGIN",         "PLATFORM", "VERDICT",
                                           "REASONS", "LAST CHECK-IN", "LEASE",    "COMMANDS"};
  if (how == Listing::csv)
    print_csv(out, header, table);
  else
    print_table(out, header, table);
  return ok();
}

}  // namespace kaban::server
