#include "kaban/agent/library.hpp"

#include <map>
#include <optional>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/agent/error.hpp"
#include "kaban/crypto/sha256.hpp"
#include "test_support.hpp"

namespace kaban::agent {
namespace {

constexpr crypto::ScryptParams kFast{1u << 10, 8, 1};
constexpr std::string_view kPin = "1234-5678";

std::string hex_sha256(std::string_view bytes) {
  return crypto::to_hex(crypto::sha256(crypto::as_bytes(bytes)));
}

// A file as the publisher cut it: its path and its content in chunk-sized pieces.
struct FileSpec {
  std::string path;
  std::vector<std::string> pieces;
};

// What the server sends for one course version: the signed change and the chunks it names.
struct Published {
  protocol::Manifest manifest;
  protocol::CourseVersionChange change;
  std::vector<ChunkData> chunks;               // distinct, in manifest order
  std::map<std::string, std::string> content;  // path -> whole file
};

// Lesson "lN" uses file N.
protocol::Manifest make_manifest(const std::string& course_id, std::int64_t version,
                                 const std::vector<FileSpec>& files) {
  protocol::Manifest m;
  m.course_id = course_id;
  m.version = version;
  m.title = "Course " + course_id;
  m.description = "Version " + std::to_string(version);
  m.published_at = "2026-11-23T10:00:00Z";
  for (std::size_t i = 0; i < files.size(); ++i) {
    protocol::ManifestFile f;
    f.path = files[i].path;
    f.media_type = "text/plain";
    std::string whole;
    for (const std::string& piece : files[i].pieces) {
      f.chunks.push_back({hex_sha256(piece), piece.size()});
      whole += piece;
    }
    f.size = whole.size();
    f.sha256 = hex_sha256(whole);
    m.files.push_back(std::move(f));
    m.lessons.push_back({"l" + std::to_string(i),
                         "Lesson " + std::to_string(i),
                         "document",
                         static_cast<std::int64_t>(5 + i),
                         {files[i].path}});
  }
  return m;
}

protocol::CourseVersionChange sign(const protocol::Manifest& m,
                                   const crypto::Ed25519PrivateKey& key) {
  protocol::CourseVersionChange change;
  change.course_id = m.course_id;
  change.version = m.version;
  change.manifest = protocol::manifest_to_json(m);
  change.signature = crypto::to_hex(key.sign(crypto::as_bytes(change.manifest)));
  return change;
}

Published publish(const crypto::Ed25519PrivateKey& key, const std::string& course_id,
                  std::int64_t version, const std::vector<FileSpec>& files) {
  Published p;
  p.manifest = make_manifest(course_id, version, files);
  p.change = sign(p.manifest, key);
  for (const FileSpec& f : files) {
    for (const std::string& piece : f.pieces) {
      p.content[f.path] += piece;
      const std::string hash = hex_sha256(piece);
      if (std::none_of(p.chunks.begin(), p.chunks.end(),
                       [&](const ChunkData& c) { return c.sha256 == hash; }))
        p.chunks.push_back({hash, piece});
    }
  }
  return p;
}

std::vector<std::string> hashes(const std::vector<protocol::ChunkRef>& refs) {
  std::vector<std::string> out;
  for (const auto& r : refs)
    out.push_back(r.sha256);
  return out;
}

class LibraryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::create(dir_, kPin, kFast);
    ASSERT_TRUE(store) << store.error().message();
    store_.emplace(std::move(store).value());
    library_.emplace(*store_);
  }

  void reopen() {
    library_.reset();
    store_.reset();
    auto store = Store::open(dir_, kPin);
    ASSERT_TRUE(store) << store.error().message();
    store_.emplace(std::move(store).value());
    library_.emplace(*store_);
  }

  Library& library() { return *library_; }

  std::int64_t count(const std::string& table) {
    return store_->db().execAndGet("SELECT count(*) FROM " + table).getInt64();
  }

  Result<std::string> read(std::string_view course, std::string_view lesson,
                           std::string_view path = "", int* calls = nullptr) {
    std::string out;
    auto r = library().open_file(course, lesson, path, [&](crypto::ByteView b) -> Result<void> {
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
      if (calls)
        ++*calls;
      return ok();
    });
    if (!r)
      return r.error();
    return out;
  }

  // Adds, fetches every missing chunk and completes, as a sync would.
  void install(const Published& p) {
    ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
    auto missing = library().missing_chunks();
    ASSERT_TRUE(missing);
    std::vector<ChunkData> batch;
    for (const auto& ref : missing.value())
      for (const auto& c : p.chunks)
        if (c.sha256 == ref.sha256)
          batch.push_back(c);
    ASSERT_TRUE(library().put_chunks(batch));
    auto done = library().complete_versions();
    ASSERT_TRUE(done) << done.error().message();
  }

