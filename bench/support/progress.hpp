// Progress of a long setup step on stderr: a line rewritten in place on a terminal, otherwise
// one line at each quarter, so a log stays short.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <string>
#include <utility>

namespace kaban::bench {

class Progress {
 public:
  /// `what` names the step ("writing the course"); `total` counts what add() counts, shown
  /// divided by `scale` in `unit` (bytes shown in MiB: scale 1 MiB, unit "MiB").
  Progress(std::string what, std::uint64_t total, std::string unit, std::uint64_t scale = 1)
      : what_(std::move(what)),
        unit_(std::move(unit)),
        total_(std::max<std::uint64_t>(total, 1)),
        scale_(std::max<std::uint64_t>(scale, 1)),
        tty_(isatty(STDERR_FILENO) == 1) {}

  /// Adds `n` done and shows the new state if it moved enough. One thread.
  void add(std::uint64_t n) {
    done_ = std::min(total_, done_ + n);
    const std::uint64_t percent = done_ * 100 / total_;
    if (tty_) {
      if (percent != shown_ || done_ == total_) {
        shown_ = percent;
        std::cerr << "\r" << line(percent) << (done_ == total_ ? "\n" : "") << std::flush;
      }
    } else if (percent / 25 > quarters_shown_) {
      quarters_shown_ = percent / 25;
      std::cerr << line(percent) << std::endl;
    }
  }

 private:
  std::string line(std::uint64_t percent) const {
    return what_ + ": " + std::to_string(done_ / scale_) + "/" + std::to_string(total_ / scale_) +
           " " + unit_ + " (" + std::to_string(percent) + "%)";
  }

  const std::string what_;
  const std::string unit_;
  const std::uint64_t total_;
  const std::uint64_t scale_;
  const bool tty_;
  std::uint64_t done_ = 0;
  std::uint64_t shown_ = 101;         // terminal: the percentage on screen
  std::uint64_t quarters_shown_ = 0;  // otherwise: the quarters printed
};

}  // namespace kaban::bench
