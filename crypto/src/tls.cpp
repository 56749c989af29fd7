#include "kaban/crypto/tls.hpp"

#include <climits>
#include <memory>
#include <string_view>
#include <vector>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <boost/asio/ssl/context.hpp>

#include "kaban/crypto/error.hpp"
#include "openssl_util.hpp"
#include "private_key_pem.hpp"

namespace kaban::crypto {
namespace {

template <auto Fn>
using Deleter = detail::Deleter<Fn>;
using detail::X509Ptr;
using detail::X509StoreCtxPtr;
using detail::X509StorePtr;
using Asn1OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, Deleter<&ASN1_OCTET_STRING_free>>;

constexpr int kMinProtocolVersion = TLS1_2_VERSION;

// TLS 1.2 only: forward secrecy (ECDHE) and AEAD records, for both ECDSA and RSA certificates.
// TLS 1.3 suites are OpenSSL's defaults, which are all AEAD.
constexpr const char* kTls12CipherList =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

// Sessions may only resume in the context that created them; OpenSSL refuses resumption of a
// session with a verified client certificate unless this is set.
constexpr std::string_view kSessionIdContext = "kaban-sync";

// Every PEM certificate in `pem`, in order. Fails if there is none or one does not parse.
Result<std::vector<X509Ptr>> read_certificates(std::string_view pem) {
  if (pem.empty() || pem.size() > INT_MAX)
    return errc::invalid_encoding;
  detail::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio)
    detail::throw_openssl("BIO_new_mem_buf");
  std::vector<X509Ptr> certs;
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, &detail::no_passphrase, nullptr));
    if (!cert)
      break;
    certs.push_back(std::move(cert));
  }
  // The loop ends on "no more PEM" as well as on a damaged block; only the former is clean.
  const unsigned long last = ERR_peek_last_error();
  const bool clean_end =
      ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (certs.empty() || (last != 0 && !clean_end))
    return errc::invalid_encoding;
  return certs;
}

// A store trusting exactly `certs`: no default paths, so the system's CAs never count.
X509StorePtr make_store(const std::vector<X509Ptr>& certs) {
  X509StorePtr store(X509_STORE_new());
  if (!store)
    detail::throw_openssl("X509_STORE_new");
  for (const auto& cert : certs) {
    if (X509_STORE_add_cert(store.get(), cert.get()) != 1)
      detail::throw_openssl("X509_STORE_add_cert");
  }
  return store;
}

Bytes der_of(X509* cert) {
  const int size = i2d_X509(cert, nullptr);
  if (size <= 0)
    detail::throw_openssl("i2d_X509");
  Bytes der(static_cast<std::size_t>(size));
  unsigned char* p = der.data();
  i2d_X509(cert, &p);
  return der;
}

void apply_common_settings(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, kMinProtocolVersion) != 1)
    detail::throw_openssl("SSL_CTX_set_min_proto_version");
  if (SSL_CTX_set_cipher_list(ctx, kTls12CipherList) != 1)
    detail::throw_openssl("SSL_CTX_set_cipher_list");
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}

Result<void> use_key(SSL_CTX* ctx, const SecretKey& key_pem) {
  KABAN_TRY(key, detail::read_private_key_pem(key_pem.bytes()));
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return errc::invalid_key;
  }
  return ok();
}

// ---- pinned CA (enrollment) ------------------------------------------------------------------

// The pin lives in the SSL_CTX's ex_data so that it is freed with the context; the verify
// callback gets the same pointer as its argument.
void free_pin(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<Digest*>(ptr);
}

int pin_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_pin);
  if (index < 0)
    detail::throw_openssl("SSL_CTX_get_ex_new_index");
  return index;
}

// Replaces OpenSSL's chain verification in pinned mode. The anchor must come from the chain the
// server sent, since the device knows only its fingerprint; it is then trusted alone, and the
// chain is verified as usual under the handshake's own parameters (purpose, time, host name).
// Runs inside a handshake: it must not throw into OpenSSL.
int verify_with_pin(X509_STORE_CTX* ctx, void* arg) noexcept try {
  const Digest& pin = *static_cast<const Digest*>(arg);
  STACK_OF(X509)* sent = X509_STORE_CTX_get0_untrusted(ctx);
  X509* anchor = nullptr;
  for (int i = 0; sent != nullptr && i < sk_X509_num(sent); ++i) {
    X509* candidate = sk_X509_value(sent, i);
    if (X509_self_signed(candidate, 0) == 1 &&
        constant_time_equal(sha256(der_of(candidate)), pin)) {
      anchor = candidate;
      break;
    }
  }
  ERR_clear_error();
  if (anchor == nullptr) {
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    return 0;
  }

  X509StorePtr store(X509_STORE_new());
  X509StoreCtxPtr check(X509_STORE_CTX_new());
  if (!store || !check || X509_STORE_add_cert(store.get(), anchor) != 1 ||
      X509_STORE_CTX_init(check.get(), store.get(), X509_STORE_CTX_get0_cert(ctx), sent) != 1 ||
      X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(check.get()),
                             X509_STORE_CTX_get0_param(ctx)) != 1) {
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_OUT_OF_MEM);
    return 0;
  }
  const int verified = X509_verify_cert(check.get());
  // SSL_get_verify_result reads the error from the context OpenSSL handed us.
  X509_STORE_CTX_set_error(ctx, X509_STORE_CTX_get_error(check.get()));
  X509_STORE_CTX_set_error_depth(ctx, X509_STORE_CTX_get_error_depth(check.get()));
  X509_STORE_CTX_set_current_cert(ctx, X509_STORE_CTX_get_current_cert(check.get()));
  return verified == 1 ? 1 : 0;
} catch (...) {
  X509_STORE_CTX_set_error(ctx, X509_V_ERR_UNSPECIFIED);
  return 0;
}

