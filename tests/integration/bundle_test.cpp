// Offline bundles end to end: IT writes a course to one file with the same function
// `kaban-server admin course bundle` calls (and once with the binary itself), and the `kaban`
// binary imports it on an enrolled device while the server is down. The course then reads as if
// synced, and a later sync fetches none of it. Bundles of another server, cut short or altered
// are refused with nothing of them readable; a newer version replaces an older one.
#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <sstream>

#include "child_process.hpp"
#include "kaban/agent/bundle_import.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/guard.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/protocol/bundle.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/audit_log.hpp"
#include "kaban/server/catalog.hpp"
#include "kaban/server/data_dir.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/error.hpp"
#include "sync_support.hpp"
#include "test_support.hpp"

namespace kaban {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CliRun;
using testing::kTestPin;
using testing::noise;
using testing::server_now;
using testing::text_of;
using testing::write_text;

constexpr const char* kCourse = "shelter-basics";
constexpr int kExitBadBundle = 12;  // docs/agent.md, exit codes

class Bundles : public testing::ServerFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ServerFixture::SetUp());
    add_user("aiko", "Aiko Tanaka");
  }

  // Publishes course `kCourse` on the server of `dir`: lesson "intro" (intro.html, the text
  // returned) and lesson "map" (map.pdf).
  std::string publish(const fs::path& dir, const std::string& intro_text, std::size_t map_size,
                      const std::string& id = kCourse) {
    const fs::path folder = tmp_.path() / ("course-" + std::to_string(++folders_));
    write_text(folder / "intro.html", intro_text);
    write_text(folder / "map.pdf", noise(map_size, 99));
    write_text(folder / "course.json", R"({"id": ")" + id + R"(", "title": "Opening a shelter",
      "lessons": [{"id": "intro", "title": "Before the doors open", "kind": "html",
                   "duration_minutes": 10, "files": ["intro.html"]},
                  {"id": "map", "title": "Floor map", "kind": "pdf", "files": ["map.pdf"]}]})");
    ServerFixture::publish(folder, dir);
    return intro_text;
  }

  // Writes a bundle of `dir`'s course with admin_course_bundle; its path.
  fs::path bundle(const fs::path& dir, const std::string& name, std::int64_t version = 0,
                  const std::string& id = kCourse) {
    const fs::path file = tmp_.path() / name;
    const std::string said = admin([&](std::ostream& out, std::string& why) {
      return server::admin_course_bundle(dir, id, version, file, out, nullptr, why);
    });
    EXPECT_NE(said.find("wrote " + id + " version"), std::string::npos) << said;
    return file;
  }

  // Enrolls a device of aiko's (the only step that needs the server) and closes its store.
  fs::path enroll(const std::string& name) { return enroll_device("aiko", name).dir; }

  CliRun kaban(const fs::path& device, std::vector<std::string> args) {
    return run_cli(KABAN_AGENT_BIN, device, std::move(args));
  }

  // The device's store, opened as the CLI opens it.
  agent::Store open_store(const fs::path& device) {
    std::string why;
    auto opened = agent::open_guarded(device, kTestPin, agent::read_clock_now(), why);
    EXPECT_TRUE(opened) << why;
    return std::move(opened).value();
  }

  // The readable version of the course on the device, 0 if none.
  std::int64_t readable_version(const fs::path& device, const std::string& id = kCourse) {
    agent::Store store = open_store(device);
    auto courses = agent::Library(store).courses();
    EXPECT_TRUE(courses);
    for (const agent::CourseInfo& c : courses.value())
      if (c.id == id && c.ready)
        return c.version;
    return 0;
  }

  int folders_ = 0;
};

bool says(const std::string& text, std::string_view words) {
  return text.find(words) != std::string::npos;
}

