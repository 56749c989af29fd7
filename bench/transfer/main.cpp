// kaban-bench-transfer: how long a new device takes to download a whole course with `kaban
// sync`, against what a user would otherwise run: curl fetching the same files from nginx over
// the same kind of connection.
//
// The course (default 1 GiB, --size-mib): three large "videos" and many small "handouts" of
// random, incompressible bytes from a fixed seed (support/course_content.hpp), published once
// with `kaban-server admin course publish`, in lessons of at most 500 files.
//
// Kaban (`ours`), per round: `kaban-server serve` as a child on 127.0.0.1:0, a fresh device
// (`kaban enroll` with a code from `admin enroll-code`, KABAN_PIN in its environment), then,
// timed, `kaban sync` from start to exit: check-in, the message lane, the course feed, and
// every chunk over the agent's download connections (mutual TLS over loopback) into its
// encrypted store, committed. Afterwards, untimed: `kaban courses --json` must list the course
// ready with every byte, and `kaban open` of the largest file and of three small ones must be
// byte-identical to the sources. Reported beside the time: the agent's peak RSS (wait4) and
// CPU, the server's CPU during the sync (/proc/PID/stat before and after), its requests, and
// when the agent started downloading chunks.
//
// Baseline (`theirs`), per round: Debian's nginx as a child (`master_process off`: one
// process) serving the course folder over HTTPS with the Kaban server's own certificate and
// key, the same TLS versions and TLS 1.2 cipher list as crypto/src/tls.cpp (TLS 1.3 suites:
// OpenSSL's defaults on both), and mutual TLS against the Kaban device CA; one curl process
// (HTTP/1.1 keep-alive, --parallel with as many transfers at once as the agent's download
// connections) with a client certificate issued by that CA, fetching every file into plain
// files from a config file listing each URL and output path. Timed: curl from start to exit.
// Afterwards, untimed: every downloaded file must equal its source.
//
// Rounds alternate which side goes first; prints a table of medians, then one JSON line with
// ratio = ours / theirs.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <SQLiteCpp/Database.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "course_content.hpp"
#include "failure.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban_cli.hpp"
#include "kept_dir.hpp"
#include "loopback_port.hpp"
#include "subprocess.hpp"
#include "summary.hpp"
#include "temp_dir.hpp"

namespace {

namespace bench = kaban::bench;
namespace crypto = kaban::crypto;
namespace server = kaban::server;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keeps the fields in the order written
using bench::BenchError;

constexpr const char* kProgram = "kaban-bench-transfer";
constexpr const char* kBaselineName =
    "curl --parallel from nginx over HTTPS (same certificate, TLS settings, mutual TLS)";
constexpr const char* kCourseId = "bench-transfer";
constexpr const char* kLogin = "bench";
constexpr const char* kPin = "bench-pin-2468";
constexpr std::uint64_t kSeed = 20261123;
/// Transfers curl runs at once: the agent's download connections, so both sides use as many.
const int kParallel = kaban::agent::SyncOptions{}.parallel_downloads;
/// The TLS 1.2 cipher list of crypto/src/tls.cpp, given to nginx and curl alike.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
/// How long one download (either side) may take before the run fails.
constexpr std::chrono::minutes kTransferLimit{30};
/// Tries at starting nginx on a port that was free a moment ago.
constexpr int kPortAttempts = 5;
/// Small files `kaban open` compares after each sync, besides the largest file.
constexpr std::size_t kSmallFilesOpened = 3;

struct Options {
  int size_mib = 1024;
  int rounds = 3;
  bool keep = false;
};

/// `name` on the PATH, or in /usr/sbin or /sbin (where Debian puts nginx); throws BenchError
/// naming the package to install.
fs::path find_program(const std::string& name, const std::string& package) {
  std::vector<fs::path> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream list(path);
    for (std::string dir; std::getline(list, dir, ':');)
      if (!dir.empty())
        dirs.emplace_back(dir);
  }
  dirs.emplace_back("/usr/sbin");
  dirs.emplace_back("/sbin");
  for (const auto& dir : dirs) {
    if (::access((dir / name).c_str(), X_OK) == 0)
      return dir / name;
  }
  throw BenchError(name + " is not installed: install the Debian package " + package +
                   " (packaging/dev.sh deps does)");
}

// ---- Kaban's side -------------------------------------------------------------------------

