// Files through the real broker end to end: an upload over the ingest protocol, then distribution
// (the specification's Fragment Distribution, docs/specification.md) to torrent servers that are
// real MQTT clients driven by the core's TorrentServer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker.hpp"
#include "client.hpp"
#include "uploader.hpp"
#include "mqds/random.hpp"
#include "mqds/torrent.hpp"
#include "support/memory_store.hpp"

namespace mqds::broker_test {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

constexpr std::int64_t fragment_size = 1024;

BrokerConfig distribution_config(std::string ingest_users = "*") {
  BrokerConfig config;
  config.plugin_options = {{"fragment_size", std::to_string(fragment_size)},
                           {"replicas", "2"},
                           {"startup_settle_ms", "0"},
                           {"join_timeout_ms", "3000"},
                           {"request_timeout_ms", "1500"},
                           {"delivery_timeout_ms", "3000"},
                           {"retry_delay_ms", "500"},
                           {"revision_beacon_ms", "1000"},
                           {"metrics_interval_ms", "200"},
                           {"ingest_users", std::move(ingest_users)},
                           {"ingest_chunk_size", "4096"},
                           {"ingest_window", "16384"}};
  return config;
}

// A torrent server: a real MQTT client, the core's machine, and an in-memory store.
class TorrentNode {
 public:
  // `cbor`: the node asks for Delivered in CBOR (DeliveryEncodings); without, it joins as the C#
  // reference does and must get JSON.
  explicit TorrentNode(const std::string& id, bool cbor = true)
      : client_(id), random_(std::hash<std::string>{}(id)) {
    TorrentConfig config;
    config.client_id = id;
    config.cbor_delivery = cbor;
    config.endpoints = {"mqtt://" + id + "/fragments"};
    machine_ = std::make_unique<TorrentServer>(config, store_.snapshot(), random_);
  }

  ::testing::AssertionResult connect(int port) {
    if (auto r = client_.connect(port); !r) return r;
    if (auto r = client_.subscribe(torrent_subscriptions()); !r) return r;
    apply(machine_->on_connected(now_ms()));
    return ::testing::AssertionSuccess();
  }

  // Feeds what arrived to the machine and lets time pass for it.
  void pump() {
    for (auto& message : client_.drain()) {
      if (message.topic == topics::fragment_distribution_delivered) {
        ++deliveries_received_;
        delivered_payloads_.push_back(message.payload);
      }
      apply(machine_->on_message(now_ms(), message.topic, message.payload));
    }
    apply(machine_->on_tick(now_ms()));
  }

  const TorrentServer& machine() const { return *machine_; }
  const testing::TorrentMemoryStore& store() const { return store_; }
  int deliveries_received() const { return deliveries_received_; }
  const std::vector<std::string>& delivered_payloads() const { return delivered_payloads_; }
  std::vector<std::string> fatal;

 private:
  void apply(Output out) {
    store_.apply(out.storage);  // what the edge commits before it publishes
    if (out.fatal) fatal.push_back(*out.fatal);
    for (const auto& p : out.publishes) client_.publish_async(p.topic, p.payload, p.qos);
  }

