// SCORM import: packages built here with libzip, good and hostile, read by read_scorm_package and
// published by admin_course_import_scorm.
#include "kaban/server/scorm_package.hpp"

#include <sys/stat.h>
#include <zip.h>

#include <cstring>
#include <set>
#include <sstream>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/crypto/random.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/error.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using kaban::testing::read_file;
using kaban::testing::TempDir;
using kaban::testing::text_of;
using kaban::testing::write_text;

// One entry of a zip the test builds.
struct ZipEntry {
  enum class Kind { file, folder, symlink, encrypted, stored };
  std::string name;
  std::string data;
  Kind kind = Kind::file;
  std::size_t zeros = 0;  ///< when not 0, the data is this many zero bytes, made in make_zip
};

// A file of `size` zero bytes: a zip bomb's payload, compressing about a thousandfold.
ZipEntry zeros(std::string name, std::size_t size) {
  return {std::move(name), "", ZipEntry::Kind::file, size};
}

ZipEntry folder(std::string name) {
  return {std::move(name), "", ZipEntry::Kind::folder};
}

// Writes a zip of `entries`, in order, with libzip.
void make_zip(const fs::path& file, const std::vector<ZipEntry>& entries) {
  std::vector<std::string> payloads;  // alive until zip_close, which reads them
  payloads.reserve(entries.size());
  int error = 0;
  zip_t* zip = zip_open(file.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(zip, nullptr) << "libzip error " << error;
  for (const ZipEntry& entry : entries) {
    if (entry.kind == ZipEntry::Kind::folder) {
      ASSERT_GE(zip_dir_add(zip, entry.name.c_str(), 0), 0) << zip_strerror(zip);
      continue;
    }
    const std::string& data =
        entry.zeros == 0 ? entry.data : payloads.emplace_back(entry.zeros, '\0');
    zip_source_t* source = zip_source_buffer(zip, data.data(), data.size(), 0);
    ASSERT_NE(source, nullptr);
    const zip_int64_t index = zip_file_add(zip, entry.name.c_str(), source, 0);
    ASSERT_GE(index, 0) << entry.name << ": " << zip_strerror(zip);
    const auto i = static_cast<zip_uint64_t>(index);
    switch (entry.kind) {
      case ZipEntry::Kind::symlink:
        ASSERT_EQ(
            zip_file_set_external_attributes(zip, i, 0, ZIP_OPSYS_UNIX, (S_IFLNK | 0777u) << 16),
            0);
        break;
      case ZipEntry::Kind::encrypted:
        ASSERT_EQ(zip_file_set_encryption(zip, i, ZIP_EM_AES_256, "secret"), 0)
            << zip_strerror(zip);
        break;
      case ZipEntry::Kind::stored:
        ASSERT_EQ(zip_set_file_compression(zip, i, ZIP_CM_STORE, 0), 0);
        break;
      default:
        break;
    }
  }
  ASSERT_EQ(zip_close(zip), 0) << zip_strerror(zip);
}

// Rewrites the uncompressed size the zip declares for entry `name`, in its local header and in
// the central directory: a forged package whose content is larger than it says.
void declare_size(const fs::path& file, std::string_view name, std::uint32_t size) {
  auto bytes = read_file(file);
  const auto u16 = [&](std::size_t at) { return bytes[at] | (bytes[at + 1] << 8); };
  int patched = 0;
  for (std::size_t i = 0; i + 46 < bytes.size(); ++i) {
    const bool local = std::memcmp(&bytes[i], "PK\3\4", 4) == 0;
    const bool central = std::memcmp(&bytes[i], "PK\1\2", 4) == 0;
    if (!local && !central)
      continue;
    const std::size_t name_at = i + (local ? 30 : 46);
    const std::size_t name_size = static_cast<std::size_t>(u16(i + (local ? 26 : 28)));
    if (name_at + name_size > bytes.size() ||
        std::string_view(reinterpret_cast<const char*>(&bytes[name_at]), name_size) != name)
      continue;
    std::memcpy(&bytes[i + (local ? 22 : 24)], &size, 4);  // little-endian, like the zip
    ++patched;
  }
  ASSERT_EQ(patched, 2) << "entry " << name << " not found in both headers";
  kaban::testing::write_file(file, bytes);
}

constexpr const char* kIndexHtml = "<html><body>Lesson</body></html>";

// A manifest with one item launching `href`, whose resource lists `files`.
std::string one_item_manifest(std::string_view href, std::string_view files = "",
                              std::string_view identifier = "Course-1") {
  return R"(<?xml version="1.0"?>
<manifest identifier=")" +
         std::string(identifier) + R"(" xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">
  <organizations default="ORG">
    <organization identifier="ORG"><title>One</title>
      <item identifier="ITEM-1" identifierref="RES-1"><title>Only</title></item>
    </organization>
  </organizations>
  <resources>
    <resource identifier="RES-1" type="webcontent" adlcp:scormtype="sco" href=")" +
         std::string(href) + R"(">)" + std::string(files) + R"(</resource>
  </resources>
</manifest>)";
}

