#include "kaban/crypto/x509.hpp"

#include <algorithm>
#include <climits>
#include <ctime>
#include <optional>
#include <string_view>

#include <openssl/bn.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kaban/crypto/error.hpp"
#include "kaban/crypto/random.hpp"
#include "openssl_util.hpp"
#include "private_key_pem.hpp"

namespace kaban::crypto {

using Clock = std::chrono::system_clock;

namespace {

template <auto Fn>
using Deleter = detail::Deleter<Fn>;
using detail::X509Ptr;
using X509ReqPtr = std::unique_ptr<X509_REQ, Deleter<&X509_REQ_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, Deleter<&X509_NAME_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, Deleter<&X509_EXTENSION_free>>;
using detail::X509StoreCtxPtr;
using detail::X509StorePtr;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, Deleter<&GENERAL_NAME_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<&GENERAL_NAMES_free>>;
using Asn1StringPtr = std::unique_ptr<ASN1_STRING, Deleter<&ASN1_STRING_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, Deleter<&BN_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, Deleter<&X509_CRL_free>>;
using X509RevokedPtr = std::unique_ptr<X509_REVOKED, Deleter<&X509_REVOKED_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, Deleter<&ASN1_TIME_free>>;
using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, Deleter<&ASN1_INTEGER_free>>;

constexpr std::size_t kSerialSize = 16;       // 128 bits, top bit cleared: always positive
constexpr std::size_t kMaxDnsNameSize = 253;  // RFC 1035
constexpr const char* kP256Names[] = {"prime256v1", "P-256"};  // OpenSSL's and NIST's names

[[noreturn]] void fail(const char* what) {
  detail::throw_openssl(what);
}

bool is_p256(const EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC") != 1)
    return false;
  char name[64];
  std::size_t size = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof name, &size) != 1)
    return false;
  const std::string_view group(name, size);
  return std::ranges::any_of(kP256Names, [&](std::string_view n) { return n == group; });
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

// Callers reject empty text: BIO_new_mem_buf refuses the null pointer it may carry.
detail::BioPtr read_bio(std::string_view text) {
  detail::BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio)
    fail("BIO_new_mem_buf");
  return bio;
}

detail::BioPtr write_bio() {
  detail::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio)
    fail("BIO_new");
  return bio;
}

Bytes public_key_der_of(EVP_PKEY* key) {
  const int size = i2d_PUBKEY(key, nullptr);
  if (size <= 0)
    fail("encode public key");
  Bytes out(static_cast<std::size_t>(size));
  unsigned char* p = out.data();
  i2d_PUBKEY(key, &p);
  return out;
}

// i2d_X509 and i2d_X509_REQ share this shape.
template <class T, int (*Encode)(const T*, unsigned char**)>
Bytes der_of(const T* object) {
  const int size = Encode(object, nullptr);
  if (size <= 0)
    fail("DER encode");
  Bytes out(static_cast<std::size_t>(size));
  unsigned char* p = out.data();
  Encode(object, &p);
  return out;
}

std::string common_name_of(const X509_NAME* name) {
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0)
    return {};
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  const int size = ASN1_STRING_to_UTF8(&utf8, data);
  if (size < 0) {
    ERR_clear_error();
    return {};
  }
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(size));
  OPENSSL_free(utf8);
  return out;
}

// OpenSSL enforces the X.520 bounds on a common name here (1 to 64 characters, valid UTF-8).
Result<void> add_common_name(X509_NAME* name, const std::string& common_name) {
  if (common_name.empty() || common_name.size() > INT_MAX ||
      X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1) {
    ERR_clear_error();
    return errc::invalid_argument;
  }
  return ok();
}

std::optional<Clock::time_point> to_time_point(const ASN1_TIME* time) {
  std::tm tm{};
  if (time == nullptr || ASN1_TIME_to_tm(time, &tm) != 1)
    return std::nullopt;
  using namespace std::chrono;
  const sys_days date = year{tm.tm_year + 1900} / month{static_cast<unsigned>(tm.tm_mon + 1)} /
                        day{static_cast<unsigned>(tm.tm_mday)};
  return date + hours{tm.tm_hour} + minutes{tm.tm_min} + seconds{tm.tm_sec};
}

void set_random_serial(X509* cert) {
  std::uint8_t bytes[kSerialSize];
  BignumPtr serial;
  do {
    random_fill(bytes);
    bytes[0] &= 0x7f;
    serial.reset(BN_bin2bn(bytes, sizeof bytes, nullptr));
    if (!serial)
      fail("BN_bin2bn");
  } while (BN_is_zero(serial.get()));
  if (BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)) == nullptr)
    fail("serial");
}

