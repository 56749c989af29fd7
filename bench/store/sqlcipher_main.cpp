// kaban-bench-store-sqlcipher: one round of the store workload on Debian's SQLCipher, run by
// kaban-bench-store (SQLCipher exports SQLite's symbols, so it cannot share that process). Prints
// the round's results as one JSON line on stdout; errors go to stderr with a non-zero exit.
//
//   kaban-bench-store-sqlcipher --db DIR/store.db --rows N --lookups N

#include <array>
#include <charconv>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <string_view>

#include "workload.hpp"

namespace {

namespace bench = kaban::bench;

// A raw 256-bit key, so SQLCipher skips its passphrase KDF as Kaban does (its data key is raw too).
std::string random_raw_key_hex() {
  std::random_device device;
  std::string hex;
  for (int i = 0; i < 8; ++i) {
    std::array<char, 8> word{};
    const auto r = std::to_chars(word.data(), word.data() + word.size(), device(), 16);
    hex.append(static_cast<std::size_t>(8 - (r.ptr - word.data())), '0');
    hex.append(word.data(), r.ptr);
  }
  return hex;
}

bench::Connection open_sqlcipher(const std::filesystem::path& path, const std::string& key_hex) {
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  bench::Connection db(raw);
  bench::check(rc, raw, "open " + path.string());
  // The key and the cipher page size must come before anything reads the file.
  const std::string key_pragma = "PRAGMA key = \"x'" + key_hex + "'\"";
  bench::exec(db.get(), key_pragma.c_str());
  bench::exec(db.get(), "PRAGMA cipher_page_size = 4096");
  return db;
}

bool parse_count(std::string_view text, std::int64_t& out) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc{} && r.ptr == text.data() + text.size() && out > 0;
}

int run(int argc, char** argv) {
  std::filesystem::path db_path;
  bench::Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--db" && has_value) {
      db_path = argv[++i];
    } else if (arg == "--rows" && has_value && parse_count(argv[i + 1], config.rows)) {
      ++i;
    } else if (arg == "--lookups" && has_value && parse_count(argv[i + 1], config.lookups)) {
      ++i;
    } else {
      std::cerr << "kaban-bench-store-sqlcipher: unexpected argument '" << arg
                << "'. It is run by kaban-bench-store as: --db PATH --rows N --lookups N\n";
      return 2;
    }
  }
  if (db_path.empty()) {
    std::cerr << "kaban-bench-store-sqlcipher: --db PATH is required\n";
    return 2;
  }

  const std::string key_hex = random_raw_key_hex();
  const bench::Opener open = [&key_hex](const std::filesystem::path& path) {
    return open_sqlcipher(path, key_hex);
  };
  // Refuse to report plain SQLite's numbers as SQLCipher's if the build linked the wrong library.
  std::string cipher_version;
  {
    bench::Connection probe = open(":memory:");
    cipher_version = bench::query_text(probe.get(), "PRAGMA cipher_version");
  }
  if (cipher_version.empty()) {
    std::cerr << "kaban-bench-store-sqlcipher: this binary is linked against SQLite, not SQLCipher "
                 "(PRAGMA cipher_version is empty); rebuild it against libsqlcipher\n";
    return 1;
  }

  const bench::Dataset data = bench::Dataset::make(config);
  bench::RunResult result = bench::run_workload(config, data, open, db_path);
  result.version = "SQLCipher " + cipher_version + " (SQLite " + result.version + ")";
  std::cout << bench::to_json_line(result) << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "kaban-bench-store-sqlcipher: " << e.what() << "\n";
    return 1;
  }
}