  void expect_nothing_stored() {
    EXPECT_EQ(count("course_versions"), 0);
    EXPECT_EQ(count("version_chunks"), 0);
    EXPECT_EQ(count("chunks"), 0);
    auto courses = library().courses();
    ASSERT_TRUE(courses);
    EXPECT_TRUE(courses.value().empty());
  }

  kaban::testing::TempDir tmp_;
  std::filesystem::path dir_ = tmp_ / "device";
  std::optional<Store> store_;
  std::optional<Library> library_;
  crypto::Ed25519PrivateKey key_ = crypto::Ed25519PrivateKey::generate();
};

const std::vector<FileSpec> kTwoFiles = {
    {"intro.txt", {"Welcome to the city office. ", "Please read the safety rules. ", "Thanks."}},
    {"media/rules.txt", {"Rule one: evacuate calmly."}},
};

TEST_F(LibraryTest, RefusesManifestsThatDoNotVerify) {
  const Published p = publish(key_, "safety", 1, kTwoFiles);

  auto bad_hex = p.change;
  bad_hex.signature = "not hex";
  auto flipped = p.change;
  flipped.signature[0] = flipped.signature[0] == '0' ? '1' : '0';
  auto other_key = p.change;
  other_key.signature = sign(p.manifest, crypto::Ed25519PrivateKey::generate()).signature;
  auto tampered = p.change;
  tampered.manifest.replace(tampered.manifest.find("Course safety"), 13, "Course SAFETY");
  auto other_course = sign(make_manifest("other", 1, kTwoFiles), key_);
  other_course.course_id = "safety";
  auto other_version = sign(make_manifest("safety", 2, kTwoFiles), key_);
  other_version.version = 1;
  auto unparsable = p.change;
  unparsable.manifest = R"({"format":1})";
  unparsable.signature = crypto::to_hex(key_.sign(crypto::as_bytes(unparsable.manifest)));

  const std::pair<const char*, const protocol::CourseVersionChange*> cases[] = {
      {"signature not hex", &bad_hex},
      {"signature altered", &flipped},
      {"signed by another key", &other_key},
      {"manifest altered", &tampered},
      {"another course's manifest", &other_course},
      {"another version's manifest", &other_version},
      {"signed but unparsable", &unparsable},
  };
  for (const auto& [what, change] : cases) {
    std::string why;
    auto r = library().add_course_version(*change, key_.public_key(), &why);
    ASSERT_FALSE(r) << what;
    EXPECT_EQ(r.error(), errc::content_invalid) << what;
    // The reason tells a bad signature from a signed manifest this agent cannot read.
    const bool signed_ok = change == &unparsable;
    EXPECT_EQ(
        why.find("signature does not verify") != std::string::npos,
        change == &bad_hex || change == &flipped || change == &other_key || change == &tampered)
        << what << ": " << why;
    EXPECT_EQ(why.find("cannot accept") != std::string::npos, signed_ok) << what << ": " << why;
  }
  expect_nothing_stored();
}

TEST_F(LibraryTest, AddingIsIdempotent) {
  const Published p = publish(key_, "safety", 1, kTwoFiles);
  auto first = library().add_course_version(p.change, key_.public_key());
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_TRUE(first.value());
  const auto missing = library().missing_chunks();
  ASSERT_TRUE(missing);

  auto again = library().add_course_version(p.change, key_.public_key());
  ASSERT_TRUE(again);
  EXPECT_FALSE(again.value());
  EXPECT_EQ(count("course_versions"), 1);
  EXPECT_EQ(library().missing_chunks().value(), missing.value());
  EXPECT_EQ(missing.value().size(), 4u);
}

