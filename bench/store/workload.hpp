// The store benchmark's workload, shared by kaban-bench-store (plain SQLite and the Kaban VFS, in
// process) and kaban-bench-store-sqlcipher (SQLCipher, which exports the same symbols as SQLite
// and so runs in a process of its own). Plain sqlite3 C API only, and only calls SQLite 3.15
// already had: each program compiles this against its own sqlite3.h (SQLCipher 3.4.1 is SQLite
// 3.15.2). Failures throw BenchError; each program's main catches it.
#pragma once

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace kaban::bench {

// ---- The workload's shape -------------------------------------------------------------------

/// Every engine uses these; open_connection() checks SQLite took them (see kConnectionPragmas).
inline constexpr int kPageSize = 4096;
inline constexpr int kCachePages = 2000;  // 8 MB of 4 KiB pages vs a ~60 MB database
/// Rows and lookup keys come from this seed, so every engine and every process sees the same data.
inline constexpr std::uint64_t kSeed = 0x4b4142414e2d5354ULL;
/// Payload lengths are uniform in [kPayloadMin, kPayloadMax]: ~500 bytes, always on the page.
inline constexpr std::size_t kPayloadMin = 450;
inline constexpr std::size_t kPayloadMax = 550;
/// The cached phase looks up keys in [first, first + kCachedKeys): at most kCachedKeys table
/// pages plus a handful of index pages, well inside kCachePages.
inline constexpr std::int64_t kCachedKeys = 1000;
/// The canary row's payload: kCanaryPrefix, a random tag, padding to a fixed length (so every
/// engine's full-scan sum is the same).
inline constexpr std::string_view kCanaryPrefix = "KABAN-CANARY-";
inline constexpr std::size_t kCanaryPayloadSize = 500;
/// What an unencrypted SQLite file starts with.
inline constexpr std::string_view kSqliteHeader = "SQLite format 3";
inline constexpr const char* kDbFileName = "store.db";

struct Config {
  std::int64_t rows = 100'000;
  std::int64_t lookups = 100'000;
};

// ---- SQL: the same text for every engine ------------------------------------------------------

namespace sql {
// Set on every connection after the engine has opened (and, for SQLCipher, keyed) it. page_size
// only takes effect before the first table exists. synchronous FULL is SQLite's default, stated so
// no engine's build default can differ; mmap is off so every page goes through the VFS.
inline constexpr const char* kConnectionPragmas =
    "PRAGMA page_size = 4096;"
    "PRAGMA cache_size = 2000;"
    "PRAGMA journal_mode = DELETE;"
    "PRAGMA synchronous = FULL;"
    "PRAGMA mmap_size = 0;";
inline constexpr const char* kSchema =
    "CREATE TABLE items(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, payload TEXT NOT NULL);"
    "CREATE INDEX items_k ON items(k);";
inline constexpr const char* kInsert = "INSERT INTO items(id, k, payload) VALUES (?1, ?2, ?3)";
// Point lookups go through the secondary index: a descent of items_k to find the rowid, then of
// the table to fetch the payload, so an uncached lookup misses on an index leaf and a table leaf.
inline constexpr const char* kLookup = "SELECT payload FROM items WHERE k = ?1";
inline constexpr const char* kScan = "SELECT sum(length(payload)) FROM items";
inline constexpr const char* kOverwrite = "UPDATE items SET payload = 'overwritten' WHERE k = ?1";
}  // namespace sql

// ---- Errors and RAII over the C API ---------------------------------------------------------

class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline void check(int rc, sqlite3* db, std::string_view what) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE)
    return;
  std::string msg{what};
  msg += ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  msg += " (SQLite code " + std::to_string(rc) + ")";
  throw BenchError(msg);
}

