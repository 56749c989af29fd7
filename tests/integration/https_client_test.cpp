// HttpsClient against a small Beast TLS server on 127.0.0.1 port 0, over real TLS with
// certificates from Kaban's own PKI code.
#include "kaban/agent/https_client.hpp"

#include <utility>  // before Asio: its awaitable.hpp misses it under GCC 12

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "kaban/agent/error.hpp"
#include "kaban/crypto/tls.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/gzip.hpp"
#include "test_pki.hpp"

namespace kaban::agent {
namespace {

using Pki = testing::TestPki;

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

constexpr auto kTestTimeout = std::chrono::milliseconds(3000);
constexpr auto kShortTimeout = std::chrono::milliseconds(300);
// How long the server lets a kept-alive connection sit idle before closing it.
constexpr auto kServerIdle = std::chrono::milliseconds(50);
constexpr auto kServerCloseNotifyWait = std::chrono::milliseconds(50);
constexpr std::size_t kChunkBytes = 400;
constexpr const char* kUserAgent = "kaban-test/1.0";

enum class Behaviour {
  answer,                    ///< answer every request, keep the connection
  close_when_idle,           ///< answer, then close with close_notify after kServerIdle
  close_when_idle_abruptly,  ///< answer, then drop the TCP connection after kServerIdle
  never_handshake,           ///< accept TCP, read and ignore the ClientHello
  never_answer,              ///< handshake and read the request, then say nothing
};

// Routes: /echo answers with what it received; /bytes/N answers N bytes of 'x'.
class TestServer {
 public:
  TestServer(const crypto::TlsServerIdentity& identity, Behaviour behaviour)
      : ctx_(ssl::context::tls_server), behaviour_(behaviour) {
    if (!crypto::configure_server_tls(ctx_, identity))
      throw std::runtime_error("configure_server_tls failed");
    acceptor_.open(tcp::v4());
    acceptor_.bind({net::ip::address_v4::loopback(), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    net::co_spawn(ioc_, listen(), net::detached);
    thread_ = std::thread([this] {
      try {
        ioc_.run();
      } catch (const std::exception& e) {
        ADD_FAILURE() << "test server: " << e.what();
      }
    });
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;
  ~TestServer() {
    ioc_.stop();
    thread_.join();
  }

  std::uint16_t port() const { return port_; }
  int connections() const { return connections_; }
  int requests() const { return requests_; }
  int idle_closes() const { return idle_closes_; }
  std::string device_name() const {
    const std::lock_guard lock(mutex_);
    return device_name_;
  }

 private:
  net::awaitable<void> listen() {
    for (;;) {
      tcp::socket socket = co_await acceptor_.async_accept(net::use_awaitable);
      ++connections_;
      net::co_spawn(ioc_, serve(std::move(socket)), net::detached);
    }
  }

  net::awaitable<void> serve(tcp::socket socket) {
    try {
      if (behaviour_ == Behaviour::never_handshake) {
        std::array<char, 1024> ignored{};
        for (;;)
          co_await socket.async_read_some(net::buffer(ignored), net::use_awaitable);
      }
      beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), ctx_);
      co_await stream.async_handshake(ssl::stream_base::server, net::use_awaitable);
      if (const auto der = crypto::peer_certificate_der(stream.native_handle()); !der.empty()) {
        const std::lock_guard lock(mutex_);
        device_name_ = crypto::Certificate::from_der(der).value().common_name();
      }
      beast::flat_buffer buffer;
      for (;;) {
        http::request<http::string_body> req;
        co_await http::async_read(stream, buffer, req, net::use_awaitable);
        ++requests_;
        if (behaviour_ == Behaviour::never_answer) {
          std::array<char, 1024> ignored{};
          for (;;)
            co_await stream.async_read_some(net::buffer(ignored), net::use_awaitable);
        }
        if (const std::string target(req.target()); target.starts_with("/chunked/")) {
          // Written by hand: Beast's serializer would send the string as a single chunk.
          co_await net::async_write(stream, net::buffer(chunked_answer(target)),
                                    net::use_awaitable);
        } else {
          auto res = answer(req);
          co_await http::async_write(stream, res, net::use_awaitable);
        }
        if (behaviour_ == Behaviour::close_when_idle ||
            behaviour_ == Behaviour::close_when_idle_abruptly) {
          net::steady_timer idle(ioc_, kServerIdle);
          co_await idle.async_wait(net::use_awaitable);
          if (behaviour_ == Behaviour::close_when_idle) {
            // Sends close_notify, then gives up waiting for the client's.
            beast::get_lowest_layer(stream).expires_after(kServerCloseNotifyWait);
            try {
              co_await stream.async_shutdown(net::use_awaitable);
            } catch (const std::exception&) {
            }
          }
          beast::get_lowest_layer(stream).close();
          ++idle_closes_;
          co_return;
        }
      }
    } catch (const std::exception&) {
      // The client went away or the handshake failed: the test observes that from its side.
    }
  }

  // /chunked/N: N chunks of kChunkBytes each.
  static std::string chunked_answer(const std::string& target) {
    std::string out =
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n";
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", kChunkBytes);
    for (unsigned long i = std::stoul(target.substr(9)); i > 0; --i)
      out += size_line + std::string(kChunkBytes, 'c') + "\r\n";
    return out + "0\r\n\r\n";
  }

  static http::response<http::string_body> answer(const http::request<http::string_body>& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    const std::string target(req.target());
    if (target == "/echo") {
      res.set(http::field::content_type, "text/plain");
      res.set("X-Kaban-Echo", "yes");
      res.body() = std::string(req.method_string()) + " " + target + "\n" +
                   "host: " + std::string(req[http::field::host]) + "\n" +
                   "user-agent: " + std::string(req[http::field::user_agent]) + "\n" +
                   "content-type: " + std::string(req[http::field::content_type]) + "\n" +
                   req.body();
    } else if (target.starts_with("/bytes/")) {
      res.set(http::field::content_type, "application/octet-stream");
      res.body() = std::string(std::stoul(target.substr(7)), 'x');
    } else if (target.starts_with("/gzip/")) {
      // N bytes of 'g', gzipped whether the request asked for it or not.
      res.set(http::field::content_type, "application/json");
      res.set(http::field::content_encoding, "gzip");
      res.body() = protocol::gzip_compress(std::string(std::stoul(target.substr(6)), 'g'));
    } else if (target == "/not-gzip") {
      res.set(http::field::content_encoding, "gzip");
      res.body() = "this is not gzip";
    } else if (target == "/brotli") {
      res.set(http::field::content_encoding, "br");
      res.body() = "compressed otherwise";
    } else {
      res.result(http::status::not_found);
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    return res;
  }

  net::io_context ioc_;
  ssl::context ctx_;
  tcp::acceptor acceptor_{ioc_};
  const Behaviour behaviour_;
  std::uint16_t port_ = 0;
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> idle_closes_{0};
  mutable std::mutex mutex_;
  std::string device_name_;
  std::thread thread_;
};

class HttpsClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new Pki("Kaban Test CA");
    other_pki_ = new Pki("Some Other CA");
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete other_pki_;
    pki_ = nullptr;
    other_pki_ = nullptr;
  }