void set_pin(SSL_CTX* ctx, const std::optional<Digest>& pin) {
  delete static_cast<Digest*>(SSL_CTX_get_ex_data(ctx, pin_index()));
  auto owned = pin ? std::make_unique<Digest>(*pin) : nullptr;
  if (SSL_CTX_set_ex_data(ctx, pin_index(), owned.get()) != 1)
    detail::throw_openssl("SSL_CTX_set_ex_data");
  Digest* raw = owned.release();
  SSL_CTX_set_cert_verify_callback(ctx, raw ? &verify_with_pin : nullptr, raw);
}

bool is_pinned(const SSL* ssl) {
  return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), pin_index()) != nullptr;
}

// ---- the server's check of client certificates ----------------------------------------------

// Like the pin, the check lives in the SSL_CTX's ex_data and is freed with the context.
void free_check(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<ClientCertificateCheck*>(ptr);
}

int check_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_check);
  if (index < 0)
    detail::throw_openssl("SSL_CTX_get_ex_new_index");
  return index;
}

const ClientCertificateCheck* check_of(const SSL* ssl) {
  const auto* check = static_cast<const ClientCertificateCheck*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), check_index()));
  return check != nullptr && *check ? check : nullptr;
}

void set_check(SSL_CTX* ctx, ClientCertificateCheck check) {
  delete static_cast<ClientCertificateCheck*>(SSL_CTX_get_ex_data(ctx, check_index()));
  auto owned = check ? std::make_unique<ClientCertificateCheck>(std::move(check)) : nullptr;
  if (SSL_CTX_set_ex_data(ctx, check_index(), owned.get()) != 1)
    detail::throw_openssl("SSL_CTX_set_ex_data");
  owned.release();
}

// OpenSSL's chain verification calls this for every certificate of the chain, the leaf (depth
// 0) last; only a leaf that passed everything else is put to the server's check. Runs inside a
// handshake: it must not throw into OpenSSL.
int verify_client(int preverify_ok, X509_STORE_CTX* store) noexcept {
  if (preverify_ok != 1 || X509_STORE_CTX_get_error_depth(store) != 0)
    return preverify_ok;
  const auto* ssl = static_cast<const SSL*>(
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const ClientCertificateCheck* check = ssl != nullptr ? check_of(ssl) : nullptr;
  if (check == nullptr)
    return 1;
  try {
    if ((*check)(der_of(X509_STORE_CTX_get_current_cert(store))))
      return 1;
    X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REVOKED);
  } catch (...) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_UNSPECIFIED);
  }
  return 0;
}

// A resumed session skips chain verification, so a ticket made before the device was revoked
// would still let it in: its certificate is put to the check here, and a refused one makes the
// client go through a full handshake (which then fails in verify_client). Otherwise this does
// what OpenSSL does without a callback.
SSL_TICKET_RETURN decrypt_ticket(SSL* ssl, SSL_SESSION* session, const unsigned char*, size_t,
                                 SSL_TICKET_STATUS status, void*) noexcept {
  switch (status) {
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
      return SSL_TICKET_RETURN_IGNORE_RENEW;
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
      break;
    default:
      return SSL_TICKET_RETURN_ABORT;
  }
  const ClientCertificateCheck* check = check_of(ssl);
  X509* peer = session != nullptr ? SSL_SESSION_get0_peer(session) : nullptr;
  if (check != nullptr && peer != nullptr) {
    try {
      if (!(*check)(der_of(peer)))
        return SSL_TICKET_RETURN_IGNORE;
    } catch (...) {
      return SSL_TICKET_RETURN_IGNORE;
    }
  }
  return status == SSL_TICKET_SUCCESS_RENEW ? SSL_TICKET_RETURN_USE_RENEW : SSL_TICKET_RETURN_USE;
}

}  // namespace

