// Fetch: getting a stored fragment back from a torrent server, through the broker.
//
// Boards sit behind NAT and open no port, so a fragment is fetched with MQTT 5 request/response
// (an extension of the specification; the README documents it):
//
//   request   topic    mqds/fetch/request/<edge client id>
//             props    Response Topic  mqds/fetch/response/<requester client id>[/<anything>]
//                      Correlation Data (any bytes; echoed back)
//             payload  {"Hash":"<64 hex>","Offset":0,"Length":1048576}   Offset, Length optional
//   response  topic    the request's Response Topic, QoS 1
//             props    Correlation Data as in the request
//                      User Property "Status": ok | not-found | bad-request | busy
//                      User Property "Size":   the fragment's size in bytes (ok)
//                      User Property "Offset": where the payload starts in the fragment (ok)
//                      User Property "Reason": why, in words (all but ok)
//             payload  the fragment's raw bytes [Offset, Offset + Length), no Base64 (ok); else
//             empty
//
// A response carries at most chunk_bytes_max bytes; a larger fragment is fetched in several
// requests. The edge verifies the fragment's hash before every answer (a corrupt copy is deleted
// and answered not-found) and the requester verifies the assembled fragment again.
//
// The edge's side is the machine fetch::Server (mqds/fetch_server.hpp), the requester's side
// fetch::Client (mqds/fetch_client.hpp); this header holds what both share: the codecs and the
// topic rules, which the plugin's gate (plugin/fetch_gate.hpp) uses too.
//
// Who may fetch is the broker's decision: the tracker plugin lets only its fetch_users publish
// requests, refuses a Response Topic that is not the requester's own, and delivers each response
// to its requester alone. The endpoint a torrent server announces for fetching is
// "mqtt:mqds/fetch/request/<client id>": the topic on the broker both are connected to.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "mqds/events.hpp"

namespace mqds::fetch {

inline constexpr std::string_view request_prefix = "mqds/fetch/request/";
inline constexpr std::string_view response_prefix = "mqds/fetch/response/";
inline constexpr std::string_view endpoint_scheme = "mqtt:";
inline constexpr std::int64_t chunk_bytes_max = 1024 * 1024;
// A request is a small JSON object; anything larger is not one.
inline constexpr std::size_t request_payload_bytes_max = 512;
inline constexpr std::size_t correlation_bytes_max = 256;

inline constexpr std::string_view property_status = "Status";
inline constexpr std::string_view property_size = "Size";
inline constexpr std::string_view property_offset = "Offset";
inline constexpr std::string_view property_reason = "Reason";
// Proof that a requester read an answer: an edge puts an unpredictable token in each answer, and
// the requester echoes it in a later request (one User Property per answer read). The broker keeps
// the bytes of an answer charged to its requester until then (plugin_opt_fetch_bytes_per_client).
inline constexpr std::string_view property_receipt = "Receipt";
inline constexpr std::size_t receipt_bytes_max = 64;

// The requester the tracker fetches as when it repairs a fragment (mqds/tracker.hpp): its answers
// arrive on response_topic(tracker_requester, "repair"), which the plugin takes for the tracker
// and delivers to nobody. '$' keeps it apart from the client ids of real requesters, which the
// plugin does not let fetch with it.
inline constexpr std::string_view tracker_requester = "$mqds-tracker";

// A request to publish at QoS 1 with MQTT 5 Response Topic and Correlation Data.
struct OutgoingRequest {
  std::string topic;
  std::string payload;
  std::string response_topic;
  std::string correlation_data;
};

enum class Status : std::uint8_t { ok, not_found, bad_request, busy };
std::string_view status_name(Status status);
std::optional<Status> parse_status(std::string_view name);

struct Request {
  Hash hash;
  std::int64_t offset_bytes = 0;
  std::int64_t length_bytes = chunk_bytes_max;  // at most chunk_bytes_max
  friend bool operator==(const Request&, const Request&) = default;
};

std::string encode_request(const Request& request);
// Never throws. Length is clamped to chunk_bytes_max; negative values are errors.
Result<Request> decode_request(std::string_view payload) noexcept;

// MQTT 5 User Properties, name and value, in the order they travel (the same type as the
// adapters' runtime::UserProperties, so they pass without a copy).
using UserProperties = std::vector<std::pair<std::string, std::string>>;

// What a response says besides its payload: its User Properties.
struct ResponseHeader {
  Status status = Status::ok;
  std::int64_t size_bytes = 0;    // ok: the whole fragment's size
  std::int64_t offset_bytes = 0;  // ok: where the payload starts in the fragment
  std::string reason;             // all but ok: why, in words
  friend bool operator==(const ResponseHeader&, const ResponseHeader&) = default;
};

// Status first, then Size and Offset (ok) or Reason (all but ok).
UserProperties encode_response_properties(const ResponseHeader& header);
// Never throws. The first property of each name counts, others are ignored. Status must be one
// of the four names; Size and Offset (ok only) decimal integers from 0 to the largest fragment
// size. Reason is optional and cut to limits::reason_bytes_max: the requester shows it, so a
// hostile edge must not make that text huge.
Result<ResponseHeader> decode_response_properties(const UserProperties& properties) noexcept;

// "mqds/fetch/request/<edge>", and the endpoint URI a torrent server announces for it.
std::string request_topic(std::string_view edge_client_id);
std::string endpoint_of(std::string_view edge_client_id);
// The request topic an endpoint names, if it is a fetch endpoint ("mqtt:<topic under
// request_prefix>").
std::optional<std::string> request_topic_of_endpoint(std::string_view endpoint);
// The edge a request topic addresses ("" or a topic outside request_prefix: nullopt).
std::optional<std::string_view> edge_of_request_topic(std::string_view topic);

// "mqds/fetch/response/<requester>/<suffix>" (suffix may be empty: no trailing slash).
std::string response_topic(std::string_view requester_client_id, std::string_view suffix = {});
// The requester a response topic belongs to; nullopt outside response_prefix or with wildcards.
std::optional<std::string_view> requester_of_response_topic(std::string_view topic);

}  // namespace mqds::fetch
