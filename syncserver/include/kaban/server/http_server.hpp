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
  std::string listen_host = "127.0.0.1";  ///< an address, or a name resolved once by start()
  std::uint16_t listen_port = 8443;       ///< 0 picks a free port; read it back from port()
  int threads = 2;  ///< io threads (at least 1); each connection runs on its own strand
  /// Open connections at most. A connection accepted at the limit is closed at once, before
  /// its TLS handshake (the client sees the connection end), and gets a log line with "error"
  /// and "rejected_total".
  std::size_t max_connections = 1024;
  std::size_t max_header_bytes = 8 * 1024;  ///< a larger header is answered 431 and closed
  /// TCP accept to the end of the TLS handshake; on expiry the connection is cut.
  std::chrono::milliseconds handshake_timeout{10'000};
  /// After the handshake, the wait for a first request; and for every request, from its first
  /// byte to the end of its header. A header that does not arrive in time is answered 408.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{60'000};   ///< whole body; on expiry 408 and close
  std::chrono::milliseconds write_timeout{60'000};  ///< whole response; on expiry the cut
  /// Keep-alive wait for the next request; on expiry the connection is closed (close_notify).
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds drain_timeout{10'000};  ///< stop(): then connections are cut
};

/// One request as the router sees it. The body is complete and within the route's limit.
struct HttpRequest {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< path and query, e.g. "/v1/changes?cursor=&limit=50"
  std::string path;    ///< target without the query
  std::map<std::string, std::string> query;  ///< decoded query parameters
  std::string content_type;
  std::string accept_encoding;  ///< the Accept-Encoding header as sent ("" if none)
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

/// What the transport asks of the API. Errors the transport answers itself (400 malformed
/// HTTP, 408 too slow, 413 too large, 431 header too large, 500 router threw) carry a JSON body
/// {"error":{"code":"bad_request"|"timeout"|"too_large"|"internal","message":"..."}} and close
/// the connection.
class Router {
 public:
  virtual ~Router() = default;
  /// Called once the headers are read: the most body bytes this request may carry, or
  /// std::nullopt to answer at once with the given response (404, 405...). A body above the
  /// limit gets 413 without being read. May run on any io thread, concurrently.
  virtual std::optional<std::size_t> body_limit(const HttpRequest& head, HttpResponse& refusal) = 0;
  /// Answers a complete request. May run on any io thread, concurrently; it blocks that thread
  /// while it runs, and must return for stop() to finish. Must not throw (the session answers
  /// 500, and the exception's message goes to the log only). A status outside 100..599 is
  /// answered 500.
  virtual HttpResponse handle(const HttpRequest& request) = 0;
  /// Answers a complete request now or later: a request that waits for news (a long-poll) keeps
  /// `reply` and calls it when there is something to say, from any thread. The first call
  /// answers; later calls are ignored. Dropping `reply` without calling it closes the
  /// connection. Every reply must be called or dropped by the time stopping() returns, or soon
  /// after (within the server's drain_timeout); a reply called after the server stopped is
  /// ignored. While a request waits, its io thread is free. An exception from here is answered
  /// 500. The default answers at once with handle().
  using Reply = std::function<void(HttpResponse)>;
  virtual void handle_async(HttpRequest request, Reply reply) { reply(handle(request)); }
  /// Called once when HttpsServer::stop() begins, before the drain, from the thread that stops
  /// the server: answer the requests still waiting (an empty long-poll answer will do). Must not
  /// throw (an exception is swallowed).
  virtual void stopping() {}
  /// Called during the TLS handshake with the DER of a client certificate that has already
  /// chained to the client CA (and is within its validity), before any request is read, and
  /// again when a session with a client certificate would be resumed: false fails the
  /// handshake as revoked (the log line's "error" says so), true lets it go on. May run on any
  /// io thread, concurrently; it blocks that thread while it runs. An exception fails the
  /// handshake too. The default accepts every certificate.
  virtual bool accept_client_certificate(crypto::ByteView der) {
    (void)der;
    return true;
  }
};

/// The listener. Thread-safe: start() and stop() may be called from any thread.
/// Every request gets one compact JSON log line on `log`, once its response is written:
/// {"time" (RFC 3339 UTC, ms, when its header was read),"peer","device","endpoint" (the
/// response's log_endpoint, or the path),"method","status","bytes_in","bytes_out","ms" (header
/// read to response written)}, plus "error" when something failed (a router exception, a write
/// error; "status" is 0 if no response could be sent). A connection that fails before a request
/// (handshake failure or timeout, no request in time, the connection limit) gets
/// {"time","peer","error"}; a handshake refused over the client's certificate (another CA,
/// expired, revoked by Router::accept_client_certificate) says why in "error". `log` is called from
/// the io threads, one call at a time; an exception from it is swallowed.
class HttpsServer {
 public:
  using LogSink = std::function<void(const std::string& json_line)>;

  HttpsServer(HttpServerConfig config, crypto::TlsServerIdentity identity, Router& router,
              LogSink log);
  ~HttpsServer();  ///< stops and joins if still running; not from the server's io threads
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  /// Binds, listens and starts the io threads. Fails with the resolve or bind error (address in
  /// use, permission) or the TLS configuration error (kaban::crypto::errc); nothing is left
  /// running then, and start() may be tried again. After a successful start(), or once stop()
  /// was called, it fails with std::errc::operation_not_permitted: a server runs once.
  Result<void> start();
  /// The bound port (useful after listen_port = 0). Valid after start().
  std::uint16_t port() const;
  /// Graceful stop: closes the acceptor; closes connections that have no request in flight
  /// (in the handshake, waiting for a request, or still reading a header); lets requests whose
  /// header was read finish, answered with Connection: close; waits up to drain_timeout for
  /// every connection to end, then cuts what is left and joins the io threads. Idempotent; a
  /// second caller blocks until the first one's stop has finished. Called from one of the
  /// server's own io threads (a handler), it starts the stop on another thread and returns at
  /// once: use wait().
  void stop();
  /// Blocks until stop() has finished. Must not be called from the server's io threads.
  void wait();
  /// Open connections now (for tests and the connection limit); 0 once stop() has finished.
  std::size_t connection_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kaban::server
