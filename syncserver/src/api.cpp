#include "kaban/server/api.hpp"

#include <SQLiteCpp/Database.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <deque>
#include <fstream>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "chunk_store.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/compliance.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/gzip.hpp"
#include "kaban/protocol/inbox.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/outbox.hpp"
#include "kaban/protocol/version.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/compliance.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/messaging.hpp"
#include "kaban/server/mirrors.hpp"
#include "kaban/server/policies.hpp"
#include "long_poll.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;

constexpr std::string_view kEnrollPath = "/v1/enroll";
constexpr std::string_view kCheckinPath = "/v1/checkin";
constexpr std::string_view kChangesPath = "/v1/changes";
constexpr std::string_view kChunksPrefix = "/v1/chunks/";
constexpr std::string_view kOutboxPath = "/v1/outbox";
constexpr std::string_view kInboxPath = "/v1/inbox";
constexpr std::string_view kDeviceEventsPath = "/v1/device-events";
constexpr std::string_view kUrgentPriority = "urgent";
// GET /v1/inbox?from=it: only messages from IT (what a blocked device may still read).
constexpr std::string_view kFromIt = "it";
constexpr std::size_t kNoBody = 0;
// A course feed page smaller than this goes plain: gzip's header and trailer would eat the gain.
constexpr std::size_t kCompressAbove = 1024;

// True if an Accept-Encoding header lists gzip without "q=0" (RFC 9110 section 12.5.3).
bool accepts_gzip(std::string_view header) {
  while (!header.empty()) {
    const std::size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    const std::size_t semicolon = item.find(';');
    std::string_view coding = item.substr(0, semicolon);
    std::string_view params =
        semicolon == std::string_view::npos ? std::string_view() : item.substr(semicolon + 1);
    const auto trim = [](std::string_view t) {
      while (!t.empty() && (t.front() == ' ' || t.front() == '\t'))
        t.remove_prefix(1);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t'))
        t.remove_suffix(1);
      return t;
    };
    coding = trim(coding);
    params = trim(params);
    const bool gzip =
        coding.size() == 4 && std::equal(coding.begin(), coding.end(), "gzip", [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == b;
        });
    if (!gzip)
      continue;
    // "q=0", "q=0.0", "q=0.000": refused; any other weight accepts.
    if (params.size() >= 3 && (params[0] == 'q' || params[0] == 'Q') && params[1] == '=') {
      const std::string_view weight = params.substr(2);
      if (weight.find_first_not_of("0.") == std::string_view::npos)
        return false;
    }
    return true;
  }
  return false;
}

// PUT /v1/chunks/<sha256> answers: a new chunk, and one the server held already.
constexpr const char* kChunkStored = R"({"stored":true})";
constexpr const char* kChunkHeld = R"({"stored":false})";
// How many hex digits of a hash an error message shows.
constexpr std::size_t kShownHashDigits = 12;
// Chunks are served only up to the largest size the manifest format allows.
constexpr std::uintmax_t kMaxServedChunk = protocol::kMaxChunkSize;
// Chunks never change (their name is their hash). A course chunk may be kept by any cache in
// front of the server (a content mirror): the signed manifest, not the transport, makes it
// trustworthy, and every enrolled device may be served it there. An attachment chunk is private
// to a conversation, so only the device's own cache may keep it.
constexpr const char* kCourseChunkCacheControl = "public, max-age=31536000, immutable";
constexpr const char* kAttachmentChunkCacheControl = "private, max-age=31536000, immutable";
// The request log's caller for a content mirror: "mirror:<name>".
constexpr std::string_view kMirrorLogPrefix = "mirror:";

UnixTime now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(Clock::now());
}

HttpResponse error(int status, std::string code, std::string message) {
  HttpResponse r;
  r.status = status;
  r.body = protocol::to_json(protocol::ErrorBody{std::move(code), std::move(message)});
  return r;
}

// A request body the protocol parser refused: 413 too_large for a body, string or list over its
// limit, else 400 bad_request; the message is the parser's sentence naming the field.
HttpResponse refused_body(std::error_code e, const std::string& why) {
  const bool too_large = e == protocol::errc::too_large;
  return error(too_large ? 413 : 400, too_large ? "too_large" : "bad_request",
               why.empty() ? e.message() : why);
}

HttpResponse storage_error() {
  return error(500, "storage_failed",
               "the server could not read or write its database; try again later");
}

HttpResponse json_ok(std::string body) {
  HttpResponse r;
  r.body = std::move(body);
  return r;
}

std::string fingerprint_of(crypto::ByteView der) {
  return crypto::to_hex(crypto::sha256(der));
}

std::chrono::system_clock::time_point as_time_point(UnixTime t) {
  return std::chrono::system_clock::time_point(t.time_since_epoch());
}

// A renewal is due when the presented certificate has less than half the policy's lifetime left,
// or more than the whole of it (the policy was shortened since it was issued).
bool renewal_due(const crypto::Certificate& presented, std::chrono::seconds lifetime, UnixTime t) {
  const auto left = presented.not_after() - as_time_point(t);
  return left < lifetime / 2 || left > lifetime;
}

