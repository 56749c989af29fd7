// TransferProgress with an injected clock: what a person sees, frame by frame, without sleeping.
#include "kaban/agent/progress.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace kaban::agent {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::steady_clock::time_point;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;

// A memory-backed FILE* whose text the test can read at any time (the code flushes).
class CapturedOutput {
 public:
  CapturedOutput() : file_(::open_memstream(&data_, &size_)) {
    if (file_ == nullptr)
      throw std::runtime_error("open_memstream failed");
  }
  CapturedOutput(const CapturedOutput&) = delete;
  CapturedOutput& operator=(const CapturedOutput&) = delete;
  ~CapturedOutput() {
    std::fclose(file_);
    std::free(data_);
  }
  std::FILE* file() const { return file_; }
  std::string text() {
    std::fflush(file_);
    return std::string(data_, size_);
  }

 private:
  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::FILE* file_;
};

// A clock the test moves by hand.
struct ManualClock {
  TimePoint now{};
  TransferProgress::Clock function() {
    return [this] { return now; };
  }
};

// The frames of bar output: the text between successive '\r's (the last one without "\n").
std::vector<std::string> frames(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while ((at = text.find('\r', at)) != std::string::npos) {
    const std::size_t end = text.find_first_of("\r\n", at + 1);
    out.push_back(text.substr(at + 1, end == std::string::npos ? end : end - at - 1));
    at += 1;
  }
  return out;
}

std::string rtrim(std::string s) {
  while (!s.empty() && s.back() == ' ')
    s.pop_back();
  return s;
}

TEST(FormatBytes, UsesBinaryUnitsWithOneDecimal) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(999), "999 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.0 KiB");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(12 * kMiB + 300 * kKiB), "12.3 MiB");
  EXPECT_EQ(format_bytes(kGiB), "1.0 GiB");
  // Just under a unit rolls over rather than showing "1024.0 KiB".
  EXPECT_EQ(format_bytes(kMiB - 1), "1.0 MiB");
  EXPECT_EQ(format_bytes(std::numeric_limits<std::uint64_t>::max()), "16.0 EiB");
}

TEST(FormatDuration, ShowsMinutesAndSecondsAndHoursWhenNeeded) {
  EXPECT_EQ(format_duration(0s), "0:00");
  EXPECT_EQ(format_duration(4s), "0:04");
  EXPECT_EQ(format_duration(62s), "1:02");
  EXPECT_EQ(format_duration(3599s), "59:59");
  EXPECT_EQ(format_duration(3723s), "1:02:03");
  EXPECT_EQ(format_duration(36000s), "10:00:00");
  EXPECT_EQ(format_duration(-5s), "0:00");
}

TEST(TransferProgressLines, PrintsALineAtEachTenPercentStepAndAtTheEnd) {
  CapturedOutput out;
  ManualClock clock;
  TransferProgress progress(1000, out.file(), TransferProgress::Style::lines, 80, clock.function());
  progress.add(50);
  EXPECT_EQ(out.text(), "");
  clock.now += 1s;
  progress.add(60);
  EXPECT_EQ(out.text(), "downloaded 110 B of 1000 B (11%)\n");
  progress.add(5);
  EXPECT_EQ(out.text(), "downloaded 110 B of 1000 B (11%)\n");
  // A jump over several steps gives one line.
  progress.add(300);
  clock.now += 2s;
  progress.add(585);  // 100%: left to finish()
  progress.finish();
  EXPECT_EQ(out.text(),
            "downloaded 110 B of 1000 B (11%)\n"
            "downloaded 415 B of 1000 B (41%)\n"
            "downloaded 1000 B of 1000 B (100%) in 0:03\n");
}

TEST(TransferProgressLines, FinishWhenInterruptedShowsWhereItStopped) {
  CapturedOutput out;
  ManualClock clock;
  TransferProgress progress(4 * kMiB, out.file(), TransferProgress::Style::lines, 80,
                            clock.function());
  progress.add(kMiB);
  progress.finish();
  progress.finish();
  progress.add(kMiB);
  EXPECT_EQ(out.text(),
            "downloaded 1.0 MiB of 4.0 MiB (25%)\n"
            "downloaded 1.0 MiB of 4.0 MiB (25%) in 0:00\n");
  EXPECT_EQ(progress.done(), kMiB);
}

TEST(TransferProgressBar, DrawsPercentBarFiguresRateAndEtaWithinTheWidth) {
  CapturedOutput out;
  ManualClock clock;
  TransferProgress progress(100 * kMiB, out.file(), TransferProgress::Style::bar, 80,
                            clock.function());
  clock.now += 1s;
  progress.add(37 * kMiB);

  const auto drawn = frames(out.text());
  ASSERT_EQ(drawn.size(), 1u);
  const std::string& line = drawn[0];
  EXPECT_EQ(line.size(), 79u) << line;  // one column short of the width
  EXPECT_TRUE(line.starts_with("  37% [")) << line;
  const std::string figures = "] 37.0 MiB / 100.0 MiB  37.0 MiB/s  ETA 0:02";
  ASSERT_TRUE(line.ends_with(figures)) << line;
  const std::size_t bar_width = line.size() - 7 - figures.size();
  const std::size_t filled = bar_width * 37 / 100;
  EXPECT_EQ(line.substr(7, bar_width),
            std::string(filled, '#') + std::string(bar_width - filled, '.'));
}

