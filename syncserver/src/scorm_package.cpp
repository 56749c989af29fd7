#include "kaban/server/scorm_package.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include <zip.h>
#include <pugixml.hpp>

#include "kaban/protocol/manifest.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace fs = std::filesystem;
namespace {

constexpr std::size_t kReadPiece = 64 * 1024;
constexpr std::size_t kMaxShownName = 200;
constexpr mode_t kFolderMode = 0700;
constexpr mode_t kFileMode = 0600;

// What to do about a package that is unsafe to unpack, as opposed to one that is merely wrong.
constexpr const char* kUnsafe =
    "; nothing was imported. Do not use this package: ask its author for a clean export";
constexpr const char* kFixManifest =
    "; nothing was imported. Correct imsmanifest.xml and zip again";

std::error_code refuse(std::string& why, errc code, std::string message) {
  why = std::move(message);
  return code;
}

// A name from the package as a message shows it: quoted, control bytes as \xNN, cut short.
std::string shown(std::string_view text) {
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < kMaxShownName; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxShownName)
    out += "...";
  return out + "\"";
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front()))
    text.remove_prefix(1);
  while (!text.empty() && is_space(text.back()))
    text.remove_suffix(1);
  return text;
}

std::string_view last_segment(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Length of the well-formed UTF-8 sequence `s` starts with, or 0 (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view s) {
  if (s.empty())
    return 0;
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = byte(0);
  if (c < 0x80)
    return 1;
  std::size_t n = 0;
  unsigned char low = 0x80, high = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    low = c == 0xe0 ? 0xa0 : 0x80;
    high = c == 0xed ? 0x9f : 0xbf;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    low = c == 0xf0 ? 0x90 : 0x80;
    high = c == 0xf4 ? 0x8f : 0xbf;
  } else {
    return 0;
  }
  if (s.size() < n || byte(1) < low || byte(1) > high)
    return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (byte(i) < 0x80 || byte(i) > 0xbf)
      return 0;
  return n;
}

bool is_utf8(std::string_view s) {
  while (!s.empty()) {
    const std::size_t n = utf8_sequence(s);
    if (n == 0)
      return false;
    s.remove_prefix(n);
  }
  return true;
}

// Text from the manifest as a title or description: whitespace and control characters become
// single spaces, bytes that are not UTF-8 become U+FFFD (the signed manifest is JSON, which must
// be UTF-8), cut to at most `max_bytes` between characters.
std::string clean_text(std::string_view text, std::size_t max_bytes) {
  std::string out;
  bool space = false;
  while (!text.empty()) {
    const std::size_t n = utf8_sequence(text);
    const std::string_view piece = n == 0 ? "\xef\xbf\xbd" : text.substr(0, n);
    text.remove_prefix(n == 0 ? 1 : n);
    if (piece.size() == 1 &&
        (static_cast<unsigned char>(piece[0]) < 0x20 || piece[0] == 0x7f || piece[0] == ' ')) {
      space = !out.empty();
      continue;
    }
    const std::size_t needed = piece.size() + (space ? 1 : 0);
    if (out.size() + needed > max_bytes)
      break;
    if (space)
      out += ' ';
    out += piece;
    space = false;
  }
  return out;
}

// `raw` as a course or lesson id: lower-cased, each run of characters outside [a-z0-9._-] one
// '-', leading characters other than a letter or digit dropped, cut to 64, a trailing '-'
// dropped. "" when nothing is left.
std::string derive_id(std::string_view raw) {
  std::string id;
  bool replaced = false;
  for (char c : raw) {
    c = ascii_lower(c);
    const bool keep =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (keep)
      id += c;
    else if (!replaced)
      id += '-';
    replaced = !keep;
  }
  const auto first =
      std::find_if(id.begin(), id.end(), [](char c) { return std::isalnum(c) != 0; });
  id.erase(id.begin(), first);
  if (id.size() > 64)
    id.resize(64);
  while (!id.empty() && id.back() == '-')
    id.pop_back();
  return id;
}

// ---------------------------------------------------------------------------------------------
// The zip

struct ZipDiscard {
  void operator()(zip_t* zip) const noexcept { zip_discard(zip); }
};
using Zip = std::unique_ptr<zip_t, ZipDiscard>;

struct ZipFileClose {
  void operator()(zip_file_t* file) const noexcept { zip_fclose(file); }
};
using ZipFile = std::unique_ptr<zip_file_t, ZipFileClose>;

// A file descriptor closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  /// Closes now, reporting what close() says (a write error may show only here).
  int close() { return ::close(std::exchange(fd_, -1)); }

 private:
  void reset() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }
  int fd_;
};

// A file entry of the package whose name and declared sizes passed the checks.
struct Entry {
  zip_uint64_t index = 0;
  std::string name;  // as the package names it, for messages
  std::string path;  // the content path it unpacks to
  std::uint64_t declared_size = 0;
  std::uint64_t compressed_size = 0;
};

// What the package holds, checked, before anything is unpacked.
struct PackageIndex {
  std::vector<Entry> files;                                 // in zip order
  std::map<std::string, std::size_t, std::less<>> by_path;  // path -> position in `files`
  std::map<std::string, std::string, std::less<>> folders;  // folder -> an entry that makes it
  std::uint64_t declared_total = 0;
};

std::string zip_error_text(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string text = zip_error_strerror(&error);
  zip_error_fini(&error);
  return text;
}

