// The Tracker Server of the specification as a state machine with no I/O.
//
// Theory of operation. The adapter (the Mosquitto plugin, or the simulation's bus) feeds every
// message a client publishes on a protocol topic to on_message() with the publisher's client id,
// which the broker knows and the payload cannot forge. It also reports lost connections
// (on_disconnect), the passage of time (on_tick) and files it has staged (add_file). Each call
// returns an Output: storage effects to commit durably, then events to publish.
//
// - Join (the specification's Client Join with timeouts, docs/specification.md):
//   ClientJoinRequested is checked against the view (plan_join); denial, or ClientJoinAccepted
//   with what the client must add and remove, then a timeout. Only on ClientJoinSucceeded is the
//   client registered and announced in ClientRegistered. A request from a client that is already
//   registered is a resync (it missed events, or restarted): it stays registered but leaves its
//   distribution rounds, and if what it holds is unchanged the tracker confirms with a
//   ClientRegistered for it alone at the current Revision, so that a client catching up costs the
//   rest of the fleet nothing.
// - Servers that know only the specification (docs/specification.md, "Torrent servers that know
//   only the specification"): a request without the Extensions a behaviour needs is served as the
//   specification's server would need it. Such a server drops the view changes that arrive
//   before its registration, so the tracker keeps those (a bounded replay per join) and sends
//   them to it alone right after its ClientRegistered; it waits for a TrackerHello after a
//   denial, so one denied for a passing reason (too many joins, the service full, a timeout, a
//   view that changed) is sent a TrackerHello alone once a join slot is free; and it keeps
//   fragments no file references, which RemoveFragmentInfos then does not list.
// - Goodbye and loss: a registered client that says goodbye or whose connection is lost is removed
//   from the view; everybody learns who it was from the ClientIdentifier the tracker stamps into
//   the ClientGoodbye (a rewritten payload, or one the tracker publishes).
// - Distribution (the specification's Fragment Distribution, docs/specification.md): staged
//   fragments go out in rounds, at most `distributions_in_flight_max` at once. Started (to the
//   clients placement chose, each alone); the clients
//   that placement chose ask with Requested (the round is requesting); Delivered goes to those
//   clients only (it is delivering); each confirms Obtained once its temporary copy is durable;
//   Ended names who obtained it and changes the view. Each stage ends early when nobody is left to
//   wait for, else at its deadline. When a fragment has `replicas` holders its staged copy is
//   dropped; otherwise another round follows after `retry_delay_ms`, or when a client registers if
//   no client can take it now.
// - A ledger of holdings remembers which fragments each client was named for, also while it is
//   away, so a client that lost its connection between Obtained and Ended keeps that replica.
// - Repair: a fragment of a file whose copies fall short of `replicas` is brought back to it from
//   a copy that survives, since its staged content is long gone. A copy counts while its holder
//   is registered, and while a holder that left (goodbye or lost) has been away for less than
//   `repair_delay_ms`, so a board that reboots sets off no copying; a copy the holder no longer
//   lists when it joins again (lost, found corrupt) stops counting at once. At most
//   `repairs_in_flight_max` repairs run, the fragments with the fewest copies first. A repair is
//   a round with one stage before the others, sourcing: the tracker fetches the fragment from a
//   registered holder's fetch endpoint (mqds/fetch.hpp; fetch_requests in the Output, answers
//   through on_fetch_response) with a fetch::Client, which verifies it by its hash and tries the
//   next holder when one fails. The round then goes on as a distribution does, to the new
//   holders placement chose for the missing copies only, and its Delivered carries the fetched
//   content, which lives in the round alone and is never staged: the broker carries each
//   repaired byte in once and out once per new copy. A fragment no registered holder with a fetch
//   endpoint has waits, reported as unavailable (no holder) or unsourceable (holders that cannot
//   be fetched from, like servers that know only the specification), and is repaired when one
//   comes back. After a failed repair the fragment is tried again after `retry_delay_ms`.
// - Trimming and rebalancing: the same scan finds fragments with more than `replicas` registered
//   holders, whose copies placement likes least go: their holders (those whose join listed the
//   Trim extension) are sent a TrackerHello alone, join again, and their ClientJoinAccepted lists
//   the copy to delete, never below `replicas` copies that stay; and fragments placement wants
//   on a client that lacks them (the fleet grew), whose one copy moves there as a repair moves
//   content (a move), before the surplus is trimmed.
// - Every view change increments the Revision carried by the event that announces it, so a torrent
//   server that misses one notices the gap and rejoins; when quiet, TrackerRevision repeats it.
// - A client event that fits no join or round in progress (late after a timeout, or from a client
//   out of step) changes nothing; it is counted in events_out_of_place and logged at debug.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "mqds/events.hpp"
#include "mqds/fetch_client.hpp"
#include "mqds/output.hpp"
#include "mqds/random.hpp"
#include "mqds/seen_events.hpp"
#include "mqds/view.hpp"

