// mqds, the command line, as a process against Debian's mosquitto with the tracker plugin and three
// mqds-edge processes: put, distribution to k edges, get (also after a kill -9 of an edge and with
// a corrupt copy), resuming, ls and status, and the failures a person must understand.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "edge_process.hpp"
#include "fixtures.hpp"
#include "support/machine_harness.hpp"

namespace mqds::edge_test {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const Bytes& data) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

std::string last_line(const std::string& text) {
  std::string trimmed = text;
  while (!trimmed.empty() && trimmed.back() == '\n') trimmed.pop_back();
  return trimmed.substr(trimmed.rfind('\n') == std::string::npos ? 0 : trimmed.rfind('\n') + 1);
}

// A broker with the plugin and three edges, k = 2, and mqds pointed at it.
class Service : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(broker.start());
    monitor = std::make_unique<Monitor>(broker.port());
    for (const char* id : {"edge-a", "edge-b", "edge-c"}) {
      edges.push_back(std::make_unique<EdgeProcess>(id, broker.dir()));
      ASSERT_TRUE(edges.back()->start(broker.port()));
    }
    ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "3"}}, 10s));
  }

  Completed mqds(std::vector<std::string> args) {
    args.insert(args.begin(), {"-p", std::to_string(broker.port())});
    return run_mqds(args);
  }

  // Writes content to a file and puts it; the hash mqds printed.
  std::string put(const Bytes& content, const std::string& name = "input.bin") {
    const std::string path = broker.dir() + "/" + name;
    write_all(path, content);
    const auto done = mqds({"put", path});
    EXPECT_EQ(done.status, 0) << done.err;
    return last_line(done.out);
  }

  Broker broker{edge_config()};
  std::unique_ptr<Monitor> monitor;
  std::vector<std::unique_ptr<EdgeProcess>> edges;
};

TEST_F(Service, PutPrintsTheHashLastAndReturnsOnceEveryFragmentHasKReplicas) {
  const Bytes content = random_content(30 * fragment_size + 77, 11);
  const std::string path = broker.dir() + "/input.bin";
  write_all(path, content);
  const auto done = mqds({"put", path});
  ASSERT_EQ(done.status, 0) << done.err;
  EXPECT_EQ(last_line(done.out), sha256(content).to_hex());
  EXPECT_NE(done.err.find("uploading: 100 %"), std::string::npos) << done.err;
  EXPECT_NE(done.err.find("every one of the 31 fragments is stored on 2 edges"), std::string::npos)
      << done.err;
  // Nothing is short the moment put returns.
  const auto ls = mqds({"ls", "--json"});
  ASSERT_EQ(ls.status, 0) << ls.err;
  const json files = json::parse(ls.out, nullptr, false);
  ASSERT_TRUE(files.is_array() && files.size() == 1) << ls.out;
  EXPECT_EQ(files[0].value("Hash", ""), sha256(content).to_hex());
  EXPECT_EQ(files[0].value("Size", 0), static_cast<int>(content.size()));
  EXPECT_EQ(files[0].value("Fragments", 0), 31);
  EXPECT_EQ(files[0].value("ReplicasPresent", 0), 2);
  EXPECT_EQ(files[0].value("ReplicasDesired", 0), 2);
  const auto status = mqds({"status", "--json"});
  ASSERT_EQ(status.status, 0) << status.err;
  const json state = json::parse(status.out, nullptr, false);
  ASSERT_TRUE(state.is_object()) << status.out;
  int stored = 0;
  for (const auto& c : state["Clients"]) stored += c.value("Fragments", 0);
  EXPECT_EQ(stored, 62) << "k copies of each of the 31 fragments";
  EXPECT_EQ(state["Clients"].size(), 3u);
  // The tables for people say the same.
  const auto table = mqds({"ls"});
  EXPECT_NE(table.out.find(sha256(content).to_hex()), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("2/2"), std::string::npos) << table.out;
  const auto clients = mqds({"status"});
  EXPECT_NE(clients.out.find("edge-b"), std::string::npos) << clients.out;
  EXPECT_NE(clients.out.find("3 clients registered"), std::string::npos) << clients.out;
}

TEST_F(Service, GetReturnsTheIdenticalBytes) {
  const Bytes content = random_content(20 * fragment_size + 5, 12);
  const std::string hash = put(content);
  const std::string out = broker.dir() + "/output.bin";
  const auto done = mqds({"get", hash, "-o", out});
  ASSERT_EQ(done.status, 0) << done.err;
  EXPECT_TRUE(read_all(out) == std::string(content.begin(), content.end())) << "the bytes differ";
  EXPECT_FALSE(std::filesystem::exists(out + ".part"));
}

