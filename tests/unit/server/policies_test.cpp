// Groups, device policies, course assignment and the audit log on the server, and the admin
// commands over them.
#include "kaban/server/policies.hpp"

#include <cstdlib>
#include <sstream>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/policy.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/course_folder.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/messaging.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using kaban::testing::TempDir;
using kaban::testing::write_text;
using nlohmann::json;

const UnixTime kNow{std::chrono::seconds{1'800'000'000}};
constexpr const char* kLessonText = "Wash your hands for twenty seconds.";

protocol::PolicyFile policy_file(std::string_view text) {
  std::string why;
  auto file = protocol::parse_policy_file(text, &why);
  EXPECT_TRUE(file) << why;
  return file ? file.value() : protocol::PolicyFile{};
}

// A data directory with three users (alice, bob, carol) and two groups (nurses, night).
class ServerData : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(init_data_dir(data_.path(), {}));
    auto db = open_database(data_.path());
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    Directory directory(*db_);
    for (const char* login : {"alice", "bob", "carol"})
      ASSERT_TRUE(directory.add_user(login, std::string("Person ") + login, kNow));
    std::string why;
    ASSERT_TRUE(messaging().add_channel("nurses", "Nurses", kNow, why)) << why;
    ASSERT_TRUE(messaging().add_channel("night", "Night shift", kNow, why)) << why;
  }

  Messaging messaging() { return Messaging(*db_); }
  Policies policies() { return Policies(*db_); }

  void add_members(const char* group, std::vector<std::string> logins) {
    std::string why;
    ASSERT_TRUE(messaging().add_members(group, logins, kNow, why)) << why;
  }
  void remove_members(const char* group, std::vector<std::string> logins) {
    std::string why;
    ASSERT_TRUE(messaging().remove_members(group, logins, kNow, why)) << why;
  }

  std::int64_t version() { return policies().version().value(); }
  int count(const char* table) {
    return db_->execAndGet(std::string("SELECT count(*) FROM ") + table).getInt();
  }

  std::vector<AuditEntry> audit() { return AuditLog(*db_).since(UnixTime{}, 1000).value(); }
  std::vector<std::string> audit_events() {
    std::vector<std::string> events;
    for (const AuditEntry& e : audit())
      events.push_back(e.event);
    return events;
  }

  TempDir data_;
  std::unique_ptr<SQLite::Database> db_;
};

// ---- The audit log ----

class AuditTest : public ServerData {};

TEST_F(AuditTest, EntriesAreKeptInOrderAndReadSinceATime) {
  AuditLog log(*db_);
  ASSERT_TRUE(log.record("admin:it", "user_added", "alice", R"({"name": "Alice"})", kNow));
  ASSERT_TRUE(log.record("server", "device_enrolled", "abcd", "{}", kNow + std::chrono::hours(1)));
  ASSERT_TRUE(log.record("admin:it", "group_added", "nurses", "{}", kNow + std::chrono::hours(2)));

  auto all = log.since(UnixTime{}, 10);
  ASSERT_TRUE(all);
  ASSERT_EQ(all.value().size(), 3u);
  EXPECT_EQ(all.value()[0].event, "user_added");
  EXPECT_EQ(all.value()[0].actor, "admin:it");
  EXPECT_EQ(all.value()[0].subject, "alice");
  EXPECT_EQ(all.value()[0].details, R"({"name":"Alice"})") << "details are stored compact";
  EXPECT_EQ(all.value()[0].at, kNow);
  EXPECT_LT(all.value()[0].seq, all.value()[1].seq);

  auto later = log.since(kNow + std::chrono::hours(1), 10);
  ASSERT_TRUE(later);
  ASSERT_EQ(later.value().size(), 2u);
  EXPECT_EQ(later.value()[0].event, "device_enrolled");
  EXPECT_EQ(log.since(kNow, 1).value().size(), 1u);
  EXPECT_TRUE(log.since(kNow + std::chrono::hours(3), 10).value().empty());
}

TEST_F(AuditTest, TheLogRefusesUpdateAndDelete) {
  AuditLog log(*db_);
  ASSERT_TRUE(log.record("admin:it", "policy_set", "default", R"({"version":2})", kNow));
  EXPECT_THROW(db_->exec("UPDATE audit_log SET event = 'nothing_happened'"), SQLite::Exception);
  EXPECT_THROW(db_->exec("DELETE FROM audit_log"), SQLite::Exception);
  const auto entries = log.since(UnixTime{}, 10).value();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].event, "policy_set");
}

TEST_F(AuditTest, DetailsThatAreNotAJsonObjectAreABugAndStoreNothing) {
  AuditLog log(*db_);
  EXPECT_THROW((void)log.record("admin:it", "user_added", "alice", "[1,2]", kNow),
               std::invalid_argument);
  EXPECT_THROW((void)log.record("admin:it", "user_added", "alice", "not json", kNow),
               std::invalid_argument);
  EXPECT_EQ(count("audit_log"), 0);
}

