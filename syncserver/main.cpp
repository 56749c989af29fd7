// kaban-server: the sync server's command-line front end over kaban::server.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <mutex>

#include <CLI/CLI.hpp>

#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/protocol/version.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/api.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/http_server.hpp"

namespace {

namespace fs = std::filesystem;
using namespace kaban::server;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;

int fail(const std::string& what, const std::error_code& e, const std::string& why) {
  std::cerr << "kaban-server: " << what << ": " << (why.empty() ? e.message() : why) << '\n';
  return kExitFailed;
}

int report(const kaban::Result<void>& r, const std::string& what, const std::string& why) {
  return r ? kExitOk : fail(what, r.error(), why);
}

// Splits HOST:PORT (HOST may be a bracketed IPv6 address).
bool split_listen(const std::string& text, std::string& host, std::uint16_t& port) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return false;
  host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  try {
    const int p = std::stoi(text.substr(colon + 1));
    if (p < 0 || p > 65535)
      return false;
    port = static_cast<std::uint16_t>(p);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

// --since TIME: an RFC 3339 time or a date; "" is the beginning. std::nullopt (after saying so
// on stderr) for anything else.
std::optional<UnixTime> parse_since(const std::string& text) {
  if (text.empty())
    return UnixTime{};
  const auto parsed = kaban::protocol::parse_timestamp(text);
  if (!parsed) {
    std::cerr << "kaban-server: --since takes an RFC 3339 time (2026-11-23T10:00:00Z or "
                 "2026-11-23T19:00:00+09:00) or a date (2026-11-23)\n";
    return std::nullopt;
  }
  return UnixTime{std::chrono::seconds{*parsed}};
}

int serve(const fs::path& dir, const std::string& listen, int threads) {
  HttpServerConfig config;
  if (!split_listen(listen, config.listen_host, config.listen_port)) {
    std::cerr << "kaban-server: --listen takes HOST:PORT, e.g. 127.0.0.1:8443 (port 0 picks a "
                 "free port)\n";
    return kExitFailed;
  }
  config.threads = threads;
  auto identity = load_identity(dir);
  if (!identity)
    return fail("cannot serve " + dir.string(), identity.error(), "");

  // SIGINT and SIGTERM are taken by sigwait() below; blocking them before any thread starts
  // keeps every io thread from receiving them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Api api(dir, identity.value());
  std::mutex log_mutex;
  HttpsServer server(config, identity.value().tls_identity(), api, [&](const std::string& line) {
    std::lock_guard lock(log_mutex);
    std::fprintf(stderr, "%s\n", line.c_str());
  });
  if (auto started = server.start(); !started)
    return fail("cannot listen on " + listen, started.error(), "");
  const std::string host = config.listen_host.find(':') != std::string::npos
                               ? "[" + config.listen_host + "]"
                               : config.listen_host;
  const std::string address = host + ":" + std::to_string(server.port());
  if (auto recorded = record_listen_address(dir, address); !recorded)
    std::cerr << "kaban-server: warning: could not record the listen address: "
              << recorded.error().message() << '\n';
  std::cout << "listening on https://" << address << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::fprintf(stderr, "{\"event\":\"stopping\",\"signal\":%d}\n", signal_number);
  server.stop();
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "kaban-server: distributes courses, relays staff messages and enforces device policy\n"
      "for Kaban agents over mutual TLS. Every command works on one data directory."};
  app.set_version_flag("--version", std::string(kaban::protocol::kaban_version()));
  app.require_subcommand(1);
  std::string data_dir;
  app.add_option("--data-dir", data_dir, "The server's data directory (keys, database, content)")
      ->required()
      ->envname("KABAN_SERVER_DATA");

  auto* init = app.add_subcommand("init",
                                  "Create a new data directory: CA, TLS certificate, "
                                  "content-signing key, database");
  std::vector<std::string> names;
  init->add_option("--name", names,
                   "A host name or IP address the server's certificate is valid for "
                   "(repeatable; default: localhost and 127.0.0.1)");

  auto* serve_cmd = app.add_subcommand("serve", "Serve HTTPS until SIGTERM or Ctrl-C");
  std::string listen = "127.0.0.1:8443";
  int threads = 2;
  serve_cmd->add_option("--listen", listen, "HOST:PORT to listen on (port 0 picks a free port)")
      ->capture_default_str();
  serve_cmd->add_option("--threads", threads, "I/O threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();

  auto* admin = app.add_subcommand(
      "admin",
      "Manage users, groups, policies, enrollment codes, courses, devices, channels and "
      "announcements; reports and the audit log");
  admin->require_subcommand(1);
  bool as_json = false;
  bool as_csv = false;

  auto* user = admin->add_subcommand("user", "Staff accounts");
  user->require_subcommand(1);
  auto* user_add = user->add_subcommand("add", "Add a user");
  std::string login, name;
  user_add->add_option("LOGIN", login, "Login: lower-case letters, digits, . _ -")->required();
  user_add->add_option("--name", name, "The person's name, as shown to IT")->required();
  auto* user_list = user->add_subcommand("list", "List users");
  user_list->add_flag("--json", as_json, "Print JSON");

  auto* enroll_code = admin->add_subcommand(
      "enroll-code", "Make a one-time enrollment code; prints the line the staff member enters");
  std::string ttl_text = "72h";
  std::string server_address;
  enroll_code->add_option("LOGIN", login, "Whose device it enrolls")->required();
  enroll_code->add_option("--ttl", ttl_text, "How long the code stays valid (30m, 72h, 7d)")
      ->capture_default_str();
  enroll_code->add_option("--server", server_address,
                          "HOST:PORT devices connect to (default: where serve last listened)");

  auto* course = admin->add_subcommand("course", "Courses");
  course->require_subcommand(1);
  auto* publish = course->add_subcommand("publish",
                                         "Publish FOLDER/course.json and its files as "
                                         "the course's next version");
  std::string folder, course_id;
  publish->add_option("FOLDER", folder, "Folder holding course.json")->required();
  auto* course_list = course->add_subcommand("list", "List courses");
  course_list->add_flag("--json", as_json, "Print JSON");
  auto* course_assign = course->add_subcommand(
      "assign",
      "Set who may see a course: all, or groups (replaces the assignment; devices of people "
      "who lose it remove it at their next sync)");
  std::vector<std::string> audiences;
  course_assign->add_option("COURSE", course_id, "The course id")->required();
  course_assign->add_option("AUDIENCE", audiences, "all, or one or more groups")->required();
  auto* import_scorm = course->add_subcommand(
      "import-scorm",
      "Publish a SCORM 1.2 package (a zip with imsmanifest.xml at its root) as a course: each "
      "item of its default organization becomes a lesson");
  std::string package_file;
  import_scorm->add_option("PACKAGE", package_file, "The package's .zip file")->required();
  import_scorm->add_option("--id", course_id,
                           "Course id (default: from the manifest's identifier)");
  auto* bundle = course->add_subcommand(
      "bundle",
      "Write a course's signed manifest and every chunk to one file, for devices with no "
      "network (`kaban import FILE`)");
  std::int64_t bundle_version = 0;
  std::string bundle_file;
  bundle->add_option("COURSE", course_id, "The course id")->required();
  bundle->add_option("--out", bundle_file, "The bundle file to write")->required();
  bundle->add_option("--version", bundle_version, "A version other than the latest")
      ->check(CLI::PositiveNumber);
  auto* retire = course->add_subcommand(
      "retire",
      "Retire a course: devices remove it at their next sync and its chunks are no longer "
      "served (publishing it again brings it back)");
  retire->add_option("COURSE", course_id, "The course id")->required();
  auto* expire = course->add_subcommand(
      "expire",
      "Set the date after which devices drop a course, even offline (a new version with the "
      "same files; devices fetch only its manifest)");
  std::string expiry_text;
  expire->add_option("COURSE", course_id, "The course id")->required();
  expire
      ->add_option("WHEN", expiry_text,
                   "A date (2027-03-31, the start of that day in UTC), an RFC 3339 time, or "
                   "\"never\"")
      ->required();

  auto* gc = admin->add_subcommand(
      "gc",
      "Delete course versions superseded for longer than --keep and every chunk nothing uses "
      "any more");
  std::string keep_text = "7d";
  bool dry_run = false;
  gc->add_option("--keep", keep_text,
                 "How long a superseded version stays, for devices still downloading it")
      ->capture_default_str();
  gc->add_flag("--dry-run", dry_run, "Only say what would be deleted");

  auto* mirror = admin->add_subcommand(
      "mirror",
      "Content mirrors: HTTPS caches (nginx) near devices that serve course chunks, so a course "
      "crosses the city's network once per site (docs/content.md)");
  mirror->require_subcommand(1);
  MirrorOptions mirror_options;
  std::string mirror_out, mirror_cache_dir, mirror_name, crl_file, crl_valid_text = "7d";
  auto* mirror_add = mirror->add_subcommand(
      "add",
      "Register a mirror: issue its certificates and write them, its keys and a ready nginx.conf "
      "to --out; devices use it from their next sync");
  mirror_add->add_option("NAME", mirror_options.name, "Mirror name: lower-case letters, digits, -")
      ->required();
  mirror_add
      ->add_option("--host", mirror_options.host,
                   "HOST[:PORT] devices reach the mirror at (its certificate's name; port 443 "
                   "by default)")
      ->required();
  mirror_add->add_option("--url", mirror_options.url,
                         "https://HOST:PORT devices are told, when not that of --host");
  mirror_add->add_option("--origin", mirror_options.origin,
                         "HOST:PORT the mirror reaches this server at (default: where serve "
                         "last listened)");
  mirror_add
      ->add_option("--out", mirror_out,
                   "Folder to write the certificates, keys and nginx.conf to (made if missing)")
      ->required();
  mirror_add->add_option("--cache-dir", mirror_cache_dir,
                         "nginx's cache folder on the mirror (default: "
                         "/var/cache/nginx/kaban-NAME)");
  auto* mirror_list = mirror->add_subcommand("list", "List mirrors, in use and removed");
  mirror_list->add_flag("--json", as_json, "Print JSON");
  auto* mirror_remove = mirror->add_subcommand(
      "remove",
      "Remove a mirror: its certificate is refused from now on and devices stop using it");
  mirror_remove->add_option("NAME", mirror_name, "The mirror")->required();
  auto* mirror_crl = mirror->add_subcommand(
      "crl",
      "Write the list of revoked device certificates for the mirrors' nginx (ssl_crl); write it "
      "again after each revocation and before it expires");
  mirror_crl->add_option("--out", crl_file, "The file to write")->required();
  mirror_crl
      ->add_option("--valid-for", crl_valid_text, "How long nginx may use the list (1h to 365d)")
      ->capture_default_str();

  auto* device = admin->add_subcommand("device", "Enrolled devices");
  device->require_subcommand(1);
  auto* device_list =
      device->add_subcommand("list", "List devices with their verdict and pending commands");
  device_list->add_flag("--json", as_json, "Print JSON (each device with its id and login)");
  std::string device_id;
  auto* device_revoke = device->add_subcommand(
      "revoke", "Revoke a device: its certificate is refused from its next connection");
  auto* device_wipe = device->add_subcommand(
      "wipe",
      "Queue a wipe of Kaban's data on a device, carried out at its next check-in and "
      "acknowledged by it (pending until then)");
  auto* device_lock = device->add_subcommand(
      "lock", "Queue a lock: at its next check-in the device refuses its PIN until unlocked");
  auto* device_unlock = device->add_subcommand(
      "unlock",
      "Show the unlock code of a locked device, to read out to its owner (`kaban unlock CODE`)");
  for (auto* cmd : {device_revoke, device_wipe, device_lock, device_unlock})
    cmd->add_option("DEVICE", device_id, "Device id, or its first 8 or more hex digits")
        ->required();

  auto* group = admin->add_subcommand(
      "group", "Groups of users (policies, courses and announcements can target a group)");
  group->require_subcommand(1);
  std::string group_id, group_title, csv_file;
  std::vector<std::string> group_logins;
  auto* group_add = group->add_subcommand("add", "Create a group (it also has a group channel)");
  group_add->add_option("GROUP", group_id, "Group id: lower-case letters, digits, . _ -")
      ->required();
  group_add->add_option("--title", group_title, "What people see (default: the id)");
  auto* group_list = group->add_subcommand("list", "List groups, member counts and policies");
  group_list->add_flag("--json", as_json, "Print JSON");
  auto* group_members = group->add_subcommand("members", "Who belongs to a group");
  group_members->require_subcommand(1);
  auto* group_members_add = group_members->add_subcommand("add", "Add people to a group");
  auto* group_members_remove = group_members->add_subcommand(
      "remove", "Remove people from a group (their devices drop its courses at the next sync)");
  for (auto* cmd : {group_members_add, group_members_remove}) {
    cmd->add_option("GROUP", group_id, "The group")->required();
    cmd->add_option("LOGIN", group_logins, "One or more logins")->required();
  }
  auto* group_import = group->add_subcommand(
      "import",
      "Create users and add them to groups from a CSV file with columns login,name,groups "
      "(groups separated by ';'); all or nothing");
  group_import->add_option("FILE", csv_file, "The CSV file")->required()->check(CLI::ExistingFile);

  auto* policy = admin->add_subcommand("policy", "Device policies (see docs/policy.md)");
  policy->require_subcommand(1);
  std::string policy_file, policy_group, policy_login;
  auto* policy_set = policy->add_subcommand(
      "set",
      "Set the default policy, or a group's with --group, from a JSON file giving some settings "
      "(the rest keep their defaults); devices get it at their next check-in");
  policy_set->add_option("FILE", policy_file, "The policy file")->required();
  policy_set->add_option("--group", policy_group, "The group it applies to (default: everyone)");
  auto* policy_remove = policy->add_subcommand(
      "remove", "Remove a group's policy, or with no --group reset the default to built-ins");
  policy_remove->add_option("--group", policy_group, "The group whose policy goes");
  auto* policy_show = policy->add_subcommand(
      "show", "Show the policies set, or with --user the policy a user's devices are under");
  policy_show->add_option("--user", policy_login, "A login: its effective policy and sources");
  policy_show->add_flag("--json", as_json, "Print JSON");

  auto* audit = admin->add_subcommand(
      "audit", "The append-only log of admin actions and security events (UTC times)");
  std::string audit_since;
  audit->add_option("--since", audit_since,
                    "Only entries since this time (2026-11-23T10:00:00Z) or date (2026-11-23)");
  audit->add_flag("--json", as_json, "Print JSON");
  audit->add_flag("--csv", as_csv, "Print CSV");

  auto* channel = admin->add_subcommand("channel", "Group channels and who may announce");
  channel->require_subcommand(1);
  std::string channel_id, title;
  std::vector<std::string> logins;
  auto* channel_add = channel->add_subcommand("add", "Create a group channel");
  channel_add->add_option("NAME", channel_id, "Channel name: lower-case letters, digits, . _ -")
      ->required();
  channel_add->add_option("--title", title, "What members see (default: the name)");
  auto* channel_list = channel->add_subcommand("list", "List channels");
  channel_list->add_flag("--json", as_json, "Print JSON");
  auto* members = channel->add_subcommand("members", "Who belongs to a group channel");
  members->require_subcommand(1);
  auto* members_add = members->add_subcommand("add", "Add people to a group channel");
  auto* members_remove = members->add_subcommand(
      "remove", "Remove people from a group channel (their devices drop it)");
  for (auto* cmd : {members_add, members_remove}) {
    cmd->add_option("NAME", channel_id, "The group channel")->required();
    cmd->add_option("LOGIN", logins, "One or more logins")->required();
  }
  auto* senders = channel->add_subcommand("senders", "Who may post announcements besides IT");
  senders->require_subcommand(1);
  auto* senders_add = senders->add_subcommand("add", "Let people post to an audience");
  auto* senders_remove = senders->add_subcommand("remove", "Stop people posting to an audience");
  for (auto* cmd : {senders_add, senders_remove}) {
    cmd->add_option("AUDIENCE", channel_id, "all, or a group channel")->required();
    cmd->add_option("LOGIN", logins, "One or more logins")->required();
  }

  auto* announce = admin->add_subcommand(
      "announce", "Send an announcement from IT; prints its message id (for `admin acks`)");
  kaban::server::Announcement announcement;
  std::string priority_text = "normal";
  announce->add_option("AUDIENCE", announcement.audience, "all, or a group channel")->required();
  announce->add_option("TEXT", announcement.body, "The message (quote it)")->required();
  announce->add_option("--priority", priority_text, "normal, urgent or emergency")
      ->check(CLI::IsMember({"normal", "urgent", "emergency"}))
      ->capture_default_str();
  announce->add_flag("--require-ack", announcement.require_ack,
                     "Ask everyone to acknowledge it (see `admin acks`)");
  announce->add_option("--from", announcement.sender_name, "Who it is from, as people see it")
      ->capture_default_str();

  auto* acks = admin->add_subcommand("acks", "Who has received, read and acknowledged a message");
  std::string message_id;
  acks->add_option("MESSAGE", message_id, "The id `admin announce` printed")->required();
  acks->add_flag("--csv", as_csv, "Print CSV");

  auto* report_cmd = admin->add_subcommand("report", "Reports");
  report_cmd->require_subcommand(1);
  auto* completion = report_cmd->add_subcommand("completion", "Each person's progress per course");
  completion->add_option("--course", course_id, "Only this course");
  completion->add_flag("--csv", as_csv, "Print CSV");
  auto* compliance = report_cmd->add_subcommand(
      "compliance",
      "Per device: user, platform, verdict and reasons, last check-in, lease state, pending "
      "commands");
  compliance->add_flag("--csv", as_csv, "Print CSV");
  compliance->add_flag("--json", as_json, "Print JSON");

  auto* export_cmd = admin->add_subcommand("export", "Export data");
  export_cmd->require_subcommand(1);
  auto* export_statements =
      export_cmd->add_subcommand("statements", "Learning statements as xAPI JSON for an LRS");
  std::string since_text, out_file;
  export_statements->add_option("--since", since_text,
                                "Only those stored since this time (2026-11-23T10:00:00Z) or "
                                "date (2026-11-23)");
  export_statements->add_option("--out", out_file, "Write to FILE instead of standard output");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const fs::path dir = data_dir;
  const Listing how = as_json ? Listing::json : as_csv ? Listing::csv : Listing::table;
  std::string why;

  if (*init) {
    InitOptions options;
    if (!names.empty())
      options.names = names;
    if (auto r = init_data_dir(dir, options); !r)
      return fail("init " + dir.string(), r.error(), "");
    std::cout << "initialised " << dir.string() << "\nnext: kaban-server --data-dir "
              << dir.string() << " serve\n";
    return kExitOk;
  }
  if (*serve_cmd)
    return serve(dir, listen, threads);
  if (*user_add)
    return report(admin_user_add(dir, login, name, std::cout, why), "user add", why);
  if (*user_list)
    return report(admin_user_list(dir, how, std::cout, why), "user list", why);
  if (*enroll_code) {
    const auto ttl = parse_duration(ttl_text);
    if (!ttl) {
      std::cerr << "kaban-server: --ttl takes a number and a unit: 30m, 72h, 7d\n";
      return kExitFailed;
    }
    return report(admin_enroll_code(dir, login, *ttl, server_address, std::cout, why),
                  "enroll-code", why);
  }
  if (*publish)
    return report(admin_course_publish(dir, folder, std::cout, why), "course publish", why);
  if (*course_list)
    return report(admin_course_list(dir, how, std::cout, why), "course list", why);
  if (*import_scorm)
    return report(admin_course_import_scorm(dir, package_file, course_id, std::cout, why),
                  "course import-scorm", why);
  if (*bundle)
    return report(admin_course_bundle(dir, course_id, bundle_version, bundle_file, std::cout,
                                      &std::cerr, why),
                  "course bundle", why);
  if (*retire)
    return report(admin_course_retire(dir, course_id, std::cout, why), "course retire", why);
  if (*expire) {
    std::optional<UnixTime> when;
    if (expiry_text != "never") {
      const auto parsed = kaban::protocol::parse_timestamp(expiry_text);
      if (!parsed) {
        std::cerr << "kaban-server: course expire takes a date (2027-03-31), an RFC 3339 time "
                     "(2027-03-31T00:00:00+09:00) or \"never\"\n";
        return kExitFailed;
      }
      when = UnixTime{std::chrono::seconds{*parsed}};
    }
    return report(admin_course_expire(dir, course_id, when, std::cout, why), "course expire", why);
  }
  if (*gc) {
    const auto keep = parse_duration(keep_text);
    if (!keep) {
      std::cerr << "kaban-server: --keep takes a number and a unit: 12h, 7d, 30d\n";
      return kExitFailed;
    }
    return report(admin_gc(dir, *keep, dry_run, std::cout, why), "gc", why);
  }
  if (*mirror_add) {
    mirror_options.out = mirror_out;
    mirror_options.cache_dir = mirror_cache_dir;
    return report(admin_mirror_add(dir, mirror_options, std::cout, why), "mirror add", why);
  }
  if (*mirror_list)
    return report(admin_mirror_list(dir, how, std::cout, why), "mirror list", why);
  if (*mirror_remove)
    return report(admin_mirror_remove(dir, mirror_name, std::cout, why), "mirror remove", why);
  if (*mirror_crl) {
    const auto valid_for = parse_duration(crl_valid_text);
    if (!valid_for) {
      std::cerr << "kaban-server: --valid-for takes a number and a unit: 12h, 7d, 30d\n";
      return kExitFailed;
    }
    return report(admin_mirror_crl(dir, crl_file, *valid_for, std::cout, why), "mirror crl", why);
  }
  if (*device_list)
    return report(admin_device_list(dir, how, std::cout, why), "device list", why);
  if (*channel_add)
    return report(admin_channel_add(dir, channel_id, title, std::cout, why), "channel add", why);
  if (*channel_list)
    return report(admin_channel_list(dir, how, std::cout, why), "channel list", why);
  if (*members_add)
    return report(admin_channel_members_add(dir, channel_id, logins, std::cout, why),
                  "channel members add", why);
  if (*members_remove)
    return report(admin_channel_members_remove(dir, channel_id, logins, std::cout, why),
                  "channel members remove", why);
  if (*senders_add)
    return report(admin_channel_senders_add(dir, channel_id, logins, std::cout, why),
                  "channel senders add", why);
  if (*senders_remove)
    return report(admin_channel_senders_remove(dir, channel_id, logins, std::cout, why),
                  "channel senders remove", why);
  if (*announce) {
    announcement.priority =
        kaban::protocol::parse_priority(priority_text).value_or(kaban::protocol::Priority::normal);
    return report(admin_announce(dir, announcement, std::cout, why), "announce", why);
  }
  if (*acks)
    return report(admin_acks(dir, message_id, how, std::cout, why), "acks", why);
  if (*completion)
    return report(admin_report_completion(dir, course_id, how, std::cout, why), "report completion",
                  why);
  if (*export_statements) {
    const auto since = parse_since(since_text);
    if (!since)
      return kExitFailed;
    return report(admin_export_statements(dir, *since, out_file, std::cout, why),
                  "export statements", why);
  }
  if (*course_assign)
    return report(admin_course_assign(dir, course_id, audiences, std::cout, why), "course assign",
                  why);
  if (*device_revoke)
    return report(admin_device_revoke(dir, device_id, std::cout, why), "device revoke", why);
  if (*device_wipe)
    return report(admin_device_wipe(dir, device_id, std::cout, why), "device wipe", why);
  if (*device_lock)
    return report(admin_device_lock(dir, device_id, std::cout, why), "device lock", why);
  if (*device_unlock)
    return report(admin_device_unlock(dir, device_id, std::cout, why), "device unlock", why);
  if (*group_add)
    return report(admin_group_add(dir, group_id, group_title, std::cout, why), "group add", why);
  if (*group_list)
    return report(admin_group_list(dir, how, std::cout, why), "group list", why);
  if (*group_members_add)
    return report(admin_group_members_add(dir, group_id, group_logins, std::cout, why),
                  "group members add", why);
  if (*group_members_remove)
    return report(admin_group_members_remove(dir, group_id, group_logins, std::cout, why),
                  "group members remove", why);
  if (*group_import)
    return report(admin_group_import(dir, csv_file, std::cout, why), "group import", why);
  if (*policy_set)
    return report(admin_policy_set(dir, policy_file, policy_group, std::cout, why), "policy set",
                  why);
  if (*policy_remove)
    return report(admin_policy_remove(dir, policy_group, std::cout, why), "policy remove", why);
  if (*policy_show)
    return report(admin_policy_show(dir, policy_login, how, std::cout, why), "policy show", why);
  if (*audit) {
    const auto since = parse_since(audit_since);
    if (!since)
      return kExitFailed;
    return report(admin_audit(dir, *since, how, std::cout, why), "audit", why);
  }
  if (*compliance)
    return report(admin_report_compliance(dir, how, std::cout, why), "report compliance", why);
  std::cout << app.help();
  return kExitOk;
} catch (const std::exception& e) {
  std::cerr << "kaban-server: internal error: " << e.what() << '\n';
  return kExitFailed;
}
