#include "kaban/server/error.hpp"

#include "kaban/error_category.hpp"

namespace kaban::server {
namespace {

const char* describe(errc e) noexcept {
  switch (e) {
    case errc::data_dir_exists:
      return "the data directory already exists and is not empty; nothing was changed. Choose a "
             "new directory, or serve the existing one";
    case errc::no_data_dir:
      return "there is no Kaban server data directory here; create one with `kaban-server init`";
    case errc::data_dir_damaged:
      return "a file of the data directory is missing or unreadable; restore the directory "
             "from a backup";
    case errc::newer_schema:
      return "the database was written by a newer kaban-server; update kaban-server";
    case errc::storage_failed:
      return "the server database or data directory could not be read or written (disk full, "
             "permissions or I/O error); nothing was changed, fix the cause and try again";
    case errc::invalid_login:
      return "a login is 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a "
             "letter or digit";
    case errc::invalid_name:
      return "a user's name must be 1 to 200 characters";
    case errc::user_exists:
      return "a user with this login already exists; choose another login";
    case errc::no_such_user:
      return "there is no user with this login; add the user first";
    case errc::enroll_code_invalid:
      return "this enrollment code is not valid; check it for typos, or ask IT for a new one";
    case errc::enroll_code_expired:
      return "this enrollment code has expired; ask IT for a new one";
    case errc::enroll_code_used:
      return "this enrollment code was already used to enroll a device; ask IT for a new one";
    case errc::csr_invalid:
      return "the device's certificate request is malformed or its signature does not verify; "
             "update the agent and enroll again";
    case errc::course_invalid:
      return "the course description (course.json) is not valid; nothing was published";
    case errc::path_escapes:
      return "a file path in course.json leaves the course folder or goes through a symbolic "
             "link; nothing was published. Copy the file into the folder";
    case errc::file_missing:
      return "a file named in course.json is missing or is not a regular file; nothing was "
             "published";
    case errc::no_such_course:
      return "there is no course with this id; publish it first";
    case errc::invalid_channel:
      return "a channel name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a "
             "letter or digit, and its title 1 to 200 characters of text; nothing was changed";
    case errc::channel_exists:
      return "a channel with this name already exists; choose another name";
    case errc::no_such_channel:
      return "there is no channel with this name; create it first with `admin channel add`";
    case errc::invalid_message:
      return "a message is 1 to 8192 bytes of text; nothing was sent";
    case errc::no_such_message:
      return "there is no message with this id; check the id `admin announce` printed";
    case errc::no_such_group:
      return "there is no such group; `admin group list` shows them";
    case errc::invalid_policy:
      return "the policy file breaks the policy schema; docs/policy.md lists the settings";
    case errc::invalid_import:
      return "a line of the import breaks a rule; nothing was imported";
    case errc::no_such_device:
      return "no device has this id; `admin device list` shows them";
    case errc::ambiguous_device:
      return "more than one device id starts so; give more of the id";
    case errc::device_revoked:
      return "the device is revoked; it can no longer connect";
    case errc::package_invalid:
      return "the SCORM package is unsafe or unusable; nothing was imported";
    case errc::course_retired:
      return "the course is retired; publish it again to bring it back";
    case errc::course_expired:
      return "the course has expired; give it a new date with `admin course expire`";
    case errc::invalid_mirror:
      return "a mirror option breaks a rule; nothing was written or recorded";
    case errc::mirror_exists:
      return "a mirror of that name is in use already; `admin mirror list` shows them";
    case errc::no_such_mirror:
      return "no mirror in use has that name; `admin mirror list` shows them";
    case errc::no_such_version:
      return "no such version of the course is held; `admin course list` shows the latest";
  }
  return "unknown kaban.server error";
}

}  // namespace

const std::error_category& error_category() noexcept {
  static const ErrcCategory<errc> category("kaban.server", describe);
  return category;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace kaban::server
