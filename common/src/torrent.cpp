#include "mqds/torrent.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "mqds/assert.hpp"
#include "mqds/limits.hpp"
#include "mqds/overloaded.hpp"
#include "mqds/placement.hpp"

namespace mqds {

std::string_view phase_name(TorrentPhase phase) {
  switch (phase) {
    case TorrentPhase::disconnected: return "disconnected";
    case TorrentPhase::unregistered: return "unregistered";
    case TorrentPhase::joining: return "joining";
    case TorrentPhase::awaiting_registration: return "awaiting registration";
    case TorrentPhase::registered: return "registered";
  }
  return "unknown";
}

namespace {

using Deadline = std::optional<std::int64_t>;

// Every phase change the server makes, and what makes it.
constexpr std::pair<TorrentPhase, TorrentPhase> allowed_transitions[] = {
    // Connected: join at once.
    {TorrentPhase::disconnected, TorrentPhase::joining},
    // The retry is due, or TrackerHello.
    {TorrentPhase::unregistered, TorrentPhase::joining},
    // TrackerGoodbye while waiting to retry: wait for the tracker to come back instead.
    {TorrentPhase::unregistered, TorrentPhase::unregistered},
    // TrackerHello or a lost local copy: a new request supersedes the one in progress.
    {TorrentPhase::joining, TorrentPhase::joining},
    {TorrentPhase::joining, TorrentPhase::awaiting_registration},
    // No answer in time, a denial, a fatal accept, TrackerGoodbye.
    {TorrentPhase::joining, TorrentPhase::unregistered},
    // Registered with other fragments than it holds, a Revision gap, TrackerHello, a lost copy...
    {TorrentPhase::awaiting_registration, TorrentPhase::joining},
    {TorrentPhase::awaiting_registration, TorrentPhase::registered},
    // Not registered in time, a denial, TrackerGoodbye.
    {TorrentPhase::awaiting_registration, TorrentPhase::unregistered},
    // A Revision gap, TrackerHello, a temporary copy without Ended, a lost copy...
    {TorrentPhase::registered, TorrentPhase::joining},
    // TrackerGoodbye.
    {TorrentPhase::registered, TorrentPhase::unregistered},
    // The connection is lost, or the server says goodbye, in any phase but this one.
    {TorrentPhase::unregistered, TorrentPhase::disconnected},
    {TorrentPhase::joining, TorrentPhase::disconnected},
    {TorrentPhase::awaiting_registration, TorrentPhase::disconnected},
    {TorrentPhase::registered, TorrentPhase::disconnected},
};

// Events a torrent server consumes: the tracker's, and the ClientGoodbye it stamps.
bool consumed_by_torrent_servers(EventType type) {
  return is_tracker_issued(type) || type == EventType::client_goodbye;
}

}  // namespace

bool TorrentServer::transition_allowed(TorrentPhase from, TorrentPhase to) {
  return std::find(std::begin(allowed_transitions), std::end(allowed_transitions),
                   std::pair{from, to}) != std::end(allowed_transitions);
}

void TorrentServer::check_transition(TorrentPhase from, TorrentPhase to) {
  MQDS_ASSERT(transition_allowed(from, to));
}

TorrentPhase TorrentServer::phase() const {
  static_assert(
      std::is_same_v<
          std::variant_alternative_t<static_cast<std::size_t>(TorrentPhase::disconnected), Phase>,
          Disconnected>);
  static_assert(
      std::is_same_v<
          std::variant_alternative_t<static_cast<std::size_t>(TorrentPhase::unregistered), Phase>,
          Unregistered>);
  static_assert(std::is_same_v<
                std::variant_alternative_t<static_cast<std::size_t>(TorrentPhase::joining), Phase>,
                Joining>);
  static_assert(
      std::is_same_v<std::variant_alternative_t<
                         static_cast<std::size_t>(TorrentPhase::awaiting_registration), Phase>,
                     AwaitingRegistration>);
  static_assert(
      std::is_same_v<
          std::variant_alternative_t<static_cast<std::size_t>(TorrentPhase::registered), Phase>,
          Registered>);
  return static_cast<TorrentPhase>(phase_.index());
}

TorrentServer::TorrentServer(TorrentConfig config, TorrentSnapshot snapshot, Random& random)
    : config_(std::move(config)),
      random_(random),
      seen_(config_.seen_events_max),
      fragment_size_bytes_(snapshot.fragment_size_bytes),
      stored_(std::move(snapshot.stored_fragments)),
      replicas_(config_.default_replicas),
      join_backoff_(config_.join_retry_min_ms, config_.join_retry_max_ms) {
  if (config_.client_id.empty() || config_.client_id.size() > limits::client_id_bytes_max)
    throw std::invalid_argument("client id must have 1 to " +
                                std::to_string(limits::client_id_bytes_max) + " bytes");
  for (auto& [hash, file] : snapshot.files) view_.put_file(hash, std::move(file));
  // Their fate is settled by the first join: the request reports them as obtained.
  for (const auto& [hash, fragment] : snapshot.temporary_fragments)
    temporaries_.emplace(hash, Temporary{fragment.size_bytes, 0, 0});
  if (fragment_size_bytes_) view_.set_fragment_size(*fragment_size_bytes_);
}

void TorrentServer::enter(Phase next, Output& out) {
  const TorrentPhase from = phase();
  const auto to = static_cast<TorrentPhase>(next.index());
  check_transition(from, to);
  // A request belongs to the registration it was made in; a new one asks again.
  if (from == TorrentPhase::registered) requested_.clear();
  phase_ = std::move(next);
  MQDS_ASSERT(is<Registered>() || requested_.empty());
  // The accept fixed the fragment size and persisted or deleted every temporary copy, and nothing
  // is delivered before the registration.
  if (follows_view()) MQDS_ASSERT(fragment_size_bytes_ && temporaries_.empty());
  out.log(LogLevel::debug,
          "phase " + std::string(phase_name(from)) + " -> " + std::string(phase_name(to)));
}

const Uuid* TorrentServer::join_request_id() const {
  if (const auto* joining = std::get_if<Joining>(&phase_)) return &joining->request_id;
  if (const auto* awaiting = std::get_if<AwaitingRegistration>(&phase_))
    return &awaiting->request_id;
  return nullptr;
}

Output TorrentServer::on_connected(std::int64_t now_ms) {
  Output out;
  send_join(now_ms, out);
  return out;
}

Output TorrentServer::on_disconnected(std::int64_t) {
  Output out;
  // Without the broker there is no tracker (it lives in the broker): wait to reconnect, then join.
  if (!is<Disconnected>()) enter(Disconnected{}, out);
  return out;
}

Output TorrentServer::goodbye(std::int64_t) {
  Output out;
  if (is<Disconnected>()) return out;
  out.publish(ClientGoodbye{random_.next_uuid(), std::nullopt, std::nullopt});
  enter(Disconnected{}, out);
  return out;
}

Output TorrentServer::fragment_lost(std::int64_t now_ms, const Hash& hash) {
  Output out;
  if (!stored_.erase(hash) && !temporaries_.erase(hash)) return out;
  out.storage.push_back(store::DeleteFragment{hash});
  out.log(LogLevel::warning,
          "lost the local copy of " + hash.to_hex() + "; joining again to report it");
  // Disconnected or between attempts, the next join reports it anyway.
  if (!is<Disconnected>() && !is<Unregistered>()) send_join(now_ms, out);
  return out;
}

void TorrentServer::send_join(std::int64_t now_ms, Output& out) {
  ClientJoinRequested request;
  request.event_id = random_.next_uuid();
  request.hash_algorithm = std::string(hash_algorithm_sha256);
  // A server with no data is not bound to a fragment size and lets the service choose.
  if (!stored_.empty() || !view_.files().empty())
    request.fragment_size_bytes = fragment_size_bytes_;
  request.known_file_infos = view_.files();
  request.stored_fragments = stored_;
  request.obtained_fragments = temporary_infos();
  request.endpoints = config_.endpoints;
  request.capacity_bytes = config_.capacity_bytes;
  if (config_.cbor_delivery) request.delivery_encodings.insert(std::string(delivery_encoding_cbor));
  // What this machine does beyond the specification, so the tracker does not make up for it.
  request.extensions = {std::string(extension_revision), std::string(extension_remove_orphans),
                        std::string(extension_join_retry), std::string(extension_trim)};
  out.publish(request);
  ++metrics_.joins_requested;
  enter(Joining{request.event_id, now_ms + config_.join_timeout_ms}, out);
}

void TorrentServer::retry_later(std::int64_t now_ms, Output& out) {
  enter(Unregistered{now_ms + join_backoff_.next_delay_ms(random_)}, out);
}

FragmentInfos TorrentServer::temporary_infos() const {
  FragmentInfos infos;
  for (const auto& [hash, temporary] : temporaries_)
    infos.emplace(hash, FragmentMetadata{temporary.size_bytes});
  return infos;
}

Deadline TorrentServer::phase_deadline_ms() const {
  return std::visit(Overloaded{
                        [](const Disconnected&) -> Deadline { return std::nullopt; },
                        [](const Unregistered& p) -> Deadline { return p.retry_at_ms; },
                        [](const Joining& p) -> Deadline { return p.deadline_ms; },
                        [](const AwaitingRegistration& p) -> Deadline { return p.deadline_ms; },
                        // The first temporary copy whose Ended is overdue; only a registered server
                        // rejoins to settle it (a joining one reports it in the request anyway).
                        [this](const Registered&) -> Deadline {
                          Deadline first;
                          for (const auto& [hash, t] : temporaries_)
                            if (!first || t.deadline_ms < *first) first = t.deadline_ms;
                          return first;
                        },
                    },
                    phase_);
}

std::optional<std::int64_t> TorrentServer::next_deadline_ms() const {
  Deadline next = phase_deadline_ms();
  for (const auto& [hash, t] : requested_)
    if (!next || t.deadline_ms < *next) next = t.deadline_ms;
  return next;
}

void TorrentServer::on_phase_deadline(std::int64_t now_ms, Output& out) {
  // Visits a copy: entering the next phase replaces the one the handler would be reading.
  const Phase current = phase_;
  std::visit(Overloaded{
                 [](const Disconnected&) {},  // has no deadline
                 [&](const Unregistered&) { send_join(now_ms, out); },
                 [&](const Joining&) {
                   out.log(LogLevel::warning, "no answer to the join request within " +
                                                  std::to_string(config_.join_timeout_ms) +
                                                  " ms; trying again later");
                   retry_later(now_ms, out);
                 },
                 [&](const AwaitingRegistration& p) {
                   out.log(LogLevel::warning, "not registered within " +
                                                  std::to_string(config_.registration_timeout_ms) +
                                                  " ms of ClientJoinSucceeded; trying again later");
                   out.publish(ClientJoinFailed{random_.next_uuid(), "no ClientRegistered in time",
                                                p.request_id});
                   retry_later(now_ms, out);
                 },
                 [&](const Registered&) {
                   // Deleting could lose a replica the tracker counts on, keeping it could keep one
                   // it does not: the join request reports it and the tracker's ledger decides.
                   for (const auto& [hash, temporary] : temporaries_) {
                     if (temporary.deadline_ms > now_ms) continue;
                     out.log(LogLevel::notice, "no FragmentDistributionEnded for " + hash.to_hex() +
                                                   " in " +
                                                   std::to_string(config_.temporary_timeout_ms) +
                                                   " ms; joining again to settle it");
                     break;
                   }
                   send_join(now_ms, out);
                 },
             },
             current);
}

Output TorrentServer::on_tick(std::int64_t now_ms) {
  Output out;
  if (const Deadline due = phase_deadline_ms(); due && *due <= now_ms)
    on_phase_deadline(now_ms, out);
  for (auto it = requested_.begin(); it != requested_.end();)
    it = it->second.deadline_ms <= now_ms ? requested_.erase(it) : std::next(it);
  return out;
}

bool TorrentServer::next_in_sequence(std::int64_t now_ms, std::optional<std::uint64_t> revision,
                                     Output& out) {
  MQDS_ASSERT(follows_view());
  if (!revision) return true;  // a tracker that does not number its view changes
  if (*revision <= view_.revision()) return false;
  if (*revision == view_.revision() + 1) {
    view_.set_revision(*revision);
    return true;
  }
  ++metrics_.revision_gaps;
  out.log(LogLevel::notice, "missed view changes (revision " + std::to_string(view_.revision()) +
                                " then " + std::to_string(*revision) + "); joining again");
  send_join(now_ms, out);
  return false;
}

// Addressed to another server, or not the tracker's: none of this server's business, in any
// phase. Accepts and denials of other joining clients reach every subscriber (the specification's
// Client Join with timeouts, docs/specification.md); a ClientGoodbye without the tracker's stamp
// does not say who left.
bool TorrentServer::for_this_server(EventType type, const Event& event) const {
  if (!consumed_by_torrent_servers(type)) return false;
  const ClientId& me = config_.client_id;
  return std::visit(
      Overloaded{
          [&](const ClientJoinAccepted& e) { return e.client_identifier == me; },
          [&](const ClientJoinDenied& e) { return e.client_identifier == me; },
          [&](const ClientRegistered& e) {
            return !e.request_event_id || e.client_identifier == me;
          },
          [&](const ClientGoodbye& e) { return e.client_identifier.has_value(); },
          [&](const FragmentDistributionDelivered& e) { return e.receivers.count(me) != 0; },
          [](const auto&) { return true; },
      },
      event);
}

// The one place that says which phase uses which event.
TorrentServer::Fit TorrentServer::fit_in_phase(const Event& event) const {
  // An answer names the request it answers; one without a name answers the current one.
  const auto answer = [this](bool right_phase, const std::optional<Uuid>& request) {
    if (!right_phase) return Fit::wrong_phase;
    return !request || *request == *join_request_id() ? Fit::usable : Fit::other_request;
  };
  const auto when = [](bool right_phase) { return right_phase ? Fit::usable : Fit::wrong_phase; };
  return std::visit(
      Overloaded{
          [&](const ClientJoinAccepted& e) { return answer(is<Joining>(), e.request_event_id); },
          [&](const ClientJoinDenied& e) {
            return answer(join_request_id() != nullptr, e.request_event_id);
          },
          [&](const ClientRegistered& e) {
            // A confirmation of a resync answers a request; any other is a view change.
            if (e.request_event_id) return answer(is<AwaitingRegistration>(), e.request_event_id);
            return when(follows_view());
          },
          [&](const ClientGoodbye&) { return when(follows_view()); },
          [&](const FileInfoPublished&) { return when(follows_view()); },
          [&](const FragmentDistributionEnded&) { return when(follows_view()); },
          [&](const TrackerRevision&) { return when(follows_view()); },
          // No fragments for joining clients.
          [&](const FragmentDistributionStarted&) { return when(is<Registered>()); },
          [&](const FragmentDistributionDelivered&) { return when(is<Registered>()); },
          // TrackerHello and TrackerGoodbye matter in every connected phase.
          [](const auto&) { return Fit::usable; },
      },
      event);
}

void TorrentServer::out_of_phase(EventType type, Fit fit, Output& out) {
  ++metrics_.events_out_of_phase;
  out.log(LogLevel::debug, "ignored " + std::string(event_name(type)) + " while " +
                               std::string(phase_name(phase())) +
                               (fit == Fit::other_request ? ": it answers another request" : ""));
}

Output TorrentServer::on_message(std::int64_t now_ms, std::string_view topic,
                                 std::string_view payload) {
  Output out;
  const auto type = event_type_for_topic(topic);
  if (!type) return out;
  if (is<Disconnected>()) {
    // Left over from the connection that dropped; not even read, the next join brings the view.
    if (consumed_by_torrent_servers(*type)) out_of_phase(*type, Fit::wrong_phase, out);
    return out;
  }
  Result<Event> decoded = decode(topic, payload);
  if (!decoded.ok()) {
    ++metrics_.events_rejected;
    out.log(LogLevel::warning, "ignored malformed " + std::string(event_name(*type)) + ": " +
                                   decoded.error().to_string());
    return out;
  }
  Event& event = decoded.value();
  const Uuid event_id = std::visit([](const auto& e) { return e.event_id; }, event);
  if (!seen_.first_time(event_id)) return out;
  if (!for_this_server(*type, event)) {
    if (*type == EventType::fragment_distribution_delivered) ++metrics_.deliveries_unexpected;
    return out;
  }
  if (const Fit fit = fit_in_phase(event); fit != Fit::usable) {
    out_of_phase(*type, fit, out);
    return out;
  }
  dispatch(now_ms, event, out);
  return out;
}

void TorrentServer::dispatch(std::int64_t now_ms, Event& event, Output& out) {
  std::visit(
      Overloaded{
          [&](const TrackerHello&) {
            out.log(LogLevel::info, "tracker is up; joining");
            send_join(now_ms, out);
          },
          [&](const TrackerGoodbye&) {
            out.log(LogLevel::notice, "tracker said goodbye; waiting for it to come back");
            enter(Unregistered{now_ms + config_.join_retry_max_ms}, out);
          },
          [&](const ClientJoinAccepted& e) { on_accepted(now_ms, e, out); },
          [&](const ClientJoinDenied& e) { on_denied(now_ms, e, out); },
          [&](const ClientRegistered& e) {
            if (e.request_event_id)
              on_confirmed(now_ms, e, out);
            else if (next_in_sequence(now_ms, e.revision, out))
              on_registered(now_ms, e, out);
          },
          [&](const ClientGoodbye& e) { on_client_goodbye(now_ms, e, out); },
          [&](const FileInfoPublished& e) {
            if (!next_in_sequence(now_ms, e.revision, out)) return;
            FileMetadata file{e.size_bytes, e.fragment_sequence};
            view_.put_file(e.hash, file);
            out.storage.push_back(store::PutFile{e.hash, std::move(file)});
          },
          [&](const FragmentDistributionEnded& e) {
            if (next_in_sequence(now_ms, e.revision, out)) on_ended(now_ms, e, out);
          },
          [&](const FragmentDistributionStarted& e) { on_started(now_ms, e, out); },
          [&](FragmentDistributionDelivered& e) { on_delivered(now_ms, e, out); },
          [&](const TrackerRevision& e) { on_tracker_revision(now_ms, e, out); },
          [](const auto&) {},  // events other clients send to the tracker: not for this server
      },
      event);
}

void TorrentServer::on_accepted(std::int64_t now_ms, const ClientJoinAccepted& e, Output& out) {
  const Uuid request_id = std::get<Joining>(phase_).request_id;
  const bool has_data = !stored_.empty() || !view_.files().empty();
  if (has_data && fragment_size_bytes_ && *fragment_size_bytes_ != e.fragment_size_bytes) {
    const std::string problem = "stored data uses FragmentSize " +
                                std::to_string(*fragment_size_bytes_) + " but the service uses " +
                                std::to_string(e.fragment_size_bytes);
    out.publish(ClientJoinFailed{random_.next_uuid(), problem, request_id});
    out.fatal = problem + ": move the data directory aside to join as a new server";
    enter(Unregistered{std::nullopt}, out);
    return;
  }
  for (const auto& hash : e.remove_file_infos) {
    view_.remove_file(hash);
    out.storage.push_back(store::DeleteFile{hash});
  }
  for (const auto& hash : e.remove_fragment_infos) {
    if (stored_.erase(hash) + temporaries_.erase(hash)) {
      out.log(LogLevel::debug, "deleting " + hash.to_hex() + " as the tracker asks");
      out.storage.push_back(store::DeleteFragment{hash});
    }
  }
  // What the tracker did not remove of the reported temporaries, an Ended named this server for.
  for (const auto& [hash, temporary] : temporaries_) {
    out.log(LogLevel::debug, "persisting " + hash.to_hex() + ": an Ended named this server for it");
    out.storage.push_back(store::PersistFragment{hash});
    stored_[hash] = FragmentMetadata{temporary.size_bytes};
    ++metrics_.fragments_persisted;
  }
  temporaries_.clear();
  for (const auto& [hash, file] : e.add_file_infos) {
    view_.put_file(hash, file);
    out.storage.push_back(store::PutFile{hash, file});
  }
  if (fragment_size_bytes_ != e.fragment_size_bytes) {
    fragment_size_bytes_ = e.fragment_size_bytes;
    out.storage.push_back(store::PutFragmentSize{e.fragment_size_bytes});
  }
  // The view after the join is fully determined by what this server stores and the accept.
  DistributionView view;
  view.set_fragment_size(e.fragment_size_bytes);
  view.set_revision(e.revision.value_or(0));
  for (const auto& [hash, file] : view_.files()) view.put_file(hash, file);
  for (const auto& [hash, fragment] : stored_) view.put_fragment(hash, fragment.size_bytes);
  for (const auto& [hash, fragment] : e.add_fragment_infos)
    view.put_fragment(hash, fragment.size_bytes);
  for (const auto& [id, meta] : e.clients) view.put_client(id, meta);
  view_ = std::move(view);
  if (e.replicas && *e.replicas > 0) replicas_ = static_cast<std::size_t>(*e.replicas);

  out.publish(ClientJoinSucceeded{random_.next_uuid(), request_id});
  enter(AwaitingRegistration{request_id, now_ms + config_.registration_timeout_ms}, out);
}

void TorrentServer::on_denied(std::int64_t now_ms, const ClientJoinDenied& e, Output& out) {
  const std::string reason = e.reason.value_or("no reason given");
  std::string fix;
  if (e.reason_code & denial::wrong_fragment_size)
    fix +=
        " The stored data was cut at another FragmentSize: move the data directory aside to join "
        "afresh.";
  if (e.reason_code & denial::wrong_hash_algorithm)
    fix += " The service hashes with another algorithm.";
  if (e.reason_code & denial::endpoint_conflict)
    fix += " Another server announces the same endpoint: give this one its own --endpoint.";
  // Only the tracker's answer to this server's own request may say a person must act: a denial
  // naming no request could be anybody's, and costs at most a retry.
  if (!fix.empty() && e.request_event_id) {
    // The server keeps running, so it joins as soon as the cause is fixed on either side (the next
    // TrackerHello, or this retry) and is never left stopped by one denial.
    out.log(LogLevel::error, "join denied (code " + std::to_string(e.reason_code) + "): " + reason +
                                 "." + fix + " Asking again in " +
                                 std::to_string(config_.operator_retry_ms / 1000) +
                                 " s and whenever the tracker restarts.");
    enter(Unregistered{now_ms + config_.operator_retry_ms}, out);
    return;
  }
  out.log(LogLevel::warning, "join denied: " + reason + "; trying again later");
  retry_later(now_ms, out);
}

// A confirmation of a resync that changed nothing: not a view change. Its Revision is the tracker's
// at the time; being behind it means an event was missed on the way.
void TorrentServer::on_confirmed(std::int64_t now_ms, const ClientRegistered& e, Output& out) {
  if (e.revision && *e.revision > view_.revision()) {
    ++metrics_.revision_gaps;
    out.log(LogLevel::notice, "registration confirmed at revision " + std::to_string(*e.revision) +
                                  ", this server is at " + std::to_string(view_.revision()) +
                                  "; joining again");
    send_join(now_ms, out);
    return;
  }
  on_registered(now_ms, e, out);
}

void TorrentServer::on_registered(std::int64_t now_ms, const ClientRegistered& e, Output& out) {
  for (const auto& [hash, file] : e.added_files)
    if (!view_.files().count(hash)) out.storage.push_back(store::PutFile{hash, file});
  view_.apply_registered(e);
  if (e.client_identifier == config_.client_id && is<AwaitingRegistration>()) {
    std::set<Hash> held;
    for (const auto& [hash, fragment] : stored_) held.insert(hash);
    if (held != e.info.stored_fragments) {
      // An Ended persisted a fragment after the request was sent: report the truth.
      out.log(LogLevel::info,
              "registered with other fragments than this server holds; joining again");
      send_join(now_ms, out);
      return;
    }
    enter(Registered{}, out);
    join_backoff_.reset();
    ++metrics_.registrations;
    out.log(LogLevel::notice, "registered with " + std::to_string(stored_.size()) + " fragments; " +
                                  std::to_string(view_.clients().size()) +
                                  " clients in the service");
  }
}

void TorrentServer::on_client_goodbye(std::int64_t now_ms, const ClientGoodbye& e, Output& out) {
  // Stamped but without a Revision: the tracker (whose stamp it is, and which numbers every view
  // change) forwards the goodbye of a client it did not count as registered, one still joining
  // say; no view changed. Applied, it would remove that client when it arrives after the client
  // registered again, and leave this view without it at the tracker's Revision.
  if (!e.revision) {
    out.log(LogLevel::debug, "ignored the goodbye of '" + *e.client_identifier +
                                 "', which changed no view (no Revision)");
    return;
  }
  if (!next_in_sequence(now_ms, e.revision, out)) return;
  if (*e.client_identifier == config_.client_id) {
    out.log(LogLevel::notice,
            "the tracker no longer counts this server as registered; joining again");
    send_join(now_ms, out);
  } else {
    view_.remove_client(*e.client_identifier);
  }
}

void TorrentServer::on_tracker_revision(std::int64_t now_ms, const TrackerRevision& e,
                                        Output& out) {
  if (e.revision <= view_.revision()) return;
  ++metrics_.revision_gaps;
  out.log(LogLevel::notice, "tracker is at revision " + std::to_string(e.revision) +
                                ", this server at " + std::to_string(view_.revision()) +
                                "; joining again");
  send_join(now_ms, out);
}

void TorrentServer::on_ended(std::int64_t now_ms, const FragmentDistributionEnded& e, Output& out) {
  view_.apply_ended(e);
  requested_.erase(e.hash);
  const bool named = e.receivers.count(config_.client_id) != 0;
  auto temporary = temporaries_.find(e.hash);
  // An Ended at or below the Revision of our delivery closes an earlier round of this fragment
  // (it arrived late); ours is still open.
  if (temporary != temporaries_.end() && e.revision &&
      *e.revision <= temporary->second.delivered_at_revision)
    temporary = temporaries_.end();
  if (temporary != temporaries_.end()) {
    out.log(LogLevel::debug,
            std::string(named ? "persisting " : "deleting ") + e.hash.to_hex() + " at Ended");
    if (named) {
      out.storage.push_back(store::PersistFragment{e.hash});
      stored_[e.hash] = FragmentMetadata{temporary->second.size_bytes};
      ++metrics_.fragments_persisted;
    } else {
      out.storage.push_back(store::DeleteFragment{e.hash});
    }
    temporaries_.erase(temporary);
  } else if (named && !stored_.count(e.hash) && !temporaries_.count(e.hash) && is<Registered>()) {
    out.log(LogLevel::warning, "Ended names this server for " + e.hash.to_hex() +
                                   " which it does not hold; joining again to correct the view");
    send_join(now_ms, out);
  }
}

bool TorrentServer::has_room_for(std::int64_t size_bytes) const {
  // Only asked while registered, when the view's cached sum covers exactly what is stored.
  MQDS_ASSERT(is<Registered>());
  if (!config_.capacity_bytes) return true;
  std::int64_t used = size_bytes + view_.used_bytes(config_.client_id);
  for (const auto& [hash, temporary] : temporaries_) used += temporary.size_bytes;
  for (const auto& [hash, t] : requested_) used += t.size_bytes;
  return used <= *config_.capacity_bytes;
}

void TorrentServer::on_started(std::int64_t now_ms, const FragmentDistributionStarted& e,
                               Output& out) {
  if (stored_.count(e.hash) || temporaries_.count(e.hash) || requested_.count(e.hash)) return;
  if (!fragment_size_bytes_ || e.size_bytes > *fragment_size_bytes_) return;
  // Placement names it to complete the copies (a distribution, a repair), or to move a copy to
  // it (rebalancing: the tracker deletes a surplus copy elsewhere once this one is durable).
  const auto named = [&](const std::vector<ClientId>& chosen) {
    return std::find(chosen.begin(), chosen.end(), config_.client_id) != chosen.end();
  };
  if (!named(distribution_targets(view_, e.hash, e.size_bytes, replicas_)) &&
      !named(ideal_holders(view_, e.hash, e.size_bytes, replicas_)))
    return;
  if (requested_.size() >= config_.pending_requests_max) {
    out.publish(
        FragmentDistributionFailed{random_.next_uuid(), e.hash, "too many requests in progress"});
    return;
  }
  if (!has_room_for(e.size_bytes)) {
    out.publish(
        FragmentDistributionFailed{random_.next_uuid(), e.hash, "not enough free capacity"});
    return;
  }
  requested_[e.hash] = Timed{e.size_bytes, now_ms + config_.request_timeout_ms};
  MQDS_ASSERT(requested_.size() <= config_.pending_requests_max);
  ++metrics_.fragments_requested;
  out.publish(FragmentDistributionRequested{random_.next_uuid(), e.hash});
}

void TorrentServer::on_delivered(std::int64_t now_ms, FragmentDistributionDelivered& e,
                                 Output& out) {
  if (stored_.count(e.hash) || temporaries_.count(e.hash)) {
    // Already durable: confirm again, the first confirmation may have been lost.
    out.publish(FragmentDistributionObtained{random_.next_uuid(), e.hash});
    return;
  }
  requested_.erase(e.hash);
  const auto size = static_cast<std::int64_t>(e.data.size());
  std::string problem;
  if (size == 0 || !fragment_size_bytes_ || size > *fragment_size_bytes_)
    problem = "Data has " + std::to_string(size) + " bytes, outside 1.." +
              std::to_string(fragment_size_bytes_.value_or(0));
  else if (const Hash actual = sha256(e.data); actual != e.hash)
    problem = "Data hashes to " + actual.to_hex();
  else if (!has_room_for(size))
    problem = "not enough free capacity";
  if (!problem.empty()) {
    ++metrics_.deliveries_rejected;
    out.log(LogLevel::warning, "rejected fragment " + e.hash.to_hex() + ": " + problem);
    out.publish(FragmentDistributionFailed{random_.next_uuid(), e.hash, problem});
    return;
  }
  out.log(LogLevel::debug, "obtained " + e.hash.to_hex());
  out.storage.push_back(store::PutTemporaryFragment{e.hash, std::move(e.data)});
  temporaries_[e.hash] =
      Temporary{size, e.revision.value_or(0), now_ms + config_.temporary_timeout_ms};
  ++metrics_.fragments_obtained;
  out.publish(FragmentDistributionObtained{random_.next_uuid(), e.hash});
}

}  // namespace mqds
