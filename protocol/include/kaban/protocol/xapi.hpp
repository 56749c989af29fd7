// Learning statements in the xAPI 1.0.3 shape (https://github.com/adlnet/xAPI-Spec): the agent
// makes them offline, the server keeps them by id and exports them to any LRS. Only the subset
// Kaban writes is accepted: an Agent actor identified by an account, an ADL-style verb, an
// Activity object, an optional result, a timestamp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kaban/result.hpp"

namespace kaban::protocol::xapi {

inline constexpr std::string_view kVersion = "1.0.3";
/// Largest statement accepted, in bytes of JSON.
inline constexpr std::size_t kMaxStatementSize = 16 * 1024;

/// Verbs from the ADL vocabulary (http://adlnet.gov/expapi/verbs/).
namespace verbs {
inline constexpr std::string_view kLaunched = "http://adlnet.gov/expapi/verbs/launched";
inline constexpr std::string_view kProgressed = "http://adlnet.gov/expapi/verbs/progressed";
inline constexpr std::string_view kCompleted = "http://adlnet.gov/expapi/verbs/completed";
inline constexpr std::string_view kPassed = "http://adlnet.gov/expapi/verbs/passed";
inline constexpr std::string_view kFailed = "http://adlnet.gov/expapi/verbs/failed";
}  // namespace verbs

/// The short English name of a verb IRI ("completed"), or "" for one not listed above.
std::string_view verb_name(std::string_view verb_iri);
/// The IRI for a short name ("completed"), or "" if unknown.
std::string_view verb_iri(std::string_view name);

/// The result extension carrying progress as a whole percentage 0..100 (cmi5's).
inline constexpr std::string_view kProgressExtension =
    "https://w3id.org/xapi/cmi5/result/extensions/progress";

/// Activity ids: "urn:kaban:course:COURSE" and "urn:kaban:course:COURSE:lesson:LESSON".
std::string activity_id(std::string_view course_id, std::string_view lesson_id = {});

/// ISO 8601 durations as xAPI uses them: "PT1H2M3S" for 3723 s; "PT0S" for 0.
std::string format_duration(std::int64_t seconds);
/// Reads "PnDTnHnMnS" forms (fractional seconds rounded down); std::nullopt if malformed.
std::optional<std::int64_t> parse_duration(std::string_view text);

/// What the agent records.
struct NewStatement {
  std::string id;         ///< a UUID (protocol::new_uuid())
  std::string login;      ///< actor account name
  std::string user_name;  ///< actor name
  std::string home_page;  ///< actor account homePage, "https://HOST:PORT" of the server
  std::string verb;       ///< a verb IRI
  std::string course_id;
  std::string lesson_id;     ///< "" for the course itself
  std::string object_name;   ///< the lesson or course title, for the activity definition
  std::int64_t timestamp = 0;  ///< when it happened, Unix seconds
  std::optional<int> progress;  ///< 0..100
  std::optional<bool> completion;
  std::optional<bool> success;
  std::optional<double> score_scaled;  ///< -1..1
  std::optional<std::int64_t> duration_seconds;
};

/// The statement as canonical JSON text: object keys in byte order, no spaces. The same
/// NewStatement always gives the same text.
std::string make_statement(const NewStatement& s);

/// What Kaban reads out of a statement.
struct StatementFacts {
  std::string id;
  std::string login;       ///< actor.account.name
  std::string user_name;   ///< actor.name ("" if absent)
  std::string verb;        ///< verb.id
  std::string object_id;   ///< object.id
  std::string course_id;   ///< from a Kaban activity id; "" for another activity
  std::string lesson_id;   ///< "" for a course or another activity
  std::int64_t timestamp = 0;
  std::optional<int> progress;
  std::optional<bool> completion;
  std::optional<bool> success;
  std::optional<double> score_scaled;
  std::optional<std::int64_t> duration_seconds;
  /// The statement re-serialised canonically (keys in byte order, no spaces): two statements are
  /// "the same content" (xAPI's idempotency rule) when these texts are equal.
  std::string canonical;
};

/// Validates `json` (at most kMaxStatementSize) as a statement Kaban accepts: id a UUID; actor
/// {"objectType":"Agent"?, "name"?, "account":{"homePage": IRI, "name": login}}; verb {"id": IRI,
/// "display"?}; object {"objectType":"Activity"?, "id": IRI, "definition"?}; result? with
/// score.scaled in -1..1, duration ISO 8601, the progress extension 0..100; timestamp RFC 3339
/// (any offset); "version" if present starting "1.0". Unknown top-level properties other than
/// "context", "stored", "authority", "version", "attachments" are refused. errc and `why`
/// name the property.
Result<StatementFacts> read_statement(std::string_view json, std::string* why = nullptr);

}  // namespace kaban::protocol::xapi