Result<Zip> open_package(const fs::path& package, std::uint64_t& size, std::string& why) {
  struct stat st {};
  if (::stat(package.c_str(), &st) != 0) {
    const int error = errno;
    return refuse(why, errc::package_invalid,
                  "cannot read " + package.string() + ": " + std::strerror(error) +
                      "; check the path to the package; nothing was imported");
  }
  if (!S_ISREG(st.st_mode)) {
    return refuse(why, errc::package_invalid,
                  package.string() +
                      " is not a file; give the path to the package's .zip file; nothing was "
                      "imported");
  }
  if (st.st_size == 0) {
    return refuse(why, errc::package_invalid,
                  package.string() +
                      " is empty (0 bytes); export the SCORM package from its authoring tool "
                      "again; nothing was imported");
  }
  size = static_cast<std::uint64_t>(st.st_size);
  int code = 0;
  zip_t* zip = ::zip_open(package.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (zip != nullptr)
    return Zip(zip);
  if (code == ZIP_ER_NOZIP) {
    return refuse(why, errc::package_invalid,
                  package.string() +
                      " is not a zip file; a SCORM package is a .zip with imsmanifest.xml at its "
                      "root; nothing was imported");
  }
  if (code == ZIP_ER_INCONS || code == ZIP_ER_CRC) {
    return refuse(why, errc::package_invalid,
                  package.string() + " is a damaged zip file (" + zip_error_text(code) +
                      "); copy or export the package again; nothing was imported");
  }
  return refuse(why, errc::package_invalid,
                "cannot open " + package.string() + " as a zip file: " + zip_error_text(code) +
                    "; nothing was imported");
}

// The content path an entry name unpacks to: '\' read as '/', a folder's trailing '/' removed.
// Anything that could place a file outside the staging folder, or that a device could not store,
// is refused here, before a byte is written.
Result<std::string> entry_path(std::string_view raw_name, std::string_view name, std::string& why) {
  const std::string where = "entry " + shown(raw_name);
  if (raw_name.empty())
    return refuse(why, errc::package_invalid, std::string("an entry has an empty name") + kUnsafe);
  for (const char c : raw_name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return refuse(why, errc::package_invalid,
                    where + " has a control character in its name" + kUnsafe);
    }
  }
  if (!is_utf8(name)) {
    return refuse(why, errc::package_invalid,
                  where +
                      " has a name that is not UTF-8; zip the package again with a tool that "
                      "stores UTF-8 names; nothing was imported");
  }
  std::string path(name);
  std::replace(path.begin(), path.end(), '\\', '/');
  if (path.size() >= 2 && path[1] == ':' && std::isalpha(static_cast<unsigned char>(path[0]))) {
    return refuse(why, errc::package_invalid,
                  where + " is an absolute Windows path (it starts with a drive letter)" + kUnsafe);
  }
  if (path.front() == '/')
    return refuse(why, errc::package_invalid, where + " is an absolute path" + kUnsafe);
  if (path.back() == '/')
    path.pop_back();
  std::vector<std::string_view> segments;
  for (std::size_t start = 0; start <= path.size();) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    segments.push_back(std::string_view(path).substr(start, end - start));
    start = end + 1;
  }
  if (std::find(segments.begin(), segments.end(), "..") != segments.end()) {
    return refuse(why, errc::package_invalid,
                  where + " leaves the package (a \"..\" segment)" + kUnsafe);
  }
  for (const std::string_view segment : segments) {
    if (segment.empty() || segment == ".") {
      return refuse(why, errc::package_invalid,
                    where + " has an empty or \".\" segment in its path" + kUnsafe);
    }
  }
  if (!protocol::is_valid_content_path(path)) {
    return refuse(why, errc::package_invalid,
                  where +
                      " has a path devices cannot store (longer than 1024 bytes); shorten it and "
                      "zip again; nothing was imported");
  }
  return path;
}

// Records `path` and the folders above it, refusing a name another entry already unpacks to and
// a file where a folder must be (or the reverse).
Result<void> add_to_index(PackageIndex& index, Entry entry, bool folder, std::string& why) {
  const std::string& path = entry.path;
  const auto clash = [&](const std::string& other) {
    return refuse(why, errc::package_invalid,
                  "entries " + shown(other) + " and " + shown(entry.name) + " both unpack to " +
                      shown(path) +
                      " (once '\\' is read as '/'), as a file or a folder; rename one and zip "
                      "again; nothing was imported");
  };
  if (const auto f = index.by_path.find(path); f != index.by_path.end())
    return clash(index.files[f->second].name);
  if (!folder) {
    if (const auto d = index.folders.find(path); d != index.folders.end())
      return clash(d->second);
  }
  for (std::size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    if (const auto f = index.by_path.find(parent); f != index.by_path.end()) {
      return refuse(why, errc::package_invalid,
                    "entry " + shown(entry.name) + " is inside the folder " + shown(parent) +
                        ", but entry " + shown(index.files[f->second].name) +
                        " is a file of that name; rename one and zip again; nothing was "
                        "imported");
    }
    index.folders.emplace(parent, entry.name);
  }
  if (folder) {
    index.folders.emplace(path, entry.name);
  } else {
    index.by_path.emplace(path, index.files.size());
    index.files.push_back(std::move(entry));
  }
  return ok();
}

std::uint64_t saturating_multiply(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a)
    return std::numeric_limits<std::uint64_t>::max();
  return a * b;
}

