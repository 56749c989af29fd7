// The encrypted VFS. Built twice from this one file: into kaban::crypto (SQLITE_CORE defined,
// direct SQLite calls) and into the loadable extension kaban_vfs.so (calls through sqlite3_api).
// The on-disk format is specified in docs/store-format.md; keep the two in step.
#include "kaban/crypto/vfs.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3

#include <openssl/crypto.h>

#include "kaban/crypto/aead.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/crypto/hmac.hpp"
#include "kaban/crypto/random.hpp"
#include "openssl_util.hpp"
#include "vfs_read_ahead.hpp"

namespace kaban::crypto {
namespace {

constexpr int kPageSize = static_cast<int>(kStorePageSize);
constexpr int kReserve = static_cast<int>(kStorePageReserve);
constexpr int kNonceSize = static_cast<int>(kGcmNonceSize);
constexpr int kTagSize = static_cast<int>(kGcmTagSize);
static_assert(kNonceSize + kTagSize == kReserve, "the reserved bytes hold exactly nonce and tag");
constexpr int kSealedSize = kPageSize - kReserve;  // bytes of a page that are encrypted
constexpr int kSaltSize = 16;
// Page 1 begins with SQLite's 16-byte magic. It is constant, so the VFS stores the file salt in
// its place and puts the magic back on read; the rest of page 1 is sealed like any page.
constexpr std::array<std::uint8_t, kSaltSize> kSqliteMagic = {
    'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};
// The sector size the VFS reports, and so the size of a rollback journal header. Page images in a
// journal are then the only writes of exactly kPageSize bytes, which is how they are told apart.
constexpr int kSectorSize = 512;
// The journal salt lives in the last bytes of the first journal header, which SQLite zero-fills.
constexpr int kJournalSaltOffset = kSectorSize - kSaltSize;
constexpr int kNoncePoolSize = 256;  // nonces drawn from the CSPRNG at a time

constexpr std::string_view kPageKeyInfo = "kaban store page v1";
constexpr std::string_view kJournalPageKeyInfo = "kaban journal page v1";
constexpr std::string_view kJournalFramingKeyInfo = "kaban journal framing v1";

thread_local std::string t_last_error;
thread_local errc t_last_code{};

int fail(errc code, int sqlite_rc, std::string message) {
  t_last_code = code;
  t_last_error = std::move(message);
  sqlite3_log(sqlite_rc, "kaban: %s", t_last_error.c_str());
  return sqlite_rc;
}

void put_be32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
void put_be64(std::uint8_t* p, std::uint64_t v) {
  put_be32(p, static_cast<std::uint32_t>(v >> 32));
  put_be32(p + 4, static_cast<std::uint32_t>(v));
}
std::uint32_t get_be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

bool all_zero(const std::uint8_t* p, std::size_t n) {
  return std::all_of(p, p + n, [](std::uint8_t b) { return b == 0; });
}

enum class FileKind { main_db, main_journal };

// Random GCM nonces, drawn from the CSPRNG in batches so a page write costs no RAND_bytes call.
class NoncePool {
 public:
  const std::uint8_t* next() {
    if (used_ == kNoncePoolSize) {
      random_fill(pool_);
      used_ = 0;
    }
    return pool_.data() + kNonceSize * used_++;
  }

 private:
  std::array<std::uint8_t, kNonceSize * kNoncePoolSize> pool_{};
  int used_ = kNoncePoolSize;
};

// AES-256-CTR keystream addressed by byte offset, for the journal's framing fields (record page
// numbers and checksums, headers). Those writes are too small to carry a nonce and tag, so they
// are kept confidential but not authenticated; their integrity is SQLite's journal checksums,
// and each page number is bound into the AAD of its page image.
class FramingCipher {
 public:
  explicit FramingCipher(const SecretKey& key) : ctx_(EVP_CIPHER_CTX_new()) {
    if (!ctx_ || EVP_EncryptInit_ex2(ctx_.get(), EVP_aes_256_ctr(), key.bytes().data(), nullptr,
                                     nullptr) != 1) {
      detail::throw_openssl("AES-256-CTR init");
    }
  }

  // XORs `n` bytes at `in` with the keystream at file offset `offset`, into `out`. `scratch`
  // must hold n + 16 bytes.
  void apply(const std::uint8_t* in, std::uint8_t* out, int n, sqlite3_int64 offset,
             std::uint8_t* scratch) {
    const auto skip = static_cast<int>(offset % 16);
    std::array<std::uint8_t, 16> iv{};
    put_be64(iv.data() + 8, static_cast<std::uint64_t>(offset / 16));
    std::memset(scratch, 0, static_cast<std::size_t>(skip));
    std::memcpy(scratch + skip, in, static_cast<std::size_t>(n));
    int len = 0;
    if (EVP_EncryptInit_ex2(ctx_.get(), nullptr, nullptr, iv.data(), nullptr) != 1 ||
        EVP_EncryptUpdate(ctx_.get(), scratch, &len, scratch, skip + n) != 1) {
      detail::throw_openssl("AES-256-CTR");
    }
    std::memcpy(out, scratch + skip, static_cast<std::size_t>(n));
  }

 private:
  detail::CipherCtxPtr ctx_;
};

Result<SecretKey> derive(const SecretKey& data_key, const std::uint8_t* salt,
                         std::string_view info) {
  return hkdf_sha256(data_key.bytes(), ByteView(salt, kSaltSize), as_bytes(info), kDataKeySize);
}

// Everything the VFS keeps per open file, beside SQLite's own file object.
struct FileState {
  FileKind kind;
  std::string path;
  SecretKey data_key{kDataKeySize};
  std::array<std::uint8_t, kSaltSize> salt{};
  bool have_salt = false;
  std::optional<Aes256Gcm> pages;        // page images: the database's, or the journal's
  std::optional<Aes256Gcm> ahead_pages;  // the read-ahead worker's own cipher (database only)
  std::unique_ptr<detail::ReadAhead> read_ahead;  // database only
  std::optional<FramingCipher> framing;           // journal only
  NoncePool nonces;
  std::vector<std::uint8_t> scratch = std::vector<std::uint8_t>(kPageSize + 16);
  // Page 1 as last read or written, and the nonce+tag it had on disk: SQLite reads 16 bytes of the
  // header at the start of every transaction, and a 28-byte compare spares a page decryption.
  std::array<std::uint8_t, kPageSize> page1{};
  std::array<std::uint8_t, kReserve> page1_stamp{};
  bool page1_valid = false;
  // The last 4-byte journal write: a record's page number, written just before its page image.
  sqlite3_int64 last_word_offset = -1;
  std::uint32_t last_word = 0;

  ~FileState() { OPENSSL_cleanse(page1.data(), page1.size()); }

  std::uint8_t* scratch_for(int n) {
    if (scratch.size() < static_cast<std::size_t>(n) + 16)
      scratch.resize(static_cast<std::size_t>(n) + 16);
    return scratch.data();
  }
};

struct KabanFile {
  sqlite3_file base;  // first, so SQLite can treat a KabanFile* as its sqlite3_file*
  FileState* state;
};

sqlite3_file* real_file(sqlite3_file* f) {
  return reinterpret_cast<sqlite3_file*>(reinterpret_cast<KabanFile*>(f) + 1);
}
FileState& state_of(sqlite3_file* f) {
  return *reinterpret_cast<KabanFile*>(f)->state;
}
sqlite3_vfs* base_vfs(sqlite3_vfs* vfs) {
  return static_cast<sqlite3_vfs*>(vfs->pAppData);
}

int real_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xRead(r, buf, n, off);
}
int real_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xWrite(r, buf, n, off);
}
int real_size(sqlite3_file* f, sqlite3_int64* size) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xFileSize(r, size);
}

