#include "kaban/agent/device_identity.hpp"

#include <optional>

#include <gtest/gtest.h>

#include "kaban/agent/error.hpp"
#include "kaban/crypto/error.hpp"
#include "message_lane_support.hpp"
#include "test_support.hpp"

namespace kaban::agent {
namespace {


DeviceIdentity make_identity(std::string_view login, std::string_view key_text) {
  DeviceIdentity id;
  id.server_host = "sync.city.example";
  id.server_port = 8443;
  id.device_id = std::string(64, 'd');
  id.login = login;
  id.user_name = "Hanako Yamada";
  id.certificate_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  id.private_key_pem = crypto::SecretKey::from_bytes(crypto::as_bytes(key_text));
  id.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
  id.signing_key = crypto::to_hex(crypto::Ed25519PrivateKey::generate().public_key().bytes());
  id.server_epoch = "0123abcd";
  id.enrolled_at = 1'790'000'000;
  return id;
}

std::string text_of(const crypto::SecretKey& key) {
  return {reinterpret_cast<const char*>(key.bytes().data()), key.size()};
}

// A fresh encrypted store per test (see message_lane_support.hpp).
class DeviceIdentityTest : public testing::StoreFixture {};

TEST_F(DeviceIdentityTest, RoundTripsThroughAReopenedStore) {
  const std::string key_text = "-----BEGIN PRIVATE KEY-----\n" +
                               kaban::testing::random_marker("key-") +
                               "\n-----END PRIVATE KEY-----\n";
  const DeviceIdentity saved = make_identity("hanako", key_text);
  ASSERT_TRUE(save_identity(*store_, saved));
  reopen();

  auto loaded = load_identity(*store_);
  ASSERT_TRUE(loaded) << loaded.error().message();
  const DeviceIdentity& id = loaded.value();
  EXPECT_EQ(id.server_host, saved.server_host);
  EXPECT_EQ(id.server_port, saved.server_port);
  EXPECT_EQ(id.device_id, saved.device_id);
  EXPECT_EQ(id.login, saved.login);
  EXPECT_EQ(id.user_name, saved.user_name);
  EXPECT_EQ(id.certificate_pem, saved.certificate_pem);
  EXPECT_EQ(text_of(id.private_key_pem), key_text);
  EXPECT_EQ(id.ca_pem, saved.ca_pem);
  EXPECT_EQ(id.signing_key, saved.signing_key);
  EXPECT_EQ(id.server_epoch, saved.server_epoch);
  EXPECT_EQ(id.enrolled_at, saved.enrolled_at);
}

TEST_F(DeviceIdentityTest, ThePrivateKeyNeverReachesTheDiskInTheClear) {
  const std::string marker = kaban::testing::random_marker("key-");
  ASSERT_TRUE(save_identity(*store_, make_identity("hanako", marker)));
  EXPECT_EQ(text_of(load_identity(*store_).value().private_key_pem), marker);
  store_.reset();
  EXPECT_TRUE(kaban::testing::files_containing(dir_, marker).empty());
}

TEST_F(DeviceIdentityTest, AFreshStoreIsNotEnrolled) {
  auto loaded = load_identity(*store_);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error(), errc::not_enrolled);
}

TEST_F(DeviceIdentityTest, ASecondEnrollmentIsRefusedAndTheFirstKept) {
  ASSERT_TRUE(save_identity(*store_, make_identity("hanako", "first key")));
  auto again = save_identity(*store_, make_identity("taro", "second key"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::already_enrolled);
  auto loaded = load_identity(*store_);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded.value().login, "hanako");
  EXPECT_EQ(text_of(loaded.value().private_key_pem), "first key");
}

TEST_F(DeviceIdentityTest, TheSigningKeyParses) {
  const auto signer = crypto::Ed25519PrivateKey::generate();
  DeviceIdentity id = make_identity("hanako", "k");
  id.signing_key = crypto::to_hex(signer.public_key().bytes());
  auto key = content_signing_key(id);
  ASSERT_TRUE(key);
  EXPECT_EQ(key.value(), signer.public_key());
  id.signing_key = "abcd";
  EXPECT_FALSE(content_signing_key(id));
  id.signing_key = std::string(64, 'x');
  EXPECT_FALSE(content_signing_key(id));
}

TEST_F(DeviceIdentityTest, SyncStateRoundTripsAndIsReplaced) {
  auto fresh = load_sync_state(*store_);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh.value(), SyncState{});

  const SyncState first{"0123abcd.42", 1'790'000'100, 1'790'000'099};
  ASSERT_TRUE(save_sync_state(*store_, first));
  EXPECT_EQ(load_sync_state(*store_).value(), first);

  const SyncState second{"0123abcd.57", 1'790'000'500, 1'790'000'498};
  ASSERT_TRUE(save_sync_state(*store_, second));
  reopen();
  EXPECT_EQ(load_sync_state(*store_).value(), second);
}

}  // namespace
}  // namespace kaban::agent
