// Compliance: what the server decides about a device at each check-in, from the policy the device
// is under and what it reports (docs/policy.md lists the rules), and the lease it may then go on
// with offline. Pure functions over values: no database, no clock of their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kaban/protocol/compliance.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/policy.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"

namespace kaban::server {

/// How far a device's clock may be from the server's before the check-in warns ("clock").
inline constexpr std::chrono::seconds kMaxClockSkew{300};

/// The verdict of one check-in and the rules behind it.
struct ComplianceVerdict {
  protocol::Verdict verdict = protocol::Verdict::compliant;
  /// Every rule the device breaks or cannot be shown to keep, in kPolicySettings order, then
  /// "clock" and "cache". Empty when compliant.
  std::vector<protocol::ComplianceReason> reasons;
};

/// Evaluates `policy` against what the device reports, at server time `now`:
/// - min_agent_version / min_os_version for the device's platform: an older version gets the
///   rule's action; a version the device does not report (or that is not dotted decimal) warns;
/// - rooted: yes gets rooted_action (unknown and not_applicable: nothing);
/// - require_screen_lock, require_disk_encryption: no blocks, unknown warns;
/// - pin_required without a PIN blocks; a PIN shorter than pin_min_length blocks (a length of 0,
///   unknown, warns); a simple PIN blocks under pin_block_simple;
/// - a clock that was set back since the last check-in, or that is more than kMaxClockSkew from
///   `now`, warns ("clock"); a device_time of 0 (not reported) is not judged;
/// - a store larger than max_cache_mb warns ("cache").
/// The verdict is the most severe action (protocol::verdict_for). Each reason's message is a
/// sentence for the staff member and IT ("Android 11 is older than the required 13; ...").
/// Never fails; any thread.
ComplianceVerdict evaluate_compliance(const protocol::Policy& policy,
                                      const protocol::DeviceDescription& device,
                                      const protocol::Posture& posture, UnixTime now);

/// The lease a check-in at `now` gives: issued_at = now; block_after = now for a blocked or wipe
/// verdict, else now + offline_block_minutes (0 = never); wipe_after = now for a wipe verdict,
/// else now + offline_wipe_days (0 = never). Never fails; any thread.
protocol::Lease make_lease(std::string device_id, const protocol::Policy& policy,
                           std::int64_t policy_version, protocol::Verdict verdict, UnixTime now);

/// Why `device` may not sync content at `now`, as a sentence for the person that says how to lift
/// it, or "" if it may: its last verdict was blocked or wipe, or its lease's block_after passed
/// without a check-in since. Never fails; any thread.
std::string blocked_reason(const Device& device, UnixTime now);

/// "45 s", "12 min", "5 h", "3 d": a duration for a sentence, rounded down to its largest unit.
std::string describe_duration(std::chrono::seconds duration);

}  // namespace kaban::server
