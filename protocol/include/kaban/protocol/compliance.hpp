// Compliance on the wire: what a device reports about its security at check-in (Posture), the
// server's verdict and reasons, the signed policy and lease a device obeys offline, IT's queued
// commands (wipe, lock), and the events a device reports back (wiped, locked, unlocked).
// docs/protocol.md and docs/policy.md describe them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/crypto/ed25519.hpp"
#include "kaban/protocol/policy.hpp"
#include "kaban/result.hpp"

namespace kaban::protocol {

/// A fact the device may or may not be able to tell. A port reports `unknown` when it cannot be
/// sure (never a guess); `not_applicable` only for `rooted` on platforms with no such notion.
enum class Fact { unknown, yes, no, not_applicable };
std::string_view to_string(Fact fact) noexcept;
std::optional<Fact> parse_fact(std::string_view text) noexcept;

/// What the device says about its security at every check-in (besides its DeviceDescription).
struct Posture {
  Fact screen_lock = Fact::unknown;
  Fact disk_encryption = Fact::unknown;
  Fact rooted = Fact::unknown;
  std::string os_version_number;  ///< dotted decimal ("12", "17.4.1"), "" when unknown
  bool pin_set = true;
  int pin_length = 0;            ///< 0 when unknown (a store made before PINs were recorded)
  bool pin_simple = false;       ///< protocol::is_simple_pin of the PIN in use
  std::int64_t device_time = 0;  ///< the device's wall clock as it sends, Unix seconds
  /// The largest step back of the wall clock the agent saw since its last check-in, in seconds
  /// (0: none). The server records it and warns.
  std::int64_t clock_rollback_seconds = 0;
  std::uint64_t cache_bytes = 0;    ///< bytes of the encrypted store on disk
  std::string network = "unknown";  ///< "wifi", "cellular", "wired" or "unknown"
  /// Bytes of course content the device's last sync left waiting because the disk holding the
  /// store was nearly full (0: none), and the free bytes that disk had then. Both are sent only
  /// when content_waiting_bytes is not 0, so a check-in without a shortage reads as before.
  std::uint64_t content_waiting_bytes = 0;
  std::uint64_t disk_free_bytes = 0;
  friend bool operator==(const Posture&, const Posture&) = default;
};

/// The server's answer to a posture. compliant < warn < blocked < wipe.
enum class Verdict { compliant, warn, blocked, wipe };
std::string_view to_string(Verdict verdict) noexcept;
std::optional<Verdict> parse_verdict(std::string_view text) noexcept;
/// The verdict an action leads to: none -> compliant, warn -> warn, block -> blocked, wipe -> wipe.
Verdict verdict_for(ComplianceAction action) noexcept;

/// One rule the device breaks (or cannot be shown to keep).
struct ComplianceReason {
  std::string setting;  ///< a kPolicySettings name, or "clock" / "cache" for the warnings
  ComplianceAction action = ComplianceAction::warn;
  std::string message;  ///< for the person: "Android 11 is older than the required 13"
  friend bool operator==(const ComplianceReason&, const ComplianceReason&) = default;
};

/// A JSON text and its Ed25519 signature by the server's signing key (128 hex digits over the
/// exact bytes of `text`). The text travels as a string and is parsed only after it verifies.
struct SignedText {
  std::string text;
  std::string signature;
  friend bool operator==(const SignedText&, const SignedText&) = default;
};
SignedText sign_text(std::string text, const crypto::Ed25519PrivateKey& key);
/// Succeeds if `signed_text.signature` is `key`'s signature of `signed_text.text`; fails with
/// errc::bad_signature (also for an empty or malformed signature: an unsigned document).
Result<void> verify_text(const SignedText& signed_text, const crypto::Ed25519PublicKey& key);

/// The policy one device is under, as the server signs it. `type` in the text is
/// "kaban.policy", so no other signed document (a manifest, a lease) can pass for one.
struct DevicePolicy {
  std::string device_id;
  std::int64_t version = 0;    ///< increases with every change that may alter a device's policy
  std::int64_t issued_at = 0;  ///< server time, Unix seconds
  Policy settings;
  friend bool operator==(const DevicePolicy&, const DevicePolicy&) = default;
};
std::string device_policy_text(const DevicePolicy& policy);
/// errc::malformed / missing_field / invalid_value, also for a text whose type is not
/// "kaban.policy".
Result<DevicePolicy> parse_device_policy_text(std::string_view text, std::string* why = nullptr);

/// How long the device may go on offline, as the server signs it at each check-in. `type` in the
/// text is "kaban.lease". block_after / wipe_after of 0 mean never. A blocked verdict has
/// block_after == issued_at; a wipe verdict wipe_after == issued_at.
struct Lease {
  std::string device_id;
  std::int64_t issued_at = 0;  ///< server time, Unix seconds
  std::int64_t block_after = 0;
  std::int64_t wipe_after = 0;
  std::int64_t policy_version = 0;
  Verdict verdict = Verdict::compliant;
  friend bool operator==(const Lease&, const Lease&) = default;
};
std::string lease_text(const Lease& lease);
Result<Lease> parse_lease_text(std::string_view text, std::string* why = nullptr);

/// A command IT queued for a device (`admin device wipe|lock`), sent at each check-in until the
/// device reports it done.
enum class CommandKind { wipe, lock };
std::string_view to_string(CommandKind kind) noexcept;
std::optional<CommandKind> parse_command_kind(std::string_view text) noexcept;
struct DeviceCommand {
  std::int64_t id = 0;
  CommandKind kind = CommandKind::wipe;
  friend bool operator==(const DeviceCommand&, const DeviceCommand&) = default;
};

/// Something the device did to itself that IT must learn of. Sent to POST /v1/device-events
/// without a client certificate (a wiped or locked device has no usable key), authenticated by
/// the device's report token (32 random bytes the agent made at enrollment, kept outside the
/// store; the server holds its SHA-256 from the enrollment and check-in requests).
enum class DeviceEventKind { wiped, locked, unlocked };
std::string_view to_string(DeviceEventKind kind) noexcept;
std::optional<DeviceEventKind> parse_device_event_kind(std::string_view text) noexcept;
/// Why: "command" (IT's queued command, command_id says which), "offline" (the lease's
/// wipe_after passed), "verdict" (the check-in verdict was wipe), "pin_attempts", "unlock_code".
struct DeviceEvent {
  DeviceEventKind kind = DeviceEventKind::wiped;
  std::string reason;
  std::int64_t command_id = 0;  ///< 0 unless reason is "command"
  std::int64_t at = 0;          ///< the device's trusted time, Unix seconds
  friend bool operator==(const DeviceEvent&, const DeviceEvent&) = default;
};
inline constexpr std::size_t kMaxDeviceEvents = 16;
inline constexpr std::size_t kMaxDeviceEventsRequestSize = 8 * 1024;
struct DeviceEventsRequest {
  std::string device_id;
  std::string report_token;         ///< 64 hex digits
  std::vector<DeviceEvent> events;  ///< 1..kMaxDeviceEvents
};
std::string to_json(const DeviceEventsRequest& v);
Result<DeviceEventsRequest> parse_device_events_request(std::string_view json,
                                                        std::string* why = nullptr);

/// The SHA-256 of a report token or unlock code as 64 lower-case hex digits. A report token is
/// hashed as the text given (its 64 hex digits, not the 32 bytes they spell); an unlock code is
/// normalised first (upper case, dashes and spaces dropped), so "abcd-efgh" and "ABCDEFGH" hash
/// alike. Never fail; any thread.
std::string report_token_hash(std::string_view report_token_hex);
std::string unlock_code_hash(std::string_view typed_code);

}  // namespace kaban::protocol
