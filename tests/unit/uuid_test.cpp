#include "mqds/uuid.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mqds {
namespace {

Uuid counting_bytes() {
  Uuid uuid;
  for (std::size_t i = 0; i < uuid.bytes.size(); ++i)
    uuid.bytes[i] = static_cast<std::uint8_t>(i * 0x11);
  return uuid;
}

TEST(Uuid, FormatsLowercaseEightFourFourFourTwelve) {
  EXPECT_EQ(counting_bytes().to_string(), "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(Uuid{}.to_string(), "00000000-0000-0000-0000-000000000000");
}

TEST(Uuid, ParsesLowercase) {
  const auto uuid = Uuid::parse("00112233-4455-6677-8899-aabbccddeeff");
  ASSERT_TRUE(uuid);
  EXPECT_EQ(*uuid, counting_bytes());
}

TEST(Uuid, ParsesUppercaseAndMixedCase) {
  EXPECT_EQ(Uuid::parse("00112233-4455-6677-8899-AABBCCDDEEFF"), counting_bytes());
  EXPECT_EQ(Uuid::parse("00112233-4455-6677-8899-aAbBcCdDeEfF"), counting_bytes());
}

TEST(Uuid, RoundTripsThroughText) {
  const auto uuid = Uuid::v4_from(0x0123456789abcdefULL, 0xfedcba9876543210ULL);
  EXPECT_EQ(Uuid::parse(uuid.to_string()), uuid);
}

TEST(Uuid, RejectsMalformedText) {
  for (const std::string& text : std::vector<std::string>{
           "",
           "00112233-4455-6677-8899-aabbccddeef",     // one digit short
           "00112233-4455-6677-8899-aabbccddeeff0",   // one digit long
           "001122334455-6677-8899-aabbccddeeff-",    // dashes misplaced
           "00112233-4455-6677-8899_aabbccddeeff",    // wrong separator
           "00112233-4455-6677-8899-aabbccddeefg",    // not hexadecimal
           "0011223344556677-8899aabbccddeeff00-",    // right length, wrong layout
           "00112233445566778899aabbccddeeff",        // no dashes
           "{00112233-4455-6677-8899-aabbccddeeff}",  // braces
           " 00112233-4455-6677-8899-aabbccddeeff",   // leading space
           "00112233-4455-6677-8899-aabbccddeef ",    // trailing space
           "+0112233-4455-6677-8899-aabbccddeeff",    // sign
           std::string("00112233-4455-6677-8899-aabbccddeef\0", 36),
       }) {
    EXPECT_FALSE(Uuid::parse(text)) << text;
  }
}

TEST(Uuid, V4SetsVersionAndVariantBits) {
  EXPECT_EQ(Uuid::v4_from(0, 0).to_string(), "00000000-0000-4000-8000-000000000000");
  EXPECT_EQ(Uuid::v4_from(~0ULL, ~0ULL).to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

TEST(Uuid, V4KeepsTheRandomBitsInTextOrder) {
  // Byte 6 0xcd becomes 0x4d (version), byte 8 0xfe becomes 0xbe (variant); the rest is unchanged.
  EXPECT_EQ(Uuid::v4_from(0x0123456789abcdefULL, 0xfedcba9876543210ULL).to_string(),
            "01234567-89ab-4def-bedc-ba9876543210");
}

TEST(Uuid, V4DiffersWithItsInput) {
  EXPECT_NE(Uuid::v4_from(1, 2), Uuid::v4_from(2, 1));
  EXPECT_NE(Uuid::v4_from(0, 1), Uuid::v4_from(0, 2));
}

}  // namespace
}  // namespace mqds
