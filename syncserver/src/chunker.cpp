#include "kaban/server/chunker.hpp"

#include <array>
#include <bit>
#include <cstdlib>

#include "kaban/protocol/manifest.hpp"

namespace kaban::server {
namespace {

// The gear table: 256 pseudo-random 64-bit values, one per byte value, from SplitMix64 with a
// fixed seed. Fixed forever: another table cuts the same file elsewhere.
constexpr std::array<std::uint64_t, 256> make_gear_table() {
  std::array<std::uint64_t, 256> table{};
  std::uint64_t state = 0x4b6162616e434443;  // "KabanCDC"
  for (auto& entry : table) {
    state += 0x9e3779b97f4a7c15;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    entry = z ^ (z >> 31);
  }
  return table;
}
constexpr std::array<std::uint64_t, 256> kGear = make_gear_table();

// A mask of `bits` one-bits at the top of the word. The gear hash shifts left by one per byte,
// so its top bits depend on the last 64 bytes and its low bits on only the last few: testing the
// top bits makes a cut depend on a 64-byte window.
constexpr std::uint64_t top_bits(unsigned bits) {
  return bits == 0 ? 0 : ~std::uint64_t{0} << (64 - bits);
}

}  // namespace

bool valid_chunker_params(const ChunkerParams& p) {
  return p.min_size >= 64 && p.min_size < p.avg_size && p.avg_size < p.max_size &&
         p.max_size <= protocol::kMaxChunkSize && std::has_single_bit(p.avg_size) &&
         p.avg_size >= 256 && p.avg_size <= 4 * 1024 * 1024;
}

Chunker::Chunker(const ChunkerParams& params) : params_(params) {
  if (!valid_chunker_params(params))
    std::abort();
  // Normalized chunking, level 2: two bits more than log2(avg) before the average point, two
  // fewer after it.
  const auto bits = static_cast<unsigned>(std::countr_zero(params.avg_size));
  mask_small_ = top_bits(bits + 2);
  mask_large_ = top_bits(bits - 2);
}

std::size_t Chunker::cut(crypto::ByteView data) const {
  const std::size_t size = data.size();
  if (size <= params_.min_size)
    return size;
  const std::size_t end = size < params_.max_size ? size : params_.max_size;
  const std::size_t normal = end < params_.avg_size ? end : params_.avg_size;
  // The first min_size bytes cannot hold a cut, so they are not hashed; the hash of a position
  // depends on the 64 bytes before it, so starting it at min_size changes no cut after
  // min_size + 64.
  std::uint64_t hash = 0;
  std::size_t i = params_.min_size;
  for (; i < normal; ++i) {
    hash = (hash << 1) + kGear[data[i]];
    if ((hash & mask_small_) == 0)
      return i + 1;
  }
  for (; i < end; ++i) {
    hash = (hash << 1) + kGear[data[i]];
    if ((hash & mask_large_) == 0)
      return i + 1;
  }
  return end;
}

}  // namespace kaban::server
