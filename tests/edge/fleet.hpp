// A fleet for the repair, trimming and rebalancing tests: Debian's mosquitto with the tracker
// plugin (k = 2) and mqds-edge processes edge-a, edge-b, ..., one file put through `mqds put`, and
// what the tracker says of it through `mqds status` and `mqds ls`.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "edge_process.hpp"
#include "fixtures.hpp"
#include "support/machine_harness.hpp"

namespace mqds::edge_test {

inline constexpr std::size_t fleet_replicas = 2;

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline std::uint64_t value_of(const std::map<std::string, std::string>& figures,
                              const std::string& name) {
  return Monitor::figure_in(figures, name).value_or(0);
}

class Fleet : public ::testing::Test {
 protected:
  void start_broker(std::int64_t fragment_bytes, std::int64_t repair_delay_ms) {
    fragment_bytes_ = fragment_bytes;
    BrokerConfig config = edge_config(fragment_bytes, static_cast<int>(fleet_replicas));
    config.plugin_options.emplace_back("repair_delay_ms", std::to_string(repair_delay_ms));
    broker = std::make_unique<Broker>(config);
    ASSERT_TRUE(broker->start());
    monitor = std::make_unique<Monitor>(broker->port());
  }

  // Starts `count` more edges, each with `edge_args` besides the usual flags, and waits until all
  // are registered.
  void add_edges(std::size_t count, const std::vector<std::string>& edge_args = {}) {
    for (std::size_t i = 0; i < count; ++i) {
      const auto n = edges.size();
      edges.push_back(std::make_unique<EdgeProcess>(
          "edge-" + std::string(1, static_cast<char>('a' + n)), broker->dir()));
      ASSERT_TRUE(edges.back()->start(broker->port(), edge_args));
    }
    ASSERT_TRUE(monitor->wait_figures({{"clients/registered", std::to_string(edges.size())}}, 30s));
  }

  // Puts `fragments` whole fragments of random content and waits until each has k holders.
  void put_file(std::size_t fragments, std::uint64_t seed) {
    content = random_content(fragments * static_cast<std::size_t>(fragment_bytes_), seed);
    file = testing::cut_file(content, fragment_bytes_);
    ASSERT_EQ(file.fragments.size(), fragments);
    ASSERT_TRUE(put(broker->port(), content)) << broker->where();
    ASSERT_TRUE(wait_distributed(*monitor, fragments, 120s)) << broker->where();
    for (auto& edge : edges) ASSERT_TRUE(wait_settled(*edge));
  }

  Completed mqds(std::vector<std::string> args) {
    args.insert(args.begin(), {"-p", std::to_string(broker->port())});
    return run_mqds(args);
  }

  // The tracker's view, from `mqds status`: each registered client and the fragments it holds.
  std::map<std::string, int> fragments_per_client() {
    std::map<std::string, int> out;
    const auto status = mqds({"status", "--json"});
    EXPECT_EQ(status.status, 0) << status.err;
    const json state = json::parse(status.out, nullptr, false);
    if (!state.is_object() || !state.contains("Clients")) {
      ADD_FAILURE() << "mqds status --json: " << status.out;
      return out;
    }
    for (const auto& c : state["Clients"])
      out[c.value("ClientIdentifier", "")] = c.value("Fragments", 0);
    return out;
  }

  // The fewest registered holders of any fragment of the file, from `mqds ls`.
  int replicas_present() {
    const auto ls = mqds({"ls", "--json"});
    EXPECT_EQ(ls.status, 0) << ls.err;
    const json files = json::parse(ls.out, nullptr, false);
    if (!files.is_array() || files.size() != 1) {
      ADD_FAILURE() << "mqds ls --json: " << ls.out;
      return -1;
    }
    return files[0].value("ReplicasPresent", -1);
  }

  std::int64_t fragment_bytes_ = fragment_size;
  std::unique_ptr<Broker> broker;
  std::unique_ptr<Monitor> monitor;
  std::vector<std::unique_ptr<EdgeProcess>> edges;
  Bytes content;
  testing::TestFile file;
};

}  // namespace mqds::edge_test