TEST_F(AuditTest, TheAdminActorIsWhoRanSudoElseTheUser) {
  const char* saved = std::getenv("SUDO_USER");
  const std::string restore = saved ? saved : "";
  ::setenv("SUDO_USER", "maria", 1);
  EXPECT_EQ(admin_actor(), "admin:maria");
  // A name that could forge or garble an entry is not taken.
  ::setenv("SUDO_USER", "maria\nadmin:root", 1);
  const std::string fallback = admin_actor();
  EXPECT_EQ(fallback.find('\n'), std::string::npos);
  EXPECT_NE(fallback, "admin:maria\nadmin:root");
  ::unsetenv("SUDO_USER");
  EXPECT_EQ(admin_actor(), fallback);
  EXPECT_EQ(admin_actor().rfind("admin:", 0), 0u);
  EXPECT_GT(admin_actor().size(), std::string("admin:").size());
  if (saved)
    ::setenv("SUDO_USER", restore.c_str(), 1);
}

// ---- Policies ----

class PolicyTest : public ServerData {};

TEST_F(PolicyTest, WithNoPolicySetEveryoneIsUnderTheBuiltInDefaults) {
  auto effective = policies().effective_for("carol");
  ASSERT_TRUE(effective);
  EXPECT_EQ(effective.value().policy, protocol::Policy{});
  EXPECT_TRUE(effective.value().sources.empty());
  EXPECT_EQ(effective.value().version, 1) << "migration 4 starts the counter at 1";
  EXPECT_TRUE(policies().list().value().empty());
}

TEST_F(PolicyTest, AUserInNoGroupGetsTheDefaultFilesValues) {
  add_members("nurses", {"alice"});
  ASSERT_TRUE(policies().set("default", policy_file(R"({"pin_min_length": 8})"), kNow));
  ASSERT_TRUE(policies().set("nurses", policy_file(R"({"allow_export": false})"), kNow));

  auto carol = policies().effective_for("carol");
  ASSERT_TRUE(carol);
  protocol::Policy expected;
  expected.pin_min_length = 8;
  EXPECT_EQ(carol.value().policy, expected) << "only the default file applies to carol";
  EXPECT_EQ(carol.value().sources, std::vector<std::string>{"default"});
  EXPECT_EQ(carol.value().version, version());
}

TEST_F(PolicyTest, AUserInTwoGroupsGetsTheStricterValueOfEach) {
  add_members("nurses", {"alice", "bob"});
  add_members("night", {"alice"});
  ASSERT_TRUE(policies().set("default", policy_file(R"({"pin_min_length": 6})"), kNow));
  ASSERT_TRUE(policies().set(
      "nurses", policy_file(R"({"pin_min_length": 8, "offline_block_minutes": 240})"), kNow));
  ASSERT_TRUE(policies().set(
      "night",
      policy_file(R"({"pin_min_length": 10, "offline_block_minutes": 600, "allow_export": false})"),
      kNow));

  auto alice = policies().effective_for("alice");
  ASSERT_TRUE(alice);
  EXPECT_EQ(alice.value().policy.pin_min_length, 10);
  EXPECT_EQ(alice.value().policy.offline_block_minutes, 240);
  EXPECT_FALSE(alice.value().policy.allow_export);
  EXPECT_EQ(alice.value().sources, (std::vector<std::string>{"default", "night", "nurses"}));

  auto bob = policies().effective_for("bob");
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob.value().policy.pin_min_length, 8);
  EXPECT_EQ(bob.value().policy.offline_block_minutes, 240);
  EXPECT_TRUE(bob.value().policy.allow_export);
  EXPECT_EQ(bob.value().sources, (std::vector<std::string>{"default", "nurses"}));
}

TEST_F(PolicyTest, RemovingAMemberChangesTheirPolicyAndAdvancesTheVersion) {
  add_members("night", {"alice"});
  ASSERT_TRUE(policies().set("night", policy_file(R"({"wifi_only_downloads": true})"), kNow));
  const auto before = policies().effective_for("alice").value();
  EXPECT_TRUE(before.policy.wifi_only_downloads);

  remove_members("night", {"alice"});
  const auto after = policies().effective_for("alice").value();
  EXPECT_FALSE(after.policy.wifi_only_downloads);
  EXPECT_TRUE(after.sources.empty());
  EXPECT_EQ(after.version, before.version + 1);
}