// Reads the central directory and checks every entry: its name, its type, and the sizes it
// declares against `limits`. Nothing is decompressed here.
Result<PackageIndex> index_package(zip_t* zip, std::uint64_t package_size,
                                   const ScormLimits& limits, std::string& why) {
  const zip_int64_t count = zip_get_num_entries(zip, 0);
  if (count < 0)
    return refuse(why, errc::package_invalid,
                  "the package's list of entries cannot be read; copy or export the package "
                  "again; nothing was imported");
  if (static_cast<std::uint64_t>(count) > limits.max_entries) {
    return refuse(why, errc::package_invalid,
                  "the package has " + std::to_string(count) + " entries; the limit is " +
                      std::to_string(limits.max_entries) +
                      "; nothing was imported. Split the course into several packages");
  }
  PackageIndex index;
  for (zip_uint64_t i = 0; i < static_cast<zip_uint64_t>(count); ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    const bool stated = zip_stat_index(zip, i, 0, &st) == 0;
    const char* raw = zip_get_name(zip, i, ZIP_FL_ENC_RAW);
    if (!stated || raw == nullptr || (st.valid & ZIP_STAT_NAME) == 0 ||
        (st.valid & ZIP_STAT_SIZE) == 0 || (st.valid & ZIP_STAT_COMP_SIZE) == 0) {
      return refuse(why, errc::package_invalid,
                    "entry " + std::to_string(i + 1) + " of the package cannot be read (" +
                        zip_strerror(zip) +
                        "); copy or export the package again; nothing was imported");
    }
    Entry entry;
    entry.index = i;
    entry.name = raw;
    KABAN_TRY(path, entry_path(raw, st.name, why));
    entry.path = std::move(path);
    const std::string where = "entry " + shown(entry.name);

    // Unix zip tools keep the file's mode in the upper 16 bits of the external attributes; other
    // systems leave them 0. A link is refused whatever system made the zip.
    zip_uint8_t system = 0;
    zip_uint32_t attributes = 0;
    if (zip_file_get_external_attributes(zip, i, 0, &system, &attributes) != 0)
      attributes = 0;
    const auto type = static_cast<mode_t>(attributes >> 16) & S_IFMT;
    if (type == S_IFLNK) {
      return refuse(
          why, errc::package_invalid,
          where + " is a symbolic link; a package holds files and folders only" + kUnsafe);
    }
    if (type != 0 && type != S_IFREG && type != S_IFDIR) {
      return refuse(why, errc::package_invalid,
                    where + " is a special file (a device, pipe or socket)" + kUnsafe);
    }
    const bool folder = type == S_IFDIR || std::string_view(raw).ends_with('/') ||
                        std::string_view(raw).ends_with('\\');
    if (folder) {
      KABAN_TRYV(add_to_index(index, std::move(entry), true, why));
      continue;
    }
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) != 0 && st.encryption_method != ZIP_EM_NONE) {
      return refuse(why, errc::package_invalid,
                    where +
                        " is encrypted; export the package again without a password; nothing "
                        "was imported");
    }
    if ((st.valid & ZIP_STAT_COMP_METHOD) != 0 &&
        zip_compression_method_supported(st.comp_method, 0) == 0) {
      return refuse(why, errc::package_invalid,
                    where + " is compressed with method " + std::to_string(st.comp_method) +
                        ", which this server cannot unpack; zip the package again with the usual "
                        "(deflate) compression; nothing was imported");
    }
    entry.declared_size = st.size;
    entry.compressed_size = st.comp_size;
    if (entry.declared_size > limits.max_entry_bytes) {
      return refuse(why, errc::package_invalid,
                    where + " would unpack to " + std::to_string(entry.declared_size) +
                        " bytes; the limit for one file is " +
                        std::to_string(limits.max_entry_bytes) + "; nothing was imported");
    }
    if (entry.declared_size > limits.expansion_allowance &&
        entry.declared_size > saturating_multiply(limits.max_expansion, entry.compressed_size)) {
      return refuse(why, errc::package_invalid,
                    where + " would expand from " + std::to_string(entry.compressed_size) + " to " +
                        std::to_string(entry.declared_size) + " bytes, more than " +
                        std::to_string(limits.max_expansion) + " times (a zip bomb?)" + kUnsafe);
    }
    index.declared_total += entry.declared_size;  // each at most max_entry_bytes: no overflow
    if (index.declared_total > limits.max_total_bytes) {
      return refuse(why, errc::package_invalid,
                    "the package would unpack to more than " +
                        std::to_string(limits.max_total_bytes) +
                        " bytes, the limit for a package; nothing was imported. Split the course "
                        "into several packages");
    }
    KABAN_TRYV(add_to_index(index, std::move(entry), false, why));
  }
  if (index.declared_total > limits.expansion_allowance &&
      index.declared_total > saturating_multiply(limits.max_expansion, package_size)) {
    return refuse(why, errc::package_invalid,
                  "the package would expand from " + std::to_string(package_size) + " to " +
                      std::to_string(index.declared_total) + " bytes, more than " +
                      std::to_string(limits.max_expansion) + " times (a zip bomb?)" + kUnsafe);
  }
  return index;
}

// How many bytes an entry may produce, and the sentence that says so when it tries to produce
// more.
struct ByteLimit {
  std::uint64_t bytes = std::numeric_limits<std::uint64_t>::max();
  std::string exceeded;

  void tighten(std::uint64_t limit, const std::string& sentence) {
    if (limit < bytes) {
      bytes = limit;
      exceeded = sentence;
    }
  }
};

