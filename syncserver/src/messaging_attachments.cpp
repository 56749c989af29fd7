#include "kaban/server/messaging.hpp"

#include <string>
#include <unordered_map>
#include <utility>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <nlohmann/json.hpp>

#include "attachment_rows.hpp"
#include "channel_rows.hpp"
#include "kaban/server/error.hpp"

// Message attachments: the rows that hold them, the chunks devices upload for them, and who may
// fetch those chunks.

namespace kaban::server {
namespace {

using detail::kVisibleChannels;

// The most uploads one sweep forgets; the rest wait for the next sweep, so a sweep never holds
// the write lock for long.
constexpr int kMaxSweptPerRun = 1000;

// A device's uploads that no message uses yet (and that are not course chunks either): what the
// quota counts and the sweep forgets.
constexpr const char* kPendingUpload =
    "NOT EXISTS (SELECT 1 FROM attachment_chunks ac WHERE ac.hash = u.hash) AND "
    "NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = u.hash)";

enum class UploadStep { claim, record };

// The decision of claim_upload and record_upload, in the caller's write transaction.
UploadCheck decide_upload(SQLite::Database& db, std::string_view device_id, std::string_view hash,
                          std::uint64_t size, std::uint64_t quota_bytes, UnixTime now,
                          UploadStep step) {
  {
    SQLite::Statement course(db, "SELECT 1 FROM chunks WHERE hash = ?");
    course.bind(1, std::string(hash));
    if (course.executeStep())
      return {UploadStatus::held, 0};
  }
  {
    // Uploaded before (by any device): a new upload keeps it from the sweep a while longer.
    SQLite::Statement refresh(
        db, "UPDATE uploaded_chunks SET uploaded_at = max(uploaded_at, ?) WHERE hash = ?");
    refresh.bind(1, to_unix(now));
    refresh.bind(2, std::string(hash));
    if (refresh.exec() > 0)
      return {UploadStatus::held, 0};
  }
  SQLite::Statement pending(db, std::string("SELECT coalesce(sum(u.size), 0) FROM uploaded_chunks "
                                            "u WHERE u.device_id = ? AND ") +
                                    kPendingUpload);
  pending.bind(1, std::string(device_id));
  pending.executeStep();
  const auto pending_bytes = static_cast<std::uint64_t>(pending.getColumn(0).getInt64());
  if (pending_bytes > quota_bytes || size > quota_bytes - pending_bytes)
    return {UploadStatus::over_quota, pending_bytes};
  if (step == UploadStep::claim)
    return {UploadStatus::needed, pending_bytes};
  SQLite::Statement insert(
      db, "INSERT INTO uploaded_chunks(hash, size, device_id, uploaded_at) VALUES (?, ?, ?, ?)");
  insert.bind(1, std::string(hash));
  insert.bind(2, static_cast<std::int64_t>(size));
  insert.bind(3, std::string(device_id));
  insert.bind(4, to_unix(now));
  insert.exec();
  return {UploadStatus::recorded, pending_bytes};
}

Result<UploadCheck> upload_step(SQLite::Database& db, std::string_view device_id,
                                std::string_view hash, std::uint64_t size,
                                std::uint64_t quota_bytes, UnixTime now, UploadStep step) {
  try {
    SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
    const UploadCheck check = decide_upload(db, device_id, hash, size, quota_bytes, now, step);
    transaction.commit();
    return check;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace

namespace detail {

MissingChunk find_missing_chunk(SQLite::Database& db,
                                std::span<const protocol::Attachment> attachments) {
  SQLite::Statement held(db,
                         "SELECT EXISTS (SELECT 1 FROM uploaded_chunks WHERE hash = :hash AND "
                         "size = :size) OR EXISTS (SELECT 1 FROM chunks WHERE hash = :hash AND "
                         "size = :size)");
  for (const protocol::Attachment& a : attachments) {
    for (std::size_t i = 0; i < a.chunks.size(); ++i) {
      held.bind(":hash", a.chunks[i].sha256);
      held.bind(":size", static_cast<std::int64_t>(a.chunks[i].size));
      const bool found = held.executeStep() && held.getColumn(0).getInt() != 0;
      held.reset();
      if (!found)
        return {&a, i};
    }
  }
  return {};
}

void insert_attachments(SQLite::Database& db, std::string_view message_id,
                        std::span<const protocol::Attachment> attachments) {
  if (attachments.empty())
    return;
  SQLite::Statement file(db,
                         "INSERT INTO message_attachments(message_id, ordinal, name, media_type, "
                         "size, sha256) VALUES (?, ?, ?, ?, ?, ?)");
  SQLite::Statement chunk(db,
                          "INSERT INTO attachment_chunks(message_id, ordinal, chunk_index, hash, "
                          "size) VALUES (?, ?, ?, ?, ?)");
  for (std::size_t ordinal = 0; ordinal < attachments.size(); ++ordinal) {
    const protocol::Attachment& a = attachments[ordinal];
    file.bind(1, std::string(message_id));
    file.bind(2, static_cast<std::int64_t>(ordinal));
    file.bind(3, a.name);
    file.bind(4, a.media_type);
    file.bind(5, static_cast<std::int64_t>(a.size));
    file.bind(6, a.sha256);
    file.exec();
    file.reset();
    for (std::size_t index = 0; index < a.chunks.size(); ++index) {
      chunk.bind(1, std::string(message_id));
      chunk.bind(2, static_cast<std::int64_t>(ordinal));
      chunk.bind(3, static_cast<std::int64_t>(index));
      chunk.bind(4, a.chunks[index].sha256);
      chunk.bind(5, static_cast<std::int64_t>(a.chunks[index].size));
      chunk.exec();
      chunk.reset();
    }
  }
}

void fill_attachments(SQLite::Database& db, std::vector<protocol::InboxChange>& changes) {
  std::unordered_map<std::string, protocol::MessageInfo*> by_id;
  nlohmann::json ids = nlohmann::json::array();
  for (protocol::InboxChange& c : changes) {
    if (c.message && by_id.emplace(c.message->id, &*c.message).second)
      ids.push_back(c.message->id);
  }
  if (by_id.empty())
    return;
  // The page's message ids travel as one JSON array, so one prepared statement serves any
  // page size.
  SQLite::Statement query(
      db,
      "SELECT a.message_id, a.ordinal, a.name, a.media_type, a.size, a.sha256, c.hash, c.size "
      "FROM message_attachments a JOIN attachment_chunks c "
      "ON c.message_id = a.message_id AND c.ordinal = a.ordinal "
      "WHERE a.message_id IN (SELECT value FROM json_each(?)) "
      "ORDER BY a.message_id, a.ordinal, c.chunk_index");
  query.bind(1, ids.dump());
  protocol::MessageInfo* message = nullptr;
  std::string message_id;
  std::int64_t ordinal = -1;
  while (query.executeStep()) {
    const std::string id = query.getColumn(0).getString();
    const std::int64_t row_ordinal = query.getColumn(1).getInt64();
    if (id != message_id) {
      auto found = by_id.find(id);
      message = found == by_id.end() ? nullptr : found->second;
      message_id = id;
      ordinal = -1;
    }
    if (!message)
      continue;
    if (row_ordinal != ordinal) {
      protocol::Attachment a;
      a.name = query.getColumn(2).getString();
      a.media_type = query.getColumn(3).getString();
      a.size = static_cast<std::uint64_t>(query.getColumn(4).getInt64());
      a.sha256 = query.getColumn(5).getString();
      message->attachments.push_back(std::move(a));
      ordinal = row_ordinal;
    }
    message->attachments.back().chunks.push_back(
        {query.getColumn(6).getString(),
         static_cast<std::uint64_t>(query.getColumn(7).getInt64())});
  }
}

}  // namespace detail

Result<UploadCheck> Messaging::claim_upload(std::string_view device_id, std::string_view hash,
                                            std::uint64_t size, std::uint64_t quota_bytes,
                                            UnixTime now) {
  return upload_step(db_, device_id, hash, size, quota_bytes, now, UploadStep::claim);
}

Result<UploadCheck> Messaging::record_upload(std::string_view device_id, std::string_view hash,
                                             std::uint64_t size, std::uint64_t quota_bytes,
                                             UnixTime now) {
  return upload_step(db_, device_id, hash, size, quota_bytes, now, UploadStep::record);
}

Result<bool> Messaging::attachment_chunk_visible(std::string_view login, std::string_view device_id,
                                                 std::string_view hash) {
  try {
    SQLite::Statement query(
        db_, std::string("SELECT EXISTS (SELECT 1 FROM attachment_chunks ac JOIN messages m ON "
                         "m.id = ac.message_id WHERE ac.hash = :hash AND m.channel_id IN (") +
                 kVisibleChannels +
                 ")) OR EXISTS (SELECT 1 FROM uploaded_chunks u WHERE u.hash = :hash AND "
                 "u.device_id = :device)");
    query.bind(":hash", std::string(hash));
    query.bind(":login", std::string(login));
    query.bind(":device", std::string(device_id));
    query.executeStep();
    return query.getColumn(0).getInt() != 0;
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

Result<std::size_t> Messaging::sweep_uploads(
    UnixTime uploaded_before, const std::function<void(const std::string& hash)>& remove_file) {
  try {
    SQLite::Transaction transaction(db_, SQLite::TransactionBehavior::IMMEDIATE);
    std::vector<std::string> stale;
    {
      SQLite::Statement query(db_, std::string("SELECT u.hash FROM uploaded_chunks u WHERE "
                                               "u.uploaded_at < ? AND ") +
                                       kPendingUpload + " LIMIT ?");
      query.bind(1, to_unix(uploaded_before));
      query.bind(2, kMaxSweptPerRun);
      while (query.executeStep())
        stale.push_back(query.getColumn(0).getString());
    }
    SQLite::Statement forget(db_, "DELETE FROM uploaded_chunks WHERE hash = ?");
    for (const std::string& hash : stale) {
      forget.bind(1, hash);
      forget.exec();
      forget.reset();
    }
    // The files go while this transaction holds the write lock: an upload of the same bytes
    // that starts now finds no row once it may write, and stores its file anew.
    for (const std::string& hash : stale)
      remove_file(hash);
    transaction.commit();
    return stale.size();
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
}

}  // namespace kaban::server