TEST_F(PolicyTest, EveryChangeThatMayAlterAPolicyAdvancesTheVersionAndNoOtherDoes) {
  std::int64_t v = version();
  auto expect_version = [&](std::int64_t expected, const char* step) {
    EXPECT_EQ(version(), expected) << step;
    v = version();
  };
  auto set = policies().set("default", policy_file(R"({"pin_min_length": 8})"), kNow);
  ASSERT_TRUE(set);
  EXPECT_EQ(set.value(), v + 1) << "set returns the new version";
  expect_version(v + 1, "default policy set");
  ASSERT_TRUE(policies().set("nurses", policy_file("{}"), kNow));
  expect_version(v + 1, "group policy set");
  add_members("nurses", {"alice"});
  expect_version(v + 1, "member added");
  add_members("nurses", {"alice"});
  expect_version(v, "a member added again changes nothing");
  remove_members("nurses", {"bob"});
  expect_version(v, "removing someone who is not a member changes nothing");
  std::string why;
  ASSERT_TRUE(messaging().add_senders("nurses", std::vector<std::string>{"bob"}, kNow, why));
  expect_version(v, "a named sender is not a member");
  remove_members("nurses", {"alice"});
  expect_version(v + 1, "member removed");
  EXPECT_TRUE(policies().remove("nurses").value());
  expect_version(v + 1, "group policy removed");
  EXPECT_FALSE(policies().remove("nurses").value());
  expect_version(v, "removing a policy that is not there changes nothing");
  EXPECT_TRUE(policies().remove("default").value());
  expect_version(v + 1, "default policy reset");

  auto unknown = policies().set("nobody", policy_file("{}"), kNow);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), errc::no_such_group);
  auto not_a_group = policies().set("announce:all", policy_file("{}"), kNow);
  ASSERT_FALSE(not_a_group);
  EXPECT_EQ(not_a_group.error(), errc::no_such_group);
  expect_version(v, "a refused set changes nothing");
  EXPECT_EQ(count("policies"), 0);
}

TEST_F(PolicyTest, TheListHasDefaultFirstThenGroupsWithTheVersionEachWasSetAt) {
  ASSERT_TRUE(policies().set("nurses", policy_file(R"({"pin_min_length": 8})"), kNow));
  ASSERT_TRUE(policies().set("night", policy_file(R"({"allow_export": false})"), kNow));
  const auto default_version =
      policies().set("default", policy_file(R"({"description": "Everyone", "max_cache_mb": 512})"),
                     kNow + std::chrono::seconds(5));
  ASSERT_TRUE(default_version);
  auto list = policies().list();
  ASSERT_TRUE(list);
  ASSERT_EQ(list.value().size(), 3u);
  EXPECT_EQ(list.value()[0].audience, "default");
  EXPECT_EQ(list.value()[0].revision, default_version.value());
  EXPECT_EQ(list.value()[0].set_at, kNow + std::chrono::seconds(5));
  EXPECT_EQ(list.value()[0].file.description, "Everyone");
  EXPECT_EQ(list.value()[0].file.values.max_cache_mb, 512);
  EXPECT_EQ(list.value()[1].audience, "night");
  EXPECT_EQ(list.value()[2].audience, "nurses");
  EXPECT_EQ(list.value()[2].file.given, std::set<std::string>{"pin_min_length"});
}

// ---- Course assignment ----

class CatalogAssignmentTest : public ServerData {
 protected:
  void SetUp() override {
    ServerData::SetUp();
    auto identity = load_identity(data_.path());
    ASSERT_TRUE(identity);
    identity_ = std::make_unique<ServerIdentity>(std::move(identity).value());
    write_text(course_ / kCourseFile,
               R"({"id": "ward-hygiene", "title": "Ward hygiene",
                   "lessons": [{"title": "Hands", "kind": "html", "files": ["hands.txt"]}]})");
    write_text(course_ / "hands.txt", kLessonText);
    publish();
  }

  void publish() {
    std::string why;
    auto source = read_course_folder(course_.path(), why);
    ASSERT_TRUE(source) << why;
    ASSERT_TRUE(catalog().publish(source.value(), identity_->signing_key, kNow, why)) << why;
  }

  Catalog catalog() { return Catalog(*db_, data_.path()); }

  // What `login` sees of the course, through each of the three doors.
  struct Sight {
    bool listed = false;   // visible_courses
    bool in_feed = false;  // changes_since from the start
    bool chunk = false;    // chunk_visible
  };
  Sight sight(const char* login) {
    Sight s;
    const auto listed = catalog().visible_courses(login, kNow).value();
    s.listed = std::find(listed.begin(), listed.end(), "ward-hygiene") != listed.end();
    const auto feed = catalog().changes_since(login, 0, 100, kNow);
    for (const auto& change : feed.value())
      s.in_feed = s.in_feed || change.course_id == "ward-hygiene";
    s.chunk = catalog().chunk_visible(login, hash_, kNow).value();
    return s;
  }
  void expect_sees(const char* login, bool sees) {
    const Sight s = sight(login);
    EXPECT_EQ(s.listed, sees) << login << " in visible_courses";
    EXPECT_EQ(s.in_feed, sees) << login << " in changes_since(0)";
    EXPECT_EQ(s.chunk, sees) << login << " chunk_visible";
  }

  const std::string hash_ = crypto::to_hex(crypto::sha256(crypto::as_bytes(kLessonText)));
  TempDir course_;
  std::unique_ptr<ServerIdentity> identity_;
};

