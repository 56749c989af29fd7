#include "kaban/protocol/manifest.hpp"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "json_reader.hpp"
#include "kaban/protocol/error.hpp"
#include "kaban/protocol/timestamp.hpp"

namespace kaban::protocol {
namespace {

using detail::JsonReader;
using detail::Unknown;
using nlohmann::json;

constexpr std::int64_t kManifestFormat = 1;
constexpr std::size_t kMaxTitle = 200;
constexpr std::size_t kMaxDescription = 4000;
constexpr std::size_t kMaxPath = 1024;
constexpr std::size_t kMaxMediaType = 128;
constexpr std::size_t kMaxTimestamp = 40;
constexpr std::size_t kMaxChunksPerFile = 1 << 20;
constexpr std::int64_t kMaxDurationMinutes = 100'000;
constexpr std::int64_t kMaxFileSize = std::int64_t{1} << 40;  // 1 TiB
constexpr std::string_view kLessonKinds[] = {"html", "pdf", "video", "audio", "document", "other"};

bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

json chunk_json(const ChunkRef& c) {
  return {{"sha256", c.sha256}, {"size", c.size}};
}

void read_file(const json& j, std::size_t index, ManifestFile& f, JsonReader& parent) {
  JsonReader r(j, "file " + std::to_string(index + 1), Unknown::refuse);
  f.path = r.text("path", kMaxPath);
  f.media_type = r.text("media_type", kMaxMediaType);
  f.size = static_cast<std::uint64_t>(r.integer("size", 0, kMaxFileSize));
  f.sha256 = r.text("sha256", 64);
  if (r.ok() && !is_valid_content_path(f.path))
    r.fail(errc::invalid_value, r.where() + ": \"" + f.path + "\" is not a safe relative path");
  if (r.ok() && !is_sha256_hex(f.sha256))
    r.fail(errc::invalid_value, r.where() + ": sha256 is not 64 lower-case hex digits");
  std::uint64_t total = 0;
  if (const json* chunks = r.array("chunks", kMaxChunksPerFile)) {
    f.chunks.reserve(chunks->size());
    for (const json& cj : *chunks) {
      JsonReader cr(cj, r.where() + " chunk " + std::to_string(f.chunks.size() + 1),
                    Unknown::refuse);
      ChunkRef c;
      c.sha256 = cr.text("sha256", 64);
      c.size = static_cast<std::uint64_t>(cr.integer("size", 1, kMaxChunkSize));
      if (cr.ok() && !is_sha256_hex(c.sha256))
        cr.fail(errc::invalid_value, cr.where() + ": sha256 is not 64 lower-case hex digits");
      std::string why;
      if (!cr.finish(&why)) {
        r.fail(errc::invalid_value, why);
        break;
      }
      total += c.size;
      f.chunks.push_back(std::move(c));
    }
  }
  if (r.ok() && total != f.size)
    r.fail(errc::invalid_value, r.where() + ": its chunks add up to " + std::to_string(total) +
                                    " bytes, not " + std::to_string(f.size));
  std::string why;
  if (!r.finish(&why))
    parent.fail(errc::invalid_value, why);
}

void read_lesson(const json& j, std::size_t index, Lesson& l, JsonReader& parent) {
  JsonReader r(j, "lesson " + std::to_string(index + 1), Unknown::refuse);
  l.id = r.text("id", 64);
  l.title = r.text("title", kMaxTitle);
  l.kind = r.text("kind", 16);
  l.duration_minutes = r.integer("duration_minutes", 0, kMaxDurationMinutes);
  if (r.ok() && !is_valid_id(l.id))
    r.fail(errc::invalid_value, r.where() + ": id \"" + l.id + "\" is not a valid id");
  if (r.ok() && !is_lesson_kind(l.kind))
    r.fail(errc::invalid_value, r.where() + ": kind \"" + l.kind +
                                    "\" is not one of html, pdf, "
                                    "video, audio, document, other");
  if (const json* files = r.array("files", kMaxLessonFiles)) {
    for (const json& fj : *files) {
      if (!fj.is_string() || fj.get_ref<const std::string&>().size() > kMaxPath) {
        r.fail(errc::malformed, r.where() + ": files must be a list of paths");
        break;
      }
      l.files.push_back(fj.get<std::string>());
    }
    if (r.ok() && l.files.empty())
      r.fail(errc::invalid_value, r.where() + " uses no file");
  }
  std::string why;
  if (!r.finish(&why))
    parent.fail(errc::invalid_value, why);
}

}  // namespace

bool is_lesson_kind(std::string_view kind) {
  return std::find(std::begin(kLessonKinds), std::end(kLessonKinds), kind) !=
         std::end(kLessonKinds);
}

bool is_valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64)
    return false;
  if (id.front() == '.' || id.front() == '_' || id.front() == '-')
    return false;
  return std::all_of(id.begin(), id.end(), is_id_char);
}