// Version, serial, names, validity and key: everything but the extensions and the signature.
// A null `issuer` makes the certificate self-issued.
Result<X509Ptr> start_certificate(const X509_NAME* issuer, const std::string& common_name,
                                  EVP_PKEY* subject_key, std::chrono::seconds validity) {
  X509Ptr cert(X509_new());
  X509NamePtr subject(X509_NAME_new());
  if (!cert || !subject)
    fail("X509_new");
  KABAN_TRYV(add_common_name(subject.get(), common_name));
  const std::time_t now = Clock::to_time_t(Clock::now());
  set_random_serial(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      X509_set_subject_name(cert.get(), subject.get()) != 1 ||
      X509_set_issuer_name(cert.get(), issuer != nullptr ? issuer : subject.get()) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), now - kCertificateBackdate.count()) ==
          nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), now + validity.count()) == nullptr ||
      X509_set_pubkey(cert.get(), subject_key) != 1) {
    fail("certificate fields");
  }
  return cert;
}

// For the fixed extension values below; a failure is a broken invariant.
void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509ExtensionPtr extension(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!extension || X509_add_ext(cert, extension.get(), -1) != 1)
    fail("add extension");
}

bool is_dns_name(const std::string& name) {
  return !name.empty() && name.size() <= kMaxDnsNameSize && std::ranges::all_of(name, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
  });
}

void push_name(GENERAL_NAMES* names, int type, Asn1StringPtr value) {
  GeneralNamePtr name(GENERAL_NAME_new());
  if (!name)
    fail("GENERAL_NAME_new");
  GENERAL_NAME_set0_value(name.get(), type, value.release());
  if (sk_GENERAL_NAME_push(names, name.get()) <= 0)
    fail("push name");
  name.release();  // now owned by `names`
}

// Built from typed values rather than a config string, so a name cannot smuggle in another.
Result<GeneralNamesPtr> alt_names(const IssueOptions& options) {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names)
    fail("GENERAL_NAMES");
  for (const auto& dns : options.dns_names) {
    if (!is_dns_name(dns))
      return errc::invalid_argument;
    Asn1StringPtr value(ASN1_IA5STRING_new());
    if (!value || ASN1_STRING_set(value.get(), dns.data(), static_cast<int>(dns.size())) != 1) {
      fail("DNS name");
    }
    push_name(names.get(), GEN_DNS, std::move(value));
  }
  for (const auto& ip : options.ip_addresses) {
    Asn1StringPtr value(a2i_IPADDRESS(ip.c_str()));
    if (!value) {
      ERR_clear_error();
      return errc::invalid_argument;
    }
    push_name(names.get(), GEN_IPADD, std::move(value));
  }
  return names;
}

}  // namespace

// ---- the classes' insides -------------------------------------------------------------------

struct EcPrivateKey::Impl {
  detail::PkeyPtr pkey;
};

struct Certificate::Impl {
  X509Ptr x509;
  Bytes der;
  Clock::time_point not_before;
  Clock::time_point not_after;
};

struct CertificateRequest::Impl {
  X509ReqPtr req;
  Bytes der;
};

struct detail::X509Access {
  static EVP_PKEY* pkey(const EcPrivateKey& key) { return key.impl_->pkey.get(); }
  static X509* x509(const Certificate& cert) { return cert.impl_->x509.get(); }
  static X509_REQ* req(const CertificateRequest& csr) { return csr.impl_->req.get(); }

  static EcPrivateKey make_key(PkeyPtr pkey) {
    return EcPrivateKey(std::make_unique<EcPrivateKey::Impl>(EcPrivateKey::Impl{std::move(pkey)}));
  }

  // Fails for a certificate whose validity times do not parse, so the accessors cannot.
  static Result<Certificate> make_certificate(X509Ptr x509) {
    const auto not_before = to_time_point(X509_get0_notBefore(x509.get()));
    const auto not_after = to_time_point(X509_get0_notAfter(x509.get()));
    if (!not_before || !not_after) {
      ERR_clear_error();
      return errc::invalid_encoding;
    }
    auto der = der_of<X509, &i2d_X509>(x509.get());
    return Certificate(std::make_shared<const Certificate::Impl>(
        Certificate::Impl{std::move(x509), std::move(der), *not_before, *not_after}));
  }

