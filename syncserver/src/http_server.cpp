#include "kaban/server/http_server.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <exception>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include "kaban/crypto/bytes.hpp"
#include "kaban/protocol/messages.hpp"

namespace kaban::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using SystemClock = std::chrono::system_clock;

constexpr const char* kServerName = "kaban-server";
// How long a closing connection waits for the peer's close_notify before the socket is cut.
constexpr std::chrono::milliseconds kShutdownTimeout{1'000};
// After a failed accept (out of descriptors, say) the listener pauses instead of spinning.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
// The first read of a request only has to show that one has started.
constexpr std::size_t kFirstReadSize = 4096;
constexpr int kLowestStatus = 100;
constexpr int kHighestStatus = 599;

// "2024-05-01T12:34:56.789Z"
std::string rfc3339(SystemClock::time_point at) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(at.time_since_epoch()) % 1000;
  const std::time_t seconds = SystemClock::to_time_t(at);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%.*s.%03dZ", static_cast<int>(n), text,
                static_cast<int>(ms.count()));
  return out;
}

HttpResponse error_response(int status, std::string_view code, std::string_view message) {
  HttpResponse response;
  response.status = status;
  response.body = protocol::to_json(protocol::ErrorBody{std::string(code), std::string(message)});
  return response;
}

// application/x-www-form-urlencoded: %XX and '+' for a space. nullopt for a broken escape.
std::optional<std::string> url_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%') {
      auto byte = crypto::from_hex(text.substr(i + 1, 2));
      if (!byte || byte.value().size() != 1)
        return std::nullopt;
      out += static_cast<char>(byte.value()[0]);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Splits the target into path and decoded query. A repeated key keeps its first value.
bool parse_target(std::string_view target, HttpRequest& request) {
  if (target.empty() || target.front() != '/')
    return false;
  const auto question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question == std::string_view::npos)
    return true;
  std::string_view rest = target.substr(question + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty())
      continue;
    const auto eq = pair.find('=');
    auto key = url_decode(pair.substr(0, eq));
    auto value =
        url_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (!key || !value)
      return false;
    request.query.emplace(std::move(*key), std::move(*value));
  }
  return true;
}

bool is_http_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category();
}

// The peer went away (closed, reset or truncated the TLS stream): nothing to answer or log.
bool is_disconnect(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == ssl::error::stream_truncated ||
         ec == net::error::broken_pipe;
}

HttpResponse internal_error() {
  return error_response(500, "internal",
                        "The server failed to answer this request; try again later.");
}

HttpResponse too_large() {
  return error_response(413, "too_large", "The request body is larger than this endpoint accepts.");
}

class Session;

// The listener's state, shared by its sessions. HttpsServer::Impl is this under its public name.
// Replies may come from any thread, even while the server stops: they are posted to a
// session's strand only while the io_context still exists.
struct ReplyGate {
  std::mutex mutex;
  bool open = true;
};

struct ServerCore {
  using LogSink = HttpsServer::LogSink;

  ServerCore(HttpServerConfig c, crypto::TlsServerIdentity id, Router& r, LogSink sink)
      : config(std::move(c)),
        identity(std::move(id)),
        router(r),
        log_sink(std::move(sink)),
        ioc(std::make_unique<net::io_context>(std::max(config.threads, 1))) {}

  void log(Json line) noexcept;
  // Registers a new session unless the server is stopping or full.
  enum class Admission { admitted, full, stopping };
  Admission admit(const std::shared_ptr<Session>& session);
  void forget(Session* session) noexcept;

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void run_io() noexcept;
  void do_stop();
  bool on_io_thread() const;  // call with mutex held

  const HttpServerConfig config;
  const crypto::TlsServerIdentity identity;
  Router& router;
  const LogSink log_sink;
  std::mutex log_mutex;

  mutable std::mutex mutex;
  std::condition_variable changed;
  // Guarded by mutex.
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  enum class State { created, running, stopping, stopped } state = State::created;
  std::thread stopper;  // runs do_stop() when stop() is called from an io thread
  std::vector<std::thread::id> io_thread_ids;

