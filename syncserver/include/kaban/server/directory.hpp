// Directory: the server's users, their one-time enrollment codes and their enrolled devices: each
// device's certificates, compliance state, IT's queued commands and the events it reported.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/policy.hpp"
#include "kaban/result.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

/// Longest display name of a user, in bytes.
inline constexpr std::size_t kMaxUserNameSize = 200;
/// Random bits in an enrollment or unlock code: 16 Crockford base32 characters of 5 bits each.
inline constexpr std::size_t kEnrollCodeBytes = 10;
/// The fewest hex digits of a device id that name a device in admin commands.
inline constexpr std::size_t kMinDevicePrefix = 8;

struct User {
  std::string login;
  std::string name;
  UnixTime created_at;
};

/// A device as the directory holds it. Times are Unix seconds where they are std::int64_t, 0
/// meaning "never" or "not set".
struct Device {
  std::string id;  ///< hex SHA-256 of the DER of its first certificate
  std::string login;
  std::string serial;           ///< serial of the first certificate, hex
  std::string certificate_pem;  ///< the first certificate ("" in list_devices)
  protocol::DeviceDescription description;
  UnixTime enrolled_at;
  UnixTime last_checkin_at;
  bool revoked = false;
  std::int64_t revoked_at = 0;

  // The compliance state as of the last check-in (docs/policy.md).
  protocol::Verdict verdict = protocol::Verdict::compliant;
  std::vector<protocol::ComplianceReason> reasons;
  /// The DevicePolicy version of the last check-in; 0 if the device never checked in under a
  /// policy (it enrolled and has not checked in since).
  std::int64_t policy_version = 0;
  std::int64_t block_after = 0;  ///< the lease's; 0 = never
  std::int64_t wipe_after = 0;   ///< the lease's; 0 = never
  std::int64_t clock_skew = 0;   ///< device time - server time at the last check-in, seconds
  std::int64_t certificate_not_after = 0;  ///< of its newest certificate; 0 if unknown

  // What the device reported (POST /v1/device-events).
  std::int64_t wiped_at = 0;  ///< server time of the report
  std::string wipe_reason;
  std::int64_t locked_at = 0;  ///< reported locked and not unlocked since
  std::string lock_reason;
};

/// What a successful enrollment hands back to the device.
struct EnrolledDevice {
  std::string device_id;
  std::string login;
  std::string user_name;
  crypto::Certificate certificate;
  protocol::Policy policy;          ///< the user's effective policy at enrollment
  std::int64_t policy_version = 0;  ///< the policy counter then (DevicePolicy::version)
};

/// The optional parts of an enrollment.
struct EnrollOptions {
  /// protocol::report_token_hash of the device's report token; "" when the agent sent none.
  std::string report_token_hash;
  /// The address the request came from, for the audit log; "" when unknown.
  std::string peer_address;
};

/// What one check-in stores (Directory::record_checkin).
struct CheckinRecord {
  protocol::DeviceDescription description;
  protocol::Posture posture;
  protocol::Verdict verdict = protocol::Verdict::compliant;
  std::vector<protocol::ComplianceReason> reasons;
  std::int64_t policy_version = 0;
  std::int64_t block_after = 0;
  std::int64_t wipe_after = 0;
  std::int64_t clock_skew = 0;
  std::string report_token_hash;  ///< "" keeps the one held
};

/// An IT command queued for a device (`admin device wipe|lock`).
struct QueuedCommand {
  std::int64_t id = 0;
  protocol::CommandKind kind = protocol::CommandKind::wipe;
  std::string requested_by;
  std::int64_t requested_at = 0;
  std::int64_t sent_at = 0;  ///< the last check-in that carried it; 0 if none yet
};

/// The directory over one database connection. Not thread-safe: one Directory per connection,
/// used by the connection's thread. The database must outlive it. Every method fails with
/// errc::storage_failed if SQLite fails; a failed method changes nothing. Methods that change a
/// device record what they did in the audit log (AuditLog) in the same transaction.
class Directory {
 public:
  explicit Directory(SQLite::Database& db) : db_(db) {}

  /// Adds a user. Fails with errc::invalid_login unless protocol::is_valid_login(login)
  /// ([a-z0-9][a-z0-9._-]{0,63}), errc::invalid_name for an empty name or one over
  /// kMaxUserNameSize bytes, errc::user_exists if the login is taken.
  Result<void> add_user(std::string_view login, std::string_view name, UnixTime now);
  /// Every user, by login.
  Result<std::vector<User>> list_users();
  /// The user with `login`, or std::nullopt.
  Result<std::optional<User>> find_user(std::string_view login);

  /// Makes a one-time enrollment code for `login`, valid for `ttl` from `now`: 16 Crockford
  /// base32 characters from the CSPRNG (80 bits) as "XXXX-XXXX-XXXX-XXXX". Only its SHA-256 is
  /// stored, so the returned text is the only copy. Fails with errc::no_such_user.
  Result<std::string> create_enroll_code(std::string_view login, std::chrono::seconds ttl,
                                         UnixTime now);

