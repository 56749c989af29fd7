// Directory: the server's users, their one-time enrollment codes and their enrolled devices.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/result.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

/// How long a device certificate is valid. Device policies will shorten it.
inline constexpr std::chrono::seconds kDeviceCertificateValidity = std::chrono::days(90);
/// Longest display name of a user, in bytes.
inline constexpr std::size_t kMaxUserNameSize = 200;
/// Random bits in an enrollment code: 16 Crockford base32 characters of 5 bits each.
inline constexpr std::size_t kEnrollCodeBytes = 10;

struct User {
  std::string login;
  std::string name;
  UnixTime created_at;
};

/// A device as the directory holds it.
struct Device {
  std::string id;  ///< hex SHA-256 of the certificate DER
  std::string login;
  std::string serial;  ///< certificate serial, hex
  std::string certificate_pem;
  protocol::DeviceDescription description;
  UnixTime enrolled_at;
  UnixTime last_checkin_at;
  bool revoked = false;
};

/// What a successful enrollment hands back to the device.
struct EnrolledDevice {
  std::string device_id;
  std::string login;
  std::string user_name;
  crypto::Certificate certificate;
};

/// The directory over one database connection. Not thread-safe: one Directory per connection,
/// used by the connection's thread. The database must outlive it. Every method fails with
/// errc::storage_failed if SQLite fails; a failed method changes nothing.
class Directory {
 public:
  explicit Directory(SQLite::Database& db) : db_(db) {}

  /// Adds a user. Fails with errc::invalid_login unless protocol::is_valid_login(login)
  /// ([a-z0-9][a-z0-9._-]{0,63}), errc::invalid_name for an empty name or one over
  /// kMaxUserNameSize bytes, errc::user_exists if the login is taken.
  Result<void> add_user(std::string_view login, std::string_view name, UnixTime now);
  /// Every user, by login.
  Result<std::vector<User>> list_users();
  /// The user with `login`, or std::nullopt.
  Result<std::optional<User>> find_user(std::string_view login);

  /// Makes a one-time enrollment code for `login`, valid for `ttl` from `now`: 16 Crockford
  /// base32 characters from the CSPRNG (80 bits) as "XXXX-XXXX-XXXX-XXXX". Only its SHA-256 is
  /// stored, so the returned text is the only copy. Fails with errc::no_such_user.
  Result<std::string> create_enroll_code(std::string_view login, std::chrono::seconds ttl,
                                         UnixTime now);

  /// Redeems `typed_code` (any case, dashes optional) for a device: verifies `csr_pem`, issues a
  /// client certificate (valid kDeviceCertificateValidity) signed by the server CA,
  /// records the device and marks the code used, in one transaction. Fails with
  /// errc::enroll_code_invalid (malformed or unknown), errc::enroll_code_used,
  /// errc::enroll_code_expired (at `now` or later), errc::csr_invalid. Of concurrent redeems of
  /// one code on different connections exactly one succeeds; the others get enroll_code_used.
  /// The certificate's common name is the CSR's (crypto::issue_certificate copies it); the
  /// device's login is the devices row, looked up by device id, never the certificate's name.
  Result<EnrolledDevice> enroll_device(std::string_view typed_code, std::string_view csr_pem,
                                       const protocol::DeviceDescription& description, UnixTime now,
                                       const ServerIdentity& identity);

  /// The device with this id (revoked or not), or std::nullopt.
  Result<std::optional<Device>> find_device(std::string_view device_id);
  /// Stores what the device reports about itself and the time of this check-in. True if the
  /// device is known; false (nothing changed) if not.
  Result<bool> record_checkin(std::string_view device_id,
                              const protocol::DeviceDescription& description, UnixTime now);
  /// Every device, by login then enrollment time (certificate PEMs left empty).
  Result<std::vector<Device>> list_devices();
  /// Marks the device revoked at `now` (a device revoked earlier keeps its first time). True if
  /// the device is known; false (nothing changed) if not.
  Result<bool> revoke_device(std::string_view device_id, UnixTime now);

 private:
  SQLite::Database& db_;
};

}  // namespace kaban::server
