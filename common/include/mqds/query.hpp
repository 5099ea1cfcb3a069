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
//
// Repair, for operators: given what the tracker knows beside its view (RepairFacts), file entries
// also say how many fragments no registered edge holds and how many short ones still have a copy
// on an edge that is away, and a clients answer also lists the edges that are away (for how long,
// and how long their copies still count) with the repair counters. Every such field is optional
// on the wire: an older `mqds` ignores them, and a newer one shows "-" for an older tracker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/view.hpp"

namespace mqds {
class Tracker;  // tracker.hpp includes this header (through fetch_client.hpp)
}

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
  // With RepairFacts (absent from an older tracker): fragments no registered edge holds and that
  // are not staged either, so nobody can read them until a holder comes back; and, of the
  // under-replicated ones, those with a copy on an edge that is away and still counts, which the
  // tracker waits for (up to repair_delay_ms) instead of copying at once.
  // (Initialised, so that the aggregates written before them stay complete.)
  std::optional<std::size_t> fragments_unavailable = std::nullopt;
  std::optional<std::size_t> fragments_short_held_away = std::nullopt;
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

// An edge that left (goodbye or lost) less than repair_delay_ms ago: its copies still count, so
// nothing it held is repaired yet. Durations, not times: the tracker's clock is the broker's
// monotonic one, which means nothing to the requester.
struct AwayClient {
  ClientId id;
  std::int64_t away_ms = 0;        // since it left
  std::int64_t counts_for_ms = 0;  // until its copies stop counting and are repaired
  std::size_t fragments = 0;       // that the tracker's ledger says it holds
  friend bool operator==(const AwayClient&, const AwayClient&) = default;
};

// Repair as a whole, in a clients answer. The counters are since the broker started.
struct RepairSummary {
  std::size_t in_flight = 0;
  std::uint64_t started = 0;
  std::uint64_t ended = 0;
  std::uint64_t failed = 0;
  std::size_t fragments_under_replicated = 0;  // fewer registered holders than Replicas
  std::size_t fragments_unavailable = 0;       // no registered holder, not staged
  std::int64_t delay_ms = 0;                   // repair_delay_ms
  friend bool operator==(const RepairSummary&, const RepairSummary&) = default;
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
  // Kind::clients with RepairFacts: the away edges of the same page [Offset, Offset + Limit) of
  // their own list, which has away_total entries, and the repair summary.
  std::vector<AwayClient> away{};
  std::optional<std::size_t> away_total = std::nullopt;
  std::optional<RepairSummary> repair = std::nullopt;
  friend bool operator==(const Answer&, const Answer&) = default;
};

// What the tracker knows about repair beside its view. The pointers are the tracker's own maps,
// read during answer() only; now_ms and away_since_ms are on the tracker's clock.
struct RepairFacts {
  std::int64_t now_ms = 0;
  std::int64_t repair_delay_ms = 0;
  const std::map<ClientId, std::int64_t>* away_since_ms = nullptr;  // Tracker::away_since()
  const std::map<ClientId, std::set<Hash>>* holdings = nullptr;     // Tracker::holdings()
  std::function<bool(const Hash&)> is_staged;                       // Tracker::is_staged()
  // From Tracker::gauges() and metrics(); called for a clients answer only, since the gauges read
  // every fragment.
  std::function<RepairSummary()> summary;
};
// The facts of a tracker at now_ms (its clock); valid while the tracker is not changed.
RepairFacts repair_facts(const Tracker& tracker, std::int64_t now_ms);

// Without facts the answer has none of the repair fields (the simulation's getter needs none).
Answer answer(const DistributionView& view, std::size_t replicas, const Request& request,
              const RepairFacts* facts = nullptr);

std::string encode_answer(const Answer& answer);
Result<Answer> decode_answer(std::string_view payload) noexcept;

// The requester a response topic belongs to; nullopt outside response_prefix or with wildcards.
std::optional<std::string_view> requester_of_response_topic(std::string_view topic);

}  // namespace mqds::query