  static CertificateRequest make_request(X509ReqPtr req) {
    auto der = der_of<X509_REQ, &i2d_X509_REQ>(req.get());
    return CertificateRequest(std::make_shared<const CertificateRequest::Impl>(
        CertificateRequest::Impl{std::move(req), std::move(der)}));
  }
};

using detail::X509Access;

// ---- EcPrivateKey ---------------------------------------------------------------------------

EcPrivateKey::EcPrivateKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EcPrivateKey::EcPrivateKey(EcPrivateKey&& other) noexcept = default;
EcPrivateKey& EcPrivateKey::operator=(EcPrivateKey&& other) noexcept = default;
EcPrivateKey::~EcPrivateKey() = default;

EcPrivateKey EcPrivateKey::generate() {
  detail::PkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!pkey)
    fail("P-256 keygen");
  return X509Access::make_key(std::move(pkey));
}

Result<EcPrivateKey> EcPrivateKey::from_pem(ByteView pem) {
  KABAN_TRY(pkey, detail::read_private_key_pem(pem));
  if (!is_p256(pkey.get()))
    return errc::invalid_key;
  return X509Access::make_key(std::move(pkey));
}

SecretKey EcPrivateKey::to_pem() const {
  return detail::write_private_key_pem(impl_->pkey.get());
}

Bytes EcPrivateKey::public_key_der() const {
  return public_key_der_of(impl_->pkey.get());
}

Digest EcPrivateKey::public_key_fingerprint() const {
  return sha256(public_key_der());
}

// ---- Certificate ----------------------------------------------------------------------------

Certificate::Certificate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Result<Certificate> Certificate::from_pem(std::string_view pem) {
  if (pem.empty() || pem.size() > INT_MAX)
    return errc::invalid_encoding;
  auto bio = read_bio(pem);
  X509Ptr x509(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!x509) {
    ERR_clear_error();
    return errc::invalid_encoding;
  }
  return X509Access::make_certificate(std::move(x509));
}

Result<Certificate> Certificate::from_der(ByteView der) {
  if (der.size() > LONG_MAX)
    return errc::invalid_encoding;
  const unsigned char* p = der.data();
  X509Ptr x509(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x509 || p != der.data() + der.size()) {
    ERR_clear_error();
    return errc::invalid_encoding;
  }
  return X509Access::make_certificate(std::move(x509));
}

std::string Certificate::to_pem() const {
  auto bio = write_bio();
  if (PEM_write_bio_X509(bio.get(), impl_->x509.get()) != 1)
    fail("PEM_write_bio_X509");
  return bio_text(bio.get());
}

const Bytes& Certificate::der() const noexcept {
  return impl_->der;
}

Digest Certificate::fingerprint() const {
  return sha256(impl_->der);
}

std::string Certificate::common_name() const {
  return common_name_of(X509_get_subject_name(impl_->x509.get()));
}

std::string Certificate::serial_hex() const {
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(impl_->x509.get()), nullptr));
  if (!serial)
    fail("serial");
  Bytes bytes(static_cast<std::size_t>(BN_num_bytes(serial.get())));
  BN_bn2bin(serial.get(), bytes.data());
  return bytes.empty() ? "00" : to_hex(bytes);
}

Clock::time_point Certificate::not_before() const {
  return impl_->not_before;
}
Clock::time_point Certificate::not_after() const {
  return impl_->not_after;
}

Bytes Certificate::public_key_der() const {
  EVP_PKEY* key = X509_get0_pubkey(impl_->x509.get());
  if (key == nullptr)
    fail("certificate public key");
  return public_key_der_of(key);
}

// ---- CertificateRequest ---------------------------------------------------------------------

CertificateRequest::CertificateRequest(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Result<CertificateRequest> CertificateRequest::create(const EcPrivateKey& key,
                                                      std::string common_name) {
  X509ReqPtr req(X509_REQ_new());
  if (!req)
    fail("X509_REQ_new");
  KABAN_TRYV(add_common_name(X509_REQ_get_subject_name(req.get()), common_name));
  EVP_PKEY* pkey = X509Access::pkey(key);
  if (X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_pubkey(req.get(), pkey) != 1 ||
      X509_REQ_sign(req.get(), pkey, EVP_sha256()) <= 0) {
    fail("sign certificate request");
  }
  return X509Access::make_request(std::move(req));
}

Result<CertificateRequest> CertificateRequest::from_pem(std::string_view pem) {
  if (pem.empty() || pem.size() > INT_MAX)
    return errc::invalid_request;
  auto bio = read_bio(pem);
  X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) {
    ERR_clear_error();
    return errc::invalid_request;
  }
  return X509Access::make_request(std::move(req));
}