  static HttpsClientConfig config_for(std::uint16_t port) {
    HttpsClientConfig config;
    config.host = "127.0.0.1";
    config.port = port;
    config.connect_timeout = kTestTimeout;
    config.request_timeout = kTestTimeout;
    config.user_agent = kUserAgent;
    return config;
  }

  static const Pki& pki() { return *pki_; }
  static const Pki& other_pki() { return *other_pki_; }

 private:
  static inline Pki* pki_ = nullptr;
  static inline Pki* other_pki_ = nullptr;
};

// Waits for a count the server thread moves, without guessing a sleep.
template <class Probe>
bool eventually(Probe probe) {
  const auto give_up = std::chrono::steady_clock::now() + kTestTimeout;
  while (!probe()) {
    if (std::chrono::steady_clock::now() > give_up)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST_F(HttpsClientTest, GetRoundTrip) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  HttpsClient client(config_for(server.port()), pki().trust(), std::nullopt);

  auto response = client.request("GET", "/echo");
  ASSERT_TRUE(response) << response.error().message() << ": " << client.describe_last_failure();
  EXPECT_EQ(response.value().status, 200);
  EXPECT_EQ(response.value().content_type, "text/plain");
  EXPECT_EQ(response.value().headers.at("x-kaban-echo"), "yes");
  EXPECT_EQ(response.value().headers.at("content-type"), "text/plain");
  const std::string& body = response.value().body;
  EXPECT_TRUE(body.starts_with("GET /echo\n")) << body;
  EXPECT_NE(body.find("host: 127.0.0.1:" + std::to_string(server.port()) + "\n"), std::string::npos)
      << body;
  EXPECT_NE(body.find(std::string("user-agent: ") + kUserAgent + "\n"), std::string::npos) << body;
  EXPECT_NE(body.find("content-type: \n"), std::string::npos) << body;
  EXPECT_EQ(client.describe_last_failure(), "");

  auto missing = client.request("GET", "/nowhere");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing.value().status, 404);
}

TEST_F(HttpsClientTest, AGzipAnswerIsDecodedOnlyWhenAskedForAndWithinTheLimit) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  HttpsClientConfig config = config_for(server.port());
  config.max_response_body = 10'000;
  HttpsClient client(config, pki().trust(), std::nullopt);
  const auto ask = [&](std::string_view target) {
    HttpsRequest request;
    request.target = target;
    request.accept_gzip = true;
    return client.request(request);
  };