// A manifest of the given organizations and resources.
std::string manifest_with(std::string_view organizations, std::string_view resources) {
  return R"(<manifest identifier="m"><organizations>)" + std::string(organizations) +
         "</organizations><resources>" + std::string(resources) + "</resources></manifest>";
}

// A package that imports, with `extra` entries after it.
std::vector<ZipEntry> minimal_package(std::vector<ZipEntry> extra = {}) {
  std::vector<ZipEntry> entries = {{"imsmanifest.xml", one_item_manifest("index.html")},
                                   {"index.html", kIndexHtml}};
  entries.insert(entries.end(), extra.begin(), extra.end());
  return entries;
}

// Fire safety: a default organization that is not the first, a heading with two items below it,
// resources under xml:base (one with its own), a launch href with a query and a fragment, a
// dependency cycle, an asset, files no resource lists, schemas and archiver litter.
std::string fire_safety_manifest() {
  return R"(<?xml version="1.0" encoding="UTF-8"?>
<manifest identifier="Com.Example.Fire_Safety 2024" version="1.0"
          xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2"
          xmlns:imsmd="http://www.imsglobal.org/xsd/imsmd_rootv1p2p1">
  <metadata>
    <schema>ADL SCORM</schema>
    <schemaversion>1.2</schemaversion>
    <imsmd:lom><imsmd:general><imsmd:description>
      <imsmd:langstring xml:lang="en">How to leave
        the building safely.</imsmd:langstring>
    </imsmd:description></imsmd:general></imsmd:lom>
  </metadata>
  <organizations default="ORG-MAIN">
    <organization identifier="ORG-OLD">
      <title>Old outline</title>
      <item identifier="OLD-1" identifierref="RES-HANDBOOK"><title>Old</title></item>
    </organization>
    <organization identifier="ORG-MAIN">
      <title>
        Fire Safety
      </title>
      <item identifier="ITEM-INTRO" identifierref="RES-INTRO"><title>Introduction</title></item>
      <item identifier="MODULE-2">
        <title>Module 2</title>
        <item identifier="ITEM_Quiz" identifierref="RES-QUIZ" isvisible="true">
          <title>Quiz</title>
          <adlcp:masteryscore>80</adlcp:masteryscore>
        </item>
        <item identifier="ITEM-HANDBOOK" identifierref="RES-HANDBOOK"><title>Handbook</title></item>
      </item>
    </organization>
  </organizations>
  <resources xml:base="content/">
    <resource identifier="RES-INTRO" type="webcontent" adlcp:scormtype="sco"
              href="intro/index.html?start=1#top">
      <file href="intro/index.html"/>
      <file href="intro/intro.css"/>
      <dependency identifierref="COMMON"/>
    </resource>
    <resource identifier="RES-QUIZ" type="webcontent" adlcp:scormtype="sco" xml:base="module2"
              href="quiz.html">
      <file href="quiz.html"/>
      <file href="quiz.js"/>
      <dependency identifierref="COMMON"/>
    </resource>
    <resource identifier="RES-HANDBOOK" type="webcontent" adlcp:scormtype="asset"
              href="handbook.pdf">
      <file href="handbook.pdf"/>
    </resource>
    <resource identifier="COMMON" type="webcontent" adlcp:scormtype="asset">
      <file href="shared/api.js"/>
      <dependency identifierref="LIBS"/>
    </resource>
    <resource identifier="LIBS" type="webcontent" adlcp:scormtype="asset">
      <file href="shared/util.js"/>
      <dependency identifierref="COMMON"/>
    </resource>
  </resources>
</manifest>)";
}

std::vector<ZipEntry> fire_safety_package() {
  return {
      {"imsmanifest.xml", fire_safety_manifest()},
      {"imscp_rootv1p1p2.xsd", "<xs:schema/>"},
      {"adlcp_rootv1p2.xsd", "<xs:schema/>"},
      folder("content/"),
      folder("content/intro/"),
      {"content/intro/index.html", "<html>intro</html>"},
      {"content/intro/intro.css", "body {}"},
      {"content/shared/api.js", "var API = {};"},
      {"content/shared/util.js", "function util() {}"},
      {"content/module2/quiz.html", "<html>quiz</html>"},
      {"content/module2/quiz.js", "var quiz = 1;"},
      {"content/handbook.pdf", "%PDF-1.4 handbook"},
      {"content\\images\\logo.png", "\x89PNG logo"},
      {"content/extra.css", "p {}"},
      {"__MACOSX/content/._extra.css", "litter"},
  };
}

const std::vector<std::string> kIntroFiles = {"content/intro/index.html", "content/intro/intro.css",
                                              "content/shared/api.js", "content/shared/util.js"};