TEST_F(LibraryTest, ACourseIsReadableOnlyOnceEveryChunkIsVerified) {
  const Published p = publish(key_, "safety", 1, kTwoFiles);
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));

  auto listed = library().courses();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed.value().size(), 1u);
  EXPECT_EQ(listed.value()[0].id, "safety");
  EXPECT_EQ(listed.value()[0].title, "Course safety");
  EXPECT_FALSE(listed.value()[0].ready);
  EXPECT_EQ(listed.value()[0].version, 0);
  EXPECT_EQ(listed.value()[0].lessons, 2u);
  EXPECT_EQ(listed.value()[0].total_size, p.manifest.total_size());
  EXPECT_EQ(listed.value()[0].pending_bytes, p.manifest.total_size());
  EXPECT_EQ(library().lessons("safety").error(), errc::not_found);
  EXPECT_EQ(read("safety", "l0").error(), errc::not_found);

  // All but the last chunk: still not readable.
  std::vector<ChunkData> most(p.chunks.begin(), p.chunks.end() - 1);
  ASSERT_TRUE(library().put_chunks(most));
  ASSERT_TRUE(library().complete_versions());
  EXPECT_EQ(library().courses().value()[0].pending_bytes, p.chunks.back().bytes.size());
  EXPECT_EQ(library().lessons("safety").error(), errc::not_found);

  ASSERT_TRUE(library().put_chunks(std::span(p.chunks).last(1)));
  EXPECT_EQ(library().lessons("safety").error(), errc::not_found)
      << "stored is not yet verified: complete_versions() makes it visible";
  auto done = library().complete_versions();
  ASSERT_TRUE(done) << done.error().message();
  EXPECT_EQ(done.value(), std::vector<std::string>{"safety@1"});

  listed = library().courses();
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed.value()[0].ready);
  EXPECT_EQ(listed.value()[0].version, 1);
  EXPECT_EQ(listed.value()[0].pending_bytes, 0u);
  auto lessons = library().lessons("safety");
  ASSERT_TRUE(lessons);
  ASSERT_EQ(lessons.value().size(), 2u);
  EXPECT_EQ(lessons.value()[1].course_id, "safety");
  EXPECT_EQ(lessons.value()[1].id, "l1");
  EXPECT_EQ(lessons.value()[1].title, "Lesson 1");
  EXPECT_EQ(lessons.value()[1].kind, "document");
  EXPECT_EQ(lessons.value()[1].duration_minutes, 6);
  EXPECT_EQ(lessons.value()[1].files, std::vector<std::string>{"media/rules.txt"});
  EXPECT_EQ(lessons.value()[1].size, p.content.at("media/rules.txt").size());
  EXPECT_EQ(library().complete_versions().value(), std::vector<std::string>{})
      << "nothing left to complete";
}

TEST_F(LibraryTest, PutChunksStoresNothingOfABatchWithABadChunk) {
  const Published p = publish(key_, "safety", 1, kTwoFiles);
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
  const auto before = library().missing_chunks().value();

  std::vector<ChunkData> batch = p.chunks;
  batch[2].bytes[0] ^= 0x01;
  EXPECT_EQ(library().put_chunks(batch).error(), errc::content_invalid);
  const std::string stranger = "bytes no version uses";
  const ChunkData unused[] = {p.chunks[0], {hex_sha256(stranger), stranger}};
  EXPECT_EQ(library().put_chunks(unused).error(), errc::content_invalid);

  EXPECT_EQ(library().stored_bytes().value(), 0u);
  EXPECT_EQ(count("chunks"), 0);
  EXPECT_EQ(library().missing_chunks().value(), before);
}

TEST_F(LibraryTest, MissingChunksShrinkAsBatchesArrive) {
  const std::string shared = "a chunk used twice";
  const Published p = publish(
      key_, "big", 1,
      {{"a.txt", {"part 1 ", "part 2 ", shared, "part 4 "}}, {"b.txt", {shared, "part 6"}}});
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
  ASSERT_EQ(p.chunks.size(), 5u);

  std::vector<std::string> expected;
  for (const auto& c : p.chunks)
    expected.push_back(c.sha256);
  EXPECT_EQ(hashes(library().missing_chunks().value()), expected) << "distinct, in manifest order";
  EXPECT_EQ(library().missing_chunks().value()[2].size, shared.size());

  for (std::size_t sent = 0; sent < p.chunks.size(); sent += 2) {
    const auto batch = std::span(p.chunks).subspan(sent, std::min<std::size_t>(2, 5 - sent));
    ASSERT_TRUE(library().put_chunks(batch));
    expected.erase(expected.begin(), expected.begin() + static_cast<long>(batch.size()));
    EXPECT_EQ(hashes(library().missing_chunks().value()), expected);
    // A batch sent again (a retried request) changes nothing.
    ASSERT_TRUE(library().put_chunks(batch));
  }
  std::uint64_t total = 0;
  for (const auto& c : p.chunks)
    total += c.bytes.size();
  EXPECT_EQ(library().stored_bytes().value(), total);
}