  // Set (under mutex) when stop() begins; read by sessions on their strands.
  std::atomic<bool> draining{false};
  std::atomic<std::uint64_t> rejected_connections{0};
  const std::shared_ptr<ReplyGate> reply_gate = std::make_shared<ReplyGate>();
  std::uint16_t bound_port = 0;

  // Destroyed in this order by do_stop(): the io objects before their io_context.
  ssl::context ssl_ctx{ssl::context::tls_server};
  std::unique_ptr<net::io_context> ioc;
  // Keeps run() going while the server runs, even at moments with nothing pending: an
  // io_context that runs out of work stops, and would never run the stop requests of do_stop().
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<net::steady_timer> accept_retry;
  std::vector<std::thread> threads;
};

class Session;

// The one answer to one request, shared by every copy of the Router::Reply that carries it.
class PendingReply {
 public:
  PendingReply(std::weak_ptr<Session> session, std::shared_ptr<ReplyGate> gate)
      : session_(std::move(session)), gate_(std::move(gate)) {}
  PendingReply(const PendingReply&) = delete;
  PendingReply& operator=(const PendingReply&) = delete;
  // A router that drops the reply without answering gets its request answered 500.
  ~PendingReply() { answer(std::nullopt); }

  void answer(std::optional<HttpResponse> response) noexcept;

 private:
  std::weak_ptr<Session> session_;
  std::shared_ptr<ReplyGate> gate_;
  std::atomic<bool> answered_{false};
};