struct CloseConnection {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using Connection = std::unique_ptr<sqlite3, CloseConnection>;

/// Opens (and creates) the database at a path in the engine's own way; throws BenchError.
using Opener = std::function<Connection(const std::filesystem::path&)>;

inline void exec(sqlite3* db, const char* sql_text) {
  check(sqlite3_exec(db, sql_text, nullptr, nullptr, nullptr), db, sql_text);
}

class Statement {
 public:
  Statement(sqlite3* db, const char* sql_text) : db_(db) {
    sqlite3_stmt* raw = nullptr;
    check(sqlite3_prepare_v2(db, sql_text, -1, &raw, nullptr), db, sql_text);
    stmt_.reset(raw);
  }
  sqlite3_stmt* get() const noexcept { return stmt_.get(); }
  void bind(int index, std::int64_t value) {
    check(sqlite3_bind_int64(get(), index, value), db_, "bind");
  }
  /// Binds without a copy: `text` must outlive the next step().
  void bind(int index, std::string_view text) {
    check(
        sqlite3_bind_text(get(), index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC),
        db_, "bind");
  }
  /// True for a row, false when done.
  bool step() {
    const int rc = sqlite3_step(get());
    check(rc, db_, sqlite3_sql(get()));
    return rc == SQLITE_ROW;
  }
  void reset() { check(sqlite3_reset(get()), db_, sqlite3_sql(get())); }

 private:
  struct Finalize {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
  };
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, Finalize> stmt_;
};

inline std::string query_text(sqlite3* db, const char* sql_text) {
  Statement s(db, sql_text);
  if (!s.step())
    return {};
  const auto* text = sqlite3_column_text(s.get(), 0);
  return text != nullptr ? reinterpret_cast<const char*>(text) : "";
}

/// Opens through the engine, applies kConnectionPragmas and checks that every one took: an engine
/// that silently ignored one would not be running the same workload.
inline Connection open_connection(const Opener& open, const std::filesystem::path& db_path) {
  Connection db = open(db_path);
  exec(db.get(), sql::kConnectionPragmas);
  const std::string page_size = query_text(db.get(), "PRAGMA page_size");
  const std::string cache_size = query_text(db.get(), "PRAGMA cache_size");
  const std::string journal = query_text(db.get(), "PRAGMA journal_mode");
  const std::string sync = query_text(db.get(), "PRAGMA synchronous");
  if (page_size != std::to_string(kPageSize) || cache_size != std::to_string(kCachePages) ||
      journal != "delete" || sync != "2") {
    throw BenchError("the engine did not take the benchmark's settings: page_size=" + page_size +
                     " cache_size=" + cache_size + " journal_mode=" + journal +
                     " synchronous=" + sync);
  }
  return db;
}

/// The settings a connection ended up with, for the report (including ones the benchmark leaves
/// at the engine's default, such as secure_delete, so differences are visible).
inline std::string describe_settings(sqlite3* db) {
  std::string out;
  for (const char* name : {"page_size", "cache_size", "journal_mode", "synchronous", "mmap_size",
                           "secure_delete", "temp_store"}) {
    if (!out.empty())
      out += ' ';
    out += name;
    out += '=';
    out += query_text(db, (std::string("PRAGMA ") + name).c_str());
  }
  return out;
}

// ---- Deterministic data ---------------------------------------------------------------------

/// splitmix64: tiny, and specified bit for bit, so both programs generate identical data.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform enough in [0, n) for a benchmark (n is far below 2^64).
  std::int64_t below(std::int64_t n) {
    return static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n));
  }

 private:
  std::uint64_t state_;
};

/// Rows, keys and lookup sequences, generated before any timing starts.
struct Dataset {
  std::vector<std::int64_t> key_of_row;  // k of rowid i + 1: a permutation of [0, rows)
  std::string payloads;                  // every payload, back to back
  std::vector<std::size_t> payload_end;  // payload i is [end[i-1], end[i])
  std::vector<std::int64_t> uncached_keys;
  std::vector<std::int64_t> cached_keys;
  std::int64_t cached_first = 0;
  std::int64_t cached_count = 0;

  std::string_view payload(std::size_t i) const {
    const std::size_t begin = i == 0 ? 0 : payload_end[i - 1];
    return std::string_view(payloads).substr(begin, payload_end[i] - begin);
  }

