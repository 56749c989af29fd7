#include "kaban/crypto/random.hpp"

#include <climits>

#include <openssl/rand.h>

#include "openssl_util.hpp"

namespace kaban::crypto {

void random_fill(MutableByteView out) {
  // RAND_bytes takes an int; fill in slices so any span size works.
  std::size_t done = 0;
  while (done < out.size()) {
    const std::size_t n = std::min<std::size_t>(out.size() - done, INT_MAX);
    if (RAND_bytes(out.data() + done, static_cast<int>(n)) != 1)
      detail::throw_openssl("RAND_bytes");
    done += n;
  }
}

Bytes random_bytes(std::size_t size) {
  Bytes out(size);
  random_fill(out);
  return out;
}

}  // namespace kaban::crypto