// A whole decimal number, or std::nullopt.
std::optional<int> parse_int(const std::string& text) {
  int n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    return std::nullopt;
  return n;
}

// Counts failed enrollments per address in a sliding window; a bounded table, so a flood of
// addresses cannot grow it without limit.
class EnrollRateLimiter {
 public:
  EnrollRateLimiter(int allowed, std::chrono::seconds window, std::size_t max_addresses)
      : allowed_(allowed), window_(window), max_addresses_(max_addresses) {}

  bool blocked(const std::string& address, Clock::time_point t) {
    std::lock_guard lock(mutex_);
    auto it = failures_.find(address);
    if (it == failures_.end())
      return false;
    prune(it->second, t);
    return static_cast<int>(it->second.size()) >= allowed_;
  }

  void record_failure(const std::string& address, Clock::time_point t) {
    std::lock_guard lock(mutex_);
    auto [it, inserted] = failures_.try_emplace(address);
    if (inserted) {
      order_.push_back(address);
      while (order_.size() > max_addresses_) {
        failures_.erase(order_.front());
        order_.pop_front();
      }
    }
    if (auto found = failures_.find(address); found != failures_.end()) {
      prune(found->second, t);
      found->second.push_back(t);
    }
  }

 private:
  void prune(std::deque<Clock::time_point>& times, Clock::time_point t) const {
    while (!times.empty() && t - times.front() >= window_)
      times.pop_front();
  }

  const int allowed_;
  const std::chrono::seconds window_;
  const std::size_t max_addresses_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::deque<Clock::time_point>> failures_;
  std::deque<std::string> order_;
};

}  // namespace

struct Api::Impl {
  fs::path data_dir;
  const ServerIdentity& identity;
  ApiConfig config;
  EnrollRateLimiter limiter;

  std::mutex pool_mutex;
  std::vector<std::unique_ptr<SQLite::Database>> pool;

  std::mutex sweep_mutex;
  Clock::time_point next_sweep;  // the first upload sweeps

  // Declared last: its thread uses the pool, so it is destroyed (and joined) first.
  std::unique_ptr<LongPoll> long_poll;

  Impl(fs::path dir, const ServerIdentity& id, ApiConfig cfg)
      : data_dir(std::move(dir)),
        identity(id),
        config(cfg),
        limiter(cfg.enroll_failures_allowed, cfg.enroll_failure_window, cfg.rate_limit_addresses) {
    long_poll = std::make_unique<LongPoll>(
        [this]() -> Result<std::int64_t> {
          KABAN_TRY(conn, connection());
          return Messaging(**conn).latest_inbox_seq();
        },
        LongPollConfig{cfg.inbox_poll_interval, cfg.max_waiting_requests});
  }

  // A connection for the calling thread for the length of one request; returned to the pool
  // afterwards so the number of connections never exceeds the number of io threads.
  class Connection {
   public:
    Connection(Impl& impl, std::unique_ptr<SQLite::Database> db)
        : impl_(impl), db_(std::move(db)) {}
    ~Connection() {
      if (db_) {
        std::lock_guard lock(impl_.pool_mutex);
        impl_.pool.push_back(std::move(db_));
      }
    }
    SQLite::Database& operator*() { return *db_; }

   private:
    Impl& impl_;
    std::unique_ptr<SQLite::Database> db_;
  };

  Result<std::unique_ptr<Connection>> connection() {
    {
      std::lock_guard lock(pool_mutex);
      if (!pool.empty()) {
        auto db = std::move(pool.back());
        pool.pop_back();
        return std::make_unique<Connection>(*this, std::move(db));
      }
    }
    KABAN_TRY(db, open_database(data_dir));
    return std::make_unique<Connection>(*this, std::move(db));
  }

  // What a GET /v1/inbox asks for.
  struct InboxQuery {
    protocol::Cursor cursor;
    int limit = 0;  ///< 1..config.inbox_page
    InboxScope scope = InboxScope::everything;
    std::chrono::seconds wait{0};  ///< 0..protocol::kMaxInboxWaitSeconds
  };

