#include "kaban/protocol/xapi.hpp"

#include <algorithm>
#include <array>
#include <initializer_list>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "wire_limits.hpp"

namespace kaban::protocol::xapi {
namespace {

using detail::JsonReader;
using detail::kUuidSize;
using detail::Unknown;
using nlohmann::json;

constexpr std::size_t kMaxIri = 2048;
constexpr std::size_t kMaxTimestamp = 64;
constexpr std::size_t kMaxDuration = 64;
constexpr std::size_t kMaxVersion = 32;
constexpr std::size_t kMaxObjectType = 32;
constexpr std::size_t kMaxDisplayText = 1024;
constexpr std::size_t kMaxResponse = 4096;
constexpr std::size_t kMaxAttachments = 100;
constexpr int kMaxProgress = 100;
constexpr std::string_view kLanguage = "en-US";
constexpr std::string_view kCoursePrefix = "urn:kaban:course:";
constexpr std::string_view kLessonInfix = ":lesson:";

constexpr std::int64_t kSecondsPerMinute = 60;
constexpr std::int64_t kSecondsPerHour = 3600;
constexpr std::int64_t kSecondsPerDay = 86'400;
// Twelve digits per component keep the largest total (10^12 days) far inside int64.
constexpr std::size_t kMaxDurationDigits = 12;

struct Verb {
  std::string_view iri;
  std::string_view name;
};
constexpr std::array<Verb, 5> kVerbs = {{{verbs::kLaunched, "launched"},
                                         {verbs::kProgressed, "progressed"},
                                         {verbs::kCompleted, "completed"},
                                         {verbs::kPassed, "passed"},
                                         {verbs::kFailed, "failed"}}};

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// An absolute IRI as far as Kaban needs one: a scheme, a colon and something after it, no
// spaces or control characters (RFC 3987 forbids them unescaped).
bool is_iri(std::string_view text) {
  if (text.size() > kMaxIri || text.empty() || !is_alpha(text.front()))
    return false;
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon + 1 == text.size())
    return false;
  const bool scheme_ok = std::all_of(
      text.begin(), text.begin() + static_cast<std::ptrdiff_t>(colon),
      [](char c) { return is_alpha(c) || is_digit(c) || c == '+' || c == '.' || c == '-'; });
  return scheme_ok && std::none_of(text.begin(), text.end(), [](char c) {
           const auto byte = static_cast<unsigned char>(c);
           return byte <= 0x20 || byte == 0x7F;
         });
}

bool has(const json& object, std::string_view key) {
  const auto it = object.find(key);
  return it != object.end() && !it->is_null();
}

// Hands a nested reader's first problem to its parent, keeping its errc.
void absorb(JsonReader& inner, JsonReader& outer) {
  std::string why;
  if (const Result<void> done = inner.finish(&why); !done)
    outer.fail(static_cast<errc>(done.error().value()), why);
}

// An xAPI language map: an object of language tag to text.
void read_language_map(JsonReader& r, std::string_view key) {
  const json* map = r.object(key, /*required=*/false);
  if (!map)
    return;
  for (const auto& entry : map->items()) {
    if (!entry.value().is_string() ||
        entry.value().get_ref<const std::string&>().size() > kMaxDisplayText) {
      r.fail(errc::invalid_value, r.where() + ": \"" + std::string(key) +
                                      "\" must map languages to text of at most " +
                                      std::to_string(kMaxDisplayText) + " bytes");
      return;
    }
  }
}

// "objectType" is optional in xAPI, but when present it must be `expected`.
void read_object_type(JsonReader& r, const json& j, std::string_view expected) {
  const std::string type = r.text("objectType", kMaxObjectType, /*required=*/false);
  if (r.ok() && has(j, "objectType") && type != expected)
    r.fail(errc::invalid_value,
           r.where() + ": \"objectType\" must be \"" + std::string(expected) + "\"");
}

std::string read_iri(JsonReader& r, std::string_view key) {
  std::string iri = r.text(key, kMaxIri);
  if (r.ok() && !is_iri(iri))
    r.fail(errc::invalid_value, r.where() + ": \"" + std::string(key) + "\" is not an IRI");
  return iri;
}

void read_actor(const json& j, StatementFacts& f, JsonReader& statement) {
  JsonReader r(j, "actor", Unknown::refuse);
  read_object_type(r, j, "Agent");
  f.user_name = r.text("name", kMaxDisplayText, /*required=*/false);
  if (const json* account = r.object("account")) {
    JsonReader a(*account, "actor.account", Unknown::refuse);
    read_iri(a, "homePage");
    f.login = a.text("name", kMaxLoginSize);
    if (a.ok() && !is_valid_login(f.login))
      a.fail(errc::invalid_value, "actor.account: \"name\" is not a valid login");
    absorb(a, r);
  }
  absorb(r, statement);
}

void read_verb(const json& j, StatementFacts& f, JsonReader& statement) {
  JsonReader r(j, "verb", Unknown::refuse);
  f.verb = read_iri(r, "id");
  read_language_map(r, "display");
  absorb(r, statement);
}

// Splits a Kaban activity id; false for one that uses Kaban's prefix but is malformed.
bool read_activity_id(std::string_view id, std::string& course, std::string& lesson) {
  if (!id.starts_with(kCoursePrefix))
    return true;
  std::string_view rest = id.substr(kCoursePrefix.size());
  std::string_view lesson_part;
  if (const std::size_t infix = rest.find(kLessonInfix); infix != std::string_view::npos) {
    lesson_part = rest.substr(infix + kLessonInfix.size());
    rest = rest.substr(0, infix);
    if (!is_valid_id(lesson_part))
      return false;
  }
  if (!is_valid_id(rest))
    return false;
  course = std::string(rest);
  lesson = std::string(lesson_part);
  return true;
}

void read_object(const json& j, StatementFacts& f, JsonReader& statement) {
  JsonReader r(j, "object", Unknown::refuse);
  read_object_type(r, j, "Activity");
  f.object_id = read_iri(r, "id");
  if (r.ok() && !read_activity_id(f.object_id, f.course_id, f.lesson_id))
    r.fail(errc::invalid_value, "object: \"id\" starts like a Kaban course (" +
                                    std::string(kCoursePrefix) +
                                    ") but does not name a valid course or lesson");
  // A definition may carry anything xAPI allows (type, description, extensions...); only its
  // name is shown, so only the name is checked.
  if (const json* definition = r.object("definition", /*required=*/false)) {
    JsonReader d(*definition, "object.definition", Unknown::ignore);
    read_language_map(d, "name");
    absorb(d, r);
  }
  absorb(r, statement);
}

void read_score(const json& j, StatementFacts& f, JsonReader& result) {
  if (!j.is_object()) {
    result.fail(errc::malformed, "result: \"score\" must be an object");
    return;
  }
  for (const auto& entry : j.items()) {
    const std::string& key = entry.key();
    if (key != "scaled" && key != "raw" && key != "min" && key != "max") {
      result.fail(errc::unknown_field, "result.score: unknown field \"" + key + "\"");
      return;
    }
    if (!entry.value().is_number()) {
      result.fail(errc::malformed, "result.score: \"" + key + "\" must be a number");
      return;
    }
  }
  if (j.contains("scaled")) {
    const double scaled = j["scaled"].get<double>();
    if (scaled < -1.0 || scaled > 1.0) {
      result.fail(errc::invalid_value, "result.score: \"scaled\" must be between -1 and 1");
      return;
    }
    f.score_scaled = scaled;
  }
  const auto number = [&](const char* key) { return j[key].get<double>(); };
  if (j.contains("min") && j.contains("max") && number("min") > number("max"))
    result.fail(errc::invalid_value, "result.score: \"min\" is greater than \"max\"");
  else if (j.contains("raw") && ((j.contains("min") && number("raw") < number("min")) ||
                                 (j.contains("max") && number("raw") > number("max"))))
    result.fail(errc::invalid_value, "result.score: \"raw\" is outside \"min\"..\"max\"");
}

void read_extensions(const json& j, StatementFacts& f, JsonReader& r) {
  for (const auto& entry : j.items()) {
    if (!is_iri(entry.key())) {
      r.fail(errc::invalid_value, "result.extensions: a key is not an IRI");
      return;
    }
  }
  const auto progress = j.find(kProgressExtension);
  if (progress == j.end())
    return;
  if (!progress->is_number_integer() ||
      (progress->is_number_unsigned() &&
       progress->get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxProgress)) ||
      progress->get<std::int64_t>() < 0 || progress->get<std::int64_t>() > kMaxProgress) {
    r.fail(errc::invalid_value,
           "result.extensions: progress must be a whole number between 0 and 100");
    return;
  }
  f.progress = static_cast<int>(progress->get<std::int64_t>());
}