// ---- the database file ----

// AAD of a database page: file salt, a domain byte and the page number.
std::array<std::uint8_t, kSaltSize + 5> page_aad(const FileState& s, std::uint32_t pgno) {
  std::array<std::uint8_t, kSaltSize + 5> aad{};
  std::memcpy(aad.data(), s.salt.data(), kSaltSize);
  aad[kSaltSize] = 'P';
  put_be32(aad.data() + kSaltSize + 1, pgno);
  return aad;
}

// Authenticates and decrypts, in place, page `pgno` >= 2 as read from disk. On failure the page
// is zeroed. Safe to call from the read-ahead worker with its own cipher.
bool unseal_page(Aes256Gcm& gcm, const FileState& s, std::uint32_t pgno, std::uint8_t* page) {
  std::array<std::uint8_t, kReserve> stamp;
  std::memcpy(stamp.data(), page + kSealedSize, kReserve);
  const auto aad = page_aad(s, pgno);
  if (gcm.open(ByteView(stamp.data(), kNonceSize), aad, ByteView(page, kSealedSize),
               ByteView(stamp.data() + kNonceSize, kTagSize), MutableByteView(page, kSealedSize))) {
    std::memset(page, 0, kPageSize);
    return false;
  }
  std::memset(page + kSealedSize, 0, kReserve);
  return true;
}

// Page 1 keeps the salt where SQLite's magic goes; its cached copy serves header reads.
int unseal_first_page(FileState& s, std::uint8_t* page) {
  std::array<std::uint8_t, kReserve> stamp;
  std::memcpy(stamp.data(), page + kSealedSize, kReserve);
  if (std::memcmp(page, s.salt.data(), kSaltSize) != 0) {
    std::memset(page, 0, kPageSize);
    return fail(errc::damaged, SQLITE_IOERR_DATA,
                "the store is damaged: page 1 of " + s.path + " belongs to another file");
  }
  const auto aad = page_aad(s, 1);
  constexpr int kLength = kSealedSize - kSaltSize;
  if (s.pages->open(ByteView(stamp.data(), kNonceSize), aad, ByteView(page + kSaltSize, kLength),
                    ByteView(stamp.data() + kNonceSize, kTagSize),
                    MutableByteView(page + kSaltSize, kLength))) {
    std::memset(page, 0, kPageSize);
    return fail(errc::damaged, SQLITE_IOERR_DATA,
                "the store is damaged: page 1 of " + s.path + " failed authentication");
  }
  std::memcpy(page, kSqliteMagic.data(), kSaltSize);
  std::memset(page + kSealedSize, 0, kReserve);
  std::memcpy(s.page1.data(), page, kPageSize);
  s.page1_stamp = stamp;
  s.page1_valid = true;
  return SQLITE_OK;
}