TEST_F(LibraryTest, OpenFileStreamsTheFileChunkByChunk) {
  const Published p = publish(key_, "safety", 1, kTwoFiles);
  install(p);

  int calls = 0;
  auto intro = read("safety", "l0", "", &calls);
  ASSERT_TRUE(intro) << intro.error().message();
  EXPECT_EQ(intro.value(), p.content.at("intro.txt"));
  EXPECT_EQ(calls, 3) << "one call per chunk";
  EXPECT_EQ(read("safety", "l1", "media/rules.txt").value(), p.content.at("media/rules.txt"));

  EXPECT_EQ(read("safety", "l0", "media/rules.txt").error(), errc::not_found)
      << "a path the lesson does not use";
  EXPECT_EQ(read("safety", "l9").error(), errc::not_found);
  EXPECT_EQ(read("nothing", "l0").error(), errc::not_found);
  EXPECT_EQ(library().lessons("nothing").error(), errc::not_found);

  int chunks_seen = 0;
  auto stopped = library().open_file("safety", "l0", "", [&](crypto::ByteView) -> Result<void> {
    ++chunks_seen;
    return errc::interrupted;
  });
  EXPECT_EQ(stopped.error(), errc::interrupted);
  EXPECT_EQ(chunks_seen, 1) << "the sink's error stops the stream";
}

TEST_F(LibraryTest, ANewVersionReplacesTheOldOnlyOnceCompleteAndItsChunksAreCollected) {
  const Published v1 = publish(key_, "safety", 1,
                               {{"intro.txt", {"Shared opening. ", "Old ending."}},
                                {"media/rules.txt", {"Rule one: evacuate calmly."}}});
  install(v1);
  const Published v2 = publish(key_, "safety", 2,
                               {{"intro.txt", {"Shared opening. ", "New ending!"}},
                                {"media/rules.txt", {"Rule one: evacuate calmly."}}});
  const std::string old_only = hex_sha256("Old ending.");
  const std::string new_only = hex_sha256("New ending!");

  auto added = library().add_course_version(v2.change, key_.public_key());
  ASSERT_TRUE(added);
  EXPECT_TRUE(added.value());
  EXPECT_EQ(hashes(library().missing_chunks().value()), std::vector<std::string>{new_only})
      << "chunks the device holds are never fetched again";

  auto listed = library().courses().value();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(listed[0].ready);
  EXPECT_EQ(listed[0].version, 1);
  EXPECT_EQ(listed[0].pending_bytes, std::string("New ending!").size());
  EXPECT_EQ(read("safety", "l0").value(), v1.content.at("intro.txt")) << "v1 stays readable";

  ASSERT_TRUE(library().put_chunks(std::span(v2.chunks).subspan(1, 1)));
  EXPECT_EQ(read("safety", "l0").value(), v1.content.at("intro.txt"));
  EXPECT_EQ(library().complete_versions().value(), std::vector<std::string>{"safety@2"});

  EXPECT_EQ(read("safety", "l0").value(), v2.content.at("intro.txt"));
  EXPECT_EQ(library().courses().value()[0].version, 2);
  EXPECT_EQ(count("course_versions"), 1);
  EXPECT_EQ(store_->db()
                .execAndGet("SELECT count(*) FROM chunks WHERE hash = '" + old_only + "'")
                .getInt(),
            0)
      << "a chunk only v1 used is deleted";
  EXPECT_EQ(library().stored_bytes().value(),
            std::string("Shared opening. New ending!Rule one: evacuate calmly.").size());

  auto older = library().add_course_version(v1.change, key_.public_key());
  ASSERT_TRUE(older);
  EXPECT_FALSE(older.value()) << "a version older than a complete one is ignored";
  EXPECT_EQ(count("course_versions"), 1);
  EXPECT_TRUE(library().missing_chunks().value().empty());
}

TEST_F(LibraryTest, ANewerIncompleteVersionSupersedesAnOlderIncompleteOne) {
  const Published v1 = publish(key_, "safety", 1, {{"a.txt", {"only in one"}}});
  const Published v2 = publish(key_, "safety", 2, {{"a.txt", {"only in two"}}});
  ASSERT_TRUE(library().add_course_version(v1.change, key_.public_key()));
  ASSERT_TRUE(library().put_chunks(v1.chunks));
  ASSERT_TRUE(library().add_course_version(v2.change, key_.public_key()));
  EXPECT_EQ(count("course_versions"), 1);
  EXPECT_EQ(count("chunks"), 0) << "v1's chunk was collected with v1";
  EXPECT_EQ(hashes(library().missing_chunks().value()),
            std::vector<std::string>{v2.chunks[0].sha256});
}

