// Torrent servers that know only the specification (tests/support/spec_server.hpp, on MQTT 3.1.1
// as the C# reference connects) against Debian's mosquitto with the tracker plugin, beside real
// mqds-edge processes: every flow of the specification, and what the tracker does for such a
// server (docs/specification.md, "Torrent servers that know only the specification").
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "support/machine_harness.hpp"
#include "spec_node.hpp"

namespace mqds::edge_test {
namespace {

using spec_only::Phase;

// Who holds each fragment in a spec-only server's view.
std::map<std::string, std::set<std::string>> holders_in(const spec_only::View& view) {
  std::map<std::string, std::set<std::string>> holders;
  for (const auto& [id, client] : view.clients)
    for (const auto& hash : client.stored) holders[hash].insert(id);
  return holders;
}

::testing::AssertionResult start_edges(const Broker& broker, const std::vector<std::string>& ids,
                                       std::vector<std::unique_ptr<EdgeProcess>>& edges) {
  for (const auto& id : ids) {
    edges.push_back(std::make_unique<EdgeProcess>(id, broker.dir()));
    if (auto started = edges.back()->start(broker.port()); !started) return started;
  }
  return ::testing::AssertionSuccess();
}

// Who really stores each fragment: what the spec-only servers keep, and what each edge's store
// holds once the edge has stopped.
std::map<std::string, std::set<std::string>> stored_by_whom(
    const std::vector<const SpecNode*>& specs, std::vector<std::unique_ptr<EdgeProcess>>& edges) {
  std::map<std::string, std::set<std::string>> stored;
  for (const SpecNode* spec : specs)
    for (const auto& [hash, data] : spec->disk().fragments) stored[hash].insert(spec->id());
  for (auto& edge : edges) {
    EXPECT_EQ(edge->terminate(), 0) << edge->id();
    for (const auto& [hash, fragment] : stored_by(*edge).stored_fragments)
      stored[hash.to_hex()].insert(edge->id());
  }
  return stored;
}

spec_only::Disk disk_with(std::int64_t fragment_bytes, const std::vector<Bytes>& fragments) {
  spec_only::Disk disk;
  disk.fragment_size = fragment_bytes;
  for (const auto& data : fragments) disk.fragments[sha256(data).to_hex()] = data;
  return disk;
}

TEST(SpecOnlyJoin, ASpecOnlyServerJoinsBesideAnEdgeAndEachSeesTheOther) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port()));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));
  SpecNode spec;
  ASSERT_TRUE(spec.start(broker.port()));
  ASSERT_TRUE(spec.wait_registered(10s)) << broker.where();
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "2"}}, 10s));
  EXPECT_TRUE(spec.view().clients.count("edge-a")) << "the Clients of its ClientJoinAccepted";
  EXPECT_TRUE(spec.view().clients.count(spec.id()));
  EXPECT_EQ(spec.counters().dropped_malformed, 0u) << "it reads every event the tracker sends";
}

