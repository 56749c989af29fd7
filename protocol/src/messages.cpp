#include "kaban/protocol/messages.hpp"

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/manifest.hpp"
#include "wire_limits.hpp"

namespace kaban::protocol {
namespace {

using detail::JsonReader;
using detail::kLatestTime;
using detail::Unknown;
using nlohmann::json;

constexpr std::size_t kMaxCode = 64;
constexpr std::size_t kMaxCsr = 8 * 1024;
constexpr std::size_t kMaxPem = 16 * 1024;
constexpr std::size_t kMaxName = 200;
constexpr std::size_t kMaxEpoch = 64;
constexpr std::size_t kMaxCursor = 128;
constexpr std::size_t kMaxSignature = 128;
constexpr std::size_t kMaxErrorMessage = 4096;
constexpr std::size_t kMaxSignedText = kMaxPolicyFileSize;
constexpr std::size_t kMaxFact = 16;
constexpr std::size_t kMaxOsVersionNumber = 64;
constexpr std::int64_t kMaxPinLength = 1024;
constexpr std::size_t kMaxNetwork = 16;
constexpr std::size_t kMaxReasons = 32;
constexpr std::size_t kMaxReasonSetting = 64;
constexpr std::size_t kMaxReasonAction = 16;
constexpr std::size_t kMaxReasonMessage = 1000;
constexpr std::size_t kMaxCommands = 64;
constexpr std::size_t kMaxCommandKind = 16;
constexpr std::size_t kMaxCourses = 10'000;
constexpr std::size_t kMaxCourseId = 64;
constexpr std::string_view kNetworks[] = {"wifi", "cellular", "wired", "unknown"};
constexpr std::string_view kHttpsScheme = "https://";
constexpr std::size_t kMaxHostName = 253;  // RFC 1035
constexpr unsigned kDefaultHttpsPort = 443;
constexpr unsigned kHighestPort = 65535;

json device_json(const DeviceDescription& d) {
  return {{"platform", d.platform},
          {"os_version", d.os_version},
          {"model", d.model},
          {"name", d.name},
          {"agent_version", d.agent_version}};
}

DeviceDescription read_device(JsonReader& parent, Unknown unknown) {
  DeviceDescription d;
  const json* j = parent.object("device");
  if (!j)
    return d;
  JsonReader r(*j, "device", unknown);
  d.platform = r.text("platform", kMaxDeviceFieldSize);
  d.os_version = r.text("os_version", kMaxDeviceFieldSize, false);
  d.model = r.text("model", kMaxDeviceFieldSize, false);
  d.name = r.text("name", kMaxDeviceFieldSize, false);
  d.agent_version = r.text("agent_version", kMaxDeviceFieldSize, false);
  if (r.ok() && !is_known_platform(d.platform))
    r.fail(errc::invalid_value, "device: platform \"" + d.platform +
                                    "\" is not one of linux, macos, windows, android, ios");
  std::string why;
  if (!r.finish(&why))
    parent.fail(errc::invalid_value, why);
  return d;
}

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

json posture_json(const Posture& p) {
  json j = {{"screen_lock", to_string(p.screen_lock)},
            {"disk_encryption", to_string(p.disk_encryption)},
            {"rooted", to_string(p.rooted)},
            {"os_version_number", p.os_version_number},
            {"pin_set", p.pin_set},
            {"pin_length", p.pin_length},
            {"pin_simple", p.pin_simple},
            {"device_time", p.device_time},
            {"clock_rollback_seconds", p.clock_rollback_seconds},
            {"cache_bytes", p.cache_bytes},
            {"network", p.network}};
  if (p.content_waiting_bytes > 0) {
    j["content_waiting_bytes"] = p.content_waiting_bytes;
    j["disk_free_bytes"] = p.disk_free_bytes;
  }
  return j;
}

json reasons_json(std::span<const ComplianceReason> reasons) {
  json list = json::array();
  for (const ComplianceReason& r : reasons)
    list.push_back(
        {{"setting", r.setting}, {"action", to_string(r.action)}, {"message", r.message}});
  return list;
}

// A yes/no/unknown fact of the posture; `not_applicable` only where the caller allows it.
Fact read_fact(JsonReader& r, std::string_view key, bool allow_not_applicable) {
  const std::string text = r.text(key, kMaxFact);
  if (!r.ok())
    return Fact::unknown;
  const std::optional<Fact> fact = parse_fact(text);
  if (!fact || (*fact == Fact::not_applicable && !allow_not_applicable)) {
    r.fail(errc::invalid_value, r.where() + ": \"" + std::string(key) +
                                    "\" is not one of yes, no, unknown" +
                                    (allow_not_applicable ? ", not_applicable" : ""));
    return Fact::unknown;
  }
  return *fact;
}

// An older agent sends no posture: it is read as the defaults (nothing known).
Posture read_posture(JsonReader& parent) {
  Posture p;
  const json* j = parent.object("posture", /*required=*/false);
  if (!j)
    return p;
  JsonReader r(*j, "posture", Unknown::refuse);
  p.screen_lock = read_fact(r, "screen_lock", false);
  p.disk_encryption = read_fact(r, "disk_encryption", false);
  p.rooted = read_fact(r, "rooted", true);
  p.os_version_number = r.text("os_version_number", kMaxOsVersionNumber);
  if (r.ok() && !p.os_version_number.empty() && !is_valid_version(p.os_version_number))
    r.fail(errc::invalid_value,
           "posture: \"os_version_number\" is not a dotted-decimal version such as \"13\" or "
           "\"17.4.1\"");
  p.pin_set = r.boolean("pin_set");
  p.pin_length = static_cast<int>(r.integer("pin_length", 0, kMaxPinLength));
  p.pin_simple = r.boolean("pin_simple");
  p.device_time = r.integer("device_time", 0, kLatestTime);
  p.clock_rollback_seconds = r.integer("clock_rollback_seconds", 0, kLatestTime);
  p.cache_bytes = static_cast<std::uint64_t>(r.integer("cache_bytes", 0, INT64_MAX));
  p.network = r.text("network", kMaxNetwork);
  p.content_waiting_bytes =
      static_cast<std::uint64_t>(r.integer("content_waiting_bytes", 0, INT64_MAX, false));
  p.disk_free_bytes = static_cast<std::uint64_t>(r.integer("disk_free_bytes", 0, INT64_MAX, false));
  if (r.ok() &&
      std::find(std::begin(kNetworks), std::end(kNetworks), p.network) == std::end(kNetworks))
    r.fail(errc::invalid_value,
           "posture: \"network\" is not one of wifi, cellular, wired, unknown");
  std::string why;
  if (const Result<void> done = r.finish(&why); !done)
    parent.fail(static_cast<errc>(done.error().value()), why);
  return p;
}

json signed_json(const SignedText& s) {
  return {{"text", s.text}, {"signature", s.signature}};
}

// A signed document of an answer; absent (an older server) reads as empty. Its signature is
// checked by verify_text, not here.
SignedText read_signed(JsonReader& parent, std::string_view key) {
  SignedText s;
  const json* j = parent.object(key, /*required=*/false);
  if (!j)
    return s;
  JsonReader r(*j, parent.where() + " " + std::string(key), Unknown::ignore);
  s.text = r.text("text", kMaxSignedText);
  s.signature = r.text("signature", kMaxSignature);
  std::string why;
  if (const Result<void> done = r.finish(&why); !done)
    parent.fail(static_cast<errc>(done.error().value()), why);
  return s;
}

// An optional SHA-256 in hex ("" when absent, from an older peer).
std::string read_hash(JsonReader& r, std::string_view key) {
  std::string hash = r.text(key, 64, /*required=*/false);
  if (r.ok() && !hash.empty() && !is_sha256_hex(hash))
    r.fail(errc::invalid_value,
           r.where() + ": \"" + std::string(key) + "\" is not 64 lower-case hex digits");
  return hash;
}

std::vector<ComplianceReason> read_reasons(JsonReader& r) {
  std::vector<ComplianceReason> reasons;
  const json* list = r.array("reasons", kMaxReasons, /*required=*/false);
  if (!list)
    return reasons;
  for (const json& item : *list) {
    JsonReader rr(item, "reason " + std::to_string(reasons.size() + 1), Unknown::ignore);
    ComplianceReason reason;
    reason.setting = rr.text("setting", kMaxReasonSetting);
    const std::string action = rr.text("action", kMaxReasonAction);
    reason.message = rr.text("message", kMaxReasonMessage);
    if (rr.ok()) {
      if (const auto a = parse_compliance_action(action))
        reason.action = *a;
      else
        rr.fail(errc::invalid_value,
                rr.where() + ": \"action\" is not one of none, warn, block, wipe");
    }
    std::string why;
    if (const Result<void> done = rr.finish(&why); !done) {
      r.fail(static_cast<errc>(done.error().value()), why);
      break;
    }
    reasons.push_back(std::move(reason));
  }
  return reasons;
}

// IT's commands, oldest first. A kind this agent does not know (from a newer server) is skipped.
std::vector<DeviceCommand> read_commands(JsonReader& r) {
  std::vector<DeviceCommand> commands;
  const json* list = r.array("commands", kMaxCommands, /*required=*/false);
  if (!list)
    return commands;
  std::size_t n = 0;
  for (const json& item : *list) {
    JsonReader cr(item, "command " + std::to_string(++n), Unknown::ignore);
    DeviceCommand command;
    command.id = cr.integer("id", 1, INT64_MAX);
    const std::optional<CommandKind> kind = parse_command_kind(cr.text("kind", kMaxCommandKind));
    std::string why;
    if (const Result<void> done = cr.finish(&why); !done) {
      r.fail(static_cast<errc>(done.error().value()), why);
      break;
    }
    if (kind) {
      command.kind = *kind;
      commands.push_back(command);
    }
  }
  return commands;
}

std::optional<std::vector<std::string>> read_courses(JsonReader& r) {
  const json* list = r.array("courses", kMaxCourses, /*required=*/false);
  if (!list)
    return std::nullopt;
  std::vector<std::string> courses;
  courses.reserve(list->size());
  for (const json& id : *list) {
    if (!id.is_string() || id.get_ref<const std::string&>().size() > kMaxCourseId ||
        !is_valid_id(id.get_ref<const std::string&>())) {
      r.fail(errc::invalid_value, r.where() + ": \"courses\" must be a list of course ids");
      return std::nullopt;
    }
    courses.push_back(id.get<std::string>());
  }
  return courses;
}

// The content mirrors of a check-in answer. A URL this agent cannot read (a form from a newer
// server) is skipped, as an unknown command kind is; one that is not text at all is refused.
std::vector<std::string> read_content_mirrors(JsonReader& r) {
  std::vector<std::string> mirrors;
  const json* list = r.array("content_mirrors", kMaxContentMirrors, /*required=*/false);
  if (!list)
    return mirrors;
  for (const json& url : *list) {
    if (!url.is_string() || url.get_ref<const std::string&>().size() > kMaxMirrorUrlSize) {
      r.fail(errc::invalid_value, r.where() +
                                      ": \"content_mirrors\" must be a list of URLs of at "
                                      "most " +
                                      std::to_string(kMaxMirrorUrlSize) + " bytes");
      return {};
    }
    if (const auto address = parse_mirror_url(url.get_ref<const std::string&>()))
      mirrors.push_back(address->url());
  }
  return mirrors;
}

bool is_dns_name(std::string_view host) {
  return !host.empty() && host.size() <= kMaxHostName && host.front() != '-' &&
         host.front() != '.' && std::all_of(host.begin(), host.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.';
         });
}

bool is_ipv6_text(std::string_view host) {
  return host.size() >= 2 && host.find(':') != std::string_view::npos &&
         std::all_of(host.begin(), host.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.';
         });
}

