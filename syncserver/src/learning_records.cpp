#include "kaban/server/learning_records.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <type_traits>
#include <utility>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include <nlohmann/json.hpp>

#include "inbox_sequence.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace {

namespace xapi = protocol::xapi;
using nlohmann::json;

constexpr int kFullProgress = 100;

// A statement "completes" its activity when its verb is completed or passed, or its result says
// completion: true (xAPI keeps completion and success apart, so a failed attempt may complete).
constexpr const char* kCompletes = "(verb IN (:completed, :passed) OR coalesce(completion, 0) = 1)";

void bind_completion_verbs(SQLite::Statement& query) {
  query.bind(":completed", std::string(xapi::verbs::kCompleted));
  query.bind(":passed", std::string(xapi::verbs::kPassed));
}

template <class T>
void bind_optional(SQLite::Statement& s, int index, const std::optional<T>& v) {
  if (!v)
    s.bind(index);
  else if constexpr (std::is_same_v<T, bool>)
    s.bind(index, *v ? 1 : 0);
  else if constexpr (std::is_same_v<T, double>)
    s.bind(index, *v);
  else
    s.bind(index, static_cast<std::int64_t>(*v));
}

// What the statements of one person say about one activity (a lesson, or the course itself).
struct ActivityFacts {
  bool completed = false;
  std::int64_t first_completed_at = 0;
  int best_progress = 0;
};

// One person's statements about one course.
struct CourseFacts {
  ActivityFacts course;
  std::map<std::string, ActivityFacts> lessons;
  std::int64_t seconds = 0;
};

struct CourseInfo {
  std::string id;
  std::string title;
  std::vector<std::string> lesson_ids;
};

}  // namespace

