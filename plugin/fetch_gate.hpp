// The broker's side of the fetch protocol (common/include/mqds/fetch.hpp): who may fetch.
//
// Every publish under mqds/fetch/ comes here from the MESSAGE callback, after the broker's own
// WRITE ACL check:
// - A request on mqds/fetch/request/<edge> passes unchanged to its subscribers (the edge) only if
//   its sender's MQTT username is one of fetch_users, the topic names one edge, it is small and not
//   retained, and it carries an MQTT 5 Response Topic that is the sender's own
//   (mqds/fetch/response/<sender's client id>[/...]), with at most correlation_bytes_max bytes of
//   Correlation Data. So nobody can have fragment data sent to another client, and a refused
//   publisher learns it from reason code 0x87.
// - A request that passes is remembered as outstanding: who asked (its Response Topic), which
//   edge, with which Correlation Data, until answered or for at most outstanding_timeout_ms.
// - Budget: one requester is owed at most bytes_per_client at a time; a request that does not fit
//   is refused at once (0x87), so a requester that never reads cannot make the broker hold more
//   for it, however small its requests. A request reserves the bytes it asks for (its Length, at
//   most one chunk) until answered, timed out or its requester disconnects. An answer's bytes then
//   stay charged until the requester proves it read them: the plugin cannot see what the broker
//   sends or the requester's PUBACKs (no outgoing-message event in 2.0), so the edge puts a token
//   in each answer (User Property fetch::property_receipt) and the requester echoes it in a later
//   request. An answer without a token (an edge that does not send them) is not held. What an
//   answer charges is freed when its requester disconnects, never by time: a requester that does
//   not read stays owed its budget for as long as it stays connected.
// - A response on mqds/fetch/response/<requester>[/...] never reaches subscribers: the adapter
//   delivers a copy to the requester alone and refuses the original, so a client subscribed to `#`
//   never sees fragment data. It is delivered only if it answers an outstanding request: from the
//   edge that request went to, on its Response Topic, with its Correlation Data. The request is
//   then answered, so a second response to it is refused too. Nobody but the edge asked can answer
//   a requester, and an edge can answer only what it was asked.
// - The tracker fetches too, to repair a fragment: its requests (the plugin's own publishes) ask
//   for answers on mqds/fetch/response/$mqds-tracker/... (fetch::tracker_requester). Those answers
//   are the tracker's: the adapter hands them to it and delivers them to nobody, without this gate
//   (is_tracker_response), and no client may send a request with such a Response Topic.
// - Anything else under mqds/fetch/ is refused; with fetch_users empty, everything is but the
//   answers to the tracker.
//
// The gate makes no broker calls, reads no clock and allocates nothing per message but its log
// lines: the adapter (TrackerPlugin::on_fetch) reads the message's properties, asks the gate,
// publishes, and tells the gate what happened so it can count it. Log lines about refusals are
// rate-limited per reason (the first at once, then at most one per refusal_log_interval_ms saying
// how many were not logged), so a misbehaving client cannot flood the broker's log; every refusal
// is still counted in $SYS/broker/mqds/fetch/refused.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "allowed_users.hpp"
#include "log_text.hpp"
#include "mqds/fetch.hpp"
#include "mqds/output.hpp"

