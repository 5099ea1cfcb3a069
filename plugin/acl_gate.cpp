#include "acl_gate.hpp"
#include "log_text.hpp"

#include "mqds/events.hpp"
#include "mqds/ingest.hpp"
#include "mqds/query.hpp"

namespace mqds::plugin {

namespace {

constexpr std::string_view query_prefix = "mqds/query/";

std::string_view head_of(std::string_view payload) {
  return payload.substr(0, AclGate::remembered_edge_bytes);
}
std::string_view tail_of(std::string_view payload) {
  return payload.size() <= AclGate::remembered_edge_bytes
             ? payload
             : payload.substr(payload.size() - AclGate::remembered_edge_bytes);
}

AclGate::Refusal fetch_refusal(FetchRefusal why) {
  return AclGate::Refusal{describe(why), false, why};
}

AclGate::Refusal plain_refusal(std::string reason) {
  return AclGate::Refusal{std::move(reason), false, std::nullopt};
}

}  // namespace

std::optional<AclGate::Refusal> AclGate::refusal(const Write& write, bool& watch) const {
  watch = false;
  const std::string_view topic = write.topic;
  if (const auto type = event_type_for_topic(topic)) {
    if (is_tracker_issued(*type)) {
      return Refusal{"only the tracker publishes there", true, std::nullopt};
    }
    if (write.retain) return plain_refusal("an event is never retained");
    watch = true;  // the tracker judges it in MESSAGE, and stamps a goodbye
    return std::nullopt;
  }
  if (ingest::is_ingest_topic(topic)) {
    if (topic != ingest::topics::begin && topic != ingest::topics::abort &&
        !ingest::is_chunk_topic(topic))
      return plain_refusal(
          "an uploader publishes only on mqds/ingest/begin, /abort and /chunk/...");
    if (write.retain) return plain_refusal("an upload message is never retained");
    watch = true;
    return std::nullopt;
  }
  switch (FetchGate::kind(topic)) {
    case FetchGate::Kind::none: break;
    case FetchGate::Kind::other: return fetch_refusal(FetchRefusal::not_a_fetch_topic);
    case FetchGate::Kind::request: {
      FetchRequest request;
      request.topic = topic;
      request.client_id = write.client_id;
      request.username = write.username;
      request.protocol_version = write.protocol_version;
      request.payload_bytes = write.payload.size();
      request.retain = write.retain;
      if (const auto why = fetch_.judge_request_without_properties(request)) {
        return fetch_refusal(*why);
      }
      watch = true;  // its Response Topic is judged in MESSAGE
      return std::nullopt;
    }
    case FetchGate::Kind::response: {
      // An answer to the tracker's own request (a repair), whether fetching is on for clients or
      // not: MESSAGE hands it to the tracker, from a registered torrent server only.
      if (FetchGate::is_tracker_response(topic)) {
        if (write.retain) return plain_refusal("a fetch response is never retained");
        if (write.payload.size() > FetchGate::response_payload_bytes_max)
          return fetch_refusal(FetchRefusal::response_too_large);
        watch = true;  // taken by the tracker in MESSAGE, delivered to nobody
        return std::nullopt;
      }
      const auto judged = fetch_.judge_response(topic, write.payload.size());
      if (const auto* why = std::get_if<FetchRefusal>(&judged)) {
        return fetch_refusal(*why);
      }
      watch = true;  // delivered by MESSAGE, to its requester alone
      return std::nullopt;
    }
  }
  if (topic.starts_with(query_prefix)) {
    if (topic != query::request_topic)
      return plain_refusal("only the tracker answers under mqds/query/");
    if (!fetch_.allows(write.username) && !ingest_.allows(write.username))
      return plain_refusal("this user is in neither fetch_users nor ingest_users");
    if (write.retain) return plain_refusal("a query is not retained");
    watch = true;  // answered in MESSAGE
    return std::nullopt;
  }
  return std::nullopt;
}

AclDecision AclGate::judge_write(std::int64_t now_ms, const Write& write) {
  bool watch = false;
  auto why = refusal(write, watch);
  if (why) {
    ++metrics_.writes_refused;
    AclDecision decision{AclVerdict::refuse, std::nullopt, why->tracker_topic, why->fetch};
    if (!why->tracker_topic && !why->fetch)
      decision.log = write_log_.pass(now_ms, [&] {
        return "refused a publish or will on " + shortened(write.topic, logged_text_bytes_max) +
               " from client '" + shortened(write.client_id, logged_text_bytes_max) +
               "': " + why->reason;
      });
    return decision;
  }
  if (!watch) return AclDecision{};
  watched_ = Watched{std::string(write.topic),
                     std::string(write.client_id),
                     write.payload.size(),
                     std::string(head_of(write.payload)),
                     std::string(tail_of(write.payload)),
                     false};
  return AclDecision{AclVerdict::watch, std::nullopt, false, std::nullopt};
}

AclDecision AclGate::judge_read(std::int64_t now_ms, std::string_view reader,
                                std::string_view topic, std::string_view payload) {
  const bool will = watched_ && watched_->topic == topic &&
                    watched_->payload_bytes == payload.size() &&
                    watched_->head == head_of(payload) && watched_->tail == tail_of(payload);
  if (!will) {
    // The plugin publishes each fetch response to its topic's subscribers, for its requester
    // alone; query answers it delivers to their requester directly, which skips the READ check:
    // one that comes by subscription went round the plugin.
    if (FetchGate::kind(topic) == FetchGate::Kind::response) {
      // The tracker's answers are never delivered: a client that took its name as a client id
      // reads nothing there.
      if (FetchGate::is_tracker_response(topic))
        return AclDecision{AclVerdict::refuse, std::nullopt, false, std::nullopt};
      const auto requester = fetch::requester_of_response_topic(topic);
      if (requester && !reader.empty() && *requester == reader)
        return AclDecision{AclVerdict::allow, std::nullopt, false, std::nullopt};
      return AclDecision{AclVerdict::refuse, std::nullopt, false, std::nullopt};
    }
    if (topic.starts_with(query::response_prefix))
      return AclDecision{AclVerdict::refuse, std::nullopt, false, std::nullopt};
    return AclDecision{};
  }
  AclDecision decision{AclVerdict::refuse, std::nullopt, false, std::nullopt};
  if (!watched_->refused) {
    watched_->refused = true;
    ++metrics_.wills_refused;
    decision.log = will_log_.pass(now_ms, [&] {
      return "the will of client '" + shortened(watched_->publisher, logged_text_bytes_max) +
             "' on " + shortened(topic, logged_text_bytes_max) +
             " reaches nobody: the tracker judges what is published there, and a will never "
             "reaches it (a lost client's departure is announced by the tracker itself)";
    });
  }
  return decision;
}

}  // namespace mqds::plugin