TEST_F(LibraryTest, AFileWhoseSignedHashDisagreesWithItsChunksIsRefusedWhenRead) {
  // A server that signed a file hash its own chunks do not add up to: the chunks verify one by
  // one, so the version completes, but reading the file says it is not the signed content.
  protocol::Manifest m = make_manifest("safety", 1, {{"a.txt", {"first ", "second"}}});
  m.files[0].sha256 = hex_sha256("something else");
  const protocol::CourseVersionChange change = sign(m, key_);
  ASSERT_TRUE(library().add_course_version(change, key_.public_key()));
  const ChunkData chunks[] = {{hex_sha256("first "), "first "}, {hex_sha256("second"), "second"}};
  ASSERT_TRUE(library().put_chunks(chunks));
  ASSERT_TRUE(library().complete_versions());
  auto read_back = read("safety", "l0");
  ASSERT_FALSE(read_back);
  EXPECT_EQ(read_back.error(), errc::content_invalid);
}

TEST_F(LibraryTest, CompletingAVersionReadsNoChunkBack) {
  // Completion trusts the per-chunk checks made when each chunk was stored: a large course
  // completes without a second pass over its bytes. A chunk row altered after it was stored
  // (only possible by writing the store directly) is caught when the file is read.
  const Published p = publish(key_, "safety", 1, kTwoFiles);
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
  ASSERT_TRUE(library().put_chunks(p.chunks));
  store_->db().exec("UPDATE chunks SET data = zeroblob(length(data)) WHERE size = " +
                    std::to_string(p.chunks.back().bytes.size()));
  auto done = library().complete_versions();
  ASSERT_TRUE(done);
  EXPECT_EQ(done.value(), std::vector<std::string>{"safety@1"});
  EXPECT_EQ(read("safety", "l1").error(), errc::content_invalid);
}

TEST_F(LibraryTest, ContentNeverReachesTheDiskInTheClear) {
  const std::string canary = kaban::testing::random_marker("canary-");
  const std::string title_canary = kaban::testing::random_marker("title-");
  protocol::Manifest m =
      make_manifest("secret", 1, {{"memo.txt", {"The code word is " + canary + "."}}});
  m.title = title_canary;
  const protocol::CourseVersionChange change = sign(m, key_);
  ASSERT_TRUE(library().add_course_version(change, key_.public_key()));
  const ChunkData chunk[] = {{m.files[0].chunks[0].sha256, "The code word is " + canary + "."}};
  ASSERT_TRUE(library().put_chunks(chunk));
  ASSERT_TRUE(library().complete_versions());
  auto memo = read("secret", "l0");
  ASSERT_TRUE(memo);
  EXPECT_NE(memo.value().find(canary), std::string::npos) << "the canary is in the store";

  EXPECT_TRUE(kaban::testing::files_containing(dir_, canary).empty());
  EXPECT_TRUE(kaban::testing::files_containing(dir_, title_canary).empty());
  library_.reset();
  store_.reset();
  EXPECT_TRUE(kaban::testing::files_containing(dir_, canary).empty());
  EXPECT_TRUE(kaban::testing::files_containing(dir_, title_canary).empty());
}

TEST_F(LibraryTest, ReopeningTheStoreKeepsEverything) {
  const Published v1 = publish(key_, "safety", 1, kTwoFiles);
  install(v1);
  const Published v2 = publish(key_, "safety", 2, {{"intro.txt", {"Brand new."}}});
  ASSERT_TRUE(library().add_course_version(v2.change, key_.public_key()));
  const Published other = publish(key_, "fire", 3, {{"a.txt", {"one ", "two"}}});
  ASSERT_TRUE(library().add_course_version(other.change, key_.public_key()));
  ASSERT_TRUE(library().put_chunks(std::span(other.chunks).first(1)));

  const auto courses = library().courses().value();
  const auto missing = library().missing_chunks().value();
  const auto bytes = library().stored_bytes().value();
  ASSERT_EQ(courses.size(), 2u);
  EXPECT_EQ(courses[0].id, "fire");
  EXPECT_EQ(missing.size(), 2u);

  reopen();
  auto after = library().courses();
  ASSERT_TRUE(after);
  ASSERT_EQ(after.value().size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(after.value()[i].id, courses[i].id);
    EXPECT_EQ(after.value()[i].version, courses[i].version);
    EXPECT_EQ(after.value()[i].ready, courses[i].ready);
    EXPECT_EQ(after.value()[i].pending_bytes, courses[i].pending_bytes);
  }
  EXPECT_EQ(library().missing_chunks().value(), missing);
  EXPECT_EQ(library().stored_bytes().value(), bytes);
  EXPECT_EQ(read("safety", "l1").value(), v1.content.at("media/rules.txt"));
}