Result<void> configure_server_tls(boost::asio::ssl::context& context, const TlsServerIdentity& id,
                                  ClientCertificateCheck check) {
  SSL_CTX* ctx = context.native_handle();
  apply_common_settings(ctx);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_session_id_context(
          ctx, reinterpret_cast<const unsigned char*>(kSessionIdContext.data()),
          static_cast<unsigned>(kSessionIdContext.size())) != 1) {
    detail::throw_openssl("SSL_CTX_set_session_id_context");
  }

  KABAN_TRY(chain, read_certificates(id.certificate_chain_pem));
  if (SSL_CTX_use_certificate(ctx, chain.front().get()) != 1) {
    ERR_clear_error();
    return errc::invalid_encoding;
  }
  SSL_CTX_clear_chain_certs(ctx);
  for (std::size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, chain[i].get()) != 1)
      detail::throw_openssl("SSL_CTX_add1_chain_cert");
  }
  KABAN_TRYV(use_key(ctx, id.private_key_pem));

  KABAN_TRY(client_cas, read_certificates(id.client_ca_pem));
  SSL_CTX_set_cert_store(ctx, make_store(client_cas).release());
  // Tells clients which CA to pick a certificate for; the list starts empty.
  SSL_CTX_set_client_CA_list(ctx, sk_X509_NAME_new_null());
  for (const auto& ca : client_cas) {
    if (SSL_CTX_add_client_CA(ctx, ca.get()) != 1)
      detail::throw_openssl("SSL_CTX_add_client_CA");
  }
  // No FAIL_IF_NO_PEER_CERT: enrollment comes without a certificate; the API decides per route.
  set_check(ctx, std::move(check));
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, &verify_client);
  // Resumption only from tickets, which decrypt_ticket checks: a session-id cache would resume
  // without asking.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_set_session_ticket_cb(ctx, nullptr, &decrypt_ticket, nullptr) != 1)
    detail::throw_openssl("SSL_CTX_set_session_ticket_cb");
  return ok();
}

Result<void> configure_client_tls(boost::asio::ssl::context& context, const TlsClientTrust& trust,
                                  const TlsClientIdentity* identity) {
  SSL_CTX* ctx = context.native_handle();
  if (trust.ca_pem.empty() && !trust.pinned_ca_fingerprint)
    return errc::invalid_argument;
  apply_common_settings(ctx);

  if (!trust.ca_pem.empty()) {
    KABAN_TRY(cas, read_certificates(trust.ca_pem));
    SSL_CTX_set_cert_store(ctx, make_store(cas).release());
    set_pin(ctx, std::nullopt);
  } else {
    SSL_CTX_set_cert_store(ctx, make_store({}).release());
    set_pin(ctx, trust.pinned_ca_fingerprint);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);

  if (identity != nullptr) {
    KABAN_TRY(certs, read_certificates(identity->certificate_pem));
    if (SSL_CTX_use_certificate(ctx, certs.front().get()) != 1) {
      ERR_clear_error();
      return errc::invalid_encoding;
    }
    KABAN_TRYV(use_key(ctx, identity->private_key_pem));
  }
  return ok();
}

Result<void> expect_server_name(ssl_st* ssl, const std::string& host) {
  if (host.empty() || host.find('\0') != std::string::npos)
    return errc::invalid_argument;
  // SNI carries host names only (RFC 6066); an address is matched against the IP SANs instead.
  Asn1OctetStringPtr ip(a2i_IPADDRESS(host.c_str()));
  ERR_clear_error();
  if (ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1) {
      ERR_clear_error();
      return errc::invalid_argument;
    }
    return ok();
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 || SSL_set1_host(ssl, host.c_str()) != 1) {
    ERR_clear_error();
    return errc::invalid_argument;
  }
  return ok();
}

Bytes peer_certificate_der(ssl_st* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  return cert != nullptr ? der_of(cert) : Bytes{};
}

std::string describe_verify_failure(ssl_st* ssl) {
  const long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK)
    return {};
  // The server checks a device's certificate, the device checks the server's.
  const bool server = SSL_is_server(ssl) == 1;
  const std::string whose = server ? "the device's certificate" : "the server's certificate";
  switch (result) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      if (server)
        return whose + " is not signed by this server's CA: enroll the device again";
      if (is_pinned(ssl))
        return "the server's CA does not match the fingerprint in the enrollment line: check the "
               "line with IT (the connection may be intercepted)";
      return whose +
             " is not signed by the CA this device trusts: the connection may be intercepted, "
             "or the server was set up again (then enroll the device again)";
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CERT_HAS_EXPIRED:
      if (server)
        return whose +
               " is expired or not yet valid: the device did not check in to renew it in time "
               "and must enroll again (unless this server's clock is wrong)";
      return whose +
             " is expired or not yet valid: check this computer's date and time, then "
             "ask IT to renew it";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return whose +
             " is not for the address this device connected to: check the server "
             "address in the settings";
    case X509_V_ERR_INVALID_PURPOSE:
      return whose + " is not meant for this use: ask IT to issue the right certificate";
    case X509_V_ERR_CERT_REVOKED:
      if (server)
        return whose + " belongs to a device IT revoked: it must enroll again with a new code";
      return whose + " has been revoked: enroll the device again";
    default:
      return whose + " was refused (" + X509_verify_cert_error_string(result) +
             "): ask IT to check the server's certificates";
  }
}

bool is_certificate_refused_alert(unsigned long ssl_error) noexcept {
  if (ERR_GET_LIB(ssl_error) != ERR_LIB_SSL)
    return false;
  switch (ERR_GET_REASON(ssl_error)) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

}  // namespace kaban::crypto