void read_result(const json& j, StatementFacts& f, JsonReader& statement) {
  JsonReader r(j, "result", Unknown::refuse);
  const bool completion = r.boolean("completion", /*required=*/false);
  if (r.ok() && has(j, "completion"))
    f.completion = completion;
  const bool success = r.boolean("success", /*required=*/false);
  if (r.ok() && has(j, "success"))
    f.success = success;
  r.text("response", kMaxResponse, /*required=*/false);
  const std::string duration = r.text("duration", kMaxDuration, /*required=*/false);
  if (r.ok() && has(j, "duration")) {
    if (const std::optional<std::int64_t> seconds = parse_duration(duration))
      f.duration_seconds = *seconds;
    else
      r.fail(errc::invalid_value, "result: \"duration\" is not an ISO 8601 duration");
  }
  if (const json* score = r.object("score", /*required=*/false); score && r.ok())
    read_score(*score, f, r);
  if (const json* extensions = r.object("extensions", /*required=*/false); extensions && r.ok())
    read_extensions(*extensions, f, r);
  absorb(r, statement);
}

// Reads "<digits>" then `unit` at `pos`; the digits' value, or std::nullopt with pos unchanged
// when the next component does not end in `unit`.
std::optional<std::int64_t> read_component(std::string_view text, std::size_t& pos, char unit,
                                           bool& malformed) {
  std::size_t end = pos;
  while (end < text.size() && is_digit(text[end]))
    ++end;
  if (end == pos || end == text.size() || text[end] != unit)
    return std::nullopt;
  if (end - pos > kMaxDurationDigits) {
    malformed = true;
    return std::nullopt;
  }
  std::int64_t value = 0;
  for (std::size_t i = pos; i < end; ++i)
    value = value * 10 + (text[i] - '0');
  pos = end + 1;
  return value;
}

}  // namespace

