// Course lifecycle admin commands: retire, expire, and garbage collection (docs/content.md).
#include "kaban/server/admin.hpp"

#include <SQLiteCpp/Database.h>
#include <nlohmann/json.hpp>

#include "admin_output.hpp"
#include "channel_rows.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/error.hpp"

namespace kaban::server {
namespace fs = std::filesystem;
using namespace detail;

Result<void> admin_course_retire(const fs::path& dir, std::string_view course_id, std::ostream& out,
                                 std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);
  auto done = in_transaction(*db, [&]() -> Result<bool> {
    KABAN_TRY(retired, catalog.retire(course_id, now()));
    if (retired) {
      KABAN_TRYV(record_admin_action(*db, "course_retired", course_id, nlohmann::json::object()));
    }
    return retired;
  });
  if (!done && done.error() == errc::no_such_course)
    why = "there is no course " + in_quotes(course_id) +
          "; `admin course list` shows the published ones. Nothing was changed";
  KABAN_TRY(retired, explain(std::move(done), why));
  if (!retired) {
    out << "course " << course_id << " was retired already; nothing changed\n";
    return ok();
  }
  out << "retired " << course_id
      << ": devices remove it at their next sync, and `admin gc` frees its files once the "
         "grace period has passed. Publishing it again brings it back\n";
  return ok();
}

Result<void> admin_course_expire(const fs::path& dir, std::string_view course_id,
                                 std::optional<UnixTime> expires_at, std::ostream& out,
                                 std::string& why) {
  KABAN_TRY(identity, explain(load_identity(dir), why));
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);
  auto done = in_transaction(*db, [&]() -> Result<PublishedVersion> {
    KABAN_TRY(p, catalog.set_expiry(course_id, expires_at, identity.signing_key, now(), why));
    if (p.unchanged)
      return p;
    KABAN_TRYV(record_admin_action(
        *db, "course_expiry_set", course_id,
        {{"version", p.version},
         {"expires_at", expires_at ? nlohmann::json(iso_time(*expires_at)) : nullptr}}));
    return p;
  });
  KABAN_TRY(published, explain(std::move(done), why));
  if (published.unchanged) {
    out << "course " << published.course_id << " version " << published.version << " has "
        << (expires_at ? "that expiry" : "no expiry") << " already; nothing changed\n";
    return ok();
  }
  out << "published " << published.course_id << " version " << published.version
      << " with the same files; ";
  if (!expires_at)
    out << "it no longer expires\n";
  else if (*expires_at <= now())
    out << "it expired at " << format_time(*expires_at)
        << ": devices drop it at their next sync or when they next open Kaban\n";
  else
    out << "devices drop it from " << format_time(*expires_at) << ", offline too\n";
  return ok();
}

Result<void> admin_gc(const fs::path& dir, std::chrono::seconds keep, bool dry_run,
                      std::ostream& out, std::string& why) {
  KABAN_TRY(db, open(dir, why));
  Catalog catalog(*db, dir);
  KABAN_TRY(report, explain(catalog.collect_garbage(keep, now(), dry_run), why));
  if (!dry_run && (report.versions > 0 || report.chunks > 0 || report.stray_files > 0)) {
    // Recorded after the fact: the deletions are done and cannot be undone with the entry.
    KABAN_TRYV(explain(record_admin_action(*db, "garbage_collected", "",
                                           {{"versions", report.versions},
                                            {"courses", report.courses},
                                            {"chunks", report.chunks},
                                            {"stray_files", report.stray_files},
                                            {"bytes", report.bytes}}),
                       why));
  }
  out << (dry_run ? "would delete " : "deleted ")
      << count_of(report.versions, "superseded version", "superseded versions") << ", "
      << count_of(report.chunks, "chunk", "chunks") << " no course or message uses ("
      << count_of(report.courses, "retired or expired course", "retired or expired courses")
      << " among them)";
  if (report.stray_files > 0)
    out << " and " << count_of(report.stray_files, "stray file", "stray files");
  out << ": " << format_size(report.bytes) << (dry_run ? " would be freed\n" : " freed\n");
  return ok();
}

}  // namespace kaban::server