  HttpResponse enroll(const HttpRequest& req);
  // Records a failed enrollment in the audit log (never the code); a failure to write it does
  // not change the answer.
  // On the enrollment's own connection: a request never holds two of the pool's.
  void audit_enroll_failure(SQLite::Database& db, const HttpRequest& req, std::string_view reason);
  HttpResponse checkin(const HttpRequest& req, const Device& device, SQLite::Database& db);
  // The renewal request of a check-in: a CSR signed by its key, for the key of the certificate
  // the device presents. The refusal to answer with otherwise (400, nothing stored).
  std::optional<HttpResponse> read_renewal_request(const std::string& csr_pem,
                                                   const crypto::Bytes& presented,
                                                   std::optional<crypto::CertificateRequest>& csr,
                                                   std::optional<crypto::Certificate>& cert) const;
  HttpResponse device_events(const HttpRequest& req);
  // The request's cursor, or the refusal to answer with (400 bad_cursor, 409 cursor_reset).
  std::optional<HttpResponse> read_cursor(const HttpRequest& req, protocol::Cursor& cursor) const;
  HttpResponse changes(const HttpRequest& req, const Device& device, SQLite::Database& db);
  HttpResponse outbox(const HttpRequest& req, const Device& device, SQLite::Database& db);
  // The query of a GET /v1/inbox, or the refusal to answer with.
  std::optional<HttpResponse> read_inbox_query(const HttpRequest& req, InboxQuery& query) const;
  // One page of `login`'s inbox after query.cursor: what GET /v1/inbox answers, now or, once
  // something new arrived, after a wait. Fails with errc::storage_failed.
  Result<protocol::InboxResponse> inbox_page(SQLite::Database& db, const std::string& login,
                                             const InboxQuery& query);
  // Answers GET /v1/inbox, or holds it (std::nullopt) when it may wait, has nothing new and
  // `reply` is given: then `reply` is moved into the long-poll.
  std::optional<HttpResponse> inbox(const HttpRequest& req, const Device& device,
                                    SQLite::Database& db, Router::Reply* reply);
  HttpResponse chunk(std::string_view hash, const Device& device, SQLite::Database& db);
  // A request made with a content mirror's certificate: course chunks only (docs/content.md).
  HttpResponse mirror_request(const HttpRequest& req, const Mirror& mirror, SQLite::Database& db);
  // The chunk file's bytes as a 200 answer with `cache_control`, or 500 storage_failed.
  HttpResponse chunk_file(std::string_view hash, const char* cache_control) const;
  HttpResponse upload_chunk(std::string_view hash, const HttpRequest& req, const Device& device,
                            SQLite::Database& db);
  // Forgets old uploads no message uses, at most once per config.upload_sweep_interval.
  void sweep_uploads_if_due(SQLite::Database& db);
  // The answer to an authenticated request, or std::nullopt if inbox() held it.
  std::optional<HttpResponse> authenticated(const HttpRequest& req, Router::Reply* reply);
  std::optional<HttpResponse> dispatch(const HttpRequest& req, Router::Reply* reply);
};

HttpResponse Api::Impl::enroll(const HttpRequest& req) {
  const auto t = Clock::now();
  if (limiter.blocked(req.peer_address, t))
    return error(429, "too_many_attempts",
                 "too many wrong enrollment codes from this address; wait and try again");
  std::string why;
  auto parsed = protocol::parse_enroll_request(req.body, &why);
  if (!parsed)
    return refused_body(parsed.error(), why);
  auto conn = connection();
  if (!conn)
    return storage_error();
  Directory directory(**conn.value());
  const UnixTime enrolled_at = now();
  EnrollOptions options;
  options.report_token_hash = parsed.value().report_token_hash;
  options.peer_address = req.peer_address;
  auto enrolled = directory.enroll_device(parsed.value().code, parsed.value().csr_pem,
                                          parsed.value().device, enrolled_at, identity, options);
  if (!enrolled) {
    const std::error_code e = enrolled.error();
    if (e == errc::storage_failed)
      return storage_error();
    if (e == errc::csr_invalid) {
      audit_enroll_failure(**conn.value(), req, "csr_invalid");
      return error(400, "csr_invalid", e.message());
    }
    limiter.record_failure(req.peer_address, t);
    if (e == errc::enroll_code_used) {
      audit_enroll_failure(**conn.value(), req, "enroll_code_used");
      return error(409, "enroll_code_used", e.message());
    }
    if (e == errc::enroll_code_expired) {
      audit_enroll_failure(**conn.value(), req, "enroll_code_expired");
      return error(401, "enroll_code_expired", e.message());
    }
    audit_enroll_failure(**conn.value(), req, "enroll_code_invalid");
    return error(401, "enroll_code_invalid", e.message());
  }
  const EnrolledDevice& device = enrolled.value();
  protocol::EnrollResponse out;
  out.device_id = device.device_id;
  out.login = device.login;
  out.user_name = device.user_name;
  out.certificate_pem = device.certificate.to_pem();
  out.ca_pem = identity.ca_pem();
  out.signing_key = identity.signing_public_key;
  out.server_epoch = identity.server_epoch;
  out.policy =
      protocol::sign_text(protocol::device_policy_text({device.device_id, device.policy_version,
                                                        to_unix(enrolled_at), device.policy}),
                          identity.signing_key);
  HttpResponse r = json_ok(protocol::to_json(out));
  r.log_device = device.device_id;
  return r;
}

void Api::Impl::audit_enroll_failure(SQLite::Database& db, const HttpRequest& req,
                                     std::string_view reason) {
  (void)AuditLog(db).record("address:" + req.peer_address, "enroll_failed", "",
                            nlohmann::json{{"reason", reason}}.dump(), now());
}

