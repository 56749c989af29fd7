#include "kaban/agent/bundle_import.hpp"

#include <algorithm>
#include <unordered_set>

#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/progress.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/ed25519.hpp"
#include "kaban/protocol/bundle.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/timestamp.hpp"

namespace kaban::agent {
namespace {

constexpr std::uint64_t kMebibyte = 1024 * 1024;
/// Hex digits of a signing key a message shows: enough to tell two servers apart.
constexpr std::size_t kShownKeyDigits = 16;

std::error_code invalid_bundle(std::string sentence, std::string& why) {
  why = std::move(sentence);
  return errc::bundle_invalid;
}

// The checks that need nothing of the store: the bundle is this device's server's, signed, and
// describes its manifest. Returns the parsed manifest.
Result<protocol::Manifest> verified_manifest(const protocol::BundleHeader& header,
                                             const DeviceIdentity& identity,
                                             const crypto::Ed25519PublicKey& pinned,
                                             std::string& why) {
  if (header.signing_key != identity.signing_key)
    return invalid_bundle(
        "this bundle was made by another Kaban server (its signing key begins " +
            header.signing_key.substr(0, kShownKeyDigits) +
            "), not by the server this device is enrolled with, " + identity.server_host +
            " (signing key " + identity.signing_key.substr(0, kShownKeyDigits) +
            "); nothing was imported. Ask IT for a bundle from this device's server",
        why);
  auto signature = crypto::from_hex(header.signature);
  if (!signature || !pinned.verify(crypto::as_bytes(header.manifest), signature.value()))
    return invalid_bundle(
        "the bundle's manifest does not match its signature: it was altered after the server "
        "signed it; nothing was imported. Get a new copy of the bundle from IT",
        why);
  std::string rule;
  auto manifest = protocol::parse_manifest(header.manifest, &rule);
  if (!manifest) {
    why =
        "the bundle is signed by this device's server, but this agent cannot accept its "
        "manifest: " +
        rule + "; nothing was imported. Update Kaban, or tell IT";
    return errc::content_invalid;
  }
  std::string mismatch;
  if (!protocol::check_bundle_header(header, manifest.value(), &mismatch))
    return invalid_bundle(mismatch + ": the bundle was altered; nothing was imported", why);
  return manifest;
}

// Counts the bytes the version still needs against the device policy's storage limit and the
// file system's free space, before a chunk is stored.
Result<void> check_room(Store& store, const protocol::Policy& policy, const ImportOptions& options,
                        const ImportPlan& plan, std::string& why) {
  if (plan.new_bytes == 0)
    return ok();
  const std::string name = plan.course_id + " version " + std::to_string(plan.version);
  const std::uint64_t held = Store::disk_size(store.dir());
  if (policy.max_cache_mb > 0) {
    const std::uint64_t limit = static_cast<std::uint64_t>(policy.max_cache_mb) * kMebibyte;
    if (held + plan.new_bytes > limit) {
      why = name + " needs " + format_bytes(plan.new_bytes) + " more on this device, " +
            format_bytes(held + plan.new_bytes) +
            " in all, past the device policy's storage "
            "limit of " +
            format_bytes(limit) +
            "; none of its content was stored. Ask IT to raise the limit (max_cache_mb)";
      return errc::not_allowed;
    }
  }
  const std::uint64_t needed = Store::room_needed(plan.new_bytes);
  auto free = options.free_space ? options.free_space(store.dir()) : Store::free_space(store.dir());
  if (!free) {
    why = "the free space on the disk holding " + store.dir().string() + " could not be read (" +
          free.error().message() + "); nothing was imported";
    return free.error();
  }
  if (free.value() < needed) {
    why = name + " needs about " + format_bytes(needed) + " free on the disk holding " +
          store.dir().string() + " (" + format_bytes(plan.new_bytes) +
          " of new content and room for the store to work), but only " +
          format_bytes(free.value()) +
          " is free; none of its content was stored. Free some space, then import again";
    return errc::disk_full;
  }
  return ok();
}

const CourseInfo* find_course(const std::vector<CourseInfo>& courses, std::string_view id) {
  const auto it =
      std::find_if(courses.begin(), courses.end(), [&](const CourseInfo& c) { return c.id == id; });
  return it == courses.end() ? nullptr : &*it;
}

// Stores chunks in batches of about `limit` bytes, each batch one transaction.
class ChunkBatch {
 public:
  ChunkBatch(Library& library, std::size_t limit) : library_(library), limit_(limit) {}

