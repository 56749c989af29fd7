// The encrypted SQLite VFS: every page of a Kaban store, and of its journal, sealed with
// AES-256-GCM. The page format is described in docs/store-format.md.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "kaban/crypto/secret_key.hpp"
#include "kaban/result.hpp"

namespace kaban::crypto {

/// The name the VFS is registered under (`?vfs=kaban` in a URI).
inline constexpr const char* kVfsName = "kaban";
/// Every Kaban store uses this page size; the VFS refuses others.
inline constexpr std::size_t kStorePageSize = 4096;
/// Bytes at the end of each page that hold the GCM nonce and tag (SQLite's "reserved bytes").
inline constexpr std::size_t kStorePageReserve = 28;
/// Size of a data key (AES-256).
inline constexpr std::size_t kDataKeySize = 32;

/// Registers the VFS with the process's SQLite under kVfsName, over the default VFS, together
/// with an auto-extension that gives every connection opened through it the settings the format
/// needs (reserved bytes, temp_store=MEMORY, secure_delete=ON). Idempotent and thread-safe.
/// Fails only if SQLite refuses the registration.
Result<void> register_vfs();

/// The SQLite URI that opens `path` through the VFS with `data_key` (kDataKeySize bytes):
/// `file:PATH?vfs=kaban&hexkey=...`. The string holds the key: wipe it after the open.
std::string store_uri(const std::filesystem::path& path, const SecretKey& data_key);

/// The last failure the VFS reported on the calling thread, in words that name the file and,
/// for damage, the page ("page 7 of /x/store.db failed authentication"), or "" if none since
/// clear_vfs_error(). SQLite itself only sees an error code (SQLITE_IOERR_DATA for a damaged page,
/// SQLITE_NOTADB for a wrong key); callers use this to tell the person which.
std::string vfs_last_error();
void clear_vfs_error();

/// What the VFS reported, as a code: errc::damaged, errc::wrong_key, or a default (no error).
std::error_code vfs_last_error_code();

}  // namespace kaban::crypto
