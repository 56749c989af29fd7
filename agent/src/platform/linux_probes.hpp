// The Linux probes behind describe_security() and network_kind(), over the directories they read
// (normally /sys, /proc and the os-release files), so tests can run them on a fake tree.
// Internal to kaban::agent.
#pragma once

#include <filesystem>
#include <span>
#include <string>

#include <sys/types.h>

namespace kaban::agent::platform::linux_probes {

/// "yes" if block device `device` (a stat st_dev) is a dm-crypt device, or a device-mapper
/// device (LVM, RAID) whose every underlying device is one, as `sys`/dev/block/MAJ:MIN shows;
/// "unknown" otherwise, including for devices sysfs does not list (btrfs, tmpfs, network file
/// systems). Never fails.
std::string disk_encryption(dev_t device, const std::filesystem::path& sys);

/// VERSION_ID from the first of `os_release_files` that exists, if it is a dotted-decimal version
/// (protocol::is_valid_version); "" otherwise (a rolling release has none).
std::string os_version_number(std::span<const std::filesystem::path> os_release_files);

/// "wifi", "cellular", "wired" or "unknown" for the interface of the IPv4 default route (the one
/// with the lowest metric) in `proc`/net/route, judged from `sys`/class/net/IF.
std::string network_kind(const std::filesystem::path& proc, const std::filesystem::path& sys);

}  // namespace kaban::agent::platform::linux_probes