  /// Redeems `typed_code` (any case, dashes optional) for a device: verifies `csr_pem`, issues a
  /// client certificate signed by the server CA, valid for the certificate_lifetime_days of the
  /// user's effective policy (Policies::effective_for), records the device, its first
  /// certificate (device_certificates), the report token hash, a new unlock code and an audit
  /// entry (device_enrolled), and marks the code used, in one transaction. Fails with
  /// errc::enroll_code_invalid (malformed or unknown), errc::enroll_code_used,
  /// errc::enroll_code_expired (at `now` or later), errc::csr_invalid. Of concurrent redeems of
  /// one code on different connections exactly one succeeds; the others get enroll_code_used.
  /// The certificate's common name is the CSR's (crypto::issue_certificate copies it); the
  /// device's login is the devices row, looked up by device id, never the certificate's name.
  Result<EnrolledDevice> enroll_device(std::string_view typed_code, std::string_view csr_pem,
                                       const protocol::DeviceDescription& description, UnixTime now,
                                       const ServerIdentity& identity,
                                       const EnrollOptions& options = {});

  /// The device with this id (revoked or not), or std::nullopt.
  Result<std::optional<Device>> find_device(std::string_view device_id);
  /// The device a certificate was issued to, by the certificate's fingerprint (64 hex digits of
  /// the SHA-256 of its DER): its first one or any renewal. std::nullopt if no device has it.
  Result<std::optional<Device>> find_device_by_certificate(std::string_view fingerprint);
  /// The device named by `id_or_prefix`: a whole id, or at least kMinDevicePrefix hex digits
  /// that begin exactly one device's id (either case). Fails with errc::no_such_device (also
  /// for a prefix that is too short or not hex) or errc::ambiguous_device.
  Result<Device> resolve_device(std::string_view id_or_prefix);
  /// True if the certificate with this fingerprint belongs to a revoked device; false if it
  /// belongs to a device that is not revoked, or to none (the API refuses those itself).
  Result<bool> certificate_revoked(std::string_view fingerprint);

  /// Stores one check-in: what the device reports about itself, its posture, the verdict and
  /// reasons, the lease times, the clock skew, the report token hash (when given) and the time.
  /// A verdict other than the device's previous one is recorded in the audit log
  /// (verdict_changed, with both verdicts and the reasons). True if the device is known; false
  /// (nothing changed) if not.
  Result<bool> record_checkin(std::string_view device_id, const CheckinRecord& record,
                              UnixTime now);
  /// Issues a new certificate for the device from `csr` (already checked to carry the device's
  /// key), valid for `lifetime`, and records it (device_certificates, the device's
  /// certificate_not_after, an audit entry certificate_renewed). The older certificates stay
  /// valid until they expire. Fails with errc::no_such_device, errc::csr_invalid if the CA
  /// refuses to issue it.
  Result<crypto::Certificate> renew_certificate(std::string_view device_id,
                                                const crypto::CertificateRequest& csr,
                                                std::chrono::seconds lifetime, UnixTime now,
                                                const ServerIdentity& identity);

  /// Every device, by login then enrollment time (certificate PEMs left empty).
  Result<std::vector<Device>> list_devices();
  /// Marks the device revoked at `now` (a device revoked earlier keeps its first time). True if
  /// the device is known; false (nothing changed) if not.
  Result<bool> revoke_device(std::string_view device_id, UnixTime now);

  /// Queues a command for the device's next check-ins, unless one of the same kind is pending
  /// already (then that one's id is returned and nothing changes); records `event` in the audit
  /// log with `actor`. Fails with errc::no_such_device or errc::device_revoked (a revoked device
  /// never checks in again).
  Result<std::int64_t> queue_command(std::string_view device_id, protocol::CommandKind kind,
                                     std::string_view actor, UnixTime now);
  /// The device's pending commands (not done, not cancelled), oldest first.
  Result<std::vector<QueuedCommand>> pending_commands(std::string_view device_id);
  /// The pending commands to send in a check-in answer now, oldest first; marks them sent at
  /// `now`. A command stays pending until the device reports it done (record_device_events).
  Result<std::vector<protocol::DeviceCommand>> take_commands_to_send(std::string_view device_id,
                                                                     UnixTime now);

  /// The device's current unlock code (XXXX-XXXX-XXXX-XXXX), made now if it has none (a device
  /// enrolled before unlock codes). Fails with errc::no_such_device.
  Result<std::string> unlock_code(std::string_view device_id);

  /// True if `report_token` (64 hex digits) hashes to the report token hash the device gave;
  /// false for another token, an unknown device or a device that never gave one. Compares in
  /// constant time.
  Result<bool> report_token_matches(std::string_view device_id, std::string_view report_token);
  /// Applies what the device reports it did, in one transaction, each with an audit entry
  /// (device_wiped, device_locked, device_unlocked; actor device:<id>): wiped sets wiped_at and
  /// the reason and marks the wipe command named done; locked sets locked_at and the reason and
  /// marks the lock command named done; unlocked clears locked_at and replaces the unlock code
  /// (the old one is used up). Returns how many were applied. Fails with errc::no_such_device.
  Result<std::size_t> record_device_events(std::string_view device_id,
                                           std::span<const protocol::DeviceEvent> events,
                                           UnixTime now);

 private:
  SQLite::Database& db_;
};

}  // namespace kaban::server
