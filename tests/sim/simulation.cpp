#include "sim/simulation.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <queue>
#include <set>
#include <vector>

#include "mqds/fetch_client.hpp"
#include "mqds/fetch_server.hpp"
#include "mqds/fragmenter.hpp"
#include "mqds/ingest.hpp"
#include "mqds/placement.hpp"
#include "mqds/query.hpp"
#include "mqds/random.hpp"
#include "mqds/torrent.hpp"
#include "mqds/tracker.hpp"
#include "support/fetch_harness.hpp"
#include "support/memory_store.hpp"
#include "support/spec_server.hpp"

namespace mqds::sim {
namespace {

using testing::TorrentMemoryStore;
using testing::TrackerMemoryStore;

constexpr std::int64_t tick_ms = 100;              // the broker's main loop when idle
constexpr std::int64_t keepalive_loss_ms = 7'500;  // 1.5 x a 5 s keepalive
const ClientId uploader_id = "uploader";
const ClientId getter_id = "getter";
constexpr std::int64_t uploader_patience_ms = 2'000;  // silence after which it begins again

struct Node {
  TorrentConfig config;
  TorrentMemoryStore store;
  std::unique_ptr<SplitMix64> random;
  std::unique_ptr<TorrentServer> machine;  // null while the process is down
  std::unique_ptr<fetch::Server> fetch;    // serves gets; lives and dies with the machine
  bool connected = false;
  std::uint64_t epoch = 0;    // a new value for every connection; stale traffic is dropped
  bool session_open = false;  // the broker still believes the old connection is alive
  std::uint64_t session_epoch = 0;
  std::uint64_t unexpected_deliveries = 0;
  const TorrentServer* checked_machine = nullptr;  // the safety check's last look at its view
  std::uint64_t checked_revision = 0;
  // A spec-only board: the C# reference client (support/spec_server.hpp) instead of mqds-edge.
  // Its link is TCP with a QoS 1 subscription: while connected nothing to or from it is lost,
  // duplicated or reordered. It never reconnects: whatever ends its connection ends the client,
  // and the board comes back later as a new client id on the same disk. It serves no fetch.
  bool spec_only = false;
  std::unique_ptr<spec_only::Server> spec;  // null while down
  spec_only::Disk disk;                     // what it stores, while `spec` is down
  std::int64_t to_broker_ms = 0;            // the last arrival on each direction of its link
  std::int64_t from_broker_ms = 0;
  // Retired for good (a board that died): it never starts again and its disk is gone.
  bool retired = false;
};

class Simulation {
 public:
  explicit Simulation(const Options& options)
      : options_(options),
        rng_(options.seed * 0x9E3779B97F4A7C15ull + 1),
        storage_rng_(options.seed * 0xD1B54A32D192ED03ull + 7),
        repair_rng_(options.seed * 0x8CB92BA72F3D8DD7ull + 13),
        spec_rng_(options.seed * 0xA24BAED4963EE407ull + 11),
        late_rng_(options.seed * 0xD1B54A32D192ED03ull + 17) {}

  Result run();

 private:
  struct Action {
    std::int64_t time_ms;
    std::uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Action& o) const {
      return time_ms != o.time_ms ? time_ms > o.time_ms : seq > o.seq;
    }
  };

  void at(std::int64_t time_ms, std::function<void()> fn) {
    actions_.push({time_ms, seq_++, std::move(fn)});
  }
  bool chance(double p) { return static_cast<double>(rng_.next_u64() >> 11) * 0x1.0p-53 < p; }
  // Storage faults draw from a stream of their own, so that a seed without them draws everything
  // else as before.
  bool storage_chance(double p) {
    return p > 0 && static_cast<double>(storage_rng_.next_u64() >> 11) * 0x1.0p-53 < p;
  }
  std::int64_t between(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(hi - lo + 1)));
  }
  void violation(const std::string& what) {
    if (failure_.empty()) failure_ = "t=" + std::to_string(now_) + "ms: " + what;
  }
  void log(const std::string& who, const Output& out) {
    if (!options_.verbose) return;
    for (const auto& line : out.logs)
      std::printf("%8lld %-10s %s\n", static_cast<long long>(now_), who.c_str(), line.text.c_str());
  }

  void transmit(std::function<void()> fn);
  void transmit_in_order(std::int64_t& last_arrival_ms, std::function<void()> fn);
  void client_publish(std::size_t i, const Publish& p);
  void arrive_at_broker(std::size_t i, std::uint64_t epoch, const Publish& p);
  // What the tracker does with a client's publish, and what the broker then delivers.
  void tracker_hears(const ClientId& sender, const Publish& p);
  // Spec-only boards: their publishes, what reaches them, the end of their client, and the
  // broker noticing that end.
  void spec_publish(std::size_t i, const std::vector<spec_only::Message>& out);
  void spec_deliver(std::size_t i, const std::string& topic, const std::string& payload);
  void end_spec(std::size_t i, bool graceful, std::int64_t noticed_after_ms);
  void spec_session_lost(const ClientId& id);
  std::string new_spec_id();
  std::int64_t link_delay_ms() { return faults_ ? between(1, delay_max_ms_) : 2; }
  std::string check_spec_converged(const Node& node) const;
  void deliver(std::size_t i, const std::string& topic, const std::string& payload);
  void broadcast(const std::string& topic, const std::string& payload);
  void apply_torrent(std::size_t i, Output out);
  // `may_fail`: the commit of this output may fail when the seed says so.
  void apply_tracker(Output out, bool may_fail = true);
  void restart_tracker_from_store();
  void lose_copy();
  // Start-up integrity check of a board (what EdgeStore::verify_and_load does): corrupt copies
  // are dropped before the machine sees the store.
  void verify_store(std::size_t i);
  void check_safety();
  // A trim in a ClientJoinAccepted to `client` leaves k copies the tracker counts.
  void check_trims(const ClientId& client, const std::string& payload);

  void tick();
  void crash(std::size_t i, bool graceful);
  // Permanent faults, for repair: a board that dies for good, or one whose disk is replaced (it
  // comes back empty under the same id).
  void retire(std::size_t i);
  void wipe(std::size_t i);
  void tracker_fetch_response(fetch::IncomingResponse response);
  // Live boards that hold a good copy of the fragment (spec-only ones too).
  std::size_t surviving_copies(const Hash& hash, bool* only_spec_only = nullptr) const;
  void lose_connection(std::size_t i);
  void broker_notices_loss(std::size_t i);
  void restart(std::size_t i);
  void connect(std::size_t i);
  void broker_crash();
  void broker_start();
  void ingest();
  void put(Bytes content);
  // The uploader (mqds put) and the getter (mqds get), each one MQTT client of the broker.
  void uploader_publish(const std::string& topic, std::string payload);
  void uploader_receives(const std::string& payload);
  void pump(std::size_t upload);
  void uploader_tick();
  void flush_ingest();
  void start_get(std::size_t upload);
  void getter_publish(const fetch::OutgoingRequest& request);
  void getter_receives(std::size_t get, fetch::IncomingResponse response);
  void take_get(std::size_t get, fetch::ClientOutput out);
  void node_serves(std::size_t i, const fetch::OutgoingRequest& request);
  void end_faults();
  std::string check_uploads_and_gets() const;
  std::string check_converged() const;
  std::size_t index_of(const ClientId& id) const;
  // The board that was or is this client: spec-only boards change their id at every start.
  std::size_t owner_of(const ClientId& id) const;
  bool holds(const Node& node, const Hash& hash) const;

  Options options_;
  SplitMix64 rng_;
  SplitMix64 storage_rng_;
  SplitMix64 repair_rng_;  // permanent faults and the repair delay
  SplitMix64
      spec_rng_;  // which boards are spec-only and their ids: the other draws stay as they were
  SplitMix64 late_rng_;  // boards that join the fleet late (rebalancing)
  std::int64_t now_ = 0;
  std::uint64_t seq_ = 0;
  std::priority_queue<Action, std::vector<Action>, std::greater<>> actions_;

  // Scenario, all drawn from the seed.
  double drop_ = 0, duplicate_ = 0;
  double store_failure_ = 0;  // per commit, during the fault phase
  double torn_write_ = 0;     // per commit that writes fragment content
  bool restarting_tracker_ = false;
  std::int64_t delay_max_ms_ = 1;
  bool faults_ = true;
  TrackerConfig tracker_config_;

  std::vector<Node> nodes_;
  TrackerMemoryStore tracker_store_;
  std::unique_ptr<SplitMix64> tracker_random_;
  std::unique_ptr<Tracker> tracker_;
  std::vector<Bytes> contents_;  // ingested files, for files that share content

  std::set<std::pair<ClientId, Hash>> named_in_ended_;
  std::map<ClientId, std::size_t> spec_owner_;  // every id a spec-only board has had
  std::set<ClientId> spec_sessions_;            // spec-only clients the broker believes connected

  struct Upload {
    Bytes content;
    Hash hash;
    std::unique_ptr<ingest::Sender> sender;
    std::int64_t last_heard_ms = 0;
    std::int64_t paused_until_ms = 0;  // a pause long enough for the tracker to forget it
    bool aborted = false;
  };
  std::vector<Upload> uploads_;
  ingest::ReceiverConfig receiver_config_;
  std::unique_ptr<ingest::Receiver> receiver_;  // lives and dies with the tracker
  std::uint64_t uploader_epoch_ = 0;            // its connection: one per run of the broker
  std::int64_t uploader_to_broker_ms_ = 0;      // the last arrival on each direction of it
  std::int64_t broker_to_uploader_ms_ = 0;

  struct Get {
    std::size_t upload = 0;
    std::unique_ptr<SplitMix64> random;
    std::unique_ptr<fetch::Client> client;
    Bytes assembled;
    bool final = false;  // one of the gets after convergence, which must all succeed
  };
  std::vector<Get> gets_;
  int fetch_message_id_ = 0;
  // Copies the simulation corrupted (torn writes, bit rot found when read back): a board may
  // lose them before the tracker can know, so the safety check does not hold it to them.
  std::set<std::pair<ClientId, Hash>> corrupted_;
  std::map<Hash, std::size_t> losses_;  // copies lost per fragment (corrupt, torn, retired, wiped)
  std::uint64_t retired_ = 0, wiped_ = 0;
  std::set<std::size_t> dirty_nodes_;  // participants an action changed, checked after it
  bool tracker_dirty_ = false;
  const Tracker* checked_tracker_ = nullptr;
  std::uint64_t checked_revision_ = 0;
  std::string failure_;
  Result result_;
};