namespace mqds {

struct TrackerConfig {
  std::int64_t fragment_size_bytes = 1024 * 1024;
  std::size_t replicas = 3;
  std::int64_t join_timeout_ms = 10'000;
  std::int64_t request_timeout_ms = 5'000;    // Started -> Requested
  std::int64_t delivery_timeout_ms = 30'000;  // Delivered -> Obtained
  std::int64_t retry_delay_ms = 5'000;        // a fragment short of replicas tries again after this
  std::int64_t revision_beacon_ms = 5'000;
  std::int64_t startup_settle_ms = 2'000;  // lets clients rejoin before distribution resumes
  std::size_t joins_in_flight_max = 64;
  std::size_t distributions_in_flight_max = 16;
  std::size_t registered_clients_max = 10'000;
  std::size_t seen_events_max = 65'536;
  // What a join of a server without the Revision extension may collect for its replay; a join
  // that misses more is denied (Other) and asked to join again.
  std::size_t join_replay_events_max = 4'096;
  std::size_t join_replay_bytes_max = 16 * 1024 * 1024;
  // Servers without JoinRetry denied for a passing reason, waiting for their TrackerHello.
  std::size_t hello_waiting_max = 10'000;
  // The largest ClientJoinRequested the tracker reads (plugin_opt_join_request_max); a larger one
  // is denied (Other) without being decoded. A request lists every file the server knows (about
  // 67 bytes per fragment of each FragmentSequence) and every fragment it stores (about 84 bytes
  // each), so 32 MiB holds 250,000 known fragments and 200,000 stored ones: a service of 250 GiB
  // and 200 GiB on one board at 1 MiB fragments. Decoding costs about the payload's size again,
  // on the broker's only thread; the event bound of 256 MiB would let one client cost far more.
  std::size_t join_request_bytes_max = 32 * 1024 * 1024;
  // How long a copy whose holder left still counts (plugin_opt_repair_delay_ms): a board that
  // reboots or loses its network for less than this comes back to find nothing moved.
  std::int64_t repair_delay_ms = 600'000;
  std::size_t repairs_in_flight_max = 8;  // plugin_opt_repairs_in_flight
  // A repair's fetch of one chunk from one holder; then the next holder is asked.
  std::int64_t repair_fetch_timeout_ms = 10'000;
  // Looking for fragments to repair reads every fragment of the view: done when something that
  // changes the answer happened (a client left or joined, a delay expired, a repair failed), and
  // at most this often.
  std::int64_t repair_scan_interval_ms = 1'000;
  // Repairs and moves together copy at most this many fragment bytes per second, counted once per
  // new copy (plugin_opt_repair_bytes_per_s); 0: no bound but repairs_in_flight_max.
  std::int64_t repair_bytes_per_s = 0;
  // Copies move toward the placement of the current fleet when clients join, leave for good or
  // change their capacity (plugin_opt_rebalance).
  bool rebalance = true;
  // A holder of surplus copies is asked to delete them with a TrackerHello to it alone (it joins
  // again, and its ClientJoinAccepted removes them); one that does not join is asked again no
  // sooner than this.
  std::int64_t trim_ask_interval_ms = 30'000;
};

// What the tracker keeps across restarts. Registered clients are not part of it: a restart drops
// every connection, and clients rejoin after TrackerHello.
struct TrackerSnapshot {
  FileInfos files;
  FragmentInfos fragments;
  std::uint64_t revision = 0;
  std::map<Hash, std::int64_t> staged;  // fragments whose content is in staging, with their size
  // For every client ever registered: the fragments it was last known to hold (named by an Ended
  // or reported at its registration). Survives its absence and tracker restarts.
  std::map<ClientId, std::set<Hash>> holdings;
};

enum class Verdict : std::uint8_t {
  pass,     // deliver the message to its subscribers unchanged
  rewrite,  // deliver `rewritten_payload` instead
  drop,     // do not deliver (the plugin answers MOSQ_ERR_ACL_DENIED)
};

struct MessageResult {
  Output output;
  Verdict verdict = Verdict::pass;
  std::string rewritten_payload;
};

struct IngestResult {
  Output output;
  std::string error;  // empty on success
  bool ok() const { return error.empty(); }
};

struct TrackerMetrics {
  std::uint64_t joins_accepted = 0;
  std::uint64_t joins_denied = 0;
  std::uint64_t joins_timed_out = 0;
  std::uint64_t clients_registered = 0;
  std::uint64_t clients_lost = 0;  // disconnected without ClientGoodbye
  std::uint64_t files_published = 0;
  std::uint64_t distributions_started = 0;
  std::uint64_t distributions_ended = 0;
  std::uint64_t deliveries_failed = 0;  // a receiver that failed or never confirmed
  std::uint64_t distributed_bytes = 0;  // fragment bytes confirmed by receivers
  std::uint64_t ingested_bytes = 0;     // content of published files
  // Malformed, over a bound (a join over join_request_bytes_max), or on a topic the sender may not
  // use.
  std::uint64_t events_rejected = 0;
  std::uint64_t events_duplicated = 0;
  // Well formed, but fits no join or round in progress: a ClientJoinSucceeded or ClientJoinFailed
  // for no pending join, a Requested from outside a round's targets or after its requesting stage,
  // an Obtained or Failed from no receiver, or for a round already over. Each is ignored and
  // logged at debug; a few follow every timeout, a steady stream means a client out of step.
  std::uint64_t events_out_of_place = 0;
  std::uint64_t events_replayed = 0;  // view changes sent again to a server that joined during them
  std::uint64_t hellos_sent = 0;      // TrackerHello to one server denied for a passing reason
  // On a torrent server's topic from a client the adapter does not let be one: see on_unauthorised.
  std::uint64_t events_unauthorised = 0;
  std::uint64_t repairs_started = 0;
  std::uint64_t repairs_ended = 0;   // delivered: at least one new holder confirmed
  std::uint64_t repairs_failed = 0;  // no holder could give the content, or no receiver took it
  std::uint64_t repaired_bytes = 0;  // fragment bytes confirmed by new holders of repairs
  std::uint64_t repair_fetched_bytes = 0;  // fragment bytes fetched from holders for repairs
  // Moves: a copy made where placement wants it, from a holder it does not (rebalancing); the
  // copy placement likes least is trimmed after.
  std::uint64_t rebalances_started = 0;
  std::uint64_t rebalances_ended = 0;  // the new holder confirmed
  std::uint64_t rebalances_failed = 0;
  std::uint64_t rebalanced_bytes = 0;
  // Trimming: TrackerHello sent to holders of surplus copies, and the copies their
  // ClientJoinAccepted then told them to delete.
  std::uint64_t trim_requests = 0;
  std::uint64_t copies_trimmed = 0;
};

struct TrackerGauges {
  std::size_t registered_clients = 0;
  std::size_t files = 0;
  std::size_t fragments = 0;
  std::size_t under_replicated_fragments = 0;  // known or staged, with fewer holders than replicas
  std::size_t staged_fragments = 0;
  std::size_t distributions_in_flight = 0;
  std::size_t joins_in_flight = 0;
  std::size_t clients_awaiting_hello = 0;
  std::size_t repairs_in_flight = 0;
  // Of files, neither staged nor held by a registered client: they cannot be read until a holder
  // comes back.
  std::size_t unavailable_fragments = 0;
  // Registered clients that left and whose copies still count (within repair_delay_ms).
  std::size_t clients_away = 0;
  // From the last scan: copies above `replicas` waiting for their holder's join, and fragments
  // whose holders are not yet the ones placement wants.
  std::size_t surplus_copies = 0;
  std::size_t misplaced_fragments = 0;
};

class Tracker {
 public:
  Tracker(TrackerConfig config, TrackerSnapshot snapshot, Random& random);