// Reads and authenticates page `pgno` into `out` (kPageSize bytes). Returns SQLITE_IOERR_SHORT_READ
// with `out` zeroed for a page past the end of the file, as SQLite expects.
int read_db_page(sqlite3_file* f, std::uint32_t pgno, std::uint8_t* out) {
  FileState& s = state_of(f);
  if (s.read_ahead && pgno > 1) {
    const bool fetched = s.read_ahead->take(pgno, out);
    s.read_ahead->note(pgno);
    if (fetched)
      return SQLITE_OK;
  }
  const sqlite3_int64 off = sqlite3_int64{pgno - 1} * kPageSize;
  int rc = real_read(f, out, kPageSize, off);
  if (rc == SQLITE_IOERR_SHORT_READ) {
    sqlite3_int64 size = 0;
    if (real_size(f, &size) == SQLITE_OK && size <= off)
      return rc;  // past the end: zero page
    std::memset(out, 0, kPageSize);
    return fail(
        errc::damaged, SQLITE_IOERR_DATA,
        "the store is damaged: page " + std::to_string(pgno) + " of " + s.path + " is truncated");
  }
  if (rc != SQLITE_OK)
    return rc;
  if (pgno == 1)
    return unseal_first_page(s, out);
  if (!unseal_page(*s.pages, s, pgno, out)) {
    return fail(errc::damaged, SQLITE_IOERR_DATA,
                "the store is damaged: page " + std::to_string(pgno) + " of " + s.path +
                    " failed authentication (altered, swapped or copied from another file)");
  }
  return SQLITE_OK;
}

// Serves a read of part of page 1 from the cached copy if the page on disk is still the one
// cached (same nonce and tag). Returns false if the page must be read and decrypted.
bool read_page1_cached(sqlite3_file* f, std::uint8_t* out, int n, int in_page) {
  FileState& s = state_of(f);
  if (!s.page1_valid)
    return false;
  std::array<std::uint8_t, kReserve> stamp;
  if (real_read(f, stamp.data(), kReserve, kSealedSize) != SQLITE_OK)
    return false;
  if (std::memcmp(stamp.data(), s.page1_stamp.data(), kReserve) != 0)
    return false;
  std::memcpy(out, s.page1.data() + in_page, static_cast<std::size_t>(n));
  return true;
}

int read_db(sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) {
  auto* out = static_cast<std::uint8_t*>(buf);
  if (offset % kPageSize == 0 && amount == kPageSize) {
    return read_db_page(f, static_cast<std::uint32_t>(offset / kPageSize + 1), out);
  }
  // Partial reads: the database header, and SQLite's change counter check.
  int rc = SQLITE_OK;
  while (amount > 0) {
    const auto pgno = static_cast<std::uint32_t>(offset / kPageSize + 1);
    const int in_page = static_cast<int>(offset % kPageSize);
    const int n = std::min(amount, kPageSize - in_page);
    if (pgno != 1 || !read_page1_cached(f, out, n, in_page)) {
      std::uint8_t* page = state_of(f).scratch_for(kPageSize);
      const int page_rc = read_db_page(f, pgno, page);
      if (page_rc != SQLITE_OK && page_rc != SQLITE_IOERR_SHORT_READ)
        return page_rc;
      if (page_rc == SQLITE_IOERR_SHORT_READ)
        rc = page_rc;
      std::memcpy(out, page + in_page, static_cast<std::size_t>(n));
    }
    out += n;
    offset += n;
    amount -= n;
  }
  return rc;
}

