// Repair with real processes: Debian's mosquitto with the tracker plugin, five mqds-edge processes
// and k = 2. A board that dies for good has its fragments fetched back from the surviving copies
// and copied to new holders once plugin_opt_repair_delay_ms has passed; one that comes back
// within the delay sets off nothing; one that comes back without its copies has them repaired at
// once, and so has a copy a running one finds corrupt when it scrubs its store. Each test checks
// what the edges really store, and that `mqds get` returns the file. An operator follows it all
// with `mqds status` (the edge away, the repairs) and `mqds ls` (the fragments short).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "fleet.hpp"

namespace mqds::edge_test {
namespace {

constexpr std::size_t replicas = fleet_replicas;

// A broker with the plugin (k = 2, the given repair delay) and `count` edges, all registered.
class Repair : public Fleet {
 protected:
  // `edge_args`: flags every edge is started with besides the usual ones.
  void start(std::int64_t repair_delay_ms, std::size_t count,
             const std::vector<std::string>& edge_args = {}) {
    start_broker(fragment_size, repair_delay_ms);
    add_edges(count, edge_args);
  }

  json query_json(const std::vector<std::string>& command) {
    auto args = command;
    args.push_back("--json");
    const auto done = mqds(args);
    EXPECT_EQ(done.status, 0) << done.err;
    const json out = json::parse(done.out, nullptr, false);
    EXPECT_FALSE(out.is_discarded()) << command[0] << ": " << done.out;
    return out;
  }

  // The one file's entry of `mqds ls --json`.
  json listed_file() {
    const json files = query_json({"ls"});
    if (!files.is_array() || files.size() != 1) {
      ADD_FAILURE() << "mqds ls --json: " << files.dump();
      return json::object();
    }
    return files[0];
  }

  // `mqds get` returns the file byte for byte.
  void expect_get_returns_the_file() {
    const std::string out = broker->dir() + "/output.bin";
    const auto done = mqds({"get", file.hash.to_hex(), "-o", out});
    ASSERT_EQ(done.status, 0) << done.err;
    EXPECT_TRUE(read_all(out) == std::string(content.begin(), content.end())) << "the bytes differ";
  }