std::optional<HttpResponse> Api::Impl::read_renewal_request(
    const std::string& csr_pem, const crypto::Bytes& presented,
    std::optional<crypto::CertificateRequest>& csr,
    std::optional<crypto::Certificate>& cert) const {
  auto parsed = crypto::CertificateRequest::from_pem(csr_pem);
  if (!parsed || !parsed.value().verify())
    return error(400, "csr_invalid",
                 "the certificate request in the check-in does not parse or is not signed by "
                 "its own key; nothing was recorded. Check in again without one, or enroll the "
                 "device again");
  auto certificate = crypto::Certificate::from_der(presented);
  if (!certificate || parsed.value().public_key_der() != certificate.value().public_key_der())
    return error(400, "csr_key_mismatch",
                 "the certificate request in the check-in is for another key than the "
                 "certificate this device presents; a renewal keeps the device's key. Nothing "
                 "was recorded: check in again without a request, or enroll the device again");
  csr = std::move(parsed).value();
  cert = std::move(certificate).value();
  return std::nullopt;
}

HttpResponse Api::Impl::checkin(const HttpRequest& req, const Device& device,
                                SQLite::Database& db) {
  std::string why;
  auto parsed = protocol::parse_checkin_request(req.body, &why);
  if (!parsed)
    return refused_body(parsed.error(), why);
  const protocol::CheckinRequest& request = parsed.value();
  // Checked before anything is stored: a refused check-in changes nothing.
  std::optional<crypto::CertificateRequest> csr;
  std::optional<crypto::Certificate> presented;
  if (!request.csr_pem.empty()) {
    if (auto refusal =
            read_renewal_request(request.csr_pem, req.client_certificate, csr, presented))
      return *refusal;
  }

  const UnixTime t = now();
  auto effective = Policies(db).effective_for(device.login);
  if (!effective && effective.error() == errc::data_dir_damaged)
    return error(500, "policy_unreadable",
                 "a device policy stored on the server no longer reads; nothing was recorded. IT "
                 "must set it again with `admin policy set` (`admin policy show` names it)");
  if (!effective)
    return storage_error();
  const protocol::Policy& policy = effective.value().policy;
  const std::int64_t version = effective.value().version;
  ComplianceVerdict verdict = evaluate_compliance(policy, request.device, request.posture, t);
  const protocol::Lease lease = make_lease(device.id, policy, version, verdict.verdict, t);

  Directory directory(db);
  CheckinRecord record;
  record.description = request.device;
  record.posture = request.posture;
  record.verdict = verdict.verdict;
  record.reasons = verdict.reasons;
  record.policy_version = version;
  record.block_after = lease.block_after;
  record.wipe_after = lease.wipe_after;
  record.clock_skew =
      request.posture.device_time == 0 ? 0 : request.posture.device_time - to_unix(t);
  record.report_token_hash = request.report_token_hash;
  auto recorded = directory.record_checkin(device.id, record, t);
  if (!recorded || !recorded.value())
    return storage_error();

  protocol::CheckinResponse out;
  out.device_id = device.id;
  out.login = device.login;
  out.server_time = to_unix(t);
  out.verdict = verdict.verdict;
  out.reasons = std::move(verdict.reasons);
  out.server_epoch = identity.server_epoch;
  out.policy = protocol::sign_text(
      protocol::device_policy_text({device.id, version, to_unix(t), policy}), identity.signing_key);
  out.lease = protocol::sign_text(protocol::lease_text(lease), identity.signing_key);

  const bool in_good_standing =
      out.verdict == protocol::Verdict::compliant || out.verdict == protocol::Verdict::warn;
  const std::chrono::seconds lifetime = std::chrono::days(policy.certificate_lifetime_days);
  if (csr && in_good_standing && renewal_due(*presented, lifetime, t)) {
    auto renewed = directory.renew_certificate(device.id, *csr, lifetime, t, identity);
    if (renewed)
      out.certificate_pem = renewed.value().to_pem();
    else if (renewed.error() == errc::storage_failed)
      return storage_error();
    // Otherwise the CA would not issue it (it expires first): the device keeps its certificate.
  }
  auto commands = directory.take_commands_to_send(device.id, t);
  auto code = directory.unlock_code(device.id);
  if (!commands || !code)
    return storage_error();
  out.commands = std::move(commands).value();
  out.unlock_code_hash = protocol::unlock_code_hash(code.value());
  if (in_good_standing) {
    auto courses = Catalog(db, data_dir).visible_courses(device.login, now());
    auto mirrors = Mirrors(db).urls(protocol::kMaxContentMirrors);
    if (!courses || !mirrors)
      return storage_error();
    out.courses = std::move(courses).value();
    out.content_mirrors = std::move(mirrors).value();
  }
  return json_ok(protocol::to_json(out));
}

