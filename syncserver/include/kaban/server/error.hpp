// Error codes of the sync server's data layer (data directory, users, devices, courses,
// channels and messages).
#pragma once

#include <system_error>
#include <type_traits>

namespace kaban::server {

/// Expected failures of kaban::server. Functions whose failure needs a detail (which lesson,
/// which path, which field) also fill a `std::string& why` with a sentence naming it.
enum class errc {
  data_dir_exists = 1,  ///< init where a non-empty directory already is
  no_data_dir,          ///< no initialised data directory at the given path
  data_dir_damaged,     ///< a file of the data directory is missing or does not parse
  newer_schema,         ///< the database was written by a newer kaban-server
  storage_failed,       ///< SQLite or the file system failed (disk full, permissions, I/O)
  invalid_login,        ///< a login outside [a-z0-9][a-z0-9._-]{0,63}
  invalid_name,         ///< a user's display name that is empty or too long
  user_exists,          ///< add_user with a login that is taken
  no_such_user,         ///< a login that is not in the directory
  enroll_code_invalid,  ///< an enrollment code that is malformed or unknown
  enroll_code_expired,  ///< an enrollment code past its expiry
  enroll_code_used,     ///< an enrollment code that already enrolled a device
  csr_invalid,          ///< a certificate request that does not parse or verify
  course_invalid,       ///< course.json is missing, malformed or breaks a rule
  path_escapes,         ///< a file path that leaves the course folder or goes through a symlink
  file_missing,         ///< a file named by course.json that is absent or not a regular file
  no_such_course,       ///< a course id that was never published
  invalid_channel,   ///< a channel id or title that breaks the rules, or the wrong kind of channel
  channel_exists,    ///< add_channel with an id that is taken
  no_such_channel,   ///< a channel id that does not exist
  invalid_message,   ///< a message body that is empty, too long or not text
  no_such_message,   ///< a message id the server does not hold
  no_such_group,     ///< a group (group channel) id that does not exist
  invalid_policy,    ///< a policy file that breaks the schema (the message names the setting)
  invalid_import,    ///< a CSV import line that breaks a rule (the message names the line)
  no_such_device,    ///< a device id (or prefix) that matches no device
  ambiguous_device,  ///< a device id prefix that matches more than one device
  device_revoked,    ///< the device is revoked; nothing more can be queued for it
  package_invalid,   ///< a SCORM package that is not a safe zip or has no usable imsmanifest.xml
  course_retired,    ///< the course is retired: it can no longer be bundled or assigned
  no_such_version,   ///< a course version that was never published or was collected
  course_expired,    ///< the course's expiry date has passed: devices drop it
  invalid_mirror,    ///< a mirror name, address or option that breaks a rule
  mirror_exists,     ///< a mirror of that name (or certificate) is in use already
  no_such_mirror,    ///< no mirror in use has that name
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

}  // namespace kaban::server

template <>
struct std::is_error_code_enum<kaban::server::errc> : std::true_type {};
