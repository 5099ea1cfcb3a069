// SHA-256 through the compiled-in backend (run on both builds), and the wire form of digests.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "mqds/hash.hpp"

namespace mqds {
namespace {

constexpr std::uint64_t seed = 0x6d716473'68617368;  // printed by SCOPED_TRACE on failure

std::span<const std::uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::vector<std::uint8_t> random_bytes(std::mt19937_64& rng, std::size_t size) {
  std::vector<std::uint8_t> bytes(size);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  return bytes;
}

// FIPS 180-2 appendix B and the NIST example values.
TEST(HashTest, KnownVectors) {
  EXPECT_EQ(sha256("").to_hex(),
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855");
  EXPECT_EQ(sha256("abc").to_hex(),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
  EXPECT_EQ(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").to_hex(),
            "248D6A61D20638B8E5C026930C3E6039A33CE45964FF2167F6ECEDD419DB06C1");
  EXPECT_EQ(sha256("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnop"
                   "qklmnopqrlmnopqrs"
                   "mnopqrstnopqrstu")
                .to_hex(),
            "CF5B16A778AF8380036CE59E7B0492370B249B11E8F07A51AFAC45037AFEE9D1");
  EXPECT_EQ(sha256(std::string(1'000'000, 'a')).to_hex(),
            "CDC76E5C9914FB9281A1C7E284D73E67F1809A48A497200E046D39CCC7112CD0");
}

TEST(HashTest, MillionAsInSmallUpdates) {
  const std::string block(1000, 'a');
  Sha256 hasher;
  for (int i = 0; i < 1000; ++i) hasher.update(as_bytes(block));
  EXPECT_EQ(hasher.finish().to_hex(),
            "CDC76E5C9914FB9281A1C7E284D73E67F1809A48A497200E046D39CCC7112CD0");
}

TEST(HashTest, IncrementalEqualsOneShotAtRandomSplits) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  Sha256 hasher;  // reused across inputs: finish() must reset it
  for (int round = 0; round < 200; ++round) {
    const std::vector<std::uint8_t> data = random_bytes(rng, rng() % 5000);
    std::span<const std::uint8_t> rest(data);
    while (!rest.empty()) {
      const std::size_t take = std::min<std::size_t>(rest.size(), rng() % 300);  // 0 included
      hasher.update(rest.first(take));
      rest = rest.subspan(take);
    }
    ASSERT_EQ(hasher.finish(), sha256(data)) << "round " << round << ", size " << data.size();
  }
}

TEST(HashTest, FinishResetsForTheNextInput) {
  Sha256 hasher;
  hasher.update(as_bytes("ab"));
  hasher.update(as_bytes("c"));
  EXPECT_EQ(hasher.finish(), sha256("abc"));
  EXPECT_EQ(hasher.finish(), sha256(""));
  hasher.update(as_bytes("abc"));
  EXPECT_EQ(hasher.finish(), sha256("abc"));
}

TEST(HashTest, MovedHasherKeepsItsState) {
  Sha256 first;
  first.update(as_bytes("ab"));
  Sha256 second(std::move(first));
  second.update(as_bytes("c"));
  EXPECT_EQ(second.finish(), sha256("abc"));

  Sha256 third;
  third.update(as_bytes("unrelated"));
  third = std::move(second);
  third.update(as_bytes("abc"));
  EXPECT_EQ(third.finish(), sha256("abc"));
}

TEST(HashTest, HexRoundTrip) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 100; ++i) {
    const Hash hash = sha256(random_bytes(rng, 16));
    const std::string hex = hash.to_hex();
    ASSERT_EQ(hex.size(), 64u);
    for (const char c : hex) ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')) << hex;
    ASSERT_EQ(Hash::from_hex(hex), hash);
  }
}

TEST(HashTest, FromHexAcceptsEitherCase) {
  const Hash hash = sha256("abc");
  EXPECT_EQ(Hash::from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            hash);
  EXPECT_EQ(Hash::from_hex("Ba7816bF8f01cfEA414140de5dae2223b00361A396177a9cb410ff61f20015aD"),
            hash);
}

TEST(HashTest, FromHexRejectsAnythingButSixtyFourHexDigits) {
  const std::string good = sha256("abc").to_hex();
  EXPECT_EQ(Hash::from_hex(good.substr(0, 63)), std::nullopt);
  EXPECT_EQ(Hash::from_hex(good + "0"), std::nullopt);
  EXPECT_EQ(Hash::from_hex(""), std::nullopt);
  EXPECT_EQ(Hash::from_hex(std::string(32, '0')), std::nullopt);
  for (const char bad : {'G', 'g', ' ', '-', 'x', '\0', '\xff', ':', '@', '`', '/'}) {
    for (const std::size_t position : {std::size_t{0}, std::size_t{31}, std::size_t{63}}) {
      std::string text = good;
      text[position] = bad;
      EXPECT_EQ(Hash::from_hex(text), std::nullopt) << "char " << int(bad) << " at " << position;
    }
  }
  EXPECT_EQ(Hash::from_hex(" " + good.substr(1)), std::nullopt);
  EXPECT_EQ(Hash::from_hex("0x" + good.substr(2)), std::nullopt);
}

TEST(HashTest, PrefixIsTheFirstEightBytesBigEndian) {
  const Hash abc = sha256("abc");  // BA7816BF8F01CFEA...
  EXPECT_EQ(abc.prefix_u64(), 0xBA7816BF8F01CFEAull);

  Hash hash;
  for (std::size_t i = 0; i < Hash::size_bytes; ++i)
    hash.digest[i] = static_cast<std::uint8_t>(i + 1);
  EXPECT_EQ(hash.prefix_u64(), 0x0102030405060708ull);
  EXPECT_EQ(Hash{}.prefix_u64(), 0u);
  EXPECT_EQ(std::hash<Hash>{}(abc), static_cast<std::size_t>(abc.prefix_u64()));
}

TEST(HashTest, OrderingFollowsTheDigestBytes) {
  Hash low;
  Hash high;
  high.digest[0] = 1;
  EXPECT_LT(low, high);
  EXPECT_EQ(sha256("abc"), sha256("abc"));
  EXPECT_NE(sha256("abc"), sha256("abd"));
  std::unordered_set<Hash> set{sha256("a"), sha256("b"), sha256("a")};
  EXPECT_EQ(set.size(), 2u);
}

TEST(HashTest, AlgorithmNameIsCaseInsensitive) {
  EXPECT_TRUE(is_sha256_name("SHA256"));
  EXPECT_TRUE(is_sha256_name("sha256"));
  EXPECT_TRUE(is_sha256_name("Sha256"));
  EXPECT_FALSE(is_sha256_name("SHA-256"));
  EXPECT_FALSE(is_sha256_name("SHA256 "));
  EXPECT_FALSE(is_sha256_name("SHA25"));
  EXPECT_FALSE(is_sha256_name("SHA512"));
  EXPECT_FALSE(is_sha256_name(""));
  EXPECT_FALSE(is_sha256_name(std::string_view("SHA256\0", 7)));
}

TEST(HashTest, BackendNameIsOneOfTheBuildOptions) {
  const std::string_view name = crypto_backend_name();
  EXPECT_TRUE(name == "openssl" || name == "mbedtls") << name;
}

}  // namespace
}  // namespace mqds
