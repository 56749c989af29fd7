// kaban: the staff member's command-line front end over kaban::agent.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/platform.hpp"
#include "kaban/agent/progress.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/protocol/enrollment_line.hpp"
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
constexpr int kExitUsage = 2;        // bad command line or enrollment line
constexpr int kExitNotEnrolled = 3;  // no store here: enroll first
constexpr int kExitWrongPin = 4;
constexpr int kExitDamaged = 5;        // the store failed authentication: wipe and sync again
constexpr int kExitOffline = 6;        // server unreachable or the connection broke: try later
constexpr int kExitRefused = 7;        // the server refused or is not the one pinned: ask IT
constexpr int kExitNotFound = 8;       // no such course, lesson or file
constexpr int kExitInterrupted = 130;  // Ctrl-C or SIGTERM; what was done is kept

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) {
  g_stop.store(true);
}

int exit_code_for(std::error_code e) {
  if (e == errc::not_enrolled || e == errc::no_store)
    return kExitNotEnrolled;
  if (e == crypto::errc::wrong_key)
    return kExitWrongPin;
  if (e == crypto::errc::damaged)
    return kExitDamaged;
  if (e == errc::server_unreachable || e == errc::network_failed)
    return kExitOffline;
  if (e == errc::server_untrusted || e == errc::server_refused || e == errc::bad_response)
    return kExitRefused;
  if (e == errc::not_found)
    return kExitNotFound;
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

struct Globals {
  std::string data_dir;
  std::string pin_file;
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
    if (!pin_file.empty()) {
      std::ifstream in(pin_file);
      std::string line;
      if (!in || !std::getline(in, line)) {
        why = "cannot read the PIN from " + pin_file;
        return errc::storage_failed;
      }
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      return line;
    }
    if (const char* env = std::getenv("KABAN_PIN"); env)
      return std::string(env);
    auto typed = platform::read_secret(prompt);
    if (!typed)
      why = "no PIN given: type it on a terminal, or set KABAN_PIN or --pin-file for scripts";
    return typed;
  }
};

int open_store(const Globals& g, std::optional<Store>& store) {
  const fs::path dir = g.dir();
  if (!Store::exists(dir))
    return fail("no Kaban store in " + dir.string(), errc::not_enrolled);
  std::string why;
  auto pin = g.pin("PIN: ", why);
  if (!pin)
    return fail("cannot open the store", pin.error(), why);
  auto opened = Store::open(dir, pin.value());
  crypto::secure_wipe(pin.value());
  if (!opened)
    return fail("cannot open the store in " + dir.string(), opened.error());
  store.emplace(std::move(opened).value());
  return kExitOk;
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

  // A PIN given by a script is checked before the code is spent on the server.
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

  auto identity = request_enrollment(line.value(), {}, why);
  if (!identity)
    return fail("enroll with " + line.value().host, identity.error(), why);

  if (!scripted) {
    std::cout << "Enrolled. Choose a PIN for this device (at least " << kMinPinLength
              << " characters); it protects the data stored here.\n";
    for (;;) {
      auto first = platform::read_secret("New PIN: ");
      if (!first)
        return fail("enroll", first.error(),
                    "no PIN given: type it on a terminal, or set KABAN_PIN or --pin-file");
      if (!check_new_pin(first.value(), why)) {
        std::cout << why << ". Try again.\n";
        continue;
      }
      auto again = platform::read_secret("Repeat the PIN: ");
      if (!again)
        return fail("enroll", again.error());
      if (again.value() == first.value()) {
        pin = std::move(first).value();
        break;
      }
      std::cout << "The two PINs differ. Try again.\n";
    }
  }
  auto done = complete_enrollment(dir, identity.value(), pin);
  crypto::secure_wipe(pin);
  if (!done)
    return fail("enroll: storing the enrollment in " + dir.string(), done.error());
  std::cout << "enrolled as " << identity.value().login << " (" << identity.value().user_name
            << ") with " << line.value().host << ":" << line.value().port << "\ndevice id "
            << identity.value().device_id << "\nnext: kaban sync\n";
  return kExitOk;
}

int run_sync(const Globals& g, int parallel) {
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
    return rc;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::unique_ptr<TransferProgress> progress;
  SyncOptions options;
  options.parallel_downloads = parallel;
  options.stop = &g_stop;
  options.on_download_start = [&](std::uint64_t bytes, std::size_t chunks) {
    std::fprintf(stderr, "downloading %s in %zu chunks\n", format_bytes(bytes).c_str(), chunks);
    progress =
        std::make_unique<TransferProgress>(bytes, stderr, TransferProgress::style_for(stderr),
                                           platform::terminal_width(STDERR_FILENO));
  };
  options.on_bytes = [&](std::uint64_t bytes) { progress->add(bytes); };
  std::string why;
  auto report = sync(*store, options, why);
  if (progress)
    progress->finish();
  if (!report)
    return fail("sync", report.error(), why);
  const SyncReport& r = report.value();
  std::cout << "synced: " << r.new_versions << " new course version"
            << (r.new_versions == 1 ? "" : "s") << ", " << r.chunks_downloaded << " chunks ("
            << format_bytes(r.bytes_downloaded) << ") downloaded\n";
  for (const std::string& ready : r.made_ready)
    std::cout << "ready offline: " << ready << '\n';
  return kExitOk;
}