HttpResponse Api::Impl::device_events(const HttpRequest& req) {
  const auto t = Clock::now();
  if (limiter.blocked(req.peer_address, t))
    return error(429, "too_many_attempts",
                 "too many wrong report tokens or enrollment codes from this address; wait and "
                 "try again");
  std::string why;
  auto parsed = protocol::parse_device_events_request(req.body, &why);
  if (!parsed)
    return refused_body(parsed.error(), why);
  const protocol::DeviceEventsRequest& request = parsed.value();
  auto conn = connection();
  if (!conn)
    return storage_error();
  Directory directory(**conn.value());
  auto matches = directory.report_token_matches(request.device_id, request.report_token);
  if (!matches)
    return storage_error();
  if (!matches.value()) {
    limiter.record_failure(req.peer_address, t);
    return error(401, "bad_token",
                 "the report token is not this device's; nothing was recorded. A device "
                 "enrolled again reports with its new token; IT can see the device's state with "
                 "`admin device list`");
  }
  auto applied = directory.record_device_events(request.device_id, request.events, now());
  if (!applied)
    return storage_error();
  HttpResponse r = json_ok(nlohmann::json{{"accepted", applied.value()}}.dump());
  r.log_device = request.device_id;
  return r;
}

std::optional<HttpResponse> Api::Impl::read_cursor(const HttpRequest& req,
                                                   protocol::Cursor& cursor) const {
  auto cursor_it = req.query.find("cursor");
  auto parsed = protocol::Cursor::parse(cursor_it == req.query.end() ? "" : cursor_it->second);
  if (!parsed)
    return error(400, "bad_cursor",
                 "the cursor is not one this server gave out; start again from an empty cursor");
  if (!parsed.value().epoch.empty() && parsed.value().epoch != identity.server_epoch)
    return error(409, "cursor_reset",
                 "the server's database was replaced (restored from a backup?); start again "
                 "from an empty cursor");
  cursor = std::move(parsed).value();
  return std::nullopt;
}

HttpResponse Api::Impl::changes(const HttpRequest& req, const Device& device,
                                SQLite::Database& db) {
  protocol::Cursor cursor;
  if (auto refusal = read_cursor(req, cursor))
    return *refusal;
  int limit = config.changes_page;
  if (auto it = req.query.find("limit"); it != req.query.end()) {
    try {
      limit = std::clamp(std::stoi(it->second), 1, config.changes_page);
    } catch (const std::exception&) {
      return error(400, "bad_request",
                   "limit must be a number from 1 to " + std::to_string(config.changes_page));
    }
  }
  Catalog catalog(db, data_dir);
  // One more than the page tells whether another page follows.
  auto found = catalog.changes_since(device.login, cursor.seq, limit + 1, now());
  if (!found)
    return storage_error();
  protocol::ChangesResponse out;
  std::int64_t last = cursor.seq;
  auto& items = found.value();
  out.more = static_cast<int>(items.size()) > limit;
  if (out.more)
    items.resize(static_cast<std::size_t>(limit));
  for (auto& item : items) {
    last = item.seq;
    out.changes.push_back(
        {"course_version",
         protocol::CourseVersionChange{item.course_id, item.version, std::move(item.manifest),
                                       std::move(item.signature)}});
  }
  out.cursor = protocol::Cursor{identity.server_epoch, last}.to_string();
  HttpResponse response = json_ok(protocol::to_json(out));
  // Only this answer is compressed: it carries signed course manifests and no secret, so a
  // compression side channel on TLS (BREACH) has nothing to learn from its length. Messages
  // and the inbox stay plain. Manifests are mostly hex hashes: gzip takes them to under half.
  if (accepts_gzip(req.accept_encoding) && response.body.size() > kCompressAbove) {
    response.body = protocol::gzip_compress(response.body);
    response.headers["Content-Encoding"] = std::string(protocol::kGzipEncoding);
  }
  response.headers["Vary"] = "Accept-Encoding";
  return response;
}

HttpResponse Api::Impl::outbox(const HttpRequest& req, const Device& device, SQLite::Database& db) {
  std::string why;
  auto upload = protocol::parse_outbox_upload(req.body, &why);
  if (!upload)
    return refused_body(upload.error(), why);
  Messaging messaging(db);
  auto answer = messaging.apply_outbox(device.id, device.login, upload.value().items, now());
  if (!answer)
    return storage_error();
  return json_ok(protocol::to_json(answer.value()));
}

std::optional<HttpResponse> Api::Impl::read_inbox_query(const HttpRequest& req,
                                                        InboxQuery& query) const {
  if (auto refusal = read_cursor(req, query.cursor))
    return refusal;
  const int most = std::clamp(config.inbox_page, 1, protocol::kMaxInboxPage);
  query.limit = most;
  if (auto it = req.query.find("limit"); it != req.query.end()) {
    auto n = parse_int(it->second);
    if (!n)
      return error(400, "bad_request", "limit must be a number from 1 to " + std::to_string(most));
    query.limit = std::clamp(*n, 1, most);
  }
  query.scope = InboxScope::everything;
  if (auto it = req.query.find("priority"); it != req.query.end() && !it->second.empty()) {
    if (it->second != kUrgentPriority)
      return error(400, "bad_request",
                   "priority takes only \"urgent\" (urgent and emergency messages only)");
    query.scope = InboxScope::urgent_only;
  }
  // IT's messages are few; with from=it a priority filter would only hide some of them.
  if (auto it = req.query.find("from"); it != req.query.end() && !it->second.empty()) {
    if (it->second != kFromIt)
      return error(400, "bad_request", "from takes only \"it\" (messages from IT only)");
    query.scope = InboxScope::it_only;
  }
  query.wait = std::chrono::seconds{0};
  if (auto it = req.query.find("wait"); it != req.query.end()) {
    auto n = parse_int(it->second);
    if (!n)
      return error(400, "bad_request",
                   "wait must be a number of seconds from 0 to " +
                       std::to_string(protocol::kMaxInboxWaitSeconds));
    query.wait = std::chrono::seconds{std::clamp(*n, 0, protocol::kMaxInboxWaitSeconds)};
  }
  return std::nullopt;
}