bool is_valid_content_path(std::string_view path) {
  if (path.empty() || path.size() > kMaxPath || path.front() == '/')
    return false;
  if (path.find('\\') != std::string_view::npos || path.find('\0') != std::string_view::npos)
    return false;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t slash = std::min(path.find('/', start), path.size());
    const std::string_view segment = path.substr(start, slash - start);
    if (segment.empty() || segment == "." || segment == "..")
      return false;
    for (char c : segment)
      if (static_cast<unsigned char>(c) < 0x20)
        return false;
    start = slash + 1;
  }
  return true;
}

bool is_sha256_hex(std::string_view text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::uint64_t Manifest::total_size() const {
  std::uint64_t total = 0;
  for (const ManifestFile& f : files)
    total += f.size;
  return total;
}

const ManifestFile* Manifest::find_file(std::string_view path) const {
  for (const ManifestFile& f : files)
    if (f.path == path)
      return &f;
  return nullptr;
}

const Lesson* Manifest::find_lesson(std::string_view id) const {
  for (const Lesson& l : lessons)
    if (l.id == id)
      return &l;
  return nullptr;
}

std::string manifest_to_json(const Manifest& m) {
  json lessons = json::array();
  for (const Lesson& l : m.lessons)
    lessons.push_back({{"id", l.id},
                       {"title", l.title},
                       {"kind", l.kind},
                       {"duration_minutes", l.duration_minutes},
                       {"files", l.files}});
  json files = json::array();
  for (const ManifestFile& f : m.files) {
    json chunks = json::array();
    for (const ChunkRef& c : f.chunks)
      chunks.push_back(chunk_json(c));
    files.push_back({{"path", f.path},
                     {"media_type", f.media_type},
                     {"size", f.size},
                     {"sha256", f.sha256},
                     {"chunks", std::move(chunks)}});
  }
  json j = {{"format", kManifestFormat},     {"course_id", m.course_id},
            {"version", m.version},          {"title", m.title},
            {"description", m.description},  {"published_at", m.published_at},
            {"lessons", std::move(lessons)}, {"files", std::move(files)}};
  if (!m.expires_at.empty())
    j["expires_at"] = m.expires_at;
  return j.dump();
}

Result<Manifest> parse_manifest(std::string_view text, std::string* why) {
  json j;
  KABAN_TRYV(detail::parse_json(text, kMaxManifestSize, j, why));
  JsonReader r(j, "manifest", Unknown::refuse);
  Manifest m;
  if (r.integer("format", 1, 1'000'000) != kManifestFormat && r.ok())
    r.fail(errc::invalid_value, "the manifest format is newer than this agent; update Kaban");
  m.course_id = r.text("course_id", 64);
  m.version = r.integer("version", 1, INT64_MAX);
  m.title = r.text("title", kMaxTitle);
  m.description = r.text("description", kMaxDescription);
  m.published_at = r.text("published_at", kMaxTimestamp);
  m.expires_at = r.text("expires_at", kMaxTimestamp, false);
  if (r.ok() && !m.expires_at.empty() && !parse_timestamp(m.expires_at))
    r.fail(errc::invalid_value,
           "manifest: expires_at \"" + m.expires_at + "\" is not an RFC 3339 time");
  if (r.ok() && !is_valid_id(m.course_id))
    r.fail(errc::invalid_value, "manifest: course_id \"" + m.course_id + "\" is not a valid id");
  if (const json* files = r.array("files", kMaxFiles)) {
    m.files.resize(files->size());
    for (std::size_t i = 0; i < files->size() && r.ok(); ++i)
      read_file((*files)[i], i, m.files[i], r);
  }
  if (const json* lessons = r.array("lessons", kMaxLessons)) {
    m.lessons.resize(lessons->size());
    for (std::size_t i = 0; i < lessons->size() && r.ok(); ++i)
      read_lesson((*lessons)[i], i, m.lessons[i], r);
  }
  if (r.ok()) {
    std::set<std::string_view> paths;
    for (const ManifestFile& f : m.files)
      if (!paths.insert(f.path).second)
        r.fail(errc::invalid_value, "manifest: the file \"" + f.path + "\" is listed twice");
    std::set<std::string_view> ids;
    for (const Lesson& l : m.lessons) {
      if (!ids.insert(l.id).second)
        r.fail(errc::invalid_value, "manifest: the lesson id \"" + l.id + "\" is used twice");
      for (const std::string& p : l.files)
        if (!paths.contains(p))
          r.fail(errc::invalid_value,
                 "manifest: lesson \"" + l.id + "\" uses \"" + p + "\", which is not listed");
    }
  }
  KABAN_TRYV(r.finish(why));
  return m;
}

}  // namespace kaban::protocol
