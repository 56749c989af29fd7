// LearningRecords: the xAPI statements devices upload, the completion report the training office
// reads and the export an LRS takes (docs/server-data.md, "Learning records").
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/protocol/xapi.hpp"
#include "kaban/result.hpp"
#include "kaban/server/database.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

/// The authority the export names: {"objectType":"Agent","name":kAuthorityName,
/// "account":{"homePage":kAuthorityHomePage,"name":SERVER_EPOCH}}.
inline constexpr std::string_view kAuthorityName = "Kaban";
inline constexpr std::string_view kAuthorityHomePage = "urn:kaban:server";

/// What store() did with a statement.
enum class StatementOutcome {
  stored,     ///< new: kept under a new inbox sequence
  duplicate,  ///< a statement with this id and the same canonical text is already kept
  conflict,   ///< a statement with this id but other content is kept (xAPI answers 409)
};

/// One person's progress in one course.
struct CourseCompletion {
  std::string login;
  std::string name;
  std::string course_id;
  std::string course_title;
  /// 0..100: the average over the lessons of the course's latest version of each lesson's
  /// progress (100 once completed or passed, else the highest progress reported); 100 if the
  /// course itself was completed or passed.
  int percent = 0;
  /// When the last lesson was first completed, if all were, or when the course itself was first
  /// completed, whichever came first; 0 if neither. The device's time, Unix seconds.
  std::int64_t completed_at = 0;
  std::int64_t time_spent_seconds = 0;  ///< the sum of the statements' durations
};

/// Learning records over one database connection. Not thread-safe: one per connection, used by
/// the connection's thread; the database must outlive it. Every method fails with
/// errc::storage_failed if SQLite fails.
class LearningRecords {
 public:
  explicit LearningRecords(SQLite::Database& db) : db_(db) {}

  /// Keeps a statement `login`'s device `device_id` sent (`facts` from xapi::read_statement,
  /// whose login the caller has checked), unless its id is already kept. Call inside the
  /// caller's write transaction (Messaging::apply_outbox's): it takes an inbox sequence.
  Result<StatementOutcome> store(const protocol::xapi::StatementFacts& facts,
                                 std::string_view device_id, UnixTime now);

  /// Every user's progress in every course (today every course is visible to every user), or
  /// in `course_id` only when it is not empty, by course then login. Fails with
  /// errc::no_such_course for an unknown `course_id`, errc::data_dir_damaged if a stored
  /// manifest does not parse.
  Result<std::vector<CourseCompletion>> completion_report(std::string_view course_id);

  /// Writes every statement stored at or after `since` to `out` as one JSON array, in stored
  /// order, each as an LRS accepts it: the statement plus "stored" (server time, RFC 3339),
  /// "authority" (see kAuthorityName) and "version" (xapi::kVersion). Streams: memory does not
  /// grow with the number of statements. Returns how many were written. Fails with
  /// errc::data_dir_damaged if the server epoch is missing.
  Result<std::size_t> export_statements(UnixTime since, std::ostream& out);

 private:
  SQLite::Database& db_;
};

}  // namespace kaban::server