Result<protocol::InboxResponse> Api::Impl::inbox_page(SQLite::Database& db,
                                                      const std::string& login,
                                                      const InboxQuery& query) {
  Messaging messaging(db);
  KABAN_TRY(page, messaging.inbox_since(login, query.cursor.seq, query.limit, query.scope));
  protocol::InboxResponse out;
  out.changes = std::move(page.changes);
  out.more = page.more;
  out.cursor = protocol::Cursor{identity.server_epoch, page.last_seq}.to_string();
  return out;
}

std::optional<HttpResponse> Api::Impl::inbox(const HttpRequest& req, const Device& device,
                                             SQLite::Database& db, Router::Reply* reply) {
  InboxQuery query;
  if (auto refusal = read_inbox_query(req, query))
    return *refusal;
  // Read before the page: a message committed between the two still wakes the held request.
  Messaging messaging(db);
  auto seen = messaging.latest_inbox_seq();
  auto page = inbox_page(db, device.login, query);
  if (!seen || !page)
    return storage_error();
  if (!page.value().changes.empty() || query.wait.count() == 0 || reply == nullptr)
    return json_ok(protocol::to_json(page.value()));

  // Nothing new: hold the request. The check and the idle answer run on the long-poll's thread
  // (or the stopping one) with a connection of their own; the idle answer carries the cursor
  // of the latest empty page, so the device moves past other people's changes.
  struct Held {
    std::mutex mutex;
    protocol::InboxResponse empty;
  };
  auto held = std::make_shared<Held>();
  held->empty = std::move(page).value();
  const std::string login = device.login;
  const std::string device_id = device.id;
  const std::string endpoint = req.method + " " + req.path;
  auto finish = [device_id, endpoint](HttpResponse r) {
    r.log_device = device_id;
    r.log_endpoint = endpoint;
    return r;
  };
  auto check = [this, held, login, query, finish]() -> std::optional<HttpResponse> {
    auto conn = connection();
    if (!conn)
      return finish(storage_error());
    auto next = inbox_page(**conn.value(), login, query);
    if (!next)
      return finish(storage_error());
    if (!next.value().changes.empty())
      return finish(json_ok(protocol::to_json(next.value())));
    std::lock_guard lock(held->mutex);
    held->empty = std::move(next).value();
    return std::nullopt;
  };
  auto idle = [held, finish] {
    std::lock_guard lock(held->mutex);
    return finish(json_ok(protocol::to_json(held->empty)));
  };
  if (long_poll->hold(seen.value(), LongPoll::Clock::now() + query.wait, std::move(check),
                      std::move(idle), *reply))
    return std::nullopt;
  // Full or stopping: answer the empty page now; the device asks again.
  return json_ok(protocol::to_json(held->empty));
}

HttpResponse Api::Impl::chunk(std::string_view hash, const Device& device, SQLite::Database& db) {
  if (!protocol::is_sha256_hex(hash))
    return error(400, "bad_request", "a chunk is named by 64 lower-case hex digits");
  auto course_chunk = Catalog(db, data_dir).chunk_visible(device.login, hash, now());
  if (!course_chunk)
    return storage_error();
  if (course_chunk.value())
    return chunk_file(hash, kCourseChunkCacheControl);
  auto attachment_chunk = Messaging(db).attachment_chunk_visible(device.login, device.id, hash);
  if (!attachment_chunk)
    return storage_error();
  // The same answer for a chunk that does not exist and one the caller may not see, so the
  // endpoint does not reveal what other courses or messages contain.
  if (!attachment_chunk.value())
    return error(404, "chunk_not_found",
                 "no such chunk in a course or message this device may see");
  return chunk_file(hash, kAttachmentChunkCacheControl);
}

HttpResponse Api::Impl::mirror_request(const HttpRequest& req, const Mirror& mirror,
                                       SQLite::Database& db) {
  if (mirror.removed())
    return error(403, "mirror_removed",
                 "IT removed content mirror \"" + mirror.name +
                     "\" (`admin mirror remove`); it may fetch nothing more. `admin mirror add` "
                     "issues a new certificate if it should serve again");
  if (req.method != "GET" || !req.path.starts_with(kChunksPrefix))
    return error(403, "mirror_forbidden",
                 "a content mirror may only fetch course chunks (GET /v1/chunks/<sha256>); "
                 "everything else needs a device certificate");
  const std::string_view hash = std::string_view(req.path).substr(kChunksPrefix.size());
  if (!protocol::is_sha256_hex(hash))
    return error(400, "bad_request", "a chunk is named by 64 lower-case hex digits");
  // Any chunk of a course in use, whoever it is assigned to: a mirror serves every device, and
  // devices learn a chunk's hash only from a manifest the server let them see. Attachment
  // chunks belong to one conversation and never pass through a mirror.
  auto live = Catalog(db, data_dir).chunk_live(hash, now());
  if (!live)
    return storage_error();
  if (!live.value())
    return error(404, "chunk_not_found", "no such chunk in a course in use");
  return chunk_file(hash, kCourseChunkCacheControl);
}

