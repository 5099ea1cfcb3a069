#include "fetch_gate.hpp"
#include "log_text.hpp"

#include <algorithm>

#include "mqds/assert.hpp"

namespace mqds::plugin {

namespace {

constexpr std::string_view fetch_prefix = "mqds/fetch/";

}  // namespace

std::string describe(FetchRefusal why) {
  switch (why) {
    case FetchRefusal::fetch_off: return "fetching is off (no plugin_opt_fetch_users)";
    case FetchRefusal::user_not_allowed: return "its username is not in plugin_opt_fetch_users";
    case FetchRefusal::not_a_fetch_topic:
      return "the topic is neither mqds/fetch/request/<edge> nor mqds/fetch/response/<requester>";
    case FetchRefusal::bad_request_topic:
      return "a request topic must name one edge: mqds/fetch/request/<edge client id>";
    case FetchRefusal::retained_request: return "a request must not be retained";
    case FetchRefusal::request_too_large:
      return "the request payload is longer than " +
             std::to_string(fetch::request_payload_bytes_max) + " bytes";
    case FetchRefusal::not_mqtt5:
      return "requests need MQTT 5 (a Response Topic); the client connected with MQTT 3";
    case FetchRefusal::properties_unreadable:
      return "its MQTT 5 properties could not be read (out of memory)";
    case FetchRefusal::no_response_topic: return "the request has no Response Topic";
    case FetchRefusal::response_topic_not_fetch:
      return "its Response Topic is not mqds/fetch/response/<its own client id>[/...]";
    case FetchRefusal::response_topic_not_own: return "its Response Topic names another client";
    case FetchRefusal::correlation_too_large:
      return "its Correlation Data is longer than " + std::to_string(fetch::correlation_bytes_max) +
             " bytes";
    case FetchRefusal::bad_response_topic:
      return "a response topic must be mqds/fetch/response/<requester client id>[/...] without "
             "wildcards";
    case FetchRefusal::response_too_large:
      return "the response payload is longer than " +
             std::to_string(FetchGate::response_payload_bytes_max) + " bytes";
    case FetchRefusal::too_many_outstanding:
      return "too many of its requests (" +
             std::to_string(FetchGate::outstanding_per_requester_max) + ", or " +
             std::to_string(FetchGate::outstanding_max) +
             " of everybody's) await an answer or the receipt of one";
    case FetchRefusal::too_many_bytes_outstanding:
      return "it would be owed more than plugin_opt_fetch_bytes_per_client bytes (its requests "
             "not yet answered, and answers it did not yet acknowledge with their Receipt in a "
             "request); ask again once it read answers";
    case FetchRefusal::response_not_requested:
      return "it answers no request waiting for this edge's answer on that topic with that "
             "Correlation Data (forged, repeated, or later than " +
             std::to_string(FetchGate::outstanding_timeout_ms / 1000) + " s)";
    case FetchRefusal::response_topic_of_tracker:
      return "its Response Topic is the tracker's (mqds/fetch/response/" +
             std::string(fetch::tracker_requester) + "/...): no client fetches as the tracker";
    case FetchRefusal::tracker_response_not_from_edge:
      return "it answers on the tracker's response topic, and only a registered torrent server "
             "answers the tracker";
    case FetchRefusal::delivery_failed:
      return "the response could not be handed to its requester (out of memory?)";
  }
  return "refused";
}

FetchGate::Kind FetchGate::kind(std::string_view topic) {
  if (!topic.starts_with(fetch_prefix)) return Kind::none;
  if (topic.starts_with(fetch::request_prefix)) return Kind::request;
  if (topic.starts_with(fetch::response_prefix)) return Kind::response;
  return Kind::other;
}

bool FetchGate::is_tracker_response(std::string_view topic) {
  return kind(topic) == Kind::response &&
         fetch::requester_of_response_topic(topic) == fetch::tracker_requester;
}

std::optional<FetchRefusal> FetchGate::judge_request_without_properties(
    const FetchRequest& request) const {
  // Cheapest first.
  if (!enabled()) return FetchRefusal::fetch_off;
  if (!options_.allows(request.username)) return FetchRefusal::user_not_allowed;
  if (!fetch::edge_of_request_topic(request.topic)) return FetchRefusal::bad_request_topic;
  if (request.retain) return FetchRefusal::retained_request;
  if (request.payload_bytes > fetch::request_payload_bytes_max)
    return FetchRefusal::request_too_large;
  if (request.protocol_version != 5) return FetchRefusal::not_mqtt5;
  return std::nullopt;
}

std::optional<FetchRefusal> FetchGate::judge_request(const FetchRequest& request) const {
  // The properties are looked at last.
  if (const auto why = judge_request_without_properties(request)) return why;
  if (!request.properties_readable) return FetchRefusal::properties_unreadable;
  if (!request.response_topic) return FetchRefusal::no_response_topic;
  const auto requester = fetch::requester_of_response_topic(*request.response_topic);
  if (!requester) return FetchRefusal::response_topic_not_fetch;
  // Before the client id: a client may have connected as the tracker's requester name.
  if (*requester == fetch::tracker_requester) return FetchRefusal::response_topic_of_tracker;
  if (request.client_id.empty() || *requester != request.client_id)
    return FetchRefusal::response_topic_not_own;
  if (request.correlation_bytes && *request.correlation_bytes > fetch::correlation_bytes_max)
    return FetchRefusal::correlation_too_large;
  return std::nullopt;
}

std::variant<std::string_view, FetchRefusal> FetchGate::judge_response(
    std::string_view topic, std::size_t payload_bytes) const {
  if (!enabled()) return FetchRefusal::fetch_off;
  const auto requester = fetch::requester_of_response_topic(topic);
  if (!requester) return FetchRefusal::bad_response_topic;
  if (payload_bytes > response_payload_bytes_max) return FetchRefusal::response_too_large;
  return *requester;
}

std::size_t FetchGate::reserved_bytes(std::string_view request_payload) {
  const auto request = fetch::decode_request(request_payload);
  const auto asked = request ? request->length_bytes : fetch::chunk_bytes_max;
  return static_cast<std::size_t>(std::clamp<std::int64_t>(asked, 0, fetch::chunk_bytes_max));
}

std::size_t FetchGate::outstanding_bytes(std::string_view client_id) const {
  const auto share = per_requester_.find(client_id);
  return share == per_requester_.end() ? 0 : share->second.bytes;
}

std::optional<FetchRefusal> FetchGate::admit(std::int64_t now_ms, const FetchRequest& request) {
  MQDS_ASSERT(request.response_topic && !judge_request(request));
  const auto requester = fetch::requester_of_response_topic(*request.response_topic);
  const auto edge = fetch::edge_of_request_topic(request.topic);
  MQDS_ASSERT(requester && edge);
  auto share = per_requester_.find(*requester);
  if (share != per_requester_.end()) {
    // What it proves it read is no longer owed, whatever becomes of this request.
    for (const auto receipt : request.receipts) {
      const auto read = share->second.unconfirmed.find(receipt);
      if (read == share->second.unconfirmed.end()) continue;
      share->second.bytes -= read->second;
      share->second.unconfirmed.erase(read);
      --unconfirmed_;
    }
  }
  Outstanding key{
      std::string(*request.response_topic), std::string(*edge),
      request.correlation ? std::optional<std::string>(*request.correlation) : std::nullopt};
  const auto found = outstanding_.find(key);
  if (found != outstanding_.end()) {
    // The same question again (a resend): one answer is still all it gets, and it keeps what it
    // reserved.
    found->second.deadline_ms = now_ms + outstanding_timeout_ms;
    ++metrics_.requests;
    return std::nullopt;
  }
  const std::size_t owed_requests =
      share == per_requester_.end() ? 0 : share->second.requests + share->second.unconfirmed.size();
  const std::size_t owed_bytes = share == per_requester_.end() ? 0 : share->second.bytes;
  const std::size_t reserved = reserved_bytes(request.payload);
  std::optional<FetchRefusal> refusal;
  // Answers awaiting their receipt count per requester only: bounded by its request count and its
  // bytes, they must not let one user with many connections shut everybody else out.
  if (outstanding_.size() >= outstanding_max || owed_requests >= outstanding_per_requester_max)
    refusal = FetchRefusal::too_many_outstanding;
  else if (owed_bytes + reserved > options_.bytes_per_client)
    refusal = FetchRefusal::too_many_bytes_outstanding;
  if (refusal) {
    if (share != per_requester_.end()) erase_if_empty(share);
    return refusal;
  }
  outstanding_.emplace(std::move(key), Pending{now_ms + outstanding_timeout_ms, reserved});
  if (share == per_requester_.end()) share = per_requester_.emplace(*requester, Share{}).first;
  ++share->second.requests;
  share->second.bytes += reserved;
  ++metrics_.requests;
  return std::nullopt;
}

void FetchGate::release(std::map<std::string, Share, std::less<>>::iterator share,
                        const Pending& pending) {
  MQDS_ASSERT(share != per_requester_.end() && share->second.requests > 0 &&
              share->second.bytes >= pending.reserved_bytes);
  share->second.bytes -= pending.reserved_bytes;
  --share->second.requests;
}

void FetchGate::erase_if_empty(std::map<std::string, Share, std::less<>>::iterator share) {
  if (share->second.requests > 0 || !share->second.unconfirmed.empty()) return;
  MQDS_ASSERT(share->second.bytes == 0);
  per_requester_.erase(share);
}

std::variant<std::string_view, FetchRefusal> FetchGate::answer(std::int64_t now_ms,
                                                               const FetchResponse& response) {
  const auto judged = judge_response(response.topic, response.payload_bytes);
  if (std::holds_alternative<FetchRefusal>(judged)) return judged;
  const auto requester = std::get<std::string_view>(judged);
  const Outstanding key{
      std::string(response.topic), std::string(response.responder),
      response.correlation ? std::optional<std::string>(*response.correlation) : std::nullopt};
  const auto found = outstanding_.find(key);
  if (found == outstanding_.end() || found->second.deadline_ms <= now_ms)
    return FetchRefusal::response_not_requested;
  const auto share = per_requester_.find(requester);
  release(share, found->second);
  outstanding_.erase(found);
  // Its bytes stay owed until the requester echoes the edge's token. An answer without one, or
  // with one it already owes (an edge that repeats its tokens), is not held: nothing could free it.
  if (response.payload_bytes > 0 && response.receipt && !response.receipt->empty() &&
      response.receipt->size() <= fetch::receipt_bytes_max &&
      share->second.unconfirmed.emplace(*response.receipt, response.payload_bytes).second) {
    share->second.bytes += response.payload_bytes;
    ++unconfirmed_;
  }
  erase_if_empty(share);
  return requester;
}

void FetchGate::forget_requester(std::string_view client_id) {
  const auto share = per_requester_.find(client_id);
  if (share == per_requester_.end()) return;
  if (share->second.requests > 0)
    std::erase_if(outstanding_, [&](const auto& entry) {
      return fetch::requester_of_response_topic(entry.first.response_topic) == client_id;
    });
  unconfirmed_ -= share->second.unconfirmed.size();
  per_requester_.erase(share);
}

void FetchGate::expire(std::int64_t now_ms) {
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    if (it->second.deadline_ms > now_ms) {
      ++it;
      continue;
    }
    const auto requester = fetch::requester_of_response_topic(it->first.response_topic);
    MQDS_ASSERT(requester);
    const auto share = per_requester_.find(*requester);
    release(share, it->second);
    erase_if_empty(share);
    it = outstanding_.erase(it);
  }
}

