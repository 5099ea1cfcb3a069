#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "mqds/placement.hpp"
#include "mqds/random.hpp"

namespace mqds {
namespace {

Hash random_hash(SplitMix64& rng) {
  Hash h;
  for (std::size_t i = 0; i < Hash::size_bytes; i += 8) {
    const std::uint64_t v = rng.next_u64();
    for (std::size_t b = 0; b < 8; ++b) h.digest[i + b] = static_cast<std::uint8_t>(v >> (8 * b));
  }
  return h;
}

std::vector<ClientId> clients(int n) {
  std::vector<ClientId> ids;
  for (int i = 0; i < n; ++i) ids.push_back("edge-" + std::to_string(i));
  return ids;
}

TEST(Placement, ScoreIsAPureFunctionOfClientAndFragment) {
  SplitMix64 rng(1);
  const Hash h = random_hash(rng);
  EXPECT_EQ(rendezvous_score("edge-1", h), rendezvous_score("edge-1", h));
  EXPECT_NE(rendezvous_score("edge-1", h), rendezvous_score("edge-2", h));
}

TEST(Placement, TopKIsIndependentOfCandidateOrder) {
  SplitMix64 rng(2);
  auto ids = clients(20);
  for (int f = 0; f < 100; ++f) {
    const Hash h = random_hash(rng);
    auto a = rendezvous_top(h, ids, 3);
    auto shuffled = ids;
    std::reverse(shuffled.begin(), shuffled.end());
    EXPECT_EQ(a, rendezvous_top(h, shuffled, 3));
    EXPECT_EQ(std::set<ClientId>(a.begin(), a.end()).size(), 3u);
  }
}

TEST(Placement, TenThousandFragmentsOverTwentyClientsAreWithinTenPercentOfTheMean) {
  SplitMix64 rng(3);
  const auto ids = clients(20);
  std::map<ClientId, int> count;
  for (int f = 0; f < 10'000; ++f)
    for (const auto& id : rendezvous_top(random_hash(rng), ids, 3)) ++count[id];
  const double mean = 10'000.0 * 3 / 20;
  ASSERT_EQ(count.size(), 20u);
  for (const auto& [id, n] : count) {
    EXPECT_GE(n, mean * 0.9) << id;
    EXPECT_LE(n, mean * 1.1) << id;
  }
}

TEST(Placement, ATwentyFirstClientMovesAtMostOnePointTwoTimesKOverTwentyOneOfThePlacements) {
  SplitMix64 rng(4);
  const auto before = clients(20);
  const auto after = clients(21);
  const std::size_t k = 3;
  int changed_fragments = 0, moved_replicas = 0;
  const int fragments = 10'000;
  for (int f = 0; f < fragments; ++f) {
    const Hash h = random_hash(rng);
    auto a = rendezvous_top(h, before, k);
    auto b = rendezvous_top(h, after, k);
    std::set<ClientId> sa(a.begin(), a.end()), sb(b.begin(), b.end());
    if (sa != sb) ++changed_fragments;
    for (const auto& id : sb) moved_replicas += sa.count(id) == 0;
    // Only the newcomer can enter a fragment's top k.
    for (const auto& id : sb) {
      if (!sa.count(id)) {
        EXPECT_EQ(id, "edge-20");
      }
    }
  }
  const double bound = 1.2 * static_cast<double>(k) / 21.0;
  EXPECT_LE(static_cast<double>(changed_fragments) / fragments, bound);
  // Each changed fragment moves exactly one replica, to the newcomer.
  EXPECT_EQ(moved_replicas, changed_fragments);
}

TEST(Placement, RemovingAClientMovesOnlyItsReplicas) {
  SplitMix64 rng(5);
  const auto before = clients(21);
  auto after = before;
  after.erase(after.begin() + 7);
  for (int f = 0; f < 2'000; ++f) {
    const Hash h = random_hash(rng);
    auto a = rendezvous_top(h, before, 3);
    auto b = rendezvous_top(h, after, 3);
    const bool had = std::find(a.begin(), a.end(), "edge-7") != a.end();
    if (!had) {
      EXPECT_EQ(a, b);
    }
  }
}

DistributionView view_with(int n, std::optional<std::int64_t> capacity = std::nullopt) {
  DistributionView view;
  view.set_fragment_size(100);
  for (const auto& id : clients(n)) view.put_client(id, ClientMetadata{{}, {}, capacity});
  return view;
}

TEST(Placement, TargetsCountCurrentHoldersAndNeverMoveThem) {
  SplitMix64 rng(6);
  auto view = view_with(10);
  const Hash h = random_hash(rng);
  const auto first = distribution_targets(view, h, 100, 3);
  ASSERT_EQ(first.size(), 3u);
  // The least-preferred client already holds it: only two more are needed, and they are the best
  // two.
  auto ranking = rendezvous_top(h, clients(10), 10);
  const ClientId holder = ranking.back();
  view.put_fragment(h, 100);
  auto meta = view.clients().at(holder);
  meta.stored_fragments.insert(h);
  view.put_client(holder, meta);
  const auto second = distribution_targets(view, h, 100, 3);
  EXPECT_EQ(second, (std::vector<ClientId>{ranking[0], ranking[1]}));
  // With three holders nothing more is needed.
  for (const auto& id : second) {
    auto m = view.clients().at(id);
    m.stored_fragments.insert(h);
    view.put_client(id, m);
  }
  EXPECT_TRUE(distribution_targets(view, h, 100, 3).empty());
}

TEST(Placement, ClientsWithoutFreeCapacityAreSkipped) {
  SplitMix64 rng(7);
  auto view = view_with(5, 150);
  const Hash stored = random_hash(rng);
  view.put_fragment(stored, 100);
  const Hash next = random_hash(rng);
  const auto preferred = rendezvous_top(next, clients(5), 5);
  // Fill the favourite client: 100 of 150 bytes used, a 100-byte fragment no longer fits.
  auto meta = view.clients().at(preferred[0]);
  meta.stored_fragments.insert(stored);
  view.put_client(preferred[0], meta);
  EXPECT_EQ(view.free_bytes(preferred[0]), 50);
  const auto targets = distribution_targets(view, next, 100, 2);
  EXPECT_EQ(targets, (std::vector<ClientId>{preferred[1], preferred[2]}));
  // A 50-byte fragment still fits.
  EXPECT_EQ(distribution_targets(view, next, 50, 1), (std::vector<ClientId>{preferred[0]}));
}

TEST(Placement, FewerEligibleClientsThanReplicasGivesAllOfThem) {
  SplitMix64 rng(8);
  auto view = view_with(2);
  EXPECT_EQ(distribution_targets(view, random_hash(rng), 100, 3).size(), 2u);
  EXPECT_TRUE(distribution_targets(view_with(0), random_hash(rng), 100, 3).empty());
}

}  // namespace
}  // namespace mqds
