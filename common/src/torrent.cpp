#include "mqds/torrent.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "mqds/limits.hpp"
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

Output TorrentServer::on_connected(std::int64_t now_ms) {
  Output out;
  phase_ = TorrentPhase::unregistered;
  send_join(now_ms, out);
  return out;
}

Output TorrentServer::on_disconnected(std::int64_t) {
  Output out;
  // Without the broker there is no tracker (it lives in the broker): wait to reconnect, then join.
  leave_registration(out);
  phase_ = TorrentPhase::disconnected;
  retry_at_ms_.reset();
  return out;
}

Output TorrentServer::goodbye(std::int64_t) {
  Output out;
  if (phase_ != TorrentPhase::disconnected)
    out.publish(ClientGoodbye{random_.next_uuid(), std::nullopt, std::nullopt});
  leave_registration(out);
  phase_ = TorrentPhase::disconnected;
  return out;
}

Output TorrentServer::fragment_lost(std::int64_t now_ms, const Hash& hash) {
  Output out;
  if (!stored_.erase(hash) && !temporaries_.erase(hash)) return out;
  out.storage.push_back(store::DeleteFragment{hash});
  out.log(LogLevel::warning,
          "lost the local copy of " + hash.to_hex() + "; joining again to report it");
  // Disconnected or between attempts, the next join reports it anyway.
  if (phase_ == TorrentPhase::registered || phase_ == TorrentPhase::awaiting_registration ||
      phase_ == TorrentPhase::joining)
    send_join(now_ms, out);
  return out;
}

void TorrentServer::leave_registration(Output&) {
  requested_.clear();
  if (phase_ != TorrentPhase::disconnected) phase_ = TorrentPhase::unregistered;
}

void TorrentServer::send_join(std::int64_t now_ms, Output& out) {
  leave_registration(out);
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
  join_request_id_ = request.event_id;
  out.publish(request);
  ++metrics_.joins_requested;
  phase_ = TorrentPhase::joining;
  phase_deadline_ms_ = now_ms + config_.join_timeout_ms;
  retry_at_ms_.reset();
}

void TorrentServer::retry_later(std::int64_t now_ms, Output& out) {
  leave_registration(out);
  retry_at_ms_ = now_ms + join_backoff_.next_delay_ms(random_);
}

FragmentInfos TorrentServer::temporary_infos() const {
  FragmentInfos infos;
  for (const auto& [hash, temporary] : temporaries_)
    infos.emplace(hash, FragmentMetadata{temporary.size_bytes});
  return infos;
}

std::optional<std::int64_t> TorrentServer::next_deadline_ms() const {
  std::optional<std::int64_t> next;
  auto consider = [&](std::int64_t t) { next = next ? std::min(*next, t) : t; };
  if (phase_ == TorrentPhase::joining || phase_ == TorrentPhase::awaiting_registration)
    consider(phase_deadline_ms_);
  if (phase_ == TorrentPhase::unregistered && retry_at_ms_) consider(*retry_at_ms_);
  for (const auto& [hash, t] : requested_) consider(t.deadline_ms);
  if (phase_ == TorrentPhase::registered)
    for (const auto& [hash, t] : temporaries_) consider(t.deadline_ms);
  return next;
}

Output TorrentServer::on_tick(std::int64_t now_ms) {
  Output out;
  if (phase_ == TorrentPhase::joining && now_ms >= phase_deadline_ms_) {
    out.log(LogLevel::warning, "no answer to the join request within " +
                                   std::to_string(config_.join_timeout_ms) +
                                   " ms; trying again later");
    retry_later(now_ms, out);
  } else if (phase_ == TorrentPhase::awaiting_registration && now_ms >= phase_deadline_ms_) {
    out.log(LogLevel::warning, "not registered within " +
                                   std::to_string(config_.registration_timeout_ms) +
                                   " ms of ClientJoinSucceeded; trying again later");
    out.publish(
        ClientJoinFailed{random_.next_uuid(), "no ClientRegistered in time", join_request_id_});
    retry_later(now_ms, out);
  } else if (phase_ == TorrentPhase::unregistered && retry_at_ms_ && now_ms >= *retry_at_ms_) {
    send_join(now_ms, out);
  }
  for (auto it = requested_.begin(); it != requested_.end();)
    it = it->second.deadline_ms <= now_ms ? requested_.erase(it) : std::next(it);
  if (phase_ == TorrentPhase::registered) {
    for (const auto& [hash, temporary] : temporaries_) {
      if (temporary.deadline_ms > now_ms) continue;
      // Deleting could lose a replica the tracker counts on, keeping it could keep one it does not:
      // the join request reports it and the tracker's ledger decides.
      out.log(LogLevel::notice, "no FragmentDistributionEnded for " + hash.to_hex() + " in " +
                                    std::to_string(config_.temporary_timeout_ms) +
                                    " ms; joining again to settle it");
      send_join(now_ms, out);
      break;
    }
  }
  return out;
}

