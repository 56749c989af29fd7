#include <map>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/ed25519.hpp"
#include "kaban/crypto/random.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/course_folder.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/error.hpp"
#include "test_support.hpp"

namespace kaban::server {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using kaban::testing::read_file;
using kaban::testing::TempDir;
using kaban::testing::write_file;

const UnixTime kNow{std::chrono::seconds{1'800'000'000}};
// Several chunks at the default chunk sizes.
const std::size_t kVideoSize = 2 * 1024 * 1024 + 12'345;

void write_text(const fs::path& p, std::string_view text) {
  fs::create_directories(p.parent_path());
  write_file(p, {text.begin(), text.end()});
}

std::string course_json(std::string_view files_of_first_lesson) {
  return R"({"id": "fire-safety", "title": "Fire safety", "description": "Evacuation basics",
  "lessons": [
    {"id": "intro", "title": "Introduction", "kind": "video", "duration_minutes": 12,
     "files": [)" +
         std::string(files_of_first_lesson) + R"(]},
    {"title": "Quiz", "kind": "html", "files": ["quiz/index.html", "media/intro.mp4"]}
  ]})";
}

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(init_data_dir(data_.path(), {}));
    auto identity = load_identity(data_.path());
    ASSERT_TRUE(identity);
    identity_ = std::make_unique<ServerIdentity>(std::move(identity).value());
    auto db = open_database(data_.path());
    ASSERT_TRUE(db);
    db_ = std::move(db).value();
    ASSERT_TRUE(Directory(*db_).add_user("alice", "Alice Aoki", kNow));
    catalog_ = std::make_unique<Catalog>(*db_, data_.path());

    write_text(folder() / kCourseFile, course_json(R"("media/intro.mp4", "media/intro.txt")"));
    video_ = crypto::random_bytes(kVideoSize);
    fs::create_directories(folder() / "media");
    write_file(folder() / "media/intro.mp4", video_);
    write_text(folder() / "media/intro.txt", "Welcome to fire safety.");
    write_text(folder() / "quiz/index.html", "<h1>Quiz</h1>");
  }

  const fs::path& folder() const { return course_.path(); }

  Result<PublishedVersion> publish_folder(std::string& why) {
    KABAN_TRY(source, read_course_folder(folder(), why));
    return catalog_->publish(source, identity_->signing_key, kNow, why);
  }

  PublishedVersion publish_ok() {
    std::string why;
    auto published = publish_folder(why);
    EXPECT_TRUE(published) << why;
    return published ? published.value() : PublishedVersion{};
  }

  // Everything a refused publish must leave as it was.
  std::vector<int> db_counts() {
    std::vector<int> counts;
    for (const char* table : {"courses", "course_versions", "chunks", "version_chunks"})
      counts.push_back(db_->execAndGet(std::string("SELECT count(*) FROM ") + table).getInt());
    return counts;
  }

  // How many chunks the default chunker cuts the video into.
  std::size_t video_chunks() const {
    const Chunker chunker;
    std::size_t count = 0;
    for (crypto::ByteView rest(video_); !rest.empty(); ++count)
      rest = rest.subspan(chunker.cut(rest));
    return count;
  }

  std::size_t chunk_files() {
    std::size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(data_ / kChunksDir))
      n += e.is_regular_file() ? 1 : 0;
    return n;
  }

  void expect_refused(errc expected, std::string_view named) {
    const auto before = db_counts();
    const auto files_before = chunk_files();
    std::string why;
    auto published = publish_folder(why);
    ASSERT_FALSE(published);
    EXPECT_EQ(published.error(), expected) << why;
    EXPECT_NE(why.find(named), std::string::npos) << why;
    EXPECT_EQ(db_counts(), before);
    EXPECT_EQ(chunk_files(), files_before);
  }

  TempDir data_;
  TempDir course_;
  crypto::Bytes video_;
  std::unique_ptr<ServerIdentity> identity_;
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogTest, ReadsTheFolderWithDefaultsAndMediaTypes) {
  std::string why;
  auto source = read_course_folder(folder(), why);
  ASSERT_TRUE(source) << why;
  EXPECT_EQ(source.value().id, "fire-safety");
  ASSERT_EQ(source.value().lessons.size(), 2u);
  EXPECT_EQ(source.value().lessons[0].id, "intro");
  EXPECT_EQ(source.value().lessons[0].duration_minutes, 12);
  EXPECT_EQ(source.value().lessons[1].id, "2");  // by position
  ASSERT_EQ(source.value().files.size(), 3u);    // the shared video once
  EXPECT_EQ(source.value().files[0].path, "media/intro.mp4");
  EXPECT_EQ(source.value().files[0].media_type, "video/mp4");
  EXPECT_EQ(source.value().files[0].size, kVideoSize);
  EXPECT_EQ(source.value().files[1].media_type, "text/plain");
  EXPECT_EQ(source.value().files[2].media_type, "text/html");
  EXPECT_EQ(media_type_for("a/b.JPEG"), "image/jpeg");
  EXPECT_EQ(media_type_for("a.b/noext"), "application/octet-stream");
}

