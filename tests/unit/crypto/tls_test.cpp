// Kaban's TLS settings, checked by real handshakes between Asio SSL streams over loopback.
#include "kaban/crypto/tls.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>

#include "kaban/crypto/error.hpp"
#include "kaban/crypto/x509.hpp"
#include "test_pki.hpp"

namespace kaban::crypto {
namespace {

using Pki = testing::TestPki;

namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

constexpr auto kHandshakeDeadline = 5s;  // a watchdog: a healthy loopback handshake takes ms

TlsClientTrust trust_ca(const std::string& ca_pem) {
  TlsClientTrust trust;
  trust.ca_pem = ca_pem;
  return trust;
}

TlsClientTrust trust_pin(const Digest& fingerprint) {
  TlsClientTrust trust;
  trust.pinned_ca_fingerprint = fingerprint;
  return trust;
}

struct SessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using SessionPtr = std::unique_ptr<SSL_SESSION, SessionFree>;

struct Outcome {
  boost::system::error_code server_error;
  boost::system::error_code client_error;
  std::string server_verify_failure;  // describe_verify_failure on each side after the handshake
  std::string client_verify_failure;
  Bytes certificate_seen_by_server;
  int version = 0;
  std::string cipher;
  SessionPtr session;    // the client's session after a successful handshake, to resume
  bool resumed = false;  // the client resumed the session it was given
};

// The OpenSSL reason behind an Asio SSL error (0 for other errors).
int reason(const boost::system::error_code& ec) {
  if (ec.category() != net::error::get_ssl_category())
    return 0;
  return ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
}

// One handshake between a server on `server_ctx` and a client on `client_ctx`. `prepare` runs on
// the client's SSL before the handshake (e.g. expect_server_name).
Outcome handshake(ssl::context& server_ctx, ssl::context& client_ctx,
                  const std::function<void(ssl_st*)>& prepare = {}) {
  Outcome out;
  net::io_context ioc;
  tcp::acceptor acceptor(ioc, {net::ip::address_v4::loopback(), 0});
  ssl::stream<tcp::socket> server(ioc, server_ctx);
  ssl::stream<tcp::socket> client(ioc, client_ctx);
  if (prepare)
    prepare(client.native_handle());

  // Each side closes its socket on failure so the other side's handshake ends too, whether or
  // not the alert was flushed.
  acceptor.async_accept(server.next_layer(), [&](boost::system::error_code ec) {
    if (ec) {
      out.server_error = ec;
      return;
    }
    server.async_handshake(ssl::stream_base::server, [&](boost::system::error_code hs) {
      out.server_error = hs;
      out.server_verify_failure = describe_verify_failure(server.native_handle());
      if (hs) {
        server.next_layer().close();
        return;
      }
      out.certificate_seen_by_server = peer_certificate_der(server.native_handle());
    });
  });
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](boost::system::error_code ec) {
    if (ec) {
      out.client_error = ec;
      return;
    }
    client.async_handshake(ssl::stream_base::client, [&](boost::system::error_code hs) {
      out.client_error = hs;
      out.client_verify_failure = describe_verify_failure(client.native_handle());
      if (hs) {
        client.next_layer().close();
        return;
      }
      out.version = SSL_version(client.native_handle());
      out.cipher = SSL_get_cipher_name(client.native_handle());
      out.session.reset(SSL_get1_session(client.native_handle()));
      out.resumed = SSL_session_reused(client.native_handle()) == 1;
      // As if closed cleanly: OpenSSL marks the session of a connection that was not shut down
      // unresumable.
      SSL_set_shutdown(client.native_handle(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    });
  });
  ioc.run_for(kHandshakeDeadline);
  EXPECT_TRUE(ioc.stopped()) << "handshake did not finish within the deadline";
  return out;
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new Pki("Kaban Test CA");
    foreign_ = new Pki("Foreign CA");
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete foreign_;
  }

  void SetUp() override {
    ASSERT_TRUE(configure_server_tls(server_ctx_, pki_->server_identity(pki_->ca.to_pem())));
  }

  // A client that trusts the test CA.
  void trust_test_ca(const TlsClientIdentity* identity = nullptr) {
    ASSERT_TRUE(configure_client_tls(client_ctx_, trust_ca(pki_->ca.to_pem()), identity));
  }

  static std::function<void(ssl_st*)> expect(const std::string& host) {
    return [host](ssl_st* ssl) { ASSERT_TRUE(expect_server_name(ssl, host)); };
  }

