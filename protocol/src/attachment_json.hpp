// Attachments on the wire: written by to_json() of the outbox and the inbox, read by their
// parsers. Internal to kaban::protocol.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/protocol/attachment.hpp"

namespace kaban::protocol::detail {

/// Sets `message["attachments"]` when there are any; an empty list writes no key.
void write_attachments(const std::vector<Attachment>& attachments, nlohmann::json& message);

/// Reads the optional "attachments" list of the object `message` reads (absent, null or [] for
/// none): at most kMaxAttachments, each check_attachment()-valid. The first problem is recorded
/// on `message` with a sentence naming the attachment; the list read so far is returned.
std::vector<Attachment> read_attachments(JsonReader& message, Unknown unknown);

}  // namespace kaban::protocol::detail