TEST_F(LibraryTest, RemovingACourseKeepsTheChunksAnotherCourseUses) {
  const std::string shared = "Shared safety rule: evacuate calmly.";
  const Published safety =
      publish(key_, "safety", 1, {{"intro.txt", {"Only in safety. "}}, {"rules.txt", {shared}}});
  const Published fire =
      publish(key_, "fire", 1, {{"drill.txt", {"Only in fire. "}}, {"rules.txt", {shared}}});
  install(safety);
  install(fire);
  ASSERT_EQ(count("chunks"), 3);

  auto removed = library().remove_course("safety");
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_TRUE(removed.value());

  auto courses = library().courses();
  ASSERT_TRUE(courses);
  ASSERT_EQ(courses.value().size(), 1u);
  EXPECT_EQ(courses.value()[0].id, "fire");
  auto gone = read("safety", "l0");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error(), errc::not_found);
  EXPECT_EQ(count("version_chunks WHERE course_id = 'safety'"), 0);
  // The chunk only safety used is gone; the shared one stays, and fire reads whole.
  EXPECT_EQ(count("chunks WHERE hash = '" + hex_sha256("Only in safety. ") + "'"), 0);
  EXPECT_EQ(count("chunks"), 2);
  EXPECT_EQ(read("fire", "l1").value(), shared);
  EXPECT_EQ(read("fire", "l0").value(), "Only in fire. ");
}

TEST_F(LibraryTest, RemovingACourseDropsAVersionStillDownloading) {
  const Published v1 = publish(key_, "safety", 1, kTwoFiles);
  install(v1);
  const Published v2 = publish(key_, "safety", 2, {{"intro.txt", {"New intro."}}});
  ASSERT_TRUE(library().add_course_version(v2.change, key_.public_key()));
  ASSERT_FALSE(library().missing_chunks().value().empty());

  ASSERT_TRUE(library().remove_course("safety").value());
  expect_nothing_stored();
  EXPECT_TRUE(library().missing_chunks().value().empty()) << "nothing left to download";
}

TEST_F(LibraryTest, RemovingACourseNotHeldChangesNothing) {
  install(publish(key_, "fire", 1, kTwoFiles));
  auto removed = library().remove_course("safety");
  ASSERT_TRUE(removed);
  EXPECT_FALSE(removed.value());
  EXPECT_EQ(library().courses().value().size(), 1u);
  EXPECT_EQ(read("fire", "l1").value(), "Rule one: evacuate calmly.");
}

TEST_F(LibraryTest, AnExpiredCourseIsRemovedByTheNewestVersionsDate) {
  // 2027-01-01T00:00:00Z
  constexpr std::int64_t kExpiry = 1'798'761'600;
  Published expiring = publish(key_, "safety", 1, kTwoFiles);
  expiring.manifest.expires_at = "2027-01-01T00:00:00Z";
  expiring.change = sign(expiring.manifest, key_);
  install(expiring);
  install(publish(key_, "fire", 1, {{"drill.txt", {"Fire drill."}}}));

  auto early = library().remove_expired(kExpiry - 1);
  ASSERT_TRUE(early);
  EXPECT_TRUE(early.value().empty());
  EXPECT_EQ(library().courses().value().size(), 2u);

  // IT cleared the expiry: a newer version without a date, still downloading, decides.
  Published cleared = publish(key_, "safety", 2, kTwoFiles);
  ASSERT_TRUE(library().add_course_version(cleared.change, key_.public_key()));
  EXPECT_TRUE(library().remove_expired(kExpiry + 10).value().empty());
  // Set again, in a version that is also the newest.
  Published again = publish(key_, "safety", 3, kTwoFiles);
  again.manifest.expires_at = "2027-01-01T00:00:00Z";
  again.change = sign(again.manifest, key_);
  ASSERT_TRUE(library().add_course_version(again.change, key_.public_key()));

  auto expired = library().remove_expired(kExpiry);
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired.value(), std::vector<std::string>{"safety"});
  auto courses = library().courses();
  ASSERT_TRUE(courses);
  ASSERT_EQ(courses.value().size(), 1u);
  EXPECT_EQ(courses.value()[0].id, "fire");
  EXPECT_EQ(count("course_versions WHERE course_id = 'safety'"), 0);
  EXPECT_EQ(read("fire", "l0").value(), "Fire drill.");
  // Only fire's chunk is left.
  EXPECT_EQ(count("chunks"), 1);
}

// ---- Download on demand ----

// l0: a small handout; l1: a "video" of 3 chunks, one shared with l2's "video"; l2: 2 chunks.
const std::vector<FileSpec> kWithVideos = {
    {"handout.txt", {"Read this first."}},
    {"video1.mp4", {std::string(400, 'a'), std::string(400, 'b'), std::string(400, 'c')}},
    {"video2.mp4", {std::string(400, 'c'), std::string(400, 'd')}},
};