  auto decoded = ask("/gzip/9000");
  ASSERT_TRUE(decoded) << client.describe_last_failure();
  EXPECT_EQ(decoded.value().body, std::string(9000, 'g'));
  EXPECT_FALSE(decoded.value().headers.contains("content-encoding"));

  auto too_large = ask("/gzip/20000");  // some 60 bytes on the wire
  ASSERT_FALSE(too_large);
  EXPECT_EQ(too_large.error(), errc::response_too_large);
  EXPECT_NE(client.describe_last_failure().find("expands past"), std::string::npos)
      << client.describe_last_failure();

  auto damaged = ask("/not-gzip");
  ASSERT_FALSE(damaged);
  EXPECT_EQ(damaged.error(), errc::bad_response);

  auto unasked = client.request("GET", "/gzip/100");
  ASSERT_FALSE(unasked);
  EXPECT_EQ(unasked.error(), errc::bad_response);
  auto other = ask("/brotli");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error(), errc::bad_response);
  EXPECT_NE(client.describe_last_failure().find("did not ask for"), std::string::npos)
      << client.describe_last_failure();

  // The connection was dropped after each failure; the client still works.
  auto again = ask("/gzip/10");
  ASSERT_TRUE(again) << client.describe_last_failure();
  EXPECT_EQ(again.value().body, "gggggggggg");
}

TEST_F(HttpsClientTest, PostRoundTripSendsBodyAndContentType) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  HttpsClient client(config_for(server.port()), pki().trust(), std::nullopt);

  const std::string payload = R"({"items":[1,2,3]})";
  auto response = client.request("POST", "/echo", payload);
  ASSERT_TRUE(response) << client.describe_last_failure();
  EXPECT_EQ(response.value().status, 200);
  EXPECT_EQ(response.value().body, "POST /echo\nhost: 127.0.0.1:" + std::to_string(server.port()) +
                                       "\nuser-agent: " + kUserAgent +
                                       "\ncontent-type: application/json\n" + payload);

  auto binary = client.request("PUT", "/echo", std::string("a\0b", 3), "application/octet-stream");
  ASSERT_TRUE(binary) << client.describe_last_failure();
  EXPECT_TRUE(binary.value().body.ends_with("content-type: application/octet-stream\n" +
                                            std::string("a\0b", 3)));
}