const std::vector<std::string> kQuizFiles = {"content/module2/quiz.html", "content/module2/quiz.js",
                                             "content/shared/api.js", "content/shared/util.js"};

// Every path below `root`, relative to it, but the database's own files (SQLite makes and
// removes its journal files as connections come and go).
std::set<std::string> tree_of(const fs::path& root) {
  std::set<std::string> paths;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("server.db"))
      paths.insert(entry.path().lexically_relative(root).string());
  }
  return paths;
}

std::uint64_t bytes_below(const fs::path& root) {
  std::uint64_t total = 0;
  if (!fs::exists(root))
    return 0;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file())
      total += entry.file_size();
  return total;
}

class ScormPackageTest : public ::testing::Test {
 protected:
  fs::path package() const { return root_ / "course.zip"; }
  fs::path staging() const { return root_ / "staging"; }

  Result<CourseSource> read(const std::vector<ZipEntry>& entries, const ScormLimits& limits = {},
                            std::string_view id = "") {
    make_zip(package(), entries);
    return read_package(limits, id);
  }

  Result<CourseSource> read_package(const ScormLimits& limits = {}, std::string_view id = "") {
    why_.clear();
    fs::remove_all(staging());
    return read_scorm_package(package(), staging(), id, limits, why_);
  }

  // The package is refused with `code` and a message holding `words`.
  void expect_refused(const std::vector<ZipEntry>& entries, std::string_view words,
                      errc code = errc::package_invalid, const ScormLimits& limits = {}) {
    auto course = read(entries, limits);
    ASSERT_FALSE(course) << "imported; expected a refusal naming: " << words;
    EXPECT_EQ(course.error(), make_error_code(code)) << why_;
    EXPECT_NE(why_.find(words), std::string::npos) << why_;
  }

  TempDir root_;
  std::string why_;
};

TEST_F(ScormPackageTest, MapsTheDefaultOrganizationToLessons) {
  auto read_course = read(fire_safety_package());
  ASSERT_TRUE(read_course) << why_;
  const CourseSource& course = read_course.value();
  EXPECT_EQ(course.id, "com.example.fire_safety-2024");
  EXPECT_EQ(course.title, "Fire Safety");
  EXPECT_EQ(course.description, "How to leave the building safely.");

  ASSERT_EQ(course.lessons.size(), 3u);
  EXPECT_EQ(course.lessons[0].id, "item-intro");
  EXPECT_EQ(course.lessons[0].title, "Introduction");
  EXPECT_EQ(course.lessons[0].kind, "html");
  EXPECT_EQ(course.lessons[0].files, kIntroFiles);
  EXPECT_EQ(course.lessons[1].id, "item_quiz");
  EXPECT_EQ(course.lessons[1].title, "Module 2: Quiz");
  EXPECT_EQ(course.lessons[1].files, kQuizFiles);
  EXPECT_EQ(course.lessons[2].id, "item-handbook");
  EXPECT_EQ(course.lessons[2].title, "Module 2: Handbook");
  EXPECT_EQ(course.lessons[2].kind, "pdf");
  EXPECT_EQ(course.lessons[2].files, std::vector<std::string>{"content/handbook.pdf"});

  // First use by a lesson, then the files no lesson lists, sorted; no manifest, schema or litter.
  std::vector<std::string> paths;
  for (const SourceFile& file : course.files) {
    paths.push_back(file.path);
    EXPECT_EQ(file.absolute_path, staging() / file.path);
    EXPECT_EQ(file.size, fs::file_size(file.absolute_path)) << file.path;
  }
  EXPECT_EQ(paths,
            (std::vector<std::string>{
                "content/intro/index.html", "content/intro/intro.css", "content/shared/api.js",
                "content/shared/util.js", "content/module2/quiz.html", "content/module2/quiz.js",
                "content/handbook.pdf", "content/extra.css", "content/images/logo.png"}));
  EXPECT_EQ(text_of(staging() / "content/module2/quiz.js"), "var quiz = 1;");
  EXPECT_EQ(text_of(staging() / "content/images/logo.png"), "\x89PNG logo");
  EXPECT_EQ(course.files[6].media_type, "application/pdf");
  EXPECT_FALSE(fs::exists(staging() / "imsmanifest.xml"));
  EXPECT_FALSE(fs::exists(staging() / "__MACOSX"));
  EXPECT_FALSE(fs::exists(staging() / "imscp_rootv1p1p2.xsd"));
}

TEST_F(ScormPackageTest, TakesTheCourseIdGiven) {
  auto course = read(fire_safety_package(), {}, "fire-drill");
  ASSERT_TRUE(course) << why_;
  EXPECT_EQ(course.value().id, "fire-drill");

  auto refused = read_package({}, "Fire Drill");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), make_error_code(errc::course_invalid));
  EXPECT_NE(why_.find("\"Fire Drill\""), std::string::npos) << why_;
}