// Fetches what missing_by_version lists and completes, as a sync does.
void fill(Library& library, const Published& p) {
  auto needs = library.missing_by_version();
  ASSERT_TRUE(needs);
  std::vector<ChunkData> batch;
  for (const auto& v : needs.value())
    for (const auto& ref : v.chunks)
      for (const auto& c : p.chunks)
        if (c.sha256 == ref.sha256)
          batch.push_back(c);
  ASSERT_TRUE(library.put_chunks(batch));
  ASSERT_TRUE(library.complete_versions());
}

std::uint64_t lesson_missing(Library& library, std::string_view course, std::string_view id) {
  auto lessons = library.lessons(course);
  EXPECT_TRUE(lessons);
  for (const LessonInfo& l : lessons.value())
    if (l.id == id)
      return l.missing_bytes;
  ADD_FAILURE() << "no lesson " << id;
  return 0;
}

TEST_F(LibraryTest, LargeFilesWaitForAPinAndTheCourseIsReadableWithoutThem) {
  ASSERT_TRUE(library().set_on_demand_threshold(1000));
  const Published p = publish(key_, "media", 1, kWithVideos);
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
  // video1 (1,200 bytes) waits for a pin; video2 (800) is under the threshold and is fetched.
  auto missing = library().missing_chunks();
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing.value().size(), 3u);  // handout, c (video2 needs it), d
  fill(library(), p);

  auto courses = library().courses();
  ASSERT_TRUE(courses);
  ASSERT_EQ(courses.value().size(), 1u);
  EXPECT_TRUE(courses.value()[0].ready);
  EXPECT_EQ(courses.value()[0].on_demand_bytes, 800u);
  EXPECT_EQ(read("media", "l0").value(), p.content.at("handout.txt"));
  EXPECT_EQ(read("media", "l2").value(), p.content.at("video2.mp4"));
  EXPECT_EQ(lesson_missing(library(), "media", "l1"), 800u);  // a and b; c is held
  auto closed = read("media", "l1");
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error(), errc::not_downloaded);

  // Pinning it makes the complete version want its chunks; the next sync fetches them.
  EXPECT_TRUE(library().pin_lesson("media", "l1").value());
  EXPECT_FALSE(library().pin_lesson("media", "l1").value());
  auto wanted = library().missing_by_version();
  ASSERT_TRUE(wanted);
  ASSERT_EQ(wanted.value().size(), 1u);
  EXPECT_EQ(wanted.value()[0].version, 1);
  EXPECT_EQ(wanted.value()[0].chunks.size(), 2u);
  fill(library(), p);
  EXPECT_EQ(read("media", "l1").value(), p.content.at("video1.mp4"));
  EXPECT_EQ(lesson_missing(library(), "media", "l1"), 0u);
  EXPECT_EQ(library().courses().value()[0].on_demand_bytes, 0u);

  auto pin_unknown = library().pin_lesson("media", "l9");
  ASSERT_FALSE(pin_unknown);
  EXPECT_EQ(pin_unknown.error(), errc::not_found);
}

TEST_F(LibraryTest, UnpinningFreesOnlyWhatNothingElseNeeds) {
  ASSERT_TRUE(library().set_on_demand_threshold(700));  // both videos on demand
  const Published p = publish(key_, "media", 1, kWithVideos);
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
  ASSERT_TRUE(library().pin_lesson("media", "l1"));
  ASSERT_TRUE(library().pin_lesson("media", "l2"));
  fill(library(), p);
  const auto before = library().stored_bytes().value();

  // l1 unpinned: a and b go; c stays for the pinned l2.
  auto freed = library().unpin_lesson("media", "l1");
  ASSERT_TRUE(freed);
  ASSERT_TRUE(freed.value());
  EXPECT_EQ(*freed.value(), 800u);
  EXPECT_EQ(library().stored_bytes().value(), before - 800);
  EXPECT_EQ(read("media", "l2").value(), p.content.at("video2.mp4"));
  EXPECT_FALSE(library().unpin_lesson("media", "l1").value().has_value());

  auto report = library().storage();
  ASSERT_TRUE(report);
  EXPECT_EQ(report.value().on_demand_threshold, 700u);
  EXPECT_EQ(report.value().freeable, 0u);
  ASSERT_EQ(report.value().courses.size(), 1u);
  const CourseStorage& c = report.value().courses[0];
  ASSERT_EQ(c.lessons.size(), 3u);
  EXPECT_FALSE(c.lessons[1].pinned);
  EXPECT_EQ(c.lessons[1].held, 400u);  // c, which l2 keeps
  EXPECT_EQ(c.lessons[1].on_demand_size, 1200u);
  EXPECT_TRUE(c.lessons[2].pinned);
  EXPECT_EQ(c.lessons[2].held, 800u);
}

