// The JSON bodies of the /v1 endpoints (see docs/protocol.md). Each type has to_json() and a
// parse function that validates shape, limits and field values; request parsers refuse unknown
// fields, response parsers ignore them (a newer server may add some). A parse failure is an errc
// from kaban/protocol/error.hpp; when `why` is given it receives a sentence naming the field.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/protocol/compliance.hpp"
#include "kaban/result.hpp"

namespace kaban::protocol {

/// Body limits the server enforces per endpoint (HTTP 413 above them).
inline constexpr std::size_t kMaxEnrollRequestSize = 16 * 1024;
inline constexpr std::size_t kMaxCheckinRequestSize = 64 * 1024;
/// Largest response body the agent accepts for a JSON endpoint.
inline constexpr std::size_t kMaxJsonResponseSize = 64 * 1024 * 1024;
/// Most changes the server puts in one page; the agent may ask for fewer.
inline constexpr int kMaxChangesPage = 100;
/// Most content mirrors one check-in answer names.
inline constexpr std::size_t kMaxContentMirrors = 16;
/// Longest content mirror URL, in bytes.
inline constexpr std::size_t kMaxMirrorUrlSize = 300;

/// Longest free-text field of a DeviceDescription, in bytes.
inline constexpr std::size_t kMaxDeviceFieldSize = 128;

/// What a device says about itself. Every field is free text of at most kMaxDeviceFieldSize
/// bytes, "" when unknown, except platform ("linux", "macos", "windows", "android", "ios").
struct DeviceDescription {
  std::string platform;
  std::string os_version;
  std::string model;
  std::string name;  ///< e.g. the host name, shown to IT in `admin device list`
  std::string agent_version;
  friend bool operator==(const DeviceDescription&, const DeviceDescription&) = default;
};

/// POST /v1/enroll
struct EnrollRequest {
  std::string code;     ///< as typed; the server normalises it
  std::string csr_pem;  ///< PKCS#10, P-256, at most 8 KiB
  DeviceDescription device;
  /// protocol::report_token_hash of the token the device will sign its events with (see
  /// DeviceEventsRequest); "" from an older agent.
  std::string report_token_hash;
};
/// 200 answer to /v1/enroll.
struct EnrollResponse {
  std::string device_id;  ///< SHA-256 of the device certificate's DER, hex
  std::string login;
  std::string user_name;
  std::string certificate_pem;  ///< the device certificate
  std::string ca_pem;           ///< the server CA (its fingerprint equals the enrollment line's)
  std::string signing_key;      ///< the content-signing Ed25519 public key, 64 hex digits
  std::string server_epoch;     ///< names this server's database; see Cursor
  /// The policy the device is under from the start (PIN rules apply to the first PIN), signed.
  /// Empty text from an older server.
  SignedText policy;
};

/// POST /v1/checkin
struct CheckinRequest {
  DeviceDescription device;
  Posture posture;
  /// A new request for the device's current key (same public key as its certificate), so the
  /// server can renew the certificate when it is due; "" to not ask.
  std::string csr_pem;
  std::string report_token_hash;  ///< as in EnrollRequest
};
struct CheckinResponse {
  std::string device_id;
  std::string login;
  std::int64_t server_time = 0;  ///< Unix seconds
  Verdict verdict = Verdict::compliant;
  std::vector<ComplianceReason> reasons;  ///< why the verdict is not compliant (may be empty)
  std::string server_epoch;
  SignedText policy;  ///< a DevicePolicy
  SignedText lease;   ///< a Lease issued now
  /// A renewed device certificate (PEM) for the key of csr_pem, "" if none was due. The old one
  /// stays valid until it expires.
  std::string certificate_pem;
  std::vector<DeviceCommand> commands;  ///< pending, oldest first; empty unless any
  /// The courses this device may hold now (ids); a course on the device not listed is removed.
  /// Absent (std::nullopt) when the verdict is blocked or wipe: the device keeps what it has,
  /// unreadable, until it is compliant again.
  std::optional<std::vector<std::string>> courses;
  /// protocol::unlock_code_hash of the code `admin device unlock` shows for this device now.
  std::string unlock_code_hash;
  /// Content mirrors: HTTPS caches in front of this server that serve course chunks by hash
  /// (GET /v1/chunks/<sha256>) under the same mutual TLS (docs/content.md). Each is
  /// "https://HOST:PORT" (MirrorAddress::url()), in the order to try them; at most
  /// kMaxContentMirrors. Empty when there are none, or when the verdict is blocked or wipe. Left
  /// out of the JSON when empty; an older agent ignores the field, and this one skips an entry
  /// it cannot read (from a newer server).
  std::vector<std::string> content_mirrors;
};

/// Where a content mirror listens.
struct MirrorAddress {
  std::string host;  ///< a DNS name or an IP address (IPv6 without brackets)
  std::uint16_t port = 443;
  /// "https://HOST:PORT", an IPv6 address in brackets: the form check-in answers carry.
  std::string url() const;
  friend bool operator==(const MirrorAddress&, const MirrorAddress&) = default;
};

/// Parses a content mirror URL: "https://HOST" or "https://HOST:PORT", optionally with a
/// trailing "/". HOST is a DNS name, an IPv4 address or a bracketed IPv6 address; PORT is 1 to
/// 65535 (443 when absent). Anything else (another scheme, a path, a query, user info, more than
/// kMaxMirrorUrlSize bytes) is std::nullopt.
std::optional<MirrorAddress> parse_mirror_url(std::string_view url);

/// One course version made visible to the caller. `manifest` is the exact JSON text that
/// `signature` (Ed25519, 128 hex digits) signs.
struct CourseVersionChange {
  std::string course_id;
  std::int64_t version = 0;
  std::string manifest;
  std::string signature;
};

/// One entry of the change feed. `kind` says which member is set; an agent skips kinds it does
/// not know.
struct Change {
  std::string kind;  ///< "course_version"
  std::optional<CourseVersionChange> course_version;
};

/// 200 answer to GET /v1/changes?cursor=C&limit=N. Apply `changes`, commit, then store `cursor`;
/// ask again while `more` is true.
struct ChangesResponse {
  std::vector<Change> changes;
  std::string cursor;
  bool more = false;
};

/// Every non-2xx answer: {"error":{"code":"...","message":"..."}}. `code` is a stable
/// snake_case word a program can branch on; `message` is for a person.
struct ErrorBody {
  std::string code;
  std::string message;
};

std::string to_json(const DeviceDescription& v);
std::string to_json(const EnrollRequest& v);
std::string to_json(const EnrollResponse& v);
std::string to_json(const CheckinRequest& v);
std::string to_json(const CheckinResponse& v);
std::string to_json(const ChangesResponse& v);
std::string to_json(const ErrorBody& v);
/// The posture as the check-in's compact "posture" object (the server stores it so too).
std::string to_json(const Posture& v);
/// Compliance reasons as the check-in answer's compact array of {"setting","action","message"}
/// (the server and the agent's guard store them so too).
std::string reasons_to_json(std::span<const ComplianceReason> reasons);
/// Parses what reasons_to_json() wrote, with the check-in answer's limits and checks. Fails with
/// an errc from kaban/protocol/error.hpp.
Result<std::vector<ComplianceReason>> parse_reasons(std::string_view json,
                                                    std::string* why = nullptr);

Result<EnrollRequest> parse_enroll_request(std::string_view json, std::string* why = nullptr);
Result<EnrollResponse> parse_enroll_response(std::string_view json, std::string* why = nullptr);
Result<CheckinRequest> parse_checkin_request(std::string_view json, std::string* why = nullptr);
Result<CheckinResponse> parse_checkin_response(std::string_view json, std::string* why = nullptr);
Result<ChangesResponse> parse_changes_response(std::string_view json, std::string* why = nullptr);
Result<ErrorBody> parse_error_body(std::string_view json, std::string* why = nullptr);

/// A change-feed position: the server's epoch and the last change sequence the caller holds.
/// On the wire it is an opaque string "EPOCH.SEQ"; "" means "from the beginning".
struct Cursor {
  std::string epoch;
  std::int64_t seq = 0;
  std::string to_string() const;
  /// errc::invalid_value for anything but "" or EPOCH.SEQ (epoch 1..64 of [0-9a-f], seq >= 0).
  static Result<Cursor> parse(std::string_view text);
};

}  // namespace kaban::protocol
