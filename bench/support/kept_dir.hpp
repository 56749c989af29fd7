// --keep for a benchmark's TempDir: declared right after it, KeptDir moves the folder aside when
// the run ends (success or failure), after everything declared later (servers, devices) is
// gone, so TempDir finds nothing to remove and the work stays for inspection.
#pragma once

#include <filesystem>
#include <iostream>
#include <system_error>

namespace kaban::bench {

class KeptDir {
 public:
  /// With `keep`, `dir` (a TempDir's path) is renamed to DIR-kept on destruction.
  KeptDir(std::filesystem::path dir, bool keep) : dir_(std::move(dir)), keep_(keep) {}
  KeptDir(const KeptDir&) = delete;
  KeptDir& operator=(const KeptDir&) = delete;
  ~KeptDir() {
    if (!keep_)
      return;
    std::filesystem::path kept = dir_;
    kept += "-kept";
    std::error_code ec;
    std::filesystem::rename(dir_, kept, ec);
    if (ec)
      std::cerr << "--keep: could not keep " << dir_.string() << ": " << ec.message() << '\n';
    else
      std::cerr << "--keep: the work folder is " << kept.string() << " (remove it when done)\n";
  }

 private:
  std::filesystem::path dir_;
  bool keep_;
};

}  // namespace kaban::bench