  static Dataset make(const Config& config) {
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const auto rows = static_cast<std::size_t>(config.rows);
    Rng rng(kSeed);
    Dataset d;

    // k is a shuffled permutation of the row numbers, so index order and rowid order differ.
    d.key_of_row.resize(rows);
    for (std::size_t i = 0; i < rows; ++i)
      d.key_of_row[i] = static_cast<std::int64_t>(i);
    for (std::size_t i = rows; i > 1; --i) {
      std::swap(d.key_of_row[i - 1],
                d.key_of_row[static_cast<std::size_t>(rng.below(static_cast<std::int64_t>(i)))]);
    }

    d.payloads.reserve(rows * kPayloadMax);
    d.payload_end.reserve(rows);
    for (std::size_t i = 0; i < rows; ++i) {
      const auto length =
          kPayloadMin + static_cast<std::size_t>(
                            rng.below(static_cast<std::int64_t>(kPayloadMax - kPayloadMin + 1)));
      for (std::size_t done = 0; done < length;) {
        std::uint64_t bits = rng.next();
        for (int c = 0; c < 10 && done < length; ++c, ++done, bits >>= 6) {
          d.payloads.push_back(kAlphabet[bits & 63]);
        }
      }
      d.payload_end.push_back(d.payloads.size());
    }

    const auto lookups = static_cast<std::size_t>(config.lookups);
    d.uncached_keys.resize(lookups);
    for (auto& k : d.uncached_keys)
      k = rng.below(config.rows);

    d.cached_count = std::min(kCachedKeys, config.rows);
    d.cached_first = (config.rows - d.cached_count) / 2;
    d.cached_keys.resize(lookups);
    for (auto& k : d.cached_keys)
      k = d.cached_first + rng.below(d.cached_count);
    return d;
  }
};

/// A canary payload with a tag no other run shares.
inline std::string make_canary_payload() {
  std::random_device device;
  std::string out(kCanaryPrefix);
  for (int i = 0; i < 4; ++i) {
    std::array<char, 16> hex{};
    const auto r = std::to_chars(hex.data(), hex.data() + hex.size(), device(), 16);
    out.append(hex.data(), r.ptr);
    out += '-';
  }
  out.resize(kCanaryPayloadSize, '.');
  return out;
}

// ---- Leak check -----------------------------------------------------------------------------

struct LeakScan {
  bool canary = false;
  bool header = false;
  bool journal_seen = false;
  std::string detail;  // "store.db: canary, header; store.db-journal: canary"
};

/// Greps every file in `dir` (the database, its journal, anything else the engine left) for the
/// canary and for the plain SQLite header.
inline LeakScan scan_directory(const std::filesystem::path& dir, std::string_view canary) {
  LeakScan scan;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file())
      continue;
    const std::string name = entry.path().filename().string();
    if (name.ends_with("-journal") && entry.file_size() > 0)
      scan.journal_seen = true;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const bool has_canary = bytes.find(canary) != std::string::npos;
    const bool has_header = bytes.find(kSqliteHeader) != std::string::npos;
    scan.canary = scan.canary || has_canary;
    scan.header = scan.header || has_header;
    if (has_canary || has_header) {
      if (!scan.detail.empty())
        scan.detail += "; ";
      scan.detail += name + ":";
      if (has_canary)
        scan.detail += " canary";
      if (has_header)
        scan.detail += has_canary ? ", header" : " header";
    }
  }
  return scan;
}

// ---- One run ----------------------------------------------------------------------------------

/// One engine's results for one round. Times in seconds; misses are SQLite page-cache misses.
struct RunResult {
  double insert_s = 0;
  double lookup_s = 0;
  double lookup_cached_s = 0;
  double scan_s = 0;
  std::int64_t lookup_misses = 0;
  std::int64_t lookup_cached_misses = 0;
  std::int64_t scan_misses = 0;
  std::int64_t lookup_checksum = 0;  // equal across engines, or an engine returned wrong data
  std::int64_t scan_sum = 0;
  std::int64_t db_bytes = 0;
  bool canary_found = false;  // canary or plain header anywhere in the directory, at any check
  bool journal_seen = false;  // the mid-transaction check saw a non-empty rollback journal
  std::string leak_detail;
  std::string settings;
  std::string version;
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline std::int64_t take_cache_misses(sqlite3* db) {
  int current = 0;
  int highwater = 0;
  check(sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_MISS, &current, &highwater, /*reset=*/1), db,
        "sqlite3_db_status");
  return current;
}