TEST_F(ScormPackageTest, AnIdentifierThatMakesNoIdAsksForOne) {
  expect_refused(
      {{"imsmanifest.xml", one_item_manifest("index.html", "", "___")}, {"index.html", kIndexHtml}},
      "--id", errc::course_invalid);
}

TEST_F(ScormPackageTest, LessonIdsAreUniqueAndTitlesFit) {
  std::string e_acute;
  for (int i = 0; i < 150; ++i)
    e_acute += "\xc3\xa9";  // 300 bytes of U+00E9
  const std::string manifest = R"(<manifest identifier="m">
  <organizations><organization identifier="O"><title>T</title>
    <item identifier="Same" identifierref="R"><title>)" +
                               e_acute + R"(</title></item>
    <item identifier="same" identifierref="R"><title>Second</title></item>
    <item identifierref="R"/>
  </organization></organizations>
  <resources><resource identifier="R" href="my%20page.html"/></resources>
</manifest>)";
  auto read_course = read({{"imsmanifest.xml", manifest}, {"my page.html", kIndexHtml}});
  ASSERT_TRUE(read_course) << why_;
  const auto& lessons = read_course.value().lessons;
  ASSERT_EQ(lessons.size(), 3u);
  EXPECT_EQ(lessons[0].id, "same");
  EXPECT_EQ(lessons[1].id, "same-2");
  EXPECT_EQ(lessons[2].id, "lesson-3");
  EXPECT_EQ(lessons[2].title, "Item 3");
  EXPECT_EQ(lessons[0].title.size(), kMaxTitleSize);  // cut between characters
  EXPECT_EQ(lessons[0].title, e_acute.substr(0, kMaxTitleSize));
  EXPECT_EQ(lessons[0].files, std::vector<std::string>{"my page.html"});
}

TEST_F(ScormPackageTest, AStoredPackageImportsAndADamagedOneIsRefused) {
  auto entries = minimal_package({{"notes.txt", std::string(4000, 'n'), ZipEntry::Kind::stored}});
  auto course = read(entries);
  ASSERT_TRUE(course) << why_;
  // Flip a byte of the stored text: its CRC no longer matches.
  auto bytes = read_file(package());
  const std::string needle(64, 'n');
  const auto at = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(at, bytes.end());
  *at = 'N';
  kaban::testing::write_file(package(), bytes);
  auto damaged = read_package();
  ASSERT_FALSE(damaged);
  EXPECT_NE(why_.find("\"notes.txt\" is damaged"), std::string::npos) << why_;
}

TEST_F(ScormPackageTest, RefusesAStagingFolderThatExists) {
  make_zip(package(), minimal_package());
  fs::create_directories(staging());
  write_text(staging() / "keep.txt", "keep");
  auto course = read_scorm_package(package(), staging(), "", {}, why_);
  ASSERT_FALSE(course);
  EXPECT_EQ(course.error(), make_error_code(errc::storage_failed));
  EXPECT_NE(why_.find("exists already"), std::string::npos) << why_;
  EXPECT_EQ(text_of(staging() / "keep.txt"), "keep");
}

// Zip bombs: what the zip declares is checked before unpacking, and the bytes that come out are
// counted as they are written.
TEST_F(ScormPackageTest, AZipBombDeclaringItsSizeIsRefusedBeforeUnpacking) {
  ScormLimits limits;
  limits.max_entry_bytes = 1 << 20;
  expect_refused(minimal_package({zeros("zeros.bin", 4 << 20)}),
                 "\"zeros.bin\" would unpack to 4194304 bytes; the limit for one file is 1048576",
                 errc::package_invalid, limits);
  EXPECT_EQ(bytes_below(staging()), 0u);

  // Under the size limits, the expansion alone gives it away.
  expect_refused(minimal_package({zeros("zeros.bin", 4 << 20)}),
                 "more than 100 times (a zip bomb?)");
  EXPECT_EQ(bytes_below(staging()), 0u);
}

TEST_F(ScormPackageTest, AZipBombLyingAboutItsSizeStopsAtTheDeclaredSize) {
  make_zip(package(), minimal_package({zeros("zeros.bin", 8 << 20)}));
  declare_size(package(), "zeros.bin", 1000);
  ScormLimits limits;
  limits.max_entry_bytes = 1 << 20;
  auto course = read_package(limits);
  ASSERT_FALSE(course);
  EXPECT_EQ(course.error(), make_error_code(errc::package_invalid));
  EXPECT_NE(why_.find("\"zeros.bin\" holds more than the 1000 bytes it declares"),
            std::string::npos)
      << why_;
  // Nothing beyond the declared 1000 bytes reached the disk (the other files are 40 bytes).
  EXPECT_LE(fs::file_size(staging() / "zeros.bin"), 1000u);
  EXPECT_LE(bytes_below(staging()), 1000u + std::strlen(kIndexHtml));
}

