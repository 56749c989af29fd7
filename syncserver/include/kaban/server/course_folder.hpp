// Reading a course to publish from a folder: FOLDER/course.json and the files it names.
//
// course.json:
//   {"id": "fire-safety", "title": "Fire safety", "description": "...",
//    "lessons": [{"id": "intro", "title": "Introduction", "kind": "video",
//                 "duration_minutes": 12, "files": ["media/intro.mp4", "media/intro.vtt"]}]}
// id, title and lessons are required; description, a lesson's id (default: its position, "1",
// "2", ...) and duration_minutes (default 0) are optional; title, kind and files are required in
// a lesson. Unknown fields are refused.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/protocol/manifest.hpp"
#include "kaban/result.hpp"

namespace kaban::server {

inline constexpr const char* kCourseFile = "course.json";
inline constexpr std::uintmax_t kMaxCourseFileSize = 1024 * 1024;
inline constexpr std::size_t kMaxTitleSize = 200;  ///< course and lesson titles, in bytes
inline constexpr std::size_t kMaxDescriptionSize = 4000;
inline constexpr std::int64_t kMaxLessonMinutes = 100'000;

/// One distinct file of a course.
struct SourceFile {
  std::string path;                     ///< content path, as in course.json and the manifest
  std::filesystem::path absolute_path;  ///< where it is on disk
  std::uint64_t size = 0;               ///< at the time the folder was read
  std::string media_type;
};

/// A course as read from its folder, checked and ready to publish.
struct CourseSource {
  std::string id;
  std::string title;
  std::string description;
  std::vector<protocol::Lesson> lessons;
  std::vector<SourceFile> files;  ///< each path once, in order of first use by a lesson
};

/// Reads and checks FOLDER/course.json (at most kMaxCourseFileSize) and every file it names.
/// Fails with errc::course_invalid (course.json missing, not JSON, an unknown or missing field,
/// a value breaking a rule), errc::path_escapes (an absolute path, "..", a backslash, or a
/// symbolic link in any component below the folder), errc::file_missing (absent or not a
/// regular file); `why` then names the field, lesson and path. Reads only; thread-safe.
Result<CourseSource> read_course_folder(const std::filesystem::path& folder, std::string& why);

/// The media type for a content path, from its extension (case-insensitive);
/// "application/octet-stream" for one it does not know.
std::string media_type_for(std::string_view path);

}  // namespace kaban::server
