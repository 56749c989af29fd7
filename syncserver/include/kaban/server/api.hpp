// Api: the /v1 endpoints of the sync server (docs/protocol.md), as a Router under HttpsServer.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "kaban/server/data_dir.hpp"
#include "kaban/server/http_server.hpp"

namespace kaban::server {

struct ApiConfig {
  /// Wrong, used or expired enrollment codes and wrong report tokens (POST /v1/device-events)
  /// an address may send within enroll_failure_window before both endpoints answer it 429.
  int enroll_failures_allowed = 10;
  std::chrono::seconds enroll_failure_window{600};
  /// Most addresses the enrollment rate limiter remembers (oldest are forgotten first).
  std::size_t rate_limit_addresses = 10'000;
  /// Most changes in one /v1/changes page.
  int changes_page = 100;
  /// Most changes in one /v1/inbox page (at most protocol::kMaxInboxPage).
  int inbox_page = 200;
  /// GET /v1/inbox?wait=S: how often held requests look at the inbox sequence (a new message
  /// reaches a waiting device within about this long), and how many may be held at once (past
  /// that, requests are answered at once and the device asks again).
  std::chrono::milliseconds inbox_poll_interval{250};
  std::size_t max_waiting_requests = 20'000;
  /// PUT /v1/chunks/<sha256>: the most bytes of uploaded chunks one device may hold that no
  /// accepted message uses yet (413 upload_quota past it).
  std::uint64_t upload_quota_bytes = 64 * 1024 * 1024;
  /// Uploaded chunks no message uses are forgotten (row and file) once this old; a sweep runs
  /// from an upload at most once per upload_sweep_interval.
  std::chrono::seconds upload_max_age{24 * 3600};
  std::chrono::seconds upload_sweep_interval{3600};
};

/// Answers every /v1 request. handle(), body_limit() and accept_client_certificate() may run on
/// any io thread at once: each borrows a database connection from a pool of its own (SQLite
/// connections are used by one thread at a time) and the rate limiter has its own lock.
/// `identity` must outlive the Api.
///
/// Devices are known by the certificate they present (any certificate issued to them). A device
/// whose last verdict was blocked or wipe, or whose lease's block_after passed without a check-in
/// since, is answered 403 device_blocked for changes, chunks and the outbox, and reads only IT's
/// messages (GET /v1/inbox?from=it); POST /v1/checkin always works, since a compliant check-in is
/// the way out.
///
/// A content mirror (`admin mirror add`, kaban/server/mirrors.hpp) is known by its client
/// certificate too. It may GET /v1/chunks/<sha256> for any chunk of a course that is neither
/// retired nor expired (404 chunk_not_found otherwise, attachment chunks included) and is
/// answered 403 mirror_forbidden on every other endpoint; a removed mirror gets 403
/// mirror_removed, should its connection get past the TLS check. Course chunks are answered with
/// Cache-Control public (any cache may keep them), attachment chunks private.
class Api final : public Router {
 public:
  Api(std::filesystem::path data_dir, const ServerIdentity& identity, ApiConfig config = {});
  ~Api() override;

  std::optional<std::size_t> body_limit(const HttpRequest& head, HttpResponse& refusal) override;
  /// False for a certificate of a revoked device (`admin device revoke`) or of a removed content
  /// mirror (`admin mirror remove`), so its handshake fails. True for any other, including one
  /// nobody has (the request is then refused with unknown_device) and when the database cannot
  /// be read (every request checks revocation again, and would fail the same way).
  bool accept_client_certificate(crypto::ByteView der) override;
  /// Answers at once, except GET /v1/inbox?wait=S with nothing new: that is held (on the
  /// Api's own thread, no io thread) until something arrives for the caller's user or S seconds
  /// pass, then answered with the page, or an empty one.
  HttpResponse handle(const HttpRequest& request) override;
  void handle_async(HttpRequest request, Reply reply) override;
  /// Answers every held inbox request with an empty page; later ones are answered at once.
  void stopping() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kaban::server
