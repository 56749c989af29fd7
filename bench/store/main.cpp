// kaban-bench-store: what Kaban's encrypted store (the kaban VFS, AES-256-GCM per page) costs
// against plain SQLite 3.40, with Debian's SQLCipher 3.4.1 alongside for reference. The same
// workload (workload.hpp) runs on all three in interleaved rounds, each on a fresh database;
// prints a table of medians, then one JSON line with the ratios (engine time / plain SQLite time).
//
// Plain SQLite and Kaban run in this process; SQLCipher runs in kaban-bench-store-sqlcipher,
// which must sit next to this executable.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kaban/crypto/secret_key.hpp"
#include "kaban/crypto/vfs.hpp"
#include "temp_dir.hpp"
#include "workload.hpp"

namespace {

namespace bench = kaban::bench;
namespace crypto = kaban::crypto;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keeps the fields in the order written

constexpr const char* kSqlCipherProgram = "kaban-bench-store-sqlcipher";

enum class Engine { kPlain, kSqlCipher, kKaban };
constexpr std::array kEngines = {Engine::kPlain, Engine::kSqlCipher, Engine::kKaban};

const char* name_of(Engine e) {
  switch (e) {
    case Engine::kPlain:
      return "plain";
    case Engine::kSqlCipher:
      return "sqlcipher";
    case Engine::kKaban:
      return "kaban";
  }
  return "?";
}

// ---- The three engines --------------------------------------------------------------------

bench::Connection open_sqlite(const std::string& filename, int flags, const char* vfs) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(filename.c_str(), &raw, flags, vfs);
  bench::Connection db(raw);
  bench::check(rc, raw, "open");
  return db;
}

bench::RunResult run_plain(const bench::Config& config, const bench::Dataset& data,
                           const fs::path& db_path, const std::string& os_vfs) {
  // Named explicitly: the OS VFS captured before the kaban VFS was registered.
  const bench::Opener open = [&os_vfs](const fs::path& path) {
    return open_sqlite(path.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, os_vfs.c_str());
  };
  bench::RunResult r = bench::run_workload(config, data, open, db_path);
  r.version = "SQLite " + r.version;
  return r;
}

bench::RunResult run_kaban(const bench::Config& config, const bench::Dataset& data,
                           const fs::path& db_path) {
  const crypto::SecretKey data_key = crypto::SecretKey::random(crypto::kDataKeySize);
  const bench::Opener open = [&data_key](const fs::path& path) {
    std::string uri = crypto::store_uri(path, data_key);
    auto db =
        open_sqlite(uri, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr);
    std::fill(uri.begin(), uri.end(), '\0');  // it holds the key
    return db;
  };
  crypto::clear_vfs_error();
  try {
    bench::RunResult r = bench::run_workload(config, data, open, db_path);
    r.version = "SQLite " + r.version + " + kaban VFS";
    return r;
  } catch (const bench::BenchError& e) {
    const std::string vfs_error = crypto::vfs_last_error();
    throw bench::BenchError(std::string(e.what()) +
                            (vfs_error.empty() ? "" : " [kaban VFS: " + vfs_error + "]"));
  }
}

