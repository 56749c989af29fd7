// Kaban's own programs as a benchmark runs them: `kaban-server` (init, admin commands, serve as
// a child on 127.0.0.1:0) and `kaban` (enroll, sync, courses, open), each a child process with
// an environment of the run's own, its output kept in the run's log folder.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "failure.hpp"
#include "subprocess.hpp"

namespace kaban::bench {

/// How long one admin or device command may take before the run fails: publishing a course of
/// several GiB hashes and writes every byte.
inline constexpr std::chrono::minutes kCommandLimit{30};
/// How long `kaban-server serve` may take to print its address.
inline constexpr std::chrono::seconds kStartLimit{30};

/// The `kaban` and `kaban-server` programs the benchmark runs: the ones next to its own
/// executable (the build's bin/ folder).
struct KabanPrograms {
  std::filesystem::path agent;
  std::filesystem::path server;

  /// Throws BenchError, saying what to build, if either is missing.
  static KabanPrograms next_to_self() {
    const auto dir = std::filesystem::read_symlink("/proc/self/exe").parent_path();
    KabanPrograms p{dir / "kaban", dir / "kaban-server"};
    for (const auto& program : {p.agent, p.server}) {
      if (::access(program.c_str(), X_OK) != 0) {
        throw BenchError(program.string() +
                         " is missing: build the kaban and kaban-server targets in the same "
                         "build folder (packaging/dev.sh bench NAME does)");
      }
    }
    return p;
  }
};

/// The environment of every child: a fixed PATH, and HOME and TMPDIR inside the run's work
/// folder `home`, so no one's dotfiles (~/.curlrc) or home folder play a part; plus `extra`.
inline std::vector<std::string> child_environment(const std::filesystem::path& home,
                                                  std::vector<std::string> extra = {}) {
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                                  "HOME=" + home.string(), "TMPDIR=" + home.string(),
                                  "LC_ALL=C.UTF-8"};
  for (auto& e : extra)
    env.push_back(std::move(e));
  return env;
}