TEST_F(ScormPackageTest, RefusesAPackageLargerThanTheLimit) {
  ScormLimits limits;
  limits.max_total_bytes = 1 << 20;
  std::vector<ZipEntry> extra;
  for (int i = 0; i < 3; ++i) {
    const auto noise = crypto::random_bytes(400 * 1024);
    extra.push_back({"media/part" + std::to_string(i) + ".bin", {noise.begin(), noise.end()}});
  }
  expect_refused(minimal_package(extra),
                 "would unpack to more than 1048576 bytes, the limit for a package",
                 errc::package_invalid, limits);
  EXPECT_EQ(bytes_below(staging()), 0u);
}

TEST_F(ScormPackageTest, RefusesTooManyEntries) {
  ScormLimits limits;
  limits.max_entries = 10;
  std::vector<ZipEntry> extra;
  for (int i = 0; i < 9; ++i)
    extra.push_back({"page" + std::to_string(i) + ".html", kIndexHtml});
  expect_refused(minimal_package(extra), "the package has 11 entries; the limit is 10",
                 errc::package_invalid, limits);
}

TEST_F(ScormPackageTest, RefusesALargeManifest) {
  ScormLimits limits;
  limits.max_manifest_bytes = 512;
  expect_refused(minimal_package(), "imsmanifest.xml is larger than 512 bytes",
                 errc::package_invalid, limits);
}

TEST_F(ScormPackageTest, RefusesALessonOfTooManyFiles) {
  std::string files;
  std::vector<ZipEntry> entries;
  for (std::size_t i = 0; i < protocol::kMaxLessonFiles; ++i) {
    const std::string name = "assets/" + std::to_string(i) + ".js";
    files += "<file href=\"" + name + "\"/>";
    entries.push_back({name, "x"});
  }
  entries.push_back({"index.html", kIndexHtml});
  entries.push_back({"imsmanifest.xml", one_item_manifest("index.html", files)});
  expect_refused(entries, "item \"ITEM-1\" uses more than 1000 files", errc::course_invalid);
}

TEST_F(ScormPackageTest, BoundsTheWorkOfFollowingDependencies) {
  // Each of three items launches a resource that depends on a chain of four more.
  std::string organization, resources;
  for (int i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i);
    organization += "<item identifier=\"I" + n + "\" identifierref=\"R" + n + "\"/>";
    resources += "<resource identifier=\"R" + n +
                 "\" href=\"index.html\"><dependency identifierref=\"D0\"/></resource>";
  }
  for (int i = 0; i < 4; ++i) {
    resources += "<resource identifier=\"D" + std::to_string(i) + "\">" +
                 (i < 3 ? "<dependency identifierref=\"D" + std::to_string(i + 1) + "\"/>" : "") +
                 "</resource>";
  }
  const std::vector<ZipEntry> entries = {
      {"imsmanifest.xml",
       manifest_with("<organization identifier=\"O\">" + organization + "</organization>",
                     resources)},
      {"index.html", kIndexHtml}};
  ScormLimits limits;
  limits.max_dependency_steps = 15;  // the three lessons take 5 steps each
  auto course = read(entries, limits);
  ASSERT_TRUE(course) << why_;
  EXPECT_EQ(course.value().lessons.size(), 3u);
  limits.max_dependency_steps = 14;
  expect_refused(entries, "takes more than 14 steps (at item \"I2\")", errc::package_invalid,
                 limits);
}

TEST_F(ScormPackageTest, ReadsDeeplyNestedItems) {
  constexpr int kDepth = 20'000;
  std::string items;
  for (int i = 0; i < kDepth; ++i)
    items += "<item identifier=\"H" + std::to_string(i) + "\"><title>Part</title>";
  items += "<item identifier=\"LEAF\" identifierref=\"R\"><title>Leaf</title></item>";
  for (int i = 0; i < kDepth; ++i)
    items += "</item>";
  auto course = read({{"imsmanifest.xml",
                       manifest_with("<organization identifier=\"O\">" + items + "</organization>",
                                     R"(<resource identifier="R" href="index.html"/>)")},
                      {"index.html", kIndexHtml}});
  ASSERT_TRUE(course) << why_;
  ASSERT_EQ(course.value().lessons.size(), 1u);
  EXPECT_EQ(course.value().lessons[0].id, "leaf");
  EXPECT_EQ(course.value().lessons[0].title.size(), kMaxTitleSize);  // "Part: " repeated, cut
  EXPECT_TRUE(course.value().lessons[0].title.starts_with("Part: Part: "));
}

TEST_F(ScormPackageTest, RefusesAnEncryptedEntry) {
  if (zip_encryption_method_supported(ZIP_EM_AES_256, 1) == 0)
    GTEST_SKIP() << "this libzip cannot write encrypted entries";
  expect_refused(minimal_package({{"secret.html", kIndexHtml, ZipEntry::Kind::encrypted}}),
                 "entry \"secret.html\" is encrypted");
}

