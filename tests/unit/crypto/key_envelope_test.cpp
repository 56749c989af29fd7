#include "kaban/crypto/key_envelope.hpp"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "kaban/crypto/error.hpp"
#include "kaban/crypto/vfs.hpp"
#include "test_support.hpp"

namespace kaban::crypto {
namespace {

// Cheap parameters: the tests are about the format, not the cost.
constexpr ScryptParams kFast{1u << 10, 8, 1};

class KeyEnvelopeTest : public ::testing::Test {
 protected:
  kaban::testing::TempDir dir_;
  std::filesystem::path path_ = dir_ / "store.key";
};

TEST_F(KeyEnvelopeTest, OpensWithThePinThatMadeIt) {
  auto key = KeyEnvelope::create(path_, "2468-1357", kFast);
  ASSERT_TRUE(key);
  EXPECT_EQ(key.value().size(), kDataKeySize);
  auto again = KeyEnvelope::open(path_, "2468-1357");
  ASSERT_TRUE(again);
  EXPECT_TRUE(constant_time_equal(key.value().bytes(), again.value().bytes()));
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(KeyEnvelopeTest, WrongPinIsWrongKey) {
  ASSERT_TRUE(KeyEnvelope::create(path_, "2468-1357", kFast));
  auto r = KeyEnvelope::open(path_, "2468-1358");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::wrong_key);
  EXPECT_EQ(r.error().message(), "wrong PIN or key");
}

TEST_F(KeyEnvelopeTest, RefusesToOverwrite) {
  ASSERT_TRUE(KeyEnvelope::create(path_, "1111-2222", kFast));
  auto r = KeyEnvelope::create(path_, "3333-4444", kFast);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), std::errc::file_exists);
  EXPECT_TRUE(KeyEnvelope::open(path_, "1111-2222"));
}

TEST_F(KeyEnvelopeTest, ChangePinKeepsTheDataKey) {
  auto key = KeyEnvelope::create(path_, "old-pin-1", kFast);
  ASSERT_TRUE(key);
  EXPECT_EQ(KeyEnvelope::change_pin(path_, "not-the-pin", "new-pin-2", kFast).error(),
            errc::wrong_key);
  ASSERT_TRUE(KeyEnvelope::change_pin(path_, "old-pin-1", "new-pin-2", kFast));
  EXPECT_EQ(KeyEnvelope::open(path_, "old-pin-1").error(), errc::wrong_key);
  auto again = KeyEnvelope::open(path_, "new-pin-2");
  ASSERT_TRUE(again);
  EXPECT_TRUE(constant_time_equal(key.value().bytes(), again.value().bytes()));
  EXPECT_FALSE(std::filesystem::exists(path_.string() + ".tmp"));
}

TEST_F(KeyEnvelopeTest, DamageIsReported) {
  ASSERT_TRUE(KeyEnvelope::create(path_, "1234-5678", kFast));
  auto bytes = kaban::testing::read_file(path_);
  // An altered sealed key or salt is indistinguishable from a wrong PIN, by design.
  kaban::testing::flip_bit(path_, bytes.size() - 1);
  EXPECT_EQ(KeyEnvelope::open(path_, "1234-5678").error(), errc::wrong_key);
  // Implausible cost parameters are refused before any work is done.
  bytes[1] = 40;
  kaban::testing::write_file(path_, bytes);
  EXPECT_EQ(KeyEnvelope::open(path_, "1234-5678").error(), errc::damaged);
  bytes.pop_back();
  kaban::testing::write_file(path_, bytes);
  EXPECT_EQ(KeyEnvelope::open(path_, "1234-5678").error(), errc::damaged);
}

TEST_F(KeyEnvelopeTest, DestroyShredsTheEnvelope) {
  ASSERT_TRUE(KeyEnvelope::create(path_, "1234-5678", kFast));
  ASSERT_TRUE(KeyEnvelope::destroy(path_));
  EXPECT_FALSE(std::filesystem::exists(path_));
  EXPECT_EQ(KeyEnvelope::open(path_, "1234-5678").error(), std::errc::no_such_file_or_directory);
  EXPECT_TRUE(KeyEnvelope::destroy(path_)) << "nothing to destroy is not an error";
}

TEST_F(KeyEnvelopeTest, PinIsNotInTheFile) {
  ASSERT_TRUE(KeyEnvelope::create(path_, "PIN-CANARY-424242", kFast));
  EXPECT_FALSE(kaban::testing::file_contains(path_, "PIN-CANARY-424242"));
}

}  // namespace
}  // namespace kaban::crypto
