// Error codes of the agent component.
#pragma once

#include <system_error>

namespace kaban::agent {

/// Expected failures of kaban::agent. Store failures that come from the encryption layer
/// (wrong PIN, damage) keep their kaban::crypto::errc codes.
enum class errc {
  store_exists = 1,     ///< create() where a store already is
  no_store,             ///< open() where there is none
  newer_schema,         ///< the store was written by a newer Kaban
  migration_failed,     ///< a schema migration failed; the store is left at the last version
  storage_failed,       ///< SQLite failed for another reason (disk full, permissions, I/O)
  not_enrolled,         ///< the store holds no enrollment yet
  already_enrolled,     ///< enroll where a store with an enrollment already is
  server_unreachable,   ///< DNS, connect or TLS handshake could not reach the server
  server_untrusted,     ///< the server's certificate failed the CA or pin check, or its name
  network_failed,       ///< the connection broke or timed out mid-request
  response_too_large,   ///< the server sent more than the agent accepts for that request
  server_refused,       ///< the server answered with an error (its message is shown)
  bad_response,         ///< the server sent something this agent cannot read
  content_invalid,      ///< a manifest signature or a chunk hash did not verify
  not_found,            ///< no such course, lesson, file, channel or message in the store
  interrupted,          ///< stopped by the person (Ctrl-C) or a signal; work so far is kept
  invalid_input,        ///< a message, channel name, percentage or score the agent cannot accept
  not_allowed,          ///< the person may not do this here (e.g. acknowledge a message that
                        ///< asks for none, post to an announcement channel without being a sender)
  wrong_pin,            ///< the PIN did not open the store (the guard counted the attempt)
  device_locked,        ///< too many wrong PINs or IT's lock: `kaban unlock` with IT's code
  device_wiped,         ///< the store was wiped (or is being wiped) by policy or by IT
  access_blocked,       ///< the policy blocks this now (offline too long, or not compliant)
  policy_refused,       ///< a policy or lease from the server did not verify or is older
  certificate_expired,  ///< the device certificate expired: the device must enroll again
  bundle_invalid,       ///< an offline bundle that is truncated, altered, or from another server
  disk_full,            ///< too little free space left on the device to download or import
  not_downloaded,       ///< a lesson's large media is fetched on demand and is not here yet
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

}  // namespace kaban::agent

template <>
struct std::is_error_code_enum<kaban::agent::errc> : std::true_type {};