  // Tracker Server Startup, step 3: TrackerHello. The adapter has subscribed
  // (tracker_subscriptions()).
  Output start(std::int64_t now_ms);
  // Tracker Server Goodbye. The plugin cannot deliver it at broker shutdown; a lost connection
  // means the same to torrent servers.
  Output goodbye(std::int64_t now_ms);

  MessageResult on_message(std::int64_t now_ms, const ClientId& sender, std::string_view topic,
                           std::string_view payload);
  // A message on a torrent server's topic from a client the adapter does not let be one (which
  // clients may is the adapter's policy: the plugin's plugin_opt_edge_users). It is dropped without
  // being decoded; a join request is answered at once with a ClientJoinDenied (Other) saying `why`,
  // to that client alone (unless `answer` is false: the adapter answers a client once per
  // connection), so a board set up with the wrong account learns it, and a client that only lies
  // about what it stores never joins.
  MessageResult on_unauthorised(const ClientId& sender, std::string_view topic, std::string why,
                                bool answer = true);
  Output on_disconnect(std::int64_t now_ms, const ClientId& client);
  Output on_tick(std::int64_t now_ms);
  // A message on the tracker's repair response topic (repair_response_topic()): a holder's answer
  // to a fetch of a repair. One that answers no request in flight is ignored.
  Output on_fetch_response(std::int64_t now_ms, fetch::IncomingResponse response);
  static std::string repair_response_topic() {
    return fetch::response_topic(fetch::tracker_requester, "repair");
  }

