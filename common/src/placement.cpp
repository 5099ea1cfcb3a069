#include "mqds/placement.hpp"

#include <algorithm>

namespace mqds {

namespace {

std::uint64_t splitmix64_finalize(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::uint64_t rendezvous_score(std::string_view client_id, const Hash& fragment) {
  return splitmix64_finalize(fnv1a64(client_id) ^ fragment.prefix_u64());
}

std::vector<ClientId> rendezvous_top(const Hash& fragment, const std::vector<ClientId>& candidates,
                                     std::size_t k) {
  std::vector<std::pair<std::uint64_t, const ClientId*>> scored;
  scored.reserve(candidates.size());
  for (const auto& id : candidates) scored.emplace_back(rendezvous_score(id, fragment), &id);
  const std::size_t n = std::min(k, scored.size());
  // Ties (two ids with one score) are broken by id so every participant agrees.
  auto better = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : *a.second < *b.second;
  };
  std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(n), scored.end(),
                    better);
  std::vector<ClientId> top;
  top.reserve(n);
  for (std::size_t i = 0; i < n; ++i) top.push_back(*scored[i].second);
  return top;
}

std::vector<ClientId> distribution_targets(const DistributionView& view, const Hash& fragment,
                                           std::int64_t size_bytes, std::size_t replicas) {
  std::size_t holders = 0;
  std::vector<ClientId> candidates;
  for (const auto& [id, meta] : view.clients()) {
    if (meta.stored_fragments.count(fragment)) {
      ++holders;
      continue;
    }
    auto free = view.free_bytes(id);
    if (!free || *free >= size_bytes) candidates.push_back(id);
  }
  if (holders >= replicas) return {};
  return rendezvous_top(fragment, candidates, replicas - holders);
}

std::vector<ClientId> ideal_holders(const DistributionView& view, const Hash& fragment,
                                    std::int64_t size_bytes, std::size_t replicas) {
  std::vector<ClientId> candidates;
  for (const auto& [id, meta] : view.clients()) {
    if (meta.stored_fragments.count(fragment)) {
      candidates.push_back(id);
      continue;
    }
    const auto free = view.free_bytes(id);
    if (!free || *free >= size_bytes) candidates.push_back(id);
  }
  return rendezvous_top(fragment, candidates, replicas);
}

}  // namespace mqds