TEST(TransferProgressBar, RedrawsAtMostEveryHundredMilliseconds) {
  CapturedOutput out;
  ManualClock clock;
  TransferProgress progress(100 * kMiB, out.file(), TransferProgress::Style::bar, 80,
                            clock.function());
  progress.add(kMiB);
  clock.now += 50ms;
  progress.add(kMiB);
  EXPECT_EQ(frames(out.text()).size(), 1u);
  clock.now += 50ms;
  progress.add(kMiB);
  const auto drawn = frames(out.text());
  ASSERT_EQ(drawn.size(), 2u);
  EXPECT_TRUE(drawn[1].starts_with("   3% [")) << drawn[1];
  EXPECT_EQ(out.text().find('\n'), std::string::npos);
}

TEST(TransferProgressBar, RateIsAMovingAverageOverTheLastSeconds) {
  CapturedOutput out;
  ManualClock clock;
  TransferProgress progress(100 * kMiB, out.file(), TransferProgress::Style::bar, 200,
                            clock.function());
  for (int second = 0; second < 10; ++second) {
    clock.now += 1s;
    progress.add(kMiB);
  }
  EXPECT_NE(frames(out.text()).back().find(" 1.0 MiB/s  ETA 1:30"), std::string::npos)
      << frames(out.text()).back();
  for (int second = 0; second < 5; ++second) {
    clock.now += 1s;
    progress.add(3 * kMiB);
  }
  // 25 MiB done; the last 5 s ran at 3 MiB/s, the whole transfer at 1.7 MiB/s.
  const std::string last = frames(out.text()).back();
  EXPECT_NE(last.find(" 3.0 MiB/s  ETA 0:25"), std::string::npos) << last;
}

TEST(TransferProgressBar, FinishDrawsTheFinalStateAndEndsTheLine) {
  CapturedOutput out;
  ManualClock clock;
  TransferProgress progress(10 * kMiB, out.file(), TransferProgress::Style::bar, 80,
                            clock.function());
  clock.now += 1s;
  progress.add(2 * kMiB);
  clock.now += 4s;
  progress.add(8 * kMiB);
  progress.finish();
  const std::string text = out.text();
  ASSERT_TRUE(text.ends_with("\n"));
  const auto drawn = frames(text);
  ASSERT_EQ(drawn.size(), 3u);
  EXPECT_TRUE(drawn[2].starts_with(" 100% [####")) << drawn[2];
  EXPECT_TRUE(rtrim(drawn[2]).ends_with("] 10.0 MiB / 10.0 MiB  2.0 MiB/s  in 0:05")) << drawn[2];
  const std::string bar = drawn[2].substr(7, drawn[2].find(']') - 7);
  EXPECT_EQ(bar, std::string(bar.size(), '#'));
}

TEST(TransferProgressBar, ShorterLineBlanksOutThePreviousOne) {
  CapturedOutput out;
  ManualClock clock;
  // Too narrow for a bar, so the line's length follows its figures.
  TransferProgress progress(100 * kGiB, out.file(), TransferProgress::Style::bar, 60,
                            clock.function());
  clock.now += 1s;
  progress.add(kMiB);  // an ETA in hours
  clock.now += 1s;
  progress.add(50 * kGiB);  // "ETA 0:02"
  const auto drawn = frames(out.text());
  ASSERT_EQ(drawn.size(), 2u);
  EXPECT_TRUE(drawn[0].ends_with("ETA 28:26:39")) << drawn[0];
  EXPECT_TRUE(rtrim(drawn[1]).ends_with("ETA 0:02")) << drawn[1];
  EXPECT_LT(rtrim(drawn[1]).size(), drawn[0].size());
  EXPECT_EQ(drawn[1].size(), drawn[0].size());
}

TEST(TransferProgressBar, NarrowTerminalDropsTheBarAndStaysWithinTheWidth) {
  CapturedOutput out;
  ManualClock clock;
  TransferProgress progress(100 * kMiB, out.file(), TransferProgress::Style::bar, 40,
                            clock.function());
  clock.now += 1s;
  progress.add(50 * kMiB);
  const auto drawn = frames(out.text());
  ASSERT_EQ(drawn.size(), 1u);
  EXPECT_EQ(drawn[0].find('['), std::string::npos) << drawn[0];
  EXPECT_TRUE(drawn[0].starts_with("  50% 50.0 MiB / 100.0 MiB")) << drawn[0];
  EXPECT_LE(drawn[0].size(), 39u);
}

TEST(TransferProgress, ZeroTotalIsComplete) {
  CapturedOutput out;
  ManualClock clock;
  TransferProgress progress(0, out.file(), TransferProgress::Style::lines, 80, clock.function());
  progress.finish();
  EXPECT_EQ(out.text(), "downloaded 0 B of 0 B (100%) in 0:00\n");
}

TEST(TransferProgress, AddIsSafeFromManyThreads) {
  CapturedOutput out;
  constexpr int kThreads = 4;
  constexpr int kAddsPerThread = 10'000;
  TransferProgress progress(kThreads * kAddsPerThread, out.file(), TransferProgress::Style::bar,
                            80);
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < kAddsPerThread; ++i)
        progress.add(1);
    });
  }
  for (auto& worker : workers)
    worker.join();
  EXPECT_EQ(progress.done(), static_cast<std::uint64_t>(kThreads * kAddsPerThread));
  progress.finish();
  EXPECT_TRUE(frames(out.text()).back().starts_with(" 100% ["));
}

}  // namespace
}  // namespace kaban::agent