// The body as a JSON object, within `max` bytes; the caller reads its fields.
Result<json> parse_object(std::string_view text, std::size_t max, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_json(text, max, j, why));
  return j;
}

}  // namespace

std::string to_json(const Posture& v) {
  return posture_json(v).dump();
}

std::string reasons_to_json(std::span<const ComplianceReason> reasons) {
  return reasons_json(reasons).dump();
}

Result<std::vector<ComplianceReason>> parse_reasons(std::string_view text, std::string* why) {
  if (text.size() > kMaxJsonResponseSize)
    return errc::too_large;
  json list = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!list.is_array()) {
    if (why)
      *why = "the reasons are not a JSON array";
    return errc::malformed;
  }
  // The reader reads fields of an object: hold the array as a check-in answer does.
  const json holder = {{"reasons", std::move(list)}};
  JsonReader r(holder, "reasons", Unknown::ignore);
  std::vector<ComplianceReason> reasons = read_reasons(r);
  KABAN_TRYV(r.finish(why));
  return reasons;
}

std::string to_json(const DeviceDescription& v) {
  return device_json(v).dump();
}

std::string to_json(const EnrollRequest& v) {
  json j = {{"code", v.code}, {"csr", v.csr_pem}, {"device", device_json(v.device)}};
  // Left out when there is none, so the request reads as an older agent's.
  if (!v.report_token_hash.empty())
    j["report_token_hash"] = v.report_token_hash;
  return j.dump();
}

