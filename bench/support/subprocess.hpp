// Child processes of a benchmark: started with exactly the environment given, their output
// appended to files, timed from start to exit, with their resource usage from wait4 and their
// CPU time while they run from /proc/PID/stat. A child never outlives the benchmark: the
// destructor stops it (SIGTERM, then SIGKILL), and the kernel kills it if the benchmark itself
// dies (PR_SET_PDEATHSIG). Each child leads a process group of its own, so a Ctrl-C reaches the
// benchmark alone, which then stops its children in order.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "failure.hpp"

namespace kaban::bench {

/// What to start.
struct SpawnOptions {
  std::filesystem::path program;
  std::vector<std::string> args;
  std::vector<std::string> env;       ///< "NAME=value": the child's whole environment
  std::filesystem::path stdout_path;  ///< appended to; empty: /dev/null
  std::filesystem::path stderr_path;  ///< appended to; empty: wherever stdout goes
  std::filesystem::path working_dir;  ///< empty: the benchmark's
};

/// How a child ended.
struct ProcessExit {
  int status = -1;    ///< its exit code, or 128 + the signal that ended it
  double wall_s = 0;  ///< from just before it was started until it was reaped
  double user_s = 0;  ///< CPU time, from wait4 (its threads included)
  double system_s = 0;
  std::int64_t peak_rss_bytes = 0;  ///< ru_maxrss
};

/// The last `bytes` bytes of a file (whole lines where possible), for error messages; "" if it
/// cannot be read.
inline std::string tail_of(const std::filesystem::path& path, std::size_t bytes = 1500) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return {};
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (text.size() > bytes) {
    text.erase(0, text.size() - bytes);
    if (const auto newline = text.find('\n'); newline != std::string::npos)
      text.erase(0, newline + 1);
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

/// One child process. Not thread-safe: the thread that started it waits for it.
class Subprocess {
 public:
  /// How long stop() and the destructor wait after SIGTERM before SIGKILL.
  static constexpr std::chrono::seconds kStopGrace{10};

  /// Starts the child. `name` names it in messages ("kaban sync", "nginx"). Throws BenchError
  /// if an output file cannot be opened or the program cannot be executed.
  Subprocess(const SpawnOptions& options, std::string name) : name_(std::move(name)) {
    std::vector<std::string> args = options.args;
    args.insert(args.begin(), options.program.string());
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env = options.env;
    std::vector<char*> envp;
    for (auto& e : env)
      envp.push_back(e.data());
    envp.push_back(nullptr);

    const int out = open_output(options.stdout_path);
    int err = -1;
    try {
      if (!options.stderr_path.empty())
        err = open_output(options.stderr_path);
    } catch (...) {
      ::close(out);
      throw;
    }
    int report[2];  // the child writes errno here if exec fails; exec closes it otherwise
    if (::pipe2(report, O_CLOEXEC) != 0) {
      ::close(out);
      if (err >= 0)
        ::close(err);
      throw BenchError("cannot start " + name_ + ": pipe: " + std::strerror(errno));
    }
    const pid_t parent = ::getpid();
    const char* dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
    started_ = std::chrono::steady_clock::now();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls from here to exec: the benchmark may have other threads.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent)
        ::_exit(127);
      ::setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      const int null_in = ::open("/dev/null", O_RDONLY);
      if (null_in >= 0)
        ::dup2(null_in, STDIN_FILENO);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(err >= 0 ? err : out, STDERR_FILENO);
      if (dir == nullptr || ::chdir(dir) == 0)
        ::execve(argv[0], argv.data(), envp.data());
      const int e = errno;
      [[maybe_unused]] const ssize_t ignored = ::write(report[1], &e, sizeof e);
      ::_exit(127);
    }
    const int fork_errno = errno;
    ::close(out);
    if (err >= 0)
      ::close(err);
    ::close(report[1]);
    if (pid_ < 0) {
      ::close(report[0]);
      throw BenchError("cannot start " + name_ + ": fork: " + std::strerror(fork_errno));
    }
    int exec_errno = 0;
    ssize_t n;
    do {
      n = ::read(report[0], &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    ::close(report[0]);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
      reap(true);
      throw BenchError("cannot run " + options.program.string() + " (" + name_ +
                       "): " + std::strerror(exec_errno));
    }
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  }

  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  /// Stops the child if it still runs (SIGTERM, then SIGKILL after kStopGrace) and reaps it.
  ~Subprocess() {
    try {
      stop();
    } catch (...) {
      // Unwinding from another failure, which is the one to report.
    }
    if (pidfd_ >= 0)
      ::close(pidfd_);
  }

  pid_t pid() const noexcept { return pid_; }
  const std::string& name() const noexcept { return name_; }
  /// How it ended, once it was reaped.
  const std::optional<ProcessExit>& exit_info() const noexcept { return exit_; }

  /// True while the child runs; reaps it if it has ended.
  bool running() {
    if (!exit_)
      reap(false);
    return !exit_;
  }

  /// Waits up to `limit` for the child to end. std::nullopt if it still runs then. Throws
  /// BenchError if a stop signal arrives meanwhile (the child keeps running; the destructor
  /// stops it).
  std::optional<ProcessExit> wait_for(std::chrono::milliseconds limit) {
    wait_until_ended(limit, true);
    return exit_;
  }

  /// Waits up to `limit` for the child to end and returns how it ended; if it runs longer, it
  /// is killed and BenchError says so.
  ProcessExit wait(std::chrono::milliseconds limit) {
    if (auto ended = wait_for(limit))
      return *ended;
    stop(std::chrono::seconds(2));
    throw BenchError(
        name_ + " did not finish within " +
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(limit).count()) +
        " s and was stopped");
  }