int write_db(sqlite3_file* f, const void* buf, int amount, sqlite3_int64 offset) {
  FileState& s = state_of(f);
  if (amount != kPageSize || offset % kPageSize != 0) {
    return fail(errc::invalid_argument, SQLITE_IOERR_WRITE,
                "a Kaban store takes whole " + std::to_string(kPageSize) +
                    "-byte pages; refused a write of " + std::to_string(amount) + " bytes to " +
                    s.path + " (was the page size changed?)");
  }
  const auto* in = static_cast<const std::uint8_t*>(buf);
  const auto pgno = static_cast<std::uint32_t>(offset / kPageSize + 1);
  if (pgno == 1 && (std::memcmp(in, kSqliteMagic.data(), kSaltSize) != 0 || in[20] != kReserve)) {
    return fail(errc::invalid_argument, SQLITE_IOERR_WRITE,
                "refused to write page 1 of " + s.path + ": it must reserve " +
                    std::to_string(kReserve) + " bytes per page (open it through the kaban VFS)");
  }
  std::uint8_t* sealed = s.scratch_for(kPageSize);
  const int start = pgno == 1 ? kSaltSize : 0;
  const std::uint8_t* nonce = s.nonces.next();
  std::memcpy(sealed + kSealedSize, nonce, kNonceSize);
  const auto aad = page_aad(s, pgno);
  s.pages->seal(ByteView(nonce, kNonceSize), aad, ByteView(in + start, kSealedSize - start),
                MutableByteView(sealed + start, kSealedSize - start),
                MutableByteView(sealed + kSealedSize + kNonceSize, kTagSize));
  if (pgno == 1)
    std::memcpy(sealed, s.salt.data(), kSaltSize);
  const int rc = real_write(f, sealed, kPageSize, offset);
  if (pgno == 1) {
    s.page1_valid = rc == SQLITE_OK;
    if (s.page1_valid) {
      std::memcpy(s.page1.data(), in, kSealedSize);
      std::memset(s.page1.data() + kSealedSize, 0, kReserve);
      std::memcpy(s.page1_stamp.data(), sealed + kSealedSize, kReserve);
    }
  }
  return rc;
}

// Opening a database: a new file gets a fresh salt; an existing one must authenticate page 1,
// which is how a wrong key is told from a damaged store at open rather than at first query.
int open_db(sqlite3_file* f) {
  FileState& s = state_of(f);
  sqlite3_int64 size = 0;
  int rc = real_size(f, &size);
  if (rc != SQLITE_OK)
    return rc;
  if (size == 0) {
    random_fill(s.salt);
  } else {
    if (size < kPageSize || size % kPageSize != 0) {
      return fail(errc::damaged, SQLITE_NOTADB,
                  s.path + " is not a Kaban store, or it is truncated (" + std::to_string(size) +
                      " bytes is not a whole number of pages)");
    }
    rc = real_read(f, s.salt.data(), kSaltSize, 0);
    if (rc != SQLITE_OK)
      return rc;
  }
  s.have_salt = true;
  auto key = derive(s.data_key, s.salt.data(), kPageKeyInfo);
  if (!key)
    return fail(errc::internal, SQLITE_CANTOPEN, "cannot derive the page key");
  s.pages.emplace(key.value());
  s.ahead_pages.emplace(key.value());
  s.read_ahead = std::make_unique<detail::ReadAhead>(
      [f](std::uint32_t first, std::uint32_t count, std::uint8_t* pages, bool* ok) {
        // The base VFS's xRead is a pread on a file SQLite keeps open: safe beside the owner's
        // calls. A short read leaves the pages past the end zeroed, and they fail to unseal.
        FileState& st = state_of(f);
        const sqlite3_int64 off = sqlite3_int64{first - 1} * kPageSize;
        const int read_rc = real_read(f, pages, static_cast<int>(count) * kPageSize, off);
        if (read_rc != SQLITE_OK && read_rc != SQLITE_IOERR_SHORT_READ)
          return;
        for (std::uint32_t i = 0; i < count; ++i) {
          ok[i] = unseal_page(*st.ahead_pages, st, first + i, pages + i * kPageSize);
        }
      });
  if (size == 0)
    return SQLITE_OK;

  std::uint8_t* page = s.scratch_for(kPageSize);
  rc = read_db_page(f, 1, page);
  if (rc != SQLITE_IOERR_DATA)
    return rc;
  // Page 1 does not authenticate. If page 2 does, the key is right and page 1 is damaged.
  if (size >= 2 * kPageSize && read_db_page(f, 2, page) == SQLITE_OK) {
    return fail(errc::damaged, SQLITE_IOERR_DATA,
                "the store is damaged: page 1 of " + s.path + " failed authentication");
  }
  return fail(errc::wrong_key, SQLITE_NOTADB,
              "wrong PIN or key for " + s.path + " (or it is not a Kaban store)");
}

// ---- the rollback journal ----
//
// Same size and offsets as SQLite's own journal, so its crash-safety reasoning holds unchanged:
// page images (the only kPageSize writes) are sealed with AES-GCM in their reserved bytes, every
// other byte is XORed with an offset-addressed keystream, and the journal's random salt sits in
// the zero padding of its first header.

std::array<std::uint8_t, kSaltSize + 13> journal_aad(const FileState& s, sqlite3_int64 offset,
                                                     std::uint32_t pgno) {
  std::array<std::uint8_t, kSaltSize + 13> aad{};
  std::memcpy(aad.data(), s.salt.data(), kSaltSize);
  aad[kSaltSize] = 'J';
  put_be64(aad.data() + kSaltSize + 1, static_cast<std::uint64_t>(offset));
  put_be32(aad.data() + kSaltSize + 9, pgno);
  return aad;
}

