// The chunks/ directory of the data directory: where course chunks (Catalog::publish) and
// attachment chunks devices upload (PUT /v1/chunks/<sha256>) are kept, one file per SHA-256;
// and the durable-file helpers the rest of the data directory is written with.
// Private to kaban::server. Safe to call from several threads and processes at once: a file
// appears under its name only complete.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "kaban/crypto/bytes.hpp"
#include "kaban/result.hpp"

namespace kaban::server::detail {

/// DIR/chunks/ab/<hash> for a hash of 64 lower-case hex digits.
std::filesystem::path chunk_path(const std::filesystem::path& data_dir, std::string_view hash);

/// Writes `data` to `path` under a temporary name in its directory, syncs it, then renames it:
/// a chunk file is either complete or not there, so its name always matches its content, and
/// one already there of the right size is kept as it is. Makes the fan-out directory if needed.
/// The rename is durable only once the caller has synced the directory (sync_directory). Fails
/// with the OS error; nothing is left behind then. Reusing a file renews its modification time
/// (see kGcGraceSeconds in admin_content.cpp).
Result<void> store_chunk(const std::filesystem::path& path, crypto::ByteView data);

/// fsync()s a directory, making the renames in it durable.
Result<void> sync_directory(const std::filesystem::path& dir);

/// Creates `path` with `mode` (O_EXCL: a file that appeared meanwhile is never overwritten, and
/// the mode is set at creation, so a key is never readable by others, not even for a moment),
/// writes `data` and fsync()s it. What `init` and `admin mirror add` write keys and
/// certificates with. Fails with the OS error (the file may then exist, partly written).
Result<void> write_new_file(const std::filesystem::path& path, crypto::ByteView data, mode_t mode);

/// The chunk files of one publish. A chunk the directory lacks is written under a temporary name
/// without a sync; commit() makes every one durable with one syncfs() of the file system (one
/// flush instead of one fsync per chunk: a 1 GiB course is some 15,000 chunks), then renames each
/// into place and syncs the fan-out directories. So, as with store_chunk, a chunk file is either
/// complete under its name or not there. The destructor removes the temporary files of a batch
/// that was not committed. Not thread-safe.
class ChunkBatch {
 public:
  explicit ChunkBatch(std::filesystem::path data_dir) : data_dir_(std::move(data_dir)) {}
  ChunkBatch(const ChunkBatch&) = delete;
  ChunkBatch& operator=(const ChunkBatch&) = delete;
  ~ChunkBatch();

  /// Adds the chunk named `hash` (64 lower-case hex digits) unless its file is there with the
  /// right size (its modification time is renewed then, as store_chunk does) or this batch holds
  /// it already. Fails with the OS error.
  Result<void> add(std::string_view hash, crypto::ByteView data);
  /// Makes the batch durable and visible (see above). Fails with the OS error; temporary files
  /// not yet renamed are removed then.
  Result<void> commit();

 private:
  std::filesystem::path data_dir_;
  std::vector<std::pair<std::filesystem::path, std::filesystem::path>> pending_;  // temp, final
  std::unordered_set<std::string> added_;
};

/// Owns a file descriptor; close() reports write-back errors that the destructor would swallow.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor();
  int get() const { return fd_; }
  int close();

 private:
  int fd_;
};

}  // namespace kaban::server::detail