void Simulation::transmit(std::function<void()> fn) {
  if (!faults_) {
    ++result_.messages_delivered;
    at(now_ + 2, std::move(fn));  // one fixed delay: every link is FIFO again
    return;
  }
  if (chance(drop_)) {
    ++result_.messages_dropped;
    return;
  }
  const int copies = chance(duplicate_) ? 2 : 1;
  if (copies == 2) ++result_.messages_duplicated;
  for (int c = 0; c < copies; ++c) {
    ++result_.messages_delivered;
    at(now_ + between(1, delay_max_ms_), fn);
  }
}

std::size_t Simulation::index_of(const ClientId& id) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].config.client_id == id) return i;
  return nodes_.size();
}

void Simulation::client_publish(std::size_t i, const Publish& p) {
  const std::uint64_t epoch = nodes_[i].epoch;
  transmit([this, i, epoch, p] { arrive_at_broker(i, epoch, p); });
}

std::size_t Simulation::owner_of(const ClientId& id) const {
  const auto spec = spec_owner_.find(id);
  return spec != spec_owner_.end() ? spec->second : index_of(id);
}

bool Simulation::holds(const Node& node, const Hash& hash) const {
  if (node.spec_only) {
    const auto& disk = node.spec ? node.spec->disk() : node.disk;
    return disk.fragments.count(hash.to_hex()) != 0;
  }
  return node.store.persisted.count(hash) || node.store.temporary.count(hash);
}

void Simulation::arrive_at_broker(std::size_t i, std::uint64_t epoch, const Publish& p) {
  Node& node = nodes_[i];
  // A TCP connection that is gone delivers nothing more, but for the ClientGoodbye a board sent
  // before its DISCONNECT: the broker takes it while it still holds that session.
  const bool live = node.connected && node.epoch == epoch;
  const bool last_words =
      p.topic == topics::client_goodbye && node.session_open && node.session_epoch == epoch;
  if (!tracker_ || !(live || last_words)) return;
  tracker_hears(node.config.client_id, p);
}

void Simulation::tracker_hears(const ClientId& sender, const Publish& p) {
  MessageResult r = tracker_->on_message(now_, sender, p.topic, p.payload);
  const Verdict verdict = r.verdict;
  std::string payload = verdict == Verdict::rewrite ? std::move(r.rewritten_payload) : p.payload;
  apply_tracker(std::move(r.output));
  if (verdict != Verdict::drop) broadcast(p.topic, payload);
}

std::string Simulation::new_spec_id() {
  static constexpr char digits[] = "0123456789abcdef";
  std::string id;
  for (int word = 0; word < 2; ++word) {
    const std::uint64_t bits = spec_rng_.next_u64();
    for (int nibble = 15; nibble >= 0; --nibble) id += digits[(bits >> (nibble * 4)) & 0xF];
  }
  return id;
}

void Simulation::spec_publish(std::size_t i, const std::vector<spec_only::Message>& out) {
  Node& node = nodes_[i];
  dirty_nodes_.insert(i);
  for (const auto& m : out) {
    if (options_.verbose)
      std::printf("%8lld %-10s spec-only %s %s\n", static_cast<long long>(now_),
                  node.config.client_id.substr(0, 10).c_str(), m.topic.c_str(),
                  m.payload.substr(0, 160).c_str());
    // In order and never lost while connected; the broker takes its ClientGoodbye before the
    // DISCONNECT that follows it.
    const std::uint64_t epoch = node.epoch;
    const ClientId id = node.config.client_id;
    Publish p{m.topic, m.payload, std::nullopt, std::nullopt, 2};
    ++result_.messages_delivered;
    node.to_broker_ms = std::max(node.to_broker_ms, now_ + link_delay_ms());
    at(node.to_broker_ms, [this, i, epoch, id, p = std::move(p)] {
      const Node& n = nodes_[i];
      const bool live = n.connected && n.epoch == epoch;
      const bool goodbye = p.topic == topics::client_goodbye && spec_sessions_.count(id);
      if (tracker_ && (live || goodbye)) tracker_hears(id, p);
    });
  }
}

void Simulation::spec_deliver(std::size_t i, const std::string& topic, const std::string& payload) {
  Node& node = nodes_[i];
  if (!node.spec || !node.connected) return;
  const std::uint64_t epoch = node.epoch;
  ++result_.messages_delivered;
  node.from_broker_ms = std::max(node.from_broker_ms, now_ + link_delay_ms());
  at(node.from_broker_ms, [this, i, epoch, topic, payload] {
    Node& n = nodes_[i];
    if (!n.spec || !n.connected || n.epoch != epoch) return;
    const spec_only::Counters before = n.spec->counters();
    auto out = n.spec->on_message(now_, topic, payload);
    if (options_.verbose) {
      const auto& after = n.spec->counters();
      const char* what =
          after.dropped_unregistered != before.dropped_unregistered ? "dropped (not registered)"
          : after.dropped_malformed != before.dropped_malformed     ? "dropped (malformed)"
          : after.ignored_busy != before.ignored_busy               ? "ignored (busy)"
                                                                    : nullptr;
      if (what)
        std::printf("%8lld %-10s spec-only %s %s %s\n", static_cast<long long>(now_),
                    n.config.client_id.substr(0, 10).c_str(), what, topic.c_str(),
                    payload.substr(0, 120).c_str());
    }
    spec_publish(i, out);
  });
}

void Simulation::end_spec(std::size_t i, bool graceful, std::int64_t noticed_after_ms) {
  Node& node = nodes_[i];
  if (!node.spec) return;
  if (graceful && node.connected) spec_publish(i, node.spec->goodbye());
  if (options_.verbose)
    std::printf("%8lld %-10s spec-only client ends (%s, %s)\n", static_cast<long long>(now_),
                node.config.client_id.substr(0, 10).c_str(),
                std::string(spec_only::phase_name(node.spec->phase())).c_str(),
                graceful ? "goodbye" : "lost");
  // Everything it did was stored as it went (the disk is kept whole: a simple, honest model).
  node.disk = node.spec->disk();
  node.spec.reset();
  dirty_nodes_.insert(i);
  if (!node.connected) return;
  node.connected = false;
  ++node.epoch;
  const ClientId id = node.config.client_id;
  at(std::max(node.to_broker_ms, now_) + noticed_after_ms, [this, id] { spec_session_lost(id); });
}

void Simulation::spec_session_lost(const ClientId& id) {
  if (!spec_sessions_.erase(id) || !tracker_) return;
  apply_tracker(tracker_->on_disconnect(now_, id));
}

void Simulation::transmit_in_order(std::int64_t& last_arrival_ms, std::function<void()> fn) {
  // MQTT delivers one connection's messages in order; the ingest protocol relies on it (a begin
  // before its chunks and its abort). Messages may still be lost or duplicated.
  if (faults_ && chance(drop_)) {
    ++result_.messages_dropped;
    return;
  }
  const int copies = faults_ && chance(duplicate_) ? 2 : 1;
  if (copies == 2) ++result_.messages_duplicated;
  for (int c = 0; c < copies; ++c) {
    ++result_.messages_delivered;
    last_arrival_ms =
        std::max(last_arrival_ms, now_ + (faults_ ? between(1, delay_max_ms_) : std::int64_t{2}));
    at(last_arrival_ms, fn);
  }
}