  // A file whose fragments the adapter has staged durably. `staged_sizes` are the fragments it
  // staged for this file (a fragment already known to the service need not be staged again).
  // Publishes FileInfoPublished and queues the staged fragments for distribution.
  IngestResult add_file(std::int64_t now_ms, const Hash& hash, const FileMetadata& metadata,
                        const std::map<Hash, std::int64_t>& staged_sizes);

  // When on_tick() next has work: the earliest of a pending join's deadline, a round's deadline,
  // the turn of the first queued fragment when a round is free, and the next TrackerRevision.
  // That beacon is always due at some time, so there always is a next deadline; it may be in the
  // past when work is due now. Adapters may tick more often.
  std::int64_t next_deadline_ms() const;

  const DistributionView& view() const { return view_; }
  const TrackerConfig& config() const { return config_; }
  const TrackerMetrics& metrics() const { return metrics_; }
  TrackerGauges gauges() const;
  bool is_staged(const Hash& fragment) const { return staged_.count(fragment) != 0; }
  const std::map<ClientId, std::set<Hash>>& holdings() const { return holdings_; }
  std::size_t joins_in_flight() const { return joins_.size(); }
  std::size_t repairs_in_flight() const { return repairs_in_flight_; }
  // Clients that left less than repair_delay_ms ago, each with when (for `mqds status`): their
  // copies still count. Forgotten at the tick that finds the delay over.
  const std::map<ClientId, std::int64_t>& away_since() const { return away_since_; }
  // Copies a client was told to delete in its ClientJoinAccepted that the view lists until its
  // registration: they count nowhere (not toward replicas, not as a source).
  const std::map<ClientId, std::set<Hash>>& trimming() const { return trimming_; }

