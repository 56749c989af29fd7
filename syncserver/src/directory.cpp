#include "kaban/server/directory.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace {

constexpr std::string_view kCrockfordAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr int kBitsPerCodeChar = 5;
constexpr std::size_t kCodeGroupSize = 4;
constexpr const char* kDeviceColumns =
    "id, login, serial, certificate_pem, platform, os_version, model, name, agent_version, "
    "enrolled_at, last_checkin_at, revoked_at";

UnixTime from_unix(std::int64_t seconds) {
  return UnixTime{std::chrono::seconds{seconds}};
}

crypto::Digest code_hash(const std::string& normalized_code) {
  return crypto::sha256(crypto::as_bytes(normalized_code));
}

std::string encode_code(crypto::ByteView random) {
  std::string code;
  unsigned buffer = 0;
  int bits = 0;
  for (const std::uint8_t byte : random) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= kBitsPerCodeChar) {
      bits -= kBitsPerCodeChar;
      if (code.size() % (kCodeGroupSize + 1) == kCodeGroupSize)
        code += '-';
      code += kCrockfordAlphabet[(buffer >> bits) & 0x1f];
    }
  }
  return code;
}

// Why a code cannot be redeemed at `now`, or success if it can.
Result<void> check_code(SQLite::Database& db, const crypto::Digest& hash, UnixTime now,
                        std::string* login) {
  SQLite::Statement query(db,
                          "SELECT login, expires_at, used_at FROM enroll_codes "
                          "WHERE code_hash = ?");
  query.bind(1, hash.data(), static_cast<int>(hash.size()));
  if (!query.executeStep())
    return errc::enroll_code_invalid;
  if (!query.getColumn(2).isNull())
    return errc::enroll_code_used;
  if (to_unix(now) >= query.getColumn(1).getInt64())
    return errc::enroll_code_expired;
  if (login != nullptr)
    *login = query.getColumn(0).getString();
  return ok();
}

Device read_device(SQLite::Statement& row) {
  Device d;
  d.id = row.getColumn(0).getString();
  d.login = row.getColumn(1).getString();
  d.serial = row.getColumn(2).getString();
  d.certificate_pem = row.getColumn(3).getString();
  d.description.platform = row.getColumn(4).getString();
  d.description.os_version = row.getColumn(5).getString();
  d.description.model = row.getColumn(6).getString();
  d.description.name = row.getColumn(7).getString();
  d.description.agent_version = row.getColumn(8).getString();
  d.enrolled_at = from_unix(row.getColumn(9).getInt64());
  d.last_checkin_at = from_unix(row.getColumn(10).getInt64());
  d.revoked = !row.getColumn(11).isNull();
  return d;
}

}  // namespace

