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
    case errc::not_enrolled:
      return "this device is not enrolled; run `kaban enroll LINE` with the line IT gave you";
    case errc::already_enrolled:
      return "this device is already enrolled here; use another --data-dir, or wipe this one";
    case errc::server_unreachable:
      return "the sync server could not be reached; check the network and try again later";
    case errc::server_untrusted:
      return "the server's certificate did not match the one this device trusts; ask IT";
    case errc::network_failed:
      return "the connection to the sync server broke; run the command again to resume";
    case errc::response_too_large:
      return "the server sent more data than this agent accepts; ask IT";
    case errc::server_refused:
      return "the sync server refused the request";
    case errc::bad_response:
      return "the sync server sent an answer this agent cannot read; update the agent or ask IT";
    case errc::content_invalid:
      return "downloaded content failed its signature or hash check and was discarded";
    case errc::not_found:
      return "no such course, lesson, file, channel or message on this device";
    case errc::interrupted:
      return "interrupted; what was downloaded so far is kept";
    case errc::invalid_input:
      return "the agent cannot accept this input";
    case errc::not_allowed:
      return "not allowed";
    case errc::wrong_pin:
      return "wrong PIN";
    case errc::device_locked:
      return "this device is locked; ask IT for the unlock code and run `kaban unlock`";
    case errc::device_wiped:
      return "Kaban's data on this device was wiped";
    case errc::access_blocked:
      return "the device policy blocks access now; run `kaban sync` when a network is available";
    case errc::policy_refused:
      return "the server sent a policy or lease that did not verify; nothing was changed";
    case errc::certificate_expired:
      return "this device's certificate has expired; ask IT for a new enrollment code";
    case errc::bundle_invalid:
      return "the bundle is damaged, incomplete or not from this device's server; nothing of it "
             "became readable";
    case errc::disk_full:
      return "the device is nearly out of space; downloads stopped. `kaban storage` shows what "
             "can be freed";
    case errc::not_downloaded:
      return "this lesson's media is downloaded on demand and is not on this device yet; "
             "`kaban pin COURSE/LESSON`, then `kaban sync`";
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
