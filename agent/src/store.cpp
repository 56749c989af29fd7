#include "kaban/agent/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <sqlite3.h>

#include "kaban/agent/error.hpp"
#include "kaban/agent/migrations.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/crypto/key_envelope.hpp"
#include "kaban/crypto/vfs.hpp"

namespace kaban::agent {
namespace fs = std::filesystem;
namespace {

constexpr int kBusyTimeoutMs = 5000;

fs::path envelope_path(const fs::path& dir) {
  return dir / Store::kEnvelopeFile;
}
fs::path database_path(const fs::path& dir) {
  return dir / Store::kDatabaseFile;
}
fs::path journal_path(const fs::path& dir) {
  return dir / (std::string(Store::kDatabaseFile) + "-journal");
}

std::error_code classify(int extended_code) noexcept {
  if (extended_code == SQLITE_IOERR_DATA)
    return crypto::errc::damaged;
  if ((extended_code & 0xff) == SQLITE_NOTADB) {
    const auto vfs = crypto::vfs_last_error_code();
    return vfs ? vfs : std::error_code(crypto::errc::wrong_key);
  }
  // The file system answered ENOSPC: the transaction rolled back, nothing half-written stays.
  if ((extended_code & 0xff) == SQLITE_FULL)
    return errc::disk_full;
  return errc::storage_failed;
}

}  // namespace

Store::Store(fs::path dir, std::unique_ptr<SQLite::Database> db)
    : dir_(std::move(dir)), db_(std::move(db)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

bool Store::exists(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(envelope_path(dir), ec) || fs::exists(database_path(dir), ec);
}

std::uint64_t Store::disk_size(const fs::path& dir) {
  std::uint64_t total = 0;
  for (const fs::path& p : {database_path(dir), journal_path(dir), envelope_path(dir)}) {
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    if (!ec)
      total += size;
  }
  return total;
}

Result<void> Store::release_free_pages() {
  try {
    db_->exec("PRAGMA incremental_vacuum;");
    return ok();
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::uint64_t> Store::free_space(const fs::path& dir) {
  std::error_code ec;
  const fs::space_info space = fs::space(dir, ec);
  if (ec)
    return ec;
  return static_cast<std::uint64_t>(space.available);
}

Result<Store> Store::create(const fs::path& dir, std::string_view pin,
                            const crypto::ScryptParams& kdf) {
  if (exists(dir))
    return errc::store_exists;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return ec;
  ::chmod(dir.c_str(), 0700);
  auto key = crypto::KeyEnvelope::create(envelope_path(dir), pin, kdf);
  if (!key) {
    if (key.error() == std::errc::file_exists)
      return errc::store_exists;
    return key.error();
  }
  // SQLite creates the database with the process umask (often 0644) and gives its journal the
  // database's mode; an empty file made here first keeps both owner-only.
  if (const int fd =
          ::open(database_path(dir).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      fd >= 0)
    ::close(fd);
  auto store = open_database(dir, key.value(), Open::create);
  if (!store) {
    // Leave nothing half-made behind: a store without its schema would not open.
    (void)wipe(dir);
  }
  return store;
}

Result<Store> Store::open(const fs::path& dir, std::string_view pin) {
  if (!fs::exists(database_path(dir)))
    return errc::no_store;
  auto key = crypto::KeyEnvelope::open(envelope_path(dir), pin);
  if (!key) {
    if (key.error() == std::errc::no_such_file_or_directory)
      return errc::no_store;
    return key.error();
  }
  return open_database(dir, key.value(), Open::existing);
}

Result<Store> Store::open_with_key(const fs::path& dir, const crypto::SecretKey& data_key) {
  if (!fs::exists(database_path(dir)))
    return errc::no_store;
  return open_database(dir, data_key, Open::existing);
}

Result<void> Store::change_pin(const fs::path& dir, std::string_view old_pin,
                               std::string_view new_pin, const crypto::ScryptParams& kdf) {
  if (!fs::exists(envelope_path(dir)))
    return errc::no_store;
  return crypto::KeyEnvelope::change_pin(envelope_path(dir), old_pin, new_pin, kdf);
}

Result<void> Store::wipe(const fs::path& dir) {
  KABAN_TRYV(crypto::KeyEnvelope::destroy(envelope_path(dir)));
  for (const fs::path& p : {database_path(dir), journal_path(dir)}) {
    std::error_code ec;
    fs::remove(p, ec);
    if (ec)
      return ec;
  }
  return ok();
}

Result<Store> Store::open_database(const fs::path& dir, const crypto::SecretKey& data_key,
                                   Open how) {
  KABAN_TRYV(crypto::register_vfs());
  std::string uri = crypto::store_uri(database_path(dir), data_key);
  const int flags =
      SQLite::OPEN_READWRITE | SQLite::OPEN_URI | (how == Open::create ? SQLite::OPEN_CREATE : 0);
  crypto::clear_vfs_error();
  std::unique_ptr<SQLite::Database> db;
  try {
    db = std::make_unique<SQLite::Database>(uri, flags, kBusyTimeoutMs);
    crypto::secure_wipe(uri);
    // FULL: a transaction that returned from commit survives a crash or power loss.
    db->exec("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
    // Before the first table: lets Store::release_free_pages() give freed pages back to the
    // file system. A store made before this keeps them for reuse (VACUUM would need a copy of
    // the whole store in memory, as temporary files are refused).
    if (how == Open::create)
      db->exec("PRAGMA auto_vacuum=INCREMENTAL;");
  } catch (const SQLite::Exception& e) {
    crypto::secure_wipe(uri);
    return classify(e.getExtendedErrorCode());
  }
  if (auto migrated = schema::apply_migrations(*db, store_migrations()); !migrated) {
    const std::error_code e = migrated.error();
    if (e == schema::errc::newer_schema)
      return errc::newer_schema;
    if (e == schema::errc::migration_failed)
      return errc::migration_failed;
    return errc::storage_failed;
  }
  return Store(dir, std::move(db));
}

std::error_code store_error_code(const std::exception& e) noexcept {
  if (const auto* sqlite = dynamic_cast<const SQLite::Exception*>(&e)) {
    return classify(sqlite->getExtendedErrorCode());
  }
  return errc::storage_failed;
}

std::string describe_store_error(const std::exception& e) {
  const std::error_code code = store_error_code(e);
  const std::string detail = crypto::vfs_last_error();
  if (code == crypto::errc::damaged) {
    return (detail.empty() ? std::string("the store is damaged") : detail) +
           ". Nothing was read from the damaged page and nothing was changed. The cached data "
           "cannot be trusted: wipe this device's store and sync again.";
  }
  if (code == crypto::errc::wrong_key)
    return "wrong PIN or key";
  return std::string("the store could not be read or written: ") + e.what() +
         ". Nothing was changed; check free disk space and permissions, then try again.";
}

}  // namespace kaban::agent
