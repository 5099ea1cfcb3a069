// Bounds on everything that arrives from the network. A payload that exceeds one of them is
// rejected with an error naming the field, before anything is allocated for it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mqds::limits {

// One MQTT payload. Mosquitto's own ceiling is 268,435,455 bytes; a join request of a board with
// millions of fragments stays far below this one.
inline constexpr std::size_t event_payload_bytes_max = 256u * 1024u * 1024u;

inline constexpr std::int64_t fragment_size_bytes_max = 64 * 1024 * 1024;
// A file of 64 TiB at the largest fragment size; the real ceiling is the sequence length below.
inline constexpr std::int64_t file_size_bytes_max = std::int64_t{1} << 46;

inline constexpr std::size_t client_id_bytes_max = 256;
inline constexpr std::size_t endpoint_bytes_max = 1024;
inline constexpr std::size_t endpoints_per_client_max = 16;
inline constexpr std::size_t reason_bytes_max = 1024;
inline constexpr std::size_t hash_algorithm_bytes_max = 32;

inline constexpr std::size_t fragments_per_file_max = 4u * 1024u * 1024u;
inline constexpr std::size_t files_per_event_max = 1024u * 1024u;
inline constexpr std::size_t fragments_per_event_max = 8u * 1024u * 1024u;
inline constexpr std::size_t clients_per_event_max = 10000;
inline constexpr std::size_t receivers_per_event_max = 1024;
inline constexpr std::size_t delivery_encodings_max = 8;
inline constexpr std::size_t delivery_encoding_bytes_max = 32;
inline constexpr std::size_t extensions_max = 16;
inline constexpr std::size_t extension_bytes_max = 32;
// Nesting of a CBOR payload (a Delivered is two levels deep).
inline constexpr std::size_t cbor_depth_max = 8;

}  // namespace mqds::limits
