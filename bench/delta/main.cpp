// kaban-bench-delta: the bytes on the wire when a device that holds version 1 of a course
// updates to version 2 with `kaban sync`, against rsync bringing a copy of version 1's files up
// to date from an rsync daemon. Both go through the same byte-counting TCP proxy on 127.0.0.1,
// which counts every byte each way (TLS records and HTTP for Kaban, the rsync protocol for
// rsync; TCP payload, not TCP/IP headers). Neither compresses: Kaban does not, and rsync runs
// without -z.
//
// The course (default 256 MiB, --size-mib): three large "videos" of 15%, 20% and 25% of it and
// many small "handouts" of 16 KiB-1 MiB, random incompressible bytes from a fixed seed
// (support/course_content.hpp). Version 2 is version 1 revised the way real course revisions
// are, touching about 1% of the bytes. With E = 1% of the course size, and positions as
// fractions of each file's version-1 length:
//   video/part-1.mp4  a new clip spliced in: 0.35 E new bytes inserted at 40%
//   video/part-2.mp4  a scene cut: 0.15 E bytes deleted at 60%; a re-graded segment: 0.10 E
//                     bytes overwritten in place at 20%
//   video/part-3.mp4  three slides replaced: at 20%, 50% and 80%, 0.05 E bytes each replaced
//                     by 0.06 E new bytes
//   6 small files     edited (picked by the seed): 3 with 4 KiB overwritten in place at the
//                     middle, 3 with 4 KiB inserted at a third
//   1 small file      removed (picked by the seed)
//   1 small file      added: handouts/new/page-0001.pdf, 0.30 E bytes, in a lesson of its own
// and course.json changes with them. New bytes come from a seed of their own, so none repeats a
// byte of version 1 (which both sides would otherwise find and skip). Files not edited keep
// their bytes and their modification time (a fixed date), so rsync's quick check skips them
// as it would in a mirror kept with rsync -a; edited files get the time they were written.
//
// Each round starts from scratch on both sides, rounds alternating which side goes first:
//   Kaban (`ours`): a new server data folder, version 1 published; `kaban-server serve` on
//   127.0.0.1:0; a device enrolled with `admin enroll-code --server 127.0.0.1:PROXYPORT`, so all
//   its traffic goes through the proxy; `kaban sync` fetches version 1 (counted apart, as
//   full_sync_bytes); version 2 is published. Counted: every byte of `kaban sync` from version 1
//   to version 2. Checked afterwards: `kaban courses` lists version 2 complete, and `kaban open`
//   of every edited large file, an edited small file and the added file gives version 2's bytes.
//   rsync (`theirs`): a copy of version 1's folder with its times; an rsync daemon (a child:
//   --daemon --no-detach, its own config, one read-only module at version 2's folder) on
//   127.0.0.1; counted: `rsync -a --delete --stats rsync://127.0.0.1:PROXYPORT/course/ COPY/`.
//   Checked afterwards: the copy equals version 2, file for file.
// Prints a table of medians, then one JSON line: unit bytes, ratio = ours / theirs. The time
// each took is reported too, for information.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "counting_proxy.hpp"
#include "course_content.hpp"
#include "failure.hpp"
#include "kaban_cli.hpp"
#include "kept_dir.hpp"
#include "loopback_port.hpp"
#include "subprocess.hpp"
#include "summary.hpp"
#include "temp_dir.hpp"

