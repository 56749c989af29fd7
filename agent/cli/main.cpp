// kaban: the staff member's command-line front end over kaban::agent.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kaban/agent/attachments.hpp"
#include "kaban/agent/bundle_import.hpp"
#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/guard.hpp"
#include "kaban/agent/learning_log.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/messages.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/agent/platform.hpp"
#include "kaban/agent/progress.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/protocol/policy.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/protocol/version.hpp"

namespace {

namespace fs = std::filesystem;
using namespace kaban;
using namespace kaban::agent;
using nlohmann::json;

// Exit codes (docs/agent.md lists them for scripts).
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;       // anything not below
constexpr int kExitUsage = 2;        // bad command line, enrollment line, or a refused request
constexpr int kExitNotEnrolled = 3;  // no store here: enroll first
constexpr int kExitWrongPin = 4;
constexpr int kExitDamaged = 5;         // the store failed authentication: wipe and sync again
constexpr int kExitOffline = 6;         // server unreachable or the connection broke: try later
constexpr int kExitRefused = 7;         // the server refused or is not the one pinned: ask IT
constexpr int kExitNotFound = 8;        // no such course, lesson, file, channel or message
constexpr int kExitBlocked = 9;         // the device policy blocks this now: sync, or get compliant
constexpr int kExitLocked = 10;         // locked: `kaban unlock CODE` with IT's code
constexpr int kExitWiped = 11;          // Kaban's data here was wiped: enroll again
constexpr int kExitBadBundle = 12;      // a bundle that is damaged, cut short or another server's
constexpr int kExitNotDownloaded = 13;  // a lesson's media is downloaded on demand: pinned now
constexpr int kExitInterrupted = 130;   // Ctrl-C or SIGTERM; what was done is kept

// Reporting a wipe or a lock to IT is worth a short wait, not a long one: the person is waiting
// for the command to end, and an event not sent now goes with the next report.
const ReportOptions kQuickReport{std::chrono::milliseconds(3'000),
                                 std::chrono::milliseconds(5'000)};

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) {
  g_stop.store(true);
}

int exit_code_for(std::error_code e) {
  if (e == errc::not_enrolled || e == errc::no_store)
    return kExitNotEnrolled;
  if (e == crypto::errc::wrong_key || e == errc::wrong_pin)
    return kExitWrongPin;
  if (e == crypto::errc::damaged)
    return kExitDamaged;
  if (e == errc::server_unreachable || e == errc::network_failed)
    return kExitOffline;
  if (e == errc::server_untrusted || e == errc::server_refused || e == errc::bad_response ||
      e == errc::policy_refused || e == errc::certificate_expired)
    return kExitRefused;
  if (e == errc::access_blocked)
    return kExitBlocked;
  if (e == errc::device_locked)
    return kExitLocked;
  if (e == errc::device_wiped)
    return kExitWiped;
  if (e == errc::bundle_invalid)
    return kExitBadBundle;
  if (e == errc::not_downloaded)
    return kExitNotDownloaded;
  if (e == errc::not_found)
    return kExitNotFound;
  if (e == errc::invalid_input || e == errc::not_allowed)
    return kExitUsage;
  if (e == errc::interrupted)
    return kExitInterrupted;
  return kExitFailed;
}

// One line: what failed, why, and what to do next. Returns the exit code for it.
int fail(std::string_view what, std::error_code e, std::string_view why = {}) {
  std::string text;
  if (e == crypto::errc::wrong_key)
    text = "wrong PIN; nothing was changed. Try again";
  else if (e == crypto::errc::damaged)
    text =
        "the store on this device is damaged and cannot be trusted; nothing was read from the "
        "damaged part. Move the data directory away, enroll again and sync";
  else if (!why.empty())
    text = std::string(why) + " (" + e.message() + ")";
  else
    text = e.message();
  std::cerr << "kaban: " << what << ": " << text << '\n';
  return exit_code_for(e);
}

std::string time_text(std::int64_t unix_seconds) {
  if (unix_seconds == 0)
    return "never";
  const std::time_t t = unix_seconds;
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

// How far `t` is from `now`, in its largest unit: "in 11 hours", "3 days ago", "just now".
std::string relative_text(std::int64_t t, std::int64_t now) {
  constexpr std::int64_t kMinute = 60, kHour = 60 * kMinute, kDay = 24 * kHour;
  const std::int64_t d = t > now ? t - now : now - t;
  std::string span;
  if (d >= 2 * kDay)
    span = std::to_string(d / kDay) + " days";
  else if (d >= 2 * kHour)
    span = std::to_string(d / kHour) + " hours";
  else if (d >= 2 * kMinute)
    span = std::to_string(d / kMinute) + " minutes";
  else
    return t > now ? "in a moment" : "just now";
  return t > now ? "in " + span : span + " ago";
}

// "2026-11-23 21:20 (in 11 hours)", or "never".
std::string when_text(std::int64_t t, std::int64_t now) {
  return t == 0 ? "never" : time_text(t) + " (" + relative_text(t, now) + ")";
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "14:03:22", local time: the prefix of every `sync --watch` line.
std::string clock_text() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

std::string plural(std::size_t n, std::string_view one, std::string_view many = {}) {
  return std::to_string(n) + " " +
         std::string(n == 1 ? one : (many.empty() ? std::string(one) + "s" : std::string(many)));
}

// The first line of `file` without its line end (a PIN from --pin-file); `what` names it in
// the error.
Result<std::string> first_line_of(const std::string& file, std::string_view what,
                                  std::string& why) {
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line)) {
    why = "cannot read " + std::string(what) + " from " + file;
    return errc::storage_failed;
  }
  if (!line.empty() && line.back() == '\r')
    line.pop_back();
  return line;
}

struct Globals {
  std::string data_dir;
  std::string pin_file;
  std::string new_pin_file;  ///< `kaban change-pin`: the new PIN for scripts
  bool json = false;

  fs::path dir() const {
    if (!data_dir.empty())
      return data_dir;
    if (const char* home = std::getenv("KABAN_HOME"); home && *home)
      return home;
    return platform::default_data_dir();
  }

  // The PIN from --pin-file, KABAN_PIN, or the terminal, in that order.
  Result<std::string> pin(std::string_view prompt, std::string& why) const {
    if (!pin_file.empty())
      return first_line_of(pin_file, "the PIN", why);
    if (const char* env = std::getenv("KABAN_PIN"); env)
      return std::string(env);
    auto typed = platform::read_secret(prompt);
    if (!typed)
      why = "no PIN given: type it on a terminal, or set KABAN_PIN or --pin-file for scripts";
    return typed;
  }

  // A new PIN given by a script (`kaban change-pin`: --new-pin-file, then KABAN_NEW_PIN), or
  // nullopt when it is to be typed.
  Result<std::optional<std::string>> scripted_new_pin(std::string& why) const {
    if (!new_pin_file.empty()) {
      KABAN_TRY(line, first_line_of(new_pin_file, "the new PIN", why));
      return std::optional<std::string>(std::move(line));
    }
    if (const char* env = std::getenv("KABAN_NEW_PIN"); env)
      return std::optional<std::string>(env);
    return std::optional<std::string>();
  }
};

// The guard of a store directory, with trusted time raised to the clocks now.
struct GuardView {
  GuardState state;
  std::int64_t now = 0;
};

Result<GuardView> read_guard(const fs::path& dir) {
  GuardView view;
  const ClockReading clock = read_clock_now();
  KABAN_TRY(state, update_guard(dir, [&](GuardState& g) { view.now = trusted_time(g, clock); }));
  view.state = std::move(state);
  return view;
}

std::string last_sync_sentence(const GuardState& state, std::int64_t now) {
  if (state.last_checkin_at == 0)
    return "This device has not checked in under a device policy yet.";
  return "Last sync: " + when_text(state.last_checkin_at, now) + ".";
}

// Reports queued events (a wipe, a lock) if any, with short waits. True if none is left.
bool report_events(const fs::path& dir) {
  auto guard = load_guard(dir);
  if (!guard || guard.value().unreported.empty())
    return true;
  std::string why;
  (void)report_device_events(dir, kQuickReport, why);
  auto after = load_guard(dir);
  return after && after.value().unreported.empty();
}

// A wiped device acknowledges, then erases: the store is closed, the wipe reported to IT (if
// the network allows), and the store erased if that is still to do. `why` is the guard's
// sentence when the caller has one.
int device_wiped(const fs::path& dir, std::optional<Store>& store, std::string why) {
  store.reset();
  const bool reported = report_events(dir);
  auto guard = load_guard(dir);
  if (guard && guard.value().wiped_at > 0 && Store::exists(dir)) {
    if (!erase_store(dir)) {
      std::cerr << "kaban: Kaban's data on this device must be wiped, but the erase could not be "
                   "completed; nothing can be opened. Check the permissions of "
                << dir.string() << ", then run any kaban command to finish it\n";
      return kExitWiped;
    }
    guard = load_guard(dir);
  }
  // The guard's own words once the erase is done ("... was wiped at TIME because REASON").
  if (guard && guard.value().wiped_at > 0) {
    std::string words;
    (void)check_access(guard.value(), Purpose::sync, guard.value().high_water, words);
    if (!words.empty())
      why = std::move(words);
  }
  std::cerr << "kaban: "
            << (why.empty() ? std::string("Kaban's data on this device was wiped") : why)
            << (reported ? " IT has been told."
                         : " IT is told the next time kaban runs here with a network.")
            << '\n';
  return kExitWiped;
}

int device_locked(const fs::path& dir, std::string_view why) {
  report_events(dir);
  std::string sentence;
  if (auto view = read_guard(dir))
    sentence = " " + last_sync_sentence(view.value().state, view.value().now);
  std::cerr << "kaban: " << why << sentence << '\n';
  return kExitLocked;
}

// Opens the store with `pin` under the guard, for `purpose`. On a refusal prints what happened,
// since when, and what to do, and returns the exit code.
int open_guarded_store(const fs::path& dir, std::string_view pin, Purpose purpose,
                       std::optional<Store>& store, GuardView* view_out = nullptr) {
  std::string why;
  auto opened = open_guarded(dir, pin, read_clock_now(), why);
  if (!opened) {
    if (opened.error() == errc::device_wiped)
      return device_wiped(dir, store, why);
    if (opened.error() == errc::device_locked)
      return device_locked(dir, why);
    if (opened.error() == errc::wrong_pin) {
      std::cerr << "kaban: cannot open the store in " << dir.string() << ": " << why << '\n';
      return kExitWrongPin;
    }
    return fail("cannot open the store in " + dir.string(), opened.error(), why);
  }
  store.emplace(std::move(opened).value());
  auto view = read_guard(dir);
  if (!view) {
    store.reset();
    return fail("cannot read the device guard in " + dir.string(), view.error(),
                "guard.json beside the store could not be read or written; nothing was "
                "changed. Check the directory's permissions and free space");
  }
  if (auto allowed = check_access(view.value().state, purpose, view.value().now, why); !allowed) {
    if (allowed.error() == errc::device_wiped)
      return device_wiped(dir, store, why);
    store.reset();
    if (allowed.error() == errc::device_locked)
      return device_locked(dir, why);
    std::string since;
    // The offline refusal says already how long it has been.
    if (access_at(view.value().state, view.value().now) == Access::policy_blocked)
      since = " " + last_sync_sentence(view.value().state, view.value().now);
    std::cerr << "kaban: " << why << since << '\n';
    return exit_code_for(allowed.error());
  }
  // A course past its expiry goes before anything is read, offline too (by trusted time).
  auto expired = Library(*store).remove_expired(view.value().now);
  if (!expired) {
    store.reset();
    return fail("cannot remove expired courses from the store in " + dir.string(), expired.error());
  }
  for (const std::string& id : expired.value())
    std::cerr << "kaban: course " << id << " has expired; IT set it to leave devices, and it was "
              << "removed from this one\n";
  if (view_out)
    *view_out = std::move(view).value();
  return kExitOk;
}

// A directory without a store: wiped (its guard says so), or never enrolled.
int no_store(const fs::path& dir, std::optional<Store>& store) {
  if (auto guard = load_guard(dir); guard && guard.value().wiped_at > 0)
    return device_wiped(dir, store, "");
  return fail("no Kaban store in " + dir.string(), errc::not_enrolled);
}

// Every command that reads the store comes through here: the PIN, the guard, and the access
// rule for what the command is for.
int open_store(const Globals& g, Purpose purpose, std::optional<Store>& store,
               GuardView* view = nullptr) {
  const fs::path dir = g.dir();
  if (!Store::exists(dir))
    return no_store(dir, store);
  std::string why;
  auto pin = g.pin("PIN: ", why);
  if (!pin)
    return fail("cannot open the store", pin.error(), why);
  const int rc = open_guarded_store(dir, pin.value(), purpose, store, view);
  crypto::secure_wipe(pin.value());
  return rc;
}

// The store and who it belongs to: what the message and progress commands need.
struct Session {
  std::optional<Store> store;
  std::optional<DeviceIdentity> identity;
};

int open_session(const Globals& g, Session& session, std::string_view what,
                 Purpose purpose = Purpose::content, GuardView* view = nullptr) {
  if (int rc = open_store(g, purpose, session.store, view); rc != kExitOk)
    return rc;
  auto identity = load_identity(*session.store);
  if (!identity)
    return fail(what, identity.error());
  session.identity.emplace(std::move(identity).value());
  return kExitOk;
}

Messages messages_of(Session& s) {
  return Messages(*s.store, s.identity->login, s.identity->user_name);
}

// What the PIN rules of `policy` ask, for the prompt: "at least 8 characters, not a run like
// 123456 or one repeated digit".
std::string pin_rules_text(const protocol::Policy& policy) {
  std::string text = "at least " + std::to_string(policy.pin_min_length) + " characters";
  if (policy.pin_block_simple)
    text += ", not a run like 123456 or one repeated digit";
  return text;
}

// Asks for a new PIN twice on the terminal until it is acceptable under `policy`.
Result<std::string> ask_new_pin(const protocol::Policy& policy, std::string_view what) {
  for (;;) {
    auto first = platform::read_secret("New PIN: ");
    if (!first) {
      fail(what, first.error(),
           "no PIN given: type it on a terminal, or set KABAN_PIN or --pin-file for scripts");
      return first.error();
    }
    std::string why;
    if (!check_new_pin(first.value(), policy, why)) {
      std::cout << why << ". Try again.\n";
      continue;
    }
    auto again = platform::read_secret("Repeat the PIN: ");
    if (!again) {
      fail(what, again.error());
      return again.error();
    }
    if (again.value() == first.value())
      return std::move(first).value();
    std::cout << "The two PINs differ. Try again.\n";
  }
}

int run_enroll(const Globals& g, const std::string& line_text) {
  std::string why;
  auto line = protocol::EnrollmentLine::parse(line_text, &why);
  if (!line) {
    std::cerr << "kaban: enroll: " << why
              << ". Enter the whole line IT gave you, starting with kaban://\n";
    return kExitUsage;
  }
  const fs::path dir = g.dir();
  if (Store::exists(dir))
    return fail("enroll", errc::already_enrolled, dir.string() + " already holds a Kaban store");

  // A PIN given by a script is checked against the built-in rules before the code is spent on
  // the server, and against the server's policy once it answered.
  std::string pin;
  const bool scripted = !g.pin_file.empty() || std::getenv("KABAN_PIN");
  if (scripted) {
    auto given = g.pin("", why);
    if (!given)
      return fail("enroll", given.error(), why);
    pin = std::move(given).value();
    if (!check_new_pin(pin, why)) {
      std::cerr << "kaban: enroll: " << why << "; nothing was sent to the server\n";
      return kExitUsage;
    }
  }
  // A wiped enrollment of this directory still owes IT its report: this is its last chance,
  // since the new enrollment replaces the guard.
  report_events(dir);

  auto enrollment = request_enrollment(line.value(), {}, why);
  if (!enrollment)
    return fail("enroll with " + line.value().host, enrollment.error(), why);
  const protocol::Policy& policy = enrollment.value().policy;

  if (scripted) {
    if (!check_new_pin(pin, policy, why)) {
      crypto::secure_wipe(pin);
      std::cerr << "kaban: enroll: the PIN does not meet this server's device policy: " << why
                << ". The enrollment code is now used and nothing was stored on this device: ask "
                   "IT for a new code, then enroll with a PIN of "
                << pin_rules_text(policy) << "\n";
      return kExitUsage;
    }
  } else {
    std::cout << "Enrolled. Choose a PIN for this device (" << pin_rules_text(policy)
              << "); it protects the data stored here.\n";
    auto chosen = ask_new_pin(policy, "enroll");
    if (!chosen)
      return exit_code_for(chosen.error());
    pin = std::move(chosen).value();
  }
  auto done = complete_enrollment(dir, enrollment.value(), pin);
  crypto::secure_wipe(pin);
  if (!done)
    return fail("enroll: storing the enrollment in " + dir.string(), done.error());
  const Enrollment& e = enrollment.value();
  std::cout << "enrolled as " << e.login << " (" << e.user_name << ") with " << line.value().host
            << ":" << line.value().port << "\ndevice id " << e.device_id << "\nnext: kaban sync\n";
  return kExitOk;
}

// `kaban change-pin`: the current PIN opens the store (wrong ones count), the new one must meet
// the policy in force.
int run_change_pin(const Globals& g) {
  const fs::path dir = g.dir();
  std::optional<Store> store;
  if (!Store::exists(dir))
    return no_store(dir, store);
  std::string why;
  auto scripted = g.scripted_new_pin(why);
  if (!scripted)
    return fail("change-pin", scripted.error(), why);
  auto old_pin = g.pin("Current PIN: ", why);
  if (!old_pin)
    return fail("change-pin", old_pin.error(), why);
  GuardView view;
  if (int rc = open_guarded_store(dir, old_pin.value(), Purpose::sync, store, &view);
      rc != kExitOk) {
    crypto::secure_wipe(old_pin.value());
    return rc;
  }
  const protocol::Policy policy = current_policy(view.state);
  std::string new_pin;
  if (scripted.value()) {
    new_pin = std::move(*scripted.value());
  } else {
    std::cout << "Choose the new PIN (" << pin_rules_text(policy) << ").\n";
    auto chosen = ask_new_pin(policy, "change-pin");
    if (!chosen) {
      crypto::secure_wipe(old_pin.value());
      return exit_code_for(chosen.error());
    }
    new_pin = std::move(chosen).value();
  }
  auto changed = change_pin(*store, old_pin.value(), new_pin, policy, why);
  crypto::secure_wipe(old_pin.value());
  crypto::secure_wipe(new_pin);
  if (!changed) {
    if (changed.error() == errc::invalid_input) {
      std::cerr << "kaban: change-pin: " << why << "; the PIN was not changed\n";
      return kExitUsage;
    }
    return fail("change-pin", changed.error(), why);
  }
  std::cout << "PIN changed; use the new PIN from now on\n";
  return kExitOk;
}

// One clause about the message lane of a sync or watch round.
std::string message_summary(const SyncReport& r) {
  if (!r.messages_offered)
    return "the server has no message lane yet; messages wait on this device";
  std::vector<std::string> parts;
  std::string received = plural(r.messages_received, "new message");
  if (r.urgent_received)
    received += " (" + std::to_string(r.urgent_received) + " urgent)";
  parts.push_back(received);
  if (r.outbox_sent)
    parts.push_back(plural(r.outbox_sent, "outbox item") + " sent");
  if (r.outbox_rejected)
    parts.push_back(plural(r.outbox_rejected, "outbox item") +
                    " refused by the server (see `kaban outbox`)");
  if (r.attachments_fetched || r.attachment_bytes_fetched)
    parts.push_back(plural(r.attachments_fetched, "attachment") + " (" +
                    format_bytes(r.attachment_bytes_fetched) + ") downloaded");
  if (r.statements_received)
    parts.push_back(plural(r.statements_received, "learning record") + " from your other devices");
  std::string text;
  for (const std::string& part : parts)
    text += (text.empty() ? "" : ", ") + part;
  return text;
}

std::string course_summary(const SyncReport& r) {
  return plural(r.new_versions, "new course version") + ", " + std::to_string(r.chunks_downloaded) +
         " chunks (" + format_bytes(r.bytes_downloaded) + ") downloaded";
}

// The reasons' sentences, from `least` severe up ("" if none).
std::string reasons_text(const std::vector<protocol::ComplianceReason>& reasons,
                         protocol::ComplianceAction least = protocol::ComplianceAction::none) {
  std::string text;
  for (const protocol::ComplianceReason& r : reasons) {
    if (r.action >= least)
      text += (text.empty() ? "" : "; ") + (r.message.empty() ? r.setting : r.message);
  }
  return text;
}

// What the check-in said about the device and what sync did about it, one line each.
std::vector<std::string> policy_lines(const SyncReport& r) {
  std::vector<std::string> lines;
  const std::string reasons = reasons_text(r.reasons);
  switch (r.verdict) {
    case protocol::Verdict::compliant:
      break;
    case protocol::Verdict::warn:
      lines.push_back("device policy: warning" + (reasons.empty() ? "" : ": " + reasons));
      break;
    case protocol::Verdict::blocked:
      lines.push_back(
          "device policy: BLOCKED" + (reasons.empty() ? "" : ": " + reasons) +
          ". Only messages from IT were fetched (`kaban messages`); courses and other messages "
          "wait, with your data kept, until a sync finds this device compliant");
      break;
    case protocol::Verdict::wipe:
      break;  // sync fails with device_wiped instead
  }
  if (r.certificate_renewed)
    lines.push_back("this device's certificate was renewed");
  if (!r.courses_removed.empty()) {
    std::string ids;
    for (const std::string& id : r.courses_removed)
      ids += (ids.empty() ? "" : ", ") + id;
    lines.push_back("removed from this device (no longer assigned to you): " + ids);
  }
  if (!r.courses_expired.empty()) {
    std::string ids;
    for (const std::string& id : r.courses_expired)
      ids += (ids.empty() ? "" : ", ") + id;
    lines.push_back("removed from this device (expired): " + ids);
  }
  for (const SyncReport::RefusedVersion& refused : r.courses_refused)
    lines.push_back("course " + refused.course_id + " version " + std::to_string(refused.version) +
                    " was refused and skipped (" + refused.reason +
                    "); the other courses synced. Tell IT");
  if (r.downloads_deferred == DownloadDeferral::wifi_only)
    lines.push_back("course downloads (" + format_bytes(r.deferred_bytes) +
                    ") wait for Wi-Fi or a wired network, as the device policy asks on a "
                    "cellular network; messages were exchanged");
  if (r.downloads_deferred == DownloadDeferral::cache_limit)
    lines.push_back("course downloads stopped at the device policy's storage limit of " +
                    format_bytes(r.cache_limit_bytes) + ": " + format_bytes(r.deferred_bytes) +
                    " wait, and the courses would need " + format_bytes(r.cache_needed_bytes) +
                    " in all. Ask IT to raise the limit (max_cache_mb)");
  if (r.downloads_deferred == DownloadDeferral::disk_full)
    lines.push_back("course downloads stopped: the disk is nearly full (" +
                    format_bytes(r.disk_free_bytes) + " free; " +
                    format_bytes(r.disk_needed_bytes) + " needed for all of it). " +
                    format_bytes(r.deferred_bytes) +
                    " of course content waits, and IT is told at the next check-in. Free space "
                    "on the device (`kaban storage` shows what Kaban can free), then sync again");
  return lines;
}

// A sync or watch that ended on the device policy or IT's command; -1 for any other failure.
int policy_outcome(const fs::path& dir, std::optional<Store>& store, std::error_code e,
                   const std::string& why) {
  if (e == errc::device_wiped)
    return device_wiped(dir, store, "");
  if (e == errc::device_locked) {
    store.reset();
    return device_locked(dir, why);
  }
  return -1;
}

int run_sync(const Globals& g, int parallel, bool watch_mode, int interval) {
  std::optional<Store> store;
  if (int rc = open_store(g, Purpose::sync, store); rc != kExitOk)
    return rc;
  const fs::path dir = store->dir();
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::unique_ptr<TransferProgress> progress;
  SyncOptions options;
  options.parallel_downloads = parallel;
  options.stop = &g_stop;
  options.on_download_start = [&](std::uint64_t bytes, std::size_t chunks) {
    if (progress)
      progress->finish();
    std::fprintf(stderr, "downloading %s in %zu chunks\n", format_bytes(bytes).c_str(), chunks);
    progress =
        std::make_unique<TransferProgress>(bytes, stderr, TransferProgress::style_for(stderr),
                                           platform::terminal_width(STDERR_FILENO));
  };
  options.on_bytes = [&](std::uint64_t bytes) { progress->add(bytes); };
  std::string why;

  if (watch_mode) {
    WatchOptions watching;
    watching.sync = options;
    watching.full_interval = std::chrono::seconds(interval);
    watching.on_round = [&](const WatchRound& round) {
      if (progress) {
        progress->finish();
        progress.reset();
      }
      const bool full = round.kind == WatchRound::Kind::full;
      std::string line = clock_text() + " ";
      if (round.error) {
        const auto retry = std::chrono::ceil<std::chrono::seconds>(round.retry_in).count();
        line += std::string(full ? "sync" : "messages") + " failed: " +
                (round.why.empty() ? round.error.message()
                                   : round.why + " (" + round.error.message() + ")") +
                "; what arrived is kept; retrying in " + std::to_string(retry) + " s";
      } else if (full) {
        line += "synced: " + course_summary(round.report) + "; " + message_summary(round.report);
        if (!round.report.mirror_fallback.empty())
          line += "; " + round.report.mirror_fallback;
        for (const std::string& ready : round.report.made_ready)
          line += "; ready offline: " + ready;
        for (const std::string& policy : policy_lines(round.report))
          line += "; " + policy;
      } else {
        line += "messages: " + message_summary(round.report);
      }
      std::cerr << line << std::endl;
    };
    std::cerr << clock_text() << " watching: new messages arrive as they are sent; a full sync "
              << "every " << interval << " s. Ctrl-C stops.\n";
    auto watched = watch(*store, watching, why);
    if (progress)
      progress->finish();
    if (!watched && watched.error() == errc::interrupted) {
      std::cerr << clock_text() << " stopped; everything received so far is kept\n";
      return kExitInterrupted;
    }
    if (!watched) {
      if (int rc = policy_outcome(dir, store, watched.error(), why); rc >= 0)
        return rc;
    }
    return fail("sync --watch", watched ? make_error_code(errc::interrupted) : watched.error(),
                why);
  }

  auto report = sync(*store, options, why);
  if (progress)
    progress->finish();
  if (!report) {
    if (int rc = policy_outcome(dir, store, report.error(), why); rc >= 0)
      return rc;
    return fail("sync", report.error(), why);
  }
  const SyncReport& r = report.value();
  for (const std::string& line : policy_lines(r))
    std::cout << line << '\n';
  if (r.verdict == protocol::Verdict::blocked) {
    std::cout << "messages from IT: " << plural(r.messages_received, "new message") << '\n';
    return kExitOk;
  }
  std::cout << "synced: " << course_summary(r) << '\n';
  if (!r.mirror_fallback.empty())
    std::cout << r.mirror_fallback << '\n';
  for (const std::string& ready : r.made_ready)
    std::cout << "ready offline: " << ready << '\n';
  std::cout << "messages: " << message_summary(r) << '\n';
  return kExitOk;
}

// Display name of a sender.
std::string sender_text(const MessageView& m) {
  if (m.own)
    return "you";
  if (m.sender.empty())
    return "IT";
  return m.sender_name.empty() ? m.sender : m.sender_name + " (" + m.sender + ")";
}

json message_json(const MessageView& m) {
  json attachments = json::array();
  for (const AttachmentView& a : m.attachments)
    attachments.push_back({{"name", a.name},
                           {"media_type", a.media_type},
                           {"size", a.size},
                           {"sha256", a.sha256},
                           {"downloaded", a.downloaded}});
  return {{"id", m.id},
          {"channel", m.channel},
          {"channel_title", m.channel_title},
          {"sender", m.sender},
          {"sender_name", m.sender_name},
          {"body", m.body},
          {"priority", std::string(protocol::to_string(m.priority))},
          {"require_ack", m.require_ack},
          {"acked", m.acked_at != 0},
          {"read", m.read},
          {"state", std::string(to_string(m.state))},
          {"reason", m.reason},
          {"created_at", protocol::format_timestamp(m.created_at)},
          {"accepted_at", protocol::format_timestamp(m.accepted_at)},
          {"seq", m.seq == 0 ? json(nullptr) : json(m.seq)},
          {"attachments", std::move(attachments)}};
}

int run_channels(const Globals& g) {
  Session s;
  if (int rc = open_session(g, s, "channels"); rc != kExitOk)
    return rc;
  auto channels = messages_of(s).channels();
  if (!channels)
    return fail("channels", channels.error());
  if (g.json) {
    json list = json::array();
    for (const ChannelInfo& c : channels.value())
      list.push_back({{"id", c.id},
                      {"kind", std::string(protocol::to_string(c.kind))},
                      {"title", c.title},
                      {"unread", c.unread},
                      {"can_post", c.can_post}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  if (channels.value().empty()) {
    std::cout << "no channels on this device yet; run `kaban sync` when online\n";
    return kExitOk;
  }
  std::size_t width = 0;
  for (const ChannelInfo& c : channels.value())
    width = std::max(width, c.id.size());
  for (const ChannelInfo& c : channels.value()) {
    std::cout << std::left << std::setw(static_cast<int>(width)) << c.id << "  " << std::setw(12)
              << protocol::to_string(c.kind) << "  " << c.title;
    if (c.unread)
      std::cout << "  (" << c.unread << " unread)";
    if (!c.can_post)
      std::cout << "  [read only]";
    std::cout << '\n';
  }
  return kExitOk;
}

int run_messages(const Globals& g, const std::string& channel, bool unread_only) {
  Session s;
  GuardView view;
  // it_messages: while the policy blocks the device, IT's messages are all it shows.
  if (int rc = open_session(g, s, "messages", Purpose::it_messages, &view); rc != kExitOk)
    return rc;
  Messages messages = messages_of(s);
  MessageFilter filter;
  filter.unread_only = unread_only;
  filter.from_it_only = access_at(view.state, view.now) == Access::policy_blocked;
  if (filter.from_it_only)
    std::cerr << "kaban: the device policy blocks Kaban on this device ("
              << reasons_text(view.state.reasons, protocol::ComplianceAction::block)
              << "); only messages from IT are shown. Your data is kept: once the device is "
                 "compliant, run `kaban sync`. "
              << last_sync_sentence(view.state, view.now) << '\n';
  if (!channel.empty()) {
    auto id = messages.resolve_channel(channel);
    if (!id)
      return fail("messages", id.error(),
                  "\"" + channel +
                      "\" is not a channel name: use a channel id as `kaban "
                      "channels` shows it, or @LOGIN for a direct conversation");
    filter.channel = std::move(id).value();
  }
  auto list = messages.list(filter);
  if (!list)
    return fail("messages", list.error(),
                list.error() == errc::not_found
                    ? "no channel \"" + channel + "\" on this device; `kaban channels` lists them"
                    : "");
  if (g.json) {
    json out = json::array();
    for (const MessageView& m : list.value())
      out.push_back(message_json(m));
    std::cout << out.dump(2) << '\n';
    return kExitOk;
  }
  if (list.value().empty()) {
    std::cout << (unread_only ? "no unread messages\n" : "no messages yet\n");
    return kExitOk;
  }
  for (const MessageView& m : list.value()) {
    std::vector<std::string> marks;
    if (m.priority != protocol::Priority::normal) {
      std::string p(protocol::to_string(m.priority));
      for (char& c : p)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      marks.push_back(p);
    }
    if (m.require_ack)
      marks.push_back(m.acked_at ? "acknowledged" : "needs acknowledgement");
    if (!m.read)
      marks.push_back("unread");
    if (m.state == MessageState::pending)
      marks.push_back("pending");
    if (m.state == MessageState::rejected)
      marks.push_back("not sent: " + m.reason);
    std::cout << time_text(m.accepted_at ? m.accepted_at : m.created_at) << "  " << m.channel
              << "  " << sender_text(m);
    for (std::size_t i = 0; i < marks.size(); ++i)
      std::cout << (i == 0 ? "  [" : ", ") << marks[i] << (i + 1 == marks.size() ? "]" : "");
    std::cout << '\n';
    std::istringstream body(m.body);
    for (std::string line; std::getline(body, line);)
      std::cout << "    " << line << '\n';
    for (const AttachmentView& a : m.attachments)
      std::cout << "    attachment: " << a.name << " (" << format_bytes(a.size) << ")"
                << (a.downloaded ? "" : ", not downloaded yet") << '\n';
    std::cout << "    id " << m.id << '\n';
  }
  return kExitOk;
}

// The media type of a few common kinds of file, by extension; "" for anything else.
std::string guess_media_type(const fs::path& file) {
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {".pdf", "application/pdf"}, {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
      {".png", "image/png"},       {".txt", "text/plain"}, {".wav", "audio/wav"},
      {".mp4", "video/mp4"}};
  std::string extension = file.extension().string();
  for (char& c : extension)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [suffix, type] : kTypes) {
    if (extension == suffix)
      return std::string(type);
  }
  return {};
}

// Reads the files to attach, checking the limits first so that each refusal names its file.
// Returns kExitOk, or the exit code after printing the one line.
int read_attachments(const std::vector<std::string>& paths, std::vector<AttachmentFile>& files) {
  if (paths.size() > protocol::kMaxAttachments) {
    std::cerr << "kaban: send: a message carries at most " << protocol::kMaxAttachments
              << " attachments; nothing was stored\n";
    return kExitUsage;
  }
  for (const std::string& path : paths) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec || !fs::is_regular_file(path, ec)) {
      std::cerr << "kaban: send: cannot attach " << path << ": "
                << (ec ? ec.message() : "not a regular file") << "; nothing was stored\n";
      return kExitUsage;
    }
    if (size == 0 || size > protocol::kMaxAttachmentSize) {
      std::cerr << "kaban: send: cannot attach " << path << ": it is "
                << (size == 0 ? "empty" : format_bytes(size)) << "; an attachment is 1 byte to "
                << format_bytes(protocol::kMaxAttachmentSize) << ". Nothing was stored\n";
      return kExitUsage;
    }
    AttachmentFile file;
    file.name = fs::path(path).filename().string();
    if (!protocol::is_valid_attachment_name(file.name)) {
      std::cerr << "kaban: send: cannot attach " << path << ": its name cannot be sent (at most "
                << protocol::kMaxAttachmentName
                << " bytes of text, without control characters, '\\' or ':'); copy it to a "
                   "plainer name. Nothing was stored\n";
      return kExitUsage;
    }
    for (const AttachmentFile& earlier : files) {
      if (earlier.name == file.name) {
        std::cerr << "kaban: send: two attachments are named \"" << file.name
                  << "\"; rename one. Nothing was stored\n";
        return kExitUsage;
      }
    }
    file.media_type = guess_media_type(path);
    std::ifstream in(path, std::ios::binary);
    file.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::cerr << "kaban: send: cannot read " << path << "; nothing was stored\n";
      return kExitFailed;
    }
    if (file.bytes.size() != size) {
      std::cerr << "kaban: send: " << path
                << " changed while it was read; nothing was stored. Try again\n";
      return kExitFailed;
    }
    files.push_back(std::move(file));
  }
  return kExitOk;
}

int run_send(const Globals& g, const std::string& channel, std::string text,
             const std::string& priority_text, bool require_ack,
             const std::vector<std::string>& attach) {
  const auto priority = protocol::parse_priority(priority_text);
  if (!priority) {
    std::cerr << "kaban: send: --priority is normal, urgent or emergency\n";
    return kExitUsage;
  }
  std::vector<AttachmentFile> files;
  if (int rc = read_attachments(attach, files); rc != kExitOk)
    return rc;
  if (text == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
      text.pop_back();
  }
  Session s;
  if (int rc = open_session(g, s, "send"); rc != kExitOk)
    return rc;
  Messages messages = messages_of(s);
  auto id = messages.resolve_channel(channel);
  if (!id)
    return fail("send", id.error(),
                "\"" + channel +
                    "\" is not a channel name: use a channel id as `kaban channels` "
                    "shows it, or @LOGIN for a direct conversation (not yourself)");
  auto sent = messages.send(id.value(), text, *priority, require_ack, unix_now(), files);
  if (!sent) {
    std::string why;
    if (sent.error() == errc::not_found)
      why = "you are not in channel \"" + id.value() +
            "\" on this device; `kaban channels` "
            "lists yours (run `kaban sync` first if you were just added)";
    else if (sent.error() == errc::not_allowed)
      why = "only IT and the channel's named senders post to \"" + id.value() + "\"";
    else if (sent.error() == errc::invalid_input)
      why = require_ack && protocol::channel_kind(id.value()) != protocol::ChannelKind::announcement
                ? "--require-ack is for announcement channels only"
                : "a message is 1 to " + std::to_string(protocol::kMaxMessageBody) +
                      " bytes of text without control characters";
    return fail("send", sent.error(), why.empty() ? why : why + "; nothing was stored");
  }
  std::cout << "pending: message " << sent.value().id << " to " << sent.value().channel;
  if (!files.empty()) {
    std::uint64_t bytes = 0;
    for (const AttachmentFile& f : files)
      bytes += f.bytes.size();
    std::cout << " with " << plural(files.size(), "attachment") << " (" << format_bytes(bytes)
              << ")";
  }
  std::cout << "; it goes with the next `kaban sync` (or at once under `kaban sync --watch`)\n";
  return kExitOk;
}

std::string attachment_names(const std::vector<AttachmentView>& attachments) {
  std::string names;
  for (const AttachmentView& a : attachments)
    names += (names.empty() ? "\"" : ", \"") + a.name + "\"";
  return names;
}

int run_attachment(const Globals& g, const std::string& message_id, const std::string& name,
                   const std::string& out_path) {
  Session s;
  if (int rc = open_session(g, s, "attachment"); rc != kExitOk)
    return rc;
  Attachments attachments(*s.store);
  auto listed = attachments.list(message_id);
  if (!listed)
    return fail("attachment", listed.error(),
                listed.error() == errc::not_found
                    ? "no message " + message_id +
                          " on this device; `kaban messages` lists messages with their ids"
                    : "");
  const std::vector<AttachmentView>& all = listed.value();
  if (all.empty()) {
    std::cerr << "kaban: attachment: message " << message_id << " has no attachments\n";
    return kExitNotFound;
  }
  const AttachmentView* chosen = nullptr;
  if (name.empty()) {
    if (all.size() > 1) {
      std::cerr << "kaban: attachment: message " << message_id << " has " << all.size()
                << " attachments (" << attachment_names(all)
                << "); name the one you want after the message id\n";
      return kExitUsage;
    }
    chosen = &all.front();
  } else {
    for (const AttachmentView& a : all) {
      if (a.name == name)
        chosen = &a;
    }
    if (chosen == nullptr) {
      std::cerr << "kaban: attachment: message " << message_id << " has no attachment \"" << name
                << "\"; it has " << attachment_names(all) << '\n';
      return kExitNotFound;
    }
  }
  const std::string not_yet = "\"" + chosen->name + "\" of message " + message_id +
                              " is not downloaded yet; run `kaban sync` when online, then try "
                              "again";
  if (!chosen->downloaded) {
    std::cerr << "kaban: attachment: " << not_yet << '\n';
    return kExitNotFound;
  }
  auto bytes = attachments.read(message_id, chosen->name);
  if (!bytes) {
    if (bytes.error() == errc::not_found) {
      std::cerr << "kaban: attachment: " << not_yet << '\n';
      return kExitNotFound;
    }
    if (bytes.error() == errc::content_invalid) {
      std::cerr << "kaban: attachment: the bytes of \"" << chosen->name
                << "\" on this device do not match its SHA-256; nothing was written. Ask the "
                   "sender to send it again\n";
      return kExitFailed;
    }
    return fail("attachment", bytes.error());
  }
  const std::string& data = bytes.value();
  if (out_path.empty()) {
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
    std::cout.flush();
    if (!std::cout)
      return fail("attachment: writing to stdout", errc::storage_failed);
    return kExitOk;
  }
  // Written to a temporary file renamed at the end, so FILE is whole or absent.
  const fs::path partial = out_path + ".partial";
  {
    std::ofstream file(partial, std::ios::binary | std::ios::trunc);
    file.write(data.data(), static_cast<std::streamsize>(data.size()));
    file.close();
    std::error_code ec;
    if (file)
      fs::rename(partial, out_path, ec);
    if (!file || ec) {
      fs::remove(partial, ec);
      std::cerr << "kaban: attachment: cannot write " << out_path
                << "; nothing was written. Check that its folder exists, is writable and has "
                   "room\n";
      return kExitFailed;
    }
  }
  std::cerr << "wrote " << out_path << " (" << format_bytes(data.size()) << ")\n";
  return kExitOk;
}

int run_read(const Globals& g, const std::vector<std::string>& targets) {
  Session s;
  if (int rc = open_session(g, s, "read"); rc != kExitOk)
    return rc;
  auto marked = messages_of(s).mark_read(targets, unix_now());
  if (!marked)
    return fail("read", marked.error(),
                marked.error() == errc::not_found
                    ? "one of the names is neither a channel nor a message on this device; "
                      "nothing was marked. `kaban channels` and `kaban messages` list them"
                    : "");
  std::cout << "marked " << plural(marked.value(), "message") << " read\n";
  return kExitOk;
}

int run_ack(const Globals& g, const std::string& id) {
  Session s;
  if (int rc = open_session(g, s, "ack"); rc != kExitOk)
    return rc;
  auto acked = messages_of(s).acknowledge(id, unix_now());
  if (!acked) {
    std::string why;
    if (acked.error() == errc::not_found)
      why = "no message " + id + " from the server on this device; `kaban messages` lists them";
    else if (acked.error() == errc::not_allowed)
      why = "message " + id + " does not ask for acknowledgement; nothing was recorded";
    return fail("ack", acked.error(), why);
  }
  if (acked.value())
    std::cout << "acknowledged " << id << "; the acknowledgement goes with the next sync\n";
  else
    std::cout << "message " << id << " was acknowledged already\n";
  return kExitOk;
}

int run_outbox(const Globals& g) {
  Session s;
  if (int rc = open_session(g, s, "outbox"); rc != kExitOk)
    return rc;
  auto entries = Outbox(*s.store).list();
  if (!entries)
    return fail("outbox", entries.error());
  if (g.json) {
    json list = json::array();
    for (const OutboxEntry& e : entries.value())
      list.push_back({{"id", e.id},
                      {"seq", e.seq},
                      {"kind", e.kind},
                      {"state", e.rejected ? "rejected" : "pending"},
                      {"code", e.code},
                      {"reason", e.reason},
                      {"created_at", protocol::format_timestamp(e.created_at)},
                      {"description", e.description}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  if (entries.value().empty()) {
    std::cout << "the outbox is empty: the server holds everything made on this device\n";
    return kExitOk;
  }
  for (const OutboxEntry& e : entries.value()) {
    std::cout << (e.rejected ? "rejected  " : "pending   ") << time_text(e.created_at) << "  "
              << e.description << "\n    id " << e.id << '\n';
    if (e.rejected)
      std::cout << "    refused by the server: " << e.reason << (e.code.empty() ? "" : " (")
                << e.code << (e.code.empty() ? "" : ")") << "\n    `kaban outbox discard " << e.id
                << "` removes it\n";
  }
  return kExitOk;
}

int run_outbox_discard(const Globals& g, const std::string& id) {
  Session s;
  if (int rc = open_session(g, s, "outbox discard"); rc != kExitOk)
    return rc;
  auto discarded = Outbox(*s.store).discard(id);
  if (!discarded) {
    std::string why;
    if (discarded.error() == errc::not_found)
      why = "no item " + id + " in the outbox; `kaban outbox` lists them";
    else if (discarded.error() == errc::not_allowed)
      why = "item " + id +
            " is still pending: it goes with the next sync, and only items the "
            "server refused can be discarded";
    return fail("outbox discard", discarded.error(), why);
  }
  std::cout << "discarded " << id << '\n';
  return kExitOk;
}

// A lesson named on the command line, with the error line for a name that does not resolve.
int resolve_lesson(LearningLog& log, std::string_view what, const std::string& text,
                   LessonTarget& target) {
  auto resolved = log.resolve_lesson(text);
  if (resolved) {
    target = std::move(resolved).value();
    return kExitOk;
  }
  if (resolved.error() == errc::invalid_input)
    return fail(what, resolved.error(),
                "lesson \"" + text + "\" is in several courses; name it as COURSE/LESSON");
  return fail(what, resolved.error(),
              resolved.error() == errc::not_found
                  ? "no lesson \"" + text +
                        "\" in a course on this device; `kaban courses` and "
                        "`kaban lessons COURSE` list them"
                  : "");
}

std::optional<std::int64_t> duration_option(const std::string& text, std::string_view what,
                                            int& rc) {
  rc = kExitOk;
  if (text.empty())
    return std::nullopt;
  auto seconds = parse_time_span(text);
  if (!seconds) {
    std::cerr << "kaban: " << what << ": --duration \"" << text
              << "\" is not a time span; write it like 10m, 1h30m or 90s\n";
    rc = kExitUsage;
  }
  return seconds;
}

int run_progress_list(const Globals& g) {
  Session s;
  if (int rc = open_session(g, s, "progress"); rc != kExitOk)
    return rc;
  LearningLog log(*s.store, learner_of(*s.identity));
  auto summary = log.summary();
  if (!summary)
    return fail("progress", summary.error());
  if (g.json) {
    json list = json::array();
    for (const LessonProgress& p : summary.value())
      list.push_back({{"id", p.lesson_id.empty() ? p.course_id : p.course_id + "/" + p.lesson_id},
                      {"course_id", p.course_id},
                      {"lesson_id", p.lesson_id},
                      {"best_percent", p.best_percent},
                      {"completed_at", protocol::format_timestamp(p.completed_at)},
                      {"best_score", p.best_score ? json(*p.best_score) : json(nullptr)},
                      {"seconds_spent", p.seconds_spent},
                      {"last_at", protocol::format_timestamp(p.last_at)},
                      {"pending_upload", p.pending_upload},
                      {"rejected", p.rejected}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  if (summary.value().empty()) {
    std::cout << "no progress recorded yet; `kaban progress COURSE/LESSON --percent N` records "
                 "some\n";
    return kExitOk;
  }
  for (const LessonProgress& p : summary.value()) {
    std::cout << (p.lesson_id.empty() ? p.course_id : p.course_id + "/" + p.lesson_id) << "  ";
    if (p.completed_at)
      std::cout << "completed " << time_text(p.completed_at);
    else
      std::cout << p.best_percent << "%";
    if (p.best_score)
      std::cout << ", score " << static_cast<int>(*p.best_score * 100 + 0.5) << "%";
    std::cout << ", time spent " << format_duration(std::chrono::seconds(p.seconds_spent))
              << ", last " << time_text(p.last_at);
    if (p.pending_upload)
      std::cout << ", pending upload";
    if (p.rejected)
      std::cout << ", " << p.rejected << " refused by the server (see `kaban outbox`)";
    std::cout << '\n';
  }
  return kExitOk;
}

int run_progress(const Globals& g, const std::string& lesson, std::optional<int> percent,
                 const std::string& duration_text) {
  if (!percent) {
    std::cerr << "kaban: progress: give --percent N (0 to 100) with the lesson, or no lesson "
                 "to list your progress\n";
    return kExitUsage;
  }
  int rc = kExitOk;
  const auto duration = duration_option(duration_text, "progress", rc);
  if (rc != kExitOk)
    return rc;
  Session s;
  if (rc = open_session(g, s, "progress"); rc != kExitOk)
    return rc;
  LearningLog log(*s.store, learner_of(*s.identity));
  LessonTarget target;
  if (rc = resolve_lesson(log, "progress", lesson, target); rc != kExitOk)
    return rc;
  auto recorded = log.record_progress(target, *percent, duration, unix_now());
  if (!recorded)
    return fail("progress", recorded.error());
  std::cout << "recorded " << *percent << "% of " << target.course_id << '/' << target.lesson_id
            << "; it is uploaded at the next sync\n";
  return kExitOk;
}

int run_complete(const Globals& g, const std::string& lesson, std::optional<double> score,
                 const std::string& duration_text) {
  int rc = kExitOk;
  const auto duration = duration_option(duration_text, "complete", rc);
  if (rc != kExitOk)
    return rc;
  Session s;
  if (rc = open_session(g, s, "complete"); rc != kExitOk)
    return rc;
  LearningLog log(*s.store, learner_of(*s.identity));
  LessonTarget target;
  if (rc = resolve_lesson(log, "complete", lesson, target); rc != kExitOk)
    return rc;
  auto recorded = log.record_completion(target, score, duration, unix_now());
  if (!recorded)
    return fail("complete", recorded.error());
  std::cout << "recorded completion of " << target.course_id << '/' << target.lesson_id
            << "; it is uploaded at the next sync\n";
  return kExitOk;
}

int run_courses(const Globals& g) {
  std::optional<Store> store;
  if (int rc = open_store(g, Purpose::content, store); rc != kExitOk)
    return rc;
  Library library(*store);
  auto courses = library.courses();
  if (!courses)
    return fail("courses", courses.error());
  if (g.json) {
    json list = json::array();
    for (const CourseInfo& c : courses.value())
      list.push_back({{"id", c.id},
                      {"title", c.title},
                      {"description", c.description},
                      {"version", c.version},
                      {"lessons", c.lessons},
                      {"size", c.total_size},
                      {"ready", c.ready},
                      {"pending_bytes", c.pending_bytes},
                      {"on_demand_bytes", c.on_demand_bytes}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  if (courses.value().empty()) {
    std::cout << "no courses on this device yet; run `kaban sync` when online\n";
    return kExitOk;
  }
  for (const CourseInfo& c : courses.value()) {
    std::cout << c.id << "  " << c.title << "\n    " << c.lessons << " lesson"
              << (c.lessons == 1 ? "" : "s") << ", " << format_bytes(c.total_size) << ", "
              << (c.ready ? "downloaded, readable offline" : "downloading");
    if (c.pending_bytes)
      std::cout << " (" << format_bytes(c.pending_bytes) << " still to fetch)";
    if (c.on_demand_bytes)
      std::cout << "; " << format_bytes(c.on_demand_bytes)
                << " of media downloads on demand (`kaban lessons " << c.id << "`)";
    std::cout << '\n';
  }
  return kExitOk;
}

int run_lessons(const Globals& g, const std::string& course) {
  std::optional<Store> store;
  if (int rc = open_store(g, Purpose::content, store); rc != kExitOk)
    return rc;
  Library library(*store);
  auto lessons = library.lessons(course);
  if (!lessons)
    return fail("lessons of " + course, lessons.error(),
                "no readable course \"" + course + "\" here; `kaban courses` lists them");
  if (g.json) {
    json list = json::array();
    for (const LessonInfo& l : lessons.value())
      list.push_back({{"id", l.course_id + "/" + l.id},
                      {"course_id", l.course_id},
                      {"lesson_id", l.id},
                      {"title", l.title},
                      {"kind", l.kind},
                      {"duration_minutes", l.duration_minutes},
                      {"files", l.files},
                      {"size", l.size},
                      {"pinned", l.pinned},
                      {"missing_bytes", l.missing_bytes}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  for (const LessonInfo& l : lessons.value()) {
    std::cout << l.course_id << '/' << l.id << "  " << l.title << "  (" << l.kind << ", "
              << l.duration_minutes << " min, " << format_bytes(l.size) << ")";
    if (l.pinned)
      std::cout << "  pinned";
    if (l.missing_bytes)
      std::cout << "  " << format_bytes(l.missing_bytes)
                << (l.pinned ? " to download at the next sync" : " on demand: `kaban pin`");
    std::cout << '\n';
  }
  return kExitOk;
}

// COURSE/LESSON into its parts; false (after saying so) if it is not that shape.
bool split_lesson_ref(std::string_view command, const std::string& ref, std::string& course,
                      std::string& lesson) {
  const std::size_t slash = ref.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == ref.size()) {
    std::cerr << "kaban: " << command
              << ": name the lesson as COURSE/LESSON, as `kaban lessons COURSE` shows it\n";
    return false;
  }
  course = ref.substr(0, slash);
  lesson = ref.substr(slash + 1);
  return true;
}

int run_open(const Globals& g, const std::string& lesson_ref, const std::string& file,
             const std::string& out_path) {
  std::string course, lesson;
  if (!split_lesson_ref("open", lesson_ref, course, lesson))
    return kExitUsage;
  std::optional<Store> store;
  GuardView view;
  if (int rc = open_store(g, Purpose::content, store, &view); rc != kExitOk)
    return rc;
  // Writing a lesson out is export; showing it on stdout (a terminal, a pager, a viewer) is not.
  if (!out_path.empty() && !current_policy(view.state).allow_export)
    return fail("open --out " + out_path, errc::not_allowed,
                "the device policy does not allow saving lesson files on this device; nothing "
                "was written. View the lesson with `kaban open " +
                    lesson_ref + "` instead");
  Library library(*store);

  // Writing to PATH goes through a temporary file renamed at the end, so a failure never
  // leaves a partial lesson where the person expects a whole one.
  const fs::path target = out_path;
  const fs::path partial = out_path.empty() ? fs::path() : fs::path(out_path + ".partial");
  std::FILE* sink_file = stdout;
  if (!out_path.empty()) {
    sink_file = std::fopen(partial.c_str(), "wb");
    if (!sink_file) {
      std::cerr << "kaban: open: cannot write " << partial << ": " << std::strerror(errno) << '\n';
      return kExitFailed;
    }
  }
  auto streamed =
      library.open_file(course, lesson, file, [&](crypto::ByteView bytes) -> Result<void> {
        if (std::fwrite(bytes.data(), 1, bytes.size(), sink_file) != bytes.size())
          return errc::storage_failed;
        return ok();
      });
  if (!out_path.empty()) {
    const bool closed = std::fclose(sink_file) == 0;
    std::error_code ec;
    if (streamed && closed)
      fs::rename(partial, target, ec);
    if (!streamed || !closed || ec) {
      fs::remove(partial, ec);
      if (streamed)
        return fail("open: writing " + out_path, errc::storage_failed);
    }
  } else {
    std::fflush(stdout);
  }
  if (!streamed && streamed.error() == errc::not_downloaded) {
    // Opening a lesson asks for it: it is pinned, so the next sync brings its media.
    auto pinned = library.pin_lesson(course, lesson);
    if (!pinned)
      return fail("open " + lesson_ref, pinned.error());
    std::cerr << "kaban: open: " << lesson_ref
              << " is downloaded on demand and its media is not on this device yet; it is "
                 "pinned now and downloads at the next `kaban sync`\n";
    return kExitNotDownloaded;
  }
  if (!streamed)
    return fail("open " + lesson_ref, streamed.error(),
                streamed.error() == errc::not_found
                    ? "no such lesson or file here; `kaban lessons " + course + "` lists them"
                    : "");
  if (!out_path.empty())
    std::cerr << "wrote " << out_path << '\n';
  return kExitOk;
}

// `kaban pin COURSE/LESSON`: the lesson's files, however large, download at the next sync.
int run_pin(const Globals& g, const std::string& lesson_ref) {
  std::string course, lesson;
  if (!split_lesson_ref("pin", lesson_ref, course, lesson))
    return kExitUsage;
  std::optional<Store> store;
  if (int rc = open_store(g, Purpose::content, store); rc != kExitOk)
    return rc;
  Library library(*store);
  auto pinned = library.pin_lesson(course, lesson);
  if (!pinned)
    return fail(
        "pin " + lesson_ref, pinned.error(),
        pinned.error() == errc::not_found
            ? "no such lesson in a course on this device; `kaban lessons " + course + "` lists them"
            : "");
  auto lessons = library.lessons(course);
  std::uint64_t missing = 0;
  if (lessons)
    for (const LessonInfo& l : lessons.value())
      if (l.id == lesson)
        missing = l.missing_bytes;
  std::cout << lesson_ref << (pinned.value() ? " pinned" : " was already pinned");
  if (!lessons)  // the course is still downloading for the first time
    std::cout << "; it downloads with the rest of the course at the next `kaban sync`";
  else if (missing)
    std::cout << "; " << format_bytes(missing) << " downloads at the next `kaban sync`";
  else
    std::cout << "; everything it needs is on this device";
  std::cout << '\n';
  return kExitOk;
}

// `kaban unpin COURSE/LESSON`: its on-demand media leaves the device (what nothing else uses).
int run_unpin(const Globals& g, const std::string& lesson_ref) {
  std::string course, lesson;
  if (!split_lesson_ref("unpin", lesson_ref, course, lesson))
    return kExitUsage;
  std::optional<Store> store;
  if (int rc = open_store(g, Purpose::content, store); rc != kExitOk)
    return rc;
  Library library(*store);
  auto freed = library.unpin_lesson(course, lesson);
  if (!freed)
    return fail("unpin " + lesson_ref, freed.error());
  if (!freed.value()) {
    std::cout << lesson_ref << " was not pinned; nothing changed (`kaban storage` lists pins)\n";
    return kExitOk;
  }
  std::cout << lesson_ref << " unpinned; " << format_bytes(*freed.value()) << " freed";
  if (*freed.value() == 0)
    std::cout << " (its files are small enough to stay, or another lesson uses them)";
  std::cout << '\n';
  return kExitOk;
}

// `kaban storage [--free]`: what Kaban's store holds, and what could be freed.
int run_storage(const Globals& g, bool free_now) {
  std::optional<Store> store;
  if (int rc = open_store(g, Purpose::content, store); rc != kExitOk)
    return rc;
  Library library(*store);
  std::uint64_t freed = 0;
  if (free_now) {
    auto released = library.storage_free();
    if (!released)
      return fail("storage --free", released.error());
    freed = released.value();
  }
  auto report = library.storage();
  if (!report)
    return fail("storage", report.error());
  const StorageReport& r = report.value();
  const std::uint64_t on_disk = Store::disk_size(store->dir());
  const auto disk_free = Store::free_space(store->dir());
  if (g.json) {
    json courses = json::array();
    for (const CourseStorage& c : r.courses) {
      json lessons = json::array();
      for (const LessonStorage& l : c.lessons)
        lessons.push_back({{"id", c.id + "/" + l.id},
                           {"title", l.title},
                           {"pinned", l.pinned},
                           {"size", l.size},
                           {"held", l.held},
                           {"on_demand_size", l.on_demand_size}});
      courses.push_back({{"id", c.id},
                         {"title", c.title},
                         {"version", c.version},
                         {"size", c.size},
                         {"held", c.held},
                         {"freeable", c.freeable},
                         {"lessons", lessons}});
    }
    json out = {{"store_bytes", on_disk},
                {"course_bytes", r.held},
                {"freeable_bytes", r.freeable},
                {"freed_bytes", freed},
                {"on_demand_threshold_bytes", r.on_demand_threshold},
                {"courses", courses}};
    out["disk_free_bytes"] = disk_free ? json(disk_free.value()) : json(nullptr);
    std::cout << out.dump(2) << '\n';
    return kExitOk;
  }
  if (free_now)
    std::cout << "freed " << format_bytes(freed) << " of media of lessons that are not pinned\n";
  std::cout << "Kaban's store takes " << format_bytes(on_disk) << " (course content "
            << format_bytes(r.held) << ")";
  if (disk_free)
    std::cout << "; " << format_bytes(disk_free.value()) << " free on its disk";
  std::cout << '\n';
  if (r.on_demand_threshold)
    std::cout << "files of " << format_bytes(r.on_demand_threshold)
              << " or more download only for pinned lessons (device policy)\n";
  bool any_pinned = false;
  for (const CourseStorage& c : r.courses) {
    for (const LessonStorage& l : c.lessons)
      any_pinned = any_pinned || l.pinned;
    std::cout << c.id << "  " << c.title << "  " << format_bytes(c.held) << " held of "
              << format_bytes(c.size);
    if (c.freeable)
      std::cout << ", " << format_bytes(c.freeable) << " can be freed";
    std::cout << '\n';
    for (const LessonStorage& l : c.lessons) {
      // The lessons worth a line: pinned ones, and those with media fetched on demand.
      if (!l.pinned && l.on_demand_size == 0)
        continue;
      std::cout << "    " << c.id << '/' << l.id << "  " << format_bytes(l.held) << " of "
                << format_bytes(l.size) << " here" << (l.pinned ? ", pinned" : "")
                << (l.on_demand_size && !l.pinned ? ", on demand" : "") << '\n';
    }
  }
  if (r.freeable)
    std::cout << format_bytes(r.freeable)
              << " of media of lessons that are not pinned can be freed: `kaban storage "
                 "--free`\n";
  else if (!free_now && any_pinned)
    std::cout << "to free space: `kaban unpin COURSE/LESSON` for pinned lessons you are done "
                 "with\n";
  return kExitOk;
}

// `kaban import FILE`: a course from a bundle IT wrote with `kaban-server admin course bundle`,
// for a device with no network. The bundle gives course content, so it needs the access reading
// courses needs (a blocked device gets nothing new to read).
int run_import(const Globals& g, const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::cerr << "kaban: import: " << path << " is a folder; name the bundle file in it\n";
    return kExitUsage;
  }
  std::ifstream bundle(path, std::ios::binary);
  if (!bundle) {
    std::cerr << "kaban: import: cannot read " << path << ": " << std::strerror(errno)
              << "; name the bundle file IT gave you\n";
    return kExitUsage;
  }
  std::optional<Store> store;
  GuardView view;
  if (int rc = open_store(g, Purpose::content, store, &view); rc != kExitOk)
    return rc;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::unique_ptr<TransferProgress> progress;
  ImportOptions options;
  options.stop = &g_stop;
  options.on_start = [&](const ImportPlan& plan) {
    std::cerr << "importing " << plan.course_id << " version " << plan.version << " (" << plan.title
              << "): " << format_bytes(plan.chunk_bytes) << " in " << plural(plan.chunks, "chunk")
              << ", " << format_bytes(plan.new_bytes) << " of it new to this device\n";
    progress = std::make_unique<TransferProgress>(plan.chunk_bytes, stderr,
                                                  TransferProgress::style_for(stderr),
                                                  platform::terminal_width(STDERR_FILENO));
    progress->set_verb("imported");
  };
  options.on_bytes = [&](std::uint64_t bytes) {
    if (progress)
      progress->add(bytes);
  };
  std::string why;
  auto imported = import_bundle(*store, bundle, current_policy(view.state), view.now, options, why);
  if (progress)
    progress->finish();
  if (!imported)
    return fail("import " + path, imported.error(), why);

  const ImportReport& r = imported.value();
  switch (r.outcome) {
    case ImportOutcome::already_held:
      std::cout << r.course_id << " version " << r.version
                << " is already on this device, readable offline; nothing was changed\n";
      return kExitOk;
    case ImportOutcome::newer_held:
      std::cout << "this device " << (r.held_complete ? "holds" : "is downloading") << " version "
                << r.held_version << " of " << r.course_id << ", newer than the bundle's version "
                << r.version << "; nothing was changed\n";
      return kExitOk;
    case ImportOutcome::imported:
      break;
  }
  std::cout << "imported " << r.course_id << " version " << r.version << " (" << r.title
            << "): " << plural(r.lessons.size(), "lesson") << ", " << format_bytes(r.total_size)
            << "; " << plural(r.chunks_stored, "chunk") << " stored, " << r.chunks_skipped
            << " already on this device\n";
  for (const LessonInfo& l : r.lessons)
    std::cout << "  " << l.course_id << '/' << l.id << "  " << l.title << "  (" << l.kind << ", "
              << l.duration_minutes << " min, " << format_bytes(l.size) << ")\n";
  for (const std::string& ready : r.made_ready)
    std::cout << "ready offline: " << ready << '\n';
  return kExitOk;
}

std::string access_text(Access access) {
  switch (access) {
    case Access::open:
      return "open";
    case Access::policy_blocked:
      return "blocked by the device policy: only messages from IT can be read";
    case Access::offline_blocked:
      return "blocked: no sync for longer than the device policy allows; run `kaban sync`";
    case Access::wipe_due:
      return "to be wiped the next time the store is opened";
    case Access::locked:
      return "locked";
    case Access::wiped:
      return "wiped";
  }
  return "unknown";
}

std::optional<std::int64_t> policy_version(const GuardState& state) {
  if (state.policy.text.empty())
    return std::nullopt;
  auto parsed = protocol::parse_device_policy_text(state.policy.text);
  if (!parsed)
    return std::nullopt;
  return parsed.value().version;
}

json timestamp_json(std::int64_t t) {
  return t == 0 ? json(nullptr) : json(protocol::format_timestamp(t));
}

// The device-policy part of `kaban status`: all from the guard, so no PIN is needed.
json guard_json(const GuardView& v) {
  const GuardState& s = v.state;
  const auto lease = current_lease(s);
  json reasons = json::array();
  for (const protocol::ComplianceReason& r : s.reasons)
    reasons.push_back({{"setting", r.setting},
                       {"action", std::string(protocol::to_string(r.action))},
                       {"message", r.message}});
  const auto version = policy_version(s);
  return {
      {"access", std::string(to_string(access_at(s, v.now)))},
      {"verdict", lease ? json(std::string(protocol::to_string(lease->verdict))) : json(nullptr)},
      {"reasons", std::move(reasons)},
      {"policy_version", version ? json(*version) : json(nullptr)},
      {"last_checkin_at", timestamp_json(s.last_checkin_at)},
      {"blocked_from", timestamp_json(lease ? lease->block_after : 0)},
      {"wiped_from", timestamp_json(lease ? lease->wipe_after : 0)},
      {"locked", s.locked},
      {"locked_at", timestamp_json(s.locked_at)},
      {"lock_reason", s.lock_reason},
      {"wiped_at", timestamp_json(s.wiped_at)},
      {"wipe_reason", s.wipe_reason},
      {"events_unreported", s.unreported.size()}};
}

void print_guard(const GuardView& v) {
  const GuardState& s = v.state;
  const auto lease = current_lease(s);
  std::cout << "access     " << access_text(access_at(s, v.now)) << '\n';
  if (s.wiped_at) {
    // The wipe dropped the policy and the lease: only the wipe and its report are left.
    std::cout << "WIPED      " << when_text(s.wiped_at, v.now) << " (" << s.wipe_reason
              << "): ask IT for a new enrollment code to use Kaban here again\n";
    if (!s.unreported.empty())
      std::cout << "to report  IT has not been told yet: it is told the next time kaban runs here "
                   "with a network\n";
    return;
  }
  if (lease) {
    const std::string reasons = reasons_text(s.reasons);
    std::cout << "verdict    " << protocol::to_string(lease->verdict)
              << (reasons.empty() ? "" : ": " + reasons) << '\n';
  } else {
    std::cout << "verdict    none yet: no check-in under a device policy\n";
  }
  if (const auto version = policy_version(s))
    std::cout << "policy     version " << *version << " (`kaban policy` shows it)\n";
  std::cout << "check-in   " << when_text(s.last_checkin_at, v.now) << '\n';
  if (lease) {
    if (lease->verdict >= protocol::Verdict::blocked)
      std::cout << "blocked    by the last check-in's verdict, until a sync finds the device "
                   "compliant\n";
    else
      std::cout << "blocked    "
                << (lease->block_after ? "from " + when_text(lease->block_after, v.now) +
                                             " unless a sync renews the lease"
                                       : std::string("never for being offline"))
                << '\n';
    std::cout << "wiped      "
              << (lease->wipe_after ? "from " + when_text(lease->wipe_after, v.now) +
                                          " unless a sync renews the lease"
                                    : std::string("never for being offline"))
              << '\n';
  }
  if (s.locked)
    std::cout << "locked     since " << when_text(s.locked_at, v.now) << " ("
              << (s.lock_reason == "pin_attempts" ? "too many wrong PINs" : "IT locked it")
              << "): ask IT for the unlock code, then `kaban unlock CODE`\n";
  if (!s.unreported.empty())
    std::cout << "to report  " << plural(s.unreported.size(), "event")
              << " IT has not received yet (sent at the next sync)\n";
}

// `kaban status` of a locked or wiped device: what the guard holds, without the PIN.
int status_from_guard(const Globals& g, const GuardView& v) {
  const GuardState& s = v.state;
  if (g.json) {
    json out = guard_json(v);
    out["server"] = s.server_host + ":" + std::to_string(s.server_port);
    out["device_id"] = s.device_id;
    out["data_dir"] = g.dir().string();
    std::cout << out.dump(2) << '\n';
    return kExitOk;
  }
  std::cout << "server     " << s.server_host << ':' << s.server_port << "\ndevice id  "
            << s.device_id << '\n';
  print_guard(v);
  std::cout << "data       " << g.dir().string() << '\n';
  return kExitOk;
}

int run_status(const Globals& g) {
  const fs::path dir = g.dir();
  std::optional<Store> store;
  if (!Store::exists(dir)) {
    auto guard = load_guard(dir);
    if (!guard || guard.value().wiped_at == 0)
      return fail("no Kaban store in " + dir.string(), errc::not_enrolled);
  }
  auto guard = read_guard(dir);
  if (!guard)
    return fail("status", guard.error(),
                "guard.json beside the store could not be read or written; nothing was changed. "
                "Check the directory's permissions and free space");
  const Access access = access_at(guard.value().state, guard.value().now);
  if (!Store::exists(dir) || access == Access::locked || access == Access::wiped)
    return status_from_guard(g, guard.value());

  GuardView view;
  if (int rc = open_store(g, Purpose::sync, store, &view); rc != kExitOk)
    return rc;
  auto identity = load_identity(*store);
  if (!identity)
    return fail("status", identity.error());
  auto state = load_sync_state(*store);
  if (!state)
    return fail("status", state.error());
  Library library(*store);
  auto courses = library.courses();
  auto stored = library.stored_bytes();
  if (!courses || !stored)
    return fail("status", courses ? stored.error() : courses.error());
  auto unread = Messages(*store, identity.value().login, identity.value().user_name).unread_count();
  auto outbox = Outbox(*store).counts();
  if (!unread || !outbox)
    return fail("status", unread ? outbox.error() : unread.error());
  const DeviceIdentity& id = identity.value();
  std::size_t ready = 0;
  for (const CourseInfo& c : courses.value())
    ready += c.ready ? 1 : 0;
  if (g.json) {
    json out{{"server", id.server_host + ":" + std::to_string(id.server_port)},
             {"login", id.login},
             {"user_name", id.user_name},
             {"device_id", id.device_id},
             {"enrolled_at", protocol::format_timestamp(id.enrolled_at)},
             {"last_sync_at", protocol::format_timestamp(state.value().last_sync_at)},
             {"courses", courses.value().size()},
             {"courses_ready", ready},
             {"stored_bytes", stored.value()},
             {"unread_messages", unread.value()},
             {"outbox_pending", outbox.value().pending},
             {"outbox_rejected", outbox.value().rejected},
             {"data_dir", g.dir().string()}};
    out.update(guard_json(view));
    std::cout << out.dump(2) << '\n';
    return kExitOk;
  }
  std::cout << "server     " << id.server_host << ':' << id.server_port << "\nuser       "
            << id.login << " (" << id.user_name << ")\ndevice id  " << id.device_id
            << "\nenrolled   " << time_text(id.enrolled_at) << "\nlast sync  "
            << time_text(state.value().last_sync_at) << "\ncourses    " << ready
            << " readable offline of " << courses.value().size() << ", "
            << format_bytes(stored.value()) << " stored\nmessages   " << unread.value()
            << " unread\noutbox     " << outbox.value().pending << " waiting for upload, "
            << outbox.value().rejected << " refused by the server"
            << (outbox.value().rejected ? " (see `kaban outbox`)" : "") << '\n';
  print_guard(view);
  std::cout << "data       " << g.dir().string() << '\n';
  return kExitOk;
}

// One setting's value for `kaban policy`: yes/no, numbers, and "platform VERSION (action)" for
// the version rules.
std::string setting_text(const json& value) {
  if (value.is_boolean())
    return value.get<bool>() ? "yes" : "no";
  if (value.is_string())
    return value.get<std::string>();
  if (value.is_object()) {
    if (value.empty())
      return "none";
    std::string text;
    for (const auto& [platform, rule] : value.items()) {
      text += (text.empty() ? "" : ", ") + platform + " " + rule.value("version", "") + " (" +
              rule.value("action", "") + ")";
    }
    return text;
  }
  return value.dump();
}

// `kaban policy`: the policy in force, from the guard (no PIN).
int run_policy(const Globals& g) {
  const fs::path dir = g.dir();
  auto guard = load_guard(dir);
  if (!guard)
    return fail("policy", guard.error(),
                "guard.json beside the store could not be read; check the directory's "
                "permissions");
  if (!Store::exists(dir) && guard.value().device_id.empty())
    return fail("no Kaban store in " + dir.string(), errc::not_enrolled);
  const GuardState& s = guard.value();
  const protocol::Policy policy = current_policy(s);
  std::optional<protocol::DevicePolicy> signed_policy;
  if (!s.policy.text.empty()) {
    if (auto parsed = protocol::parse_device_policy_text(s.policy.text))
      signed_policy = parsed.value();
  }
  const json settings = json::parse(protocol::policy_to_json(policy));
  if (g.json) {
    std::cout << json{{"source", signed_policy ? "server" : "built-in"},
                      {"version", signed_policy ? json(signed_policy->version) : json(nullptr)},
                      {"issued_at",
                       signed_policy ? timestamp_json(signed_policy->issued_at) : json(nullptr)},
                      {"settings", settings}}
                     .dump(2)
              << '\n';
    return kExitOk;
  }
  if (signed_policy)
    std::cout << "device policy version " << signed_policy->version << ", issued "
              << time_text(signed_policy->issued_at) << " by the server\n";
  else
    std::cout << "built-in defaults: this device has not received a device policy yet "
                 "(`kaban sync` fetches it)\n";
  std::size_t width = 0;
  for (std::string_view name : protocol::kPolicySettings)
    width = std::max(width, name.size());
  for (std::string_view name : protocol::kPolicySettings) {
    const std::string key(name);
    if (!settings.contains(key))
      continue;
    std::cout << std::left << std::setw(static_cast<int>(width)) << key << "  "
              << setting_text(settings.at(key)) << '\n';
  }
  std::cout << "docs/policy.md says what each setting does\n";
  return kExitOk;
}

// `kaban unlock CODE`: no PIN (a locked device takes none); the code is IT's.
int run_unlock(const Globals& g, const std::string& code) {
  const fs::path dir = g.dir();
  std::optional<Store> store;
  if (!Store::exists(dir))
    return no_store(dir, store);
  auto view = read_guard(dir);
  if (!view)
    return fail("unlock", view.error(),
                "guard.json beside the store could not be read or written; nothing was changed. "
                "Check the directory's permissions and free space");
  std::string why;
  auto unlocked = unlock_device(dir, code, view.value().now, why);
  if (!unlocked) {
    std::cerr << "kaban: unlock: " << why << '\n';
    return exit_code_for(unlocked.error());
  }
  report_events(dir);
  std::cout << "unlocked; open Kaban with your PIN as before\n";
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "kaban: carries your training courses and staff messages on this device, encrypted,\n"
      "and keeps them readable offline.\n\n"
      "Start with `kaban enroll LINE` (the line IT gave you), then `kaban sync` when online.\n"
      "The PIN comes from the terminal, or from KABAN_PIN or --pin-file in scripts."};
  app.set_version_flag("--version", std::string(protocol::kaban_version()));
  app.require_subcommand(1);
  Globals g;
  app.add_option("--data-dir", g.data_dir,
                 "Where this device's encrypted store lives (default: $KABAN_HOME, else " +
                     platform::default_data_dir().string() + ")");
  app.add_option("--pin-file", g.pin_file, "Read the PIN from the first line of this file");

  std::string line, course, lesson, file, out;
  int parallel = SyncOptions{}.parallel_downloads;
  bool watch_mode = false;
  int interval = static_cast<int>(WatchOptions{}.full_interval.count());
  auto* enroll = app.add_subcommand("enroll", "Enroll this device with the line IT gave you");
  enroll->add_option("LINE", line, "kaban://HOST:PORT?code=...&ca=...")->required();
  auto* sync_cmd = app.add_subcommand(
      "sync",
      "Check in, send the outbox, fetch new messages (urgent ones first), then new and updated "
      "courses; resumes where an interrupted sync stopped");
  sync_cmd->add_option("--parallel", parallel, "Chunk downloads at once")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  sync_cmd->add_flag("--watch", watch_mode,
                     "Keep running: new messages arrive within seconds (the server holds a "
                     "request open until there is news), a full sync every --interval; "
                     "failures are retried with growing pauses; one line per round on stderr; "
                     "Ctrl-C stops");
  sync_cmd->add_option("--interval", interval, "With --watch: seconds between full syncs")
      ->check(CLI::Range(10, 86400))
      ->capture_default_str();
  auto* courses = app.add_subcommand("courses", "List the courses on this device (offline)");
  courses->add_flag("--json", g.json, "Print JSON");
  auto* lessons = app.add_subcommand("lessons", "List a course's lessons (offline)");
  lessons->add_option("COURSE", course, "Course id, as `kaban courses` shows it")->required();
  lessons->add_flag("--json", g.json, "Print JSON");
  auto* open = app.add_subcommand("open", "Write a lesson's file to stdout or a file (offline)");
  open->add_option("LESSON", lesson, "COURSE/LESSON, as `kaban lessons` shows it")->required();
  open->add_option("--file", file, "Which of the lesson's files (default: its first)");
  open->add_option("--out", out,
                   "Write to this path instead of stdout (refused when the device policy does "
                   "not allow saving lesson files)");
  std::string bundle_file;
  auto* import_cmd = app.add_subcommand(
      "import",
      "Import a course from a bundle file IT wrote (`kaban-server admin course bundle`): it "
      "becomes readable as if synced; the manifest's signature and every chunk are checked "
      "(offline)");
  import_cmd->add_option("FILE", bundle_file, "The bundle file")->required();
  auto* status = app.add_subcommand(
      "status",
      "Server, device id, last sync, unread messages, outbox, and the device policy's view of "
      "this device: verdict and reasons, last check-in, when it would be blocked or wiped "
      "without a sync, a lock or wipe (offline; a locked or wiped device needs no PIN)");
  status->add_flag("--json", g.json, "Print JSON");
  auto* policy = app.add_subcommand(
      "policy",
      "Show the device policy this device is under, as the server last sent it: PIN rules, "
      "how long it may stay offline, what is required of it (offline; no PIN needed)");
  policy->add_flag("--json", g.json, "Print JSON");
  std::string unlock_code;
  auto* unlock = app.add_subcommand(
      "unlock",
      "Unlock a device locked after too many wrong PINs or by IT, with the unlock code IT reads "
      "out to you (no PIN needed; the wrong-PIN count starts again)");
  unlock->add_option("CODE", unlock_code, "The unlock code from IT (dashes and case do not matter)")
      ->required();
  auto* change_pin_cmd = app.add_subcommand(
      "change-pin",
      "Change the PIN: the current one, then the new one twice; the new PIN must meet the "
      "device policy (`kaban policy`). Scripts give the current PIN as usual and the new one "
      "with KABAN_NEW_PIN or --new-pin-file");
  change_pin_cmd->add_option("--new-pin-file", g.new_pin_file,
                             "Read the new PIN from the first line of this file");
  auto* pin_cmd = app.add_subcommand(
      "pin",
      "Keep a lesson's files on this device whatever their size: under the device policy's "
      "download_on_demand_mb, large media downloads only for pinned lessons (at the next sync)");
  pin_cmd->add_option("LESSON", lesson, "COURSE/LESSON, as `kaban lessons` shows it")->required();
  auto* unpin_cmd = app.add_subcommand(
      "unpin",
      "Unpin a lesson: its on-demand media leaves the device, freeing the space (offline)");
  unpin_cmd->add_option("LESSON", lesson, "COURSE/LESSON, as `kaban lessons` shows it")->required();
  bool free_now = false;
  auto* storage = app.add_subcommand(
      "storage",
      "What Kaban's store holds per course, the pinned and on-demand lessons, free disk space, "
      "and what can be freed (offline)");
  storage->add_flag("--free", free_now,
                    "Free the media of lessons that are not pinned (a bundle's, or a lesson's "
                    "unpinned while being read)");
  storage->add_flag("--json", g.json, "Print JSON");

  std::string channel, text, priority = "normal", message_id, duration;
  bool unread_only = false, require_ack = false;
  std::vector<std::string> targets;
  std::optional<int> percent;
  std::optional<double> score;
  auto* channels =
      app.add_subcommand("channels",
                         "List your channels: id, kind, title, unread count, whether you may post "
                         "(offline)");
  channels->add_flag("--json", g.json, "Print JSON");
  auto* messages = app.add_subcommand(
      "messages",
      "Show messages in server order, then your own not yet sent, marked \"pending\" (or "
      "\"not sent: REASON\" if the server refused one); each with its id and its attachments "
      "(\"not downloaded yet\" until a sync brings them; `kaban attachment` writes one out) "
      "(offline)");
  messages->add_option("CHANNEL", channel,
                       "Only this channel: its id as `kaban channels` shows it, or @LOGIN for a "
                       "direct conversation (default: all channels)");
  messages->add_flag("--unread", unread_only, "Only messages you have not read");
  messages->add_flag("--json", g.json, "Print JSON");
  auto* send = app.add_subcommand(
      "send",
      "Write a message; works offline: it shows at once as pending and goes with the next "
      "sync");
  send->add_option("CHANNEL", channel,
                   "A group channel id, @LOGIN for a direct conversation, or an announcement "
                   "channel such as announce:all (if you may post there)")
      ->required();
  send->add_option("TEXT", text, "The message; \"-\" reads it from stdin")->required();
  send->add_option("--priority", priority, "normal, urgent or emergency")
      ->check(CLI::IsMember({"normal", "urgent", "emergency"}))
      ->capture_default_str();
  send->add_flag("--require-ack", require_ack,
                 "Ask readers to acknowledge (announcement channels only)");
  std::vector<std::string> attach;
  send->add_option("--attach", attach,
                   "Attach this file (repeat for more: at most " +
                       std::to_string(protocol::kMaxAttachments) + ", each at most " +
                       format_bytes(protocol::kMaxAttachmentSize) +
                       "); it goes under its own file name and is uploaded with the message")
      ->type_name("FILE")
      ->allow_extra_args(false);
  std::string attachment_name;
  auto* attachment = app.add_subcommand(
      "attachment",
      "Write a message's attachment to stdout or a file, once it is downloaded and its SHA-256 "
      "verified (offline; `kaban messages` lists attachments)");
  attachment->add_option("MESSAGE", message_id, "The message id, as `kaban messages` shows it")
      ->required();
  attachment->add_option("NAME", attachment_name,
                         "Which attachment, by name (may be left out when there is only one)");
  attachment
      ->add_option("--out", out,
                   "Write to this path instead of stdout (it appears only once complete)")
      ->type_name("FILE");
  auto* read = app.add_subcommand(
      "read", "Mark messages read; read receipts go with the next sync (offline)");
  read->add_option("TARGET", targets,
                   "Channels (id or @LOGIN) or message ids (default: every message)");
  auto* ack = app.add_subcommand(
      "ack",
      "Acknowledge an announcement that asks for it; the acknowledgement goes with the next "
      "sync (offline)");
  ack->add_option("MESSAGE", message_id, "The message id, as `kaban messages` shows it")
      ->required();
  auto* outbox = app.add_subcommand(
      "outbox",
      "List what waits for upload, and what the server refused with its reason (offline)");
  outbox->add_flag("--json", g.json, "Print JSON");
  auto* discard = outbox->add_subcommand(
      "discard", "Remove an item the server refused (and the unsent message it left)");
  discard->add_option("ID", message_id, "The item's id, as `kaban outbox` shows it")->required();
  auto* progress = app.add_subcommand(
      "progress",
      "Record progress in a lesson (with --percent), or list your progress per lesson: best "
      "percent, completion, time spent, and what is not uploaded yet (offline)");
  progress->add_option("LESSON", lesson,
                       "COURSE/LESSON, or LESSON alone if only one course on this device has "
                       "it (default: list your progress)");
  progress->add_option("--percent", percent, "How far you are, 0 to 100")
      ->check(CLI::Range(0, 100));
  progress->add_option("--duration", duration, "Time spent this time, e.g. 10m, 1h30m, 90s");
  progress->add_flag("--json", g.json, "Print JSON (the list)");
  auto* complete = app.add_subcommand(
      "complete", "Record that you completed a lesson; uploaded at the next sync (offline)");
  complete->add_option("LESSON", lesson, "COURSE/LESSON, or LESSON alone if unique")->required();
  complete->add_option("--score", score, "Your score, 0 to 1 (e.g. 0.85)")
      ->check(CLI::Range(0.0, 1.0));
  complete->add_option("--duration", duration, "Time spent this time, e.g. 25m");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (*enroll)
    return run_enroll(g, line);
  if (*sync_cmd) {
    if (sync_cmd->count("--interval") && !watch_mode) {
      std::cerr << "kaban: sync: --interval goes with --watch\n";
      return kExitUsage;
    }
    return run_sync(g, parallel, watch_mode, interval);
  }
  if (*courses)
    return run_courses(g);
  if (*lessons)
    return run_lessons(g, course);
  if (*open)
    return run_open(g, lesson, file, out);
  if (*import_cmd)
    return run_import(g, bundle_file);
  if (*status)
    return run_status(g);
  if (*policy)
    return run_policy(g);
  if (*unlock)
    return run_unlock(g, unlock_code);
  if (*change_pin_cmd)
    return run_change_pin(g);
  if (*pin_cmd)
    return run_pin(g, lesson);
  if (*unpin_cmd)
    return run_unpin(g, lesson);
  if (*storage)
    return run_storage(g, free_now);
  if (*channels)
    return run_channels(g);
  if (*messages)
    return run_messages(g, channel, unread_only);
  if (*send)
    return run_send(g, channel, text, priority, require_ack, attach);
  if (*attachment)
    return run_attachment(g, message_id, attachment_name, out);
  if (*read)
    return run_read(g, targets);
  if (*ack)
    return run_ack(g, message_id);
  if (*discard)
    return run_outbox_discard(g, message_id);
  if (*outbox)
    return run_outbox(g);
  if (*progress) {
    if (lesson.empty()) {
      if (percent || !duration.empty()) {
        std::cerr << "kaban: progress: name the lesson (COURSE/LESSON) to record progress\n";
        return kExitUsage;
      }
      return run_progress_list(g);
    }
    return run_progress(g, lesson, percent, duration);
  }
  if (*complete)
    return run_complete(g, lesson, score, duration);
  std::cout << app.help();
  return kExitOk;
} catch (const std::exception& e) {
  std::cerr << "kaban: internal error: " << e.what() << '\n';
  return kExitFailed;
}