HttpResponse Api::Impl::chunk_file(std::string_view hash, const char* cache_control) const {
  const fs::path path = detail::chunk_path(data_dir, hash);
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec || size > kMaxServedChunk)
    return storage_error();
  HttpResponse r;
  r.content_type = "application/octet-stream";
  r.body.resize(static_cast<std::size_t>(size));
  std::ifstream in(path, std::ios::binary);
  if (!in.read(r.body.data(), static_cast<std::streamsize>(size)))
    return storage_error();
  r.headers["Cache-Control"] = cache_control;
  r.headers["ETag"] = "\"" + std::string(hash) + "\"";
  return r;
}

HttpResponse Api::Impl::upload_chunk(std::string_view hash, const HttpRequest& req,
                                     const Device& device, SQLite::Database& db) {
  if (!protocol::is_sha256_hex(hash))
    return error(400, "bad_request", "a chunk is named by 64 lower-case hex digits");
  if (req.body.empty())
    return error(400, "bad_request", "the chunk is empty; upload its bytes");
  // The transport enforces body_limit(); this keeps the rule where the chunk is taken.
  if (req.body.size() > protocol::kAttachmentChunkSize)
    return error(413, "too_large",
                 "a chunk is at most " + std::to_string(protocol::kAttachmentChunkSize) + " bytes");
  const crypto::ByteView bytes = crypto::as_bytes(req.body);
  const std::string actual = crypto::to_hex(crypto::sha256(bytes));
  if (actual != hash)
    return error(400, "chunk_mismatch",
                 "the bytes' SHA-256 begins " + actual.substr(0, kShownHashDigits) + ", not " +
                     std::string(hash.substr(0, kShownHashDigits)) +
                     " as the address says; nothing was stored. Upload the chunk again");
  sweep_uploads_if_due(db);
  const auto quota_refusal = [this](const UploadCheck& check) {
    return error(413, "upload_quota",
                 "this device has " + std::to_string(check.pending_bytes) +
                     " bytes of uploaded attachments that no sent message uses yet, and may "
                     "hold at most " +
                     std::to_string(config.upload_quota_bytes) +
                     "; nothing was stored. Send the messages that use them first, then upload "
                     "the rest");
  };
  Messaging messaging(db);
  const UnixTime t = now();
  auto claimed =
      messaging.claim_upload(device.id, hash, bytes.size(), config.upload_quota_bytes, t);
  if (!claimed)
    return storage_error();
  if (claimed.value().status == UploadStatus::held)
    return json_ok(kChunkHeld);
  if (claimed.value().status == UploadStatus::over_quota)
    return quota_refusal(claimed.value());
  const fs::path path = detail::chunk_path(data_dir, hash);
  if (!detail::store_chunk(path, bytes) || !detail::sync_directory(path.parent_path()))
    return storage_error();
  auto recorded =
      messaging.record_upload(device.id, hash, bytes.size(), config.upload_quota_bytes, t);
  if (!recorded)
    return storage_error();
  switch (recorded.value().status) {
    case UploadStatus::recorded: {
      HttpResponse r = json_ok(kChunkStored);
      r.status = 201;
      return r;
    }
    case UploadStatus::over_quota:
      return quota_refusal(recorded.value());
    case UploadStatus::held:
    case UploadStatus::needed:
      break;
  }
  return json_ok(kChunkHeld);
}

void Api::Impl::sweep_uploads_if_due(SQLite::Database& db) {
  const auto t = Clock::now();
  {
    std::lock_guard lock(sweep_mutex);
    if (t < next_sweep)
      return;
    next_sweep = t + config.upload_sweep_interval;
  }
  const UnixTime cutoff = now() - config.upload_max_age;
  // A sweep that fails leaves the uploads for the next one; the upload in hand goes on.
  (void)Messaging(db).sweep_uploads(cutoff, [this](const std::string& hash) {
    std::error_code ec;
    fs::remove(detail::chunk_path(data_dir, hash), ec);
  });
}

