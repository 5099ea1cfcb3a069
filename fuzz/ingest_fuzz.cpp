// The ingest codec as the tracker receives it from uploaders (mqds/ingest/begin, /abort, the topic
// of every chunk) and as `mqds put` receives the tracker's answers (mqds/ingest/status).
//
// The first byte picks the decoder: 0 decode_begin, 1 decode_abort, 2 decode_status,
// 3 decode_chunk_topic (the rest is then a topic, not a payload).
//
// Contract: no decoder throws; what is accepted re-encodes (encode, chunk_topic) to something that
// decodes to the same value; upload_id_of, which names the upload of a refused begin or abort,
// names the decoded one when the payload is accepted.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "fuzz_check.hpp"
#include "mqds/ingest.hpp"

using namespace mqds;

namespace {

template <class T, class Decode>
void round_trip(std::string_view payload, Decode decode_fn, std::string_view what) {
  auto decoded = decode_fn(payload);
  if (!decoded) return;
  const std::string encoded = ingest::encode(*decoded);
  auto again = decode_fn(encoded);
  fuzz::check(again.ok(), what, encoded + (again.ok() ? "" : " -> " + again.error().to_string()));
  fuzz::check(*again == *decoded, what, encoded);
  fuzz::check(ingest::encode(*again) == encoded, "ingest::encode is canonical", encoded);
  if constexpr (!std::is_same_v<T, ingest::Status>) {
    const auto id = ingest::upload_id_of(payload);
    fuzz::check(id && *id == decoded->upload_id, "upload_id_of names an accepted upload's id");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  fuzz::no_throw("the ingest codec never throws", [&] {
    switch (data[0] % 4) {
      case 0:
        round_trip<ingest::Begin>(rest, ingest::decode_begin, "Begin round-trips");
        (void)ingest::upload_id_of(rest);
        break;
      case 1: round_trip<ingest::Abort>(rest, ingest::decode_abort, "Abort round-trips"); break;
      case 2: round_trip<ingest::Status>(rest, ingest::decode_status, "Status round-trips"); break;
      default: {
        auto address = ingest::decode_chunk_topic(rest);
        if (!address) return;
        const std::string topic = ingest::chunk_topic(address->upload_id, address->offset_bytes);
        auto again = ingest::decode_chunk_topic(topic);
        fuzz::check(again.ok() && *again == *address, "a chunk topic round-trips", topic);
        break;
      }
    }
  });
  return 0;
}