namespace mqds::plugin {

// Who may send fetch requests (plugin_opt_fetch_users), and how many bytes of answers one requester
// may be owed at a time (plugin_opt_fetch_bytes_per_client).
struct FetchOptions : AllowedUsers {
  // 16 chunks: twice what `mqds get` asks at once (8 requests of at most one chunk).
  static constexpr std::size_t bytes_per_client_default = 16 * 1024 * 1024;
  std::size_t bytes_per_client = bytes_per_client_default;
};

struct FetchMetrics {
  std::uint64_t requests = 0;   // requests passed to their edge
  std::uint64_t refused = 0;    // requests and responses refused, for any reason
  std::uint64_t responses = 0;  // responses handed to the broker for their requester
  std::uint64_t bytes = 0;      // payload bytes of those responses
};

enum class FetchRefusal : std::uint8_t {
  fetch_off,
  user_not_allowed,
  not_a_fetch_topic,
  bad_request_topic,
  retained_request,
  request_too_large,
  not_mqtt5,
  properties_unreadable,
  no_response_topic,
  response_topic_not_fetch,
  response_topic_not_own,
  correlation_too_large,
  bad_response_topic,
  response_too_large,
  too_many_outstanding,
  too_many_bytes_outstanding,
  response_not_requested,
  // A request whose Response Topic names the tracker (fetch::tracker_requester): a client posing
  // as the tracker would have its answers taken for a repair's.
  response_topic_of_tracker,
  // A response to the tracker's own request (a repair) from a client that is not a registered
  // torrent server.
  tracker_response_not_from_edge,
  delivery_failed,
};
inline constexpr std::size_t fetch_refusal_kinds =
    static_cast<std::size_t>(FetchRefusal::delivery_failed) + 1;

// Why, in words, for the log.
std::string describe(FetchRefusal why);

// What the adapter read from a publish on a request topic.
struct FetchRequest {
  std::string_view topic;
  std::string_view client_id;
  const char* username = nullptr;  // nullptr: the client gave none
  int protocol_version = 5;        // 3, 4 (3.1.1) or 5
  std::size_t payload_bytes = 0;
  std::string_view payload;  // the request itself (fetch::Request), to see what it asks for
  bool retain = false;
  bool properties_readable = true;  // false: reading them failed (out of memory)
  std::optional<std::string_view> response_topic;
  std::optional<std::size_t> correlation_bytes;
  std::optional<std::string_view> correlation;  // the bytes, when read
  // Its Receipt User Properties: tokens of answers it read (at most receipts_per_request_max).
  std::vector<std::string_view> receipts;
};

// What the adapter read from a publish on a response topic.
struct FetchResponse {
  std::string_view topic;
  std::string_view responder;  // the publisher's client id
  std::optional<std::string_view> correlation;
  std::size_t payload_bytes = 0;
  std::optional<std::string_view> receipt;  // its Receipt User Property, if it has one
};

class FetchGate {
 public:
  enum class Kind : std::uint8_t { none, request, response, other };

  // A response carries at most chunk_bytes_max bytes of fragment; the margin is for nothing else,
  // but an edge with a slightly different chunk size must not be cut off.
  static constexpr std::size_t response_payload_bytes_max = fetch::chunk_bytes_max + 64 * 1024;
  static constexpr std::int64_t refusal_log_interval_ms = LogLimiter::default_interval_ms;
  // Client ids and topics are cut to this in log lines.
  static constexpr std::size_t logged_text_bytes_max = 160;
  // Requests awaiting an answer. An edge answers each request once, within seconds (it answers
  // busy rather than keep one waiting long); `mqds get` keeps 8 in flight and gives one up after
  // 10 s. One requester cannot fill the broker's memory: past its limit its requests are refused.
  static constexpr std::int64_t outstanding_timeout_ms = 60'000;
  static constexpr std::size_t outstanding_per_requester_max = 64;
  static constexpr std::size_t outstanding_max = 16'384;
  // Receipts read from one request; `mqds get` echoes one per answer it read since its last
  // request, at most `parallel` (8).
  static constexpr std::size_t receipts_per_request_max = 64;

  explicit FetchGate(FetchOptions options) : options_(std::move(options)) {}

  // none: not under mqds/fetch/; other: under it but neither a request nor a response topic.
  static Kind kind(std::string_view topic);
  // A response topic of the tracker's own requests (a repair's, fetch::tracker_requester): what is
  // published there is the tracker's, never delivered to anybody, and judged without the gate
  // (TrackerPlugin::on_fetch hands it to the tracker), whether or not fetching is on for clients.
  static bool is_tracker_response(std::string_view topic);
  bool enabled() const { return options_.enabled(); }
  bool allows(const char* username) const { return options_.allows(username); }

