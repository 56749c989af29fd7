#include <map>
#include <sstream>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kaban/crypto/ed25519.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/protocol/xapi.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/course_folder.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/learning_records.hpp"
#include "kaban/server/messaging.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
namespace xapi = protocol::xapi;
using namespace std::chrono_literals;
using kaban::testing::TempDir;
using nlohmann::json;

const UnixTime kNow{std::chrono::seconds{1'800'000'000}};
constexpr const char* kEpoch = "0123456789abcdef0123456789abcdef";

void write_text(const fs::path& p, std::string_view text) {
  fs::create_directories(p.parent_path());
  kaban::testing::write_file(p, {text.begin(), text.end()});
}

class LearningRecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = create_database(data_.path());
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    fs::create_directory(data_.path() / kChunksDir);
    SQLite::Statement epoch(*db_, "INSERT INTO server_meta(key, value) VALUES (?, ?)");
    epoch.bind(1, kServerEpochKey);
    epoch.bind(2, kEpoch);
    epoch.exec();
    Directory directory(*db_);
    for (const auto& [login, name] : std::map<std::string, std::string>{{"alice", "Alice Aoki"},
                                                                        {"bob", "Bob Baba"},
                                                                        {"carol", "Carol Chiba"},
                                                                        {"dave", "Dave Doi"},
                                                                        {"erin", "Erin Endo"}})
      ASSERT_TRUE(directory.add_user(login, name, kNow));
    publish(R"({"id": "fire-safety", "title": "Fire safety", "lessons": [
      {"id": "intro", "title": "Introduction", "kind": "html", "files": ["a.html"]},
      {"id": "quiz", "title": "Quiz", "kind": "html", "files": ["b.html"]}]})");
    records_ = std::make_unique<LearningRecords>(*db_);
  }

  void publish(const std::string& course_json) {
    write_text(folder_ / kCourseFile, course_json);
    write_text(folder_ / "a.html", "<p>a</p>");
    write_text(folder_ / "b.html", "<p>b</p>");
    write_text(folder_ / "c.html", "<p>c</p>");
    std::string why;
    auto course = read_course_folder(folder_.path(), why);
    ASSERT_TRUE(course) << why;
    Catalog catalog(*db_, data_.path());
    ASSERT_TRUE(catalog.publish(course.value(), key_, kNow, why)) << why;
  }

  static xapi::NewStatement statement(std::string login, std::string_view verb, std::string lesson,
                                      std::int64_t timestamp) {
    xapi::NewStatement s;
    s.id = protocol::new_uuid();
    s.login = std::move(login);
    s.user_name = "Someone";
    s.home_page = "https://kaban.example:8443";
    s.verb = std::string(verb);
    s.course_id = "fire-safety";
    s.lesson_id = std::move(lesson);
    s.object_name = "Fire safety";
    s.timestamp = timestamp;
    return s;
  }

  StatementOutcome store(const xapi::NewStatement& s, UnixTime stored_at = kNow) {
    std::string why;
    auto facts = xapi::read_statement(xapi::make_statement(s), &why);
    EXPECT_TRUE(facts) << why;
    auto outcome = records_->store(facts.value(), "device", stored_at);
    EXPECT_TRUE(outcome);
    return outcome ? outcome.value() : StatementOutcome::conflict;
  }

  std::map<std::string, CourseCompletion> report(std::string_view course = "") {
    auto rows = records_->completion_report(course);
    EXPECT_TRUE(rows);
    std::map<std::string, CourseCompletion> by_login;
    if (rows) {
      for (auto& row : rows.value())
        by_login[row.login] = row;
    }
    return by_login;
  }

  TempDir data_;
  TempDir folder_;
  crypto::Ed25519PrivateKey key_ = crypto::Ed25519PrivateKey::generate();
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<LearningRecords> records_;
};

