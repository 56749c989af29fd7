// `kaban-server admin course import-scorm`: a SCORM package unpacked into a staging folder of the
// data directory, published like `admin course publish`, the staging folder removed.
#include "kaban/server/admin.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "admin_output.hpp"
#include "channel_rows.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/error.hpp"
#include "kaban/server/scorm_package.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;

using detail::count_of;
using detail::explain;
using detail::format_size;
using detail::in_transaction;
using detail::now;
using detail::open;
using detail::record_admin_action;

// DIR/tmp: where imports unpack packages, one folder each, removed when the import ends.
constexpr const char* kStagingParent = "tmp";
constexpr std::size_t kStagingNameBytes = 8;

// DIR/tmp/scorm-<16 hex digits>, a name no other import uses; the folder itself is made by
// read_scorm_package. DIR/tmp is made on first use, private like the rest of DIR.
Result<fs::path> staging_folder(const fs::path& dir, std::string& why) {
  const fs::path parent = dir / kStagingParent;
  if (::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) {
    const int error = errno;
    why = "cannot create " + parent.string() + ": " + std::strerror(error) +
          "; check the data directory is writable; nothing was imported";
    return errc::storage_failed;
  }
  struct stat st {};
  if (::lstat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    why = parent.string() +
          " is not a folder; remove it (kaban-server keeps the packages it unpacks there); "
          "nothing was imported";
    return errc::storage_failed;
  }
  return parent / ("scorm-" + crypto::to_hex(crypto::random_bytes(kStagingNameBytes)));
}

// Removes the staging folder when the import ends, however it ends.
class StagingCleanup {
 public:
  explicit StagingCleanup(fs::path folder) : folder_(std::move(folder)) {}
  StagingCleanup(const StagingCleanup&) = delete;
  StagingCleanup& operator=(const StagingCleanup&) = delete;
  ~StagingCleanup() { remove(); }

  /// Removes it now; false (and the reason in `ec`) if some of it is left.
  bool remove(std::error_code& ec) {
    if (folder_.empty())
      return true;
    fs::remove_all(folder_, ec);
    if (!ec)
      folder_.clear();
    return !ec;
  }

 private:
  void remove() {
    std::error_code ec;
    remove(ec);
  }
  fs::path folder_;
};

// Files of the course no lesson lists: the package's own that its manifest did not name.
std::size_t unlisted_files(const CourseSource& course) {
  std::set<std::string_view> listed;
  for (const protocol::Lesson& lesson : course.lessons)
    listed.insert(lesson.files.begin(), lesson.files.end());
  std::size_t n = 0;
  for (const SourceFile& file : course.files)
    n += listed.count(file.path) == 0;
  return n;
}

}  // namespace

Result<void> admin_course_import_scorm(const fs::path& dir, const fs::path& package,
                                       std::string_view course_id, std::ostream& out,
                                       std::string& why) {
  // The identity first: it proves DIR is a data directory before anything is written into it.
  KABAN_TRY(identity, explain(load_identity(dir), why));
  KABAN_TRY(staging, staging_folder(dir, why));
  StagingCleanup cleanup(staging);
  KABAN_TRY(course,
            explain(read_scorm_package(package, staging, course_id, ScormLimits{}, why), why));
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);
  auto done = in_transaction(*db, [&]() -> Result<PublishedVersion> {
    KABAN_TRY(p, catalog.publish(course, identity.signing_key, now(), why));
    KABAN_TRYV(record_admin_action(*db, "course_published", p.course_id,
                                   {{"version", p.version},
                                    {"files", p.files},
                                    {"bytes", p.total_bytes},
                                    {"scorm_package", package.filename().string()}}));
    return p;
  });
  KABAN_TRY(published, explain(std::move(done), why));
  detail::print_published(out, published);
  out << count_of(course.lessons.size(), "lesson", "lessons") << " from "
      << package.filename().string();
  if (const std::size_t unlisted = unlisted_files(course); unlisted > 0)
    out << "; " << count_of(unlisted, "file", "files")
        << " no lesson lists are part of the course too";
  out << '\n';
  std::error_code ec;
  if (!cleanup.remove(ec)) {
    out << "could not remove the staging folder " << staging.string() << " (" << ec.message()
        << "); delete it when no import is running\n";
  }
  return ok();
}

}  // namespace kaban::server