  /// Asks the child to end (SIGTERM to its process group), waits up to `grace`, then kills it
  /// (SIGKILL). Returns how it ended. Does not throw on stop signals: it is what runs after one.
  ProcessExit stop(std::chrono::milliseconds grace = kStopGrace) {
    if (running()) {
      signal(SIGTERM);
      wait_until_ended(grace, false);
      if (!exit_) {
        signal(SIGKILL);
        reap(true);
      }
    }
    return *exit_;
  }

  /// The CPU seconds (user + system, all threads) the running child has used so far, from
  /// /proc/PID/stat (clock-tick resolution, 10 ms). Throws BenchError if it is not running.
  double cpu_seconds() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    // The command name, in parentheses, may hold spaces: count fields after its last ')'.
    const auto paren = text.rfind(')');
    if (exit_ || !in || paren == std::string::npos || paren + 2 >= text.size())
      throw BenchError("cannot read the CPU time of " + name_ + " (is it still running?)");
    std::istringstream fields(text.substr(paren + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(fields),
                               std::istream_iterator<std::string>()};
    // Fields 14 and 15 of proc(5), utime and stime; the state (field 3) is f[0].
    if (f.size() < 13)
      throw BenchError("unexpected /proc/" + std::to_string(pid_) + "/stat for " + name_);
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    return (std::stod(f[11]) + std::stod(f[12])) / ticks;
  }

 private:
  int open_output(const std::filesystem::path& path) {
    const char* file = path.empty() ? "/dev/null" : path.c_str();
    const int fd = ::open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
      throw BenchError("cannot start " + name_ + ": cannot open " + std::string(file) + ": " +
                       std::strerror(errno));
    return fd;
  }

  // To its process group (its own children too: the rsync daemon forks one per connection),
  // or to it alone if it has no group of its own.
  void signal(int number) const {
    if (::kill(-pid_, number) != 0)
      ::kill(pid_, number);
  }

  // Reaps the child if it ended (or, with `block`, once it ends) and records how.
  void reap(bool block) {
    int status = 0;
    rusage usage{};
    pid_t done;
    do {
      done = ::wait4(pid_, &status, block ? 0 : WNOHANG, &usage);
    } while (done < 0 && errno == EINTR);
    if (done != pid_) {
      if (done < 0)  // not our child any more: nothing left to wait for
        exit_ = ProcessExit{};
      return;
    }
    ProcessExit e;
    e.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    e.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    e.user_s = static_cast<double>(usage.ru_utime.tv_sec) +
               static_cast<double>(usage.ru_utime.tv_usec) / 1e6;
    e.system_s = static_cast<double>(usage.ru_stime.tv_sec) +
                 static_cast<double>(usage.ru_stime.tv_usec) / 1e6;
    e.peak_rss_bytes = static_cast<std::int64_t>(usage.ru_maxrss) * 1024;  // KiB on Linux
    exit_ = e;
  }

  // Waits (poll on the pidfd, or short sleeps without one) until the child ended or `limit`
  // passed; with `interruptible`, a stop signal ends the wait with BenchError.
  void wait_until_ended(std::chrono::milliseconds limit, bool interruptible) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    constexpr std::chrono::milliseconds kSlice{100};
    while (running()) {
      if (interruptible)
        StopSignals::throw_if_stopped();
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline)
        return;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
      const auto slice = std::max(std::chrono::milliseconds(1), std::min(left, kSlice));
      if (pidfd_ >= 0) {
        pollfd p{pidfd_, POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(slice.count()));
      } else {
        std::this_thread::sleep_for(std::min(slice, std::chrono::milliseconds(2)));
      }
    }
  }

  std::string name_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::chrono::steady_clock::time_point started_;
  std::optional<ProcessExit> exit_;
};

/// Waits until `file` holds a line containing `needle` and returns that line, while `process`
/// (which writes the file) runs. Throws BenchError, quoting the end of `log`, if the process
/// ends first or `limit` passes.
inline std::string wait_for_line(Subprocess& process, const std::filesystem::path& file,
                                 const std::string& needle, std::chrono::milliseconds limit,
                                 const std::filesystem::path& log) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    {
      std::ifstream in(file);
      for (std::string line; std::getline(in, line);) {
        if (line.find(needle) != std::string::npos)
          return line;
      }
    }
    const bool ended = !process.running();
    if (ended || std::chrono::steady_clock::now() >= deadline) {
      const std::string tail = tail_of(log);
      throw BenchError(process.name() +
                       (ended
                            ? " exited (status " + std::to_string(process.exit_info()->status) + ")"
                            : " did not get ready in time") +
                       " before printing \"" + needle + "\"" +
                       (tail.empty() ? "" : "; the end of " + log.string() + ":\n" + tail));
    }
    StopSignals::throw_if_stopped();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace kaban::bench
