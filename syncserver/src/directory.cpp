#include "kaban/server/directory.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/policies.hpp"

namespace kaban::server {
namespace {

using nlohmann::json;

constexpr std::string_view kCrockfordAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr int kBitsPerCodeChar = 5;
constexpr std::size_t kCodeGroupSize = 4;
constexpr std::size_t kDeviceIdSize = 2 * crypto::kSha256Size;
// Every column read_device() reads, in its order; {pem} is the certificate column or ''.
constexpr const char* kDeviceColumns =
    "d.id, d.login, d.serial, {pem}, d.platform, d.os_version, d.model, d.name, "
    "d.agent_version, d.enrolled_at, d.last_checkin_at, d.revoked_at, d.verdict, d.reasons, "
    "d.policy_version, d.block_after, d.wipe_after, d.clock_skew, d.certificate_not_after, "
    "d.wiped_at, d.wipe_reason, d.locked_at, d.lock_reason";

UnixTime from_unix(std::int64_t seconds) {
  return UnixTime{std::chrono::seconds{seconds}};
}

std::int64_t unix_of(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// "SELECT <columns> FROM devices d " with or without the certificate PEM.
std::string select_devices(bool with_pem) {
  std::string columns = kDeviceColumns;
  columns.replace(columns.find("{pem}"), 5, with_pem ? "d.certificate_pem" : "''");
  return "SELECT " + columns + " FROM devices d ";
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

// A fresh XXXX-XXXX-XXXX-XXXX code from the CSPRNG (enrollment and unlock codes alike).
std::string new_code() {
  auto random = crypto::random_bytes(kEnrollCodeBytes);
  std::string code = encode_code(random);
  crypto::secure_wipe(crypto::MutableByteView(random));
  return code;
}

// Reads what protocol::reasons_to_json() wrote; a damaged column reads as no reasons.
std::vector<protocol::ComplianceReason> reasons_from_json(const std::string& text) {
  auto reasons = protocol::parse_reasons(text);
  return reasons ? std::move(reasons).value() : std::vector<protocol::ComplianceReason>{};
}

std::int64_t int_or_zero(const SQLite::Column& column) {
  return column.isNull() ? 0 : column.getInt64();
}

std::string text_or_empty(const SQLite::Column& column) {
  return column.isNull() ? std::string() : column.getString();
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
  d.revoked_at = int_or_zero(row.getColumn(11));
  d.verdict =
      protocol::parse_verdict(row.getColumn(12).getString()).value_or(protocol::Verdict::compliant);
  d.reasons = reasons_from_json(row.getColumn(13).getString());
  d.policy_version = row.getColumn(14).getInt64();
  d.block_after = row.getColumn(15).getInt64();
  d.wipe_after = row.getColumn(16).getInt64();
  d.clock_skew = row.getColumn(17).getInt64();
  d.certificate_not_after = int_or_zero(row.getColumn(18));
  d.wiped_at = int_or_zero(row.getColumn(19));
  d.wipe_reason = text_or_empty(row.getColumn(20));
  d.locked_at = int_or_zero(row.getColumn(21));
  d.lock_reason = text_or_empty(row.getColumn(22));
  return d;
}

std::optional<Device> query_one_device(SQLite::Database& db, const std::string& where,
                                       std::string_view key) {
  SQLite::Statement query(db, select_devices(true) + where);
  query.bind(1, std::string(key));
  if (!query.executeStep())
    return std::nullopt;
  return read_device(query);
}

std::string device_actor(std::string_view device_id) {
  return "device:" + std::string(device_id);
}

// Records in the audit log, inside the caller's transaction; throws like the statements around
// it so the action and its record roll back together.
void audit(SQLite::Database& db, std::string_view actor, std::string_view event,
           std::string_view subject, const json& details, UnixTime now) {
  if (!AuditLog(db).record(actor, event, subject, details.dump(), now))
    throw SQLite::Exception("the audit log could not be written");
}

void insert_certificate(SQLite::Database& db, std::string_view device_id,
                        const crypto::Certificate& certificate, UnixTime now) {
  SQLite::Statement insert(db,
                           "INSERT INTO device_certificates(fingerprint, device_id, serial, "
                           "issued_at, not_after) VALUES (?, ?, ?, ?, ?)");
  insert.bind(1, crypto::to_hex(certificate.fingerprint()));
  insert.bind(2, std::string(device_id));
  insert.bind(3, certificate.serial_hex());
  insert.bind(4, to_unix(now));
  insert.bind(5, unix_of(certificate.not_after()));
  insert.exec();
}

bool is_lower_hex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Marks every pending command of `kind` done, the one the event names among them: the device did
// what they all ask for.
void complete_commands(SQLite::Database& db, std::string_view device_id, const char* kind,
                       UnixTime now) {
  SQLite::Statement done(db,
                         "UPDATE device_commands SET done_at = ? WHERE device_id = ? AND "
                         "kind = ? AND done_at IS NULL AND cancelled_at IS NULL");
  done.bind(1, to_unix(now));
  done.bind(2, std::string(device_id));
  done.bind(3, kind);
  done.exec();
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
  std::string code = new_code();
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
                                                UnixTime now, const ServerIdentity& identity,
                                                const EnrollOptions& options) {
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
    // The first certificate already lives only as long as the user's policy says.
    KABAN_TRY(effective, Policies(db_).effective_for(login));
    crypto::IssueOptions issue;
    issue.validity = std::chrono::days(effective.policy.certificate_lifetime_days);
    issue.purpose = crypto::CertificatePurpose::client;
    auto certificate =
        crypto::issue_certificate(identity.ca_certificate, identity.ca_key, csr.value(), issue);
    if (!certificate)
      return errc::csr_invalid;
    const std::string device_id = crypto::to_hex(certificate.value().fingerprint());
    const std::int64_t not_after = unix_of(certificate.value().not_after());

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
        "name, agent_version, enrolled_at, last_checkin_at, certificate_not_after, "
        "report_token_hash, unlock_code) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
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
    insert.bind(12, not_after);
    if (options.report_token_hash.empty())
      insert.bind(13);
    else
      insert.bind(13, options.report_token_hash);
    insert.bind(14, new_code());
    insert.exec();
    insert_certificate(db_, device_id, certificate.value(), now);

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
    json details = {{"login", login},
                    {"platform", description.platform},
                    {"name", description.name},
                    {"certificate_serial", certificate.value().serial_hex()},
                    {"certificate_not_after", protocol::format_timestamp(not_after)}};
    if (!options.peer_address.empty())
      details["address"] = options.peer_address;
    audit(db_, device_actor(device_id), "device_enrolled", device_id, details, now);
    transaction.commit();
    return EnrolledDevice{device_id,        login,
                          user_name,        std::move(certificate).value(),
                          effective.policy, effective.version};
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::optional<Device>> Directory::find_device(std::string_view device_id) {
  try {
    return query_one_device(db_, "WHERE d.id = ?", device_id);
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::optional<Device>> Directory::find_device_by_certificate(std::string_view fingerprint) {
  try {
    return query_one_device(
        db_, "JOIN device_certificates c ON c.device_id = d.id WHERE c.fingerprint = ?",
        fingerprint);
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<Device> Directory::resolve_device(std::string_view id_or_prefix) {
  std::string prefix(id_or_prefix);
  std::transform(prefix.begin(), prefix.end(), prefix.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (prefix.size() < kMinDevicePrefix || prefix.size() > kDeviceIdSize || !is_lower_hex(prefix))
    return errc::no_such_device;
  try {
    // Hex digits sort below 'g', so the prefix's ids are exactly this range of the primary key.
    SQLite::Statement query(db_, select_devices(false) + "WHERE d.id >= ? AND d.id < ? LIMIT 2");
    query.bind(1, prefix);
    query.bind(2, prefix + "g");
    if (!query.executeStep())
      return errc::no_such_device;
    Device device = read_device(query);
    if (query.executeStep())
      return errc::ambiguous_device;
    return device;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<bool> Directory::certificate_revoked(std::string_view fingerprint) {
  try {
    SQLite::Statement query(db_,
                            "SELECT d.revoked_at IS NOT NULL FROM device_certificates c "
                            "JOIN devices d ON d.id = c.device_id WHERE c.fingerprint = ?");
    query.bind(1, std::string(fingerprint));
    return query.executeStep() && query.getColumn(0).getInt() != 0;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<bool> Directory::record_checkin(std::string_view device_id, const CheckinRecord& record,
                                       UnixTime now) {
  try {
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement before(db_, "SELECT verdict FROM devices WHERE id = ?");
    before.bind(1, std::string(device_id));
    if (!before.executeStep())
      return false;
    const std::string old_verdict = before.getColumn(0).getString();
    before.reset();

    SQLite::Statement update(
        db_,
        "UPDATE devices SET platform = ?, os_version = ?, model = ?, name = ?, "
        "agent_version = ?, last_checkin_at = ?, verdict = ?, reasons = ?, posture = ?, "
        "policy_version = ?, block_after = ?, wipe_after = ?, clock_skew = ?, "
        "report_token_hash = coalesce(?, report_token_hash) WHERE id = ?");
    const auto& d = record.description;
    update.bind(1, d.platform);
    update.bind(2, d.os_version);
    update.bind(3, d.model);
    update.bind(4, d.name);
    update.bind(5, d.agent_version);
    update.bind(6, to_unix(now));
    const std::string new_verdict(protocol::to_string(record.verdict));
    update.bind(7, new_verdict);
    update.bind(8, protocol::reasons_to_json(record.reasons));
    update.bind(9, protocol::to_json(record.posture));
    update.bind(10, record.policy_version);
    update.bind(11, record.block_after);
    update.bind(12, record.wipe_after);
    update.bind(13, record.clock_skew);
    if (record.report_token_hash.empty())
      update.bind(14);
    else
      update.bind(14, record.report_token_hash);
    update.bind(15, std::string(device_id));
    update.exec();

    if (old_verdict != new_verdict) {
      audit(db_, device_actor(device_id), "verdict_changed", device_id,
            {{"from", old_verdict},
             {"to", new_verdict},
             {"reasons", json::parse(protocol::reasons_to_json(record.reasons))}},
            now);
    }
    transaction.commit();
    return true;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<crypto::Certificate> Directory::renew_certificate(std::string_view device_id,
                                                         const crypto::CertificateRequest& csr,
                                                         std::chrono::seconds lifetime,
                                                         UnixTime now,
                                                         const ServerIdentity& identity) {
  crypto::IssueOptions issue;
  issue.validity = lifetime;
  issue.purpose = crypto::CertificatePurpose::client;
  auto certificate =
      crypto::issue_certificate(identity.ca_certificate, identity.ca_key, csr, issue);
  if (!certificate)
    return errc::csr_invalid;
  const std::int64_t not_after = unix_of(certificate.value().not_after());
  try {
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement update(db_, "UPDATE devices SET certificate_not_after = ? WHERE id = ?");
    update.bind(1, not_after);
    update.bind(2, std::string(device_id));
    if (update.exec() != 1)
      return errc::no_such_device;
    insert_certificate(db_, device_id, certificate.value(), now);
    audit(db_, device_actor(device_id), "certificate_renewed", device_id,
          {{"fingerprint", crypto::to_hex(certificate.value().fingerprint())},
           {"serial", certificate.value().serial_hex()},
           {"not_after", protocol::format_timestamp(not_after)}},
          now);
    transaction.commit();
    return std::move(certificate).value();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<Device>> Directory::list_devices() {
  try {
    SQLite::Statement query(db_, select_devices(false) + "ORDER BY d.login, d.enrolled_at, d.id");
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

Result<std::int64_t> Directory::queue_command(std::string_view device_id,
                                              protocol::CommandKind kind, std::string_view actor,
                                              UnixTime now) {
  const std::string kind_text(protocol::to_string(kind));
  try {
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement device(db_, "SELECT revoked_at FROM devices WHERE id = ?");
    device.bind(1, std::string(device_id));
    if (!device.executeStep())
      return errc::no_such_device;
    if (!device.getColumn(0).isNull())
      return errc::device_revoked;

    SQLite::Statement pending(db_,
                              "SELECT id FROM device_commands WHERE device_id = ? AND kind = ? "
                              "AND done_at IS NULL AND cancelled_at IS NULL ORDER BY id LIMIT 1");
    pending.bind(1, std::string(device_id));
    pending.bind(2, kind_text);
    if (pending.executeStep())
      return pending.getColumn(0).getInt64();

    SQLite::Statement insert(db_,
                             "INSERT INTO device_commands(device_id, kind, requested_by, "
                             "requested_at) VALUES (?, ?, ?, ?)");
    insert.bind(1, std::string(device_id));
    insert.bind(2, kind_text);
    insert.bind(3, std::string(actor));
    insert.bind(4, to_unix(now));
    insert.exec();
    const std::int64_t id = db_.getLastInsertRowid();
    audit(db_, actor, kind_text + "_requested", device_id, {{"command_id", id}}, now);
    transaction.commit();
    return id;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<QueuedCommand>> Directory::pending_commands(std::string_view device_id) {
  try {
    SQLite::Statement query(db_,
                            "SELECT id, kind, requested_by, requested_at, sent_at "
                            "FROM device_commands WHERE device_id = ? AND done_at IS NULL AND "
                            "cancelled_at IS NULL ORDER BY id");
    query.bind(1, std::string(device_id));
    std::vector<QueuedCommand> commands;
    while (query.executeStep()) {
      QueuedCommand c;
      c.id = query.getColumn(0).getInt64();
      c.kind = protocol::parse_command_kind(query.getColumn(1).getString())
                   .value_or(protocol::CommandKind::wipe);
      c.requested_by = query.getColumn(2).getString();
      c.requested_at = query.getColumn(3).getInt64();
      c.sent_at = int_or_zero(query.getColumn(4));
      commands.push_back(std::move(c));
    }
    return commands;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<protocol::DeviceCommand>> Directory::take_commands_to_send(
    std::string_view device_id, UnixTime now) {
  try {
    // Most check-ins carry no command: those take no write lock.
    KABAN_TRY(queued, pending_commands(device_id));
    if (queued.empty())
      return std::vector<protocol::DeviceCommand>{};
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    KABAN_TRY(pending, pending_commands(device_id));
    SQLite::Statement sent(db_,
                           "UPDATE device_commands SET sent_at = ? WHERE device_id = ? AND "
                           "done_at IS NULL AND cancelled_at IS NULL");
    sent.bind(1, to_unix(now));
    sent.bind(2, std::string(device_id));
    sent.exec();
    transaction.commit();
    std::vector<protocol::DeviceCommand> commands;
    for (const QueuedCommand& c : pending)
      commands.push_back({c.id, c.kind});
    return commands;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::string> Directory::unlock_code(std::string_view device_id) {
  try {
    SQLite::Statement query(db_, "SELECT unlock_code FROM devices WHERE id = ?");
    query.bind(1, std::string(device_id));
    if (!query.executeStep())
      return errc::no_such_device;
    if (!query.getColumn(0).isNull() && !query.getColumn(0).getString().empty())
      return query.getColumn(0).getString();
    query.reset();
    // A device enrolled before unlock codes gets its first now; of two requests racing to make
    // it, the first write wins and both read it back.
    SQLite::Statement make(db_,
                           "UPDATE devices SET unlock_code = ? WHERE id = ? AND "
                           "(unlock_code IS NULL OR unlock_code = '')");
    make.bind(1, new_code());
    make.bind(2, std::string(device_id));
    make.exec();
    if (!query.executeStep())
      return errc::no_such_device;
    return query.getColumn(0).getString();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<bool> Directory::report_token_matches(std::string_view device_id,
                                             std::string_view report_token) {
  try {
    SQLite::Statement query(db_, "SELECT report_token_hash FROM devices WHERE id = ?");
    query.bind(1, std::string(device_id));
    if (!query.executeStep() || query.getColumn(0).isNull())
      return false;
    const std::string held = query.getColumn(0).getString();
    const std::string given = protocol::report_token_hash(report_token);
    return held.size() == given.size() &&
           crypto::constant_time_equal(crypto::as_bytes(held), crypto::as_bytes(given));
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::size_t> Directory::record_device_events(std::string_view device_id,
                                                    std::span<const protocol::DeviceEvent> events,
                                                    UnixTime now) {
  const std::string id(device_id);
  try {
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement exists(db_, "SELECT 1 FROM devices WHERE id = ?");
    exists.bind(1, id);
    if (!exists.executeStep())
      return errc::no_such_device;
    for (const protocol::DeviceEvent& e : events) {
      json details = {{"reason", e.reason}, {"device_time", protocol::format_timestamp(e.at)}};
      if (e.command_id != 0)
        details["command_id"] = e.command_id;
      switch (e.kind) {
        case protocol::DeviceEventKind::wiped: {
          // A wipe reported again (its answer was lost) keeps the first report.
          SQLite::Statement wiped(db_,
                                  "UPDATE devices SET wiped_at = coalesce(wiped_at, ?), "
                                  "wipe_reason = coalesce(wipe_reason, ?) WHERE id = ?");
          wiped.bind(1, to_unix(now));
          wiped.bind(2, e.reason);
          wiped.bind(3, id);
          wiped.exec();
          complete_commands(db_, id, "wipe", now);
          audit(db_, device_actor(id), "device_wiped", id, details, now);
          break;
        }
        case protocol::DeviceEventKind::locked: {
          SQLite::Statement locked(
              db_, "UPDATE devices SET locked_at = ?, lock_reason = ? WHERE id = ?");
          locked.bind(1, to_unix(now));
          locked.bind(2, e.reason);
          locked.bind(3, id);
          locked.exec();
          complete_commands(db_, id, "lock", now);
          audit(db_, device_actor(id), "device_locked", id, details, now);
          break;
        }
        case protocol::DeviceEventKind::unlocked: {
          // The code the person typed is used up: IT reads out a new one next time.
          SQLite::Statement unlocked(db_,
                                     "UPDATE devices SET locked_at = NULL, lock_reason = NULL, "
                                     "unlock_code = ? WHERE id = ?");
          unlocked.bind(1, new_code());
          unlocked.bind(2, id);
          unlocked.exec();
          audit(db_, device_actor(id), "device_unlocked", id, details, now);
          break;
        }
      }
    }
    transaction.commit();
    return events.size();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::server