// Manifest rules, each with the words the refusal must hold.
struct ManifestCase {
  const char* label;
  std::vector<ZipEntry> entries;
  const char* words;
};

class ManifestRefusalTest : public ScormPackageTest,
                            public ::testing::WithParamInterface<ManifestCase> {};

TEST_P(ManifestRefusalTest, NamesTheProblem) {
  expect_refused(GetParam().entries, GetParam().words);
  EXPECT_FALSE(fs::exists(staging() / "index.html")) << "unpacked before the manifest was read";
}

INSTANTIATE_TEST_SUITE_P(
    Scorm, ManifestRefusalTest,
    ::testing::Values(
        ManifestCase{"malformed",
                     {{"imsmanifest.xml", "<manifest identifier=\"m\">\n<organizations>"},
                      {"index.html", kIndexHtml}},
                     "imsmanifest.xml is not well-formed XML"},
        ManifestCase{
            "doctype",
            {{"imsmanifest.xml", "<!DOCTYPE manifest [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>" +
                                     one_item_manifest("index.html")},
             {"index.html", kIndexHtml}},
            "<!DOCTYPE>"},
        ManifestCase{"not_a_manifest",
                     {{"imsmanifest.xml", "<course/>"}, {"index.html", kIndexHtml}},
                     "is <course>, not <manifest>"},
        ManifestCase{"no_organization",
                     {{"imsmanifest.xml", manifest_with("", "")}, {"index.html", kIndexHtml}},
                     "has no <organization>"},
        ManifestCase{"unknown_default",
                     {{"imsmanifest.xml",
                       R"(<manifest identifier="m"><organizations default="B">
                          <organization identifier="A"/></organizations></manifest>)"},
                      {"index.html", kIndexHtml}},
                     "<organizations default=\"B\"> names no organization"},
        ManifestCase{"no_launchable_item",
                     {{"imsmanifest.xml",
                       manifest_with(R"(<organization identifier="O"><item identifier="H"/>
                                        </organization>)",
                                     "")},
                      {"index.html", kIndexHtml}},
                     "has no item that refers to a resource"},
        ManifestCase{
            "item_to_missing_resource",
            {{"imsmanifest.xml", manifest_with(R"(<organization identifier="O">
                           <item identifier="I" identifierref="GONE"/></organization>)",
                                               R"(<resource identifier="R" href="index.html"/>)")},
             {"index.html", kIndexHtml}},
            "item \"I\" refers to resource \"GONE\", which imsmanifest.xml does not "
            "define"},
        ManifestCase{"resource_without_href",
                     {{"imsmanifest.xml", manifest_with(R"(<organization identifier="O">
                           <item identifier="I" identifierref="R"/></organization>)",
                                                        R"(<resource identifier="R"/>)")},
                      {"index.html", kIndexHtml}},
                     "resource \"R\", which item \"I\" launches, has no href"},
        ManifestCase{
            "href_to_missing_file",
            {{"imsmanifest.xml", one_item_manifest("start.html")}, {"index.html", kIndexHtml}},
            "names the file \"start.html\", which is not in the package"},
        ManifestCase{
            "href_case",
            {{"imsmanifest.xml", one_item_manifest("Index.html")}, {"index.html", kIndexHtml}},
            "the package has \"index.html\"; names are case-sensitive"},
        ManifestCase{"file_missing",
                     {{"imsmanifest.xml",
                       one_item_manifest("index.html", R"(<file href="media/clip.mp4"/>)")},
                      {"index.html", kIndexHtml}},
                     "resource \"RES-1\" <file> names the file \"media/clip.mp4\", which is not "
                     "in the package"},
        ManifestCase{
            "href_leaves",
            {{"imsmanifest.xml", one_item_manifest("../outside.html")}, {"index.html", kIndexHtml}},
            "names \"../outside.html\", which leaves the package"},
        ManifestCase{"href_url",
                     {{"imsmanifest.xml", one_item_manifest("https://example.com/x.html")},
                      {"index.html", kIndexHtml}},
                     "points to \"https://example.com/x.html\", outside the package"},
        ManifestCase{
            "href_absolute",
            {{"imsmanifest.xml", one_item_manifest("/index.html")}, {"index.html", kIndexHtml}},
            "names the absolute path \"/index.html\""},
        ManifestCase{"unknown_dependency",
                     {{"imsmanifest.xml",
                       one_item_manifest("index.html", R"(<dependency identifierref="NOPE"/>)")},
                      {"index.html", kIndexHtml}},
                     "resource \"RES-1\" depends on \"NOPE\""},
        ManifestCase{
            "missing_manifest", {{"index.html", kIndexHtml}}, "the package has no imsmanifest.xml"},
        ManifestCase{"manifest_in_subfolder",
                     {{"Fire Course/imsmanifest.xml", one_item_manifest("index.html")},
                      {"Fire Course/index.html", kIndexHtml}},
                     "imsmanifest.xml is in the folder \"Fire Course/\", not at the root"}),
    [](const ::testing::TestParamInfo<ManifestCase>& c) { return c.param.label; });

