// The encrypted VFS through SQLite's own API: confidentiality on disk, tamper detection,
// wrong keys, refused temp files, and rollback through an encrypted journal.
#include "kaban/crypto/vfs.hpp"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "kaban/crypto/error.hpp"
#include "test_support.hpp"

namespace kaban::crypto {
namespace {

using kaban::testing::TempDir;
constexpr std::size_t kPage = kStorePageSize;

// A connection that fails the test on unexpected errors.
class Db {
 public:
  Db(const std::filesystem::path& path, const SecretKey& key) {
    rc_ = sqlite3_open_v2(store_uri(path, key).c_str(), &db_,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr);
  }
  ~Db() { sqlite3_close(db_); }
  int open_rc() const { return rc_; }
  sqlite3* get() const { return db_; }

  // Runs `sql`; returns the extended result code.
  int exec(const std::string& sql) {
    sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    return sqlite3_extended_errcode(db_);
  }
  void must(const std::string& sql) {
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << sql << ": " << (err ? err : "") << " / " << vfs_last_error();
  }
  // First column of the first row as text, or the error message.
  std::string text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return std::string("error: ") + sqlite3_errmsg(db_);
    }
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const auto* t = sqlite3_column_text(st, 0);
      out = t ? reinterpret_cast<const char*>(t) : "";
    } else if (rc != SQLITE_DONE) {
      out = std::string("error: ") + sqlite3_errmsg(db_);
    }
    sqlite3_finalize(st);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

class VfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(register_vfs());
    clear_vfs_error();
  }

  // A store with enough rows for several pages of table and index.
  void fill(const std::filesystem::path& path, const std::string& marker, int rows = 400) {
    Db db(path, key_);
    ASSERT_EQ(db.open_rc(), SQLITE_OK) << vfs_last_error();
    db.must("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
    db.must("CREATE INDEX notes_body ON notes(body)");
    db.must("BEGIN");
    for (int i = 0; i < rows; ++i) {
      db.must("INSERT INTO notes(body) VALUES ('" + marker + "-" + std::to_string(i) + "-" +
              std::string(100, 'x') + "')");
    }
    db.must("COMMIT");
  }

  // Reads every page of the table and of its index.
  static constexpr const char* kReadAll =
      "SELECT (SELECT sum(length(body)) FROM notes NOT INDEXED) + "
      "(SELECT count(*) FROM notes INDEXED BY notes_body WHERE body > '')";

  SecretKey key_ = SecretKey::random(kDataKeySize);
  TempDir dir_;
  std::filesystem::path db_path_ = dir_ / "store.db";
};