struct KabanRound {
  double wall_s = 0;
  std::optional<double> downloads_started_s;  ///< when the agent said chunk downloads start
  double agent_cpu_s = 0;
  std::int64_t agent_peak_rss_bytes = 0;
  double server_cpu_s = 0;
  std::int64_t requests = 0;        ///< requests the server logged during the sync
  std::int64_t chunk_requests = 0;  ///< of those, GET /v1/chunks/…
};

/// What the serve log says about the requests from line `from` on: the count, the chunk
/// requests among them; throws BenchError on a failed request or connection.
std::pair<std::int64_t, std::int64_t> read_serve_log(const fs::path& log, std::size_t from) {
  std::ifstream in(log);
  std::int64_t requests = 0;
  std::int64_t chunks = 0;
  std::size_t n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    if (n < from || line.empty() || line.front() != '{')
      continue;
    const json entry = json::parse(line, nullptr, false);
    if (entry.is_discarded())
      continue;
    if (entry.contains("error") || entry.value("status", 200) >= 400) {
      throw BenchError("the Kaban server logged a failure during the sync: " + line);
    }
    if (!entry.contains("status"))
      continue;
    ++requests;
    if (entry.value("endpoint", "").find("/v1/chunks/") != std::string::npos)
      ++chunks;
  }
  return {requests, chunks};
}

std::size_t count_lines(const fs::path& file) {
  std::ifstream in(file);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);)
    ++n;
  return n;
}

/// One round of `ours`: a fresh server process and device, the timed sync, the checks.
KabanRound run_kaban_round(bench::KabanServer& kaban, const bench::KabanPrograms& programs,
                           const bench::CourseSpec& course, const fs::path& course_dir,
                           const fs::path& work, int round) {
  const std::string r = "round-" + std::to_string(round + 1);
  const fs::path round_dir = work / r;
  const fs::path logs = work / "logs";
  fs::create_directories(round_dir);
  std::cerr << r << ": kaban: a fresh device enrolls, then kaban sync downloads the course"
            << std::endl;
  kaban.start();
  bench::KabanDevice device(programs, round_dir / "device", work / "home", logs, kPin);
  device.enroll(kaban.enroll_line(kLogin, "", r + "-enroll-code"), r + "-enroll");

  const std::size_t log_lines = count_lines(kaban.serve_log());
  const double cpu_before = kaban.cpu_seconds();
  const bench::SyncRun sync = device.sync(r + "-sync");
  const double cpu_after = kaban.cpu_seconds();
  kaban.stop();

  KabanRound result;
  result.wall_s = sync.exit.wall_s;
  result.downloads_started_s = sync.downloads_started_s;
  result.agent_cpu_s = sync.exit.user_s + sync.exit.system_s;
  result.agent_peak_rss_bytes = sync.exit.peak_rss_bytes;
  result.server_cpu_s = cpu_after - cpu_before;
  std::tie(result.requests, result.chunk_requests) = read_serve_log(kaban.serve_log(), log_lines);

  // Untimed checks: the course is complete, and files read back from the store are the
  // sources, byte for byte: the largest, and the first, middle and last small ones.
  device.expect_course(course.id, 1, course.total_size(), r + "-courses");
  std::vector<const bench::CourseFile*> opened;
  opened.push_back(
      &*std::max_element(course.files.begin(), course.files.end(),
                         [](const auto& a, const auto& b) { return a.size < b.size; }));
  const std::size_t small = course.files.size() - bench::kLargeShares.size();
  for (std::size_t i = 0; i < kSmallFilesOpened && small > 0; ++i) {
    const std::size_t index = bench::kLargeShares.size() +
                              i * (small - 1) / std::max<std::size_t>(kSmallFilesOpened - 1, 1);
    opened.push_back(&course.files[index]);
  }
  for (const bench::CourseFile* f : opened) {
    const fs::path out = round_dir / "opened.bin";
    device.open(course.id + "/" + course.lesson_of(f->path), f->path, out, r + "-open");
    bench::expect_same_file(out, course_dir / f->path, "kaban open after the sync");
    fs::remove(out);
  }
  fs::remove_all(round_dir);
  return result;
}

// ---- The baseline: nginx and curl ---------------------------------------------------------