TEST_F(CatalogTest, PublishSignsTheManifestAndStoresVerifiableChunks) {
  const PublishedVersion v1 = publish_ok();
  EXPECT_EQ(v1.course_id, "fire-safety");
  EXPECT_EQ(v1.version, 1);
  EXPECT_EQ(v1.files, 3u);
  // The video's chunks and one each for the two text files.
  EXPECT_EQ(v1.new_chunks, video_chunks() + 2);
  EXPECT_EQ(v1.reused_chunks, 0u);

  auto changes = catalog_->changes_since("alice", 0, 10, kNow);
  ASSERT_TRUE(changes);
  ASSERT_EQ(changes.value().size(), 1u);
  const CourseVersionRecord& change = changes.value()[0];
  EXPECT_EQ(change.seq, 1);
  EXPECT_EQ(change.version, 1);

  auto key =
      crypto::Ed25519PublicKey::from_bytes(crypto::from_hex(identity_->signing_public_key).value());
  ASSERT_TRUE(key);
  EXPECT_TRUE(key.value().verify(crypto::as_bytes(change.manifest),
                                 crypto::from_hex(change.signature).value()));
  std::string tampered = change.manifest;
  tampered[tampered.size() / 2] ^= 1;
  EXPECT_FALSE(
      key.value().verify(crypto::as_bytes(tampered), crypto::from_hex(change.signature).value()));

  std::string why;
  auto manifest = protocol::parse_manifest(change.manifest, &why);
  ASSERT_TRUE(manifest) << why;
  EXPECT_EQ(manifest.value().published_at, "2027-01-15T08:00:00Z");
  EXPECT_EQ(manifest.value().total_size(), v1.total_bytes);
  const protocol::ManifestFile* video = manifest.value().find_file("media/intro.mp4");
  ASSERT_NE(video, nullptr);
  EXPECT_EQ(video->media_type, "video/mp4");
  EXPECT_EQ(video->sha256, crypto::to_hex(crypto::sha256(video_)));
  // Random bytes cut where their content says: sizes between the chunker's bounds, about its
  // average.
  const ChunkerParams params;
  ASSERT_GE(video->chunks.size(), kVideoSize / params.max_size);
  ASSERT_LE(video->chunks.size(), kVideoSize / params.min_size + 1);

  crypto::Bytes joined;
  for (const auto& chunk : video->chunks) {
    const auto bytes = read_file(catalog_->chunk_path(chunk.sha256));
    EXPECT_EQ(crypto::to_hex(crypto::sha256(bytes)), chunk.sha256);
    EXPECT_EQ(bytes.size(), chunk.size);
    EXPECT_LE(bytes.size(), params.max_size);
    if (&chunk != &video->chunks.back()) {
      EXPECT_GE(bytes.size(), params.min_size);
    }
    joined.insert(joined.end(), bytes.begin(), bytes.end());
    auto visible = catalog_->chunk_visible("alice", chunk.sha256, kNow);
    ASSERT_TRUE(visible);
    EXPECT_TRUE(visible.value());
  }
  EXPECT_EQ(joined, video_);
  // Every stored chunk file is named by the SHA-256 of its bytes.
  for (const auto& e : fs::recursive_directory_iterator(data_ / kChunksDir)) {
    if (e.is_regular_file()) {
      EXPECT_EQ(crypto::to_hex(crypto::sha256(read_file(e.path()))), e.path().filename());
    }
  }

  auto courses = catalog_->list_courses();
  ASSERT_TRUE(courses);
  ASSERT_EQ(courses.value().size(), 1u);
  EXPECT_EQ(courses.value()[0].title, "Fire safety");
  EXPECT_EQ(courses.value()[0].latest_version, 1);
  EXPECT_EQ(courses.value()[0].file_count, 3);
  EXPECT_EQ(courses.value()[0].total_bytes, v1.total_bytes);
  EXPECT_EQ(courses.value()[0].published_at, kNow);
}

