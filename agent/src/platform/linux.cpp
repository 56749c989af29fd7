#include "kaban/agent/platform.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <vector>

#include "kaban/agent/error.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/protocol/policy.hpp"
#include "linux_probes.hpp"

namespace kaban::agent::platform {
namespace fs = std::filesystem;
namespace {

constexpr const char* kDataDirName = "kaban";
// os-release(5): /etc/os-release wins; /usr/lib/os-release is the vendor's fallback.
const std::array<fs::path, 2> kOsReleaseFiles = {"/etc/os-release", "/usr/lib/os-release"};
constexpr const char* kProductNameFile = "/sys/devices/virtual/dmi/id/product_name";
constexpr const char* kBootIdFile = "/proc/sys/kernel/random/boot_id";
constexpr const char* kSysRoot = "/sys";
constexpr const char* kProcRoot = "/proc";
// Small system files only; anything larger is not what we expect to read.
constexpr std::size_t kMaxFactFileBytes = 64 * 1024;
constexpr std::size_t kMaxHostNameBytes = 256;

// Firmware vendors fill the DMI product name with these when they did not set one; reporting
// them would tell IT something false about the device.
constexpr std::array<std::string_view, 6> kPlaceholderModels = {
    "To Be Filled By O.E.M.", "To be filled by O.E.M.", "System Product Name",
    "Default string",         "Not Applicable",         "None"};

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos)
    return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

// "" when the file is missing, unreadable or implausibly large.
std::string read_small_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return {};
  std::string text;
  std::array<char, 4096> block{};
  while (in.read(block.data(), block.size()) || in.gcount() > 0) {
    text.append(block.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxFactFileBytes)
      return {};
  }
  return text;
}

// os-release values are shell-style: bare, or in single or double quotes with backslash escapes.
std::string unquote_os_release_value(std::string_view v) {
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
    const char quote = v.front();
    v = v.substr(1, v.size() - 2);
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (quote == '"' && v[i] == '\\' && i + 1 < v.size())
        ++i;
      out += v[i];
    }
    return out;
  }
  return std::string(v);
}

// The value of `key` ("PRETTY_NAME") in the first of `files` that exists; "" if that file has
// none: the first file that exists is authoritative, even without the key.
std::string os_release_value(std::span<const fs::path> files, std::string_view key) {
  for (const fs::path& file : files) {
    const std::string text = read_small_file(file);
    if (text.empty())
      continue;
    std::string_view rest = text;
    while (!rest.empty()) {
      const auto end = rest.find('\n');
      const std::string line = trim(rest.substr(0, end));
      rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
      if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == '=')
        return trim(unquote_os_release_value(std::string_view(line).substr(key.size() + 1)));
    }
    return {};
  }
  return {};
}

std::string os_release_pretty_name() {
  return os_release_value(kOsReleaseFiles, "PRETTY_NAME");
}

// device-mapper uuids of the kinds cryptsetup makes for encryption ("CRYPT-LUKS2-<uuid>-name").
// CRYPT-VERITY and CRYPT-INTEGRITY are cryptsetup's too, but protect integrity only.
constexpr std::array<std::string_view, 6> kEncryptingDmUuids = {"CRYPT-LUKS",     "CRYPT-PLAIN-",
                                                                "CRYPT-LOOPAES-", "CRYPT-TCRYPT-",
                                                                "CRYPT-BITLK-",   "CRYPT-FVAULT2-"};
// LVM on RAID on LUKS is three levels; more than this is a loop in a broken tree.
constexpr int kMaxDeviceStackDepth = 8;

// True if the block device whose sysfs directory is `device` encrypts, or stacks only on
// devices that do.
bool encrypted_block_device(const fs::path& device, int depth) {
  if (depth > kMaxDeviceStackDepth)
    return false;
  const std::string uuid = trim(read_small_file(device / "dm" / "uuid"));
  for (const auto prefix : kEncryptingDmUuids) {
    if (uuid.starts_with(prefix))
      return true;
  }
  if (uuid.empty())
    return false;  // a partition or a whole disk: whatever it does itself, we cannot tell
  // Another device-mapper target (LVM, RAID): encrypted only if everything under it is.
  std::error_code ec;
  fs::directory_iterator it(device / "slaves", ec);
  if (ec)
    return false;
  bool any = false;
  for (const auto& lower : it) {
    if (!encrypted_block_device(lower.path(), depth + 1))
      return false;
    any = true;
  }
  return any;
}

// The nearest directory at or above `path` that exists, so a store not created yet is judged
// by where it will be.
fs::path existing_ancestor(fs::path path) {
  std::error_code ec;
  path = fs::absolute(path, ec);
  while (!path.empty() && !fs::exists(path, ec)) {
    if (path == path.parent_path())
      break;
    path = path.parent_path();
  }
  return path;
}

