#include "kaban/crypto/error.hpp"

#include "kaban/error_category.hpp"

namespace kaban::crypto {
namespace {

const char* describe(errc e) noexcept {
  switch (e) {
    case errc::authentication_failed:
      return "authentication failed: wrong key, or the data was altered";
    case errc::invalid_argument:
      return "invalid argument to a cryptographic primitive";
    case errc::invalid_encoding:
      return "malformed encoding (hex, PEM or DER)";
    case errc::invalid_key:
      return "the key cannot be used: malformed or of the wrong type";
    case errc::invalid_signature:
      return "signature does not verify";
    case errc::invalid_request:
      return "certificate request is malformed or its signature does not verify";
    case errc::certificate_untrusted:
      return "certificate does not chain to a trusted authority";
    case errc::certificate_expired:
      return "certificate is expired or not yet valid";
    case errc::wrong_key:
      return "wrong PIN or key";
    case errc::damaged:
      return "the store is damaged";
    case errc::io_error:
      return "file could not be read or written";
    case errc::internal:
      return "internal cryptographic library failure";
  }
  return "unknown kaban.crypto error";
}

}  // namespace

const std::error_category& error_category() noexcept {
  static const ErrcCategory<errc> category("kaban.crypto", describe);
  return category;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace kaban::crypto