TEST_F(CatalogTest, RepublishReusesChunksAndAChangeAddsOnlyItsOwn) {
  const std::size_t held = publish_ok().new_chunks;
  const PublishedVersion v2 = publish_ok();
  EXPECT_EQ(v2.version, 2);
  EXPECT_EQ(v2.new_chunks, 0u);
  EXPECT_EQ(v2.reused_chunks, held);
  EXPECT_EQ(chunk_files(), held);

  // Change a byte in the video's last chunk only.
  video_.back() ^= 0xff;
  write_file(folder() / "media/intro.mp4", video_);
  const PublishedVersion v3 = publish_ok();
  EXPECT_EQ(v3.version, 3);
  EXPECT_EQ(v3.new_chunks, 1u);
  EXPECT_EQ(v3.reused_chunks, held - 1);
  EXPECT_EQ(chunk_files(), held + 1);

  // Bytes inserted in the middle move the cuts near them only: the chunks after the insertion
  // are the ones held already.
  const crypto::Bytes inserted = crypto::random_bytes(1000);
  video_.insert(video_.begin() + static_cast<std::ptrdiff_t>(video_.size() / 2), inserted.begin(),
                inserted.end());
  write_file(folder() / "media/intro.mp4", video_);
  const PublishedVersion v4 = publish_ok();
  EXPECT_GE(v4.new_chunks, 1u);
  EXPECT_LE(v4.new_chunks, 2u);
  EXPECT_EQ(v4.new_chunks + v4.reused_chunks, video_chunks() + 2);

  auto seq = catalog_->latest_seq();
  ASSERT_TRUE(seq);
  EXPECT_EQ(seq.value(), 4);
  auto after_first = catalog_->changes_since("alice", 1, 10, kNow);
  ASSERT_TRUE(after_first);
  ASSERT_EQ(after_first.value().size(), 3u);
  EXPECT_EQ(after_first.value()[0].version, 2);
  EXPECT_EQ(after_first.value()[2].version, 4);
  auto page = catalog_->changes_since("alice", 0, 1, kNow);
  ASSERT_TRUE(page);
  ASSERT_EQ(page.value().size(), 1u);
  EXPECT_EQ(page.value()[0].seq, 1);
}

TEST_F(CatalogTest, ACourseItsDevicesWouldRefuseIsNotPublished) {
  // A lesson of more files than a manifest may list: the server must not sign what every
  // device's parser refuses.
  std::string files;
  for (int i = 0; i < 1001; ++i) {
    const std::string name = "pages/p" + std::to_string(i) + ".html";
    write_text(folder() / name, "<p>" + std::to_string(i) + "</p>");
    files += (i ? ", \"" : "\"") + name + "\"";
  }
  write_text(folder() / kCourseFile, course_json(files));
  expect_refused(errc::course_invalid, "devices would refuse");
}

TEST_F(CatalogTest, PathOutsideTheFolderIsRefused) {
  write_text(course_.path().parent_path() / "x", "outside");
  write_text(folder() / kCourseFile, course_json(R"("../x")"));
  expect_refused(errc::path_escapes, "../x");
  write_text(folder() / kCourseFile, course_json(R"("/etc/passwd")"));
  expect_refused(errc::path_escapes, "/etc/passwd");
  write_text(folder() / kCourseFile, course_json(R"("media\\intro.mp4")"));
  expect_refused(errc::path_escapes, "intro");
  fs::remove(course_.path().parent_path() / "x");
}

TEST_F(CatalogTest, SymlinkedFileIsRefused) {
  TempDir outside;
  write_text(outside / "secret.txt", "not course content");
  fs::create_symlink(outside / "secret.txt", folder() / "media/link.txt");
  write_text(folder() / kCourseFile, course_json(R"("media/link.txt")"));
  expect_refused(errc::path_escapes, "media/link.txt");
}

