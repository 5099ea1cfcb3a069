// The Torrent Server of the specification as a state machine with no I/O.
//
// Theory of operation. The adapter (mqds-edge, or the simulation) reports the broker connection
// (on_connected/on_disconnected), every message on the torrent server's subscriptions, and time.
// Each call returns an Output: storage effects to commit durably, then events to publish.
//
// Phases: disconnected -> (connected) joining -> awaiting_registration -> registered, and
// unregistered between attempts. A phase is data: it carries what only it needs (the join's
// request id, its deadline, the time of the next retry), and enter() is the one place that changes
// it, checked against the table of allowed transitions (transition_allowed). Each phase's deadline
// is read from the phase itself by both next_deadline_ms() and on_tick().
// - Join (the specification's Client Join with timeouts, docs/specification.md): on connecting, on
//   TrackerHello, and whenever it finds its view out of date, the server sends ClientJoinRequested
//   with what it stores; it applies ClientJoinAccepted (deleting what the tracker says conflicts),
//   answers ClientJoinSucceeded, and is registered when ClientRegistered names it. A timeout or a
//   denial for "Other" retries with jittered backoff; a denial the operator must fix (fragment
//   size, hash algorithm, endpoint) that answers this server's request is logged as an error with
//   what to do, and the server asks again after operator_retry_ms and at every TrackerHello: a
//   denial never stops it. One that names no request is treated as passing.
// - Distribution (the specification's Fragment Distribution, docs/specification.md): on Started it
//   asks for the fragment if placement, computed from its own view, names it and it has room; it
//   verifies Delivered data against the hash, stores it as temporary, confirms Obtained, and
//   persists it when Ended names it (else deletes it).
// - View: ClientRegistered, ClientGoodbye, FileInfoPublished and Ended change it. They carry a
//   Revision; a gap means an event was lost, and the server rejoins to get the current view.
// A message meant for this server that its phase cannot use (an Accepted while not joining, an
// answer to another request, a Started or a Delivered while not registered, a view change while
// its view is not the tracker's) is ignored, counted in events_out_of_phase and logged at debug:
// after a reconnection or a rejoin such leftovers are normal, a steady stream of them is not.
// A temporary fragment lives until an Ended says whether to persist or delete it, or, if that Ended
// is lost (a broken connection, a restart), until the next join: the request reports it as
// obtained and the tracker keeps it only if an Ended named this server for it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>

#include "mqds/events.hpp"
#include "mqds/output.hpp"
#include "mqds/random.hpp"
#include "mqds/seen_events.hpp"
#include "mqds/view.hpp"

namespace mqds {

struct TorrentConfig {
  ClientId client_id;
  std::set<std::string> endpoints;
  std::optional<std::int64_t> capacity_bytes;     // nullopt: unlimited
  std::size_t default_replicas = 3;               // until ClientJoinAccepted says otherwise
  std::int64_t join_timeout_ms = 10'000;          // ClientJoinRequested -> Accepted/Denied
  std::int64_t registration_timeout_ms = 10'000;  // ClientJoinSucceeded -> ClientRegistered
  std::int64_t join_retry_min_ms = 1'000;
  std::int64_t join_retry_max_ms = 30'000;
  // After a denial only a person can fix (its cause is logged): ask again this late.
  std::int64_t operator_retry_ms = 600'000;
  std::int64_t request_timeout_ms = 30'000;    // Requested -> Delivered
  std::int64_t temporary_timeout_ms = 60'000;  // Obtained -> Ended; then a rejoin settles the copy
  std::size_t pending_requests_max = 64;
  std::size_t seen_events_max = 16'384;
  // Ask for FragmentDistributionDelivered in CBOR (DeliveryEncodings): the fragment travels as
  // bytes instead of Base64 text. A tracker that does not know the extension sends JSON.
  bool cbor_delivery = true;
};

// What the server keeps across restarts: its data, verified by the adapter at start-up.
struct TorrentSnapshot {
  std::optional<std::int64_t> fragment_size_bytes;
  FileInfos files;
  FragmentInfos stored_fragments;     // persisted and intact
  FragmentInfos temporary_fragments;  // obtained, intact, not yet persisted
};

enum class TorrentPhase : std::uint8_t {
  disconnected,
  unregistered,
  joining,
  awaiting_registration,
  registered
};
std::string_view phase_name(TorrentPhase phase);

struct TorrentMetrics {
  std::uint64_t joins_requested = 0;
  std::uint64_t registrations = 0;
  std::uint64_t fragments_requested = 0;
  std::uint64_t fragments_obtained = 0;
  std::uint64_t fragments_persisted = 0;
  std::uint64_t deliveries_rejected = 0;    // wrong hash or size
  std::uint64_t deliveries_unexpected = 0;  // a Delivered that does not name this server
  std::uint64_t revision_gaps = 0;
  std::uint64_t events_rejected = 0;  // malformed
  // Meant for this server, but not usable in its phase (see the theory of operation above).
  std::uint64_t events_out_of_phase = 0;
};

class TorrentServer {
 public:
  TorrentServer(TorrentConfig config, TorrentSnapshot snapshot, Random& random);

