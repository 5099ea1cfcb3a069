// A torrent server's durable state in LMDB (mqds-edge): its fragments, kept apart while temporary
// (the specification's Fragment Distribution, docs/specification.md), the files it knows and the
// fragment size its data was cut at. The effects of the core are applied in one transaction whose
// commit is durable (fsync at commit), so a kill -9 at any moment leaves either all of a step or
// none of it, and an Obtained or a ClientJoinSucceeded is only ever sent after what it speaks of is
// on disk.
//
// Layout (one named database each; keys are raw bytes):
//   meta       "fragment_size" -> int64 LE
//   files      hash(32) -> size int64 LE, then the fragment hashes (32 each)
//   fragments  hash(32) -> content, persisted or temporary
//   temporary  hash(32) -> "" for a fragment obtained and not yet persisted (the specification's
//   Fragment Distribution, docs/specification.md)
//
// A temporary fragment is kept apart by its mark, not by where its content lies: persisting one
// deletes the mark, so each fragment is written once (on a board, half the flash writes of
// copying it between databases; on the bench, a quarter less time to spread a file). Stores
// written when `temporary` held the content are moved to this layout by verify_and_load.
//
// Content is read straight from LMDB's memory map, never copied: hashing at start-up streams at
// hashing speed, and the pages read are released at once (madvise) so a large store does not
// leave its content in the daemon's resident memory.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mqds/output.hpp"
#include "mqds/store/lmdb.hpp"
#include "mqds/torrent.hpp"

namespace mqds {

// What the integrity check found (docs/specification.md, "Failure handling": the integrity check at
// start-up).
struct IntegrityReport {
  std::size_t fragments_intact = 0;
  std::size_t temporary_intact = 0;
  std::int64_t bytes_checked = 0;
  std::size_t dropped_corrupt = 0;  // content does not hash to its key
  std::size_t dropped_unknown =
      0;  // not a fragment this store can account for (see verify_and_load)
  double seconds = 0;
};

struct EdgeUsage {
  std::size_t files = 0;
  std::size_t fragments = 0;
  std::int64_t fragment_bytes = 0;
  std::size_t temporary = 0;
  std::int64_t temporary_bytes = 0;
};

// Where LMDB maps an environment's file: only pages inside it may be released from memory.
struct MappedRange {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
};

class EdgeStore {
 public:
  // map_size_bytes is address space, not memory: the file grows with what is stored.
  EdgeStore(const std::string& directory, std::size_t map_size_bytes);

  // Verifies every stored fragment against its hash and deletes, in one durable transaction, those
  // that are corrupt or unknown: a key that is not a hash, an empty fragment or one larger than
  // the stored fragment size, content without any fragment size, a temporary mark without content,
  // or (earlier layout) a temporary copy of a fragment that is also persisted (the persisted one
  // stays). `on_drop(hash_hex, why)` is told about each.
  // The snapshot holds what is intact; the tracker settles the rest at join (orphans, conflicts).
  TorrentSnapshot verify_and_load(
      IntegrityReport& report,
      const std::function<void(const std::string&, const std::string&)>& on_drop);

  void apply(const std::vector<StorageEffect>& effects);

  enum class ReadResult : std::uint8_t { ok, not_found, corrupt };
  // Reads a persisted fragment and verifies it against its hash; on ok calls fn with the content
  // (valid during the call only). A corrupt copy is left in place: the caller tells the machine
  // (TorrentServer::fragment_lost), whose effects delete it.
  ReadResult read_fragment(const Hash& hash,
                           const std::function<void(std::span<const std::uint8_t>)>& fn) const;

  // What one step of the background scrub found: a persisted fragment and what its content hashes
  // to.
  struct Scrubbed {
    Hash hash;
    std::int64_t size_bytes = 0;
    Hash actual;
    bool intact() const { return actual == hash; }
  };
  // One step of the background scrub (docs/specification.md, "Failure handling"): in one read
  // transaction, hashes the first persisted fragment whose key follows `after` (the store's first
  // when nullopt); nullopt when none follows, and the pass is over. A key deleted since the last
  // step is no cursor to lose: the walk resumes at the next key there is. Temporary copies are
  // passed over: their hash was checked on arrival, they live only until their round ends, and
  // read_fragment does not serve them. A corrupt copy is left in place, as by read_fragment.
  std::optional<Scrubbed> scrub_next(const std::optional<Hash>& after) const;

  EdgeUsage usage() const;
  std::optional<std::int64_t> fragment_size_bytes() const;

 private:
  lmdb::Env env_;
  MappedRange map_;
  MDB_dbi meta_{}, files_{}, fragments_{}, temporary_{};
};

}  // namespace mqds
