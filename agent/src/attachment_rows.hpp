// Internal to kaban::agent: how attachments become rows of message_attachments,
// message_attachment_chunks and attachment_chunks, shared by Messages (send, the inbox),
// Outbox (discard) and Attachments.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include "kaban/agent/attachments.hpp"
#include "kaban/protocol/attachment.hpp"
#include "kaban/result.hpp"

namespace kaban::agent::detail {

/// Checks the person's files against the limits (at most protocol::kMaxAttachments, each
/// 1..kMaxAttachmentSize bytes, a valid and distinct name, a valid media type) and describes
/// each as it goes on the wire: cut into protocol::attachment_chunk_sizes, each chunk and the
/// whole file hashed. errc::invalid_input if a limit is broken.
Result<std::vector<protocol::Attachment>> describe_files(std::span<const AttachmentFile> files);

/// Writes the attachment rows of messages, in the caller's transaction. Statements are
/// prepared once per writer. Throws SQLite::Exception on a store failure.
class AttachmentWriter {
 public:
  explicit AttachmentWriter(SQLite::Database& db);

  /// Makes `attachments` the attachments of `message_id` (whose messages row must exist),
  /// replacing any it had. Returns true if it had some: their chunks may now be garbage
  /// (collect_attachment_garbage).
  bool replace(const std::string& message_id, const std::vector<protocol::Attachment>& attachments);

  /// Stores the chunks of `attachment` cut from `bytes`, the whole file, skipping those held.
  void store_chunks(const protocol::Attachment& attachment, std::string_view bytes);

 private:
  SQLite::Statement remove_;
  SQLite::Statement insert_attachment_;
  SQLite::Statement insert_chunk_ref_;
  SQLite::Statement insert_chunk_;
};

/// The attachments of one message after another, with whether each is downloaded.
class AttachmentReader {
 public:
  explicit AttachmentReader(SQLite::Database& db);
  std::vector<AttachmentView> of(const std::string& message_id);

 private:
  SQLite::Statement query_;
};

/// Deletes the attachment chunks no message on the device uses any more. Reads only the hash
/// column, so chunk data is never paged in. Throws SQLite::Exception on a store failure.
void collect_attachment_garbage(SQLite::Database& db);

}  // namespace kaban::agent::detail
