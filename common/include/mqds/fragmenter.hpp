// Cuts a stream of file content into fragments of the service's FragmentSize and hashes them.
//
// Push-based so the core does no I/O: the caller feeds bytes as it reads them (from a file, an
// upload, a socket) in chunks of any size. At most one fragment is buffered, so a file larger
// than memory streams through in constant space. Every fragment but the last has exactly
// fragment_size_bytes; the last is shorter or equal and never empty; an empty file has none.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/hash.hpp"

namespace mqds {

struct Fragment {
  Hash hash;
  std::span<const std::uint8_t> data;  // valid only during the callback
};

struct FileDigest {
  Hash hash;              // over the whole content
  FileMetadata metadata;  // size and fragment sequence
};

class Fragmenter {
 public:
  using FragmentSink = std::function<void(const Fragment&)>;

  // fragment_size_bytes must be in [1, limits::fragment_size_bytes_max].
  Fragmenter(std::int64_t fragment_size_bytes, FragmentSink sink);

  void feed(std::span<const std::uint8_t> bytes);
  // Emits the last (short) fragment, if any, and returns the file's digest. The fragmenter is
  // then ready for the next file.
  FileDigest finish();

  std::int64_t bytes_fed() const { return total_bytes_; }

 private:
  void emit_buffer();

  std::int64_t fragment_size_bytes_;
  FragmentSink sink_;
  std::vector<std::uint8_t> buffer_;
  Sha256 file_hasher_;
  Sha256 fragment_hasher_;
  std::int64_t total_bytes_ = 0;
  std::vector<Hash> sequence_;
};

}  // namespace mqds
