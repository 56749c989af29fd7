// Reading and writing message attachments (message_attachments, attachment_chunks): what the
// outbox (messaging_outbox.cpp) and the inbox feed (messaging.cpp) share. Private to
// kaban::server. Every function throws SQLite::Exception when SQLite fails; call inside the
// caller's transaction.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/inbox.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server::detail {

/// A chunk an attachment names that the server does not hold with that size.
struct MissingChunk {
  const protocol::Attachment* attachment = nullptr;  ///< nullptr: none is missing
  std::size_t chunk_index = 0;
};

/// The first chunk of `attachments` that is neither an upload nor a course chunk of the size
/// the attachment names.
MissingChunk find_missing_chunk(SQLite::Database& db,
                                std::span<const protocol::Attachment> attachments);

/// Stores `attachments` of message `message_id` in order (ordinal and chunk_index from 0).
void insert_attachments(SQLite::Database& db, std::string_view message_id,
                        std::span<const protocol::Attachment> attachments);

/// Fills the attachments of every message among `changes`, in order, with one query.
void fill_attachments(SQLite::Database& db, std::vector<protocol::InboxChange>& changes);

}  // namespace kaban::server::detail
