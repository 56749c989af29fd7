// The HTTPS transport under real TLS on 127.0.0.1 port 0: requests, limits, deadlines, drain.
#include "kaban/server/http_server.hpp"

#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include "kaban/crypto/x509.hpp"
#include "kaban/server/api.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "test_pki.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kClientTimeout = 5s;  // a watchdog on every client step
constexpr auto kLogWait = 2s;        // a log line is written just after the response
constexpr auto kSlowHandler = 300ms;
constexpr std::size_t kSmallLimit = 16;
constexpr std::size_t kDefaultLimit = 1024;

using Pki = testing::TestPki;

// Echoes what it was given; "/missing" is refused before the body, "/small" takes 16 bytes,
// "/slow" takes a while and "/throw" throws.
class TestRouter : public Router {
 public:
  std::optional<std::size_t> body_limit(const HttpRequest& head, HttpResponse& refusal) override {
    if (head.path == "/missing") {
      refusal.status = 404;
      refusal.body = R"({"error":{"code":"not_found","message":"no such endpoint"}})";
      return std::nullopt;
    }
    return head.path == "/small" ? kSmallLimit : kDefaultLimit;
  }

  HttpResponse handle(const HttpRequest& request) override {
    ++handled;
    if (request.path == "/slow") {
      slow_started = true;
      std::this_thread::sleep_for(kSlowHandler);
    }
    if (request.path == "/throw")
      throw std::runtime_error("router exploded");
    if (request.path == "/stop" && stop_server)
      stop_server();
    HttpResponse response;
    response.body = Json{{"method", request.method},
                         {"path", request.path},
                         {"query", request.query},
                         {"content_type", request.content_type},
                         {"body", request.body},
                         {"peer", request.peer_address},
                         {"certificate", crypto::to_hex(request.client_certificate)}}
                        .dump();
    response.headers["Cache-Control"] = "no-store";
    response.log_device = "dev-1";
    response.log_endpoint = "echo";
    return response;
  }

  // "/later" is held until the test answers it (or stopping() does); "/drop" is never answered.
  void handle_async(HttpRequest request, Reply reply) override {
    if (request.path == "/drop")
      return;
    if (request.path != "/later")
      return Router::handle_async(std::move(request), std::move(reply));
    std::lock_guard lock(held_mutex);
    held.push_back(std::move(reply));
    held_changed.notify_all();
  }

  void stopping() override {
    stopping_called = true;
    if (!answer_on_stopping)
      return;
    answer_held("stopping");
  }

  // Refuses the certificates in `refused` (by DER), as a revocation list would.
  bool accept_client_certificate(crypto::ByteView der) override {
    std::lock_guard lock(refused_mutex);
    ++certificates_checked;
    return !refused.contains(crypto::Bytes(der.begin(), der.end()));
  }

  bool wait_for_held(std::size_t count) {
    std::unique_lock lock(held_mutex);
    return held_changed.wait_for(lock, kClientTimeout, [&] { return held.size() >= count; });
  }

  void answer_held(const std::string& body) {
    std::vector<Reply> replies;
    {
      std::lock_guard lock(held_mutex);
      replies.swap(held);
    }
    for (Reply& reply : replies) {
      HttpResponse response;
      response.body = Json{{"answer", body}}.dump();
      reply(response);
      reply(response);  // a second answer is ignored
    }
  }

  std::function<void()> stop_server;  // what "/stop" calls, from an io thread
  std::atomic<int> handled{0};
  std::atomic<bool> slow_started{false};
  std::mutex held_mutex;
  std::condition_variable held_changed;
  std::vector<Reply> held;
  std::atomic<bool> stopping_called{false};
  bool answer_on_stopping = true;
  std::mutex refused_mutex;
  std::set<crypto::Bytes> refused;
  int certificates_checked = 0;
};

// A blocking HTTPS client over Beast; every step has a deadline.
class Client {
 public:
  explicit Client(ssl::context& ctx) : stream_(ioc_, ctx) {}

