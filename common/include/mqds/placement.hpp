// Placement: which registered clients should store a fragment.
//
// Rendezvous (highest-random-weight) hashing: every client gets a score per fragment from a hash
// of (client id, fragment hash) and the highest scores win. Every participant computes the same
// answer from the same view, with no coordination, and a client joining or leaving only moves the
// fragments whose top k it enters or leaves (about k/n of them).
//
// The score is splitmix64(fnv1a64(client id) XOR first 8 bytes of the fragment hash). It is part
// of the protocol: changing it changes where every torrent server expects fragments to go.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/view.hpp"

namespace mqds {

std::uint64_t rendezvous_score(std::string_view client_id, const Hash& fragment);

// The k clients of `candidates` with the highest scores for `fragment`, best first.
std::vector<ClientId> rendezvous_top(const Hash& fragment, const std::vector<ClientId>& candidates,
                                     std::size_t k);

// The clients that should receive the fragment now so that it reaches `replicas` holders: the
// current holders count toward the target and never move; the rest are the best-scored clients
// with enough free capacity (capacity minus the sizes of what they already store).
std::vector<ClientId> distribution_targets(const DistributionView& view, const Hash& fragment,
                                           std::int64_t size_bytes, std::size_t replicas);

// The clients placement would choose for the fragment if no copy existed yet: the `replicas`
// best-scored registered clients that hold it or have room for it, best first. Copies move toward
// it (rebalancing, when clients join or capacities change) and the holders it leaves out are the
// ones whose copies go when a fragment has more than `replicas` (trimming). A holder counts as
// having room, so a full client keeps what it holds.
std::vector<ClientId> ideal_holders(const DistributionView& view, const Hash& fragment,
                                    std::int64_t size_bytes, std::size_t replicas);

}  // namespace mqds
