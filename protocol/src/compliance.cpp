#include "kaban/protocol/compliance.hpp"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/manifest.hpp"
#include "wire_limits.hpp"

namespace kaban::protocol {
namespace {

using detail::JsonReader;
using detail::kLatestTime;
using detail::Unknown;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr std::string_view kPolicyType = "kaban.policy";
constexpr std::string_view kLeaseType = "kaban.lease";
constexpr std::size_t kMaxSignedText = kMaxPolicyFileSize;
constexpr std::size_t kMaxType = 32;
constexpr std::size_t kMaxDeviceId = 64;
constexpr std::size_t kMaxVerdict = 16;
constexpr std::size_t kMaxEventKind = 16;
constexpr std::size_t kMaxEventReason = 16;
constexpr std::size_t kSignatureHexSize = 2 * crypto::kEd25519SignatureSize;
constexpr std::string_view kEventReasons[] = {"command", "offline", "verdict", "pin_attempts",
                                              "unlock_code"};

std::string dump(const ordered_json& j) {
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

std::string sha256_hex(std::string_view text) {
  return crypto::to_hex(crypto::sha256(crypto::as_bytes(text)));
}

// Reads the text as a JSON object and checks that its "type" is `type`, so that a signed
// document of one kind cannot pass for another.
Result<json> parse_typed(std::string_view text, std::string_view type, const std::string& what,
                         std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_json(text, kMaxSignedText, j, why));
  JsonReader r(j, what, Unknown::ignore);
  const std::string found = r.text("type", kMaxType);
  if (r.ok() && found != type)
    r.fail(errc::invalid_value,
           what + ": \"type\" is \"" + found + "\", not \"" + std::string(type) + "\"");
  KABAN_TRYV(r.finish(why));
  return j;
}

DeviceEvent read_event(const json& j, const std::string& where, JsonReader& parent) {
  JsonReader r(j, where, Unknown::refuse);
  DeviceEvent e;
  const std::string kind = r.text("kind", kMaxEventKind);
  e.reason = r.text("reason", kMaxEventReason);
  e.command_id = r.integer("command_id", 0, INT64_MAX, /*required=*/false);
  e.at = r.integer("at", 0, kLatestTime);
  if (r.ok()) {
    if (const auto k = parse_device_event_kind(kind))
      e.kind = *k;
    else
      r.fail(errc::invalid_value, where + ": \"kind\" is not one of wiped, locked, unlocked");
  }
  if (r.ok() && std::find(std::begin(kEventReasons), std::end(kEventReasons), e.reason) ==
                    std::end(kEventReasons))
    r.fail(errc::invalid_value, where +
                                    ": \"reason\" is not one of command, offline, verdict, "
                                    "pin_attempts, unlock_code");
  if (r.ok() && e.reason == "command" && e.command_id == 0)
    r.fail(errc::invalid_value, where + ": \"command_id\" is missing for a command");
  if (r.ok() && e.reason != "command" && e.command_id != 0)
    r.fail(errc::invalid_value, where + ": \"command_id\" is only for the reason \"command\"");
  std::string why;
  if (const Result<void> done = r.finish(&why); !done)
    parent.fail(static_cast<errc>(done.error().value()), why);
  return e;
}

}  // namespace

std::string_view to_string(Fact fact) noexcept {
  switch (fact) {
    case Fact::unknown:
      return "unknown";
    case Fact::yes:
      return "yes";
    case Fact::no:
      return "no";
    case Fact::not_applicable:
      return "not_applicable";
  }
  return "unknown";
}

std::optional<Fact> parse_fact(std::string_view text) noexcept {
  for (Fact f : {Fact::unknown, Fact::yes, Fact::no, Fact::not_applicable})
    if (to_string(f) == text)
      return f;
  return std::nullopt;
}

std::string_view to_string(Verdict verdict) noexcept {
  switch (verdict) {
    case Verdict::compliant:
      return "compliant";
    case Verdict::warn:
      return "warn";
    case Verdict::blocked:
      return "blocked";
    case Verdict::wipe:
      return "wipe";
  }
  return "compliant";
}

std::optional<Verdict> parse_verdict(std::string_view text) noexcept {
  for (Verdict v : {Verdict::compliant, Verdict::warn, Verdict::blocked, Verdict::wipe})
    if (to_string(v) == text)
      return v;
  return std::nullopt;
}

Verdict verdict_for(ComplianceAction action) noexcept {
  switch (action) {
    case ComplianceAction::none:
      return Verdict::compliant;
    case ComplianceAction::warn:
      return Verdict::warn;
    case ComplianceAction::block:
      return Verdict::blocked;
    case ComplianceAction::wipe:
      return Verdict::wipe;
  }
  return Verdict::compliant;
}

SignedText sign_text(std::string text, const crypto::Ed25519PrivateKey& key) {
  std::string signature = crypto::to_hex(key.sign(crypto::as_bytes(text)));
  return {std::move(text), std::move(signature)};
}

Result<void> verify_text(const SignedText& signed_text, const crypto::Ed25519PublicKey& key) {
  if (signed_text.signature.size() != kSignatureHexSize)
    return errc::bad_signature;
  const Result<crypto::Bytes> signature = crypto::from_hex(signed_text.signature);
  if (!signature)
    return errc::bad_signature;
  if (!key.verify(crypto::as_bytes(signed_text.text), signature.value()))
    return errc::bad_signature;
  return kaban::ok();
}

std::string device_policy_text(const DevicePolicy& policy) {
  const ordered_json j = {{"type", kPolicyType},
                          {"device_id", policy.device_id},
                          {"version", policy.version},
                          {"issued_at", policy.issued_at},
                          {"settings", ordered_json::parse(policy_to_json(policy.settings))}};
  return dump(j);
}

Result<DevicePolicy> parse_device_policy_text(std::string_view text, std::string* why) {
  KABAN_TRY(j, parse_typed(text, kPolicyType, "policy", why));
  JsonReader r(j, "policy", Unknown::ignore);
  r.text("type", kMaxType);
  DevicePolicy p;
  p.device_id = r.text("device_id", kMaxDeviceId);
  p.version = r.integer("version", 0, INT64_MAX);
  p.issued_at = r.integer("issued_at", 0, kLatestTime);
  if (const json* settings = r.object("settings")) {
    std::string inner;
    Result<Policy> parsed = parse_policy(detail::dump_json(*settings), &inner);
    if (parsed)
      p.settings = std::move(parsed).value();
    else
      r.fail(static_cast<errc>(parsed.error().value()), "policy: settings: " + inner);
  }
  KABAN_TRYV(r.finish(why));
  return p;
}

std::string lease_text(const Lease& lease) {
  const ordered_json j = {{"type", kLeaseType},
                          {"device_id", lease.device_id},
                          {"issued_at", lease.issued_at},
                          {"block_after", lease.block_after},
                          {"wipe_after", lease.wipe_after},
                          {"policy_version", lease.policy_version},
                          {"verdict", to_string(lease.verdict)}};
  return dump(j);
}

Result<Lease> parse_lease_text(std::string_view text, std::string* why) {
  KABAN_TRY(j, parse_typed(text, kLeaseType, "lease", why));
  JsonReader r(j, "lease", Unknown::ignore);
  r.text("type", kMaxType);
  Lease l;
  l.device_id = r.text("device_id", kMaxDeviceId);
  l.issued_at = r.integer("issued_at", 0, kLatestTime);
  l.block_after = r.integer("block_after", 0, kLatestTime);
  l.wipe_after = r.integer("wipe_after", 0, kLatestTime);
  l.policy_version = r.integer("policy_version", 0, INT64_MAX);
  const std::string verdict = r.text("verdict", kMaxVerdict);
  if (r.ok()) {
    if (const auto v = parse_verdict(verdict))
      l.verdict = *v;
    else
      r.fail(errc::invalid_value,
             "lease: \"verdict\" is not one of compliant, warn, blocked, wipe");
  }
  KABAN_TRYV(r.finish(why));
  return l;
}

std::string_view to_string(CommandKind kind) noexcept {
  return kind == CommandKind::wipe ? "wipe" : "lock";
}

std::optional<CommandKind> parse_command_kind(std::string_view text) noexcept {
  if (text == "wipe")
    return CommandKind::wipe;
  if (text == "lock")
    return CommandKind::lock;
  return std::nullopt;
}

std::string_view to_string(DeviceEventKind kind) noexcept {
  switch (kind) {
    case DeviceEventKind::wiped:
      return "wiped";
    case DeviceEventKind::locked:
      return "locked";
    case DeviceEventKind::unlocked:
      return "unlocked";
  }
  return "wiped";
}

std::optional<DeviceEventKind> parse_device_event_kind(std::string_view text) noexcept {
  for (DeviceEventKind k :
       {DeviceEventKind::wiped, DeviceEventKind::locked, DeviceEventKind::unlocked})
    if (to_string(k) == text)
      return k;
  return std::nullopt;
}

std::string to_json(const DeviceEventsRequest& v) {
  ordered_json events = ordered_json::array();
  for (const DeviceEvent& e : v.events) {
    ordered_json item = {{"kind", to_string(e.kind)}, {"reason", e.reason}};
    if (e.command_id != 0)
      item["command_id"] = e.command_id;
    item["at"] = e.at;
    events.push_back(std::move(item));
  }
  return dump(ordered_json{
      {"device_id", v.device_id}, {"report_token", v.report_token}, {"events", std::move(events)}});
}

Result<DeviceEventsRequest> parse_device_events_request(std::string_view text, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_json(text, kMaxDeviceEventsRequestSize, j, why));
  JsonReader r(j, "device events", Unknown::refuse);
  DeviceEventsRequest v;
  v.device_id = r.text("device_id", kMaxDeviceId);
  v.report_token = r.text("report_token", 64);
  if (r.ok() && v.device_id.empty())
    r.fail(errc::invalid_value, "device events: \"device_id\" is empty");
  if (r.ok() && !is_sha256_hex(v.report_token))
    r.fail(errc::invalid_value, "device events: \"report_token\" is not 64 lower-case hex digits");
  if (const json* events = r.array("events", kMaxDeviceEvents)) {
    if (events->empty())
      r.fail(errc::invalid_value, "device events: \"events\" is empty");
    for (const json& e : *events) {
      if (!r.ok())
        break;
      v.events.push_back(read_event(e, "event " + std::to_string(v.events.size() + 1), r));
    }
  }
  KABAN_TRYV(r.finish(why));
  return v;
}

std::string report_token_hash(std::string_view report_token_hex) {
  return sha256_hex(report_token_hex);
}

std::string unlock_code_hash(std::string_view typed_code) {
  std::string code;
  for (const char c : typed_code)
    if (c != '-' && c != ' ')
      code.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return sha256_hex(code);
}

}  // namespace kaban::protocol
