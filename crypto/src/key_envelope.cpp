#include "kaban/crypto/key_envelope.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "kaban/crypto/aead.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/crypto/vfs.hpp"

namespace kaban::crypto {
namespace {

constexpr std::uint8_t kVersion = 1;
constexpr std::size_t kSaltSize = 16;
// version(1) log2_n(1) r(4) p(4) salt(16) | nonce(12) sealed_key(32) tag(16)
constexpr std::size_t kHeaderSize = 1 + 1 + 4 + 4 + kSaltSize;
constexpr std::size_t kEnvelopeSize = kHeaderSize + kGcmNonceSize + kDataKeySize + kGcmTagSize;
// Refuse parameters that would make opening take minutes or gigabytes (a planted envelope).
constexpr unsigned kMaxLog2N = 22;
constexpr std::uint32_t kMaxR = 32;
constexpr std::uint32_t kMaxP = 16;

using Envelope = std::array<std::uint8_t, kEnvelopeSize>;

void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
std::uint32_t get_u32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

unsigned log2_exact(std::uint64_t n) {
  unsigned k = 0;
  while ((std::uint64_t{1} << k) < n)
    ++k;
  return k;
}

Result<Envelope> seal_envelope(const SecretKey& data_key, std::string_view pin,
                               const ScryptParams& params) {
  const unsigned log2_n = log2_exact(params.n);
  if ((std::uint64_t{1} << log2_n) != params.n || log2_n > kMaxLog2N || params.r > kMaxR ||
      params.p > kMaxP) {
    return errc::invalid_argument;
  }
  Envelope env{};
  env[0] = kVersion;
  env[1] = static_cast<std::uint8_t>(log2_n);
  put_u32(&env[2], params.r);
  put_u32(&env[6], params.p);
  random_fill(MutableByteView(&env[10], kSaltSize));
  KABAN_TRY(kek, scrypt(as_bytes(pin), ByteView(&env[10], kSaltSize), params, kAes256KeySize));
  random_fill(MutableByteView(&env[kHeaderSize], kGcmNonceSize));
  Aes256Gcm(kek).seal(
      ByteView(&env[kHeaderSize], kGcmNonceSize), ByteView(env.data(), kHeaderSize),
      data_key.bytes(), MutableByteView(&env[kHeaderSize + kGcmNonceSize], kDataKeySize),
      MutableByteView(&env[kHeaderSize + kGcmNonceSize + kDataKeySize], kGcmTagSize));
  return env;
}

Result<SecretKey> unseal_envelope(const Envelope& env, std::string_view pin) {
  if (env[0] != kVersion || env[1] < 1 || env[1] > kMaxLog2N)
    return errc::damaged;
  const ScryptParams params{std::uint64_t{1} << env[1], get_u32(&env[2]), get_u32(&env[6])};
  if (params.r == 0 || params.r > kMaxR || params.p == 0 || params.p > kMaxP)
    return errc::damaged;
  KABAN_TRY(kek, scrypt(as_bytes(pin), ByteView(&env[10], kSaltSize), params, kAes256KeySize));
  SecretKey data_key(kDataKeySize);
  if (Aes256Gcm(kek).open(ByteView(&env[kHeaderSize], kGcmNonceSize),
                          ByteView(env.data(), kHeaderSize),
                          ByteView(&env[kHeaderSize + kGcmNonceSize], kDataKeySize),
                          ByteView(&env[kHeaderSize + kGcmNonceSize + kDataKeySize], kGcmTagSize),
                          data_key.mutable_bytes())) {
    return errc::wrong_key;
  }
  return data_key;
}

std::error_code last_errno() {
  return {errno, std::generic_category()};
}

Result<void> write_all(int fd, const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return last_errno();
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return ok();
}

Result<void> sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return last_errno();
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0)
    return last_errno();
  return ok();
}

// Writes `env` to a new temporary file beside `path`, syncs it, and renames it into place.
enum class Install { as_new, replacing };

// As Install::as_new, fails with file_exists rather than replace an existing envelope.
Result<void> install(const std::filesystem::path& path, const Envelope& env, Install how) {
  const bool replace = how == Install::replacing;
  const std::filesystem::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return last_errno();
  auto written = write_all(fd, env.data(), env.size());
  if (written && ::fsync(fd) != 0)
    written = last_errno();
  ::close(fd);
  if (!written) {
    ::unlink(tmp.c_str());
    return written.error();
  }
  // link() refuses to replace, so a concurrent create cannot be overwritten.
  const int rc = replace ? ::rename(tmp.c_str(), path.c_str()) : ::link(tmp.c_str(), path.c_str());
  const std::error_code ec = rc == 0 ? std::error_code{} : last_errno();
  if (!replace || rc != 0)
    ::unlink(tmp.c_str());
  if (ec)
    return ec;
  return sync_directory(path.parent_path());
}

Result<Envelope> read_envelope(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return last_errno();
  Envelope env{};
  std::uint8_t extra = 0;
  const ssize_t n = ::read(fd, env.data(), env.size());
  const ssize_t more = n >= 0 ? ::read(fd, &extra, 1) : 0;
  const int saved = errno;
  ::close(fd);
  if (n < 0 || more < 0)
    return std::error_code{saved, std::generic_category()};
  if (static_cast<std::size_t>(n) != env.size() || more != 0)
    return errc::damaged;
  return env;
}

}  // namespace

Result<SecretKey> KeyEnvelope::create(const std::filesystem::path& path, std::string_view pin,
                                      const ScryptParams& params) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec))
    return std::make_error_code(std::errc::file_exists);
  SecretKey data_key = SecretKey::random(kDataKeySize);
  KABAN_TRY(env, seal_envelope(data_key, pin, params));
  KABAN_TRYV(install(path, env, Install::as_new));
  return data_key;
}

Result<SecretKey> KeyEnvelope::open(const std::filesystem::path& path, std::string_view pin) {
  KABAN_TRY(env, read_envelope(path));
  return unseal_envelope(env, pin);
}

Result<void> KeyEnvelope::change_pin(const std::filesystem::path& path, std::string_view old_pin,
                                     std::string_view new_pin, const ScryptParams& params) {
  KABAN_TRY(old_env, read_envelope(path));
  KABAN_TRY(data_key, unseal_envelope(old_env, old_pin));
  KABAN_TRY(env, seal_envelope(data_key, new_pin, params));
  return install(path, env, Install::replacing);
}

Result<void> KeyEnvelope::destroy(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return ok();
    return last_errno();
  }
  // Overwrite in place before unlinking; on flash the old blocks may survive in the device's
  // spare area, which is why the key inside was random and the PIN-derived key expensive.
  const Bytes noise = random_bytes(kEnvelopeSize);
  auto written = write_all(fd, noise.data(), noise.size());
  if (written && ::fsync(fd) != 0)
    written = last_errno();
  ::close(fd);
  if (::unlink(path.c_str()) != 0)
    return last_errno();
  KABAN_TRYV(sync_directory(path.parent_path()));
  return written;
}

}  // namespace kaban::crypto