// Splits one line of /proc/net/route into its whitespace-separated fields.
std::vector<std::string> fields_of(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> fields;
  for (std::string f; in >> f;)
    fields.push_back(std::move(f));
  return fields;
}

// The interface of the IPv4 default route with the lowest metric, or "".
std::string default_route_interface(const fs::path& proc) {
  constexpr unsigned long kRouteUp = 0x1;  // RTF_UP
  const std::string table = read_small_file(proc / "net" / "route");
  std::istringstream lines(table);
  std::string line;
  std::getline(lines, line);  // the header
  std::string best;
  unsigned long best_metric = 0;
  while (std::getline(lines, line)) {
    const auto f = fields_of(line);
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    if (f.size() < 8 || f[1] != "00000000" || f[7] != "00000000")
      continue;
    char* end = nullptr;
    const unsigned long flags = std::strtoul(f[3].c_str(), &end, 16);
    if (*end != '\0' || (flags & kRouteUp) == 0)
      continue;
    const unsigned long metric = std::strtoul(f[6].c_str(), &end, 10);
    if (*end != '\0')
      continue;
    if (best.empty() || metric < best_metric) {
      best = f[0];
      best_metric = metric;
    }
  }
  // An interface name never holds a slash; anything else must not walk out of /sys/class/net.
  if (best.find('/') != std::string::npos || best == "." || best == "..")
    return {};
  return best;
}

}  // namespace

namespace linux_probes {

std::string disk_encryption(dev_t device, const fs::path& sys) {
  const fs::path dir =
      sys / "dev" / "block" / (std::to_string(major(device)) + ":" + std::to_string(minor(device)));
  return encrypted_block_device(dir, 0) ? "yes" : "unknown";
}

std::string os_version_number(std::span<const fs::path> os_release_files) {
  std::string version = os_release_value(os_release_files, "VERSION_ID");
  return protocol::is_valid_version(version) ? version : std::string();
}

std::string network_kind(const fs::path& proc, const fs::path& sys) {
  const std::string iface = default_route_interface(proc);
  if (iface.empty())
    return "unknown";
  const fs::path dir = sys / "class" / "net" / iface;
  std::error_code ec;
  if (fs::exists(dir / "wireless", ec) || fs::exists(dir / "phy80211", ec))
    return "wifi";
  std::istringstream uevent(read_small_file(dir / "uevent"));
  for (std::string line; std::getline(uevent, line);) {
    if (trim(line) == "DEVTYPE=wwan")
      return "cellular";
  }
  // A physical NIC has a device behind it; bridges, VPN tunnels and the like do not, and what
  // they carry cannot be told from here.
  if (fs::exists(dir / "device", ec))
    return "wired";
  return "unknown";
}

}  // namespace linux_probes

namespace {

std::string kernel_release() {
  utsname u{};
  if (::uname(&u) != 0)
    return {};
  return u.release;
}

std::string product_name() {
  std::string model = trim(read_small_file(kProductNameFile));
  for (const auto placeholder : kPlaceholderModels) {
    if (model == placeholder)
      return {};
  }
  return model;
}

std::string host_name() {
  std::array<char, kMaxHostNameBytes + 1> buf{};
  if (::gethostname(buf.data(), kMaxHostNameBytes) != 0)
    return {};
  return std::string(buf.data());
}

std::string home_dir() {
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/')
    return home;
  // Services and sudo may run without $HOME; the password database still knows.
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(::getuid(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr ||
      found->pw_dir == nullptr || found->pw_dir[0] != '/')
    return {};
  return found->pw_dir;
}

std::error_code last_errno() {
  return {errno, std::generic_category()};
}

// Owns the /dev/tty descriptor and puts the terminal back as it found it, whatever path the
// prompt leaves by.
class TerminalSession {
 public:
  explicit TerminalSession(int fd) : fd_(fd) {}
  TerminalSession(const TerminalSession&) = delete;
  TerminalSession& operator=(const TerminalSession&) = delete;
  ~TerminalSession() {
    if (saved_)
      ::tcsetattr(fd_, TCSAFLUSH, &original_);
    ::close(fd_);
  }

  int fd() const { return fd_; }

  // Non-canonical, no echo and no signals: we see Ctrl-C as a byte and can restore the
  // terminal before reporting it, instead of dying with echo switched off.
  Result<cc_t> enter_secret_mode() {
    if (::tcgetattr(fd_, &original_) != 0)
      return last_errno();
    saved_ = true;
    termios raw = original_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (::tcsetattr(fd_, TCSAFLUSH, &raw) != 0)
      return last_errno();
    return original_.c_cc[VERASE];
  }

  const termios& original() const { return original_; }

 private:
  int fd_;
  termios original_{};
  bool saved_ = false;
};

Result<void> write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return last_errno();
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return kaban::ok();
}

// Drops the last UTF-8 character, so one Backspace removes one typed character.
void erase_last_character(std::string& s) {
  while (!s.empty()) {
    const auto byte = static_cast<unsigned char>(s.back());
    s.pop_back();
    if ((byte & 0xC0) != 0x80)
      return;
  }
}

}  // namespace

