// Error codes of the crypto component.
#pragma once

#include <string>
#include <system_error>

namespace kaban::crypto {

/// Expected failures of kaban::crypto. Messages say what went wrong in words a person can act on.
enum class errc {
  authentication_failed = 1,  ///< AEAD tag mismatch: wrong key, or the data was altered
  invalid_argument,           ///< a size or parameter outside what the primitive accepts
  invalid_encoding,           ///< malformed hex, PEM or DER input
  invalid_key,                ///< a key that cannot be parsed or has the wrong type
  invalid_signature,          ///< a signature that does not verify
  invalid_request,            ///< a CSR that does not parse or whose self-signature is wrong
  certificate_untrusted,      ///< a certificate chain that does not verify to a trusted root
  certificate_expired,        ///< a certificate outside its validity period
  wrong_key,                  ///< wrong PIN or key for an envelope or an encrypted store
  damaged,                    ///< stored data failed its integrity check
  io_error,                   ///< reading or writing a file failed
  internal,                   ///< OpenSSL reported an unexpected failure
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

}  // namespace kaban::crypto

template <>
struct std::is_error_code_enum<kaban::crypto::errc> : std::true_type {};
