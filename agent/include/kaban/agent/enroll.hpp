// Enrollment: turning the one line IT hands out into a device identity in an encrypted store.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

#include "kaban/agent/device_identity.hpp"
#include "kaban/crypto/scrypt.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// The shortest PIN a store accepts.
inline constexpr std::size_t kMinPinLength = 6;
/// The longest PIN (anything longer is surely a mistake, e.g. a whole file).
inline constexpr std::size_t kMaxPinLength = 128;

/// Succeeds if `pin` may protect a store: kMinPinLength to kMaxPinLength bytes, no line break.
/// Fills `why` otherwise.
Result<void> check_new_pin(std::string_view pin, std::string& why);

/// What this device tells the server about itself (platform facts and the agent version).
protocol::DeviceDescription this_device();

/// The User-Agent the agent sends: "kaban/VERSION (PLATFORM)".
std::string user_agent();

struct EnrollOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds request_timeout{30'000};
};

/// Step one, before any PIN is asked: makes a P-256 key and a certificate request, connects to
/// the server named by `line` trusting only a CA with the line's fingerprint (checked in the TLS
/// handshake, before anything is sent), and redeems the code. The identity it returns is not
/// stored yet. Fails with errc::server_unreachable, errc::server_untrusted (the pin did not
/// match: nothing was sent), errc::server_refused (wrong, used or expired code: `why` has the
/// server's words), errc::bad_response (an answer that does not check out, e.g. a certificate for
/// another key or a CA that does not match the pin). Blocks; any thread.
Result<DeviceIdentity> request_enrollment(const protocol::EnrollmentLine& line,
                                          const EnrollOptions& options, std::string& why);

/// Step two: creates the encrypted store in `dir` under `pin` and keeps the identity in it.
/// errc::store_exists if `dir` already holds a store (nothing is changed).
Result<void> complete_enrollment(const std::filesystem::path& dir, const DeviceIdentity& identity,
                                 std::string_view pin, const crypto::ScryptParams& kdf = {});

}  // namespace kaban::agent