TEST_F(LibraryTest, MediaHeldWithoutAPinIsKeptUntilFreed) {
  // A bundle brings every chunk, on demand or not: they stay readable, and can be freed.
  ASSERT_TRUE(library().set_on_demand_threshold(700));
  const Published p = publish(key_, "media", 1, kWithVideos);
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
  ASSERT_TRUE(library().put_chunks(p.chunks));
  ASSERT_TRUE(library().complete_versions());
  EXPECT_EQ(read("media", "l1").value(), p.content.at("video1.mp4"));
  EXPECT_EQ(library().storage().value().freeable, 1600u);  // a, b, c, d
  EXPECT_EQ(library().storage_free().value(), 1600u);
  EXPECT_EQ(read("media", "l0").value(), p.content.at("handout.txt"));
  EXPECT_EQ(read("media", "l1").error(), errc::not_downloaded);
  EXPECT_EQ(library().storage().value().freeable, 0u);
}

TEST_F(LibraryTest, APinnedLessonKeepsTheOldVersionUntilItsNewMediaIsHere) {
  ASSERT_TRUE(library().set_on_demand_threshold(700));
  const Published v1 = publish(key_, "media", 1, kWithVideos);
  ASSERT_TRUE(library().add_course_version(v1.change, key_.public_key()));
  ASSERT_TRUE(library().pin_lesson("media", "l1"));
  fill(library(), v1);

  auto files = kWithVideos;
  files[1].pieces[1] = std::string(400, 'B');  // the pinned video changes
  files[2].pieces[1] = std::string(400, 'D');  // an unpinned one too
  const Published v2 = publish(key_, "media", 2, files);
  ASSERT_TRUE(library().add_course_version(v2.change, key_.public_key()));
  auto needs = library().missing_by_version();
  ASSERT_TRUE(needs);
  ASSERT_EQ(needs.value().size(), 1u);
  EXPECT_EQ(needs.value()[0].version, 2);
  EXPECT_EQ(hashes(needs.value()[0].chunks),
            std::vector<std::string>{hex_sha256(files[1].pieces[1])});
  // Not complete without the pinned lesson's new chunk: version 1 is what is read.
  ASSERT_TRUE(library().complete_versions().value().empty());
  EXPECT_EQ(read("media", "l1").value(), v1.content.at("video1.mp4"));
  fill(library(), v2);
  EXPECT_EQ(library().courses().value()[0].version, 2);
  EXPECT_EQ(read("media", "l1").value(), v2.content.at("video1.mp4"));
  // The pin outlived the version.
  EXPECT_TRUE(library().lessons("media").value()[1].pinned);
}

TEST_F(LibraryTest, ChangingTheThresholdMarksHeldVersionsAgain) {
  const Published p = publish(key_, "media", 1, kWithVideos);
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
  EXPECT_EQ(library().missing_chunks().value().size(), 5u);
  ASSERT_TRUE(library().set_on_demand_threshold(700));
  EXPECT_EQ(library().missing_chunks().value().size(), 1u);  // the handout
  EXPECT_EQ(library().on_demand_threshold().value(), 700u);
  ASSERT_TRUE(library().set_on_demand_threshold(0));
  EXPECT_EQ(library().missing_chunks().value().size(), 5u);
}

TEST_F(LibraryTest, UnpinningGivesTheSpaceBackToTheFileSystem) {
  ASSERT_TRUE(library().set_on_demand_threshold(256 * 1024));
  std::vector<std::string> pieces;
  for (char c : {'x', 'y', 'z', 'w'})
    pieces.push_back(std::string(128 * 1024, c));
  const Published p = publish(key_, "media", 1, {{"small.txt", {"hello"}}, {"video.mp4", pieces}});
  ASSERT_TRUE(library().add_course_version(p.change, key_.public_key()));
  ASSERT_TRUE(library().pin_lesson("media", "l1"));
  fill(library(), p);
  const std::uint64_t full = Store::disk_size(dir_);
  EXPECT_EQ(*library().unpin_lesson("media", "l1").value(), 512u * 1024);
  EXPECT_LT(Store::disk_size(dir_), full - 500 * 1024) << "the store's file shrank";
}

TEST_F(LibraryTest, RemovingACourseDropsItsPins) {
  ASSERT_TRUE(library().set_on_demand_threshold(700));
  install(publish(key_, "media", 1, kWithVideos));
  ASSERT_TRUE(library().pin_lesson("media", "l1"));
  ASSERT_TRUE(library().remove_course("media"));
  EXPECT_EQ(count("pinned_lessons"), 0);
}

}  // namespace
}  // namespace kaban::agent
