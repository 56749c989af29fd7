#include "kaban/agent/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <limits>

#include "kaban/agent/platform.hpp"

namespace kaban::agent {
namespace {

using std::chrono::duration_cast;
using std::chrono::steady_clock;

constexpr std::uint64_t kUnitStep = 1024;
constexpr std::array<const char*, 7> kUnits = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
// Switch to the next unit before "%.1f" would round up to "1024.0".
constexpr double kUnitRollover = 1023.95;
// A rate from less history than this is noise (the first chunk arriving in a burst).
constexpr std::chrono::milliseconds kMinRateSpan{500};
constexpr char kBarDone = '#';
constexpr char kBarToDo = '.';

std::string printf_string(const char* format, auto... args) {
  std::array<char, 64> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), format, args...);
  if (n < 0)
    return {};
  return std::string(buf.data(), std::min(static_cast<std::size_t>(n), buf.size() - 1));
}

double seconds_between(steady_clock::time_point from, steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::string format_rate(double bytes_per_second) {
  return format_bytes(static_cast<std::uint64_t>(std::llround(bytes_per_second))) + "/s";
}

}  // namespace

std::string format_bytes(std::uint64_t bytes) {
  if (bytes < kUnitStep)
    return printf_string("%" PRIu64 " B", bytes);
  double value = static_cast<double>(bytes) / static_cast<double>(kUnitStep);
  std::size_t unit = 1;
  while (value >= kUnitRollover && unit + 1 < kUnits.size()) {
    value /= static_cast<double>(kUnitStep);
    ++unit;
  }
  return printf_string("%.1f %s", value, kUnits[unit]);
}

std::string format_duration(std::chrono::seconds duration) {
  const long long total = std::max<long long>(0, duration.count());
  const long long hours = total / 3600;
  const long long minutes = total % 3600 / 60;
  const long long seconds = total % 60;
  if (hours > 0)
    return printf_string("%lld:%02lld:%02lld", hours, minutes, seconds);
  return printf_string("%lld:%02lld", minutes, seconds);
}

TransferProgress::TransferProgress(std::uint64_t total_bytes, std::FILE* out, Style style,
                                   int width, Clock clock)
    : total_(total_bytes),
      out_(out),
      style_(style),
      width_(width),
      clock_(clock ? std::move(clock) : Clock(&steady_clock::now)),
      started_(clock_()) {
  samples_.push_back({started_, 0});
}

TransferProgress::~TransferProgress() = default;

TransferProgress::Style TransferProgress::style_for(std::FILE* out) {
  return platform::is_terminal(::fileno(out)) ? Style::bar : Style::lines;
}

void TransferProgress::add(std::uint64_t bytes) {
  const std::lock_guard lock(mutex_);
  if (finished_)
    return;
  done_ += bytes;
  const auto now = clock_();
  record_sample(now);
  if (style_ == Style::bar) {
    if (!last_draw_ || now - *last_draw_ >= kRedrawInterval)
      draw_bar(now, false);
  } else {
    print_line(now, false);
  }
}

void TransferProgress::finish() {
  const std::lock_guard lock(mutex_);
  if (finished_)
    return;
  finished_ = true;
  const auto now = clock_();
  if (style_ == Style::bar)
    draw_bar(now, true);
  else
    print_line(now, true);
}

std::uint64_t TransferProgress::done() const {
  const std::lock_guard lock(mutex_);
  return done_;
}

void TransferProgress::record_sample(TimePoint now) {
  // Samples at most every kRedrawInterval keep the window small however many chunks arrive.
  if (now - samples_.back().at >= kRedrawInterval)
    samples_.push_back({now, done_});
  // Keep one sample at or beyond the window's start, so the average spans the whole window.
  while (samples_.size() > 1 && now - samples_[1].at >= kRateWindow)
    samples_.pop_front();
}

std::optional<double> TransferProgress::rate_per_second(TimePoint now) const {
  const Sample& oldest = samples_.front();
  if (now - oldest.at < kMinRateSpan)
    return std::nullopt;
  return static_cast<double>(done_ - oldest.done) / seconds_between(oldest.at, now);
}

int TransferProgress::percent() const {
  if (total_ == 0 || done_ >= total_)
    return 100;
  if (done_ <= std::numeric_limits<std::uint64_t>::max() / 100)
    return static_cast<int>(done_ * 100 / total_);
  return static_cast<int>(static_cast<double>(done_) * 100.0 / static_cast<double>(total_));
}

std::string TransferProgress::bar_line(TimePoint now, bool final) const {
  std::string figures = format_bytes(done_) + " / " + format_bytes(total_);
  if (final) {
    const double elapsed = seconds_between(started_, now);
    if (elapsed > 0)
      figures += "  " + format_rate(static_cast<double>(done_) / elapsed);
    figures += "  in " + format_duration(duration_cast<std::chrono::seconds>(now - started_));
  } else if (const auto rate = rate_per_second(now); rate && *rate > 0) {
    const double remaining = static_cast<double>(total_ > done_ ? total_ - done_ : 0);
    const auto eta = std::chrono::seconds(static_cast<long long>(std::ceil(remaining / *rate)));
    figures += "  " + format_rate(*rate) + "  ETA " + format_duration(eta);
  }

  const int pct = percent();
  const std::string head = printf_string("%4d%%", pct);
  // One column short of the width: writing the last column makes some terminals wrap.
  const auto usable = static_cast<std::size_t>(std::max(width_ - 1, 0));
  const std::size_t fixed = head.size() + 2 + 2 + figures.size();  // " [" and "] "
  if (usable >= fixed + kMinBarWidth) {
    const std::size_t bar_width = usable - fixed;
    const auto filled = static_cast<std::size_t>(bar_width * static_cast<std::size_t>(pct) / 100);
    return head + " [" + std::string(filled, kBarDone) + std::string(bar_width - filled, kBarToDo) +
           "] " + figures;
  }
  std::string line = head + " " + figures;
  if (line.size() > usable)
    line.resize(usable);
  return line;
}

void TransferProgress::draw_bar(TimePoint now, bool final) {
  std::string line = bar_line(now, final);
  const std::size_t length = line.size();
  // Blank out what is left of a longer previous line.
  if (length < last_drawn_length_)
    line.append(last_drawn_length_ - length, ' ');
  last_drawn_length_ = length;
  last_draw_ = now;
  std::fputc('\r', out_);
  std::fputs(line.c_str(), out_);
  if (final)
    std::fputc('\n', out_);
  std::fflush(out_);
}

void TransferProgress::print_line(TimePoint now, bool final) {
  const int pct = percent();
  std::string line = verb_ + " " + format_bytes(done_) + " of " + format_bytes(total_) + " (" +
                     std::to_string(pct) + "%)";
  if (final) {
    line += " in " + format_duration(duration_cast<std::chrono::seconds>(now - started_));
  } else {
    const int step = pct / kLineStepPercent;
    // 100% is left to finish(), which adds the time taken.
    if (step <= last_line_step_ || pct >= 100)
      return;
    last_line_step_ = step;
  }
  line += '\n';
  std::fputs(line.c_str(), out_);
  std::fflush(out_);
}

}  // namespace kaban::agent
