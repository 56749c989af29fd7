// The admin commands for content mirrors (declared in admin.hpp; docs/content.md): add, list,
// remove, and the list of revoked device certificates a mirror's nginx checks devices against.
#include "kaban/server/admin.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <sstream>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <nlohmann/json.hpp>

#include "admin_output.hpp"
#include "channel_rows.hpp"
#include "chunk_store.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/mirrors.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using detail::explain;
using detail::format_time;
using detail::in_quotes;
using detail::in_transaction;
using detail::iso_time;
using detail::now;
using detail::open;
using detail::print_table;
using detail::record_admin_action;
using detail::sync_directory;
using detail::write_new_file;

constexpr const char* kServerCertificateFile = "server.pem";
constexpr const char* kServerKeyFile = "server.key";
constexpr const char* kClientCertificateFile = "client.pem";
constexpr const char* kClientKeyFile = "client.key";
constexpr const char* kMirrorCaFile = "ca.pem";
constexpr const char* kNginxConfigFile = "nginx.conf";
constexpr std::array kMirrorFiles = {kServerCertificateFile, kServerKeyFile, kClientCertificateFile,
                                     kClientKeyFile,         kMirrorCaFile,  kNginxConfigFile};
// What nginx on the mirror reads its list of revoked devices from, beside the other files.
constexpr const char* kCrlFile = "devices.crl";
constexpr mode_t kFileMode = 0600;
constexpr mode_t kDirMode = 0700;
constexpr mode_t kCrlMode = 0644;
// A mirror's certificates last this long at most (and never past the CA); `admin mirror remove`
// and `add` again renew them.
constexpr std::chrono::seconds kMirrorCertificateValidity = std::chrono::years(2);
constexpr std::string_view kCacheDirPrefix = "/var/cache/nginx/kaban-";
// What the nginx cache may grow to on disk; more than the courses of a city, and the operator
// sets it to what the mirror's disk allows.
constexpr const char* kCacheMaxSize = "100g";
// Connections nginx keeps open to the server for misses.
constexpr int kUpstreamKeepalive = 16;
// The TLS 1.2 ciphers of crypto/src/tls.cpp, so a mirror speaks as the server does.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
constexpr std::chrono::seconds kMinCrlValidity = std::chrono::hours(1);
constexpr std::chrono::seconds kMaxCrlValidity = std::chrono::days(365);
constexpr std::size_t kTempSuffixBytes = 8;

std::error_code last_os_error() {
  return {errno, std::generic_category()};
}

bool is_ip_address(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

bool is_any_address(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host == "[::]";
}

// nginx reads paths as quoted strings; these characters would end the quote, start a variable or
// a comment, or are not a path a person means.
bool nginx_safe_path(const fs::path& path) {
  const std::string text = path.string();
  return !text.empty() && std::none_of(text.begin(), text.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '"' || c == '\'' ||
           c == '\\' || c == '$' || c == ';' || c == '{' || c == '}' || c == '#';
  });
}

std::string quoted(const fs::path& path) {
  return "\"" + path.string() + "\"";
}

// "HOST:PORT" for nginx's upstream and listen directives (IPv6 in brackets).
std::string host_port(const protocol::MirrorAddress& a) {
  return (a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host) + ":" +
         std::to_string(a.port);
}

// nginx names (upstream, cache zone) are letters, digits and '_'.
std::string nginx_name(std::string_view mirror_name) {
  std::string name = "kaban_";
  for (const char c : mirror_name)
    name += c == '-' ? '_' : c;
  return name;
}