TEST_F(CatalogAssignmentTest, ANewCourseIsForEveryoneAndARepublishKeepsItsAssignment) {
  EXPECT_EQ(catalog().audiences("ward-hygiene").value(), std::vector<std::string>{"all"});
  expect_sees("alice", true);
  expect_sees("carol", true);
  expect_sees("nobody", false);

  const std::vector<std::string> nurses{"nurses"};
  ASSERT_TRUE(catalog().assign("ward-hygiene", nurses));
  publish();
  EXPECT_EQ(catalog().audiences("ward-hygiene").value(), nurses);
}

TEST_F(CatalogAssignmentTest, AGroupsCourseIsSeenByItsMembersOnlyAndNoLongerAfterRemoval) {
  add_members("nurses", {"alice"});
  const std::vector<std::string> nurses{"nurses"};
  ASSERT_TRUE(catalog().assign("ward-hygiene", nurses));
  expect_sees("alice", true);
  expect_sees("bob", false);

  // bob's device has synced before: its cursor is past the course. Once he joins, the check-in
  // lists the course and his agent reads the feed from the start again, where it is.
  const std::int64_t cursor = catalog().latest_seq().value();
  EXPECT_TRUE(catalog().changes_since("bob", cursor, 100, kNow).value().empty());
  add_members("nurses", {"bob"});
  expect_sees("bob", true);

  remove_members("nurses", {"alice"});
  expect_sees("alice", false);
  expect_sees("bob", true);
}

TEST_F(CatalogAssignmentTest, AllAndGroupsTogetherAreSortedAllFirstAndCountOnce) {
  const std::vector<std::string> audiences{"nurses", "all", "night", "nurses"};
  ASSERT_TRUE(catalog().assign("ward-hygiene", audiences));
  EXPECT_EQ(catalog().audiences("ward-hygiene").value(),
            (std::vector<std::string>{"all", "night", "nurses"}));
  expect_sees("carol", true);
}

TEST_F(CatalogAssignmentTest, ABadAssignmentIsRefusedAndChangesNothing) {
  std::string why;
  const std::vector<std::string> unknown{"nurses", "midwives"};
  auto refused = catalog().assign("ward-hygiene", unknown, &why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::no_such_group);
  EXPECT_NE(why.find("\"midwives\""), std::string::npos) << why;
  EXPECT_EQ(catalog().audiences("ward-hygiene").value(), std::vector<std::string>{"all"});
  expect_sees("carol", true);

  const std::vector<std::string> direct{"dm:alice:bob"};
  auto refused_direct = catalog().assign("ward-hygiene", direct);
  ASSERT_FALSE(refused_direct);
  EXPECT_EQ(refused_direct.error(), errc::no_such_group);

  why.clear();
  auto no_course = catalog().assign("no-such-course", std::vector<std::string>{"all"}, &why);
  ASSERT_FALSE(no_course);
  EXPECT_EQ(no_course.error(), errc::no_such_course);
  EXPECT_NE(why.find("no-such-course"), std::string::npos) << why;
  EXPECT_EQ(catalog().audiences("no-such-course").error(), errc::no_such_course);

  auto empty = catalog().assign("ward-hygiene", std::vector<std::string>{});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), errc::invalid_channel);
  EXPECT_EQ(catalog().audiences("ward-hygiene").value(), std::vector<std::string>{"all"});
}

// ---- Admin commands ----

class GroupAdminTest : public ServerData {
 protected:
  fs::path file(std::string_view name, std::string_view text) {
    const fs::path p = files_ / name;
    write_text(p, text);
    return p;
  }

  std::set<std::string> users() {
    std::set<std::string> logins;
    const auto listed = Directory(*db_).list_users();
    for (const User& u : listed.value())
      logins.insert(u.login);
    return logins;
  }
  std::set<std::string> members(const char* group) {
    std::set<std::string> logins;
    SQLite::Statement q(*db_,
                        "SELECT login FROM channel_members WHERE channel_id = ? AND "
                        "role = 'member' AND removed = 0");
    q.bind(1, group);
    while (q.executeStep())
      logins.insert(q.getColumn(0).getString());
    return logins;
  }

  TempDir files_;
};