  beast::error_code connect(std::uint16_t port) {
    if (!crypto::expect_server_name(stream_.native_handle(), "localhost"))
      return net::error::invalid_argument;
    beast::error_code result;
    tcp_stream().expires_after(kClientTimeout);
    tcp_stream().async_connect({net::ip::address_v4::loopback(), port}, [&](beast::error_code ec) {
      result = ec;
      if (ec)
        return;
      stream_.async_handshake(ssl::stream_base::client,
                              [&](beast::error_code handshake_ec) { result = handshake_ec; });
    });
    run();
    return result;
  }

  beast::error_code send(const http::request<http::string_body>& request) {
    beast::error_code result;
    tcp_stream().expires_after(kClientTimeout);
    http::async_write(stream_, request, [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    return result;
  }

  beast::error_code send_raw(const std::string& text) {
    beast::error_code result;
    tcp_stream().expires_after(kClientTimeout);
    net::async_write(stream_, net::buffer(text),
                     [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    return result;
  }

  beast::error_code receive(http::response<http::string_body>& response) {
    beast::error_code result;
    tcp_stream().expires_after(kClientTimeout);
    http::async_read(stream_, buffer_, response,
                     [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    return result;
  }

  http::response<http::string_body> round_trip(const http::request<http::string_body>& request) {
    http::response<http::string_body> response;
    const auto sent = send(request);
    EXPECT_FALSE(sent) << sent.message();
    const auto received = receive(response);
    EXPECT_FALSE(received) << received.message();
    return response;
  }

  // Reads until the server ends the connection, then closes this side; returns the error that
  // ended it (beast::error::timeout if the server never did).
  beast::error_code read_until_closed() {
    beast::error_code result;
    char scratch[256];
    tcp_stream().expires_after(kClientTimeout);
    std::function<void()> read_more = [&] {
      stream_.async_read_some(net::buffer(scratch), [&](beast::error_code ec, std::size_t) {
        if (ec) {
          result = ec;
          return;
        }
        read_more();
      });
    };
    read_more();
    run();
    tcp_stream().close();
    return result;
  }

  void close() { tcp_stream().close(); }

 private:
  beast::tcp_stream& tcp_stream() { return beast::get_lowest_layer(stream_); }
  void run() {
    ioc_.restart();
    ioc_.run();
  }

  net::io_context ioc_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
};

http::request<http::string_body> make_request(http::verb verb, const std::string& target,
                                              const std::string& body = {}) {
  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, "localhost");
  if (!body.empty()) {
    request.set(http::field::content_type, "text/plain");
    request.body() = body;
  }
  request.prepare_payload();
  return request;
}

// "2024-05-01T12:34:56.789Z": 'd' stands for a digit.
bool is_rfc3339_utc_ms(const std::string& text) {
  const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (text.size() != shape.size())
    return false;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const bool ok = shape[i] == 'd' ? std::isdigit(static_cast<unsigned char>(text[i])) != 0
                                    : text[i] == shape[i];
    if (!ok)
      return false;
  }
  return true;
}

bool is_transport_error(const std::string& body, const std::string& code) {
  const Json json = Json::parse(body, nullptr, false);
  return json.is_object() && json.contains("error") && json["error"].value("code", "") == code &&
         !json["error"].value("message", "").empty();
}

class HttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = new Pki(); }
  static void TearDownTestSuite() { delete pki_; }

  HttpServerTest() {
    config_.listen_port = 0;
    config_.threads = 2;
    config_.handshake_timeout = 300ms;
    config_.header_timeout = 300ms;
    config_.body_timeout = 500ms;
    config_.write_timeout = 1s;
    config_.idle_timeout = 300ms;
    config_.drain_timeout = 2s;
    crypto::TlsClientTrust trust;
    trust.ca_pem = pki_->ca.to_pem();
    EXPECT_TRUE(crypto::configure_client_tls(anonymous_ctx_, trust, nullptr));
    const crypto::TlsClientIdentity identity{pki_->device.to_pem(), pki_->device_key.to_pem()};
    EXPECT_TRUE(crypto::configure_client_tls(device_ctx_, trust, &identity));
  }

  // Every test ends with a stop that must not need the drain deadline: the clients are gone.
  void TearDown() override {
    if (!server_)
      return;
    const auto begin = Clock::now();
    server_->stop();
    EXPECT_LT(Clock::now() - begin, config_.drain_timeout) << "stop() waited for the deadline";
  }

  void start() {
    crypto::TlsServerIdentity identity{pki_->server.to_pem() + pki_->ca.to_pem(),
                                       pki_->server_key.to_pem(), pki_->ca.to_pem()};
    server_ = std::make_unique<HttpsServer>(config_, std::move(identity), router_,
                                            [this](const std::string& line) {
                                              std::lock_guard lock(log_mutex_);
                                              log_lines_.push_back(line);
                                            });
    const auto started = server_->start();
    ASSERT_TRUE(started) << started.error().message();
    ASSERT_NE(server_->port(), 0);
  }

  std::unique_ptr<Client> connect(ssl::context& ctx) {
    auto client = std::make_unique<Client>(ctx);
    const auto ec = client->connect(server_->port());
    EXPECT_FALSE(ec) << ec.message();
    return client;
  }
  std::unique_ptr<Client> connect() { return connect(anonymous_ctx_); }

  // True if the server refused a connection made with `ctx`: in the handshake or, under TLS 1.3
  // (where the client is done before the server has checked its certificate), at the first
  // request, which then gets no answer.
  bool refused(ssl::context& ctx) {
    Client client(ctx);
    if (client.connect(server_->port()))
      return true;
    if (client.send(make_request(http::verb::get, "/echo")))
      return true;
    http::response<http::string_body> response;
    return static_cast<bool>(client.receive(response));
  }

  // The first log line (parsed) that satisfies `match`, waiting a little for it.
  std::optional<Json> find_log(const std::function<bool(const Json&)>& match) {
    const auto deadline = Clock::now() + kLogWait;
    do {
      {
        std::lock_guard lock(log_mutex_);
        for (const auto& line : log_lines_) {
          const Json json = Json::parse(line, nullptr, false);
          if (!json.is_discarded() && match(json))
            return json;
        }
      }
      std::this_thread::sleep_for(10ms);
    } while (Clock::now() < deadline);
    return std::nullopt;
  }

  std::optional<Json> find_error_log(const std::string& fragment) {
    return find_log([&](const Json& j) {
      return j.contains("error") &&
             j["error"].get<std::string>().find(fragment) != std::string::npos;
    });
  }

  static Pki* pki_;
  HttpServerConfig config_;
  TestRouter router_;
  ssl::context anonymous_ctx_{ssl::context::tls_client};
  ssl::context device_ctx_{ssl::context::tls_client};
  std::mutex log_mutex_;
  std::vector<std::string> log_lines_;
  std::unique_ptr<HttpsServer> server_;
};

Pki* HttpServerTest::pki_ = nullptr;

TEST_F(HttpServerTest, AnswersARequest) {
  start();
  auto client = connect();
  const auto response =
      client->round_trip(make_request(http::verb::post, "/echo?x=a%20b&y=c+d&z&w=%2B", "hello"));
  ASSERT_EQ(response.result_int(), 200u);
  EXPECT_EQ(response[http::field::server], "kaban-server");
  EXPECT_EQ(response[http::field::content_type], "application/json");
  EXPECT_EQ(response[http::field::cache_control], "no-store");
  EXPECT_TRUE(response.keep_alive());

  const Json echo = Json::parse(response.body());
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["path"], "/echo");
  EXPECT_EQ(echo["query"], (Json{{"x", "a b"}, {"y", "c d"}, {"z", ""}, {"w", "+"}}));
  EXPECT_EQ(echo["content_type"], "text/plain");
  EXPECT_EQ(echo["body"], "hello");
  EXPECT_EQ(echo["peer"], "127.0.0.1");
  EXPECT_EQ(echo["certificate"], "");
}

TEST_F(HttpServerTest, ServesTwoRequestsOnOneConnection) {
  start();
  auto client = connect();
  const auto first = client->round_trip(make_request(http::verb::get, "/echo?n=1"));
  const auto second = client->round_trip(make_request(http::verb::get, "/echo?n=2"));
  EXPECT_EQ(first.result_int(), 200u);
  EXPECT_EQ(second.result_int(), 200u);
  EXPECT_EQ(Json::parse(second.body())["query"]["n"], "2");
  EXPECT_EQ(server_->connection_count(), 1u);
  EXPECT_EQ(router_.handled, 2);
}

TEST_F(HttpServerTest, PassesTheClientCertificateToTheRouter) {
  start();
  auto device = connect(device_ctx_);
  const auto with = device->round_trip(make_request(http::verb::get, "/echo"));
  EXPECT_EQ(Json::parse(with.body())["certificate"], crypto::to_hex(pki_->device.der()));

  auto anonymous = connect();
  const auto without = anonymous->round_trip(make_request(http::verb::get, "/echo"));
  EXPECT_EQ(Json::parse(without.body())["certificate"], "");
}

TEST_F(HttpServerTest, ReturnsTheRoutersRefusal) {
  start();
  auto client = connect();
  const auto response = client->round_trip(make_request(http::verb::get, "/missing"));
  EXPECT_EQ(response.result_int(), 404u);
  EXPECT_TRUE(is_transport_error(response.body(), "not_found"));
  EXPECT_EQ(router_.handled, 0);
  // Nothing was left unread, so the connection stays usable.
  EXPECT_EQ(client->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);
}

TEST_F(HttpServerTest, AcceptsABodyWithinTheLimit) {
  start();
  auto client = connect();
  const auto response =
      client->round_trip(make_request(http::verb::post, "/small", std::string(kSmallLimit, 'x')));
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_EQ(Json::parse(response.body())["body"], std::string(kSmallLimit, 'x'));
}

TEST_F(HttpServerTest, RefusesContentLengthOverTheLimitWithoutReadingIt) {
  start();
  auto client = connect();
  // Only the header is sent: the server must answer without waiting for the body.
  ASSERT_FALSE(client->send_raw(
      "POST /small HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n"));
  http::response<http::string_body> response;
  ASSERT_FALSE(client->receive(response));
  EXPECT_EQ(response.result_int(), 413u);
  EXPECT_TRUE(is_transport_error(response.body(), "too_large")) << response.body();
  EXPECT_FALSE(response.keep_alive());
  EXPECT_NE(client->read_until_closed(), beast::error::timeout);
  EXPECT_EQ(router_.handled, 0);
}

TEST_F(HttpServerTest, RefusesAChunkedBodyOverTheLimit) {
  start();
  auto client = connect();
  std::string request =
      "POST /small HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i)
    request += "a\r\n0123456789\r\n";
  request += "0\r\n\r\n";
  ASSERT_FALSE(client->send_raw(request));
  http::response<http::string_body> response;
  ASSERT_FALSE(client->receive(response));
  EXPECT_EQ(response.result_int(), 413u);
  EXPECT_TRUE(is_transport_error(response.body(), "too_large")) << response.body();
  EXPECT_FALSE(response.keep_alive());
  EXPECT_EQ(router_.handled, 0);
}

TEST_F(HttpServerTest, AnswersMalformedHttpWith400AndCloses) {
  start();
  auto client = connect();
  ASSERT_FALSE(client->send_raw("BLAH BLAH BLAH\r\n\r\n"));
  http::response<http::string_body> response;
  ASSERT_FALSE(client->receive(response));
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_TRUE(is_transport_error(response.body(), "bad_request")) << response.body();
  EXPECT_NE(client->read_until_closed(), beast::error::timeout);
}

TEST_F(HttpServerTest, AnswersARouterException500) {
  start();
  auto client = connect();
  const auto response = client->round_trip(make_request(http::verb::get, "/throw"));
  EXPECT_EQ(response.result_int(), 500u);
  EXPECT_TRUE(is_transport_error(response.body(), "internal")) << response.body();
  EXPECT_EQ(response.body().find("exploded"), std::string::npos) << "internals leaked";
  EXPECT_TRUE(find_error_log("router exploded"));
}

TEST_F(HttpServerTest, ClosesAConnectionThatSendsNoRequest) {
  config_.header_timeout = 200ms;
  start();
  auto client = connect();
  const auto begin = Clock::now();
  const auto ended = client->read_until_closed();
  const auto elapsed = Clock::now() - begin;
  EXPECT_NE(ended, beast::error::timeout) << "the server kept the connection open";
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 2s);
  EXPECT_TRUE(find_error_log("waiting for a request"));
}