  Output on_connected(std::int64_t now_ms);
  Output on_disconnected(std::int64_t now_ms);
  Output on_message(std::int64_t now_ms, std::string_view topic, std::string_view payload);
  Output on_tick(std::int64_t now_ms);
  // Client Goodbye: the adapter publishes it, then disconnects.
  Output goodbye(std::int64_t now_ms);
  // The adapter found a stored copy corrupt or missing when reading it back (the specification's
  // failure handling, "a subscriber loses some or all of its local copy", docs/specification.md):
  // forget it, delete what is left of it, and rejoin so the tracker's view says the truth again.
  Output fragment_lost(std::int64_t now_ms, const Hash& hash);

  // When on_tick() next has work (the phase's deadline or a request's); nullopt if none.
  std::optional<std::int64_t> next_deadline_ms() const;

  // The phase changes the server makes. Any other is a bug: enter() stops it with MQDS_ASSERT
  // (check_transition), which stays on in release builds.
  static bool transition_allowed(TorrentPhase from, TorrentPhase to);
  static void check_transition(TorrentPhase from, TorrentPhase to);

  TorrentPhase phase() const;
  const ClientId& client_id() const { return config_.client_id; }
  const DistributionView& view() const { return view_; }
  const FragmentInfos& stored_fragments() const { return stored_; }
  std::size_t temporary_count() const { return temporaries_.size(); }
  const TorrentMetrics& metrics() const { return metrics_; }
  std::optional<std::int64_t> fragment_size_bytes() const { return fragment_size_bytes_; }

 private:
  // The phases, in the order of TorrentPhase, each with what only it needs.
  struct Disconnected {};
  struct Unregistered {
    // When to ask again; nullopt after a fatal answer (the adapter stops the server).
    std::optional<std::int64_t> retry_at_ms;
  };
  struct Joining {
    Uuid request_id;  // answers to an earlier attempt name another and are ignored
    std::int64_t deadline_ms;
  };
  struct AwaitingRegistration {
    Uuid request_id;  // the ClientJoinRequested whose ClientJoinSucceeded was sent
    std::int64_t deadline_ms;
  };
  struct Registered {};
  using Phase = std::variant<Disconnected, Unregistered, Joining, AwaitingRegistration, Registered>;

  struct Timed {
    std::int64_t size_bytes;
    std::int64_t deadline_ms;
  };
  struct Temporary {
    std::int64_t size_bytes;
    std::uint64_t delivered_at_revision;  // the tracker's, from Delivered; 0 if it sent none
    std::int64_t deadline_ms;
  };
  // Whether a message meant for this server can be used in the current phase.
  enum class Fit : std::uint8_t { usable, wrong_phase, other_request };

  template <class P>
  bool is() const {
    return std::holds_alternative<P>(phase_);
  }
  // Awaiting registration or registered: the view follows the tracker's view changes.
  bool follows_view() const { return is<AwaitingRegistration>() || is<Registered>(); }
  // The request of the join in progress (joining or awaiting registration); nullptr otherwise.
  const Uuid* join_request_id() const;

  // The one place that changes the phase.
  void enter(Phase next, Output& out);
  std::optional<std::int64_t> phase_deadline_ms() const;
  void on_phase_deadline(std::int64_t now_ms, Output& out);

  FragmentInfos temporary_infos() const;
  void send_join(std::int64_t now_ms, Output& out);
  void retry_later(std::int64_t now_ms, Output& out);
  // True if a view-changing event with this Revision is the next one to apply.
  bool next_in_sequence(std::int64_t now_ms, std::optional<std::uint64_t> revision, Output& out);

  bool for_this_server(EventType type, const Event& event) const;
  Fit fit_in_phase(const Event& event) const;
  void out_of_phase(EventType type, Fit fit, Output& out);
  void dispatch(std::int64_t now_ms, Event& event, Output& out);

  void on_accepted(std::int64_t now_ms, const ClientJoinAccepted& e, Output& out);
  void on_denied(std::int64_t now_ms, const ClientJoinDenied& e, Output& out);
  void on_confirmed(std::int64_t now_ms, const ClientRegistered& e, Output& out);
  void on_registered(std::int64_t now_ms, const ClientRegistered& e, Output& out);
  void on_client_goodbye(std::int64_t now_ms, const ClientGoodbye& e, Output& out);
  void on_tracker_revision(std::int64_t now_ms, const TrackerRevision& e, Output& out);
  void on_ended(std::int64_t now_ms, const FragmentDistributionEnded& e, Output& out);
  void on_started(std::int64_t now_ms, const FragmentDistributionStarted& e, Output& out);
  void on_delivered(std::int64_t now_ms, FragmentDistributionDelivered& e, Output& out);
  bool has_room_for(std::int64_t size_bytes) const;

  TorrentConfig config_;
  Random& random_;
  SeenEvents seen_;
  TorrentMetrics metrics_;

  Phase phase_;
  DistributionView view_;  // files are persisted; the rest is rebuilt by every join
  std::optional<std::int64_t> fragment_size_bytes_;
  FragmentInfos stored_;
  std::map<Hash, Temporary> temporaries_;
  std::map<Hash, Timed> requested_;  // only while registered: leaving that phase abandons them
  std::size_t replicas_;
  Backoff join_backoff_;
};

}  // namespace mqds