int set_journal_salt(FileState& s) {
  auto page_key = derive(s.data_key, s.salt.data(), kJournalPageKeyInfo);
  auto framing_key = derive(s.data_key, s.salt.data(), kJournalFramingKeyInfo);
  if (!page_key || !framing_key)
    return fail(errc::internal, SQLITE_IOERR, "cannot derive keys");
  s.pages.emplace(page_key.value());
  s.framing.emplace(framing_key.value());
  s.have_salt = true;
  return SQLITE_OK;
}

// The page number of the journal record whose page image starts at `offset`: SQLite writes and
// reads it in the 4 bytes just before.
int record_pgno(sqlite3_file* f, sqlite3_int64 offset, std::uint32_t* pgno) {
  FileState& s = state_of(f);
  if (s.last_word_offset == offset - 4) {
    *pgno = s.last_word;
    return SQLITE_OK;
  }
  std::array<std::uint8_t, 4> word;
  const int rc = real_read(f, word.data(), 4, offset - 4);
  if (rc != SQLITE_OK)
    return rc;
  s.framing->apply(word.data(), word.data(), 4, offset - 4, s.scratch_for(4));
  *pgno = get_be32(word.data());
  return SQLITE_OK;
}

int read_journal(sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) {
  FileState& s = state_of(f);
  auto* out = static_cast<std::uint8_t*>(buf);
  int rc = real_read(f, out, amount, offset);
  if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ)
    return rc;
  if (!s.have_salt) {
    // No complete first header: SQLite has not synced this journal, so the database was never
    // touched under it. Reading zeros makes SQLite treat it as an empty journal.
    std::memset(out, 0, static_cast<std::size_t>(amount));
    return rc;
  }
  int valid = amount;
  if (rc == SQLITE_IOERR_SHORT_READ) {
    sqlite3_int64 size = 0;
    if (real_size(f, &size) != SQLITE_OK)
      return SQLITE_IOERR_READ;
    valid = static_cast<int>(std::clamp<sqlite3_int64>(size - offset, 0, amount));
    std::memset(out + valid, 0, static_cast<std::size_t>(amount - valid));
  }
  if (amount == kPageSize && valid == kPageSize) {
    std::uint32_t pgno = 0;
    const int pg_rc = record_pgno(f, offset, &pgno);
    if (pg_rc != SQLITE_OK)
      return pg_rc;
    std::array<std::uint8_t, kReserve> stamp;
    std::memcpy(stamp.data(), out + kSealedSize, kReserve);
    const auto aad = journal_aad(s, offset, pgno);
    if (s.pages->open(ByteView(stamp.data(), kNonceSize), aad, ByteView(out, kSealedSize),
                      ByteView(stamp.data() + kNonceSize, kTagSize),
                      MutableByteView(out, kSealedSize))) {
      std::memset(out, 0, kPageSize);
      return fail(errc::damaged, SQLITE_IOERR_DATA,
                  "the store's journal is damaged: the saved copy of page " + std::to_string(pgno) +
                      " at offset " + std::to_string(offset) + " of " + s.path +
                      " failed authentication");
    }
    std::memset(out + kSealedSize, 0, kReserve);
    return rc;
  }
  s.framing->apply(out, out, valid, offset, s.scratch_for(valid));
  // The salt occupies bytes SQLite wrote as zeros.
  const sqlite3_int64 lo = std::max<sqlite3_int64>(offset, kJournalSaltOffset);
  const sqlite3_int64 hi = std::min<sqlite3_int64>(offset + valid, kSectorSize);
  if (lo < hi)
    std::memset(out + (lo - offset), 0, static_cast<std::size_t>(hi - lo));
  if (amount == 4) {
    s.last_word_offset = offset;
    s.last_word = get_be32(out);
  }
  return rc;
}

int write_journal(sqlite3_file* f, const void* buf, int amount, sqlite3_int64 offset) {
  FileState& s = state_of(f);
  const auto* in = static_cast<const std::uint8_t*>(buf);
  if (offset == 0 && amount == kSectorSize) {
    if (!all_zero(in + kJournalSaltOffset, kSaltSize)) {
      return fail(errc::invalid_argument, SQLITE_IOERR_WRITE,
                  "unexpected journal header layout in " + s.path);
    }
    random_fill(s.salt);
    if (const int rc = set_journal_salt(s); rc != SQLITE_OK)
      return rc;
  } else if (!s.have_salt) {
    return fail(errc::invalid_argument, SQLITE_IOERR_WRITE,
                "journal " + s.path + " written before its header");
  }
  std::uint8_t* sealed = s.scratch_for(amount);
  if (amount == kPageSize) {
    std::uint32_t pgno = 0;
    if (const int rc = record_pgno(f, offset, &pgno); rc != SQLITE_OK)
      return rc;
    const std::uint8_t* nonce = s.nonces.next();
    std::memcpy(sealed + kSealedSize, nonce, kNonceSize);
    const auto aad = journal_aad(s, offset, pgno);
    s.pages->seal(ByteView(nonce, kNonceSize), aad, ByteView(in, kSealedSize),
                  MutableByteView(sealed, kSealedSize),
                  MutableByteView(sealed + kSealedSize + kNonceSize, kTagSize));
    return real_write(f, sealed, kPageSize, offset);
  }
  s.framing->apply(in, sealed, amount, offset, sealed);
  // Keep the salt where SQLite's header has zeros (a write there is the header itself, or one
  // that leaves those bytes zero).
  const sqlite3_int64 lo = std::max<sqlite3_int64>(offset, kJournalSaltOffset);
  const sqlite3_int64 hi = std::min<sqlite3_int64>(offset + amount, kSectorSize);
  if (lo < hi) {
    if (!all_zero(in + (lo - offset), static_cast<std::size_t>(hi - lo))) {
      return fail(errc::invalid_argument, SQLITE_IOERR_WRITE,
                  "unexpected write over the journal header of " + s.path);
    }
    std::memcpy(sealed + (lo - offset), s.salt.data() + (lo - kJournalSaltOffset),
                static_cast<std::size_t>(hi - lo));
  }
  if (amount == 4) {
    s.last_word_offset = offset;
    s.last_word = get_be32(in);
  }
  return real_write(f, sealed, amount, offset);
}