std::string_view verb_name(std::string_view verb_iri) {
  for (const Verb& v : kVerbs)
    if (v.iri == verb_iri)
      return v.name;
  return {};
}

std::string_view verb_iri(std::string_view name) {
  for (const Verb& v : kVerbs)
    if (v.name == name)
      return v.iri;
  return {};
}

std::string activity_id(std::string_view course_id, std::string_view lesson_id) {
  std::string id(kCoursePrefix);
  id.append(course_id);
  if (!lesson_id.empty())
    id.append(kLessonInfix).append(lesson_id);
  return id;
}

std::string format_duration(std::int64_t seconds) {
  if (seconds <= 0)
    return "PT0S";
  // Hours rather than days: a day is not always 24 hours, and xAPI tools read "PT26H" fine.
  const std::int64_t hours = seconds / kSecondsPerHour;
  const std::int64_t minutes = seconds % kSecondsPerHour / kSecondsPerMinute;
  const std::int64_t rest = seconds % kSecondsPerMinute;
  std::string text = "PT";
  if (hours > 0)
    text += std::to_string(hours) + "H";
  if (minutes > 0)
    text += std::to_string(minutes) + "M";
  if (rest > 0)
    text += std::to_string(rest) + "S";
  return text;
}

std::optional<std::int64_t> parse_duration(std::string_view text) {
  if (!text.starts_with('P'))
    return std::nullopt;
  std::size_t pos = 1;
  bool malformed = false;
  bool any = false;
  std::int64_t total = 0;
  if (const auto days = read_component(text, pos, 'D', malformed)) {
    total += *days * kSecondsPerDay;
    any = true;
  }
  if (pos < text.size() && text[pos] == 'T') {
    ++pos;
    bool any_time = false;
    constexpr std::pair<char, std::int64_t> kUnits[] = {{'H', kSecondsPerHour},
                                                        {'M', kSecondsPerMinute}};
    for (const auto& [unit, scale] : kUnits) {
      if (const auto value = read_component(text, pos, unit, malformed)) {
        total += *value * scale;
        any_time = true;
      }
    }
    // Seconds may have a fraction, which is dropped: "PT1.5S" is one whole second.
    std::size_t end = pos;
    while (end < text.size() && is_digit(text[end]))
      ++end;
    if (end > pos) {
      if (end - pos > kMaxDurationDigits)
        return std::nullopt;
      std::int64_t whole = 0;
      for (std::size_t i = pos; i < end; ++i)
        whole = whole * 10 + (text[i] - '0');
      if (end < text.size() && (text[end] == '.' || text[end] == ',')) {
        const std::size_t fraction = ++end;
        while (end < text.size() && is_digit(text[end]))
          ++end;
        if (end == fraction)
          return std::nullopt;
      }
      if (end == text.size() || text[end] != 'S')
        return std::nullopt;
      total += whole;
      pos = end + 1;
      any_time = true;
    }
    if (!any_time)
      return std::nullopt;
    any = true;
  }
  if (malformed || !any || pos != text.size())
    return std::nullopt;
  return total;
}

