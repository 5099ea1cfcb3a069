// A torrent server that knows only the specification: what the C# reference implementation does,
// as a pure state machine, to test that mqds's tracker serves such a client.
//
// Theory of operation. It is written from the specification's events (their PascalCase fields,
// their JSON types) and from what is known of the reference client, never from mqds's codec: it
// reads and writes JSON with nlohmann directly and ignores every extension. It does no I/O: an
// adapter (the simulation's bus, or an MQTT client in the broker tests) feeds it the connection,
// every message of its subscriptions (topics(), one SUBSCRIBE at QoS 1, clean session) and the
// time, and publishes at QoS 2 the messages it returns. It never reconnects: once its connection
// is gone, the adapter drops the machine and starts a new one, with a new client id, on the Disk
// the old one left.
//
// - Join: on connecting, and on every TrackerHello (which also makes it forget its view), it
//   sends ClientJoinRequested with what it stores. The answer naming its ClientIdentifier must come
//   within timeout_ms: ClientJoinAccepted is applied (files and fragments added and removed,
//   removed fragments deleted, the other clients, the FragmentSize) and answered with
//   ClientJoinSucceeded; then its own ClientRegistered must come within timeout_ms, and registers
//   it. A denial, or either timeout, leaves it waiting for the next TrackerHello.
// - Until registered it drops ClientRegistered (but its own), FileInfoPublished and the fragment
//   events. Registered, it applies ClientRegistered, FileInfoPublished and
//   FragmentDistributionEnded to its view.
// - One fragment distribution at a time: Started while idle is answered with Requested (whether
//   or not the tracker chose it); Delivered is verified against its Hash and answered with
//   Obtained (the fragment is stored) or Failed; no Delivered within timeout_ms frees it again.
//   While busy it ignores other Started. A fragment it received and the Ended does not name it
//   for is deleted.
// - What a spec-only client cannot do: ClientGoodbye carries only an EventId, so it cannot tell
//   who left; clients that left stay in its view. It cannot notice a lost event either (it has
//   no Revision), and it has no start-up integrity check.
// - An event whose required field is missing, null or of another JSON type is dropped whole and
//   counted; unknown fields are skipped; names are case-sensitive. A ReasonCode outside the
//   specification's enumeration (1, 2, 4, 128) makes the denial unreadable.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace mqds::spec_only {

struct Config {
  std::string client_id;  // 32 lowercase hexadecimal characters, new at every start
  std::string endpoint;   // tcp://host:port
  std::int64_t timeout_ms = 5'000;
};

struct FileMeta {
  std::int64_t size = 0;
  std::vector<std::string> sequence;
  friend bool operator==(const FileMeta&, const FileMeta&) = default;
};

struct ClientMeta {
  std::set<std::string> endpoints;
  std::set<std::string> stored;
  friend bool operator==(const ClientMeta&, const ClientMeta&) = default;
};

// What survives a restart.
struct Disk {
  std::optional<std::int64_t> fragment_size;
  std::map<std::string, FileMeta> files;
  std::map<std::string, std::vector<std::uint8_t>> fragments;  // hash (as on the wire) -> content
};

struct View {
  std::map<std::string, FileMeta> files;
  std::map<std::string, std::int64_t> fragments;  // hash -> size
  std::map<std::string, ClientMeta> clients;
};

struct Message {
  std::string topic;
  std::string payload;  // published at QoS 2
};

enum class Phase {
  waiting_for_hello,      // not connected yet, or denied, or timed out: only TrackerHello helps
  joining,                // ClientJoinRequested sent, waiting for its answer
  awaiting_registration,  // ClientJoinSucceeded sent, waiting for its own ClientRegistered
  registered,
};
std::string_view phase_name(Phase phase);

struct Counters {
  std::uint64_t joins_requested = 0;
  std::uint64_t denials = 0;
  std::optional<std::int64_t> last_reason_code;
  std::string last_reason;
  std::uint64_t timeouts = 0;  // no join answer, or no registration, in time
  std::uint64_t delivery_timeouts = 0;
  std::uint64_t dropped_unregistered = 0;   // events dropped because it was not registered yet
  std::uint64_t dropped_malformed = 0;      // invalid JSON, a missing or mistyped field
  std::uint64_t ignored_other_clients = 0;  // join answers naming another client
  std::uint64_t ignored_busy = 0;           // Started while a distribution was in progress
  std::uint64_t ignored_out_of_place = 0;   // an answer to nothing it waits for
  std::uint64_t goodbyes_ignored = 0;       // ClientGoodbye: it cannot tell who left
  std::uint64_t requested = 0;
  std::uint64_t obtained = 0;
  std::uint64_t failed = 0;  // a Delivered whose Data does not match its Hash
  std::uint64_t fragments_deleted = 0;
  std::uint64_t hellos = 0;
};

class Server {
 public:
  Server(Config config, Disk disk);

  // The specification's ten topics of a torrent server.
  static const std::vector<std::string>& topics();

  // The connection is up and subscribed: sends its ClientJoinRequested.
  std::vector<Message> on_connected(std::int64_t now_ms);
  std::vector<Message> on_message(std::int64_t now_ms, std::string_view topic,
                                  std::string_view payload);
  // Expires the deadlines that are due; an early call does nothing.
  std::vector<Message> on_tick(std::int64_t now_ms);
  // ClientGoodbye, before the adapter disconnects.
  std::vector<Message> goodbye();
  std::optional<std::int64_t> next_deadline_ms() const;

  Phase phase() const { return phase_; }
  const View& view() const { return view_; }
  const Disk& disk() const { return disk_; }
  const Counters& counters() const { return counters_; }
  const Config& config() const { return config_; }

 private:
  struct Distribution {
    std::string hash;
    std::int64_t deadline_ms = 0;
  };

  std::vector<Message> join(std::int64_t now_ms);
  std::string next_event_id();
  Message event(std::string_view topic, std::string json_text) const;

  Config config_;
  Disk disk_;
  View view_;
  Phase phase_ = Phase::waiting_for_hello;
  std::optional<std::int64_t> join_deadline_ms_;  // joining and awaiting_registration
  std::optional<Distribution> busy_;
  // Fragments received and confirmed, until their Ended: whether it held them before.
  std::map<std::string, bool> received_;
  std::uint64_t events_sent_ = 0;
  Counters counters_;
};

}  // namespace mqds::spec_only