// Decompresses `entry` piece by piece into `sink`, counting the bytes as they come: a piece that
// would take the count beyond `limit` is refused before `sink` sees it, so a zip bomb stops at
// the limit. An entry that ends short of its declared size is refused as damaged.
template <class Sink>
Result<std::uint64_t> unpack_entry(zip_t* zip, const Entry& entry, const ByteLimit& limit,
                                   std::vector<char>& buffer, Sink&& sink, std::string& why) {
  const std::string where = "entry " + shown(entry.name);
  ZipFile file(zip_fopen_index(zip, entry.index, 0));
  if (!file) {
    return refuse(why, errc::package_invalid,
                  where + " cannot be unpacked (" + zip_strerror(zip) +
                      "); copy or export the package again; nothing was imported");
  }
  std::uint64_t count = 0;
  for (;;) {
    const zip_int64_t n = zip_fread(file.get(), buffer.data(), buffer.size());
    if (n < 0) {
      return refuse(why, errc::package_invalid,
                    where + " is damaged (" + zip_file_strerror(file.get()) +
                        "); copy or export the package again; nothing was imported");
    }
    if (n == 0)
      break;
    if (static_cast<std::uint64_t>(n) > limit.bytes - count)
      return refuse(why, errc::package_invalid, limit.exceeded);
    KABAN_TRYV(sink(buffer.data(), static_cast<std::size_t>(n)));
    count += static_cast<std::uint64_t>(n);
  }
  if (count != entry.declared_size) {
    return refuse(why, errc::package_invalid,
                  where + " holds " + std::to_string(count) + " bytes but declares " +
                      std::to_string(entry.declared_size) +
                      "; the package is damaged: copy or export it again; nothing was imported");
  }
  return count;
}

std::string os_error_text(int error) {
  if (error == ENOSPC || error == EDQUOT)
    return "the disk is full; free some space and import again";
  return std::strerror(error);
}

// Creates `path` below the folder `root`, making its folders one at a time: each is opened with
// O_NOFOLLOW and the file itself with O_EXCL|O_NOFOLLOW, so nothing in the staging folder, not
// even a link that appeared there, can send a write outside it or onto an existing file.
Result<Fd> create_file(int root, const fs::path& staging, const std::string& path,
                       std::string& why) {
  const auto fail = [&](const std::string& what) {
    const int error = errno;
    return refuse(why, errc::storage_failed,
                  "cannot " + what + " " + (staging / path).string() +
                      " while unpacking: " + os_error_text(error) + "; nothing was imported");
  };
  Fd folder;
  int at = root;
  std::size_t start = 0;
  for (std::size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', start)) {
    const std::string name = path.substr(start, slash - start);
    if (::mkdirat(at, name.c_str(), kFolderMode) != 0 && errno != EEXIST)
      return fail("create the folder of");
    Fd next(::openat(at, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid())
      return fail("open the folder of");
    folder = std::move(next);
    at = folder.get();
    start = slash + 1;
  }
  Fd file(::openat(at, path.c_str() + start, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   kFileMode));
  if (!file.valid())
    return fail("create");
  return file;
}

Result<void> write_all(int fd, const char* data, std::size_t size, const fs::path& file,
                       std::string& why) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : EIO;
      return refuse(why, errc::storage_failed,
                    "cannot write " + file.string() + " while unpacking: " + os_error_text(error) +
                        "; nothing was imported");
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return ok();
}

// ---------------------------------------------------------------------------------------------
// imsmanifest.xml

// Elements and attributes are matched on their local names, whatever their prefix (adlcp:,
// imscp:, none), and case-insensitively (SCORM 1.2 writes scormtype, SCORM 2004 scormType).
bool has_local_name(const char* qualified, std::string_view name) {
  std::string_view text(qualified);
  if (const auto colon = text.rfind(':'); colon != std::string_view::npos)
    text.remove_prefix(colon + 1);
  return iequals(text, name);
}

pugi::xml_node child_element(pugi::xml_node node, std::string_view name) {
  for (pugi::xml_node c : node.children())
    if (c.type() == pugi::node_element && has_local_name(c.name(), name))
      return c;
  return {};
}

std::vector<pugi::xml_node> child_elements(pugi::xml_node node, std::string_view name) {
  std::vector<pugi::xml_node> found;
  for (pugi::xml_node c : node.children())
    if (c.type() == pugi::node_element && has_local_name(c.name(), name))
      found.push_back(c);
  return found;
}

std::string attribute(pugi::xml_node node, std::string_view name) {
  for (pugi::xml_attribute a : node.attributes())
    if (has_local_name(a.name(), name))
      return std::string(trim(a.value()));
  return {};
}

// The text of a <title>, <langstring> and the like.
std::string element_text(pugi::xml_node node, std::size_t max_bytes) {
  return node ? clean_text(node.child_value(), max_bytes) : std::string();
}

// A resource of the manifest, with the xml:base values in force on it, outermost first.
struct Resource {
  pugi::xml_node node;
  std::string identifier;
  std::vector<std::string> bases;
  // Its <file>s as content paths, resolved once however many lessons use it.
  bool resolved = false;
  std::vector<std::string> files;
};

// What the manifest describes, mapped to a course; the files are checked to be in the package.
struct CoursePlan {
  std::string id;
  std::string title;
  std::string description;
  std::vector<protocol::Lesson> lessons;
};

bool has_uri_scheme(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon < 2)  // "C:" is a drive, handled as absolute
    return false;
  if (!std::isalpha(static_cast<unsigned char>(text[0])))
    return false;
  return std::all_of(
      text.begin() + 1, text.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '.';
      });
}

std::string percent_decode(std::string_view text) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    c = ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

class ManifestReader {
 public:
  ManifestReader(const PackageIndex& index, const ScormLimits& limits, std::string& why)
      : index_(index), limits_(limits), why_(why) {}