TEST_F(GroupAdminTest, ImportCreatesUsersGroupsAndMembershipsAndKeepsKnownNames) {
  // A spreadsheet's export: byte order mark, CRLF, a header, quoted fields, a blank line and a
  // line of empty cells.
  const fs::path csv = file("staff.csv",
                            "\xEF\xBB\xBFLogin,Name,Groups\r\n"
                            "dana,\"Dana, RN\",nurses;night\r\n"
                            "\r\n"
                            "erik,\"Erik \"\"Rik\"\" Olsen\", wards ; nurses \r\n"
                            ",,\r\n"
                            "alice,Someone Else,night\r\n"
                            "fred,\"Fred\nSecond line\"\r\n"
                            "gina,Gina,\r\n");
  std::ostringstream out;
  std::string why;
  // A name over two lines is refused (a name is one line); the same file without it imports.
  auto refused = admin_group_import(data_.path(), csv, out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_import);
  EXPECT_NE(why.find("line 7:"), std::string::npos) << why;
  EXPECT_NE(why.find("fred"), std::string::npos) << why;

  const std::int64_t before = version();
  const fs::path good = file("good.csv",
                             "\xEF\xBB\xBFLogin,Name,Groups\r\n"
                             "dana,\"Dana, RN\",nurses;night\r\n"
                             "\r\n"
                             "erik,\"Erik \"\"Rik\"\" Olsen\", wards ; nurses \r\n"
                             ",,\r\n"
                             "alice,Someone Else,night\r\n"
                             "gina,Gina,\r\n");
  why.clear();
  out.str("");
  ASSERT_TRUE(admin_group_import(data_.path(), good, out, why)) << why;
  EXPECT_EQ(out.str(), "imported 4 lines of " + good.string() +
                           ": 3 users added (1 already known), 1 group created (wards), 5 "
                           "memberships added (0 already held)\n");
  EXPECT_EQ(users(), (std::set<std::string>{"alice", "bob", "carol", "dana", "erik", "gina"}));
  auto dana = Directory(*db_).find_user("dana").value();
  ASSERT_TRUE(dana);
  EXPECT_EQ(dana->name, "Dana, RN");
  EXPECT_EQ(Directory(*db_).find_user("erik").value()->name, "Erik \"Rik\" Olsen");
  EXPECT_EQ(Directory(*db_).find_user("alice").value()->name, "Person alice")
      << "a known user keeps their name";
  EXPECT_EQ(members("nurses"), (std::set<std::string>{"dana", "erik"}));
  EXPECT_EQ(members("night"), (std::set<std::string>{"alice", "dana"}));
  EXPECT_EQ(members("wards"), (std::set<std::string>{"erik"}));
  EXPECT_GT(version(), before) << "new members are under their groups' policies";

  const auto entries = audit();
  ASSERT_EQ(entries.size(), 1u) << "the refused import left no entry";
  EXPECT_EQ(entries[0].event, "users_imported");
  EXPECT_EQ(entries[0].subject, "good.csv");
  const json details = json::parse(entries[0].details);
  EXPECT_EQ(details["users_added"], 3);
  EXPECT_EQ(details["memberships_added"], 5);
  EXPECT_EQ(details["groups_created"], json::array({"wards"}));

  // The same file again adds nothing: memberships are never duplicated.
  out.str("");
  ASSERT_TRUE(admin_group_import(data_.path(), good, out, why)) << why;
  EXPECT_NE(out.str().find("0 users added"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("0 memberships added (5 already held)"), std::string::npos) << out.str();
}

TEST_F(GroupAdminTest, EachKindOfBadLineFailsTheWholeImportNamingTheLine) {
  struct Case {
    const char* text;
    const char* line;
    const char* names;
  };
  const Case cases[] = {
      {"login,name,groups\nhana,Hana,nurses\nIvan Petrov,Ivan,nurses\n", "line 3:", "Ivan Petrov"},
      {"hana,Hana,nurses\nivan,,nurses\n", "line 2:", "name of ivan is empty"},
      {"hana,Hana,nurses\nivan\n", "line 2:", "name of ivan is empty"},
      {"hana,Hana,nurses\nivan,Ivan,Night Shift\n", "line 2:", "\"Night Shift\""},
      {"hana,Hana,all\n", "line 1:", "\"all\""},
      {"hana,Hana,nurses\nivan,Ivan,nurses,extra\n", "line 2:", "4 fields"},
      {"hana,Hana,nurses\nivan,\"Ivan,nurses\n", "line 2:", "never closed"},
      {"hana,\"Hana\" B,nurses\n", "line 1:", "closing quote"},
      {"hana,Ha\"na,nurses\n", "line 1:", "holds a quote"},
      {"Login,Full name\nhana,Hana\n", "line 1:", "header line"},
  };
  const auto users_before = users();
  const int channels_before = count("channels");
  const std::int64_t version_before = version();
  int n = 0;
  for (const Case& c : cases) {
    const fs::path csv = file("bad" + std::to_string(n++) + ".csv", c.text);
    std::ostringstream out;
    std::string why;
    auto imported = admin_group_import(data_.path(), csv, out, why);
    ASSERT_FALSE(imported) << c.text;
    EXPECT_EQ(imported.error(), errc::invalid_import) << c.text;
    EXPECT_NE(why.find(c.line), std::string::npos) << c.text << " -> " << why;
    EXPECT_NE(why.find(c.names), std::string::npos) << c.text << " -> " << why;
    EXPECT_NE(why.find("nothing was imported"), std::string::npos) << why;
    EXPECT_TRUE(out.str().empty());
  }
  EXPECT_EQ(users(), users_before);
  EXPECT_EQ(count("channels"), channels_before);
  EXPECT_EQ(version(), version_before);
  EXPECT_TRUE(audit().empty());
}

TEST_F(GroupAdminTest, AnImportOverItsLimitsIsRefusedWhole) {
  std::string many;
  for (std::size_t i = 0; i <= kMaxImportRows; ++i)
    many += "u" + std::to_string(i) + ",U\n";
  std::ostringstream out;
  std::string why;
  auto refused = admin_group_import(data_.path(), file("many.csv", many), out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_import);
  EXPECT_NE(why.find("more than 100000 users"), std::string::npos) << why;

  std::string groups = "hana,Hana,";
  for (std::size_t i = 0; i <= kMaxImportGroupsPerRow; ++i)
    groups += "g" + std::to_string(i) + ";";
  why.clear();
  refused = admin_group_import(data_.path(), file("groups.csv", groups), out, why);
  ASSERT_FALSE(refused);
  EXPECT_NE(why.find("101 groups"), std::string::npos) << why;

  why.clear();
  refused =
      admin_group_import(data_.path(), file("empty.csv", "login,name,groups\r\n\r\n"), out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_import);
  EXPECT_NE(why.find("names no users"), std::string::npos) << why;

  EXPECT_EQ(users().size(), 3u);
  EXPECT_TRUE(out.str().empty());
}

TEST_F(GroupAdminTest, GroupCommandsChangeAllOrNothingAndSayHowMany) {
  std::ostringstream out;
  std::string why;
  ASSERT_TRUE(admin_group_add(data_.path(), "pharmacy", "Pharmacy", out, why)) << why;
  EXPECT_EQ(out.str(), "added group pharmacy (Pharmacy)\n");

  for (const char* reserved : {"default", "all", "Bad Name"}) {
    why.clear();
    auto refused = admin_group_add(data_.path(), reserved, "", out, why);
    ASSERT_FALSE(refused) << reserved;
    EXPECT_EQ(refused.error(), errc::invalid_channel);
    EXPECT_NE(why.find(reserved), std::string::npos) << why;
  }
  why.clear();
  auto taken = admin_group_add(data_.path(), "nurses", "", out, why);
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error(), errc::channel_exists);
  EXPECT_NE(why.find("admin group members add nurses"), std::string::npos) << why;

  out.str("");
  const std::vector<std::string> two{"alice", "bob"};
  ASSERT_TRUE(admin_group_members_add(data_.path(), "pharmacy", two, out, why)) << why;
  EXPECT_EQ(out.str(), "pharmacy: 2 of 2 added\n");
  out.str("");
  const std::vector<std::string> with_unknown{"carol", "zed"};
  why.clear();
  auto refused = admin_group_members_add(data_.path(), "pharmacy", with_unknown, out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::no_such_user);
  EXPECT_NE(why.find("\"zed\""), std::string::npos) << why;
  EXPECT_EQ(members("pharmacy"), (std::set<std::string>{"alice", "bob"})) << "carol not added";

  why.clear();
  refused = admin_group_members_add(data_.path(), "announce:all", two, out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::no_such_group);
  EXPECT_NE(why.find("admin group list"), std::string::npos) << why;

  const std::vector<std::string> one{"alice", "carol"};
  ASSERT_TRUE(admin_group_members_remove(data_.path(), "pharmacy", one, out, why)) << why;
  EXPECT_EQ(out.str(), "pharmacy: 1 of 2 removed (the others were not members)\n");
  EXPECT_EQ(members("pharmacy"), std::set<std::string>{"bob"});

  EXPECT_EQ(audit_events(), (std::vector<std::string>{"group_added", "group_members_added",
                                                      "group_members_removed"}));
  const json removed = json::parse(audit().back().details);
  EXPECT_EQ(removed["changed"], 1);
  EXPECT_EQ(removed["logins"], json::array({"alice", "carol"}));

  out.str("");
  ASSERT_TRUE(admin_policy_set(data_.path(), file("p.json", R"({"pin_min_length": 8})"), "pharmacy",
                               out, why))
      << why;
  out.str("");
  ASSERT_TRUE(admin_group_list(data_.path(), Listing::json, out, why)) << why;
  const json groups = json::parse(out.str());
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0]["id"], "night");
  EXPECT_EQ(groups[2]["id"], "pharmacy");
  EXPECT_EQ(groups[2]["members"], 1);
  EXPECT_EQ(groups[2]["policy"], true);
  EXPECT_EQ(groups[1]["policy"], false);
}