std::string make_statement(const NewStatement& s) {
  json actor = {{"objectType", "Agent"},
                {"account", {{"homePage", s.home_page}, {"name", s.login}}}};
  if (!s.user_name.empty())
    actor["name"] = s.user_name;
  json verb = {{"id", s.verb}};
  if (const std::string_view name = verb_name(s.verb); !name.empty())
    verb["display"] = {{kLanguage, name}};
  json object = {{"objectType", "Activity"}, {"id", activity_id(s.course_id, s.lesson_id)}};
  if (!s.object_name.empty())
    object["definition"] = {{"name", {{kLanguage, s.object_name}}}};
  json result = json::object();
  if (s.completion)
    result["completion"] = *s.completion;
  if (s.success)
    result["success"] = *s.success;
  if (s.score_scaled)
    result["score"] = {{"scaled", *s.score_scaled}};
  if (s.duration_seconds)
    result["duration"] = format_duration(*s.duration_seconds);
  if (s.progress)
    result["extensions"] = {{kProgressExtension, *s.progress}};
  // No "version": the LRS that stores the statement sets it.
  json statement = {{"id", s.id},
                    {"actor", std::move(actor)},
                    {"verb", std::move(verb)},
                    {"object", std::move(object)},
                    {"timestamp", format_timestamp(s.timestamp)}};
  if (!result.empty())
    statement["result"] = std::move(result);
  return detail::dump_json(statement);
}

Result<StatementFacts> read_statement(std::string_view text, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_nested_json(text, kMaxStatementSize, j, why));
  JsonReader r(j, "statement", Unknown::refuse);
  StatementFacts f;
  f.id = r.text("id", kUuidSize);
  if (r.ok() && !is_valid_uuid(f.id))
    r.fail(errc::invalid_value, "statement: \"id\" is not a UUID");
  if (const json* actor = r.object("actor"); actor && r.ok())
    read_actor(*actor, f, r);
  if (const json* verb = r.object("verb"); verb && r.ok())
    read_verb(*verb, f, r);
  if (const json* object = r.object("object"); object && r.ok())
    read_object(*object, f, r);
  if (const json* result = r.object("result", /*required=*/false); result && r.ok())
    read_result(*result, f, r);
  const std::string timestamp = r.text("timestamp", kMaxTimestamp);
  if (r.ok()) {
    if (const std::optional<std::int64_t> t = parse_timestamp(timestamp))
      f.timestamp = *t;
    else
      r.fail(errc::invalid_value, "statement: \"timestamp\" is not an RFC 3339 date-time");
  }
  const std::string version = r.text("version", kMaxVersion, /*required=*/false);
  if (r.ok() && has(j, "version") && version != "1.0" && !version.starts_with("1.0."))
    r.fail(errc::invalid_value, "statement: \"version\" is not 1.0.x");
  // Properties an LRS or another tool may add; Kaban keeps them but reads nothing from them.
  r.object("context", /*required=*/false);
  r.object("authority", /*required=*/false);
  r.text("stored", kMaxTimestamp, /*required=*/false);
  r.array("attachments", kMaxAttachments, /*required=*/false);
  KABAN_TRYV(r.finish(why));
  f.canonical = detail::dump_json(j);
  return f;
}

}  // namespace kaban::protocol::xapi