Result<StatementOutcome> LearningRecords::store(const xapi::StatementFacts& facts,
                                                std::string_view device_id, UnixTime now) {
  try {
    SQLite::Statement existing(db_, "SELECT statement FROM statements WHERE id = ?");
    existing.bind(1, facts.id);
    if (existing.executeStep()) {
      return existing.getColumn(0).getString() == facts.canonical ? StatementOutcome::duplicate
                                                                  : StatementOutcome::conflict;
    }
    SQLite::Statement insert(
        db_,
        "INSERT INTO statements(seq, id, login, device_id, statement, verb, object_id, course_id, "
        "lesson_id, timestamp, progress, completion, success, score, duration_seconds, "
        "stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insert.bind(1, detail::next_inbox_seq(db_));
    insert.bind(2, facts.id);
    insert.bind(3, facts.login);
    insert.bind(4, std::string(device_id));
    insert.bind(5, facts.canonical);
    insert.bind(6, facts.verb);
    insert.bind(7, facts.object_id);
    insert.bind(8, facts.course_id);
    insert.bind(9, facts.lesson_id);
    insert.bind(10, facts.timestamp);
    bind_optional(insert, 11, facts.progress);
    bind_optional(insert, 12, facts.completion);
    bind_optional(insert, 13, facts.success);
    bind_optional(insert, 14, facts.score_scaled);
    bind_optional(insert, 15, facts.duration_seconds);
    insert.bind(16, to_unix(now));
    insert.exec();
    return StatementOutcome::stored;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::vector<CourseCompletion>> LearningRecords::completion_report(
    std::string_view course_id) {
  try {
    std::vector<CourseInfo> courses;
    {
      SQLite::Statement query(db_,
                              "SELECT c.id, c.title, v.manifest FROM courses c "
                              "JOIN course_versions v ON v.course_id = c.id AND v.version = "
                              "(SELECT max(version) FROM course_versions WHERE course_id = c.id) "
                              "WHERE :course = '' OR c.id = :course ORDER BY c.id");
      query.bind(":course", std::string(course_id));
      while (query.executeStep()) {
        auto manifest = protocol::parse_manifest(query.getColumn(2).getString());
        if (!manifest)
          return errc::data_dir_damaged;
        CourseInfo info{query.getColumn(0).getString(), query.getColumn(1).getString(), {}};
        for (const auto& lesson : manifest.value().lessons)
          info.lesson_ids.push_back(lesson.id);
        courses.push_back(std::move(info));
      }
    }
    if (!course_id.empty() && courses.empty())
      return errc::no_such_course;

    // (course, login) -> what that person's statements say. Only people with statements appear.
    std::map<std::pair<std::string, std::string>, CourseFacts> facts;
    {
      SQLite::Statement query(db_,
                              std::string("SELECT course_id, login, lesson_id, max(") + kCompletes +
                                  "), min(CASE WHEN " + kCompletes +
                                  " THEN timestamp END), max(coalesce(progress, 0)), "
                                  "sum(coalesce(duration_seconds, 0)) FROM statements "
                                  "WHERE course_id != '' AND (:course = '' OR course_id = :course) "
                                  "GROUP BY course_id, login, lesson_id");
      query.bind(":course", std::string(course_id));
      bind_completion_verbs(query);
      while (query.executeStep()) {
        CourseFacts& f = facts[{query.getColumn(0).getString(), query.getColumn(1).getString()}];
        const std::string lesson = query.getColumn(2).getString();
        ActivityFacts& activity = lesson.empty() ? f.course : f.lessons[lesson];
        activity.completed = query.getColumn(3).getInt() != 0;
        activity.first_completed_at = query.getColumn(4).getInt64();
        activity.best_progress = std::clamp(query.getColumn(5).getInt(), 0, kFullProgress);
        f.seconds += query.getColumn(6).getInt64();
      }
    }

    std::vector<std::pair<std::string, std::string>> users;
    {
      SQLite::Statement query(db_, "SELECT login, name FROM users ORDER BY login");
      while (query.executeStep())
        users.emplace_back(query.getColumn(0).getString(), query.getColumn(1).getString());
    }

    std::vector<CourseCompletion> report;
    report.reserve(courses.size() * users.size());
    const CourseFacts nothing;
    for (const CourseInfo& course : courses) {
      for (const auto& [login, name] : users) {
        auto found = facts.find({course.id, login});
        const CourseFacts& f = found == facts.end() ? nothing : found->second;
        CourseCompletion row{login, name, course.id, course.title, 0, 0, f.seconds};
        int sum = 0;
        bool all_lessons = !course.lesson_ids.empty();
        std::int64_t last_lesson_at = 0;
        for (const std::string& lesson : course.lesson_ids) {
          auto it = f.lessons.find(lesson);
          if (it == f.lessons.end()) {
            all_lessons = false;
            continue;
          }
          const ActivityFacts& a = it->second;
          sum += a.completed ? kFullProgress : a.best_progress;
          if (a.completed)
            last_lesson_at = std::max(last_lesson_at, a.first_completed_at);
          else
            all_lessons = false;
        }
        if (!course.lesson_ids.empty())
          row.percent = sum / static_cast<int>(course.lesson_ids.size());
        if (all_lessons)
          row.completed_at = last_lesson_at;
        if (f.course.completed) {
          row.percent = kFullProgress;
          row.completed_at = row.completed_at == 0
                                 ? f.course.first_completed_at
                                 : std::min(row.completed_at, f.course.first_completed_at);
        }
        report.push_back(std::move(row));
      }
    }
    return report;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::size_t> LearningRecords::export_statements(UnixTime since, std::ostream& out) {
  try {
    SQLite::Statement epoch_query(db_, "SELECT value FROM server_meta WHERE key = ?");
    epoch_query.bind(1, kServerEpochKey);
    if (!epoch_query.executeStep())
      return errc::data_dir_damaged;
    const json authority = {{"objectType", "Agent"},
                            {"name", std::string(kAuthorityName)},
                            {"account",
                             {{"homePage", std::string(kAuthorityHomePage)},
                              {"name", epoch_query.getColumn(0).getString()}}}};

    SQLite::Statement query(db_,
                            "SELECT statement, stored_at FROM statements WHERE stored_at >= ? "
                            "ORDER BY stored_at, seq");
    query.bind(1, to_unix(since));
    std::size_t written = 0;
    out << '[';
    while (query.executeStep()) {
      json statement = json::parse(query.getColumn(0).getString());
      if (!statement.is_object())
        return errc::data_dir_damaged;
      // An LRS sets these itself; a device may have sent its own, which are not to be trusted.
      statement["stored"] = protocol::format_timestamp(query.getColumn(1).getInt64());
      statement["authority"] = authority;
      statement["version"] = std::string(xapi::kVersion);
      out << (written == 0 ? "\n" : ",\n") << statement.dump();
      ++written;
    }
    out << (written == 0 ? "]\n" : "\n]\n");
    if (!out)
      return errc::storage_failed;
    return written;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  } catch (const json::exception&) {
    return errc::data_dir_damaged;
  }
}

}  // namespace kaban::server