namespace {

namespace bench = kaban::bench;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keeps the fields in the order written
using bench::BenchError;

constexpr const char* kProgram = "kaban-bench-delta";
constexpr const char* kBaselineName = "rsync -a --delete from an rsync daemon (no compression)";
constexpr const char* kCourseId = "bench-delta";
constexpr const char* kLogin = "bench";
constexpr const char* kPin = "bench-pin-2468";
constexpr const char* kModule = "course";
constexpr std::uint64_t kSeed = 20261124;
/// The seeds of the revision's choices and of its new bytes: far from kSeed + 1 + i, the seed of
/// version 1's file i, so no new byte repeats a byte of version 1.
constexpr std::uint64_t kEditChoiceSeed = kSeed + (1ULL << 40);
constexpr std::uint64_t kEditBytesSeed = kSeed + (1ULL << 41);
/// Bytes of each small-file edit.
constexpr std::uint64_t kSmallEdit = 4 * bench::kKiB;
/// Small files edited in place and by insertion, each.
constexpr int kSmallEditsEach = 3;
/// The added file.
constexpr const char* kAddedPath = "handouts/new/page-0001.pdf";
/// How long the proxy may take to see every connection closed after a program exits.
constexpr std::chrono::seconds kIdleLimit{10};
/// Tries at starting the rsync daemon on a port that was free a moment ago.
constexpr int kPortAttempts = 5;

struct Options {
  int size_mib = 256;
  int rounds = 3;
  bool keep = false;
};

// ---- The revision -------------------------------------------------------------------------

/// One change to a file of version 1: at `at` (a version-1 offset), `remove` bytes go and
/// `insert` new bytes take their place. An overwrite removes and inserts as many.
struct Edit {
  std::uint64_t at = 0;
  std::uint64_t remove = 0;
  std::uint64_t insert = 0;
};

/// Version 2: which files change how, which goes, which comes.
struct Revision {
  std::map<std::string, std::vector<Edit>> edits;  ///< by path
  std::string removed;
  std::uint64_t removed_size = 0;
  std::string added;
  std::uint64_t added_size = 0;
  std::string small_edited;  ///< one edited small file, for the device check

  /// Bytes version 2 holds that version 1 did not: inserted and overwriting bytes, the added
  /// file.
  std::uint64_t new_bytes() const {
    std::uint64_t n = added_size;
    for (const auto& [path, list] : edits)
      for (const Edit& e : list)
        n += e.insert;
    return n;
  }
  /// Bytes of version 1 gone from version 2: removed and overwritten bytes, the removed file.
  std::uint64_t deleted_bytes() const {
    std::uint64_t n = removed_size;
    for (const auto& [path, list] : edits)
      for (const Edit& e : list)
        n += e.remove;
    return n;
  }
};

std::uint64_t share(std::uint64_t e, double fraction) {
  return std::max<std::uint64_t>(1, static_cast<std::uint64_t>(static_cast<double>(e) * fraction));
}

std::uint64_t at_fraction(std::uint64_t size, double fraction) {
  return static_cast<std::uint64_t>(static_cast<double>(size) * fraction);
}

/// The revision recipe of the header comment, for the course `v1`.
Revision plan_revision(const bench::CourseSpec& v1) {
  const std::uint64_t e = v1.total_size() / 100;
  const std::uint64_t part1 = v1.files[0].size;
  const std::uint64_t part2 = v1.files[1].size;
  const std::uint64_t part3 = v1.files[2].size;
  Revision r;
  r.edits[v1.files[0].path] = {{at_fraction(part1, 0.40), 0, share(e, 0.35)}};
  r.edits[v1.files[1].path] = {{at_fraction(part2, 0.20), share(e, 0.10), share(e, 0.10)},
                               {at_fraction(part2, 0.60), share(e, 0.15), 0}};
  for (double where : {0.20, 0.50, 0.80})
    r.edits[v1.files[2].path].push_back(
        {at_fraction(part3, where), share(e, 0.05), share(e, 0.06)});

  // Seven distinct small files: six edited, one removed.
  const std::size_t first_small = bench::kLargeShares.size();
  const std::size_t small = v1.files.size() - first_small;
  bench::FastRandom random(kEditChoiceSeed);
  std::vector<std::size_t> picked;
  while (picked.size() < 2 * kSmallEditsEach + 1) {
    const std::size_t i = first_small + static_cast<std::size_t>(random.below(small));
    if (std::find(picked.begin(), picked.end(), i) == picked.end())
      picked.push_back(i);
  }
  for (int k = 0; k < 2 * kSmallEditsEach; ++k) {
    const bench::CourseFile& f = v1.files[picked[static_cast<std::size_t>(k)]];
    if (k < kSmallEditsEach)
      r.edits[f.path] = {{f.size / 2 - kSmallEdit / 2, kSmallEdit, kSmallEdit}};
    else
      r.edits[f.path] = {{f.size / 3, 0, kSmallEdit}};
  }
  r.small_edited = v1.files[picked[0]].path;
  r.removed = v1.files[picked.back()].path;
  r.removed_size = v1.files[picked.back()].size;
  r.added = kAddedPath;
  r.added_size = share(e, 0.30);
  return r;
}

/// Version 2's course.json view: version 1 without the removed file, with the added one in a
/// lesson of its own, and the edited files' new sizes.
bench::CourseSpec revised_spec(const bench::CourseSpec& v1, const Revision& r) {
  bench::CourseSpec v2 = v1;
  std::erase_if(v2.files, [&](const bench::CourseFile& f) { return f.path == r.removed; });
  for (auto& lesson : v2.lessons)
    std::erase(lesson.files, r.removed);
  for (auto& f : v2.files) {
    if (const auto it = r.edits.find(f.path); it != r.edits.end()) {
      for (const Edit& e : it->second)
        f.size = f.size - e.remove + e.insert;
    }
  }
  v2.files.push_back({r.added, r.added_size});
  v2.lessons.push_back({"handouts-new", "Handouts, new", "document", {r.added}});
  return v2;
}

/// Reads a whole file. Throws BenchError.
std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in.eof() && !in)
    throw BenchError("cannot read " + path.string());
  return bytes;
}

