#include "kaban/agent/device_identity.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "kaban/agent/error.hpp"
#include "kaban/crypto/bytes.hpp"

namespace kaban::agent {

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
