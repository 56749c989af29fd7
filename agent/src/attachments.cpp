#include "kaban/agent/attachments.hpp"

#include <set>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "attachment_rows.hpp"
#include "chunk_rows.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/crypto/sha256.hpp"

namespace kaban::agent {
namespace {

std::string hex_sha256(std::string_view bytes) {
  return crypto::to_hex(crypto::sha256(crypto::as_bytes(bytes)));
}

bool message_held(SQLite::Database& db, const std::string& id) {
  SQLite::Statement q(db, "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?)");
  q.bind(1, id);
  q.executeStep();
  return q.getColumn(0).getInt() != 0;
}

}  // namespace

namespace detail {

Result<std::vector<protocol::Attachment>> describe_files(std::span<const AttachmentFile> files) {
  if (files.size() > protocol::kMaxAttachments)
    return errc::invalid_input;
  std::vector<protocol::Attachment> described;
  described.reserve(files.size());
  // A name picks the attachment to read (`kaban attachment MESSAGE NAME`), so two of one
  // message may not share it.
  std::set<std::string_view> names;
  for (const AttachmentFile& file : files) {
    if (file.bytes.empty() || file.bytes.size() > protocol::kMaxAttachmentSize ||
        !protocol::is_valid_attachment_name(file.name) || !names.insert(file.name).second)
      return errc::invalid_input;
    protocol::Attachment a;
    a.name = file.name;
    a.media_type = file.media_type;
    a.size = file.bytes.size();
    a.sha256 = hex_sha256(file.bytes);
    const std::string_view bytes(file.bytes);
    std::size_t offset = 0;
    for (const std::uint64_t size : protocol::attachment_chunk_sizes(a.size)) {
      a.chunks.push_back({hex_sha256(bytes.substr(offset, size)), size});
      offset += size;
    }
    if (!protocol::check_attachment(a).empty())
      return errc::invalid_input;
    described.push_back(std::move(a));
  }
  return described;
}

AttachmentWriter::AttachmentWriter(SQLite::Database& db)
    : remove_(db, "DELETE FROM message_attachments WHERE message_id = ?"),
      insert_attachment_(db, R"sql(
        INSERT INTO message_attachments (message_id, ordinal, name, media_type, size, sha256)
        VALUES (?, ?, ?, ?, ?, ?)
      )sql"),
      insert_chunk_ref_(db, R"sql(
        INSERT INTO message_attachment_chunks (message_id, ordinal, position, hash, size)
        VALUES (?, ?, ?, ?, ?)
      )sql"),
      insert_chunk_(db, R"sql(
        INSERT INTO attachment_chunks (hash, size, data) VALUES (?, ?, ?)
        ON CONFLICT (hash) DO NOTHING
      )sql") {}

bool AttachmentWriter::replace(const std::string& message_id,
                               const std::vector<protocol::Attachment>& attachments) {
  // The chunk rows go with their attachment (ON DELETE CASCADE).
  remove_.reset();
  remove_.bind(1, message_id);
  const bool had = remove_.exec() > 0;
  for (std::size_t ordinal = 0; ordinal < attachments.size(); ++ordinal) {
    const protocol::Attachment& a = attachments[ordinal];
    insert_attachment_.reset();
    insert_attachment_.bind(1, message_id);
    insert_attachment_.bind(2, static_cast<std::int64_t>(ordinal));
    insert_attachment_.bind(3, a.name);
    insert_attachment_.bind(4, a.media_type);
    insert_attachment_.bind(5, static_cast<std::int64_t>(a.size));
    insert_attachment_.bind(6, a.sha256);
    insert_attachment_.exec();
    for (std::size_t position = 0; position < a.chunks.size(); ++position) {
      insert_chunk_ref_.reset();
      insert_chunk_ref_.bind(1, message_id);
      insert_chunk_ref_.bind(2, static_cast<std::int64_t>(ordinal));
      insert_chunk_ref_.bind(3, static_cast<std::int64_t>(position));
      insert_chunk_ref_.bind(4, a.chunks[position].sha256);
      insert_chunk_ref_.bind(5, static_cast<std::int64_t>(a.chunks[position].size));
      insert_chunk_ref_.exec();
    }
  }
  return had;
}

void AttachmentWriter::store_chunks(const protocol::Attachment& attachment,
                                    std::string_view bytes) {
  std::size_t offset = 0;
  for (const protocol::ChunkRef& chunk : attachment.chunks) {
    const std::string_view piece = bytes.substr(offset, chunk.size);
    offset += chunk.size;
    insert_chunk_.reset();
    insert_chunk_.bind(1, chunk.sha256);
    insert_chunk_.bind(2, static_cast<std::int64_t>(piece.size()));
    insert_chunk_.bindNoCopy(3, piece.data(), static_cast<int>(piece.size()));
    insert_chunk_.exec();
  }
}

AttachmentReader::AttachmentReader(SQLite::Database& db)
    : query_(db, R"sql(
        SELECT a.name, a.media_type, a.size, a.sha256,
               NOT EXISTS (SELECT 1 FROM message_attachment_chunks r
                           WHERE r.message_id = a.message_id AND r.ordinal = a.ordinal
                             AND NOT EXISTS (SELECT 1 FROM attachment_chunks c
                                             WHERE c.hash = r.hash))
        FROM message_attachments a WHERE a.message_id = ? ORDER BY a.ordinal
      )sql") {}

std::vector<AttachmentView> AttachmentReader::of(const std::string& message_id) {
  query_.reset();
  query_.bind(1, message_id);
  std::vector<AttachmentView> views;
  while (query_.executeStep()) {
    AttachmentView v;
    v.name = query_.getColumn(0).getString();
    v.media_type = query_.getColumn(1).getString();
    v.size = static_cast<std::uint64_t>(query_.getColumn(2).getInt64());
    v.sha256 = query_.getColumn(3).getString();
    v.downloaded = query_.getColumn(4).getInt() != 0;
    views.push_back(std::move(v));
  }
  query_.reset();
  return views;
}

void collect_attachment_garbage(SQLite::Database& db) {
  db.exec(R"sql(
    DELETE FROM attachment_chunks
    WHERE NOT EXISTS (SELECT 1 FROM message_attachment_chunks r
                      WHERE r.hash = attachment_chunks.hash)
  )sql");
}

}  // namespace detail

Result<std::vector<AttachmentView>> Attachments::list(std::string_view message_id) {
  try {
    SQLite::Database& db = store_.db();
    const std::string id(message_id);
    if (!message_held(db, id))
      return errc::not_found;
    return detail::AttachmentReader(db).of(id);
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::string> Attachments::read(std::string_view message_id, std::string_view name) {
  try {
    SQLite::Database& db = store_.db();
    const std::string id(message_id);
    if (!message_held(db, id))
      return errc::not_found;
    SQLite::Statement attachments(db, R"sql(
      SELECT ordinal, name, size, sha256 FROM message_attachments
      WHERE message_id = ? ORDER BY ordinal
    )sql");
    attachments.bind(1, id);
    struct Row {
      std::int64_t ordinal = 0;
      std::string name;
      std::uint64_t size = 0;
      std::string sha256;
    };
    std::vector<Row> rows;
    while (attachments.executeStep())
      rows.push_back({attachments.getColumn(0).getInt64(), attachments.getColumn(1).getString(),
                      static_cast<std::uint64_t>(attachments.getColumn(2).getInt64()),
                      attachments.getColumn(3).getString()});
    attachments.reset();
    const Row* chosen = nullptr;
    if (name.empty()) {
      if (rows.size() > 1)
        return errc::invalid_input;
      if (!rows.empty())
        chosen = &rows.front();
    } else {
      for (const Row& row : rows) {
        if (row.name == name) {
          chosen = &row;
          break;
        }
      }
    }
    if (chosen == nullptr)
      return errc::not_found;
    // The size was checked when the row was written; a larger one is damage, not a file.
    if (chosen->size > protocol::kMaxAttachmentSize)
      return errc::content_invalid;

    SQLite::Statement chunks(db, R"sql(
      SELECT c.data IS NOT NULL, c.data
      FROM message_attachment_chunks r LEFT JOIN attachment_chunks c ON c.hash = r.hash
      WHERE r.message_id = ? AND r.ordinal = ? ORDER BY r.position
    )sql");
    chunks.bind(1, id);
    chunks.bind(2, chosen->ordinal);
    std::string bytes;
    bytes.reserve(static_cast<std::size_t>(chosen->size));
    crypto::Sha256 hash;
    while (chunks.executeStep()) {
      if (chunks.getColumn(0).getInt() == 0)
        return errc::not_found;  // not downloaded yet
      const SQLite::Column data = chunks.getColumn(1);
      const std::string_view piece(static_cast<const char*>(data.getBlob()),
                                   static_cast<std::size_t>(data.getBytes()));
      if (bytes.size() + piece.size() > chosen->size)
        return errc::content_invalid;
      hash.update(crypto::as_bytes(piece));
      bytes.append(piece);
    }
    if (bytes.size() != chosen->size || crypto::to_hex(hash.finish()) != chosen->sha256)
      return errc::content_invalid;
    return bytes;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::vector<protocol::ChunkRef>> Attachments::missing_chunks() {
  try {
    SQLite::Statement query(store_.db(), R"sql(
      SELECT r.hash, r.size
      FROM message_attachment_chunks r JOIN messages m ON m.id = r.message_id
      WHERE NOT EXISTS (SELECT 1 FROM attachment_chunks c WHERE c.hash = r.hash)
      ORDER BY m.seq IS NULL, m.seq, m.rowid, r.ordinal, r.position
    )sql");
    return detail::distinct_chunks(query);
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::size_t> Attachments::put_chunk(std::string_view sha256, std::string_view bytes) {
  if (hex_sha256(bytes) != sha256)
    return errc::content_invalid;
  try {
    SQLite::Database& db = store_.db();
    SQLite::Transaction tx(db);
    const std::string hash(sha256);
    // A chunk nothing uses would never be collected until some message happened to use it.
    SQLite::Statement used(
        db, "SELECT 1 FROM message_attachment_chunks WHERE hash = ? AND size = ? LIMIT 1");
    used.bind(1, hash);
    used.bind(2, static_cast<std::int64_t>(bytes.size()));
    if (!used.executeStep())
      return errc::content_invalid;
    used.reset();
    SQLite::Statement insert(db, R"sql(
      INSERT INTO attachment_chunks (hash, size, data) VALUES (?, ?, ?)
      ON CONFLICT (hash) DO NOTHING
    )sql");
    insert.bind(1, hash);
    insert.bind(2, static_cast<std::int64_t>(bytes.size()));
    insert.bindNoCopy(3, bytes.data(), static_cast<int>(bytes.size()));
    if (insert.exec() == 0)
      return std::size_t{0};
    // The attachments that use this chunk and now hold every chunk: before it arrived none of
    // them was complete, so this chunk completed each of them.
    SQLite::Statement completed(db, R"sql(
      SELECT count(*) FROM message_attachments a
      WHERE EXISTS (SELECT 1 FROM message_attachment_chunks r
                    WHERE r.message_id = a.message_id AND r.ordinal = a.ordinal AND r.hash = ?1)
        AND NOT EXISTS (SELECT 1 FROM message_attachment_chunks r
                        WHERE r.message_id = a.message_id AND r.ordinal = a.ordinal
                          AND NOT EXISTS (SELECT 1 FROM attachment_chunks c
                                          WHERE c.hash = r.hash))
    )sql");
    completed.bind(1, hash);
    completed.executeStep();
    const auto count = static_cast<std::size_t>(completed.getColumn(0).getInt64());
    completed.reset();
    tx.commit();
    return count;
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

Result<std::string> Attachments::chunk(std::string_view sha256) {
  try {
    SQLite::Statement query(store_.db(), "SELECT data FROM attachment_chunks WHERE hash = ?");
    query.bind(1, std::string(sha256));
    if (!query.executeStep())
      return errc::not_found;
    const SQLite::Column data = query.getColumn(0);
    return std::string(static_cast<const char*>(data.getBlob()),
                       static_cast<std::size_t>(data.getBytes()));
  } catch (const SQLite::Exception& e) {
    return store_error_code(e);
  }
}

}  // namespace kaban::agent