void Simulation::uploader_publish(const std::string& topic, std::string payload) {
  const std::uint64_t epoch = uploader_epoch_;
  transmit_in_order(uploader_to_broker_ms_, [this, epoch, topic, payload = std::move(payload)] {
    if (!tracker_ || epoch != uploader_epoch_) return;  // that connection is gone
    MessageResult r = receiver_->on_message(now_, uploader_id, ingest::Permission::granted, topic,
                                            payload, tracker_->view().files());
    if (r.verdict == Verdict::drop) violation("the tracker refused the uploader on " + topic);
    apply_tracker(std::move(r.output));
  });
}

void Simulation::uploader_receives(const std::string& payload) {
  const auto status = ingest::decode_status(payload);
  if (!status) {
    violation("an undecodable ingest status: " + status.error().to_string());
    return;
  }
  for (std::size_t u = 0; u < uploads_.size(); ++u) {
    Upload& upload = uploads_[u];
    if (!upload.sender->concerns(*status)) continue;
    upload.sender->on_status(*status);
    upload.last_heard_ms = now_;
    pump(u);
  }
}

void Simulation::pump(std::size_t u) {
  Upload& upload = uploads_[u];
  if (upload.aborted || now_ < upload.paused_until_ms || upload.sender->done()) return;
  while (auto chunk = upload.sender->next_chunk()) {
    const auto* first = upload.content.data() + chunk->offset_bytes;
    uploader_publish(upload.sender->chunk_topic(*chunk),
                     std::string(reinterpret_cast<const char*>(first),
                                 static_cast<std::size_t>(chunk->size_bytes)));
  }
}

void Simulation::uploader_tick() {
  for (std::size_t u = 0; u < uploads_.size(); ++u) {
    Upload& upload = uploads_[u];
    if (upload.sender->phase() == ingest::SenderPhase::failed && !upload.aborted) {
      // mqds put failed (a chunk reached a restarted tracker that forgot the upload, say): the
      // person runs it again, which resumes the same upload from what the tracker made durable.
      upload.sender =
          std::make_unique<ingest::Sender>(upload.sender->begin().upload_id, upload.hash,
                                           static_cast<std::int64_t>(upload.content.size()));
      ++result_.uploads_resumed;
      upload.last_heard_ms = now_ - uploader_patience_ms;
    }
    if (upload.sender->done() || now_ < upload.paused_until_ms) continue;
    if (now_ - upload.last_heard_ms < uploader_patience_ms) continue;
    // Nothing heard for a while (lost messages, a restarted broker, a pause): begin again, and
    // the tracker answers with the Offset to go on from; abort again until the tracker says the
    // upload failed.
    upload.last_heard_ms = now_;
    if (upload.aborted)
      uploader_publish(std::string(ingest::topics::abort),
                       ingest::encode(ingest::Abort{upload.sender->begin().upload_id}));
    else
      uploader_publish(std::string(ingest::topics::begin), ingest::encode(upload.sender->begin()));
  }
}

void Simulation::flush_ingest() {
  if (!tracker_ || !receiver_) return;
  const auto still_needed = [this](const Hash& hash) { return tracker_->is_staged(hash); };
  ingest::Flushed flushed = receiver_->flush(now_, true, still_needed);
  // What the plugin does in one commit: the parts staged, each verified file to the tracker, and
  // its "published" behind the tracker's FileInfoPublished.
  Output all = std::move(flushed.output);
  auto append = [&all](Output out) {
    for (auto& e : out.storage) all.storage.push_back(std::move(e));
    for (auto& p : out.publishes) all.publishes.push_back(std::move(p));
    for (auto& l : out.logs) all.logs.push_back(std::move(l));
    for (auto& r : out.fetch_requests) all.fetch_requests.push_back(std::move(r));
  };
  for (const auto& upload : flushed.verified) {
    IngestResult added =
        tracker_->add_file(now_, upload.digest.hash, upload.digest.metadata, upload.staged_sizes);
    if (!added.ok()) violation("add_file refused an upload: " + added.error);
    append(std::move(added.output));
    append(receiver_->finish(upload, added.error, still_needed));
  }
  if (!all.empty()) apply_tracker(std::move(all));
}

void Simulation::start_get(std::size_t u) {
  if (!tracker_) return;
  const Hash hash = uploads_[u].hash;
  const auto file = query::answer(tracker_->view(), tracker_config_.replicas,
                                  query::Request{query::Kind::file, hash, 0, query::page_max});
  if (file.error) return;  // not published yet
  const auto clients = query::answer(tracker_->view(), tracker_config_.replicas,
                                     query::Request{query::Kind::clients, {}, 0, query::page_max});
  auto plan = fetch::plan_fetch(*file.file, file.fragments, clients.clients);
  if (!plan) {
    // Before every fragment has reached a holder the tracker knows no size for some of them:
    // mqds get refuses such a file, and so does the simulation's getter, unless everything has
    // settled, when it must not happen.
    if (!faults_) violation("a get cannot be planned: " + plan.error().to_string());
    return;
  }
  Get get;
  get.upload = u;
  get.random = std::make_unique<SplitMix64>(rng_.next_u64());
  fetch::ClientConfig config;
  config.response_topic = fetch::response_topic(getter_id, "get");
  config.parallel = 4;
  config.request_timeout_ms = 3'000;
  get.client = std::make_unique<fetch::Client>(config, std::move(plan).value(), *get.random);
  get.assembled.resize(uploads_[u].content.size());
  get.final = faults_ == false;
  gets_.push_back(std::move(get));
  ++result_.gets;
  take_get(gets_.size() - 1, gets_.back().client->start(now_));
}

void Simulation::take_get(std::size_t g, fetch::ClientOutput out) {
  Get& get = gets_[g];
  for (const auto& done : out.completed) {
    if (done.offset_bytes < 0 ||
        static_cast<std::size_t>(done.offset_bytes) + done.data.size() > get.assembled.size()) {
      violation("a get completed a fragment outside its file");
      continue;
    }
    std::copy(done.data.begin(), done.data.end(),
              get.assembled.begin() + static_cast<std::ptrdiff_t>(done.offset_bytes));
  }
  for (const auto& request : out.requests) getter_publish(request);
  if (get.client->complete()) {
    if (get.assembled != uploads_[get.upload].content)
      violation("a get assembled other bytes than were put");
  }
}

void Simulation::getter_publish(const fetch::OutgoingRequest& request) {
  // Through the broker to the edge subscribed to the request topic (the plugin's FetchGate lets
  // the getter's requests pass: its Response Topic is its own).
  transmit([this, request] {
    if (!tracker_) return;
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (fetch::request_topic(nodes_[i].config.client_id) == request.topic)
        node_serves(i, request);
  });
}

void Simulation::node_serves(std::size_t i, const fetch::OutgoingRequest& request) {
  Node& node = nodes_[i];
  if (!node.machine || !node.connected) return;
  fetch::ServerOutput out = node.fetch->on_request(testing::as_received(request));
  // mqds-edge serves its queue after each committed batch; here at once, as every step commits.
  for (;;) {
    std::vector<std::pair<fetch::Reply, const Bytes*>> replies;
    for (auto& reply : out.replies) replies.emplace_back(std::move(reply), nullptr);
    if (out.lookup) {
      const Hash hash = out.lookup->hash;
      fetch::ServerOutput answered =
          node.fetch->on_lookup(out.lookup->ticket, testing::look_up(node.store.persisted, hash));
      if (answered.lost) {
        apply_torrent(i, node.machine->fragment_lost(now_, *answered.lost));
        if (!node.machine) return;  // its commit failed: it is down
      }
      const auto it = node.store.persisted.find(hash);
      for (auto& reply : answered.replies)
        replies.emplace_back(std::move(reply),
                             it == node.store.persisted.end() ? nullptr : &it->second);
    }
    for (auto& [reply, content] : replies) {
      fetch::IncomingResponse response = testing::delivered(reply, content);
      // The broker acknowledges the reply (PUBACK) as it takes it.
      node.fetch->on_sent(++fetch_message_id_, reply);
      node.fetch->on_acknowledged(fetch_message_id_);
      transmit([this, response = std::move(response)]() mutable {
        if (response.topic == Tracker::repair_response_topic()) {
          tracker_fetch_response(std::move(response));
          return;
        }
        for (std::size_t g = 0; g < gets_.size(); ++g)
          if (!gets_[g].client->finished()) getter_receives(g, response);
      });
    }
    if (node.fetch->waiting() == 0) break;
    out = node.fetch->serve_next();
  }
}

void Simulation::tracker_fetch_response(fetch::IncomingResponse response) {
  // The plugin takes the answers on the tracker's repair topic for the tracker; nobody else sees
  // them.
  if (tracker_) apply_tracker(tracker_->on_fetch_response(now_, std::move(response)));
}

void Simulation::getter_receives(std::size_t g, fetch::IncomingResponse response) {
  take_get(g, gets_[g].client->on_response(now_, std::move(response)));
}

