// Cutting a stream into fragments: sizes at the edges, chunking independence, reuse, and a
// 256 MiB stream that must go through without the fragmenter (or the test) holding it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "mqds/fragmenter.hpp"
#include "mqds/limits.hpp"

namespace mqds {
namespace {

constexpr std::uint64_t seed = 0x6d716473'66726167;  // printed by SCOPED_TRACE on failure

struct Recorded {
  Hash hash;
  std::vector<std::uint8_t> data;
  const std::uint8_t* address;
};

struct Recorder {
  std::vector<Recorded> fragments;
  Fragmenter::FragmentSink sink() {
    return [this](const Fragment& f) {
      fragments.push_back({f.hash, {f.data.begin(), f.data.end()}, f.data.data()});
    };
  }
};

std::vector<std::uint8_t> random_bytes(std::mt19937_64& rng, std::size_t size) {
  std::vector<std::uint8_t> bytes(size);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  return bytes;
}

// Checks everything that follows from the content alone: the slices, their hashes, the sequence.
void expect_fragments_of(const std::vector<std::uint8_t>& content, std::size_t fragment_size,
                         const std::vector<Recorded>& fragments, const FileDigest& digest) {
  const std::size_t count = (content.size() + fragment_size - 1) / fragment_size;
  ASSERT_EQ(fragments.size(), count);
  ASSERT_EQ(digest.metadata.fragment_sequence.size(), count);
  EXPECT_EQ(digest.metadata.size_bytes, static_cast<std::int64_t>(content.size()));
  EXPECT_EQ(digest.hash, sha256(content));
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t begin = i * fragment_size;
    const std::size_t end = std::min(begin + fragment_size, content.size());
    const std::vector<std::uint8_t> slice(content.begin() + static_cast<std::ptrdiff_t>(begin),
                                          content.begin() + static_cast<std::ptrdiff_t>(end));
    ASSERT_EQ(fragments[i].data, slice) << "fragment " << i;
    ASSERT_EQ(fragments[i].hash, sha256(slice)) << "fragment " << i;
    ASSERT_EQ(digest.metadata.fragment_sequence[i], fragments[i].hash) << "fragment " << i;
  }
}

TEST(FragmenterTest, RejectsFragmentSizesOutsideTheLimits) {
  EXPECT_THROW(Fragmenter(0, nullptr), std::invalid_argument);
  EXPECT_THROW(Fragmenter(-1, nullptr), std::invalid_argument);
  EXPECT_THROW(Fragmenter(limits::fragment_size_bytes_max + 1, nullptr), std::invalid_argument);
  EXPECT_NO_THROW(Fragmenter(1, nullptr));
  EXPECT_NO_THROW(Fragmenter(limits::fragment_size_bytes_max, nullptr));
}

TEST(FragmenterTest, EmptyFileHasNoFragmentsAndTheHashOfNothing) {
  Recorder recorder;
  Fragmenter fragmenter(4, recorder.sink());
  fragmenter.feed({});
  const FileDigest digest = fragmenter.finish();
  EXPECT_TRUE(recorder.fragments.empty());
  EXPECT_EQ(digest.hash, sha256(""));
  EXPECT_EQ(digest.metadata.size_bytes, 0);
  EXPECT_TRUE(digest.metadata.fragment_sequence.empty());
}

TEST(FragmenterTest, SizesAroundMultiplesOfTheFragmentSize) {
  std::mt19937_64 rng(seed);
  for (const std::size_t size : {1u, 3u, 4u, 5u, 11u, 12u, 13u, 4096u, 4097u}) {
    SCOPED_TRACE("content size " + std::to_string(size));
    const std::vector<std::uint8_t> content = random_bytes(rng, size);
    Recorder recorder;
    Fragmenter fragmenter(4, recorder.sink());
    fragmenter.feed(content);
    EXPECT_EQ(fragmenter.bytes_fed(), static_cast<std::int64_t>(size));
    const FileDigest digest = fragmenter.finish();
    expect_fragments_of(content, 4, recorder.fragments, digest);
    ASSERT_FALSE(recorder.fragments.empty());
    EXPECT_EQ(recorder.fragments.back().data.size(), size % 4 == 0 ? 4 : size % 4);
  }
}

TEST(FragmenterTest, FragmentSizeOne) {
  std::mt19937_64 rng(seed);
  const std::vector<std::uint8_t> content = random_bytes(rng, 100);
  Recorder recorder;
  Fragmenter fragmenter(1, recorder.sink());
  fragmenter.feed(std::span(content).first(37));
  fragmenter.feed(std::span(content).subspan(37));
  expect_fragments_of(content, 1, recorder.fragments, fragmenter.finish());
}

TEST(FragmenterTest, WholeFragmentsComeStraightFromTheCallersBytes) {
  std::mt19937_64 rng(seed);
  const std::vector<std::uint8_t> content = random_bytes(rng, 14);
  Recorder recorder;
  Fragmenter fragmenter(4, recorder.sink());
  fragmenter.feed(content);
  ASSERT_EQ(recorder.fragments.size(), 3u);  // the 2 bytes left over wait for more input
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_EQ(recorder.fragments[i].address, content.data() + 4 * i);
  expect_fragments_of(content, 4, recorder.fragments, fragmenter.finish());
}

TEST(FragmenterTest, RandomChunkingGivesTheSameResultAsOneFeed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 100; ++round) {
    const std::size_t fragment_size = 1 + rng() % 64;
    const std::vector<std::uint8_t> content = random_bytes(rng, rng() % 2000);
    SCOPED_TRACE("round " + std::to_string(round) + ", fragment size " +
                 std::to_string(fragment_size) + ", content size " +
                 std::to_string(content.size()));

    Recorder whole;
    Fragmenter one_feed(static_cast<std::int64_t>(fragment_size), whole.sink());
    one_feed.feed(content);
    const FileDigest expected = one_feed.finish();
    expect_fragments_of(content, fragment_size, whole.fragments, expected);

    Recorder chunked;
    Fragmenter many_feeds(static_cast<std::int64_t>(fragment_size), chunked.sink());
    std::span<const std::uint8_t> rest(content);
    while (!rest.empty()) {
      const std::size_t take = std::min<std::size_t>(rest.size(), rng() % (3 * fragment_size + 2));
      many_feeds.feed(rest.first(take));
      rest = rest.subspan(take);
    }
    const FileDigest digest = many_feeds.finish();
    ASSERT_EQ(digest.hash, expected.hash);
    ASSERT_EQ(digest.metadata, expected.metadata);
    expect_fragments_of(content, fragment_size, chunked.fragments, digest);
  }
}