  static Pki* pki_;
  static Pki* foreign_;
  ssl::context server_ctx_{ssl::context::tls_server};
  ssl::context client_ctx_{ssl::context::tls_client};
};

Pki* TlsTest::pki_ = nullptr;
Pki* TlsTest::foreign_ = nullptr;

TEST_F(TlsTest, NegotiatesTls13ByDefault) {
  trust_test_ca();
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("localhost"));
  ASSERT_FALSE(out.client_error) << out.client_error.message();
  ASSERT_FALSE(out.server_error) << out.server_error.message();
  EXPECT_EQ(out.version, TLS1_3_VERSION);
  EXPECT_EQ(out.client_verify_failure, "");
}

TEST_F(TlsTest, ServerRefusesTls11) {
  // A client that would accept anything up to TLS 1.1; security level 0 so that it is the
  // server, not the client's own policy, that refuses.
  SSL_CTX* ctx = client_ctx_.native_handle();
  SSL_CTX_set_security_level(ctx, 0);
  ASSERT_EQ(SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0"), 1);
  client_ctx_.set_verify_mode(ssl::verify_peer);
  client_ctx_.add_certificate_authority(net::buffer(pki_->ca.to_pem()));

  const Outcome out = handshake(server_ctx_, client_ctx_);
  EXPECT_TRUE(out.client_error);
  ASSERT_TRUE(out.server_error);
  EXPECT_EQ(reason(out.server_error), SSL_R_UNSUPPORTED_PROTOCOL) << out.server_error.message();
}

TEST_F(TlsTest, ServerRefusesTls12WithoutAead) {
  trust_test_ca();
  SSL_CTX* ctx = client_ctx_.native_handle();
  ASSERT_EQ(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-SHA"), 1);

  const Outcome out = handshake(server_ctx_, client_ctx_);
  EXPECT_TRUE(out.client_error);
  ASSERT_TRUE(out.server_error);
  EXPECT_EQ(reason(out.server_error), SSL_R_NO_SHARED_CIPHER) << out.server_error.message();
}

TEST_F(TlsTest, AcceptsTls12WithAead) {
  trust_test_ca();
  SSL_CTX* ctx = client_ctx_.native_handle();
  ASSERT_EQ(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION), 1);

  const Outcome out = handshake(server_ctx_, client_ctx_, expect("localhost"));
  ASSERT_FALSE(out.client_error) << out.client_error.message();
  ASSERT_FALSE(out.server_error) << out.server_error.message();
  EXPECT_EQ(out.version, TLS1_2_VERSION);
  EXPECT_EQ(out.cipher.find("ECDHE-ECDSA-"), 0u) << out.cipher;
  EXPECT_TRUE(out.cipher.find("GCM") != std::string::npos ||
              out.cipher.find("CHACHA20") != std::string::npos)
      << out.cipher;
}

TEST_F(TlsTest, ClientTrustingAnotherCaFailsAndSaysWhy) {
  ASSERT_TRUE(configure_client_tls(client_ctx_, trust_ca(foreign_->ca.to_pem()), nullptr));
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("localhost"));
  ASSERT_TRUE(out.client_error);
  EXPECT_TRUE(out.server_error);
  EXPECT_NE(out.client_verify_failure.find("not signed by the CA this device trusts"),
            std::string::npos)
      << out.client_verify_failure;
}

TEST_F(TlsTest, PinnedCaFingerprintMatches) {
  ASSERT_TRUE(configure_client_tls(client_ctx_, trust_pin(pki_->ca.fingerprint()), nullptr));
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("localhost"));
  ASSERT_FALSE(out.client_error) << out.client_error.message() << ": " << out.client_verify_failure;
  EXPECT_FALSE(out.server_error) << out.server_error.message();
}

TEST_F(TlsTest, PinnedCaFingerprintMismatchFails) {
  ASSERT_TRUE(configure_client_tls(client_ctx_, trust_pin(foreign_->ca.fingerprint()), nullptr));
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("localhost"));
  ASSERT_TRUE(out.client_error);
  EXPECT_NE(out.client_verify_failure.find("fingerprint"), std::string::npos)
      << out.client_verify_failure;
}

TEST_F(TlsTest, PinnedModeStillChecksTheHostName) {
  ASSERT_TRUE(configure_client_tls(client_ctx_, trust_pin(pki_->ca.fingerprint()), nullptr));
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("sync.example.org"));
  ASSERT_TRUE(out.client_error);
  EXPECT_NE(out.client_verify_failure.find("not for the address"), std::string::npos)
      << out.client_verify_failure;
}

