// TransferProgress: what a person sees while content downloads, as a redrawn bar on a terminal
// or as plain lines in a log.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace kaban::agent {

/// "999 B", "1.5 KiB", "12.3 MiB", "1.0 GiB" (binary units, one decimal above bytes).
std::string format_bytes(std::uint64_t bytes);

/// "0:04", "12:34", "1:02:03" (negative durations show as "0:00").
std::string format_duration(std::chrono::seconds duration);

/// Reports the progress of one transfer of a known size. add() may be called from any number of
/// threads at once (the download workers); finish() once, from the thread that started the
/// transfer, after the workers are done. Output goes to a C stream the caller keeps open; write
/// errors on it are ignored (progress is a courtesy, never a reason to fail a download).
class TransferProgress {
 public:
  enum class Style {
    bar,    ///< one line redrawn in place with '\r' (a terminal)
    lines,  ///< a line at every 10% and at the end (a log file or pipe)
  };
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  /// Redraws of the bar are at least this far apart; finish() always draws.
  static constexpr std::chrono::milliseconds kRedrawInterval{100};
  /// The rate is the average over about this much of the most recent history.
  static constexpr std::chrono::seconds kRateWindow{5};
  /// Lines style: one line each time the transfer crosses a multiple of this percentage.
  static constexpr int kLineStepPercent = 10;
  /// Narrower than this, the bar is left out and only the figures are shown.
  static constexpr int kMinBarWidth = 10;

  /// `total_bytes` is the size of the whole transfer (0 counts as already complete). `width` is
  /// the terminal's width in columns (bar style; see platform::terminal_width); the drawn line
  /// stays one column narrower so the terminal never wraps it. `clock` defaults to
  /// std::chrono::steady_clock::now; tests inject their own. Prints nothing until add().
  TransferProgress(std::uint64_t total_bytes, std::FILE* out, Style style, int width,
                   Clock clock = {});
  TransferProgress(const TransferProgress&) = delete;
  TransferProgress& operator=(const TransferProgress&) = delete;
  /// Prints nothing: call finish() to end the line.
  ~TransferProgress();

  /// bar on a terminal, lines otherwise.
  static Style style_for(std::FILE* out);

  /// The word that starts each line in lines style: "downloaded" unless set ("imported").
  /// Call before the first add().
  void set_verb(std::string verb) { verb_ = std::move(verb); }

  /// Counts `bytes` more as transferred and redraws if it is time. Thread-safe. Ignored after
  /// finish().
  void add(std::uint64_t bytes);
  /// Draws the final state (bytes done, average rate, time taken) and ends the line. Later
  /// calls do nothing. Thread-safe.
  void finish();

  /// Bytes counted so far. Thread-safe.
  std::uint64_t done() const;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Sample {
    TimePoint at;
    std::uint64_t done;
  };

  void record_sample(TimePoint now);
  std::optional<double> rate_per_second(TimePoint now) const;
  int percent() const;
  std::string bar_line(TimePoint now, bool final) const;
  void draw_bar(TimePoint now, bool final);
  void print_line(TimePoint now, bool final);

  const std::uint64_t total_;
  std::FILE* const out_;
  const Style style_;
  const int width_;
  const Clock clock_;
  const TimePoint started_;

  mutable std::mutex mutex_;
  std::uint64_t done_ = 0;
  bool finished_ = false;
  std::optional<TimePoint> last_draw_;
  std::size_t last_drawn_length_ = 0;
  int last_line_step_ = 0;
  std::string verb_ = "downloaded";
  std::deque<Sample> samples_;  ///< (time, bytes done) at most every kRedrawInterval
};

}  // namespace kaban::agent