/// What nginx's access log says about one round.
struct AccessSummary {
  std::int64_t requests = 0;
  std::int64_t ok = 0;  ///< status 200
  std::int64_t connections = 0;
  std::uint64_t body_bytes = 0;
  std::string tls;  ///< the protocol and cipher most requests used
};

/// Debian's nginx serving a folder over HTTPS with the Kaban server's TLS identity and its
/// mutual TLS, as a child process; restarted on a new port for each round.
class Nginx {
 public:
  Nginx(fs::path program, fs::path prefix, fs::path root, fs::path kaban_data, fs::path home)
      : program_(std::move(program)),
        prefix_(std::move(prefix)),
        root_(std::move(root)),
        kaban_data_(std::move(kaban_data)),
        home_(std::move(home)) {
    for (const char* dir : {"temp/body", "temp/proxy", "temp/fastcgi", "temp/uwsgi", "temp/scgi"})
      fs::create_directories(prefix_ / dir);
  }

  /// Starts nginx on a free port and waits until it accepts connections; tries other ports if
  /// one was taken meanwhile. Throws BenchError with the end of its error log.
  void start() {
    fs::remove(access_log());
    for (int attempt = 1; attempt <= kPortAttempts; ++attempt) {
      port_ = bench::pick_loopback_port();
      write_config();
      bench::SpawnOptions options{program_,
                                  {"-p", prefix_.string() + "/", "-c", config().string(), "-e",
                                   error_log().string(), "-g", "daemon off;"},
                                  bench::child_environment(home_),
                                  prefix_ / "nginx.out",
                                  {},
                                  {}};
      process_.emplace(options, "nginx");
      if (bench::wait_until_listening(*process_, port_, bench::kStartLimit, error_log()))
        return;
      process_.reset();
    }
    throw BenchError("nginx did not start on any of " + std::to_string(kPortAttempts) +
                     " free ports; the end of " + error_log().string() + ":\n" +
                     bench::tail_of(error_log()));
  }

  std::uint16_t port() const noexcept { return port_; }
  double cpu_seconds() const { return process_->cpu_seconds(); }

  /// Stops nginx (SIGTERM: fast shutdown); throws BenchError if it had died or failed.
  void stop() {
    if (!process_)
      return;
    const bool was_running = process_->running();
    const bench::ProcessExit exit = process_->stop();
    process_.reset();
    if (!was_running || exit.status != 0) {
      throw BenchError("nginx " +
                       std::string(was_running ? "exited with status " : "had died, status ") +
                       std::to_string(exit.status) + "; the end of " + error_log().string() +
                       ":\n" + bench::tail_of(error_log()));
    }
  }

  /// The access log of the current (or last) start.
  AccessSummary read_access_log() const {
    AccessSummary s;
    std::set<std::string> connections;
    std::map<std::string, std::int64_t> tls;
    std::ifstream in(access_log());
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::string connection, protocol, cipher;
      int status = 0;
      std::uint64_t bytes = 0;
      if (!(fields >> connection >> status >> bytes >> protocol >> cipher))
        continue;
      ++s.requests;
      s.ok += status == 200 ? 1 : 0;
      s.body_bytes += bytes;
      connections.insert(connection);
      ++tls[protocol + " " + cipher];
    }
    s.connections = static_cast<std::int64_t>(connections.size());
    std::int64_t most = 0;
    for (const auto& [name, count] : tls) {
      if (count > most) {
        most = count;
        s.tls = name;
      }
    }
    return s;
  }

 private:
  fs::path config() const { return prefix_ / "nginx.conf"; }
  fs::path error_log() const { return prefix_ / "error.log"; }
  fs::path access_log() const { return prefix_ / "access.log"; }

  void write_config() const {
    const std::string p = prefix_.string();
    std::ofstream out(config(), std::ios::trunc);
    out << "# Written by " << kProgram << ": the course files over HTTPS with the Kaban server's\n"
        << "# certificate and key, its TLS versions and cipher list, and mutual TLS against its\n"
        << "# device CA. One process, so its CPU time is one /proc entry.\n"
        << "master_process off;\n"
        << "worker_processes 1;\n"
        << "pid " << p << "/nginx.pid;\n"
        << "error_log " << error_log().string() << " warn;\n"
        << "events { worker_connections 256; }\n"
        << "http {\n"
        << "  default_type application/octet-stream;\n"
        << "  log_format bench '$connection $status $body_bytes_sent $ssl_protocol $ssl_cipher';\n"
        << "  access_log " << access_log().string() << " bench;\n"
        << "  client_body_temp_path " << p << "/temp/body;\n"
        << "  proxy_temp_path " << p << "/temp/proxy;\n"
        << "  fastcgi_temp_path " << p << "/temp/fastcgi;\n"
        << "  uwsgi_temp_path " << p << "/temp/uwsgi;\n"
        << "  scgi_temp_path " << p << "/temp/scgi;\n"
        << "  keepalive_timeout 60s;\n"
        << "  keepalive_requests 100000;\n"
        << "  server {\n"
        << "    listen 127.0.0.1:" << port_ << " ssl;\n"
        << "    ssl_certificate " << (kaban_data_ / server::kTlsChainFile).string() << ";\n"
        << "    ssl_certificate_key " << (kaban_data_ / server::kTlsKeyFile).string() << ";\n"
        << "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        << "    ssl_ciphers " << kTls12Ciphers << ";\n"
        << "    ssl_client_certificate " << (kaban_data_ / server::kCaCertificateFile).string()
        << ";\n"
        << "    ssl_verify_client on;\n"
        << "    ssl_verify_depth 1;\n"
        << "    root " << root_.string() << ";\n"
        << "    location / { }\n"
        << "  }\n"
        << "}\n";
    if (!out)
      throw BenchError("cannot write " + config().string());
  }

  fs::path program_;
  fs::path prefix_;
  fs::path root_;
  fs::path kaban_data_;
  fs::path home_;
  std::uint16_t port_ = 0;
  std::optional<bench::Subprocess> process_;
};