TEST_F(HttpsClientTest, KeepAliveReusesOneConnection) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  HttpsClient client(config_for(server.port()), pki().trust(), std::nullopt);

  ASSERT_TRUE(client.request("GET", "/bytes/10"));
  ASSERT_TRUE(client.request("POST", "/echo", "{}"));
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(server.connections(), 1);

  client.close();
  ASSERT_TRUE(client.request("GET", "/bytes/10"));
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(HttpsClientTest, ReconnectsWhenServerClosedIdleConnection) {
  for (const auto behaviour : {Behaviour::close_when_idle, Behaviour::close_when_idle_abruptly}) {
    SCOPED_TRACE(behaviour == Behaviour::close_when_idle ? "close_notify" : "abrupt close");
    TestServer server(pki().server_identity(), behaviour);
    HttpsClient client(config_for(server.port()), pki().trust(), std::nullopt);

    auto first = client.request("GET", "/bytes/3");
    ASSERT_TRUE(first) << client.describe_last_failure();
    EXPECT_EQ(first.value().body, "xxx");
    ASSERT_TRUE(eventually([&] { return server.idle_closes() == 1; }));

    auto second = client.request("POST", "/echo", "again");
    ASSERT_TRUE(second) << second.error().message() << ": " << client.describe_last_failure();
    EXPECT_TRUE(second.value().body.ends_with("\nagain"));
    EXPECT_EQ(server.connections(), 2);
    // The request ran once: the closed connection never delivered it.
    EXPECT_EQ(server.requests(), 2);
  }
}

TEST_F(HttpsClientTest, PinnedCaFingerprintMatches) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  crypto::TlsClientTrust trust;
  trust.pinned_ca_fingerprint = pki().ca.fingerprint();
  HttpsClient client(config_for(server.port()), trust, std::nullopt);

  auto response = client.request("GET", "/bytes/5");
  ASSERT_TRUE(response) << client.describe_last_failure();
  EXPECT_EQ(response.value().body, "xxxxx");
}

TEST_F(HttpsClientTest, PinnedCaFingerprintMismatchIsUntrusted) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  crypto::TlsClientTrust trust;
  trust.pinned_ca_fingerprint = other_pki().ca.fingerprint();
  HttpsClient client(config_for(server.port()), trust, std::nullopt);

  auto response = client.request("GET", "/bytes/5");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), errc::server_untrusted);
  EXPECT_NE(client.describe_last_failure(), "");
  EXPECT_EQ(server.requests(), 0);
}

TEST_F(HttpsClientTest, OtherCaIsUntrusted) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  HttpsClient client(config_for(server.port()), other_pki().trust(), std::nullopt);

  auto response = client.request("GET", "/bytes/5");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), errc::server_untrusted);
  EXPECT_NE(client.describe_last_failure(), "");
  EXPECT_EQ(server.requests(), 0);
}

TEST_F(HttpsClientTest, NothingListeningIsUnreachable) {
  std::uint16_t port = 0;
  {
    net::io_context ioc;
    tcp::acceptor acceptor(ioc, {net::ip::address_v4::loopback(), 0});
    port = acceptor.local_endpoint().port();
  }
  HttpsClient client(config_for(port), pki().trust(), std::nullopt);

  auto response = client.request("GET", "/echo");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), errc::server_unreachable);
  EXPECT_NE(client.describe_last_failure(), "");
}