// One TLS connection and the HTTP/1.1 requests on it. Every step runs on the connection's
// strand; each pending operation holds the session through shared_from_this().
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ServerCore& server, tcp::socket&& socket)
      : server_(server),
        peer_(peer_address(socket)),
        stream_(std::move(socket), server.ssl_ctx),
        deadline_(stream_.get_executor()) {}

  ~Session() { server_.forget(this); }

  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::on_run, shared_from_this()));
  }

  const std::string& peer() const { return peer_; }

  // Only once the io threads are joined: drops the reference a held request keeps.
  void release_after_stop() { self_.reset(); }

  // From any thread: end the connection if it is between requests; a request in flight is
  // answered (with Connection: close) first.
  void stop() {
    net::post(stream_.get_executor(),
              beast::bind_front_handler(&Session::on_stop, shared_from_this()));
  }

 private:
  enum class Phase { handshake, waiting, reading_header, reading_body, handling, writing, closing };

  static std::string peer_address(const tcp::socket& socket) {
    beast::error_code ec;
    const auto endpoint = socket.remote_endpoint(ec);
    return ec ? std::string() : endpoint.address().to_string();
  }

  const HttpServerConfig& config() const { return server_.config; }
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  void on_run() {
    if (server_.draining)
      return do_close();
    phase_ = Phase::handshake;
    tcp().expires_after(config().handshake_timeout);
    stream_.async_handshake(ssl::stream_base::server,
                            beast::bind_front_handler(&Session::on_handshake, shared_from_this()));
  }

  void on_handshake(beast::error_code ec) {
    if (ec) {
      if (server_.draining)
        return do_close();
      std::string error = ec == beast::error::timeout ? "tls handshake timed out"
                                                      : "tls handshake failed: " + ec.message();
      const std::string why = crypto::describe_verify_failure(stream_.native_handle());
      if (!why.empty())
        error += " (" + why + ")";
      log_connection_error(error);
      return do_close();
    }
    client_certificate_ = crypto::peer_certificate_der(stream_.native_handle());
    do_wait_for_request(config().header_timeout);
  }

  // Reads run under this deadline rather than tcp_stream's: on expiry it only cancels the read,
  // so the connection can still be ended properly (a 408 answer, a close_notify), whereas an
  // expired tcp_stream has already closed the socket.
  void arm_deadline(std::chrono::milliseconds after) {
    deadline_hit_ = false;
    tcp().expires_never();
    deadline_.expires_after(after);
    deadline_.async_wait(
        [weak = weak_from_this(), generation = ++deadline_generation_](beast::error_code ec) {
          if (ec)
            return;
          if (auto self = weak.lock())
            self->on_deadline(generation);
        });
  }

  void on_deadline(std::uint64_t generation) {
    // The read may have completed (and the deadline been re-armed) just before the timer fired.
    if (generation != deadline_generation_)
      return;
    deadline_hit_ = true;
    tcp().cancel();
  }

  void disarm_deadline() {
    ++deadline_generation_;
    deadline_.cancel();
  }

  // Waits up to `wait` for the first bytes of a request.
  void do_wait_for_request(std::chrono::milliseconds wait) {
    if (server_.draining)
      return do_shutdown();
    if (buffer_.size() > 0)  // a pipelined request is already here
      return do_read_header();
    phase_ = Phase::waiting;
    arm_deadline(wait);
    stream_.async_read_some(
        buffer_.prepare(kFirstReadSize),
        beast::bind_front_handler(&Session::on_request_start, shared_from_this()));
  }

  void on_request_start(beast::error_code ec, std::size_t bytes) {
    disarm_deadline();
    if (ec) {
      if (deadline_hit_) {
        if (requests_ == 0)
          log_connection_error("timed out waiting for a request");
        return do_shutdown();
      }
      if (server_.draining)
        return do_shutdown();
      if (!is_disconnect(ec) && ec != net::error::operation_aborted)
        log_connection_error("read failed: " + ec.message());
      return do_close();
    }
    buffer_.commit(bytes);
    do_read_header();
  }

  void do_read_header() {
    phase_ = Phase::reading_header;
    header_parser_.emplace();
    header_parser_->header_limit(
        static_cast<std::uint32_t>(std::min<std::size_t>(config().max_header_bytes, UINT32_MAX)));
    arm_deadline(config().header_timeout);
    http::async_read_header(
        stream_, buffer_, *header_parser_,
        beast::bind_front_handler(&Session::on_read_header, shared_from_this()));
  }

  void on_read_header(beast::error_code ec, std::size_t bytes) {
    disarm_deadline();
    if (ec) {
      begin_request(0);
      if (deadline_hit_)
        return reply_and_close(
            error_response(408, "timeout", "The request header did not arrive in time."));
      if (server_.draining && ec == net::error::operation_aborted)
        return do_shutdown();
      if (ec == http::error::header_limit)
        return reply_and_close(
            error_response(431, "too_large", "The request header is too large."));
      if (is_http_error(ec))
        return reply_and_close(
            error_response(400, "bad_request", "Malformed HTTP request: " + ec.message()));
      if (!is_disconnect(ec) && ec != net::error::operation_aborted)
        log_connection_error("read failed: " + ec.message());
      return do_close();
    }
    ++requests_;
    begin_request(bytes);
    const auto& head = header_parser_->get();
    request_.method = std::string(head.method_string());
    request_.target = std::string(head.target());
    request_.content_type = std::string(head[http::field::content_type]);
    request_.accept_encoding = std::string(head[http::field::accept_encoding]);
    request_keep_alive_ = head.keep_alive();
    if (!parse_target(request_.target, request_))
      return reply_and_close(error_response(400, "bad_request", "Malformed request target."));

    HttpResponse refusal;
    std::optional<std::size_t> limit;
    try {
      limit = server_.router.body_limit(request_, refusal);
    } catch (const std::exception& e) {
      request_error_ = std::string("router failed: ") + e.what();
      return reply_and_close(internal_error());
    } catch (...) {
      request_error_ = "router failed";
      return reply_and_close(internal_error());
    }
    // Beast answers boost::optional; an unset one means no Content-Length header.
    std::uint64_t length = 0;
    if (const auto declared = header_parser_->content_length())
      length = *declared;
    const bool has_body = header_parser_->chunked() || length > 0;
    if (!limit) {
      // An unread body would be taken for the next request: such a refusal ends the connection.
      close_after_response_ = has_body;
      return do_write(std::move(refusal));
    }
    if (length > *limit)
      return reply_and_close(too_large());

    phase_ = Phase::reading_body;
    body_parser_.emplace(std::move(*header_parser_));
    header_parser_.reset();
    body_parser_->body_limit(*limit);
    arm_deadline(config().body_timeout);
    http::async_read(stream_, buffer_, *body_parser_,
                     beast::bind_front_handler(&Session::on_read_body, shared_from_this()));
  }

  void on_read_body(beast::error_code ec, std::size_t bytes) {
    disarm_deadline();
    bytes_in_ += bytes;
    if (ec) {
      if (ec == http::error::body_limit)
        return reply_and_close(too_large());
      if (deadline_hit_)
        return reply_and_close(
            error_response(408, "timeout", "The request body did not arrive in time."));
      if (is_http_error(ec))
        return reply_and_close(
            error_response(400, "bad_request", "Malformed HTTP request body: " + ec.message()));
      log_request(0, 0, "read failed: " + ec.message());
      return do_close();
    }
    request_.body = std::move(body_parser_->get().body());
    body_parser_.reset();
    handle();
  }

  void handle() {
    phase_ = Phase::handling;
    HttpRequest request = request_;
    request.body = std::move(request_.body);
    request_.body.shrink_to_fit();
    // While the router holds the request nothing else owns the session (no operation is
    // pending on the socket): this reference keeps it until the answer, and is only a leak,
    // never a dangling pointer, should a router keep a reply past the server's end.
    self_ = shared_from_this();
    auto pending = std::make_shared<PendingReply>(weak_from_this(), server_.reply_gate);
    try {
      server_.router.handle_async(std::move(request),
                                  [pending](HttpResponse r) { pending->answer(std::move(r)); });
    } catch (const std::exception& e) {
      // What failed inside stays in the log; the client learns only that it was not its fault.
      request_error_ = std::string("router failed: ") + e.what();
      pending->answer(std::nullopt);
    } catch (...) {
      request_error_ = "router failed";
      pending->answer(std::nullopt);
    }
  }

  // From a PendingReply, on the strand. std::nullopt: the router failed or dropped the request.
  void on_reply(std::optional<HttpResponse> answer) {
    const auto keep = std::move(self_);
    HttpResponse response;
    if (!answer) {
      if (request_error_.empty())
        request_error_ = "router dropped the request without answering";
      response = internal_error();
      close_after_response_ = true;
    } else {
      response = std::move(*answer);
    }
    if (response.status < kLowestStatus || response.status > kHighestStatus) {
      request_error_ = "router returned status " + std::to_string(response.status);
      response = internal_error();
    }
    do_write(std::move(response));
  }

  void reply_and_close(HttpResponse response) {
    close_after_response_ = true;
    do_write(std::move(response));
  }

  // Per request state, reset when a header has been read.
  void begin_request(std::size_t header_bytes) {
    request_ = HttpRequest{};
    request_.peer_address = peer_;
    request_.client_certificate = client_certificate_;
    request_time_ = SystemClock::now();
    request_start_ = SteadyClock::now();
    bytes_in_ = header_bytes;
    close_after_response_ = false;
    request_error_.clear();
    log_device_.clear();
    log_endpoint_.clear();
  }

  void do_write(HttpResponse response) {
    phase_ = Phase::writing;
    log_device_ = std::move(response.log_device);
    log_endpoint_ = std::move(response.log_endpoint);
    keep_alive_ = request_keep_alive_ && !close_after_response_ && !server_.draining;

    response_ = {};
    response_.version(11);
    response_.result(static_cast<unsigned>(response.status));
    for (auto& [name, value] : response.headers)
      response_.set(name, value);
    response_.set(http::field::server, kServerName);
    response_.set(http::field::content_type, response.content_type);
    response_.body() = std::move(response.body);
    response_.keep_alive(keep_alive_);
    response_.prepare_payload();

    tcp().expires_after(config().write_timeout);
    http::async_write(stream_, response_,
                      beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t bytes) {
    const int status = static_cast<int>(response_.result_int());
    response_ = {};
    if (ec) {
      log_request(status, bytes,
                  ec == beast::error::timeout ? "timed out writing the response"
                                              : "write failed: " + ec.message());
      return do_close();
    }
    log_request(status, bytes, request_error_);
    if (!keep_alive_)
      return do_shutdown();
    do_wait_for_request(config().idle_timeout);
  }

  void on_stop() {
    switch (phase_) {
      case Phase::handshake:
      case Phase::waiting:
      case Phase::reading_header:
        tcp().cancel();
        break;
      case Phase::reading_body:  // a request in flight: do_write() will add Connection: close
      case Phase::handling:
      case Phase::writing:
      case Phase::closing:
        break;
    }
  }

  void do_shutdown() {
    phase_ = Phase::closing;
    disarm_deadline();
    tcp().expires_after(kShutdownTimeout);
    stream_.async_shutdown(beast::bind_front_handler(&Session::on_shutdown, shared_from_this()));
  }

  void on_shutdown(beast::error_code) { do_close(); }

  void do_close() {
    phase_ = Phase::closing;
    disarm_deadline();
    tcp().close();
  }

  void log_request(int status, std::size_t bytes_out, const std::string& error) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - request_start_);
    Json line = {{"time", rfc3339(request_time_)},
                 {"peer", peer_},
                 {"device", log_device_},
                 {"endpoint", log_endpoint_.empty() ? request_.path : log_endpoint_},
                 {"method", request_.method},
                 {"status", status},
                 {"bytes_in", bytes_in_},
                 {"bytes_out", bytes_out},
                 {"ms", ms.count()}};
    if (!error.empty())
      line["error"] = error;
    server_.log(std::move(line));
  }

  void log_connection_error(const std::string& error) {
    server_.log({{"time", rfc3339(SystemClock::now())}, {"peer", peer_}, {"error", error}});
  }

  ServerCore& server_;
  const std::string peer_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  net::steady_timer deadline_;
  std::uint64_t deadline_generation_ = 0;
  bool deadline_hit_ = false;
  beast::flat_buffer buffer_;
  Phase phase_ = Phase::handshake;
  crypto::Bytes client_certificate_;
  std::size_t requests_ = 0;

  std::optional<http::request_parser<http::empty_body>> header_parser_;
  std::optional<http::request_parser<http::string_body>> body_parser_;
  HttpRequest request_;
  bool request_keep_alive_ = false;
  bool close_after_response_ = false;
  bool keep_alive_ = false;
  http::response<http::string_body> response_;
  SystemClock::time_point request_time_;
  SteadyClock::time_point request_start_;
  std::size_t bytes_in_ = 0;
  std::string request_error_;  // for the log only
  std::string log_device_;
  std::string log_endpoint_;
  std::shared_ptr<Session> self_;  // set while the router holds the request

  friend class PendingReply;
};

