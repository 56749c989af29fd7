// Errors from reading a message off the wire.
#pragma once

#include <system_error>
#include <type_traits>

namespace kaban::protocol {

/// Why a wire message or an enrollment line was refused. Each maps to HTTP 400 (413 for
/// too_large) on the server and to "the server sent something this agent cannot read" on the
/// agent. bad_signature is the agent's alone: a signed policy or lease that does not verify.
enum class errc {
  malformed = 1,  ///< not JSON, or not the JSON shape expected (wrong type, not an object)
  missing_field,  ///< a required field is absent
  unknown_field,  ///< a field this version does not know, where unknown fields are refused
  invalid_value,  ///< a field is present but its value is out of range or badly formed
  too_large,      ///< the message, a string or a list is over its limit
  bad_signature,  ///< a signed document's signature is missing or not the signing key's
};

const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace kaban::protocol

template <>
struct std::is_error_code_enum<kaban::protocol::errc> : std::true_type {};