std::string to_json(const EnrollResponse& v) {
  return json{{"device_id", v.device_id},
              {"login", v.login},
              {"user_name", v.user_name},
              {"certificate", v.certificate_pem},
              {"ca", v.ca_pem},
              {"signing_key", v.signing_key},
              {"server_epoch", v.server_epoch},
              {"policy", signed_json(v.policy)}}
      .dump();
}

std::string to_json(const CheckinRequest& v) {
  json j = {{"device", device_json(v.device)}, {"posture", posture_json(v.posture)}};
  if (!v.csr_pem.empty())
    j["csr"] = v.csr_pem;
  if (!v.report_token_hash.empty())
    j["report_token_hash"] = v.report_token_hash;
  return j.dump();
}

std::string to_json(const CheckinResponse& v) {
  json commands = json::array();
  for (const DeviceCommand& c : v.commands)
    commands.push_back({{"id", c.id}, {"kind", to_string(c.kind)}});
  json j = {{"device_id", v.device_id},
            {"login", v.login},
            {"server_time", v.server_time},
            {"verdict", to_string(v.verdict)},
            {"reasons", reasons_json(v.reasons)},
            {"server_epoch", v.server_epoch},
            {"policy", signed_json(v.policy)},
            {"lease", signed_json(v.lease)},
            {"certificate", v.certificate_pem},
            {"commands", std::move(commands)},
            {"unlock_code_hash", v.unlock_code_hash}};
  // Absent, not empty: an empty list would tell the device to remove every course.
  if (v.courses)
    j["courses"] = *v.courses;
  // Left out when there are none, so the answer reads as an older server's.
  if (!v.content_mirrors.empty())
    j["content_mirrors"] = v.content_mirrors;
  return j.dump();
}

