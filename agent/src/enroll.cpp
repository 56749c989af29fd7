#include "kaban/agent/enroll.hpp"

#include <algorithm>

#include "kaban/agent/error.hpp"
#include "kaban/agent/guard.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/platform.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/version.hpp"

namespace kaban::agent {
namespace {

constexpr std::size_t kReportTokenSize = 32;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The guard a fresh enrollment starts with: whom to report to, and with what.
GuardState fresh_guard(const Enrollment& e) {
  GuardState g;
  g.device_id = e.device_id;
  g.server_host = e.server_host;
  g.server_port = e.server_port;
  g.ca_pem = e.ca_pem;
  g.signing_key = e.signing_key;
  g.report_token = e.report_token;
  return g;
}

Result<Enrollment> bad_answer(std::string& why, std::string what) {
  why = "the server's enrollment answer did not check out (" + std::move(what) +
        "); nothing was stored. Ask IT";
  return errc::bad_response;
}

}  // namespace

protocol::DeviceDescription this_device() {
  const platform::DeviceFacts facts = platform::describe_device();
  protocol::DeviceDescription d;
  d.platform = facts.platform;
  d.os_version = facts.os_version;
  d.model = facts.model;
  d.name = facts.name;
  d.agent_version = std::string(protocol::kaban_version());
  // The server refuses fields over its limit; trimming here keeps a long OS string from
  // blocking enrollment.
  for (std::string* field : {&d.os_version, &d.model, &d.name})
    if (field->size() > protocol::kMaxDeviceFieldSize)
      field->resize(protocol::kMaxDeviceFieldSize);
  return d;
}

std::string user_agent() {
  // Built once: describe_device() reads files, and every download connection asks for this.
  static const std::string agent = "kaban/" + std::string(protocol::kaban_version()) + " (" +
                                   platform::describe_device().platform + ")";
  return agent;
}

Result<void> check_new_pin(std::string_view pin, const protocol::Policy& policy, std::string& why) {
  if (pin.size() > kMaxPinLength) {
    why = "the PIN must have at most " + std::to_string(kMaxPinLength) + " characters";
    return errc::invalid_input;
  }
  if (pin.find_first_of("\r\n") != std::string_view::npos) {
    why = "the PIN must not contain a line break";
    return errc::invalid_input;
  }
  if (std::string rule = protocol::pin_rule_violation(policy, pin); !rule.empty()) {
    why = std::move(rule);
    return errc::invalid_input;
  }
  return ok();
}

Result<void> check_new_pin(std::string_view pin, std::string& why) {
  return check_new_pin(pin, protocol::Policy{}, why);
}

Result<Enrollment> request_enrollment(const protocol::EnrollmentLine& line,
                                      const EnrollOptions& options, std::string& why) {
  KABAN_TRY(pin_bytes, crypto::from_hex(line.ca_fingerprint));
  crypto::Digest pin{};
  if (pin_bytes.size() != pin.size())
    return bad_answer(why, "the line's CA fingerprint is not a SHA-256");
  std::copy(pin_bytes.begin(), pin_bytes.end(), pin.begin());

  crypto::EcPrivateKey key = crypto::EcPrivateKey::generate();
  crypto::SecretKey key_pem = key.to_pem();
  KABAN_TRY(csr_pem, certificate_request_pem(key_pem));
  const std::string report_token = crypto::to_hex(crypto::random_bytes(kReportTokenSize));

  HttpsClientConfig config;
  config.host = line.host;
  if (config.host.size() > 2 && config.host.front() == '[')
    config.host = config.host.substr(1, config.host.size() - 2);
  config.port = line.port;
  config.connect_timeout = options.connect_timeout;
  config.request_timeout = options.request_timeout;
  config.max_response_body = protocol::kMaxJsonResponseSize;
  config.user_agent = user_agent();
  crypto::TlsClientTrust trust;
  trust.pinned_ca_fingerprint = pin;
  HttpsClient client(config, std::move(trust), std::nullopt);

  protocol::EnrollRequest request{line.code, csr_pem, this_device(),
                                  protocol::report_token_hash(report_token)};
  auto response = client.request("POST", "/v1/enroll", protocol::to_json(request));
  if (!response) {
    why = client.describe_last_failure();
    return response.error();
  }
  if (response.value().status != 200) {
    why = refusal_message(response.value());
    return errc::server_refused;
  }
  std::string parse_why;
  auto answer = protocol::parse_enroll_response(response.value().body, &parse_why);
  if (!answer)
    return bad_answer(why, parse_why);
  const protocol::EnrollResponse& a = answer.value();

  // The TLS handshake already proved the server holds a certificate under the pinned CA; these
  // checks make sure what it handed back is that CA and a certificate for this device's key.
  auto ca = crypto::Certificate::from_pem(a.ca_pem);
  if (!ca || !crypto::constant_time_equal(ca.value().fingerprint(), pin))
    return bad_answer(why, "its CA is not the one the enrollment line names");
  auto cert = crypto::Certificate::from_pem(a.certificate_pem);
  if (!cert || cert.value().public_key_der() != key.public_key_der())
    return bad_answer(why, "the device certificate is not for this device's key");
  const std::vector<crypto::Certificate> trusted{ca.value()};
  if (!crypto::verify_chain(cert.value(), trusted, std::chrono::system_clock::now()))
    return bad_answer(why, "the device certificate is not signed by the CA");
  if (a.device_id != crypto::to_hex(cert.value().fingerprint()))
    return bad_answer(why, "the device id is not the certificate's fingerprint");

  Enrollment identity;
  identity.server_host = config.host;
  identity.server_port = line.port;
  identity.device_id = a.device_id;
  identity.login = a.login;
  identity.user_name = a.user_name;
  identity.certificate_pem = cert.value().to_pem();
  identity.private_key_pem = std::move(key_pem);
  identity.ca_pem = ca.value().to_pem();
  identity.signing_key = a.signing_key;
  identity.server_epoch = a.server_epoch;
  identity.enrolled_at = unix_now();
  if (!content_signing_key(identity))
    return bad_answer(why, "the content-signing key is not an Ed25519 key");
  identity.report_token = report_token;
  identity.signed_policy = a.policy;
  // An older server sends no policy: the built-in one applies until the first check-in.
  if (!a.policy.text.empty()) {
    GuardState scratch = fresh_guard(identity);
    std::string policy_why;
    if (!accept_policy(scratch, a.policy, policy_why))
      return bad_answer(why, "its device policy: " + policy_why);
    identity.policy = current_policy(scratch);
  }
  return identity;
}

Result<void> complete_enrollment(const std::filesystem::path& dir, const Enrollment& enrollment,
                                 std::string_view pin, const crypto::ScryptParams& kdf) {
  std::string why;
  KABAN_TRYV(check_new_pin(pin, enrollment.policy, why));
  GuardState guard = fresh_guard(enrollment);
  if (!enrollment.signed_policy.text.empty()) {
    KABAN_TRYV(accept_policy(guard, enrollment.signed_policy, why));
  }
  std::error_code failed;
  {
    KABAN_TRY(store, Store::create(dir, pin, kdf));
    auto saved = save_identity(store, enrollment);
    if (saved)
      saved = save_pin_facts(store, pin_facts_of(pin));
    // The whole guard is replaced: what a wiped enrollment of this directory left (its wipe
    // mark, its lease) must not hold the new one back.
    if (saved) {
      auto written = update_guard(dir, [&](GuardState& state) { state = guard; });
      if (!written)
        saved = written.error();
    }
    if (saved)
      return ok();
    failed = saved.error();
  }
  // A store without an identity is useless and would block the next attempt.
  (void)Store::wipe(dir);
  return failed;
}

Result<void> change_pin(Store& store, std::string_view old_pin, std::string_view new_pin,
                        const protocol::Policy& policy, std::string& why,
                        const crypto::ScryptParams& kdf) {
  KABAN_TRYV(check_new_pin(new_pin, policy, why));
  KABAN_TRYV(Store::change_pin(store.dir(), old_pin, new_pin, kdf));
  return save_pin_facts(store, pin_facts_of(new_pin));
}

}  // namespace kaban::agent