TEST(FragmenterTest, FinishResetsForTheNextFile) {
  std::mt19937_64 rng(seed);
  const std::vector<std::uint8_t> first = random_bytes(rng, 10);
  const std::vector<std::uint8_t> second = random_bytes(rng, 7);
  Recorder recorder;
  Fragmenter fragmenter(4, recorder.sink());
  fragmenter.feed(first);
  expect_fragments_of(first, 4, recorder.fragments, fragmenter.finish());
  EXPECT_EQ(fragmenter.bytes_fed(), 0);

  recorder.fragments.clear();
  fragmenter.feed(second);
  expect_fragments_of(second, 4, recorder.fragments, fragmenter.finish());

  recorder.fragments.clear();
  const FileDigest empty = fragmenter.finish();
  EXPECT_TRUE(recorder.fragments.empty());
  EXPECT_EQ(empty.hash, sha256(""));
  EXPECT_TRUE(empty.metadata.fragment_sequence.empty());
}

TEST(FragmenterTest, WithoutASinkOnlyTheDigestIsComputed) {
  std::mt19937_64 rng(seed);
  const std::vector<std::uint8_t> content = random_bytes(rng, 10);
  Fragmenter fragmenter(4, nullptr);
  fragmenter.feed(content);
  const FileDigest digest = fragmenter.finish();
  EXPECT_EQ(digest.hash, sha256(content));
  EXPECT_EQ(digest.metadata.fragment_sequence.size(), 3u);
}

TEST(FragmenterTest, AThrowingSinkDropsTheFileAndLeavesTheFragmenterUsable) {
  std::mt19937_64 rng(seed);
  const std::vector<std::uint8_t> content = random_bytes(rng, 10);
  int calls = 0;
  Fragmenter fragmenter(4, [&](const Fragment&) {
    if (++calls == 2) throw std::runtime_error("disk full");
  });
  fragmenter.feed(std::span(content).first(3));
  EXPECT_THROW(fragmenter.feed(std::span(content).subspan(3)), std::runtime_error);
  EXPECT_EQ(fragmenter.bytes_fed(), 0);

  Recorder recorder;
  Fragmenter reference(4, recorder.sink());
  reference.feed(content);
  const FileDigest expected = reference.finish();
  fragmenter.feed(content);
  const FileDigest digest = fragmenter.finish();
  EXPECT_EQ(digest.hash, expected.hash);
  EXPECT_EQ(digest.metadata, expected.metadata);

  // The same when the failing fragment is the short last one, emitted by finish().
  calls = 0;
  fragmenter.feed(std::span(content).first(6));
  EXPECT_THROW(fragmenter.finish(), std::runtime_error);
  EXPECT_EQ(fragmenter.bytes_fed(), 0);
  fragmenter.feed(content);
  EXPECT_EQ(fragmenter.finish().metadata, expected.metadata);
}

