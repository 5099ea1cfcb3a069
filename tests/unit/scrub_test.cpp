// Unit tests of scrub::Pacer, the pace of mqds-edge's background scrubbing: passes spread over the
// interval, reads never faster than the rate, and what happens at a pass's ends. Time is a number
// the test advances; a "store" is a list of fragment sizes walked the way mqds-edge walks its keys.
#include "mqds/scrub.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <algorithm>
#include <numeric>
#include <vector>

#include "mqds/limits.hpp"
#include "mqds/random.hpp"

namespace mqds::scrub {
namespace {

PacerConfig config(std::int64_t interval_ms, std::int64_t rate_bytes_per_s) {
  PacerConfig c;
  c.interval_ms = interval_ms;
  c.rate_bytes_per_s = rate_bytes_per_s;
  return c;
}

struct Read {
  std::int64_t at_ms;
  std::int64_t bytes;
};

// Runs one pass the way mqds-edge does, each step at the moment it is due: begin, one fragment per
// step, then a step that finds the end. Returns the reads, and leaves the pacer after end_pass.
std::vector<Read> run_pass(Pacer& pacer, const std::vector<std::int64_t>& sizes) {
  std::vector<Read> reads;
  std::int64_t now = *pacer.next_step_ms();
  pacer.begin_pass(now, std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0}));
  for (const auto size : sizes) {
    EXPECT_TRUE(pacer.due(now));
    pacer.verified(now, size);
    reads.push_back({now, size});
    now = *pacer.next_step_ms();
  }
  pacer.end_pass(now);
  return reads;
}

// The most read in any stretch of window_ms that starts at a read.
std::int64_t most_read_in(const std::vector<Read>& reads, std::int64_t window_ms) {
  std::int64_t most = 0;
  for (std::size_t i = 0; i < reads.size(); ++i) {
    std::int64_t sum = 0;
    for (std::size_t j = i; j < reads.size() && reads[j].at_ms < reads[i].at_ms + window_ms; ++j)
      sum += reads[j].bytes;
    most = std::max(most, sum);
  }
  return most;
}