TEST_F(TlsTest, PinnedModeRejectsAServerSignedByAnotherCaThatSendsThePinnedCa) {
  // A server whose chain carries the pinned CA certificate but whose own certificate was
  // signed by someone else: the pinned anchor must actually sign the chain.
  ssl::context impostor_ctx{ssl::context::tls_server};
  TlsServerIdentity impostor{foreign_->server.to_pem() + pki_->ca.to_pem(),
                             foreign_->server_key.to_pem(), pki_->ca.to_pem()};
  ASSERT_TRUE(configure_server_tls(impostor_ctx, impostor));
  ASSERT_TRUE(configure_client_tls(client_ctx_, trust_pin(pki_->ca.fingerprint()), nullptr));
  const Outcome out = handshake(impostor_ctx, client_ctx_, expect("localhost"));
  EXPECT_TRUE(out.client_error);
}

TEST_F(TlsTest, WrongHostNameFails) {
  trust_test_ca();
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("sync.example.org"));
  ASSERT_TRUE(out.client_error);
  EXPECT_NE(out.client_verify_failure.find("not for the address"), std::string::npos)
      << out.client_verify_failure;
}

TEST_F(TlsTest, IpAddressSanMatches) {
  trust_test_ca();
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("127.0.0.1"));
  ASSERT_FALSE(out.client_error) << out.client_error.message() << ": " << out.client_verify_failure;
}

TEST_F(TlsTest, OtherIpAddressFails) {
  trust_test_ca();
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("127.0.0.2"));
  ASSERT_TRUE(out.client_error);
  EXPECT_NE(out.client_verify_failure.find("not for the address"), std::string::npos);
}

TEST_F(TlsTest, ServerRefusesClientCertificateFromAnotherCa) {
  const TlsClientIdentity identity = foreign_->device_identity();
  trust_test_ca(&identity);
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("localhost"));
  ASSERT_TRUE(out.server_error);
  EXPECT_NE(out.server_verify_failure.find("device's certificate"), std::string::npos)
      << out.server_verify_failure;
  EXPECT_TRUE(out.certificate_seen_by_server.empty());
}

TEST_F(TlsTest, NoClientCertificateIsAllowed) {
  trust_test_ca();
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("localhost"));
  ASSERT_FALSE(out.client_error) << out.client_error.message();
  ASSERT_FALSE(out.server_error) << out.server_error.message();
  EXPECT_TRUE(out.certificate_seen_by_server.empty());
}

TEST_F(TlsTest, ServerSeesTheClientCertificate) {
  const TlsClientIdentity identity = pki_->device_identity();
  trust_test_ca(&identity);
  const Outcome out = handshake(server_ctx_, client_ctx_, expect("localhost"));
  ASSERT_FALSE(out.client_error) << out.client_error.message();
  ASSERT_FALSE(out.server_error) << out.server_error.message();
  EXPECT_EQ(out.certificate_seen_by_server, pki_->device.der());
}

TEST_F(TlsTest, ConfigurationRejectsBadInput) {
  ssl::context server{ssl::context::tls_server};
  EXPECT_EQ(configure_server_tls(server, {"not pem", pki_->server_key.to_pem(), pki_->ca.to_pem()})
                .error(),
            errc::invalid_encoding);
  // The key of another certificate.
  EXPECT_EQ(configure_server_tls(
                server, {pki_->server.to_pem(), foreign_->server_key.to_pem(), pki_->ca.to_pem()})
                .error(),
            errc::invalid_key);
  EXPECT_EQ(
      configure_server_tls(server, {pki_->server.to_pem(), pki_->server_key.to_pem(), ""}).error(),
      errc::invalid_encoding);

  ssl::context client{ssl::context::tls_client};
  EXPECT_EQ(configure_client_tls(client, {}, nullptr).error(), errc::invalid_argument);
  EXPECT_EQ(configure_client_tls(client, trust_ca("garbage"), nullptr).error(),
            errc::invalid_encoding);
  const TlsClientIdentity mismatched{pki_->device.to_pem(), foreign_->device_key.to_pem()};
  EXPECT_EQ(configure_client_tls(client, trust_ca(pki_->ca.to_pem()), &mismatched).error(),
            errc::invalid_key);

  net::io_context ioc;
  ssl::stream<tcp::socket> stream(ioc, client);
  EXPECT_EQ(expect_server_name(stream.native_handle(), "").error(), errc::invalid_argument);
}