TEST_F(Bundles, ACourseImportedOfflineReadsAsIfSyncedAndASyncFetchesNoneOfIt) {
  const std::string intro = publish(server_dir_, "<h1>Doors</h1>" + noise(300'000, 1), 120'000);
  const fs::path device = enroll("aiko-laptop");
  const fs::path file = bundle(server_dir_, "shelter-basics.kbundle");
  stop_server();

  const CliRun imported = kaban(device, {"import", file.string()});
  ASSERT_EQ(imported.code, 0) << imported.output;
  EXPECT_TRUE(says(imported.output, "imported shelter-basics version 1 (Opening a shelter)"))
      << imported.output;
  EXPECT_TRUE(says(imported.output, "shelter-basics/intro  Before the doors open"));
  EXPECT_TRUE(says(imported.output, "shelter-basics/map  Floor map"));
  EXPECT_TRUE(says(imported.output, "ready offline: shelter-basics@1")) << imported.output;

  const CliRun opened = kaban(device, {"open", "shelter-basics/intro"});
  ASSERT_EQ(opened.code, 0) << opened.output.substr(0, 500);
  EXPECT_TRUE(opened.output == intro) << "kaban open gives the published file byte for byte";
  const CliRun map = kaban(device, {"open", "shelter-basics/map"});
  EXPECT_TRUE(map.output == noise(120'000, 99));

  std::uint64_t stored = 0;
  {
    agent::Store store = open_store(device);
    stored = agent::Library(store).stored_bytes().value();
  }
  const CliRun again = kaban(device, {"import", file.string()});
  EXPECT_EQ(again.code, 0) << again.output;
  EXPECT_TRUE(says(again.output, "already on this device")) << again.output;
  {
    agent::Store store = open_store(device);
    EXPECT_EQ(agent::Library(store).stored_bytes().value(), stored) << "nothing changed";
  }

  // The network comes back: the course feed brings version 1, which the device already holds.
  start_server(port_);
  const CliRun synced = kaban(device, {"sync"});
  ASSERT_EQ(synced.code, 0) << synced.output;
  EXPECT_TRUE(says(synced.output, "0 new course versions, 0 chunks (0 B) downloaded"))
      << synced.output;
  EXPECT_EQ(readable_version(device), 1);
}

TEST_F(Bundles, ABundleFromAnotherServerIsRefusedSayingSo) {
  const fs::path other = tmp_.path() / "other-server";
  ASSERT_TRUE(server::init_data_dir(other, {}));
  publish(other, "<h1>Same course, other city</h1>", 1000);
  const fs::path file = bundle(other, "other.kbundle");
  const fs::path device = enroll("aiko-laptop");
  stop_server();

  const CliRun refused = kaban(device, {"import", file.string()});
  EXPECT_EQ(refused.code, kExitBadBundle) << refused.output;
  EXPECT_TRUE(says(refused.output, "another Kaban server")) << refused.output;
  EXPECT_TRUE(says(refused.output, "nothing was imported")) << refused.output;
  agent::Store store = open_store(device);
  EXPECT_TRUE(agent::Library(store).courses().value().empty());
}

TEST_F(Bundles, CutOrAlteredBundlesAreRefusedAndNothingOfThemBecomesReadable) {
  const std::string intro = publish(server_dir_, "<h1>Doors</h1>" + noise(400'000, 2), 50'000);
  const fs::path device = enroll("aiko-laptop");
  const fs::path file = bundle(server_dir_, "good.kbundle");
  stop_server();
  const std::vector<std::uint8_t> good = testing::read_file(file);
  const std::string text(good.begin(), good.end());

  struct Damage {
    std::string name;
    std::vector<std::uint8_t> bytes;
    std::string said;  ///< words the refusal must hold
  };
  std::vector<Damage> damages;
  const auto cut = [&](std::size_t n) {
    return std::vector<std::uint8_t>(good.begin(), good.begin() + static_cast<long>(n));
  };
  const auto flipped = [&](std::size_t at) {
    std::vector<std::uint8_t> b = good;
    b.at(at) ^= 0x10;
    return b;
  };
  const std::size_t manifest_at = text.find("Opening a shelter");
  ASSERT_NE(manifest_at, std::string::npos);
  damages.push_back({"cut in the header", cut(40), "cut short"});
  damages.push_back({"cut mid-chunk", cut(good.size() / 2), "cut short"});
  damages.push_back({"manifest altered", flipped(manifest_at), "does not match its signature"});
  damages.push_back({"chunk altered", flipped(good.size() * 3 / 4), "does not match its SHA-256"});
  damages.push_back({"cut before the end marker", cut(good.size() - 42), "end marker"});
  // Last: every chunk arrives whole before the damaged digest is found.
  damages.push_back({"digest altered", flipped(good.size() - 1), "digest"});

  for (const Damage& d : damages) {
    const fs::path damaged = tmp_.path() / "damaged.kbundle";
    testing::write_file(damaged, d.bytes);
    const CliRun refused = kaban(device, {"import", damaged.string()});
    EXPECT_EQ(refused.code, kExitBadBundle) << d.name << ": " << refused.output;
    EXPECT_TRUE(says(refused.output, d.said)) << d.name << ": " << refused.output;
    EXPECT_EQ(readable_version(device), 0) << d.name << ": nothing of a damaged bundle is readable";
    EXPECT_NE(kaban(device, {"open", "shelter-basics/intro"}).code, 0) << d.name;
  }

  // The good copy needs no chunk the damaged ones brought whole.
  const CliRun imported = kaban(device, {"import", file.string()});
  ASSERT_EQ(imported.code, 0) << imported.output;
  EXPECT_TRUE(says(imported.output, "0 chunks stored")) << imported.output;
  EXPECT_TRUE(kaban(device, {"open", "shelter-basics/intro"}).output == intro);
}

TEST_F(Bundles, ANewerVersionReplacesTheOlderAndADamagedOneLeavesTheOlderReadable) {
  const std::string v1 = publish(server_dir_, "<h1>Version one</h1>" + noise(200'000, 3), 30'000);
  const fs::path first = bundle(server_dir_, "v1.kbundle");
  const std::string v2 =
      publish(server_dir_, "<h1>Version two</h1>" + noise(200'000, 3) + "new ending", 30'000);
  const fs::path second = bundle(server_dir_, "v2.kbundle");
  const fs::path first_again = bundle(server_dir_, "v1-again.kbundle", 1);
  EXPECT_EQ(testing::read_file(first_again).size(), testing::read_file(first).size())
      << "--version 1 bundles version 1 after version 2 was published";
  const fs::path device = enroll("aiko-laptop");
  stop_server();

  ASSERT_EQ(kaban(device, {"import", first.string()}).code, 0);
  EXPECT_TRUE(kaban(device, {"open", "shelter-basics/intro"}).output == v1);

  std::vector<std::uint8_t> cut = testing::read_file(second);
  cut.resize(cut.size() - 100);
  const fs::path damaged = tmp_.path() / "v2-cut.kbundle";
  testing::write_file(damaged, cut);
  EXPECT_EQ(kaban(device, {"import", damaged.string()}).code, kExitBadBundle);
  EXPECT_EQ(readable_version(device), 1);
  EXPECT_TRUE(kaban(device, {"open", "shelter-basics/intro"}).output == v1)
      << "version 1 stays readable while version 2 is incomplete";

  const CliRun newer = kaban(device, {"import", second.string()});
  ASSERT_EQ(newer.code, 0) << newer.output;
  EXPECT_TRUE(says(newer.output, "imported shelter-basics version 2")) << newer.output;
  EXPECT_TRUE(kaban(device, {"open", "shelter-basics/intro"}).output == v2);

  const CliRun older = kaban(device, {"import", first_again.string()});
  EXPECT_EQ(older.code, 0) << older.output;
  EXPECT_TRUE(says(older.output,
                   "holds version 2 of shelter-basics, newer than the bundle's "
                   "version 1; nothing was changed"))
      << older.output;
  EXPECT_EQ(readable_version(device), 2);
}

TEST_F(Bundles, AnImportThatWouldPassTheStorageLimitIsRefusedBeforeAnyChunkIsStored) {
  set_policy(R"({"max_cache_mb": 1})");
  publish(server_dir_, "<h1>Big</h1>" + noise(1'200'000, 4), 1000);
  const fs::path file = bundle(server_dir_, "big.kbundle");
  const fs::path device = enroll("aiko-laptop");
  stop_server();

  const CliRun refused = kaban(device, {"import", file.string()});
  EXPECT_EQ(refused.code, 2) << refused.output;
  EXPECT_TRUE(says(refused.output, "storage limit of 1.0 MiB")) << refused.output;
  EXPECT_TRUE(says(refused.output, "max_cache_mb")) << refused.output;
  agent::Store store = open_store(device);
  EXPECT_EQ(agent::Library(store).stored_bytes().value(), 0u);
  EXPECT_EQ(readable_version(device), 0);
}

// Importing gives content: a device the policy blocks from reading courses imports none.
TEST_F(Bundles, ADeviceBlockedOfflineImportsNothing) {
  set_policy(R"({"offline_block_minutes": 60})");
  publish(server_dir_, "<h1>Doors</h1>", 1000);
  const fs::path file = bundle(server_dir_, "course.kbundle");
  const fs::path device = enroll("aiko-laptop");
  ASSERT_EQ(kaban(device, {"sync"}).code, 0);
  stop_server();
  {
    agent::Store store = open_store(device);
    ASSERT_TRUE(agent::Library(store).remove_course(kCourse));
  }
  const auto lease = agent::current_lease(agent::load_guard(device).value());
  ASSERT_TRUE(lease);
  ASSERT_TRUE(agent::update_guard(
      device, [&](agent::GuardState& s) { s.high_water = lease->block_after + 60; }));

  const CliRun blocked = kaban(device, {"import", file.string()});
  EXPECT_EQ(blocked.code, 9) << blocked.output;
  EXPECT_TRUE(says(blocked.output, "blocked")) << blocked.output;
  EXPECT_FALSE(says(blocked.output, "imported")) << blocked.output;
}

TEST_F(Bundles, TooLittleFreeSpaceIsRefusedSayingHowMuchIsNeeded) {
  publish(server_dir_, "<h1>Doors</h1>" + noise(100'000, 5), 1000);
  const fs::path file = bundle(server_dir_, "course.kbundle");
  const fs::path device = enroll("aiko-laptop");
  stop_server();

  agent::Store store = open_store(device);
  agent::ImportOptions options;
  options.free_space = [](const fs::path&) -> Result<std::uint64_t> {
    return std::uint64_t{10} * 1024 * 1024;
  };
  std::ifstream in(file, std::ios::binary);
  std::string why;
  auto imported = agent::import_bundle(store, in, {}, testing::unix_now(), options, why);
  ASSERT_FALSE(imported);
  EXPECT_EQ(imported.error(), agent::errc::disk_full);
  EXPECT_TRUE(says(why, "only 10.0 MiB is free")) << why;
  EXPECT_TRUE(says(why, "needs about 64.")) << "the bytes and the margin: " << why;
  EXPECT_EQ(agent::Library(store).stored_bytes().value(), 0u);

  // With room, the same import goes through; a stop asked for before it begins stores nothing.
  options.free_space = {};
  std::atomic<bool> stop{true};
  options.stop = &stop;
  in.clear();
  in.seekg(0);
  auto stopped = agent::import_bundle(store, in, {}, testing::unix_now(), options, why);
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error(), agent::errc::interrupted);
  stop = false;
  in.clear();
  in.seekg(0);
  std::uint64_t reported = 0;
  options.on_bytes = [&](std::uint64_t n) { reported += n; };
  options.batch_bytes = 20'000;  // several transactions
  auto done = agent::import_bundle(store, in, {}, testing::unix_now(), options, why);
  ASSERT_TRUE(done) << why;
  EXPECT_EQ(done.value().outcome, agent::ImportOutcome::imported);
  EXPECT_EQ(done.value().lessons.size(), 2u);
  EXPECT_EQ(reported, done.value().bytes_stored);
  EXPECT_EQ(agent::Library(store).stored_bytes().value(), done.value().bytes_stored);
}

TEST_F(Bundles, AnExpiredCourseIsNeitherBundledNorImported) {
  publish(server_dir_, "<h1>Doors</h1>", 1000);
  // A date still ahead: bundled, and imported until the device's trusted time passes it.
  const auto expires = server_now() + std::chrono::days(30);
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_course_expire(server_dir_, kCourse, expires, out, why);
  });
  const fs::path file = bundle(server_dir_, "expiring.kbundle");
  const fs::path device = enroll("aiko-laptop");
  stop_server();
  {
    agent::Store store = open_store(device);
    std::ifstream in(file, std::ios::binary);
    std::string why;
    auto late = agent::import_bundle(store, in, {}, server::to_unix(expires), {}, why);
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error(), agent::errc::not_allowed);
    EXPECT_TRUE(says(why, "expired at")) << why;
    EXPECT_TRUE(agent::Library(store).courses().value().empty());
  }
  EXPECT_EQ(kaban(device, {"import", file.string()}).code, 0);
  EXPECT_EQ(readable_version(device), 2);

  // A date gone by: the server writes no bundle.
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_course_expire(server_dir_, kCourse, server_now() - std::chrono::hours(1),
                                       out, why);
  });
  std::ostringstream said;
  std::string why;
  const fs::path refused = tmp_.path() / "expired.kbundle";
  auto r = server::admin_course_bundle(server_dir_, kCourse, 0, refused, said, nullptr, why);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), server::errc::course_expired);
  EXPECT_TRUE(says(why, "expired on") && says(why, "admin course expire")) << why;
  EXPECT_FALSE(fs::exists(refused));
}