  // Stops the running edges and counts, from their stores, how many hold each fragment: exactly
  // k for every fragment of the file, nothing temporary, nothing corrupt.
  void expect_stores_hold_k_copies_each() {
    std::map<Hash, std::size_t> holders;
    for (auto& edge : edges) {
      if (!edge->running()) continue;
      ASSERT_TRUE(wait_settled(*edge));
      ASSERT_EQ(edge->terminate(), 0) << edge->id();
      IntegrityReport report;
      const auto snapshot = stored_by(*edge, &report);
      EXPECT_EQ(report.dropped_corrupt + report.dropped_unknown, 0u) << edge->id();
      EXPECT_TRUE(snapshot.temporary_fragments.empty()) << edge->id() << " kept temporary copies";
      for (const auto& [hash, fragment] : snapshot.stored_fragments) ++holders[hash];
    }
    EXPECT_EQ(holders.size(), file.fragments.size());
    for (const auto& f : file.fragments) EXPECT_EQ(holders[f.hash], replicas) << f.hash.to_hex();
  }
};

TEST_F(Repair, AnEdgeThatDiesForGoodHasItsFragmentsCopiedBackToKHolders) {
  constexpr std::size_t fragments = 48;
  start(3'000, 5);
  put_file(fragments, 21);
  ASSERT_TRUE(monitor->wait_figures({{"repairs/started", "0"}, {"repairs/in_flight", "0"}}, 5s))
      << "nothing to repair while every fragment has its copies";
  const auto before = fragments_per_client();
  ASSERT_EQ(before.size(), 5u);
  const std::string victim_id = edges[0]->id();
  const int victim_fragments = before.at(victim_id);
  ASSERT_GT(victim_fragments, 0) << "placement gave " << victim_id << " nothing to lose";

  // kill -9, and its disk is gone: it never returns.
  edges[0]->kill9();
  std::filesystem::remove_all(edges[0]->data_dir());
  const auto killed = Clock::now();
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "4"}, {"clients/lost", "1"}}, 10s));

  // Its copies count for the repair delay, then every fragment it held is fetched from the other
  // holder and delivered to a new one.
  ASSERT_TRUE(monitor->wait_until(
      [&](const auto& f) {
        return value_of(f, "repairs/ended") >= static_cast<std::uint64_t>(victim_fragments) &&
               f.count("fragments/under_replicated") && f.at("fragments/under_replicated") == "0" &&
               f.count("repairs/in_flight") && f.at("repairs/in_flight") == "0" &&
               f.count("distributions/in_flight") && f.at("distributions/in_flight") == "0";
      },
      60s, "every fragment back to k holders"))
      << broker->where();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed);
  std::printf(
      "[ repair   ] %d fragments of %s repaired %lld ms after its kill -9 (repair delay "
      "3000 ms)\n",
      victim_fragments, victim_id.c_str(), static_cast<long long>(took.count()));
  RecordProperty("repair_ms", static_cast<int>(took.count()));

  const auto started = monitor->figure("repairs/started").value_or(0);
  EXPECT_GE(started, static_cast<std::uint64_t>(victim_fragments));
  EXPECT_GE(monitor->figure("bytes/repaired").value_or(0),
            static_cast<std::uint64_t>(victim_fragments) * fragment_size);
  EXPECT_GE(monitor->figure("bytes/repair_fetched").value_or(0),
            static_cast<std::uint64_t>(victim_fragments) * fragment_size);
  EXPECT_EQ(monitor->figure("fragments/unavailable"), 0u);
  EXPECT_EQ(monitor->figure("clients/away"), 0u)
      << "an edge away longer than the delay no longer counts as away";

  // The tracker's view: every fragment has k registered holders, 2 * 48 copies on the 4 edges.
  EXPECT_EQ(replicas_present(), static_cast<int>(replicas));
  const auto after = fragments_per_client();
  EXPECT_EQ(after.size(), 4u);
  EXPECT_FALSE(after.count(victim_id));
  int copies = 0;
  for (const auto& [id, held] : after) copies += held;
  EXPECT_EQ(copies, static_cast<int>(replicas * fragments));

  expect_get_returns_the_file();
  edges.erase(edges.begin());  // its process and disk are gone
  expect_stores_hold_k_copies_each();
}