/// A client certificate for curl from the Kaban server's device CA, made as a device enrolls
/// (a one-time code, a P-256 key and a CSR, Directory::enroll_device), written as PEM files
/// DIR/client.pem and DIR/client.key. Run while no server uses the data folder.
void issue_client_certificate(const fs::path& kaban_data, const fs::path& dir) {
  auto identity = server::load_identity(kaban_data);
  if (!identity)
    throw BenchError("cannot read the Kaban server's identity: " + identity.error().message());
  auto db = server::open_database(kaban_data);
  if (!db)
    throw BenchError("cannot open the Kaban server's database: " + db.error().message());
  server::Directory directory(*db.value());
  const auto now =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto code = directory.create_enroll_code(kLogin, std::chrono::hours(1), now);
  if (!code)
    throw BenchError("cannot make an enrollment code for curl: " + code.error().message());
  const crypto::EcPrivateKey key = crypto::EcPrivateKey::generate();
  auto csr = crypto::CertificateRequest::create(key, "curl-baseline");
  if (!csr)
    throw BenchError("cannot make a CSR for curl: " + csr.error().message());
  auto enrolled = directory.enroll_device(code.value(), csr.value().to_pem(),
                                          {"linux", "bench", "curl", "curl baseline", "0.1.0"}, now,
                                          identity.value());
  if (!enrolled)
    throw BenchError("cannot enroll curl's certificate: " + enrolled.error().message());
  fs::create_directories(dir);
  std::ofstream(dir / "client.pem", std::ios::trunc) << enrolled.value().certificate.to_pem();
  const crypto::SecretKey key_pem = key.to_pem();
  std::ofstream key_out(dir / "client.key", std::ios::trunc | std::ios::binary);
  key_out.write(reinterpret_cast<const char*>(key_pem.bytes().data()),
                static_cast<std::streamsize>(key_pem.bytes().size()));
  fs::permissions(dir / "client.key", fs::perms::owner_read | fs::perms::owner_write);
  if (!key_out)
    throw BenchError("cannot write curl's client key in " + dir.string());
}

struct CurlRound {
  double wall_s = 0;
  double curl_cpu_s = 0;
  std::int64_t curl_peak_rss_bytes = 0;
  double nginx_cpu_s = 0;
  AccessSummary access;
};

