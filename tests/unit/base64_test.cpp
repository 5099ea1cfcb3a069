// Strict standard Base64 through the compiled-in backend; both builds must accept and reject the
// same texts, so the rejections here are the contract.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mqds/base64.hpp"

namespace mqds {
namespace {

constexpr std::uint64_t seed = 0x6d716473'62363400;  // printed by SCOPED_TRACE on failure

std::vector<std::uint8_t> bytes_of(std::string_view text) {
  return {text.begin(), text.end()};
}

std::string encode(std::string_view text) {
  return base64_encode(bytes_of(text));
}

bool decodes(std::string_view text) {
  std::vector<std::uint8_t> out;
  return base64_decode(text, out);
}

TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [raw, text] : vectors) {
    EXPECT_EQ(encode(raw), text);
    EXPECT_EQ(base64_encoded_size(raw.size()), text.size());
    std::vector<std::uint8_t> out{1, 2, 3};  // must be replaced, not appended to
    ASSERT_TRUE(base64_decode(text, out)) << text;
    EXPECT_EQ(out, bytes_of(raw)) << text;
  }
}

TEST(Base64Test, AllByteValuesAndBothHighCharacters) {
  std::vector<std::uint8_t> all(256);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i);
  const std::string text = base64_encode(all);
  EXPECT_NE(text.find('+'), std::string::npos);
  EXPECT_NE(text.find('/'), std::string::npos);
  std::vector<std::uint8_t> out;
  ASSERT_TRUE(base64_decode(text, out));
  EXPECT_EQ(out, all);
  EXPECT_EQ(base64_encode(std::vector<std::uint8_t>{0xFB, 0xFF, 0xBF}), "+/+/");
}

TEST(Base64Test, RoundTripOfEveryLengthUpTo1000) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (std::size_t size = 0; size <= 1000; ++size) {
    std::vector<std::uint8_t> raw(size);
    for (auto& b : raw) b = static_cast<std::uint8_t>(rng());
    const std::string text = base64_encode(raw);
    ASSERT_EQ(text.size(), base64_encoded_size(size));
    ASSERT_EQ(text.size() % 4, 0u);
    std::vector<std::uint8_t> out;
    ASSERT_TRUE(base64_decode(text, out)) << "size " << size;
    ASSERT_EQ(out, raw) << "size " << size;
  }
}

TEST(Base64Test, EncodeIntoWritesExactlyTheEncodedSize) {
  // Both libraries terminate their output with a NUL; out has no room for one.
  for (std::size_t size = 0; size <= 10; ++size) {
    const std::vector<std::uint8_t> raw(size, 0xA5);
    const std::size_t encoded = base64_encoded_size(size);
    std::string out(encoded + 8, '#');
    base64_encode_into(raw, out.data());
    EXPECT_EQ(out.substr(encoded), std::string(8, '#')) << "size " << size;
    EXPECT_EQ(out.substr(0, encoded), base64_encode(raw)) << "size " << size;
  }
}

TEST(Base64Test, LargeRoundTrip) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> raw((1u << 20) + 1);
  for (auto& b : raw) b = static_cast<std::uint8_t>(rng());
  std::vector<std::uint8_t> out;
  ASSERT_TRUE(base64_decode(base64_encode(raw), out));
  EXPECT_EQ(out, raw);
}

TEST(Base64Test, RejectsCharactersOutsideTheStandardAlphabet) {
  EXPECT_FALSE(decodes("Zm9v*A=="));
  EXPECT_FALSE(decodes("Zm9-"));  // URL-safe alphabet
  EXPECT_FALSE(decodes("Zm9_"));
  EXPECT_FALSE(decodes("Zm.v"));
  EXPECT_FALSE(decodes(std::string_view("Zm9\0", 4)));
  EXPECT_FALSE(decodes("Zm9\xff"));
  EXPECT_FALSE(decodes("Zm9\x80"));
}

TEST(Base64Test, RejectsWhitespace) {
  EXPECT_FALSE(decodes("Zm9 "));
  EXPECT_FALSE(decodes(" Zm9"));
  EXPECT_FALSE(decodes("Zm9v\n"));
  EXPECT_FALSE(decodes("Zm9v\r\n"));
  EXPECT_FALSE(decodes("Zm9v\r\nYmFy"));
  EXPECT_FALSE(decodes("Zm9\nYmFy"));
  EXPECT_FALSE(decodes("Zm9vYmFy\r\n\r\n"));
  EXPECT_FALSE(decodes("Zm9v\tYmFy"));
  EXPECT_FALSE(decodes("Zm9v    "));
  EXPECT_FALSE(decodes("    "));
}

TEST(Base64Test, RejectsLengthsThatAreNotMultiplesOfFour) {
  EXPECT_FALSE(decodes("Z"));
  EXPECT_FALSE(decodes("Zg"));
  EXPECT_FALSE(decodes("Zg="));
  EXPECT_FALSE(decodes("Zm8"));  // unpadded
  EXPECT_FALSE(decodes("Zm9vY"));
  EXPECT_FALSE(decodes("Zm9vYg"));
  EXPECT_FALSE(decodes("Zm9vYg==="));
}

TEST(Base64Test, RejectsMisplacedPadding) {
  EXPECT_FALSE(decodes("="));
  EXPECT_FALSE(decodes("===="));
  EXPECT_FALSE(decodes("Z==="));
  EXPECT_FALSE(decodes("=m9v"));
  EXPECT_FALSE(decodes("Zm=v"));
  EXPECT_FALSE(decodes("Zg=a"));
  EXPECT_FALSE(decodes("Zg==Zm9v"));  // padding in the middle
  EXPECT_FALSE(decodes("Zm8=Zm9v"));
  EXPECT_FALSE(
      decodes("Zm9vYg=="
              "===="));
}

TEST(Base64Test, RejectsNonCanonicalUnusedBits) {
  // "QQ==" and "QUE=" are the canonical forms of "A" and "AA"; the variants differ only in the
  // bits that padding discards, so accepting them would give one content several encodings.
  EXPECT_TRUE(decodes("QQ=="));
  EXPECT_FALSE(decodes("QR=="));
  EXPECT_FALSE(decodes("QX=="));
  EXPECT_FALSE(decodes("Q/=="));
  EXPECT_TRUE(decodes("QUE="));
  EXPECT_FALSE(decodes("QUF="));
  EXPECT_FALSE(decodes("QUH="));
  EXPECT_FALSE(decodes("Zm9="));
  EXPECT_FALSE(decodes("Zm9vYh=="));
  // Every single-byte and two-byte text with non-zero discarded bits, exhaustively over the
  // last data character.
  constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (std::size_t value = 0; value < 64; ++value) {
    const std::string one = std::string("Q") + alphabet[value] + "==";
    const std::string two = std::string("QU") + alphabet[value] + "=";
    EXPECT_EQ(decodes(one), (value & 0x0F) == 0) << one;
    EXPECT_EQ(decodes(two), (value & 0x03) == 0) << two;
  }
}

}  // namespace
}  // namespace mqds