  // nullopt: the request may pass to its edge unchanged (once admitted).
  std::optional<FetchRefusal> judge_request(const FetchRequest& request) const;
  // The rules that need no MQTT 5 property: what the broker's ACL check can judge of a publish, a
  // will included, without its properties. nullopt: judge_request may still refuse it.
  std::optional<FetchRefusal> judge_request_without_properties(const FetchRequest& request) const;
  // A request judge_request passed: remembered as outstanding and counted, or refused when its
  // requester (or everybody) has too many outstanding, or its requester's budget of bytes cannot
  // hold what it asks for.
  std::optional<FetchRefusal> admit(std::int64_t now_ms, const FetchRequest& request);
  // The form of a response topic and its size: the client id it would go to (a view into `topic`),
  // or why it is refused. Says nothing of whether anyone asked for it.
  std::variant<std::string_view, FetchRefusal> judge_response(std::string_view topic,
                                                              std::size_t payload_bytes) const;
  // A response that answers an outstanding request: that request is answered (forgotten), and the
  // client id the response goes to is returned (a view into response.topic).
  std::variant<std::string_view, FetchRefusal> answer(std::int64_t now_ms,
                                                      const FetchResponse& response);
  // Forgets what a requester asked (it disconnected: nothing can reach it any more).
  void forget_requester(std::string_view client_id);
  // Forgets requests nobody answered within outstanding_timeout_ms.
  void expire(std::int64_t now_ms);
  std::size_t outstanding() const { return outstanding_.size(); }
  // The bytes a requester is owed: what its outstanding requests reserve, and the answers it has
  // not yet proved it read.
  std::size_t outstanding_bytes(std::string_view client_id) const;
  // Answers whose receipt is awaited, of everybody.
  std::size_t unconfirmed() const { return unconfirmed_; }
  // What a request reserves: the Length it asks for, or a whole chunk when the gate cannot read
  // it (an edge answers that bad-request, but another edge might read it differently).
  static std::size_t reserved_bytes(std::string_view request_payload);
  std::size_t bytes_per_client() const { return options_.bytes_per_client; }

  void delivered(std::size_t payload_bytes);
  // The broker could not deliver an answer answer() took: it is not owed (its Receipt will never
  // come back).
  void undelivered(std::string_view requester, const FetchResponse& response);
  // Counts a refusal. Returns the log line to write, unless a line for the same reason was written
  // less than refusal_log_interval_ms ago (then only counts it for the next line).
  std::optional<LogLine> refused(std::int64_t now_ms, FetchRefusal why, std::string_view client_id,
                                 const char* username, std::string_view topic);

  const FetchMetrics& metrics() const { return metrics_; }

 private:
  // One outstanding request: its Response Topic (which names the requester), the edge, and its
  // Correlation Data if it had any.
  struct Outstanding {
    std::string response_topic;
    std::string edge;
    std::optional<std::string> correlation;
    friend auto operator<=>(const Outstanding&, const Outstanding&) = default;
  };

  struct Pending {
    std::int64_t deadline_ms = 0;  // when it is given up
    std::size_t reserved_bytes = 0;
  };
  struct Share {               // what one requester is owed
    std::size_t requests = 0;  // outstanding
    std::size_t bytes = 0;     // reserved by them, and of the answers in `unconfirmed`
    std::map<std::string, std::size_t, std::less<>> unconfirmed;  // receipt -> bytes answered
  };
  // An outstanding request ends: its reservation is given back.
  void release(std::map<std::string, Share, std::less<>>::iterator share, const Pending& pending);
  // Forgets a requester that is owed nothing.
  void erase_if_empty(std::map<std::string, Share, std::less<>>::iterator share);

  FetchOptions options_;
  FetchMetrics metrics_;
  std::map<Outstanding, Pending> outstanding_;
  std::map<std::string, Share, std::less<>> per_requester_;
  std::size_t unconfirmed_ = 0;
  std::array<LogLimiter, fetch_refusal_kinds> log_{};  // one per reason
};

}  // namespace mqds::plugin
