#include <sys/stat.h>

#include <array>
#include <map>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/ed25519.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/error.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using kaban::testing::read_file;
using kaban::testing::TempDir;

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Every file below `dir` with its bytes, to prove a refused call changed nothing.
std::map<std::string, std::vector<std::uint8_t>> snapshot(const fs::path& dir) {
  std::map<std::string, std::vector<std::uint8_t>> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    files[e.path().lexically_relative(dir).string()] =
        e.is_regular_file() ? read_file(e.path()) : std::vector<std::uint8_t>{};
  }
  return files;
}

bool contains(const crypto::Bytes& haystack, crypto::ByteView needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

TEST(DataDir, InitMakesEveryFileWithOwnerOnlyKeys) {
  TempDir tmp;
  const fs::path dir = tmp / "data";
  ASSERT_TRUE(init_data_dir(dir, {}));

  EXPECT_EQ(mode_of(dir), 0700u);
  for (const char* key : {kCaKeyFile, kTlsKeyFile, kSigningKeyFile}) {
    EXPECT_EQ(mode_of(dir / key), 0600u) << key;
    EXPECT_TRUE(kaban::testing::file_contains(dir / key, "BEGIN PRIVATE KEY")) << key;
  }
  EXPECT_EQ(mode_of(dir / kDatabaseFile) & 077, 0u);
  EXPECT_TRUE(kaban::testing::file_contains(dir / kCaCertificateFile, "BEGIN CERTIFICATE"));
  EXPECT_TRUE(fs::is_directory(dir / kChunksDir));
  EXPECT_TRUE(fs::is_regular_file(dir / kDatabaseFile));
}

TEST(DataDir, SecondInitIsRefusedAndChangesNothing) {
  TempDir tmp;
  const fs::path dir = tmp / "data";
  ASSERT_TRUE(init_data_dir(dir, {}));
  const auto before = snapshot(dir);

  auto again = init_data_dir(dir, {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::data_dir_exists);
  EXPECT_EQ(snapshot(dir), before);
}

TEST(DataDir, InitRefusesNonEmptyDirectoryAndTouchesNothing) {
  TempDir tmp;
  const fs::path dir = tmp / "busy";
  fs::create_directory(dir);
  ::chmod(dir.c_str(), 0755);
  kaban::testing::write_file(dir / "notes.txt", {'h', 'i'});

  auto made = init_data_dir(dir, {});
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error(), errc::data_dir_exists);
  EXPECT_EQ(snapshot(dir).size(), 1u);
  EXPECT_EQ(mode_of(dir), 0755u);
}

TEST(DataDir, InitUsesAnExistingEmptyDirectory) {
  TempDir tmp;
  ASSERT_TRUE(init_data_dir(tmp.path(), {}));
  EXPECT_EQ(mode_of(tmp.path()), 0700u);
  EXPECT_TRUE(load_identity(tmp.path()));
}

TEST(DataDir, RefusedOptionLeavesNothingBehind) {
  TempDir tmp;
  const fs::path dir = tmp / "data";
  InitOptions options;
  options.names = {""};  // not a valid server name
  EXPECT_FALSE(init_data_dir(dir, options));
  EXPECT_FALSE(fs::exists(dir));
}

TEST(DataDir, LoadIdentityOfMissingDirectoryIsNoDataDir) {
  TempDir tmp;
  auto identity = load_identity(tmp / "nothing-here");
  ASSERT_FALSE(identity);
  EXPECT_EQ(identity.error(), errc::no_data_dir);
  auto empty = load_identity(tmp.path());
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), errc::no_data_dir);
}