/// Looks each key up once; returns a checksum of what came back.
inline std::int64_t look_up(Statement& lookup, const std::vector<std::int64_t>& keys) {
  std::int64_t checksum = 0;
  for (const std::int64_t k : keys) {
    lookup.bind(1, k);
    if (!lookup.step())
      throw BenchError("lookup of k=" + std::to_string(k) + " found no row");
    const auto* text = sqlite3_column_text(lookup.get(), 0);
    const int size = sqlite3_column_bytes(lookup.get(), 0);
    checksum += size + (size > 0 ? text[0] : 0);
    lookup.reset();
  }
  return checksum;
}

/// Runs the whole workload on a new database at `db_path` (its directory must hold nothing else)
/// and checks the directory for plaintext.
inline RunResult run_workload(const Config& config, const Dataset& data, const Opener& open,
                              const std::filesystem::path& db_path) {
  RunResult r;
  const std::string canary = make_canary_payload();
  const std::int64_t canary_key = config.rows;  // outside every lookup's key range
  using Clock = std::chrono::steady_clock;

  {
    // Bulk insert: one transaction, the index already in place, commit (and its fsyncs) included.
    Connection db = open_connection(open, db_path);
    exec(db.get(), sql::kSchema);
    Statement insert(db.get(), sql::kInsert);
    const auto start = Clock::now();
    exec(db.get(), "BEGIN");
    for (std::int64_t i = 0; i <= config.rows; ++i) {
      const bool is_canary = i == config.rows;
      const auto row = static_cast<std::size_t>(i);
      insert.bind(1, i + 1);
      insert.bind(2, is_canary ? canary_key : data.key_of_row[row]);
      insert.bind(3, is_canary ? std::string_view(canary) : data.payload(row));
      insert.step();
      insert.reset();
    }
    exec(db.get(), "COMMIT");
    r.insert_s = seconds_since(start);
  }

  // Lookups and scan on a new connection, so SQLite's page cache starts empty. Each lookup phase
  // is one read transaction: with a transaction per lookup, the file locking and hot-journal
  // check SQLite does at every transaction start (syscalls, the same for every engine) take most
  // of a cached lookup's time and would hide what the page encryption costs.
  Connection db = open_connection(open, db_path);
  r.settings = describe_settings(db.get());
  {
    Statement lookup(db.get(), sql::kLookup);
    auto timed_lookups = [&](const std::vector<std::int64_t>& keys, double& seconds,
                             std::int64_t& misses) {
      take_cache_misses(db.get());
      const auto start = Clock::now();
      exec(db.get(), "BEGIN");
      r.lookup_checksum += look_up(lookup, keys);
      exec(db.get(), "COMMIT");
      seconds = seconds_since(start);
      misses = take_cache_misses(db.get());
    };
    timed_lookups(data.uncached_keys, r.lookup_s, r.lookup_misses);

    // Warm the cached phase's pages first: every key of its range, once.
    std::vector<std::int64_t> warm(static_cast<std::size_t>(data.cached_count));
    for (std::size_t i = 0; i < warm.size(); ++i) {
      warm[i] = data.cached_first + static_cast<std::int64_t>(i);
    }
    look_up(lookup, warm);
    timed_lookups(data.cached_keys, r.lookup_cached_s, r.lookup_cached_misses);
  }
  {
    Statement scan(db.get(), sql::kScan);
    take_cache_misses(db.get());
    const auto start = Clock::now();
    if (!scan.step())
      throw BenchError("the full scan returned no row");
    r.scan_sum = sqlite3_column_int64(scan.get(), 0);
    scan.reset();
    r.scan_s = seconds_since(start);
    r.scan_misses = take_cache_misses(db.get());
  }

  // Leak check, untimed. Overwriting the canary row makes SQLite copy the page that holds it into
  // the rollback journal, so grepping while the transaction is open covers the journal as well.
  const std::filesystem::path dir = db_path.parent_path();
  {
    exec(db.get(), "BEGIN IMMEDIATE");
    Statement overwrite(db.get(), sql::kOverwrite);
    overwrite.bind(1, canary_key);
    overwrite.step();
    const LeakScan during = scan_directory(dir, canary);
    exec(db.get(), "ROLLBACK");
    r.journal_seen = during.journal_seen;
    r.canary_found = during.canary || during.header;
    if (!during.detail.empty())
      r.leak_detail = "mid-transaction: " + during.detail;
  }
  db.reset();
  const LeakScan after = scan_directory(dir, canary);
  r.canary_found = r.canary_found || after.canary || after.header;
  if (!after.detail.empty()) {
    if (!r.leak_detail.empty())
      r.leak_detail += "; ";
    r.leak_detail += "after close: " + after.detail;
  }
  r.db_bytes = static_cast<std::int64_t>(std::filesystem::file_size(db_path));
  r.version = sqlite3_libversion();
  return r;
}

