// How a benchmark run ends early: BenchError for a failure (one sentence for the person running
// it), and StopSignals, which turns Ctrl-C (SIGINT, SIGTERM, SIGHUP) into a BenchError at the
// next check, so the run unwinds and every destructor removes what it made.
#pragma once

#include <signal.h>

#include <atomic>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>

namespace kaban::bench {

/// A failure that ends the run. Its text says what went wrong and, where it helps, what to do.
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Catches SIGINT, SIGTERM and SIGHUP for the whole process from install() on. The handler only
/// sets a flag; long waits poll it (throw_if_stopped), and blocking system calls return EINTR
/// because the handler is installed without SA_RESTART. Child processes get the default
/// dispositions back at exec.
class StopSignals {
 public:
  /// Installs the handler. Call once, from main, before any thread starts.
  static void install() {
    struct sigaction action {};
    action.sa_handler = &on_signal;
    sigemptyset(&action.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP})
      sigaction(s, &action, nullptr);
  }
  /// True once one of the signals arrived. Any thread.
  static bool stop_requested() noexcept { return number_.load() != 0; }
  /// Throws BenchError if a signal arrived. Any thread.
  static void throw_if_stopped() {
    if (const int s = number_.load(); s != 0)
      throw BenchError("stopped by signal " + std::to_string(s));
  }

 private:
  static void on_signal(int s) noexcept { number_.store(s); }

  static_assert(std::atomic<int>::is_always_lock_free, "set from a signal handler");
  inline static std::atomic<int> number_{0};
};

/// The whole of a benchmark's main(): installs StopSignals, runs `run`, and turns an exception
/// into one line on stderr naming `program` and exit status 1.
inline int run_main(const char* program, int (*run)(int, char**), int argc, char** argv) {
  StopSignals::install();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what()
              << "\n(every process it started was stopped and its work folder removed, unless "
                 "--keep; no results were printed)\n";
    return 1;
  }
}

}  // namespace kaban::bench
