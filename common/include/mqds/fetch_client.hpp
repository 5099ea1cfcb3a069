// The requester's side of fetch (mqds/fetch.hpp) as a state machine with no I/O: which fragment
// of a file to ask of which edge, and what to make of each answer.
//
// Theory of operation. The adapter (`mqds get`, or the simulation) asks the tracker for the file
// (query, mqds/query.hpp) and turns the answers into the fragments to fetch with plan_fetch():
// each fragment's hash, size, place in the file, and its holders with the request topic of each.
// It marks the fragments it already has (a resumed get: the adapter verified them) and starts a
// Client, which is given the time with every input and never reads a clock.
//
// - At most `parallel` fragments are in flight or waiting to retry at once; the others wait in
//   file order. Fragment i starts with its holder i mod (holders), so a file spreads over its
//   edges, and then tries the rest in turn.
// - A request asks for one chunk (at most chunk_bytes_max) at the offset received so far. Its
//   Correlation Data is 16 bytes drawn from the Random, in hex: an answer counts only if its
//   Correlation Data names a request in flight AND it came on the response topic the requests
//   named. Anything else is ignored, so a client that guessed a predictable sequence cannot inject
//   answers, and an answer that arrives after its request timed out changes nothing.
// - busy, or a request the broker refused (the tracker plugin refuses a requester owed more bytes
//   than its budget until answers arrive, plugin_opt_fetch_bytes_per_client): the same holder
//   again after busy_retry_delay_ms, at most busy_retries_max times in a row for one holder.
//   not-found, bad-request, an answer without a status or not understood, one whose Offset or Size
//   does not fit the request, an empty or oversized payload, no answer within request_timeout_ms,
//   and bad data (the assembled fragment does not hash to its hash): the next holder, from the
//   fragment's start, and the holder's problem is kept for the report.
// - A fragment complete and verified comes out in ClientOutput::completed, for the adapter to
//   write at its offset. A fragment whose holders are all exhausted is missing. finished() once
//   nothing waits, is in flight or retries; missing() then says which fragments could not be had
//   and what each holder answered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mqds/fetch.hpp"
#include "mqds/query.hpp"
#include "mqds/random.hpp"
#include "mqds/result.hpp"

namespace mqds::fetch {

struct Holder {
  ClientId id;
  std::string request_topic;
  friend bool operator==(const Holder&, const Holder&) = default;
};

struct FileFragment {
  Hash hash;
  std::int64_t size_bytes = 0;
  std::int64_t offset_bytes = 0;  // in the file
  std::vector<Holder> holders;
  bool present = false;  // the adapter has it already, verified
};

// The file's fragments in sequence order with their offsets, each holder with the request topic
// its fetch endpoint names (request_topic(id) if the tracker lists no fetch endpoint for it).
// `clients` may be every client the tracker knows or only the holders. An Error when the
// fragments do not add up to the file's size.
Result<std::vector<FileFragment>> plan_fetch(const query::FileSummary& file,
                                             const std::vector<query::FragmentHolders>& fragments,
                                             const std::vector<query::ClientSummary>& clients);

struct ClientConfig {
  // Where the answers must arrive: response_topic(<requester client id>[, suffix]). The adapter
  // subscribes to it before start().
  std::string response_topic;
  std::size_t parallel = 8;
  std::int64_t request_timeout_ms = 10'000;
  std::int64_t busy_retry_delay_ms = 200;
  int busy_retries_max = 50;
};

// A message that arrived on one of the requester's subscriptions.
struct IncomingResponse {
  std::string topic;
  std::string correlation_data;
  UserProperties user_properties;
  std::string payload;
};

// A fragment complete and verified: write `data` at `offset_bytes` in the file.
struct CompletedFragment {
  std::size_t index = 0;  // in the plan
  std::int64_t offset_bytes = 0;
  std::string data;
};

struct ClientOutput {
  std::vector<OutgoingRequest> requests;  // publish in order
  std::vector<CompletedFragment> completed;
  bool empty() const { return requests.empty() && completed.empty(); }
};

struct HolderProblem {
  ClientId holder;
  std::string problem;
  friend bool operator==(const HolderProblem&, const HolderProblem&) = default;
};

struct MissingFragment {
  std::size_t index = 0;  // in the plan
  Hash hash;
  std::vector<HolderProblem> problems;  // one per holder asked; none if nobody holds it
};

struct ClientMetrics {
  std::uint64_t requests = 0;
  std::uint64_t responses_accepted = 0;
  // Not matching a request in flight, or on another topic: late, duplicated or forged.
  std::uint64_t responses_ignored = 0;
  std::uint64_t busy_retries = 0;
  std::uint64_t refused_retries = 0;  // asked again after the broker refused a request
  std::uint64_t timeouts = 0;
  std::uint64_t fallbacks = 0;  // a holder given up for the next one
  std::uint64_t bytes_received = 0;
};

class Client {
 public:
  Client(ClientConfig config, std::vector<FileFragment> fragments, Random& random);