/// Reads at most `limit` bytes of a file; "" if it cannot be read.
inline std::string read_text(const std::filesystem::path& path, std::size_t limit = 1 << 20) {
  std::ifstream in(path, std::ios::binary);
  std::string text;
  text.resize(limit);
  in.read(text.data(), static_cast<std::streamsize>(limit));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

/// What a finished command left.
struct CommandResult {
  ProcessExit exit;
  std::string out;  ///< its stdout (the first MiB)
};

/// Throws BenchError, quoting the end of the command's stderr and stdout files, unless it
/// exited 0.
inline void expect_success(const std::string& label, const ProcessExit& exit,
                           const std::filesystem::path& out, const std::filesystem::path& err) {
  if (exit.status == 0)
    return;
  std::string detail = tail_of(err);
  if (const std::string o = tail_of(out, 500); !o.empty())
    detail += (detail.empty() ? "" : "\n") + o;
  throw BenchError(label + " failed (exit status " + std::to_string(exit.status) + ")" +
                   (detail.empty() ? "" : ":\n" + detail));
}

/// Runs `program` with `args` to the end: stdout to LOGS/LABEL.out, stderr to LOGS/LABEL.err
/// (both replaced). Throws BenchError, quoting the end of both, unless it exits 0 within
/// `limit`.
inline CommandResult run_command(const std::filesystem::path& program,
                                 std::vector<std::string> args, std::vector<std::string> env,
                                 const std::filesystem::path& logs, const std::string& label,
                                 std::chrono::milliseconds limit = kCommandLimit) {
  const auto out = logs / (label + ".out");
  const auto err = logs / (label + ".err");
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  SpawnOptions options{program, std::move(args), std::move(env), out, err, {}};
  Subprocess process(options, label);
  const ProcessExit exit = process.wait(limit);
  expect_success(label, exit, out, err);
  return {exit, read_text(out)};
}

/// A Kaban server data folder and, while started, `kaban-server serve` on 127.0.0.1.
class KabanServer {
 public:
  /// `data_dir` need not exist yet (init() makes it); `home` is the children's HOME; command
  /// output goes to `logs`, the serve log to LOGS/NAME-serve-N.log for the Nth start (`name`
  /// tells servers of one run apart).
  KabanServer(KabanPrograms programs, std::filesystem::path data_dir, std::filesystem::path home,
              std::filesystem::path logs, std::string name)
      : programs_(std::move(programs)),
        dir_(std::move(data_dir)),
        home_(std::move(home)),
        logs_(std::move(logs)),
        name_(std::move(name)) {}

  const std::filesystem::path& data_dir() const noexcept { return dir_; }

  /// `kaban-server init`: CA, TLS certificate for localhost and 127.0.0.1, signing key.
  void init() { admin({"init"}, name_ + "-init"); }

  /// `admin course publish FOLDER`; returns what it printed.
  std::string publish(const std::filesystem::path& folder, const std::string& label) {
    return admin({"admin", "course", "publish", folder.string()}, label).out;
  }

  /// `admin user add LOGIN --name NAME`.
  void add_user(const std::string& login, const std::string& name) {
    admin({"admin", "user", "add", login, "--name", name}, name_ + "-user-add-" + login);
  }

  /// `admin enroll-code LOGIN [--server ADDRESS]`: the enrollment line, for a device to reach
  /// the server at ADDRESS (default: where serve listens now).
  std::string enroll_line(const std::string& login, const std::string& address,
                          const std::string& label) {
    std::vector<std::string> args = {"admin", "enroll-code", login, "--ttl", "1h"};
    if (!address.empty()) {
      args.push_back("--server");
      args.push_back(address);
    }
    std::string line = admin(std::move(args), label).out;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
      line.pop_back();
    if (line.rfind("kaban://", 0) != 0)
      throw BenchError("admin enroll-code printed no enrollment line: " + line);
    return line;
  }

  /// Starts `kaban-server serve --listen 127.0.0.1:0` and waits until it listens. Throws
  /// BenchError (quoting its log) if it does not.
  void start() {
    if (serve_)
      throw BenchError("the Kaban server is already running");
    ++starts_;
    const std::string base = name_ + "-serve-" + std::to_string(starts_);
    serve_out_ = logs_ / (base + ".out");
    serve_log_ = logs_ / (base + ".log");
    std::filesystem::remove(serve_out_);
    std::filesystem::remove(serve_log_);
    SpawnOptions options{programs_.server,
                         {"--data-dir", dir_.string(), "serve", "--listen", "127.0.0.1:0"},
                         child_environment(home_),
                         serve_out_,
                         serve_log_,
                         {}};
    serve_.emplace(options, "kaban-server serve");
    const std::string line =
        wait_for_line(*serve_, serve_out_, "listening on https://", kStartLimit, serve_log_);
    const auto colon = line.rfind(':');
    try {
      port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
    } catch (const std::exception&) {
      throw BenchError("kaban-server serve printed an address without a port: " + line);
    }
  }

  /// The port serve listens on (after start()).
  std::uint16_t port() const noexcept { return port_; }
  /// "127.0.0.1:PORT".
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  /// CPU seconds serve has used since it started (all its threads).
  double cpu_seconds() const {
    if (!serve_)
      throw BenchError("the Kaban server is not running");
    return serve_->cpu_seconds();
  }
  /// The serve log of the current (or last) start: one JSON line per request.
  const std::filesystem::path& serve_log() const noexcept { return serve_log_; }

  /// Stops serve (SIGTERM; it drains its connections) and throws BenchError if it had died
  /// or did not exit cleanly.
  void stop() {
    if (!serve_)
      return;
    const bool was_running = serve_->running();
    const ProcessExit exit = serve_->stop();
    serve_.reset();
    if (!was_running || exit.status != 0) {
      throw BenchError("kaban-server serve " +
                       std::string(was_running ? "exited with status " : "had died, status ") +
                       std::to_string(exit.status) + "; the end of " + serve_log_.string() + ":\n" +
                       tail_of(serve_log_));
    }
  }

 private:
  CommandResult admin(std::vector<std::string> args, const std::string& label) {
    args.insert(args.begin(), {"--data-dir", dir_.string()});
    return run_command(programs_.server, std::move(args), child_environment(home_), logs_, label);
  }

  KabanPrograms programs_;
  std::filesystem::path dir_;
  std::filesystem::path home_;
  std::filesystem::path logs_;
  std::string name_;
  std::optional<Subprocess> serve_;
  std::filesystem::path serve_out_;
  std::filesystem::path serve_log_;
  std::uint16_t port_ = 0;
  int starts_ = 0;
};

/// A finished `kaban sync`.
struct SyncRun {
  ProcessExit exit;
  /// Seconds from its start until its stderr showed that chunk downloads began (to within
  /// kSyncPoll); std::nullopt if it downloaded nothing or ended before the line was seen.
  std::optional<double> downloads_started_s;
  std::string out;  ///< its stdout (the first MiB)
};

/// How often a running sync's stderr is read.
inline constexpr std::chrono::milliseconds kSyncPoll{10};
/// What `kaban sync` prints on stderr when chunk downloads start ("downloading 1.0 GiB in ...").
inline constexpr const char* kDownloadStartLine = "downloading ";

/// One device: a `kaban` data folder used with a PIN given through KABAN_PIN.
class KabanDevice {
 public:
  KabanDevice(KabanPrograms programs, std::filesystem::path dir, std::filesystem::path home,
              std::filesystem::path logs, std::string pin)
      : programs_(std::move(programs)),
        dir_(std::move(dir)),
        home_(std::move(home)),
        logs_(std::move(logs)),
        pin_(std::move(pin)) {}

  const std::filesystem::path& dir() const noexcept { return dir_; }

  /// `kaban enroll LINE`.
  void enroll(const std::string& line, const std::string& label) { run({"enroll", line}, label); }

  /// `kaban sync`, timed from start to exit, its stdout and stderr (progress) in LOGS/LABEL.out
  /// and .err. While it runs, its stderr is read every kSyncPoll for the line the agent prints
  /// when chunk downloads start. Throws BenchError unless it exits 0 within kCommandLimit.
  SyncRun sync(const std::string& label) {
    const auto out = logs_ / (label + ".out");
    const auto err = logs_ / (label + ".err");
    std::filesystem::remove(out);
    std::filesystem::remove(err);
    SpawnOptions options{programs_.agent,
                         {"--data-dir", dir_.string(), "sync"},
                         child_environment(home_, {"KABAN_PIN=" + pin_}),
                         out,
                         err,
                         {}};
    const auto start = std::chrono::steady_clock::now();
    Subprocess process(options, label);
    SyncRun run;
    while (!process.wait_for(kSyncPoll)) {
      const auto now = std::chrono::steady_clock::now();
      if (!run.downloads_started_s && read_text(err).find(kDownloadStartLine) != std::string::npos)
        run.downloads_started_s = std::chrono::duration<double>(now - start).count();
      if (now - start > kCommandLimit) {
        process.stop(std::chrono::seconds(2));
        throw BenchError(label + " did not finish within " + std::to_string(kCommandLimit.count()) +
                         " minutes and was stopped");
      }
    }
    run.exit = *process.exit_info();
    expect_success(label, run.exit, out, err);
    run.out = read_text(out);
    return run;
  }

  /// `kaban courses --json`.
  nlohmann::json courses(const std::string& label) {
    const CommandResult r = run({"courses", "--json"}, label);
    try {
      return nlohmann::json::parse(r.out);
    } catch (const nlohmann::json::exception& e) {
      throw BenchError("kaban courses --json printed something that is not JSON (" +
                       std::string(e.what()) + "): " + r.out.substr(0, 300));
    }
  }

  /// The course `id` as `kaban courses --json` lists it; throws BenchError unless it is there,
  /// ready (every chunk stored and verified), at `version`, of `size` bytes.
  void expect_course(const std::string& id, std::int64_t version, std::uint64_t size,
                     const std::string& label) {
    const nlohmann::json list = courses(label);
    for (const auto& c : list) {
      if (c.value("id", "") != id)
        continue;
      const auto got_version = c.value("version", std::int64_t{0});
      const auto got_size = c.value("size", std::uint64_t{0});
      if (!c.value("ready", false) || got_version != version || got_size != size) {
        throw BenchError("the device holds course " + id + " as " + c.dump() +
                         ", not ready at version " + std::to_string(version) + " with " +
                         std::to_string(size) + " bytes");
      }
      return;
    }
    throw BenchError("the device does not list course " + id + " after the sync: " + list.dump());
  }

  /// `kaban open COURSE/LESSON --file FILE --out OUT`.
  void open(const std::string& lesson_ref, const std::string& file,
            const std::filesystem::path& out, const std::string& label) {
    run({"open", lesson_ref, "--file", file, "--out", out.string()}, label);
  }

 private:
  CommandResult run(std::vector<std::string> args, const std::string& label) {
    args.insert(args.begin(), {"--data-dir", dir_.string()});
    return run_command(programs_.agent, std::move(args),
                       child_environment(home_, {"KABAN_PIN=" + pin_}), logs_, label);
  }

  KabanPrograms programs_;
  std::filesystem::path dir_;
  std::filesystem::path home_;
  std::filesystem::path logs_;
  std::string pin_;
};

}  // namespace kaban::bench
