// The Linux platform layer: data directory rules, device facts, terminals and the secret prompt
// (driven through a real pseudo-terminal in a child process).
#include "kaban/agent/platform.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
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
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "kaban/agent/error.hpp"
#include "kaban/protocol/policy.hpp"
#include "platform/linux_probes.hpp"
#include "test_support.hpp"

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

// ---- security facts, network kind and clocks --------------------------------------------------

namespace fs = std::filesystem;
using kaban::testing::write_text;

// A fake /proc and /sys in a temporary directory, laid out as the kernel lays them out.
class FakeSystem : public ::testing::Test {
 protected:
  static constexpr const char* kRouteHeader =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

  // /proc/net/route with a default route (flags "0003": up, gateway) per (interface, metric).
  void default_routes(const std::vector<std::pair<std::string, int>>& routes,
                      const std::string& flags = "0003") {
    std::string table = kRouteHeader;
    for (const auto& [iface, metric] : routes)
      table += iface + "\t00000000\t0100A8C0\t" + flags + "\t0\t0\t" + std::to_string(metric) +
               "\t00000000\t0\t0\t0   \n";
    // A link-local route that is not the default.
    table += "eth9\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    write_text(proc_ / "net" / "route", table);
  }

  fs::path net(const std::string& iface) { return sys_ / "class" / "net" / iface; }

  // A block device directory in /sys/devices with a device-mapper uuid ("" for none), reached
  // from /sys/dev/block/MAJ:MIN by a relative symlink as the kernel makes it.
  fs::path block_device(const std::string& name, unsigned maj, unsigned min,
                        const std::string& dm_uuid) {
    const fs::path dir = sys_ / "devices" / "virtual" / "block" / name;
    fs::create_directories(dir);
    if (!dm_uuid.empty())
      write_text(dir / "dm" / "uuid", dm_uuid + "\n");
    fs::create_directories(sys_ / "dev" / "block");
    fs::create_symlink(fs::path("../../devices/virtual/block") / name,
                       sys_ / "dev" / "block" / (std::to_string(maj) + ":" + std::to_string(min)));
    return dir;
  }

  // Makes `lower` a slave of `upper`, as LVM or a LUKS mapping on a partition shows it.
  void stack(const fs::path& upper, const std::string& lower) {
    fs::create_directories(upper / "slaves");
    fs::create_symlink(fs::path("../..") / lower, upper / "slaves" / lower);
  }

  std::string encryption(unsigned maj, unsigned min) {
    return linux_probes::disk_encryption(makedev(maj, min), sys_);
  }

  kaban::testing::TempDir tmp_;
  fs::path proc_ = tmp_ / "proc";
  fs::path sys_ = tmp_ / "sys";
};

TEST_F(FakeSystem, NetworkKindFollowsTheDefaultRoutesInterface) {
  default_routes({{"wlan0", 600}});
  fs::create_directories(net("wlan0") / "wireless");
  fs::create_directories(net("wlan0") / "device");
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "wifi");

  default_routes({{"wlp2s0", 600}});
  fs::create_directories(net("wlp2s0") / "device");
  fs::create_directories(net("wlp2s0") / "phy80211");
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "wifi");

  default_routes({{"wwan0", 700}});
  fs::create_directories(net("wwan0") / "device");
  write_text(net("wwan0") / "uevent", "INTERFACE=wwan0\nIFINDEX=5\nDEVTYPE=wwan\n");
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "cellular");

  default_routes({{"enp3s0", 100}});
  fs::create_directories(net("enp3s0") / "device");
  write_text(net("enp3s0") / "uevent", "INTERFACE=enp3s0\nIFINDEX=2\n");
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "wired");
}

TEST_F(FakeSystem, NetworkKindTakesTheDefaultRouteWithTheLowestMetric) {
  default_routes({{"wlan0", 600}, {"eth0", 100}});
  fs::create_directories(net("wlan0") / "wireless");
  fs::create_directories(net("eth0") / "device");
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "wired");
}

TEST_F(FakeSystem, NetworkKindIsUnknownWhenItCannotBeTold) {
  // No route table at all.
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "unknown");
  // No default route.
  write_text(
      proc_ / "net" / "route",
      std::string(kRouteHeader) + "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
  fs::create_directories(net("eth0") / "device");
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "unknown");
  // A default route that is down.
  default_routes({{"eth0", 100}}, "0002");
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "unknown");
  // A VPN tunnel or a bridge: no device behind it, so what it carries is not known.
  default_routes({{"tun0", 50}});
  fs::create_directories(net("tun0"));
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "unknown");
  // An interface sysfs does not know.
  default_routes({{"ghost0", 50}});
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "unknown");
  // A name that would walk out of /sys/class/net.
  default_routes({{"..", 50}});
  fs::create_directories(sys_ / "class" / "device");
  EXPECT_EQ(linux_probes::network_kind(proc_, sys_), "unknown");
}

TEST_F(FakeSystem, DiskEncryptionIsYesOnADmCryptDevice) {
  block_device("dm-0", 253, 0, "CRYPT-LUKS2-4f1c0e4a5b2d4f0e9a1b2c3d4e5f6a7b-luks-root");
  EXPECT_EQ(encryption(253, 0), "yes");
  block_device("dm-1", 253, 1, "CRYPT-PLAIN-swap");
  EXPECT_EQ(encryption(253, 1), "yes");
}

