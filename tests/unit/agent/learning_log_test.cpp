#include "kaban/agent/learning_log.hpp"

#include "kaban/agent/error.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/messages.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/xapi.hpp"
#include "message_lane_support.hpp"

namespace kaban::agent {
namespace {

using namespace kaban::agent::testing;
namespace xapi = protocol::xapi;
using protocol::OutboxStatus;

const Learner kAiko{"aiko", "Aiko Tanaka", "https://kaban.example:8443"};
const LessonTarget kChecklist{"shelter", "checklist", "Shelter opening checklist"};
const LessonTarget kVideo{"shelter", "video", "Opening the doors"};

// A statement about `lesson` as another of the person's devices (or another person) made it.
std::string foreign_statement(const std::string& login, const LessonTarget& lesson,
                              std::string_view verb, std::optional<int> progress, std::int64_t at,
                              std::string id = protocol::new_uuid()) {
  xapi::NewStatement s;
  s.id = std::move(id);
  s.login = login;
  s.user_name = "Someone";
  s.home_page = kAiko.home_page;
  s.verb = std::string(verb);
  s.course_id = lesson.course_id;
  s.lesson_id = lesson.lesson_id;
  s.object_name = lesson.title;
  s.timestamp = at;
  s.progress = progress;
  if (verb == xapi::verbs::kCompleted)
    s.completion = true;
  s.duration_seconds = 300;
  return xapi::make_statement(s);
}

class LearningLogTest : public StoreFixture {
 protected:
  LearningLog log() { return LearningLog(store(), kAiko); }

  std::vector<LessonProgress> summary() {
    auto s = log().summary();
    EXPECT_TRUE(s) << s.error().message();
    return s ? s.value() : std::vector<LessonProgress>{};
  }

  protocol::OutboxUpload pending() {
    auto b = Outbox(store()).next_batch();
    EXPECT_TRUE(b);
    return b ? b.value() : protocol::OutboxUpload{};
  }
};

TEST_F(LearningLogTest, ProgressBecomesAnXapiStatementQueuedForUpload) {
  auto id = log().record_progress(kChecklist, 40, 600, kNow);
  ASSERT_TRUE(id) << id.error().message();
  const auto upload = pending();
  ASSERT_EQ(upload.items.size(), 1u);
  const protocol::OutboxItem& item = upload.items[0];
  EXPECT_EQ(item.kind, "statement");
  EXPECT_EQ(item.id, id.value());

  auto facts = xapi::read_statement(item.statement);
  ASSERT_TRUE(facts) << item.statement;
  EXPECT_EQ(facts.value().id, id.value());
  EXPECT_EQ(facts.value().login, "aiko");
  EXPECT_EQ(facts.value().user_name, "Aiko Tanaka");
  EXPECT_EQ(facts.value().verb, xapi::verbs::kProgressed);
  EXPECT_EQ(facts.value().object_id, xapi::activity_id("shelter", "checklist"));
  EXPECT_EQ(facts.value().timestamp, kNow);
  EXPECT_EQ(facts.value().progress, 40);
  EXPECT_EQ(facts.value().duration_seconds, 600);
  EXPECT_NE(item.statement.find("\"homePage\":\"https://kaban.example:8443\""), std::string::npos)
      << item.statement;

  auto s = summary();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].course_id, "shelter");
  EXPECT_EQ(s[0].lesson_id, "checklist");
  EXPECT_EQ(s[0].best_percent, 40);
  EXPECT_EQ(s[0].completed_at, 0);
  EXPECT_EQ(s[0].pending_upload, 1u);

  ASSERT_TRUE(Outbox(store()).apply_answer(upload, answer_all(upload, OutboxStatus::accepted)));
  EXPECT_EQ(summary()[0].pending_upload, 0u) << "accepted by the server: uploaded";
}

TEST_F(LearningLogTest, CompletionCarriesTheScoreAndCompletion) {
  ASSERT_TRUE(log().record_completion(kVideo, 0.85, 1500, kNow));
  auto facts = xapi::read_statement(pending().items[0].statement);
  ASSERT_TRUE(facts);
  EXPECT_EQ(facts.value().verb, xapi::verbs::kCompleted);
  EXPECT_EQ(facts.value().completion, true);
  ASSERT_TRUE(facts.value().score_scaled);
  EXPECT_DOUBLE_EQ(*facts.value().score_scaled, 0.85);
  EXPECT_EQ(facts.value().duration_seconds, 1500);

  ASSERT_TRUE(log().record_completion(kChecklist, std::nullopt, std::nullopt, kNow));
  auto bare = xapi::read_statement(pending().items[1].statement);
  ASSERT_TRUE(bare);
  EXPECT_FALSE(bare.value().score_scaled);
  EXPECT_FALSE(bare.value().duration_seconds);
}