/// Writes version 2's folder: a copy of version 1 (times kept), the edits applied (edited
/// files get the time of writing), the removed file gone, the added one written, course.json
/// rewritten.
void write_revision(const fs::path& v1_dir, const fs::path& v2_dir, const bench::CourseSpec& v2,
                    const Revision& r) {
  fs::copy(v1_dir, v2_dir, fs::copy_options::recursive);
  for (const auto& entry : fs::recursive_directory_iterator(v2_dir)) {
    if (entry.is_regular_file())
      bench::set_source_mtime(entry.path());
  }
  bench::FastRandom random(kEditBytesSeed);
  for (const auto& [path, edits] : r.edits) {
    bench::StopSignals::throw_if_stopped();
    std::string bytes = read_file(v2_dir / path);
    std::vector<Edit> descending = edits;  // later offsets first, so earlier ones stay valid
    std::sort(descending.begin(), descending.end(),
              [](const Edit& a, const Edit& b) { return a.at > b.at; });
    for (const Edit& e : descending) {
      std::string fresh(e.insert, '\0');
      random.fill(fresh.data(), fresh.size());
      bytes.replace(e.at, e.remove, fresh);
    }
    std::ofstream out(v2_dir / path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out)
      throw BenchError("cannot write " + (v2_dir / path).string());
  }
  fs::remove(v2_dir / r.removed);
  {
    fs::create_directories((v2_dir / r.added).parent_path());
    std::string bytes(r.added_size, '\0');
    random.fill(bytes.data(), bytes.size());
    std::ofstream out(v2_dir / r.added, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out)
      throw BenchError("cannot write " + (v2_dir / r.added).string());
  }
  bench::write_course_json(v2, v2_dir);
  for (const auto& f : v2.files) {
    if (fs::file_size(v2_dir / f.path) != f.size)
      throw BenchError("version 2's " + f.path + " has " +
                       std::to_string(fs::file_size(v2_dir / f.path)) + " bytes, not the " +
                       std::to_string(f.size) + " planned");
  }
}