 private:
  // The view changes a joining server without the Revision extension would drop: published
  // since its ClientJoinAccepted, in order.
  struct Replay {
    std::vector<Publish> events;
    std::size_t bytes = 0;
    bool overflowed = false;  // over join_replay_events_max or join_replay_bytes_max
  };
  struct PendingJoin {
    Uuid request_event_id;
    JoinAcceptance plan;
    std::int64_t deadline_ms;
    bool cbor = false;             // the request listed CBOR in DeliveryEncodings
    bool retries = false;          // the request listed JoinRetry
    std::optional<Replay> replay;  // the request did not list Revision
    bool trims = false;            // the request listed Trim
  };
  // One fragment's distribution, from Started to Ended. Its stage changes in deliver() alone, and
  // it ends in end_round() alone; advance_round() decides when.
  struct Round {
    enum class Stage : std::uint8_t {
      sourcing,    // a repair: fetching the content from a holder, nothing sent to the targets
      requesting,  // Started sent: waiting for each target's Requested or Failed
      delivering,  // Delivered sent to the receivers: waiting for their Obtained or Failed
    };
    Stage stage = Stage::requesting;
    std::int64_t size_bytes = 0;
    std::set<ClientId> targets;    // whom placement chose
    std::set<ClientId> answered;   // targets that requested or declined
    std::set<ClientId> receivers;  // targets that requested: whom Delivered goes to
    std::set<ClientId> obtained;   // delivering: receivers that confirmed
    std::set<ClientId> settled;    // delivering: receivers that confirmed or failed
    std::int64_t deadline_ms = 0;  // of the stage (sourcing: the fetch::Client's own deadlines)
    // A repair: its content comes from a holder (source, while sourcing) and stays here, not in
    // staging, until the round ends.
    bool repair = false;
    bool rebalance = false;  // of those, a move: one copy for a holder placement wants
    std::unique_ptr<fetch::Client> source;
    std::shared_ptr<const std::string> content;
  };

  void on_join_requested(std::int64_t now_ms, const ClientId& sender, const ClientJoinRequested& e,
                         Output& out);
  void on_join_succeeded(std::int64_t now_ms, const ClientId& sender, const ClientJoinSucceeded& e,
                         Output& out);
  void on_join_failed(const ClientId& sender, const ClientJoinFailed& e, Output& out);
  void on_requested(std::int64_t now_ms, const ClientId& sender,
                    const FragmentDistributionRequested& e, Output& out);
  void on_obtained(std::int64_t now_ms, const ClientId& sender, const Hash& hash, bool ok,
                   Output& out);

  // Counts and logs a client event that fits no join or round in progress.
  void out_of_place(const std::string& what, Output& out);
  void deny(const ClientId& client, std::uint32_t code, std::string reason,
            std::optional<Uuid> request, Output& out);
  // A denial for a reason that passes (Other): a server that does not retry on its own
  // (`retries` false) is queued for a TrackerHello.
  void deny_for_now(const ClientId& client, std::string reason, std::optional<Uuid> request,
                    bool retries, Output& out);
  // Publishes a view change to every subscriber, and keeps it for the replay of each join that
  // would miss it.
  void announce(const Event& event, Output& out);
  void keep_for_replays(const Publish& publish);
  // Sends TrackerHello, each to one server alone, to as many waiting servers as joins can start.
  void send_hellos(std::int64_t now_ms, Output& out);
  void forget_hello(const ClientId& client);
  void queue_hello(const ClientId& client, Output& out);
  // Removes a registered client from the view and from its rounds. The ClientGoodbye announcing it
  // carries the returned Revision; with `publish_goodbye` the tracker publishes it itself (a lost
  // client), otherwise the caller forwards the client's own, rewritten.
  std::uint64_t unregister(std::int64_t now_ms, const ClientId& client, bool publish_goodbye,
                           Output& out);
  // Takes a client out of every round in progress. A lost client (`keep_obtained`) stays named
  // for what it already confirmed, so the ledger remembers that durable copy; a resyncing client
  // is withdrawn completely, because its join plan was computed without the round.
  void withdraw_from_rounds(std::int64_t now_ms, const ClientId& client, bool keep_obtained,
                            Output& out);
  std::uint64_t bump_revision(std::int64_t now_ms, Output& out);