  Result<CoursePlan> read(std::string_view text, std::string_view course_id_override) {
    pugi::xml_document document;
    const pugi::xml_parse_result parsed =
        document.load_buffer(text.data(), text.size(), pugi::parse_default | pugi::parse_doctype);
    if (!parsed) {
      return refuse(why_, errc::package_invalid,
                    "imsmanifest.xml is not well-formed XML: " + std::string(parsed.description()) +
                        " at " + position_of(text, static_cast<std::size_t>(parsed.offset)) +
                        kFixManifest);
    }
    for (pugi::xml_node node : document.children()) {
      if (node.type() == pugi::node_doctype) {
        return refuse(why_, errc::package_invalid,
                      "imsmanifest.xml has a <!DOCTYPE> declaration, which Kaban does not read "
                      "(a SCORM manifest needs none); remove it" +
                          std::string(kFixManifest));
      }
    }
    const pugi::xml_node manifest = document.document_element();
    if (!has_local_name(manifest.name(), "manifest")) {
      return refuse(why_, errc::package_invalid,
                    "the root element of imsmanifest.xml is <" + std::string(manifest.name()) +
                        ">, not <manifest>: this is not a SCORM manifest; nothing was imported");
    }
    KABAN_TRYV(read_resources(manifest));
    const std::string identifier = clean_text(attribute(manifest, "identifier"), kMaxTitleSize);
    KABAN_TRY(organization, default_organization(manifest));

    CoursePlan plan;
    KABAN_TRY(id, course_id(identifier, course_id_override));
    plan.id = std::move(id);
    plan.title = element_text(child_element(organization, "title"), kMaxTitleSize);
    if (plan.title.empty())
      plan.title = identifier.empty() ? plan.id : identifier;
    plan.description = description(manifest);
    KABAN_TRY(lessons, read_items(organization));
    plan.lessons = std::move(lessons);
    return plan;
  }

 private:
  static std::string position_of(std::string_view text, std::size_t offset) {
    offset = std::min(offset, text.size());
    const auto before = text.substr(0, offset);
    const std::size_t line =
        1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
    const auto newline = before.rfind('\n');
    const std::size_t column = offset - (newline == std::string_view::npos ? 0 : newline + 1) + 1;
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
  }

  Result<std::string> course_id(const std::string& identifier, std::string_view override_id) {
    if (!override_id.empty()) {
      if (!protocol::is_valid_id(override_id)) {
        return refuse(why_, errc::course_invalid,
                      "the course id " + shown(override_id) +
                          " must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter "
                          "or digit; nothing was imported");
      }
      return std::string(override_id);
    }
    std::string id = derive_id(identifier);
    if (!protocol::is_valid_id(id)) {
      return refuse(why_, errc::course_invalid,
                    "the manifest's identifier " + shown(identifier) +
                        " makes no course id; give one with --id (1 to 64 of a-z, 0-9, '.', '_', "
                        "'-'); nothing was imported");
    }
    return id;
  }

  // lom/general/description/langstring of the manifest's own metadata, when it is there.
  static std::string description(pugi::xml_node manifest) {
    pugi::xml_node node = child_element(manifest, "metadata");
    for (const char* name : {"lom", "general", "description"})
      node = child_element(node, name);
    if (!node)
      return {};
    const pugi::xml_node langstring = child_element(node, "langstring");
    return element_text(langstring ? langstring : node, kMaxDescriptionSize);
  }

  Result<pugi::xml_node> default_organization(pugi::xml_node manifest) {
    const pugi::xml_node organizations = child_element(manifest, "organizations");
    const auto all = child_elements(organizations, "organization");
    if (all.empty()) {
      return refuse(why_, errc::package_invalid,
                    "imsmanifest.xml has no <organization>, so there are no lessons to import; "
                    "export the package with its course structure; nothing was imported");
    }
    const std::string wanted = attribute(organizations, "default");
    if (wanted.empty())
      return all.front();
    for (const pugi::xml_node organization : all)
      if (attribute(organization, "identifier") == wanted)
        return organization;
    return refuse(why_, errc::package_invalid,
                  "<organizations default=" + shown(wanted) +
                      "> names no organization of imsmanifest.xml" + kFixManifest);
  }

  Result<void> read_resources(pugi::xml_node manifest) {
    std::vector<std::string> outer;
    if (std::string base = attribute(manifest, "base"); !base.empty())
      outer.push_back(std::move(base));
    for (const pugi::xml_node resources : child_elements(manifest, "resources")) {
      std::vector<std::string> bases = outer;
      if (std::string base = attribute(resources, "base"); !base.empty())
        bases.push_back(std::move(base));
      for (const pugi::xml_node node : child_elements(resources, "resource")) {
        Resource resource;
        resource.node = node;
        resource.identifier = attribute(node, "identifier");
        resource.bases = bases;
        if (std::string base = attribute(node, "base"); !base.empty())
          resource.bases.push_back(std::move(base));
        if (resource.identifier.empty()) {
          return refuse(
              why_, errc::package_invalid,
              "a <resource> of imsmanifest.xml has no identifier" + std::string(kFixManifest));
        }
        const std::string identifier = resource.identifier;
        if (!resources_.emplace(identifier, std::move(resource)).second) {
          return refuse(why_, errc::package_invalid,
                        "two resources of imsmanifest.xml have the identifier " +
                            shown(identifier) + kFixManifest);
        }
      }
    }
    return ok();
  }