// ---- Kaban's side -------------------------------------------------------------------------

struct KabanRound {
  bench::CountingProxy::Counts update;  ///< the sync from version 1 to version 2
  bench::CountingProxy::Counts full;    ///< the first sync, of version 1
  double wall_s = 0;
};

/// Waits until the proxy has seen every connection close, then returns its counts.
bench::CountingProxy::Counts settled_counts(const bench::CountingProxy& proxy,
                                            const std::string& after) {
  if (!proxy.wait_idle(kIdleLimit)) {
    throw BenchError("connections through the counting proxy stayed open " +
                     std::to_string(kIdleLimit.count()) + " s after " + after);
  }
  return proxy.counts();
}

KabanRound run_kaban_round(bench::CountingProxy& proxy, const bench::KabanPrograms& programs,
                           const fs::path& v1_dir, const fs::path& v2_dir,
                           const bench::CourseSpec& v2, const Revision& revision,
                           const fs::path& work, int round) {
  const std::string r = "round-" + std::to_string(round + 1);
  const fs::path round_dir = work / r;
  const fs::path logs = work / "logs";
  fs::create_directories(round_dir);
  std::cerr << r << ": kaban: a new server publishes version 1, a device syncs it" << std::endl;
  bench::KabanServer kaban(programs, round_dir / "server", work / "home", logs, r + "-server");
  kaban.init();
  kaban.add_user(kLogin, "Benchmark user");
  kaban.publish(v1_dir, r + "-publish-v1");
  kaban.start();
  proxy.set_target(kaban.port());
  const std::string via_proxy = "127.0.0.1:" + std::to_string(proxy.port());
  bench::KabanDevice device(programs, round_dir / "device", work / "home", logs, kPin);
  device.enroll(kaban.enroll_line(kLogin, via_proxy, r + "-enroll-code"), r + "-enroll");

  KabanRound result;
  settled_counts(proxy, "the enrollment");
  proxy.reset();
  device.sync(r + "-sync-v1");
  result.full = settled_counts(proxy, "the sync of version 1");
  kaban.publish(v2_dir, r + "-publish-v2");
  std::cerr << r << ": kaban: version 2 published; kaban sync updates the device" << std::endl;

  proxy.reset();
  const bench::SyncRun update = device.sync(r + "-sync-v2");
  result.update = settled_counts(proxy, "the sync of version 2");
  result.wall_s = update.exit.wall_s;
  kaban.stop();

  // Untimed checks: version 2 complete, and the changed files read back as version 2's.
  device.expect_course(kCourseId, 2, v2.total_size(), r + "-courses");
  std::vector<std::string> checked;
  for (std::size_t i = 0; i < bench::kLargeShares.size(); ++i)
    checked.push_back(v2.files[i].path);
  checked.push_back(revision.small_edited);
  checked.push_back(revision.added);
  for (const std::string& path : checked) {
    const fs::path out = round_dir / "opened.bin";
    device.open(std::string(kCourseId) + "/" + v2.lesson_of(path), path, out, r + "-open");
    bench::expect_same_file(out, v2_dir / path, "kaban open after the update");
    fs::remove(out);
  }
  fs::remove_all(round_dir);
  return result;
}

// ---- The baseline: rsync ------------------------------------------------------------------

/// What `rsync --stats` printed.
struct RsyncStats {
  std::uint64_t bytes_sent = 0;      ///< "Total bytes sent" (the client's side)
  std::uint64_t bytes_received = 0;  ///< "Total bytes received"
  std::uint64_t literal = 0;         ///< "Literal data": file bytes sent as such
  std::uint64_t matched = 0;         ///< "Matched data": file bytes rebuilt from the copy
  std::uint64_t files_transferred = 0;
};

