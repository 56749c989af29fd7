// Helpers shared by Kaban's tests.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <stdlib.h>

namespace kaban::testing {

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/kaban-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::vector<std::uint8_t> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot read " + p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::filesystem::path& p, const std::vector<std::uint8_t>& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out)
    throw std::runtime_error("cannot write " + p.string());
}

/// Writes `text` to `p`, creating its parent directories.
inline void write_text(const std::filesystem::path& p, std::string_view text) {
  std::filesystem::create_directories(p.parent_path());
  write_file(p, std::vector<std::uint8_t>(text.begin(), text.end()));
}

/// The file's bytes as a string; "" if it does not exist (yet).
inline std::string text_of(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::exists(p, ec))
    return {};
  const auto bytes = read_file(p);
  return {bytes.begin(), bytes.end()};
}

/// Flips one bit of the byte at `offset` in file `p`.
inline void flip_bit(const std::filesystem::path& p, std::size_t offset, int bit = 0) {
  auto data = read_file(p);
  data.at(offset) ^= static_cast<std::uint8_t>(1u << bit);
  write_file(p, data);
}

/// True if `needle` occurs anywhere in the bytes of `p`.
inline bool file_contains(const std::filesystem::path& p, std::string_view needle) {
  const auto data = read_file(p);
  return std::search(data.begin(), data.end(), needle.begin(), needle.end()) != data.end();
}

/// Every regular file below `dir` that contains `needle`.
inline std::vector<std::filesystem::path> files_containing(const std::filesystem::path& dir,
                                                           std::string_view needle) {
  std::vector<std::filesystem::path> hits;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && file_contains(e.path(), needle))
      hits.push_back(e.path());
  }
  return hits;
}

/// `n` bytes with no pattern deflate or content-defined chunking can use (xorshift32), the same
/// for the same `seed` and different from seed to seed.
inline std::string noise(std::size_t n, std::uint32_t seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 7;
  if (x == 0)
    x = 1;  // xorshift's one fixed point
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

/// A printable random marker, different in every call, for canary checks.
inline std::string random_marker(std::string_view prefix) {
  std::random_device rd;
  std::string s(prefix);
  for (int i = 0; i < 16; ++i)
    s += static_cast<char>('a' + rd() % 26);
  return s;
}

}  // namespace kaban::testing