TEST_F(GroupAdminTest, PolicySetNamesTheWrongSettingAndTheFileAndChangesNothing) {
  std::ostringstream out;
  std::string why;
  const std::int64_t before = version();
  const fs::path bad = file("strict.json", R"({"pin_min_length": 8, "pin_len": 9})");
  auto refused = admin_policy_set(data_.path(), bad, "", out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_policy);
  EXPECT_NE(why.find("pin_len"), std::string::npos) << why;
  EXPECT_NE(why.find(bad.string()), std::string::npos) << why;

  why.clear();
  const fs::path out_of_range = file("range.json", R"({"pin_min_length": 2})");
  refused = admin_policy_set(data_.path(), out_of_range, "nurses", out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_policy);
  EXPECT_NE(why.find("pin_min_length"), std::string::npos) << why;

  why.clear();
  const fs::path big = file("big.json", std::string(protocol::kMaxPolicyFileSize + 1, ' '));
  refused = admin_policy_set(data_.path(), big, "", out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_policy);
  EXPECT_NE(why.find("larger than"), std::string::npos) << why;

  why.clear();
  const fs::path good = file("good.json", R"({"pin_min_length": 8})");
  refused = admin_policy_set(data_.path(), good, "midwives", out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::no_such_group);
  EXPECT_NE(why.find("\"midwives\""), std::string::npos) << why;

  why.clear();
  refused = admin_policy_set(data_.path(), files_ / "missing.json", "", out, why);
  ASSERT_FALSE(refused);
  EXPECT_NE(why.find("missing.json"), std::string::npos) << why;

  EXPECT_EQ(version(), before);
  EXPECT_EQ(count("policies"), 0);
  EXPECT_TRUE(audit().empty());
  EXPECT_TRUE(out.str().empty());

  ASSERT_TRUE(admin_policy_set(data_.path(), good, "nurses", out, why)) << why;
  EXPECT_EQ(out.str(), "set the policy of group nurses (1 setting); policy version " +
                           std::to_string(before + 1) +
                           ": devices get it at their next check-in\n");
  out.str("");
  ASSERT_TRUE(admin_policy_remove(data_.path(), "nurses", out, why)) << why;
  EXPECT_NE(out.str().find("removed the policy of group nurses"), std::string::npos);
  out.str("");
  ASSERT_TRUE(admin_policy_remove(data_.path(), "nurses", out, why)) << why;
  EXPECT_EQ(out.str(), "group nurses has no policy; nothing was changed\n");
  EXPECT_EQ(audit_events(), (std::vector<std::string>{"policy_set", "policy_removed"}));
  EXPECT_EQ(json::parse(audit().front().details)["document"],
            json::parse(R"({"pin_min_length":8})"));
}

