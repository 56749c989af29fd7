#include "kaban/server/data_dir.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include "chunk_store.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace fs = std::filesystem;
namespace {

using detail::sync_directory;
using detail::write_new_file;

// Keys and certificates are a few KiB; anything larger is not one of ours.
constexpr std::uintmax_t kMaxIdentityFileSize = 64 * 1024;
constexpr mode_t kDirMode = 0700;
constexpr mode_t kKeyMode = 0600;
constexpr mode_t kPublicMode = 0644;

std::error_code last_os_error() {
  return {errno, std::generic_category()};
}

bool is_ip_address(const std::string& name) {
  unsigned char buffer[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, name.c_str(), buffer) == 1 ||
         ::inet_pton(AF_INET6, name.c_str(), buffer) == 1;
}

// Everything init writes, made in memory first so a refused name or validity leaves no trace.
struct Material {
  crypto::Certificate ca;
  crypto::SecretKey ca_key_pem;
  crypto::Certificate server;
  crypto::SecretKey server_key_pem;
  crypto::SecretKey signing_key_pem;
};

Result<Material> make_material(const InitOptions& options) {
  if (options.names.empty())
    return std::make_error_code(std::errc::invalid_argument);
  auto ca_key = crypto::EcPrivateKey::generate();
  KABAN_TRY(ca, crypto::make_self_signed_ca(ca_key, options.ca_name, options.ca_validity));
  auto server_key = crypto::EcPrivateKey::generate();
  KABAN_TRY(csr, crypto::CertificateRequest::create(server_key, options.names.front()));
  crypto::IssueOptions issue;
  issue.validity = options.server_certificate_validity;
  issue.purpose = crypto::CertificatePurpose::server;
  for (const auto& name : options.names)
    (is_ip_address(name) ? issue.ip_addresses : issue.dns_names).push_back(name);
  KABAN_TRY(server, crypto::issue_certificate(ca, ca_key, csr, issue));
  const auto signing_key = crypto::Ed25519PrivateKey::generate();
  return Material{ca, ca_key.to_pem(), server, server_key.to_pem(), signing_key.to_pem()};
}

Result<void> write_data_dir(const fs::path& dir, const Material& m) {
  const std::string ca_pem = m.ca.to_pem();
  const std::string chain_pem = m.server.to_pem() + ca_pem;
  KABAN_TRYV(write_new_file(dir / kCaCertificateFile, crypto::as_bytes(ca_pem), kPublicMode));
  KABAN_TRYV(write_new_file(dir / kCaKeyFile, m.ca_key_pem.bytes(), kKeyMode));
  KABAN_TRYV(write_new_file(dir / kTlsChainFile, crypto::as_bytes(chain_pem), kPublicMode));
  KABAN_TRYV(write_new_file(dir / kTlsKeyFile, m.server_key_pem.bytes(), kKeyMode));
  KABAN_TRYV(write_new_file(dir / kSigningKeyFile, m.signing_key_pem.bytes(), kKeyMode));
  if (::mkdir((dir / kChunksDir).c_str(), kDirMode) != 0)
    return last_os_error();

  KABAN_TRY(db, create_database(dir));
  try {
    SQLite::Statement insert(*db, "INSERT INTO server_meta(key, value) VALUES (?, ?)");
    insert.bind(1, kServerEpochKey);
    insert.bind(2, crypto::to_hex(crypto::random_bytes(kServerEpochSize)));
    insert.exec();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  db.reset();
  return sync_directory(dir);
}

// The directory was empty or absent before init, so everything in it is init's own.
void remove_contents(const fs::path& dir, bool remove_dir) {
  std::error_code ec;
  if (remove_dir) {
    fs::remove_all(dir, ec);
    return;
  }
  for (const auto& entry : fs::directory_iterator(dir, ec))
    fs::remove_all(entry.path(), ec);
}

Result<std::string> read_small_file(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec || size > kMaxIdentityFileSize)
    return errc::data_dir_damaged;
  std::ifstream in(path, std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in.good() && !in.eof())
    return errc::data_dir_damaged;
  return text;
}

// Key text is wiped as soon as it is parsed or copied into a SecretKey.
Result<crypto::SecretKey> read_key_file(const fs::path& path) {
  KABAN_TRY(text, read_small_file(path));
  auto key = crypto::SecretKey::from_bytes(crypto::as_bytes(text));
  crypto::secure_wipe(text);
  return key;
}

Result<std::string> read_epoch(const fs::path& dir) {
  KABAN_TRY(db, open_database(dir));
  try {
    SQLite::Statement query(*db, "SELECT value FROM server_meta WHERE key = ?");
    query.bind(1, kServerEpochKey);
    if (!query.executeStep())
      return errc::data_dir_damaged;
    return query.getColumn(0).getString();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace

Result<void> init_data_dir(const fs::path& dir, const InitOptions& options) {
  std::error_code ec;
  const bool existed = fs::exists(fs::symlink_status(dir, ec));
  if (existed && (!fs::is_directory(dir, ec) || !fs::is_empty(dir, ec) || ec))
    return errc::data_dir_exists;
  // Make every key before touching the disk: a refused option leaves nothing behind.
  KABAN_TRY(material, make_material(options));
  if (!existed) {
    if (dir.has_parent_path()) {
      fs::create_directories(dir.parent_path(), ec);
      if (ec)
        return ec;
    }
    if (::mkdir(dir.c_str(), kDirMode) != 0)
      return errno == EEXIST ? std::error_code(errc::data_dir_exists) : last_os_error();
  }
  if (::chmod(dir.c_str(), kDirMode) != 0)
    return last_os_error();
  if (auto written = write_data_dir(dir, material); !written) {
    remove_contents(dir, !existed);
    return written.error();
  }
  return ok();
}

std::string ServerIdentity::ca_pem() const {
  return ca_certificate.to_pem();
}

crypto::TlsServerIdentity ServerIdentity::tls_identity() const {
  return {tls_chain_pem, crypto::SecretKey::from_bytes(tls_key_pem.bytes()), ca_pem()};
}

Result<ServerIdentity> load_identity(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || !fs::exists(dir / kDatabaseFile, ec))
    return errc::no_data_dir;

  KABAN_TRY(ca_text, read_small_file(dir / kCaCertificateFile));
  auto ca = crypto::Certificate::from_pem(ca_text);
  if (!ca)
    return errc::data_dir_damaged;
  KABAN_TRY(ca_key_pem, read_key_file(dir / kCaKeyFile));
  auto ca_key = crypto::EcPrivateKey::from_pem(ca_key_pem.bytes());
  if (!ca_key || ca_key.value().public_key_der() != ca.value().public_key_der())
    return errc::data_dir_damaged;
  KABAN_TRY(chain, read_small_file(dir / kTlsChainFile));
  if (!crypto::Certificate::from_pem(chain))
    return errc::data_dir_damaged;
  KABAN_TRY(tls_key, read_key_file(dir / kTlsKeyFile));
  KABAN_TRY(signing_pem, read_key_file(dir / kSigningKeyFile));
  auto signing = crypto::Ed25519PrivateKey::from_pem(signing_pem.bytes());
  if (!signing)
    return errc::data_dir_damaged;
  KABAN_TRY(epoch, read_epoch(dir));

  const auto public_key = signing.value().public_key();
  const auto fingerprint = ca.value().fingerprint();
  return ServerIdentity{
      std::move(ca).value(), std::move(ca_key).value(),   std::move(chain),
      std::move(tls_key),    std::move(signing).value(),  crypto::to_hex(public_key.bytes()),
      std::move(epoch),      crypto::to_hex(fingerprint),
  };
}

}  // namespace kaban::server
