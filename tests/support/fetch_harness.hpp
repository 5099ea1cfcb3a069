// Fetch without a broker: an edge's fetch::Server over fragments held in memory, served the way
// mqds-edge serves them from LMDB (edge/daemon/edge_daemon.cpp), and the messages a requester
// receives for its replies. Unit tests wire Servers and Clients with it; every request and reply
// goes through the wire codec (the request's JSON, the reply's User Properties).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/fetch.hpp"
#include "mqds/fetch_client.hpp"
#include "mqds/fetch_server.hpp"
#include "mqds/hash.hpp"

namespace mqds::testing {

// What EdgeStore::read_fragment finds: a copy that does not hash to its key is corrupt.
inline fetch::LookupOutcome look_up(const std::map<Hash, Bytes>& stored, const Hash& hash) {
  const auto it = stored.find(hash);
  if (it == stored.end()) return fetch::LookupOutcome::not_found();
  if (sha256(it->second) != hash) return fetch::LookupOutcome::corrupt();
  return fetch::LookupOutcome::stored(static_cast<std::int64_t>(it->second.size()));
}

// The message the requester receives for `reply`: the broker passes the topic, the Correlation
// Data and the User Properties on unchanged. `content` is the whole fragment (ok replies only).
inline fetch::IncomingResponse delivered(const fetch::Reply& reply, const Bytes* content) {
  fetch::IncomingResponse response;
  response.topic = reply.topic;
  response.correlation_data = reply.correlation_data;
  response.user_properties = reply.properties();
  if (reply.header.status == fetch::Status::ok && content) {
    const auto begin = content->begin() + reply.header.offset_bytes;
    response.payload.assign(begin, begin + reply.length_bytes);
  }
  return response;
}

inline fetch::IncomingRequest as_received(const fetch::OutgoingRequest& request) {
  return {request.topic, request.payload, request.response_topic, request.correlation_data};
}

// One edge's fetch side: requests are queued as they arrive and answered when serve() runs, as
// mqds-edge answers them after each committed batch. A corrupt copy is erased from `stored` (what
// TorrentServer::fragment_lost's DeleteFragment does) and recorded in `lost`.
class MemoryFetchEdge {
 public:
  MemoryFetchEdge(const ClientId& id, std::map<Hash, Bytes> fragments,
                  fetch::ServerConfig config = {})
      : stored(std::move(fragments)), server(with_topic(std::move(config), id)) {}

  void receive(const fetch::OutgoingRequest& request) {
    take(server.on_request(as_received(request)), nullptr);
  }
  void serve() {
    while (server.waiting() > 0) {
      fetch::ServerOutput out = server.serve_next();
      if (!out.lookup) {
        take(std::move(out), nullptr);
        continue;
      }
      const Hash hash = out.lookup->hash;
      fetch::ServerOutput answered = server.on_lookup(out.lookup->ticket, look_up(stored, hash));
      const auto it = stored.find(hash);
      take(std::move(answered), it != stored.end() ? &it->second : nullptr);
    }
  }
  // The broker's acknowledgement of every reply sent so far.
  void acknowledge_all() {
    for (int id = first_unacknowledged_; id < next_message_id_; ++id) server.on_acknowledged(id);
    first_unacknowledged_ = next_message_id_;
  }
  std::vector<fetch::IncomingResponse> take_outbox() { return std::exchange(outbox, {}); }

  std::map<Hash, Bytes> stored;
  fetch::Server server;
  std::vector<fetch::IncomingResponse> outbox;
  std::vector<Hash> lost;
  std::vector<fetch::Reply> replies;  // every reply, in order

 private:
  static fetch::ServerConfig with_topic(fetch::ServerConfig config, const ClientId& id) {
    config.request_topic = fetch::request_topic(id);
    return config;
  }
  void take(fetch::ServerOutput out, const Bytes* content) {
    if (out.lost) {
      lost.push_back(*out.lost);
      stored.erase(*out.lost);
      content = nullptr;
    }
    for (const auto& reply : out.replies) {
      outbox.push_back(delivered(reply, content));
      server.on_sent(next_message_id_++, reply);
      replies.push_back(reply);
    }
  }

  int next_message_id_ = 1;
  int first_unacknowledged_ = 1;
};

}  // namespace mqds::testing