TEST_F(HttpsClientTest, ServerThatNeverHandshakesIsUnreachableWithinConnectTimeout) {
  TestServer server(pki().server_identity(), Behaviour::never_handshake);
  auto config = config_for(server.port());
  config.connect_timeout = kShortTimeout;
  HttpsClient client(config, pki().trust(), std::nullopt);

  const auto start = std::chrono::steady_clock::now();
  auto response = client.request("GET", "/echo");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), errc::server_unreachable);
  EXPECT_GE(elapsed, kShortTimeout - 50ms);
  EXPECT_LT(elapsed, kShortTimeout + 1s);
  EXPECT_NE(client.describe_last_failure().find("handshake"), std::string::npos)
      << client.describe_last_failure();
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(HttpsClientTest, ServerThatNeverAnswersIsNetworkFailure) {
  TestServer server(pki().server_identity(), Behaviour::never_answer);
  auto config = config_for(server.port());
  config.request_timeout = kShortTimeout;
  HttpsClient client(config, pki().trust(), std::nullopt);

  const auto start = std::chrono::steady_clock::now();
  auto response = client.request("GET", "/echo");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), errc::network_failed);
  EXPECT_LT(elapsed, kShortTimeout + 1s);
  EXPECT_EQ(server.requests(), 1);
}

TEST_F(HttpsClientTest, BodyOverLimitIsTooLargeAndClientRecovers) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  auto config = config_for(server.port());
  config.max_response_body = 1000;
  HttpsClient client(config, pki().trust(), std::nullopt);

  auto at_limit = client.request("GET", "/bytes/1000");
  ASSERT_TRUE(at_limit) << client.describe_last_failure();
  EXPECT_EQ(at_limit.value().body.size(), 1000u);

  auto over = client.request("GET", "/bytes/5000");
  ASSERT_FALSE(over) << "accepted " << over.value().body.size() << " bytes";
  EXPECT_EQ(over.error(), errc::response_too_large);
  EXPECT_NE(client.describe_last_failure(), "");

  auto after = client.request("GET", "/bytes/10");
  ASSERT_TRUE(after) << client.describe_last_failure();
  EXPECT_EQ(after.value().body, std::string(10, 'x'));
}

TEST_F(HttpsClientTest, ChunkedBodyOverLimitIsTooLarge) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  auto config = config_for(server.port());
  config.max_response_body = 1000;
  HttpsClient client(config, pki().trust(), std::nullopt);

  auto under = client.request("GET", "/chunked/2");
  ASSERT_TRUE(under) << client.describe_last_failure();
  EXPECT_EQ(under.value().body, std::string(2 * kChunkBytes, 'c'));

  // Every chunk is under the limit; their sum is not.
  auto over = client.request("GET", "/chunked/3");
  ASSERT_FALSE(over) << "accepted " << over.value().body.size() << " bytes";
  EXPECT_EQ(over.error(), errc::response_too_large);
}

TEST_F(HttpsClientTest, PresentsClientIdentity) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  HttpsClient client(config_for(server.port()), pki().trust(), pki().device_identity());

  ASSERT_TRUE(client.request("GET", "/bytes/1")) << client.describe_last_failure();
  EXPECT_EQ(server.device_name(), testing::kTestDeviceName);
}

TEST_F(HttpsClientTest, NoIdentityPresentsNoCertificate) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  HttpsClient client(config_for(server.port()), pki().trust(), std::nullopt);

  ASSERT_TRUE(client.request("GET", "/bytes/1")) << client.describe_last_failure();
  EXPECT_EQ(server.device_name(), "");
}

TEST_F(HttpsClientTest, RejectsTargetThatCouldSplitTheRequestLine) {
  TestServer server(pki().server_identity(), Behaviour::answer);
  HttpsClient client(config_for(server.port()), pki().trust(), std::nullopt);

  auto response = client.request("GET", "/echo HTTP/1.1\r\nX-Evil: 1");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), std::errc::invalid_argument);
  EXPECT_EQ(server.connections(), 0);
}

}  // namespace
}  // namespace kaban::agent