void Simulation::deliver(std::size_t i, const std::string& topic, const std::string& payload) {
  if (i >= nodes_.size() || !nodes_[i].connected) return;
  if (nodes_[i].spec_only) {
    spec_deliver(i, topic, payload);
    return;
  }
  const std::uint64_t epoch = nodes_[i].epoch;
  transmit([this, i, epoch, topic, payload] {
    Node& node = nodes_[i];
    if (!node.machine || !node.connected || node.epoch != epoch) return;
    apply_torrent(i, node.machine->on_message(now_, topic, payload));
  });
}

void Simulation::broadcast(const std::string& topic, const std::string& payload) {
  const auto subscriptions = torrent_subscriptions();
  const bool mqds_edges =
      std::find(subscriptions.begin(), subscriptions.end(), topic) != subscriptions.end();
  const auto& spec_topics = spec_only::Server::topics();
  const bool spec_only =
      std::find(spec_topics.begin(), spec_topics.end(), topic) != spec_topics.end();
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].spec_only ? spec_only : mqds_edges) deliver(i, topic, payload);
}

void Simulation::apply_torrent(std::size_t i, Output out) {
  Node& node = nodes_[i];
  dirty_nodes_.insert(i);
  log(node.config.client_id, out);
  if (out.fatal) violation(node.config.client_id + " stopped: " + *out.fatal);
  if (faults_ && !out.storage.empty() && storage_chance(store_failure_)) {
    // The commit fails: nothing of the step is stored or sent, and mqds-edge stops (exit status
    // 3); its supervisor starts it again, which verifies the store.
    ++result_.store_failures;
    if (options_.verbose)
      std::printf("%8lld %-10s store: commit failed; stopping\n", static_cast<long long>(now_),
                  node.config.client_id.c_str());
    crash(i, false);
    return;
  }
  try {
    node.store.apply(out.storage);
  } catch (const std::exception& e) {
    violation(node.config.client_id + " store: " + e.what());
  }
  if (faults_ && storage_chance(torn_write_)) {
    for (const auto& effect : out.storage) {
      const auto* put = std::get_if<store::PutTemporaryFragment>(&effect);
      if (!put) continue;
      // A disk that acknowledged a write it tore: the content is wrong, LMDB cannot tell, and the
      // power goes before anything of the step is sent.
      auto it = node.store.temporary.find(put->hash);
      if (it == node.store.temporary.end() || it->second.empty()) break;
      it->second[0] ^= 0x01;
      corrupted_.emplace(node.config.client_id, put->hash);
      ++result_.torn_writes;
      crash(i, false);
      return;
    }
  }
  for (const auto& p : out.publishes) client_publish(i, p);
}

void Simulation::verify_store(std::size_t i) {
  Node& node = nodes_[i];
  for (auto* fragments : {&node.store.persisted, &node.store.temporary}) {
    for (auto it = fragments->begin(); it != fragments->end();) {
      if (sha256(it->second) == it->first) {
        ++it;
        continue;
      }
      ++result_.copies_lost;
      ++losses_[it->first];
      it = fragments->erase(it);
    }
  }
}

void Simulation::lose_copy() {
  // A board reads a copy back (to serve a fetch, say) and finds it corrupt: the daemon tells its
  // machine, which deletes it and rejoins to report it.
  std::vector<std::size_t> candidates;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].machine && !nodes_[i].store.persisted.empty()) candidates.push_back(i);
  if (candidates.empty()) return;
  const std::size_t i = candidates[storage_rng_.below(candidates.size())];
  Node& node = nodes_[i];
  auto it = node.store.persisted.begin();
  std::advance(it, static_cast<std::ptrdiff_t>(storage_rng_.below(node.store.persisted.size())));
  const Hash hash = it->first;
  it->second[0] ^= 0x01;
  corrupted_.emplace(node.config.client_id, hash);
  ++result_.copies_lost;
  ++losses_[hash];
  apply_torrent(i, node.machine->fragment_lost(now_, hash));
}

void Simulation::check_safety() {
  ++result_.safety_checks;
  auto held = [this](const Node& node, const Hash& hash) { return holds(node, hash); };
  // A copy the tracker told its holder to delete is listed by its view until the holder's
  // registration, and counted nowhere.
  auto trimming = [this](const ClientId& id, const Hash& hash) {
    const auto& all = tracker_->trimming();
    const auto it = all.find(id);
    return it != all.end() && it->second.count(hash) != 0;
  };
  // A view changes only with its Revision (the tracker bumps it for every change, a torrent server
  // takes the one of every event it applies): the whole-view checks run when it moved.
  const bool tracker_view_changed =
      tracker_dirty_ && tracker_ &&
      (tracker_.get() != checked_tracker_ || tracker_->view().revision() != checked_revision_);
  if (tracker_view_changed) {
    checked_tracker_ = tracker_.get();
    checked_revision_ = tracker_->view().revision();
    if (auto broken = tracker_->view().check_invariants()) violation("tracker's view: " + *broken);
    for (const auto& [id, meta] : tracker_->view().clients()) {
      const std::size_t i = owner_of(id);
      if (i == nodes_.size()) {
        violation("the tracker registered an unknown client " + id);
        continue;
      }
      for (const auto& hash : meta.stored_fragments)
        if (!held(nodes_[i], hash) && !corrupted_.count({id, hash}) && !trimming(id, hash))
          violation("the tracker counts a copy of " + hash.to_hex() + " on " + id +
                    ", which does not hold it");
    }
  }
  for (const std::size_t i : dirty_nodes_) {
    Node& node = nodes_[i];
    if (node.machine && (node.machine.get() != node.checked_machine ||
                         node.machine->view().revision() != node.checked_revision)) {
      node.checked_machine = node.machine.get();
      node.checked_revision = node.machine->view().revision();
      if (auto broken = node.machine->view().check_invariants())
        violation(node.config.client_id + "'s view: " + *broken);
    }
    if (tracker_view_changed || !tracker_) continue;  // checked above for every registered client
    const auto registered = tracker_->view().clients().find(node.config.client_id);
    if (registered == tracker_->view().clients().end()) continue;
    for (const auto& hash : registered->second.stored_fragments)
      if (!held(node, hash) && !corrupted_.count({node.config.client_id, hash}) &&
          !trimming(node.config.client_id, hash))
        violation("the tracker counts a copy of " + hash.to_hex() + " on " + node.config.client_id +
                  ", which does not hold it");
  }
  dirty_nodes_.clear();
  tracker_dirty_ = false;
}

void Simulation::check_trims(const ClientId& client, const std::string& payload) {
  const auto decoded = decode(topics::client_join_accepted, payload);
  if (!decoded.ok()) {
    violation("tracker published an undecodable ClientJoinAccepted: " +
              decoded.error().to_string());
    return;
  }
  const auto& accepted = std::get<ClientJoinAccepted>(decoded.value());
  // A surplus copy the client deletes is listed in both RemoveFragmentInfos and AddFragmentInfos,
  // and the tracker counts it nowhere from then on (trimming()); an unconfirmed copy it deletes
  // may be listed in both too, but is no trim. The copies that stay must be k the tracker counts:
  // registered holders, none of them deleting theirs. (Checked against the tracker's own count: a
  // copy a board lost without saying so is the repair's business, not a trim's.)
  const auto trimmed = tracker_->trimming().find(client);
  for (const auto& hash : accepted.remove_fragment_infos) {
    if (!accepted.add_fragment_infos.count(hash) || trimmed == tracker_->trimming().end() ||
        !trimmed->second.count(hash))
      continue;
    std::size_t staying = 0;
    for (const auto& holder : tracker_->view().holders(hash)) {
      const auto trims = tracker_->trimming().find(holder);
      if (holder != client && (trims == tracker_->trimming().end() || !trims->second.count(hash)))
        ++staying;
    }
    if (staying < tracker_config_.replicas)
      violation(client + " was told to delete its copy of " + hash.to_hex() + " with " +
                std::to_string(staying) + " copies that count staying, fewer than k");
  }
}

void Simulation::restart_tracker_from_store() {
  // What the plugin does when a commit fails: nothing of the batch was stored, so nothing of it
  // is sent; the tracker is rebuilt from what is durable and says TrackerHello, and every client
  // (still connected to the broker) rejoins against it.
  restarting_tracker_ = true;
  tracker_ =
      std::make_unique<Tracker>(tracker_config_, tracker_store_.snapshot(), *tracker_random_);
  receiver_ = std::make_unique<ingest::Receiver>(
      receiver_config_, tracker_config_.fragment_size_bytes, tracker_store_);
  apply_tracker(tracker_->start(now_), false);
  restarting_tracker_ = false;
}