  Client client_;
  SplitMix64 random_;
  testing::TorrentMemoryStore store_;
  std::unique_ptr<TorrentServer> machine_;
  int deliveries_received_ = 0;
  std::vector<std::string> delivered_payloads_;
};

template <class Done>
bool pump_until(std::vector<std::unique_ptr<TorrentNode>>& nodes, Done done,
                std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    for (auto& node : nodes) node->pump();
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

Bytes random_content(std::size_t size, std::uint64_t seed) {
  SplitMix64 rng(seed);
  Bytes data(size);
  for (auto& b : data) b = static_cast<std::uint8_t>(rng.next_u64());
  return data;
}

TEST(PluginDistribution, AnUploadedFileReachesExactlyKTorrentServersWithItsDeliveriesTargeted) {
  Broker broker(distribution_config());
  ASSERT_TRUE(broker.start());
  std::vector<std::unique_ptr<TorrentNode>> nodes;
  for (const char* id : {"edge-a", "edge-b", "edge-c"}) {
    nodes.push_back(std::make_unique<TorrentNode>(id, std::string(id) != "edge-c"));
    ASSERT_TRUE(nodes.back()->connect(broker.port())) << broker.where();
  }
  ASSERT_TRUE(pump_until(
      nodes,
      [&] {
        for (auto& n : nodes)
          if (n->machine().phase() != TorrentPhase::registered) return false;
        return true;
      },
      10s))
      << "torrent servers did not register; " << broker.where();

  Client monitor("monitor");
  ASSERT_TRUE(monitor.connect(broker.port()));
  ASSERT_TRUE(monitor.subscribe(std::vector<std::string>{"$SYS/broker/mqds/#"}, 0));

  // Someone who only listens must not see fragment data.
  Client eavesdropper("eavesdropper");
  ASSERT_TRUE(eavesdropper.connect(broker.port()));
  ASSERT_TRUE(eavesdropper.subscribe(std::vector<std::string>{
      std::string(topics::fragment_distribution_delivered), "mqds/ingest/#"}));

  const Bytes content =
      random_content(10 * fragment_size + 123, 42);  // 11 fragments, the last of 123 bytes
  const Hash file_hash = sha256(content);
  Uploader uploader("uploader");
  ASSERT_TRUE(uploader.connect(broker.port()));
  const Uuid upload = Uuid::v4_from(1, 2);
  const auto begun = uploader.begin(upload, file_hash, content.size());
  ASSERT_TRUE(begun && begun->state == ingest::State::receiving)
      << describe(begun) << broker.where();
  EXPECT_EQ(begun->offset_bytes, 0);
  EXPECT_EQ(begun->chunk_bytes_max, 4096);
  EXPECT_EQ(begun->window_bytes, 16384);
  const auto result = uploader.send(upload, content);
  ASSERT_TRUE(result && result->state == ingest::State::published)
      << describe(result) << broker.where();
  EXPECT_EQ(result->hash, file_hash);
  EXPECT_EQ(result->fragments, 11u);

  // Distribution: every fragment persisted on exactly two of the three.
  std::map<Hash, int> holders;
  const bool distributed = pump_until(
      nodes,
      [&] {
        holders.clear();
        for (auto& n : nodes)
          for (const auto& [hash, data] : n->store().persisted) ++holders[hash];
        if (holders.size() != 11) return false;
        for (const auto& [hash, count] : holders)
          if (count != 2) return false;
        for (auto& n : nodes)
          if (!n->store().temporary.empty()) return false;
        return true;
      },
      20s);
  ASSERT_TRUE(distributed) << holders.size() << " fragments persisted; " << broker.where();

  // Every copy is intact, the views agree, and nobody got a fragment it was not a receiver of.
  int deliveries = 0;
  for (auto& n : nodes) {
    for (const auto& [hash, data] : n->store().persisted) EXPECT_EQ(sha256(data), hash);
    EXPECT_EQ(n->machine().metrics().deliveries_unexpected, 0u) << n->machine().client_id();
    EXPECT_TRUE(n->fatal.empty());
    EXPECT_TRUE(n->machine().view() == nodes[0]->machine().view()) << n->machine().client_id();
    deliveries += n->deliveries_received();
  }
  // k deliveries per fragment, not one per connected client.
  EXPECT_EQ(deliveries, 22);
  // Each in the encoding its receiver asked for: CBOR carries the fragment as bytes (its size plus
  // the fields), JSON as Base64 text.
  for (auto& n : nodes) {
    const bool cbor = n->machine().client_id() != "edge-c";
    EXPECT_GT(n->delivered_payloads().size(), 0u) << n->machine().client_id();
    for (const auto& payload : n->delivered_payloads()) {
      ASSERT_FALSE(payload.empty());
      if (cbor) {
        EXPECT_EQ(static_cast<std::uint8_t>(payload[0]) & 0xE0, 0xA0) << "a CBOR map";
        EXPECT_LT(payload.size(), static_cast<std::size_t>(fragment_size) + 300);
      } else {
        EXPECT_EQ(payload[0], '{') << "JSON for a client that did not ask for CBOR";
        EXPECT_TRUE(json::parse(payload, nullptr, false).is_object());
      }
    }
  }
  ASSERT_TRUE(eavesdropper.sync());
  for (const auto& m : eavesdropper.drain()) {
    EXPECT_NE(m.topic, topics::fragment_distribution_delivered)
        << "a Delivered reached a client that is no receiver";
    if (m.topic.rfind("mqds/ingest/chunk/", 0) == 0) {
      EXPECT_TRUE(m.payload.empty()) << "chunk content leaked";
    }
  }

  // The figures agree: one file, nothing under-replicated, nothing left in staging.
  std::map<std::string, std::string> figures;
  const std::map<std::string, std::string> expected{
      {"files", "1"},
      {"fragments", "11"},
      {"fragments/staged", "0"},
      {"fragments/under_replicated", "0"},
      {"bytes/ingested", std::to_string(content.size())},
      {"clients/registered", "3"}};
  auto all_expected = [&] {
    for (const auto& [name, value] : expected)
      if (figures[name] != value) return false;
    return true;
  };
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline && !all_expected()) {
    if (auto m = monitor.wait_for([](const Message&) { return true; }, 500ms))
      figures[m->topic.substr(std::string("$SYS/broker/mqds/").size())] = m->payload;
  }
  std::string seen;
  for (const auto& [name, value] : figures) seen += name + "=" + value + " ";
  SCOPED_TRACE("figures seen: " + seen);
  EXPECT_EQ(figures["files"], "1");
  EXPECT_EQ(figures["fragments"], "11");
  EXPECT_EQ(figures["fragments/staged"], "0");
  EXPECT_EQ(figures["fragments/under_replicated"], "0");
  EXPECT_EQ(figures["bytes/ingested"], std::to_string(content.size()));
  EXPECT_EQ(figures["clients/registered"], "3");
}

// Without TICK (per_listener_settings true in 2.0.11) nothing calls the plugin again for an
// uploader that waits for an answer: what arrived must be answered in the same callback, also
// when the uploader stops short of its window (not a multiple of the chunk size) before a whole
// fragment is pending.
TEST(PluginIngest, AnUploadCompletesWithoutTick) {
  BrokerConfig config = distribution_config();
  config.first_config_lines = {"per_listener_settings true"};
  for (auto& [key, value] : config.plugin_options) {
    if (key == "ingest_window") value = "10000";  // 2 chunks of 4096 and a remainder
    if (key == "fragment_size") value = "65536";  // no fragment completes within one window
  }
  Broker broker(config);
  ASSERT_TRUE(broker.start());
  // The plugin flushes per callback once it has seen no TICK for a second.
  std::this_thread::sleep_for(1500ms);
  Uploader uploader("uploader");
  ASSERT_TRUE(uploader.connect(broker.port()));
  const Bytes content = random_content(20 * 4096 + 77, 11);
  const Uuid id = Uuid::v4_from(9, 9);
  const auto begun = uploader.begin(id, sha256(content), content.size());
  ASSERT_TRUE(begun && begun->state == ingest::State::receiving)
      << describe(begun) << broker.where();
  EXPECT_EQ(begun->window_bytes, 10000);
  const auto result = uploader.send(id, content);
  ASSERT_TRUE(result && result->state == ingest::State::published)
      << describe(result) << broker.where();
  EXPECT_NE(broker.log().find("sends no TICK"), std::string::npos)
      << "the broker did tick: this tests nothing";
}

// An uploader that opened every upload slot and sent nothing locked every other uploader out until
// the idle timeout (600 s), and could renew its slots for ever.
TEST(PluginIngest, OneClientCannotHoldEveryUploadSlotAndItsSlotsFreeWhenItDisconnects) {
  BrokerConfig config = distribution_config();
  config.plugin_options.push_back({"ingest_uploads", "3"});
  config.plugin_options.push_back({"ingest_uploads_per_client", "2"});
  Broker broker(config);
  ASSERT_TRUE(broker.start());
  const Bytes content = random_content(3000, 21);
  auto hog = std::make_unique<Uploader>("hog");
  ASSERT_TRUE(hog->connect(broker.port()));
  for (std::uint64_t n = 1; n <= 2; ++n) {
    const auto begun = hog->begin(Uuid::v4_from(40, n), sha256(random_content(100, n)), 100);
    ASSERT_TRUE(begun && begun->state == ingest::State::receiving) << describe(begun);
  }
  const auto third = hog->begin(Uuid::v4_from(40, 3), sha256(random_content(100, 3)), 100);
  ASSERT_TRUE(third) << broker.where();
  EXPECT_EQ(third->state, ingest::State::failed);
  EXPECT_NE(third->reason.value_or("").find("the most one client may have"), std::string::npos)
      << describe(third);

  Uploader first("first");
  ASSERT_TRUE(first.connect(broker.port()));
  const Uuid first_id = Uuid::v4_from(41, 1);
  const auto begun = first.begin(first_id, sha256(content), content.size());
  ASSERT_TRUE(begun && begun->state == ingest::State::receiving) << describe(begun);
  // Every slot is taken now; the hog's go when it disconnects.
  Uploader second("second");
  ASSERT_TRUE(second.connect(broker.port()));
  const Uuid second_id = Uuid::v4_from(42, 1);
  const auto refused = second.begin(second_id, sha256(content), content.size());
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->reason.value_or("").find("too many uploads in progress"), std::string::npos)
      << describe(refused);
  hog->client().lose_connection();
  hog.reset();
  std::optional<ingest::Status> after;
  for (int attempt = 0; attempt < 50; ++attempt) {
    after = second.begin(second_id, sha256(content), content.size());
    if (after && after->state == ingest::State::receiving) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(after && after->state == ingest::State::receiving)
      << describe(after) << broker.where();
  const auto done = second.send(second_id, content);
  EXPECT_TRUE(done && done->state == ingest::State::published) << describe(done);
}

TEST(PluginIngest, AFileThatDoesNotMatchItsDeclaredHashIsRefused) {
  Broker broker(distribution_config());
  ASSERT_TRUE(broker.start());
  Uploader uploader("uploader");
  ASSERT_TRUE(uploader.connect(broker.port()));
  const Bytes content = random_content(3000, 7);
  Hash wrong = sha256(content);
  wrong.digest[0] ^= 0xFF;
  const auto begun = uploader.begin(Uuid::v4_from(3, 4), wrong, content.size());
  ASSERT_TRUE(begun) << broker.where();
  const auto result = uploader.send(Uuid::v4_from(3, 4), content);
  ASSERT_TRUE(result) << broker.where();
  EXPECT_EQ(result->state, ingest::State::failed);
  EXPECT_NE(result->reason.value_or("").find("not the declared " + wrong.to_hex()),
            std::string::npos)
      << describe(result);
}

TEST(PluginIngest, OnlyUsersNamedInTheOptionMayUpload) {
  Broker broker(distribution_config("alice"));
  ASSERT_TRUE(broker.start());
  Uploader anonymous("anonymous-uploader");
  ASSERT_TRUE(anonymous.connect(broker.port()));
  const Bytes content = random_content(100, 9);
  const int rc = anonymous.client().publish(
      ingest::topics::begin,
      ingest::encode(ingest::Begin{Uuid::v4_from(5, 6), sha256(content), 100}), 1);
  EXPECT_EQ(rc, reason::not_authorized) << describe_reason(rc);
  const auto answer = anonymous.any_status(3s);
  ASSERT_TRUE(answer) << broker.where();
  EXPECT_EQ(answer->state, ingest::State::failed);
  EXPECT_FALSE(answer->upload_id) << "a refusal names no upload";
  EXPECT_NE(answer->reason.value_or("").find("may not upload"), std::string::npos)
      << describe(answer);
}

TEST(PluginIngest, AnUploadResumesAfterABrokerRestartFromWhatWasDurable) {
  Broker broker(distribution_config());
  ASSERT_TRUE(broker.start());
  const Bytes content = random_content(40 * 1024 + 10, 11);
  const Hash hash = sha256(content);
  const Uuid id = Uuid::v4_from(7, 8);
  {
    Uploader uploader("uploader");
    ASSERT_TRUE(uploader.connect(broker.port()));
    ASSERT_TRUE(uploader.begin(id, hash, content.size()));
    const auto half = uploader.send(id, content, 20 * 1024);
    ASSERT_TRUE(half && half->state == ingest::State::receiving)
        << describe(half) << broker.where();
    uploader.client().disconnect();
  }
  std::this_thread::sleep_for(300ms);  // a TICK or two: what arrived is committed
  broker.kill9();
  ASSERT_TRUE(broker.restart());

  Uploader uploader("uploader");
  ASSERT_TRUE(uploader.connect(broker.port()));
  const auto resumed = uploader.begin(id, hash, content.size());
  ASSERT_TRUE(resumed && resumed->state == ingest::State::receiving)
      << describe(resumed) << broker.where();
  const auto offset = resumed->offset_bytes;
  EXPECT_EQ(offset % fragment_size, 0) << "resumes at a fragment boundary";
  EXPECT_GT(offset, 0) << "what was durable before the kill was kept";
  EXPECT_LE(offset, 20 * 1024);
  const auto result = uploader.send(id, content);
  ASSERT_TRUE(result && result->state == ingest::State::published)
      << describe(result) << broker.where();
  EXPECT_EQ(result->hash, hash);

  // Uploading the same file again is answered at once.
  const auto again = uploader.begin(Uuid::v4_from(9, 10), hash, content.size());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->state, ingest::State::published) << describe(again);
}

}  // namespace
}  // namespace mqds::broker_test

