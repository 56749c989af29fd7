#include "kaban/agent/https_client.hpp"

#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "kaban/agent/error.hpp"
#include "kaban/protocol/messages.hpp"

namespace kaban::agent {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;

// close_notify is a courtesy to the server; a dead peer must not hold up the caller for long.
constexpr std::chrono::milliseconds kCloseNotifyTimeout{500};
// Kaban's server sends a handful of short headers; anything near this is not our server.
constexpr std::uint32_t kMaxResponseHeaderBytes = 16 * 1024;
constexpr unsigned kHttpVersion = 11;
constexpr std::uint16_t kDefaultHttpsPort = 443;

// How a kept-alive connection looks when the server closed it while we were idle: the write
// fails, or the read ends before the first byte of an answer.
bool closed_by_peer(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == net::error::connection_aborted || ec == ssl::error::stream_truncated;
}

// origin-form only (RFC 9112 3.2.1): a target with spaces or control characters would let a
// caller's string split the request line.
bool valid_target(std::string_view target) {
  if (target.empty() || target.front() != '/')
    return false;
  for (const char c : target) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f)
      return false;
  }
  return true;
}

std::string lower_case(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Boost 1.74's Beast speaks boost::string_view.
beast::string_view to_beast(std::string_view s) {
  return {s.data(), s.size()};
}
std::string_view to_std(beast::string_view s) {
  return {s.data(), s.size()};
}

// The server's alert refusing the device's certificate (revoked, or unknown to it). Under TLS
// 1.2 it ends the handshake; under TLS 1.3 the client's handshake is done before the server has
// looked at the certificate, so the alert ends the first read instead (or, on a reused session,
// a write).
bool certificate_refused(const error_code& ec) {
  return ec.category() == net::error::get_ssl_category() &&
         crypto::is_certificate_refused_alert(static_cast<unsigned int>(ec.value()));
}

constexpr std::string_view kCertificateRefused =
    "the server refused this device's certificate: IT may have revoked it; ask IT whether to "
    "enroll this device again";

std::string milliseconds_text(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " ms";
}

}  // namespace

struct HttpsClient::Impl {
  using Stream = beast::ssl_stream<beast::tcp_stream>;

  Impl(HttpsClientConfig cfg, const crypto::TlsClientTrust& trust,
       const std::optional<crypto::TlsClientIdentity>& identity)
      : config(std::move(cfg)), ctx(ssl::context::tls_client) {
    const auto configured =
        crypto::configure_client_tls(ctx, trust, identity ? &*identity : nullptr);
    if (!configured)
      context_error = configured.error();
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    // A destructor cannot report, and close() only fails on allocation; the socket goes away
    // with the stream either way.
    try {
      close();
    } catch (...) {
    }
  }

  Result<HttpsResponse> request(std::string_view method, std::string_view target,
                                std::string_view body, std::string_view content_type);
  Result<void> connect();
  Result<HttpsResponse> exchange(const http::request<http::string_body>& req, bool is_head,
                                 bool& closed_before_answer);
  void close();
  void drop();
  void run_until(const bool& done);
  std::string where() const { return config.host + ":" + std::to_string(config.port); }

  HttpsClientConfig config;
  // Declared before the stream: the stream's sockets and timers must go first.
  net::io_context ioc;
  ssl::context ctx;
  std::error_code context_error;
  std::optional<Stream> stream;  ///< engaged while a connection is up
  beast::flat_buffer buffer;
  std::string last_failure;
};

// Every operation started on the stream has a deadline of its own (the tcp_stream expiry,
// which closes the socket when it passes), so running until the handler fires is bounded.
void HttpsClient::Impl::run_until(const bool& done) {
  ioc.restart();
  if (!config.cancel) {
    while (!done && ioc.run_one() != 0) {
    }
    return;
  }
  // Cancelling the socket makes the pending operation complete with operation_aborted, so the
  // loop still ends on its handler; the caller then sees the flag and reports interrupted.
  bool cancelled = false;
  while (!done) {
    if (!cancelled && config.cancel->load()) {
      cancelled = true;
      if (stream)
        beast::get_lowest_layer(*stream).cancel();
    }
    if (ioc.run_one_for(kCancelPoll) == 0 && ioc.stopped())
      break;
  }
}

void HttpsClient::Impl::drop() {
  if (stream) {
    error_code ignored;
    beast::get_lowest_layer(*stream).socket().close(ignored);
    stream.reset();
  }
  buffer.clear();
}

void HttpsClient::Impl::close() {
  if (!stream)
    return;
  beast::get_lowest_layer(*stream).expires_after(kCloseNotifyTimeout);
  bool done = false;
  stream->async_shutdown([&](error_code) { done = true; });
  run_until(done);
  drop();
}