void FetchGate::undelivered(std::string_view requester, const FetchResponse& response) {
  const auto share = per_requester_.find(requester);
  if (share == per_requester_.end() || !response.receipt) return;
  const auto owed = share->second.unconfirmed.find(*response.receipt);
  if (owed == share->second.unconfirmed.end()) return;
  share->second.bytes -= owed->second;
  share->second.unconfirmed.erase(owed);
  --unconfirmed_;
  erase_if_empty(share);
}

void FetchGate::delivered(std::size_t payload_bytes) {
  ++metrics_.responses;
  metrics_.bytes += payload_bytes;
}

std::optional<LogLine> FetchGate::refused(std::int64_t now_ms, FetchRefusal why,
                                          std::string_view client_id, const char* username,
                                          std::string_view topic) {
  ++metrics_.refused;
  return log_[static_cast<std::size_t>(why)].pass(
      now_ms,
      [&] {
        std::string text = "fetch: refused a publish on " +
                           shortened(topic, logged_text_bytes_max) + " from client '" +
                           shortened(client_id, logged_text_bytes_max) + "'";
        text += username ? " (user '" + shortened(username, logged_text_bytes_max) + "')"
                         : std::string(" (no username)");
        return text + ": " + describe(why);
      },
      why == FetchRefusal::delivery_failed ? LogLevel::warning : LogLevel::notice);
}

}  // namespace mqds::plugin
