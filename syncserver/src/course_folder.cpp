#include "kaban/server/course_folder.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "kaban/server/error.hpp"

namespace kaban::server {
namespace fs = std::filesystem;
using nlohmann::json;
namespace {

// A refusal: the code, and `why` filled with the sentence that names what is wrong.
std::error_code refuse(std::string& why, errc code, std::string message) {
  why = std::move(message);
  return code;
}

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// Every field of `object` must be one of `known`.
bool only_known_fields(const json& object, std::initializer_list<std::string_view> known,
                       const std::string& where, std::string& why) {
  for (const auto& item : object.items()) {
    if (std::find(known.begin(), known.end(), item.key()) == known.end()) {
      why = where + ": unknown field " + in_quotes(item.key());
      return false;
    }
  }
  return true;
}

// A string field no longer than max_bytes; absent is allowed unless `required`.
bool read_text(const json& object, const char* key, std::size_t max_bytes, bool required,
               const std::string& where, std::string& out, std::string& why) {
  const auto it = object.find(key);
  if (it == object.end()) {
    if (required)
      why = where + ": " + in_quotes(key) + " is missing";
    return !required;
  }
  if (!it->is_string()) {
    why = where + ": " + in_quotes(key) + " must be a string";
    return false;
  }
  out = it->get<std::string>();
  if (required && out.empty()) {
    why = where + ": " + in_quotes(key) + " is empty";
    return false;
  }
  if (out.size() > max_bytes) {
    why = where + ": " + in_quotes(key) + " is " + std::to_string(out.size()) +
          " bytes; the limit is " + std::to_string(max_bytes);
    return false;
  }
  return true;
}

// Paths are checked by hand before the protocol's rule so that an attempt to leave the folder
// is named as such, not as a badly formed path.
bool escapes_folder(std::string_view path) {
  if (path.empty())
    return false;
  if (path.front() == '/' || path.find('\\') != std::string_view::npos)
    return true;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    if (path.substr(start, end - start) == "..")
      return true;
    start = end + 1;
  }
  return false;
}

// lstat every component from the folder down, so a symbolic link anywhere (a file, or a
// directory on the way) is refused rather than followed out of the folder. The publisher reads
// the files again later; the folder belongs to the administrator who runs the publish, so a
// swap in between is not an attack this guards against.
Result<std::uint64_t> resolve_file(const fs::path& folder, const std::string& path,
                                   const std::string& where, std::string& why) {
  fs::path current = folder;
  const fs::path relative(path);
  for (auto part = relative.begin(); part != relative.end(); ++part) {
    current /= *part;
    struct stat st {};
    if (::lstat(current.c_str(), &st) != 0) {
      return refuse(why, errc::file_missing,
                    where + ": file " + in_quotes(path) + " does not exist in the course folder");
    }
    if (S_ISLNK(st.st_mode)) {
      return refuse(why, errc::path_escapes,
                    where + ": file " + in_quotes(path) + " goes through the symbolic link " +
                        in_quotes(current.lexically_relative(folder).string()) +
                        "; copy the file into the course folder instead");
    }
    const bool last = std::next(part) == relative.end();
    if (last && !S_ISREG(st.st_mode)) {
      return refuse(why, errc::file_missing,
                    where + ": " + in_quotes(path) + " is not a regular file");
    }
    if (!last && !S_ISDIR(st.st_mode)) {
      return refuse(why, errc::file_missing,
                    where + ": file " + in_quotes(path) + " does not exist in the course folder");
    }
    if (last)
      return static_cast<std::uint64_t>(st.st_size);
  }
  return refuse(why, errc::course_invalid, where + ": a file path is empty");
}

Result<json> read_course_json(const fs::path& folder, std::string& why) {
  const fs::path file = folder / kCourseFile;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    return refuse(why, errc::course_invalid,
                  "there is no " + std::string(kCourseFile) + " in " + folder.string());
  }
  const auto size = fs::file_size(file, ec);
  if (ec || size > kMaxCourseFileSize) {
    return refuse(why, errc::course_invalid,
                  std::string(kCourseFile) + " is larger than " +
                      std::to_string(kMaxCourseFileSize) + " bytes");
  }
  std::ifstream in(file, std::ios::binary);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  json document = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded() || !document.is_object()) {
    return refuse(why, errc::course_invalid,
                  std::string(kCourseFile) + " is not a JSON object; check its syntax");
  }
  return document;
}