void PendingReply::answer(std::optional<HttpResponse> response) noexcept {
  if (answered_.exchange(true))
    return;
  try {
    std::lock_guard lock(gate_->mutex);
    if (!gate_->open)
      return;
    if (auto session = session_.lock()) {
      auto executor = session->stream_.get_executor();
      net::post(executor, [session = std::move(session), response = std::move(response)]() mutable {
        session->on_reply(std::move(response));
      });
    }
  } catch (...) {
    // Out of memory while posting: the connection stays held until the server stops.
  }
}

// ---- ServerCore ------------------------------------------------------------------------

void ServerCore::log(Json line) noexcept {
  try {
    // Paths and messages may hold invalid UTF-8; a log line must still be written.
    const std::string text = line.dump(-1, ' ', false, Json::error_handler_t::replace);
    std::lock_guard lock(log_mutex);
    if (log_sink)
      log_sink(text);
  } catch (...) {
    // A failing sink must not take a connection (or an io thread) down with it.
  }
}

ServerCore::Admission ServerCore::admit(const std::shared_ptr<Session>& session) {
  std::lock_guard lock(mutex);
  if (draining)
    return Admission::stopping;
  if (sessions.size() >= config.max_connections)
    return Admission::full;
  sessions.emplace(session.get(), session);
  return Admission::admitted;
}