  // An href of the manifest as a content path: the xml:base values in force and the href joined
  // as folders, query and fragment removed, "." dropped and ".." applied.
  Result<std::string> resolve(const std::vector<std::string>& bases, std::string_view href,
                              const std::string& where) {
    href = trim(href);
    href = href.substr(0, href.find_first_of("?#"));
    if (href.empty())
      return refuse(why_, errc::package_invalid, where + " has an empty href" + kFixManifest);
    std::vector<std::string> segments;
    // A base names a folder whether or not it ends in '/': the packages that use xml:base mean
    // it so, though a URI resolver would drop its last segment.
    const auto add = [&](std::string_view part) -> Result<void> {
      std::string text(part);
      std::replace(text.begin(), text.end(), '\\', '/');
      if (has_uri_scheme(text)) {
        return refuse(why_, errc::package_invalid,
                      where + " points to " + shown(text) +
                          ", outside the package; devices show only what the package holds, "
                          "so put the file in the package" +
                          kFixManifest);
      }
      if (text.front() == '/' ||
          (text.size() >= 2 && text[1] == ':' && std::isalpha(static_cast<unsigned char>(text[0]))))
        return refuse(why_, errc::package_invalid,
                      where + " names the absolute path " + shown(text) +
                          "; paths in a package are relative to its root" + kFixManifest);
      for (std::size_t start = 0; start <= text.size();) {
        const std::size_t end = std::min(text.find('/', start), text.size());
        const std::string segment = text.substr(start, end - start);
        start = end + 1;
        if (segment.empty() || segment == ".")
          continue;
        if (segment != "..") {
          segments.push_back(segment);
          continue;
        }
        if (segments.empty()) {
          return refuse(
              why_, errc::package_invalid,
              where + " names " + shown(href) + ", which leaves the package" + kFixManifest);
        }
        segments.pop_back();
      }
      return ok();
    };
    for (const std::string& base : bases) {
      KABAN_TRYV(add(base));
    }
    KABAN_TRYV(add(href));
    if (segments.empty())
      return refuse(why_, errc::package_invalid,
                    where + " names " + shown(href) + ", which is no file" + kFixManifest);
    std::string path;
    for (const std::string& segment : segments)
      path += (path.empty() ? "" : "/") + segment;
    return path;
  }

  // `path` as the package holds it (as written, or percent-decoded), or a refusal naming it.
  Result<std::string> find_file(const std::string& path, const std::string& where) {
    if (index_.by_path.count(path) != 0)
      return path;
    if (path.find('%') != std::string::npos) {
      std::string decoded = percent_decode(path);
      if (index_.by_path.count(decoded) != 0)
        return decoded;
    }
    std::string hint;
    for (const auto& [held, position] : index_.by_path) {
      if (iequals(held, path)) {
        hint = " (the package has " + shown(held) + "; names are case-sensitive)";
        break;
      }
    }
    if (index_.folders.count(path) != 0)
      hint = " (that is a folder of the package)";
    return refuse(why_, errc::package_invalid,
                  where + " names the file " + shown(path) + ", which is not in the package" +
                      hint +
                      "; add the file or correct imsmanifest.xml and zip again; nothing "
                      "was imported");
  }

  Result<const std::vector<std::string>*> files_of(Resource& resource) {
    if (resource.resolved)
      return &resource.files;
    const std::string where = "resource " + shown(resource.identifier);
    std::set<std::string> seen;
    for (const pugi::xml_node file : child_elements(resource.node, "file")) {
      KABAN_TRY(resolved, resolve(resource.bases, attribute(file, "href"), where + " <file>"));
      KABAN_TRY(path, find_file(resolved, where + " <file>"));
      if (seen.insert(path).second)
        resource.files.push_back(std::move(path));
    }
    resource.resolved = true;
    return &resource.files;
  }

  Resource* find_resource(const std::string& identifier) {
    const auto it = resources_.find(identifier);
    return it == resources_.end() ? nullptr : &it->second;
  }

  // The launch file, then the resource's files, then its dependencies' files depth first, each
  // once; a dependency cycle is walked once.
  Result<std::vector<std::string>> lesson_files(Resource& launched, std::string launch,
                                                const std::string& where) {
    std::vector<std::string> files{launch};
    std::set<std::string> listed{std::move(launch)};
    std::set<const Resource*> visited;
    std::vector<Resource*> pending{&launched};
    while (!pending.empty()) {
      Resource* resource = pending.back();
      pending.pop_back();
      if (++dependency_steps_ > limits_.max_dependency_steps) {
        return refuse(why_, errc::package_invalid,
                      "following the dependencies of imsmanifest.xml's resources takes more than " +
                          std::to_string(limits_.max_dependency_steps) + " steps (at " + where +
                          "); let fewer resources depend on each other; nothing was imported");
      }
      if (!visited.insert(resource).second)
        continue;
      KABAN_TRY(paths, files_of(*resource));
      for (const std::string& path : *paths) {
        if (listed.insert(path).second)
          files.push_back(path);
        if (files.size() > protocol::kMaxLessonFiles) {
          return refuse(why_, errc::course_invalid,
                        where + " uses more than " + std::to_string(protocol::kMaxLessonFiles) +
                            " files (its resource, its dependencies and theirs), more than a "
                            "lesson may have; split it into several items; nothing was "
                            "imported");
        }
      }
      const auto dependencies = child_elements(resource->node, "dependency");
      for (auto it = dependencies.rbegin(); it != dependencies.rend(); ++it) {
        const std::string target = attribute(*it, "identifierref");
        Resource* next = find_resource(target);
        if (next == nullptr) {
          return refuse(why_, errc::package_invalid,
                        "resource " + shown(resource->identifier) + " depends on " + shown(target) +
                            ", which imsmanifest.xml does not define" + kFixManifest);
        }
        pending.push_back(next);
      }
    }
    return files;
  }

  static std::string lesson_kind(std::string_view media_type) {
    if (media_type == "text/html")
      return "html";
    if (media_type == "application/pdf")
      return "pdf";
    if (media_type.starts_with("video/"))
      return "video";
    if (media_type.starts_with("audio/"))
      return "audio";
    if (media_type == "text/plain")
      return "document";
    return "other";
  }