TEST_F(Repair, OperatorsSeeTheEdgeAwayAndTheFragmentsShortUntilTheyAreRepaired) {
  constexpr std::size_t fragments = 12;
  // Long enough for the commands to look while the edge counts as away, short for the test.
  constexpr std::int64_t delay_ms = 8'000;
  start(delay_ms, 3);
  put_file(fragments, 24);
  json entry = listed_file();
  EXPECT_EQ(entry.value("FragmentsUnderReplicated", -1), 0) << entry.dump();
  EXPECT_EQ(entry.value("FragmentsUnavailable", -1), 0) << entry.dump();
  json status = query_json({"status"});
  EXPECT_EQ(status.value("Away", json(nullptr)), json::array()) << status.dump();
  ASSERT_TRUE(status["Repair"].is_object()) << status.dump();
  EXPECT_EQ(status["Repair"].value("Started", -1), 0) << status.dump();
  EXPECT_EQ(status["Repair"].value("DelayMs", -1), delay_ms);

  const std::string victim_id = edges[0]->id();
  const int held = fragments_per_client().at(victim_id);
  ASSERT_GT(held, 0) << "placement gave " << victim_id << " nothing to lose";
  edges[0]->kill9();
  std::filesystem::remove_all(edges[0]->data_dir());
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "2"}, {"clients/lost", "1"}}, 10s));

  // Within the delay: the edge is away, and what it held is short, with a copy away, readable.
  status = query_json({"status"});
  ASSERT_EQ(status["Away"].size(), 1u) << status.dump();
  const json away = status["Away"][0];
  EXPECT_EQ(away.value("ClientIdentifier", ""), victim_id);
  EXPECT_EQ(away.value("Fragments", -1), held);
  EXPECT_GE(away.value("AwayMs", -1), 0);
  EXPECT_LT(away.value("AwayMs", delay_ms), delay_ms);
  EXPECT_GT(away.value("CountsForMs", 0), 0);
  EXPECT_EQ(away.value("Since", "").size(), std::string("2026-11-29T20:31:05Z").size())
      << away.dump();
  EXPECT_EQ(status["Repair"].value("FragmentsUnderReplicated", -1), held) << status.dump();
  entry = listed_file();
  EXPECT_EQ(entry.value("ReplicasPresent", -1), 1) << entry.dump();
  EXPECT_EQ(entry.value("FragmentsUnderReplicated", -1), held) << entry.dump();
  EXPECT_EQ(entry.value("FragmentsShortHeldAway", -1), held) << entry.dump();
  EXPECT_EQ(entry.value("FragmentsUnavailable", -1), 0) << entry.dump();
  // The tables say the same.
  const auto status_table = mqds({"status"});
  EXPECT_NE(status_table.out.find("AWAY"), std::string::npos) << status_table.out;
  EXPECT_NE(status_table.out.find("1 edge away"), std::string::npos) << status_table.out;
  EXPECT_NE(status_table.out.find(victim_id), std::string::npos) << status_table.out;
  const auto ls_table = mqds({"ls"});
  EXPECT_NE(ls_table.out.find(std::to_string(held) + " (" + std::to_string(held) + " away)"),
            std::string::npos)
      << ls_table.out;
  EXPECT_NE(ls_table.out.find("1 file at risk"), std::string::npos) << ls_table.out;
  std::printf("[ repair   ] while %s is away:\n%s\n%s", victim_id.c_str(), ls_table.out.c_str(),
              status_table.out.c_str());

  // Past the delay its fragments are copied again; then nothing is short and nobody away.
  ASSERT_TRUE(monitor->wait_until(
      [&](const auto& f) {
        return value_of(f, "repairs/ended") >= static_cast<std::uint64_t>(held) &&
               f.count("fragments/under_replicated") && f.at("fragments/under_replicated") == "0" &&
               f.count("repairs/in_flight") && f.at("repairs/in_flight") == "0";
      },
      60s, "every fragment back to k holders"))
      << broker->where();
  entry = listed_file();
  EXPECT_EQ(entry.value("ReplicasPresent", -1), static_cast<int>(replicas)) << entry.dump();
  EXPECT_EQ(entry.value("FragmentsUnderReplicated", -1), 0) << entry.dump();
  EXPECT_EQ(entry.value("FragmentsShortHeldAway", -1), 0) << entry.dump();
  EXPECT_EQ(entry.value("FragmentsUnavailable", -1), 0) << entry.dump();
  status = query_json({"status"});
  EXPECT_EQ(status.value("Away", json(nullptr)), json::array()) << status.dump();
  EXPECT_GE(status["Repair"].value("Ended", -1), held) << status.dump();
  EXPECT_EQ(status["Repair"].value("InFlight", -1), 0) << status.dump();
  EXPECT_EQ(status["Repair"].value("FragmentsUnderReplicated", -1), 0) << status.dump();
  const auto after = mqds({"status"});
  EXPECT_NE(after.out.find("no edge is away"), std::string::npos) << after.out;
  EXPECT_NE(after.out.find("0 in flight"), std::string::npos) << after.out;
  EXPECT_EQ(mqds({"ls"}).out.find("at risk"), std::string::npos);
  expect_get_returns_the_file();
}