TEST_F(Service, GetStillWorksAfterAnEdgeIsKilledWithKill9) {
  const Bytes content = random_content(20 * fragment_size, 13);
  const std::string hash = put(content);
  edges[1]->kill9();
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "2"}}, 5s));
  const std::string out = broker.dir() + "/output.bin";
  const auto done = mqds({"get", hash, "-o", out});
  ASSERT_EQ(done.status, 0) << done.err;
  EXPECT_TRUE(read_all(out) == std::string(content.begin(), content.end()));
}

TEST_F(Service, GetFallsBackToAnotherHolderWhenACopyIsCorrupt) {
  const Bytes content = random_content(6 * fragment_size, 14);
  const auto file = testing::cut_file(content, fragment_size);
  const std::string hash = put(content);
  for (auto& edge : edges) ASSERT_TRUE(wait_settled(*edge));
  // Every copy on edge-a is corrupted under it; the other holders serve those fragments.
  for (const auto& f : file.fragments) corrupt_on_disk(edges[0]->data_dir(), f.data);
  const std::string out = broker.dir() + "/output.bin";
  const auto done = mqds({"get", hash, "-o", out});
  ASSERT_EQ(done.status, 0) << done.err;
  EXPECT_TRUE(read_all(out) == std::string(content.begin(), content.end()));
}

TEST_F(Service, GetResumesFromWhatAnEarlierGetLeft) {
  const Bytes content = random_content(10 * fragment_size, 15);
  const std::string hash = put(content);
  const std::string out = broker.dir() + "/output.bin";
  // What an interrupted get leaves: the first half in place, the rest not yet written.
  Bytes partial(content.begin(), content.begin() + 5 * fragment_size);
  partial.resize(content.size(), 0);
  write_all(out + ".part", partial);
  const auto done = mqds({"get", hash, "-o", out});
  ASSERT_EQ(done.status, 0) << done.err;
  EXPECT_NE(done.err.find("resuming: 80.0 KiB already in"), std::string::npos) << done.err;
  EXPECT_TRUE(read_all(out) == std::string(content.begin(), content.end()));
}

TEST_F(Service, GetOfAnUnknownHashFailsAndSaysWhich) {
  const std::string unknown = sha256(std::string_view("never put")).to_hex();
  const auto done = mqds({"get", unknown, "-o", broker.dir() + "/nothing"});
  EXPECT_EQ(done.status, 2);
  EXPECT_NE(done.err.find("no file " + unknown), std::string::npos) << done.err;
  EXPECT_FALSE(std::filesystem::exists(broker.dir() + "/nothing"));
}

TEST_F(Service, GetOfFragmentsNoEdgeHoldsFailsAndSaysWhich) {
  const Bytes content = random_content(3 * fragment_size, 16);
  const std::string hash = put(content);
  for (auto& edge : edges) edge->kill9();
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "0"}}, 5s));
  const auto done = mqds({"get", hash, "-o", broker.dir() + "/output.bin"});
  EXPECT_EQ(done.status, 2);
  EXPECT_NE(done.err.find("3 of 3 fragments of " + hash + " could not be fetched"),
            std::string::npos)
      << done.err;
  EXPECT_NE(done.err.find("no edge holds it"), std::string::npos) << done.err;
}

TEST(Cli, WithoutABrokerItSaysWhereItLooked) {
  const auto done = run_mqds({"-p", "1", "ls"});
  EXPECT_EQ(done.status, 2);
  EXPECT_NE(done.err.find("cannot reach the broker at localhost:1"), std::string::npos) << done.err;
}

TEST(Cli, BadUsageExitsOne) {
  EXPECT_EQ(run_mqds({}).status, 1);
  EXPECT_EQ(run_mqds({"get", "ABC"}).status, 1) << "-o is required";
  EXPECT_EQ(run_mqds({"put", "/nonexistent/file"}).status, 1);
  const auto help = run_mqds({"--help"});
  EXPECT_EQ(help.status, 0);
  for (const char* word : {"put", "get", "ls", "status", "-h", "-p", "-u", "--cafile"})
    EXPECT_NE(help.out.find(word), std::string::npos) << word;
}

}  // namespace
}  // namespace mqds::edge_test