TEST_F(GroupAdminTest, PolicyShowForALoginNamesWhereEachSettingCameFrom) {
  add_members("nurses", {"alice"});
  add_members("night", {"alice"});
  ASSERT_TRUE(policies().set("default", policy_file(R"({"pin_min_length": 8})"), kNow));
  ASSERT_TRUE(policies().set(
      "nurses", policy_file(R"({"pin_min_length": 10, "allow_export": false})"), kNow));
  ASSERT_TRUE(policies().set("night", policy_file(R"({"allow_export": false})"), kNow));

  std::ostringstream out;
  std::string why;
  ASSERT_TRUE(admin_policy_show(data_.path(), "alice", Listing::json, out, why)) << why;
  const json shown = json::parse(out.str());
  EXPECT_EQ(shown["login"], "alice");
  EXPECT_EQ(shown["version"], version());
  EXPECT_EQ(shown["sources"], json::array({"default", "night", "nurses"}));
  EXPECT_EQ(shown["policy"]["pin_min_length"], 10);
  EXPECT_EQ(shown["from"]["pin_min_length"], json::array({"nurses"}));
  EXPECT_EQ(shown["from"]["allow_export"], json::array({"night", "nurses"}));
  EXPECT_EQ(shown["from"]["pin_required"], json::array({"built-in"}));

  out.str("");
  ASSERT_TRUE(admin_policy_show(data_.path(), "alice", Listing::table, out, why)) << why;
  EXPECT_NE(out.str().find("alice: policy version " + std::to_string(version()) +
                           ", from default, night, nurses"),
            std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("pin_min_length"), std::string::npos);

  out.str("");
  ASSERT_TRUE(admin_policy_show(data_.path(), "", Listing::table, out, why)) << why;
  EXPECT_NE(out.str().find("nurses    allow_export    false"), std::string::npos) << out.str();

  why.clear();
  auto unknown = admin_policy_show(data_.path(), "zed", Listing::table, out, why);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), errc::no_such_user);
  EXPECT_NE(why.find("\"zed\""), std::string::npos) << why;
}

class AuditAdminTest : public CatalogAssignmentTest {};