std::string to_json(const ChangesResponse& v) {
  json changes = json::array();
  for (const Change& c : v.changes) {
    json item = {{"kind", c.kind}};
    if (c.course_version) {
      const CourseVersionChange& cv = *c.course_version;
      item["course_version"] = {{"course_id", cv.course_id},
                                {"version", cv.version},
                                {"manifest", cv.manifest},
                                {"signature", cv.signature}};
    }
    changes.push_back(std::move(item));
  }
  return json{{"changes", std::move(changes)}, {"cursor", v.cursor}, {"more", v.more}}.dump();
}

std::string to_json(const ErrorBody& v) {
  return json{{"error", {{"code", v.code}, {"message", v.message}}}}.dump();
}

Result<EnrollRequest> parse_enroll_request(std::string_view text, std::string* why) {
  KABAN_TRY(j, parse_object(text, kMaxEnrollRequestSize, why));
  JsonReader r(j, "enrollment request", Unknown::refuse);
  EnrollRequest v;
  v.code = r.text("code", kMaxCode);
  v.csr_pem = r.text("csr", kMaxCsr);
  v.device = read_device(r, Unknown::refuse);
  v.report_token_hash = read_hash(r, "report_token_hash");
  KABAN_TRYV(r.finish(why));
  return v;
}

