// `admin course bundle`: a course version and every chunk it needs in one file, for devices with
// no network (the format is kaban/protocol/bundle.hpp's; devices read it with `kaban import`).
#include "kaban/server/admin.hpp"

#include <SQLiteCpp/Database.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "admin_output.hpp"
#include "channel_rows.hpp"
#include "chunk_store.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/protocol/bundle.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;

using detail::explain;
using detail::format_size;
using detail::in_transaction;
using detail::iso_time;
using detail::now;
using detail::open;
using detail::record_admin_action;

constexpr std::size_t kTempSuffixBytes = 4;
/// A progress line each time the bundle passes another this many percent.
constexpr int kProgressStepPercent = 10;

std::error_code os_error() {
  return {errno, std::generic_category()};
}

// "<course> version <n>", the way every sentence here names what is bundled.
std::string version_name(std::string_view course_id, std::int64_t version) {
  return std::string(course_id) + " version " + std::to_string(version);
}

// The signed manifest as devices will take it: the signature verifies under this server's
// signing key, and the devices' own parser accepts the text. A version that fails either would
// give a bundle every device refuses, so none is written.
Result<protocol::Manifest> checked_manifest(const CourseVersionRecord& record,
                                            const ServerIdentity& identity, std::string& why) {
  const std::string name = version_name(record.course_id, record.version);
  auto signature = crypto::from_hex(record.signature);
  if (!signature || !identity.signing_key.public_key().verify(crypto::as_bytes(record.manifest),
                                                              signature.value())) {
    why = "the stored signature of " + name +
          " does not verify under this server's signing key (was signing.key replaced?); "
          "devices would refuse it, so no bundle was written. Publish the course again";
    return errc::data_dir_damaged;
  }
  std::string rule;
  auto manifest = protocol::parse_manifest(record.manifest, &rule);
  if (!manifest) {
    why = "devices cannot accept the manifest of " + name + ": " + rule +
          "; no bundle was written. Publish the course again with this kaban-server";
    return errc::course_invalid;
  }
  return manifest;
}

// Every chunk file there with the size the manifest says, before a byte of the bundle is
// written: a bundle that stops half-way helps nobody.
Result<void> check_chunk_files(const Catalog& catalog,
                               const std::vector<protocol::ChunkRef>& chunks,
                               const std::string& name, std::string& why) {
  for (const protocol::ChunkRef& chunk : chunks) {
    const fs::path path = catalog.chunk_path(chunk.sha256);
    std::error_code ec;
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec) {
      why = "chunk " + chunk.sha256 + " of " + name + " is not in the data directory (" +
            path.string() + ": " + ec.message() +
            "): its chunks were collected by `admin gc`, or the data directory is damaged. "
            "Publish the course again; no bundle was written";
      return errc::data_dir_damaged;
    }
    if (size != chunk.size) {
      why = "chunk file " + path.string() + " of " + name + " is " + std::to_string(size) +
            " bytes, not the " + std::to_string(chunk.size) +
            " its manifest says: the data directory is damaged. Publish the course again (or "
            "restore the chunk from a backup); no bundle was written";
      return errc::data_dir_damaged;
    }
  }
  return ok();
}

// Reads a chunk file of `size` bytes (checked by check_chunk_files, so at most kMaxChunkSize).
Result<void> read_chunk_file(const fs::path& path, std::uint64_t size, std::string& bytes,
                             std::string& why) {
  std::ifstream in(path, std::ios::binary);
  bytes.resize(size);
  if (in)
    in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (!in || static_cast<std::uint64_t>(in.gcount()) != size ||
      in.peek() != std::ifstream::traits_type::eof()) {
    why = "chunk file " + path.string() +
          " could not be read whole, or changed while it was read; no bundle was written. Try "
          "again";
    return errc::storage_failed;
  }
  return ok();
}

