// HttpsClient: one keep-alive HTTPS connection from the agent to its sync server (Boost.Beast),
// with a deadline on every step.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "kaban/crypto/tls.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

struct HttpsClientConfig {
  std::string host;
  std::uint16_t port = 0;
  std::chrono::milliseconds connect_timeout{10'000};  ///< DNS + TCP + TLS handshake
  std::chrono::milliseconds request_timeout{60'000};  ///< write the request, read the answer
  std::size_t max_response_body = 64 * 1024 * 1024;
  std::string user_agent;  ///< e.g. "kaban/0.1.0 (linux)"
  /// Optional. When it becomes true (set from any thread or a signal handler), the request in
  /// progress is abandoned within about kCancelPoll and fails with errc::interrupted; the
  /// connection is dropped. Meant for long polls, which would otherwise hold up a Ctrl-C.
  const std::atomic<bool>* cancel = nullptr;
};

/// How often a request with HttpsClientConfig::cancel looks at the flag.
inline constexpr std::chrono::milliseconds kCancelPoll{100};

/// One request for HttpsClient::request.
struct HttpsRequest {
  std::string_view method = "GET";
  std::string_view target;  ///< origin-form: "/v1/changes?cursor=x"
  std::string_view body;
  std::string_view content_type = "application/json";  ///< sent when `body` is not empty
  /// Asks for a gzip-compressed answer (Accept-Encoding: gzip), for answers that compress well
  /// (the course feed). The server may still answer plain. A gzip answer is decoded before it is
  /// returned, its decoded size bounded by max_response_body as a plain body is.
  bool accept_gzip = false;
};

struct HttpsResponse {
  int status = 0;
  std::string content_type;
  std::string body;  ///< decoded: a gzip answer's Content-Encoding is not among `headers`
  std::map<std::string, std::string> headers;  ///< lower-case names
};

/// Connects lazily on the first request and reconnects once if a kept-alive connection was
/// closed by the server. Every call blocks the calling thread until done or until its deadline.
/// Not thread-safe: one client per thread (sync runs several).
/// Failures come back as error codes: errc::server_unreachable (DNS, connect refused, timeout
/// while connecting or in the TLS handshake), errc::server_untrusted (the TLS certificate checks
/// failed: wrong CA, pin mismatch, wrong name; describe_last_failure() says which),
/// errc::server_refused (the server's TLS alert refused this device's certificate: revoked or
/// unknown to it), errc::network_failed (the connection broke or timed out mid-request),
/// errc::response_too_large, errc::bad_response (an encoding it cannot read), errc::interrupted
/// (HttpsClientConfig::cancel). Does not throw
/// (allocation failure aside). A moved-from client may only be assigned or destroyed.
class HttpsClient {
 public:
  /// Applies the TLS settings (crypto::configure_client_tls); connects nothing yet. If the
  /// settings are unusable (bad PEM), every request() fails with that crypto error.
  HttpsClient(HttpsClientConfig config, crypto::TlsClientTrust trust,
              std::optional<crypto::TlsClientIdentity> identity);
  /// close(), so it may block for up to the close_notify deadline (half a second).
  ~HttpsClient();
  HttpsClient(HttpsClient&&) noexcept;
  HttpsClient& operator=(HttpsClient&&) noexcept;

  /// Sends one request and reads the whole answer (any status). A target that is not
  /// origin-form fails with std::errc::invalid_argument. Connecting (DNS, TCP, TLS) is bounded by
  /// connect_timeout, sending the request and reading the answer by request_timeout. An answer
  /// with a Content-Encoding the request did not ask for, or a gzip body that does not decode,
  /// fails with errc::bad_response; one that decodes to more than max_response_body with
  /// errc::response_too_large. After a failure the connection is dropped; the next request
  /// connects afresh.
  Result<HttpsResponse> request(const HttpsRequest& outgoing);
  /// The same, for a request that asks for no encoding.
  Result<HttpsResponse> request(std::string_view method, std::string_view target,
                                std::string_view body = {},
                                std::string_view content_type = "application/json");
  /// A sentence about the last request's failure (e.g. the certificate problem), or "" after a
  /// success.
  const std::string& describe_last_failure() const;
  /// Closes the connection, sending close_notify if it is up (waiting at most half a second).
  /// The next request connects again.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// What the server said when it refused a request: the message of its JSON error body, or "the
/// server answered HTTP N" when the body has none. For the `why` of errc::server_refused.
std::string refusal_message(const HttpsResponse& response);

}  // namespace kaban::agent
