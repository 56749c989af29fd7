// The one line IT hands a staff member to enroll a device.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kaban/result.hpp"

namespace kaban::protocol {

/// `kaban://HOST:PORT?code=CODE&ca=FINGERPRINT`, e.g.
/// `kaban://city.example:8443?code=7KQ2-M9XD-4TNA-P3HV&ca=3f1c...` (64 hex digits).
/// HOST is a DNS name, an IPv4 address or a bracketed IPv6 address. The code is 16 characters of
/// Crockford base32 in four groups; parse() accepts it in either case, with or without dashes,
/// and normalises it. The fingerprint is the SHA-256 of the server CA's DER, which the agent pins
/// before it sends anything.
struct EnrollmentLine {
  std::string host;
  std::uint16_t port = 0;
  std::string code;            ///< normalised: upper case, "XXXX-XXXX-XXXX-XXXX"
  std::string ca_fingerprint;  ///< 64 lower-case hex digits

  std::string to_string() const;
  /// Fails with errc::malformed (not a kaban:// line), errc::missing_field or
  /// errc::invalid_value (a bad host, port, code or fingerprint). Surrounding whitespace is
  /// ignored.
  static Result<EnrollmentLine> parse(std::string_view line, std::string* why = nullptr);
};

/// Normalises a typed enrollment code to "XXXX-XXXX-XXXX-XXXX": upper case, Crockford
/// confusables mapped (O→0, I/L→1), dashes and spaces ignored. errc::invalid_value unless 16
/// base32 characters remain.
Result<std::string> normalize_enrollment_code(std::string_view code);

}  // namespace kaban::protocol