Result<EnrollResponse> parse_enroll_response(std::string_view text, std::string* why) {
  KABAN_TRY(j, parse_object(text, kMaxJsonResponseSize, why));
  JsonReader r(j, "enrollment answer", Unknown::ignore);
  EnrollResponse v;
  v.device_id = r.text("device_id", 64);
  v.login = r.text("login", 64);
  v.user_name = r.text("user_name", kMaxName);
  v.certificate_pem = r.text("certificate", kMaxPem);
  v.ca_pem = r.text("ca", kMaxPem);
  v.signing_key = r.text("signing_key", 64);
  v.server_epoch = r.text("server_epoch", kMaxEpoch);
  v.policy = read_signed(r, "policy");
  if (r.ok() && (v.signing_key.size() != 64 || !is_lower_hex(v.signing_key)))
    r.fail(errc::invalid_value, "enrollment answer: signing_key is not 64 hex digits");
  KABAN_TRYV(r.finish(why));
  return v;
}

Result<CheckinRequest> parse_checkin_request(std::string_view text, std::string* why) {
  KABAN_TRY(j, parse_object(text, kMaxCheckinRequestSize, why));
  JsonReader r(j, "check-in", Unknown::refuse);
  CheckinRequest v;
  v.device = read_device(r, Unknown::refuse);
  v.posture = read_posture(r);
  v.csr_pem = r.text("csr", kMaxCsr, /*required=*/false);
  v.report_token_hash = read_hash(r, "report_token_hash");
  KABAN_TRYV(r.finish(why));
  return v;
}

Result<CheckinResponse> parse_checkin_response(std::string_view text, std::string* why) {
  KABAN_TRY(j, parse_object(text, kMaxJsonResponseSize, why));
  JsonReader r(j, "check-in answer", Unknown::ignore);
  CheckinResponse v;
  v.device_id = r.text("device_id", 64);
  v.login = r.text("login", 64);
  v.server_time = r.integer("server_time", 0, INT64_MAX);
  const std::string verdict = r.text("verdict", 32);
  if (r.ok()) {
    if (const std::optional<Verdict> parsed = parse_verdict(verdict))
      v.verdict = *parsed;
    else
      r.fail(errc::invalid_value,
             "check-in answer: \"verdict\" is not one of compliant, warn, blocked, wipe");
  }
  v.reasons = read_reasons(r);
  v.server_epoch = r.text("server_epoch", kMaxEpoch);
  v.policy = read_signed(r, "policy");
  v.lease = read_signed(r, "lease");
  v.certificate_pem = r.text("certificate", kMaxPem, /*required=*/false);
  v.commands = read_commands(r);
  v.courses = read_courses(r);
  v.unlock_code_hash = read_hash(r, "unlock_code_hash");
  v.content_mirrors = read_content_mirrors(r);
  KABAN_TRYV(r.finish(why));
  return v;
}

