#include "kaban/agent/https_client.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "kaban/agent/error.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/gzip.hpp"
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

std::string_view trimmed(std::string_view s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos)
    return {};
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
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

bool would_block(const error_code& ec) {
  return ec == net::error::would_block || ec == net::error::try_again;
}

// The transport under TLS: a TCP socket in non-blocking mode whose reads and writes wait in
// poll(2) until the socket is ready, the deadline passes (beast::error::timeout) or the cancel
// flag is set (operation_aborted). TLS and HTTP run over it synchronously: a TLS record then
// costs a read or two. Beast's asynchronous operations, run from the calling thread with
// io_context::run_one(), cost far more: every intermediate step of a composed operation is
// posted, and every posted step polls the reactor once (over a hundred epoll_wait calls per
// 70 KiB chunk), which made chunk downloads CPU-bound. Linux only, as the agent is.
class DeadlineSocket {
 public:
  using lowest_layer_type = tcp::socket::lowest_layer_type;
  using executor_type = tcp::socket::executor_type;

  explicit DeadlineSocket(net::io_context& ioc) : socket_(ioc) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  lowest_layer_type& lowest_layer() noexcept { return socket_.lowest_layer(); }
  const lowest_layer_type& lowest_layer() const noexcept { return socket_.lowest_layer(); }
  tcp::socket& socket() noexcept { return socket_; }

  void watch(const std::atomic<bool>* cancel) noexcept { cancel_ = cancel; }
  void expires_at(SteadyClock::time_point deadline) noexcept { deadline_ = deadline; }
  void expires_after(std::chrono::milliseconds timeout) {
    deadline_ = SteadyClock::now() + timeout;
  }

  // The first endpoint that accepts a TCP connection before the deadline.
  void connect(const tcp::resolver::results_type& endpoints, error_code& ec) {
    ec = net::error::host_not_found;
    for (const auto& entry : endpoints) {
      const tcp::endpoint endpoint = entry.endpoint();
      error_code ignored;
      socket_.close(ignored);
      socket_.open(endpoint.protocol(), ec);
      if (!ec)
        socket_.non_blocking(true, ec);
      if (ec)
        continue;
      if (::connect(socket_.native_handle(), endpoint.data(),
                    static_cast<socklen_t>(endpoint.size())) == 0)
        return;
      if (errno != EINPROGRESS && errno != EINTR) {
        ec.assign(errno, boost::system::system_category());
        continue;
      }
      if (!wait(POLLOUT, ec))
        return;  // the deadline or the cancel flag holds for the next endpoint too
      int failure = 0;
      socklen_t length = sizeof failure;
      if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_ERROR, &failure, &length) != 0)
        failure = errno;
      if (failure == 0) {
        ec = {};
        return;
      }
      ec.assign(failure, boost::system::system_category());
    }
  }

  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, error_code& ec) {
    for (;;) {
      const std::size_t n = socket_.read_some(buffers, ec);
      if (!would_block(ec) || !wait(POLLIN, ec))
        return n;
    }
  }

  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, error_code& ec) {
    for (;;) {
      const std::size_t n = socket_.write_some(buffers, ec);
      if (!would_block(ec) || !wait(POLLOUT, ec))
        return n;
    }
  }

 private:
  bool wait(short events, error_code& ec) {
    for (;;) {
      if (cancel_ && cancel_->load()) {
        ec = net::error::operation_aborted;
        return false;
      }
      const auto now = SteadyClock::now();
      if (now >= deadline_) {
        ec = beast::error::timeout;
        return false;
      }
      auto slice = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - now);
      if (cancel_)
        slice = std::min(slice, kCancelPoll);
      pollfd ready{socket_.native_handle(), events, 0};
      const int polled =
          ::poll(&ready, 1, static_cast<int>(std::min<std::int64_t>(slice.count(), INT_MAX)));
      // Ready, or an error or hang-up, which the next read or write reports.
      if (polled > 0) {
        ec = {};
        return true;
      }
      if (polled < 0 && errno != EINTR) {
        ec.assign(errno, boost::system::system_category());
        return false;
      }
    }
  }

  tcp::socket socket_;
  const std::atomic<bool>* cancel_ = nullptr;
  SteadyClock::time_point deadline_ = SteadyClock::time_point::max();
};

}  // namespace

