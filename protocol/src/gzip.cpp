#include "kaban/protocol/gzip.hpp"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <limits>
#include <new>
#include <stdexcept>

#include "kaban/protocol/error.hpp"

namespace kaban::protocol {
namespace {

// windowBits 15 (the largest window) plus 16: a gzip header and trailer, not a zlib one.
constexpr int kGzipWindowBits = 15 + 16;
constexpr int kMemLevel = 8;  // zlib's default
// Measured on a 500 KB feed-like JSON of random SHA-256 hex: level 1 gives 43.1% of the input
// in about 7 ms, level 3 gives 42.4% in about 9 ms and level 6 (zlib's default) 41.1% in about
// 20 ms. Random hex holds 4 bits a byte, so no level gets far below half; the server compresses
// each response as it sends it, so the fastest level wins.
constexpr int kLevel = 1;
// How much output room decompression starts with, and the least it adds at a time. It doubles
// from there, never past the caller's limit.
constexpr std::size_t kFirstOutputRoom = 64 * 1024;
// zlib counts bytes in uInt; larger spans go in slices.
constexpr std::size_t kMaxSlice = UINT_MAX;

uInt slice(std::size_t n) {
  return static_cast<uInt>(std::min(n, kMaxSlice));
}

Bytef* as_bytes(const char* p) {
  // zlib's next_in is not const-qualified, but inflate and deflate only read through it.
  return reinterpret_cast<Bytef*>(const_cast<char*>(p));
}

// zlib reports out-of-memory like any allocation; every other failure to start is a misuse.
[[noreturn]] void fail_init(int rc, const char* what) {
  if (rc == Z_MEM_ERROR)
    throw std::bad_alloc();
  throw std::logic_error(std::string(what) + " failed: zlib error " + std::to_string(rc));
}

// A z_stream that `End` (deflateEnd or inflateEnd) releases. `init` starts it: deflateInit2 or
// inflateInit2 on the stream it is given.
template <int (*End)(z_streamp)>
class ZStream {
 public:
  template <typename Init>
  ZStream(Init init, const char* what) {
    const int rc = init(&stream_);
    if (rc != Z_OK)
      fail_init(rc, what);
  }
  ~ZStream() { End(&stream_); }
  ZStream(const ZStream&) = delete;
  ZStream& operator=(const ZStream&) = delete;

  z_stream& operator*() { return stream_; }

 private:
  z_stream stream_{};
};

// Makes `out` exactly `size` bytes long, keeping its first `used`. std::string's own growth may
// allocate up to twice what is asked, which would let the output buffer overshoot max_size.
void grow_to(std::string& out, std::size_t used, std::size_t size) {
  std::string larger;
  larger.reserve(size);
  larger.append(out, 0, used);
  larger.resize(size);
  out.swap(larger);
}

// Hands zlib the next slice of `data` once it has used the last one (zlib counts in uInt).
void feed_input(z_stream& zs, std::string_view data, std::size_t& consumed) {
  if (zs.avail_in != 0 || consumed == data.size())
    return;
  zs.next_in = as_bytes(data.data() + consumed);
  zs.avail_in = slice(data.size() - consumed);
  consumed += zs.avail_in;
}

}  // namespace

std::string gzip_compress(std::string_view data) {
  ZStream<deflateEnd> deflater(
      [](z_streamp s) {
        return deflateInit2(s, kLevel, Z_DEFLATED, kGzipWindowBits, kMemLevel, Z_DEFAULT_STRATEGY);
      },
      "deflateInit2");
  z_stream& zs = *deflater;
  // deflateBound covers the whole member, header and trailer included, so one allocation
  // normally suffices; the loop still grows the output should it ever not.
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  std::size_t consumed = 0;
  std::size_t produced = 0;
  for (;;) {
    feed_input(zs, data, consumed);
    if (produced == out.size())
      out.resize(out.size() * 2);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    zs.avail_out = slice(out.size() - produced);
    const uInt room = zs.avail_out;
    const bool last = consumed == data.size();
    const int rc = deflate(&zs, last ? Z_FINISH : Z_NO_FLUSH);
    produced += room - zs.avail_out;
    if (rc == Z_STREAM_END)
      break;
    // Z_OK: more to do. Z_BUF_ERROR: no progress this call, which the next slice or the
    // larger output resolves. Anything else means the stream state is corrupt.
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      throw std::logic_error("deflate failed: zlib error " + std::to_string(rc));
  }
  out.resize(produced);
  return out;
}

Result<std::string> gzip_decompress(std::string_view data, std::size_t max_size) {
  ZStream<inflateEnd> inflater([](z_streamp s) { return inflateInit2(s, kGzipWindowBits); },
                               "inflateInit2");
  z_stream& zs = *inflater;
  // Room for one byte past max_size: output reaching it is how "over the limit" shows.
  const std::size_t limit =
      max_size == std::numeric_limits<std::size_t>::max() ? max_size : max_size + 1;
  std::string out;
  std::size_t consumed = 0;
  std::size_t produced = 0;
  for (;;) {
    feed_input(zs, data, consumed);
    if (produced == out.size()) {
      // Grow geometrically but never past the limit, so a small body that would expand to
      // gigabytes costs at most max_size + 1 bytes before it is refused.
      const std::size_t wanted = std::max(kFirstOutputRoom, out.size() * 2);
      grow_to(out, produced, std::min(limit, wanted));
    }
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    zs.avail_out = slice(out.size() - produced);
    const uInt room = zs.avail_out;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    produced += room - zs.avail_out;
    if (produced > max_size)
      return errc::too_large;
    switch (rc) {
      case Z_OK:
        continue;
      case Z_STREAM_END:
        // One member only: a second member or any other trailing byte is refused.
        if (zs.avail_in != 0 || consumed < data.size())
          return errc::malformed;
        out.resize(produced);
        return out;
      case Z_BUF_ERROR:
        // There was output room, so inflate lacked input: the member is truncated.
        return errc::malformed;
      case Z_MEM_ERROR:
        throw std::bad_alloc();
      default:
        // Z_DATA_ERROR (bad header, corrupt deflate data, CRC or length mismatch) and
        // Z_NEED_DICT, which a gzip member cannot legitimately ask for.
        return errc::malformed;
    }
  }
}

}  // namespace kaban::protocol
