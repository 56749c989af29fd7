#include "kaban/agent/store.hpp"

#include <sys/stat.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <gtest/gtest.h>

#include "kaban/agent/error.hpp"
#include "kaban/agent/migrations.hpp"
#include "kaban/crypto/error.hpp"
#include "test_support.hpp"

namespace kaban::agent {
namespace {

constexpr crypto::ScryptParams kFast{1u << 10, 8, 1};

class StoreTest : public ::testing::Test {
 protected:
  Store create() {
    auto store = Store::create(dir_, "1234-5678", kFast);
    EXPECT_TRUE(store) << store.error().message();
    return std::move(store).value();
  }

  kaban::testing::TempDir tmp_;
  std::filesystem::path dir_ = tmp_ / "device";
};

TEST_F(StoreTest, CreatesAtTheLatestSchemaAndReopens) {
  {
    Store store = create();
    EXPECT_EQ(store.db().execAndGet("PRAGMA user_version").getInt(),
              store_migrations().back().version);
    store.db().exec("INSERT INTO meta(key, value) VALUES ('device', 'd-1')");
  }
  struct stat st {};
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (std::string_view file : {Store::kDatabaseFile, Store::kEnvelopeFile}) {
    ASSERT_EQ(::stat((dir_ / file).c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file << " is readable by others";
  }
  auto again = Store::open(dir_, "1234-5678");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again.value().db().execAndGet("SELECT value FROM meta WHERE key='device'").getString(),
            "d-1");
}

TEST_F(StoreTest, RefusesToCreateOverAStore) {
  create();
  auto r = Store::create(dir_, "9999-0000", kFast);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::store_exists);
  EXPECT_TRUE(Store::open(dir_, "1234-5678")) << "the first store is untouched";
}

TEST_F(StoreTest, WrongPinAndMissingStoreAreTold) {
  create();
  auto wrong = Store::open(dir_, "1234-5679");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), crypto::errc::wrong_key);
  EXPECT_EQ(wrong.error().message(), "wrong PIN or key");
  EXPECT_EQ(Store::open(tmp_ / "elsewhere", "1234-5678").error(), errc::no_store);
}

TEST_F(StoreTest, ChangePinRewrapsOnly) {
  { create().db().exec("INSERT INTO meta(key, value) VALUES ('k', 'v')"); }
  const auto before = kaban::testing::read_file(dir_ / Store::kDatabaseFile);
  EXPECT_EQ(Store::change_pin(dir_, "0000-0000", "8765-4321", kFast).error(),
            crypto::errc::wrong_key);
  ASSERT_TRUE(Store::change_pin(dir_, "1234-5678", "8765-4321", kFast));
  EXPECT_EQ(kaban::testing::read_file(dir_ / Store::kDatabaseFile), before)
      << "a PIN change must not rewrite the database";
  EXPECT_EQ(Store::open(dir_, "1234-5678").error(), crypto::errc::wrong_key);
  auto store = Store::open(dir_, "8765-4321");
  ASSERT_TRUE(store);
  EXPECT_EQ(store.value().db().execAndGet("SELECT value FROM meta").getString(), "v");
}

TEST_F(StoreTest, WipeShredsTheEnvelopeAndRemovesTheFiles) {
  { create().db().exec("INSERT INTO meta(key, value) VALUES ('k', 'v')"); }
  ASSERT_TRUE(Store::exists(dir_));
  ASSERT_TRUE(Store::wipe(dir_));
  EXPECT_FALSE(Store::exists(dir_));
  EXPECT_FALSE(std::filesystem::exists(dir_ / Store::kEnvelopeFile));
  EXPECT_FALSE(std::filesystem::exists(dir_ / Store::kDatabaseFile));
  EXPECT_EQ(Store::open(dir_, "1234-5678").error(), errc::no_store);
  EXPECT_TRUE(Store::wipe(dir_)) << "wiping nothing succeeds";
}

TEST_F(StoreTest, WithoutTheEnvelopeTheDatabaseStaysClosed) {
  { create().db().exec("INSERT INTO meta(key, value) VALUES ('k', 'v')"); }
  std::filesystem::remove(dir_ / Store::kEnvelopeFile);
  EXPECT_EQ(Store::open(dir_, "1234-5678").error(), errc::no_store);
}

TEST_F(StoreTest, DamageIsDescribedWithThePage) {
  {
    Store store = create();
    store.db().exec("CREATE TABLE t(x)");
    for (int i = 0; i < 50; ++i) {
      store.db().exec("INSERT INTO t VALUES (randomblob(1000))");
    }
  }
  const auto db_file = dir_ / Store::kDatabaseFile;
  const auto size = std::filesystem::file_size(db_file);
  kaban::testing::flip_bit(db_file, size - 3000);  // inside the last page
  auto store = Store::open(dir_, "1234-5678");
  ASSERT_TRUE(store) << store.error().message();
  try {
    store.value().db().execAndGet("SELECT sum(length(x)) FROM t");
    FAIL() << "a damaged page was read without error";
  } catch (const std::exception& e) {
    EXPECT_EQ(store_error_code(e), crypto::errc::damaged);
    const std::string text = describe_store_error(e);
    EXPECT_NE(text.find("page " + std::to_string(size / 4096) + " "), std::string::npos) << text;
    EXPECT_NE(text.find("sync again"), std::string::npos) << text;
  }
}

TEST_F(StoreTest, DiskSizeCountsTheStoresFilesAndGrowsWithContent) {
  EXPECT_EQ(Store::disk_size(dir_), 0u) << "no store, nothing on disk";
  std::uint64_t empty = 0;
  {
    Store store = create();
    empty = Store::disk_size(dir_);
    EXPECT_EQ(empty, std::filesystem::file_size(dir_ / Store::kDatabaseFile) +
                         std::filesystem::file_size(dir_ / Store::kEnvelopeFile));
    store.db().exec("CREATE TABLE t(x)");
    for (int i = 0; i < 20; ++i)
      store.db().exec("INSERT INTO t VALUES (randomblob(10000))");
  }
  EXPECT_GE(Store::disk_size(dir_), empty + 20 * 10000);
  ASSERT_TRUE(Store::wipe(dir_));
  EXPECT_EQ(Store::disk_size(dir_), 0u);
}

}  // namespace
}  // namespace kaban::agent
