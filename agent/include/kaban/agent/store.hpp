// Store: the device's encrypted local database (one directory, two files).
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "kaban/crypto/scrypt.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/result.hpp"

namespace SQLite {
class Database;
}

namespace kaban::agent {

/// A store directory holds `store.db` (every page sealed by the kaban VFS, see
/// docs/store-format.md), its transient `store.db-journal`, and `store.key` (the data key wrapped
/// under the PIN). Opening runs the schema migrations. One Store is one SQLite connection: use it
/// from one thread at a time (the VFS may run one read-ahead thread of its own per store). Query
/// failures surface as SQLite::Exception from db(); pass them to describe_store_error() for words a
/// person can act on.
class Store {
 public:
  static constexpr std::string_view kDatabaseFile = "store.db";
  static constexpr std::string_view kEnvelopeFile = "store.key";

  /// Creates the directory (0700) if needed, a new data key wrapped under `pin`, and an empty
  /// store at the latest schema. errc::store_exists if the directory already holds a store or an
  /// envelope; nothing is changed then.
  static Result<Store> create(const std::filesystem::path& dir, std::string_view pin,
                              const crypto::ScryptParams& kdf = {});

  /// Opens an existing store with the PIN. crypto::errc::wrong_key for a wrong PIN,
  /// crypto::errc::damaged if page 1 or the envelope is damaged, errc::no_store if there is none,
  /// errc::newer_schema if a newer Kaban wrote it.
  static Result<Store> open(const std::filesystem::path& dir, std::string_view pin);

  /// Opens with the data key itself (support tools and tests); same failures as open().
  static Result<Store> open_with_key(const std::filesystem::path& dir,
                                     const crypto::SecretKey& data_key);

  /// Rewraps the data key under `new_pin`; the database is not rewritten.
  /// crypto::errc::wrong_key if `old_pin` is wrong (nothing changes).
  static Result<void> change_pin(const std::filesystem::path& dir, std::string_view old_pin,
                                 std::string_view new_pin, const crypto::ScryptParams& kdf = {});

  /// Crypto-shredding: destroys the envelope first, so the data is unreadable from that moment
  /// even if removing the rest fails, then removes the database and journal. Close every Store
  /// on `dir` first. Succeeds if there is nothing to wipe.
  static Result<void> wipe(const std::filesystem::path& dir);

  /// True if `dir` holds an envelope or a database.
  static bool exists(const std::filesystem::path& dir);

  /// Bytes the store's files take in `dir` (database, journal, envelope); what does not exist
  /// counts 0. The posture's cache size and the policy's max_cache_mb use it. Any thread.
  static std::uint64_t disk_size(const std::filesystem::path& dir);

  /// Bytes free for an unprivileged writer on the file system holding `dir`
  /// (std::filesystem::space's `available`: statvfs on POSIX). Any thread.
  static Result<std::uint64_t> free_space(const std::filesystem::path& dir);

  /// Free bytes the store's file system must have before `new_bytes` of chunks are stored:
  /// the bytes, up to 1/16 more (sealed pages carry a nonce and tag; B-tree pages are not
  /// full), and 64 MiB left so the store's journal and the rest of the device have room to
  /// work. Sync and bundle import both stop short of it rather than fail half-way.
  static constexpr std::uint64_t room_needed(std::uint64_t new_bytes) noexcept {
    return new_bytes + new_bytes / 16 + std::uint64_t{64} * 1024 * 1024;
  }

  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  ~Store();

  /// Gives the pages deleted rows left free back to the file system, so the store's files
  /// shrink (stores created by this version; an older store keeps them for its own reuse).
  /// Call outside a transaction, after deleting much (a course, a lesson's media).
  Result<void> release_free_pages();

  SQLite::Database& db() noexcept { return *db_; }
  const std::filesystem::path& dir() const noexcept { return dir_; }

 private:
  enum class Open { existing, create };

  Store(std::filesystem::path dir, std::unique_ptr<SQLite::Database> db);
  static Result<Store> open_database(const std::filesystem::path& dir,
                                     const crypto::SecretKey& data_key, Open how);

  std::filesystem::path dir_;
  std::unique_ptr<SQLite::Database> db_;
};

/// The error code behind a failure while using a store: crypto::errc::damaged for a page that
/// failed authentication, crypto::errc::wrong_key, or errc::storage_failed.
std::error_code store_error_code(const std::exception& e) noexcept;

/// A sentence for a person: what failed (naming the damaged page when there is one), that
/// nothing was changed, and what to do next.
std::string describe_store_error(const std::exception& e);

}  // namespace kaban::agent
