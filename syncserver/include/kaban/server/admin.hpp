// The `kaban-server admin` commands, as functions over a data directory. Each opens its own
// database connection, so it can run while a server is serving the same directory (WAL). Output
// for a person goes to `out`; a failure returns its error code and fills `why` with a sentence
// that says what went wrong and what to do.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include "kaban/result.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/messaging.hpp"

namespace kaban::server {

/// How a listing is printed: aligned columns for a person, JSON or CSV (RFC 4180, times in
/// RFC 3339; a cell starting with = + - or @ gets a leading ' so a spreadsheet shows it as text)
/// for programs and spreadsheets. Each command says which it offers.
enum class Listing { table, json, csv };

/// The server_meta key where `serve` records the address it listens on, so enroll-code can
/// name it when no --server is given.
inline constexpr const char* kListenAddressKey = "listen_address";
/// How long an enrollment code stays valid unless told otherwise.
inline constexpr std::chrono::hours kDefaultEnrollCodeTtl{72};
/// The longest an enrollment code may stay valid.
inline constexpr std::chrono::hours kMaxEnrollCodeTtl{24 * 30};

/// Parses "90s", "30m", "72h", "7d" (a positive whole number and one unit).
std::optional<std::chrono::seconds> parse_duration(std::string_view text);

Result<void> admin_user_add(const std::filesystem::path& dir, std::string_view login,
                            std::string_view name, std::ostream& out, std::string& why);
Result<void> admin_user_list(const std::filesystem::path& dir, Listing how, std::ostream& out,
                             std::string& why);
/// Prints one enrollment line (kaban://HOST:PORT?code=...&ca=...). `server` is HOST:PORT; when
/// empty, the address the server last listened on.
Result<void> admin_enroll_code(const std::filesystem::path& dir, std::string_view login,
                               std::chrono::seconds ttl, std::string_view server, std::ostream& out,
                               std::string& why);
/// Publishes FOLDER/course.json and its files as the course's next version; prints the version.
Result<void> admin_course_publish(const std::filesystem::path& dir,
                                  const std::filesystem::path& folder, std::ostream& out,
                                  std::string& why);
Result<void> admin_course_list(const std::filesystem::path& dir, Listing how, std::ostream& out,
                               std::string& why);
/// Every device: id, login, platform, last check-in, verdict, revoked/wiped/locked, pending
/// commands (table or json: each device with its "id" and "login").
Result<void> admin_device_list(const std::filesystem::path& dir, Listing how, std::ostream& out,
                               std::string& why);

/// Creates group channel `id`; `title` "" means the id.
Result<void> admin_channel_add(const std::filesystem::path& dir, std::string_view id,
                               std::string_view title, std::ostream& out, std::string& why);
/// Every channel (table or json).
Result<void> admin_channel_list(const std::filesystem::path& dir, Listing how, std::ostream& out,
                                std::string& why);
/// Adds or removes members of a group channel, all or none; prints how many changed.
Result<void> admin_channel_members_add(const std::filesystem::path& dir, std::string_view channel,
                                       std::span<const std::string> logins, std::ostream& out,
                                       std::string& why);
Result<void> admin_channel_members_remove(const std::filesystem::path& dir,
                                          std::string_view channel,
                                          std::span<const std::string> logins, std::ostream& out,
                                          std::string& why);
/// Names or unnames who may post to the announcements of `audience` ("all" or a group channel).
Result<void> admin_channel_senders_add(const std::filesystem::path& dir, std::string_view audience,
                                       std::span<const std::string> logins, std::ostream& out,
                                       std::string& why);
Result<void> admin_channel_senders_remove(const std::filesystem::path& dir,
                                          std::string_view audience,
                                          std::span<const std::string> logins, std::ostream& out,
                                          std::string& why);
/// Posts an announcement from IT; prints its message id (the argument of admin_acks) alone on
/// a line.
Result<void> admin_announce(const std::filesystem::path& dir, const Announcement& announcement,
                            std::ostream& out, std::string& why);
/// Who of the message's audience has it delivered, read and acknowledged (table or csv); the
/// table ends with a summary line "N of M acknowledged".
Result<void> admin_acks(const std::filesystem::path& dir, std::string_view message_id, Listing how,
                        std::ostream& out, std::string& why);
/// Every user's progress per course, or in `course_id` only (table or csv).
Result<void> admin_report_completion(const std::filesystem::path& dir, std::string_view course_id,
                                     Listing how, std::ostream& out, std::string& why);
/// Writes the statements stored since `since` as one JSON array an LRS accepts, to `file`, or to
/// `out` when `file` is empty. A file is written whole or not at all (a temporary file renamed
/// into place); then a line on `out` says how many statements it holds.
Result<void> admin_export_statements(const std::filesystem::path& dir, UnixTime since,
                                     const std::filesystem::path& file, std::ostream& out,
                                     std::string& why);

// Groups, policies, course assignment and the audit log (syncserver/src/admin_policy.cpp).
// Every change is recorded in the audit log with admin_actor().

/// Creates a group (a group channel; `title` "" means the id).
Result<void> admin_group_add(const std::filesystem::path& dir, std::string_view id,
                             std::string_view title, std::ostream& out, std::string& why);
/// Every group with its member count and whether it has a policy (table, json or csv).
Result<void> admin_group_list(const std::filesystem::path& dir, Listing how, std::ostream& out,
                              std::string& why);
/// Adds or removes members, all or none; prints how many changed.
Result<void> admin_group_members_add(const std::filesystem::path& dir, std::string_view group,
                                     std::span<const std::string> logins, std::ostream& out,
                                     std::string& why);
Result<void> admin_group_members_remove(const std::filesystem::path& dir, std::string_view group,
                                        std::span<const std::string> logins, std::ostream& out,
                                        std::string& why);
/// The largest CSV file admin_group_import reads.
inline constexpr std::size_t kMaxImportFileSize = 16 * 1024 * 1024;
/// The most users (lines, header and blank lines not counted) one import may name.
inline constexpr std::size_t kMaxImportRows = 100'000;
/// The most groups one line of an import may name.
inline constexpr std::size_t kMaxImportGroupsPerRow = 100;

/// Imports users and group memberships from CSV (RFC 4180; an optional header line
/// "login,name,groups"; groups separated by ';'). Creates missing users and groups, adds
/// memberships, never removes any; a known user's name is left as it is. All or nothing: the
/// first bad line (naming its number and what is wrong) fails the whole import with
/// errc::invalid_import. Prints counts.
Result<void> admin_group_import(const std::filesystem::path& dir,
                                const std::filesystem::path& csv_file, std::ostream& out,
                                std::string& why);
/// Sets the policy of `group`, or the default policy when `group` is "", from a policy file.
/// Prints the new policy version.
Result<void> admin_policy_set(const std::filesystem::path& dir,
                              const std::filesystem::path& policy_file, std::string_view group,
                              std::ostream& out, std::string& why);
/// Removes a group's policy ("" resets the default policy to the built-in defaults).
Result<void> admin_policy_remove(const std::filesystem::path& dir, std::string_view group,
                                 std::ostream& out, std::string& why);
/// Shows the policies set (table: each audience and its settings; json). With `login`, that
/// user's effective policy, every setting, and which audiences it came from.
Result<void> admin_policy_show(const std::filesystem::path& dir, std::string_view login,
                               Listing how, std::ostream& out, std::string& why);
/// Sets who may see a course: "all" or group ids.
Result<void> admin_course_assign(const std::filesystem::path& dir, std::string_view course_id,
                                 std::span<const std::string> audiences, std::ostream& out,
                                 std::string& why);
/// The audit log since `since` (table, json or csv), oldest first.
Result<void> admin_audit(const std::filesystem::path& dir, UnixTime since, Listing how,
                         std::ostream& out, std::string& why);

// Devices and compliance (syncserver/src/admin_devices.cpp). DEVICE is a device id or a unique
// prefix of at least 8 hex digits.

/// Revokes the device: its certificates are refused at the TLS layer from its next connection.
Result<void> admin_device_revoke(const std::filesystem::path& dir, std::string_view device,
                                 std::ostream& out, std::string& why);
/// Queues a wipe or lock for the device's next check-in; prints the command id. A wipe stays
/// pending until the device reports it done.
Result<void> admin_device_wipe(const std::filesystem::path& dir, std::string_view device,
                               std::ostream& out, std::string& why);
Result<void> admin_device_lock(const std::filesystem::path& dir, std::string_view device,
                               std::ostream& out, std::string& why);
/// Prints the unlock code for a locked device (to read out to its owner for `kaban unlock`).
Result<void> admin_device_unlock(const std::filesystem::path& dir, std::string_view device,
                                 std::ostream& out, std::string& why);
/// Per device: user, platform, verdict and reasons, last check-in, lease state (within grace /
/// blocked / wipe due / never checked in), pending commands (table, json or csv).
Result<void> admin_report_compliance(const std::filesystem::path& dir, Listing how,
                                     std::ostream& out, std::string& why);

// Content at scale (docs/content.md).

/// Imports a SCORM 1.2 package (a zip with imsmanifest.xml at its root) and publishes it as the
/// course's next version: each item of the default organization that launches a resource becomes
/// a lesson. `course_id` "" means the id derived from the manifest's identifier. The package is
/// unpacked into a staging folder of the data directory, checked (no path escapes, bounded size
/// and file count), published, and the staging folder removed whatever happens. Prints the
/// version, like `course publish`. errc::package_invalid with `why` naming the entry or element.
/// (syncserver/src/admin_scorm.cpp)
Result<void> admin_course_import_scorm(const std::filesystem::path& dir,
                                       const std::filesystem::path& package,
                                       std::string_view course_id, std::ostream& out,
                                       std::string& why);

/// Writes an offline bundle of the course's latest version (or of `version`, when not 0) to
/// `file`: the signed manifest and every chunk, in the format of kaban/protocol/bundle.hpp. The
/// file is written under a temporary name and renamed, so it is whole or absent; a progress line
/// goes to `progress` when it is not null. Prints what it wrote (course, version, bytes).
/// (syncserver/src/course_bundle.cpp)
Result<void> admin_course_bundle(const std::filesystem::path& dir, std::string_view course_id,
                                 std::int64_t version, const std::filesystem::path& file,
                                 std::ostream& out, std::ostream* progress, std::string& why);

/// Retires a course: devices remove it at their next check-in, it leaves the change feed and its
/// chunks are no longer served; publishing it again brings it back. Audited.
/// (syncserver/src/admin_content.cpp)
Result<void> admin_course_retire(const std::filesystem::path& dir, std::string_view course_id,
                                 std::ostream& out, std::string& why);
/// Sets (or, with `expires_at` empty, clears) the date after which devices drop the course, even
/// offline: publishes a new version with the same files whose signed manifest carries the date
/// (devices fetch only the manifest). Audited.
Result<void> admin_course_expire(const std::filesystem::path& dir, std::string_view course_id,
                                 std::optional<UnixTime> expires_at, std::ostream& out,
                                 std::string& why);
/// Garbage collection: deletes course versions superseded for longer than `keep` (the latest
/// version of a course that is not retired is always kept), then every chunk no remaining
/// version or message uses, rows and files. With `dry_run`, only says what it would delete.
Result<void> admin_gc(const std::filesystem::path& dir, std::chrono::seconds keep, bool dry_run,
                      std::ostream& out, std::string& why);

/// Records where `serve` listens (see kListenAddressKey).
Result<void> record_listen_address(const std::filesystem::path& dir, std::string_view address);

// Content mirrors: HTTPS caches (nginx) near devices that serve course chunks
// (syncserver/src/admin_mirror.cpp, docs/content.md).

/// What `admin mirror add` makes.
struct MirrorOptions {
  std::string name;  ///< 1..32 of [a-z0-9-] (is_valid_mirror_name)
  /// HOST or HOST:PORT (443 when absent; an IPv6 address in brackets): the name the mirror's
  /// server certificate is issued for, and where its nginx listens.
  std::string host;
  /// What devices are told, https://HOST[:PORT]; "" means https://HOST:PORT of `host`. Its host
  /// is put in the certificate too.
  std::string url;
  /// HOST:PORT the mirror reaches this server at; "" means where `serve` last listened.
  std::string origin;
  /// The folder the files are written to (made 0700 if missing; none of them may exist yet).
  std::filesystem::path out;
  /// nginx's cache folder on the mirror; "" means /var/cache/nginx/kaban-NAME.
  std::filesystem::path cache_dir;
};

/// Registers a content mirror: issues its server certificate (for the hosts of `host` and
/// `url`) and its client certificate, both from the server's CA, and writes to options.out
/// (each file 0600) server.pem (the certificate, then the CA), server.key, client.pem,
/// client.key, ca.pem and nginx.conf, a server block ready to include in nginx's http block.
/// Then records the mirror (devices are told of it at their next check-in) and audits it
/// (mirror_added). Everything is checked before anything is written; files whose mirror could
/// not be recorded are removed again. Fails with errc::invalid_mirror (a bad name, host,
/// url or origin), errc::mirror_exists (the name is in use), std::errc::file_exists (a file
/// exists in `out`), or a
/// storage or OS error; `why` says which and what to do.
Result<void> admin_mirror_add(const std::filesystem::path& dir, const MirrorOptions& options,
                              std::ostream& out, std::string& why);
/// Every mirror, in use and removed (table or json).
Result<void> admin_mirror_list(const std::filesystem::path& dir, Listing how, std::ostream& out,
                               std::string& why);
/// Removes the mirror in use named `name`: its client certificate is refused from then on, and
/// check-ins stop naming it. Audited (mirror_removed). errc::no_such_mirror if no
/// mirror in use has that name.
Result<void> admin_mirror_remove(const std::filesystem::path& dir, std::string_view name,
                                 std::ostream& out, std::string& why);
/// Writes `file` (0644, whole or not at all): a certificate revocation list signed by the
/// server's CA naming the certificates of every revoked device that have not expired, valid for
/// `valid_for` (1h to 365d), for nginx's ssl_crl on the mirrors. nginx refuses every device once
/// the list's next-update time has passed, so it must be written again before then (and after
/// each revocation).
Result<void> admin_mirror_crl(const std::filesystem::path& dir, const std::filesystem::path& file,
                              std::chrono::seconds valid_for, std::ostream& out, std::string& why);

}  // namespace kaban::server