/// Runs kaban-bench-store-sqlcipher for one round and reads its JSON line.
bench::RunResult run_sqlcipher(const fs::path& program, const bench::Config& config,
                               const fs::path& db_path) {
  std::vector<std::string> args = {program.string(),
                                   "--db",
                                   db_path.string(),
                                   "--rows",
                                   std::to_string(config.rows),
                                   "--lookups",
                                   std::to_string(config.lookups)};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  std::array<int, 2> pipe_fds{};
  if (pipe2(pipe_fds.data(), O_CLOEXEC) != 0) {
    throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  pid_t pid = 0;
  const int spawn_rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawn_rc != 0) {
    close(pipe_fds[0]);
    throw std::system_error(spawn_rc, std::generic_category(), "spawn " + program.string());
  }

  std::string out;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = read(pipe_fds[0], buf.data(), buf.size());
    if (n > 0) {
      out.append(buf.data(), static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw bench::BenchError(std::string(kSqlCipherProgram) + " failed (" +
                            (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                               : "signal " + std::to_string(WTERMSIG(status))) +
                            "); its message is above");
  }

  // The result is the last line; anything before it is ignored.
  while (!out.empty() && out.back() == '\n') {
    out.pop_back();
  }
  const std::size_t last_line = out.rfind('\n');
  const json j = json::parse(out.substr(last_line == std::string::npos ? 0 : last_line + 1));
  namespace f = bench::field;
  bench::RunResult r;
  r.insert_s = j.at(f::kInsert).get<double>();
  r.lookup_s = j.at(f::kLookup).get<double>();
  r.lookup_cached_s = j.at(f::kLookupCached).get<double>();
  r.scan_s = j.at(f::kScan).get<double>();
  r.lookup_misses = j.at(f::kLookupMisses).get<std::int64_t>();
  r.lookup_cached_misses = j.at(f::kLookupCachedMisses).get<std::int64_t>();
  r.scan_misses = j.at(f::kScanMisses).get<std::int64_t>();
  r.lookup_checksum = j.at(f::kLookupChecksum).get<std::int64_t>();
  r.scan_sum = j.at(f::kScanSum).get<std::int64_t>();
  r.db_bytes = j.at(f::kDbBytes).get<std::int64_t>();
  r.canary_found = j.at(f::kCanaryFound).get<bool>();
  r.journal_seen = j.at(f::kJournalSeen).get<bool>();
  r.leak_detail = j.at(f::kLeakDetail).get<std::string>();
  r.settings = j.at(f::kSettings).get<std::string>();
  r.version = j.at(f::kVersion).get<std::string>();
  return r;
}

// ---- Summaries ----------------------------------------------------------------------------

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

struct Phase {
  const char* key;    // JSON field stem: insert, lookup, lookup_cached, scan
  const char* label;  // table row
  double bench::RunResult::*seconds;
};

constexpr std::array<Phase, 4> kPhases = {{
    {"insert", "insert (1 txn, indexed)", &bench::RunResult::insert_s},
    {"lookup", "lookup uncached", &bench::RunResult::lookup_s},
    {"lookup_cached", "lookup cached", &bench::RunResult::lookup_cached_s},
    {"scan", "full scan", &bench::RunResult::scan_s},
}};

std::string fixed(double v, int decimals) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%.*f", decimals, v);
  return buf.data();
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width)
    s.insert(0, width - s.size(), ' ');
  return s;
}