TEST_F(HttpServerTest, AnswersASlowHeader408) {
  config_.header_timeout = 200ms;
  start();
  auto client = connect();
  ASSERT_FALSE(client->send_raw("GET /echo HTTP/1.1\r\nHost: loc"));
  http::response<http::string_body> response;
  ASSERT_FALSE(client->receive(response));
  EXPECT_EQ(response.result_int(), 408u);
  EXPECT_TRUE(is_transport_error(response.body(), "timeout")) << response.body();
  EXPECT_FALSE(response.keep_alive());
  EXPECT_EQ(router_.handled, 0);
}

TEST_F(HttpServerTest, AnswersASlowBody408) {
  config_.body_timeout = 200ms;
  start();
  auto client = connect();
  ASSERT_FALSE(client->send_raw(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12345"));
  const auto begin = Clock::now();
  http::response<http::string_body> response;
  ASSERT_FALSE(client->receive(response));
  EXPECT_GE(Clock::now() - begin, 150ms);
  EXPECT_EQ(response.result_int(), 408u);
  EXPECT_TRUE(is_transport_error(response.body(), "timeout")) << response.body();
  EXPECT_NE(client->read_until_closed(), beast::error::timeout);
  EXPECT_EQ(router_.handled, 0);
  EXPECT_TRUE(find_log([](const Json& j) { return j.value("status", 0) == 408; }));
}

TEST_F(HttpServerTest, ClosesAnIdleKeptAliveConnection) {
  config_.idle_timeout = 200ms;
  start();
  auto client = connect();
  EXPECT_EQ(client->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);
  const auto begin = Clock::now();
  EXPECT_NE(client->read_until_closed(), beast::error::timeout);
  const auto elapsed = Clock::now() - begin;
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 2s);
}

TEST_F(HttpServerTest, ClosesAConnectionStalledInTheHandshake) {
  start();
  net::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({net::ip::address_v4::loopback(), server_->port()});
  beast::error_code ended;
  char byte;
  socket.async_read_some(net::buffer(&byte, 1),
                         [&](beast::error_code ec, std::size_t) { ended = ec; });
  const auto begin = Clock::now();
  ioc.run_for(kClientTimeout);
  const auto elapsed = Clock::now() - begin;
  EXPECT_TRUE(ended) << "the server did not close the connection";
  EXPECT_GE(elapsed, config_.handshake_timeout - 50ms);
  EXPECT_LT(elapsed, 2s);
  EXPECT_TRUE(find_error_log("tls handshake timed out"));
}

TEST_F(HttpServerTest, ClosesConnectionsOverTheLimit) {
  config_.max_connections = 2;
  config_.idle_timeout = 5s;
  config_.header_timeout = 5s;
  start();
  auto first = connect();
  auto second = connect();
  EXPECT_EQ(first->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);
  EXPECT_EQ(second->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);

  Client third(anonymous_ctx_);
  EXPECT_TRUE(third.connect(server_->port())) << "a third connection got through";
  EXPECT_EQ(server_->connection_count(), 2u);
  EXPECT_TRUE(find_error_log("connection limit"));
  // The admitted ones are unaffected.
  EXPECT_EQ(first->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);
}

TEST_F(HttpServerTest, StopLetsARequestInFlightFinish) {
  config_.idle_timeout = 5s;
  start();
  auto idle = connect();
  EXPECT_EQ(idle->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);
  auto busy = connect();

  auto in_flight = std::async(std::launch::async, [&] {
    http::response<http::string_body> response;
    const auto sent = busy->send(make_request(http::verb::get, "/slow"));
    const auto received = sent ? sent : busy->receive(response);
    busy->close();
    return std::make_pair(received, response);
  });
  auto idle_end = std::async(std::launch::async, [&] { return idle->read_until_closed(); });
  const auto deadline = Clock::now() + kClientTimeout;
  while (!router_.slow_started && Clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(router_.slow_started);

  const auto begin = Clock::now();
  server_->stop();
  const auto stop_took = Clock::now() - begin;

  const auto [ec, response] = in_flight.get();
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_EQ(Json::parse(response.body())["path"], "/slow");
  EXPECT_FALSE(response.keep_alive()) << "a response during stop must say Connection: close";
  EXPECT_NE(idle_end.get(), beast::error::timeout) << "stop() left an idle connection open";
  EXPECT_LT(stop_took, config_.drain_timeout);
  EXPECT_EQ(server_->connection_count(), 0u);

  server_->wait();  // returns at once: stop() has finished
  net::io_context ioc;
  tcp::socket socket(ioc);
  beast::error_code refused;
  socket.connect({net::ip::address_v4::loopback(), server_->port()}, refused);
  EXPECT_TRUE(refused) << "the listener is still accepting";
  server_->stop();  // idempotent
}

TEST_F(HttpServerTest, StopFromAHandlerFinishesOnAnotherThread) {
  start();
  router_.stop_server = [this] { server_->stop(); };  // must not join its own thread
  auto client = connect();
  const auto response = client->round_trip(make_request(http::verb::get, "/stop"));
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_FALSE(response.keep_alive());
  client->close();
  auto waited = std::async(std::launch::async, [this] { server_->wait(); });
  ASSERT_EQ(waited.wait_for(config_.drain_timeout), std::future_status::ready);
  EXPECT_EQ(server_->connection_count(), 0u);
}

TEST_F(HttpServerTest, AnswersAHeldRequestFromAnotherThreadWithoutBlockingIoThreads) {
  config_.threads = 1;  // a held request must not occupy the only io thread
  start();
  auto waiting = connect();
  ASSERT_FALSE(waiting->send(make_request(http::verb::get, "/later")));
  ASSERT_TRUE(router_.wait_for_held(1));

  auto other = connect();
  EXPECT_EQ(other->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);

  std::thread([this] { router_.answer_held("done"); }).join();
  http::response<http::string_body> response;
  ASSERT_FALSE(waiting->receive(response));
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_EQ(Json::parse(response.body())["answer"], "done");
  EXPECT_TRUE(response.keep_alive());
  // The connection serves the next request as usual.
  EXPECT_EQ(waiting->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);
}

TEST_F(HttpServerTest, AnswersADroppedRequest500AndCloses) {
  start();
  auto client = connect();
  const auto response = client->round_trip(make_request(http::verb::get, "/drop"));
  EXPECT_EQ(response.result_int(), 500u);
  EXPECT_FALSE(response.keep_alive());
  EXPECT_TRUE(find_error_log("dropped the request"));
}

TEST_F(HttpServerTest, StopAsksTheRouterToAnswerHeldRequests) {
  start();
  auto waiting = connect();
  ASSERT_FALSE(waiting->send(make_request(http::verb::get, "/later")));
  ASSERT_TRUE(router_.wait_for_held(1));

  const auto begin = Clock::now();
  server_->stop();
  EXPECT_LT(Clock::now() - begin, config_.drain_timeout);
  EXPECT_TRUE(router_.stopping_called);
  http::response<http::string_body> response;
  ASSERT_FALSE(waiting->receive(response));
  EXPECT_EQ(Json::parse(response.body())["answer"], "stopping");
  EXPECT_FALSE(response.keep_alive()) << "a response during stop must say Connection: close";
}

TEST_F(HttpServerTest, IgnoresAnAnswerThatComesAfterTheServerStopped) {
  config_.drain_timeout = 300ms;
  router_.answer_on_stopping = false;
  start();
  auto waiting = connect();
  ASSERT_FALSE(waiting->send(make_request(http::verb::get, "/later")));
  ASSERT_TRUE(router_.wait_for_held(1));
  server_->stop();  // cut at the drain deadline
  EXPECT_EQ(server_->connection_count(), 0u);
  router_.answer_held("too late");  // must neither crash nor write anywhere
  http::response<http::string_body> response;
  EXPECT_TRUE(waiting->receive(response)) << "the cut connection answered";
}

TEST_F(HttpServerTest, WritesOneJsonLogLinePerRequest) {
  start();
  auto client = connect();
  EXPECT_EQ(client->round_trip(make_request(http::verb::post, "/echo", "hello")).result_int(),
            200u);
  const auto line = find_log([](const Json& j) { return j.value("method", "") == "POST"; });
  ASSERT_TRUE(line);
  const Json& j = *line;
  EXPECT_TRUE(is_rfc3339_utc_ms(j["time"].get<std::string>())) << j["time"];
  EXPECT_EQ(j["peer"], "127.0.0.1");
  EXPECT_EQ(j["device"], "dev-1");
  EXPECT_EQ(j["endpoint"], "echo");
  EXPECT_EQ(j["status"], 200);
  EXPECT_GT(j["bytes_in"].get<std::size_t>(), 5u);
  EXPECT_GT(j["bytes_out"].get<std::size_t>(), 5u);
  EXPECT_GE(j["ms"].get<std::int64_t>(), 0);
  EXPECT_FALSE(j.contains("error"));
}

TEST_F(HttpServerTest, StartFailsWhenThePortIsTaken) {
  start();
  config_.listen_port = server_->port();
  HttpsServer second(
      config_,
      {pki_->server.to_pem() + pki_->ca.to_pem(), pki_->server_key.to_pem(), pki_->ca.to_pem()},
      router_, nullptr);
  const auto started = second.start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error(), std::errc::address_in_use) << started.error().message();
}

TEST_F(HttpServerTest, ACertificateTheRouterRefusesFailsTheHandshakeAndOthersStillConnect) {
  // A second device of the same CA, whose certificate the router keeps accepting.
  const auto other_key = crypto::EcPrivateKey::generate();
  const auto other = pki_->issue(other_key, "device-2", crypto::CertificatePurpose::client);
  ssl::context other_ctx{ssl::context::tls_client};
  const crypto::TlsClientIdentity other_identity{other.to_pem(), other_key.to_pem()};
  ASSERT_TRUE(crypto::configure_client_tls(other_ctx, pki_->trust(), &other_identity));
  {
    std::lock_guard lock(router_.refused_mutex);
    router_.refused.insert(pki_->device.der());
  }
  start();
  EXPECT_TRUE(refused(device_ctx_));
  EXPECT_EQ(router_.handled, 0);
  const auto line = find_error_log("tls handshake failed");
  ASSERT_TRUE(line);
  EXPECT_NE((*line)["error"].get<std::string>().find("revoked"), std::string::npos) << *line;

  auto client = connect(other_ctx);
  const auto response = client->round_trip(make_request(http::verb::get, "/echo"));
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_EQ(Json::parse(response.body())["certificate"], crypto::to_hex(other.der()));
  // Without a certificate there is nothing to check.
  EXPECT_EQ(connect()->round_trip(make_request(http::verb::get, "/echo")).result_int(), 200u);
  std::lock_guard lock(router_.refused_mutex);
  EXPECT_EQ(router_.certificates_checked, 2);
}

TEST_F(HttpServerTest, AnExpiredDeviceCertificateFailsTheHandshakeAndTheLogSaysSo) {
  crypto::IssueOptions options;
  options.validity = 1s;
  options.purpose = crypto::CertificatePurpose::client;
  const auto key = crypto::EcPrivateKey::generate();
  const auto expiring = crypto::issue_certificate(
      pki_->ca, pki_->ca_key, crypto::CertificateRequest::create(key, "device-3").value(), options);
  ASSERT_TRUE(expiring);
  ssl::context ctx{ssl::context::tls_client};
  const crypto::TlsClientIdentity identity{expiring.value().to_pem(), key.to_pem()};
  ASSERT_TRUE(crypto::configure_client_tls(ctx, pki_->trust(), &identity));
  start();
  // Past its not_after (validity is whole seconds; wait out the second it was issued in too).
  std::this_thread::sleep_for(2100ms);
  EXPECT_TRUE(refused(ctx));
  EXPECT_EQ(router_.handled, 0);
  const auto line = find_error_log("tls handshake failed");
  ASSERT_TRUE(line);
  EXPECT_NE((*line)["error"].get<std::string>().find("expired"), std::string::npos) << *line;
  std::lock_guard lock(router_.refused_mutex);
  EXPECT_EQ(router_.certificates_checked, 0) << "OpenSSL refuses it before the router is asked";
}

// The real Api over its data directory: `admin device revoke` takes effect at the device's next
// connection, in the TLS handshake, and no one else's.
TEST_F(HttpServerTest, ARevokedDevicesNextConnectionFailsInTheHandshake) {
  using Seconds = std::chrono::seconds;
  testing::TempDir dir;
  ASSERT_TRUE(init_data_dir(dir.path(), {}));
  auto identity = load_identity(dir.path());
  ASSERT_TRUE(identity);
  auto db = open_database(dir.path());
  ASSERT_TRUE(db);
  Directory directory(*db.value());
  const UnixTime t = std::chrono::time_point_cast<Seconds>(std::chrono::system_clock::now());
  crypto::TlsClientTrust trust;
  trust.ca_pem = identity.value().ca_pem();
  struct Person {
    std::string device_id;
    std::unique_ptr<ssl::context> ctx;
  };
  std::map<std::string, Person> people;
  for (const std::string login : {"alice", "bob"}) {
    ASSERT_TRUE(directory.add_user(login, login, t));
    const auto key = crypto::EcPrivateKey::generate();
    auto enrolled = directory.enroll_device(
        directory.create_enroll_code(login, std::chrono::hours(1), t).value(),
        crypto::CertificateRequest::create(key, login).value().to_pem(),
        {"linux", "", "", login, "0.5.0"}, t, identity.value());
    ASSERT_TRUE(enrolled);
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    const crypto::TlsClientIdentity id{enrolled.value().certificate.to_pem(), key.to_pem()};
    ASSERT_TRUE(crypto::configure_client_tls(*ctx, trust, &id));
    people[login] = {enrolled.value().device_id, std::move(ctx)};
  }

  Api api(dir.path(), identity.value());
  // The server goes before the Api it routes to, however the test ends.
  struct StopFirst {
    std::unique_ptr<HttpsServer>& server;
    ~StopFirst() {
      if (server)
        server->stop();
      server.reset();
    }
  } stop_first{server_};
  server_ = std::make_unique<HttpsServer>(config_, identity.value().tls_identity(), api,
                                          [this](const std::string& line) {
                                            std::lock_guard lock(log_mutex_);
                                            log_lines_.push_back(line);
                                          });
  ASSERT_TRUE(server_->start());
  auto changes = make_request(http::verb::get, "/v1/changes");
  auto open_alice = connect(*people["alice"].ctx);
  EXPECT_EQ(open_alice->round_trip(changes).result_int(), 200u);

  ASSERT_TRUE(directory.revoke_device(people["alice"].device_id, t).value());
  EXPECT_TRUE(refused(*people["alice"].ctx));
  const auto line = find_error_log("revoked");
  ASSERT_TRUE(line);
  EXPECT_NE((*line)["error"].get<std::string>().find("tls handshake failed"), std::string::npos)
      << *line;
  // A connection opened before the revocation is refused at its next request.
  const auto late = open_alice->round_trip(changes);
  EXPECT_EQ(late.result_int(), 403u);
  EXPECT_NE(late.body().find("device_revoked"), std::string::npos) << late.body();
  open_alice->close();

  auto bob = connect(*people["bob"].ctx);
  EXPECT_EQ(bob->round_trip(changes).result_int(), 200u);
  bob->close();
}

}  // namespace
}  // namespace kaban::server
