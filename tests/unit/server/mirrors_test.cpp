// Content mirrors on the server's side (docs/content.md): `admin mirror add` and what it writes,
// what a mirror's certificate may fetch through Api::handle(), the check-in's content_mirrors,
// removal at the TLS layer, and the revocation list for the mirrors' nginx.
#include <sys/stat.h>

#include <chrono>
#include <map>
#include <sstream>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <nlohmann/json.hpp>

#include "kaban/crypto/sha256.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/outbox.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/api.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/mirrors.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using kaban::testing::TempDir;
using kaban::testing::text_of;
using kaban::testing::write_text;

const UnixTime kNow{std::chrono::seconds{1'800'000'000}};
constexpr const char* kMirrorFiles[] = {"server.pem", "server.key", "client.pem",
                                        "client.key", "ca.pem",     "nginx.conf"};

class MirrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() / "server";
    ASSERT_TRUE(init_data_dir(dir_, {}));
    auto identity = load_identity(dir_);
    ASSERT_TRUE(identity);
    identity_ = std::make_unique<ServerIdentity>(std::move(identity).value());
    auto db = open_database(dir_);
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    Directory directory(*db_);
    ASSERT_TRUE(directory.add_user("alice", "Alice Aoki", kNow));
    ASSERT_TRUE(directory.add_user("bob", "Bob Baba", kNow));
    alice_ = enroll("alice");
    bob_ = enroll("bob");
    publish("shelter-basics");
    api_ = std::make_unique<Api>(dir_, *identity_);
  }

  struct Enrolled {
    crypto::Bytes der;
    std::string id;
    std::string serial;
  };

  Enrolled enroll(const std::string& login) {
    Directory directory(*db_);
    auto code = directory.create_enroll_code(login, std::chrono::hours(1), kNow);
    EXPECT_TRUE(code);
    const auto key = crypto::EcPrivateKey::generate();
    const auto csr = crypto::CertificateRequest::create(key, login).value().to_pem();
    auto enrolled = directory.enroll_device(code.value(), csr, {"linux", "", "", login, "0.1.0"},
                                            kNow, *identity_);
    EXPECT_TRUE(enrolled);
    return {enrolled.value().certificate.der(), enrolled.value().device_id,
            enrolled.value().certificate.serial_hex()};
  }

  void publish(const std::string& id) {
    const fs::path folder = tmp_.path() / ("course-" + id);
    write_text(folder / "lesson.html", "<h1>" + id + "</h1>" + std::string(3000, 'x'));
    write_text(folder / "course.json", R"({"id": ")" + id + R"(", "title": "A course",
        "lessons": [{"id": "intro", "title": "Intro", "kind": "html",
                     "files": ["lesson.html"]}]})");
    admin([&](std::ostream& out, std::string& why) {
      return admin_course_publish(dir_, folder, out, why);
    });
  }

  // A chunk of the course's latest version.
  std::string course_chunk(const std::string& course) {
    SQLite::Statement q(*db_, "SELECT hash FROM version_chunks WHERE course_id = ? LIMIT 1");
    q.bind(1, course);
    EXPECT_TRUE(q.executeStep());
    return q.getColumn(0).getString();
  }

  template <class Command>
  std::string admin(Command command) {
    std::ostringstream out;
    std::string why;
    auto done = command(out, why);
    EXPECT_TRUE(done) << why;
    return out.str();
  }

  // A failing admin command: its error and `why`.
  template <class Command>
  std::pair<std::error_code, std::string> admin_fails(Command command) {
    std::ostringstream out;
    std::string why;
    auto done = command(out, why);
    EXPECT_FALSE(done) << out.str();
    return {done ? std::error_code{} : done.error(), why};
  }

  MirrorOptions mirror_options(const std::string& name, const std::string& host) {
    MirrorOptions o;
    o.name = name;
    o.host = host;
    o.origin = "cityhall.example:8443";
    o.out = tmp_.path() / ("mirror-" + name);
    o.cache_dir = tmp_.path() / ("cache-" + name);
    return o;
  }

  // Adds a mirror; the DER of its client certificate.
  crypto::Bytes add_mirror(const MirrorOptions& o) {
    admin([&](std::ostream& out, std::string& why) { return admin_mirror_add(dir_, o, out, why); });
    auto client = crypto::Certificate::from_pem(text_of(o.out / "client.pem"));
    EXPECT_TRUE(client);
    return client ? client.value().der() : crypto::Bytes{};
  }

  HttpResponse request(const std::string& method, const crypto::Bytes& certificate,
                       const std::string& path, std::string body = "") {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.target = path;
    req.body = std::move(body);
    req.content_type = method == "PUT" ? "application/octet-stream" : "application/json";
    req.peer_address = "127.0.0.1";
    req.client_certificate = certificate;
    return api_->handle(req);
  }

  static protocol::CheckinRequest checkin_request(bool simple_pin = false) {
    protocol::CheckinRequest req;
    req.device = {"linux", "Debian 12", "", "laptop", "0.5.0"};
    req.posture.screen_lock = protocol::Fact::yes;
    req.posture.disk_encryption = protocol::Fact::yes;
    req.posture.rooted = protocol::Fact::not_applicable;
    req.posture.os_version_number = "12";
    req.posture.pin_length = 8;
    req.posture.pin_simple = simple_pin;
    req.posture.device_time = to_unix(
        std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()));
    return req;
  }

  protocol::CheckinResponse check_in(const crypto::Bytes& certificate, bool simple_pin = false) {
    HttpResponse r =
        request("POST", certificate, "/v1/checkin", protocol::to_json(checkin_request(simple_pin)));
    EXPECT_EQ(r.status, 200) << r.body;
    auto parsed = protocol::parse_checkin_response(r.body);
    EXPECT_TRUE(parsed) << r.body;
    return parsed ? std::move(parsed).value() : protocol::CheckinResponse{};
  }

  static std::string error_code(const HttpResponse& r) {
    auto body = protocol::parse_error_body(r.body);
    return body ? body.value().code : "(not an error body: " + r.body + ")";
  }

  std::vector<std::string> audit_events() {
    auto entries = AuditLog(*db_).since(UnixTime{}, 1000);
    EXPECT_TRUE(entries);
    std::vector<std::string> events;
    for (const AuditEntry& e : entries.value())
      events.push_back(e.event + ":" + e.subject);
    return events;
  }

  static bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  }

  // The certificate as OpenSSL's, to look at what crypto::Certificate does not show.
  static X509* openssl_certificate(const crypto::Certificate& c) {
    const unsigned char* p = c.der().data();
    return d2i_X509(nullptr, &p, static_cast<long>(c.der().size()));
  }

  TempDir tmp_;
  fs::path dir_;
  std::unique_ptr<ServerIdentity> identity_;
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<Api> api_;
  Enrolled alice_;
  Enrolled bob_;
};