std::optional<HttpResponse> Api::Impl::authenticated(const HttpRequest& req, Router::Reply* reply) {
  if (req.client_certificate.empty())
    return error(401, "certificate_required",
                 "this endpoint needs the device certificate; enroll the device first");
  auto conn = connection();
  if (!conn)
    return storage_error();
  SQLite::Database& db = **conn.value();
  Directory directory(db);
  // A device is known by any certificate issued to it; its id is that of the first.
  const std::string fingerprint = fingerprint_of(req.client_certificate);
  auto found = directory.find_device_by_certificate(fingerprint);
  if (!found)
    return storage_error();
  if (!found.value()) {
    auto mirror = Mirrors(db).find_by_certificate(fingerprint);
    if (!mirror)
      return storage_error();
    if (mirror.value()) {
      HttpResponse r = mirror_request(req, *mirror.value(), db);
      r.log_device = std::string(kMirrorLogPrefix) + mirror.value()->name;
      return r;
    }
  }
  std::string blocked;
  if (found.value() && req.path != kCheckinPath)
    blocked = blocked_reason(*found.value(), now());
  std::optional<HttpResponse> r;
  if (!found.value()) {
    r = error(403, "unknown_device",
              "this server does not know this device; enroll it again with a new code");
  } else if (found.value()->revoked) {
    r = error(403, "device_revoked", "IT revoked this device; ask IT for a new enrollment code");
  } else if (req.path == kCheckinPath) {
    r = checkin(req, *found.value(), db);
  } else if (!blocked.empty() && !(req.path == kInboxPath && req.query.contains("from") &&
                                   req.query.at("from") == kFromIt)) {
    // Only IT's messages and the check-in stay open to a blocked device.
    r = error(403, "device_blocked", blocked);
  } else if (req.path == kChangesPath) {
    r = changes(req, *found.value(), db);
  } else if (req.path == kOutboxPath) {
    r = outbox(req, *found.value(), db);
  } else if (req.path == kInboxPath) {
    r = inbox(req, *found.value(), db, reply);
  } else if (req.method == "PUT") {
    r = upload_chunk(std::string_view(req.path).substr(kChunksPrefix.size()), req, *found.value(),
                     db);
  } else {
    r = chunk(std::string_view(req.path).substr(kChunksPrefix.size()), *found.value(), db);
  }
  if (r)
    r->log_device = found.value() ? found.value()->id : fingerprint;
  return r;
}

std::optional<HttpResponse> Api::Impl::dispatch(const HttpRequest& request, Router::Reply* reply) {
  std::optional<HttpResponse> r;
  std::string endpoint = request.path;
  if (request.path == kEnrollPath) {
    r = enroll(request);
  } else if (request.path == kDeviceEventsPath) {
    r = device_events(request);
  } else {
    r = authenticated(request, reply);
    if (request.path.starts_with(kChunksPrefix))
      endpoint = std::string(kChunksPrefix) + ":hash";
  }
  if (r)
    r->log_endpoint = request.method + " " + endpoint;
  return r;
}

Api::Api(fs::path data_dir, const ServerIdentity& identity, ApiConfig config)
    : impl_(std::make_unique<Impl>(std::move(data_dir), identity, config)) {}

Api::~Api() = default;

std::optional<std::size_t> Api::body_limit(const HttpRequest& head, HttpResponse& refusal) {
  const std::string_view path = head.path;
  const auto expect = [&](std::string_view method,
                          std::size_t limit) -> std::optional<std::size_t> {
    if (head.method == method)
      return limit;
    refusal = error(405, "method_not_allowed", std::string(path) + " takes " + std::string(method));
    return std::nullopt;
  };
  if (path == kEnrollPath)
    return expect("POST", protocol::kMaxEnrollRequestSize);
  if (path == kCheckinPath)
    return expect("POST", protocol::kMaxCheckinRequestSize);
  if (path == kChangesPath)
    return expect("GET", kNoBody);
  if (path == kOutboxPath)
    return expect("POST", protocol::kMaxOutboxRequestSize);
  if (path == kInboxPath)
    return expect("GET", kNoBody);
  if (path == kDeviceEventsPath)
    return expect("POST", protocol::kMaxDeviceEventsRequestSize);
  if (path.starts_with(kChunksPrefix)) {
    if (head.method == "PUT")
      return protocol::kAttachmentChunkSize;
    if (head.method == "GET")
      return kNoBody;
    refusal = error(405, "method_not_allowed", "/v1/chunks/ takes GET or PUT");
    return std::nullopt;
  }
  refusal = error(404, "not_found", "no such endpoint: " + std::string(path));
  return std::nullopt;
}

HttpResponse Api::handle(const HttpRequest& request) {
  return *impl_->dispatch(request, nullptr);
}

void Api::handle_async(HttpRequest request, Reply reply) {
  if (auto r = impl_->dispatch(request, &reply))
    reply(std::move(*r));
}

void Api::stopping() {
  impl_->long_poll->stop();
}

bool Api::accept_client_certificate(crypto::ByteView der) {
  // Fails open on a storage error: every request looks the device up again and refuses a
  // revoked one, so nothing is served that should not be.
  auto conn = impl_->connection();
  if (!conn)
    return true;
  const std::string fingerprint = fingerprint_of(der);
  auto revoked = Directory(**conn.value()).certificate_revoked(fingerprint);
  if (revoked && revoked.value())
    return false;
  auto mirror = Mirrors(**conn.value()).find_by_certificate(fingerprint);
  return !mirror || !mirror.value() || !mirror.value()->removed();
}

}  // namespace kaban::server