TEST_F(Bundles, TheServerWritesNoBundleDevicesWouldRefuse) {
  publish(server_dir_, "<h1>Doors</h1>" + noise(200'000, 6), 1000);
  const fs::path file = tmp_.path() / "out.kbundle";
  const auto bundle_fails = [&](const std::string& id, std::int64_t version) {
    std::ostringstream out;
    std::string why;
    auto r = server::admin_course_bundle(server_dir_, id, version, file, out, nullptr, why);
    EXPECT_FALSE(r) << out.str();
    EXPECT_FALSE(fs::exists(file)) << why;
    return std::make_pair(r ? std::error_code() : r.error(), why);
  };
  auto [code, why] = bundle_fails("no-such-course", 0);
  EXPECT_EQ(code, server::errc::no_such_course);
  EXPECT_TRUE(says(why, "admin course list")) << why;
  std::tie(code, why) = bundle_fails(kCourse, 7);
  EXPECT_EQ(code, server::errc::no_such_version);
  EXPECT_TRUE(says(why, "its latest is version 1")) << why;

  // A chunk file of the wrong size, then missing: named, and nothing written.
  auto db = server::open_database(server_dir_);
  ASSERT_TRUE(db);
  server::Catalog catalog(*db.value(), server_dir_);
  auto record = catalog.find_version(kCourse, 0);
  ASSERT_TRUE(record);
  const auto manifest = protocol::parse_manifest(record.value().manifest);
  ASSERT_TRUE(manifest);
  const std::string hash = manifest.value().files[0].chunks[1].sha256;
  const fs::path chunk = catalog.chunk_path(hash);
  const auto kept = testing::read_file(chunk);
  auto longer = kept;
  longer.push_back(0);
  testing::write_file(chunk, longer);
  std::tie(code, why) = bundle_fails(kCourse, 0);
  EXPECT_EQ(code, server::errc::data_dir_damaged);
  EXPECT_TRUE(says(why, chunk.string()) && says(why, "bytes, not the")) << why;
  auto altered = kept;
  altered[0] ^= 1;
  testing::write_file(chunk, altered);
  std::tie(code, why) = bundle_fails(kCourse, 0);
  EXPECT_EQ(code, server::errc::data_dir_damaged);
  EXPECT_TRUE(says(why, "does not match its SHA-256")) << why;
  fs::remove(chunk);
  std::tie(code, why) = bundle_fails(kCourse, 0);
  EXPECT_EQ(code, server::errc::data_dir_damaged);
  EXPECT_TRUE(says(why, hash)) << why;
  for (const auto& e : fs::directory_iterator(tmp_.path()))
    EXPECT_FALSE(says(e.path().filename().string(), ".tmp")) << "left behind: " << e.path();
  testing::write_file(chunk, kept);

  // The binary, with progress on stderr; and the audit log says who took the course out.
  const fs::path out = tmp_.path() / "server-cli.out";
  const pid_t pid = testing::spawn_process(KABAN_SERVER_BIN,
                                           {"--data-dir", server_dir_.string(), "admin", "course",
                                            "bundle", kCourse, "--out", file.string()},
                                           {"HOME=" + tmp_.path().string()}, out);
  ASSERT_GT(pid, 0);
  const auto exit = testing::wait_exit_for(pid, 60s);
  ASSERT_TRUE(exit);
  EXPECT_EQ(*exit, 0) << text_of(out);
  EXPECT_TRUE(says(text_of(out), "100% (")) << text_of(out);
  EXPECT_TRUE(says(text_of(out), "wrote shelter-basics version 1 to")) << text_of(out);
  EXPECT_TRUE(fs::exists(file));
  auto entries = server::AuditLog(*db.value()).since(server::UnixTime{}, 1000);
  ASSERT_TRUE(entries);
  ASSERT_FALSE(entries.value().empty());
  const server::AuditEntry& last = entries.value().back();
  EXPECT_EQ(last.event, "course_bundled");
  EXPECT_EQ(last.subject, kCourse);
  EXPECT_TRUE(says(last.details, "\"version\":1")) << last.details;

  // A retired course is not bundled; an existing file at --out is left as it was.
  const auto before = testing::read_file(file);
  admin([&](std::ostream& o, std::string& w) {
    return server::admin_course_retire(server_dir_, kCourse, o, w);
  });
  std::ostringstream said;
  auto retired = server::admin_course_bundle(server_dir_, kCourse, 0, file, said, nullptr, why);
  ASSERT_FALSE(retired);
  EXPECT_EQ(retired.error(), server::errc::course_retired);
  EXPECT_TRUE(says(why, "retired")) << why;
  EXPECT_EQ(testing::read_file(file), before);
}

}  // namespace
}  // namespace kaban