/// The number after "NAME:" in rsync's --stats text (digits with thousands separators).
std::optional<std::uint64_t> stat_of(const std::string& text, const std::string& name) {
  const auto at = text.find(name + ":");
  if (at == std::string::npos)
    return std::nullopt;
  std::string digits;
  for (std::size_t i = at + name.size() + 1; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9')
      digits += c;
    else if (c == ',' || (c == ' ' && digits.empty()))
      continue;
    else
      break;
  }
  if (digits.empty())
    return std::nullopt;
  return std::stoull(digits);
}

RsyncStats parse_stats(const std::string& text) {
  RsyncStats s;
  const std::pair<const char*, std::uint64_t*> fields[] = {
      {"Total bytes sent", &s.bytes_sent},
      {"Total bytes received", &s.bytes_received},
      {"Literal data", &s.literal},
      {"Matched data", &s.matched},
      {"Number of regular files transferred", &s.files_transferred}};
  for (const auto& [name, value] : fields) {
    const auto v = stat_of(text, name);
    if (!v)
      throw BenchError(std::string("rsync --stats printed no \"") + name +
                       "\": " + text.substr(0, 500));
    *value = *v;
  }
  return s;
}

/// An rsync daemon serving one read-only module, as a child, on a free port of 127.0.0.1.
class RsyncDaemon {
 public:
  /// Starts it with a config of its own in `dir`, serving `module_dir` as module kModule.
  /// Throws BenchError (quoting its log) if it does not listen.
  RsyncDaemon(const fs::path& rsync, const fs::path& dir, const fs::path& module_dir,
              const fs::path& home) {
    fs::create_directories(dir);
    const fs::path config = dir / "rsyncd.conf";
    const fs::path log = dir / "rsyncd.log";
    {
      std::ofstream out(config, std::ios::trunc);
      out << "# Written by " << kProgram << ": one read-only module, no chroot, as this user.\n"
          << "use chroot = no\n"
          << "uid = " << ::getuid() << "\n"
          << "gid = " << ::getgid() << "\n"
          << "log file = " << log.string() << "\n"
          << "pid file = " << (dir / "rsyncd.pid").string() << "\n"
          << "[" << kModule << "]\n"
          << "  path = " << module_dir.string() << "\n"
          << "  read only = yes\n";
      if (!out)
        throw BenchError("cannot write " + config.string());
    }
    for (int attempt = 1; attempt <= kPortAttempts; ++attempt) {
      port_ = bench::pick_loopback_port();
      fs::remove(dir / "rsyncd.pid");
      bench::SpawnOptions options{rsync,
                                  {"--daemon", "--no-detach", "--config=" + config.string(),
                                   "--address=127.0.0.1", "--port=" + std::to_string(port_)},
                                  bench::child_environment(home),
                                  dir / "rsyncd.out",
                                  {},
                                  {}};
      process_.emplace(options, "rsync --daemon");
      if (bench::wait_until_listening(*process_, port_, bench::kStartLimit, log))
        return;
      process_.reset();
    }
    throw BenchError("the rsync daemon did not start on any of " + std::to_string(kPortAttempts) +
                     " free ports; the end of " + log.string() + ":\n" + bench::tail_of(log));
  }

  std::uint16_t port() const noexcept { return port_; }

 private:
  std::uint16_t port_ = 0;
  std::optional<bench::Subprocess> process_;
};

struct RsyncRound {
  bench::CountingProxy::Counts counts;
  RsyncStats stats;
  double wall_s = 0;
};