// The address the server last listened on (`serve` records it), or "".
Result<std::string> listen_address(SQLite::Database& db) {
  try {
    SQLite::Statement q(db, "SELECT value FROM server_meta WHERE key = ?");
    q.bind(1, kListenAddressKey);
    return q.executeStep() ? q.getColumn(0).getString() : std::string();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

// Where the mirror sends misses, and the name nginx checks the server's certificate against.
struct Origin {
  protocol::MirrorAddress address;
  std::string tls_name;
};

// nginx 1.22 checks an upstream certificate's DNS names only (X509_check_host), so an origin
// given as an IP address is checked against the server certificate's common name, which `init`
// makes its first name.
Result<Origin> origin_of(const std::string& text, const ServerIdentity& identity,
                         std::string& why) {
  const auto address = protocol::parse_mirror_url("https://" + text);
  if (!address || is_any_address(address->host)) {
    why = "the server address " + in_quotes(text) +
          " is not one a mirror can connect to; give --origin HOST:PORT, the address the "
          "mirror reaches this server at. Nothing was written or recorded";
    return make_error_code(errc::invalid_mirror);
  }
  Origin origin{*address, address->host};
  if (is_ip_address(address->host)) {
    auto certificate = crypto::Certificate::from_pem(identity.tls_chain_pem);
    const std::string name = certificate ? certificate.value().common_name() : std::string();
    if (name.empty() || is_ip_address(name)) {
      why =
          "nginx checks the server's certificate by a DNS name, and this server's certificate "
          "is named " +
          in_quotes(name) +
          "; give --origin with a DNS name the server's certificate holds (the names given to "
          "`kaban-server init --name`). Nothing was written or recorded";
      return make_error_code(errc::invalid_mirror);
    }
    origin.tls_name = name;
  }
  return origin;
}

struct MirrorMaterial {
  crypto::Certificate server;
  crypto::SecretKey server_key_pem;
  crypto::Certificate client;
  crypto::SecretKey client_key_pem;
};

// A key and a certificate for it, issued by the server's CA.
Result<std::pair<crypto::Certificate, crypto::SecretKey>> issue(const ServerIdentity& identity,
                                                                const std::string& common_name,
                                                                const crypto::IssueOptions& o) {
  auto key = crypto::EcPrivateKey::generate();
  KABAN_TRY(csr, crypto::CertificateRequest::create(key, common_name));
  KABAN_TRY(certificate,
            crypto::issue_certificate(identity.ca_certificate, identity.ca_key, csr, o));
  return std::pair{std::move(certificate), key.to_pem()};
}

Result<MirrorMaterial> make_material(const ServerIdentity& identity, const std::string& name,
                                     const std::vector<std::string>& hosts, std::string& why) {
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(
      identity.ca_certificate.not_after() - std::chrono::system_clock::now() -
      std::chrono::days(1));
  crypto::IssueOptions server_options;
  server_options.validity = std::min(kMirrorCertificateValidity, left);
  if (server_options.validity <= std::chrono::seconds::zero()) {
    why = "the server's CA expires within a day; it can issue no certificate for a mirror";
    return make_error_code(errc::invalid_mirror);
  }
  server_options.purpose = crypto::CertificatePurpose::server;
  for (const std::string& host : hosts)
    (is_ip_address(host) ? server_options.ip_addresses : server_options.dns_names).push_back(host);
  crypto::IssueOptions client_options;
  client_options.validity = server_options.validity;
  client_options.purpose = crypto::CertificatePurpose::client;
  const std::string common_name = "Kaban mirror " + name;
  auto server = issue(identity, common_name, server_options);
  if (!server) {
    why = "the server's CA refused a certificate for " + in_quotes(hosts.front()) + ": " +
          server.error().message();
    return server.error();
  }
  KABAN_TRY(client, issue(identity, common_name, client_options));
  return MirrorMaterial{std::move(server.value().first), std::move(server.value().second),
                        std::move(client.first), std::move(client.second)};
}

struct NginxSettings {
  std::string mirror_name;
  protocol::MirrorAddress listen;  ///< --host
  std::vector<std::string> server_names;
  Origin origin;
  fs::path files;      ///< where server.pem and the rest are on the mirror
  fs::path cache_dir;  ///< nginx's proxy_cache_path
};

std::string nginx_config(const NginxSettings& s) {
  const std::string zone = nginx_name(s.mirror_name);
  const std::string upstream = zone + "_origin";
  const auto file = [&](const char* name) { return quoted(s.files / name); };
  std::string listen = std::to_string(s.listen.port);
  if (is_ip_address(s.listen.host))
    listen = host_port(s.listen);
  std::string names;
  for (const std::string& n : s.server_names)
    names += " " + n;
  std::ostringstream c;
  c << "# Kaban content mirror \"" << s.mirror_name
    << "\", written by `kaban-server admin mirror add`.\n"
       "# Include this file in the http block of nginx.conf (on Debian, copy it to\n"
       "# /etc/nginx/conf.d/), make the cache folder, and reload nginx.\n"
       "#\n"
       "# Devices fetch course chunks here by SHA-256 with their device certificates; what the\n"
       "# cache lacks nginx fetches once from the Kaban server with this mirror's own client\n"
       "# certificate. A chunk never changes and devices check every one against its hash, so a\n"
       "# cached chunk is served for as long as it stays in the cache.\n\n"
    << "proxy_cache_path " << quoted(s.cache_dir) << " levels=2:2 keys_zone=" << zone
    << ":32m\n                 max_size=" << kCacheMaxSize
    << " inactive=365d use_temp_path=off;\n\n"
    << "upstream " << upstream << " {\n"
    << "  server " << host_port(s.origin.address) << ";\n"
    << "  keepalive " << kUpstreamKeepalive << ";\n"
    << "}\n\n"
    << "server {\n"
    << "  listen " << listen << " ssl;\n";
  if (!names.empty())
    c << "  server_name" << names << ";\n";
  c << "\n  ssl_certificate " << file(kServerCertificateFile) << ";\n"
    << "  ssl_certificate_key " << file(kServerKeyFile) << ";\n"
    << "  ssl_protocols TLSv1.2 TLSv1.3;\n"
    << "  ssl_ciphers " << kTls12Ciphers << ";\n"
    << "  ssl_prefer_server_ciphers on;\n\n"
    << "  # Devices enrolled with the Kaban server only: their certificates chain to its CA.\n"
    << "  ssl_client_certificate " << file(kMirrorCaFile) << ";\n"
    << "  ssl_verify_client on;\n"
    << "  ssl_verify_depth 1;\n"
    << "  # Revoked devices: write the list with `kaban-server admin mirror crl --out FILE`,\n"
    << "  # copy it here as " << kCrlFile << ", uncomment this line and reload nginx. Write it\n"
    << "  # again after every `admin device revoke` and before the list's next-update time.\n"
    << "  # ssl_crl " << file(kCrlFile) << ";\n\n"
    << "  location ~ \"^/v1/chunks/[0-9a-f]{64}$\" {\n"
    << "    limit_except GET { deny all; }\n\n"
    << "    proxy_pass https://" << upstream << ";\n"
    << "    proxy_http_version 1.1;\n"
    << "    proxy_set_header Connection \"\";\n"
    << "    proxy_ssl_certificate " << file(kClientCertificateFile) << ";\n"
    << "    proxy_ssl_certificate_key " << file(kClientKeyFile) << ";\n"
    << "    proxy_ssl_trusted_certificate " << file(kMirrorCaFile) << ";\n"
    << "    proxy_ssl_verify on;\n"
    << "    proxy_ssl_verify_depth 1;\n"
    << "    proxy_ssl_name " << s.origin.tls_name << ";\n"
    << "    proxy_ssl_server_name on;\n"
    << "    proxy_ssl_protocols TLSv1.2 TLSv1.3;\n"
    << "    proxy_ssl_session_reuse on;\n\n"
    << "    # The server's Cache-Control (public, max-age one year) says how long to keep a "
       "chunk;\n"
    << "    # errors are not cached. One request per chunk goes to the server however many\n"
    << "    # devices ask for it at once.\n"
    << "    proxy_cache " << zone << ";\n"
    << "    proxy_cache_key $uri;\n"
    << "    proxy_cache_lock on;\n"
    << "    proxy_cache_lock_timeout 60s;\n"
    << "    proxy_cache_lock_age 60s;\n"
    << "    add_header X-Cache-Status $upstream_cache_status always;\n"
    << "  }\n\n"
    << "  # Nothing else passes through a mirror: messages, check-ins and attachments go to the\n"
    << "  # server itself.\n"
    << "  location / {\n"
    << "    return 404;\n"
    << "  }\n"
    << "}\n";
  return c.str();
}

// Everything admin_mirror_add checked, before it writes or records anything.
struct MirrorPlan {
  protocol::MirrorAddress host;
  std::string url;
  Origin origin;
  fs::path out;
  fs::path cache_dir;
};

Result<MirrorPlan> plan_mirror(SQLite::Database& db, const ServerIdentity& identity,
                               const MirrorOptions& options, std::string& why) {
  const auto refuse = [&](std::string sentence) {
    why = std::move(sentence) + ". Nothing was written or recorded";
    return make_error_code(errc::invalid_mirror);
  };
  if (!is_valid_mirror_name(options.name))
    return refuse("a mirror name is 1 to " + std::to_string(kMaxMirrorName) +
                  " lower-case letters, digits and '-', starting with a letter or digit; " +
                  in_quotes(options.name) + " is not one");
  MirrorPlan plan;
  const auto host = protocol::parse_mirror_url("https://" + options.host);
  if (!host || is_any_address(host->host))
    return refuse(
        "--host takes the mirror's host name or address, and its port if not 443 "
        "(ward3.city.example, ward3.city.example:8443, 10.0.3.5:8443); " +
        in_quotes(options.host) + " is not one");
  plan.host = *host;
  auto url = options.url.empty() ? host : protocol::parse_mirror_url(options.url);
  if (!url)
    return refuse("--url takes https://HOST or https://HOST:PORT, with no path; " +
                  in_quotes(options.url) + " is not one");
  plan.url = url->url();
  std::string origin_text = options.origin;
  if (origin_text.empty()) {
    KABAN_TRY(recorded, explain(listen_address(db), why));
    origin_text = recorded;
  }
  if (origin_text.empty())
    return refuse(
        "no server address known yet: start `kaban-server serve` once, or give "
        "--origin HOST:PORT (the address the mirror reaches this server at)");
  KABAN_TRY(origin, origin_of(origin_text, identity, why));
  plan.origin = std::move(origin);
  if (options.out.empty())
    return refuse(
        "give --out DIR, the folder to write the mirror's certificates, keys and "
        "nginx.conf to");
  std::error_code ec;
  plan.out = fs::absolute(options.out, ec).lexically_normal();
  plan.cache_dir = options.cache_dir.empty()
                       ? fs::path(std::string(kCacheDirPrefix) + options.name)
                       : fs::absolute(options.cache_dir, ec).lexically_normal();
  if (ec || !nginx_safe_path(plan.out) || !nginx_safe_path(plan.cache_dir))
    return refuse(
        "the --out and --cache-dir folders become paths in nginx.conf, so they may "
        "not hold quotes, '\\', '$', ';', '#', braces or control characters");
  for (const char* name : kMirrorFiles) {
    if (fs::exists(fs::symlink_status(plan.out / name, ec))) {
      why = (plan.out / name).string() +
            " exists already; give --out a new or empty folder, so no key is overwritten. "
            "Nothing was written or recorded";
      return make_error_code(std::errc::file_exists);
    }
  }
  auto mirrors = Mirrors(db).list();
  KABAN_TRY(known, explain(std::move(mirrors), why));
  for (const Mirror& m : known) {
    if (m.name == options.name && !m.removed()) {
      why = "a mirror named " + in_quotes(options.name) +
            " is in use already (`admin mirror list`); remove it first or choose another name. "
            "Nothing was written or recorded";
      return make_error_code(errc::mirror_exists);
    }
  }
  if (std::count_if(known.begin(), known.end(), [](const Mirror& m) { return !m.removed(); }) >=
      static_cast<std::ptrdiff_t>(protocol::kMaxContentMirrors))
    return refuse("devices are told of at most " + std::to_string(protocol::kMaxContentMirrors) +
                  " mirrors; remove one first");
  return plan;
}

Result<void> write_mirror_files(const MirrorPlan& plan, const MirrorMaterial& m,
                                const std::string& ca_pem, const std::string& config,
                                std::string& why) {
  std::error_code ec;
  if (!fs::exists(plan.out, ec)) {
    fs::create_directories(plan.out.parent_path(), ec);
    if (::mkdir(plan.out.c_str(), kDirMode) != 0 && errno != EEXIST) {
      const auto e = last_os_error();
      why = "cannot make " + plan.out.string() + ": " + e.message();
      return e;
    }
  }
  const std::string server_chain = m.server.to_pem() + ca_pem;
  const std::string client_pem = m.client.to_pem();
  const std::pair<const char*, crypto::ByteView> files[] = {
      {kServerCertificateFile, crypto::as_bytes(server_chain)},
      {kServerKeyFile, m.server_key_pem.bytes()},
      {kClientCertificateFile, crypto::as_bytes(client_pem)},
      {kClientKeyFile, m.client_key_pem.bytes()},
      {kMirrorCaFile, crypto::as_bytes(ca_pem)},
      {kNginxConfigFile, crypto::as_bytes(config)},
  };
  for (const auto& [name, bytes] : files) {
    if (auto written = write_new_file(plan.out / name, bytes, kFileMode); !written) {
      why = "cannot write " + (plan.out / name).string() + ": " + written.error().message();
      return written.error();
    }
  }
  if (auto synced = sync_directory(plan.out); !synced) {
    why = "cannot sync " + plan.out.string() + ": " + synced.error().message();
    return synced.error();
  }
  return ok();
}

void remove_mirror_files(const fs::path& out) {
  std::error_code ec;
  for (const char* name : kMirrorFiles)
    fs::remove(out / name, ec);
}

}  // namespace

Result<void> admin_mirror_add(const fs::path& dir, const MirrorOptions& options, std::ostream& out,
                              std::string& why) {
  KABAN_TRY(identity, explain(load_identity(dir), why));
  KABAN_TRY(db, open(dir, why));
  KABAN_TRY(plan, plan_mirror(*db, identity, options, why));
  std::vector<std::string> hosts{plan.host.host};
  const auto url_host = protocol::parse_mirror_url(plan.url);
  if (url_host && url_host->host != plan.host.host)
    hosts.push_back(url_host->host);
  KABAN_TRY(material, make_material(identity, options.name, hosts, why));
  std::vector<std::string> dns_names;
  std::copy_if(hosts.begin(), hosts.end(), std::back_inserter(dns_names),
               [](const std::string& h) { return !is_ip_address(h); });
  const std::string config =
      nginx_config({options.name, plan.host, dns_names, plan.origin, plan.out, plan.cache_dir});
  const std::string fingerprint = crypto::to_hex(material.client.fingerprint());

  // The files first: a mirror is recorded only once its keys are on disk, and files whose record
  // failed are removed again.
  if (auto written = write_mirror_files(plan, material, identity.ca_pem(), config, why); !written) {
    remove_mirror_files(plan.out);
    why += ". Nothing was recorded";
    return written.error();
  }
  auto recorded = in_transaction(*db, [&]() -> Result<void> {
    KABAN_TRYV(Mirrors(*db).add(options.name, plan.url, fingerprint, now()));
    return record_admin_action(*db, "mirror_added", options.name,
                               {{"url", plan.url},
                                {"origin", host_port(plan.origin.address)},
                                {"client_certificate", fingerprint},
                                {"serial", material.client.serial_hex()}});
  });
  if (!recorded) {
    remove_mirror_files(plan.out);
    why = recorded.error() == errc::mirror_exists
              ? "a mirror named " + in_quotes(options.name) +
                    " was added meanwhile; nothing was written or recorded"
              : "the mirror could not be recorded (" + recorded.error().message() +
                    "); its files were removed again";
    return recorded.error();
  }
  out << "added mirror " << options.name << ": devices are told of " << plan.url
      << " at their next check-in and fetch course chunks there\n"
      << "wrote " << plan.out.string() << ": server.pem, server.key, client.pem, client.key, "
      << "ca.pem, nginx.conf (0600; the keys are secret)\n"
      << "next: copy that folder to the mirror machine as " << plan.out.string()
      << " (or change the paths in nginx.conf), include nginx.conf in nginx's http block, make "
      << plan.cache_dir.string()
      << " writable by nginx, and reload nginx. Until it serves, devices fall back to this "
         "server and say so\n";
  return ok();
}

Result<void> admin_mirror_list(const fs::path& dir, Listing how, std::ostream& out,
                               std::string& why) {
  KABAN_TRY(db, open(dir, why));
  KABAN_TRY(mirrors, explain(Mirrors(*db).list(), why));
  if (how == Listing::json) {
    json list = json::array();
    for (const Mirror& m : mirrors)
      list.push_back(
          {{"name", m.name},
           {"url", m.url},
           {"client_certificate", m.client_fingerprint},
           {"added_at", iso_time(m.created_at)},
           {"removed_at", m.removed_at ? json(iso_time(*m.removed_at)) : json(nullptr)}});
    out << list.dump(2) << '\n';
    return ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const Mirror& m : mirrors)
    rows.push_back({m.name, m.url, format_time(m.created_at),
                    m.removed_at ? "removed " + format_time(*m.removed_at) : "in use",
                    m.client_fingerprint.substr(0, detail::kShownIdDigits)});
  print_table(out, {"NAME", "URL", "ADDED", "STATUS", "CLIENT CERTIFICATE"}, rows);
  return ok();
}

Result<void> admin_mirror_remove(const fs::path& dir, std::string_view name, std::ostream& out,
                                 std::string& why) {
  KABAN_TRY(db, open(dir, why));
  auto done = in_transaction(*db, [&]() -> Result<std::optional<Mirror>> {
    KABAN_TRY(removed, Mirrors(*db).remove(name, now()));
    if (removed) {
      KABAN_TRYV(record_admin_action(
          *db, "mirror_removed", name,
          {{"url", removed->url}, {"client_certificate", removed->client_fingerprint}}));
    }
    return removed;
  });
  KABAN_TRY(removed, explain(std::move(done), why));
  if (!removed) {
    why = "no mirror in use is named " + in_quotes(name) +
          "; `admin mirror list` shows them. Nothing was changed";
    return make_error_code(errc::no_such_mirror);
  }
  out << "removed mirror " << removed->name
      << ": its certificate is refused from now on, so it can fetch nothing more, and devices "
         "are no longer told of "
      << removed->url
      << " from their next check-in. Chunks it cached stay on that machine until its cache "
         "folder is deleted\n";
  return ok();
}

Result<void> admin_mirror_crl(const fs::path& dir, const fs::path& file,
                              std::chrono::seconds valid_for, std::ostream& out, std::string& why) {
  if (valid_for < kMinCrlValidity || valid_for > kMaxCrlValidity) {
    why = "the list's lifetime must be between 1h and 365d";
    return make_error_code(errc::invalid_mirror);
  }
  KABAN_TRY(identity, explain(load_identity(dir), why));
  KABAN_TRY(db, open(dir, why));
  const UnixTime t = now();
  // A certificate past its end needs no entry: nginx refuses it anyway.
  std::vector<crypto::RevokedCertificate> revoked;
  try {
    SQLite::Statement query(*db,
                            "SELECT c.serial, d.revoked_at FROM device_certificates c "
                            "JOIN devices d ON d.id = c.device_id WHERE d.revoked_at IS NOT NULL "
                            "AND (c.not_after IS NULL OR c.not_after > ?) ORDER BY c.serial");
    query.bind(1, to_unix(t));
    while (query.executeStep())
      revoked.push_back({query.getColumn(0).getString(),
                         std::chrono::system_clock::time_point(
                             std::chrono::seconds(query.getColumn(1).getInt64()))});
  } catch (const SQLite::Exception&) {
    why = "the server database could not be read";
    return errc::storage_failed;
  }
  const auto this_update = std::chrono::system_clock::time_point(t.time_since_epoch());
  // Seconds since 1970 grow with every list written, as a CRL number must.
  auto crl = crypto::make_crl(identity.ca_certificate, identity.ca_key, revoked, this_update,
                              this_update + valid_for, static_cast<std::uint64_t>(to_unix(t)));
  if (!crl) {
    why = "the list could not be made: " + crl.error().message();
    return crl.error();
  }
  // Written beside its final name and renamed, so nginx never reads half a list.
  std::error_code ec;
  const fs::path target = fs::absolute(file, ec);
  const fs::path temporary =
      target.parent_path() / ("." + target.filename().string() + ".tmp-" +
                              crypto::to_hex(crypto::random_bytes(kTempSuffixBytes)));
  if (auto written = write_new_file(temporary, crypto::as_bytes(crl.value()), kCrlMode); !written) {
    fs::remove(temporary, ec);
    why = "cannot write " + temporary.string() + ": " + written.error().message();
    return written.error();
  }
  if (::rename(temporary.c_str(), target.c_str()) != 0) {
    const auto e = last_os_error();
    fs::remove(temporary, ec);
    why = "cannot write " + target.string() + ": " + e.message();
    return e;
  }
  (void)sync_directory(target.parent_path());
  out << "wrote " << target.string() << ": "
      << detail::count_of(revoked.size(), "revoked device certificate",
                          "revoked device certificates")
      << ", valid until " << format_time(t + valid_for) << ". Copy it to every mirror as "
      << kCrlFile
      << " and reload nginx (`nginx -s reload`) before then: past that time nginx refuses "
         "every device. Write it again after each `admin device revoke`\n";
  return ok();
}

}  // namespace kaban::server
