// gzip (RFC 1952) for HTTP bodies that compress well: the course feed, whose manifests are
// mostly hex hashes. zlib does the work.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "kaban/result.hpp"

namespace kaban::protocol {

/// The Content-Encoding value both sides use.
inline constexpr std::string_view kGzipEncoding = "gzip";

/// `data` as one gzip member, compressed at a level chosen for speed over size (the server
/// compresses per request; zlib level 1 gives a course feed of hex hashes 43% of its size). Safe
/// from any thread. Throws std::bad_alloc if memory runs out, as any allocation does.
std::string gzip_compress(std::string_view data);

/// The bytes of one gzip member. errc::malformed if `data` is not exactly one complete gzip
/// member (bad header or checksum, truncated, or bytes after it, a second member included);
/// errc::too_large as soon as the output would pass `max_size`, so a small hostile body cannot
/// expand without bound: the output buffer never holds more than `max_size` + 1 bytes. Safe
/// from any thread.
Result<std::string> gzip_decompress(std::string_view data, std::size_t max_size);

}  // namespace kaban::protocol