bool TorrentServer::next_in_sequence(std::int64_t now_ms, std::optional<std::uint64_t> revision,
                                     Output& out) {
  if (phase_ != TorrentPhase::registered && phase_ != TorrentPhase::awaiting_registration)
    return false;
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

Output TorrentServer::on_message(std::int64_t now_ms, std::string_view topic,
                                 std::string_view payload) {
  Output out;
  const auto type = event_type_for_topic(topic);
  if (!type || phase_ == TorrentPhase::disconnected) return out;
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

  switch (*type) {
    case EventType::tracker_hello:
      out.log(LogLevel::info, "tracker is up; joining");
      send_join(now_ms, out);
      break;
    case EventType::tracker_goodbye:
      out.log(LogLevel::notice, "tracker said goodbye; waiting for it to come back");
      leave_registration(out);
      retry_at_ms_ = now_ms + config_.join_retry_max_ms;
      break;
    case EventType::client_join_accepted:
      on_accepted(now_ms, std::get<ClientJoinAccepted>(event), out);
      break;
    case EventType::client_join_denied:
      on_denied(now_ms, std::get<ClientJoinDenied>(event), out);
      break;
    case EventType::client_registered: {
      const auto& e = std::get<ClientRegistered>(event);
      if (!e.request_event_id) {
        if (next_in_sequence(now_ms, e.revision, out)) on_registered(now_ms, e, out);
        break;
      }
      // A confirmation of a resync that changed nothing: not a view change. Its Revision is the
      // tracker's at the time; being behind it means an event was missed on the way.
      if (e.client_identifier != config_.client_id ||
          phase_ != TorrentPhase::awaiting_registration || *e.request_event_id != join_request_id_)
        break;
      if (e.revision && *e.revision > view_.revision()) {
        ++metrics_.revision_gaps;
        out.log(LogLevel::notice, "registration confirmed at revision " +
                                      std::to_string(*e.revision) + ", this server is at " +
                                      std::to_string(view_.revision()) + "; joining again");
        send_join(now_ms, out);
        break;
      }
      on_registered(now_ms, e, out);
      break;
    }
    case EventType::client_goodbye: {
      const auto& e = std::get<ClientGoodbye>(event);
      // Without the tracker's stamp nobody can tell who left; the tracker's own view is unaffected.
      if (!e.client_identifier || !next_in_sequence(now_ms, e.revision, out)) break;
      if (*e.client_identifier == config_.client_id) {
        out.log(LogLevel::notice,
                "the tracker no longer counts this server as registered; joining again");
        send_join(now_ms, out);
      } else {
        view_.remove_client(*e.client_identifier);
      }
      break;
    }
    case EventType::file_info_published: {
      const auto& e = std::get<FileInfoPublished>(event);
      if (!next_in_sequence(now_ms, e.revision, out)) break;
      FileMetadata file{e.size_bytes, e.fragment_sequence};
      view_.put_file(e.hash, file);
      out.storage.push_back(store::PutFile{e.hash, std::move(file)});
      break;
    }
    case EventType::fragment_distribution_ended: {
      const auto& e = std::get<FragmentDistributionEnded>(event);
      if (next_in_sequence(now_ms, e.revision, out)) on_ended(now_ms, e, out);
      break;
    }
    case EventType::fragment_distribution_started:
      on_started(now_ms, std::get<FragmentDistributionStarted>(event), out);
      break;
    case EventType::fragment_distribution_delivered:
      on_delivered(now_ms, std::get<FragmentDistributionDelivered>(event), out);
      break;
    case EventType::tracker_revision: {
      const auto& e = std::get<TrackerRevision>(event);
      if ((phase_ == TorrentPhase::registered || phase_ == TorrentPhase::awaiting_registration) &&
          e.revision > view_.revision()) {
        ++metrics_.revision_gaps;
        out.log(LogLevel::notice, "tracker is at revision " + std::to_string(e.revision) +
                                      ", this server at " + std::to_string(view_.revision()) +
                                      "; joining again");
        send_join(now_ms, out);
      }
      break;
    }
    default: break;  // events other clients send to the tracker
  }
  return out;
}

void TorrentServer::on_accepted(std::int64_t now_ms, const ClientJoinAccepted& e, Output& out) {
  // Accepts of other joining clients reach every subscriber and are ignored (diagram 000).
  if (e.client_identifier != config_.client_id || phase_ != TorrentPhase::joining) return;
  if (e.request_event_id && *e.request_event_id != join_request_id_) return;
  const bool has_data = !stored_.empty() || !view_.files().empty();
  if (has_data && fragment_size_bytes_ && *fragment_size_bytes_ != e.fragment_size_bytes) {
    const std::string problem = "stored data uses FragmentSize " +
                                std::to_string(*fragment_size_bytes_) + " but the service uses " +
                                std::to_string(e.fragment_size_bytes);
    out.publish(ClientJoinFailed{random_.next_uuid(), problem, join_request_id_});
    out.fatal = problem + ": move the data directory aside to join as a new server";
    leave_registration(out);
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

  out.publish(ClientJoinSucceeded{random_.next_uuid(), join_request_id_});
  phase_ = TorrentPhase::awaiting_registration;
  phase_deadline_ms_ = now_ms + config_.registration_timeout_ms;
}

void TorrentServer::on_denied(std::int64_t now_ms, const ClientJoinDenied& e, Output& out) {
  if (e.client_identifier != config_.client_id) return;
  if (phase_ != TorrentPhase::joining && phase_ != TorrentPhase::awaiting_registration) return;
  if (e.request_event_id && *e.request_event_id != join_request_id_) return;
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
  if (!fix.empty()) {
    out.fatal = "join denied (code " + std::to_string(e.reason_code) + "): " + reason + "." + fix;
    leave_registration(out);
    return;
  }
  out.log(LogLevel::warning, "join denied: " + reason + "; trying again later");
  retry_later(now_ms, out);
}

void TorrentServer::on_registered(std::int64_t now_ms, const ClientRegistered& e, Output& out) {
  for (const auto& [hash, file] : e.added_files)
    if (!view_.files().count(hash)) out.storage.push_back(store::PutFile{hash, file});
  view_.apply_registered(e);
  if (e.client_identifier == config_.client_id && phase_ == TorrentPhase::awaiting_registration) {
    std::set<Hash> held;
    for (const auto& [hash, fragment] : stored_) held.insert(hash);
    if (held != e.info.stored_fragments) {
      // An Ended persisted a fragment after the request was sent: report the truth.
      out.log(LogLevel::info,
              "registered with other fragments than this server holds; joining again");
      send_join(now_ms, out);
      return;
    }
    phase_ = TorrentPhase::registered;
    join_backoff_.reset();
    ++metrics_.registrations;
    out.log(LogLevel::notice, "registered with " + std::to_string(stored_.size()) + " fragments; " +
                                  std::to_string(view_.clients().size()) +
                                  " clients in the service");
  }
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
  } else if (named && !stored_.count(e.hash) && !temporaries_.count(e.hash) &&
             phase_ == TorrentPhase::registered) {
    out.log(LogLevel::warning, "Ended names this server for " + e.hash.to_hex() +
                                   " which it does not hold; joining again to correct the view");
    send_join(now_ms, out);
  }
}

bool TorrentServer::has_room_for(std::int64_t size_bytes) const {
  if (!config_.capacity_bytes) return true;
  // Only asked while registered, when the view's cached sum covers exactly what is stored.
  std::int64_t used = size_bytes + view_.used_bytes(config_.client_id);
  for (const auto& [hash, temporary] : temporaries_) used += temporary.size_bytes;
  for (const auto& [hash, t] : requested_) used += t.size_bytes;
  return used <= *config_.capacity_bytes;
}

void TorrentServer::on_started(std::int64_t now_ms, const FragmentDistributionStarted& e,
                               Output& out) {
  if (phase_ != TorrentPhase::registered) return;  // no fragments for joining clients
  if (stored_.count(e.hash) || temporaries_.count(e.hash) || requested_.count(e.hash)) return;
  if (!fragment_size_bytes_ || e.size_bytes > *fragment_size_bytes_) return;
  const auto targets = distribution_targets(view_, e.hash, e.size_bytes, replicas_);
  if (std::find(targets.begin(), targets.end(), config_.client_id) == targets.end()) return;
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
  ++metrics_.fragments_requested;
  out.publish(FragmentDistributionRequested{random_.next_uuid(), e.hash});
}

void TorrentServer::on_delivered(std::int64_t now_ms, FragmentDistributionDelivered& e,
                                 Output& out) {
  if (!e.receivers.count(config_.client_id)) {
    ++metrics_.deliveries_unexpected;
    return;
  }
  if (phase_ != TorrentPhase::registered) return;
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
