// The Linux platform layer: data directory rules, device facts, terminals and the secret prompt
// (driven through a real pseudo-terminal in a child process).
#include "kaban/agent/platform.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "kaban/agent/error.hpp"

namespace kaban::agent::platform {
namespace {

constexpr int kIoTimeoutMs = 5000;

// Sets or unsets an environment variable for one scope and puts the old value back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name))
      old_ = old;
    if (value != nullptr)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
    s.pop_back();
  return s;
}

// Reads what the child wrote to the pty until `needle` shows up (or the child stops writing).
std::string read_until(int fd, const std::string& needle) {
  std::string seen;
  while (seen.find(needle) == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, kIoTimeoutMs) <= 0)
      break;
    std::array<char, 256> buf{};
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0)
      break;
    seen.append(buf.data(), static_cast<std::size_t>(n));
  }
  return seen;
}

// What the child reports after read_secret: "ok:<secret>" or "err:<message>", then whether the
// terminal echoes again.
struct PromptOutcome {
  std::string result;
  std::string terminal_output;  ///< everything the child wrote to its terminal
};

// Runs read_secret("PIN: ") in a child whose controlling terminal is a fresh pty, types `input`
// once the prompt is shown, and collects the child's report.
PromptOutcome run_prompt(const std::string& input) {
  int report[2];
  if (::pipe(report) != 0)
    throw std::runtime_error("pipe failed");
  int master = -1;
  const pid_t child = ::forkpty(&master, nullptr, nullptr, nullptr);
  if (child < 0)
    throw std::runtime_error("forkpty failed");
  if (child == 0) {
    ::close(report[0]);
    auto secret = read_secret("PIN: ");
    termios after{};
    ::tcgetattr(STDIN_FILENO, &after);
    std::string line = secret ? "ok:" + secret.value() : "err:" + secret.error().message();
    line += (after.c_lflag & ECHO) != 0 ? "|echo-on" : "|echo-off";
    (void)!::write(report[1], line.data(), line.size());
    ::_exit(0);
  }
  ::close(report[1]);
  PromptOutcome outcome;
  outcome.terminal_output = read_until(master, "PIN: ");
  (void)!::write(master, input.data(), input.size());

  std::array<char, 512> buf{};
  pollfd p{report[0], POLLIN, 0};
  if (::poll(&p, 1, kIoTimeoutMs) > 0) {
    const ssize_t n = ::read(report[0], buf.data(), buf.size());
    if (n > 0)
      outcome.result.assign(buf.data(), static_cast<std::size_t>(n));
  } else {
    ::kill(child, SIGKILL);  // a hung prompt: the empty result fails the test
  }
  ::waitpid(child, nullptr, 0);
  // The child is gone: drain what it left on the terminal (the read ends with EIO), so nothing
  // typed could hide there.
  outcome.terminal_output += read_until(master, "\x04never");
  ::close(report[0]);
  ::close(master);
  return outcome;
}

TEST(DefaultDataDir, UsesXdgDataHome) {
  ScopedEnv xdg("XDG_DATA_HOME", "/srv/xdg-data");
  ScopedEnv home("HOME", "/home/tester");
  EXPECT_EQ(default_data_dir(), std::filesystem::path("/srv/xdg-data/kaban"));
}

TEST(DefaultDataDir, FallsBackToHomeWhenXdgIsUnsetOrRelative) {
  ScopedEnv home("HOME", "/home/tester");
  {
    ScopedEnv xdg("XDG_DATA_HOME", nullptr);
    EXPECT_EQ(default_data_dir(), std::filesystem::path("/home/tester/.local/share/kaban"));
  }
  {
    ScopedEnv xdg("XDG_DATA_HOME", "relative/dir");
    EXPECT_EQ(default_data_dir(), std::filesystem::path("/home/tester/.local/share/kaban"));
  }
  {
    ScopedEnv xdg("XDG_DATA_HOME", "");
    EXPECT_EQ(default_data_dir(), std::filesystem::path("/home/tester/.local/share/kaban"));
  }
}

TEST(DefaultDataDir, WithoutHomeUsesThePasswordDatabase) {
  ScopedEnv xdg("XDG_DATA_HOME", nullptr);
  ScopedEnv home("HOME", nullptr);
  const auto dir = default_data_dir();
  // Whatever the account's home is, the layout below it is fixed; no home gives "".
  if (!dir.empty()) {
    EXPECT_TRUE(dir.is_absolute()) << dir;
    EXPECT_EQ(dir.filename(), "kaban");
    EXPECT_EQ(dir.parent_path().filename(), "share");
  }
}