TEST_F(LearningRecordsTest, CompletionAveragesTheLessonsOfTheLatestVersion) {
  // alice: intro completed, quiz half done.
  auto s = statement("alice", xapi::verbs::kCompleted, "intro", 1'800'000'100);
  s.duration_seconds = 600;
  store(s);
  s = statement("alice", xapi::verbs::kProgressed, "quiz", 1'800'000'200);
  s.progress = 50;
  s.duration_seconds = 300;
  store(s);
  // bob: the best progress of each lesson counts, not the last.
  s = statement("bob", xapi::verbs::kProgressed, "intro", 1'800'000'100);
  s.progress = 30;
  store(s);
  s = statement("bob", xapi::verbs::kProgressed, "quiz", 1'800'000'100);
  s.progress = 45;
  store(s);
  s = statement("bob", xapi::verbs::kProgressed, "quiz", 1'800'000'200);
  s.progress = 20;
  store(s);
  // carol: both lessons done; passed counts as done, and so does completion: true.
  store(statement("carol", xapi::verbs::kPassed, "intro", 1'800'000'300));
  s = statement("carol", xapi::verbs::kFailed, "quiz", 1'800'000'500);
  s.completion = true;
  s.success = false;
  store(s);
  store(statement("carol", xapi::verbs::kCompleted, "quiz", 1'800'000'900));
  // dave: the course itself completed, lessons not reported.
  store(statement("dave", xapi::verbs::kCompleted, "", 1'800'000'700));
  // A lesson the course does not have (any more) does not count.
  s = statement("erin", xapi::verbs::kCompleted, "old-lesson", 1'800'000'100);
  s.duration_seconds = 60;
  store(s);

  auto rows = report();
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows["alice"].percent, 75);
  EXPECT_EQ(rows["alice"].completed_at, 0);
  EXPECT_EQ(rows["alice"].time_spent_seconds, 900);
  EXPECT_EQ(rows["alice"].name, "Alice Aoki");
  EXPECT_EQ(rows["alice"].course_title, "Fire safety");
  EXPECT_EQ(rows["bob"].percent, 37);  // (30 + 45) / 2, rounded down
  EXPECT_EQ(rows["bob"].completed_at, 0);
  EXPECT_EQ(rows["carol"].percent, 100);
  EXPECT_EQ(rows["carol"].completed_at, 1'800'000'500);  // the quiz was first completed then
  EXPECT_EQ(rows["dave"].percent, 100);
  EXPECT_EQ(rows["dave"].completed_at, 1'800'000'700);
  EXPECT_EQ(rows["erin"].percent, 0);
  EXPECT_EQ(rows["erin"].time_spent_seconds, 60);

  // A new version with a third lesson: alice and carol now have work left.
  publish(R"({"id": "fire-safety", "title": "Fire safety", "lessons": [
      {"id": "intro", "title": "Introduction", "kind": "html", "files": ["a.html"]},
      {"id": "quiz", "title": "Quiz", "kind": "html", "files": ["b.html"]},
      {"id": "drill", "title": "Drill", "kind": "html", "files": ["c.html"]}]})");
  rows = report("fire-safety");
  EXPECT_EQ(rows["alice"].percent, 50);
  EXPECT_EQ(rows["carol"].percent, 66);
  EXPECT_EQ(rows["carol"].completed_at, 0);
  EXPECT_EQ(rows["dave"].percent, 100);

  auto unknown = records_->completion_report("no-such-course");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), errc::no_such_course);
}

TEST_F(LearningRecordsTest, AStatementSentFromTwoDevicesCountsOnce) {
  auto s = statement("alice", xapi::verbs::kProgressed, "intro", 1'800'000'100);
  s.progress = 60;
  s.duration_seconds = 120;
  Messaging messaging(*db_);
  protocol::OutboxItem item;
  item.id = protocol::new_uuid();
  item.seq = 1;
  item.kind = "statement";
  item.statement = xapi::make_statement(s);
  auto laptop = messaging.apply_outbox("laptop", "alice", std::vector{item}, kNow);
  ASSERT_TRUE(laptop);
  EXPECT_EQ(laptop.value().results.at(0).status, protocol::OutboxStatus::accepted);
  item.id = protocol::new_uuid();
  auto phone = messaging.apply_outbox("phone", "alice", std::vector{item}, kNow);
  ASSERT_TRUE(phone);
  EXPECT_EQ(phone.value().results.at(0).status, protocol::OutboxStatus::duplicate);

  EXPECT_EQ(report()["alice"].time_spent_seconds, 120);
  EXPECT_EQ(report()["alice"].percent, 30);
  EXPECT_EQ(store(s), StatementOutcome::duplicate);
  s.progress = 70;
  EXPECT_EQ(store(s), StatementOutcome::conflict);
}

TEST_F(LearningRecordsTest, TheExportIsWhatAnLrsTakes) {
  auto first = statement("alice", xapi::verbs::kCompleted, "intro", 1'800'000'100);
  first.duration_seconds = 65;
  first.score_scaled = 0.5;
  auto second = statement("bob", xapi::verbs::kLaunched, "", 1'700'000'000);
  auto third = statement("carol", xapi::verbs::kProgressed, "quiz", 1'800'000'300);
  third.progress = 10;
  store(second, kNow + 10s);
  store(first, kNow);
  store(third, kNow + 20s);

  std::ostringstream out;
  auto written = records_->export_statements(UnixTime{}, out);
  ASSERT_TRUE(written);
  EXPECT_EQ(written.value(), 3u);
  const json all = json::parse(out.str());
  ASSERT_TRUE(all.is_array());
  ASSERT_EQ(all.size(), 3u);
  // In stored order, each with what an LRS adds.
  EXPECT_EQ(all[0]["id"], first.id);
  EXPECT_EQ(all[1]["id"], second.id);
  EXPECT_EQ(all[2]["id"], third.id);
  EXPECT_EQ(all[0]["stored"], protocol::format_timestamp(to_unix(kNow)));
  EXPECT_EQ(all[2]["stored"], protocol::format_timestamp(to_unix(kNow + 20s)));
  for (const json& s : all) {
    EXPECT_EQ(s["version"], "1.0.3");
    EXPECT_EQ(s["authority"],
              json({{"objectType", "Agent"},
                    {"name", "Kaban"},
                    {"account", {{"homePage", "urn:kaban:server"}, {"name", kEpoch}}}}));
    // The statement itself is what the device sent.
    json sent = s;
    sent.erase("stored");
    sent.erase("authority");
    sent.erase("version");
    std::string why;
    auto facts = xapi::read_statement(sent.dump(), &why);
    ASSERT_TRUE(facts) << why;
  }
  EXPECT_EQ(all[0]["actor"]["account"]["name"], "alice");
  EXPECT_EQ(all[0]["result"]["duration"], "PT1M5S");

  // --since: only what was stored from then on.
  std::ostringstream later;
  written = records_->export_statements(kNow + 10s, later);
  ASSERT_TRUE(written);
  EXPECT_EQ(written.value(), 2u);
  EXPECT_EQ(json::parse(later.str()).size(), 2u);

  std::ostringstream none;
  written = records_->export_statements(kNow + 1h, none);
  ASSERT_TRUE(written);
  EXPECT_EQ(written.value(), 0u);
  EXPECT_EQ(json::parse(none.str()), json::array());
}

TEST_F(LearningRecordsTest, TheExportNeedsTheServerEpoch) {
  db_->exec("DELETE FROM server_meta");
  std::ostringstream out;
  auto written = records_->export_statements(UnixTime{}, out);
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error(), errc::data_dir_damaged);
}

}  // namespace
}  // namespace kaban::server
