// mqds-edge: the core's TorrentServer, an LMDB EdgeStore and one MQTT 5 connection, in one thread.
//
// Theory of operation.
// - Start-up (docs/specification.md, "Failure handling"): every stored fragment is verified against
// its
//   hash before anything is sent; corrupt and unknown ones are deleted, and the machine starts from
//   what is intact, so the join request reports only that.
// - The loop: step the connection until the machine's next deadline (at most 100 ms), feed it what
//   arrived, then commit the storage effects of everything it decided in one durable LMDB
//   transaction, THEN publish its events (group commit: Obtained and ClientJoinSucceeded are never
//   sent before the data they speak of is on disk). A batch that grows past batch_bytes_max is
//   committed at once, so memory stays bounded while fragments stream in.
// - The connection: joining happens once the subscriptions are granted. A lost connection is the
//   tracker gone (it lives in the broker): the machine is told, and the daemon reconnects with
//   jittered exponential backoff (1 s to 30 s) and joins again.
// - Fetch: the core's fetch::Server (common/include/mqds/fetch_server.hpp) decides every answer;
//   the daemon moves bytes. Requests on mqds/fetch/request/<id> go to it as they arrive; after
//   each committed batch the daemon serves its queue, performing each Lookup with
//   EdgeStore::read_fragment (which verifies the hash) and publishing the replies straight from
//   the store's memory. A copy the Server names as lost goes to the TorrentServer
//   (fragment_lost: deleted, and a rejoin reports it). PUBACKs of replies free the Server's
//   in-flight budget.
// - Scrubbing (docs/specification.md, "Failure handling"): between passes of the loop, one step
//   at a time, the daemon hashes the next persisted fragment after a cursor key
//   (EdgeStore::scrub_next, one read transaction per step) when the core's scrub::Pacer says it is
//   due: a pass over the store takes --scrub-interval, reading never faster than --scrub-rate. A
//   step reads one fragment, so the loop is never held longer than hashing it takes. A corrupt
//   copy goes to the TorrentServer like one found while serving (fragment_lost: deleted, and a
//   rejoin reports it, which starts its repair). The cursor lives in memory only: a restart
//   verifies everything anyway, then starts a new pass.
// - SIGTERM/SIGINT: ClientGoodbye is published and acknowledged (bounded wait), then a clean
//   DISCONNECT. A join denial the operator must fix does not end the process: the TorrentServer
//   logs it as an error and asks again later (a denial never stops a board for good). The broker
//   refusing a subscription, or stored data cut at another fragment size than the tracker's
//   accept says, ends it with exit_status::operator_must_act.
#pragma once

#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "edge_options.hpp"
#include "mqds/fetch_server.hpp"
#include "mqds/os.hpp"
#include "mqds/random.hpp"
#include "mqds/scrub.hpp"
#include "mqds/store/edge_store.hpp"
#include "mqds/torrent.hpp"
#include "runtime/log.hpp"
#include "runtime/mqtt_session.hpp"

namespace mqds::edge {

class EdgeDaemon {
 public:
  // Opens (creates) the store; throws on a store that cannot be opened.
  EdgeDaemon(EdgeOptions options, const runtime::Log& log);
  // Runs until `stop` becomes non-zero (a signal handler sets it) or a fatal condition; returns the
  // process's exit status.
  int run(const volatile std::sig_atomic_t& stop);

  static constexpr std::size_t batch_bytes_max = 8 * 1024 * 1024;
  // The broker may have this many QoS 1 and 2 messages in flight to us. libmosquitto's default of
  // 20 is overrun by Debian's 2.0.11 broker under bursts, which drops the connection; the broker's
  // own max_queued_messages still bounds what waits for us.
  static constexpr int receive_maximum = 65535;
  static constexpr std::int64_t goodbye_wait_ms = 5'000;

 private:
  enum class Link : std::uint8_t { down, connecting, subscribing, up };

  void verify_store();
  void connect(std::int64_t now_ms);
  void schedule_reconnect(std::int64_t now_ms);
  void on_connected();
  void on_refused(const std::string& why);
  void on_lost(const std::string& why);
  void on_subscribed(int mid, const std::vector<int>& granted);
  void on_message(runtime::Received&& message);
  void on_published(int mid, int reason_code);

  void take(Output out);
  void flush();
  void serve_fetches();
  // Performs what the fetch Server decided. `content` is the fragment its ok replies are ranges
  // of, valid during the call (the store's memory, inside a read).
  void take(fetch::ServerOutput out, std::span<const std::uint8_t> content = {});
  void look_up(const fetch::Lookup& lookup);
  void publish_reply(const fetch::Reply& reply, std::span<const std::uint8_t> content);
  // 16 bytes from the kernel's generator, in hex: the Receipt of one fetch answer.
  std::string receipt_token();
  void say_goodbye(const volatile std::sig_atomic_t& stop);
  // One step of the background scrub, if one is due.
  void scrub_step();
  std::int64_t stored_bytes() const;

  EdgeOptions options_;
  const runtime::Log& log_;
  EdgeStore store_;
  SplitMix64 random_;
  os::KernelRandom kernel_random_;
  std::unique_ptr<TorrentServer> machine_;
  std::unique_ptr<runtime::MqttSession> session_;
  fetch::Server fetch_;

  Link link_ = Link::down;
  std::int64_t reconnect_at_ms_ = 0;
  Backoff reconnect_backoff_;
  int subscribe_mid_ = -1;

  std::vector<StorageEffect> pending_storage_;
  std::vector<Publish> pending_publishes_;
  std::size_t pending_bytes_ = 0;
  std::size_t untrimmed_bytes_ = 0;  // committed since the last malloc_trim
  std::int64_t last_commit_ms_ = 0;
  static constexpr std::int64_t trim_after_idle_ms = 1'000;
  std::optional<std::string> fatal_;
  int exit_status_ = exit_status::stopped;

  // Made once the start-up check is done: the first pass begins then.
  std::optional<scrub::Pacer> scrub_;
  std::optional<Hash> scrub_after_;  // the last key verified in the current pass
  std::uint64_t scrub_pass_corrupt_ = 0;
  std::uint64_t scrub_corrupt_total_ = 0;

  std::optional<int> goodbye_mid_;
  bool goodbye_acknowledged_ = false;
};

}  // namespace mqds::edge