namespace mqds::broker_test {
namespace {

TEST(PluginDistribution, FragmentsStagedBeforeARestartAreDistributedAfterIt) {
  Broker broker(distribution_config());
  ASSERT_TRUE(broker.start());
  const Bytes content = random_content(5 * fragment_size, 99);
  const Hash hash = sha256(content);
  {
    // No torrent server yet: the file is published and its fragments wait in staging.
    Uploader uploader("uploader");
    ASSERT_TRUE(uploader.connect(broker.port()));
    ASSERT_TRUE(uploader.begin(Uuid::v4_from(11, 12), hash, content.size()));
    const auto result = uploader.send(Uuid::v4_from(11, 12), content);
    ASSERT_TRUE(result && result->state == ingest::State::published) << broker.where();
  }
  broker.kill9();
  ASSERT_TRUE(broker.restart());

  std::vector<std::unique_ptr<TorrentNode>> nodes;
  for (const char* id : {"edge-a", "edge-b"}) {
    nodes.push_back(std::make_unique<TorrentNode>(id));
    ASSERT_TRUE(nodes.back()->connect(broker.port())) << broker.where();
  }
  std::map<Hash, int> holders;
  const bool distributed = pump_until(
      nodes,
      [&] {
        holders.clear();
        for (auto& n : nodes)
          for (const auto& [fragment, data] : n->store().persisted) ++holders[fragment];
        if (holders.size() != 5) return false;
        for (const auto& [fragment, count] : holders)
          if (count != 2) return false;
        return true;
      },
      20s);
  ASSERT_TRUE(distributed) << holders.size() << " fragments persisted; " << broker.where();
  // They learned the file from their join, and can put it back together.
  const auto& file = nodes[0]->machine().view().files().at(hash);
  Bytes rebuilt;
  for (const auto& fragment : file.fragment_sequence) {
    const auto& data = nodes[0]->store().persisted.at(fragment);
    rebuilt.insert(rebuilt.end(), data.begin(), data.end());
  }
  EXPECT_EQ(rebuilt, content);
}

}  // namespace
}  // namespace mqds::broker_test
