#include "kaban/protocol/error.hpp"

#include "kaban/error_category.hpp"

namespace kaban::protocol {
namespace {

const char* describe(errc e) noexcept {
  switch (e) {
    case errc::malformed:
      return "the message is not in the form this version of Kaban expects (JSON of the right "
             "shape, or a whole gzip body)";
    case errc::missing_field:
      return "a required field is missing from the message";
    case errc::unknown_field:
      return "the message has a field this version of Kaban does not know";
    case errc::invalid_value:
      return "a field of the message has a value out of range or badly formed";
    case errc::too_large:
      return "the message, or a field in it, is over its size limit";
    case errc::bad_signature:
      return "a policy or lease from the server is unsigned or its signature does not verify; "
             "it was not used and the one held before stays in force. Check in again, and ask "
             "IT if this goes on";
  }
  return "unknown kaban.protocol error";
}

}  // namespace

const std::error_category& error_category() noexcept {
  static const ErrcCategory<errc> category("kaban.protocol", describe);
  return category;
}

}  // namespace kaban::protocol
