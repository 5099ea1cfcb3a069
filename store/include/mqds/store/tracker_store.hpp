// The tracker's durable state in LMDB: files, fragment sizes, the Revision, the holdings ledger
// and the staged content of fragments not yet distributed. Effects of the core are applied in one
// transaction whose commit is durable (LMDB's default: fsync at commit), so a kill -9 at any
// moment leaves either all of a step or none of it.
//
// Layout (one named database each; keys are raw bytes):
//   meta      "fragment_size" -> int64 LE, "revision" -> uint64 LE
//   files     hash(32)        -> size int64 LE, then the fragment hashes (32 each)
//   fragments hash(32)        -> size int64 LE
//   staged    hash(32)        -> content
//   holdings  client id, NUL, hash(32) -> empty
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mqds/output.hpp"
#include "mqds/store/lmdb.hpp"
#include "mqds/tracker.hpp"

namespace mqds {

class TrackerStore {
 public:
  TrackerStore(const std::string& directory, std::size_t map_size_bytes);

  // The FragmentSize the stored data was cut at, if any data was ever stored.
  std::optional<std::int64_t> fragment_size_bytes() const;
  void set_fragment_size(std::int64_t bytes);

  TrackerSnapshot load() const;
  void apply(const std::vector<StorageEffect>& effects);

  // Stages fragment content; all of `fragments` in one durable transaction.
  void stage(const std::vector<std::pair<Hash, std::span<const std::uint8_t>>>& fragments);
  // Calls fn with the staged content of `hash` (valid during the call); false if not staged.
  bool read_staged(const Hash& hash, const std::function<void(std::span<const std::uint8_t>)>& fn) const;

 private:
  lmdb::Env env_;
  MDB_dbi meta_{}, files_{}, fragments_{}, staged_{}, holdings_{};
};

}  // namespace mqds