Result<void> HttpsClient::Impl::connect() {
  const auto deadline = SteadyClock::now() + config.connect_timeout;

  // The resolver has no stream to expire, so it gets the deadline by hand. getaddrinfo itself
  // cannot be interrupted: an abandoned lookup finishes in Asio's resolver thread and reports
  // into the shared state, which outlives this frame.
  struct Resolution {
    bool done = false;
    error_code ec;
    tcp::resolver::results_type endpoints;
  };
  auto resolution = std::make_shared<Resolution>();
  tcp::resolver resolver(ioc);
  resolver.async_resolve(config.host, std::to_string(config.port),
                         [resolution](error_code ec, tcp::resolver::results_type endpoints) {
                           resolution->ec = ec;
                           resolution->endpoints = std::move(endpoints);
                           resolution->done = true;
                         });
  ioc.restart();
  while (!resolution->done && ioc.run_one_until(deadline) != 0) {
  }
  if (!resolution->done) {
    resolver.cancel();
    last_failure = "looking up " + config.host + " took longer than " +
                   milliseconds_text(config.connect_timeout);
    return errc::server_unreachable;
  }
  if (resolution->ec) {
    last_failure = "could not look up " + config.host + ": " + resolution->ec.message();
    return errc::server_unreachable;
  }

  stream.emplace(ioc, ctx);
  auto& tcp_layer = beast::get_lowest_layer(*stream);
  tcp_layer.expires_at(deadline);
  bool done = false;
  error_code ec;
  tcp_layer.async_connect(resolution->endpoints, [&](error_code e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  run_until(done);
  if (ec) {
    drop();
    last_failure = ec == beast::error::timeout
                       ? "connecting to " + where() + " took longer than " +
                             milliseconds_text(config.connect_timeout)
                       : "could not connect to " + where() + ": " + ec.message();
    return errc::server_unreachable;
  }
  // Requests are small and answered at once; Nagle would hold each one back for an ACK.
  tcp_layer.socket().set_option(tcp::no_delay(true), ec);

  if (const auto named = crypto::expect_server_name(stream->native_handle(), config.host); !named) {
    drop();
    last_failure = "\"" + config.host +
                   "\" cannot be checked against a certificate: " + named.error().message();
    return errc::server_unreachable;
  }

  done = false;
  stream->async_handshake(ssl::stream_base::client, [&](error_code e) {
    ec = e;
    done = true;
  });
  run_until(done);
  if (ec) {
    // Ask OpenSSL why before the connection (and its verify result) goes away.
    std::string why = crypto::describe_verify_failure(stream->native_handle());
    drop();
    if (why.empty() && certificate_refused(ec)) {
      last_failure = kCertificateRefused;
      return errc::server_refused;
    }
    if (!why.empty()) {
      last_failure = std::move(why);
      return errc::server_untrusted;
    }
    last_failure = ec == beast::error::timeout
                       ? where() +
                             " accepted the connection but did not complete the TLS "
                             "handshake within " +
                             milliseconds_text(config.connect_timeout)
                       : "the TLS handshake with " + where() + " failed: " + ec.message();
    return errc::server_unreachable;
  }
  return kaban::ok();
}

Result<HttpsResponse> HttpsClient::Impl::exchange(const http::request<http::string_body>& req,
                                                  bool is_head, bool& closed_before_answer) {
  closed_before_answer = false;
  beast::get_lowest_layer(*stream).expires_after(config.request_timeout);

  bool done = false;
  error_code ec;
  http::async_write(*stream, req, [&](error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  run_until(done);
  if (ec && certificate_refused(ec)) {
    drop();
    last_failure = kCertificateRefused;
    return errc::server_refused;
  }
  if (ec) {
    closed_before_answer = closed_by_peer(ec);
    drop();
    last_failure = ec == beast::error::timeout
                       ? "sending the request to " + where() + " took longer than " +
                             milliseconds_text(config.request_timeout)
                       : "the connection to " + where() + " broke while sending: " + ec.message();
    return errc::network_failed;
  }

  http::response_parser<http::string_body> parser;
  parser.header_limit(kMaxResponseHeaderBytes);
  parser.body_limit(static_cast<std::uint64_t>(config.max_response_body));
  // A HEAD answer announces a Content-Length but carries no body.
  parser.skip(is_head);
  // The header is read on its own first: Beast 1.74's eager parse (http::async_read) goes on
  // past a Content-Length above body_limit and loses the error, so the limit only holds if the
  // header is parsed non-eagerly. Chunked bodies are checked chunk by chunk in either mode.
  done = false;
  http::async_read_header(*stream, buffer, parser, [&](error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  run_until(done);
  if (!ec && !parser.is_done()) {
    done = false;
    http::async_read(*stream, buffer, parser, [&](error_code e, std::size_t) {
      ec = e;
      done = true;
    });
    run_until(done);
  }
  if (ec == http::error::body_limit) {
    // The rest of the oversized body is still on the wire: this connection cannot be reused.
    drop();
    last_failure = where() + " sent an answer larger than the " +
                   std::to_string(config.max_response_body) + " bytes this request accepts";
    return errc::response_too_large;
  }
  if (ec && certificate_refused(ec)) {
    drop();
    last_failure = kCertificateRefused;
    return errc::server_refused;
  }
  if (ec) {
    closed_before_answer = !parser.got_some() && closed_by_peer(ec);
    drop();
    last_failure =
        ec == beast::error::timeout
            ? where() + " did not answer within " + milliseconds_text(config.request_timeout)
            : "the connection to " + where() + " broke while reading the answer: " + ec.message();
    return errc::network_failed;
  }

  auto message = parser.release();
  HttpsResponse response;
  response.status = static_cast<int>(message.result_int());
  for (const auto& field : message) {
    const auto [it, inserted] = response.headers.emplace(lower_case(to_std(field.name_string())),
                                                         std::string(to_std(field.value())));
    // RFC 9110 5.3: repeated fields combine into one comma-separated list.
    if (!inserted)
      it->second += ", " + std::string(to_std(field.value()));
  }
  if (const auto type = response.headers.find("content-type"); type != response.headers.end())
    response.content_type = type->second;
  response.body = std::move(message.body());
  // The server said it will close; it owes no close_notify reply, so do not wait for one.
  if (!message.keep_alive())
    drop();
  return response;
}

Result<HttpsResponse> HttpsClient::Impl::request(std::string_view method, std::string_view target,
                                                 std::string_view body,
                                                 std::string_view content_type) {
  last_failure.clear();
  if (context_error) {
    last_failure = "the TLS settings could not be applied: " + context_error.message();
    return context_error;
  }
  if (!valid_target(target)) {
    last_failure = "not a request target: " + std::string(target);
    return std::make_error_code(std::errc::invalid_argument);
  }

  http::request<http::string_body> req;
  req.version(kHttpVersion);
  const auto verb = http::string_to_verb(to_beast(method));
  if (verb == http::verb::unknown)
    req.method_string(to_beast(method));
  else
    req.method(verb);
  req.target(to_beast(target));
  // RFC 9110 7.2: an IPv6 literal goes in brackets, and the default port is left out.
  std::string host =
      config.host.find(':') != std::string::npos ? "[" + config.host + "]" : config.host;
  if (config.port != kDefaultHttpsPort)
    host += ":" + std::to_string(config.port);
  req.set(http::field::host, host);
  if (!config.user_agent.empty())
    req.set(http::field::user_agent, config.user_agent);
  if (!body.empty()) {
    req.set(http::field::content_type, to_beast(content_type));
    req.body() = std::string(body);
  }
  req.prepare_payload();
  const bool is_head = verb == http::verb::head;

  const auto cancelled = [this] { return config.cancel && config.cancel->load(); };
  const auto interrupted = [this] {
    drop();
    last_failure = "stopped before " + where() + " answered";
    return std::error_code(errc::interrupted);
  };
  if (cancelled())
    return interrupted();
  const bool reused = stream.has_value();
  if (!reused) {
    auto connected = connect();
    if (cancelled())
      return interrupted();
    if (!connected)
      return connected.error();
  }
  bool closed_before_answer = false;
  auto response = exchange(req, is_head, closed_before_answer);
  if (!response && cancelled())
    return interrupted();
  // The server may close a kept-alive connection whenever it is idle (its idle timeout). If it
  // did so before reading this request, the request never ran, so sending it again on a fresh
  // connection is safe; uploads also carry ids the server applies at most once. Only once:
  // a fresh connection that fails the same way is a real failure.
  if (!response && closed_before_answer && reused) {
    KABAN_TRYV(connect());
    response = exchange(req, is_head, closed_before_answer);
    if (!response && cancelled())
      return interrupted();
  }
  return response;
}

HttpsClient::HttpsClient(HttpsClientConfig config, crypto::TlsClientTrust trust,
                         std::optional<crypto::TlsClientIdentity> identity)
    : impl_(std::make_unique<Impl>(std::move(config), trust, identity)) {}
HttpsClient::~HttpsClient() = default;
HttpsClient::HttpsClient(HttpsClient&&) noexcept = default;
HttpsClient& HttpsClient::operator=(HttpsClient&&) noexcept = default;

Result<HttpsResponse> HttpsClient::request(std::string_view method, std::string_view target,
                                           std::string_view body, std::string_view content_type) {
  return impl_->request(method, target, body, content_type);
}

const std::string& HttpsClient::describe_last_failure() const {
  return impl_->last_failure;
}

void HttpsClient::close() {
  impl_->close();
}

std::string refusal_message(const HttpsResponse& response) {
  auto body = protocol::parse_error_body(response.body);
  return body && !body.value().message.empty()
             ? body.value().message
             : "the server answered HTTP " + std::to_string(response.status);
}

}  // namespace kaban::agent