TEST_F(LearningLogTest, TheSummaryAddsUpEveryStatementOfALesson) {
  ASSERT_TRUE(log().record_progress(kChecklist, 30, 600, kNow - 300));
  ASSERT_TRUE(log().record_progress(kChecklist, 70, 300, kNow - 200));
  ASSERT_TRUE(log().record_progress(kChecklist, 50, std::nullopt, kNow - 150));
  ASSERT_TRUE(log().record_completion(kChecklist, 0.6, 1200, kNow - 100));
  ASSERT_TRUE(log().record_completion(kChecklist, 0.9, 60, kNow - 50));
  ASSERT_TRUE(log().record_progress(kVideo, 20, 120, kNow));

  auto s = summary();
  ASSERT_EQ(s.size(), 2u);
  const LessonProgress& checklist = s[0];
  EXPECT_EQ(checklist.lesson_id, "checklist");
  EXPECT_EQ(checklist.best_percent, 100) << "completed counts as all of it";
  EXPECT_EQ(checklist.completed_at, kNow - 100) << "the first completion";
  ASSERT_TRUE(checklist.best_score);
  EXPECT_DOUBLE_EQ(*checklist.best_score, 0.9);
  EXPECT_EQ(checklist.seconds_spent, 600 + 300 + 1200 + 60);
  EXPECT_EQ(checklist.last_at, kNow - 50);
  EXPECT_EQ(checklist.statements, 5u);
  EXPECT_EQ(checklist.pending_upload, 5u);

  const LessonProgress& video = s[1];
  EXPECT_EQ(video.best_percent, 20);
  EXPECT_EQ(video.completed_at, 0);
  EXPECT_FALSE(video.best_score);
  EXPECT_EQ(video.seconds_spent, 120);
}

TEST_F(LearningLogTest, StatementsFromOtherDevicesAreStoredOnceById) {
  const std::string other = foreign_statement("aiko", kVideo, xapi::verbs::kProgressed, 60, kNow);
  const std::vector<std::string> echoed{other, other};
  EXPECT_EQ(log().apply_echoed(echoed).value(), 1u);
  EXPECT_EQ(log().apply_echoed(echoed).value(), 0u) << "identical ids are stored once";
  EXPECT_EQ(count("SELECT count(*) FROM statements"), 1);

  const std::vector<std::string> strangers{
      foreign_statement("ken", kVideo, xapi::verbs::kCompleted, std::nullopt, kNow), "not json",
      "{}"};
  EXPECT_EQ(log().apply_echoed(strangers).value(), 0u);
  EXPECT_EQ(count("SELECT count(*) FROM statements"), 1);

  auto s = summary();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].best_percent, 60);
  EXPECT_EQ(s[0].seconds_spent, 300);
  EXPECT_EQ(s[0].pending_upload, 0u) << "the server sent it, so the server holds it";
  EXPECT_TRUE(pending().items.empty()) << "an echo is never uploaded again";
}

TEST_F(LearningLogTest, TheInboxCarriesStatementsIntoTheSameTable) {
  Messages messages(store(), "aiko", "Aiko Tanaka");
  protocol::InboxChange change;
  change.kind = "statement";
  change.statement =
      foreign_statement("aiko", kChecklist, xapi::verbs::kCompleted, std::nullopt, kNow - 60);
  const std::vector<protocol::InboxChange> page{change, change};
  auto applied = messages.apply_inbox(page, "abcd.3", kNow);
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied.value().statements, 1u);
  auto s = summary();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].completed_at, kNow - 60);
}

TEST_F(LearningLogTest, ItsOwnStatementEchoedBackIsNotDoubled) {
  auto id = log().record_progress(kVideo, 10, std::nullopt, kNow);
  ASSERT_TRUE(id);
  const std::vector<std::string> echo{pending().items[0].statement};
  EXPECT_EQ(log().apply_echoed(echo).value(), 0u);
  auto s = summary();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].statements, 1u);
  EXPECT_EQ(s[0].pending_upload, 0u);
}

TEST_F(LearningLogTest, ARejectedStatementIsShownAsSuchAndCanBeDiscarded) {
  auto id = log().record_progress(kVideo, 10, std::nullopt, kNow);
  ASSERT_TRUE(id);
  const auto upload = pending();
  protocol::OutboxAnswer answer;
  answer.results.push_back(
      result(upload.items[0], OutboxStatus::rejected, "bad_statement", "Not a course of yours."));
  ASSERT_TRUE(Outbox(store()).apply_answer(upload, answer));
  auto s = summary();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].rejected, 1u);
  EXPECT_EQ(s[0].pending_upload, 0u);
  ASSERT_TRUE(Outbox(store()).discard(id.value()));
  EXPECT_TRUE(summary().empty());
}

