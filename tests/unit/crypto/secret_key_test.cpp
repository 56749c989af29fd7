#include "kaban/crypto/secret_key.hpp"

#include <type_traits>
#include <utility>

#include <gtest/gtest.h>

namespace kaban::crypto {
namespace {

static_assert(!std::is_copy_constructible_v<SecretKey>);
static_assert(!std::is_copy_assignable_v<SecretKey>);
static_assert(std::is_nothrow_move_constructible_v<SecretKey>);
static_assert(std::is_nothrow_move_assignable_v<SecretKey>);

Bytes to_bytes(const SecretKey& key) {
  return Bytes(key.bytes().begin(), key.bytes().end());
}

TEST(SecretKey, StartsZeroedAtTheRequestedSize) {
  SecretKey key(32);
  EXPECT_EQ(key.size(), 32u);
  EXPECT_EQ(to_bytes(key), Bytes(32, 0));
}

TEST(SecretKey, FromBytesCopies) {
  Bytes source{1, 2, 3, 4};
  const auto key = SecretKey::from_bytes(source);
  source[0] = 9;
  EXPECT_EQ(to_bytes(key), (Bytes{1, 2, 3, 4}));
}

TEST(SecretKey, MutableBytesWriteThrough) {
  SecretKey key(2);
  key.mutable_bytes()[1] = 0x5a;
  EXPECT_EQ(to_bytes(key), (Bytes{0x00, 0x5a}));
}

TEST(SecretKey, MoveConstructionTransfersAndEmptiesTheSource) {
  auto a = SecretKey::from_bytes(Bytes{7, 7, 7});
  SecretKey b(std::move(a));
  EXPECT_EQ(to_bytes(b), (Bytes{7, 7, 7}));
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_TRUE(a.bytes().empty());
}

TEST(SecretKey, MoveAssignmentReplacesTheTarget) {
  auto a = SecretKey::from_bytes(Bytes{1, 2});
  auto b = SecretKey::from_bytes(Bytes{3, 4, 5});
  b = std::move(a);
  EXPECT_EQ(to_bytes(b), (Bytes{1, 2}));
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move)
}

TEST(SecretKey, RandomKeysHaveTheSizeAndDiffer) {
  const auto a = SecretKey::random(32);
  const auto b = SecretKey::random(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(to_bytes(a), to_bytes(b));
  EXPECT_NE(to_bytes(a), Bytes(32, 0));
}

}  // namespace
}  // namespace kaban::crypto
