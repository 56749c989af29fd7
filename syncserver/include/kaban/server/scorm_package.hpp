// Reading a SCORM 1.2 package (a zip with imsmanifest.xml at its root) as a course to publish.
//
// The zip is checked whole before anything is unpacked: every entry name must stay inside the
// package, no entry may be a symbolic link, a special file or encrypted, and the declared sizes
// must keep within ScormLimits. imsmanifest.xml is read and mapped to lessons next, so a broken
// manifest fails before a byte is written. Only then are the files unpacked into a staging
// folder, counting the bytes actually decompressed against the same limits.
//
// Mapping (docs/content.md, "SCORM 1.2 import"):
// - course id: the caller's, or the manifest's `identifier` lower-cased, each run of characters
//   outside [a-z0-9._-] replaced by one '-', leading characters other than a letter or digit
//   dropped, cut to 64;
// - course title: the default organization's title, else the manifest identifier; description:
//   the manifest's metadata lom/general/description/langstring when there is one;
// - one lesson per item of the default organization (the first one when none is named) that
//   refers to a resource, depth first in document order. An item without a resource is a
//   heading: its title prefixes the titles below it ("Module 1: Quiz"). Titles are cut to
//   kMaxTitleSize bytes;
// - a lesson's files: the resource's launch file (its href, xml:base applied, query and fragment
//   removed), then the resource's own files, then those of its dependencies, transitively, each
//   once;
// - every other file of the package is part of the course too (SCOs load files their manifest
//   does not list), except imsmanifest.xml, XML schema files (.xsd, .dtd, which an LMS uses to
//   validate the manifest) and the __MACOSX/, .DS_Store and Thumbs.db litter of archivers,
//   unless a lesson lists one of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "kaban/result.hpp"
#include "kaban/server/course_folder.hpp"

namespace kaban::server {

/// The file a SCORM package describes itself in, at the root of the zip.
inline constexpr const char* kScormManifestFile = "imsmanifest.xml";

/// Bounds on what a package may make read_scorm_package unpack. Sizes count the bytes actually
/// decompressed; the sizes a zip declares are checked too, but never trusted.
struct ScormLimits {
  /// Every file of the package together, uncompressed.
  std::uint64_t max_total_bytes = std::uint64_t{4} << 30;
  /// One file, uncompressed.
  std::uint64_t max_entry_bytes = std::uint64_t{2} << 30;
  /// Entries of the zip, folders included.
  std::size_t max_entries = 20'000;
  /// imsmanifest.xml, which is read into memory.
  std::uint64_t max_manifest_bytes = std::uint64_t{4} << 20;
  /// The most uncompressed bytes per compressed byte, for each entry and for the package as a
  /// whole: a zip bomb expands by a thousand or more, course content by far less than 100.
  std::uint64_t max_expansion = 100;
  /// An entry, or the package, may expand beyond max_expansion up to this many bytes (a small
  /// file of blanks compresses very well and is harmless).
  std::uint64_t expansion_allowance = std::uint64_t{1} << 20;
  /// Resources visited while collecting every lesson's dependencies, all lessons together: a
  /// bound on the work a tangled manifest can cause (each lesson walks its dependencies anew).
  std::uint64_t max_dependency_steps = 1'000'000;
};

/// Reads the SCORM 1.2 package `package` and unpacks its files into `staging_dir`, which it
/// creates (mode 0700; it must not exist yet, and its parent must). Returns the course to publish,
/// its files' absolute paths inside `staging_dir`. `course_id_override`, when not empty, is the
/// course id; otherwise the id comes from the manifest's identifier.
///
/// Fails, with `why` naming the entry, element, item or resource and saying what to do, with:
/// errc::package_invalid for a package that is not a safe zip (not a zip, empty, an entry name
/// that is absolute, holds "..", "." or empty segments or control characters, is not UTF-8, or
/// collides with another after '\' became '/'; a symbolic link, special file or encrypted entry;
/// more entries, bytes or expansion than `limits` allow; a damaged entry) or has no usable
/// manifest (missing or not at the root, too large, not well-formed XML, a DOCTYPE, no
/// organization or launchable item, an item naming an unknown resource, a resource without an
/// href, an href or file leaving the package or missing from it, a dependency on an unknown
/// resource, more than limits.max_dependency_steps; dependency cycles are fine);
/// errc::course_invalid when the course would break a manifest rule (an id that is not valid, more
/// than protocol::kMaxLessonFiles files in a lesson, more than protocol::kMaxLessons lessons or
/// protocol::kMaxFiles files); errc::storage_failed when the staging folder cannot be written
/// (exists already, disk full, permissions).
///
/// On failure `staging_dir` may hold part of the package: the caller removes it whatever
/// happens (after publishing, on success). Never writes outside `staging_dir`. Thread-safe for
/// distinct staging folders.
Result<CourseSource> read_scorm_package(const std::filesystem::path& package,
                                        const std::filesystem::path& staging_dir,
                                        std::string_view course_id_override,
                                        const ScormLimits& limits, std::string& why);

}  // namespace kaban::server
