// Guard: the device policy the agent enforces by itself, with or without a network: trusted time,
// the signed lease (offline block and wipe), the wrong-PIN counter, IT's lock and wipe, and the
// events the device owes the server. docs/policy.md says what each setting does on the device.
//
// The guard lives in STORE_DIR/guard.json, beside the encrypted store and outside it: it must be
// readable before the PIN is typed (to count wrong PINs, to refuse a locked device, to wipe an
// expired one) and must survive the wipe (to report it). It holds no secret of the store: the
// signed policy and lease, counters, the server's address and CA, and the report token (which
// can only tell the server "this device was wiped/locked"). Someone who can edit the file can
// reset the counter; they could as well copy the store and guess PINs against scrypt offline, so
// the counter is a guard against the person holding a lost phone, not against a forensic lab
// (docs/policy.md, "What the guard cannot do").
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/agent/platform.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// A reading of the device's clocks: wall clock (the person may set it), boot id ("" if the
/// platform cannot tell) and seconds since boot counting suspend. Tests make their own.
using ClockReading = platform::ClockNow;

/// The device's clocks now (platform::read_clock()). Never fails; any thread.
inline ClockReading read_clock_now() {
  return platform::read_clock();
}

/// Where the device stands at a trusted time.
enum class Access {
  open,             ///< everything readable
  policy_blocked,   ///< the last verdict was `blocked`: only IT's messages are readable
  offline_blocked,  ///< past the lease's block_after without a check-in: nothing readable
  wipe_due,         ///< past the lease's wipe_after (or a wipe verdict): wipe now
  locked,           ///< too many wrong PINs or IT's lock: no PIN accepted until unlocked
  wiped,            ///< wiped: only what reports the wipe is left
};
std::string_view to_string(Access access) noexcept;

/// What a command wants of the store: `sync` may run when blocked (a check-in is the way out);
/// `it_messages` (reading messages from IT) when policy-blocked; `content` (courses, lessons,
/// messages, progress, sending) only when open.
enum class Purpose { sync, it_messages, content };

/// Everything guard.json holds. Times are Unix seconds; 0 means never/none.
struct GuardState {
  // Set at enrollment: whom to report to, with what.
  std::string device_id;
  std::string server_host;
  std::uint16_t server_port = 0;
  std::string ca_pem;        ///< the pinned server CA
  std::string signing_key;   ///< the server's Ed25519 signing key, 64 hex digits
  std::string report_token;  ///< 64 hex digits (32 random bytes), see protocol::DeviceEvent

  // From the last accepted check-in (verified against signing_key).
  protocol::SignedText policy;  ///< a DevicePolicy; empty text before the first
  protocol::SignedText lease;   ///< a Lease; empty text before the first check-in
  std::vector<protocol::ComplianceReason> reasons;  ///< of the lease's verdict
  std::string unlock_code_hash;      ///< protocol::unlock_code_hash of IT's current unlock code
  std::int64_t last_checkin_at = 0;  ///< server time of the last successful check-in

  // Trusted time: max(wall, high_water, anchor_server_time + boot time since the anchor, when
  // the boot is the same).
  std::int64_t high_water = 0;
  std::int64_t anchor_server_time = 0;
  std::string anchor_boot_id;
  std::int64_t anchor_since_boot = 0;
  std::int64_t rollback_seconds = 0;  ///< largest step back seen since the last check-in

  // PIN and lock.
  int pin_failures = 0;  ///< wrong PINs in a row
  bool locked = false;
  std::string lock_reason;  ///< "pin_attempts" or "command"
  std::int64_t locked_at = 0;

  // Wipe.
  std::int64_t wiped_at = 0;  ///< set before the store is erased; the erase may still be due
  std::string wipe_reason;    ///< as DeviceEvent::reason

  std::vector<protocol::DeviceEvent> unreported;  ///< events the server has not accepted yet

  friend bool operator==(const GuardState&, const GuardState&) = default;
};

/// The guard of `store_dir`. A directory without guard.json (a store enrolled by an older Kaban)
/// reads as a default GuardState: no lease, so no offline rule until the first check-in.
/// Fails with errc::storage_failed if the file exists but cannot be read or parsed (the caller
/// refuses to open the store then: a damaged guard must not mean "no rules"). Any thread.
Result<GuardState> load_guard(const std::filesystem::path& store_dir);

/// Reads the guard, lets `change` modify it, and writes it back atomically (a temporary file,
/// fsync, rename, fsync of the directory), all under an exclusive lock on STORE_DIR/guard.lock
/// so two kaban processes never lose each other's changes. Creates store_dir (mode 0700) if it
/// does not exist. Returns the state as written. `change` must not throw. errc::storage_failed if
/// it cannot be read or written (then nothing changed). Any thread.
Result<GuardState> update_guard(const std::filesystem::path& store_dir,
                                const std::function<void(GuardState&)>& change);

/// Trusted time for `now`: the largest of the wall clock, the high-water mark, and (in the same
/// boot as the anchor) the anchor's server time plus the boot time elapsed since. Raises
/// state.high_water to it, and records in state.rollback_seconds a wall clock more than
/// kClockTolerance behind it. Save the state afterwards.
inline constexpr std::int64_t kClockTolerance = 300;
std::int64_t trusted_time(GuardState& state, const ClockReading& now);

/// The policy in force: the accepted DevicePolicy's settings, or the built-in defaults before
/// the first (an older store).
protocol::Policy current_policy(const GuardState& state);
/// The accepted lease, if any.
std::optional<protocol::Lease> current_lease(const GuardState& state);

