#include "kaban/agent/learning_log.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "kaban/agent/error.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/xapi.hpp"
#include "statement_rows.hpp"

namespace kaban::agent {
namespace detail {

StatementStored store_statement(SQLite::Database& db, std::string_view text, std::string_view login,
                                Uploaded uploaded) {
  auto read = protocol::xapi::read_statement(text);
  if (!read || read.value().login != login)
    return StatementStored::skipped;
  const protocol::xapi::StatementFacts& facts = read.value();
  SQLite::Statement held(db, "SELECT 1 FROM statements WHERE id = ?");
  held.bind(1, facts.id);
  if (held.executeStep()) {
    held.reset();
    // xAPI ids are unique: the first text kept for an id stays; only its upload flag moves.
    if (uploaded == Uploaded::yes) {
      SQLite::Statement mark(db, "UPDATE statements SET uploaded = 1 WHERE id = ?");
      mark.bind(1, facts.id);
      mark.exec();
    }
    return StatementStored::held;
  }
  SQLite::Statement insert(db, R"sql(
    INSERT INTO statements (id, statement, course_id, lesson_id, verb, timestamp, progress,
                            completion, success, score, duration, uploaded)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  )sql");
  insert.bind(1, facts.id);
  insert.bind(2, facts.canonical);
  insert.bind(3, facts.course_id);
  insert.bind(4, facts.lesson_id);
  insert.bind(5, facts.verb);
  insert.bind(6, facts.timestamp);
  if (facts.progress)
    insert.bind(7, *facts.progress);
  if (facts.completion)
    insert.bind(8, *facts.completion ? 1 : 0);
  if (facts.success)
    insert.bind(9, *facts.success ? 1 : 0);
  if (facts.score_scaled)
    insert.bind(10, *facts.score_scaled);
  if (facts.duration_seconds)
    insert.bind(11, *facts.duration_seconds);
  insert.bind(12, uploaded == Uploaded::yes ? 1 : 0);
  insert.exec();
  return StatementStored::added;
}

}  // namespace detail

namespace {

// No statement Kaban makes needs more; larger values are typing mistakes.
constexpr std::int64_t kMaxSpanSeconds = 366LL * 24 * 3600;

}  // namespace

Learner learner_of(const DeviceIdentity& identity) {
  const bool ipv6 = identity.server_host.find(':') != std::string::npos;
  return {identity.login, identity.user_name,
          "https://" + (ipv6 ? "[" + identity.server_host + "]" : identity.server_host) + ":" +
              std::to_string(identity.server_port)};
}

std::optional<std::int64_t> parse_time_span(std::string_view text) {
  if (text.starts_with('P'))
    return protocol::xapi::parse_duration(text);
  // Units in falling order, each at most once: "1h30m", "45m", "90s", "1h5s".
  constexpr std::string_view kUnits = "hms";
  constexpr std::int64_t kUnitSeconds[] = {3600, 60, 1};
  std::size_t next_unit = 0;
  std::int64_t total = 0;
  std::size_t i = 0;
  if (text.empty())
    return std::nullopt;
  while (i < text.size()) {
    std::int64_t number = 0;
    std::size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (++digits > 9)
        return std::nullopt;
      number = number * 10 + (text[i] - '0');
      ++i;
    }
    if (digits == 0 || i == text.size())
      return std::nullopt;
    const std::size_t unit = kUnits.find(text[i], next_unit);
    if (unit == std::string_view::npos)
      return std::nullopt;
    total += number * kUnitSeconds[unit];
    next_unit = unit + 1;
    ++i;
  }
  if (total > kMaxSpanSeconds)
    return std::nullopt;
  return total;
}

LearningLog::LearningLog(Store& store, Learner learner)
    : store_(store), learner_(std::move(learner)) {}

Result<LessonTarget> LearningLog::resolve_lesson(std::string_view text) {
  Library library(store_);
  const std::size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    const std::string course(text.substr(0, slash));
    const std::string_view lesson = text.substr(slash + 1);
    auto lessons = library.lessons(course);
    if (!lessons)
      return lessons.error();
    for (const LessonInfo& l : lessons.value()) {
      if (l.id == lesson)
        return LessonTarget{course, l.id, l.title};
    }
    return errc::not_found;
  }
  KABAN_TRY(courses, library.courses());
  std::optional<LessonTarget> found;
  for (const CourseInfo& c : courses) {
    if (!c.ready)
      continue;
    KABAN_TRY(lessons, library.lessons(c.id));
    for (const LessonInfo& l : lessons) {
      if (l.id != text)
        continue;
      if (found)
        return errc::invalid_input;
      found = LessonTarget{c.id, l.id, l.title};
    }
  }
  if (!found)
    return errc::not_found;
  return *found;
}