Result<CertificateRequest> CertificateRequest::from_der(ByteView der) {
  if (der.size() > LONG_MAX)
    return errc::invalid_request;
  const unsigned char* p = der.data();
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (!req || p != der.data() + der.size()) {
    ERR_clear_error();
    return errc::invalid_request;
  }
  return X509Access::make_request(std::move(req));
}

std::string CertificateRequest::to_pem() const {
  auto bio = write_bio();
  if (PEM_write_bio_X509_REQ(bio.get(), impl_->req.get()) != 1)
    fail("PEM_write_bio_X509_REQ");
  return bio_text(bio.get());
}

const Bytes& CertificateRequest::der() const noexcept {
  return impl_->der;
}

std::string CertificateRequest::common_name() const {
  return common_name_of(X509_REQ_get_subject_name(impl_->req.get()));
}

Bytes CertificateRequest::public_key_der() const {
  EVP_PKEY* key = X509_REQ_get0_pubkey(impl_->req.get());
  if (key == nullptr) {
    ERR_clear_error();
    return {};
  }
  return public_key_der_of(key);
}

Result<void> CertificateRequest::verify() const {
  EVP_PKEY* key = X509_REQ_get0_pubkey(impl_->req.get());
  if (key == nullptr || !is_p256(key) || X509_REQ_verify(impl_->req.get(), key) != 1) {
    ERR_clear_error();
    return errc::invalid_request;
  }
  return ok();
}

// ---- issuing and verifying ------------------------------------------------------------------

Result<Certificate> make_self_signed_ca(const EcPrivateKey& key, std::string common_name,
                                        std::chrono::seconds validity) {
  if (validity <= std::chrono::seconds::zero())
    return errc::invalid_argument;
  EVP_PKEY* pkey = X509Access::pkey(key);
  KABAN_TRY(cert, start_certificate(nullptr, common_name, pkey, validity));
  add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), pkey, EVP_sha256()) <= 0)
    fail("sign CA certificate");
  return X509Access::make_certificate(std::move(cert));
}

Result<Certificate> issue_certificate(const Certificate& ca, const EcPrivateKey& ca_key,
                                      const CertificateRequest& csr, const IssueOptions& options) {
  KABAN_TRYV(csr.verify());
  const std::string common_name = csr.common_name();
  if (common_name.empty())
    return errc::invalid_request;

  X509* ca_cert = X509Access::x509(ca);
  EVP_PKEY* ca_pkey = X509Access::pkey(ca_key);
  if (X509_check_ca(ca_cert) != 1)
    return errc::invalid_argument;
  if (X509_check_private_key(ca_cert, ca_pkey) != 1) {
    ERR_clear_error();
    return errc::invalid_key;
  }
  if (options.validity <= std::chrono::seconds::zero() ||
      Clock::now() + options.validity > ca.not_after()) {
    return errc::invalid_argument;
  }
  const bool has_names = !options.dns_names.empty() || !options.ip_addresses.empty();
  const char* extended_key_usage = nullptr;
  switch (options.purpose) {
    case CertificatePurpose::client:
      if (has_names)
        return errc::invalid_argument;
      extended_key_usage = "clientAuth";
      break;
    case CertificatePurpose::server:
      if (!has_names)
        return errc::invalid_argument;
      extended_key_usage = "serverAuth";
      break;
  }
  if (extended_key_usage == nullptr)
    return errc::invalid_argument;
  KABAN_TRY(names, alt_names(options));

  KABAN_TRY(cert, start_certificate(X509_get_subject_name(ca_cert), common_name,
                                    X509_REQ_get0_pubkey(X509Access::req(csr)), options.validity));
  add_extension(cert.get(), ca_cert, NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), ca_cert, NID_key_usage, "critical,digitalSignature");
  add_extension(cert.get(), ca_cert, NID_ext_key_usage, extended_key_usage);
  add_extension(cert.get(), ca_cert, NID_subject_key_identifier, "hash");
  add_extension(cert.get(), ca_cert, NID_authority_key_identifier, "keyid:always");
  if (sk_GENERAL_NAME_num(names.get()) > 0 &&
      X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) !=
          1) {
    fail("subjectAltName");
  }
  if (X509_sign(cert.get(), ca_pkey, EVP_sha256()) <= 0)
    fail("sign certificate");
  return X509Access::make_certificate(std::move(cert));
}