TEST(DescribeDevice, ReportsLinuxHostNameKernelAndOsRelease) {
  const DeviceFacts facts = describe_device();
  EXPECT_EQ(facts.platform, "linux");

  std::array<char, 257> host{};
  ASSERT_EQ(::gethostname(host.data(), host.size() - 1), 0);
  EXPECT_EQ(facts.name, std::string(host.data()));

  utsname u{};
  ASSERT_EQ(::uname(&u), 0);
  EXPECT_TRUE(facts.os_version.ends_with(std::string("Linux ") + u.release)) << facts.os_version;

  // An unquoted or double-quoted PRETTY_NAME without escapes, as every distribution writes it.
  std::ifstream os_release("/etc/os-release");
  std::string line;
  while (std::getline(os_release, line)) {
    if (!line.starts_with("PRETTY_NAME="))
      continue;
    std::string pretty = line.substr(12);
    if (pretty.size() >= 2 && pretty.front() == '"')
      pretty = pretty.substr(1, pretty.size() - 2);
    EXPECT_TRUE(facts.os_version.starts_with(pretty + "; Linux ")) << facts.os_version;
  }
}

TEST(DescribeDevice, ModelComesFromDmiOrIsEmpty) {
  const DeviceFacts facts = describe_device();
  std::ifstream product("/sys/devices/virtual/dmi/id/product_name");
  std::string model;
  if (!product || !std::getline(product, model)) {
    EXPECT_EQ(facts.model, "");
    return;
  }
  // Either the firmware's name, or "" for a placeholder the vendor left in.
  if (!facts.model.empty()) {
    EXPECT_EQ(facts.model, trim(model));
  }
}

TEST(Terminal, PipeIsNotATerminalAndHasTheDefaultWidth) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  EXPECT_FALSE(is_terminal(fds[0]));
  EXPECT_EQ(terminal_width(fds[1]), kDefaultTerminalWidth);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_FALSE(is_terminal(-1));
  EXPECT_EQ(terminal_width(-1), kDefaultTerminalWidth);
}

TEST(Terminal, PtyIsATerminalAndReportsItsWidth) {
  int master = -1;
  int slave = -1;
  winsize size{};
  size.ws_col = 123;
  size.ws_row = 40;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, &size), 0);
  EXPECT_TRUE(is_terminal(slave));
  EXPECT_EQ(terminal_width(slave), 123);

  size.ws_col = 0;  // a terminal that does not know its width
  ASSERT_EQ(::ioctl(slave, TIOCSWINSZ, &size), 0);
  EXPECT_EQ(terminal_width(slave), kDefaultTerminalWidth);
  ::close(slave);
  ::close(master);
}

TEST(ReadSecret, ReadsOneLineWithoutEchoAndRestoresTheTerminal) {
  const auto outcome = run_prompt(
      "s3x\x7f"
      "cret\n");
  EXPECT_EQ(outcome.result, "ok:s3cret|echo-on");
  EXPECT_NE(outcome.terminal_output.find("PIN: "), std::string::npos);
  EXPECT_EQ(outcome.terminal_output.find("s3"), std::string::npos) << outcome.terminal_output;
  EXPECT_EQ(outcome.terminal_output.find("cret"), std::string::npos) << outcome.terminal_output;
}

TEST(ReadSecret, CtrlCInterruptsAndRestoresTheTerminal) {
  const auto outcome = run_prompt("12\x03");
  EXPECT_EQ(outcome.result, "err:" + make_error_code(errc::interrupted).message() + "|echo-on");
}

TEST(ReadSecret, CtrlUStartsTheLineAgain) {
  const auto outcome = run_prompt("wrong\x15right\r");
  EXPECT_EQ(outcome.result, "ok:right|echo-on");
}

TEST(ReadSecret, FailsClearlyWithoutATerminal) {
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(report[0]);
    ::setsid();  // a new session has no controlling terminal
    auto secret = read_secret("PIN: ");
    const char verdict =
        !secret && secret.error() == std::errc::no_such_device_or_address ? 'y' : 'n';
    (void)!::write(report[1], &verdict, 1);
    ::_exit(0);
  }
  ::close(report[1]);
  char verdict = 0;
  pollfd p{report[0], POLLIN, 0};
  ASSERT_GT(::poll(&p, 1, kIoTimeoutMs), 0);
  ASSERT_EQ(::read(report[0], &verdict, 1), 1);
  ::waitpid(child, nullptr, 0);
  ::close(report[0]);
  EXPECT_EQ(verdict, 'y');
}

}  // namespace
}  // namespace kaban::agent::platform
