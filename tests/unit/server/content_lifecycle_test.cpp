// Course lifecycle on the server: retire, expiry, and garbage collection of versions and chunks.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/crypto/random.hpp"
#include "kaban/crypto/sha256.hpp"
#include "kaban/protocol/manifest.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/server/admin.hpp"
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
using kaban::testing::TempDir;
using kaban::testing::write_file;

// Later than any file this test writes, so every file is past gc's grace period at kNow.
const UnixTime kNow{std::chrono::seconds{1'900'000'000}};
constexpr std::chrono::seconds kKeep = 7 * 24h;

void write_text(const fs::path& p, std::string_view text) {
  fs::create_directories(p.parent_path());
  write_file(p, {text.begin(), text.end()});
}

class ContentLifecycleTest : public ::testing::Test {
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
    write_text(course_.path() / kCourseFile,
               R"({"id": "flood", "title": "Flood response", "lessons": [
                   {"id": "video", "title": "Video", "kind": "video", "files": ["v.mp4"]},
                   {"id": "notes", "title": "Notes", "kind": "html", "files": ["n.html"]}]})");
    video_ = crypto::random_bytes(1024 * 1024);
    write_file(course_.path() / "v.mp4", video_);
    write_text(course_.path() / "n.html", "<p>Move to higher ground.</p>");
  }

  PublishedVersion publish(UnixTime at) {
    std::string why;
    auto source = read_course_folder(course_.path(), why);
    EXPECT_TRUE(source) << why;
    if (!source)
      return {};
    auto published = catalog_->publish(source.value(), identity_->signing_key, at, why);
    EXPECT_TRUE(published) << why;
    return published ? published.value() : PublishedVersion{};
  }

  // Replaces the last 100 KiB of the video: a new version sharing most chunks.
  void revise_video() {
    const crypto::Bytes tail = crypto::random_bytes(100 * 1024);
    std::copy(tail.begin(), tail.end(), video_.end() - static_cast<std::ptrdiff_t>(tail.size()));
    write_file(course_.path() / "v.mp4", video_);
  }

  bool visible(UnixTime at) {
    auto courses = catalog_->visible_courses("alice", at);
    EXPECT_TRUE(courses);
    return courses && !courses.value().empty();
  }

  std::int64_t count(const std::string& table) {
    return db_->execAndGet("SELECT count(*) FROM " + table).getInt64();
  }

  std::size_t chunk_files() {
    std::size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(data_.path() / kChunksDir))
      n += e.is_regular_file();
    return n;
  }

  std::vector<std::string> chunks_of(std::int64_t version) {
    auto record = catalog_->find_version("flood", version);
    EXPECT_TRUE(record);
    std::vector<std::string> hashes;
    if (!record)
      return hashes;
    auto manifest = protocol::parse_manifest(record.value().manifest);
    EXPECT_TRUE(manifest);
    for (const auto& f : manifest.value().files)
      for (const auto& c : f.chunks)
        hashes.push_back(c.sha256);
    return hashes;
  }

  TempDir data_;
  TempDir course_;
  crypto::Bytes video_;
  std::unique_ptr<ServerIdentity> identity_;
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(ContentLifecycleTest, ARetiredCourseLeavesEveryDeviceAndComesBackWhenPublished) {
  publish(kNow);
  const std::string hash = chunks_of(1).front();
  ASSERT_TRUE(visible(kNow));
  ASSERT_TRUE(catalog_->chunk_visible("alice", hash, kNow).value());

  auto retired = catalog_->retire("flood", kNow);
  ASSERT_TRUE(retired);
  EXPECT_TRUE(retired.value());
  EXPECT_FALSE(visible(kNow));
  EXPECT_TRUE(catalog_->changes_since("alice", 0, 10, kNow).value().empty());
  EXPECT_FALSE(catalog_->chunk_visible("alice", hash, kNow).value());
  EXPECT_FALSE(catalog_->retire("flood", kNow).value());
  ASSERT_FALSE(catalog_->retire("nope", kNow));
  EXPECT_EQ(catalog_->retire("nope", kNow).error(), errc::no_such_course);
  auto listed = catalog_->list_courses();
  ASSERT_TRUE(listed);
  ASSERT_TRUE(listed.value().at(0).retired_at);

  const PublishedVersion again = publish(kNow + 1h);
  EXPECT_TRUE(again.unretired);
  EXPECT_EQ(again.version, 2);
  EXPECT_EQ(again.new_chunks, 0u);
  EXPECT_TRUE(visible(kNow + 1h));
  EXPECT_TRUE(catalog_->chunk_visible("alice", hash, kNow + 1h).value());
}

