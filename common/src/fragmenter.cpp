// Theory of operation: feed() hashes every byte into the file hash as it arrives and cuts the
// stream at multiples of fragment_size_bytes. A fragment that lies whole inside the caller's span
// is hashed and handed to the sink straight from that span; only a fragment that straddles two
// feed() calls is gathered in buffer_, which therefore never holds more than one fragment.
#include "mqds/fragmenter.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "mqds/limits.hpp"

namespace mqds {

namespace {

void emit(std::span<const std::uint8_t> data, Sha256& hasher, std::vector<Hash>& sequence,
          const Fragmenter::FragmentSink& sink) {
  // The sequence is what a file's metadata carries on the wire, so it is bounded like one.
  if (sequence.size() >= limits::fragments_per_file_max) {
    throw std::length_error("Fragmenter: file needs more than " +
                            std::to_string(limits::fragments_per_file_max) +
                            " fragments (limits::fragments_per_file_max)");
  }
  hasher.update(data);
  const Fragment fragment{hasher.finish(), data};
  sequence.push_back(fragment.hash);
  if (sink) sink(fragment);
}

}  // namespace

Fragmenter::Fragmenter(std::int64_t fragment_size_bytes, FragmentSink sink)
    : fragment_size_bytes_(fragment_size_bytes), sink_(std::move(sink)) {
  if (fragment_size_bytes < 1 || fragment_size_bytes > limits::fragment_size_bytes_max) {
    throw std::invalid_argument("Fragmenter: fragment_size_bytes " +
                                std::to_string(fragment_size_bytes) + " is outside [1, " +
                                std::to_string(limits::fragment_size_bytes_max) + "]");
  }
}

void Fragmenter::feed(std::span<const std::uint8_t> bytes) {
  const auto fragment_size = static_cast<std::size_t>(fragment_size_bytes_);
  try {
    file_hasher_.update(bytes);
    total_bytes_ += static_cast<std::int64_t>(bytes.size());
    while (!bytes.empty()) {
      if (buffer_.empty() && bytes.size() >= fragment_size) {
        emit(bytes.first(fragment_size), fragment_hasher_, sequence_, sink_);
        bytes = bytes.subspan(fragment_size);
        continue;
      }
      const std::size_t take = std::min(fragment_size - buffer_.size(), bytes.size());
      // Grow geometrically like the vector would, but never past one fragment: a small file
      // with a large fragment size should not cost a whole fragment of memory.
      const std::size_t needed = buffer_.size() + take;
      if (needed > buffer_.capacity())
        buffer_.reserve(std::min(fragment_size, std::max(needed, 2 * buffer_.capacity())));
      buffer_.insert(buffer_.end(), bytes.begin(),
                     bytes.begin() + static_cast<std::ptrdiff_t>(take));
      bytes = bytes.subspan(take);
      if (buffer_.size() == fragment_size) emit_buffer();
    }
  } catch (...) {
    // The file cannot be completed consistently after a failed sink or an oversized file: drop it
    // so the object stays usable for the next file. With the buffer empty, finish() emits nothing.
    buffer_.clear();
    (void)finish();
    throw;
  }
}

FileDigest Fragmenter::finish() {
  try {
    if (!buffer_.empty()) emit_buffer();
  } catch (...) {
    buffer_.clear();
    (void)finish();
    throw;
  }
  FileDigest digest{file_hasher_.finish(), FileMetadata{total_bytes_, std::move(sequence_)}};
  total_bytes_ = 0;
  sequence_.clear();  // a moved-from vector is valid but unspecified
  return digest;
}

void Fragmenter::emit_buffer() {
  emit(buffer_, fragment_hasher_, sequence_, sink_);
  buffer_.clear();
}

}  // namespace mqds
