#include "kaban/agent/device_identity.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include <nlohmann/json.hpp>

#include "kaban/agent/error.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/policy.hpp"

namespace kaban::agent {
namespace {

// The server replaces the common name with the login; this only has to be a valid one.
constexpr const char* kRequestCommonName = "kaban device";
constexpr std::string_view kPinFactsKey = "pin_facts";

Result<void> bad_certificate(std::string& why, std::string what) {
  why = "the server sent a renewed device certificate that " + std::move(what) +
        "; the current certificate is kept. Ask IT to check the server";
  return errc::bad_response;
}

}  // namespace

Result<void> save_identity(Store& store, const DeviceIdentity& identity) {
  try {
    SQLite::Transaction tx(store.db());
    // Checked inside the transaction, so two enrollments cannot both pass the check.
    if (store.db().execAndGet("SELECT count(*) FROM device_identity").getInt() != 0)
      return errc::already_enrolled;
    SQLite::Statement insert(store.db(), R"sql(
      INSERT INTO device_identity (id, server_host, server_port, device_id, login, user_name,
                                   certificate_pem, private_key_pem, ca_pem, signing_key,
                                   server_epoch, enrolled_at)
      VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    )sql");
    const crypto::ByteView key = identity.private_key_pem.bytes();
    insert.bind(1, identity.server_host);
    insert.bind(2, static_cast<int>(identity.server_port));
    insert.bind(3, identity.device_id);
    insert.bind(4, identity.login);
    insert.bind(5, identity.user_name);
    insert.bind(6, identity.certificate_pem);
    insert.bindNoCopy(7, key.data(), static_cast<int>(key.size()));
    insert.bind(8, identity.ca_pem);
    insert.bind(9, identity.signing_key);
    insert.bind(10, identity.server_epoch);
    insert.bind(11, static_cast<std::int64_t>(identity.enrolled_at));
    insert.exec();
    tx.commit();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<DeviceIdentity> load_identity(Store& store) {
  try {
    SQLite::Statement query(store.db(), R"sql(
      SELECT server_host, server_port, device_id, login, user_name, certificate_pem,
             private_key_pem, ca_pem, signing_key, server_epoch, enrolled_at
      FROM device_identity WHERE id = 1
    )sql");
    if (!query.executeStep())
      return errc::not_enrolled;
    DeviceIdentity identity;
    identity.server_host = query.getColumn(0).getString();
    identity.server_port = static_cast<std::uint16_t>(query.getColumn(1).getInt());
    identity.device_id = query.getColumn(2).getString();
    identity.login = query.getColumn(3).getString();
    identity.user_name = query.getColumn(4).getString();
    identity.certificate_pem = query.getColumn(5).getString();
    const SQLite::Column key = query.getColumn(6);
    identity.private_key_pem =
        crypto::SecretKey::from_bytes({static_cast<const std::uint8_t*>(key.getBlob()),
                                       static_cast<std::size_t>(key.getBytes())});
    identity.ca_pem = query.getColumn(7).getString();
    identity.signing_key = query.getColumn(8).getString();
    identity.server_epoch = query.getColumn(9).getString();
    identity.enrolled_at = query.getColumn(10).getInt64();
    return identity;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::string> certificate_request_pem(const crypto::SecretKey& private_key_pem) {
  KABAN_TRY(key, crypto::EcPrivateKey::from_pem(private_key_pem.bytes()));
  KABAN_TRY(csr, crypto::CertificateRequest::create(key, kRequestCommonName));
  return csr.to_pem();
}

Result<void> replace_certificate(Store& store, std::string_view certificate_pem,
                                 std::chrono::system_clock::time_point now, std::string& why) {
  KABAN_TRY(identity, load_identity(store));
  auto certificate = crypto::Certificate::from_pem(certificate_pem);
  if (!certificate)
    return bad_certificate(why, "does not parse");
  auto key = crypto::EcPrivateKey::from_pem(identity.private_key_pem.bytes());
  if (!key)
    return bad_certificate(why, "cannot be checked: the device key in the store does not parse");
  if (certificate.value().public_key_der() != key.value().public_key_der())
    return bad_certificate(why, "is for another key");
  auto ca = crypto::Certificate::from_pem(identity.ca_pem);
  if (!ca)
    return bad_certificate(why, "cannot be checked: the pinned CA does not parse");
  const std::vector<crypto::Certificate> trusted{ca.value()};
  if (!crypto::verify_chain(certificate.value(), trusted, now))
    return bad_certificate(why, "is not signed by the pinned CA or is not valid now");
  try {
    SQLite::Statement update(store.db(),
                             "UPDATE device_identity SET certificate_pem = ? WHERE id = 1");
    update.bind(1, certificate.value().to_pem());
    update.exec();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

PinFacts pin_facts_of(std::string_view pin) {
  return {!pin.empty(), static_cast<int>(pin.size()), protocol::is_simple_pin(pin)};
}

Result<void> save_pin_facts(Store& store, const PinFacts& facts) {
  const std::string text =
      nlohmann::json{{"set", facts.set}, {"length", facts.length}, {"simple", facts.simple}}.dump();
  try {
    SQLite::Statement upsert(store.db(), R"sql(
      INSERT INTO meta (key, value) VALUES (?, ?)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value
    )sql");
    upsert.bind(1, std::string(kPinFactsKey));
    upsert.bind(2, text);
    upsert.exec();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::optional<PinFacts>> load_pin_facts(Store& store) {
  try {
    SQLite::Statement query(store.db(), "SELECT value FROM meta WHERE key = ?");
    query.bind(1, std::string(kPinFactsKey));
    if (!query.executeStep())
      return std::optional<PinFacts>();
    const auto json = nlohmann::json::parse(query.getColumn(0).getString(), nullptr, false);
    // Only this build writes the row; one it cannot read counts as not recorded.
    if (!json.is_object())
      return std::optional<PinFacts>();
    PinFacts facts;
    facts.set = json.value("set", false);
    facts.length = json.value("length", 0);
    facts.simple = json.value("simple", false);
    return std::optional<PinFacts>(facts);
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  } catch (const nlohmann::json::exception&) {
    return std::optional<PinFacts>();
  }
}

Result<crypto::Ed25519PublicKey> content_signing_key(const DeviceIdentity& identity) {
  KABAN_TRY(raw, crypto::from_hex(identity.signing_key));
  return crypto::Ed25519PublicKey::from_bytes(raw);
}

Result<SyncState> load_sync_state(Store& store) {
  try {
    SQLite::Statement query(store.db(),
                            "SELECT cursor, last_sync_at, last_server_time FROM sync_state");
    SyncState state;
    if (query.executeStep()) {
      state.cursor = query.getColumn(0).getString();
      state.last_sync_at = query.getColumn(1).getInt64();
      state.last_server_time = query.getColumn(2).getInt64();
    }
    return state;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<void> save_sync_state(Store& store, const SyncState& state) {
  try {
    SQLite::Statement upsert(store.db(), R"sql(
      INSERT INTO sync_state (id, cursor, last_sync_at, last_server_time) VALUES (1, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor,
                                     last_sync_at = excluded.last_sync_at,
                                     last_server_time = excluded.last_server_time
    )sql");
    upsert.bind(1, state.cursor);
    upsert.bind(2, static_cast<std::int64_t>(state.last_sync_at));
    upsert.bind(3, static_cast<std::int64_t>(state.last_server_time));
    upsert.exec();
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

}  // namespace kaban::agent