TEST_F(ContentLifecycleTest, AnExpiryIsANewSignedVersionWithTheSameChunks) {
  const PublishedVersion v1 = publish(kNow);
  std::string why;
  auto expiring = catalog_->set_expiry("flood", kNow + 48h, identity_->signing_key, kNow + 1h, why);
  ASSERT_TRUE(expiring) << why;
  EXPECT_EQ(expiring.value().version, 2);
  EXPECT_EQ(expiring.value().new_chunks, 0u);
  EXPECT_EQ(expiring.value().reused_chunks, v1.new_chunks);
  EXPECT_EQ(chunks_of(2), chunks_of(1));

  auto record = catalog_->find_version("flood", 0);
  ASSERT_TRUE(record);
  EXPECT_TRUE(identity_->signing_key.public_key().verify(
      crypto::as_bytes(record.value().manifest),
      crypto::from_hex(record.value().signature).value()));
  auto manifest = protocol::parse_manifest(record.value().manifest);
  ASSERT_TRUE(manifest);
  EXPECT_EQ(manifest.value().expires_at, protocol::format_timestamp(to_unix(kNow + 48h)));

  // Seen until the moment it expires, by the feed, the chunk check and the check-in's list.
  EXPECT_TRUE(visible(kNow + 47h));
  EXPECT_FALSE(visible(kNow + 48h));
  EXPECT_TRUE(catalog_->changes_since("alice", 0, 10, kNow + 48h).value().empty());
  EXPECT_FALSE(catalog_->chunk_visible("alice", chunks_of(2).front(), kNow + 48h).value());

  // A new publish keeps the expiry; clearing it brings the course back.
  revise_video();
  publish(kNow + 2h);
  manifest = protocol::parse_manifest(catalog_->find_version("flood", 0).value().manifest);
  ASSERT_TRUE(manifest);
  EXPECT_EQ(manifest.value().version, 3);
  EXPECT_EQ(manifest.value().expires_at, protocol::format_timestamp(to_unix(kNow + 48h)));
  auto cleared =
      catalog_->set_expiry("flood", std::nullopt, identity_->signing_key, kNow + 49h, why);
  ASSERT_TRUE(cleared) << why;
  EXPECT_TRUE(visible(kNow + 49h));
  manifest = protocol::parse_manifest(catalog_->find_version("flood", 0).value().manifest);
  EXPECT_EQ(manifest.value().expires_at, "");
  // Clearing it again publishes nothing.
  auto again = catalog_->set_expiry("flood", std::nullopt, identity_->signing_key, kNow + 49h, why);
  ASSERT_TRUE(again) << why;
  EXPECT_TRUE(again.value().unchanged);
  EXPECT_EQ(again.value().version, cleared.value().version);
  EXPECT_EQ(catalog_->find_version("flood", 0).value().version, cleared.value().version);

  ASSERT_TRUE(catalog_->retire("flood", kNow + 50h));
  auto refused = catalog_->set_expiry("flood", kNow + 60h, identity_->signing_key, kNow, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::course_retired);
  EXPECT_NE(why.find("retired"), std::string::npos) << why;
}

TEST_F(ContentLifecycleTest, GcKeepsTheLatestVersionAndWhatDevicesMayStillBeFetching) {
  publish(kNow);
  const auto v1_chunks = chunks_of(1);
  revise_video();
  const PublishedVersion v2 = publish(kNow + 1h);
  ASSERT_EQ(v2.version, 2);
  const std::size_t files_before = chunk_files();

  // Within the grace period nothing goes.
  auto early = catalog_->collect_garbage(kKeep, kNow + 2h, false);
  ASSERT_TRUE(early);
  EXPECT_EQ(early.value().versions, 0u);
  EXPECT_EQ(early.value().chunks, 0u);
  EXPECT_EQ(chunk_files(), files_before);

  // A dry run says what a real run does, and changes nothing.
  auto dry = catalog_->collect_garbage(kKeep, kNow + 8 * 24h, true);
  ASSERT_TRUE(dry);
  EXPECT_EQ(count("course_versions"), 2);
  EXPECT_EQ(chunk_files(), files_before);
  auto real = catalog_->collect_garbage(kKeep, kNow + 8 * 24h, false);
  ASSERT_TRUE(real);
  EXPECT_EQ(real.value().versions, dry.value().versions);
  EXPECT_EQ(real.value().chunks, dry.value().chunks);
  EXPECT_EQ(real.value().bytes, dry.value().bytes);

  EXPECT_EQ(real.value().versions, 1u);
  EXPECT_EQ(count("course_versions"), 1);
  EXPECT_EQ(catalog_->find_version("flood", 1).error(), errc::no_such_version);
  // Exactly the chunks only version 1 used are gone, rows and files.
  const auto v2_chunks = chunks_of(2);
  std::size_t only_v1 = 0;
  for (const auto& h : v1_chunks) {
    const bool kept = std::find(v2_chunks.begin(), v2_chunks.end(), h) != v2_chunks.end();
    only_v1 += !kept;
    EXPECT_EQ(fs::exists(catalog_->chunk_path(h)), kept) << h;
  }
  EXPECT_GE(only_v1, 1u);
  EXPECT_EQ(real.value().chunks, only_v1);
  EXPECT_EQ(chunk_files(), files_before - only_v1);
  for (const auto& h : v2_chunks)
    EXPECT_TRUE(catalog_->chunk_visible("alice", h, kNow + 8 * 24h).value());
}

