// HttpsServer: the TLS listener and HTTP/1.1 sessions (Boost.Beast) under the sync server's API.
// It knows nothing of the API: a Router says how big each request may be and answers it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/tls.hpp"
#include "kaban/result.hpp"

namespace kaban::server {

/// Every limit and deadline of the transport. Defaults suit a city-wide server.
struct HttpServerConfig {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8443;  ///< 0 picks a free port; read it back from port()
  int threads = 2;                   ///< io threads; each connection runs on its own strand
  std::size_t max_connections = 1024;
  std::size_t max_header_bytes = 8 * 1024;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds header_timeout{10'000};  ///< from the first byte to the end of headers
  std::chrono::milliseconds body_timeout{60'000};
  std::chrono::milliseconds write_timeout{60'000};
  std::chrono::milliseconds idle_timeout{60'000};   ///< keep-alive wait for the next request
  std::chrono::milliseconds drain_timeout{10'000};  ///< stop(): then connections are cut
};

/// One request as the router sees it. The body is complete and within the route's limit.
struct HttpRequest {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< path and query, e.g. "/v1/changes?cursor=&limit=50"
  std::string path;    ///< target without the query
  std::map<std::string, std::string> query;  ///< decoded query parameters
  std::string content_type;
  std::string body;
  std::string peer_address;          ///< the client's IP address, for rate limits and logs
  crypto::Bytes client_certificate;  ///< DER of the verified client certificate; empty if none
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;  ///< extra headers (e.g. Cache-Control)
  /// What the request log line names as the caller and the endpoint ("" when unknown).
  std::string log_device;
  std::string log_endpoint;
};

class Router {
 public:
  virtual ~Router() = default;
  /// Called once the headers are read: the most body bytes this request may carry, or
  /// std::nullopt to answer at once with the given response (404, 405...). A body above the
  /// limit gets 413 without being read. May run on any io thread, concurrently.
  virtual std::optional<std::size_t> body_limit(const HttpRequest& head, HttpResponse& refusal) = 0;
  /// Answers a complete request. May run on any io thread, concurrently; must not throw (the
  /// session answers 500 if it does).
  virtual HttpResponse handle(const HttpRequest& request) = 0;
};

/// The listener. Thread-safe: start() and stop() may be called from any thread.
/// Every request gets one JSON log line on `log`: {"time","peer","device","endpoint","method",
/// "status","bytes_in","bytes_out","ms"} (and "error" when a connection fails before a request).
class HttpsServer {
 public:
  using LogSink = std::function<void(const std::string& json_line)>;

  HttpsServer(HttpServerConfig config, crypto::TlsServerIdentity identity, Router& router,
              LogSink log);
  ~HttpsServer();  ///< stops and joins if still running
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  /// Binds, listens and starts the io threads. Fails with the bind error (address in use,
  /// permission) or the TLS configuration error; nothing is left running then.
  Result<void> start();
  /// The bound port (useful after listen_port = 0). Valid after start().
  std::uint16_t port() const;
  /// Graceful stop: closes the acceptor, lets requests in flight finish, closes idle keep-alive
  /// connections, waits up to drain_timeout, then cuts what is left and joins the threads.
  void stop();
  /// Blocks until stop() has finished (from another thread or a signal handler's strand).
  void wait();
  /// Open connections now (for tests and the connection limit).
  std::size_t connection_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kaban::server