TEST_F(Repair, AnEdgeBackWithinTheDelaySetsOffNoRepair) {
  constexpr std::size_t fragments = 24;
  start(20'000, 5);
  put_file(fragments, 22);
  const auto before = fragments_per_client();
  const std::string id = edges[1]->id();
  const int held = before.at(id);
  ASSERT_GT(held, 0);

  edges[1]->kill9();
  ASSERT_TRUE(monitor->wait_figures(
      {{"clients/registered", "4"}, {"clients/lost", "1"}, {"clients/away", "1"}}, 10s));
  // Long enough for the tracker to have looked for repairs (it does at once when a client
  // leaves), well within the delay.
  std::this_thread::sleep_for(3s);
  ASSERT_TRUE(edges[1]->start(broker->port()));
  ASSERT_TRUE(edges[1]->wait_log("registered with", 20s));
  ASSERT_TRUE(monitor->wait_figures(
      {{"clients/registered", "5"}, {"clients/away", "0"}, {"fragments/under_replicated", "0"}},
      20s));
  // It came back with its copies, and nobody was asked for any.
  const auto after = fragments_per_client();
  EXPECT_EQ(after.at(id), held) << id << " re-registered with other copies";
  EXPECT_EQ(after, before);
  EXPECT_EQ(monitor->figure("repairs/started"), 0u);
  EXPECT_EQ(monitor->figure("bytes/repair_fetched"), 0u);
  EXPECT_EQ(replicas_present(), static_cast<int>(replicas));
  // Nor later: its absence no longer counts once it is back. (A repair set off by its return
  // would show within a scan interval and a loop pass.)
  std::this_thread::sleep_for(2s);
  monitor->refresh();
  EXPECT_EQ(monitor->figure("repairs/started"), 0u);
  expect_get_returns_the_file();
  expect_stores_hold_k_copies_each();
}

TEST_F(Repair, AnEdgeBackWithoutItsCopiesHasThemRepairedAtOnce) {
  constexpr std::size_t fragments = 24;
  // Far longer than the test's bounds: a repair it sees is not the delay's.
  constexpr std::int64_t delay_ms = 600'000;
  start(delay_ms, 5);
  put_file(fragments, 23);
  const auto before = fragments_per_client();
  const std::string id = edges[2]->id();
  const int held = before.at(id);
  ASSERT_GT(held, 0);

  // Stopped (goodbye), its disk wiped while it is down, then started again under the same id.
  ASSERT_EQ(edges[2]->terminate(), 0);
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "4"}, {"clients/away", "1"}}, 10s));
  std::filesystem::remove_all(edges[2]->data_dir());
  const auto back = Clock::now();
  ASSERT_TRUE(edges[2]->start(broker->port()));
  ASSERT_TRUE(monitor->wait_until(
      [&](const auto& f) {
        return value_of(f, "repairs/ended") >= static_cast<std::uint64_t>(held) &&
               f.count("fragments/under_replicated") && f.at("fragments/under_replicated") == "0" &&
               f.count("repairs/in_flight") && f.at("repairs/in_flight") == "0" &&
               f.count("clients/registered") && f.at("clients/registered") == "5";
      },
      60s, "the copies it lost repaired"))
      << broker->where();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - back);
  std::printf(
      "[ repair   ] %d fragments %s lost repaired %lld ms after it came back empty "
      "(repair delay %lld ms)\n",
      held, id.c_str(), static_cast<long long>(took.count()), static_cast<long long>(delay_ms));
  EXPECT_LT(took.count(), delay_ms);
  EXPECT_GE(monitor->figure("repairs/started").value_or(0), static_cast<std::uint64_t>(held));
  EXPECT_EQ(monitor->figure("clients/away"), 0u);
  EXPECT_EQ(replicas_present(), static_cast<int>(replicas));
  int copies = 0;
  for (const auto& [client, count] : fragments_per_client()) copies += count;
  EXPECT_EQ(copies, static_cast<int>(replicas * fragments));
  expect_get_returns_the_file();
  expect_stores_hold_k_copies_each();
}