  void schedule(const Hash& fragment, std::int64_t not_before_ms);
  void unpark_all(std::int64_t now_ms);
  void start_rounds(std::int64_t now_ms, Output& out);
  // Called when a round's membership changes or its deadline passes: moves it on if nobody is left
  // to wait for, or nobody is waited for any longer.
  enum class RoundChange : std::uint8_t { members, deadline_passed };
  void advance_round(std::int64_t now_ms, const Hash& hash, RoundChange change, Output& out);
  // Requesting -> delivering: one Delivered to each receiver.
  void deliver(std::int64_t now_ms, const Hash& hash, Output& out);
  // Removes the round. One that delivered to nobody is tried again later; one that delivered is
  // closed with FragmentDistributionEnded naming who obtained the fragment.
  void end_round(std::int64_t now_ms, const Hash& hash, Output& out);
  // Drops the staged copy once the fragment has its replicas; true if it did.
  bool release_if_replicated(std::int64_t now_ms, const Hash& hash, Output& out);

  // Repair. A scan is wanted no earlier than `at_ms` (and no sooner than repair_scan_interval_ms
  // after the last one).
  void want_repair_scan(std::int64_t at_ms);
  void mark_away(std::int64_t now_ms, const ClientId& client);
  void mark_back(const ClientId& client);
  // The copies of each fragment that count now: registered holders, and holders away for less
  // than repair_delay_ms.
  struct CopyCounts {
    std::map<Hash, std::size_t> registered;  // held by registered clients
    std::map<Hash, std::size_t> counted;     // and by clients away for less than the delay
  };
  CopyCounts count_copies(std::int64_t now_ms) const;
  std::size_t counted_copies_of(std::int64_t now_ms, const Hash& hash) const;
  std::size_t registered_copies_of(const Hash& hash) const;
  void scan_for_repairs(std::int64_t now_ms, Output& out);
  // Trimming: a TrackerHello to each holder of surplus copies not asked recently.
  void ask_for_trims(std::int64_t now_ms, Output& out);
  // At a join of a holder asked to trim: its surplus copies the others keep at `replicas` are
  // removed in its ClientJoinAccepted.
  void trim_in_join(const ClientId& client, JoinAcceptance& accepted, Output& out);
  bool is_trimming(const ClientId& client, const Hash& hash) const;
  // The request topic of a registered client's fetch endpoint (the one `mqds get` and repairs
  // fetch from); nothing if it has none.
  std::optional<std::string> fetch_topic_of(const ClientId& client) const;
  void start_repairs(std::int64_t now_ms, Output& out);
  // Takes a sourcing round's fetch output: requests go out, content moves the round on, a source
  // that gave up ends it.
  void take_source_output(std::int64_t now_ms, const Hash& hash, fetch::ClientOutput source_out,
                          Output& out);
  // Ends a repair still sourcing (no holder gave the content, or its targets left), and tries
  // again after retry_delay_ms.
  void end_repair_early(std::int64_t now_ms, const Hash& hash, const std::string& why, Output& out);
  void forget_correlations(const Hash& hash);
  // After a repair's round: the fragment staged meanwhile goes to the distribution.
  void distribute_if_staged(std::int64_t now_ms, const Hash& hash, Output& out);
  // Sends Started to a round's targets and waits for their Requested.
  void request(std::int64_t now_ms, const Hash& hash, Round& round, Output& out);
  std::size_t distributions_in_flight() const { return rounds_.size() - repairs_in_flight_; }

