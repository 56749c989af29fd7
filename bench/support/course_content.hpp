// The course a content benchmark publishes: "a few large files and many small", of random,
// incompressible bytes from a fixed seed, in lessons of at most kFilesPerLesson files, with its
// course.json; and byte-for-byte comparison of files.
//
// Layout for a course of S bytes: three large "videos" of 15%, 20% and 25% of S (at 1 GiB:
// 154, 205 and 256 MiB), then small "handouts" of 16 KiB to 1 MiB (log-uniform, so most are
// small; at 1 GiB some 1,650 of them, about 250 KiB on average) filling the other 40%.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "failure.hpp"
#include "progress.hpp"

namespace kaban::bench {

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = 1024 * 1024;
/// Files per lesson; a manifest allows 1,000.
inline constexpr std::size_t kFilesPerLesson = 500;
/// Shares of the course's bytes in each large file.
inline constexpr std::array<double, 3> kLargeShares = {0.15, 0.20, 0.25};
/// Smallest and largest small file (the last one may be larger, to make the total exact).
inline constexpr std::uint64_t kSmallMin = 16 * kKiB;
inline constexpr std::uint64_t kSmallMax = 1 * kMiB;
/// Every generated file's modification time (2026-01-01T00:00:00Z): fixed, so a copy made with
/// times preserved looks unchanged to rsync's quick check, and a file edited later never does.
inline constexpr std::int64_t kSourceMtime = 1'767'225'600;
/// Bytes written or compared at a time.
inline constexpr std::size_t kIoBlock = 1 * kMiB;

/// xoshiro256** seeded through splitmix64: fast (several GB/s) and the same on every machine
/// for a seed. Not for anything secret.
class FastRandom {
 public:
  explicit FastRandom(std::uint64_t seed) {
    for (auto& word : state_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  /// In [0, n), n > 0; the modulo bias (under n / 2^64) does not matter for layouts.
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  /// Uniform in [0, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Fills `size` bytes at `data`.
  void fill(char* data, std::size_t size) {
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
      const std::uint64_t word = next();
      std::memcpy(data + i, &word, 8);
    }
    if (i < size) {
      const std::uint64_t word = next();
      std::memcpy(data + i, &word, size - i);
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<std::uint64_t, 4> state_{};
};

/// One file of the course.
struct CourseFile {
  std::string path;  ///< content path, relative to the course folder
  std::uint64_t size = 0;
};

/// One lesson: what course.json says of it.
struct CourseLesson {
  std::string id;
  std::string title;
  std::string kind;
  std::vector<std::string> files;  ///< content paths
};

/// A course to publish, as course.json describes it.
struct CourseSpec {
  std::string id;
  std::string title;
  std::vector<CourseFile> files;  ///< the large files first, then the small ones
  std::vector<CourseLesson> lessons;

  std::uint64_t total_size() const {
    std::uint64_t total = 0;
    for (const auto& f : files)
      total += f.size;
    return total;
  }
  /// The file with this path, or nullptr.
  const CourseFile* find(const std::string& path) const {
    for (const auto& f : files) {
      if (f.path == path)
        return &f;
    }
    return nullptr;
  }
  /// The id of the lesson that lists `path`; "" if none does.
  std::string lesson_of(const std::string& path) const {
    for (const auto& l : lessons) {
      if (std::find(l.files.begin(), l.files.end(), path) != l.files.end())
        return l.id;
    }
    return {};
  }
};

/// Plans a course of `total_bytes` (at least 1 MiB) in the layout above; the small files'
/// sizes come from `seed`.
inline CourseSpec plan_course(const std::string& id, const std::string& title,
                              std::uint64_t total_bytes, std::uint64_t seed) {
  CourseSpec spec;
  spec.id = id;
  spec.title = title;
  std::uint64_t left = total_bytes;
  for (std::size_t i = 0; i < kLargeShares.size(); ++i) {
    const auto size =
        static_cast<std::uint64_t>(static_cast<double>(total_bytes) * kLargeShares[i]);
    const std::string n = std::to_string(i + 1);
    spec.files.push_back({"video/part-" + n + ".mp4", size});
    spec.lessons.push_back({"video-" + n, "Video, part " + n, "video", {spec.files.back().path}});
    left -= size;
  }
  FastRandom random(seed);
  const double low = std::log(static_cast<double>(kSmallMin));
  const double high = std::log(static_cast<double>(kSmallMax));
  std::size_t small = 0;
  while (left > 0) {
    auto size = static_cast<std::uint64_t>(std::exp(low + random.unit() * (high - low)));
    size = std::clamp(size, kSmallMin, kSmallMax);
    // A remainder too small for a file of its own goes to this one.
    if (left < size + kSmallMin)
      size = left;
    const std::size_t set = small / kFilesPerLesson + 1;
    char name[64];
    std::snprintf(name, sizeof name, "handouts/set-%02zu/page-%04zu.pdf", set,
                  small % kFilesPerLesson + 1);
    spec.files.push_back({name, size});
    if (small % kFilesPerLesson == 0) {
      const std::string s = std::to_string(set);
      spec.lessons.push_back({"handouts-" + s, "Handouts, set " + s, "document", {}});
    }
    spec.lessons.back().files.push_back(name);
    left -= size;
    ++small;
  }
  return spec;
}

/// Sets a file's modification time to kSourceMtime. Throws BenchError.
inline void set_source_mtime(const std::filesystem::path& path) {
  const timespec times[2] = {{kSourceMtime, 0}, {kSourceMtime, 0}};
  if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0)
    throw BenchError("cannot set the time of " + path.string() + ": " + std::strerror(errno));
}

/// Writes `size` random bytes from `seed` to `path` (replacing it), creating its folder, with
/// the time kSourceMtime; `progress` (if given) counts the bytes. Throws BenchError.
inline void write_random_file(const std::filesystem::path& path, std::uint64_t size,
                              std::uint64_t seed, Progress* progress = nullptr) {
  std::filesystem::create_directories(path.parent_path());
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!out)
    throw BenchError("cannot write " + path.string() + ": " + std::strerror(errno));
  FastRandom random(seed);
  std::vector<char> block(kIoBlock);
  for (std::uint64_t done = 0; done < size;) {
    StopSignals::throw_if_stopped();
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), size - done));
    random.fill(block.data(), n);
    if (std::fwrite(block.data(), 1, n, out.get()) != n)
      throw BenchError("cannot write " + path.string() + ": " + std::strerror(errno));
    done += n;
    if (progress)
      progress->add(n);
  }
  if (std::fclose(out.release()) != 0)
    throw BenchError("cannot write " + path.string() + ": " + std::strerror(errno));
  set_source_mtime(path);
}