  std::string unique_lesson_id(const std::string& identifier, std::size_t position) {
    std::string base = derive_id(identifier);
    if (base.empty())
      base = "lesson-" + std::to_string(position);
    std::string id = base;
    for (int& n = next_suffix_.try_emplace(base, 1).first->second;
         !lesson_ids_.insert(id).second;) {
      const std::string suffix = "-" + std::to_string(++n);
      id = base.substr(0, 64 - suffix.size()) + suffix;
    }
    return id;
  }

  Result<protocol::Lesson> make_lesson(pugi::xml_node item, const std::string& title,
                                       const std::string& reference, std::size_t position) {
    const std::string identifier = attribute(item, "identifier");
    const std::string where =
        "item " + (identifier.empty() ? std::to_string(position) : shown(identifier));
    Resource* resource = find_resource(reference);
    if (resource == nullptr) {
      return refuse(why_, errc::package_invalid,
                    where + " refers to resource " + shown(reference) +
                        ", which imsmanifest.xml does not define" + kFixManifest);
    }
    const std::string resource_where = "resource " + shown(resource->identifier);
    const std::string href = attribute(resource->node, "href");
    if (href.empty()) {
      return refuse(why_, errc::package_invalid,
                    resource_where + ", which " + where +
                        " launches, has no href, so there is nothing to open" + kFixManifest);
    }
    KABAN_TRY(resolved, resolve(resource->bases, href, resource_where));
    KABAN_TRY(launch, find_file(resolved, resource_where + " (its href)"));
    protocol::Lesson lesson;
    lesson.id = unique_lesson_id(identifier, position);
    lesson.title = title;
    lesson.kind = lesson_kind(media_type_for(launch));
    KABAN_TRY(files, lesson_files(*resource, std::move(launch), where));
    lesson.files = std::move(files);
    return lesson;
  }

  // The organization's items depth first in document order, without recursion (a manifest may
  // nest deeply).
  Result<std::vector<protocol::Lesson>> read_items(pugi::xml_node organization) {
    struct Pending {
      pugi::xml_node item;
      std::string prefix;  // the titles of the items above it
    };
    std::vector<Pending> pending;
    const auto push_children = [&](pugi::xml_node parent, const std::string& prefix) {
      const auto items = child_elements(parent, "item");
      for (auto it = items.rbegin(); it != items.rend(); ++it)
        pending.push_back({*it, prefix});
    };
    push_children(organization, "");
    std::vector<protocol::Lesson> lessons;
    std::size_t position = 0;
    while (!pending.empty()) {
      const Pending next = std::move(pending.back());
      pending.pop_back();
      ++position;
      std::string title = element_text(child_element(next.item, "title"), kMaxTitleSize);
      if (title.empty())
        title = clean_text(attribute(next.item, "identifier"), kMaxTitleSize);
      if (title.empty())
        title = "Item " + std::to_string(position);
      title = clean_text(next.prefix + title, kMaxTitleSize);
      if (const std::string reference = attribute(next.item, "identifierref"); !reference.empty()) {
        if (lessons.size() == protocol::kMaxLessons) {
          return refuse(why_, errc::course_invalid,
                        "the organization has more than " + std::to_string(protocol::kMaxLessons) +
                            " items that launch a resource, more than a course may have; split "
                            "it into several packages; nothing was imported");
        }
        KABAN_TRY(lesson, make_lesson(next.item, title, reference, position));
        lessons.push_back(std::move(lesson));
      }
      push_children(next.item, title + ": ");
    }
    if (lessons.empty()) {
      return refuse(why_, errc::package_invalid,
                    "the organization " + shown(attribute(organization, "identifier")) +
                        " has no item that refers to a resource, so there are no lessons to "
                        "import" +
                        kFixManifest);
    }
    return lessons;
  }

  const PackageIndex& index_;
  const ScormLimits& limits_;
  std::string& why_;
  std::uint64_t dependency_steps_ = 0;  // resources visited for all lessons so far
  std::map<std::string, Resource, std::less<>> resources_;
  std::set<std::string> lesson_ids_;
  std::map<std::string, int> next_suffix_;
};

// Where imsmanifest.xml is, or a refusal that says where it was found instead.
Result<const Entry*> find_manifest(const PackageIndex& index, std::string& why) {
  if (const auto it = index.by_path.find(kScormManifestFile); it != index.by_path.end())
    return &index.files[it->second];
  const Entry* nearest = nullptr;
  std::size_t nearest_depth = 0;
  for (const Entry& entry : index.files) {
    if (!iequals(last_segment(entry.path), kScormManifestFile))
      continue;
    const auto depth =
        static_cast<std::size_t>(std::count(entry.path.begin(), entry.path.end(), '/'));
    if (nearest == nullptr || depth < nearest_depth) {
      nearest = &entry;
      nearest_depth = depth;
    }
  }
  if (nearest == nullptr) {
    return refuse(why, errc::package_invalid,
                  "the package has no imsmanifest.xml, so it is not a SCORM package; export it "
                  "from its authoring tool as SCORM 1.2; nothing was imported");
  }
  if (nearest_depth == 0) {
    return refuse(why, errc::package_invalid,
                  "the package's manifest is named " + shown(nearest->path) +
                      "; SCORM names it imsmanifest.xml, in lower case: rename it and zip again; "
                      "nothing was imported");
  }
  const std::string folder = nearest->path.substr(0, nearest->path.rfind('/') + 1);
  return refuse(why, errc::package_invalid,
                "imsmanifest.xml is in the folder " + shown(folder) +
                    ", not at the root of the package; zip the contents of that folder instead, "
                    "so the manifest is at the root (cd into it, then zip -r ../course.zip .); "
                    "nothing was imported");
}