RsyncRound run_rsync_round(bench::CountingProxy& proxy, const fs::path& rsync,
                           const fs::path& v1_dir, const fs::path& v2_dir,
                           const bench::CourseSpec& v2, const Revision& revision,
                           const fs::path& work, int round) {
  const std::string r = "round-" + std::to_string(round + 1);
  const fs::path copy = work / r / "rsync-copy";
  std::cerr << r << ": baseline: rsync updates a copy of version 1" << std::endl;
  // The copy a user would hold after mirroring version 1 with rsync -a: same bytes, same times.
  fs::create_directories(copy.parent_path());
  fs::copy(v1_dir, copy, fs::copy_options::recursive);
  for (const auto& entry : fs::recursive_directory_iterator(copy)) {
    if (entry.is_regular_file())
      bench::set_source_mtime(entry.path());
  }
  const RsyncDaemon daemon(rsync, work / r / "rsyncd", v2_dir, work / "home");
  proxy.set_target(daemon.port());
  settled_counts(proxy, "starting the rsync daemon");
  proxy.reset();
  const std::string url = "rsync://127.0.0.1:" + std::to_string(proxy.port()) + "/" + kModule + "/";
  const bench::CommandResult fetched =
      bench::run_command(rsync, {"-a", "--delete", "--stats", url, copy.string() + "/"},
                         bench::child_environment(work / "home"), work / "logs", r + "-rsync");
  RsyncRound result;
  result.counts = settled_counts(proxy, "rsync");
  result.stats = parse_stats(fetched.out);
  result.wall_s = fetched.exit.wall_s;

  // Untimed: the copy is version 2, file for file, and nothing else.
  for (const auto& f : v2.files)
    bench::expect_same_file(copy / f.path, v2_dir / f.path, "rsync's copy");
  bench::expect_same_file(copy / "course.json", v2_dir / "course.json", "rsync's copy");
  if (fs::exists(copy / revision.removed))
    throw BenchError("rsync --delete left the removed file " + revision.removed);
  fs::remove_all(work / r);
  return result;
}

// ---- The run ------------------------------------------------------------------------------

fs::path find_rsync() {
  for (const char* candidate : {"/usr/bin/rsync", "/bin/rsync", "/usr/local/bin/rsync"}) {
    if (::access(candidate, X_OK) == 0)
      return candidate;
  }
  throw BenchError(
      "rsync is not installed: install the Debian package rsync (packaging/dev.sh "
      "deps does)");
}

std::string mib(std::uint64_t bytes) {
  return bench::fixed(static_cast<double>(bytes) / static_cast<double>(bench::kMiB), 2) + " MiB";
}

std::string percent(double fraction) {
  return bench::fixed(fraction * 100, 2) + "%";
}

