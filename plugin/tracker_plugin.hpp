// The adapter between Mosquitto and the core's Tracker. One instance lives in the plugin's
// userdata; every broker callback lands in one of its methods, on the broker's thread.
//
// Effects are group-committed: what the tracker asks to store during one main-loop iteration is
// committed in one durable LMDB transaction on the next TICK, and only then are the events it
// produced published. If TICK does not come (per_listener_settings true stops it in 2.0.11), each
// callback commits and publishes at once instead.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqds/ingest.hpp"
#include "mqds/random.hpp"
#include "mqds/store/tracker_store.hpp"
#include "mqds/tracker.hpp"
#include "acl_gate.hpp"
#include "edge_gate.hpp"
#include "fetch_gate.hpp"
#include "metrics.hpp"
#include "options.hpp"

struct mosquitto_evt_message;
struct mosquitto_evt_acl_check;

namespace mqds::plugin {

class TrackerPlugin {
 public:
  // Opens the store and starts the tracker (TrackerHello). Throws with a message for the log.
  explicit TrackerPlugin(Options options);

  // MOSQ_ERR_* for the MESSAGE callback: SUCCESS to deliver (possibly rewritten), ACL_DENIED to
  // drop.
  int on_message(mosquitto_evt_message& event);
  // A publish under mqds/ingest/ (common/include/mqds/ingest.hpp), for the ingest::Receiver.
  int on_ingest(mosquitto_evt_message& event);
  // A publish under mqds/fetch/: see fetch_gate.hpp.
  int on_fetch(mosquitto_evt_message& event);
  // Counts and logs (rate-limited) a refused fetch message; MOSQ_ERR_ACL_DENIED.
  int refuse_fetch(const mosquitto_evt_message& event, FetchRefusal why);
  // mqds/query/request (common/include/mqds/query.hpp): answered from the tracker's view, to the
  // requester alone, by those who may upload or fetch.
  int on_query(mosquitto_evt_message& event);
  // MOSQ_EVT_ACL_CHECK, registered first: ACL_DENIED for what no client may publish (a will
  // included, see acl_gate.hpp), PLUGIN_DEFER for the rest, so that the broker's ACLs still decide.
  int on_acl_check(const mosquitto_evt_acl_check& event);
  // The same event, registered after every other ACL callback: reached only when all of them
  // deferred. SUCCESS with plugin_opt_acl_fallback allow, else PLUGIN_DEFER (the broker denies).
  int on_acl_fallback(const mosquitto_evt_acl_check& event);
  // MOSQ_EVT_BASIC_AUTH, registered only when plugin_opt_edge_ids binds ids to users: AUTH for a
  // client that asks for a torrent server's client id without being that user (see edge_gate.hpp),
  // PLUGIN_DEFER for everyone else, so that the broker's password check still decides.
  int on_basic_auth(const char* client_id, const char* username);
  bool binds_edge_ids() const { return edges_.binds_ids(); }
  void on_disconnect(const char* client_id);
  void on_tick();

 private:
  // Memory from mosquitto_malloc, which the broker takes over when a publish succeeds.
  struct BrokerFree {
    void operator()(void* memory) const;
  };
  struct PendingPublish {
    std::string topic;
    std::string payload;
    std::string to;  // empty: to every subscriber
    bool retain = false;
    // A fragment delivery, encoded once straight from the store into the broker's memory
    // (`payload` is then empty): a fragment is copied once on its way out, not three times.
    std::unique_ptr<void, BrokerFree> encoded;
    std::size_t encoded_size = 0;
  };

  void take(Output output);
  // A publish on the tracker's own response topic (FetchGate::is_tracker_response): an answer to a
  // repair's fetch, handed to the tracker and delivered to nobody (always ACL_DENIED).
  int on_tracker_response(mosquitto_evt_message& event);
  // Publishes one of the tracker's fetch requests to its edge; false if the broker refused it.
  bool publish_fetch_request(const fetch::OutgoingRequest& request);
  // Commits what the tracker and the receiver decided, then publishes. `ticking`: called from TICK.
  void flush(bool ticking = false);
  void restart_from_store(const char* why);
  // Without TICK nothing would ever be flushed: flush now if the last one is long gone.
  void flush_if_no_tick();

  Options options_;
  TrackerStore store_;
  std::unique_ptr<Random> random_;
  std::unique_ptr<Tracker> tracker_;
  // Rebuilt with the tracker when a commit fails: both then start again from what is durable.
  std::unique_ptr<ingest::Receiver> receiver_;
  FetchGate fetch_;
  AclGate acl_;
  EdgeGate edges_;
  static constexpr std::int64_t fallback_log_interval_ms = 60'000;
  std::int64_t fallback_logged_ms_ = 0;
  bool fallback_logged_ = false;
  // Unanswered fetch requests are forgotten once a second, not on every tick.
  static constexpr std::int64_t fetch_expiry_interval_ms = 1'000;
  std::int64_t fetch_expired_ms_ = 0;
  std::size_t queries_refused_logged_ = 0;
  static constexpr std::size_t queries_refused_logged_max = 100;  // the log cannot be flooded
  static constexpr std::string_view query_prefix = "mqds/query/";
  std::vector<StorageEffect> pending_effects_;
  std::vector<PendingPublish> pending_publishes_;
  // The tracker's fetch requests (repairs), published after pending_publishes_ at QoS 1.
  std::vector<fetch::OutgoingRequest> pending_fetch_requests_;
  MetricsPublisher metrics_;
  std::int64_t last_tick_ms_ = 0;
  bool warned_no_tick_ = false;
};

}  // namespace mqds::plugin