// Writes FILE's bytes under a temporary name in FILE's folder, and renames it into place only
// once all of them are on disk: FILE is a whole bundle or is left as it was.
class TempFile {
 public:
  explicit TempFile(const fs::path& target)
      : target_(target),
        folder_(target.has_parent_path() ? target.parent_path() : fs::path(".")),
        temp_(folder_ / ("." + target.filename().string() + "." +
                         crypto::to_hex(crypto::random_bytes(kTempSuffixBytes)) + ".tmp")) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (file_)
      std::fclose(file_);
    if (!renamed_)
      ::unlink(temp_.c_str());
  }

  Result<void> create(std::string& why) {
    // "x": never write through a file (or a link) that is already there.
    file_ = std::fopen(temp_.c_str(), "wbx");
    if (file_)
      return ok();
    const std::error_code e = os_error();
    why = "cannot write in " + folder_.string() + ": " + e.message() +
          "; check that the folder exists and is writable";
    return errc::storage_failed;
  }

  Result<void> write(crypto::ByteView bytes) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
      return os_error();
    return ok();
  }

  /// Flushes, syncs and closes the file, renames it to the target and syncs the folder.
  Result<void> commit(std::string& why) {
    std::FILE* file = std::exchange(file_, nullptr);
    const bool synced = std::fflush(file) == 0 && ::fsync(::fileno(file)) == 0;
    const std::error_code e = synced ? std::error_code() : os_error();
    if (std::fclose(file) != 0 || !synced) {
      why = "writing " + target_.string() + " failed: " + (e ? e.message() : "close failed") +
            " (is the disk full?); no bundle was written";
      return errc::storage_failed;
    }
    if (::rename(temp_.c_str(), target_.c_str()) != 0) {
      why = "cannot create " + target_.string() + ": " + os_error().message() +
            "; no bundle was written";
      return errc::storage_failed;
    }
    renamed_ = true;
    // The rename is durable once the folder is synced. A folder that cannot be synced (some
    // removable file systems) still holds the whole file.
    (void)detail::sync_directory(folder_);
    return ok();
  }

  /// Removes the target again (after a failure that follows the rename).
  void discard() {
    if (renamed_)
      ::unlink(target_.c_str());
  }

 private:
  fs::path target_;
  fs::path folder_;
  fs::path temp_;
  std::FILE* file_ = nullptr;
  bool renamed_ = false;
};

// A line on `out` each time the bundle passes another kProgressStepPercent of its chunk bytes.
class ProgressLines {
 public:
  ProgressLines(std::ostream* out, std::string name, std::uint64_t total)
      : out_(out), name_(std::move(name)), total_(total) {}

  void add(std::uint64_t bytes) {
    done_ += bytes;
    if (!out_ || total_ == 0)
      return;
    const int percent = static_cast<int>(done_ * 100 / total_);
    if (percent / kProgressStepPercent == shown_ / kProgressStepPercent)
      return;
    shown_ = percent;
    *out_ << "course bundle: " << name_ << ": " << percent << "% (" << format_size(done_) << " of "
          << format_size(total_) << ")" << std::endl;
  }

 private:
  std::ostream* out_;
  std::string name_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  int shown_ = 0;
};

// The bundle's path for the audit log: absolute, so the entry says where it went.
std::string shown_path(const fs::path& file) {
  std::error_code ec;
  const fs::path absolute = fs::absolute(file, ec);
  return (ec ? file : absolute).lexically_normal().string();
}

}  // namespace

