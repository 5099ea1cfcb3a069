// The plugin's part in the broker's ACL check (MOSQ_EVT_ACL_CHECK): what no client may publish,
// wills included.
//
// Why the ACL check. The MESSAGE callback sees only PUBLISH packets: a will (sent when a client's
// connection is lost, maybe after its Will Delay) never reaches it. Mosquitto 2.0.11 checks a will
// once, with MOSQ_ACL_WRITE, when it is about to send it (src/context.c), not at CONNECT, and then
// hands it to the subscribers, each with a MOSQ_ACL_READ check (src/subs.c). A PUBLISH gets the
// same WRITE check, then MESSAGE, then the READ checks of its delivery (at PUBREL for QoS 2).
//
// Writes (judge_write), from the topic, the publisher, the payload and the retain flag alone (the
// check gets no MQTT 5 properties):
// - refused: a topic the tracker issues; a retained client event (no event of the specification is
//   retained); under mqds/fetch/ and mqds/query/, whatever the MESSAGE callback would refuse
//   without looking at properties or state (fetching off or not this user's, retained, MQTT 3, a
//   topic the tracker answers on, a malformed or oversized fetch; an answer to the tracker's own
//   fetch, a repair's, is judged on its size and retain flag alone, even with fetching off for
//   clients, since its sender is a torrent server); under mqds/ingest/, a retained
//   message and a topic an uploader does not publish on.
// - watched: a client event, an upload message (from anyone: MESSAGE answers one who may not
//   upload with a status that says so), a fetch request or response, a query. The MESSAGE callback
//   judges those fully (state, properties, the stamp of a goodbye) and may answer or rewrite them:
//   a will on them is judged by nobody, so it must reach nobody. The watched write
//   is remembered until the next MESSAGE or loop pass; a delivery of it that comes first is a
//   will's (a publish's MESSAGE comes between its WRITE and READ checks), and is refused
//   (judge_read).
// - no opinion: every other topic, left to the broker's ACLs.
// Reads: a delivery of a watched will is refused. On a fetch response topic, the plugin's own copy
// of a response reaches the requester the topic names and nobody else: the read is allowed to that
// client (whatever the broker's ACLs say: the fetch gate judged the response) and refused to any
// other (and to everybody on the tracker's own response topic, whose answers are the tracker's);
// a will never gets there, it is refused first. Any delivery by subscription on a query
// response topic is refused (the plugin delivers those to their requester directly, which skips
// the READ check). Everything else is left to the broker's ACLs.
//
// The gate makes no broker calls and reads no clock: the adapter asks it and turns its answers
// into MOSQ_ERR_*. Its log lines are rate-limited like the fetch gate's.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "allowed_users.hpp"
#include "fetch_gate.hpp"
#include "log_text.hpp"
#include "mqds/output.hpp"

namespace mqds::plugin {

// A publish or a will, as the ACL check sees it.
struct Write {
  std::string_view client_id;
  const char* username = nullptr;  // nullptr: the client gave none
  int protocol_version = 5;
  std::string_view topic;
  std::string_view payload;
  bool retain = false;
};

enum class AclVerdict : std::uint8_t {
  no_opinion,  // MOSQ_ERR_PLUGIN_DEFER: the broker's ACLs decide
  refuse,      // MOSQ_ERR_ACL_DENIED
  watch,       // no opinion, but a delivery of it before its MESSAGE is a will's: see above
  allow,       // MOSQ_ERR_SUCCESS: a fetch response read by its own requester
};

struct AclDecision {
  AclVerdict verdict = AclVerdict::no_opinion;
  std::optional<LogLine> log;  // to write, when refused (rate-limited)
  // A refusal the MESSAGE callback would count and log in its own way: a publish on a topic the
  // tracker issues (the tracker's events/rejected), a fetch (the fetch gate's fetch/refused).
  bool tracker_topic = false;
  std::optional<FetchRefusal> fetch;
};

struct AclMetrics {
  std::uint64_t writes_refused = 0;
  std::uint64_t wills_refused = 0;  // wills whose delivery was refused (once per will)
};

class AclGate {
 public:
  struct Refusal {
    std::string reason;
    bool tracker_topic = false;
    std::optional<FetchRefusal> fetch;
  };
  static constexpr std::int64_t log_interval_ms = LogLimiter::default_interval_ms;
  static constexpr std::size_t logged_text_bytes_max = 160;
  // How much of a watched write is kept to recognise its delivery: its topic, its length and its
  // first and last bytes (a will's delivery carries a copy of its payload).
  static constexpr std::size_t remembered_edge_bytes = 32;

  AclGate(AllowedUsers ingest, const FetchGate& fetch)
      : ingest_(std::move(ingest)), fetch_(fetch) {}

  // A watched write is remembered (one at a time: the next write or MESSAGE replaces it).
  AclDecision judge_write(std::int64_t now_ms, const Write& write);
  // A MESSAGE arrived: what was watched was a publish, which MESSAGE judges.
  void published() { watched_.reset(); }
  // A pass of the broker's loop ended: a will is delivered within the call that checked it.
  void loop_passed() { watched_.reset(); }
  // A delivery to one subscriber, `reader` (its client id).
  AclDecision judge_read(std::int64_t now_ms, std::string_view reader, std::string_view topic,
                         std::string_view payload);

  const AclMetrics& metrics() const { return metrics_; }

 private:
  struct Watched {
    std::string topic;
    std::string publisher;
    std::size_t payload_bytes = 0;
    std::string head, tail;
    bool refused = false;  // a delivery of it was refused already (counted and logged)
  };
  // Why a write is refused, or nullopt; `watch` says whether an allowed one is watched.
  std::optional<Refusal> refusal(const Write& write, bool& watch) const;

  AllowedUsers ingest_;
  const FetchGate& fetch_;
  std::optional<Watched> watched_;
  AclMetrics metrics_;
  LogLimiter write_log_, will_log_;
};

}  // namespace mqds::plugin