  // The first requests.
  ClientOutput start(std::int64_t now_ms);
  ClientOutput on_response(std::int64_t now_ms, IncomingResponse response);
  // The broker acknowledged the request with this Correlation Data with a reason code of 0x80 or
  // more: nobody will answer it. A request no longer in flight is ignored.
  ClientOutput on_refused(std::int64_t now_ms, const std::string& correlation_data,
                          int reason_code);
  // Retries that are due, and requests that timed out.
  ClientOutput on_tick(std::int64_t now_ms);

  // When on_tick() next has work; nullopt once nothing is in flight or retrying.
  std::optional<std::int64_t> next_deadline_ms() const;
  // Nothing waits, is in flight or retries: every fragment is done or missing.
  bool finished() const;
  bool complete() const { return finished() && missing_.empty(); }
  std::vector<MissingFragment> missing() const;

  std::int64_t done_bytes() const { return done_bytes_; }
  std::size_t in_flight() const { return in_flight_.size(); }
  const std::vector<FileFragment>& fragments() const { return fragments_; }
  const ClientMetrics& metrics() const { return metrics_; }

 private:
  enum class Phase : std::uint8_t { waiting, in_flight, retrying, done, missing };
  struct State {
    Phase phase = Phase::waiting;
    std::size_t holder = 0;  // the one being asked, into FileFragment::holders
    std::string data;        // received so far from that holder
    int busy_retries = 0;
    std::vector<HolderProblem> problems;
  };
  struct InFlight {
    std::size_t index;
    std::int64_t offset_bytes;  // of the chunk asked for, in the fragment
    std::int64_t length_bytes;
    std::int64_t deadline_ms;
  };

  std::string draw_correlation();
  void ask(std::int64_t now_ms, std::size_t index, ClientOutput& out);
  void next_holder(std::int64_t now_ms, std::size_t index, std::string problem, ClientOutput& out);
  void take_answer(std::int64_t now_ms, const InFlight& request, IncomingResponse& response,
                   ClientOutput& out);
  // All of a fragment's bytes are in: verified, it comes out; otherwise the next holder.
  void complete(std::int64_t now_ms, std::size_t index, ClientOutput& out);
  void fill(std::int64_t now_ms, ClientOutput& out);
  void check_invariants() const;

  ClientConfig config_;
  std::vector<FileFragment> fragments_;
  Random& random_;
  ClientMetrics metrics_;

  std::vector<State> states_;  // parallel to fragments_
  std::deque<std::size_t> waiting_;
  std::map<std::string, InFlight> in_flight_;     // Correlation Data -> request
  std::map<std::size_t, std::int64_t> retry_at_;  // fragment -> when to ask again
  std::vector<std::size_t> missing_;
  std::int64_t done_bytes_ = 0;
};

}  // namespace mqds::fetch