// ---- RunResult as one JSON line (the SQLCipher program's output) -----------------------------

namespace field {
inline constexpr const char* kInsert = "insert_s";
inline constexpr const char* kLookup = "lookup_s";
inline constexpr const char* kLookupCached = "lookup_cached_s";
inline constexpr const char* kScan = "scan_s";
inline constexpr const char* kLookupMisses = "lookup_misses";
inline constexpr const char* kLookupCachedMisses = "lookup_cached_misses";
inline constexpr const char* kScanMisses = "scan_misses";
inline constexpr const char* kLookupChecksum = "lookup_checksum";
inline constexpr const char* kScanSum = "scan_sum";
inline constexpr const char* kDbBytes = "db_bytes";
inline constexpr const char* kCanaryFound = "canary_found";
inline constexpr const char* kJournalSeen = "journal_seen";
inline constexpr const char* kLeakDetail = "leak_detail";
inline constexpr const char* kSettings = "settings";
inline constexpr const char* kVersion = "version";
}  // namespace field

inline std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static constexpr std::string_view kHex = "0123456789abcdef";
      out += "\\u00";
      out += kHex[(c >> 4) & 0xf];
      out += kHex[c & 0xf];
    } else {
      out += c;
    }
  }
  return out + '"';
}

inline std::string json_number(double v) {
  std::array<char, 32> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);  // shortest round-trip
  return std::string(buf.data(), r.ptr);
}

inline std::string to_json_line(const RunResult& r) {
  std::string out = "{";
  auto add = [&out](const char* name, const std::string& value) {
    if (out.size() > 1)
      out += ',';
    out += json_quote(name) + ':' + value;
  };
  add(field::kInsert, json_number(r.insert_s));
  add(field::kLookup, json_number(r.lookup_s));
  add(field::kLookupCached, json_number(r.lookup_cached_s));
  add(field::kScan, json_number(r.scan_s));
  add(field::kLookupMisses, std::to_string(r.lookup_misses));
  add(field::kLookupCachedMisses, std::to_string(r.lookup_cached_misses));
  add(field::kScanMisses, std::to_string(r.scan_misses));
  add(field::kLookupChecksum, std::to_string(r.lookup_checksum));
  add(field::kScanSum, std::to_string(r.scan_sum));
  add(field::kDbBytes, std::to_string(r.db_bytes));
  add(field::kCanaryFound, r.canary_found ? "true" : "false");
  add(field::kJournalSeen, r.journal_seen ? "true" : "false");
  add(field::kLeakDetail, json_quote(r.leak_detail));
  add(field::kSettings, json_quote(r.settings));
  add(field::kVersion, json_quote(r.version));
  return out + '}';
}

}  // namespace kaban::bench