TEST_F(MirrorsTest, AddWritesCertificatesKeysAndAReadyNginxConfigAndRecordsTheMirror) {
  const MirrorOptions o = mirror_options("ward3", "ward3.city.example:8443");
  const std::string said = admin(
      [&](std::ostream& out, std::string& why) { return admin_mirror_add(dir_, o, out, why); });
  EXPECT_TRUE(contains(said, "https://ward3.city.example:8443")) << said;

  for (const char* name : kMirrorFiles) {
    struct stat st {};
    ASSERT_EQ(::stat((o.out / name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << name;
  }
  EXPECT_EQ(text_of(o.out / "ca.pem"), identity_->ca_pem());

  // The server certificate: issued by the server's CA for the mirror's host, with its key, and
  // the CA after it so nginx presents the chain.
  const std::string chain = text_of(o.out / "server.pem");
  EXPECT_TRUE(contains(chain, identity_->ca_pem()));
  auto server = crypto::Certificate::from_pem(chain);
  ASSERT_TRUE(server);
  const crypto::Certificate ca = identity_->ca_certificate;
  EXPECT_TRUE(
      crypto::verify_chain(server.value(), std::span(&ca, 1), std::chrono::system_clock::now()));
  X509* x509 = openssl_certificate(server.value());
  ASSERT_NE(x509, nullptr);
  EXPECT_EQ(X509_check_host(x509, "ward3.city.example", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(x509, "ward4.city.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_purpose(x509, X509_PURPOSE_SSL_SERVER, 0), 1);
  X509_free(x509);
  auto server_key = crypto::EcPrivateKey::from_pem(crypto::as_bytes(text_of(o.out / "server.key")));
  ASSERT_TRUE(server_key);
  EXPECT_EQ(server_key.value().public_key_der(), server.value().public_key_der());

  // The client certificate: the mirror's identity at the server, recorded by fingerprint.
  auto client = crypto::Certificate::from_pem(text_of(o.out / "client.pem"));
  ASSERT_TRUE(client);
  EXPECT_TRUE(
      crypto::verify_chain(client.value(), std::span(&ca, 1), std::chrono::system_clock::now()));
  x509 = openssl_certificate(client.value());
  EXPECT_EQ(X509_check_purpose(x509, X509_PURPOSE_SSL_CLIENT, 0), 1);
  X509_free(x509);
  auto client_key = crypto::EcPrivateKey::from_pem(crypto::as_bytes(text_of(o.out / "client.key")));
  ASSERT_TRUE(client_key);
  EXPECT_EQ(client_key.value().public_key_der(), client.value().public_key_der());
  EXPECT_NE(server.value().public_key_der(), client.value().public_key_der());

  auto mirrors = Mirrors(*db_).list();
  ASSERT_TRUE(mirrors);
  ASSERT_EQ(mirrors.value().size(), 1u);
  EXPECT_EQ(mirrors.value()[0].name, "ward3");
  EXPECT_EQ(mirrors.value()[0].url, "https://ward3.city.example:8443");
  EXPECT_EQ(mirrors.value()[0].client_fingerprint, crypto::to_hex(client.value().fingerprint()));
  EXPECT_FALSE(mirrors.value()[0].removed());
  const auto events = audit_events();
  EXPECT_NE(std::find(events.begin(), events.end(), "mirror_added:ward3"), events.end());

  // nginx.conf: where it listens, whom it lets in, where misses go and how they are checked.
  const std::string config = text_of(o.out / "nginx.conf");
  const std::string out = fs::absolute(o.out).lexically_normal().string();
  for (const std::string& line :
       {std::string("listen 8443 ssl;"), std::string("server_name ward3.city.example;"),
        "ssl_certificate \"" + out + "/server.pem\";",
        "ssl_certificate_key \"" + out + "/server.key\";",
        "ssl_client_certificate \"" + out + "/ca.pem\";", std::string("ssl_verify_client on;"),
        "# ssl_crl \"" + out + "/devices.crl\";", std::string("server cityhall.example:8443;"),
        "proxy_ssl_certificate \"" + out + "/client.pem\";",
        "proxy_ssl_trusted_certificate \"" + out + "/ca.pem\";",
        std::string("proxy_ssl_verify on;"), std::string("proxy_ssl_name cityhall.example;"),
        "proxy_cache_path \"" + (tmp_.path() / "cache-ward3").string() + "\"",
        std::string("keys_zone=kaban_ward3:"), std::string("proxy_cache kaban_ward3;"),
        std::string("location ~ \"^/v1/chunks/[0-9a-f]{64}$\""), std::string("limit_except GET")})
    EXPECT_TRUE(contains(config, line)) << line << " is not in\n" << config;
}

TEST_F(MirrorsTest, AMirrorAtAnAddressListensThereAndAnOriginAddressIsCheckedByTheServersName) {
  // init's default names are localhost, 127.0.0.1: the certificate's common name is localhost.
  ASSERT_TRUE(record_listen_address(dir_, "127.0.0.1:9443"));
  MirrorOptions o = mirror_options("depot-2", "10.0.3.5");
  o.origin.clear();
  o.url = "https://depot-2.city.example:4443";
  add_mirror(o);
  const std::string config = text_of(o.out / "nginx.conf");
  EXPECT_TRUE(contains(config, "listen 10.0.3.5:443 ssl;")) << config;
  EXPECT_TRUE(contains(config, "server_name depot-2.city.example;")) << config;
  EXPECT_TRUE(contains(config, "server 127.0.0.1:9443;")) << config;
  EXPECT_TRUE(contains(config, "proxy_ssl_name localhost;")) << config;
  EXPECT_TRUE(
      contains(config, "proxy_cache_path \"" + (tmp_.path() / "cache-depot-2").string() + "\""));
  // The certificate holds both the address and the URL's name.
  auto server = crypto::Certificate::from_pem(text_of(o.out / "server.pem"));
  ASSERT_TRUE(server);
  X509* x509 = openssl_certificate(server.value());
  EXPECT_EQ(X509_check_ip_asc(x509, "10.0.3.5", 0), 1);
  EXPECT_EQ(X509_check_host(x509, "depot-2.city.example", 0, 0, nullptr), 1);
  X509_free(x509);
  auto mirrors = Mirrors(*db_).list();
  ASSERT_TRUE(mirrors);
  EXPECT_EQ(mirrors.value().at(0).url, "https://depot-2.city.example:4443");
}

TEST_F(MirrorsTest, AddRefusesWhatItCannotUseAndLeavesNothingBehind) {
  const auto refused = [&](MirrorOptions o, errc expected, const std::string& named) {
    const auto [e, why] = admin_fails(
        [&](std::ostream& out, std::string& w) { return admin_mirror_add(dir_, o, out, w); });
    EXPECT_EQ(e, expected) << why;
    EXPECT_TRUE(contains(why, named)) << why;
    EXPECT_TRUE(contains(why, "Nothing was written or recorded")) << why;
    for (const char* name : kMirrorFiles)
      EXPECT_FALSE(fs::exists(o.out / name)) << o.name << ": " << name;
  };
  MirrorOptions o = mirror_options("Ward 3", "ward3.example");
  refused(o, errc::invalid_mirror, "name");
  o = mirror_options("ward3", "http://ward3.example");
  refused(o, errc::invalid_mirror, "--host");
  o = mirror_options("ward3", "0.0.0.0:443");
  refused(o, errc::invalid_mirror, "--host");
  o = mirror_options("ward3", "ward3.example");
  o.url = "https://ward3.example/kaban";
  refused(o, errc::invalid_mirror, "--url");
  o = mirror_options("ward3", "ward3.example");
  o.origin.clear();  // and serve never ran
  refused(o, errc::invalid_mirror, "--origin");
  o.origin = "0.0.0.0:8443";
  refused(o, errc::invalid_mirror, "--origin");
  o = mirror_options("ward3", "ward3.example");
  o.cache_dir = tmp_.path() / "cache;evil";
  refused(o, errc::invalid_mirror, "--cache-dir");

  // A file of a mirror already in the folder is never overwritten.
  o = mirror_options("ward3", "ward3.example");
  o.out = tmp_.path() / "used-before";
  write_text(o.out / "client.key", "a key from before");
  {
    const auto [e, why] = admin_fails(
        [&](std::ostream& out, std::string& w) { return admin_mirror_add(dir_, o, out, w); });
    EXPECT_EQ(e, std::errc::file_exists) << why;
    EXPECT_TRUE(contains(why, "client.key")) << why;
  }
  EXPECT_EQ(text_of(o.out / "client.key"), "a key from before");
  EXPECT_FALSE(fs::exists(o.out / "server.key"));

  // A name in use is refused before anything is written.
  add_mirror(mirror_options("ward3", "ward3.example"));
  MirrorOptions again = mirror_options("ward3", "other.example");
  again.out = tmp_.path() / "again";
  {
    const auto [e, why] = admin_fails(
        [&](std::ostream& out, std::string& w) { return admin_mirror_add(dir_, again, out, w); });
    EXPECT_EQ(e, errc::mirror_exists) << why;
    EXPECT_TRUE(contains(why, "in use")) << why;
  }
  EXPECT_FALSE(fs::exists(again.out / "server.key"));
  auto mirrors = Mirrors(*db_).list();
  ASSERT_TRUE(mirrors);
  EXPECT_EQ(mirrors.value().size(), 1u);
}

TEST_F(MirrorsTest, AMirrorFetchesChunksOfCoursesInUseAndNothingElse) {
  const crypto::Bytes mirror = add_mirror(mirror_options("ward3", "ward3.example"));
  const std::string chunk = course_chunk("shelter-basics");

  HttpResponse r = request("GET", mirror, "/v1/chunks/" + chunk);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(crypto::to_hex(crypto::sha256(crypto::as_bytes(r.body))), chunk);
  EXPECT_EQ(r.headers["Cache-Control"], "public, max-age=31536000, immutable");
  EXPECT_EQ(r.headers["ETag"], "\"" + chunk + "\"");
  EXPECT_EQ(r.log_device, "mirror:ward3");
  // A device is answered the same way: any cache may keep a course chunk.
  r = request("GET", alice_.der, "/v1/chunks/" + chunk);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["Cache-Control"], "public, max-age=31536000, immutable");

  // An attachment chunk is private to its conversation: not even its existence shows.
  const std::string note = "the evacuation map";
  const std::string note_hash = crypto::to_hex(crypto::sha256(crypto::as_bytes(note)));
  ASSERT_EQ(request("PUT", alice_.der, "/v1/chunks/" + note_hash, note).status, 201);
  r = request("GET", alice_.der, "/v1/chunks/" + note_hash);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["Cache-Control"], "private, max-age=31536000, immutable");
  r = request("GET", mirror, "/v1/chunks/" + note_hash);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(error_code(r), "chunk_not_found");
  EXPECT_EQ(request("GET", mirror, "/v1/chunks/" + std::string(64, 'a')).status, 404);
  EXPECT_EQ(request("GET", mirror, "/v1/chunks/NOT-A-HASH").status, 400);

  // Every other endpoint is closed to it.
  for (const auto& [method, path, body] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"POST", "/v1/checkin", protocol::to_json(checkin_request())},
           {"GET", "/v1/changes", ""},
           {"GET", "/v1/inbox", ""},
           {"POST", "/v1/outbox", protocol::to_json(protocol::OutboxUpload{})},
           {"PUT", "/v1/chunks/" + note_hash, note}}) {
    r = request(method, mirror, path, body);
    EXPECT_EQ(r.status, 403) << method << ' ' << path << ": " << r.body;
    EXPECT_EQ(error_code(r), "mirror_forbidden") << method << ' ' << path;
    EXPECT_EQ(r.log_device, "mirror:ward3");
  }

  // A retired course's chunks are no longer served to it.
  admin([&](std::ostream& out, std::string& why) {
    return admin_course_retire(dir_, "shelter-basics", out, why);
  });
  r = request("GET", mirror, "/v1/chunks/" + chunk);
  EXPECT_EQ(r.status, 404) << r.body;
}

TEST_F(MirrorsTest, ChunksOfAnExpiredCourseAreNotServedToAMirror) {
  const crypto::Bytes mirror = add_mirror(mirror_options("ward3", "ward3.example"));
  const std::string chunk = course_chunk("shelter-basics");
  const UnixTime past =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()) -
      std::chrono::hours(1);
  admin([&](std::ostream& out, std::string& why) {
    return admin_course_expire(dir_, "shelter-basics", past, out, why);
  });
  EXPECT_EQ(request("GET", mirror, "/v1/chunks/" + chunk).status, 404);
  admin([&](std::ostream& out, std::string& why) {
    return admin_course_expire(dir_, "shelter-basics", std::nullopt, out, why);
  });
  EXPECT_EQ(request("GET", mirror, "/v1/chunks/" + chunk).status, 200);
}

TEST_F(MirrorsTest, CheckinsNameTheMirrorsInUseAndARemovedOneIsRefused) {
  EXPECT_TRUE(check_in(alice_.der).content_mirrors.empty());
  const crypto::Bytes ward3 = add_mirror(mirror_options("ward3", "ward3.example:8443"));
  const crypto::Bytes depot = add_mirror(mirror_options("depot-2", "depot-2.example"));
  EXPECT_EQ(
      check_in(alice_.der).content_mirrors,
      (std::vector<std::string>{"https://ward3.example:8443", "https://depot-2.example:443"}));
  // A blocked device is told of none: it fetches no course content.
  EXPECT_TRUE(check_in(bob_.der, /*simple_pin=*/true).content_mirrors.empty());

  EXPECT_TRUE(api_->accept_client_certificate(ward3));
  const std::string said = admin([&](std::ostream& out, std::string& why) {
    return admin_mirror_remove(dir_, "ward3", out, why);
  });
  EXPECT_TRUE(contains(said, "refused")) << said;
  EXPECT_FALSE(api_->accept_client_certificate(ward3));
  EXPECT_TRUE(api_->accept_client_certificate(depot));
  EXPECT_TRUE(api_->accept_client_certificate(alice_.der));
  // Should a connection have got past the handshake, its requests are refused too.
  HttpResponse r = request("GET", ward3, "/v1/chunks/" + course_chunk("shelter-basics"));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(error_code(r), "mirror_removed");
  EXPECT_EQ(check_in(alice_.der).content_mirrors,
            std::vector<std::string>{"https://depot-2.example:443"});
  const auto events = audit_events();
  EXPECT_NE(std::find(events.begin(), events.end(), "mirror_removed:ward3"), events.end());

  {
    const auto [e, why] = admin_fails([&](std::ostream& out, std::string& w) {
      return admin_mirror_remove(dir_, "ward3", out, w);
    });
    EXPECT_EQ(e, errc::no_such_mirror);
    EXPECT_TRUE(contains(why, "admin mirror list")) << why;
  }

  // The name is free again; the new mirror has a certificate of its own.
  MirrorOptions again = mirror_options("ward3", "ward3.example:8443");
  again.out = tmp_.path() / "ward3-again";
  const crypto::Bytes renewed = add_mirror(again);
  EXPECT_NE(renewed, ward3);
  EXPECT_TRUE(api_->accept_client_certificate(renewed));
  EXPECT_FALSE(api_->accept_client_certificate(ward3));

  const std::string table = admin([&](std::ostream& out, std::string& why) {
    return admin_mirror_list(dir_, Listing::table, out, why);
  });
  EXPECT_TRUE(contains(table, "in use")) << table;
  EXPECT_TRUE(contains(table, "removed")) << table;
  const auto listed = nlohmann::json::parse(admin([&](std::ostream& out, std::string& why) {
    return admin_mirror_list(dir_, Listing::json, out, why);
  }));
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_TRUE(listed[0]["removed_at"].is_null());
  EXPECT_TRUE(listed[1]["removed_at"].is_null());
  EXPECT_EQ(listed[2]["name"], "ward3");
  EXPECT_TRUE(listed[2]["removed_at"].is_string());
}

TEST_F(MirrorsTest, TheRevocationListNamesRevokedDevicesAndIsSignedByTheCa) {
  admin([&](std::ostream& out, std::string& why) {
    return admin_device_revoke(dir_, bob_.id, out, why);
  });
  const fs::path file = tmp_.path() / "devices.crl";
  const std::string said = admin([&](std::ostream& out, std::string& why) {
    return admin_mirror_crl(dir_, file, std::chrono::days(7), out, why);
  });
  EXPECT_TRUE(contains(said, "1 revoked device certificate")) << said;
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);

  const std::string pem = text_of(file);
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(crl, nullptr) << pem;
  X509* ca = openssl_certificate(identity_->ca_certificate);
  EXPECT_EQ(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
  int days = 0;
  int seconds = 0;
  ASSERT_EQ(
      ASN1_TIME_diff(&days, &seconds, X509_CRL_get0_lastUpdate(crl), X509_CRL_get0_nextUpdate(crl)),
      1);
  EXPECT_EQ(days, 7);
  EXPECT_EQ(seconds, 0);
  STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl);
  ASSERT_EQ(sk_X509_REVOKED_num(entries), 1);
  BIGNUM* serial = ASN1_INTEGER_to_BN(
      X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(entries, 0)), nullptr);
  char* hex = BN_bn2hex(serial);
  std::string serial_hex(hex);
  OPENSSL_free(hex);
  BN_free(serial);
  std::transform(serial_hex.begin(), serial_hex.end(), serial_hex.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_EQ(serial_hex, bob_.serial);
  EXPECT_NE(serial_hex, alice_.serial);
  X509_free(ca);
  X509_CRL_free(crl);

  const auto [e, why] = admin_fails([&](std::ostream& out, std::string& w) {
    return admin_mirror_crl(dir_, file, std::chrono::minutes(5), out, w);
  });
  EXPECT_EQ(e, errc::invalid_mirror);
}

}  // namespace
}  // namespace kaban::server