struct HttpsClient::Impl {
  // Beast's wrapper rather than Asio's bare ssl::stream: it gathers the pieces of a request
  // into one TLS record instead of sending one record per piece.
  using Stream = beast::ssl_stream<DeadlineSocket>;

  Impl(HttpsClientConfig cfg, const crypto::TlsClientTrust& trust,
       const std::optional<crypto::TlsClientIdentity>& identity)
      : config(std::move(cfg)), ctx(ssl::context::tls_client) {
    const auto configured =
        crypto::configure_client_tls(ctx, trust, identity ? &*identity : nullptr);
    if (!configured)
      context_error = configured.error();
    // RFC 9110 7.2: an IPv6 literal goes in brackets, and the default port is left out.
    host_field = config.host.find(':') != std::string::npos ? "[" + config.host + "]" : config.host;
    if (config.port != kDefaultHttpsPort)
      host_field += ":" + std::to_string(config.port);
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

  Result<HttpsResponse> request(const HttpsRequest& outgoing);
  Result<void> connect();
  Result<HttpsResponse> exchange(const http::request<http::string_body>& req, bool is_head,
                                 bool& closed_before_answer);
  void read_body(std::uint64_t length, std::string& body, error_code& ec);
  Result<void> decode(HttpsResponse& response, bool accept_gzip);
  void close();
  void drop();
  std::string where() const { return config.host + ":" + std::to_string(config.port); }

  HttpsClientConfig config;
  std::string host_field;  ///< the Host header
  // Declared before the stream: the stream's socket must go first. Only DNS runs on it.
  net::io_context ioc;
  ssl::context ctx;
  std::error_code context_error;
  std::optional<Stream> stream;  ///< engaged while a connection is up
  beast::flat_buffer buffer;
  std::string last_failure;
};

void HttpsClient::Impl::drop() {
  if (stream) {
    error_code ignored;
    stream->next_layer().socket().close(ignored);
    stream.reset();
  }
  buffer.clear();
}

void HttpsClient::Impl::close() {
  if (!stream)
    return;
  stream->next_layer().expires_after(kCloseNotifyTimeout);
  error_code ignored;
  stream->shutdown(ignored);
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
  DeadlineSocket& transport = stream->next_layer();
  transport.watch(config.cancel);
  transport.expires_at(deadline);
  error_code ec;
  transport.connect(resolution->endpoints, ec);
  if (ec) {
    drop();
    last_failure = ec == beast::error::timeout
                       ? "connecting to " + where() + " took longer than " +
                             milliseconds_text(config.connect_timeout)
                       : "could not connect to " + where() + ": " + ec.message();
    return errc::server_unreachable;
  }
  // Requests are small and answered at once; Nagle would hold each one back for an ACK.
  transport.socket().set_option(tcp::no_delay(true), ec);

  if (const auto named = crypto::expect_server_name(stream->native_handle(), config.host); !named) {
    drop();
    last_failure = "\"" + config.host +
                   "\" cannot be checked against a certificate: " + named.error().message();
    return errc::server_unreachable;
  }

  stream->handshake(ssl::stream_base::client, ec);
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

// A body of known length goes from TLS straight into its string: what the header read brought
// along is copied once, and the rest is decrypted in place, without Beast's parser copying
// every byte from the read buffer into the body.
void HttpsClient::Impl::read_body(std::uint64_t length, std::string& body, error_code& ec) {
  body.resize(static_cast<std::size_t>(length));
  const std::size_t early = std::min(buffer.size(), body.size());
  net::buffer_copy(net::buffer(body.data(), early), buffer.data());
  buffer.consume(early);
  if (early < body.size())
    net::read(*stream, net::buffer(body.data() + early, body.size() - early), ec);
}

Result<HttpsResponse> HttpsClient::Impl::exchange(const http::request<http::string_body>& req,
                                                  bool is_head, bool& closed_before_answer) {
  closed_before_answer = false;
  stream->next_layer().expires_after(config.request_timeout);

  error_code ec;
  http::write(*stream, req, ec);
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
  // The header is read on its own first, so that a Content-Length above body_limit fails
  // before any of the body is read. Chunked bodies are checked chunk by chunk.
  http::read_header(*stream, buffer, parser, ec);
  std::string body;
  bool body_read = false;
  if (!ec && !parser.is_done()) {
    if (const auto length = parser.content_length(); length && !parser.chunked()) {
      read_body(*length, body, ec);
      body_read = true;
    } else {
      http::read(*stream, buffer, parser, ec);
    }
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
  response.body = body_read ? std::move(body) : std::move(message.body());
  // The server said it will close; it owes no close_notify reply, so do not wait for one.
  if (!message.keep_alive())
    drop();
  return response;
}

// Only an encoding this request asked for is accepted, and a decoded body is held to the same
// limit as a plain one: a few kilobytes of gzip can expand to gigabytes.
Result<void> HttpsClient::Impl::decode(HttpsResponse& response, bool accept_gzip) {
  const auto field = response.headers.find("content-encoding");
  if (field == response.headers.end())
    return kaban::ok();
  const std::string encoding = lower_case(trimmed(field->second));
  if (encoding.empty() || encoding == "identity") {
    response.headers.erase(field);
    return kaban::ok();
  }
  if (encoding != protocol::kGzipEncoding || !accept_gzip) {
    drop();
    last_failure = where() + " sent an answer in the encoding \"" + field->second +
                   "\", which this request did not ask for; check for a proxy between this "
                   "device and the server";
    return errc::bad_response;
  }
  if (!response.body.empty()) {
    auto decoded = protocol::gzip_decompress(response.body, config.max_response_body);
    if (!decoded && decoded.error() == protocol::errc::too_large) {
      drop();
      last_failure = where() + " sent a compressed answer that expands past the " +
                     std::to_string(config.max_response_body) + " bytes this request accepts";
      return errc::response_too_large;
    }
    if (!decoded) {
      drop();
      last_failure =
          where() + " sent a gzip answer that does not decode (" + decoded.error().message() + ")";
      return errc::bad_response;
    }
    response.body = std::move(decoded).value();
  }
  response.headers.erase(field);
  return kaban::ok();
}

Result<HttpsResponse> HttpsClient::Impl::request(const HttpsRequest& outgoing) {
  last_failure.clear();
  if (context_error) {
    last_failure = "the TLS settings could not be applied: " + context_error.message();
    return context_error;
  }
  if (!valid_target(outgoing.target)) {
    last_failure = "not a request target: " + std::string(outgoing.target);
    return std::make_error_code(std::errc::invalid_argument);
  }

  http::request<http::string_body> req;
  req.version(kHttpVersion);
  const auto verb = http::string_to_verb(to_beast(outgoing.method));
  if (verb == http::verb::unknown)
    req.method_string(to_beast(outgoing.method));
  else
    req.method(verb);
  req.target(to_beast(outgoing.target));
  req.set(http::field::host, host_field);
  if (!config.user_agent.empty())
    req.set(http::field::user_agent, config.user_agent);
  if (outgoing.accept_gzip)
    req.set(http::field::accept_encoding, to_beast(protocol::kGzipEncoding));
  if (!outgoing.body.empty()) {
    req.set(http::field::content_type, to_beast(outgoing.content_type));
    req.body() = std::string(outgoing.body);
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
  if (response && !is_head) {
    KABAN_TRYV(decode(response.value(), outgoing.accept_gzip));
  }
  return response;
}

HttpsClient::HttpsClient(HttpsClientConfig config, crypto::TlsClientTrust trust,
                         std::optional<crypto::TlsClientIdentity> identity)
    : impl_(std::make_unique<Impl>(std::move(config), trust, identity)) {}
HttpsClient::~HttpsClient() = default;
HttpsClient::HttpsClient(HttpsClient&&) noexcept = default;
HttpsClient& HttpsClient::operator=(HttpsClient&&) noexcept = default;

Result<HttpsResponse> HttpsClient::request(const HttpsRequest& outgoing) {
  return impl_->request(outgoing);
}

Result<HttpsResponse> HttpsClient::request(std::string_view method, std::string_view target,
                                           std::string_view body, std::string_view content_type) {
  return impl_->request({method, target, body, content_type, false});
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
