#include "chunk_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "kaban/crypto/random.hpp"
#include "kaban/server/data_dir.hpp"

namespace kaban::server::detail {
namespace fs = std::filesystem;
namespace {

constexpr std::size_t kFanOutDigits = 2;  // chunks/ab/abcd...: at most 256 subdirectories
constexpr std::size_t kTempSuffixBytes = 8;
constexpr mode_t kChunkDirMode = 0700;
constexpr mode_t kChunkFileMode = 0600;

std::error_code os_error() {
  return {errno, std::generic_category()};
}

Result<void> write_all(int fd, crypto::ByteView data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return os_error();
    done += static_cast<std::size_t>(n);
  }
  return ok();
}

}  // namespace

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0)
    ::close(fd_);
}

int FileDescriptor::close() {
  return ::close(std::exchange(fd_, -1));
}

fs::path chunk_path(const fs::path& data_dir, std::string_view hash) {
  return data_dir / kChunksDir / std::string(hash.substr(0, kFanOutDigits)) / std::string(hash);
}

namespace {

// Writes `data` to a new file beside `path`, named so that it is recognisably temporary; returns
// its name. Makes the fan-out directory if needed. With `sync`, the file is fsync()ed.
Result<fs::path> write_temporary(const fs::path& path, crypto::ByteView data, bool sync) {
  if (::mkdir(path.parent_path().c_str(), kChunkDirMode) != 0 && errno != EEXIST)
    return os_error();
  fs::path temp =
      path.parent_path() / ("." + path.filename().string() + "." +
                            crypto::to_hex(crypto::random_bytes(kTempSuffixBytes)) + ".tmp");
  FileDescriptor fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kChunkFileMode));
  if (fd.get() < 0)
    return os_error();
  auto written = write_all(fd.get(), data);
  if (written && sync && ::fsync(fd.get()) != 0)
    written = os_error();
  if (written && fd.close() != 0)
    written = os_error();
  if (!written) {
    ::unlink(temp.c_str());
    return written.error();
  }
  return temp;
}

// True if `path` is a chunk file of `size` bytes already; renews its modification time then, so
// `admin gc` (which spares recently touched files) cannot delete it under a publish that is
// about to name it.
bool held_already(const fs::path& path, std::size_t size) {
  std::error_code ec;
  if (fs::file_size(path, ec) != size || ec)
    return false;
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
  return true;
}

}  // namespace

Result<void> store_chunk(const fs::path& path, crypto::ByteView data) {
  std::error_code ec;
  if (held_already(path, data.size()))
    return ok();
  KABAN_TRY(temp, write_temporary(path, data, true));
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const std::error_code e = os_error();
    ::unlink(temp.c_str());
    return e;
  }
  return ok();
}

ChunkBatch::~ChunkBatch() {
  for (const auto& [temp, final_path] : pending_)
    ::unlink(temp.c_str());
}

Result<void> ChunkBatch::add(std::string_view hash, crypto::ByteView data) {
  if (added_.contains(std::string(hash)))
    return ok();
  const fs::path path = chunk_path(data_dir_, hash);
  if (held_already(path, data.size()))
    return ok();
  KABAN_TRY(temp, write_temporary(path, data, false));
  pending_.emplace_back(std::move(temp), path);
  added_.emplace(hash);
  return ok();
}

Result<void> ChunkBatch::commit() {
  if (pending_.empty())
    return ok();
  {
    FileDescriptor dir(::open(data_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0 || ::syncfs(dir.get()) != 0)
      return os_error();
  }
  std::unordered_set<std::string> dirs;
  while (!pending_.empty()) {
    const auto& [temp, final_path] = pending_.back();
    if (::rename(temp.c_str(), final_path.c_str()) != 0)
      return os_error();  // the destructor removes what is left
    dirs.insert(final_path.parent_path().string());
    pending_.pop_back();
  }
  for (const std::string& d : dirs) {
    KABAN_TRYV(sync_directory(d));
  }
  return ok();
}

Result<void> write_new_file(const fs::path& path, crypto::ByteView data, mode_t mode) {
  FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0)
    return os_error();
  KABAN_TRYV(write_all(fd.get(), data));
  if (::fsync(fd.get()) != 0)
    return os_error();
  if (fd.close() != 0)
    return os_error();
  return ok();
}

Result<void> sync_directory(const fs::path& dir) {
  FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0)
    return os_error();
  return ok();
}

}  // namespace kaban::server::detail
