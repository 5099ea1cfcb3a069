// The edge's side of fetch (mqds/fetch.hpp) as a state machine with no I/O: which requests to
// answer, how, and when.
//
// Theory of operation. The adapter (mqds-edge, or the simulation) feeds every message that
// arrives on the edge's request topic to on_request(), as it arrived. The machine checks at once
// what needs no store: a Response Topic outside mqds/fetch/response/ is refused without an
// answer (answering on any topic a request names would let anyone make the board publish there),
// a payload that is not a request is answered bad-request, and a request beyond the queue's
// bound is answered busy. The others wait in the queue.
//
// The adapter serves the queue once what it decided before is durable (so a fragment persisted
// in the same batch is found): serve_next() takes the next request and either answers it busy
// (too many response bytes are in flight) or asks for a Lookup of the fragment. Reading the
// fragment is the adapter's, and it verifies the fragment against its hash while reading; it
// hands back what it found with on_lookup(). Stored: the answer is the requested byte range, or
// bad-request for an Offset beyond the fragment. Not stored: not-found. Corrupt: not-found, and
// the output names the fragment as lost, for the adapter to tell its TorrentServer
// (TorrentServer::fragment_lost deletes it and rejoins, so the tracker's view says the truth).
//
// An ok Reply names the range of the fragment its payload is; the adapter publishes those bytes
// straight from its store, so fragment content never passes through the machine. The adapter
// reports each Reply it handed to the broker (on_sent) and each acknowledgement (on_acknowledged):
// the payload bytes between the two are the in-flight budget. A lost connection forgets both the
// queue and what was in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqds/fetch.hpp"
#include "mqds/output.hpp"

namespace mqds::fetch {

struct ServerConfig {
  std::string request_topic;  // request_topic(<the edge's client id>)
  std::size_t queue_max = 64;
  std::size_t response_bytes_in_flight_max = 16 * 1024 * 1024;
};

// A message on the request topic, as the broker delivered it. Views: valid during on_request()
// only; the machine copies what it keeps.
struct IncomingRequest {
  std::string_view topic;
  std::string_view payload;
  std::string_view response_topic;    // "" if it carried none
  std::string_view correlation_data;  // raw bytes, "" if none
};

// A response to publish at QoS 1 on `topic`, with `correlation_data` and the User Properties of
// `header` (encode_response_properties). Its payload is the fragment's bytes [offset_bytes,
// offset_bytes + length_bytes) when the status is ok, and empty otherwise.
struct Reply {
  std::string topic;
  std::string correlation_data;
  ResponseHeader header;
  std::int64_t length_bytes = 0;
  UserProperties properties() const { return encode_response_properties(header); }
};

// Read the fragment `hash` (verified against its hash) and call on_lookup(ticket, ...).
struct Lookup {
  std::uint64_t ticket = 0;
  Hash hash;
};

struct LookupOutcome {
  enum class Kind : std::uint8_t { stored, not_found, corrupt };
  Kind kind = Kind::not_found;
  std::int64_t size_bytes = 0;  // stored: the fragment's size

  static LookupOutcome stored(std::int64_t size_bytes) { return {Kind::stored, size_bytes}; }
  static LookupOutcome not_found() { return {Kind::not_found, 0}; }
  static LookupOutcome corrupt() { return {Kind::corrupt, 0}; }
};

struct ServerOutput {
  std::vector<Reply> replies;  // publish in order
  std::optional<Lookup> lookup;
  // The stored copy of this fragment was found corrupt: TorrentServer::fragment_lost, whose output
  // the adapter takes before it publishes the replies.
  std::optional<Hash> lost;
  std::vector<LogLine> logs;

  bool empty() const { return replies.empty() && !lookup && !lost && logs.empty(); }
  void log(LogLevel level, std::string text) { logs.push_back({level, std::move(text)}); }
};

struct ServerMetrics {
  std::uint64_t requests = 0;  // every message fed to on_request
  std::uint64_t refused = 0;   // not answered: a foreign Response Topic, or another topic
  std::uint64_t ok = 0;
  std::uint64_t not_found = 0;
  std::uint64_t bad_request = 0;
  std::uint64_t busy = 0;
  std::uint64_t lost = 0;          // copies found corrupt
  std::uint64_t bytes_served = 0;  // payload bytes of ok replies
};

class Server {
 public:
  explicit Server(ServerConfig config);

  ServerOutput on_request(const IncomingRequest& request);
  // The next waiting request: a busy Reply, or a Lookup. Empty when nothing waits.
  ServerOutput serve_next();
  // What the store holds for a Lookup of serve_next(). A ticket the machine no longer knows (the
  // connection was lost meanwhile) is answered by nobody: the requester asked on a connection
  // that is gone.
  ServerOutput on_lookup(std::uint64_t ticket, const LookupOutcome& outcome);

  // The adapter handed `reply` to the broker as message `message_id`; its payload is in flight
  // until on_acknowledged(message_id).
  void on_sent(int message_id, const Reply& reply);
  // True if `message_id` was a Reply (the plugin refuses the original of every response it
  // delivers itself, so its reason code is no error); its bytes leave the budget.
  bool on_acknowledged(int message_id);
  // The connection is gone: what waits is never answered, and nothing is in flight any more.
  void on_disconnected();

  std::size_t waiting() const { return queue_.size(); }
  std::size_t lookups_pending() const { return pending_.size(); }
  std::size_t response_bytes_in_flight() const { return response_bytes_in_flight_; }
  const ServerConfig& config() const { return config_; }
  const ServerMetrics& metrics() const { return metrics_; }

 private:
  struct Waiting {
    Request request;
    std::string response_topic;
    std::string correlation_data;
  };

  void answer(ServerOutput& out, std::string topic, std::string correlation_data, Status status,
              std::string reason);
  void answer(ServerOutput& out, const Waiting& waiting, Status status, std::string reason);

  ServerConfig config_;
  ServerMetrics metrics_;
  std::deque<Waiting> queue_;
  std::map<std::uint64_t, Waiting> pending_;  // ticket -> the request whose Lookup is out
  std::uint64_t next_ticket_ = 1;
  std::map<int, std::size_t> in_flight_;  // message id -> payload bytes
  std::size_t response_bytes_in_flight_ = 0;
};

}  // namespace mqds::fetch
