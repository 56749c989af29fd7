#include "kaban/protocol/version.hpp"

namespace kaban::protocol {

std::string_view kaban_version() noexcept {
  return KABAN_VERSION;
}

}  // namespace kaban::protocol