TEST_F(FakeSystem, DiskEncryptionFollowsLvmDownToLuks) {
  block_device("dm-0", 253, 0, "CRYPT-LUKS2-4f1c0e4a5b2d4f0e9a1b2c3d4e5f6a7b-cryptlvm");
  const fs::path home = block_device("dm-2", 253, 2, "LVM-abcdefabcdefabcdef");
  stack(home, "dm-0");
  EXPECT_EQ(encryption(253, 2), "yes");
}

TEST_F(FakeSystem, DiskEncryptionIsUnknownUnlessEveryLayerBelowEncrypts) {
  // LVM on a plain partition.
  block_device("sda2", 8, 2, "");
  const fs::path plain_lvm = block_device("dm-3", 253, 3, "LVM-plain");
  stack(plain_lvm, "sda2");
  EXPECT_EQ(encryption(253, 3), "unknown");

  // LVM spanning an encrypted and a plain device.
  block_device("dm-0", 253, 0, "CRYPT-LUKS2-aaaa-one");
  const fs::path mixed = block_device("dm-4", 253, 4, "LVM-mixed");
  stack(mixed, "dm-0");
  stack(mixed, "sda2");
  EXPECT_EQ(encryption(253, 4), "unknown");

  // A plain partition, a device-mapper device with nothing below it, and integrity-only
  // targets cryptsetup also names CRYPT-.
  EXPECT_EQ(encryption(8, 2), "unknown");
  block_device("dm-5", 253, 5, "LVM-empty");
  EXPECT_EQ(encryption(253, 5), "unknown");
  block_device("dm-6", 253, 6, "CRYPT-VERITY-0123456789abcdef-usr");
  EXPECT_EQ(encryption(253, 6), "unknown");
  block_device("dm-7", 253, 7, "CRYPT-INTEGRITY-data");
  EXPECT_EQ(encryption(253, 7), "unknown");

  // A device sysfs does not list (btrfs and tmpfs have anonymous devices).
  EXPECT_EQ(encryption(0, 42), "unknown");
}

TEST_F(FakeSystem, DiskEncryptionStopsOnADeviceStackThatLoops) {
  const fs::path a = block_device("dm-8", 253, 8, "LVM-a");
  const fs::path b = block_device("dm-9", 253, 9, "LVM-b");
  stack(a, "dm-9");
  stack(b, "dm-8");
  EXPECT_EQ(encryption(253, 8), "unknown");
}

TEST_F(FakeSystem, OsVersionNumberComesFromVersionIdOfTheFirstOsReleaseFile) {
  const fs::path etc = tmp_ / "etc-os-release";
  const fs::path usr = tmp_ / "usr-os-release";
  const std::array<fs::path, 2> files = {etc, usr};

  EXPECT_EQ(linux_probes::os_version_number(files), "");  // neither exists

  write_text(usr, "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\n");
  EXPECT_EQ(linux_probes::os_version_number(files), "22.04");

  write_text(etc,
             "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION=\"12\"\n");
  EXPECT_EQ(linux_probes::os_version_number(files), "12");

  write_text(etc, "ID=alpine\nVERSION_ID=3.19.1\n");
  EXPECT_EQ(linux_probes::os_version_number(files), "3.19.1");

  // A rolling release has no VERSION_ID; the first file that exists decides.
  write_text(etc, "NAME=\"Arch Linux\"\nBUILD_ID=rolling\n");
  EXPECT_EQ(linux_probes::os_version_number(files), "");

  // Not a dotted-decimal version: unknown rather than a guess.
  write_text(etc, "VERSION_ID=\"12-beta\"\n");
  EXPECT_EQ(linux_probes::os_version_number(files), "");
  write_text(etc, "VERSION_ID_LIKE=7\n");
  EXPECT_EQ(linux_probes::os_version_number(files), "");
}

TEST(DescribeSecurity, NeverGuessesOnThisMachine) {
  kaban::testing::TempDir tmp;
  // The store directory does not exist yet: judged by where it will be.
  const SecurityFacts facts = describe_security(tmp / "not" / "yet");
  EXPECT_EQ(facts.screen_lock, "unknown");
  EXPECT_EQ(facts.rooted, "not_applicable");
  EXPECT_TRUE(facts.disk_encryption == "yes" || facts.disk_encryption == "unknown")
      << facts.disk_encryption;
  EXPECT_TRUE(facts.os_version_number.empty() ||
              protocol::is_valid_version(facts.os_version_number))
      << facts.os_version_number;

  // What /etc/os-release says, when it says a plain number.
  std::ifstream os_release("/etc/os-release");
  for (std::string line; std::getline(os_release, line);) {
    if (line == "VERSION_ID=\"12\"") {
      EXPECT_EQ(facts.os_version_number, "12");
    }
  }
}

TEST(NetworkKind, IsOneOfTheFourWords) {
  const std::string kind = network_kind();
  EXPECT_TRUE(kind == "wifi" || kind == "cellular" || kind == "wired" || kind == "unknown") << kind;
}

TEST(ReadClock, ReadsTheWallClockTheBootIdAndTheBootClock) {
  const auto before = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  const ClockNow first = read_clock();
  const ClockNow second = read_clock();
  const auto after = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  EXPECT_GE(first.wall, before);
  EXPECT_LE(first.wall, after);
  EXPECT_GT(first.since_boot, 0);
  EXPECT_GE(second.since_boot, first.since_boot);

  std::ifstream boot_id("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (std::getline(boot_id, id)) {
    EXPECT_EQ(first.boot_id, id);
    EXPECT_EQ(first.boot_id.size(), 36u);  // a UUID, without the line end
  } else {
    EXPECT_EQ(first.boot_id, "");
  }
  EXPECT_EQ(second.boot_id, first.boot_id);
}

}  // namespace
}  // namespace kaban::agent::platform