TEST_F(LearningLogTest, RefusesValuesOutOfRange) {
  EXPECT_EQ(log().record_progress(kVideo, 101, std::nullopt, kNow).error(), errc::invalid_input);
  EXPECT_EQ(log().record_progress(kVideo, -1, std::nullopt, kNow).error(), errc::invalid_input);
  EXPECT_EQ(log().record_progress(kVideo, 50, -5, kNow).error(), errc::invalid_input);
  EXPECT_EQ(log().record_completion(kVideo, 1.5, std::nullopt, kNow).error(), errc::invalid_input);
  EXPECT_EQ(log().record_completion(kVideo, -0.1, std::nullopt, kNow).error(), errc::invalid_input);
  EXPECT_TRUE(summary().empty());
  EXPECT_TRUE(pending().items.empty());
}

TEST(LearningLogParse, TimeSpans) {
  EXPECT_EQ(parse_time_span("10m"), 600);
  EXPECT_EQ(parse_time_span("1h30m"), 5400);
  EXPECT_EQ(parse_time_span("90s"), 90);
  EXPECT_EQ(parse_time_span("2h"), 7200);
  EXPECT_EQ(parse_time_span("1h5s"), 3605);
  EXPECT_EQ(parse_time_span("0m"), 0);
  EXPECT_EQ(parse_time_span("PT25M"), 1500);
  for (std::string_view bad : {"", "10", "m", "10x", "5m1h", "1m1m", "-5m", "10 m", "99999999999s"})
    EXPECT_FALSE(parse_time_span(bad)) << bad;
}

TEST(LearningLogParse, TheLearnerIsTheEnrolledUserAtTheServer) {
  DeviceIdentity identity;
  identity.login = "aiko";
  identity.user_name = "Aiko Tanaka";
  identity.server_host = "kaban.example";
  identity.server_port = 8443;
  const Learner learner = learner_of(identity);
  EXPECT_EQ(learner.login, "aiko");
  EXPECT_EQ(learner.name, "Aiko Tanaka");
  EXPECT_EQ(learner.home_page, "https://kaban.example:8443");
  identity.server_host = "::1";
  EXPECT_EQ(learner_of(identity).home_page, "https://[::1]:8443");
}

// Lessons on the device: two readable courses share a lesson id; one has a lesson of its own.
class LessonNamesTest : public StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    install("first-aid", {"intro", "bandages"});
    install("shelter", {"intro"});
  }

  void install(const std::string& course, const std::vector<std::string>& lessons) {
    protocol::Manifest m;
    m.course_id = course;
    m.version = 1;
    m.title = "Course " + course;
    m.description = "";
    m.published_at = "2026-11-23T10:00:00Z";
    std::vector<ChunkData> chunks;
    for (const std::string& lesson : lessons) {
      const std::string bytes = course + "/" + lesson + " content";
      const std::string hash = crypto::to_hex(crypto::sha256(crypto::as_bytes(bytes)));
      protocol::ManifestFile f;
      f.path = lesson + ".txt";
      f.media_type = "text/plain";
      f.size = bytes.size();
      f.sha256 = hash;
      f.chunks.push_back({hash, bytes.size()});
      m.files.push_back(f);
      m.lessons.push_back({lesson, "Lesson " + lesson, "document", 5, {f.path}});
      chunks.push_back({hash, bytes});
    }
    protocol::CourseVersionChange change;
    change.course_id = course;
    change.version = 1;
    change.manifest = protocol::manifest_to_json(m);
    change.signature = crypto::to_hex(key_.sign(crypto::as_bytes(change.manifest)));
    Library library(store());
    ASSERT_TRUE(library.add_course_version(change, key_.public_key()));
    ASSERT_TRUE(library.put_chunks(chunks));
    auto done = library.complete_versions();
    ASSERT_TRUE(done) << done.error().message();
  }

  LearningLog log() { return LearningLog(store(), kAiko); }

  crypto::Ed25519PrivateKey key_ = crypto::Ed25519PrivateKey::generate();
};

TEST_F(LessonNamesTest, ALessonIdAloneIsEnoughWhenItIsUnique) {
  auto unique = log().resolve_lesson("bandages");
  ASSERT_TRUE(unique) << unique.error().message();
  EXPECT_EQ(unique.value().course_id, "first-aid");
  EXPECT_EQ(unique.value().lesson_id, "bandages");
  EXPECT_EQ(unique.value().title, "Lesson bandages");

  EXPECT_EQ(log().resolve_lesson("intro").error(), errc::invalid_input) << "in two courses";
  auto named = log().resolve_lesson("shelter/intro");
  ASSERT_TRUE(named);
  EXPECT_EQ(named.value().course_id, "shelter");
  EXPECT_EQ(log().resolve_lesson("shelter/bandages").error(), errc::not_found);
  EXPECT_EQ(log().resolve_lesson("nothing").error(), errc::not_found);
  EXPECT_EQ(log().resolve_lesson("no-course/intro").error(), errc::not_found);
}

}  // namespace
}  // namespace kaban::agent