void ServerCore::forget(Session* session) noexcept {
  {
    std::lock_guard lock(mutex);
    sessions.erase(session);
  }
  changed.notify_all();
}

void ServerCore::do_accept() {
  acceptor->async_accept(net::make_strand(*ioc),
                         beast::bind_front_handler(&ServerCore::on_accept, this));
}

void ServerCore::on_accept(beast::error_code ec, tcp::socket socket) {
  if (!acceptor->is_open() || ec == net::error::operation_aborted)
    return;  // stop() closed the acceptor: accepting again would fail at once, forever
  if (ec) {
    log({{"time", rfc3339(SystemClock::now())}, {"error", "accept failed: " + ec.message()}});
    accept_retry->expires_after(kAcceptRetryDelay);
    accept_retry->async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec && acceptor->is_open())
        do_accept();
    });
    return;
  }
  // Small responses and the close_notify after them must not wait for a delayed ACK (Nagle).
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  auto session = std::make_shared<Session>(*this, std::move(socket));
  switch (admit(session)) {
    case Admission::admitted:
      session->run();
      break;
    case Admission::full: {
      const auto rejected = ++rejected_connections;
      log({{"time", rfc3339(SystemClock::now())},
           {"peer", session->peer()},
           {"error", "connection limit reached (" + std::to_string(config.max_connections) +
                         "); connection closed"},
           {"rejected_total", rejected}});
      break;  // the session, and its socket, go away here
    }
    case Admission::stopping:
      break;
  }
  do_accept();
}