int open_journal(sqlite3_file* f) {
  FileState& s = state_of(f);
  sqlite3_int64 size = 0;
  int rc = real_size(f, &size);
  if (rc != SQLITE_OK)
    return rc;
  if (size < kSectorSize)
    return SQLITE_OK;  // salt comes with the first header write
  rc = real_read(f, s.salt.data(), kSaltSize, kJournalSaltOffset);
  if (rc != SQLITE_OK)
    return rc;
  return set_journal_salt(s);
}

// ---- sqlite3_io_methods ----

int x_close(sqlite3_file* f) {
  // The read-ahead worker reads through the base file: stop it before that closes.
  if (auto* state = reinterpret_cast<KabanFile*>(f)->state)
    state->read_ahead.reset();
  sqlite3_file* r = real_file(f);
  const int rc = r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
  delete reinterpret_cast<KabanFile*>(f)->state;
  reinterpret_cast<KabanFile*>(f)->state = nullptr;
  return rc;
}

// No exception may cross back into SQLite's C code; the only ones possible here are OpenSSL or
// allocation failures, reported as I/O errors.
template <class Fn>
int guarded(int failure_rc, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const std::exception& e) {
    return fail(errc::internal, failure_rc, e.what());
  }
}

int x_read(sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) {
  return guarded(SQLITE_IOERR_READ, [&] {
    return state_of(f).kind == FileKind::main_db ? read_db(f, buf, amount, offset)
                                                 : read_journal(f, buf, amount, offset);
  });
}

int x_write(sqlite3_file* f, const void* buf, int amount, sqlite3_int64 offset) {
  return guarded(SQLITE_IOERR_WRITE, [&] {
    return state_of(f).kind == FileKind::main_db ? write_db(f, buf, amount, offset)
                                                 : write_journal(f, buf, amount, offset);
  });
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  FileState& s = state_of(f);
  if (s.kind == FileKind::main_db) {
    if (size < kPageSize)
      s.page1_valid = false;
  } else if (size < kSectorSize) {
    s.have_salt = false;  // the next header write brings a new salt
  }
  sqlite3_file* r = real_file(f);
  return r->pMethods->xTruncate(r, size);
}

int x_sync(sqlite3_file* f, int flags) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xSync(r, flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real_size(f, size);
}
// Read-ahead follows the lock: pages fetched under a shared lock stay valid until it is released
// (no other process can write meanwhile), and nothing is fetched while this connection writes.
int x_lock(sqlite3_file* f, int level) {
  sqlite3_file* r = real_file(f);
  const int rc = r->pMethods->xLock(r, level);
  FileState& s = state_of(f);
  if (s.read_ahead && level >= SQLITE_LOCK_RESERVED)
    s.read_ahead->set_writing(true);
  return rc;
}
int x_unlock(sqlite3_file* f, int level) {
  sqlite3_file* r = real_file(f);
  FileState& s = state_of(f);
  if (s.read_ahead) {
    if (level < SQLITE_LOCK_RESERVED)
      s.read_ahead->set_writing(false);
    if (level < SQLITE_LOCK_SHARED)
      s.read_ahead->invalidate();
  }
  return r->pMethods->xUnlock(r, level);
}
int x_check_reserved_lock(sqlite3_file* f, int* out) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xCheckReservedLock(r, out);
}

int x_file_control(sqlite3_file* f, int op, void* arg) {
  sqlite3_file* r = real_file(f);
  switch (op) {
    case SQLITE_FCNTL_CHUNK_SIZE:
    case SQLITE_FCNTL_SIZE_HINT:
      // Growing the file with unencrypted zeros would leave pages that fail authentication.
      return SQLITE_OK;
    case SQLITE_FCNTL_VFSNAME: {
      int rc = r->pMethods->xFileControl(r, op, arg);
      char** name = static_cast<char**>(arg);
      *name = sqlite3_mprintf("%s/%z", kVfsName, rc == SQLITE_OK ? *name : nullptr);
      return SQLITE_OK;
    }
    default:
      return r->pMethods->xFileControl(r, op, arg);
  }
}