// admin_course_import_scorm over a real data directory.
class ImportScormTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(init_data_dir(data_dir(), {})); }

  fs::path data_dir() const { return root_ / "data"; }
  fs::path package() const { return root_ / "in" / "course.zip"; }
  fs::path staging_area() const { return data_dir() / "tmp"; }

  Result<void> import(std::string_view id = "") {
    out_.str("");
    why_.clear();
    return admin_course_import_scorm(data_dir(), package(), id, out_, why_);
  }

  void make_package(const std::vector<ZipEntry>& entries) {
    fs::create_directories(package().parent_path());
    make_zip(package(), entries);
  }

  bool staging_area_empty() const {
    return !fs::exists(staging_area()) || fs::is_empty(staging_area());
  }

  TempDir root_;
  std::ostringstream out_;
  std::string why_;
};

TEST_F(ImportScormTest, PublishesThePackageAsACourse) {
  make_package(fire_safety_package());
  ASSERT_TRUE(import()) << why_;
  EXPECT_NE(out_.str().find("published com.example.fire_safety-2024 version 1 (9 files, "),
            std::string::npos)
      << out_.str();
  EXPECT_NE(out_.str().find("3 lessons from course.zip; 2 files no lesson lists are part of "
                            "the course too"),
            std::string::npos)
      << out_.str();
  EXPECT_TRUE(staging_area_empty());

  auto db = open_database(data_dir());
  ASSERT_TRUE(db);
  Catalog catalog(*db.value(), data_dir());
  auto courses = catalog.list_courses();
  ASSERT_TRUE(courses);
  ASSERT_EQ(courses.value().size(), 1u);
  EXPECT_EQ(courses.value()[0].id, "com.example.fire_safety-2024");
  EXPECT_EQ(courses.value()[0].title, "Fire Safety");
  EXPECT_EQ(courses.value()[0].file_count, 9);

  auto record = catalog.find_version("com.example.fire_safety-2024", 0);
  ASSERT_TRUE(record);
  auto manifest = protocol::parse_manifest(record.value().manifest);
  ASSERT_TRUE(manifest);
  const auto& lessons = manifest.value().lessons;
  ASSERT_EQ(lessons.size(), 3u);
  EXPECT_EQ(lessons[0].id, "item-intro");
  EXPECT_EQ(lessons[0].files, kIntroFiles);
  EXPECT_EQ(lessons[1].title, "Module 2: Quiz");
  EXPECT_EQ(lessons[1].files, kQuizFiles);
  EXPECT_EQ(lessons[2].kind, "pdf");
  EXPECT_EQ(manifest.value().description, "How to leave the building safely.");
  EXPECT_NE(manifest.value().find_file("content/images/logo.png"), nullptr);
  EXPECT_EQ(manifest.value().find_file("imsmanifest.xml"), nullptr);

  // The audit log names the package.
  SQLite::Statement audit(*db.value(),
                          "SELECT details FROM audit_log WHERE event = 'course_published'");
  ASSERT_TRUE(audit.executeStep());
  EXPECT_NE(audit.getColumn(0).getString().find("\"scorm_package\":\"course.zip\""),
            std::string::npos);

  // Importing again publishes the next version; --id names another course.
  ASSERT_TRUE(import()) << why_;
  EXPECT_NE(out_.str().find("published com.example.fire_safety-2024 version 2 ("),
            std::string::npos)
      << out_.str();
  ASSERT_TRUE(import("fire-drill")) << why_;
  EXPECT_NE(out_.str().find("published fire-drill version 1 ("), std::string::npos) << out_.str();
  EXPECT_TRUE(staging_area_empty());
}

TEST_F(ImportScormTest, RefusesADirectoryThatIsNoDataDirectory) {
  make_package(minimal_package());
  const fs::path elsewhere = root_ / "elsewhere";
  fs::create_directories(elsewhere);
  ASSERT_FALSE(admin_course_import_scorm(elsewhere, package(), "", out_, why_));
  EXPECT_TRUE(fs::is_empty(elsewhere));
}

// Hostile packages: refused naming the problem, nothing left in DIR/tmp, nothing written anywhere
// else.
struct HostileCase {
  const char* label;
  std::vector<ZipEntry> entries;
  const char* words;
};

class HostilePackageTest : public ImportScormTest,
                           public ::testing::WithParamInterface<HostileCase> {};

