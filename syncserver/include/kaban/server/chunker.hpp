// Content-defined chunking (FastCDC with normalized chunking): where a course file is cut into
// chunks. A cut depends only on the 64 bytes before it, so inserting or deleting bytes in the
// middle of a file moves the cuts near the edit and no others: a revised video or PDF shares
// every chunk but those around the edit with its last version. Sizes and their reasons:
// docs/content.md, "Chunking".
#pragma once

#include <cstddef>
#include <cstdint>

#include "kaban/crypto/bytes.hpp"

namespace kaban::server {

/// The chunk sizes the chunker aims for. A chunk is never shorter than `min_size` (except a
/// file's last, or a file shorter than that) nor longer than `max_size`; cuts between `min_size`
/// and `avg_size` are made rarer, and those after it likelier, so sizes cluster around
/// `avg_size`.
struct ChunkerParams {
  std::size_t min_size = 16 * 1024;
  std::size_t avg_size = 64 * 1024;
  std::size_t max_size = 256 * 1024;
  friend bool operator==(const ChunkerParams&, const ChunkerParams&) = default;
};

/// True if 64 <= min_size < avg_size < max_size <= protocol::kMaxChunkSize and avg_size is a
/// power of two between 256 bytes and 4 MiB.
bool valid_chunker_params(const ChunkerParams& params);

/// Finds cut points. Stateless between chunks and thread-safe; the same bytes give the same cuts
/// on every machine and in every Kaban version (the gear table is fixed: changing it would make
/// every device download every course again).
class Chunker {
 public:
  /// `params` must satisfy valid_chunker_params (checked; invalid ones abort, a programming
  /// error).
  explicit Chunker(const ChunkerParams& params = {});

  /// The length of the chunk that starts at `data[0]`. `data` must hold at least max_size bytes,
  /// unless it holds the whole rest of the file: then the chunk may end at its end. Returns a
  /// length in [1, min(data.size(), max_size)]; 0 only for empty `data`.
  std::size_t cut(crypto::ByteView data) const;

  const ChunkerParams& params() const { return params_; }

 private:
  ChunkerParams params_;
  std::uint64_t mask_small_;  ///< harder to match: used before avg_size
  std::uint64_t mask_large_;  ///< easier to match: used from avg_size on
};

}  // namespace kaban::server
