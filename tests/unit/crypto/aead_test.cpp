#include "kaban/crypto/aead.hpp"

#include <stdexcept>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "kaban/crypto/error.hpp"
#include "kat.hpp"

namespace kaban::crypto {
namespace {

using test::hex;

struct GcmVector {
  std::string name;
  Bytes key, iv, aad, plaintext, ciphertext, tag;
};

GcmVector parse(const nlohmann::json& v) {
  auto field = [&](const char* name) { return hex(v.at(name).get<std::string>()); };
  return {v.at("name").get<std::string>(),
          field("key"),
          field("iv"),
          field("aad"),
          field("plaintext"),
          field("ciphertext"),
          field("tag")};
}

Bytes concat(const Bytes& a, const Bytes& b) {
  Bytes out(a);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

// Cases 13-16 of the GCM spec use 96-bit IVs; 17 and 18 use 64- and 480-bit IVs.
std::vector<GcmVector> vectors_with_iv_size(bool (*keep)(std::size_t)) {
  std::vector<GcmVector> out;
  for (const auto& v : test::load_vectors("aes256gcm_mcgrew_viega.json")) {
    auto parsed = parse(v);
    if (keep(parsed.iv.size()))
      out.push_back(std::move(parsed));
  }
  return out;
}

std::vector<GcmVector> standard_nonce_vectors() {
  auto out = vectors_with_iv_size([](std::size_t n) { return n == kGcmNonceSize; });
  if (out.size() != 4)
    throw std::runtime_error("expected GCM test cases 13-16");
  return out;
}

TEST(Aes256GcmOneShot, SealMatchesGcmSpecCases13To16) {
  for (const auto& v : standard_nonce_vectors()) {
    SCOPED_TRACE(v.name);
    const auto key = SecretKey::from_bytes(v.key);
    EXPECT_EQ(to_hex(aes256gcm_seal(key, v.iv, v.aad, v.plaintext)),
              to_hex(concat(v.ciphertext, v.tag)));
  }
}

TEST(Aes256GcmOneShot, OpenMatchesGcmSpecCases13To16) {
  for (const auto& v : standard_nonce_vectors()) {
    SCOPED_TRACE(v.name);
    const auto key = SecretKey::from_bytes(v.key);
    auto opened = aes256gcm_open(key, v.iv, v.aad, concat(v.ciphertext, v.tag));
    ASSERT_TRUE(opened) << opened.error().message();
    EXPECT_EQ(opened.value(), v.plaintext);
  }
}

TEST(Aes256GcmOneShot, RejectsTheSpecsNon96BitIvs) {
  const auto others = vectors_with_iv_size([](std::size_t n) { return n != kGcmNonceSize; });
  ASSERT_EQ(others.size(), 2u);  // test cases 17 and 18
  for (const auto& v : others) {
    SCOPED_TRACE(v.name);
    const auto key = SecretKey::from_bytes(v.key);
    EXPECT_EQ(aes256gcm_open(key, v.iv, v.aad, concat(v.ciphertext, v.tag)).error(),
              errc::invalid_argument);
    EXPECT_THROW(aes256gcm_seal(key, v.iv, v.aad, v.plaintext), std::invalid_argument);
  }
}

// Test case 16: the one with both AAD and a partial final block.
class Aes256GcmTamper : public ::testing::Test {
 protected:
  GcmVector v = standard_nonce_vectors().back();
  SecretKey key = SecretKey::from_bytes(v.key);
  Bytes sealed = concat(v.ciphertext, v.tag);

  std::error_code open_error(const SecretKey& k, const Bytes& iv, const Bytes& aad,
                             const Bytes& input) {
    auto opened = aes256gcm_open(k, iv, aad, input);
    return opened ? std::error_code() : opened.error();
  }
};

TEST_F(Aes256GcmTamper, UntouchedInputOpens) {
  EXPECT_EQ(open_error(key, v.iv, v.aad, sealed), std::error_code());
}

TEST_F(Aes256GcmTamper, WrongKeyFails) {
  Bytes other = v.key;
  other[31] ^= 0x01;
  EXPECT_EQ(open_error(SecretKey::from_bytes(other), v.iv, v.aad, sealed),
            errc::authentication_failed);
}

TEST_F(Aes256GcmTamper, WrongNonceFails) {
  Bytes iv = v.iv;
  iv[0] ^= 0x80;
  EXPECT_EQ(open_error(key, iv, v.aad, sealed), errc::authentication_failed);
}

TEST_F(Aes256GcmTamper, FlippedTagBitFails) {
  for (std::size_t bit = 0; bit < kGcmTagSize * 8; bit += 7) {
    Bytes input = sealed;
    input[v.ciphertext.size() + bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    EXPECT_EQ(open_error(key, v.iv, v.aad, input), errc::authentication_failed) << bit;
  }
}

TEST_F(Aes256GcmTamper, FlippedCiphertextBitFails) {
  for (std::size_t i = 0; i < v.ciphertext.size(); ++i) {
    Bytes input = sealed;
    input[i] ^= 0x01;
    EXPECT_EQ(open_error(key, v.iv, v.aad, input), errc::authentication_failed) << i;
  }
}

TEST_F(Aes256GcmTamper, FlippedAadBitFails) {
  Bytes aad = v.aad;
  aad[aad.size() - 1] ^= 0x01;
  EXPECT_EQ(open_error(key, v.iv, aad, sealed), errc::authentication_failed);
  EXPECT_EQ(open_error(key, v.iv, {}, sealed), errc::authentication_failed);
}

TEST_F(Aes256GcmTamper, TruncatedInputFails) {
  for (std::size_t size :
       {std::size_t{0}, std::size_t{1}, kGcmTagSize - 1, kGcmTagSize, sealed.size() - 1}) {
    const Bytes input(sealed.begin(), sealed.begin() + static_cast<std::ptrdiff_t>(size));
    EXPECT_EQ(open_error(key, v.iv, v.aad, input), errc::authentication_failed) << size;
  }
  Bytes extended = sealed;
  extended.push_back(0);
  EXPECT_EQ(open_error(key, v.iv, v.aad, extended), errc::authentication_failed);
}

TEST_F(Aes256GcmTamper, WrongSizedKeyOrNonceIsAnArgumentError) {
  EXPECT_EQ(open_error(SecretKey::from_bytes(Bytes(16, 0)), v.iv, v.aad, sealed),
            errc::invalid_argument);
  EXPECT_EQ(open_error(key, Bytes(11, 0), v.aad, sealed), errc::invalid_argument);
  EXPECT_EQ(open_error(key, Bytes(13, 0), v.aad, sealed), errc::invalid_argument);
  EXPECT_THROW(aes256gcm_seal(SecretKey::from_bytes(Bytes(31, 0)), v.iv, {}, {}),
               std::invalid_argument);
  EXPECT_THROW(aes256gcm_seal(key, Bytes(16, 0), {}, {}), std::invalid_argument);
}

TEST(Aes256GcmReusable, MatchesGcmSpecCases13To16) {
  for (const auto& v : standard_nonce_vectors()) {
    SCOPED_TRACE(v.name);
    Aes256Gcm gcm(SecretKey::from_bytes(v.key));
    Bytes out(v.plaintext.size());
    Bytes tag(kGcmTagSize);
    gcm.seal(v.iv, v.aad, v.plaintext, out, tag);
    EXPECT_EQ(to_hex(out), to_hex(v.ciphertext));
    EXPECT_EQ(to_hex(tag), to_hex(v.tag));

    Bytes opened(v.ciphertext.size());
    EXPECT_EQ(gcm.open(v.iv, v.aad, v.ciphertext, v.tag, opened), std::error_code());
    EXPECT_EQ(opened, v.plaintext);
  }
}

TEST(Aes256GcmReusable, ManyMessagesUnderOneKeyAgreeWithOneShot) {
  const auto key = SecretKey::random(kAes256KeySize);
  Aes256Gcm gcm(key);
  for (std::uint8_t i = 0; i < 50; ++i) {
    const Bytes nonce(kGcmNonceSize, i);
    const Bytes aad(i % 3, i);
    const Bytes plaintext(i * 7u, static_cast<std::uint8_t>(i ^ 0x5a));
    Bytes out(plaintext.size());
    Bytes tag(kGcmTagSize);
    gcm.seal(nonce, aad, plaintext, out, tag);
    ASSERT_EQ(concat(out, tag), aes256gcm_seal(key, nonce, aad, plaintext)) << int(i);
    Bytes opened(out.size());
    ASSERT_EQ(gcm.open(nonce, aad, out, tag, opened), std::error_code()) << int(i);
    ASSERT_EQ(opened, plaintext);
  }
}

TEST(Aes256GcmReusable, WorksInPlace) {
  Aes256Gcm gcm(SecretKey::random(kAes256KeySize));
  const Bytes nonce(kGcmNonceSize, 3);
  const Bytes original = test::ascii("a page of data, sealed and opened in its own buffer");
  Bytes buffer = original;
  Bytes tag(kGcmTagSize);
  gcm.seal(nonce, {}, buffer, buffer, tag);
  EXPECT_NE(buffer, original);
  EXPECT_EQ(gcm.open(nonce, {}, buffer, tag, buffer), std::error_code());
  EXPECT_EQ(buffer, original);
}

TEST(Aes256GcmReusable, FailedOpenWipesTheOutputAndLaterOpensStillWork) {
  Aes256Gcm gcm(SecretKey::random(kAes256KeySize));
  const Bytes nonce(kGcmNonceSize, 9);
  const Bytes plaintext(100, 0x42);
  Bytes ciphertext(plaintext.size());
  Bytes tag(kGcmTagSize);
  gcm.seal(nonce, {}, plaintext, ciphertext, tag);

  Bytes bad_tag = tag;
  bad_tag[0] ^= 0x01;
  Bytes out(plaintext.size(), 0xee);
  EXPECT_EQ(gcm.open(nonce, {}, ciphertext, bad_tag, out), errc::authentication_failed);
  EXPECT_EQ(out, Bytes(plaintext.size(), 0));  // no unauthenticated plaintext left behind

  EXPECT_EQ(gcm.open(nonce, {}, ciphertext, tag, out), std::error_code());
  EXPECT_EQ(out, plaintext);
}

TEST(Aes256GcmReusable, WrongSizesAreRefused) {
  Aes256Gcm gcm(SecretKey::random(kAes256KeySize));
  const Bytes nonce(kGcmNonceSize, 1);
  Bytes data(32, 0);
  Bytes out(32, 0xee);
  Bytes tag(kGcmTagSize);
  Bytes short_tag(kGcmTagSize - 1);
  Bytes short_out(31);

  EXPECT_THROW(gcm.seal(Bytes(8, 0), {}, data, out, tag), std::invalid_argument);
  EXPECT_THROW(gcm.seal(nonce, {}, data, short_out, tag), std::invalid_argument);
  EXPECT_THROW(gcm.seal(nonce, {}, data, out, short_tag), std::invalid_argument);
  EXPECT_THROW(
      gcm.seal(nonce, {}, ByteView(data).first(16), MutableByteView(data).subspan(8, 16), tag),
      std::invalid_argument);  // overlapping but not in place

  EXPECT_EQ(gcm.open(Bytes(8, 0), {}, data, tag, out), errc::invalid_argument);
  EXPECT_EQ(out, Bytes(32, 0));
  EXPECT_EQ(gcm.open(nonce, {}, data, short_tag, out), errc::invalid_argument);
  EXPECT_EQ(gcm.open(nonce, {}, data, tag, short_out), errc::invalid_argument);
  EXPECT_THROW(Aes256Gcm(SecretKey::random(16)), std::invalid_argument);
}

TEST(Aes256GcmReusable, MovedObjectKeepsItsKey) {
  const auto key = SecretKey::random(kAes256KeySize);
  Aes256Gcm a(key);
  Aes256Gcm b(std::move(a));
  const Bytes nonce(kGcmNonceSize, 4);
  const Bytes plaintext = test::ascii("moved");
  Bytes out(plaintext.size());
  Bytes tag(kGcmTagSize);
  b.seal(nonce, {}, plaintext, out, tag);
  EXPECT_EQ(concat(out, tag), aes256gcm_seal(key, nonce, {}, plaintext));
}

}  // namespace
}  // namespace kaban::crypto