void Simulation::apply_tracker(Output out, bool may_fail) {
  tracker_dirty_ = true;
  log("tracker", out);
  if (may_fail && faults_ && !restarting_tracker_ && !out.storage.empty() &&
      storage_chance(store_failure_)) {
    ++result_.store_failures;
    if (options_.verbose)
      std::printf("%8lld %-10s store: commit failed; restarting from the store\n",
                  static_cast<long long>(now_), "tracker");
    restart_tracker_from_store();
    return;
  }
  if (receiver_) receiver_->keep_parts_in_progress(out.storage);
  try {
    tracker_store_.apply(out.storage);
  } catch (const std::exception& e) {
    violation(std::string("tracker store: ") + e.what());
  }
  for (const auto& p : out.publishes) {
    if (p.staged) {
      if (!p.to || !p.staged->receivers.count(*p.to))
        violation("Delivered sent to a client that is not a receiver");
      if (p.staged->content) {
        // A repair's content, fetched from a holder: the tracker verified it, and so does the
        // checker, so that a repair that sends other bytes is caught here, not by a board.
        const auto& content = *p.staged->content;
        if (sha256(std::string_view(content)) != p.staged->hash)
          violation("a repair delivered other bytes than " + p.staged->hash.to_hex());
      } else if (!tracker_store_.staged.count(p.staged->hash)) {
        violation("Delivered of a fragment not in staging: " + p.staged->hash.to_hex());
        continue;
      }
      deliver(index_of(*p.to), p.topic, tracker_store_.delivered_payload(*p.staged));
      continue;
    }
    if (p.topic == topics::fragment_distribution_delivered)
      violation("Delivered published without targeting");
    if (p.topic == topics::fragment_distribution_ended) {
      auto d = decode(p.topic, p.payload);
      if (!d.ok()) {
        violation("tracker published an undecodable Ended: " + d.error().to_string());
      } else {
        const auto& ended = std::get<FragmentDistributionEnded>(d.value());
        for (const auto& receiver : ended.receivers) named_in_ended_.emplace(receiver, ended.hash);
      }
    }
    if (p.topic == topics::client_join_accepted && p.to) check_trims(*p.to, p.payload);
    if (p.to && *p.to == uploader_id) {
      const std::uint64_t epoch = uploader_epoch_;
      const std::string payload = p.payload;
      transmit_in_order(broker_to_uploader_ms_, [this, epoch, payload] {
        if (epoch == uploader_epoch_) uploader_receives(payload);
      });
    } else if (p.to) {
      deliver(index_of(*p.to), p.topic, p.payload);
    } else {
      broadcast(p.topic, p.payload);
    }
  }
  // Repair fetches go to the board subscribed to the request topic, as a getter's do.
  for (const auto& request : out.fetch_requests) {
    if (request.response_topic != Tracker::repair_response_topic())
      violation("the tracker asked for an answer on " + request.response_topic);
    getter_publish(request);
  }
}

void Simulation::tick() {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    Node& node = nodes_[i];
    if (node.machine) apply_torrent(i, node.machine->on_tick(now_));
    if (node.spec && node.spec->next_deadline_ms() && *node.spec->next_deadline_ms() <= now_)
      spec_publish(i, node.spec->on_tick(now_));
  }
  if (tracker_) apply_tracker(tracker_->on_tick(now_));
  if (!options_.classic) {
    flush_ingest();
    uploader_tick();
    for (std::size_t g = 0; g < gets_.size(); ++g) {
      auto& client = *gets_[g].client;
      if (!client.finished() && client.next_deadline_ms() && *client.next_deadline_ms() <= now_)
        take_get(g, client.on_tick(now_));
    }
  }
  at(now_ + tick_ms, [this] { tick(); });
}

void Simulation::broker_notices_loss(std::size_t i) {
  Node& node = nodes_[i];
  if (!node.session_open) return;
  node.session_open = false;
  if (tracker_) apply_tracker(tracker_->on_disconnect(now_, node.config.client_id));
}