void ServerCore::run_io() noexcept {
  for (;;) {
    try {
      ioc->run();
      return;
    } catch (const std::exception& e) {
      log({{"time", rfc3339(SystemClock::now())},
           {"error", std::string("unexpected exception in an io thread: ") + e.what()}});
    } catch (...) {
      log({{"time", rfc3339(SystemClock::now())},
           {"error", "unexpected exception in an io thread"}});
    }
  }
}

bool ServerCore::on_io_thread() const {
  return std::find(io_thread_ids.begin(), io_thread_ids.end(), std::this_thread::get_id()) !=
         io_thread_ids.end();
}

void ServerCore::do_stop() {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(mutex);
    for (const auto& [raw, weak] : sessions) {
      if (auto session = weak.lock())
        live.push_back(std::move(session));
    }
  }
  net::post(acceptor->get_executor(), [this] {
    beast::error_code ignored;
    acceptor->close(ignored);
    accept_retry->cancel();
  });
  try {
    router.stopping();
  } catch (...) {
    // The drain deadline still ends whatever the router keeps waiting.
  }
  for (const auto& session : live)
    session->stop();
  live.clear();

  {
    std::unique_lock lock(mutex);
    changed.wait_for(lock, config.drain_timeout, [this] { return sessions.empty(); });
  }
  {
    // From here replies are ignored: their io_context is about to go.
    std::lock_guard lock(reply_gate->mutex);
    reply_gate->open = false;
  }
  // Whatever did not drain is cut: destroying the io_context destroys the sessions it holds.
  work.reset();
  ioc->stop();
  for (auto& thread : threads)
    thread.join();
  threads.clear();
  {
    // Requests a router never answered hold their sessions; with no io thread left, release
    // them here, while their io_context still exists.
    std::vector<std::shared_ptr<Session>> held;
    {
      std::lock_guard lock(mutex);
      for (const auto& [raw, weak] : sessions) {
        if (auto session = weak.lock())
          held.push_back(std::move(session));
      }
    }
    for (const auto& session : held)
      session->release_after_stop();
  }
  accept_retry.reset();
  acceptor.reset();
  ioc.reset();

  {
    std::lock_guard lock(mutex);
    state = State::stopped;
  }
  changed.notify_all();
}

}  // namespace