TEST_F(AuditAdminTest, AdminChangesAreRecordedWithoutSecrets) {
  std::ostringstream out;
  std::string why;
  ASSERT_TRUE(admin_user_add(data_.path(), "hana", "Hana Mori", out, why)) << why;
  ASSERT_TRUE(admin_enroll_code(data_.path(), "hana", std::chrono::hours(1), "kaban.example:8443",
                                out, why))
      << why;
  const std::string line = out.str().substr(out.str().find("kaban://"));
  const std::string code = line.substr(line.find("code=") + 5, 19);
  ASSERT_TRUE(admin_channel_add(data_.path(), "ward-7", "", out, why)) << why;
  const std::vector<std::string> hana{"hana"};
  ASSERT_TRUE(admin_channel_members_add(data_.path(), "ward-7", hana, out, why)) << why;
  const std::vector<std::string> nurses{"nurses"};
  ASSERT_TRUE(admin_course_assign(data_.path(), "ward-hygiene", nurses, out, why)) << why;
  Announcement a;
  a.audience = "all";
  a.body = "Fire drill at ten";
  ASSERT_TRUE(admin_announce(data_.path(), a, out, why)) << why;
  ASSERT_TRUE(admin_course_publish(data_.path(), course_.path(), out, why)) << why;

  EXPECT_EQ(audit_events(),
            (std::vector<std::string>{"user_added", "enroll_code_created", "channel_added",
                                      "channel_members_added", "course_assigned",
                                      "announcement_posted", "course_published"}));
  for (const AuditEntry& e : audit()) {
    EXPECT_EQ(e.actor, admin_actor());
    EXPECT_EQ(e.details.find(code), std::string::npos) << "the enrollment code is never logged";
    EXPECT_EQ(e.details.find(code.substr(0, 4) + code.substr(5, 4)), std::string::npos);
  }
  const auto entries = audit();
  EXPECT_EQ(entries[1].subject, "hana");
  EXPECT_EQ(json::parse(entries[1].details)["ttl_seconds"], 3600);
  EXPECT_EQ(entries[4].subject, "ward-hygiene");
  EXPECT_EQ(json::parse(entries[4].details),
            json::parse(R"({"audiences":["nurses"],"previous":["all"]})"));
  EXPECT_EQ(json::parse(entries[6].details)["version"], 2);

  // A refused command records nothing: the change and its entry are one transaction.
  why.clear();
  EXPECT_FALSE(admin_user_add(data_.path(), "hana", "Again", out, why));
  EXPECT_FALSE(admin_course_assign(data_.path(), "ward-hygiene",
                                   std::vector<std::string>{"midwives"}, out, why));
  EXPECT_EQ(audit().size(), entries.size());
}

TEST_F(AuditAdminTest, CourseAssignSaysWhoSeesItNow) {
  std::ostringstream out;
  std::string why;
  const std::vector<std::string> groups{"nurses", "night"};
  ASSERT_TRUE(admin_course_assign(data_.path(), "ward-hygiene", groups, out, why)) << why;
  EXPECT_EQ(out.str(),
            "ward-hygiene: visible to the members of night, nurses (was: everyone); devices of "
            "people who no longer see it remove it at their next sync\n");
  why.clear();
  auto refused = admin_course_assign(data_.path(), "fire-safety", groups, out, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::no_such_course);
  EXPECT_NE(why.find("\"fire-safety\""), std::string::npos) << why;
}

TEST_F(AuditAdminTest, AuditSinceShowsOnlyLaterEntriesInEachFormat) {
  AuditLog log(*db_);
  ASSERT_TRUE(log.record("admin:it", "user_added", "old", "{}", kNow));
  ASSERT_TRUE(log.record("device:abcd", "enroll_failed", "", R"({"reason":"code, \"used\""})",
                         kNow + std::chrono::hours(24)));
  ASSERT_TRUE(log.record("server", "device_revoked", "abcd", "{}", kNow + std::chrono::hours(48)));

  std::ostringstream out;
  std::string why;
  ASSERT_TRUE(admin_audit(data_.path(), kNow + std::chrono::hours(24), Listing::json, out, why))
      << why;
  const json entries = json::parse(out.str());
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["event"], "enroll_failed");
  EXPECT_EQ(entries[0]["details"]["reason"], "code, \"used\"");
  EXPECT_EQ(entries[0]["at"], protocol::format_timestamp(to_unix(kNow) + 24 * 3600));
  EXPECT_EQ(entries[1]["event"], "device_revoked");

  out.str("");
  ASSERT_TRUE(admin_audit(data_.path(), kNow + std::chrono::hours(48), Listing::csv, out, why))
      << why;
  EXPECT_EQ(out.str(), "AT,ACTOR,EVENT,SUBJECT,DETAILS\r\n" +
                           protocol::format_timestamp(to_unix(kNow) + 48 * 3600) +
                           ",server,device_revoked,abcd,{}\r\n");

  out.str("");
  ASSERT_TRUE(admin_audit(data_.path(), UnixTime{}, Listing::table, out, why)) << why;
  EXPECT_NE(out.str().find("old"), std::string::npos);
  EXPECT_NE(out.str().find("enroll_failed"), std::string::npos);
}

}  // namespace
}  // namespace kaban::server