// Bit rot under a running board, found by its background scrub rather than by a read: the copy is
// deleted, the rejoin tells the tracker at once, and the tracker repairs the fragment from the
// other holder without waiting for the repair delay (no board went away). Every edge scrubs its
// whole store every 2 s.
TEST_F(Repair, ACopyCorruptedUnderARunningEdgeIsFoundByTheScrubAndRepaired) {
  constexpr std::size_t fragments = 16;
  // Far longer than the test's bounds: a repair it sees is not the delay's.
  constexpr std::int64_t delay_ms = 600'000;
  constexpr std::chrono::milliseconds scrub_interval = 2s;
  start(delay_ms, 3, {"--scrub-interval", "2s"});
  put_file(fragments, 24);
  EdgeProcess& holder = *edges[0];
  ASSERT_TRUE(holder.wait_log("scrub: every stored fragment verified again once every", 1s));

  // A fragment the first edge holds, found by reading its store alongside it.
  const testing::TestFragment* victim = nullptr;
  {
    EdgeStore store(holder.data_dir(), std::size_t{1} << 32);
    for (const auto& f : file.fragments)
      if (!victim && store.read_fragment(f.hash, [](std::span<const std::uint8_t>) {}) ==
                         EdgeStore::ReadResult::ok)
        victim = &f;
  }
  ASSERT_NE(victim, nullptr) << "placement gave " << holder.id() << " nothing";
  const std::string hex = victim->hash.to_hex();
  ASSERT_TRUE(monitor->wait_figures({{"repairs/started", "0"}}, 5s));

  // LMDB maps data.mdb shared: the running edge reads the flipped byte on its next pass.
  ASSERT_TRUE(corrupt_on_disk(holder.data_dir(), victim->data));
  const auto corrupted = Clock::now();
  ASSERT_TRUE(
      holder.wait_log("scrub: the stored copy of " + hex + " is corrupt", 3 * scrub_interval))
      << "not found within about one interval";
  const auto found_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - corrupted).count();
  EXPECT_TRUE(holder.wait_log("lost the local copy of " + hex + "; joining again", 1s));

  ASSERT_TRUE(monitor->wait_until(
      [&](const auto& f) {
        return value_of(f, "repairs/ended") >= 1 && f.count("fragments/under_replicated") &&
               f.at("fragments/under_replicated") == "0" && f.count("repairs/in_flight") &&
               f.at("repairs/in_flight") == "0" && f.count("distributions/in_flight") &&
               f.at("distributions/in_flight") == "0";
      },
      30s, "the corrupt copy repaired"))
      << broker->where();
  const auto repaired_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - corrupted).count();
  std::printf(
      "[ scrub    ] a copy corrupted under %s found by its scrub after %lld ms (interval %lld ms), "
      "repaired %lld ms after the corruption\n",
      holder.id().c_str(), static_cast<long long>(found_ms),
      static_cast<long long>(scrub_interval.count()), static_cast<long long>(repaired_ms));
  RecordProperty("scrub_found_ms", static_cast<int>(found_ms));
  RecordProperty("scrub_repaired_ms", static_cast<int>(repaired_ms));
  EXPECT_LT(repaired_ms, delay_ms);
  EXPECT_GE(monitor->figure("repairs/started").value_or(0), 1u);
  EXPECT_EQ(monitor->figure("fragments/unavailable"), 0u);

  // The tracker's view: k holders again, k copies of each fragment in all.
  EXPECT_EQ(replicas_present(), static_cast<int>(replicas));
  int copies = 0;
  for (const auto& [client, count] : fragments_per_client()) copies += count;
  EXPECT_EQ(copies, static_cast<int>(replicas * fragments));
  expect_get_returns_the_file();
  // It goes on scrubbing: a whole pass after the corruption finds nothing more.
  EXPECT_TRUE(holder.wait_log("0 corrupt, 1 since start", 3 * scrub_interval));
  EXPECT_EQ(holder.log_count("is corrupt (its content hashes to"), 1u);
  expect_stores_hold_k_copies_each();
}

}  // namespace
}  // namespace mqds::edge_test