int run(int argc, char** argv) {
  Options options;
  CLI::App app{
      "Kaban delta benchmark: the bytes on the wire (both ways, TLS included) when a device\n"
      "holding version 1 of a course updates to a revised version 2 with `kaban sync`, against\n"
      "rsync updating a copy of version 1 from an rsync daemon; both through one byte-counting\n"
      "proxy on 127.0.0.1, neither compressing. Prints a table of medians and, as the last\n"
      "line, one JSON object (unit bytes; ratio = Kaban's bytes / rsync's)."};
  app.add_option("--size-mib", options.size_mib,
                 "Course size in MiB: three large files (15%, 20%, 25%) and many of 16 KiB-1 MiB; "
                 "the revision touches about 1% of it")
      ->check(CLI::Range(16, 65536))
      ->capture_default_str();
  app.add_option("--rounds", options.rounds,
                 "Rounds, each with a new server, device and rsync copy; medians are reported")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_flag("--keep", options.keep,
               "Leave the work folder (versions 1 and 2, logs) for inspection");
  app.footer(
      "Setup (not counted): versions 1 and 2 written from fixed seeds (the edit recipe is in\n"
      "docs/benchmarks.md); per round a new server with version 1 published, a device enrolled\n"
      "through the proxy and synced to version 1, version 2 published; a copy of version 1 and\n"
      "an rsync daemon serving version 2. Counted: `kaban sync` to version 2, and rsync.\n"
      "Needs Debian's rsync. Work folder in $TMPDIR, removed at the end (--keep).\n");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  const bench::KabanPrograms programs = bench::KabanPrograms::next_to_self();
  const fs::path rsync = find_rsync();
  const bench::TempDir temp("delta");
  const bench::KeptDir kept(temp.path(), options.keep);
  const fs::path work = temp.path();
  const fs::path v1_dir = work / "v1";
  const fs::path v2_dir = work / "v2";
  fs::create_directories(work / "logs");
  fs::create_directories(work / "home");
  std::cerr << "setup: work folder " << work.string() << std::endl;

  const std::uint64_t size = static_cast<std::uint64_t>(options.size_mib) * bench::kMiB;
  const bench::CourseSpec v1 = bench::plan_course(kCourseId, "Delta benchmark course", size, kSeed);
  bench::write_course(v1, v1_dir, kSeed);
  bench::set_source_mtime(v1_dir / "course.json");
  const Revision revision = plan_revision(v1);
  const bench::CourseSpec v2 = revised_spec(v1, revision);
  std::cerr << "writing version 2 (" << mib(revision.new_bytes()) << " new, "
            << mib(revision.deleted_bytes()) << " deleted)..." << std::endl;
  write_revision(v1_dir, v2_dir, v2, revision);

  bench::CountingProxy proxy;
  std::vector<KabanRound> ours;
  std::vector<RsyncRound> theirs;
  for (int round = 0; round < options.rounds; ++round) {
    // Alternate which side goes first, so neither always runs on a cooler (or warmer) machine.
    for (int side = 0; side < 2; ++side) {
      if ((side == 0) == (round % 2 == 0))
        ours.push_back(run_kaban_round(proxy, programs, v1_dir, v2_dir, v2, revision, work, round));
      else
        theirs.push_back(run_rsync_round(proxy, rsync, v1_dir, v2_dir, v2, revision, work, round));
    }
    const KabanRound& o = ours.back();
    const RsyncRound& t = theirs.back();
    std::cerr << "round " << round + 1 << "/" << options.rounds << ": kaban sync "
              << o.update.total() << " bytes in " << bench::fixed(o.wall_s, 2) << " s | rsync "
              << t.counts.total() << " bytes in " << bench::fixed(t.wall_s, 2) << " s" << std::endl;
  }

  auto med = [](const auto& v, auto f) {
    std::vector<double> x;
    for (const auto& r : v)
      x.push_back(static_cast<double>(f(r)));
    return bench::median(std::move(x));
  };
  std::vector<std::uint64_t> ours_rounds, theirs_rounds;
  for (const auto& r : ours)
    ours_rounds.push_back(r.update.total());
  for (const auto& r : theirs)
    theirs_rounds.push_back(r.counts.total());
  const double ours_bytes = med(ours, [](const auto& r) { return r.update.total(); });
  const double theirs_bytes = med(theirs, [](const auto& r) { return r.counts.total(); });
  const double ours_up = med(ours, [](const auto& r) { return r.update.to_target; });
  const double ours_down = med(ours, [](const auto& r) { return r.update.from_target; });
  const double ours_connections = med(ours, [](const auto& r) { return r.update.connections; });
  const double full_bytes = med(ours, [](const auto& r) { return r.full.total(); });
  const double ours_s = med(ours, [](const auto& r) { return r.wall_s; });
  const double theirs_up = med(theirs, [](const auto& r) { return r.counts.to_target; });
  const double theirs_down = med(theirs, [](const auto& r) { return r.counts.from_target; });
  const double theirs_s = med(theirs, [](const auto& r) { return r.wall_s; });
  const RsyncStats& stats = theirs.front().stats;
  const auto course_bytes = static_cast<double>(v2.total_size());
  const std::uint64_t edited = revision.new_bytes();

  // ---- Human-readable table ----
  std::cout << "delta bench: course of " << mib(v1.total_size()) << " (" << v1.files.size()
            << " files), version 2 with " << mib(edited) << " new bytes ("
            << percent(static_cast<double>(edited) / course_bytes) << "), "
            << mib(revision.deleted_bytes()) << " deleted, " << revision.edits.size()
            << " files edited, 1 added, 1 removed; " << options.rounds
            << " round(s), medians; bytes through one counting proxy, both directions\n"
            << "  kaban   : kaban sync from version 1 to 2 (mutual TLS, every request)\n"
            << "  baseline: " << kBaselineName << "\n";
  const std::size_t w = 24;
  std::cout << bench::pad_right("", w) << bench::pad("bytes", 12) << bench::pad("up", 10)
            << bench::pad("down", 12) << bench::pad("of course", 11) << bench::pad("/ new", 8)
            << bench::pad("seconds", 9) << "\n";
  auto row = [&](const std::string& name, double total, double up, double down, double s) {
    std::cout << bench::pad_right(name, w) << bench::pad(bench::fixed(total, 0), 12)
              << bench::pad(bench::fixed(up, 0), 10) << bench::pad(bench::fixed(down, 0), 12)
              << bench::pad(percent(total / course_bytes), 11)
              << bench::pad(bench::fixed(total / static_cast<double>(edited), 2) + "x", 8)
              << bench::pad(bench::fixed(s, 2), 9) << "\n";
  };
  row("kaban sync (ours)", ours_bytes, ours_up, ours_down, ours_s);
  row("rsync (theirs)", theirs_bytes, theirs_up, theirs_down, theirs_s);
  std::cout << bench::pad_right("ratio ours/theirs", w)
            << bench::pad(bench::fixed(ours_bytes / theirs_bytes, 2) + "x", 12) << "\n";
  std::cout << "rsync --stats: sent " << stats.bytes_sent << ", received " << stats.bytes_received
            << ", literal data " << stats.literal << ", matched data " << stats.matched << ", "
            << stats.files_transferred << " files transferred\n"
            << "kaban: the first sync (version 1, " << mib(v1.total_size()) << ") took "
            << bench::fixed(full_bytes, 0) << " bytes; the update used "
            << bench::fixed(ours_connections, 0) << " connections\n"
            << "checked each round: the device lists version 2 complete and kaban open gives its "
               "bytes; rsync's copy equals version 2\n";

  // ---- The one JSON line ----
  const json out = {
      {"bench", "delta"},
      {"ours", static_cast<std::int64_t>(ours_bytes)},
      {"baseline", kBaselineName},
      {"theirs", static_cast<std::int64_t>(theirs_bytes)},
      {"unit", "bytes"},
      {"ratio", ours_bytes / theirs_bytes},
      {"course_bytes", v2.total_size()},
      {"v1_bytes", v1.total_size()},
      {"edited_bytes", edited},
      {"deleted_bytes", revision.deleted_bytes()},
      {"files_edited", revision.edits.size()},
      {"ours_fraction", ours_bytes / course_bytes},
      {"theirs_fraction", theirs_bytes / course_bytes},
      {"ours_up_bytes", static_cast<std::int64_t>(ours_up)},
      {"ours_down_bytes", static_cast<std::int64_t>(ours_down)},
      {"theirs_up_bytes", static_cast<std::int64_t>(theirs_up)},
      {"theirs_down_bytes", static_cast<std::int64_t>(theirs_down)},
      {"rsync_stats_sent", stats.bytes_sent},
      {"rsync_stats_received", stats.bytes_received},
      {"rsync_literal_bytes", stats.literal},
      {"rsync_matched_bytes", stats.matched},
      {"ours_full_sync_bytes", static_cast<std::int64_t>(full_bytes)},
      {"ours_connections", static_cast<std::int64_t>(ours_connections)},
      {"ours_s", ours_s},
      {"theirs_s", theirs_s},
      {"rounds", options.rounds},
      {"ours_rounds_bytes", ours_rounds},
      {"theirs_rounds_bytes", theirs_rounds},
  };
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return bench::run_main(kProgram, run, argc, argv);
}
