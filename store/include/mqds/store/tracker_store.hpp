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
//   uploads   upload id(16)   -> declared hash(32), size int64 LE, uploader client id
//   parts     upload id(16), index uint32 BE -> fragment hash(32)
// Staged content is addressed by its hash, which the fragmenter computed from the bytes
// themselves, so it is correct whatever file it belongs to. An upload in progress writes its
// fragments to `staged` at once and lists them in `parts`; they become distributable only when a
// verified file that references them is published (load() counts as staged only fragments that a
// published file references). A failed upload deletes what no one else references (DropStaged).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mqds/ingest.hpp"
#include "mqds/output.hpp"
#include "mqds/store/lmdb.hpp"
#include "mqds/tracker.hpp"

namespace mqds {

// Also what an ingest::Receiver reads back to resume an upload after a restart; it writes uploads
// with storage effects (PutUpload, PutUploadParts, DeleteUpload) like everything else.
class TrackerStore final : public ingest::DurableUploads {
 public:
  TrackerStore(const std::string& directory, std::size_t map_size_bytes);

  // The FragmentSize the stored data was cut at, if any data was ever stored.
  std::optional<std::int64_t> fragment_size_bytes() const;
  void set_fragment_size(std::int64_t bytes);

  TrackerSnapshot load() const;
  void apply(const std::vector<StorageEffect>& effects);

  // Calls fn with the staged content of `hash` (valid during the call); false if not staged.
  bool read_staged(const Hash& hash,
                   const std::function<void(std::span<const std::uint8_t>)>& fn) const;

  std::optional<UploadRecord> find_upload(const Uuid& id) const override;
  std::vector<Uuid> upload_ids() const override;
  // Calls fn(hash, content) for the upload's fragments in order; throws if one is not staged.
  void read_upload_parts(
      const Uuid& upload,
      const std::function<void(const Hash&, std::span<const std::uint8_t>)>& fn) const override;

 private:
  lmdb::Env env_;
  MDB_dbi meta_{}, files_{}, fragments_{}, staged_{}, holdings_{}, uploads_{}, parts_{};
};

}  // namespace mqds
