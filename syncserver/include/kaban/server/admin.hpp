// The `kaban-server admin` commands, as functions over a data directory. Each opens its own
// database connection, so it can run while a server is serving the same directory (WAL). Output
// for a person goes to `out`; a failure returns its error code and fills `why` with a sentence
// that says what went wrong and what to do.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "kaban/result.hpp"

namespace kaban::server {

/// How a listing is printed.
enum class Listing { table, json };

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
Result<void> admin_device_list(const std::filesystem::path& dir, Listing how, std::ostream& out,
                               std::string& why);

/// Records where `serve` listens (see kListenAddressKey).
Result<void> record_listen_address(const std::filesystem::path& dir, std::string_view address);

}  // namespace kaban::server