Result<std::string> read_manifest_text(zip_t* zip, const Entry& entry, const ScormLimits& limits,
                                       std::vector<char>& buffer, std::string& why) {
  ByteLimit limit;
  limit.tighten(limits.max_manifest_bytes,
                "imsmanifest.xml is larger than " + std::to_string(limits.max_manifest_bytes) +
                    " bytes, the limit for a manifest; nothing was imported");
  limit.tighten(entry.declared_size,
                "imsmanifest.xml holds more bytes than it declares: the package is forged or "
                "damaged" +
                    std::string(kUnsafe));
  std::string text;
  const auto append = [&](const char* data, std::size_t size) -> Result<void> {
    text.append(data, size);
    return ok();
  };
  KABAN_TRYV(unpack_entry(zip, entry, limit, buffer, append, why));
  return text;
}

// Files of the package that are not course content unless a lesson lists them: the manifest, XML
// schemas (an LMS validates the manifest with them), and what archivers leave behind.
bool is_packaging_file(std::string_view path) {
  if (path == kScormManifestFile || path.starts_with("__MACOSX/"))
    return true;
  const std::string name = lower(last_segment(path));
  return name.ends_with(".xsd") || name.ends_with(".dtd") || name == ".ds_store" ||
         name == "thumbs.db";
}

}  // namespace

Result<CourseSource> read_scorm_package(const fs::path& package, const fs::path& staging_dir,
                                        std::string_view course_id_override,
                                        const ScormLimits& limits, std::string& why) {
  if (::mkdir(staging_dir.c_str(), kFolderMode) != 0) {
    const int error = errno;
    return refuse(why, errc::storage_failed,
                  "cannot create the staging folder " + staging_dir.string() + ": " +
                      (error == EEXIST ? std::string("it exists already") : os_error_text(error)) +
                      "; nothing was imported");
  }
  const Fd root(::open(staging_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) {
    const int error = errno;
    return refuse(why, errc::storage_failed,
                  "cannot open the staging folder " + staging_dir.string() + ": " +
                      os_error_text(error) + "; nothing was imported");
  }

  std::uint64_t package_size = 0;
  KABAN_TRY(zip, open_package(package, package_size, why));
  KABAN_TRY(index, index_package(zip.get(), package_size, limits, why));
  KABAN_TRY(manifest_entry, find_manifest(index, why));
  std::vector<char> buffer(kReadPiece);
  KABAN_TRY(manifest_text, read_manifest_text(zip.get(), *manifest_entry, limits, buffer, why));
  ManifestReader reader(index, limits, why);
  KABAN_TRY(plan, reader.read(manifest_text, course_id_override));

  // The course's files: first use by a lesson, then every other file of the package, sorted.
  std::vector<const Entry*> wanted;
  std::set<std::string_view> chosen;
  for (const protocol::Lesson& lesson : plan.lessons) {
    for (const std::string& path : lesson.files)
      if (chosen.insert(path).second)
        wanted.push_back(&index.files[index.by_path.find(path)->second]);
  }
  for (const auto& [path, position] : index.by_path) {
    if (!is_packaging_file(path) && chosen.insert(path).second)
      wanted.push_back(&index.files[position]);
  }
  if (wanted.size() > protocol::kMaxFiles) {
    return refuse(why, errc::course_invalid,
                  "the package holds " + std::to_string(wanted.size()) + " files, more than the " +
                      std::to_string(protocol::kMaxFiles) +
                      " a course may have; split it into several packages; nothing was "
                      "imported");
  }

  CourseSource course;
  course.id = std::move(plan.id);
  course.title = std::move(plan.title);
  course.description = std::move(plan.description);
  course.lessons = std::move(plan.lessons);
  std::uint64_t total = 0;
  const std::uint64_t package_bound =
      std::max(limits.expansion_allowance, saturating_multiply(limits.max_expansion, package_size));
  for (const Entry* entry : wanted) {
    const std::string where = "entry " + shown(entry->name);
    ByteLimit limit;
    limit.tighten(entry->declared_size, where + " holds more than the " +
                                            std::to_string(entry->declared_size) +
                                            " bytes it declares: the package is forged or "
                                            "damaged (a zip bomb?)" +
                                            kUnsafe);
    limit.tighten(limits.max_entry_bytes,
                  where + " unpacks to more than " + std::to_string(limits.max_entry_bytes) +
                      " bytes, the limit for one file; nothing was imported");
    limit.tighten(limits.max_total_bytes - std::min(total, limits.max_total_bytes),
                  "the package unpacks to more than " + std::to_string(limits.max_total_bytes) +
                      " bytes, the limit for a package; nothing was imported");
    limit.tighten(std::max(limits.expansion_allowance,
                           saturating_multiply(limits.max_expansion, entry->compressed_size)),
                  where + " expands more than " + std::to_string(limits.max_expansion) +
                      " times (a zip bomb?)" + kUnsafe);
    limit.tighten(package_bound - std::min(total, package_bound),
                  "the package expands more than " + std::to_string(limits.max_expansion) +
                      " times (a zip bomb?)" + kUnsafe);

    const fs::path file_path = staging_dir / entry->path;
    KABAN_TRY(file, create_file(root.get(), staging_dir, entry->path, why));
    const auto write = [&](const char* data, std::size_t size) {
      return write_all(file.get(), data, size, file_path, why);
    };
    KABAN_TRY(size, unpack_entry(zip.get(), *entry, limit, buffer, write, why));
    if (file.close() != 0) {
      const int error = errno;
      return refuse(why, errc::storage_failed,
                    "cannot write " + file_path.string() +
                        " while unpacking: " + os_error_text(error) + "; nothing was imported");
    }
    total += size;
    course.files.push_back({entry->path, file_path, size, media_type_for(entry->path)});
  }
  return course;
}

}  // namespace kaban::server