int run_courses(const Globals& g) {
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
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
                      {"pending_bytes", c.pending_bytes}});
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
    std::cout << '\n';
  }
  return kExitOk;
}

int run_lessons(const Globals& g, const std::string& course) {
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
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
                      {"size", l.size}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  for (const LessonInfo& l : lessons.value())
    std::cout << l.course_id << '/' << l.id << "  " << l.title << "  (" << l.kind << ", "
              << l.duration_minutes << " min, " << format_bytes(l.size) << ")\n";
  return kExitOk;
}

int run_open(const Globals& g, const std::string& lesson_ref, const std::string& file,
             const std::string& out_path) {
  const std::size_t slash = lesson_ref.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == lesson_ref.size()) {
    std::cerr << "kaban: open: name the lesson as COURSE/LESSON, as `kaban lessons COURSE` "
                 "shows it\n";
    return kExitUsage;
  }
  const std::string course = lesson_ref.substr(0, slash);
  const std::string lesson = lesson_ref.substr(slash + 1);
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
    return rc;
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
  if (!streamed)
    return fail("open " + lesson_ref, streamed.error(),
                streamed.error() == errc::not_found
                    ? "no such lesson or file here; `kaban lessons " + course + "` lists them"
                    : "");
  if (!out_path.empty())
    std::cerr << "wrote " << out_path << '\n';
  return kExitOk;
}

int run_status(const Globals& g) {
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
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
  const DeviceIdentity& id = identity.value();
  std::size_t ready = 0;
  for (const CourseInfo& c : courses.value())
    ready += c.ready ? 1 : 0;
  if (g.json) {
    std::cout << json{{"server", id.server_host + ":" + std::to_string(id.server_port)},
                      {"login", id.login},
                      {"user_name", id.user_name},
                      {"device_id", id.device_id},
                      {"enrolled_at", protocol::format_timestamp(id.enrolled_at)},
                      {"last_sync_at", protocol::format_timestamp(state.value().last_sync_at)},
                      {"courses", courses.value().size()},
                      {"courses_ready", ready},
                      {"stored_bytes", stored.value()},
                      {"data_dir", g.dir().string()}}
                     .dump(2)
              << '\n';
    return kExitOk;
  }
  std::cout << "server     " << id.server_host << ':' << id.server_port << "\nuser       "
            << id.login << " (" << id.user_name << ")\ndevice id  " << id.device_id
            << "\nenrolled   " << time_text(id.enrolled_at) << "\nlast sync  "
            << time_text(state.value().last_sync_at) << "\ncourses    " << ready
            << " readable offline of " << courses.value().size() << ", "
            << format_bytes(stored.value()) << " stored\ndata       " << g.dir().string() << '\n';
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
  auto* enroll = app.add_subcommand("enroll", "Enroll this device with the line IT gave you");
  enroll->add_option("LINE", line, "kaban://HOST:PORT?code=...&ca=...")->required();
  auto* sync_cmd = app.add_subcommand(
      "sync", "Check in, fetch new and updated courses; resumes where an interrupted sync stopped");
  sync_cmd->add_option("--parallel", parallel, "Chunk downloads at once")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  auto* courses = app.add_subcommand("courses", "List the courses on this device (offline)");
  courses->add_flag("--json", g.json, "Print JSON");
  auto* lessons = app.add_subcommand("lessons", "List a course's lessons (offline)");
  lessons->add_option("COURSE", course, "Course id, as `kaban courses` shows it")->required();
  lessons->add_flag("--json", g.json, "Print JSON");
  auto* open = app.add_subcommand("open", "Write a lesson's file to stdout or a file (offline)");
  open->add_option("LESSON", lesson, "COURSE/LESSON, as `kaban lessons` shows it")->required();
  open->add_option("--file", file, "Which of the lesson's files (default: its first)");
  open->add_option("--out", out, "Write to this path instead of stdout");
  auto* status = app.add_subcommand("status", "Server, device id, last sync (offline)");
  status->add_flag("--json", g.json, "Print JSON");

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
  if (*sync_cmd)
    return run_sync(g, parallel);
  if (*courses)
    return run_courses(g);
  if (*lessons)
    return run_lessons(g, course);
  if (*open)
    return run_open(g, lesson, file, out);
  if (*status)
    return run_status(g);
  std::cout << app.help();
  return kExitOk;
} catch (const std::exception& e) {
  std::cerr << "kaban: internal error: " << e.what() << '\n';
  return kExitFailed;
}