/// One round of `theirs`: nginx started, curl timed fetching every file, the files checked.
CurlRound run_curl_round(Nginx& nginx, const fs::path& curl, const bench::CourseSpec& course,
                         const fs::path& course_dir, const fs::path& kaban_data,
                         const fs::path& work, int round) {
  const std::string r = "round-" + std::to_string(round + 1);
  const fs::path out_dir = work / r / "curl-out";
  const fs::path config = work / r / "curl.conf";
  fs::create_directories(out_dir);
  std::cerr << r << ": baseline: curl fetches every file from nginx" << std::endl;
  nginx.start();
  {
    std::ofstream list(config, std::ios::trunc);
    for (const auto& f : course.files) {
      list << "url = \"https://127.0.0.1:" << nginx.port() << "/" << f.path << "\"\n"
           << "output = \"" << (out_dir / f.path).string() << "\"\n";
    }
    if (!list)
      throw BenchError("cannot write " + config.string());
  }
  const fs::path client = work / "curl-client";
  std::vector<std::string> args = {"-q",  // first: no ~/.curlrc
                                   "--config",
                                   config.string(),
                                   "--parallel",
                                   "--parallel-max",
                                   std::to_string(kParallel),
                                   "--http1.1",
                                   "--tlsv1.2",
                                   "--ciphers",
                                   kTls12Ciphers,
                                   "--cacert",
                                   (kaban_data / server::kCaCertificateFile).string(),
                                   "--cert",
                                   (client / "client.pem").string(),
                                   "--key",
                                   (client / "client.key").string(),
                                   "--fail",
                                   "--silent",
                                   "--show-error",
                                   "--create-dirs"};
  const double cpu_before = nginx.cpu_seconds();
  const bench::CommandResult fetched =
      bench::run_command(curl, std::move(args), bench::child_environment(work / "home"),
                         work / "logs", r + "-curl", kTransferLimit);
  const double cpu_after = nginx.cpu_seconds();
  nginx.stop();

  CurlRound result;
  result.wall_s = fetched.exit.wall_s;
  result.curl_cpu_s = fetched.exit.user_s + fetched.exit.system_s;
  result.curl_peak_rss_bytes = fetched.exit.peak_rss_bytes;
  result.nginx_cpu_s = cpu_after - cpu_before;
  result.access = nginx.read_access_log();
  const auto files = static_cast<std::int64_t>(course.files.size());
  if (result.access.requests != files || result.access.ok != files ||
      result.access.body_bytes != course.total_size()) {
    throw BenchError("nginx logged " + std::to_string(result.access.requests) + " requests (" +
                     std::to_string(result.access.ok) + " answered 200, " +
                     std::to_string(result.access.body_bytes) +
                     " body bytes), not one 200 per "
                     "file (" +
                     std::to_string(files) + ", " + std::to_string(course.total_size()) +
                     " bytes)");
  }
  // Untimed: every file curl wrote equals its source.
  for (const auto& f : course.files)
    bench::expect_same_file(out_dir / f.path, course_dir / f.path, "curl's download");
  fs::remove_all(work / r);
  return result;
}

// ---- The run ------------------------------------------------------------------------------

std::string mib(std::uint64_t bytes) {
  return bench::fixed(static_cast<double>(bytes) / static_cast<double>(bench::kMiB), 1) + " MiB";
}

std::string list_of(const std::vector<double>& v, int decimals) {
  std::string s;
  for (double x : v)
    s += (s.empty() ? "" : ", ") + bench::fixed(x, decimals);
  return s;
}

