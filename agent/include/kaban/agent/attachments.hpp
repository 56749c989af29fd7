// Attachments: the small files that travel with messages, held in the store chunk by chunk
// (chunked and addressed by SHA-256 like course content, see protocol/attachment.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/agent/store.hpp"
#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/result.hpp"

namespace kaban::agent {

/// A file the person attaches to a message they write (see Messages::send).
struct AttachmentFile {
  std::string name;        ///< the file's base name: protocol::is_valid_attachment_name
  std::string media_type;  ///< "type/subtype", or "" when unknown
  std::string bytes;       ///< 1..protocol::kMaxAttachmentSize bytes
};

/// An attachment of a message on this device.
struct AttachmentView {
  std::string name;
  std::string media_type;  ///< "" when the sender did not say
  std::uint64_t size = 0;
  std::string sha256;       ///< of the whole file, 64 lower-case hex digits
  bool downloaded = false;  ///< every chunk is on this device: Attachments::read() gives it
};

/// The attachment part of a Store. Messages::send stores the person's own attachments with
/// their message, and Messages::apply_inbox stores what the inbox says other messages carry;
/// the message lane of sync then fetches the chunks this device lacks (missing_chunks,
/// put_chunk) and uploads the person's own before their message (chunk). An attachment chunk
/// lives as long as some message on the device uses it: it goes when the last such message is
/// dropped (the person left the channel, or discarded a message the server refused).
///
/// Like Store, an Attachments is used from one thread at a time (sync guards its store with a
/// mutex shared by its two lanes); it keeps a reference to the store, which must outlive it. A
/// store failure comes back with its store_error_code(), and nothing of that call is kept.
class Attachments {
 public:
  explicit Attachments(Store& store) noexcept : store_(store) {}

  /// The attachments of a message, in the message's order (none for a message without).
  /// errc::not_found if no message of that id is on this device.
  Result<std::vector<AttachmentView>> list(std::string_view message_id);

  /// The whole file, once its size and SHA-256 verified over its chunks in order (so the bytes
  /// a caller gets are always the sender's; at most protocol::kMaxAttachmentSize of memory).
  /// `name` "" means the message's only attachment. errc::not_found for an unknown message, a
  /// name the message has no attachment of, or an attachment whose chunks are not all on this
  /// device yet (list() tells which); errc::invalid_input for "" when the message has several;
  /// errc::content_invalid if the chunks do not add up to the file's size and SHA-256.
  Result<std::string> read(std::string_view message_id, std::string_view name);

  /// The distinct chunks that attachments on this device use and the device does not hold,
  /// in message order (server seq).
  Result<std::vector<protocol::ChunkRef>> missing_chunks();

  /// Stores one received chunk after checking its bytes against `sha256` and that an
  /// attachment on this device uses a chunk of that hash and size. Returns how many
  /// attachments this chunk completed (0 if it was held already). errc::content_invalid if the
  /// bytes do not match or nothing uses the chunk; nothing is stored then.
  Result<std::size_t> put_chunk(std::string_view sha256, std::string_view bytes);

  /// The bytes of a held chunk (to upload it). errc::not_found if it is not held.
  Result<std::string> chunk(std::string_view sha256);

 private:
  Store& store_;
};

}  // namespace kaban::agent
