#include "kaban/schema/migrations.hpp"

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/agent/migrations.hpp"

namespace kaban::schema {
namespace {

constexpr Migration kTwo[] = {
    {1, "CREATE TABLE a(x); INSERT INTO a VALUES (1);"},
    {2, "CREATE TABLE b(y);"},
};

int version(SQLite::Database& db) {
  return db.execAndGet("PRAGMA user_version").getInt();
}

TEST(Migrations, AppliesInOrderOnceEach) {
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  ASSERT_TRUE(apply_migrations(db, std::span(kTwo).first(1)));
  EXPECT_EQ(version(db), 1);
  ASSERT_TRUE(apply_migrations(db, kTwo));
  EXPECT_EQ(version(db), 2);
  ASSERT_TRUE(apply_migrations(db, kTwo)) << "re-running is a no-op";
  EXPECT_EQ(db.execAndGet("SELECT count(*) FROM a").getInt(), 1);
  EXPECT_TRUE(db.tableExists("b"));
}

TEST(Migrations, FailedStepIsRolledBack) {
  constexpr Migration kBroken[] = {
      {1, "CREATE TABLE a(x);"},
      {2, "CREATE TABLE c(z); INSERT INTO no_such_table VALUES (1);"},
  };
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  auto r = apply_migrations(db, kBroken);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::migration_failed);
  EXPECT_EQ(version(db), 1);
  EXPECT_FALSE(db.tableExists("c")) << "the failed step left a table behind";
}

TEST(Migrations, NewerDatabaseIsRefused) {
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  db.exec("PRAGMA user_version = 9");
  auto r = apply_migrations(db, kTwo);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::newer_schema);
  EXPECT_FALSE(db.tableExists("a"));
}

TEST(Migrations, StoreSchemaIsNumberedFromOne) {
  int expected = 1;
  for (const Migration& m : agent::store_migrations())
    EXPECT_EQ(m.version, expected++);
}

}  // namespace
}  // namespace kaban::schema