TEST(DataDir, IdentityChainsToItsCaAndCarriesTheNames) {
  TempDir tmp;
  InitOptions options;
  options.names = {"kaban.city.example", "10.1.2.3", "localhost"};
  ASSERT_TRUE(init_data_dir(tmp.path(), options));
  auto loaded = load_identity(tmp.path());
  ASSERT_TRUE(loaded) << loaded.error().message();
  const ServerIdentity& id = loaded.value();

  auto server = crypto::Certificate::from_pem(id.tls_chain_pem);
  ASSERT_TRUE(server);
  const std::array<crypto::Certificate, 1> trusted{id.ca_certificate};
  EXPECT_TRUE(crypto::verify_chain(server.value(), trusted, std::chrono::system_clock::now()));
  EXPECT_EQ(server.value().common_name(), "kaban.city.example");
  EXPECT_EQ(id.ca_certificate.common_name(), "Kaban server CA");
  // subjectAltName: dNSName as IA5 text; iPAddress as [7] with 4 raw bytes.
  const auto& der = server.value().der();
  EXPECT_TRUE(contains(der, crypto::as_bytes("kaban.city.example")));
  EXPECT_TRUE(contains(der, crypto::as_bytes("localhost")));
  const std::uint8_t ip[] = {0x87, 0x04, 10, 1, 2, 3};
  EXPECT_TRUE(contains(der, ip));
  EXPECT_FALSE(contains(der, crypto::as_bytes("10.1.2.3")));

  // The chain file holds the CA after the server certificate.
  EXPECT_NE(id.tls_chain_pem.find(id.ca_pem()), std::string::npos);
  EXPECT_EQ(id.ca_fingerprint, crypto::to_hex(crypto::sha256(id.ca_certificate.der())));
  EXPECT_EQ(id.ca_key.public_key_der(), id.ca_certificate.public_key_der());
  auto tls_key = crypto::EcPrivateKey::from_pem(id.tls_key_pem.bytes());
  ASSERT_TRUE(tls_key);
  EXPECT_EQ(tls_key.value().public_key_der(), server.value().public_key_der());

  // The published signing key is the private key's half.
  const std::string message = "manifest bytes";
  const auto signature = id.signing_key.sign(crypto::as_bytes(message));
  auto raw = crypto::from_hex(id.signing_public_key);
  ASSERT_TRUE(raw);
  auto public_key = crypto::Ed25519PublicKey::from_bytes(raw.value());
  ASSERT_TRUE(public_key);
  EXPECT_TRUE(public_key.value().verify(crypto::as_bytes(message), signature));

  EXPECT_EQ(id.server_epoch.size(), 2 * kServerEpochSize);
  EXPECT_TRUE(crypto::from_hex(id.server_epoch));

  const auto tls = id.tls_identity();
  EXPECT_EQ(tls.certificate_chain_pem, id.tls_chain_pem);
  EXPECT_EQ(tls.client_ca_pem, id.ca_pem());
}

TEST(DataDir, EachServerHasItsOwnEpochAndKeys) {
  TempDir a, b;
  ASSERT_TRUE(init_data_dir(a.path(), {}));
  ASSERT_TRUE(init_data_dir(b.path(), {}));
  auto ia = load_identity(a.path());
  auto ib = load_identity(b.path());
  ASSERT_TRUE(ia && ib);
  EXPECT_NE(ia.value().server_epoch, ib.value().server_epoch);
  EXPECT_NE(ia.value().ca_fingerprint, ib.value().ca_fingerprint);
  EXPECT_NE(ia.value().signing_public_key, ib.value().signing_public_key);
  // Loading twice gives the same identity.
  auto again = load_identity(a.path());
  ASSERT_TRUE(again);
  EXPECT_EQ(again.value().server_epoch, ia.value().server_epoch);
  EXPECT_EQ(again.value().signing_public_key, ia.value().signing_public_key);
}

TEST(DataDir, DamagedKeyIsReported) {
  TempDir tmp;
  ASSERT_TRUE(init_data_dir(tmp.path(), {}));
  kaban::testing::write_file(tmp / kSigningKeyFile, {'x'});
  auto identity = load_identity(tmp.path());
  ASSERT_FALSE(identity);
  EXPECT_EQ(identity.error(), errc::data_dir_damaged);
}

TEST(Database, OpensInWalModeWithForeignKeys) {
  TempDir tmp;
  ASSERT_TRUE(init_data_dir(tmp.path(), {}));
  auto db = open_database(tmp.path());
  ASSERT_TRUE(db);
  EXPECT_EQ(db.value()->execAndGet("PRAGMA journal_mode").getString(), "wal");
  EXPECT_EQ(db.value()->execAndGet("PRAGMA foreign_keys").getInt(), 1);
  EXPECT_EQ(db.value()->execAndGet("PRAGMA user_version").getInt(),
            server_migrations().back().version);
  EXPECT_EQ(db.value()->execAndGet("SELECT count(*) FROM server_meta").getInt(), 1);

  auto missing = open_database(tmp / "elsewhere");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), errc::no_data_dir);
}

}  // namespace
}  // namespace kaban::server
