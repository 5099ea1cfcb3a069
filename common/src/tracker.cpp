#include "mqds/tracker.hpp"

#include <algorithm>
#include <limits>
#include <tuple>
#include <stdexcept>
#include <vector>

#include "mqds/assert.hpp"
#include "mqds/limits.hpp"
#include "mqds/placement.hpp"

namespace mqds {

namespace {

template <class T>
bool contains_all(const std::set<T>& superset, const std::set<T>& subset) {
  return std::includes(superset.begin(), superset.end(), subset.begin(), subset.end());
}

// Sets of at most `replicas` clients: cheap to check on every step of a round.
template <class Round>
void check_round(const Round& round) {
  MQDS_ASSERT(contains_all(round.targets, round.answered));
  MQDS_ASSERT(contains_all(round.answered, round.receivers));
  MQDS_ASSERT(contains_all(round.receivers, round.settled));
  MQDS_ASSERT(contains_all(round.settled, round.obtained));
  MQDS_ASSERT(round.stage == Round::Stage::delivering || round.settled.empty());
}

}  // namespace

Tracker::Tracker(TrackerConfig config, TrackerSnapshot snapshot, Random& random)
    : config_(config), random_(random), seen_(config.seen_events_max) {
  if (config_.fragment_size_bytes <= 0 ||
      config_.fragment_size_bytes > limits::fragment_size_bytes_max)
    throw std::invalid_argument("fragment size out of range");
  if (config_.replicas == 0) throw std::invalid_argument("replicas must be at least 1");
  view_.set_fragment_size(config_.fragment_size_bytes);
  view_.set_revision(snapshot.revision);
  for (auto& [hash, file] : snapshot.files) view_.put_file(hash, std::move(file));
  for (const auto& [hash, fragment] : snapshot.fragments)
    view_.put_fragment(hash, fragment.size_bytes);
  staged_ = std::move(snapshot.staged);
  holdings_ = std::move(snapshot.holdings);
  if (config_.repairs_in_flight_max == 0)
    throw std::invalid_argument("repairs in flight must be at least 1");
  if (config_.repair_delay_ms < 0) throw std::invalid_argument("repair delay must not be negative");
}

Output Tracker::start(std::int64_t now_ms) {
  Output out;
  distribute_after_ms_ = now_ms + config_.startup_settle_ms;
  // Clients of the previous run are not registered any more; a new Revision makes every event of
  // the previous run stale for them.
  bump_revision(now_ms, out);
  for (const auto& [hash, size] : staged_) schedule(hash, distribute_after_ms_);
  // Every holder of the previous run is away until it joins again; its copies count for
  // repair_delay_ms from now, as if it had left now (when it really left is not kept).
  for (const auto& [id, hashes] : holdings_) mark_away(now_ms, id);
  // What the previous run left short (a copy lost before the restart) is found by a first scan.
  if (!view_.files().empty()) want_repair_scan(distribute_after_ms_);
  out.publish(TrackerHello{random_.next_uuid()});
  out.log(LogLevel::notice, "tracker started: " + std::to_string(view_.files().size()) +
                                " files, " + std::to_string(view_.fragments().size()) +
                                " fragments, " + std::to_string(staged_.size()) +
                                " staged, revision " + std::to_string(view_.revision()));
  return out;
}

Output Tracker::goodbye(std::int64_t now_ms) {
  Output out;
  out.publish(TrackerGoodbye{random_.next_uuid()});
  std::vector<ClientId> clients;
  for (const auto& [id, meta] : view_.clients()) clients.push_back(id);
  for (const auto& id : clients) view_.remove_client(id);
  cbor_receivers_.clear();
  late_obtained_.clear();
  joins_.clear();
  rounds_.clear();
  repairs_in_flight_ = 0;
  repair_correlations_.clear();
  repair_queue_.clear();
  hello_queue_.clear();
  hello_waiting_.clear();
  hellos_in_flight_.clear();
  endpoint_waiters_.clear();
  bump_revision(now_ms, out);
  return out;
}

MessageResult Tracker::on_message(std::int64_t now_ms, const ClientId& sender,
                                  std::string_view topic, std::string_view payload) {
  MessageResult result;
  Output& out = result.output;
  const auto type = event_type_for_topic(topic);
  if (!type) return result;  // not a protocol topic: none of the tracker's business
  if (is_tracker_issued(*type)) {
    ++metrics_.events_rejected;
    result.verdict = Verdict::drop;
    out.log(LogLevel::warning, "dropped a message from '" + sender + "' on " + std::string(topic) +
                                   ": only the tracker publishes there");
    return result;
  }
  if (sender.empty() || sender.size() > limits::client_id_bytes_max) {
    ++metrics_.events_rejected;
    result.verdict = Verdict::drop;
    out.log(LogLevel::warning, "dropped a message on " + std::string(topic) +
                                   ": client id empty or over " +
                                   std::to_string(limits::client_id_bytes_max) + " bytes");
    return result;
  }

  // A join request over its bound is not decoded at all: reading it would cost the broker its size
  // again and block every client meanwhile. The server is told why at once, with its request's
  // EventId when it leads the payload (as every known writer puts it), which is all that is read.
  if (*type == EventType::client_join_requested &&
      payload.size() > config_.join_request_bytes_max) {
    ++metrics_.events_rejected;
    result.verdict = Verdict::drop;
    const std::string problem = "ClientJoinRequested of " + std::to_string(payload.size()) +
                                " bytes exceeds the tracker's bound of " +
                                std::to_string(config_.join_request_bytes_max) +
                                " bytes (plugin_opt_join_request_max)";
    out.log(LogLevel::warning, "from '" + sender + "': " + problem + "; not decoded");
    deny(sender, denial::other, problem, leading_event_id(payload), out);
    return result;
  }

  Result<Event> decoded = decode(topic, payload);
  if (!decoded.ok()) {
    ++metrics_.events_rejected;
    result.verdict = Verdict::drop;
    const std::string problem =
        "malformed " + std::string(event_name(*type)) + ": " + decoded.error().to_string();
    out.log(LogLevel::warning, "from '" + sender + "': " + problem);
    if (*type == EventType::client_join_requested)
      deny(sender, denial::other, problem, std::nullopt, out);
    return result;
  }
  const Event& event = decoded.value();
  const Uuid event_id = std::visit([](const auto& e) { return e.event_id; }, event);
  if (!seen_.first_time(event_id)) {
    ++metrics_.events_duplicated;
    result.verdict = Verdict::drop;
    out.log(LogLevel::debug, "dropped duplicate " + std::string(event_name(*type)) + " " +
                                 event_id.to_string() + " from '" + sender + "'");
    return result;
  }

  switch (*type) {
    case EventType::client_join_requested:
      on_join_requested(now_ms, sender, std::get<ClientJoinRequested>(event), out);
      break;
    case EventType::client_join_succeeded:
      on_join_succeeded(now_ms, sender, std::get<ClientJoinSucceeded>(event), out);
      break;
    case EventType::client_join_failed:
      on_join_failed(sender, std::get<ClientJoinFailed>(event), out);
      break;
    case EventType::client_goodbye: {
      if (joins_.erase(sender)) endpoints_released_ = true;
      forget_hello(sender);
      ClientGoodbye stamped{event_id, sender, std::nullopt};
      if (view_.is_registered(sender)) stamped.revision = unregister(now_ms, sender, false, out);
      result.verdict = Verdict::rewrite;
      result.rewritten_payload = encode(stamped);
      // The broker delivers the rewritten goodbye itself; the joins that would miss it get a copy.
      if (stamped.revision)
        keep_for_replays(Publish{std::string(topics::client_goodbye), result.rewritten_payload,
                                 std::nullopt, std::nullopt, 2});
      out.log(LogLevel::info, "client '" + sender + "' said goodbye");
      break;
    }
    case EventType::fragment_distribution_requested:
      on_requested(now_ms, sender, std::get<FragmentDistributionRequested>(event), out);
      break;
    case EventType::fragment_distribution_obtained:
      on_obtained(now_ms, sender, std::get<FragmentDistributionObtained>(event).hash, true, out);
      break;
    case EventType::fragment_distribution_failed: {
      const auto& failed = std::get<FragmentDistributionFailed>(event);
      out.log(LogLevel::info, "client '" + sender + "' failed fragment " + failed.hash.to_hex() +
                                  ": " + failed.reason.value_or("no reason given"));
      on_obtained(now_ms, sender, failed.hash, false, out);
      break;
    }
    default: break;
  }
  start_rounds(now_ms, out);
  scan_for_repairs(now_ms, out);
  start_repairs(now_ms, out);
  ask_for_trims(now_ms, out);
  send_hellos(now_ms, out);
  return result;
}

void Tracker::out_of_place(const std::string& what, Output& out) {
  ++metrics_.events_out_of_place;
  out.log(LogLevel::debug, what + ": ignored");
}

MessageResult Tracker::on_unauthorised(const ClientId& sender, std::string_view topic,
                                       std::string why, bool answer) {
  MessageResult result;
  result.verdict = Verdict::drop;
  const auto type = event_type_for_topic(topic);
  if (!type || is_tracker_issued(*type)) return result;  // not a torrent server's topic
  ++metrics_.events_unauthorised;
  // Not decoded, so the denial names no request: it answers whichever the client has open, which
  // is what a server that may not join needs to hear. Not logged here: the adapter knows who the
  // client is (its username) and rate-limits what an attacker could repeat.
  if (answer && *type == EventType::client_join_requested && !sender.empty() &&
      sender.size() <= limits::client_id_bytes_max) {
    ++metrics_.joins_denied;
    result.output.publish(
        ClientJoinDenied{random_.next_uuid(), sender, denial::other, std::move(why), std::nullopt},
        sender);
  }
  return result;
}

void Tracker::deny(const ClientId& client, std::uint32_t code, std::string reason,
                   std::optional<Uuid> request, Output& out) {
  ++metrics_.joins_denied;
  out.log(LogLevel::notice,
          "denied join of '" + client + "' (code " + std::to_string(code) + "): " + reason);
  out.publish(ClientJoinDenied{random_.next_uuid(), client, code, std::move(reason), request},
              client);
}

void Tracker::deny_for_now(const ClientId& client, std::string reason, std::optional<Uuid> request,
                           bool retries, Output& out) {
  deny(client, denial::other, std::move(reason), request, out);
  if (!retries) queue_hello(client, out);
}

void Tracker::queue_hello(const ClientId& client, Output& out) {
  if (hello_waiting_.count(client)) return;
  if (hello_waiting_.size() >= config_.hello_waiting_max) {
    out.log(LogLevel::warning, "client '" + client + "' will not be sent a TrackerHello: " +
                                   std::to_string(hello_waiting_.size()) + " clients wait for one");
    return;
  }
  const std::uint64_t arrival = hello_arrivals_++;
  hello_queue_.emplace(arrival, client);
  hello_waiting_.emplace(client, arrival);
}

void Tracker::forget_hello(const ClientId& client) {
  hellos_in_flight_.erase(client);
  endpoint_waiters_.erase(client);
  auto it = hello_waiting_.find(client);
  if (it == hello_waiting_.end()) return;
  hello_queue_.erase(it->second);
  hello_waiting_.erase(it);
}

void Tracker::send_hellos(std::int64_t now_ms, Output& out) {
  if (endpoints_released_ && !endpoint_waiters_.empty()) {
    std::set<std::string> in_use;
    for (const auto& [id, meta] : view_.clients())
      in_use.insert(meta.endpoints.begin(), meta.endpoints.end());
    for (const auto& [id, join] : joins_)
      in_use.insert(join.plan.client.endpoints.begin(), join.plan.client.endpoints.end());
    for (auto it = endpoint_waiters_.begin(); it != endpoint_waiters_.end();) {
      const bool free = std::none_of(it->second.begin(), it->second.end(),
                                     [&](const std::string& e) { return in_use.count(e) != 0; });
      if (!free) {
        ++it;
        continue;
      }
      queue_hello(it->first, out);
      it = endpoint_waiters_.erase(it);
    }
  }
  endpoints_released_ = false;
  for (auto it = hellos_in_flight_.begin(); it != hellos_in_flight_.end();)
    it = it->second <= now_ms ? hellos_in_flight_.erase(it) : std::next(it);
  // A server sent a TrackerHello holds a join slot until it asks or its time is up, so a freed
  // slot is offered to one server, not to all that wait.
  const auto slots_taken = [this] { return joins_.size() + hellos_in_flight_.size(); };
  while (!hello_queue_.empty() && slots_taken() < config_.joins_in_flight_max &&
         view_.clients().size() + slots_taken() < config_.registered_clients_max) {
    const ClientId client = hello_queue_.begin()->second;
    hello_queue_.erase(hello_queue_.begin());
    hello_waiting_.erase(client);
    hellos_in_flight_[client] = now_ms + config_.join_timeout_ms;
    ++metrics_.hellos_sent;
    out.log(LogLevel::info, "inviting '" + client + "' to join again");
    out.publish(TrackerHello{random_.next_uuid()}, client);
  }
}

void Tracker::announce(const Event& event, Output& out) {
  out.publish(event);
  keep_for_replays(out.publishes.back());
}

void Tracker::keep_for_replays(const Publish& publish) {
  for (auto& [id, join] : joins_) {
    if (!join.replay || join.replay->overflowed) continue;
    Replay& replay = *join.replay;
    if (replay.events.size() >= config_.join_replay_events_max ||
        replay.bytes + publish.payload.size() > config_.join_replay_bytes_max) {
      replay.overflowed = true;
      replay.events = {};
      continue;
    }
    replay.bytes += publish.payload.size();
    replay.events.push_back(publish);
  }
}

void Tracker::on_join_requested(std::int64_t now_ms, const ClientId& sender,
                                const ClientJoinRequested& e, Output& out) {
  const bool resync = view_.is_registered(sender);
  // A copy it lists as obtained while a round still waits for its Obtained: that Obtained left
  // before this request and is still on its way, and the join plan deletes the copy (no Ended
  // named it). Arriving later, it must not confirm a later round's Delivered of the fragment.
  for (const auto& [hash, round] : rounds_)
    if (round.stage == Round::Stage::delivering && round.receivers.count(sender) &&
        !round.settled.count(sender) && e.obtained_fragments.count(hash))
      late_obtained_[sender].insert(hash);
  // The join plan is computed without the rounds in progress: a temporary copy the client
  // reports that no Ended named it for yet is one it must delete. So the rounds must forget it
  // too, also when it was lost and kept its place for what it had obtained: an Ended that named
  // it later would count a copy it no longer holds.
  withdraw_from_rounds(now_ms, sender, false, out);
  // A new request supersedes one in progress. A server without RequestEventId cannot tell which
  // of its requests an Accepted answers, and may apply the earlier one: its replay keeps what
  // happened since that one.
  std::optional<Replay> earlier_replay;
  if (auto earlier = joins_.find(sender); earlier != joins_.end()) {
    earlier_replay = std::move(earlier->second.replay);
    joins_.erase(earlier);
  }
  forget_hello(sender);  // it asked: the slot a TrackerHello kept for it is its join's now
  const bool retries = e.extensions.count(std::string(extension_join_retry)) != 0;
  if (joins_.size() + hellos_in_flight_.size() >= config_.joins_in_flight_max) {
    deny_for_now(sender,
                 "too many joins in progress (" + std::to_string(joins_.size()) + "); join again " +
                     (retries ? "later" : "after the TrackerHello the tracker will send you"),
                 e.event_id, retries, out);
    return;
  }
  if (!resync && view_.clients().size() >= config_.registered_clients_max) {
    deny_for_now(sender,
                 "the service has its maximum of " +
                     std::to_string(config_.registered_clients_max) + " clients",
                 e.event_id, retries, out);
    return;
  }
  std::map<ClientId, std::set<std::string>> claimed;
  for (const auto& [id, join] : joins_) claimed.emplace(id, join.plan.client.endpoints);
  static const std::set<Hash> none;
  auto named = holdings_.find(sender);
  JoinPlan plan =
      view_.plan_join(sender, e, claimed, named == holdings_.end() ? none : named->second);
  if (auto* denied = std::get_if<JoinDenial>(&plan)) {
    // The endpoint may be held by this very board under the client id it had before a restart,
    // until its old connection is found lost: a server that waits for a TrackerHello gets one
    // when the endpoints are free.
    if (denied->reason_code == denial::endpoint_conflict && !retries &&
        endpoint_waiters_.size() < config_.hello_waiting_max)
      endpoint_waiters_[sender] = e.endpoints;
    deny(sender, denied->reason_code, std::move(denied->reason), e.event_id, out);
    return;
  }
  auto& accepted = std::get<JoinAcceptance>(plan);
  trim_in_join(sender, accepted, out);
  ClientJoinAccepted answer;
  answer.event_id = random_.next_uuid();
  answer.client_identifier = sender;
  answer.fragment_size_bytes = view_.fragment_size_bytes();
  answer.add_file_infos = accepted.add_file_infos;
  answer.add_fragment_infos = accepted.add_fragment_infos;
  answer.remove_file_infos = accepted.remove_file_infos;
  answer.remove_fragment_infos = accepted.remove_fragment_infos;
  answer.clients = accepted.clients;
  answer.request_event_id = e.event_id;
  answer.revision = view_.revision();
  answer.replicas = config_.replicas;
  // Only the joining client needs the answer (in the specification's Client Join with timeouts,
  // docs/specification.md, others ignore it), and it can be the largest event of all: it goes to
  // that client alone.
  out.publish(answer, sender);
  ++metrics_.joins_accepted;
  out.log(LogLevel::info,
          "accepted join of '" + sender + "': " + std::to_string(accepted.new_files.size()) +
              " new files, " + std::to_string(accepted.new_fragments.size()) + " new fragments, " +
              std::to_string(accepted.remove_fragment_infos.size()) + " fragments to delete");
  PendingJoin join{e.event_id, std::move(accepted), now_ms + config_.join_timeout_ms, false,
                   false,      std::nullopt};
  join.cbor = e.delivery_encodings.count(std::string(delivery_encoding_cbor)) != 0;
  join.retries = retries;
  join.trims = e.extensions.count(std::string(extension_trim)) != 0;
  if (!e.extensions.count(std::string(extension_revision)))
    join.replay = earlier_replay ? std::move(*earlier_replay) : Replay{};
  joins_[sender] = std::move(join);
  MQDS_ASSERT(joins_.size() <= config_.joins_in_flight_max);
}

void Tracker::on_join_succeeded(std::int64_t now_ms, const ClientId& sender,
                                const ClientJoinSucceeded& e, Output& out) {
  auto it = joins_.find(sender);
  if (it == joins_.end() ||
      (e.request_event_id && *e.request_event_id != it->second.request_event_id)) {
    out_of_place("ClientJoinSucceeded from '" + sender + "' answers no join in progress", out);
    return;
  }
  PendingJoin join = std::move(it->second);
  joins_.erase(it);
  endpoints_released_ = true;
  if (!view_.still_consistent(join.plan)) {
    deny_for_now(sender, "the service's view changed during the join; join again",
                 join.request_event_id, join.retries, out);
    return;
  }
  if (join.replay && join.replay->overflowed) {
    deny_for_now(sender,
                 "the service's view changed more than " +
                     std::to_string(config_.join_replay_events_max) + " times (or " +
                     std::to_string(config_.join_replay_bytes_max) +
                     " bytes) during the join; join again",
                 join.request_event_id, join.retries, out);
    return;
  }
  // After the server's registration: the view changes it dropped while it waited for it.
  const auto replay_missed = [&] {
    if (!join.replay) return;
    for (auto& publish : join.replay->events) {
      publish.to = sender;
      out.publishes.push_back(std::move(publish));
      ++metrics_.events_replayed;
    }
  };
  if (join.cbor)
    cbor_receivers_.insert(sender);
  else
    cbor_receivers_.erase(sender);
  if (join.trims)
    trimmable_.insert(sender);
  else
    trimmable_.erase(sender);
  // What it reported in this join is what it holds: copies it was told to delete earlier are
  // either gone from that report, or it never learnt it was to delete them (its accept was lost):
  // a scan asks again.
  if (trimming_.erase(sender)) want_repair_scan(now_ms);
  const auto registered_now = view_.clients().find(sender);
  if (registered_now != view_.clients().end() && registered_now->second == join.plan.client &&
      join.plan.new_files.empty() && join.plan.new_fragments.empty()) {
    const ClientRegistered confirmed{
        random_.next_uuid(),  sender, join.plan.client, {}, {}, view_.revision(),
        join.request_event_id};
    out.publish(confirmed, sender);
    replay_missed();
    out.log(LogLevel::debug, "client '" + sender + "' resynchronised; nothing changed");
    return;
  }
  for (const auto& [hash, file] : join.plan.new_files) {
    view_.put_file(hash, file);
    out.storage.push_back(store::PutFile{hash, file});
  }
  for (const auto& [hash, fragment] : join.plan.new_fragments) {
    view_.put_fragment(hash, fragment.size_bytes);
    out.storage.push_back(store::PutFragmentInfo{hash, fragment.size_bytes});
  }
  view_.put_client(sender, join.plan.client);
  // Its copies count again, and those it no longer lists (lost, or found corrupt) stop counting
  // now: a scan finds what that leaves short, and what it can be a source or a new holder for.
  mark_back(sender);
  const auto& before = holdings_[sender];
  // A client that joins or changes its capacity may move what placement wants, and one that comes
  // back brings copies that may be surplus now.
  if ((config_.rebalance && !view_.files().empty()) || repair_waits_for_clients_ ||
      !contains_all(join.plan.client.stored_fragments, before) || !trims_.empty())
    want_repair_scan(now_ms);
  holdings_[sender] = join.plan.client.stored_fragments;
  out.storage.push_back(store::PutHoldings{sender, join.plan.client.stored_fragments});
  ClientRegistered registered;
  registered.event_id = random_.next_uuid();
  registered.client_identifier = sender;
  registered.info = view_.clients().at(sender);
  registered.added_files = std::move(join.plan.new_files);
  registered.added_fragments = std::move(join.plan.new_fragments);
  registered.revision = bump_revision(now_ms, out);
  announce(registered, out);
  replay_missed();
  ++metrics_.clients_registered;
  out.log(LogLevel::notice, "client '" + sender + "' registered with " +
                                std::to_string(registered.info.stored_fragments.size()) +
                                " fragments");
  for (const auto& hash : registered.info.stored_fragments)
    if (staged_.count(hash) && !rounds_.count(hash)) release_if_replicated(now_ms, hash, out);
  unpark_all(now_ms);
}

void Tracker::on_join_failed(const ClientId& sender, const ClientJoinFailed& e, Output& out) {
  auto it = joins_.find(sender);
  if (it == joins_.end() ||
      (e.request_event_id && *e.request_event_id != it->second.request_event_id)) {
    out_of_place("ClientJoinFailed from '" + sender + "' answers no join in progress", out);
    return;
  }
  joins_.erase(it);
  endpoints_released_ = true;
  out.log(LogLevel::notice,
          "client '" + sender + "' failed its join: " + e.reason.value_or("no reason given"));
}

void Tracker::on_requested(std::int64_t now_ms, const ClientId& sender,
                           const FragmentDistributionRequested& e, Output& out) {
  if (!view_.is_registered(sender)) {
    out_of_place("request for " + e.hash.to_hex() + " from unregistered '" + sender + "'", out);
    return;
  }
  auto it = rounds_.find(e.hash);
  if (it == rounds_.end() || it->second.stage != Round::Stage::requesting ||
      !it->second.targets.count(sender)) {
    out_of_place(
        "request for " + e.hash.to_hex() + " from '" + sender + "' outside its distribution", out);
    return;
  }
  it->second.answered.insert(sender);
  it->second.receivers.insert(sender);
  advance_round(now_ms, e.hash, RoundChange::members, out);
}

void Tracker::on_obtained(std::int64_t now_ms, const ClientId& sender, const Hash& hash, bool ok,
                          Output& out) {
  // An Obtained on its way when its sender joined again (late_obtained_) confirms the copy that
  // join deleted, not any round's Delivered since: the Obtained carries nothing else to tell them
  // apart by.
  if (auto late = late_obtained_.find(sender); ok && late != late_obtained_.end())
    if (auto copy = late->second.find(hash); copy != late->second.end()) {
      late->second.erase(copy);
      if (late->second.empty()) late_obtained_.erase(late);
      out_of_place("Obtained for " + hash.to_hex() + " from '" + sender +
                       "' confirms a copy its join deleted",
                   out);
      return;
    }
  const auto it = rounds_.find(hash);
  Round* round = it == rounds_.end() ? nullptr : &it->second;
  // Requesting, a target that cannot take the fragment says so with Failed instead of Requested;
  // delivering, each receiver settles once, with Obtained or Failed.
  const bool fits =
      round && (round->stage == Round::Stage::requesting
                    ? !ok && round->targets.count(sender)
                    : round->receivers.count(sender) && !round->settled.count(sender));
  if (!fits) {
    out_of_place(std::string(ok ? "Obtained" : "Failed") + " for " + hash.to_hex() + " from '" +
                     sender + "' outside its distribution",
                 out);
    return;
  }
  if (round->stage == Round::Stage::requesting) {
    round->answered.insert(sender);
  } else {
    round->settled.insert(sender);
    if (ok)
      round->obtained.insert(sender);
    else
      ++metrics_.deliveries_failed;
  }
  advance_round(now_ms, hash, RoundChange::members, out);
}

std::uint64_t Tracker::unregister(std::int64_t now_ms, const ClientId& client, bool publish_goodbye,
                                  Output& out) {
  view_.remove_client(client);
  endpoints_released_ = true;
  cbor_receivers_.erase(client);
  trimmable_.erase(client);
  late_obtained_.erase(client);  // its connection, which carried them, is gone
  const std::uint64_t revision = bump_revision(now_ms, out);
  if (publish_goodbye) announce(ClientGoodbye{random_.next_uuid(), client, revision}, out);
  withdraw_from_rounds(now_ms, client, true, out);
  mark_away(now_ms, client);
  trims_.erase(client);
  trim_asked_ms_.erase(client);
  // Copies it was told to delete are gone, also from what it holds while away.
  if (auto trimmed = trimming_.find(client); trimmed != trimming_.end()) {
    auto& held = holdings_[client];
    for (const auto& hash : trimmed->second) held.erase(hash);
    out.storage.push_back(store::PutHoldings{client, held});
    trimming_.erase(trimmed);
  }
  return revision;
}

void Tracker::withdraw_from_rounds(std::int64_t now_ms, const ClientId& client, bool keep_obtained,
                                   Output& out) {
  std::vector<Hash> affected;
  for (auto& [hash, round] : rounds_) {
    if (keep_obtained && round.obtained.count(client)) continue;
    bool member = round.targets.erase(client) + round.answered.erase(client) +
                  round.receivers.erase(client) + round.obtained.erase(client) +
                  round.settled.erase(client);
    if (member) affected.push_back(hash);
  }
  for (const auto& hash : affected) advance_round(now_ms, hash, RoundChange::members, out);
}

Output Tracker::on_disconnect(std::int64_t now_ms, const ClientId& client) {
  Output out;
  if (joins_.erase(client)) {
    endpoints_released_ = true;
    out.log(LogLevel::info, "client '" + client + "' disconnected during its join");
  }
  forget_hello(client);
  cbor_receivers_.erase(client);
  if (view_.is_registered(client)) {
    ++metrics_.clients_lost;
    out.log(LogLevel::notice, "client '" + client + "' lost without goodbye; announcing it");
    unregister(now_ms, client, true, out);
  }
  start_rounds(now_ms, out);
  scan_for_repairs(now_ms, out);
  start_repairs(now_ms, out);
  ask_for_trims(now_ms, out);
  send_hellos(now_ms, out);
  return out;
}

std::uint64_t Tracker::bump_revision(std::int64_t now_ms, Output& out) {
  view_.set_revision(view_.revision() + 1);
  out.storage.push_back(store::PutRevision{view_.revision()});
  last_view_event_ms_ = now_ms;
  return view_.revision();
}

void Tracker::schedule(const Hash& fragment, std::int64_t not_before_ms) {
  if (rounds_.count(fragment)) return;
  parked_.erase(fragment);
  if (auto it = queued_.find(fragment); it != queued_.end()) {
    if (it->second->first <= not_before_ms) return;
    queue_.erase(it->second);
    queued_.erase(it);
  }
  queued_.emplace(fragment, queue_.emplace(not_before_ms, fragment));
}

void Tracker::unpark_all(std::int64_t now_ms) {
  const std::set<Hash> parked = std::move(parked_);
  parked_.clear();
  for (const auto& hash : parked) schedule(hash, now_ms);
}

bool Tracker::release_if_replicated(std::int64_t now_ms, const Hash& hash, Output& out) {
  if (!staged_.count(hash)) return true;
  // A round in progress still delivers from staging; it releases the fragment when it ends. (A
  // file published while a round of a fragment it shares runs, say, must not pull the content
  // from under that round's Delivered.)
  if (rounds_.count(hash)) return false;
  if (view_.holder_count(hash) < config_.replicas) return false;
  staged_.erase(hash);
  parked_.erase(hash);
  if (auto it = queued_.find(hash); it != queued_.end()) {
    queue_.erase(it->second);
    queued_.erase(it);
  }
  out.storage.push_back(store::DropStaged{hash});
  out.log(LogLevel::debug, "dropped staged " + hash.to_hex() + ": " +
                               std::to_string(view_.holder_count(hash)) + " holders");
  // Its holders were chosen as the fleet was then, and scans skip a staged fragment: wherever it
  // is released (its round ended, a holder registered, its turn in the queue came), a scan looks
  // at where it is now.
  if (config_.rebalance) want_repair_scan(now_ms);
  return true;
}

void Tracker::start_rounds(std::int64_t now_ms, Output& out) {
  if (now_ms < distribute_after_ms_) return;
  while (distributions_in_flight() < config_.distributions_in_flight_max && !queue_.empty() &&
         queue_.begin()->first <= now_ms) {
    const Hash hash = queue_.begin()->second;
    queue_.erase(queue_.begin());
    queued_.erase(hash);
    auto staged = staged_.find(hash);
    if (staged == staged_.end() || release_if_replicated(now_ms, hash, out)) continue;
    const auto targets = distribution_targets(view_, hash, staged->second, config_.replicas);
    if (targets.empty()) {
      parked_.insert(hash);
      continue;
    }
    Round round;
    round.size_bytes = staged->second;
    round.targets.insert(targets.begin(), targets.end());
    auto& started = rounds_.emplace(hash, std::move(round)).first->second;
    MQDS_ASSERT(distributions_in_flight() <= config_.distributions_in_flight_max);
    ++metrics_.distributions_started;
    request(now_ms, hash, started, out);
  }
}

void Tracker::request(std::int64_t now_ms, const Hash& hash, Round& round, Output& out) {
  round.stage = Round::Stage::requesting;
  round.deadline_ms = now_ms + config_.request_timeout_ms;
  // To the targets alone, like Delivered: a server that knows only the specification asks for
  // every fragment it is offered and, having asked, waits for its Delivered before it takes
  // another; offered fragments placement did not give it, it would wait out every one of them.
  const FragmentDistributionStarted started{random_.next_uuid(), hash, round.size_bytes};
  for (const auto& target : round.targets) out.publish(started, target);
}

void Tracker::advance_round(std::int64_t now_ms, const Hash& hash, RoundChange change,
                            Output& out) {
  const auto it = rounds_.find(hash);
  if (it == rounds_.end()) return;
  const Round& round = it->second;
  const bool deadline_passed = change == RoundChange::deadline_passed;
  check_round(round);
  switch (round.stage) {
    case Round::Stage::sourcing:
      // Nothing was sent yet: the fetch goes on unless nobody is left to give the content to.
      if (round.targets.empty()) end_repair_early(now_ms, hash, "its new holders left", out);
      return;
    case Round::Stage::requesting:
      if (!deadline_passed && !contains_all(round.answered, round.targets)) return;
      // Nobody asked (every target declined or stayed silent): nothing was sent, nothing to end.
      if (round.receivers.empty())
        end_round(now_ms, hash, out);
      else
        deliver(now_ms, hash, out);
      return;
    case Round::Stage::delivering:
      if (deadline_passed || contains_all(round.settled, round.receivers))
        end_round(now_ms, hash, out);
      return;
  }
}

void Tracker::deliver(std::int64_t now_ms, const Hash& hash, Output& out) {
  const auto it = rounds_.find(hash);
  MQDS_ASSERT(it != rounds_.end());
  Round& round = it->second;
  MQDS_ASSERT(round.stage == Round::Stage::requesting && !round.receivers.empty());
  round.stage = Round::Stage::delivering;
  round.deadline_ms = now_ms + config_.delivery_timeout_ms;
  StagedDelivery delivery{random_.next_uuid(), hash, round.receivers, view_.revision()};
  delivery.content = round.content;
  for (const auto& receiver : round.receivers) {
    delivery.cbor = cbor_receivers_.count(receiver) != 0;
    out.publishes.push_back(
        Publish{std::string(topics::fragment_distribution_delivered), {}, receiver, delivery, 2});
  }
}

void Tracker::end_round(std::int64_t now_ms, const Hash& hash, Output& out) {
  const auto it = rounds_.find(hash);
  MQDS_ASSERT(it != rounds_.end());
  const Round round = std::move(it->second);
  rounds_.erase(it);  // the one place a round ends: only the copy is read from here on
  check_round(round);
  MQDS_ASSERT(round.stage != Round::Stage::sourcing);
  if (round.repair) {
    --repairs_in_flight_;
    forget_correlations(hash);
  }
  if (round.stage == Round::Stage::requesting) {
    MQDS_ASSERT(round.receivers.empty());
    if (round.repair) {
      ++(round.rebalance ? metrics_.rebalances_failed : metrics_.repairs_failed);
      out.log(LogLevel::info, std::string(round.rebalance ? "move" : "repair") + " of " +
                                  hash.to_hex() + " failed: no new holder asked for it");
      want_repair_scan(now_ms + config_.retry_delay_ms);
      distribute_if_staged(now_ms, hash, out);
    } else {
      schedule(hash, now_ms + config_.retry_delay_ms);
    }
    return;
  }
  for (const auto& receiver : round.receivers)
    if (!round.settled.count(receiver)) ++metrics_.deliveries_failed;  // never confirmed in time

  FragmentDistributionEnded ended{random_.next_uuid(), hash, round.size_bytes, round.obtained,
                                  std::nullopt};
  ended.revision = bump_revision(now_ms, out);
  view_.apply_ended(ended);
  out.storage.push_back(store::PutFragmentInfo{hash, round.size_bytes});
  for (const auto& receiver : round.obtained) {
    holdings_[receiver].insert(hash);
    out.storage.push_back(store::AddHolding{receiver, hash});
  }
  out.log(LogLevel::debug, "ended " + hash.to_hex() + " with " +
                               std::to_string(round.obtained.size()) + " of " +
                               std::to_string(round.receivers.size()) + " receivers");
  announce(ended, out);
  ++metrics_.distributions_ended;
  metrics_.distributed_bytes +=
      static_cast<std::uint64_t>(round.size_bytes) * round.obtained.size();
  if (round.repair) {
    const std::string what = round.rebalance ? "move" : "repair";
    (round.rebalance ? metrics_.rebalanced_bytes : metrics_.repaired_bytes) +=
        static_cast<std::uint64_t>(round.size_bytes) * round.obtained.size();
    if (round.obtained.empty()) {
      ++(round.rebalance ? metrics_.rebalances_failed : metrics_.repairs_failed);
      out.log(LogLevel::info,
              what + " of " + hash.to_hex() + " failed: no new holder confirmed it");
      want_repair_scan(now_ms + config_.retry_delay_ms);
      distribute_if_staged(now_ms, hash, out);
      return;
    }
    ++(round.rebalance ? metrics_.rebalances_ended : metrics_.repairs_ended);
    // Scans skip a fragment in a round: one that ran while a copy it counted was lost (a receiver
    // that failed, a holder back without it) learns of it now, and a move's surplus copy is
    // trimmed.
    want_repair_scan(now_ms);
    out.log(LogLevel::info, (round.rebalance ? "moved " : "repaired ") + hash.to_hex() + ": " +
                                std::to_string(round.obtained.size()) + " new holders of " +
                                std::to_string(round.receivers.size()));
    distribute_if_staged(now_ms, hash, out);
    return;
  }
  if (!release_if_replicated(now_ms, hash, out))
    schedule(hash, round.obtained.empty() ? now_ms + config_.retry_delay_ms : now_ms);
}

Output Tracker::on_tick(std::int64_t now_ms) {
  Output out;
  std::vector<ClientId> expired_joins;
  for (const auto& [id, join] : joins_)
    if (join.deadline_ms <= now_ms) expired_joins.push_back(id);
  for (const auto& id : expired_joins) {
    const PendingJoin join = std::move(joins_.at(id));
    joins_.erase(id);
    endpoints_released_ = true;
    ++metrics_.joins_timed_out;
    deny_for_now(id,
                 "join timed out: no ClientJoinSucceeded within " +
                     std::to_string(config_.join_timeout_ms) + " ms",
                 join.request_event_id, join.retries, out);
  }
  std::vector<Hash> expired_rounds;
  for (const auto& [hash, round] : rounds_)
    if (round.deadline_ms <= now_ms) expired_rounds.push_back(hash);
  for (const auto& hash : expired_rounds)
    advance_round(now_ms, hash, RoundChange::deadline_passed, out);
  std::vector<Hash> sources_due;
  for (const auto& [hash, round] : rounds_)
    if (round.source)
      if (const auto due = round.source->next_deadline_ms(); due && *due <= now_ms)
        sources_due.push_back(hash);
  for (const auto& hash : sources_due)
    take_source_output(now_ms, hash, rounds_.at(hash).source->on_tick(now_ms), out);
  // A holder away for repair_delay_ms is gone: what it held is short now.
  while (!away_expiries_.empty() && away_expiries_.begin()->first <= now_ms) {
    const auto [expiry, client] = *away_expiries_.begin();
    away_expiries_.erase(away_expiries_.begin());
    const auto away = away_since_.find(client);
    if (away == away_since_.end() || away->second + config_.repair_delay_ms != expiry) continue;
    // No longer away but gone: its copies stopped counting (count_copies), and forgetting it
    // keeps clients_away to those within the delay and away_since_ bounded by them.
    away_since_.erase(away);
    out.log(LogLevel::notice, "client '" + client + "' has been away for " +
                                  std::to_string(config_.repair_delay_ms) +
                                  " ms: its copies no longer count");
    want_repair_scan(now_ms);
  }
  start_rounds(now_ms, out);
  scan_for_repairs(now_ms, out);
  start_repairs(now_ms, out);
  ask_for_trims(now_ms, out);
  send_hellos(now_ms, out);
  if (now_ms - last_view_event_ms_ >= config_.revision_beacon_ms) {
    out.publish(TrackerRevision{random_.next_uuid(), view_.revision()});
    last_view_event_ms_ = now_ms;
  }
  return out;
}

IngestResult Tracker::add_file(std::int64_t now_ms, const Hash& hash, const FileMetadata& metadata,
                               const std::map<Hash, std::int64_t>& staged_sizes) {
  IngestResult result;
  Output& out = result.output;
  const auto sizes =
      DistributionView::expected_fragment_sizes(metadata, view_.fragment_size_bytes());
  if (!sizes) {
    result.error = "file " + hash.to_hex() + ": " +
                   std::to_string(metadata.fragment_sequence.size()) + " fragments do not make " +
                   std::to_string(metadata.size_bytes) + " bytes at FragmentSize " +
                   std::to_string(view_.fragment_size_bytes());
    return result;
  }
  for (std::size_t i = 0; i < sizes->size(); ++i) {
    const Hash& fragment = metadata.fragment_sequence[i];
    std::optional<std::int64_t> known;
    if (auto s = staged_sizes.find(fragment); s != staged_sizes.end())
      known = s->second;
    else if (auto t = staged_.find(fragment); t != staged_.end())
      known = t->second;
    else if (auto f = view_.fragments().find(fragment); f != view_.fragments().end())
      known = f->second.size_bytes;
    if (!known) {
      result.error = "file " + hash.to_hex() + ": fragment " + std::to_string(i) + " (" +
                     fragment.to_hex() + ") is neither staged nor known to the service";
      return result;
    }
    if (*known != (*sizes)[i]) {
      result.error = "file " + hash.to_hex() + ": fragment " + std::to_string(i) + " has " +
                     std::to_string(*known) + " bytes where " + std::to_string((*sizes)[i]) +
                     " are expected";
      return result;
    }
  }
  if (auto existing = view_.files().find(hash); existing != view_.files().end()) {
    if (!(existing->second == metadata)) {
      result.error = "file " + hash.to_hex() + " is already published with other metadata";
      return result;
    }
  } else {
    view_.put_file(hash, metadata);
    out.storage.push_back(store::PutFile{hash, metadata});
    FileInfoPublished published{random_.next_uuid(), hash, metadata.size_bytes,
                                metadata.fragment_sequence, std::nullopt};
    published.revision = bump_revision(now_ms, out);
    announce(published, out);
    ++metrics_.files_published;
    metrics_.ingested_bytes += static_cast<std::uint64_t>(metadata.size_bytes);
    out.log(LogLevel::notice,
            "published file " + hash.to_hex() + " (" + std::to_string(metadata.size_bytes) +
                " bytes, " + std::to_string(metadata.fragment_sequence.size()) + " fragments)");
  }
  for (const auto& [fragment, size] : staged_sizes) {
    staged_[fragment] = size;
    if (!release_if_replicated(now_ms, fragment, out)) schedule(fragment, now_ms);
  }
  start_rounds(now_ms, out);
  return result;
}

std::int64_t Tracker::next_deadline_ms() const {
  std::int64_t next = last_view_event_ms_ + config_.revision_beacon_ms;
  for (const auto& [id, join] : joins_) next = std::min(next, join.deadline_ms);
  // A TrackerHello's slot freeing lets the next waiting server be invited.
  if (!hello_queue_.empty())
    for (const auto& [id, deadline] : hellos_in_flight_) next = std::min(next, deadline);
  for (const auto& [hash, round] : rounds_) {
    if (round.source) {
      if (const auto due = round.source->next_deadline_ms()) next = std::min(next, *due);
    } else {
      next = std::min(next, round.deadline_ms);
    }
  }
  if (!queue_.empty() && distributions_in_flight() < config_.distributions_in_flight_max)
    next = std::min(next, std::max(queue_.begin()->first, distribute_after_ms_));
  if (!away_expiries_.empty()) next = std::min(next, away_expiries_.begin()->first);
  if (repair_scan_at_ms_)
    next = std::min(next, std::max(*repair_scan_at_ms_, distribute_after_ms_));
  if (!repair_queue_.empty() && repairs_in_flight_ < config_.repairs_in_flight_max)
    next = std::min(next, std::max(distribute_after_ms_, repair_bytes_next_ms_));
  for (const auto& [client, hashes] : trims_) {
    if (joins_.count(client)) continue;
    const auto asked = trim_asked_ms_.find(client);
    next = std::min(next, asked == trim_asked_ms_.end()
                              ? distribute_after_ms_
                              : asked->second + config_.trim_ask_interval_ms);
  }
  return next;
}

TrackerGauges Tracker::gauges() const {
  TrackerGauges g;
  g.registered_clients = view_.clients().size();
  g.files = view_.files().size();
  g.fragments = view_.fragments().size();
  g.staged_fragments = staged_.size();
  g.distributions_in_flight = rounds_.size();
  g.joins_in_flight = joins_.size();
  g.clients_awaiting_hello = hello_waiting_.size() + endpoint_waiters_.size();
  g.repairs_in_flight = repairs_in_flight_;
  g.clients_away = away_since_.size();
  g.surplus_copies = surplus_copies_;
  g.misplaced_fragments = misplaced_fragments_;
  std::map<Hash, std::size_t> holders;
  for (const auto& [id, meta] : view_.clients())
    for (const auto& hash : meta.stored_fragments) ++holders[hash];
  auto short_of_replicas = [&](const Hash& hash) {
    auto it = holders.find(hash);
    return it == holders.end() || it->second < config_.replicas;
  };
  // A fragment no file references (one a server that knows only the specification kept) is no
  // content of the service: nothing replicates it, so it is not short of anything.
  std::set<Hash> referenced;
  for (const auto& [hash, file] : view_.files())
    referenced.insert(file.fragment_sequence.begin(), file.fragment_sequence.end());
  for (const auto& [hash, fragment] : view_.fragments()) {
    if (!referenced.count(hash)) continue;
    g.under_replicated_fragments += short_of_replicas(hash);
    g.unavailable_fragments += !holders.count(hash) && !staged_.count(hash);
  }
  for (const auto& [hash, size] : staged_)
    if (!view_.fragments().count(hash)) g.under_replicated_fragments += short_of_replicas(hash);
  return g;
}

// Repair.

void Tracker::want_repair_scan(std::int64_t at_ms) {
  if (repair_scanned_)
    at_ms = std::max(at_ms, last_repair_scan_ms_ + config_.repair_scan_interval_ms);
  if (!repair_scan_at_ms_ || at_ms < *repair_scan_at_ms_) repair_scan_at_ms_ = at_ms;
}

void Tracker::mark_away(std::int64_t now_ms, const ClientId& client) {
  away_since_[client] = now_ms;
  away_expiries_.emplace(now_ms + config_.repair_delay_ms, client);
}

void Tracker::mark_back(const ClientId& client) {
  // Its entry in away_expiries_ stays; it is recognised as stale when it comes due.
  away_since_.erase(client);
}

Tracker::CopyCounts Tracker::count_copies(std::int64_t now_ms) const {
  CopyCounts counts;
  for (const auto& [id, meta] : view_.clients())
    for (const auto& hash : meta.stored_fragments)
      if (!is_trimming(id, hash)) ++counts.registered[hash];
  counts.counted = counts.registered;
  for (const auto& [id, since] : away_since_) {
    if (now_ms - since >= config_.repair_delay_ms) continue;
    const auto held = holdings_.find(id);
    if (held == holdings_.end()) continue;
    for (const auto& hash : held->second) ++counts.counted[hash];
  }
  return counts;
}

std::size_t Tracker::registered_copies_of(const Hash& hash) const {
  std::size_t copies = 0;
  for (const auto& holder : view_.holders(hash)) copies += !is_trimming(holder, hash);
  return copies;
}

std::size_t Tracker::counted_copies_of(std::int64_t now_ms, const Hash& hash) const {
  std::size_t copies = registered_copies_of(hash);
  for (const auto& [id, since] : away_since_) {
    if (now_ms - since >= config_.repair_delay_ms) continue;
    const auto held = holdings_.find(id);
    copies += held != holdings_.end() && held->second.count(hash);
  }
  return copies;
}

void Tracker::scan_for_repairs(std::int64_t now_ms, Output& out) {
  if (!repair_scan_at_ms_ || now_ms < *repair_scan_at_ms_ || now_ms < distribute_after_ms_) return;
  repair_scan_at_ms_.reset();
  repair_scanned_ = true;
  repair_waits_for_clients_ = false;
  last_repair_scan_ms_ = now_ms;
  const CopyCounts counts = count_copies(now_ms);
  const auto copies = [](const std::map<Hash, std::size_t>& of, const Hash& hash) {
    const auto it = of.find(hash);
    return it == of.end() ? std::size_t{0} : it->second;
  };
  std::set<Hash> referenced;
  for (const auto& [hash, file] : view_.files())
    referenced.insert(file.fragment_sequence.begin(), file.fragment_sequence.end());
  // Registered holders, less copies being trimmed.
  std::map<Hash, std::vector<ClientId>> holders;
  for (const auto& [id, meta] : view_.clients())
    for (const auto& hash : meta.stored_fragments)
      if (!is_trimming(id, hash)) holders[hash].push_back(id);
  // Staged fragments are the distribution's: it has their content and sends it until they have
  // their replicas.
  std::vector<std::tuple<std::size_t, Hash, std::size_t>> wanted;  // copies, hash, missing
  std::vector<Hash> moves;
  std::map<ClientId, std::set<Hash>> trims;
  std::size_t unavailable = 0;
  std::size_t surplus = 0;
  for (const auto& hash : referenced) {
    if (staged_.count(hash) || rounds_.count(hash)) continue;
    const std::size_t counted = copies(counts.counted, hash);
    if (counted < config_.replicas) {
      if (copies(counts.registered, hash) == 0) {
        ++unavailable;  // waits for a holder to come back
        repair_waits_for_clients_ = true;
        continue;
      }
      wanted.emplace_back(counted, hash, config_.replicas - counted);
      continue;
    }
    const auto held = holders.find(hash);
    const std::vector<ClientId> none;
    const auto& registered = held == holders.end() ? none : held->second;
    if (registered.size() > config_.replicas) {
      // The copies placement likes least go, of those whose holders can be asked (Trim), as long
      // as `replicas` copies stay that can be fetched (a server of the specification serves
      // none): a surplus over copies nobody can fetch stays.
      std::size_t extra = registered.size() - config_.replicas;
      std::size_t fetchable = 0;
      for (const auto& holder : registered) fetchable += fetch_topic_of(holder).has_value();
      const auto best_first = rendezvous_top(hash, registered, registered.size());
      for (auto it = best_first.rbegin(); it != best_first.rend() && extra > 0; ++it) {
        if (!trimmable_.count(*it)) continue;
        if (fetch_topic_of(*it)) {
          if (fetchable <= config_.replicas) continue;
          --fetchable;
        }
        trims[*it].insert(hash);
        ++surplus;
        --extra;
      }
      continue;
    }
    // A copy whose holder is away may come back: nothing moves until it counts no longer.
    if (!config_.rebalance || registered.size() != counted) continue;
    const auto fragment = view_.fragments().find(hash);
    if (fragment == view_.fragments().end()) continue;
    const auto ideal = ideal_holders(view_, hash, fragment->second.size_bytes, config_.replicas);
    const auto wanted_by_placement = [&](const ClientId& id) {
      return std::find(ideal.begin(), ideal.end(), id) != ideal.end();
    };
    // Copies move only to servers that can be asked to delete one later (Trim): a server of the
    // specification could not give its place back, and serves no fetch. And a move makes a
    // surplus copy of a holder placement does not want, which must then go: one that cannot be
    // asked keeps its copy, and nothing moves.
    bool wanted_elsewhere = false, movable = true;
    for (const auto& id : ideal)
      wanted_elsewhere = wanted_elsewhere ||
                         (trimmable_.count(id) &&
                          std::find(registered.begin(), registered.end(), id) == registered.end());
    for (const auto& holder : registered)
      if (!wanted_by_placement(holder)) movable = movable && trimmable_.count(holder);
    if (wanted_elsewhere && movable) moves.push_back(hash);
  }
  std::sort(wanted.begin(), wanted.end());
  repair_queue_.clear();
  for (const auto& [counted, hash, missing] : wanted)
    repair_queue_.push_back(RepairWork{hash, missing, false});
  // Repairs first: a move only brings a fragment that has its copies where placement wants it.
  for (const auto& hash : moves) repair_queue_.push_back(RepairWork{hash, 1, true});
  for (auto it = trim_asked_ms_.begin(); it != trim_asked_ms_.end();)
    it = trims.count(it->first) ? std::next(it) : trim_asked_ms_.erase(it);
  trims_ = std::move(trims);
  surplus_copies_ = surplus;
  misplaced_fragments_ = moves.size();
  if (!wanted.empty() || unavailable || !moves.empty() || surplus)
    out.log(LogLevel::info,
            std::to_string(wanted.size()) + " fragments to repair, " + std::to_string(unavailable) +
                " unavailable until a holder comes back, " + std::to_string(moves.size()) +
                " to move, " + std::to_string(surplus) + " surplus copies");
}

void Tracker::start_repairs(std::int64_t now_ms, Output& out) {
  if (now_ms < distribute_after_ms_) return;
  while (repairs_in_flight_ < config_.repairs_in_flight_max && !repair_queue_.empty()) {
    if (config_.repair_bytes_per_s > 0 && now_ms < repair_bytes_next_ms_) return;
    const RepairWork work = repair_queue_.front();
    const Hash hash = work.hash;
    repair_queue_.pop_front();
    if (staged_.count(hash) || rounds_.count(hash)) continue;
    const auto fragment = view_.fragments().find(hash);
    if (fragment == view_.fragments().end()) continue;
    const std::int64_t size = fragment->second.size_bytes;
    // The view may have changed since the scan: count again.
    const std::size_t counted = counted_copies_of(now_ms, hash);
    if (work.move ? counted != config_.replicas || registered_copies_of(hash) != counted
                  : counted >= config_.replicas)
      continue;
    std::vector<fetch::Holder> sources;
    for (const auto& holder : view_.holders(hash))
      if (auto topic = fetch_topic_of(holder); topic && !is_trimming(holder, hash))
        sources.push_back({holder, std::move(*topic)});
    if (sources.empty()) {
      if (work.move) continue;  // it stays where it is
      repair_waits_for_clients_ = true;
      out.log(LogLevel::debug,
              "cannot repair " + hash.to_hex() + " yet: no holder has a fetch endpoint");
      continue;
    }
    std::vector<ClientId> targets;
    if (work.move) {
      // One copy at a time, for the client placement likes best of those it wants that lack it.
      for (const auto& id : ideal_holders(view_, hash, size, config_.replicas))
        if (trimmable_.count(id) && !view_.holds(id, hash)) {
          targets.push_back(id);
          break;
        }
      if (targets.empty()) continue;
    } else {
      // The targets placement chooses for the registered holders, only as many as are missing: a
      // copy whose holder is away (within the delay) still counts.
      targets = distribution_targets(view_, hash, size, config_.replicas);
      if (targets.size() > config_.replicas - counted) targets.resize(config_.replicas - counted);
    }
    if (targets.empty()) {
      repair_waits_for_clients_ = true;
      out.log(LogLevel::debug,
              "cannot repair " + hash.to_hex() + " yet: no other client has room for it");
      continue;
    }
    fetch::ClientConfig source_config;
    source_config.response_topic = repair_response_topic();
    source_config.parallel = 1;
    source_config.request_timeout_ms = config_.repair_fetch_timeout_ms;
    Round round;
    round.stage = Round::Stage::sourcing;
    round.repair = true;
    round.rebalance = work.move;
    round.size_bytes = size;
    round.targets.insert(targets.begin(), targets.end());
    round.deadline_ms = std::numeric_limits<std::int64_t>::max();  // the source's deadlines rule
    std::string names;
    for (const auto& target : targets) names += (names.empty() ? "'" : ", '") + target + "'";
    if (work.move)
      out.log(LogLevel::info, "moving a copy of " + hash.to_hex() + " to " + names +
                                  ", where placement wants it, from '" + sources.front().id + "'");
    else
      out.log(LogLevel::info, "repairing " + hash.to_hex() + " (" + std::to_string(counted) +
                                  " of " + std::to_string(config_.replicas) + " copies) for " +
                                  names + ", from '" + sources.front().id + "'");
    if (config_.repair_bytes_per_s > 0) {
      const auto copied_bytes = static_cast<std::int64_t>(targets.size()) * size;
      repair_bytes_next_ms_ = std::max(now_ms, repair_bytes_next_ms_) +
                              copied_bytes * 1000 / config_.repair_bytes_per_s;
    }
    round.source = std::make_unique<fetch::Client>(
        std::move(source_config),
        std::vector<fetch::FileFragment>{{hash, size, 0, std::move(sources), false}}, random_);
    auto& started = rounds_.emplace(hash, std::move(round)).first->second;
    ++repairs_in_flight_;
    ++(work.move ? metrics_.rebalances_started : metrics_.repairs_started);
    take_source_output(now_ms, hash, started.source->start(now_ms), out);
  }
}

void Tracker::take_source_output(std::int64_t now_ms, const Hash& hash,
                                 fetch::ClientOutput source_out, Output& out) {
  const auto it = rounds_.find(hash);
  MQDS_ASSERT(it != rounds_.end() && it->second.source);
  Round& round = it->second;
  for (auto& request : source_out.requests) {
    repair_correlations_[request.correlation_data] = hash;
    out.fetch_requests.push_back(std::move(request));
  }
  if (!source_out.completed.empty()) {
    // Verified by its hash in the fetch::Client.
    metrics_.repair_fetched_bytes += static_cast<std::uint64_t>(round.size_bytes);
    round.content =
        std::make_shared<const std::string>(std::move(source_out.completed.front().data));
    round.source.reset();
    forget_correlations(hash);
    if (round.targets.empty()) {
      end_repair_early(now_ms, hash, "its new holders left", out);
      return;
    }
    request(now_ms, hash, round, out);
    return;
  }
  if (!round.source->finished()) return;
  std::string problems;
  for (const auto& missing : round.source->missing())
    for (const auto& problem : missing.problems)
      problems += (problems.empty() ? "" : "; ") + problem.holder + ": " + problem.problem;
  end_repair_early(now_ms, hash, "no holder gave it (" + problems + ")", out);
}

void Tracker::ask_for_trims(std::int64_t now_ms, Output& out) {
  if (now_ms < distribute_after_ms_) return;
  for (const auto& [client, hashes] : trims_) {
    // A join in progress was planned before; the scan after its registration asks again.
    if (joins_.count(client)) continue;
    auto [asked, first] = trim_asked_ms_.try_emplace(client, now_ms);
    if (!first) {
      if (now_ms - asked->second < config_.trim_ask_interval_ms) continue;
      asked->second = now_ms;
    }
    // Both kinds of torrent server join again on a TrackerHello; the specification's has no
    // other way to be told to delete a copy than its ClientJoinAccepted.
    out.publish(TrackerHello{random_.next_uuid()}, client);
    ++metrics_.trim_requests;
    out.log(LogLevel::info, "asking '" + client + "' to join again and delete " +
                                std::to_string(hashes.size()) + " surplus copies");
  }
}

std::optional<std::string> Tracker::fetch_topic_of(const ClientId& client) const {
  const auto it = view_.clients().find(client);
  if (it == view_.clients().end()) return std::nullopt;
  for (const auto& endpoint : it->second.endpoints)
    if (auto topic = fetch::request_topic_of_endpoint(endpoint)) return topic;
  return std::nullopt;
}

bool Tracker::is_trimming(const ClientId& client, const Hash& hash) const {
  const auto it = trimming_.find(client);
  return it != trimming_.end() && it->second.count(hash) != 0;
}

void Tracker::trim_in_join(const ClientId& client, JoinAcceptance& accepted, Output& out) {
  const auto trim = trims_.find(client);
  if (trim == trims_.end()) return;
  std::size_t trimmed = 0;
  for (const auto& hash : trim->second) {
    if (!accepted.client.stored_fragments.count(hash) || staged_.count(hash) || rounds_.count(hash))
      continue;
    const auto fragment = view_.fragments().find(hash);
    if (fragment == view_.fragments().end()) continue;
    // Never below replicas: only copies of registered clients count, which are durable (an Ended
    // named them once they confirmed, or they reported them at their join), less those another
    // join in progress deletes.
    // And `replicas` copies stay that can be fetched, unless this one cannot be.
    std::size_t others = 0, others_fetchable = 0;
    for (const auto& holder : view_.holders(hash)) {
      if (holder == client || is_trimming(holder, hash)) continue;
      ++others;
      others_fetchable += fetch_topic_of(holder).has_value();
    }
    if (others < config_.replicas ||
        (fetch_topic_of(client) && others_fetchable < config_.replicas))
      continue;
    accepted.client.stored_fragments.erase(hash);
    accepted.remove_fragment_infos.insert(hash);
    // The fragment stays in the service: the server keeps it in its view without its copy.
    accepted.add_fragment_infos[hash] = fragment->second;
    trimming_[client].insert(hash);
    ++trimmed;
  }
  trims_.erase(trim);
  trim_asked_ms_.erase(client);
  metrics_.copies_trimmed += trimmed;
  if (trimmed)
    out.log(LogLevel::info,
            "'" + client + "' deletes " + std::to_string(trimmed) + " surplus copies in its join");
}

void Tracker::end_repair_early(std::int64_t now_ms, const Hash& hash, const std::string& why,
                               Output& out) {
  const auto it = rounds_.find(hash);
  MQDS_ASSERT(it != rounds_.end() && it->second.repair &&
              it->second.stage == Round::Stage::sourcing);
  const bool move = it->second.rebalance;
  rounds_.erase(it);
  --repairs_in_flight_;
  forget_correlations(hash);
  ++(move ? metrics_.rebalances_failed : metrics_.repairs_failed);
  out.log(LogLevel::warning,
          std::string(move ? "move" : "repair") + " of " + hash.to_hex() + " failed: " + why);
  want_repair_scan(now_ms + config_.retry_delay_ms);
  distribute_if_staged(now_ms, hash, out);
}

void Tracker::distribute_if_staged(std::int64_t now_ms, const Hash& hash, Output& out) {
  // A file uploaded during the repair staged the same content again; its distribution could not
  // be scheduled while the repair's round held the fragment.
  if (staged_.count(hash) && !release_if_replicated(now_ms, hash, out)) schedule(hash, now_ms);
}

void Tracker::forget_correlations(const Hash& hash) {
  for (auto it = repair_correlations_.begin(); it != repair_correlations_.end();)
    it = it->second == hash ? repair_correlations_.erase(it) : std::next(it);
}

Output Tracker::on_fetch_response(std::int64_t now_ms, fetch::IncomingResponse response) {
  Output out;
  const auto match = repair_correlations_.find(response.correlation_data);
  const auto round =
      match == repair_correlations_.end() ? rounds_.end() : rounds_.find(match->second);
  if (round == rounds_.end() || !round->second.source) {
    out_of_place("a fetch answer on " + response.topic + " for no repair in progress", out);
    return out;
  }
  const Hash hash = round->first;
  take_source_output(now_ms, hash, round->second.source->on_response(now_ms, std::move(response)),
                     out);
  start_repairs(now_ms, out);
  return out;
}

}  // namespace mqds