Result<std::string> LearningLog::record_progress(const LessonTarget& lesson, int percent,
                                                 std::optional<std::int64_t> duration_seconds,
                                                 std::int64_t at) {
  if (percent < 0 || percent > 100)
    return errc::invalid_input;
  return record(lesson, protocol::xapi::verbs::kProgressed, percent, std::nullopt, std::nullopt,
                duration_seconds, at);
}

Result<std::string> LearningLog::record_completion(const LessonTarget& lesson,
                                                   std::optional<double> score_scaled,
                                                   std::optional<std::int64_t> duration_seconds,
                                                   std::int64_t at) {
  if (score_scaled && !(*score_scaled >= 0.0 && *score_scaled <= 1.0))
    return errc::invalid_input;
  return record(lesson, protocol::xapi::verbs::kCompleted, std::nullopt, true, score_scaled,
                duration_seconds, at);
}

Result<std::string> LearningLog::record(const LessonTarget& lesson, std::string_view verb,
                                        std::optional<int> percent, std::optional<bool> completion,
                                        std::optional<double> score_scaled,
                                        std::optional<std::int64_t> duration_seconds,
                                        std::int64_t at) {
  if (duration_seconds && *duration_seconds < 0)
    return errc::invalid_input;
  protocol::xapi::NewStatement s;
  s.id = protocol::new_uuid();
  s.login = learner_.login;
  s.user_name = learner_.name;
  s.home_page = learner_.home_page;
  s.verb = std::string(verb);
  s.course_id = lesson.course_id;
  s.lesson_id = lesson.lesson_id;
  s.object_name = lesson.title.empty() ? lesson.lesson_id : lesson.title;
  s.timestamp = at;
  s.progress = percent;
  s.completion = completion;
  s.score_scaled = score_scaled;
  s.duration_seconds = duration_seconds;
  const std::string text = protocol::xapi::make_statement(s);
  // Read back with the same rules the server applies, so a statement the server would refuse
  // is refused here, while the person is still at the keyboard.
  if (!protocol::xapi::read_statement(text))
    return errc::invalid_input;
  try {
    SQLite::Transaction tx(store_.db());
    if (detail::store_statement(store_.db(), text, learner_.login, detail::Uploaded::no) !=
        detail::StatementStored::added)
      return errc::invalid_input;
    protocol::OutboxItem item;
    item.id = s.id;
    item.kind = "statement";
    item.statement = text;
    KABAN_TRYV(Outbox(store_).enqueue(std::move(item), at));
    tx.commit();
    return s.id;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::size_t> LearningLog::apply_echoed(std::span<const std::string> statements) {
  try {
    SQLite::Transaction tx(store_.db());
    std::size_t added = 0;
    for (const std::string& text : statements) {
      if (detail::store_statement(store_.db(), text, learner_.login, detail::Uploaded::yes) ==
          detail::StatementStored::added)
        ++added;
    }
    tx.commit();
    return added;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<LessonProgress>> LearningLog::summary() {
  try {
    SQLite::Statement q(store_.db(), R"sql(
      SELECT s.course_id, s.lesson_id, max(coalesce(s.progress, 0)),
             min(CASE WHEN s.completion = 1 OR s.verb = ?1 THEN s.timestamp END),
             max(s.score), sum(coalesce(s.duration, 0)), max(s.timestamp), count(*),
             sum(s.uploaded = 0 AND coalesce(o.state, '') != 'rejected'),
             sum(coalesce(o.state, '') = 'rejected')
      FROM statements s LEFT JOIN outbox o ON o.id = s.id
      WHERE s.course_id != ''
      GROUP BY s.course_id, s.lesson_id
      ORDER BY s.course_id, s.lesson_id
    )sql");
    q.bind(1, std::string(protocol::xapi::verbs::kCompleted));
    std::vector<LessonProgress> out;
    while (q.executeStep()) {
      LessonProgress p;
      p.course_id = q.getColumn(0).getString();
      p.lesson_id = q.getColumn(1).getString();
      p.best_percent = q.getColumn(2).getInt();
      p.completed_at = q.getColumn(3).isNull() ? 0 : q.getColumn(3).getInt64();
      if (p.completed_at != 0)
        p.best_percent = 100;
      if (!q.getColumn(4).isNull())
        p.best_score = q.getColumn(4).getDouble();
      p.seconds_spent = q.getColumn(5).getInt64();
      p.last_at = q.getColumn(6).getInt64();
      p.statements = static_cast<std::size_t>(q.getColumn(7).getInt64());
      p.pending_upload = static_cast<std::size_t>(q.getColumn(8).getInt64());
      p.rejected = static_cast<std::size_t>(q.getColumn(9).getInt64());
      out.push_back(std::move(p));
    }
    return out;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

}  // namespace kaban::agent
