// Query: what the tracker knows, for `mqds ls`, `mqds status` and `mqds get` (an extension of the
// specification; the README documents it).
//
//   request  topic    mqds/query/request
//            props    Response Topic  mqds/query/response/<requester client id>[/...], Correlation
//            Data payload  {"Query":"files"|"clients"|"file","Hash":"<64 hex>" (file
//            only),"Offset":0,"Limit":1000}
//   answer   topic    the Response Topic, to the requester alone, QoS 1, the Correlation Data
//   echoed
//            payload  JSON, see encode_answer(); {"Error":"..."} when the request is not understood
//
// Lists are paged (Offset, Limit up to page_max, Total), so an answer stays small whatever the size
// of the service. The answer is computed from the tracker's view on the broker's thread: one pass
// over the holdings of every client, then the page.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/view.hpp"

namespace mqds::query {

inline constexpr std::string_view request_topic = "mqds/query/request";
inline constexpr std::string_view response_prefix = "mqds/query/response/";
inline constexpr std::size_t page_max = 10'000;
inline constexpr std::size_t page_default = 1'000;
inline constexpr std::size_t request_payload_bytes_max = 512;

enum class Kind : std::uint8_t { files, clients, file };
std::string_view kind_name(Kind kind);

struct Request {
  Kind kind = Kind::files;
  std::optional<Hash> hash;  // Kind::file
  std::size_t offset = 0;
  std::size_t limit = page_default;
  friend bool operator==(const Request&, const Request&) = default;
};

std::string encode_request(const Request& request);
// Never throws; Limit is clamped to page_max.
Result<Request> decode_request(std::string_view payload) noexcept;

struct FileSummary {
  Hash hash;
  std::int64_t size_bytes = 0;
  std::size_t fragments = 0;
  std::size_t replicas_min = 0;                // the fewest holders any of its fragments has
  std::size_t fragments_under_replicated = 0;  // fragments with fewer holders than Replicas
  friend bool operator==(const FileSummary&, const FileSummary&) = default;
};

struct ClientSummary {
  ClientId id;
  std::set<std::string> endpoints;
  std::size_t fragments = 0;
  std::int64_t bytes = 0;
  std::optional<std::int64_t> capacity_bytes;
  friend bool operator==(const ClientSummary&, const ClientSummary&) = default;
};

struct FragmentHolders {
  Hash hash;
  std::int64_t size_bytes = 0;
  std::vector<ClientId> holders;
  friend bool operator==(const FragmentHolders&, const FragmentHolders&) = default;
};

struct Answer {
  std::optional<std::string> error;
  std::size_t replicas = 0;
  std::int64_t fragment_size_bytes = 0;
  std::uint64_t revision = 0;
  std::size_t total = 0;   // entries in the whole list (files, clients, or the file's fragments)
  std::size_t offset = 0;  // of the first entry of this page
  std::vector<FileSummary> files;
  std::vector<ClientSummary> clients;
  std::optional<FileSummary> file;         // Kind::file
  std::vector<FragmentHolders> fragments;  // Kind::file, in sequence order
  friend bool operator==(const Answer&, const Answer&) = default;
};

Answer answer(const DistributionView& view, std::size_t replicas, const Request& request);

std::string encode_answer(const Answer& answer);
Result<Answer> decode_answer(std::string_view payload) noexcept;

// The requester a response topic belongs to; nullopt outside response_prefix or with wildcards.
std::optional<std::string_view> requester_of_response_topic(std::string_view topic);

}  // namespace mqds::query
