#include "common/Base64.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tether {
namespace {

using ::testing::HasSubstr;

std::vector<std::uint8_t> bytes_of(std::string_view s) {
  return std::vector<std::uint8_t>(s.begin(), s.end());
}

// RFC 4648 §10 test vectors, with the padding removed as §3.2 allows.
TEST(Base64Test, Rfc4648VectorsWithoutPadding) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64url_encode(bytes_of(plain)), encoded) << plain;
    auto decoded = base64url_decode(encoded);
    ASSERT_TRUE(decoded.ok()) << encoded << ": " << decoded.error().message;
    EXPECT_EQ(*decoded, bytes_of(plain)) << encoded;
  }
}

TEST(Base64Test, UsesTheUrlSafeAlphabet) {
  // Standard base64 of these is "+/+/" and "-_" replaces "+/" in base64url (§5).
  const std::vector<std::uint8_t> bytes = {0xfb, 0xff, 0xbf};
  EXPECT_EQ(base64url_encode(bytes), "-_-_");
  EXPECT_EQ(*base64url_decode("-_-_"), bytes);
  EXPECT_EQ(base64url_encode(std::vector<std::uint8_t>{0xff}), "_w");
  EXPECT_EQ(base64url_encode(std::vector<std::uint8_t>{0xff, 0xff}), "__8");
  EXPECT_EQ(base64url_encode(std::vector<std::uint8_t>{0x00, 0x00, 0x00}), "AAAA");
}

TEST(Base64Test, EncodesTheWholeAlphabetInOrder) {
  // 48 bytes whose 6-bit groups count 0..63.
  std::vector<std::uint8_t> bytes;
  for (int i = 0; i < 64; i += 4) {
    const std::uint32_t v = (i << 18) | ((i + 1) << 12) | ((i + 2) << 6) | (i + 3);
    bytes.push_back(static_cast<std::uint8_t>(v >> 16));
    bytes.push_back(static_cast<std::uint8_t>(v >> 8));
    bytes.push_back(static_cast<std::uint8_t>(v));
  }
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  EXPECT_EQ(base64url_encode(bytes), alphabet);
  EXPECT_EQ(*base64url_decode(alphabet), bytes);
}

TEST(Base64Test, RoundTripsEveryLengthAndByteValue) {
  std::mt19937 rng(4648);
  for (std::size_t len = 0; len <= 70; ++len) {
    std::vector<std::uint8_t> bytes(len);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
    const std::string text = base64url_encode(bytes);
    EXPECT_EQ(text.size(), (len * 4 + 2) / 3) << len;
    EXPECT_EQ(text.find_first_of("+/="), std::string::npos);
    auto back = base64url_decode(text);
    ASSERT_TRUE(back.ok()) << len;
    EXPECT_EQ(*back, bytes) << len;
  }
  std::vector<std::uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(*base64url_decode(base64url_encode(all)), all);
}

TEST(Base64Test, RejectsPadding) {
  for (const char* padded : {"Zg==", "Zm8=", "Zg=", "Zm9vYg==", "===="}) {
    auto r = base64url_decode(padded);
    ASSERT_FALSE(r.ok()) << padded;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
  }
}

TEST(Base64Test, RejectsCharactersOutsideTheAlphabet) {
  for (const char* bad :
       {"Zm9v+g", "Zm9v/g", "Zm 9v", "Zm9v\n", " Zm9v", "Zm.9", "Zm9v!A", "\xc3\xa9\xc3\xa9"}) {
    auto r = base64url_decode(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
  }
  EXPECT_THAT(base64url_decode("Zm9v*A").error().message, HasSubstr("offset 4"));
  EXPECT_FALSE(base64url_decode(std::string("Zm\0v", 4)).ok());
}

TEST(Base64Test, RejectsImpossibleLengths) {
  for (const char* bad : {"Z", "Zm9vY", "Zm9vYmFyZ"}) {
    auto r = base64url_decode(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, HasSubstr("length"));
  }
}

TEST(Base64Test, RejectsNonCanonicalTrailingBits) {
  // "f" is "Zg": the last character carries 2 data bits and 4 zero bits. Any other
  // character with the same top bits ("Zh".."Zv") decodes to the same byte and is refused.
  for (const char* bad : {"Zh", "Zi", "Zv", "Zm9", "Zm-", "Zm9vYh", "Zm9vYmF"}) {
    auto r = base64url_decode(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, HasSubstr("non-canonical"));
  }
  EXPECT_TRUE(base64url_decode("Zw").ok());  // 0x67 'g': canonical
  EXPECT_TRUE(base64url_decode("Zm8").ok());
}

TEST(Base64Test, DecodesLongInputs) {
  std::vector<std::uint8_t> bytes(10000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7);
  EXPECT_EQ(*base64url_decode(base64url_encode(bytes)), bytes);
}

}  // namespace
}  // namespace tether