  TrackerConfig config_;
  Random& random_;
  DistributionView view_;
  SeenEvents seen_;
  TrackerMetrics metrics_;

  std::map<ClientId, PendingJoin> joins_;
  std::map<Hash, std::int64_t> staged_;  // hash -> size
  std::map<ClientId, std::set<Hash>> holdings_;
  std::map<Hash, Round> rounds_;
  // Obtained still on their way from a client that joined again and listed those copies, which
  // its join deleted: each is ignored when it arrives (see on_join_requested). Forgotten when the
  // client leaves.
  std::map<ClientId, std::multiset<Hash>> late_obtained_;
  // Registered clients whose last successful join accepted Delivered in CBOR; forgotten when
  // they leave, so it never holds more than the registered clients.
  std::set<ClientId> cbor_receivers_;
  using Queue = std::multimap<std::int64_t, Hash>;
  Queue queue_;  // staged fragments waiting for a round, by time
  std::map<Hash, Queue::iterator> queued_;
  std::set<Hash> parked_;  // no client can take them until the view changes
  // Servers waiting for their TrackerHello, oldest first, and those sent one that have not
  // requested a join yet (each holds a join slot until its deadline).
  std::map<std::uint64_t, ClientId> hello_queue_;    // by arrival
  std::map<ClientId, std::uint64_t> hello_waiting_;  // -> place in hello_queue_
  std::uint64_t hello_arrivals_ = 0;
  std::map<ClientId, std::int64_t> hellos_in_flight_;  // -> deadline
  // Servers without JoinRetry denied because another client used their endpoints (a board that
  // restarted under a new client id before its old connection was found lost): invited once
  // those endpoints are free. `endpoints_released_` says a client or a join has gone since the
  // last look.
  std::map<ClientId, std::set<std::string>> endpoint_waiters_;
  bool endpoints_released_ = false;
  std::int64_t distribute_after_ms_ = 0;
  std::int64_t last_view_event_ms_ = 0;

  // Repair.
  std::size_t repairs_in_flight_ = 0;  // rounds_ that are repairs
  std::map<ClientId, std::int64_t> away_since_;
  std::multimap<std::int64_t, ClientId> away_expiries_;  // since + repair_delay_ms
  std::optional<std::int64_t> repair_scan_at_ms_;
  std::int64_t last_repair_scan_ms_ = 0;
  bool repair_scanned_ = false;
  // The last scan left fragments that only a client joining can help (no registered holder, no
  // holder with a fetch endpoint, no client with room): a registration asks for a scan.
  bool repair_waits_for_clients_ = false;
  // From the last scan: fragments short of replicas that a holder can give, fewest copies first,
  // each with how many copies are missing; then the fragments to move (rebalancing).
  struct RepairWork {
    Hash hash;
    std::size_t missing = 0;
    bool move = false;
  };
  std::deque<RepairWork> repair_queue_;
  std::int64_t repair_bytes_next_ms_ = 0;  // repair_bytes_per_s: when the next copy may start
  // Trimming: from the last scan, the surplus copies each holder should delete, and when it was
  // last asked to.
  std::map<ClientId, std::set<Hash>> trims_;
  std::map<ClientId, std::int64_t> trim_asked_ms_;
  std::map<ClientId, std::set<Hash>> trimming_;  // see trimming()
  // Registered clients whose last successful join listed Trim: the only ones asked to delete a
  // copy.
  std::set<ClientId> trimmable_;
  std::size_t surplus_copies_ = 0;
  std::size_t misplaced_fragments_ = 0;
  std::map<std::string, Hash> repair_correlations_;  // fetch Correlation Data -> sourcing round
};

}  // namespace mqds