TEST_F(VfsTest, RoundTripsAcrossConnections) {
  fill(db_path_, "row");
  Db db(db_path_, key_);
  ASSERT_EQ(db.open_rc(), SQLITE_OK);
  EXPECT_EQ(db.text("SELECT count(*) FROM notes"), "400");
  EXPECT_EQ(db.text("SELECT body FROM notes WHERE id = 7").substr(0, 6), "row-6-");
  EXPECT_EQ(db.text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(db.text("PRAGMA page_size"), "4096");
  EXPECT_EQ(std::filesystem::file_size(db_path_) % kPage, 0u);
}

TEST_F(VfsTest, NothingReadableOnDisk) {
  const std::string canary = kaban::testing::random_marker("CANARY");
  const std::string table = kaban::testing::random_marker("tbl");
  fill(db_path_, canary);
  {
    Db db(db_path_, key_);
    db.must("CREATE TABLE " + table + "(v TEXT)");
    db.must("INSERT INTO " + table + " VALUES ('" + canary + "')");
  }
  for (const auto& needle : {canary, table, std::string("SQLite format 3"),
                             std::string("CREATE TABLE"), std::string("notes_body")}) {
    EXPECT_TRUE(kaban::testing::files_containing(dir_.path(), needle).empty()) << needle;
  }
}

TEST_F(VfsTest, FlippedBitNamesThePage) {
  fill(db_path_, "row");
  const std::size_t pages = std::filesystem::file_size(db_path_) / kPage;
  ASSERT_GE(pages, 5u);
  for (std::size_t page : {std::size_t{3}, pages}) {
    for (std::size_t at : {std::size_t{0}, kPage / 2, kPage - 1}) {  // data, nonce/tag region
      TempDir copy;
      std::filesystem::copy_file(db_path_, copy / "store.db");
      kaban::testing::flip_bit(copy / "store.db", (page - 1) * kPage + at, 3);
      Db db(copy / "store.db", key_);
      ASSERT_EQ(db.open_rc(), SQLITE_OK) << "only page 1 is checked at open";
      clear_vfs_error();
      const std::string result = db.text(kReadAll);
      EXPECT_EQ(result.rfind("error:", 0), 0u) << "page " << page << " @" << at << ": " << result;
      EXPECT_EQ(sqlite3_extended_errcode(db.get()), SQLITE_IOERR_DATA);
      EXPECT_EQ(vfs_last_error_code(), errc::damaged);
      EXPECT_NE(vfs_last_error().find("page " + std::to_string(page) + " "), std::string::npos)
          << vfs_last_error();
    }
  }
}

TEST_F(VfsTest, DamagedFirstPageIsDamageNotWrongKey) {
  fill(db_path_, "row");
  kaban::testing::flip_bit(db_path_, 200);
  Db db(db_path_, key_);
  EXPECT_EQ(sqlite3_extended_errcode(db.get()), SQLITE_IOERR_DATA);
  EXPECT_EQ(vfs_last_error_code(), errc::damaged);
  EXPECT_NE(vfs_last_error().find("page 1 "), std::string::npos) << vfs_last_error();
}

TEST_F(VfsTest, SwappedPagesAreDetected) {
  fill(db_path_, "row");
  auto bytes = kaban::testing::read_file(db_path_);
  ASSERT_GE(bytes.size(), 5 * kPage);
  std::swap_ranges(bytes.begin() + 2 * kPage, bytes.begin() + 3 * kPage, bytes.begin() + 3 * kPage);
  kaban::testing::write_file(db_path_, bytes);
  Db db(db_path_, key_);
  ASSERT_EQ(db.open_rc(), SQLITE_OK);
  EXPECT_EQ(db.text(kReadAll).rfind("error:", 0), 0u);
  EXPECT_EQ(vfs_last_error_code(), errc::damaged);
}

TEST_F(VfsTest, PageCopiedFromAnotherStoreIsDetected) {
  // Same key, same schema, same page number: only the file salt differs.
  fill(db_path_, "row");
  const auto other = dir_ / "other.db";
  fill(other, "row");
  auto mine = kaban::testing::read_file(db_path_);
  const auto theirs = kaban::testing::read_file(other);
  ASSERT_EQ(mine.size(), theirs.size());
  std::copy(theirs.begin() + 3 * kPage, theirs.begin() + 4 * kPage, mine.begin() + 3 * kPage);
  kaban::testing::write_file(db_path_, mine);
  Db db(db_path_, key_);
  EXPECT_EQ(db.text(kReadAll).rfind("error:", 0), 0u);
  EXPECT_NE(vfs_last_error().find("page 4 "), std::string::npos) << vfs_last_error();
}

TEST_F(VfsTest, WrongKeyFailsAtOpen) {
  fill(db_path_, "row");
  const SecretKey other = SecretKey::random(kDataKeySize);
  Db db(db_path_, other);
  EXPECT_EQ(db.open_rc(), SQLITE_NOTADB);
  EXPECT_EQ(vfs_last_error_code(), errc::wrong_key);
  EXPECT_NE(vfs_last_error().find("wrong PIN or key"), std::string::npos);
}

TEST_F(VfsTest, MissingKeyIsRefused) {
  sqlite3* db = nullptr;
  const std::string uri = "file:" + db_path_.string() + "?vfs=kaban";
  EXPECT_EQ(sqlite3_open_v2(uri.c_str(), &db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr),
            SQLITE_CANTOPEN);
  sqlite3_close(db);
  EXPECT_NE(vfs_last_error().find("hexkey"), std::string::npos);
}

TEST_F(VfsTest, TruncatedFileIsReported) {
  fill(db_path_, "row");
  std::filesystem::resize_file(db_path_, std::filesystem::file_size(db_path_) - 100);
  Db db(db_path_, key_);
  EXPECT_NE(db.open_rc(), SQLITE_OK);
  EXPECT_NE(vfs_last_error().find("truncated"), std::string::npos) << vfs_last_error();
}

TEST_F(VfsTest, TempFilesOnDiskAreRefused) {
  fill(db_path_, "row");
  Db db(db_path_, key_);
  db.must("PRAGMA temp_store=FILE");
  db.must("CREATE TEMP TABLE scratch(x)");
  db.must("PRAGMA temp.cache_size=2");  // the temp database must spill to a file
  EXPECT_NE(db.exec("INSERT INTO scratch SELECT body FROM notes"), SQLITE_OK);
  EXPECT_NE(vfs_last_error().find("temp_store=MEMORY"), std::string::npos) << vfs_last_error();
}

TEST_F(VfsTest, ConnectionsGetTheSafeSettings) {
  fill(db_path_, "row");
  Db db(db_path_, key_);
  EXPECT_EQ(db.text("PRAGMA temp_store"), "2");
  EXPECT_EQ(db.text("PRAGMA secure_delete"), "1");
  EXPECT_EQ(db.text("PRAGMA journal_mode=WAL"), "delete");
  // Temp tables then live in memory and work.
  db.must("CREATE TEMP TABLE scratch(x)");
  db.must("INSERT INTO scratch SELECT body FROM notes");
  EXPECT_EQ(db.text("SELECT count(*) FROM scratch"), "400");
}

TEST_F(VfsTest, RollbackThroughTheEncryptedJournal) {
  fill(db_path_, "row");
  Db db(db_path_, key_);
  db.must("PRAGMA cache_size=5");  // spill: pages reach the file before the rollback
  db.must("BEGIN");
  db.must("UPDATE notes SET body = 'changed' || id");
  db.must("DELETE FROM notes WHERE id > 100");
  ASSERT_TRUE(std::filesystem::exists(dir_ / "store.db-journal"));
  EXPECT_TRUE(kaban::testing::files_containing(dir_.path(), "changed").empty());
  EXPECT_TRUE(kaban::testing::files_containing(dir_.path(), "row-").empty());
  db.must("ROLLBACK");
  EXPECT_EQ(db.text("SELECT count(*) FROM notes WHERE body LIKE 'row-%'"), "400");
  EXPECT_EQ(db.text("PRAGMA integrity_check"), "ok");
}

// Scans are served by the read-ahead worker; what it fetched must never outlive the shared lock
// it was fetched under, nor survive this connection's own writes.
TEST_F(VfsTest, ScansSeeEveryCommittedChange) {
  fill(db_path_, "row", 3000);
  Db reader(db_path_, key_);
  Db writer(db_path_, key_);
  const std::string scan = "SELECT sum(length(body)) FROM notes NOT INDEXED";
  long expected = std::stol(reader.text(scan));
  for (int round = 0; round < 20; ++round) {
    writer.must("UPDATE notes SET body = body || 'y'");
    expected += 3000;
    ASSERT_EQ(std::stol(reader.text(scan)), expected) << "stale pages after round " << round;
    // The same connection writing between two scans of one transaction.
    reader.must("BEGIN");
    ASSERT_EQ(std::stol(reader.text(scan)), expected);
    reader.must("UPDATE notes SET body = body || 'z' WHERE id % 2 = 0");
    expected += 1500;
    ASSERT_EQ(std::stol(reader.text(scan)), expected) << "own write not seen in round " << round;
    reader.must("COMMIT");
  }
  EXPECT_EQ(reader.text("PRAGMA integrity_check"), "ok");
}

// Pages fetched ahead but never read must not outlive the shared lock they were fetched under:
// a partial scan leaves such pages, another connection rewrites them in place (same lengths, so
// the same pages), and a range scan then starts among them.
TEST_F(VfsTest, PagesFetchedAheadDieWithTheLock) {
  fill(db_path_, "row", 3000);
  Db reader(db_path_, key_);
  Db writer(db_path_, key_);
  for (int round = 0; round < 6; ++round) {
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(
        sqlite3_prepare_v2(reader.get(), "SELECT body FROM notes NOT INDEXED", -1, &st, nullptr),
        SQLITE_OK);
    for (int row = 0; row < 1200; ++row)
      ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // let the worker fetch ahead
    sqlite3_finalize(st);
    const std::string shout = round % 2 == 0 ? "upper" : "lower";
    writer.must("UPDATE notes SET body = " + shout + "(body) WHERE id > 1100");
    EXPECT_EQ(
        reader.text("SELECT count(*) FROM notes WHERE id > 1250 AND body = " + shout + "(body)"),
        "1750")
        << "stale pages served in round " << round;
  }
}

// A writer killed in the middle of a large transaction leaves a hot journal; the next open must
// roll it back through the VFS. With a page image in that journal altered, it must refuse.
class HotJournalTest : public VfsTest {
 protected:
  // Forks a writer that stops (SIGSTOP) inside an uncommitted, spilled transaction, copies the
  // files at that moment, and kills it. Returns the copied directory's store path.
  std::filesystem::path crash_mid_transaction(const TempDir& into) {
    int ready[2];
    EXPECT_EQ(::pipe(ready), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      Db db(db_path_, key_);
      db.exec("PRAGMA cache_size=5");
      db.exec("BEGIN");
      db.exec("UPDATE notes SET body = 'half-done' || id");
      const char c = 'x';
      (void)!::write(ready[1], &c, 1);
      ::raise(SIGSTOP);
      ::_exit(0);
    }
    char c;
    EXPECT_EQ(::read(ready[0], &c, 1), 1);
    int status = 0;
    ::waitpid(pid, &status, WUNTRACED);
    for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
      std::filesystem::copy_file(e.path(), into / e.path().filename().string());
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ::close(ready[0]);
    ::close(ready[1]);
    return into / "store.db";
  }
};

TEST_F(HotJournalTest, RecoversAndLeavesNothingReadable) {
  const std::string canary = kaban::testing::random_marker("CANARY");
  fill(db_path_, canary);
  TempDir crashed;
  const auto path = crash_mid_transaction(crashed);
  ASSERT_TRUE(std::filesystem::exists(crashed / "store.db-journal"));
  for (const auto& needle : {canary, std::string("half-done"), std::string("SQLite format 3")}) {
    EXPECT_TRUE(kaban::testing::files_containing(crashed.path(), needle).empty()) << needle;
  }
  Db db(path, key_);
  ASSERT_EQ(db.open_rc(), SQLITE_OK);
  EXPECT_EQ(db.text("SELECT count(*) FROM notes WHERE body LIKE 'CANARY%'"), "400");
  EXPECT_EQ(db.text("PRAGMA integrity_check"), "ok");
}

TEST_F(HotJournalTest, AlteredJournalPageIsRefused) {
  fill(db_path_, "row");
  TempDir crashed;
  const auto path = crash_mid_transaction(crashed);
  const auto journal = crashed / "store.db-journal";
  // The first record starts after the 512-byte header: 4-byte page number, then the page image.
  ASSERT_GT(std::filesystem::file_size(journal), 512u + 4 + kPage);
  kaban::testing::flip_bit(journal, 512 + 4 + 1000);
  Db db(path, key_);
  const std::string result =
      db.open_rc() == SQLITE_OK ? db.text("SELECT count(*) FROM notes") : "error: open";
  EXPECT_EQ(result.rfind("error:", 0), 0u) << result;
  EXPECT_EQ(vfs_last_error_code(), errc::damaged);
  EXPECT_NE(vfs_last_error().find("journal"), std::string::npos) << vfs_last_error();
}

}  // namespace
}  // namespace kaban::crypto
