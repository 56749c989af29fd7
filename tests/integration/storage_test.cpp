// Device storage end to end, with the real server and agent: download on demand under the
// policy's download_on_demand_mb (`kaban pin`, `kaban open` of media not here, `kaban unpin`),
// and a nearly full disk, which stops downloads before they start and reaches IT at the next
// check-in as a warning.
#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/agent/error.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/server/admin.hpp"
#include "sync_support.hpp"
#include "test_support.hpp"

namespace kaban {
namespace {

namespace fs = std::filesystem;
using testing::noise;
using testing::write_text;

constexpr std::uint64_t kMiB = 1024 * 1024;

class Storage : public testing::ServerFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ServerFixture::SetUp());
    add_user("aiko", "Aiko Tanaka");
    // A handout and a 3 MiB "video": on demand above 2 MiB.
    const fs::path dir = tmp_.path() / "course";
    write_text(dir / "intro.html", "<h1>Welcome</h1>");
    write_text(dir / "drill.mp4", noise(3 * kMiB, 7));
    write_text(dir / "course.json", R"({"id": "safety-101", "title": "Safety basics",
      "lessons": [{"id": "intro", "title": "Welcome", "kind": "html", "files": ["intro.html"]},
                  {"id": "drill", "title": "Drill", "kind": "video", "files": ["drill.mp4"]}]})");
    publish(dir);
  }

  agent::LessonInfo lesson(testing::TestDevice& device, const std::string& id) {
    auto lessons = agent::Library(*device.store).lessons("safety-101");
    EXPECT_TRUE(lessons);
    for (const agent::LessonInfo& l : lessons.value())
      if (l.id == id)
        return l;
    ADD_FAILURE() << "no lesson " << id;
    return {};
  }
};

TEST_F(Storage, LargeMediaWaitsForAPinAndTheCliSaysSo) {
  set_policy(R"({"download_on_demand_mb": 2})");
  testing::TestDevice aiko = enroll_device("aiko", "aiko-phone");
  aiko.open();
  const agent::SyncReport first = aiko.sync();
  EXPECT_EQ(first.made_ready, std::vector<std::string>{"safety-101@1"})
      << "readable without its on-demand media";
  EXPECT_LT(first.bytes_downloaded, 64u * 1024) << "only the handout came";
  EXPECT_EQ(lesson(aiko, "drill").missing_bytes, 3 * kMiB);
  aiko.close();

  // Opening the video asks for it: exit 13, and the lesson is pinned.
  const testing::CliRun open = run_cli(KABAN_AGENT_BIN, aiko.dir, {"open", "safety-101/drill"});
  EXPECT_EQ(open.code, 13) << open.output;
  EXPECT_NE(open.output.find("pinned now"), std::string::npos) << open.output;
  const testing::CliRun storage = run_cli(KABAN_AGENT_BIN, aiko.dir, {"storage"});
  EXPECT_EQ(storage.code, 0) << storage.output;
  EXPECT_NE(storage.output.find("safety-101/drill  0 B of 3.0 MiB here, pinned"), std::string::npos)
      << storage.output;

  aiko.open();
  const agent::SyncReport second = aiko.sync();
  EXPECT_GE(second.bytes_downloaded, 3 * kMiB);
  EXPECT_EQ(lesson(aiko, "drill").missing_bytes, 0u);
  EXPECT_TRUE(lesson(aiko, "drill").pinned);
  const std::uint64_t full = agent::Store::disk_size(aiko.dir);
  aiko.close();

  const testing::CliRun got =
      run_cli(KABAN_AGENT_BIN, aiko.dir,
              {"open", "safety-101/drill", "--out", (tmp_.path() / "drill.mp4").string()});
  EXPECT_EQ(got.code, 0) << got.output;
  EXPECT_EQ(testing::text_of(tmp_.path() / "drill.mp4"), noise(3 * kMiB, 7));

  const testing::CliRun unpin = run_cli(KABAN_AGENT_BIN, aiko.dir, {"unpin", "safety-101/drill"});
  EXPECT_EQ(unpin.code, 0) << unpin.output;
  EXPECT_NE(unpin.output.find("3.0 MiB freed"), std::string::npos) << unpin.output;
  EXPECT_LT(agent::Store::disk_size(aiko.dir), full - 2 * kMiB) << "the store gave it back";
  const testing::CliRun pin_unknown =
      run_cli(KABAN_AGENT_BIN, aiko.dir, {"pin", "safety-101/nope"});
  EXPECT_EQ(pin_unknown.code, 8) << pin_unknown.output;
}

TEST_F(Storage, ANearlyFullDiskStopsDownloadsAndWarnsIt) {
  testing::TestDevice aiko = enroll_device("aiko", "aiko-phone");
  aiko.open();
  // 66 MiB free: less than the 3 MiB course needs with Store::room_needed's 64 MiB to work in.
  agent::SyncOptions cramped;
  cramped.free_space = [](const fs::path&) -> Result<std::uint64_t> { return 66 * kMiB; };
  const agent::SyncReport stopped = aiko.sync(cramped);
  EXPECT_EQ(stopped.downloads_deferred, agent::DownloadDeferral::disk_full);
  EXPECT_EQ(stopped.chunks_downloaded, 0u) << "no version is begun that would not fit";
  EXPECT_GE(stopped.deferred_bytes, 3 * kMiB);
  EXPECT_EQ(stopped.disk_free_bytes, 66 * kMiB);
  EXPECT_GT(stopped.disk_needed_bytes, stopped.disk_free_bytes);
  EXPECT_TRUE(stopped.made_ready.empty());

  // The next check-in tells IT; with room again everything comes and the warning goes.
  const agent::SyncReport roomy = aiko.sync();
  ASSERT_EQ(roomy.reasons.size(), 1u);
  EXPECT_EQ(roomy.reasons[0].setting, "disk");
  EXPECT_EQ(roomy.verdict, protocol::Verdict::warn);
  EXPECT_EQ(roomy.made_ready, std::vector<std::string>{"safety-101@1"});
  const agent::SyncReport after = aiko.sync();
  EXPECT_TRUE(after.reasons.empty());
  EXPECT_EQ(after.verdict, protocol::Verdict::compliant);
}

}  // namespace
}  // namespace kaban
