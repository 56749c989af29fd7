// Support staff open a store with the stock sqlite3 shell and the loadable extension
// (build/lib/kaban_vfs.so) given the data key, as docs/store-format.md describes.
#include <stdio.h>
#include <sys/wait.h>

#include <fstream>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/agent/store.hpp"
#include "kaban/crypto/key_envelope.hpp"
#include "test_support.hpp"

namespace kaban::agent {
namespace {

constexpr crypto::ScryptParams kFast{1u << 10, 8, 1};

// Runs the sqlite3 shell on `script`; returns what it printed (stdout and stderr).
std::string run_shell(const kaban::testing::TempDir& tmp, const std::string& script) {
  const auto script_path = tmp / "script.sql";
  std::ofstream(script_path) << script;
  const std::string cmd = "sqlite3 -batch < '" + script_path.string() + "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr)
    return "popen failed";
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p))
    out.append(buf, n);
  ::pclose(p);
  return out;
}

std::string extension_path() {
  std::string path = KABAN_VFS_EXTENSION;
  return path.substr(0, path.rfind(".so"));  // the shell adds the suffix, as a person would type it
}

class StoreShellTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(std::system("sqlite3 -version > /dev/null 2>&1"), 0)
        << "the sqlite3 shell is missing: packaging/dev.sh installs the Debian package sqlite3";
    auto store = Store::create(dir_, "2580-1470", kFast);
    ASSERT_TRUE(store) << store.error().message();
    store.value().db().exec("INSERT INTO meta(key, value) VALUES ('greeting', 'hello from kaban')");
    auto key = crypto::KeyEnvelope::open(dir_ / Store::kEnvelopeFile, "2580-1470");
    ASSERT_TRUE(key);
    hexkey_ = crypto::to_hex(key.value().bytes());
  }

  std::string open_line(const std::string& hexkey) const {
    return ".open 'file:" + (dir_ / Store::kDatabaseFile).string() + "?vfs=kaban&hexkey=" + hexkey +
           "'\n";
  }

  kaban::testing::TempDir tmp_;
  std::filesystem::path dir_ = tmp_ / "device";
  std::string hexkey_;
};

TEST_F(StoreShellTest, ShellReadsAndWritesWithTheKey) {
  const std::string out =
      run_shell(tmp_, ".load " + extension_path() + "\n" + open_line(hexkey_) +
                          "SELECT value FROM meta WHERE key = 'greeting';\n"
                          "INSERT INTO meta(key, value) VALUES ('note', 'written by support');\n"
                          "PRAGMA integrity_check;\n");
  EXPECT_EQ(out, "hello from kaban\nok\n");
  // What the shell wrote is readable through the agent, and still sealed on disk.
  auto store = Store::open(dir_, "2580-1470");
  ASSERT_TRUE(store);
  EXPECT_EQ(store.value().db().execAndGet("SELECT value FROM meta WHERE key='note'").getString(),
            "written by support");
  EXPECT_TRUE(kaban::testing::files_containing(dir_, "written by support").empty());
}

TEST_F(StoreShellTest, ShellWithTheWrongKeyIsRefused) {
  std::string wrong = hexkey_;
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  const std::string out = run_shell(
      tmp_, ".load " + extension_path() + "\n" + open_line(wrong) + "SELECT value FROM meta;\n");
  EXPECT_NE(out.find("file is not a database"), std::string::npos) << out;
  EXPECT_EQ(out.find("hello from kaban"), std::string::npos) << out;
}

TEST_F(StoreShellTest, ShellWithoutTheExtensionSeesNoDatabase) {
  const std::string out = run_shell(
      tmp_, ".open '" + (dir_ / Store::kDatabaseFile).string() + "'\nSELECT value FROM meta;\n");
  EXPECT_NE(out.find("file is not a database"), std::string::npos) << out;
}

}  // namespace
}  // namespace kaban::agent