Result<void> Directory::add_user(std::string_view login, std::string_view name, UnixTime now) {
  if (!protocol::is_valid_login(login))
    return errc::invalid_login;
  if (name.empty() || name.size() > kMaxUserNameSize)
    return errc::invalid_name;
  try {
    // OR IGNORE and the change count tell a taken login from other failures without parsing
    // SQLite's messages.
    SQLite::Statement insert(
        db_, "INSERT OR IGNORE INTO users(login, name, created_at) VALUES (?, ?, ?)");
    insert.bind(1, std::string(login));
    insert.bind(2, std::string(name));
    insert.bind(3, to_unix(now));
    if (insert.exec() == 0)
      return errc::user_exists;
    return ok();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<User>> Directory::list_users() {
  try {
    SQLite::Statement query(db_, "SELECT login, name, created_at FROM users ORDER BY login");
    std::vector<User> users;
    while (query.executeStep()) {
      users.push_back({query.getColumn(0).getString(), query.getColumn(1).getString(),
                       from_unix(query.getColumn(2).getInt64())});
    }
    return users;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::optional<User>> Directory::find_user(std::string_view login) {
  try {
    SQLite::Statement query(db_, "SELECT login, name, created_at FROM users WHERE login = ?");
    query.bind(1, std::string(login));
    if (!query.executeStep())
      return std::optional<User>();
    return std::optional<User>(User{query.getColumn(0).getString(), query.getColumn(1).getString(),
                                    from_unix(query.getColumn(2).getInt64())});
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::string> Directory::create_enroll_code(std::string_view login, std::chrono::seconds ttl,
                                                  UnixTime now) {
  KABAN_TRY(user, find_user(login));
  if (!user)
    return errc::no_such_user;
  auto random = crypto::random_bytes(kEnrollCodeBytes);
  std::string code = encode_code(random);
  crypto::secure_wipe(crypto::MutableByteView(random));
  const auto hash = code_hash(code);
  try {
    SQLite::Statement insert(db_,
                             "INSERT INTO enroll_codes(code_hash, login, created_at, expires_at) "
                             "VALUES (?, ?, ?, ?)");
    insert.bind(1, hash.data(), static_cast<int>(hash.size()));
    insert.bind(2, user->login);
    insert.bind(3, to_unix(now));
    insert.bind(4, to_unix(now + ttl));
    insert.exec();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  return code;
}

Result<EnrolledDevice> Directory::enroll_device(std::string_view typed_code,
                                                std::string_view csr_pem,
                                                const protocol::DeviceDescription& description,
                                                UnixTime now, const ServerIdentity& identity) {
  auto normalized = protocol::normalize_enrollment_code(typed_code);
  if (!normalized)
    return errc::enroll_code_invalid;
  const auto hash = code_hash(normalized.value());
  try {
    // A first look to refuse a bad code before spending a signature; the UPDATE below is what
    // makes the code single-use.
    std::string login;
    KABAN_TRYV(check_code(db_, hash, now, &login));

    auto csr = crypto::CertificateRequest::from_pem(csr_pem);
    if (!csr || !csr.value().verify())
      return errc::csr_invalid;
    crypto::IssueOptions options;
    options.validity = kDeviceCertificateValidity;
    options.purpose = crypto::CertificatePurpose::client;
    auto certificate =
        crypto::issue_certificate(identity.ca_certificate, identity.ca_key, csr.value(), options);
    if (!certificate)
      return errc::csr_invalid;
    const std::string device_id = crypto::to_hex(certificate.value().fingerprint());

    // IMMEDIATE takes the write lock up front, so a concurrent redeem waits (busy timeout)
    // instead of failing on a stale read snapshot.
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement user(db_, "SELECT name FROM users WHERE login = ?");
    user.bind(1, login);
    if (!user.executeStep())
      return errc::no_such_user;
    const std::string user_name = user.getColumn(0).getString();

    SQLite::Statement insert(
        db_,
        "INSERT INTO devices(id, login, serial, certificate_pem, platform, os_version, model, "
        "name, agent_version, enrolled_at, last_checkin_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insert.bind(1, device_id);
    insert.bind(2, login);
    insert.bind(3, certificate.value().serial_hex());
    insert.bind(4, certificate.value().to_pem());
    insert.bind(5, description.platform);
    insert.bind(6, description.os_version);
    insert.bind(7, description.model);
    insert.bind(8, description.name);
    insert.bind(9, description.agent_version);
    insert.bind(10, to_unix(now));
    insert.bind(11, to_unix(now));
    insert.exec();

    SQLite::Statement redeem(db_,
                             "UPDATE enroll_codes SET used_at = ?, device_id = ? "
                             "WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?");
    redeem.bind(1, to_unix(now));
    redeem.bind(2, device_id);
    redeem.bind(3, hash.data(), static_cast<int>(hash.size()));
    redeem.bind(4, to_unix(now));
    if (redeem.exec() != 1) {
      // Another connection redeemed it since the first look; the transaction rolls back.
      auto why = check_code(db_, hash, now, nullptr);
      return why ? std::error_code(errc::enroll_code_used) : why.error();
    }
    transaction.commit();
    return EnrolledDevice{device_id, login, user_name, std::move(certificate).value()};
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::optional<Device>> Directory::find_device(std::string_view device_id) {
  try {
    SQLite::Statement query(db_,
                            std::string("SELECT ") + kDeviceColumns + " FROM devices WHERE id = ?");
    query.bind(1, std::string(device_id));
    if (!query.executeStep())
      return std::optional<Device>();
    return std::optional<Device>(read_device(query));
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<bool> Directory::record_checkin(std::string_view device_id,
                                       const protocol::DeviceDescription& description,
                                       UnixTime now) {
  try {
    SQLite::Statement update(db_,
                             "UPDATE devices SET platform = ?, os_version = ?, model = ?, "
                             "name = ?, agent_version = ?, last_checkin_at = ? WHERE id = ?");
    update.bind(1, description.platform);
    update.bind(2, description.os_version);
    update.bind(3, description.model);
    update.bind(4, description.name);
    update.bind(5, description.agent_version);
    update.bind(6, to_unix(now));
    update.bind(7, std::string(device_id));
    return update.exec() == 1;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<Device>> Directory::list_devices() {
  try {
    SQLite::Statement query(db_,
                            "SELECT id, login, serial, '', platform, os_version, model, name, "
                            "agent_version, enrolled_at, last_checkin_at, revoked_at "
                            "FROM devices ORDER BY login, enrolled_at, id");
    std::vector<Device> devices;
    while (query.executeStep())
      devices.push_back(read_device(query));
    return devices;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<bool> Directory::revoke_device(std::string_view device_id, UnixTime now) {
  try {
    SQLite::Statement update(
        db_, "UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?");
    update.bind(1, to_unix(now));
    update.bind(2, std::string(device_id));
    return update.exec() == 1;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::server