// Every ClientJoinDenied a spec-only server receives carries one code of the specification's
// enumeration, which it can read.
TEST(SpecOnlyJoin, EveryKindOfDenialIsReadable) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());

  SpecNode wrong_size("00000000000000000000000000000001",
                      disk_with(fragment_size / 2, {random_content(100, 1)}));
  ASSERT_TRUE(wrong_size.start(broker.port()));
  ASSERT_TRUE(
      wrong_size.wait([](const auto& m) { return m.counters().denials == 1; }, 10s, "denied"));
  EXPECT_EQ(wrong_size.counters().last_reason_code, std::optional<std::int64_t>(1));
  EXPECT_NE(wrong_size.counters().last_reason.find("FragmentSize"), std::string::npos);

  SpecNode first("00000000000000000000000000000002", {}, "tcp://10.0.0.7:50051");
  ASSERT_TRUE(first.start(broker.port()));
  ASSERT_TRUE(first.wait_registered(10s));
  SpecNode same_endpoint("00000000000000000000000000000003", {}, "tcp://10.0.0.7:50051");
  ASSERT_TRUE(same_endpoint.start(broker.port()));
  ASSERT_TRUE(
      same_endpoint.wait([](const auto& m) { return m.counters().denials == 1; }, 10s, "denied"));
  EXPECT_EQ(same_endpoint.counters().last_reason_code, std::optional<std::int64_t>(4));

  // The reference client always says SHA256: another algorithm, from a raw client.
  Client raw("00000000000000000000000000000004", broker_test::Protocol::mqtt311);
  ASSERT_TRUE(raw.connect(broker.port()));
  ASSERT_TRUE(raw.subscribe(std::vector<std::string>{"clients/join/denied"}, 1));
  raw.publish("clients/join/requested",
              R"({"EventId":"6f1c0b8e-2f64-4d6a-9a51-0c4b7f0e9d11","HashAlgorithm":"MD5",)"
              R"("KnownFileInfos":{},"StoredFragments":{},"Endpoints":["tcp://10.0.0.8:1"]})",
              2);
  const auto denied = raw.wait_for("clients/join/denied", 5s);
  ASSERT_TRUE(denied);
  EXPECT_EQ(json::parse(denied->payload).at("ReasonCode"), 2) << denied->payload;
}

// Point 5: a spec-only server denied for a passing reason waits for a TrackerHello; the tracker
// sends it one, to it alone, once a join slot is free.
TEST(SpecOnlyJoin, DeniedBecauseTooManyJoinsAreInProgressItIsInvitedBackAndJoins) {
  BrokerConfig config = edge_config();
  config.plugin_options.push_back({"joins_in_flight", "1"});
  Broker broker(config);
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  // A board that asks and never confirms holds the one join slot for join_timeout_ms (3 s).
  Client stuck("00000000000000000000000000000009", broker_test::Protocol::mqtt311);
  ASSERT_TRUE(stuck.connect(broker.port()));
  ASSERT_TRUE(stuck.subscribe(std::vector<std::string>{"clients/join/accepted"}, 1));
  stuck.publish("clients/join/requested",
                R"({"EventId":"6f1c0b8e-2f64-4d6a-9a51-0c4b7f0e9d12","HashAlgorithm":"SHA256",)"
                R"("KnownFileInfos":{},"StoredFragments":{},"Endpoints":["tcp://10.0.0.9:1"]})",
                2);
  ASSERT_TRUE(stuck.wait_for("clients/join/accepted", 5s));

  SpecNode spec;
  ASSERT_TRUE(spec.start(broker.port()));
  ASSERT_TRUE(spec.wait([](const auto& m) { return m.counters().denials == 1; }, 5s, "denied"));
  EXPECT_EQ(spec.counters().last_reason_code, std::optional<std::int64_t>(128));
  EXPECT_EQ(spec.phase(), Phase::waiting_for_hello);
  ASSERT_TRUE(spec.wait_registered(10s)) << broker.where();
  EXPECT_EQ(spec.counters().hellos, 1u);
  // The board whose join timed out is invited back too: it did not say it retries on its own.
  ASSERT_TRUE(monitor.wait_figures({{"joins/hellos_sent", "2"}, {"clients/registered", "1"}}, 5s));
  EXPECT_TRUE(stuck.wait_for("tracker/hello", 1s)) << "the invitation goes to it, unsubscribed";
}

