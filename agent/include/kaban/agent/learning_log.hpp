// LearningLog: the person's learning progress as xAPI statements, made offline and kept per
// lesson, following the person across their devices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// Who the statements are about: the xAPI actor.
struct Learner {
  std::string login;      ///< account name
  std::string name;       ///< display name
  std::string home_page;  ///< account homePage, "https://HOST:PORT" of the enrolled server
};

/// The enrolled user of `identity` as a Learner (an IPv6 host goes in brackets).
Learner learner_of(const DeviceIdentity& identity);

/// A lesson named on the command line, resolved against the courses on this device.
struct LessonTarget {
  std::string course_id;
  std::string lesson_id;
  std::string title;
};

/// What the person did in one lesson, summed over every statement held (this device's and
/// those echoed from the person's other devices).
struct LessonProgress {
  std::string course_id;
  std::string lesson_id;             ///< "" for statements about the course as a whole
  int best_percent = 0;              ///< the highest progress reported; 100 once completed
  std::int64_t completed_at = 0;     ///< the first completion, 0 if none
  std::optional<double> best_score;  ///< the highest scaled score (0..1) reported, if any
  std::int64_t seconds_spent = 0;    ///< the sum of the statements' durations
  std::int64_t last_at = 0;          ///< the newest statement's time
  std::size_t statements = 0;
  std::size_t pending_upload = 0;  ///< statements the server does not hold yet
  std::size_t rejected = 0;        ///< statements the server refused (see `kaban outbox`)
};

/// "10m", "1h30m", "90s", "2h", or an ISO 8601 duration ("PT25M"): seconds, or std::nullopt if
/// the text is none of these (a bare number has no unit and is refused). Any thread.
std::optional<std::int64_t> parse_time_span(std::string_view text);

/// The statements table of a Store. Recording makes a statement (a new UUID, the learner as
/// actor, the lesson's activity id as object, `at` as timestamp), stores it and queues it in
/// the outbox, in one transaction; the outbox answer marks it uploaded. Statements echoed by
/// the server are stored too, each id once.
///
/// Like Store, a LearningLog is used from one thread at a time; it keeps a reference to the
/// store, which must outlive it. On a store failure (its store_error_code()) nothing of the
/// call is kept.
class LearningLog {
 public:
  LearningLog(Store& store, Learner learner);

  /// "COURSE/LESSON", or "LESSON" alone when exactly one readable course on this device has a
  /// lesson of that id. errc::not_found if no readable course has it; errc::invalid_input if
  /// "LESSON" alone is in several courses (name the course then).
  Result<LessonTarget> resolve_lesson(std::string_view text);

  /// Records verb "progressed" with `percent` (0..100) and, if given, the time spent. Returns
  /// the statement's id. errc::invalid_input for a percent out of range or a negative duration.
  Result<std::string> record_progress(const LessonTarget& lesson, int percent,
                                      std::optional<std::int64_t> duration_seconds,
                                      std::int64_t at);

  /// Records verb "completed" with completion true, the scaled score (0..1) if given and the
  /// time spent if given. Returns the statement's id. errc::invalid_input for a score out of
  /// range or a negative duration.
  Result<std::string> record_completion(const LessonTarget& lesson,
                                        std::optional<double> score_scaled,
                                        std::optional<std::int64_t> duration_seconds,
                                        std::int64_t at);

  /// Stores statements the server echoed (from the person's other devices, or this device's
  /// own coming back) in one transaction: each id once, marked uploaded. Statements that do
  /// not read, or whose actor is not this learner, are skipped. Returns how many were new.
  Result<std::size_t> apply_echoed(std::span<const std::string> statements);

  /// One entry per lesson (course, then lesson order by id) with any statement.
  Result<std::vector<LessonProgress>> summary();

 private:
  Result<std::string> record(const LessonTarget& lesson, std::string_view verb,
                             std::optional<int> percent, std::optional<bool> completion,
                             std::optional<double> score_scaled,
                             std::optional<std::int64_t> duration_seconds, std::int64_t at);

  Store& store_;
  Learner learner_;
};

}  // namespace kaban::agent
