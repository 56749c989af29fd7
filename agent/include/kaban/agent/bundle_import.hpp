// Importing an offline course bundle (kaban/protocol/bundle.hpp), the file IT writes with
// `kaban-server admin course bundle`: a device with no network gets a course exactly as a sync
// would have brought it. `kaban import FILE` is its front end.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <istream>
#include <string>
#include <vector>

#include "kaban/agent/library.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/protocol/policy.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// What an import is about to do, once the bundle's manifest verified.
struct ImportPlan {
  std::string course_id;
  std::int64_t version = 0;
  std::string title;
  std::size_t chunks = 0;         ///< chunks in the bundle
  std::uint64_t chunk_bytes = 0;  ///< their bytes: what is read
  std::size_t new_chunks = 0;     ///< of those, chunks the store lacks
  std::uint64_t new_bytes = 0;    ///< their bytes: what is stored
};

struct ImportOptions {
  /// Chunks are stored in one transaction per this many bytes (and at the end, or when
  /// stopped), so memory stays bounded and an interruption loses at most one batch.
  std::size_t batch_bytes = 16 * 1024 * 1024;
  /// Set from another thread or a signal handler to stop between chunks: what was stored is
  /// kept and import_bundle() fails with errc::interrupted.
  const std::atomic<bool>* stop = nullptr;
  /// Called once, after the checks and before the chunks are read.
  std::function<void(const ImportPlan&)> on_start;
  /// Called as chunk bytes are read (their total is ImportPlan::chunk_bytes).
  std::function<void(std::uint64_t bytes)> on_bytes;
  /// Free bytes on the file system holding the directory. Empty: Store::free_space. Tests
  /// give their own.
  std::function<Result<std::uint64_t>(const std::filesystem::path& dir)> free_space;
};

enum class ImportOutcome {
  imported,      ///< the bundle's version is readable now
  already_held,  ///< the device could already read this version; nothing changed
  newer_held,    ///< the device holds, or is downloading, a newer version; nothing changed
};

struct ImportReport {
  ImportOutcome outcome = ImportOutcome::imported;
  std::string course_id;
  std::int64_t version = 0;       ///< the bundle's version
  std::int64_t held_version = 0;  ///< already_held, newer_held: the version the device has
  bool held_complete = true;      ///< newer_held: false if that version is still downloading
  std::string title;
  std::vector<LessonInfo> lessons;  ///< imported: the lessons now readable, in manifest order
  std::uint64_t total_size = 0;     ///< imported: bytes of the course's files
  std::size_t chunks_stored = 0;    ///< chunks the import added to the store
  std::uint64_t bytes_stored = 0;
  std::size_t chunks_skipped = 0;       ///< chunks of the bundle the store held already
  std::vector<std::string> made_ready;  ///< "course_id@version" made readable
};

/// Imports the bundle read from `bundle` into the enrolled `store`, under the device policy
/// `policy` at trusted time `now` (Unix seconds; the guard's). Blocks; call from the thread that
/// owns `store`, opened with open_guarded() and check_access(content) (importing gives content,
/// as a sync of courses does).
///
/// In order: the bundle's header and manifest are read (protocol::BundleReader); the manifest
/// must be signed by the content-signing key this device pinned at enrollment (a bundle of
/// another Kaban server is refused, saying so), parse, and match the header. A manifest whose
/// expires_at is at or before `now` is refused with errc::not_allowed (the device would drop
/// the course at once). A version the
/// device can already read, or older than one it holds or is downloading, ends the import here
/// (already_held, newer_held): nothing is changed. Otherwise the version is added to the
/// Library (a sync would skip it from then on) and the chunks the store lacks are counted:
/// past the policy's max_cache_mb, errc::not_allowed; with less free space on the store's file
/// system than Store::room_needed() for their bytes, errc::disk_full; `why` says how much is needed
/// and what there is, and no chunk is stored. Then the chunks are read in order, each checked
/// against its hash and against the chunk the signed manifest lists at that place; those the store
/// lacks are stored in batches; and once the end marker and the digest verified,
/// Library::complete_versions() makes the version readable (every file checked against its
/// SHA-256), replacing an older one.
///
/// A bundle that is cut short, altered or damaged anywhere fails with errc::bundle_invalid and
/// `why` naming what and where (the region, the chunk, the byte offset): no version of it becomes
/// readable, a version held before stays readable, and the chunks that verified before the
/// damage are kept (each matched the signed manifest), so a good copy or a sync fetches only the
/// rest. Other failures: errc::not_enrolled, errc::interrupted, errc::content_invalid (a
/// manifest this agent's parser refuses, or files that do not match their signed SHA-256 although
/// every chunk did), store errors (store_error_code).
Result<ImportReport> import_bundle(Store& store, std::istream& bundle,
                                   const protocol::Policy& policy, std::int64_t now,
                                   const ImportOptions& options, std::string& why);

}  // namespace kaban::agent