// Point 3: the second of two concurrent joins cannot be told of the first in its
// ClientJoinAccepted, and drops the first's ClientRegistered while it waits for its own.
TEST(SpecOnlyJoin, TwoConcurrentJoinsEachEndWithTheOtherInTheirView) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  SpecNode slow;
  ASSERT_TRUE(slow.start(broker.port(), /*paused=*/true));  // its Accepted waits unread
  ASSERT_TRUE(monitor.wait_figures({{"joins/in_flight", "1"}}, 5s));
  SpecNode quick;
  ASSERT_TRUE(quick.start(broker.port()));
  ASSERT_TRUE(quick.wait_registered(10s));
  EXPECT_FALSE(quick.view().clients.count(slow.id())) << "its join was still open";
  slow.resume();
  ASSERT_TRUE(slow.wait_registered(10s)) << broker.where();
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "2"}}, 5s));
  // The ClientRegistered it dropped is sent again, to it alone, right after its own.
  EXPECT_TRUE(slow.wait([&](const auto& m) { return m.view().clients.count(quick.id()) == 1; }, 5s,
                        "told of the server that registered during its join"));
  ASSERT_TRUE(quick.wait([&](const auto& m) { return m.view().clients.count(slow.id()) == 1; }, 5s,
                         "told of the other"));
  EXPECT_GE(slow.counters().dropped_unregistered, 1u) << "the original did arrive, and was dropped";
}

// Point 4: a server that joins while fragments are being distributed drops the Ended that arrive
// before its registration; its view must still end equal to the service's.
TEST(SpecOnlyDistribution, AServerJoiningDuringADistributionMissesNoPlacement) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  std::vector<std::unique_ptr<EdgeProcess>> edges;
  ASSERT_TRUE(start_edges(broker, {"edge-a", "edge-b"}, edges));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "2"}}, 10s));
  const Bytes content = random_content(30 * fragment_size, 5);
  const auto file = mqds::testing::cut_file(content, fragment_size);
  SpecNode spec;
  ASSERT_TRUE(spec.start(broker.port(), /*paused=*/true));
  ASSERT_TRUE(monitor.wait_figures({{"joins/in_flight", "1"}}, 5s));
  ASSERT_TRUE(put(broker.port(), content)) << broker.where();
  // The distribution goes on while the server's join is open.
  ASSERT_TRUE(monitor.wait_figures({{"fragments", "30"}}, 20s));
  spec.resume();
  ASSERT_TRUE(spec.wait_registered(10s)) << broker.where();
  ASSERT_TRUE(wait_distributed(monitor, 30, 60s)) << broker.where();
  for (auto& edge : edges) ASSERT_TRUE(wait_settled(*edge));
  std::this_thread::sleep_for(500ms);  // the last Ended reach it
  const spec_only::View view = spec.view();
  EXPECT_GE(spec.counters().dropped_unregistered, 1u)
      << "events did arrive before its registration";

  const auto stored = stored_by_whom({&spec}, edges);
  EXPECT_EQ(holders_in(view), stored) << "its view is the service's, placement for placement";
  EXPECT_TRUE(view.files.count(file.hash.to_hex()));
  EXPECT_EQ(view.fragments.size(), 30u);
}

TEST(SpecOnlyLeave, GoodbyeAndALostConnectionAreAnnouncedWithTheServersId) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  SpecNode leaving;
  SpecNode lost;
  ASSERT_TRUE(leaving.start(broker.port()));
  ASSERT_TRUE(lost.start(broker.port()));
  ASSERT_TRUE(leaving.wait_registered(10s));
  ASSERT_TRUE(lost.wait_registered(10s));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "2"}}, 5s));
  leaving.say_goodbye();
  const auto said = monitor.wait_event(
      "clients/goodbye",
      [&](const json& e) { return e.value("ClientIdentifier", "") == leaving.id(); }, 5s);
  EXPECT_TRUE(said) << "the tracker stamps who said goodbye";
  lost.lose_connection();
  const auto announced = monitor.wait_event(
      "clients/goodbye",
      [&](const json& e) { return e.value("ClientIdentifier", "") == lost.id(); }, 10s);
  EXPECT_TRUE(announced) << "the tracker announces a server lost without goodbye";
  EXPECT_TRUE(monitor.wait_figures({{"clients/registered", "0"}, {"clients/lost", "1"}}, 5s));
}