/// Where the device stands at trusted time `now` (wiped, locked, wipe_due, blocked, open; the
/// first that applies).
Access access_at(const GuardState& state, std::int64_t now);

/// Succeeds if `purpose` is allowed at `now`; otherwise errc::access_blocked, errc::device_locked
/// or errc::device_wiped with `why` saying why and what to do, e.g. "Kaban is blocked on this
/// device: it last synced 3 days ago and the policy allows 12 hours offline. Run `kaban sync`
/// with a network."
Result<void> check_access(const GuardState& state, Purpose purpose, std::int64_t now,
                          std::string& why);

/// Verifies and takes the policy and lease of a check-in answer: both signatures against
/// state.signing_key, both naming state.device_id, the policy's version not below the one held
/// and the lease's issued_at not below the one held. Then stores them, the reasons and the unlock
/// code hash, re-anchors trusted time at the lease's issued_at with `now`'s boot clock (the
/// high-water mark becomes issued_at, also downwards: the server's signed time replaces a wall
/// clock that was once set ahead), sets last_checkin_at to issued_at, and clears
/// rollback_seconds. errc::policy_refused with `why` (unsigned, bad
/// signature, another device's, older) and the state unchanged otherwise.
Result<void> accept_checkin(GuardState& state, const protocol::SignedText& policy,
                            const protocol::SignedText& lease,
                            const std::vector<protocol::ComplianceReason>& reasons,
                            const std::string& unlock_code_hash, const ClockReading& now,
                            std::string& why);
/// The same for the policy alone, as enrollment gives it (no lease yet).
Result<void> accept_policy(GuardState& state, const protocol::SignedText& policy, std::string& why);

/// Opens the store with `pin` under the guard, at trusted time from `now`:
/// - wiped (or a wipe was begun and the store still exists: it is erased now): errc::device_wiped;
/// - the lease's wipe_after has passed: wipes (envelope first, then files, recording the event
///   for report_device_events) and fails with errc::device_wiped;
/// - locked: errc::device_locked, the PIN is not tried;
/// - a wrong PIN: counted (the attempt is written to the guard before the PIN is tried, so
///   neither a restart nor a killed process saves one); below the policy's pin_max_attempts
///   errc::wrong_pin with `why` saying how many attempts are left; at it, the policy's
///   pin_failure_action happens (lock: errc::device_locked; wipe: errc::device_wiped);
/// - the right PIN resets the count and returns the store.
/// Access rules past the PIN (blocked) are check_access()'s. Other failures are Store::open's
/// (errc::no_store, without writing anything, where there is no store) or errc::storage_failed
/// if the guard cannot be read or written. Any thread; blocks for the PIN's key derivation.
Result<Store> open_guarded(const std::filesystem::path& store_dir, std::string_view pin,
                           const ClockReading& now, std::string& why);

/// Locks the device (reason "command" with IT's command id, or "pin_attempts") and queues the
/// `locked` event. The store stays as it is; no PIN is accepted until unlock_device().
Result<void> lock_device(const std::filesystem::path& store_dir, std::string_view reason,
                         std::int64_t command_id, std::int64_t at);
/// Unlocks with the code IT read out: compared by hash with the code of the last check-in.
/// Resets the wrong-PIN count and queues the `unlocked` event. errc::invalid_input with `why`
/// for a wrong code (not counted: the code has 80 bits), errc::not_allowed if not locked.
Result<void> unlock_device(const std::filesystem::path& store_dir, std::string_view code,
                           std::int64_t at, std::string& why);

/// Marks the device wiped (reason, command id, time) and queues the `wiped` event, so from this
/// moment nothing opens even if the erase is cut short. Then erase_store() does the erase.
Result<void> record_wipe(const std::filesystem::path& store_dir, std::string_view reason,
                         std::int64_t command_id, std::int64_t at);
/// Crypto-shreds the store (Store::wipe: envelope first, then the database) and drops the policy,
/// lease and reasons from the guard, keeping what reports the wipe. Close every Store on the
/// directory first.
Result<void> erase_store(const std::filesystem::path& store_dir);
/// record_wipe() then erase_store().
Result<void> wipe_device(const std::filesystem::path& store_dir, std::string_view reason,
                         std::int64_t command_id, std::int64_t at);

struct ReportOptions {
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds request_timeout{10'000};
};
/// The requests report_device_events() sends for `state`'s queued events, oldest first: each
/// names state.device_id and state.report_token and carries at most protocol::kMaxDeviceEvents
/// events. Empty if none are queued. Any thread.
std::vector<protocol::DeviceEventsRequest> device_event_requests(const GuardState& state);

/// Sends the queued events to POST /v1/device-events (no client certificate; the report token
/// authenticates them; the server's CA from the guard is the only trust). Removes them from the
/// guard once the server accepted them. Returns how many were sent (0 if none were queued).
/// Fails with the HttpsClient errors (server_unreachable, network_failed, server_refused...);
/// the events stay queued then. Blocks; any thread.
Result<std::size_t> report_device_events(const std::filesystem::path& store_dir,
                                         const ReportOptions& options, std::string& why);

/// True if the PIN must be asked again: more than the policy's pin_idle_minutes since
/// `last_activity` (always, when pin_idle_minutes is 0). For front ends that keep a store open
/// between actions (the CLI asks the PIN at every command).
bool pin_needed(const protocol::Policy& policy, std::int64_t last_activity, std::int64_t now);

}  // namespace kaban::agent