Result<void> verify_chain(const Certificate& leaf, std::span<const Certificate> trusted,
                          Clock::time_point at) {
  X509StorePtr store(X509_STORE_new());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx)
    fail("X509_STORE_new");
  for (const auto& anchor : trusted) {
    if (X509_STORE_add_cert(store.get(), X509Access::x509(anchor)) != 1)
      fail("add trust anchor");
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), X509Access::x509(leaf), nullptr) != 1) {
    fail("X509_STORE_CTX_init");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, Clock::to_time_t(at));
  X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_X509_STRICT);
  if (X509_verify_cert(ctx.get()) == 1)
    return ok();
  const int error = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  if (error == X509_V_ERR_CERT_HAS_EXPIRED || error == X509_V_ERR_CERT_NOT_YET_VALID) {
    return errc::certificate_expired;
  }
  return errc::certificate_untrusted;
}

namespace {

Asn1TimePtr asn1_time(Clock::time_point at) {
  Asn1TimePtr time(ASN1_TIME_set(nullptr, Clock::to_time_t(at)));
  if (!time)
    fail("ASN1_TIME_set");
  return time;
}

// One CRL entry; errc::invalid_argument for a serial that is not hex digits.
Result<X509RevokedPtr> revoked_entry(const RevokedCertificate& entry) {
  auto bytes = from_hex(entry.serial_hex);
  if (!bytes || bytes.value().empty())
    return errc::invalid_argument;
  BignumPtr number(
      BN_bin2bn(bytes.value().data(), static_cast<int>(bytes.value().size()), nullptr));
  if (!number)
    fail("BN_bin2bn");
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(number.get(), nullptr));
  X509RevokedPtr revoked(X509_REVOKED_new());
  if (!serial || !revoked)
    fail("X509_REVOKED_new");
  const Asn1TimePtr at = asn1_time(entry.revoked_at);
  if (X509_REVOKED_set_serialNumber(revoked.get(), serial.get()) != 1 ||
      X509_REVOKED_set_revocationDate(revoked.get(), at.get()) != 1)
    fail("CRL entry");
  return revoked;
}

}  // namespace

Result<std::string> make_crl(const Certificate& ca, const EcPrivateKey& ca_key,
                             std::span<const RevokedCertificate> revoked,
                             Clock::time_point this_update, Clock::time_point next_update,
                             std::uint64_t number) {
  X509* ca_cert = X509Access::x509(ca);
  EVP_PKEY* ca_pkey = X509Access::pkey(ca_key);
  if (X509_check_ca(ca_cert) != 1 || next_update <= this_update)
    return errc::invalid_argument;
  if (X509_check_private_key(ca_cert, ca_pkey) != 1) {
    ERR_clear_error();
    return errc::invalid_key;
  }
  X509CrlPtr crl(X509_CRL_new());
  if (!crl)
    fail("X509_CRL_new");
  const Asn1TimePtr last = asn1_time(this_update);
  const Asn1TimePtr next = asn1_time(next_update);
  if (X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca_cert)) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), last.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1)
    fail("CRL fields");
  for (const RevokedCertificate& entry : revoked) {
    KABAN_TRY(item, revoked_entry(entry));
    if (X509_CRL_add0_revoked(crl.get(), item.get()) != 1)
      fail("X509_CRL_add0_revoked");
    item.release();  // now owned by the list
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca_cert, nullptr, nullptr, crl.get(), 0);
  X509ExtensionPtr key_id(
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
  Asn1IntegerPtr crl_number(ASN1_INTEGER_new());
  if (!key_id || !crl_number || X509_CRL_add_ext(crl.get(), key_id.get(), -1) != 1 ||
      ASN1_INTEGER_set_uint64(crl_number.get(), number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0) != 1)
    fail("CRL extensions");
  if (X509_CRL_sort(crl.get()) != 1 || X509_CRL_sign(crl.get(), ca_pkey, EVP_sha256()) <= 0)
    fail("sign CRL");
  auto bio = write_bio();
  if (PEM_write_bio_X509_CRL(bio.get(), crl.get()) != 1)
    fail("PEM_write_bio_X509_CRL");
  return bio_text(bio.get());
}

}  // namespace kaban::crypto