int x_sector_size(sqlite3_file*) {
  return kSectorSize;
}

int x_device_characteristics(sqlite3_file* f) {
  sqlite3_file* r = real_file(f);
  // Atomic-write capabilities would let SQLite skip the journal or write partial pages.
  constexpr int kUnsupported =
      SQLITE_IOCAP_ATOMIC | SQLITE_IOCAP_ATOMIC512 | SQLITE_IOCAP_ATOMIC1K | SQLITE_IOCAP_ATOMIC2K |
      SQLITE_IOCAP_ATOMIC4K | SQLITE_IOCAP_ATOMIC8K | SQLITE_IOCAP_ATOMIC16K |
      SQLITE_IOCAP_ATOMIC32K | SQLITE_IOCAP_ATOMIC64K | SQLITE_IOCAP_SAFE_APPEND |
      SQLITE_IOCAP_BATCH_ATOMIC;
  return r->pMethods->xDeviceCharacteristics(r) & ~kUnsupported;
}

// Version 1: no shared memory (so no WAL) and no memory mapping (so every read is decrypted).
const sqlite3_io_methods kIoMethods = {1,
                                       x_close,
                                       x_read,
                                       x_write,
                                       x_truncate,
                                       x_sync,
                                       x_file_size,
                                       x_lock,
                                       x_unlock,
                                       x_check_reserved_lock,
                                       x_file_control,
                                       x_sector_size,
                                       x_device_characteristics,
                                       nullptr,
                                       nullptr,
                                       nullptr,
                                       nullptr,
                                       nullptr,
                                       nullptr};

const char* describe_refused(int type) {
  switch (type) {
    case SQLITE_OPEN_WAL:
      return "WAL mode is not supported by a Kaban store; use the rollback journal";
    case SQLITE_OPEN_SUPER_JOURNAL:
      return "a transaction across several attached databases needs a super-journal, which a "
             "Kaban store does not write; commit each database separately";
    default:
      return "temporary files on disk are refused for a Kaban store; set PRAGMA "
             "temp_store=MEMORY";
  }
}

int open_file(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags,
              int* out_flags) {
  auto* kf = reinterpret_cast<KabanFile*>(file);
  kf->base.pMethods = nullptr;
  kf->state = nullptr;
  const int type = flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_TEMP_DB |
                            SQLITE_OPEN_TEMP_JOURNAL | SQLITE_OPEN_TRANSIENT_DB |
                            SQLITE_OPEN_SUBJOURNAL | SQLITE_OPEN_SUPER_JOURNAL | SQLITE_OPEN_WAL);
  if ((type != SQLITE_OPEN_MAIN_DB && type != SQLITE_OPEN_MAIN_JOURNAL) || name == nullptr) {
    return fail(errc::invalid_argument, SQLITE_CANTOPEN, describe_refused(type));
  }
  const char* hexkey = sqlite3_uri_parameter(name, "hexkey");
  auto key_bytes = from_hex(hexkey ? hexkey : "");
  if (!key_bytes || key_bytes.value().size() != kDataKeySize) {
    return fail(errc::invalid_key, SQLITE_CANTOPEN,
                std::string("no data key for ") + name +
                    ": open it as file:PATH?vfs=kaban&hexkey=<64 hex digits>");
  }
  auto state = std::make_unique<FileState>();
  state->kind = type == SQLITE_OPEN_MAIN_DB ? FileKind::main_db : FileKind::main_journal;
  state->path = name;
  std::memcpy(state->data_key.mutable_bytes().data(), key_bytes.value().data(), kDataKeySize);
  OPENSSL_cleanse(key_bytes.value().data(), key_bytes.value().size());

  sqlite3_vfs* base = base_vfs(vfs);
  sqlite3_file* r = real_file(file);
  int rc = base->xOpen(base, name, r, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (r->pMethods)
      r->pMethods->xClose(r);
    return rc;
  }
  kf->state = state.release();
  kf->base.pMethods = &kIoMethods;
  rc = guarded(SQLITE_CANTOPEN, [&] {
    return kf->state->kind == FileKind::main_db ? open_db(file) : open_journal(file);
  });
  if (rc != SQLITE_OK) {
    x_close(file);
    kf->base.pMethods = nullptr;
  }
  return rc;
}

int x_open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  file->pMethods = nullptr;
  return guarded(SQLITE_CANTOPEN, [&] { return open_file(vfs, name, file, flags, out_flags); });
}