// Point 2: the specification keeps RemoveFragmentInfos for conflicts; a fragment no file references
// is kept. After a broker restart the server, which never reconnects, comes back as a new client
// on the same data, and what it holds is counted again.
TEST(SpecOnlyRestart, OrphansAreKeptAndAServerBackAfterABrokerRestartBringsItsFragments) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  const Bytes orphan = random_content(100, 9);
  auto first = std::make_unique<SpecNode>(spec_client_id(), disk_with(fragment_size, {orphan}));
  ASSERT_TRUE(first->start(broker.port()));
  ASSERT_TRUE(first->wait_registered(10s)) << broker.where();
  EXPECT_EQ(first->disk().fragments.count(sha256(orphan).to_hex()), 1u) << "not deleted";
  EXPECT_TRUE(first->view().fragments.count(sha256(orphan).to_hex()));
  ASSERT_TRUE(monitor.wait_figures({{"fragments", "1"}, {"fragments/under_replicated", "0"}}, 5s));

  const Bytes content = random_content(4 * fragment_size, 10);
  ASSERT_TRUE(put(broker.port(), content)) << broker.where();
  EXPECT_TRUE(first->wait([](const auto& m) { return m.disk().fragments.size() == 5; }, 30s,
                          "given every fragment (it is the only server)"));
  const spec_only::Disk disk = first->disk();
  first->lose_connection();
  first.reset();

  ASSERT_TRUE(broker.restart());
  Monitor after(broker.port());
  SpecNode again(spec_client_id(), disk);
  ASSERT_TRUE(again.start(broker.port()));
  ASSERT_TRUE(again.wait_registered(10s)) << broker.where();
  EXPECT_EQ(again.disk().fragments.size(), 5u);
  ASSERT_TRUE(after.wait_figures({{"clients/registered", "1"}, {"fragments", "5"}}, 5s));
}

// A fleet of spec-only servers and mqds-edges: a file reaches k of them, and every copy is where
// the views say.
TEST(SpecOnlyDistribution, AFleetMixingSpecOnlyServersAndEdgesStoresEveryFragmentKTimes) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  std::vector<std::unique_ptr<EdgeProcess>> edges;
  ASSERT_TRUE(start_edges(broker, {"edge-a", "edge-b"}, edges));
  std::vector<std::unique_ptr<SpecNode>> specs;
  for (int i = 0; i < 2; ++i) {
    specs.push_back(std::make_unique<SpecNode>());
    ASSERT_TRUE(specs.back()->start(broker.port()));
  }
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "4"}}, 10s));
  const Bytes content = random_content(24 * fragment_size - 100, 11);
  const auto file = mqds::testing::cut_file(content, fragment_size);
  ASSERT_TRUE(put(broker.port(), content)) << broker.where();
  ASSERT_TRUE(wait_distributed(monitor, 24, 90s)) << broker.where();
  for (auto& edge : edges) ASSERT_TRUE(wait_settled(*edge));
  std::this_thread::sleep_for(500ms);  // the last Ended reach the spec-only servers

  std::vector<spec_only::View> views;
  std::vector<const SpecNode*> spec_nodes;
  for (auto& spec : specs) {
    for (const auto& [hash, data] : spec->disk().fragments)
      EXPECT_EQ(sha256(data).to_hex(), hash) << "a copy that is not its fragment";
    views.push_back(spec->view());
    spec_nodes.push_back(spec.get());
  }
  auto stored = stored_by_whom(spec_nodes, edges);
  ASSERT_EQ(stored.size(), 24u);
  for (const auto& fragment : file.fragments)
    EXPECT_EQ(stored[fragment.hash.to_hex()].size(), 2u) << fragment.hash.to_hex();
  for (const auto& view : views) EXPECT_EQ(holders_in(view), stored);
  std::size_t held_by_specs = 0;
  for (auto& spec : specs) held_by_specs += spec->disk().fragments.size();
  EXPECT_GT(held_by_specs, 0u) << "placement gave the spec-only servers their share";
}

}  // namespace
}  // namespace mqds::edge_test
