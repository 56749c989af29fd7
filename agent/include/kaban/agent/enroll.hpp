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
#include "kaban/protocol/policy.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// The shortest PIN the built-in policy accepts (protocol::Policy{}.pin_min_length); a device
/// policy may ask for more.
inline constexpr std::size_t kMinPinLength = 6;
/// The longest PIN (anything longer is surely a mistake, e.g. a whole file).
inline constexpr std::size_t kMaxPinLength = 128;

/// Succeeds if `pin` may protect a store under `policy`: at most kMaxPinLength bytes, no line
/// break, and protocol::pin_rule_violation(policy, pin) has nothing to say (length, simple
/// PINs). Fills `why` with a sentence for the person otherwise, and fails with
/// errc::invalid_input. Before the server answered, check against the built-in protocol::Policy{}.
Result<void> check_new_pin(std::string_view pin, const protocol::Policy& policy, std::string& why);
/// The same under the built-in policy.
Result<void> check_new_pin(std::string_view pin, std::string& why);

/// What this device tells the server about itself (platform facts and the agent version).
protocol::DeviceDescription this_device();

/// The User-Agent the agent sends: "kaban/VERSION (PLATFORM)".
std::string user_agent();

struct EnrollOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds request_timeout{30'000};
};

/// What a redeemed enrollment code gives: the identity the store keeps, and what goes into the
/// guard beside it (kaban/agent/guard.hpp). Move-only, like the identity.
struct Enrollment : DeviceIdentity {
  /// The policy the device is under from the start, as the server signed it (empty text from an
  /// older server), and its settings: its signature and device id were checked against the
  /// identity, so the PIN rules in `policy` may be applied to the first PIN.
  protocol::SignedText signed_policy;
  protocol::Policy policy;
  /// 32 random bytes as hex, made here: the server holds only its hash (report_token_hash) and
  /// takes the device's wipe/lock events on it (see protocol::DeviceEventsRequest).
  std::string report_token;
};

/// Step one, before any PIN is asked: makes a P-256 key and a certificate request, and a report
/// token, connects to the server named by `line` trusting only a CA with the line's fingerprint
/// (checked in the TLS handshake, before anything is sent), and redeems the code. Nothing is
/// stored yet. Fails with errc::server_unreachable, errc::server_untrusted (the pin did not
/// match: nothing was sent), errc::server_refused (wrong, used or expired code: `why` has the
/// server's words), errc::bad_response (an answer that does not check out, e.g. a certificate for
/// another key, a CA that does not match the pin, or a policy that does not verify). Blocks; any
/// thread.
Result<Enrollment> request_enrollment(const protocol::EnrollmentLine& line,
                                      const EnrollOptions& options, std::string& why);

/// Step two: creates the encrypted store in `dir` under `pin`, keeps the identity and the PIN's
/// facts in it, and writes the guard (server, CA, signing key, report token, the enrollment's
/// policy; a guard left by an earlier, wiped enrollment of the directory is replaced).
/// errc::invalid_input if `pin` breaks the enrollment's policy (check_new_pin says why; nothing
/// is created), errc::store_exists if `dir` already holds a store (nothing is changed); a
/// failure after the store was made removes it again. Same thread rule as Store.
Result<void> complete_enrollment(const std::filesystem::path& dir, const Enrollment& enrollment,
                                 std::string_view pin, const crypto::ScryptParams& kdf = {});

/// Changes the PIN of the open `store`: checks `new_pin` under `policy` (errc::invalid_input
/// with `why`), rewraps the data key (crypto::errc::wrong_key if `old_pin` is wrong; nothing
/// changes) and records the new PIN's facts. Callers open the store through open_guarded() with
/// `old_pin` first, so wrong PINs are counted. Same thread rule as Store.
Result<void> change_pin(Store& store, std::string_view old_pin, std::string_view new_pin,
                        const protocol::Policy& policy, std::string& why,
                        const crypto::ScryptParams& kdf = {});

}  // namespace kaban::agent
