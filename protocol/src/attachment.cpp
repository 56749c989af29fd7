#include "kaban/protocol/attachment.hpp"

#include <algorithm>

#include "attachment_json.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/error.hpp"

namespace kaban::protocol {
namespace {

using nlohmann::json;

// Every chunk of an attachment but the last is full, so this many chunks hold the largest one.
constexpr std::size_t kMaxAttachmentChunks =
    (kMaxAttachmentSize + kAttachmentChunkSize - 1) / kAttachmentChunkSize;

bool is_media_type_char(char c) {
  return c >= 0x20 && c <= 0x7e;
}

// "type/subtype" with optional parameters: printable ASCII, a non-empty type without spaces
// before the first '/', and something after it.
bool is_valid_media_type(std::string_view type) {
  if (type.empty())
    return true;
  if (type.size() > kMaxMediaType || !std::all_of(type.begin(), type.end(), is_media_type_char))
    return false;
  const std::size_t slash = type.find('/');
  if (slash == 0 || slash == std::string_view::npos || slash + 1 == type.size())
    return false;
  return type.substr(0, slash).find(' ') == std::string_view::npos;
}

// How a sentence names the attachment: by its name when that is one, else generically (a name
// that breaks the rules may hold anything, and the sentence is shown to a person).
std::string named(const Attachment& a) {
  if (is_valid_attachment_name(a.name))
    return "the attachment \"" + a.name + "\"";
  return "the attachment";
}

}  // namespace

bool is_valid_attachment_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxAttachmentName || name == "." || name == "..")
    return false;
  // is_valid_message_text checks UTF-8 and control characters; a name cannot hold the two it
  // lets through either.
  if (name.find_first_of(std::string_view("/\\:\t\n", 5)) != std::string_view::npos)
    return false;
  return is_valid_message_text(name);
}

std::string check_attachment(const Attachment& a) {
  if (!is_valid_attachment_name(a.name))
    return "an attachment's name is not a file name (1 to " + std::to_string(kMaxAttachmentName) +
           " bytes of UTF-8 text, no control characters, '/', '\\' or ':', not \".\" or \"..\")";
  if (!is_valid_media_type(a.media_type))
    return named(a) + " has a media type that is not of the form type/subtype";
  if (a.size == 0)
    return named(a) + " is empty";
  if (a.size > kMaxAttachmentSize)
    return named(a) + " is " + std::to_string(a.size) + " bytes; the limit is " +
           std::to_string(kMaxAttachmentSize);
  if (!is_sha256_hex(a.sha256))
    return named(a) + " has a sha256 that is not 64 lower-case hex digits";
  if (a.chunks.empty())
    return named(a) + " lists no chunks";
  // Each chunk on its own first, so an empty chunk is named as such rather than as a short one.
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < a.chunks.size(); ++i) {
    const ChunkRef& c = a.chunks[i];
    const std::string which = named(a) + ": chunk " + std::to_string(i + 1);
    if (!is_sha256_hex(c.sha256))
      return which + " has a sha256 that is not 64 lower-case hex digits";
    if (c.size == 0)
      return which + " is empty";
    if (c.size > kAttachmentChunkSize)
      return which + " is " + std::to_string(c.size) + " bytes; a chunk holds at most " +
             std::to_string(kAttachmentChunkSize);
    total += c.size;
  }
  for (std::size_t i = 0; i + 1 < a.chunks.size(); ++i)
    if (a.chunks[i].size != kAttachmentChunkSize)
      return named(a) + ": chunk " + std::to_string(i + 1) + " is " +
             std::to_string(a.chunks[i].size) + " bytes; every chunk but the last must be " +
             std::to_string(kAttachmentChunkSize);
  if (total != a.size)
    return named(a) + ": its chunks add up to " + std::to_string(total) + " bytes, not " +
           std::to_string(a.size);
  return {};
}

std::vector<std::uint64_t> attachment_chunk_sizes(std::uint64_t size) {
  std::vector<std::uint64_t> sizes;
  sizes.reserve(static_cast<std::size_t>((size + kAttachmentChunkSize - 1) / kAttachmentChunkSize));
  while (size > 0) {
    const std::uint64_t take = std::min<std::uint64_t>(size, kAttachmentChunkSize);
    sizes.push_back(take);
    size -= take;
  }
  return sizes;
}

namespace detail {

void write_attachments(const std::vector<Attachment>& attachments, json& message) {
  if (attachments.empty())
    return;
  json list = json::array();
  for (const Attachment& a : attachments) {
    json chunks = json::array();
    for (const ChunkRef& c : a.chunks)
      chunks.push_back({{"sha256", c.sha256}, {"size", c.size}});
    list.push_back({{"name", a.name},
                    {"media_type", a.media_type},
                    {"size", a.size},
                    {"sha256", a.sha256},
                    {"chunks", std::move(chunks)}});
  }
  message["attachments"] = std::move(list);
}

std::vector<Attachment> read_attachments(JsonReader& message, Unknown unknown) {
  std::vector<Attachment> out;
  const json* list = message.array("attachments", kMaxAttachments, /*required=*/false);
  if (!list)
    return out;
  out.reserve(list->size());
  for (const json& aj : *list) {
    JsonReader r(aj, message.where() + " attachment " + std::to_string(out.size() + 1), unknown);
    Attachment a;
    a.name = r.text("name", kMaxAttachmentName);
    a.media_type = r.text("media_type", kMaxMediaType, /*required=*/false);
    // Sizes are read wide so that check_attachment() words the problem, naming the attachment.
    a.size = static_cast<std::uint64_t>(r.integer("size", 0, INT64_MAX));
    a.sha256 = r.text("sha256", 64);
    if (const json* chunks = r.array("chunks", kMaxAttachmentChunks)) {
      a.chunks.reserve(chunks->size());
      for (const json& cj : *chunks) {
        JsonReader cr(cj, r.where() + " chunk " + std::to_string(a.chunks.size() + 1), unknown);
        ChunkRef c;
        c.sha256 = cr.text("sha256", 64);
        c.size = static_cast<std::uint64_t>(cr.integer("size", 0, INT64_MAX));
        std::string why;
        if (!cr.finish(&why)) {
          r.fail(errc::invalid_value, why);
          break;
        }
        a.chunks.push_back(std::move(c));
      }
    }
    if (r.ok())
      if (const std::string problem = check_attachment(a); !problem.empty())
        r.fail(errc::invalid_value, r.where() + ": " + problem);
    std::string why;
    if (!r.finish(&why)) {
      message.fail(errc::invalid_value, why);
      break;
    }
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace detail
}  // namespace kaban::protocol