Result<void> admin_course_bundle(const fs::path& dir, std::string_view course_id,
                                 std::int64_t version, const fs::path& file, std::ostream& out,
                                 std::ostream* progress, std::string& why) {
  if (version < 0) {
    why = "--version takes a version number of 1 or more";
    return make_error_code(std::errc::invalid_argument);
  }
  if (file.empty() || file.filename().empty()) {
    why = "--out must name a file to write";
    return make_error_code(std::errc::invalid_argument);
  }
  KABAN_TRY(identity, explain(load_identity(dir), why));
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);

  KABAN_TRY(courses, explain(catalog.list_courses(), why));
  const auto course = std::find_if(courses.begin(), courses.end(),
                                   [&](const CourseSummary& c) { return c.id == course_id; });
  if (course == courses.end()) {
    why = "there is no course \"" + std::string(course_id) +
          "\" on this server; `admin course list` shows the courses";
    return errc::no_such_course;
  }
  if (course->retired_at) {
    why = "course " + std::string(course_id) + " was retired on " +
          detail::format_time(*course->retired_at) +
          ": devices remove it, so it is not bundled. Publish it again to bring it back";
    return errc::course_retired;
  }
  auto found = catalog.find_version(course_id, version);
  if (!found && found.error() == errc::no_such_version) {
    why = "course " + std::string(course_id) + " has no version " + std::to_string(version) +
          " (never published, or collected by `admin gc`); its latest is version " +
          std::to_string(course->latest_version);
    return found.error();
  }
  KABAN_TRY(record, explain(std::move(found), why));
  const std::string name = version_name(record.course_id, record.version);
  KABAN_TRY(manifest, checked_manifest(record, identity, why));
  // Devices drop a course once its latest version's date has passed, and a version once its
  // own has: a bundle of it would be removed as soon as it was imported.
  std::optional<std::int64_t> expired_at;
  if (course->expires_at && to_unix(*course->expires_at) <= to_unix(now()))
    expired_at = to_unix(*course->expires_at);
  if (const auto own = protocol::parse_timestamp(manifest.expires_at);
      own && *own <= to_unix(now()))
    expired_at = std::min(expired_at.value_or(*own), *own);
  if (expired_at) {
    why = name + " expired on " + detail::format_time(UnixTime{std::chrono::seconds{*expired_at}}) +
          ": devices drop it, so it is not bundled. Give it a new date with `admin course "
          "expire " +
          std::string(course_id) + " DATE` (or \"never\"), then bundle it";
    return errc::course_expired;
  }
  const std::vector<protocol::ChunkRef> chunks = protocol::bundle_chunks(manifest);
  KABAN_TRYV(check_chunk_files(catalog, chunks, name, why));

  protocol::BundleHeader header;
  header.course_id = record.course_id;
  header.version = record.version;
  header.manifest = record.manifest;
  header.signature = record.signature;
  header.signing_key = identity.signing_public_key;
  header.chunk_count = chunks.size();
  for (const protocol::ChunkRef& c : chunks)
    header.chunk_bytes += c.size;
  header.created_at = iso_time(now());

  TempFile temp(file);
  KABAN_TRYV(temp.create(why));
  // The writer fails with the OS error of a write (the sink's), or with the format's refusal.
  std::string format_why;
  const auto write_failed = [&](std::error_code e, const std::string& where) -> std::error_code {
    if (e.category() == std::generic_category()) {
      why = "writing " + file.string() + " failed at " + where + ": " + e.message() +
            " (is the disk full?); no bundle was written";
      return errc::storage_failed;
    }
    why = name + " cannot be bundled: " + format_why + "; no bundle was written";
    return errc::course_invalid;
  };
  auto started = protocol::BundleWriter::start(
      [&](crypto::ByteView bytes) { return temp.write(bytes); }, header, &format_why);
  if (!started)
    return write_failed(started.error(), "its start");
  protocol::BundleWriter& writer = started.value();
  ProgressLines lines(progress, name, header.chunk_bytes);
  std::string bytes;
  for (const protocol::ChunkRef& chunk : chunks) {
    const fs::path path = catalog.chunk_path(chunk.sha256);
    KABAN_TRYV(read_chunk_file(path, chunk.size, bytes, why));
    auto added = writer.add_chunk(chunk.sha256, crypto::as_bytes(bytes), &format_why);
    if (!added && added.error() == protocol::errc::invalid_value) {
      why = "chunk file " + path.string() + " of " + name +
            " does not match its SHA-256: the data directory is damaged. Publish the course "
            "again (or restore the chunk from a backup); no bundle was written";
      return errc::data_dir_damaged;
    }
    if (!added)
      return write_failed(added.error(), "chunk " + chunk.sha256);
    lines.add(bytes.size());
  }
  if (auto finished = writer.finish(&format_why); !finished)
    return write_failed(finished.error(), "its end");
  const std::uint64_t size = writer.bytes_written();
  KABAN_TRYV(temp.commit(why));

  // A bundle carries a course out of the server's control: who made it is on record. A bundle
  // whose entry cannot be written is removed again.
  auto recorded = in_transaction(*db, [&]() -> Result<void> {
    return record_admin_action(*db, "course_bundled", record.course_id,
                               {{"version", record.version},
                                {"file", shown_path(file)},
                                {"bytes", size},
                                {"chunks", chunks.size()}});
  });
  if (!recorded) {
    temp.discard();
    why = "the audit log could not be written, so the bundle was removed again; try again";
    return recorded.error();
  }
  out << "wrote " << name << " to " << file.string() << " (" << format_size(size) << ", "
      << chunks.size() << (chunks.size() == 1 ? " chunk" : " chunks") << ", "
      << manifest.lessons.size() << (manifest.lessons.size() == 1 ? " lesson" : " lessons")
      << "); on a device: kaban import " << file.filename().string() << '\n';
  return ok();
}

}  // namespace kaban::server
