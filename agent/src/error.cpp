#include "kaban/agent/error.hpp"

#include "kaban/error_category.hpp"

namespace kaban::agent {
namespace {

const char* describe(errc e) noexcept {
  switch (e) {
    case errc::store_exists:
      return "a Kaban store already exists here; open it, or wipe it first";
    case errc::no_store:
      return "there is no Kaban store here; enroll this device first";
    case errc::newer_schema:
      return "the store was written by a newer version of Kaban; update the agent";
    case errc::migration_failed:
      return "upgrading the store's schema failed; the store was left as it was";
    case errc::storage_failed:
      return "the store could not be read or written (disk full, permissions or I/O error)";
  }
  return "unknown kaban.agent error";
}

}  // namespace

const std::error_category& error_category() noexcept {
  static const ErrcCategory<errc> category("kaban.agent", describe);
  return category;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace kaban::agent