Result<protocol::Lesson> read_lesson(const json& object, std::size_t position, std::string& why) {
  std::string where = "lesson " + std::to_string(position);
  if (!object.is_object())
    return refuse(why, errc::course_invalid, where + " is not a JSON object");
  if (!only_known_fields(object, {"id", "title", "kind", "duration_minutes", "files"}, where,
                         why)) {
    return errc::course_invalid;
  }
  protocol::Lesson lesson;
  lesson.id = std::to_string(position);
  if (!read_text(object, "id", kMaxTitleSize, false, where, lesson.id, why))
    return errc::course_invalid;
  if (!protocol::is_valid_id(lesson.id)) {
    return refuse(why, errc::course_invalid,
                  where + ": id " + in_quotes(lesson.id) +
                      " must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or "
                      "digit");
  }
  where = "lesson " + in_quotes(lesson.id);
  if (!read_text(object, "title", kMaxTitleSize, true, where, lesson.title, why) ||
      !read_text(object, "kind", kMaxTitleSize, true, where, lesson.kind, why)) {
    return errc::course_invalid;
  }
  if (!protocol::is_lesson_kind(lesson.kind)) {
    return refuse(why, errc::course_invalid,
                  where + ": kind " + in_quotes(lesson.kind) +
                      " is not one of html, pdf, video, audio, document, other");
  }
  if (const auto it = object.find("duration_minutes"); it != object.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0 ||
        it->get<std::int64_t>() > kMaxLessonMinutes) {
      return refuse(why, errc::course_invalid,
                    where + ": \"duration_minutes\" must be a whole number from 0 to " +
                        std::to_string(kMaxLessonMinutes));
    }
    lesson.duration_minutes = it->get<std::int64_t>();
  }
  const auto files = object.find("files");
  if (files == object.end() || !files->is_array() || files->empty()) {
    return refuse(why, errc::course_invalid,
                  where + ": \"files\" must be a list of at least one file path");
  }
  for (const auto& file : *files) {
    if (!file.is_string())
      return refuse(why, errc::course_invalid, where + ": every file path must be a string");
    lesson.files.push_back(file.get<std::string>());
  }
  return lesson;
}

}  // namespace

std::string media_type_for(std::string_view path) {
  static const std::map<std::string, std::string, std::less<>> kTypes = {
      {"html", "text/html"},    {"htm", "text/html"},   {"pdf", "application/pdf"},
      {"mp4", "video/mp4"},     {"webm", "video/webm"}, {"mp3", "audio/mpeg"},
      {"m4a", "audio/mp4"},     {"ogg", "audio/ogg"},   {"wav", "audio/wav"},
      {"png", "image/png"},     {"jpg", "image/jpeg"},  {"jpeg", "image/jpeg"},
      {"svg", "image/svg+xml"}, {"txt", "text/plain"},  {"json", "application/json"},
  };
  const auto slash = path.rfind('/');
  const auto dot = path.rfind('.');
  if (dot != std::string_view::npos && (slash == std::string_view::npos || dot > slash)) {
    std::string extension(path.substr(dot + 1));
    std::transform(extension.begin(), extension.end(), extension.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (const auto it = kTypes.find(extension); it != kTypes.end())
      return it->second;
  }
  return "application/octet-stream";
}

Result<CourseSource> read_course_folder(const fs::path& folder, std::string& why) {
  KABAN_TRY(document, read_course_json(folder, why));
  const std::string where = kCourseFile;
  if (!only_known_fields(document, {"id", "title", "description", "lessons"}, where, why))
    return errc::course_invalid;

  CourseSource course;
  if (!read_text(document, "id", kMaxTitleSize, true, where, course.id, why) ||
      !read_text(document, "title", kMaxTitleSize, true, where, course.title, why) ||
      !read_text(document, "description", kMaxDescriptionSize, false, where, course.description,
                 why)) {
    return errc::course_invalid;
  }
  if (!protocol::is_valid_id(course.id)) {
    return refuse(why, errc::course_invalid,
                  where + ": id " + in_quotes(course.id) +
                      " must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or "
                      "digit");
  }
  const auto lessons = document.find("lessons");
  if (lessons == document.end() || !lessons->is_array() || lessons->empty()) {
    return refuse(why, errc::course_invalid,
                  where + ": \"lessons\" must be a list of at least one lesson");
  }
  if (lessons->size() > protocol::kMaxLessons) {
    return refuse(
        why, errc::course_invalid,
        where + ": a course has at most " + std::to_string(protocol::kMaxLessons) + " lessons");
  }

  const fs::path root = fs::absolute(folder);
  std::set<std::string> lesson_ids;
  std::set<std::string> seen_paths;
  for (std::size_t i = 0; i < lessons->size(); ++i) {
    KABAN_TRY(lesson, read_lesson((*lessons)[i], i + 1, why));
    const std::string lesson_where = "lesson " + in_quotes(lesson.id);
    if (!lesson_ids.insert(lesson.id).second)
      return refuse(why, errc::course_invalid, lesson_where + " appears twice; ids are unique");
    for (const auto& path : lesson.files) {
      if (escapes_folder(path)) {
        return refuse(why, errc::path_escapes,
                      lesson_where + ": file " + in_quotes(path) +
                          " leaves the course folder; paths are relative, '/'-separated, "
                          "without \"..\"");
      }
      if (!protocol::is_valid_content_path(path)) {
        return refuse(why, errc::course_invalid,
                      lesson_where + ": file path " + in_quotes(path) +
                          " is not valid (empty, \".\" or empty segments, or control bytes)");
      }
      if (!seen_paths.insert(path).second)
        continue;  // lessons may share a file; it is published once
      if (seen_paths.size() > protocol::kMaxFiles) {
        return refuse(
            why, errc::course_invalid,
            where + ": a course has at most " + std::to_string(protocol::kMaxFiles) + " files");
      }
      KABAN_TRY(size, resolve_file(root, path, lesson_where, why));
      course.files.push_back({path, root / path, size, media_type_for(path)});
    }
    course.lessons.push_back(std::move(lesson));
  }
  return course;
}

}  // namespace kaban::server