  /// Adds a chunk; stores the batch once it reaches the limit.
  Result<void> add(std::string sha256, std::string bytes) {
    bytes_ += bytes.size();
    chunks_.push_back({std::move(sha256), std::move(bytes)});
    if (bytes_ >= limit_)
      return flush();
    return ok();
  }

  Result<void> flush() {
    if (chunks_.empty())
      return ok();
    KABAN_TRYV(library_.put_chunks(chunks_));
    stored_chunks_ += chunks_.size();
    stored_bytes_ += bytes_;
    chunks_.clear();
    bytes_ = 0;
    return ok();
  }

  std::size_t stored_chunks() const { return stored_chunks_; }
  std::uint64_t stored_bytes() const { return stored_bytes_; }

 private:
  Library& library_;
  std::size_t limit_;
  std::vector<ChunkData> chunks_;
  std::size_t bytes_ = 0;
  std::size_t stored_chunks_ = 0;
  std::uint64_t stored_bytes_ = 0;
};

}  // namespace

Result<ImportReport> import_bundle(Store& store, std::istream& bundle,
                                   const protocol::Policy& policy, std::int64_t now,
                                   const ImportOptions& options, std::string& why) {
  KABAN_TRY(identity, load_identity(store));
  KABAN_TRY(pinned, content_signing_key(identity));

  std::string reader_why;
  auto opened = protocol::BundleReader::open(bundle, &reader_why);
  if (!opened)
    return invalid_bundle(reader_why + "; nothing was imported", why);
  protocol::BundleReader& reader = opened.value();
  const protocol::BundleHeader& header = reader.header();
  KABAN_TRY(manifest, verified_manifest(header, identity, pinned, why));

  if (const auto expires = protocol::parse_timestamp(manifest.expires_at);
      expires && *expires <= now) {
    why = manifest.course_id + " version " + std::to_string(manifest.version) + " expired at " +
          manifest.expires_at +
          ", as the server set it: this device would remove it at once, so nothing was "
          "imported. Ask IT for a current bundle";
    return errc::not_allowed;
  }

  ImportReport report;
  report.course_id = manifest.course_id;
  report.version = manifest.version;
  report.title = manifest.title;

  Library library(store);
  {
    KABAN_TRY(courses, library.courses());
    const CourseInfo* held = find_course(courses, manifest.course_id);
    if (held && held->ready && held->version >= manifest.version) {
      report.outcome = held->version == manifest.version ? ImportOutcome::already_held
                                                         : ImportOutcome::newer_held;
      report.held_version = held->version;
      return report;
    }
  }

  // From here on the version is the Library's to fill, as if the change feed had brought it.
  std::string add_why;
  auto added = library.add_course_version(
      {manifest.course_id, manifest.version, header.manifest, header.signature}, pinned, &add_why);
  if (!added) {
    why = add_why.empty() ? std::string() : "the bundle's manifest was refused: " + add_why;
    return added.error();
  }
  KABAN_TRY(needs, library.missing_by_version());
  std::vector<protocol::ChunkRef> missing;
  for (Library::MissingVersion& v : needs) {
    if (v.course_id != manifest.course_id)
      continue;
    if (v.version == manifest.version) {
      missing = std::move(v.chunks);
    } else if (v.version > manifest.version) {
      // Library keeps only the newest incomplete version: this one was not added.
      report.outcome = ImportOutcome::newer_held;
      report.held_version = v.version;
      report.held_complete = false;
      return report;
    }
  }

  const std::vector<protocol::ChunkRef> expected = protocol::bundle_chunks(manifest);
  ImportPlan plan;
  plan.course_id = manifest.course_id;
  plan.version = manifest.version;
  plan.title = manifest.title;
  plan.chunks = expected.size();
  plan.chunk_bytes = header.chunk_bytes;
  plan.new_chunks = missing.size();
  std::unordered_set<std::string> wanted;
  for (const protocol::ChunkRef& c : missing) {
    wanted.insert(c.sha256);
    plan.new_bytes += c.size;
  }
  KABAN_TRYV(check_room(store, policy, options, plan, why));
  if (options.on_start)
    options.on_start(plan);

  ChunkBatch batch(library, options.batch_bytes);
  // What a failure part-way leaves: the chunks that verified, and nothing readable.
  const auto kept = [&]() -> std::string {
    if (batch.stored_chunks() == 0)
      return "; no chunk of it was stored";
    return "; " + std::to_string(batch.stored_chunks()) +
           (batch.stored_chunks() == 1 ? " chunk" : " chunks") +
           " of it that verified against the signed manifest before that were stored and are "
           "kept, so a good copy of the bundle (or `kaban sync`) fetches only the rest";
  };
  const auto store_failed = [&](std::error_code e) -> std::error_code {
    why = "the store could not take the bundle's chunks (" + e.message() +
          "); those stored before are kept, and no new version became readable. Check free "
          "space, then import again";
    return e;
  };
  const auto stop_with = [&](std::error_code code, std::string sentence) -> std::error_code {
    if (auto flushed = batch.flush(); !flushed)
      return store_failed(flushed.error());
    why = std::move(sentence) + kept() + ". No new version became readable";
    return code;
  };
  for (std::uint64_t next = 0;; ++next) {
    if (options.stop && options.stop->load())
      return stop_with(errc::interrupted, "stopped at chunk " + std::to_string(next + 1) + " of " +
                                              std::to_string(expected.size()));
    protocol::BundleChunk chunk;
    auto more = reader.next(chunk, &reader_why);
    if (!more)
      return stop_with(errc::bundle_invalid, reader_why);
    if (!more.value())
      break;
    const protocol::ChunkRef& listed = expected[chunk.index];
    if (chunk.sha256 != listed.sha256 || chunk.bytes.size() != listed.size)
      return stop_with(errc::bundle_invalid,
                       "chunk " + std::to_string(chunk.index + 1) + " of " +
                           std::to_string(expected.size()) + " (at byte " +
                           std::to_string(chunk.offset) +
                           ") is not the one the signed manifest lists there: the bundle was "
                           "altered");
    if (options.on_bytes)
      options.on_bytes(chunk.bytes.size());
    if (wanted.erase(chunk.sha256) == 0) {
      ++report.chunks_skipped;
      continue;
    }
    if (auto stored = batch.add(std::move(chunk.sha256), std::move(chunk.bytes)); !stored)
      return store_failed(stored.error());
  }
  if (auto stored = batch.flush(); !stored)
    return store_failed(stored.error());
  report.chunks_stored = batch.stored_chunks();
  report.bytes_stored = batch.stored_bytes();

  // Every chunk of the version is stored, each checked against the signed manifest: completing
  // it reads nothing back (Library::complete_versions).
  auto ready = library.complete_versions();
  if (!ready)
    return store_failed(ready.error());
  report.made_ready = std::move(ready).value();

  KABAN_TRY(courses, library.courses());
  const CourseInfo* now_held = find_course(courses, manifest.course_id);
  if (!now_held || !now_held->ready || now_held->version < manifest.version) {
    why = manifest.course_id + " version " + std::to_string(manifest.version) +
          " did not become readable although every chunk was stored: the store changed under "
          "the import. Run `kaban import` again; a version held before stays readable";
    return errc::storage_failed;
  }
  if (now_held->version > manifest.version) {
    report.outcome = ImportOutcome::newer_held;
    report.held_version = now_held->version;
    return report;
  }
  report.total_size = now_held->total_size;
  report.title = now_held->title;
  KABAN_TRY(lessons, library.lessons(manifest.course_id));
  report.lessons = std::move(lessons);
  return report;
}

}  // namespace kaban::agent