Result<ChangesResponse> parse_changes_response(std::string_view text, std::string* why) {
  KABAN_TRY(j, parse_object(text, kMaxJsonResponseSize, why));
  JsonReader r(j, "changes", Unknown::ignore);
  ChangesResponse v;
  v.cursor = r.text("cursor", kMaxCursor);
  v.more = r.boolean("more");
  if (const json* changes = r.array("changes", kMaxChangesPage)) {
    for (const json& cj : *changes) {
      JsonReader cr(cj, "change " + std::to_string(v.changes.size() + 1), Unknown::ignore);
      Change c;
      c.kind = cr.text("kind", 64);
      if (cr.ok() && c.kind == "course_version") {
        if (const json* cvj = cr.object("course_version")) {
          JsonReader vr(*cvj, cr.where() + " course_version", Unknown::ignore);
          CourseVersionChange cv;
          cv.course_id = vr.text("course_id", 64);
          cv.version = vr.integer("version", 1, INT64_MAX);
          cv.manifest = vr.text("manifest", kMaxManifestSize);
          cv.signature = vr.text("signature", kMaxSignature);
          std::string inner;
          if (!vr.finish(&inner))
            cr.fail(errc::invalid_value, inner);
          c.course_version = std::move(cv);
        }
      }
      std::string inner;
      if (!cr.finish(&inner)) {
        r.fail(errc::invalid_value, inner);
        break;
      }
      v.changes.push_back(std::move(c));
    }
  }
  KABAN_TRYV(r.finish(why));
  return v;
}

Result<ErrorBody> parse_error_body(std::string_view text, std::string* why) {
  KABAN_TRY(j, parse_object(text, kMaxJsonResponseSize, why));
  JsonReader outer(j, "error answer", Unknown::ignore);
  ErrorBody v;
  if (const json* e = outer.object("error")) {
    JsonReader r(*e, "error", Unknown::ignore);
    v.code = r.text("code", 64);
    v.message = r.text("message", kMaxErrorMessage);
    std::string inner;
    if (!r.finish(&inner))
      outer.fail(errc::invalid_value, inner);
  }
  KABAN_TRYV(outer.finish(why));
  return v;
}

std::string MirrorAddress::url() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return std::string(kHttpsScheme) + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<MirrorAddress> parse_mirror_url(std::string_view url) {
  if (url.size() > kMaxMirrorUrlSize || !url.starts_with(kHttpsScheme))
    return std::nullopt;
  std::string_view authority = url.substr(kHttpsScheme.size());
  if (authority.ends_with('/'))
    authority.remove_suffix(1);
  MirrorAddress out;
  std::string_view port_text;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    if (!is_ipv6_text(out.host))
      return std::nullopt;
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || rest.size() == 1))
      return std::nullopt;
    port_text = rest.empty() ? rest : rest.substr(1);
  } else {
    const std::size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (!is_dns_name(out.host))
      return std::nullopt;
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty())
        return std::nullopt;
    }
  }
  unsigned port = kDefaultHttpsPort;
  if (!port_text.empty()) {
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > kHighestPort)
      return std::nullopt;
  }
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

std::string Cursor::to_string() const {
  if (epoch.empty())
    return {};
  return epoch + "." + std::to_string(seq);
}

Result<Cursor> Cursor::parse(std::string_view text) {
  Cursor c;
  if (text.empty())
    return c;
  const std::size_t dot = text.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > kMaxEpoch)
    return errc::invalid_value;
  const std::string_view epoch = text.substr(0, dot);
  if (!is_lower_hex(epoch))
    return errc::invalid_value;
  const std::string_view seq = text.substr(dot + 1);
  auto [end, ec] = std::from_chars(seq.data(), seq.data() + seq.size(), c.seq);
  if (seq.empty() || ec != std::errc() || end != seq.data() + seq.size() || c.seq < 0)
    return errc::invalid_value;
  c.epoch = std::string(epoch);
  return c;
}

}  // namespace kaban::protocol