void Simulation::crash(std::size_t i, bool graceful) {
  Node& node = nodes_[i];
  if (node.spec) {
    ++result_.crashes;
    end_spec(i, graceful, graceful ? 50 : keepalive_loss_ms + between(0, 1'000));
    at(now_ + between(500, 15'000), [this, i] { restart(i); });
    return;
  }
  if (!node.machine) return;
  ++result_.crashes;
  if (graceful && node.connected) {
    Output out = node.machine->goodbye(now_);
    apply_torrent(i, std::move(out));
    if (!node.machine) return;  // its last commit failed: it is down already
  }
  node.unexpected_deliveries += node.machine->metrics().deliveries_unexpected;
  node.machine.reset();
  node.fetch.reset();
  if (node.connected) {
    node.connected = false;
    ++node.epoch;
    const std::uint64_t session = node.session_epoch;
    // A clean DISCONNECT is seen after the goodbye sent before it; a dead board only when its
    // keepalive runs out.
    at(now_ + (graceful ? delay_max_ms_ + 50 : keepalive_loss_ms + between(0, 1'000)),
       [this, i, session] {
         if (nodes_[i].session_epoch == session) broker_notices_loss(i);
       });
  }
  at(now_ + between(500, 15'000), [this, i] { restart(i); });
}

void Simulation::retire(std::size_t i) {
  Node& node = nodes_[i];
  if (node.retired) return;
  crash(i, false);
  node.retired = true;
  ++retired_;
  // Its copies are gone with it.
  std::set<Hash> gone;
  for (const auto& [hash, data] : node.store.persisted) gone.insert(hash);
  for (const auto& [hash, data] : node.store.temporary) gone.insert(hash);
  for (const auto& [hex, data] : node.disk.fragments)
    if (auto hash = Hash::from_hex(hex)) gone.insert(*hash);
  // The tracker counts them until it notices the board is gone: the safety check excuses them,
  // under every client id the board had (a spec-only board's earlier ones may still be
  // registered).
  std::set<ClientId> ids = {node.config.client_id};
  for (const auto& [id, owner] : spec_owner_)
    if (owner == i) ids.insert(id);
  for (const auto& hash : gone) {
    ++losses_[hash];
    for (const auto& id : ids) corrupted_.emplace(id, hash);
  }
  node.store = {};
  node.disk = {};
  if (options_.verbose)
    std::printf("%8lld %-10s retired for good (%zu copies gone)\n", static_cast<long long>(now_),
                node.config.client_id.c_str(), gone.size());
}

void Simulation::wipe(std::size_t i) {
  Node& node = nodes_[i];
  if (node.retired || node.spec_only) return;
  crash(i, false);  // and it starts again, with a new disk
  ++wiped_;
  // Temporary copies too: one it confirmed may still be named in an Ended.
  for (const auto* copies : {&node.store.persisted, &node.store.temporary})
    for (const auto& [hash, data] : *copies) {
      ++losses_[hash];
      corrupted_.emplace(node.config.client_id, hash);
    }
  if (options_.verbose)
    std::printf("%8lld %-10s disk replaced (%zu copies gone)\n", static_cast<long long>(now_),
                node.config.client_id.c_str(), node.store.persisted.size());
  node.store = {};
}

std::size_t Simulation::surviving_copies(const Hash& hash, bool* only_spec_only) const {
  std::size_t copies = 0, on_edges = 0;
  for (const auto& node : nodes_) {
    if (node.retired) continue;
    const bool good = node.spec_only ? holds(node, hash)
                                     : node.store.persisted.count(hash) &&
                                           !corrupted_.count({node.config.client_id, hash});
    copies += good;
    on_edges += good && !node.spec_only;
  }
  if (only_spec_only) *only_spec_only = copies > 0 && on_edges == 0;
  return copies;
}

void Simulation::lose_connection(std::size_t i) {
  Node& node = nodes_[i];
  if (node.spec && node.connected) {
    // It never reconnects: the client is over, and the board is started again later.
    end_spec(i, false, keepalive_loss_ms + between(0, 1'000));
    at(now_ + between(500, 15'000), [this, i] { restart(i); });
    return;
  }
  if (!node.machine || !node.connected) return;
  node.connected = false;
  ++node.epoch;
  node.fetch->on_disconnected();
  apply_torrent(i, node.machine->on_disconnected(now_));
  const std::uint64_t session = node.session_epoch;
  at(now_ + keepalive_loss_ms + between(0, 1'000), [this, i, session] {
    if (nodes_[i].session_epoch == session) broker_notices_loss(i);
  });
  at(now_ + between(200, 10'000), [this, i] { connect(i); });
}

void Simulation::restart(std::size_t i) {
  Node& node = nodes_[i];
  if (node.retired) return;
  if (node.spec_only) {
    if (node.spec) return;
    node.config.client_id = new_spec_id();
    spec_owner_[node.config.client_id] = i;
    ++result_.spec_only_clients;
    node.spec = std::make_unique<spec_only::Server>(
        spec_only::Config{node.config.client_id, *node.config.endpoints.begin()}, node.disk);
    connect(i);
    return;
  }
  if (node.machine) return;
  verify_store(i);
  node.machine = std::make_unique<TorrentServer>(node.config, node.store.snapshot(), *node.random);
  node.fetch = std::make_unique<fetch::Server>(
      fetch::ServerConfig{fetch::request_topic(node.config.client_id)});
  connect(i);
}

void Simulation::connect(std::size_t i) {
  Node& node = nodes_[i];
  if (node.retired) return;
  if ((!node.machine && !node.spec) || node.connected) return;
  if (!tracker_) {
    // The daemon's reconnect backoff; a spec-only client that cannot connect is started again.
    at(now_ + between(500, 2'000), [this, i] { connect(i); });
    return;
  }
  if (node.spec) {
    node.connected = true;
    ++node.epoch;
    spec_sessions_.insert(node.config.client_id);
    spec_publish(i, node.spec->on_connected(now_));
    return;
  }
  // Session takeover: the broker drops the old connection (and reports it) before the new one.
  if (node.session_open) broker_notices_loss(i);
  node.session_open = true;
  node.session_epoch = ++node.epoch;
  node.connected = true;
  apply_torrent(i, node.machine->on_connected(now_));
}

void Simulation::broker_crash() {
  if (!tracker_) return;
  ++result_.broker_restarts;
  tracker_.reset();
  receiver_.reset();
  spec_sessions_.clear();
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    Node& node = nodes_[i];
    node.session_open = false;
    if (!node.connected) continue;
    if (node.spec) {
      end_spec(i, false, 0);
      at(now_ + between(1'000, 10'000), [this, i] { restart(i); });
      continue;
    }
    node.connected = false;
    ++node.epoch;
    node.fetch->on_disconnected();
    apply_torrent(i, node.machine->on_disconnected(now_));
    at(now_ + between(1'000, 10'000), [this, i] { connect(i); });
  }
  at(now_ + between(500, 8'000), [this] { broker_start(); });
}

void Simulation::broker_start() {
  if (tracker_) return;
  tracker_ =
      std::make_unique<Tracker>(tracker_config_, tracker_store_.snapshot(), *tracker_random_);
  receiver_ = std::make_unique<ingest::Receiver>(
      receiver_config_, tracker_config_.fragment_size_bytes, tracker_store_);
  ++uploader_epoch_;  // the uploader connects to the new run of the broker
  apply_tracker(tracker_->start(now_));
}

void Simulation::ingest() {
  if (!tracker_) {
    at(now_ + 1'000, [this] { ingest(); });
    return;
  }
  const std::int64_t fragment_size = tracker_config_.fragment_size_bytes;
  Bytes content;
  if (!contents_.empty() && chance(0.2)) {
    // A file that shares its leading fragments with an earlier one.
    content = contents_[rng_.below(contents_.size())];
    const auto extra = between(1, fragment_size * 3);
    for (std::int64_t b = 0; b < extra; ++b)
      content.push_back(static_cast<std::uint8_t>(rng_.next_u64()));
  } else {
    const auto size = chance(0.05) ? 0 : between(1, fragment_size * 24);
    content.resize(static_cast<std::size_t>(size));
    for (auto& b : content) b = static_cast<std::uint8_t>(rng_.next_u64());
  }
  contents_.push_back(content);
  ++result_.files;
  if (!options_.classic) {
    put(std::move(content));
    return;
  }
  std::map<Hash, std::int64_t> staged_sizes;
  Fragmenter fragmenter(fragment_size, [&](const Fragment& f) {
    // The adapter stages each fragment durably before the tracker hears of the file.
    tracker_store_.staged[f.hash] = Bytes(f.data.begin(), f.data.end());
    staged_sizes[f.hash] = static_cast<std::int64_t>(f.data.size());
  });
  fragmenter.feed(content);
  const FileDigest digest = fragmenter.finish();
  IngestResult r = tracker_->add_file(now_, digest.hash, digest.metadata, staged_sizes);
  if (!r.ok()) violation("add_file refused a file: " + r.error);
  // Not a commit that may fail here: the staging above stands for the upload that precedes it.
  apply_tracker(std::move(r.output), false);
}

void Simulation::put(Bytes content) {
  Upload upload;
  upload.hash = sha256(content);
  upload.sender =
      std::make_unique<ingest::Sender>(Uuid::v4_from(rng_.next_u64(), rng_.next_u64()), upload.hash,
                                       static_cast<std::int64_t>(content.size()));
  upload.content = std::move(content);
  upload.last_heard_ms = now_;
  uploads_.push_back(std::move(upload));
  ++result_.uploads;
  const std::size_t u = uploads_.size() - 1;
  uploader_publish(std::string(ingest::topics::begin), ingest::encode(uploads_[u].sender->begin()));
  if (chance(0.1)) {
    // Some people change their mind: the upload is aborted midway, and never published.
    at(now_ + between(50, 3'000), [this, u] {
      Upload& aborted = uploads_[u];
      if (aborted.sender->done()) return;
      aborted.aborted = true;
      ++result_.uploads_aborted;
      uploader_publish(std::string(ingest::topics::abort),
                       ingest::encode(ingest::Abort{aborted.sender->begin().upload_id}));
    });
  } else if (chance(0.3)) {
    // A pause longer than the tracker keeps an idle upload in memory: resumed from its parts.
    at(now_ + between(50, 2'000), [this, u] {
      Upload& paused = uploads_[u];
      if (paused.sender->done()) return;
      paused.paused_until_ms = now_ + receiver_config_.idle_timeout_ms + between(500, 5'000);
      at(paused.paused_until_ms, [this, u] {
        Upload& resumed = uploads_[u];
        if (resumed.sender->done() || resumed.aborted) return;
        ++result_.uploads_resumed;
        resumed.last_heard_ms = now_;
        uploader_publish(std::string(ingest::topics::begin),
                         ingest::encode(resumed.sender->begin()));
      });
    });
  }
}

std::string Simulation::check_uploads_and_gets() const {
  for (const auto& upload : uploads_) {
    const auto phase = upload.sender->phase();
    if (!upload.aborted && phase != ingest::SenderPhase::published)
      return "an upload of " + upload.hash.to_hex() + " is not published (" +
             upload.sender->failure() + ")";
    if (upload.aborted && !upload.sender->done()) return "an aborted upload has no answer yet";
    if (phase == ingest::SenderPhase::published && !tracker_->view().files().count(upload.hash))
      return "an upload answered published has no file " + upload.hash.to_hex();
  }
  if (receiver_ && receiver_->uploads_in_progress() != 0)
    return std::to_string(receiver_->uploads_in_progress()) + " uploads still in memory";
  if (!tracker_store_.uploads.empty())
    return std::to_string(tracker_store_.uploads.size()) +
           " uploads still in the tracker's store, the first " +
           tracker_store_.uploads.begin()->first.to_string();
  return {};
}

void Simulation::end_faults() {
  faults_ = false;
  if (!tracker_) broker_start();
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].retired) continue;
    if (!nodes_[i].machine && !nodes_[i].spec)
      restart(i);
    else
      connect(i);
  }
}

std::string describe_difference(const DistributionView& view, const DistributionView& truth) {
  std::string d =
      "revision " + std::to_string(view.revision()) + " vs " + std::to_string(truth.revision());
  if (view.fragment_size_bytes() != truth.fragment_size_bytes()) d += "; fragment size differs";
  for (const auto& [hash, file] : truth.files())
    if (!view.files().count(hash) || !(view.files().at(hash) == file))
      d += "; file " + hash.to_hex() + " missing or different";
  for (const auto& [hash, file] : view.files())
    if (!truth.files().count(hash)) d += "; extra file " + hash.to_hex();
  for (const auto& [hash, fragment] : truth.fragments())
    if (!view.fragments().count(hash) || !(view.fragments().at(hash) == fragment))
      d += "; fragment " + hash.to_hex() + " missing or different";
  for (const auto& [hash, fragment] : view.fragments())
    if (!truth.fragments().count(hash)) d += "; extra fragment " + hash.to_hex();
  for (const auto& [id, meta] : truth.clients()) {
    auto it = view.clients().find(id);
    if (it == view.clients().end()) {
      d += "; client " + id + " missing";
      continue;
    }
    if (it->second.endpoints != meta.endpoints) d += "; client " + id + " endpoints differ";
    if (it->second.capacity_bytes != meta.capacity_bytes)
      d += "; client " + id + " capacity differs";
    if (it->second.stored_fragments != meta.stored_fragments)
      d += "; client " + id + " stores " + std::to_string(it->second.stored_fragments.size()) +
           " vs " + std::to_string(meta.stored_fragments.size());
  }
  for (const auto& [id, meta] : view.clients())
    if (!truth.clients().count(id)) d += "; extra client " + id;
  return d;
}

std::string Simulation::check_converged() const {
  if (!tracker_) return "the broker is down";
  if (!options_.classic)
    if (auto problem = check_uploads_and_gets(); !problem.empty()) return problem;
  if (tracker_->joins_in_flight() != 0)
    return std::to_string(tracker_->joins_in_flight()) + " joins in flight";
  const DistributionView& truth = tracker_->view();
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const Node& node = nodes_[i];
    if (node.retired) {
      // Gone for good: settled once the tracker noticed (its copies count for the repair delay
      // after that, and are then repaired).
      for (const auto& [id, meta] : truth.clients())
        if (owner_of(id) == i) return id + " is gone for good but still registered";
      continue;
    }
    if (node.spec_only) {
      if (auto problem = check_spec_converged(node); !problem.empty()) return problem;
      continue;
    }
    const ClientId& id = node.config.client_id;
    if (!node.machine) return id + " is down";
    if (node.machine->phase() != TorrentPhase::registered)
      return id + " is " + std::string(phase_name(node.machine->phase()));
    const DistributionView& view = node.machine->view();
    if (!(view == truth)) return id + "'s view differs: " + describe_difference(view, truth);
    if (!node.store.temporary.empty()) return id + " still has temporary fragments";
    const auto& claimed = truth.clients().at(id).stored_fragments;
    std::set<Hash> held;
    for (const auto& [hash, data] : node.store.persisted) held.insert(hash);
    if (held != claimed)
      return id + " stores " + std::to_string(held.size()) + " fragments, the view says " +
             std::to_string(claimed.size());
    for (const auto& hash : held)
      if (!named_in_ended_.count({id, hash}))
        return id + " stores " + hash.to_hex() + " but no Ended named it";
  }
  if (tracker_->gauges().staged_fragments != 0)
    return std::to_string(tracker_->gauges().staged_fragments) + " fragments still staged";
  // Repair: every fragment of a file with a copy left anywhere is back at its replicas. One whose
  // copies are all gone (lost, corrupt, retired) cannot be; one whose copies are only on boards
  // of the specification-only client cannot be fetched from them (they serve no fetch), so it
  // waits with what it has.
  std::set<Hash> referenced;
  for (const auto& [hash, file] : truth.files())
    referenced.insert(file.fragment_sequence.begin(), file.fragment_sequence.end());
  std::size_t live_boards = 0;
  for (const auto& node : nodes_) live_boards += !node.retired;
  const std::size_t wanted = std::min(tracker_config_.replicas, live_boards);
  for (const auto& hash : referenced) {
    bool only_spec_only = false;
    if (surviving_copies(hash, &only_spec_only) == 0 || only_spec_only) continue;
    if (truth.holder_count(hash) < wanted)
      return "fragment " + hash.to_hex() + " has " + std::to_string(truth.holder_count(hash)) +
             " holders";
  }
  // Trimming and rebalancing: every copy is where placement wants it, exactly `replicas` of them.
  // A copy on a board of the specification-only client stays (the tracker cannot ask it to
  // delete a copy without removing the fragment from its view, and it serves no fetch), so a
  // fragment it holds is only checked for its count of fetchable copies.
  const auto gauges = tracker_->gauges();
  if (gauges.surplus_copies != 0)
    return std::to_string(gauges.surplus_copies) + " surplus copies to delete";
  if (gauges.misplaced_fragments != 0)
    return std::to_string(gauges.misplaced_fragments) + " fragments to move";
  if (gauges.repairs_in_flight != 0)
    return std::to_string(gauges.repairs_in_flight) + " repairs or moves in flight";
  for (const auto& hash : referenced) {
    bool only_spec_only = false;
    if (surviving_copies(hash, &only_spec_only) == 0 || only_spec_only) continue;
    const auto holders = truth.holders(hash);
    std::size_t on_spec = 0;
    for (const auto& id : holders) on_spec += nodes_[owner_of(id)].spec_only;
    if (on_spec) {
      if (holders.size() - on_spec > wanted)
        return "fragment " + hash.to_hex() + " has " + std::to_string(holders.size() - on_spec) +
               " copies on mqds-edge boards, more than " + std::to_string(wanted);
      continue;
    }
    if (holders.size() != wanted) {
      std::string names;
      for (const auto& id : holders) names += " " + id;
      return "fragment " + hash.to_hex() + " has " + std::to_string(holders.size()) +
             " holders, not exactly " + std::to_string(wanted) + ":" + names;
    }
    // Copies move only to mqds-edge boards: one placement wants on a spec-only board stays on an
    // mqds-edge board it likes less.
    const auto size = truth.fragments().at(hash).size_bytes;
    std::vector<ClientId> ideal;
    for (const auto& id : ideal_holders(truth, hash, size, tracker_config_.replicas))
      if (!nodes_[owner_of(id)].spec_only) ideal.push_back(id);
    std::sort(ideal.begin(), ideal.end());
    if (!std::includes(holders.begin(), holders.end(), ideal.begin(), ideal.end())) {
      std::string names;
      for (const auto& id : holders) names += " " + id;
      names += " instead of";
      for (const auto& id : ideal) names += " " + id;
      return "fragment " + hash.to_hex() + " is not where placement wants it: on" + names;
    }
  }
  return {};
}

// A spec-only board has converged when it is registered, knows the tracker's files and fragments,
// knows every client the tracker knows as the tracker does, and stores what the tracker says it
// holds. Clients that left may stay in its view: ClientGoodbye does not say who left, so a
// spec-only client cannot remove them (the specification's gap, docs/specification.md). It may
// also hold a copy no Ended named it for under its present id: it keeps what it stored under an
// earlier id and reports it when it joins.
std::string Simulation::check_spec_converged(const Node& node) const {
  const std::string who = node.config.client_id + " (spec-only)";
  if (!node.spec) return who + " is down";
  const spec_only::Server& spec = *node.spec;
  const auto& c = spec.counters();
  if (spec.phase() != spec_only::Phase::registered)
    return who + " is " + std::string(spec_only::phase_name(spec.phase())) + " (" +
           std::to_string(c.denials) + " denials, the last with ReasonCode " +
           (c.last_reason_code ? std::to_string(*c.last_reason_code) : std::string("-")) + " \"" +
           c.last_reason + "\"; " + std::to_string(c.timeouts) + " timeouts; " +
           std::to_string(c.dropped_unregistered) + " events dropped before its registration)";
  const DistributionView& truth = tracker_->view();
  const spec_only::View& view = spec.view();
  std::map<std::string, spec_only::FileMeta> files;
  for (const auto& [hash, file] : truth.files()) {
    spec_only::FileMeta meta{file.size_bytes, {}};
    for (const auto& fragment : file.fragment_sequence) meta.sequence.push_back(fragment.to_hex());
    files.emplace(hash.to_hex(), std::move(meta));
  }
  for (const auto& [hash, file] : files)
    if (!view.files.count(hash) || !(view.files.at(hash) == file))
      return who + " misses file " + hash + " or knows it otherwise";
  for (const auto& [hash, file] : view.files)
    if (!files.count(hash)) return who + " knows a file the tracker does not: " + hash;
  std::map<std::string, std::int64_t> fragments;
  for (const auto& [hash, fragment] : truth.fragments())
    fragments.emplace(hash.to_hex(), fragment.size_bytes);
  for (const auto& [hash, size] : fragments)
    if (!view.fragments.count(hash) || view.fragments.at(hash) != size)
      return who + " misses fragment " + hash + " or knows another size (" +
             std::to_string(c.dropped_unregistered) + " events dropped before its registration)";
  for (const auto& [hash, size] : view.fragments)
    if (!fragments.count(hash)) return who + " knows a fragment the tracker does not: " + hash;
  for (const auto& [id, meta] : truth.clients()) {
    const auto it = view.clients.find(id);
    if (it == view.clients.end())
      return who + " does not know client " + id + " (" + std::to_string(c.dropped_unregistered) +
             " events dropped before its registration)";
    if (it->second.endpoints != meta.endpoints) return who + " knows other endpoints of " + id;
    std::set<std::string> stored;
    for (const auto& hash : meta.stored_fragments) stored.insert(hash.to_hex());
    if (it->second.stored != stored)
      return who + " believes " + id + " stores " + std::to_string(it->second.stored.size()) +
             " fragments, the tracker " + std::to_string(stored.size());
  }
  std::set<std::string> held;
  for (const auto& [hash, data] : spec.disk().fragments) held.insert(hash);
  std::set<std::string> claimed;
  for (const auto& hash : truth.clients().at(node.config.client_id).stored_fragments)
    claimed.insert(hash.to_hex());
  if (held != claimed)
    return who + " stores " + std::to_string(held.size()) + " fragments, the tracker says " +
           std::to_string(claimed.size());
  return {};
}

Result Simulation::run() {
  // The scenario.
  const std::size_t torrents = static_cast<std::size_t>(between(20, 24));
  // About a quarter of the boards run the C# reference client (none in the classic scenarios).
  const bool spec_boards = !options_.classic && options_.spec_only;
  tracker_config_.fragment_size_bytes = between(16, 256);
  tracker_config_.replicas = static_cast<std::size_t>(between(2, 3));
  tracker_config_.distributions_in_flight_max = static_cast<std::size_t>(between(1, 16));
  tracker_config_.startup_settle_ms = 1'000;
  // Short enough for repair to finish within the convergence time; boards that restart take up
  // to 15 s, so some holders come back after their copies were repaired.
  tracker_config_.repair_delay_ms = static_cast<std::int64_t>(2'000 + repair_rng_.below(28'001));
  tracker_config_.repairs_in_flight_max = static_cast<std::size_t>(1 + repair_rng_.below(8));
  if (!options_.classic) {
    receiver_config_.chunk_bytes_max =
        static_cast<std::size_t>(tracker_config_.fragment_size_bytes * between(1, 3));
    receiver_config_.window_bytes =
        receiver_config_.chunk_bytes_max * static_cast<std::size_t>(between(2, 6));
    receiver_config_.idle_timeout_ms = 3'000;
  }
  // Longer than any pause of an uploader that comes back, shorter than the convergence time:
  // an upload nobody comes back for (its abort lost) leaves the store within it.
  receiver_config_.resume_window_ms = 30'000;
  drop_ = static_cast<double>(between(0, 100)) / 1000.0;
  duplicate_ = static_cast<double>(between(0, 50)) / 1000.0;
  delay_max_ms_ = between(5, 800);
  const double crash_per_s = static_cast<double>(between(0, 30)) / 100.0;
  result_.torrents = torrents;

  tracker_random_ = std::make_unique<SplitMix64>(rng_.next_u64());
  for (std::size_t i = 0; i < torrents; ++i) {
    Node node;
    node.config.client_id = "edge-" + std::to_string(i);
    node.config.endpoints = {fetch::endpoint_of(node.config.client_id)};  // as mqds-edge's
    // A few small boards: placement must route around them.
    if (chance(0.2))
      node.config.capacity_bytes = tracker_config_.fragment_size_bytes * between(5, 40);
    node.random = std::make_unique<SplitMix64>(rng_.next_u64());
    if (spec_boards && spec_rng_.below(4) == 0) {
      node.spec_only = true;
      node.config.endpoints = {"tcp://board-" + std::to_string(i) + ":5000"};
      node.config.capacity_bytes.reset();  // it sends no Capacity
      ++result_.spec_only_boards;
    }
    nodes_.push_back(std::move(node));
  }

  broker_start();
  // Half the seeds grow the fleet: up to three boards start only while faults go on, when the
  // files are spread, so copies move to them.
  std::set<std::size_t> late;
  if (!options_.classic && late_rng_.below(2) == 0) {
    const auto count = 1 + late_rng_.below(3);
    for (std::uint64_t l = 0; l < count; ++l)
      late.insert(static_cast<std::size_t>(late_rng_.below(nodes_.size())));
  }
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    std::int64_t when = between(0, 2'000);
    if (late.count(i)) {
      when = static_cast<std::int64_t>(
          static_cast<std::uint64_t>(options_.fault_ms / 2) +
          late_rng_.below(static_cast<std::uint64_t>(options_.fault_ms / 2)));
      ++result_.boards_late;
    }
    at(when, [this, i] { restart(i); });
  }
  at(tick_ms, [this] { tick(); });
  const int files = static_cast<int>(between(3, 8));
  for (int f = 0; f < files; ++f) at(between(500, options_.fault_ms * 3 / 5), [this] { ingest(); });
  for (std::int64_t t = 1'000; t < options_.fault_ms; t += 1'000) {
    if (!chance(crash_per_s)) continue;
    at(t, [this] {
      const auto roll = rng_.below(100);
      if (roll < 5) {
        broker_crash();
      } else {
        const auto i = static_cast<std::size_t>(rng_.below(nodes_.size()));
        if (roll < 45)
          crash(i, false);
        else if (roll < 65)
          crash(i, true);
        else
          lose_connection(i);
      }
    });
  }
  if (!options_.classic) {
    // Gets while things break: what they bring back must be the file, whatever they miss.
    const auto gets = between(1, 3);
    for (std::int64_t g = 0; g < gets; ++g)
      at(between(options_.fault_ms / 2, options_.fault_ms), [this] {
        std::vector<std::size_t> published;
        for (std::size_t u = 0; u < uploads_.size(); ++u)
          if (uploads_[u].sender->phase() == ingest::SenderPhase::published) published.push_back(u);
        if (!published.empty()) start_get(published[rng_.below(published.size())]);
      });
  }
  if (!options_.classic && storage_chance(0.5)) {
    // Half the seeds also lose data: failed commits, torn writes, copies found corrupt.
    store_failure_ = static_cast<double>(storage_rng_.below(30)) / 10'000.0;
    torn_write_ = static_cast<double>(storage_rng_.below(30)) / 10'000.0;
    const auto losses = storage_rng_.below(4);
    for (std::uint64_t l = 0; l < losses; ++l)
      at(static_cast<std::int64_t>(
             5'000 + storage_rng_.below(static_cast<std::uint64_t>(options_.fault_ms - 5'000))),
         [this] { lose_copy(); });
  }
  if (!options_.classic && repair_rng_.below(2) == 0) {
    // Half the seeds lose boards for good or replace their disks: up to two of each.
    const auto retirements = repair_rng_.below(3), wipes = repair_rng_.below(3);
    for (std::uint64_t r = 0; r < retirements + wipes; ++r) {
      const auto when = static_cast<std::int64_t>(
          2'000 + repair_rng_.below(static_cast<std::uint64_t>(options_.fault_ms - 2'000)));
      const auto i = static_cast<std::size_t>(repair_rng_.below(nodes_.size()));
      if (r < retirements)
        at(when, [this, i] { retire(i); });
      else
        at(when, [this, i] { wipe(i); });
    }
  }
  at(options_.fault_ms, [this] { end_faults(); });

  const std::int64_t deadline = options_.fault_ms + options_.converge_ms;
  constexpr std::int64_t final_gets_ms = 60'000;
  std::int64_t final_gets_deadline_ms = 0;
  std::int64_t next_check = options_.fault_ms + 1'000;
  std::string last_problem = "not checked";
  while (!actions_.empty() && failure_.empty()) {
    Action action = actions_.top();
    actions_.pop();
    now_ = action.time_ms;
    if (now_ > deadline && result_.converged_after_ms == 0) break;
    try {
      action.fn();
      check_safety();
    } catch (const std::exception& e) {
      violation(std::string("exception: ") + e.what());
    }
    if (now_ >= next_check && result_.converged_after_ms == 0) {
      next_check = now_ + 1'000;
      last_problem = check_converged();
      if (last_problem.empty()) {
        result_.converged_after_ms = now_ - options_.fault_ms;
        if (options_.classic) break;
        // Once everything has settled, every published file is got back whole.
        for (std::size_t u = 0; u < uploads_.size(); ++u)
          if (!uploads_[u].aborted) start_get(u);
        final_gets_deadline_ms = now_ + final_gets_ms;
      }
    }
    if (result_.converged_after_ms != 0) {
      bool finished = true;
      for (const auto& get : gets_)
        if (get.final && !get.client->finished()) finished = false;
      if (finished || now_ > final_gets_deadline_ms) break;
    }
  }
  for (const auto& get : gets_) {
    if (get.client->complete()) ++result_.gets_complete;
    if (!get.final || !failure_.empty()) continue;
    if (!get.client->finished()) {
      violation("a get of " + uploads_[get.upload].hash.to_hex() + " did not finish within " +
                std::to_string(final_gets_ms) + " ms of convergence");
    } else if (!get.client->complete()) {
      std::string why;
      for (const auto& missing : get.client->missing()) {
        // A fragment whose every copy was lost stays missing: nothing is left to repair it from.
        if (missing.problems.empty() && losses_.count(missing.hash) &&
            surviving_copies(missing.hash) == 0)
          continue;
        // A spec-only board serves no fetch (mqds's extension): a fragment only they hold cannot
        // be got. The get is judged against the mqds-edge holders alone.
        if (!missing.problems.empty() &&
            std::all_of(missing.problems.begin(), missing.problems.end(),
                        [this](const auto& p) { return spec_owner_.count(p.holder) != 0; })) {
          ++result_.fragments_only_on_spec_only;
          continue;
        }
        why += " fragment " + std::to_string(missing.index) + ":";
        for (const auto& problem : missing.problems)
          why += " " + problem.holder + " " + problem.problem + ";";
      }
      if (!why.empty())
        violation("a get of " + uploads_[get.upload].hash.to_hex() + " after convergence misses" +
                  why);
    }
  }
  for (const auto& node : nodes_) {
    const std::uint64_t unexpected =
        node.unexpected_deliveries +
        (node.machine ? node.machine->metrics().deliveries_unexpected : 0);
    if (unexpected)
      violation(node.config.client_id + " received " + std::to_string(unexpected) +
                " Delivered not addressed to it");
  }
  if (failure_.empty() && !last_problem.empty())
    violation("did not converge within " + std::to_string(options_.converge_ms) +
              " ms: " + last_problem);
  result_.fragments = tracker_ ? tracker_->view().fragments().size() : 0;
  result_.boards_retired = retired_;
  result_.disks_wiped = wiped_;
  if (tracker_) {
    result_.repairs_started = tracker_->metrics().repairs_started;
    result_.repairs_ended = tracker_->metrics().repairs_ended;
    result_.repairs_failed = tracker_->metrics().repairs_failed;
    result_.moves_started = tracker_->metrics().rebalances_started;
    result_.moves_ended = tracker_->metrics().rebalances_ended;
    result_.copies_trimmed = tracker_->metrics().copies_trimmed;
  }
  result_.ok = failure_.empty();
  result_.failure = failure_;
  return result_;
}

}  // namespace

Result run(const Options& options) {
  return Simulation(options).run();
}

}  // namespace mqds::sim
