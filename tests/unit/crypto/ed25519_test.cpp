#include "kaban/crypto/ed25519.hpp"

#include <string>

#include <gtest/gtest.h>

#include "kaban/crypto/error.hpp"
#include "kat.hpp"

namespace kaban::crypto {
namespace {

using test::hex;

std::string field(const nlohmann::json& v, const char* name) {
  return v.at(name).get<std::string>();
}

std::string pem_text(const SecretKey& pem) {
  return std::string(pem.bytes().begin(), pem.bytes().end());
}

TEST(Ed25519, MatchesRfc8032Section7_1) {
  int checked = 0;
  for (const auto& v : test::load_vectors("ed25519_rfc8032.json")) {
    SCOPED_TRACE(field(v, "name"));
    const Bytes message = hex(field(v, "message"));
    auto key = Ed25519PrivateKey::from_seed(hex(field(v, "secret_key")));
    ASSERT_TRUE(key) << key.error().message();
    const auto public_key = key.value().public_key();
    EXPECT_EQ(to_hex(public_key.bytes()), field(v, "public_key"));
    EXPECT_EQ(to_hex(key.value().sign(message)), field(v, "signature"));

    auto published = Ed25519PublicKey::from_bytes(hex(field(v, "public_key")));
    ASSERT_TRUE(published);
    EXPECT_TRUE(published.value().verify(message, hex(field(v, "signature"))));
    ++checked;
  }
  EXPECT_EQ(checked, 4);  // TEST 1, 2, 3 and 1024
}

class Ed25519Negative : public ::testing::Test {
 protected:
  Ed25519PrivateKey key = Ed25519PrivateKey::generate();
  Ed25519PublicKey public_key = key.public_key();
  Bytes message = test::ascii("enroll device 42");
  Ed25519Signature signature = key.sign(message);
};

TEST_F(Ed25519Negative, GenuineSignatureVerifies) {
  EXPECT_TRUE(public_key.verify(message, signature));
}

TEST_F(Ed25519Negative, FlippedSignatureBitFails) {
  for (std::size_t bit = 0; bit < kEd25519SignatureSize * 8; bit += 13) {
    Ed25519Signature bad = signature;
    bad[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    EXPECT_EQ(public_key.verify(message, bad).error(), errc::invalid_signature) << bit;
  }
}

TEST_F(Ed25519Negative, SignatureOfAnotherMessageFails) {
  const auto other = key.sign(test::ascii("enroll device 43"));
  EXPECT_EQ(public_key.verify(message, other).error(), errc::invalid_signature);
  EXPECT_EQ(public_key.verify(test::ascii("enroll device 43"), signature).error(),
            errc::invalid_signature);
}

TEST_F(Ed25519Negative, AnotherKeyFails) {
  const auto stranger = Ed25519PrivateKey::generate().public_key();
  EXPECT_FALSE(stranger == public_key);
  EXPECT_EQ(stranger.verify(message, signature).error(), errc::invalid_signature);
}

TEST_F(Ed25519Negative, WrongLengthSignaturesFail) {
  const ByteView sig(signature);
  EXPECT_EQ(public_key.verify(message, {}).error(), errc::invalid_signature);
  EXPECT_EQ(public_key.verify(message, sig.first(63)).error(), errc::invalid_signature);
  Bytes longer(sig.begin(), sig.end());
  longer.push_back(0);
  EXPECT_EQ(public_key.verify(message, longer).error(), errc::invalid_signature);
}

TEST_F(Ed25519Negative, PublicKeyThatIsNotAPointVerifiesNothing) {
  // y = 2 has no x on the curve (RFC 8032 5.1.3 decoding fails).
  Bytes raw(kEd25519PublicKeySize, 0);
  raw[0] = 0x02;
  auto bogus = Ed25519PublicKey::from_bytes(raw);
  ASSERT_TRUE(bogus);
  EXPECT_EQ(bogus.value().verify(message, signature).error(), errc::invalid_signature);
}

TEST(Ed25519Keys, WrongSizedSeedsAndPublicKeysAreInvalid) {
  EXPECT_EQ(Ed25519PrivateKey::from_seed(Bytes(31, 1)).error(), errc::invalid_key);
  EXPECT_EQ(Ed25519PrivateKey::from_seed(Bytes(33, 1)).error(), errc::invalid_key);
  EXPECT_EQ(Ed25519PrivateKey::from_seed({}).error(), errc::invalid_key);
  EXPECT_EQ(Ed25519PublicKey::from_bytes(Bytes(31, 1)).error(), errc::invalid_key);
  EXPECT_EQ(Ed25519PublicKey::from_bytes(Bytes(64, 1)).error(), errc::invalid_key);
}

TEST(Ed25519Keys, SeedRoundTrips) {
  const auto key = Ed25519PrivateKey::generate();
  const auto seed = key.seed();
  EXPECT_EQ(seed.size(), kEd25519SeedSize);
  const auto again = Ed25519PrivateKey::from_seed(seed.bytes()).value();
  EXPECT_TRUE(again.public_key() == key.public_key());
  EXPECT_EQ(again.sign(test::ascii("x")), key.sign(test::ascii("x")));  // deterministic
}

TEST(Ed25519Keys, GeneratedKeysDiffer) {
  EXPECT_FALSE(Ed25519PrivateKey::generate().public_key() ==
               Ed25519PrivateKey::generate().public_key());
}

TEST(Ed25519Keys, PemRoundTripsAsPkcs8) {
  const auto key = Ed25519PrivateKey::from_seed(
                       hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
                       .value();
  const auto pem = key.to_pem();
  const std::string text = pem_text(pem);
  EXPECT_EQ(text.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u) << text;
  auto parsed = Ed25519PrivateKey::from_pem(pem.bytes());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(to_hex(parsed.value().seed().bytes()), to_hex(key.seed().bytes()));
  EXPECT_EQ(to_hex(parsed.value().public_key().bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
}

TEST(Ed25519Keys, MalformedPemIsAnEncodingError) {
  EXPECT_EQ(Ed25519PrivateKey::from_pem(test::ascii("not a key")).error(), errc::invalid_encoding);
  EXPECT_EQ(Ed25519PrivateKey::from_pem({}).error(), errc::invalid_encoding);
  std::string text = pem_text(Ed25519PrivateKey::generate().to_pem());
  text[40] = text[40] == 'A' ? 'B' : 'A';  // corrupt the base64 body
  EXPECT_EQ(Ed25519PrivateKey::from_pem(test::ascii(text)).error(), errc::invalid_encoding);
}

}  // namespace
}  // namespace kaban::crypto
