#include "edge_daemon.hpp"

#include <malloc.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <utility>

#include "mqds/assert.hpp"
#include "mqds/fetch.hpp"
#include "mqds/os.hpp"
#include "mqds/overloaded.hpp"

namespace mqds::edge {

using os::monotonic_ms;

namespace {

constexpr std::int64_t reconnect_min_ms = 1'000;
constexpr std::int64_t reconnect_max_ms = 30'000;
constexpr int step_max_ms = 100;

// LMDB reserves address space, not memory or disk: room for the capacity, LMDB's page overhead and
// a fragment being rewritten, or a large fixed space when there is no limit. 32-bit boards have
// little address space to give.
std::size_t map_size_for(const std::optional<std::int64_t>& capacity_bytes) {
  constexpr std::uint64_t mib = 1024 * 1024;
  const std::uint64_t unlimited = sizeof(void*) >= 8 ? (std::uint64_t{1} << 40) : 1024 * mib;
  if (!capacity_bytes) return static_cast<std::size_t>(unlimited);
  const auto capacity = static_cast<std::uint64_t>(*capacity_bytes);
  return static_cast<std::size_t>(std::min(unlimited, capacity + capacity / 4 + 256 * mib));
}

using runtime::human_bytes;

fetch::ServerConfig fetch_config(const ClientId& client_id) {
  fetch::ServerConfig config;
  config.request_topic = fetch::request_topic(client_id);
  return config;
}

std::size_t bytes_of(const StorageEffect& effect) {
  if (const auto* put = std::get_if<store::PutTemporaryFragment>(&effect)) return put->data.size();
  return 64;
}

// As --scrub-interval takes it: 7d, 12h, 30m, 90s.
std::string duration_text(std::int64_t ms) {
  for (const auto& [unit_ms, unit] :
       {std::pair<std::int64_t, const char*>{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}})
    if (ms % unit_ms == 0) return std::to_string(ms / unit_ms) + unit;
  return std::to_string(ms / 1'000) + "s";
}

}  // namespace

EdgeDaemon::EdgeDaemon(EdgeOptions options, const runtime::Log& log)
    : options_(std::move(options)),
      log_(log),
      store_(options_.data_dir, map_size_for(options_.capacity_bytes)),
      random_(os::random_seed()),
      fetch_(fetch_config(options_.connection.client_id)),
      reconnect_backoff_(reconnect_min_ms, reconnect_max_ms) {}

void EdgeDaemon::verify_store() {
  IntegrityReport report;
  TorrentSnapshot snapshot =
      store_.verify_and_load(report, [&](const std::string& name, const std::string& why) {
        log_(LogLevel::warning, "integrity: dropped fragment " + name + ": " + why);
      });
  const double rate =
      report.seconds > 0 ? static_cast<double>(report.bytes_checked) / 1e6 / report.seconds : 0;
  char line[256];
  std::snprintf(line, sizeof line,
                "integrity: %zu fragments and %zu temporary intact, %s verified in %.2f s (%.0f "
                "MB/s); dropped %zu "
                "corrupt, %zu unknown",
                report.fragments_intact, report.temporary_intact,
                human_bytes(report.bytes_checked).c_str(), report.seconds, rate,
                report.dropped_corrupt, report.dropped_unknown);
  log_(report.dropped_corrupt + report.dropped_unknown ? LogLevel::warning : LogLevel::info, line);

  TorrentConfig config;
  config.client_id = options_.connection.client_id;
  config.endpoints = {fetch::endpoint_of(config.client_id)};
  config.endpoints.insert(options_.endpoints.begin(), options_.endpoints.end());
  config.capacity_bytes = options_.capacity_bytes;
  machine_ = std::make_unique<TorrentServer>(config, std::move(snapshot), random_);
  scrub_.emplace(options_.scrub, monotonic_ms());
  if (scrub_->enabled()) {
    std::snprintf(line, sizeof line,
                  "scrub: every stored fragment verified again once every %s, at most %.3f MB/s",
                  duration_text(options_.scrub.interval_ms).c_str(),
                  static_cast<double>(options_.scrub.rate_bytes_per_s) / 1e6);
    log_(LogLevel::info, line);
  } else {
    log_(LogLevel::info, "scrub: off (--scrub-interval 0)");
  }
}

int EdgeDaemon::run(const volatile std::sig_atomic_t& stop) {
  verify_store();
  runtime::MqttSession::Handlers handlers;
  handlers.connected = [this] { on_connected(); };
  handlers.refused = [this](const std::string& why) { on_refused(why); };
  handlers.lost = [this](const std::string& why) { on_lost(why); };
  handlers.message = [this](runtime::Received&& m) { on_message(std::move(m)); };
  handlers.published = [this](int mid, int rc) { on_published(mid, rc); };
  handlers.subscribed = [this](int mid, const std::vector<int>& granted) {
    on_subscribed(mid, granted);
  };
  session_ = std::make_unique<runtime::MqttSession>(options_.connection, receive_maximum,
                                                    std::move(handlers));
  log_(LogLevel::info,
       "client " + options_.connection.client_id + ", broker " + options_.connection.describe() +
           ", data in " + options_.data_dir +
           (options_.capacity_bytes ? ", capacity " + human_bytes(*options_.capacity_bytes)
                                    : ", no capacity limit"));

  while (!stop && !fatal_) {
    const std::int64_t now = monotonic_ms();
    if (link_ == Link::down && now >= reconnect_at_ms_) connect(now);
    std::int64_t wait = step_max_ms;
    if (auto deadline = machine_->next_deadline_ms())
      wait = std::clamp<std::int64_t>(*deadline - now, 0, wait);
    if (auto due = scrub_->next_step_ms()) wait = std::clamp<std::int64_t>(*due - now, 0, wait);
    if (link_ == Link::down) {
      wait = std::clamp<std::int64_t>(std::min(wait, reconnect_at_ms_ - now), 0, step_max_ms);
      ::poll(nullptr, 0, static_cast<int>(wait));  // a signal ends it early
    } else {
      session_->step(static_cast<int>(wait));
    }
    const std::int64_t after = monotonic_ms();
    if (auto deadline = machine_->next_deadline_ms(); deadline && *deadline <= after)
      take(machine_->on_tick(after));
    flush();
    serve_fetches();
    scrub_step();
  }
  if (fatal_) {
    log_(LogLevel::error, *fatal_);
    if (link_ != Link::down) session_->disconnect(1'000);
    return exit_status_;
  }
  say_goodbye(stop);
  return exit_status::stopped;
}

void EdgeDaemon::connect(std::int64_t now_ms) {
  std::string why;
  if (!session_->connect(why)) {
    log_(LogLevel::warning,
         "cannot reach the broker at " + options_.connection.describe() + ": " + why);
    schedule_reconnect(now_ms);
    return;
  }
  link_ = Link::connecting;
}

void EdgeDaemon::schedule_reconnect(std::int64_t now_ms) {
  link_ = Link::down;
  reconnect_at_ms_ = now_ms + reconnect_backoff_.next_delay_ms(random_);
  log_(LogLevel::info, "connecting again in " + std::to_string(reconnect_at_ms_ - now_ms) + " ms");
}

void EdgeDaemon::on_connected() {
  std::vector<std::string> topics;
  for (auto topic : torrent_subscriptions()) topics.emplace_back(topic);
  topics.push_back(fetch_.config().request_topic);
  subscribe_mid_ = session_->subscribe(topics, 2);
  if (subscribe_mid_ < 0) {
    log_(LogLevel::warning, "cannot subscribe: " + runtime::describe_error(-subscribe_mid_));
    return;
  }
  link_ = Link::subscribing;
}

void EdgeDaemon::on_refused(const std::string& why) {
  log_(LogLevel::error, "the broker refused the connection: " + why);
  schedule_reconnect(monotonic_ms());
}

void EdgeDaemon::on_lost(const std::string& why) {
  const bool was_up = link_ == Link::up;
  log_(LogLevel::warning,
       "connection to the broker lost (" + why + "); the tracker is gone with it");
  // What was decided but not yet published is stale once the connection is gone: the join after
  // the reconnect reports the truth. What it stored is still committed.
  pending_publishes_.clear();
  fetch_.on_disconnected();
  if (was_up) take(machine_->on_disconnected(monotonic_ms()));
  if (was_up) reconnect_backoff_.reset();
  schedule_reconnect(monotonic_ms());
}

void EdgeDaemon::on_subscribed(int mid, const std::vector<int>& granted) {
  if (mid != subscribe_mid_) return;
  for (int qos : granted) {
    if (qos < 128) continue;
    fatal_ = "the broker refused a subscription (reason " + std::to_string(qos) +
             "): allow this client to subscribe to the mqds topics and to " +
             fetch_.config().request_topic;
    exit_status_ = exit_status::operator_must_act;
    return;
  }
  link_ = Link::up;
  log_(LogLevel::info, "connected to " + options_.connection.describe() + "; joining");
  take(machine_->on_connected(monotonic_ms()));
}

void EdgeDaemon::on_message(runtime::Received&& message) {
  if (message.topic == fetch_.config().request_topic) {
    take(fetch_.on_request(
        {message.topic, message.payload, message.response_topic, message.correlation_data}));
    return;
  }
  take(machine_->on_message(monotonic_ms(), message.topic, message.payload));
}

void EdgeDaemon::on_published(int mid, int reason_code) {
  // The tracker plugin delivers responses itself and refuses the original: not an error.
  if (fetch_.on_acknowledged(mid)) return;
  if (goodbye_mid_ && mid == *goodbye_mid_) goodbye_acknowledged_ = true;
  if (reason_code >= 128)
    log_(LogLevel::warning, "the broker refused an event (reason " + std::to_string(reason_code) +
                                ": " + runtime::describe_error(reason_code) + ")");
}

void EdgeDaemon::take(Output out) {
  for (auto& line : out.logs) log_(line.level, line.text);
  if (out.fatal && !fatal_) {
    fatal_ = *out.fatal;
    exit_status_ = exit_status::operator_must_act;
  }
  for (auto& effect : out.storage) {
    pending_bytes_ += bytes_of(effect);
    pending_storage_.push_back(std::move(effect));
  }
  for (auto& publish : out.publishes) pending_publishes_.push_back(std::move(publish));
  if (pending_bytes_ >= batch_bytes_max) flush();
}

void EdgeDaemon::flush() {
  if (!pending_storage_.empty()) {
    try {
      store_.apply(pending_storage_);
    } catch (const std::exception& e) {
      // Nothing of the batch is on disk, so nothing of it may be announced. The store is consistent
      // (LMDB aborted the transaction): a restart verifies it and joins from what it holds.
      fatal_ = std::string("cannot write the store in ") + options_.data_dir + ": " + e.what();
      exit_status_ = exit_status::storage;
      pending_storage_.clear();
      pending_publishes_.clear();
      pending_bytes_ = 0;
      return;
    }
    pending_storage_.clear();
    untrimmed_bytes_ += std::exchange(pending_bytes_, 0);
    last_commit_ms_ = monotonic_ms();
  } else if (untrimmed_bytes_ >= batch_bytes_max / 4 &&
             monotonic_ms() - last_commit_ms_ >= trim_after_idle_ms) {
    // LMDB's dirty pages and the fragments of large batches are freed in pieces glibc keeps; give
    // them back once a burst is over, so a board's resident memory returns to its idle size. Not
    // during the burst: memory given back is faulted in and zeroed again by the next batch, which
    // cost a tenth of the edge's time while receiving (seen with perf).
    ::malloc_trim(0);
    untrimmed_bytes_ = 0;
  }
  for (const auto& publish : pending_publishes_) {
    const int mid = session_->publish({publish.topic, publish.payload, publish.qos});
    if (mid < 0)
      log_(LogLevel::debug, "not sent (" + runtime::describe_error(-mid) + "): " + publish.topic);
  }
  pending_publishes_.clear();
}

void EdgeDaemon::serve_fetches() {
  while (fetch_.waiting() > 0 && link_ != Link::down) {
    take(fetch_.serve_next());
    flush();  // a corrupt copy found while serving is deleted, and the rejoin is sent
  }
}

void EdgeDaemon::take(fetch::ServerOutput out, std::span<const std::uint8_t> content) {
  for (const auto& line : out.logs) log_(line.level, line.text);
  if (out.lost) take(machine_->fragment_lost(monotonic_ms(), *out.lost));
  for (const auto& reply : out.replies) publish_reply(reply, content);
  if (out.lookup) look_up(*out.lookup);
}

void EdgeDaemon::look_up(const fetch::Lookup& lookup) {
  bool stored = false;
  const auto result = store_.read_fragment(lookup.hash, [&](std::span<const std::uint8_t> content) {
    stored = true;
    // Answered inside the read: the reply's bytes go from the store's memory to the broker.
    take(fetch_.on_lookup(lookup.ticket,
                          fetch::LookupOutcome::stored(static_cast<std::int64_t>(content.size()))),
         content);
  });
  if (stored) return;
  take(fetch_.on_lookup(lookup.ticket, result == EdgeStore::ReadResult::corrupt
                                           ? fetch::LookupOutcome::corrupt()
                                           : fetch::LookupOutcome::not_found()));
}

void EdgeDaemon::publish_reply(const fetch::Reply& reply, std::span<const std::uint8_t> content) {
  const auto offset = static_cast<std::size_t>(reply.header.offset_bytes);
  const auto length = static_cast<std::size_t>(reply.length_bytes);
  MQDS_ASSERT(length == 0 || offset + length <= content.size());
  runtime::UserProperties properties = reply.properties();
  // The requester echoes this token in a later request to show the broker it read this answer;
  // until then the tracker plugin counts its bytes against the requester's budget
  // (fetch::property_receipt). Drawn from the kernel: a requester that does not read must not be
  // able to guess it.
  if (length > 0) properties.emplace_back(fetch::property_receipt, receipt_token());
  runtime::Outgoing response(
      reply.topic,
      length == 0
          ? std::string_view()
          : std::string_view(reinterpret_cast<const char*>(content.data()) + offset, length),
      1);
  response.correlation_data = reply.correlation_data;
  response.user_properties = &properties;
  const int mid = session_->publish(response);
  if (mid >= 0) fetch_.on_sent(mid, reply);
}

std::string EdgeDaemon::receipt_token() {
  return kernel_random_.hex_token();
}

std::int64_t EdgeDaemon::stored_bytes() const {
  std::int64_t total = 0;
  for (const auto& [hash, fragment] : machine_->stored_fragments()) total += fragment.size_bytes;
  return total;
}

void EdgeDaemon::scrub_step() {
  const std::int64_t now = monotonic_ms();
  if (!scrub_->due(now)) return;
  // What pending effects delete or persist is committed by now (flush ran this pass), so the
  // store and the machine agree on what is held.
  if (!scrub_->in_pass()) {
    scrub_->begin_pass(now, stored_bytes());
    scrub_pass_corrupt_ = 0;
  }
  const auto found = store_.scrub_next(scrub_after_);
  if (!found) {
    scrub_->end_pass(now);
    scrub_after_.reset();
    const auto& pass = scrub_->pass();
    const double seconds = static_cast<double>(now - pass.began_ms) / 1e3;
    char line[256];
    std::snprintf(line, sizeof line,
                  "scrub: pass %" PRIu64 " verified %" PRIu64
                  " fragments (%s) in %.3f s (%.3f MB/s); %" PRIu64 " corrupt, %" PRIu64
                  " since start",
                  pass.number, pass.fragments, human_bytes(pass.bytes).c_str(), seconds,
                  seconds > 0 ? static_cast<double>(pass.bytes) / 1e6 / seconds : 0.0,
                  scrub_pass_corrupt_, scrub_corrupt_total_);
    // An empty store would log a line per interval saying nothing.
    log_(pass.fragments > 0 ? LogLevel::info : LogLevel::debug, line);
    return;
  }
  scrub_after_ = found->hash;
  scrub_->verified(now, found->size_bytes);
  if (found->intact()) return;
  ++scrub_pass_corrupt_;
  ++scrub_corrupt_total_;
  log_(LogLevel::warning, "scrub: the stored copy of " + found->hash.to_hex() +
                              " is corrupt (its content hashes to " + found->actual.to_hex() +
                              "); deleting it and reporting it lost");
  // As for a copy found corrupt while serving: the machine deletes it and rejoins, and the
  // tracker, no longer counting this copy, repairs the fragment from another holder.
  take(machine_->fragment_lost(now, found->hash));
  flush();
}

void EdgeDaemon::say_goodbye(const volatile std::sig_atomic_t&) {
  if (link_ != Link::up) {
    log_(LogLevel::info, "stopped");
    return;
  }
  flush();
  Output out = machine_->goodbye(monotonic_ms());
  for (const auto& line : out.logs) log_(line.level, line.text);
  pending_storage_ = std::move(out.storage);
  flush();  // durable before announced, even if a goodbye ever carries storage
  for (const auto& publish : out.publishes) {
    const int mid = session_->publish({publish.topic, publish.payload, publish.qos});
    if (publish.topic == topics::client_goodbye) goodbye_mid_ = mid;
  }
  const std::int64_t deadline = monotonic_ms() + goodbye_wait_ms;
  while (goodbye_mid_ && *goodbye_mid_ >= 0 && !goodbye_acknowledged_ && link_ != Link::down &&
         monotonic_ms() < deadline)
    session_->step(50);
  log_(goodbye_acknowledged_ ? LogLevel::info : LogLevel::warning,
       goodbye_acknowledged_ ? "said goodbye; stopped"
                             : "goodbye not acknowledged in time; stopped");
  session_->disconnect(1'000);
}

}  // namespace mqds::edge