fs::path default_data_dir() {
  // XDG base directory spec: relative values are invalid and must be ignored.
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && xdg[0] == '/')
    return fs::path(xdg) / kDataDirName;
  const std::string home = home_dir();
  if (home.empty())
    return {};
  return fs::path(home) / ".local" / "share" / kDataDirName;
}

DeviceFacts describe_device() {
  DeviceFacts facts;
  facts.platform = "linux";
  const std::string pretty = os_release_pretty_name();
  const std::string kernel = kernel_release();
  if (!pretty.empty() && !kernel.empty())
    facts.os_version = pretty + "; Linux " + kernel;
  else if (!kernel.empty())
    facts.os_version = "Linux " + kernel;
  else
    facts.os_version = pretty;
  facts.model = product_name();
  facts.name = host_name();
  return facts;
}

SecurityFacts describe_security(const fs::path& store_dir) {
  SecurityFacts facts;
  // No desktop-independent way to learn whether the session locks: unknown, not a guess.
  facts.screen_lock = "unknown";
  facts.rooted = "not_applicable";
  struct stat st {};
  if (const fs::path where = existing_ancestor(store_dir);
      !where.empty() && ::stat(where.c_str(), &st) == 0)
    facts.disk_encryption = linux_probes::disk_encryption(st.st_dev, kSysRoot);
  facts.os_version_number = linux_probes::os_version_number(kOsReleaseFiles);
  return facts;
}

std::string network_kind() {
  return linux_probes::network_kind(kProcRoot, kSysRoot);
}

ClockNow read_clock() {
  ClockNow now;
  timespec ts{};
  if (::clock_gettime(CLOCK_REALTIME, &ts) == 0)
    now.wall = ts.tv_sec;
  // CLOCK_BOOTTIME keeps counting through suspend, which CLOCK_MONOTONIC does not: a laptop
  // closed for a week must not gain a week of offline allowance.
  if (::clock_gettime(CLOCK_BOOTTIME, &ts) == 0)
    now.since_boot = ts.tv_sec;
  now.boot_id = trim(read_small_file(kBootIdFile));
  return now;
}

bool is_terminal(int fd) {
  return ::isatty(fd) == 1;
}

int terminal_width(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0)
    return kDefaultTerminalWidth;
  return ws.ws_col;
}

Result<std::string> read_secret(std::string_view prompt) {
  // The controlling terminal, not stdin: a PIN must come from the person even when stdin is a
  // pipe, and must never be read from a file by accident.
  const int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0)
    return std::make_error_code(std::errc::no_such_device_or_address);
  TerminalSession tty(fd);
  KABAN_TRY(erase_key, tty.enter_secret_mode());
  KABAN_TRYV(write_all(tty.fd(), prompt));

  std::string secret;
  // Reserved up front so growing never leaves a stray copy in freed memory.
  secret.reserve(kMaxSecretBytes);
  const cc_t interrupt = tty.original().c_cc[VINTR];
  const cc_t end_of_file = tty.original().c_cc[VEOF];
  const cc_t kill_line = tty.original().c_cc[VKILL];
  for (;;) {
    char c = 0;
    const ssize_t n = ::read(tty.fd(), &c, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      const auto ec = last_errno();
      crypto::secure_wipe(secret);
      return ec;
    }
    const auto byte = static_cast<cc_t>(c);
    // The person pressed Enter: echo was off, so move to the next line ourselves.
    if (n > 0 && (c == '\n' || c == '\r')) {
      (void)write_all(tty.fd(), "\n");
      return secret;
    }
    if (n == 0 || byte == interrupt || (byte == end_of_file && secret.empty())) {
      (void)write_all(tty.fd(), "\n");
      crypto::secure_wipe(secret);
      return errc::interrupted;
    }
    if (byte == erase_key || c == '\b' || c == '\x7f') {
      erase_last_character(secret);
    } else if (byte == kill_line) {
      crypto::secure_wipe(secret);
      secret.clear();
    } else if (secret.size() >= kMaxSecretBytes) {
      crypto::secure_wipe(secret);
      return std::make_error_code(std::errc::value_too_large);
    } else if (byte >= 0x20) {  // other control characters are not part of a secret
      secret += c;
    }
  }
}

}  // namespace kaban::agent::platform