TEST(FragmenterTest, RefusesMoreFragmentsThanAFileMayHave) {
  // One fragment per byte, so the limit is reached with a few MiB of input.
  const std::vector<std::uint8_t> content(limits::fragments_per_file_max, 0x5A);
  std::size_t calls = 0;
  Fragmenter fragmenter(1, [&](const Fragment&) { ++calls; });
  fragmenter.feed(content);
  EXPECT_EQ(calls, limits::fragments_per_file_max);
  const std::uint8_t one_more = 0;
  EXPECT_THROW(fragmenter.feed(std::span(&one_more, 1)), std::length_error);
  EXPECT_EQ(calls, limits::fragments_per_file_max);
  EXPECT_EQ(fragmenter.bytes_fed(), 0);
}

// xorshift64: the stream is regenerated chunk by chunk, never stored.
class Xorshift {
 public:
  explicit Xorshift(std::uint64_t state) : state_(state) {}
  void fill(std::span<std::uint8_t> out) {
    for (std::size_t i = 0; i < out.size(); i += 8) {
      state_ ^= state_ << 13;
      state_ ^= state_ >> 7;
      state_ ^= state_ << 17;
      for (std::size_t j = 0; j < 8 && i + j < out.size(); ++j) {
        out[i + j] = static_cast<std::uint8_t>(state_ >> (8 * j));
      }
    }
  }

 private:
  std::uint64_t state_;
};

// Resident memory now, not the peak: earlier tests in the same process may have set a higher one.
long rss_kib() {
  std::ifstream statm("/proc/self/statm");
  long size_pages = 0;
  long resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * (sysconf(_SC_PAGESIZE) / 1024);
}

TEST(FragmenterTest, Streams256MiBInConstantSpace) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr std::size_t chunk_bytes = 1u << 20;
  constexpr std::size_t fragment_bytes = 1u << 20;
  constexpr std::size_t total_bytes = 256u << 20;
  const long rss_before_kib = rss_kib();
  long rss_peak_kib = rss_before_kib;

  std::size_t fragments = 0;
  std::size_t fragment_bytes_seen = 0;
  std::size_t oversized = 0;
  std::size_t wrong_hashes = 0;
  Fragmenter fragmenter(static_cast<std::int64_t>(fragment_bytes), [&](const Fragment& f) {
    ++fragments;
    fragment_bytes_seen += f.data.size();
    if (f.data.size() > fragment_bytes) ++oversized;
    if (f.hash != sha256(f.data)) ++wrong_hashes;
    rss_peak_kib = std::max(rss_peak_kib, rss_kib());
  });

  // Every other chunk is fed in two pieces at a random point, so fragments alternate between
  // coming straight from the chunk and being gathered across two feeds.
  Xorshift stream(seed);
  std::mt19937_64 rng(seed);
  Sha256 expected;
  std::vector<std::uint8_t> chunk(chunk_bytes);
  for (std::size_t offset = 0; offset < total_bytes; offset += chunk_bytes) {
    stream.fill(chunk);
    expected.update(chunk);
    const std::span<const std::uint8_t> bytes(chunk);
    if ((offset / chunk_bytes) % 2 == 0) {
      fragmenter.feed(bytes);
    } else {
      const std::size_t split = 1 + rng() % (chunk_bytes - 1);
      fragmenter.feed(bytes.first(split));
      fragmenter.feed(bytes.subspan(split));
    }
  }
  const FileDigest digest = fragmenter.finish();

  EXPECT_EQ(fragments, total_bytes / fragment_bytes);
  EXPECT_EQ(fragment_bytes_seen, total_bytes);
  EXPECT_EQ(oversized, 0u);
  EXPECT_EQ(wrong_hashes, 0u);
  EXPECT_EQ(digest.metadata.size_bytes, static_cast<std::int64_t>(total_bytes));
  EXPECT_EQ(digest.metadata.fragment_sequence.size(), fragments);
  EXPECT_EQ(digest.hash, expected.finish());

  // Holding the input would raise the peak by 256 MiB; one chunk plus one fragment is 2 MiB.
  const long growth_kib = rss_peak_kib - rss_before_kib;
  EXPECT_LT(growth_kib, 64 * 1024)
      << "resident memory grew by " << growth_kib << " KiB while streaming";
}

}  // namespace
}  // namespace mqds
