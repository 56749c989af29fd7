#include "kaban/protocol/messages.hpp"

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/manifest.hpp"

namespace kaban::protocol {
namespace {

using detail::JsonReader;
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
constexpr std::string_view kPlatforms[] = {"linux", "macos", "windows", "android", "ios"};

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
  if (r.ok() &&
      std::find(std::begin(kPlatforms), std::end(kPlatforms), d.platform) == std::end(kPlatforms))
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

// The body as a JSON object, within `max` bytes; the caller reads its fields.
Result<json> parse_object(std::string_view text, std::size_t max, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_json(text, max, j, why));
  return j;
}

}  // namespace

std::string to_json(const DeviceDescription& v) {
  return device_json(v).dump();
}

std::string to_json(const EnrollRequest& v) {
  return json{{"code", v.code}, {"csr", v.csr_pem}, {"device", device_json(v.device)}}.dump();
}

std::string to_json(const EnrollResponse& v) {
  return json{
      {"device_id", v.device_id},         {"login", v.login}, {"user_name", v.user_name},
      {"certificate", v.certificate_pem}, {"ca", v.ca_pem},   {"signing_key", v.signing_key},
      {"server_epoch", v.server_epoch}}
      .dump();
}

std::string to_json(const CheckinRequest& v) {
  return json{{"device", device_json(v.device)}}.dump();
}

std::string to_json(const CheckinResponse& v) {
  return json{{"device_id", v.device_id},
              {"login", v.login},
              {"server_time", v.server_time},
              {"verdict", v.verdict},
              {"server_epoch", v.server_epoch}}
      .dump();
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
  v.verdict = r.text("verdict", 32);
  v.server_epoch = r.text("server_epoch", kMaxEpoch);
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
