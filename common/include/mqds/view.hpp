// The Distribution View: what every participant believes about files, fragments and registered
// clients. The tracker's copy is authoritative; a torrent server's copy equals it at the same
// Revision. Only the operations below change it, so both sides apply an event the same way.
//
// Invariants kept by the operations (check_invariants() verifies them all; the operations assert
// the cheap ones as they go):
// - every fragment a client stores has a FragmentMetadata entry, of a positive size;
// - a client's used bytes are the sum of the sizes of the fragments it stores (cached, derived),
//   and the cache has an entry for exactly the registered clients;
// - every file's fragment sequence matches its size at the view's fragment size, once known.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "mqds/events.hpp"

namespace mqds {

struct JoinDenial {
  // One denial:: code: the first failed check (fragment size, hash algorithm, endpoint).
  std::uint32_t reason_code = denial::other;
  std::string reason;
};

// What the tracker answers to an acceptable ClientJoinRequested.
struct JoinAcceptance {
  // For ClientJoinAccepted.
  FileInfos add_file_infos;
  FragmentInfos add_fragment_infos;
  std::set<Hash> remove_file_infos;
  std::set<Hash> remove_fragment_infos;
  std::map<ClientId, ClientMetadata> clients;  // the other registered clients
  // For the registration once ClientJoinSucceeded arrives, and ClientRegistered.
  ClientMetadata client;
  FileInfos new_files;          // files the service did not know
  FragmentInfos new_fragments;  // fragments the service did not know
};

using JoinPlan = std::variant<JoinAcceptance, JoinDenial>;

class DistributionView {
 public:
  std::int64_t fragment_size_bytes() const { return fragment_size_bytes_; }  // 0: not yet known
  std::uint64_t revision() const { return revision_; }
  const FileInfos& files() const { return files_; }
  const FragmentInfos& fragments() const { return fragments_; }
  const std::map<ClientId, ClientMetadata>& clients() const { return clients_; }

  void set_fragment_size(std::int64_t bytes) { fragment_size_bytes_ = bytes; }
  void set_revision(std::uint64_t revision) { revision_ = revision; }

  void put_file(const Hash& hash, FileMetadata metadata);
  void remove_file(const Hash& hash);
  void put_fragment(const Hash& hash, std::int64_t size_bytes);
  // Also removes it from every client that stores it.
  void remove_fragment(const Hash& hash);
  // Registers or replaces a client. Fragments it stores that have no metadata yet must have been
  // put first; unknown ones are ignored.
  void put_client(const ClientId& id, ClientMetadata metadata);
  void remove_client(const ClientId& id);
  bool is_registered(const ClientId& id) const { return clients_.count(id) != 0; }

  // ClientRegistered.
  void apply_registered(const ClientRegistered& event);
  // FragmentDistributionEnded: the fragment's metadata, and the receivers that are registered now
  // store it.
  void apply_ended(const FragmentDistributionEnded& event);

  std::int64_t used_bytes(const ClientId& id) const;
  // nullopt: the client declared no capacity (unlimited) or is unknown.
  std::optional<std::int64_t> free_bytes(const ClientId& id) const;
  bool holds(const ClientId& id, const Hash& fragment) const;
  std::size_t holder_count(const Hash& fragment) const;
  std::vector<ClientId> holders(const Hash& fragment) const;

  // The expected size of each fragment of a file at this fragment size: all FragmentSize but the
  // last, which holds the rest. nullopt when the metadata is inconsistent with the size.
  static std::optional<std::vector<std::int64_t>> expected_fragment_sizes(
      const FileMetadata& file, std::int64_t fragment_size_bytes);

  // The tracker's join check (the specification's Client Join with timeouts,
  // docs/specification.md): denial codes, then what the joining client must add and remove, and
  // what it brings that is new. `endpoints_claimed` are the endpoints of clients with a join in
  // progress, which conflict as much as those of registered clients. Of the request's
  // ObtainedFragments, those in `named_for_client` (an Ended named the client for them) count as
  // stored; the others must be deleted.
  JoinPlan plan_join(const ClientId& id, const ClientJoinRequested& request,
                     const std::map<ClientId, std::set<std::string>>& endpoints_claimed,
                     const std::set<Hash>& named_for_client) const;
  // True when the new files and fragments of an acceptance still agree with the view (the view
  // may have changed between ClientJoinAccepted and ClientJoinSucceeded).
  bool still_consistent(const JoinAcceptance& acceptance) const;

  // The first invariant that does not hold, in words; nothing when all hold. Linear in the size
  // of the view: for tests and the simulation's checker, not for every operation.
  std::optional<std::string> check_invariants() const;

  // Data equality; the used-bytes cache is derived and not compared.
  friend bool operator==(const DistributionView& a, const DistributionView& b) {
    return a.fragment_size_bytes_ == b.fragment_size_bytes_ && a.revision_ == b.revision_ &&
           a.files_ == b.files_ && a.fragments_ == b.fragments_ && a.clients_ == b.clients_;
  }

 private:
  std::int64_t fragment_size_bytes_ = 0;
  std::uint64_t revision_ = 0;
  FileInfos files_;
  FragmentInfos fragments_;
  std::map<ClientId, ClientMetadata> clients_;
  std::map<ClientId, std::int64_t> used_bytes_;
};

}  // namespace mqds