int run(int argc, char** argv) {
  Options options;
  CLI::App app{
      "Kaban transfer benchmark: a new device downloads a whole course with `kaban sync` (mutual\n"
      "TLS into its encrypted store), against curl fetching the same files from nginx over\n"
      "HTTPS with the same certificate, TLS settings and mutual TLS. Prints a table of medians\n"
      "and, as the last line, one JSON object (ratio = Kaban's time / the baseline's)."};
  app.add_option("--size-mib", options.size_mib,
                 "Course size in MiB: three large files (15%, 20%, 25%) and many of 16 KiB-1 MiB")
      ->check(CLI::Range(4, 65536))
      ->capture_default_str();
  app.add_option("--rounds", options.rounds,
                 "Rounds, each a fresh device and fresh server processes; medians are reported")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_flag("--keep", options.keep,
               "Leave the work folder (course, server data, logs) for inspection");
  app.footer(
      "Setup (not timed): the course written from a fixed seed and published once; per round a\n"
      "fresh `kaban-server serve` and device enrollment, and a fresh nginx. Timed: `kaban sync`\n"
      "and curl, each from start to exit. Checked after each (not timed): the device lists the\n"
      "course complete and `kaban open` gives back the sources; curl's files equal the sources.\n"
      "Needs Debian's nginx and curl. Work folder in $TMPDIR, removed at the end (--keep).\n");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  const bench::KabanPrograms programs = bench::KabanPrograms::next_to_self();
  const fs::path nginx_program = find_program("nginx", "nginx");
  const fs::path curl_program = find_program("curl", "curl");

  const bench::TempDir temp("transfer");
  const bench::KeptDir kept(temp.path(), options.keep);
  const fs::path work = temp.path();
  const fs::path course_dir = work / "course";
  const fs::path logs = work / "logs";
  const fs::path home = work / "home";
  fs::create_directories(logs);
  fs::create_directories(home);
  std::cerr << "setup: work folder " << work.string() << std::endl;

  const std::uint64_t size = static_cast<std::uint64_t>(options.size_mib) * bench::kMiB;
  const bench::CourseSpec course =
      bench::plan_course(kCourseId, "Transfer benchmark course", size, kSeed);
  bench::write_course(course, course_dir, kSeed);

  bench::KabanServer kaban(programs, work / "server", home, logs, "server");
  kaban.init();
  std::cerr << "publishing the course (" << mib(size) << ", " << course.files.size() << " files)..."
            << std::endl;
  const auto publish_start = std::chrono::steady_clock::now();
  kaban.publish(course_dir, "publish");
  const double publish_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - publish_start).count();
  std::cerr << "published in " << bench::fixed(publish_s, 1) << " s" << std::endl;
  kaban.add_user(kLogin, "Benchmark user");
  issue_client_certificate(kaban.data_dir(), work / "curl-client");
  Nginx nginx(nginx_program, work / "nginx", course_dir, kaban.data_dir(), home);

  std::vector<KabanRound> ours;
  std::vector<CurlRound> theirs;
  for (int round = 0; round < options.rounds; ++round) {
    // Alternate which side goes first, so neither always runs on a cooler (or warmer) machine.
    for (int side = 0; side < 2; ++side) {
      if ((side == 0) == (round % 2 == 0))
        ours.push_back(run_kaban_round(kaban, programs, course, course_dir, work, round));
      else
        theirs.push_back(
            run_curl_round(nginx, curl_program, course, course_dir, kaban.data_dir(), work, round));
    }
    const KabanRound& o = ours.back();
    const CurlRound& t = theirs.back();
    std::cerr << "round " << round + 1 << "/" << options.rounds << ": kaban sync "
              << bench::fixed(o.wall_s, 2) << " s (server CPU " << bench::fixed(o.server_cpu_s, 2)
              << " s) | curl " << bench::fixed(t.wall_s, 2) << " s (nginx CPU "
              << bench::fixed(t.nginx_cpu_s, 2) << " s)" << std::endl;
  }

  auto med = [](const auto& v, auto f) {
    std::vector<double> x;
    for (const auto& r : v)
      x.push_back(static_cast<double>(f(r)));
    return bench::median(std::move(x));
  };
  std::vector<double> ours_s, theirs_s;
  for (const auto& r : ours)
    ours_s.push_back(r.wall_s);
  for (const auto& r : theirs)
    theirs_s.push_back(r.wall_s);
  const double ours_med = bench::median(ours_s);
  const double theirs_med = bench::median(theirs_s);
  const double mb = static_cast<double>(size) / 1e6;
  const double agent_rss = med(ours, [](const auto& r) { return r.agent_peak_rss_bytes; });
  const double agent_cpu = med(ours, [](const auto& r) { return r.agent_cpu_s; });
  const double server_cpu = med(ours, [](const auto& r) { return r.server_cpu_s; });
  const double requests = med(ours, [](const auto& r) { return r.requests; });
  const double chunk_requests = med(ours, [](const auto& r) { return r.chunk_requests; });
  std::vector<double> started;
  for (const auto& r : ours) {
    if (r.downloads_started_s)
      started.push_back(*r.downloads_started_s);
  }
  const double curl_rss = med(theirs, [](const auto& r) { return r.curl_peak_rss_bytes; });
  const double curl_cpu = med(theirs, [](const auto& r) { return r.curl_cpu_s; });
  const double nginx_cpu = med(theirs, [](const auto& r) { return r.nginx_cpu_s; });
  const double nginx_connections = med(theirs, [](const auto& r) { return r.access.connections; });
  const std::string tls = theirs.front().access.tls;

  // ---- Human-readable table ----
  std::cout << "transfer bench: one course of " << mib(size) << " (" << course.files.size()
            << " files: " << bench::kLargeShares.size() << " large, "
            << course.files.size() - bench::kLargeShares.size() << " of 16 KiB-1 MiB), "
            << options.rounds << " round(s), medians; " << kParallel
            << " download connections on both sides\n"
            << "  kaban   : kaban sync of a fresh device, mutual TLS over loopback, into its "
               "encrypted store\n"
            << "  baseline: " << kBaselineName << ", nginx " << tls << "\n";
  const std::size_t w = 26;
  std::cout << bench::pad_right("", w) << bench::pad("seconds", 9) << bench::pad("MB/s", 8)
            << bench::pad("client CPU s", 14) << bench::pad("peak RSS MiB", 14)
            << bench::pad("server CPU s", 14) << bench::pad("requests", 10) << "\n";
  std::cout << bench::pad_right("kaban sync (ours)", w) << bench::pad(bench::fixed(ours_med, 2), 9)
            << bench::pad(bench::fixed(mb / ours_med, 0), 8)
            << bench::pad(bench::fixed(agent_cpu, 2), 14)
            << bench::pad(bench::fixed(agent_rss / bench::kMiB, 0), 14)
            << bench::pad(bench::fixed(server_cpu, 2), 14)
            << bench::pad(bench::fixed(requests, 0), 10) << "\n";
  std::cout << bench::pad_right("curl from nginx (theirs)", w)
            << bench::pad(bench::fixed(theirs_med, 2), 9)
            << bench::pad(bench::fixed(mb / theirs_med, 0), 8)
            << bench::pad(bench::fixed(curl_cpu, 2), 14)
            << bench::pad(bench::fixed(curl_rss / bench::kMiB, 0), 14)
            << bench::pad(bench::fixed(nginx_cpu, 2), 14)
            << bench::pad(std::to_string(course.files.size()), 10) << "\n";
  std::cout << bench::pad_right("ratio ours/theirs", w)
            << bench::pad(bench::fixed(ours_med / theirs_med, 2) + "x", 9) << "\n";
  std::cout << "rounds (s): kaban " << list_of(ours_s, 2) << " | curl " << list_of(theirs_s, 2)
            << "\n";
  if (!started.empty()) {
    std::cout << "kaban: chunk downloads began " << bench::fixed(bench::median(started), 2)
              << " s into the sync (check-in, messages, course feed, manifest); "
              << bench::fixed(chunk_requests, 0) << " chunk requests\n";
  }
  std::cout << "checked each round: the device lists the course complete, kaban open gives back "
               "the sources; curl's "
            << course.files.size() << " files equal the sources\n";

  // ---- The one JSON line ----
  const json out = {
      {"bench", "transfer"},
      {"ours", ours_med},
      {"baseline", kBaselineName},
      {"theirs", theirs_med},
      {"unit", "s"},
      {"ratio", ours_med / theirs_med},
      {"size_bytes", size},
      {"files", course.files.size()},
      {"rounds", options.rounds},
      {"ours_rounds_s", ours_s},
      {"theirs_rounds_s", theirs_s},
      {"ours_mb_per_s", mb / ours_med},
      {"theirs_mb_per_s", mb / theirs_med},
      {"agent_peak_rss_bytes", static_cast<std::int64_t>(agent_rss)},
      {"agent_cpu_s", agent_cpu},
      {"server_cpu_s", server_cpu},
      {"curl_peak_rss_bytes", static_cast<std::int64_t>(curl_rss)},
      {"curl_cpu_s", curl_cpu},
      {"nginx_cpu_s", nginx_cpu},
      {"parallel_connections", kParallel},
      {"ours_requests", static_cast<std::int64_t>(requests)},
      {"ours_chunk_requests", static_cast<std::int64_t>(chunk_requests)},
      {"ours_downloads_started_s", started.empty() ? json(nullptr) : json(bench::median(started))},
      {"theirs_requests", course.files.size()},
      {"theirs_connections", static_cast<std::int64_t>(nginx_connections)},
      {"theirs_tls", tls},
      {"publish_s", publish_s},
  };
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return bench::run_main(kProgram, run, argc, argv);
}