TEST_P(HostilePackageTest, IsRefusedAndLeavesNothing) {
  make_package(GetParam().entries);
  const auto before = tree_of(root_.path());
  auto imported = import();
  ASSERT_FALSE(imported) << out_.str();
  EXPECT_EQ(imported.error(), make_error_code(errc::package_invalid)) << why_;
  EXPECT_NE(why_.find(GetParam().words), std::string::npos) << why_;
  EXPECT_TRUE(staging_area_empty());
  auto after = tree_of(root_.path());
  after.erase("data/tmp");
  EXPECT_EQ(after, before);
  auto db = open_database(data_dir());
  ASSERT_TRUE(db);
  auto courses = Catalog(*db.value(), data_dir()).list_courses();
  ASSERT_TRUE(courses);
  EXPECT_TRUE(courses.value().empty());
}

INSTANTIATE_TEST_SUITE_P(
    Scorm, HostilePackageTest,
    ::testing::Values(
        HostileCase{"dot_dot", minimal_package({{"../evil", "x"}}),
                    "entry \"../evil\" leaves the package"},
        HostileCase{"nested_dot_dot", minimal_package({{"a/../../evil", "x"}}),
                    "entry \"a/../../evil\" leaves the package"},
        HostileCase{"absolute", minimal_package({{"/etc/x", "x"}}),
                    "entry \"/etc/x\" is an absolute path"},
        HostileCase{"drive_letter", minimal_package({{"C:\\x", "x"}}),
                    "entry \"C:\\x\" is an absolute Windows path"},
        HostileCase{"backslash_dot_dot", minimal_package({{"..\\evil", "x"}}),
                    "entry \"..\\evil\" leaves the package"},
        HostileCase{"empty_segment", minimal_package({{"media//clip.mp4", "x"}}),
                    "has an empty or \".\" segment"},
        HostileCase{"control_character", minimal_package({{"bad\x01name.html", "x"}}),
                    "entry \"bad\\x01name.html\" has a control character"},
        HostileCase{"symlink",
                    minimal_package({{"passwd", "/etc/passwd", ZipEntry::Kind::symlink}}),
                    "entry \"passwd\" is a symbolic link"},
        HostileCase{"same_name_after_backslash",
                    minimal_package({{"media\\clip.mp4", "a"}, {"media/clip.mp4", "b"}}),
                    "entries \"media\\clip.mp4\" and \"media/clip.mp4\" both unpack to "
                    "\"media/clip.mp4\""},
        HostileCase{"file_and_folder",
                    minimal_package({{"media", "a file"}, {"media/clip.mp4", "b"}}),
                    "entry \"media/clip.mp4\" is inside the folder \"media\", but entry "
                    "\"media\" is a file"},
        HostileCase{"zip_bomb", minimal_package({zeros("zeros.bin", 8 << 20)}),
                    "\"zeros.bin\" would expand from"},
        HostileCase{
            "missing_manifest", {{"index.html", kIndexHtml}}, "the package has no imsmanifest.xml"},
        HostileCase{"manifest_in_subfolder",
                    {folder("course/"),
                     {"course/imsmanifest.xml", one_item_manifest("index.html")},
                     {"course/index.html", kIndexHtml}},
                    "imsmanifest.xml is in the folder \"course/\""},
        HostileCase{"malformed_manifest",
                    {{"imsmanifest.xml", "<manifest><organizations></manifest>"},
                     {"index.html", kIndexHtml}},
                    "imsmanifest.xml is not well-formed XML"},
        HostileCase{"missing_resource",
                    {{"imsmanifest.xml", manifest_with(R"(<organization identifier="O">
                          <item identifier="I" identifierref="GONE"/></organization>)",
                                                       "")},
                     {"index.html", kIndexHtml}},
                    "refers to resource \"GONE\""},
        HostileCase{
            "href_not_in_package",
            {{"imsmanifest.xml", one_item_manifest("start.html")}, {"index.html", kIndexHtml}},
            "names the file \"start.html\", which is not in the package"}),
    [](const ::testing::TestParamInfo<HostileCase>& c) { return c.param.label; });

TEST_F(ImportScormTest, RefusesWhatIsNoZip) {
  fs::create_directories(package().parent_path());
  write_text(package(), "PK this is not a zip file at all");
  ASSERT_FALSE(import());
  EXPECT_NE(why_.find("is not a zip file"), std::string::npos) << why_;
  EXPECT_TRUE(staging_area_empty());

  write_text(package(), "");
  auto empty = import();
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), make_error_code(errc::package_invalid));
  EXPECT_NE(why_.find("is empty (0 bytes)"), std::string::npos) << why_;
  EXPECT_TRUE(staging_area_empty());

  fs::remove(package());
  ASSERT_FALSE(import());
  EXPECT_NE(why_.find("check the path to the package"), std::string::npos) << why_;
  EXPECT_TRUE(staging_area_empty());
}

}  // namespace
}  // namespace kaban::server