/// Writes `spec`'s course.json into `folder`. Throws BenchError.
inline void write_course_json(const CourseSpec& spec, const std::filesystem::path& folder) {
  nlohmann::ordered_json lessons = nlohmann::ordered_json::array();
  for (const auto& l : spec.lessons) {
    lessons.push_back({{"id", l.id},
                       {"title", l.title},
                       {"kind", l.kind},
                       {"duration_minutes", 10},
                       {"files", l.files}});
  }
  const nlohmann::ordered_json course = {
      {"id", spec.id},
      {"title", spec.title},
      {"description", "Generated by a Kaban benchmark: random, incompressible bytes."},
      {"lessons", std::move(lessons)}};
  std::filesystem::create_directories(folder);
  std::ofstream out(folder / "course.json", std::ios::trunc);
  out << course.dump(1) << '\n';
  if (!out)
    throw BenchError("cannot write " + (folder / "course.json").string());
}

/// Writes every file of `spec` into `folder` (file i from seed + 1 + i; `seed` itself planned the
/// sizes) and its course.json, with
/// progress on stderr. Throws BenchError.
inline void write_course(const CourseSpec& spec, const std::filesystem::path& folder,
                         std::uint64_t seed) {
  Progress progress("writing " + std::to_string(spec.files.size()) + " course files",
                    spec.total_size(), "MiB", kMiB);
  for (std::size_t i = 0; i < spec.files.size(); ++i)
    write_random_file(folder / spec.files[i].path, spec.files[i].size, seed + 1 + i, &progress);
  write_course_json(spec, folder);
}

/// Where two files first differ: std::nullopt if they are byte-identical; else the offset of
/// the first differing byte (the shorter one's size if one is a prefix of the other). Throws
/// BenchError if either cannot be read.
inline std::optional<std::uint64_t> first_difference(const std::filesystem::path& a,
                                                     const std::filesystem::path& b) {
  std::ifstream fa(a, std::ios::binary);
  std::ifstream fb(b, std::ios::binary);
  if (!fa || !fb)
    throw BenchError("cannot read " + (fa ? b : a).string() + " to compare it");
  std::vector<char> ba(kIoBlock);
  std::vector<char> bb(kIoBlock);
  std::uint64_t offset = 0;
  for (;;) {
    fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    const auto na = static_cast<std::size_t>(fa.gcount());
    const auto nb = static_cast<std::size_t>(fb.gcount());
    const std::size_t n = std::min(na, nb);
    const auto mismatch =
        std::mismatch(ba.begin(), ba.begin() + static_cast<std::ptrdiff_t>(n), bb.begin());
    if (mismatch.first != ba.begin() + static_cast<std::ptrdiff_t>(n))
      return offset + static_cast<std::uint64_t>(mismatch.first - ba.begin());
    if (na != nb)
      return offset + n;
    if (na == 0)
      return std::nullopt;
    offset += n;
  }
}

/// Throws BenchError naming `what` and the first differing byte unless the files are
/// byte-identical.
inline void expect_same_file(const std::filesystem::path& got, const std::filesystem::path& want,
                             const std::string& what) {
  if (const auto at = first_difference(got, want)) {
    throw BenchError(what + ": " + got.string() + " differs from " + want.string() + " from byte " +
                     std::to_string(*at) + " on");
  }
}

}  // namespace kaban::bench