TEST_F(CatalogTest, FileUnderASymlinkedDirectoryIsRefused) {
  TempDir outside;
  write_text(outside / "secret.txt", "not course content");
  fs::create_directory_symlink(outside.path(), folder() / "shared");
  write_text(folder() / kCourseFile, course_json(R"("shared/secret.txt")"));
  expect_refused(errc::path_escapes, "shared");
}

TEST_F(CatalogTest, MissingFileIsRefused) {
  write_text(folder() / kCourseFile, course_json(R"("media/outro.mp4")"));
  expect_refused(errc::file_missing, "media/outro.mp4");
  write_text(folder() / kCourseFile, course_json(R"("media")"));
  expect_refused(errc::file_missing, "media");
}

TEST_F(CatalogTest, BadCourseJsonIsRefusedNamingTheField) {
  write_text(folder() / kCourseFile, R"({"id": "c", "title": "T", "colour": "red",
    "lessons": [{"title": "L", "kind": "html", "files": ["quiz/index.html"]}]})");
  expect_refused(errc::course_invalid, "colour");
  write_text(folder() / kCourseFile, R"({"id": "c", "title": "T",
    "lessons": [{"title": "L", "kind": "html", "files": ["quiz/index.html"], "extra": 1}]})");
  expect_refused(errc::course_invalid, "extra");
  write_text(folder() / kCourseFile, R"({"id": "c", "title": "T",
    "lessons": [{"title": "L", "kind": "slides", "files": ["quiz/index.html"]}]})");
  expect_refused(errc::course_invalid, "slides");
  write_text(folder() / kCourseFile, R"({"id": "c", "title": "T", "lessons": []})");
  expect_refused(errc::course_invalid, "lessons");
  write_text(folder() / kCourseFile, R"({"id": "c", "title": "T",
    "lessons": [{"title": "L", "kind": "html", "files": []}]})");
  expect_refused(errc::course_invalid, "files");
  write_text(folder() / kCourseFile, R"({"id": "Bad Id", "title": "T",
    "lessons": [{"title": "L", "kind": "html", "files": ["quiz/index.html"]}]})");
  expect_refused(errc::course_invalid, "Bad Id");
  write_text(folder() / kCourseFile, "{not json");
  expect_refused(errc::course_invalid, "course.json");
  fs::remove(folder() / kCourseFile);
  expect_refused(errc::course_invalid, "course.json");
}

TEST_F(CatalogTest, FileThatVanishesBeforePublishChangesNothing) {
  std::string why;
  auto source = read_course_folder(folder(), why);
  ASSERT_TRUE(source) << why;
  fs::remove(folder() / "quiz/index.html");
  const auto before = db_counts();
  auto published = catalog_->publish(source.value(), identity_->signing_key, kNow, why);
  ASSERT_FALSE(published);
  EXPECT_EQ(published.error(), errc::file_missing);
  EXPECT_NE(why.find("quiz/index.html"), std::string::npos) << why;
  EXPECT_EQ(db_counts(), before);
}

TEST_F(CatalogTest, ChunkVisibilityFollowsTheCourseAudience) {
  publish_ok();
  const std::string hash =
      crypto::to_hex(crypto::sha256(crypto::as_bytes("Welcome to fire safety.")));
  auto visible = catalog_->chunk_visible("alice", hash, kNow);
  ASSERT_TRUE(visible);
  EXPECT_TRUE(visible.value());

  const std::string unknown = crypto::to_hex(crypto::random_bytes(crypto::kSha256Size));
  EXPECT_FALSE(catalog_->chunk_visible("alice", unknown, kNow).value());
  EXPECT_FALSE(catalog_->chunk_visible("alice", "../../server.db", kNow).value());
  EXPECT_FALSE(catalog_->chunk_visible("nobody", hash, kNow).value());
  EXPECT_TRUE(catalog_->changes_since("nobody", 0, 10, kNow).value().empty());

  db_->exec("UPDATE course_assignments SET audience = 'none' WHERE course_id = 'fire-safety'");
  EXPECT_FALSE(catalog_->chunk_visible("alice", hash, kNow).value());
  EXPECT_TRUE(catalog_->changes_since("alice", 0, 10, kNow).value().empty());
}

}  // namespace
}  // namespace kaban::server