int run(int argc, char** argv) {
  bench::Config config;
  int rounds = 5;
  CLI::App app{
      "Kaban store benchmark: the kaban VFS vs plain SQLite 3.40, with SQLCipher 3.4.1 alongside.\n"
      "Prints medians per phase and, as the last line, one JSON object of ratios."};
  app.add_option("--rounds", rounds, "Interleaved rounds; medians are reported")
      ->check(CLI::Range(3, 1000))
      ->capture_default_str();
  app.add_option("--rows", config.rows, "Rows of ~500 bytes per database")
      ->check(CLI::Range(std::int64_t{1000}, std::int64_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--lookups", config.lookups, "Point lookups per lookup phase")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100'000'000}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  const fs::path sqlcipher_program =
      fs::read_symlink("/proc/self/exe").parent_path() / kSqlCipherProgram;
  if (access(sqlcipher_program.c_str(), X_OK) != 0) {
    std::cerr << "kaban-bench-store: " << sqlcipher_program
              << " is missing; build the target kaban-bench-store-sqlcipher (it must sit next to "
                 "kaban-bench-store)\n";
    return 1;
  }

  // The plain runs name the OS VFS explicitly, captured before the kaban VFS exists.
  const std::string os_vfs = sqlite3_vfs_find(nullptr)->zName;
  if (auto registered = crypto::register_vfs(); !registered) {
    std::cerr << "kaban-bench-store: registering the kaban VFS failed: "
              << registered.error().message() << "; nothing was run\n";
    return 1;
  }

  const bench::Dataset data = bench::Dataset::make(config);
  std::map<Engine, std::vector<bench::RunResult>> results;
  for (int round = 0; round < rounds; ++round) {
    std::string progress = "round " + std::to_string(round + 1) + "/" + std::to_string(rounds);
    for (std::size_t i = 0; i < kEngines.size(); ++i) {
      // Rotate the order each round so no engine always runs first (or right after another).
      const Engine engine = kEngines[(i + static_cast<std::size_t>(round)) % kEngines.size()];
      const bench::TempDir dir("store");
      const fs::path db_path = dir.path() / bench::kDbFileName;
      bench::RunResult r;
      switch (engine) {
        case Engine::kPlain:
          r = run_plain(config, data, db_path, os_vfs);
          break;
        case Engine::kSqlCipher:
          r = run_sqlcipher(sqlcipher_program, config, db_path);
          break;
        case Engine::kKaban:
          r = run_kaban(config, data, db_path);
          break;
      }
      progress += std::string(i == 0 ? ": " : " | ") + name_of(engine) + " insert " +
                  fixed(r.insert_s, 3) + " lookup " + fixed(r.lookup_s, 3) + " cached " +
                  fixed(r.lookup_cached_s, 3) + " scan " + fixed(r.scan_s, 3);
      results[engine].push_back(std::move(r));
    }
    std::cerr << progress << std::endl;
  }

  // Every engine must have returned the same data, or its times mean nothing.
  const bench::RunResult& reference = results[Engine::kPlain].front();
  for (const Engine engine : kEngines) {
    for (const auto& r : results[engine]) {
      if (r.lookup_checksum != reference.lookup_checksum || r.scan_sum != reference.scan_sum) {
        throw bench::BenchError(std::string(name_of(engine)) +
                                " returned different data from plain SQLite (lookup checksum " +
                                std::to_string(r.lookup_checksum) + " vs " +
                                std::to_string(reference.lookup_checksum) + ", scan sum " +
                                std::to_string(r.scan_sum) + " vs " +
                                std::to_string(reference.scan_sum) + ")");
      }
    }
  }

  std::map<Engine, std::map<std::string, double>> medians;
  for (const Engine engine : kEngines) {
    auto metric = [&](auto member) {
      std::vector<double> v;
      for (const auto& r : results[engine])
        v.push_back(static_cast<double>(r.*member));
      return median(std::move(v));
    };
    for (const Phase& phase : kPhases)
      medians[engine][phase.key] = metric(phase.seconds);
    const auto lookups = static_cast<double>(config.lookups);
    medians[engine]["lookup_misses"] = metric(&bench::RunResult::lookup_misses) / lookups;
    medians[engine]["lookup_cached_misses"] =
        metric(&bench::RunResult::lookup_cached_misses) / lookups;
    medians[engine]["db_mb"] = metric(&bench::RunResult::db_bytes) / 1e6;
  }
  auto ratio = [&](Engine engine, const char* key) {
    return medians[engine][key] / medians[Engine::kPlain][key];
  };
  auto any_canary = [&](Engine engine) {
    return std::any_of(results[engine].begin(), results[engine].end(),
                       [](const bench::RunResult& r) { return r.canary_found; });
  };
  auto journal_always_seen = [&](Engine engine) {
    return std::all_of(results[engine].begin(), results[engine].end(),
                       [](const bench::RunResult& r) { return r.journal_seen; });
  };

  // ---- Human-readable table ----
  std::cout << "store bench: " << config.rows << " rows of ~500 B + index on k, " << config.lookups
            << " lookups per phase (by indexed k), cached phase on " << data.cached_count
            << " keys, " << rounds << " interleaved rounds, medians\n";
  for (const Engine engine : kEngines) {
    const auto& r = results[engine].front();
    std::cout << "  " << pad(name_of(engine), 9) << ": " << r.version << " [" << r.settings
              << "]\n";
  }
  std::cout << pad("phase", 26) << pad("plain s", 11) << pad("sqlcipher s", 13)
            << pad("kaban s", 11) << pad("sqlcipher/plain", 17) << pad("kaban/plain", 13) << "\n";
  for (const Phase& phase : kPhases) {
    std::cout << pad(phase.label, 26) << pad(fixed(medians[Engine::kPlain][phase.key], 4), 11)
              << pad(fixed(medians[Engine::kSqlCipher][phase.key], 4), 13)
              << pad(fixed(medians[Engine::kKaban][phase.key], 4), 11)
              << pad(fixed(ratio(Engine::kSqlCipher, phase.key), 2) + "x", 17)
              << pad(fixed(ratio(Engine::kKaban, phase.key), 2) + "x", 13) << "\n";
  }
  std::cout << pad("SQLite cache misses/lookup", 26);
  for (const Engine engine : kEngines) {
    std::cout << "  " << name_of(engine) << " " << fixed(medians[engine]["lookup_misses"], 2)
              << " uncached, " << fixed(medians[engine]["lookup_cached_misses"], 3) << " cached";
  }
  std::cout << "\n" << pad("database size MB", 26);
  for (const Engine engine : kEngines) {
    std::cout << "  " << name_of(engine) << " " << fixed(medians[engine]["db_mb"], 1);
  }
  std::cout << "\n";

  bool ok = true;
  if (medians[Engine::kPlain]["db_mb"] * 1e6 < 4.0 * bench::kPageSize * bench::kCachePages) {
    std::cout << "warning: the database is not much larger than SQLite's " << bench::kCachePages
              << "-page cache, so the uncached phase is mostly cached; use --rows 100000 or more\n";
  }
  for (const Engine engine : kEngines) {
    if (medians[engine]["lookup_cached_misses"] > 0.01) {
      std::cout
          << "warning: " << name_of(engine)
          << "'s cached phase missed SQLite's page cache; its cached time is not comparable\n";
    }
    if (!journal_always_seen(engine)) {
      std::cout
          << "warning: " << name_of(engine)
          << " left no rollback journal during the leak check, so the journal went unchecked\n";
    }
  }
  std::cout << "leak check (canary row and \"SQLite format 3\" in every file, mid-transaction "
               "with the journal and after close):\n";
  for (const Engine engine : kEngines) {
    const bool found = any_canary(engine);
    std::string detail;
    for (const auto& r : results[engine]) {
      if (!r.leak_detail.empty()) {
        detail = r.leak_detail;
        break;
      }
    }
    std::cout << "  " << pad(name_of(engine), 9) << ": " << (found ? "FOUND" : "not found");
    if (engine == Engine::kPlain) {
      std::cout << " (control: plain SQLite must show both)";
      if (!found) {
        std::cout << " -- the check itself is broken";
        ok = false;
      }
    } else if (found) {
      std::cout << " -- PLAINTEXT ON DISK";
      ok = false;
    }
    if (!detail.empty())
      std::cout << " [" << detail << "]";
    std::cout << "\n";
  }

  // ---- The one JSON line ----
  json out = {
      {"bench", "store"},
      {"ours", medians[Engine::kKaban]["lookup"]},
      {"baseline", "sqlite 3.40 plain"},
      {"theirs", medians[Engine::kPlain]["lookup"]},
      {"unit", "s"},
      {"ratio", ratio(Engine::kKaban, "lookup")},
  };
  for (const Phase& phase : kPhases) {
    out[std::string(phase.key) + "_ratio"] = ratio(Engine::kKaban, phase.key);
  }
  for (const Phase& phase : kPhases) {
    out[std::string("sqlcipher_") + phase.key + "_ratio"] = ratio(Engine::kSqlCipher, phase.key);
  }
  out["canary_found"] = any_canary(Engine::kKaban);
  out["rounds"] = rounds;
  out["rows"] = config.rows;
  out["lookups"] = config.lookups;
  out["cached_keys"] = data.cached_count;
  for (const Engine engine : kEngines) {
    for (const Phase& phase : kPhases) {
      out[std::string(name_of(engine)) + "_" + phase.key + "_s"] = medians[engine][phase.key];
    }
    out[std::string(name_of(engine)) + "_db_mb"] = medians[engine]["db_mb"];
    out[std::string(name_of(engine)) + "_version"] = results[engine].front().version;
  }
  out["sqlcipher_canary_found"] = any_canary(Engine::kSqlCipher);
  out["plain_canary_found"] = any_canary(Engine::kPlain);
  std::cout << out.dump() << std::endl;
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "kaban-bench-store: " << e.what()
              << "\n(temporary databases were removed; no results were printed)\n";
    return 1;
  }
}