// A server whose check refuses the certificates in `refused` (by DER), counting its calls.
struct CheckedServer {
  CheckedServer(const Pki& pki, std::vector<Bytes> refused_certificates)
      : refused(std::move(refused_certificates)) {
    EXPECT_TRUE(configure_server_tls(ctx, pki.server_identity(), [this](ByteView der) {
      ++calls;
      return std::find(refused.begin(), refused.end(), Bytes(der.begin(), der.end())) ==
             refused.end();
    }));
  }
  std::vector<Bytes> refused;
  std::atomic<int> calls{0};
  ssl::context ctx{ssl::context::tls_server};
};

TEST_F(TlsTest, TheServersCheckRefusesACertificateAsRevoked) {
  CheckedServer server(*pki_, {pki_->device.der()});
  const TlsClientIdentity identity = pki_->device_identity();
  trust_test_ca(&identity);
  const Outcome out = handshake(server.ctx, client_ctx_, expect("localhost"));
  ASSERT_TRUE(out.server_error);
  EXPECT_NE(out.server_verify_failure.find("revoked"), std::string::npos)
      << out.server_verify_failure;
  EXPECT_TRUE(out.certificate_seen_by_server.empty());
  EXPECT_EQ(server.calls, 1);
}

TEST_F(TlsTest, TheServersCheckSeesOnlyLeavesThatPassedTheChain) {
  // Accepted by the check: the handshake goes on, and the check saw the leaf once.
  CheckedServer server(*pki_, {});
  const TlsClientIdentity identity = pki_->device_identity();
  trust_test_ca(&identity);
  Outcome out = handshake(server.ctx, client_ctx_, expect("localhost"));
  ASSERT_FALSE(out.server_error) << out.server_error.message();
  EXPECT_EQ(out.certificate_seen_by_server, pki_->device.der());
  EXPECT_EQ(server.calls, 1);

  // A certificate of another CA fails before the check is asked; no certificate, nothing to ask.
  ssl::context foreign_client{ssl::context::tls_client};
  const TlsClientIdentity foreign = foreign_->device_identity();
  ASSERT_TRUE(configure_client_tls(foreign_client, trust_ca(pki_->ca.to_pem()), &foreign));
  out = handshake(server.ctx, foreign_client, expect("localhost"));
  EXPECT_TRUE(out.server_error);
  ssl::context anonymous{ssl::context::tls_client};
  ASSERT_TRUE(configure_client_tls(anonymous, trust_ca(pki_->ca.to_pem()), nullptr));
  out = handshake(server.ctx, anonymous, expect("localhost"));
  EXPECT_FALSE(out.server_error) << out.server_error.message();
  EXPECT_EQ(server.calls, 1);
}

TEST_F(TlsTest, AResumedSessionIsPutToTheCheckAgain) {
  CheckedServer server(*pki_, {});
  const TlsClientIdentity identity = pki_->device_identity();
  trust_test_ca(&identity);
  // TLS 1.2 hands the session ticket over inside the handshake.
  ASSERT_EQ(SSL_CTX_set_max_proto_version(client_ctx_.native_handle(), TLS1_2_VERSION), 1);
  Outcome first = handshake(server.ctx, client_ctx_, expect("localhost"));
  ASSERT_FALSE(first.server_error) << first.server_error.message();
  ASSERT_TRUE(first.session);
  const auto resume = [&](ssl_st* ssl) {
    ASSERT_TRUE(expect_server_name(ssl, "localhost"));
    ASSERT_EQ(SSL_set_session(ssl, first.session.get()), 1);
  };
  // While the certificate is accepted, the session resumes (so this test can see a resumption).
  const Outcome second = handshake(server.ctx, client_ctx_, resume);
  ASSERT_FALSE(second.server_error) << second.server_error.message();
  EXPECT_TRUE(second.resumed);

  // Revoked since: the ticket is not used, and the full handshake fails.
  server.refused.push_back(pki_->device.der());
  const Outcome third = handshake(server.ctx, client_ctx_, resume);
  ASSERT_TRUE(third.server_error);
  EXPECT_FALSE(third.resumed);
  EXPECT_NE(third.server_verify_failure.find("revoked"), std::string::npos)
      << third.server_verify_failure;
}

}  // namespace
}  // namespace kaban::crypto