// The rest of the VFS is the base VFS's.
int x_delete(sqlite3_vfs* v, const char* name, int sync_dir) {
  return base_vfs(v)->xDelete(base_vfs(v), name, sync_dir);
}
int x_access(sqlite3_vfs* v, const char* name, int flags, int* out) {
  return base_vfs(v)->xAccess(base_vfs(v), name, flags, out);
}
int x_full_pathname(sqlite3_vfs* v, const char* name, int n, char* out) {
  return base_vfs(v)->xFullPathname(base_vfs(v), name, n, out);
}
void* x_dl_open(sqlite3_vfs* v, const char* name) {
  return base_vfs(v)->xDlOpen(base_vfs(v), name);
}
void x_dl_error(sqlite3_vfs* v, int n, char* out) {
  base_vfs(v)->xDlError(base_vfs(v), n, out);
}
void (*x_dl_sym(sqlite3_vfs* v, void* h, const char* sym))(void) {
  return base_vfs(v)->xDlSym(base_vfs(v), h, sym);
}
void x_dl_close(sqlite3_vfs* v, void* h) {
  base_vfs(v)->xDlClose(base_vfs(v), h);
}
int x_randomness(sqlite3_vfs* v, int n, char* out) {
  return base_vfs(v)->xRandomness(base_vfs(v), n, out);
}
int x_sleep(sqlite3_vfs* v, int us) {
  return base_vfs(v)->xSleep(base_vfs(v), us);
}
int x_current_time(sqlite3_vfs* v, double* out) {
  return base_vfs(v)->xCurrentTime(base_vfs(v), out);
}
int x_get_last_error(sqlite3_vfs* v, int n, char* out) {
  return base_vfs(v)->xGetLastError(base_vfs(v), n, out);
}
int x_current_time_int64(sqlite3_vfs* v, sqlite3_int64* out) {
  return base_vfs(v)->xCurrentTimeInt64(base_vfs(v), out);
}

sqlite3_vfs g_vfs{};

// Runs for every new connection in the process; configures the ones whose database is ours.
int configure_connection(sqlite3* db, char** error, const sqlite3_api_routines*) {
  sqlite3_vfs* vfs = nullptr;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) != SQLITE_OK ||
      vfs != &g_vfs) {
    return SQLITE_OK;
  }
  int reserve = kReserve;
  sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
  return sqlite3_exec(db,
                      "PRAGMA page_size=4096; PRAGMA temp_store=MEMORY; "
                      "PRAGMA secure_delete=ON; PRAGMA mmap_size=0;",
                      nullptr, nullptr, error);
}

int register_now() {
  sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
  if (base == nullptr)
    return SQLITE_ERROR;
  g_vfs.iVersion = 2;
  g_vfs.szOsFile = static_cast<int>(sizeof(KabanFile)) + base->szOsFile;
  g_vfs.mxPathname = base->mxPathname;
  g_vfs.zName = kVfsName;
  g_vfs.pAppData = base;
  g_vfs.xOpen = x_open;
  g_vfs.xDelete = x_delete;
  g_vfs.xAccess = x_access;
  g_vfs.xFullPathname = x_full_pathname;
  g_vfs.xDlOpen = x_dl_open;
  g_vfs.xDlError = x_dl_error;
  g_vfs.xDlSym = x_dl_sym;
  g_vfs.xDlClose = x_dl_close;
  g_vfs.xRandomness = x_randomness;
  g_vfs.xSleep = x_sleep;
  g_vfs.xCurrentTime = x_current_time;
  g_vfs.xGetLastError = x_get_last_error;
  g_vfs.xCurrentTimeInt64 = x_current_time_int64;
  int rc = sqlite3_vfs_register(&g_vfs, 0);
  if (rc == SQLITE_OK) {
    rc = sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(&configure_connection));
  }
  return rc;
}

}  // namespace

// Used by the loadable extension's entry point (vfs_extension.cpp).
int register_vfs_with_sqlite() {
  static std::once_flag once;
  static int rc = SQLITE_OK;
  std::call_once(once, [] { rc = register_now(); });
  return rc;
}

Result<void> register_vfs() {
  if (register_vfs_with_sqlite() != SQLITE_OK)
    return errc::internal;
  return ok();
}

std::string store_uri(const std::filesystem::path& path, const SecretKey& data_key) {
  std::string uri = "file:";
  for (const char c : path.string()) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '%' || c == '?' || c == '#' || c == '&' || u < 0x20 || u >= 0x7f) {
      static constexpr char kDigits[] = "0123456789abcdef";
      uri += '%';
      uri += kDigits[u >> 4];
      uri += kDigits[u & 0x0f];
    } else {
      uri += c;
    }
  }
  uri += "?vfs=";
  uri += kVfsName;
  uri += "&hexkey=";
  uri += to_hex(data_key.bytes());
  return uri;
}

std::string vfs_last_error() {
  return t_last_error;
}

std::error_code vfs_last_error_code() {
  return t_last_error.empty() ? std::error_code{} : make_error_code(t_last_code);
}

void clear_vfs_error() {
  t_last_error.clear();
  t_last_code = {};
}

}  // namespace kaban::crypto