struct HttpsServer::Impl : ServerCore {
  using ServerCore::ServerCore;
};

// ---- HttpsServer ------------------------------------------------------------------------------

HttpsServer::HttpsServer(HttpServerConfig config, crypto::TlsServerIdentity identity,
                         Router& router, LogSink log)
    : impl_(
          std::make_unique<Impl>(std::move(config), std::move(identity), router, std::move(log))) {}

HttpsServer::~HttpsServer() {
  stop();
  wait();
  if (impl_->stopper.joinable())
    impl_->stopper.join();
}

Result<void> HttpsServer::start() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mutex);
    if (s.state != Impl::State::created)
      return std::make_error_code(std::errc::operation_not_permitted);
  }
  // The router outlives the server, and with it the SSL context that holds this check.
  KABAN_TRYV(crypto::configure_server_tls(s.ssl_ctx, s.identity,
                                          [&router = s.router](crypto::ByteView der) {
                                            return router.accept_client_certificate(der);
                                          }));

  beast::error_code ec;
  tcp::resolver resolver(*s.ioc);
  const auto endpoints =
      resolver.resolve(s.config.listen_host, std::to_string(s.config.listen_port),
                       tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec)
    return std::error_code(ec);
  if (endpoints.empty())
    return std::make_error_code(std::errc::address_not_available);
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();

  auto acceptor = std::make_unique<tcp::acceptor>(net::make_strand(*s.ioc));
  acceptor->open(endpoint.protocol(), ec);
  if (!ec)
    acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec)
    acceptor->bind(endpoint, ec);
  if (!ec)
    acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return std::error_code(ec);
  s.bound_port = acceptor->local_endpoint(ec).port();
  if (ec)
    return std::error_code(ec);
  s.accept_retry = std::make_unique<net::steady_timer>(acceptor->get_executor());
  s.acceptor = std::move(acceptor);

  // Under the lock, so that a stop() from another thread, or from a first handler, sees the
  // server either not started or fully started.
  std::lock_guard lock(s.mutex);
  if (s.state != Impl::State::created)
    return std::make_error_code(std::errc::operation_not_permitted);  // stop() came first
  s.state = Impl::State::running;
  s.work.emplace(s.ioc->get_executor());
  s.do_accept();
  const int threads = std::max(s.config.threads, 1);
  s.threads.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    s.threads.emplace_back([&s] { s.run_io(); });
    s.io_thread_ids.push_back(s.threads.back().get_id());
  }
  return ok();
}

std::uint16_t HttpsServer::port() const {
  return impl_->bound_port;
}

void HttpsServer::stop() {
  Impl& s = *impl_;
  std::unique_lock lock(s.mutex);
  switch (s.state) {
    case Impl::State::created:
      s.state = Impl::State::stopped;
      lock.unlock();
      s.changed.notify_all();
      return;
    case Impl::State::stopped:
      return;
    case Impl::State::stopping:
      if (s.on_io_thread())
        return;
      s.changed.wait(lock, [&s] { return s.state == Impl::State::stopped; });
      return;
    case Impl::State::running:
      break;
  }
  s.state = Impl::State::stopping;
  // From here on no connection is admitted and every response says Connection: close.
  s.draining = true;
  if (s.on_io_thread()) {
    // An io thread cannot join itself: another thread finishes the stop.
    s.stopper = std::thread([&s] { s.do_stop(); });
    return;
  }
  lock.unlock();
  s.do_stop();
}

void HttpsServer::wait() {
  Impl& s = *impl_;
  std::unique_lock lock(s.mutex);
  s.changed.wait(lock, [&s] { return s.state == Impl::State::stopped; });
}

std::size_t HttpsServer::connection_count() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->sessions.size();
}

}  // namespace kaban::server