TEST_F(ContentLifecycleTest, GcReleasesARetiredCourseButKeepsItsManifestAndChunksInUseElsewhere) {
  publish(kNow);
  const auto chunks = chunks_of(1);
  // A pending upload of a device names one of the course's chunks (an attachment of the same
  // file): that chunk must stay.
  SQLite::Statement upload(*db_,
                           "INSERT INTO uploaded_chunks(hash, size, device_id, uploaded_at) "
                           "VALUES (?, 1, 'dev', ?)");
  upload.bind(1, chunks.front());
  upload.bind(2, to_unix(kNow));
  upload.exec();

  ASSERT_TRUE(catalog_->retire("flood", kNow + 1h));
  auto report = catalog_->collect_garbage(kKeep, kNow + 10 * 24h, false);
  ASSERT_TRUE(report);
  EXPECT_EQ(report.value().courses, 1u);
  EXPECT_EQ(report.value().chunks, chunks.size() - 1);
  EXPECT_TRUE(fs::exists(catalog_->chunk_path(chunks.front())));
  for (std::size_t i = 1; i < chunks.size(); ++i)
    EXPECT_FALSE(fs::exists(catalog_->chunk_path(chunks[i])));
  // The manifest stays for completion reports; the course stays listed as retired.
  EXPECT_TRUE(catalog_->find_version("flood", 1));
  EXPECT_EQ(count("version_chunks"), 0);
  // Expiry needs the chunks, which are gone: publishing again is the way back.
  std::string why;
  ASSERT_TRUE(db_->exec("UPDATE courses SET retired_at = NULL") >= 0);
  auto refused =
      catalog_->set_expiry("flood", kNow + 20 * 24h, identity_->signing_key, kNow + 10 * 24h, why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::no_such_version);
  EXPECT_NE(why.find("publish the course again"), std::string::npos) << why;
  const PublishedVersion back = publish(kNow + 10 * 24h);
  EXPECT_EQ(back.new_chunks, chunks.size() - 1);
}

TEST_F(ContentLifecycleTest, GcDeletesOldStrayFilesOnlyAndSparesRecentOnes) {
  publish(kNow);
  const fs::path chunks_dir = data_.path() / kChunksDir;
  const std::string stray_hash(64, 'e');
  const fs::path stray = chunks_dir / "ee" / stray_hash;
  const fs::path temp = chunks_dir / "ee" / ("." + stray_hash + ".0011223344556677.tmp");
  const fs::path foreign = chunks_dir / "ee" / "README";
  for (const fs::path& p : {stray, temp, foreign})
    write_text(p, "left over");
  // Real time: these files were touched just now, within the grace period of a gc run now.
  const UnixTime real_now =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto fresh = catalog_->collect_garbage(kKeep, real_now, false);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh.value().stray_files, 0u);
  EXPECT_TRUE(fs::exists(stray));

  auto later = catalog_->collect_garbage(kKeep, kNow, false);
  ASSERT_TRUE(later);
  EXPECT_EQ(later.value().stray_files, 2u);
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(fs::exists(foreign));  // not Kaban's name: left alone
  // The course's own chunks are untouched.
  for (const auto& h : chunks_of(1))
    EXPECT_TRUE(fs::exists(catalog_->chunk_path(h)));
}

TEST_F(ContentLifecycleTest, APublishLeavesOnlyCompleteChunkFilesNamedByTheirHash) {
  const PublishedVersion v1 = publish(kNow);
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(data_.path() / kChunksDir)) {
    if (!e.is_regular_file())
      continue;
    ++files;
    const auto bytes = kaban::testing::read_file(e.path());
    EXPECT_EQ(crypto::to_hex(crypto::sha256(bytes)), e.path().filename().string());
  }
  EXPECT_EQ(files, v1.new_chunks);
}

TEST_F(ContentLifecycleTest, AdminCommandsSayWhatTheyDidAndAuditIt) {
  publish(kNow);
  std::ostringstream out;
  std::string why;
  ASSERT_TRUE(admin_course_retire(data_.path(), "flood", out, why)) << why;
  EXPECT_NE(out.str().find("retired flood"), std::string::npos) << out.str();
  out.str("");
  ASSERT_TRUE(admin_course_retire(data_.path(), "flood", out, why)) << why;
  EXPECT_NE(out.str().find("retired already"), std::string::npos) << out.str();
  auto missing = admin_course_retire(data_.path(), "nope", out, why);
  ASSERT_FALSE(missing);
  EXPECT_NE(why.find("no course \"nope\""), std::string::npos) << why;

  out.str("");
  ASSERT_TRUE(admin_course_list(data_.path(), Listing::table, out, why)) << why;
  EXPECT_NE(out.str().find("retired "), std::string::npos) << out.str();

  out.str("");
  ASSERT_TRUE(admin_gc(data_.path(), kKeep, true, out, why)) << why;
  EXPECT_NE(out.str().find("would delete 0 superseded versions"), std::string::npos) << out.str();
  EXPECT_EQ(
      db_->execAndGet("SELECT count(*) FROM audit_log WHERE event = 'course_retired'").getInt(), 1);
}

}  // namespace
}  // namespace kaban::server