TEST(ScrubPacer, AnIntervalOfZeroTurnsItOff) {
  Pacer pacer(config(0, 4'000'000), 1'000);
  EXPECT_FALSE(pacer.enabled());
  EXPECT_FALSE(pacer.next_step_ms());
  EXPECT_FALSE(pacer.due(1'000));
  EXPECT_FALSE(pacer.due(1'000'000'000));
}

TEST(ScrubPacer, TheFirstPassIsDueWhenItIsMade) {
  Pacer pacer(config(60'000, 4'000'000), 5'000);
  EXPECT_EQ(pacer.next_step_ms(), 5'000);
  EXPECT_FALSE(pacer.due(4'999));
  EXPECT_TRUE(pacer.due(5'000));
  EXPECT_FALSE(pacer.in_pass());
}

TEST(ScrubPacer, APassIsSpreadEvenlyOverTheInterval) {
  // 8 fragments of 1000 bytes over 8 s: one a second, far below the rate.
  Pacer pacer(config(8'000, 4'000'000), 0);
  const auto reads = run_pass(pacer, std::vector<std::int64_t>(8, 1'000));
  ASSERT_EQ(reads.size(), 8u);
  for (std::size_t i = 0; i < reads.size(); ++i)
    EXPECT_EQ(reads[i].at_ms, static_cast<std::int64_t>(i) * 1'000) << i;
  // The end is found one share after the last fragment: the pass took the interval, and the next
  // begins at once.
  EXPECT_EQ(pacer.pass().fragments, 8u);
  EXPECT_EQ(pacer.pass().bytes, 8'000);
  EXPECT_EQ(pacer.next_step_ms(), 8'000);
  EXPECT_FALSE(pacer.in_pass());
}

TEST(ScrubPacer, TheRateBoundsAPassWhoseIntervalIsTooShortForTheStore) {
  // 10 fragments of 500 bytes in 1 s would be 5000 B/s; the rate allows 1000 B/s.
  Pacer pacer(config(1'000, 1'000), 0);
  const auto reads = run_pass(pacer, std::vector<std::int64_t>(10, 500));
  for (std::size_t i = 1; i < reads.size(); ++i)
    EXPECT_EQ(reads[i].at_ms - reads[i - 1].at_ms, 500) << i;
  EXPECT_EQ(pacer.next_step_ms(), 5'000) << "the pass takes what the rate allows, not the interval";
  EXPECT_LE(most_read_in(reads, 1'000), 1'000);
}

TEST(ScrubPacer, ManySmallFragmentsDoNotReadFasterThanTheRate) {
  // 1 byte at 3 B/s is 333.3 ms: rounded down, 3 reads a second would become 3.003.
  Pacer pacer(config(1'000, 3), 0);
  const auto reads = run_pass(pacer, std::vector<std::int64_t>(30, 1));
  EXPECT_EQ(reads[1].at_ms, 334);
  EXPECT_LE(most_read_in(reads, 1'000), 3);
  EXPECT_LE(most_read_in(reads, 10'000), 30);
}

TEST(ScrubPacer, RandomStoresStayWithinTheRateAndTakeAboutTheInterval) {
  SplitMix64 random(13);
  for (int round = 0; round < 50; ++round) {
    const std::int64_t rate = 1'000 + static_cast<std::int64_t>(random.next_u64() % 10'000'000);
    const std::int64_t interval = 1 + static_cast<std::int64_t>(random.next_u64() % 100'000'000);
    std::vector<std::int64_t> sizes(1 + random.next_u64() % 200);
    for (auto& size : sizes) size = 1 + static_cast<std::int64_t>(random.next_u64() % (1 << 20));
    const std::int64_t total = std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0});
    Pacer pacer(config(interval, rate), 0);
    const auto reads = run_pass(pacer, sizes);
    const std::int64_t took_ms = *pacer.next_step_ms();
    // Never faster than the rate: one second holds at most the rate plus the fragment that began
    // it.
    const std::int64_t largest = *std::max_element(sizes.begin(), sizes.end());
    EXPECT_LE(most_read_in(reads, 1'000), rate + largest) << "round " << round;
    // The pass takes the longer of the interval and what the rate allows, give or take the
    // rounding of each step (a millisecond each).
    const std::int64_t at_rate_ms = total * 1'000 / rate;
    const auto steps = static_cast<std::int64_t>(sizes.size());
    EXPECT_GE(took_ms, std::max(interval, at_rate_ms)) << "round " << round;
    EXPECT_LE(took_ms, std::max(interval, at_rate_ms) + 2 * steps) << "round " << round;
  }
}

TEST(ScrubPacer, APassThatEndsEarlyWaitsForTheIntervalAfterItsStart) {
  Pacer pacer(config(60'000, 4'000'000), 1'000);
  // An empty store: the pass ends at once, the next begins one interval after this one did.
  pacer.begin_pass(1'000, 0);
  pacer.end_pass(1'000);
  EXPECT_EQ(pacer.next_step_ms(), 61'000);
  EXPECT_EQ(pacer.pass().number, 1u);
  EXPECT_EQ(pacer.pass().fragments, 0u);
  // A store that shrank during the pass: 2 of the 4 fragments it began with remain.
  pacer.begin_pass(61'000, 4'000);
  EXPECT_EQ(pacer.pass().number, 2u);
  pacer.verified(61'000, 1'000);
  EXPECT_EQ(pacer.next_step_ms(), 76'000);
  pacer.verified(76'000, 1'000);
  pacer.end_pass(91'000);
  EXPECT_EQ(pacer.next_step_ms(), 121'000);
}

TEST(ScrubPacer, AStepRunLateIsCountedFromWhenItBeganWithNoBurstToCatchUp) {
  // A loop busy for 10 s must not read 10 s worth at once afterwards.
  Pacer pacer(config(1'000, 1'000), 0);
  pacer.begin_pass(0, 100'000);
  pacer.verified(10'000, 500);
  EXPECT_EQ(pacer.next_step_ms(), 10'500);
}

TEST(ScrubPacer, AStoreThatGrowsMakesThePassLongerInProportion) {
  // The pass began with 2 fragments' worth; 4 are found.
  Pacer pacer(config(10'000, 4'000'000), 0);
  pacer.begin_pass(0, 2'000);
  std::int64_t now = 0;
  for (int i = 0; i < 4; ++i) {
    pacer.verified(now, 1'000);
    now = *pacer.next_step_ms();
  }
  EXPECT_EQ(now, 20'000);
  pacer.end_pass(now);
  EXPECT_EQ(pacer.next_step_ms(), 20'000);
}

TEST(ScrubPacer, SizesBeyondAnyFragmentAreBoundedAndCannotOverflow) {
  Pacer pacer(config(PacerConfig::interval_ms_max, 1), 0);
  pacer.begin_pass(0, 1);
  pacer.verified(0, std::int64_t{1} << 62);
  // Clamped to the largest fragment: 64 MiB at 1 B/s.
  EXPECT_EQ(pacer.next_step_ms(), std::max<std::int64_t>(limits::fragment_size_bytes_max * 1'000,
                                                         PacerConfig::interval_ms_max));
  pacer.verified(*pacer.next_step_ms(), -5);  // nothing read: due at once
  EXPECT_TRUE(pacer.due(*pacer.next_step_ms()));
}

TEST(ScrubPacer, AnInvalidConfigIsNamed) {
  EXPECT_FALSE(Pacer::invalid(config(0, 1)));
  EXPECT_FALSE(Pacer::invalid(config(PacerConfig::interval_ms_max, 1)));
  EXPECT_TRUE(Pacer::invalid(config(-1, 1)));
  EXPECT_TRUE(Pacer::invalid(config(PacerConfig::interval_ms_max + 1, 1)));
  EXPECT_TRUE(Pacer::invalid(config(1'000, 0)));
  EXPECT_TRUE(Pacer::invalid(PacerConfig{}) == std::nullopt) << "the defaults are valid";
}

}  // namespace
}  // namespace mqds::scrub
