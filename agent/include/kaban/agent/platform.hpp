// The porting interface: everything the agent needs from the operating system that differs
// between Linux, macOS, Windows, Android and iOS. One implementation per OS lives in
// agent/src/platform/<os>.cpp; docs/porting.md says what each port must provide.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "kaban/result.hpp"

namespace kaban::agent::platform {

/// What the agent tells the server about the device at enrollment and check-in. A field this
/// platform cannot learn for certain is "" (never a guess).
struct DeviceFacts {
  std::string platform;    ///< "linux", "macos", "windows", "android", "ios"
  std::string os_version;  ///< e.g. "Debian GNU/Linux 12 (bookworm); kernel 6.1.0-18-amd64"
  std::string model;       ///< hardware model, e.g. "ThinkPad T14 Gen 3", or ""
  std::string name;        ///< the device's name as its owner set it (the host name), or ""
};

/// Security facts for the check-in posture, each yes/no/unknown (protocol::Fact). A port says
/// unknown whenever it cannot be sure, and never guesses.
struct SecurityFacts {
  std::string screen_lock = "unknown";      ///< a screen lock / device passcode is set
  std::string disk_encryption = "unknown";  ///< the store's file system is on an encrypted disk
  std::string rooted = "unknown";           ///< rooted/jailbroken; "not_applicable" on desktops
  std::string os_version_number;            ///< dotted decimal ("12", "17.4"), "" if unknown
};

/// Facts about the device's security for files under `store_dir`. Linux: screen lock unknown
/// (no portable way to tell); disk encryption "yes" when the file system under store_dir sits on
/// a dm-crypt device, else unknown (a self-encrypting disk or fscrypt cannot be ruled out);
/// rooted not_applicable; os_version_number from VERSION_ID in os-release. Never fails. Any
/// thread.
SecurityFacts describe_security(const std::filesystem::path& store_dir);

/// The kind of network the default route uses: "wifi", "cellular", "wired", or "unknown" (no
/// default route, or the platform cannot tell). Linux reads /proc/net/route and /sys/class/net.
/// Never fails. Any thread.
std::string network_kind();

/// The device's clocks now: wall clock, boot id (/proc/sys/kernel/random/boot_id on Linux) and
/// seconds since boot counting suspend (CLOCK_BOOTTIME). Any thread.
struct ClockNow {
  std::int64_t wall = 0;
  std::string boot_id;
  std::int64_t since_boot = 0;
};
ClockNow read_clock();

/// Where the agent keeps its store when no --data-dir is given. On Linux $XDG_DATA_HOME/kaban
/// when that variable is an absolute path, else $HOME/.local/share/kaban (the home directory
/// from the password database when $HOME is unset); an empty path if no home directory is
/// known, and the caller must then ask for --data-dir. Does not create the directory. Any
/// thread.
std::filesystem::path default_data_dir();

/// Facts about this device from the operating system. Reads a few small system files; never
/// fails (unknown facts are ""). Any thread.
DeviceFacts describe_device();

/// True if `fd` is an interactive terminal (decides between a progress bar and plain lines).
/// Any thread.
bool is_terminal(int fd);

/// The width assumed when the terminal does not report one.
inline constexpr int kDefaultTerminalWidth = 80;

/// The width of the terminal on `fd` in columns, or kDefaultTerminalWidth if `fd` is not a
/// terminal or does not report a width. Any thread.
int terminal_width(int fd);

/// The longest secret read_secret() accepts, in bytes.
inline constexpr std::size_t kMaxSecretBytes = 1024;

/// Asks the person at the terminal for a secret (the store PIN): writes `prompt` to the
/// controlling terminal, reads one line with echo off (Backspace and Ctrl-U edit it), and
/// returns it without the line end. The terminal's previous settings are restored on every
/// path, including errors and Ctrl-C. Fails with std::errc::no_such_device_or_address if the
/// process has no controlling terminal (a service, cron, or no tty: pass the secret another
/// way), agent::errc::interrupted on Ctrl-C, or Ctrl-D on an empty line, or a hang-up,
/// std::errc::value_too_large past kMaxSecretBytes, or the OS error if the terminal cannot be
/// read or set up. Call from one thread at a time (the terminal is shared).
Result<std::string> read_secret(std::string_view prompt);

}  // namespace kaban::agent::platform
