// A fetch::Client and the fetch::Servers of several edges wired together through the wire codec,
// with a broker that routes requests by topic and replies to their Response Topic: a whole get of
// a real file, also with a corrupt copy, a busy edge, a holder that is gone, and a TorrentServer
// told of the corrupt copy as mqds-edge tells it.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mqds/fetch_client.hpp"
#include "mqds/fetch_server.hpp"
#include "mqds/torrent.hpp"
#include "support/fetch_harness.hpp"
#include "support/machine_harness.hpp"

namespace mqds::fetch {
namespace {

using testing::cut_file;
using testing::MemoryFetchEdge;
using testing::pattern;
using testing::TestFile;

constexpr std::int64_t fragment_size_bytes = 1000;
constexpr std::int64_t latency_ms = 5;

// Edges by request topic, one requester, and a clock. Each round: the requester's requests reach
// their edges, every edge serves its queue (after its batch, as mqds-edge does), the replies
// reach the requester `latency_ms` later, and the requester is ticked.
class Network {
 public:
  explicit Network(const TestFile& file) : file_(file) {}

  MemoryFetchEdge& add_edge(const ClientId& id, std::map<Hash, Bytes> stored,
                            ServerConfig server = {}) {
    auto edge = std::make_unique<MemoryFetchEdge>(id, std::move(stored), server);
    auto& ref = *edge;
    edges_[request_topic(id)] = std::move(edge);
    return ref;
  }
  std::map<Hash, Bytes> all_fragments() const {
    std::map<Hash, Bytes> stored;
    for (const auto& f : file_.fragments) stored[f.hash] = f.data;
    return stored;
  }

  // Runs a get to its end; returns the assembled file (fragments missing are zeros).
  Bytes get(Client& client) {
    Bytes assembled(file_.content.size());
    take(client.start(now_ms_), assembled);
    for (int round = 0; round < 100'000 && !client.finished(); ++round) {
      std::deque<OutgoingRequest> requests = std::exchange(in_transit_, {});
      for (const auto& r : requests) {
        const auto edge = edges_.find(r.topic);
        if (edge != edges_.end()) edge->second->receive(r);  // else: nobody subscribed
      }
      now_ms_ += latency_ms;
      for (auto& [topic, edge] : edges_) {
        edge->serve();
        if (acknowledge) edge->acknowledge_all();
        for (auto& response : edge->take_outbox())
          take(client.on_response(now_ms_, std::move(response)), assembled);
      }
      if (in_transit_.empty()) {
        // Nothing to carry: time moves to the requester's next deadline.
        if (const auto deadline = client.next_deadline_ms()) now_ms_ = std::max(now_ms_, *deadline);
      }
      take(client.on_tick(now_ms_), assembled);
      max_in_flight = std::max(max_in_flight, client.in_flight());
    }
    return assembled;
  }

  MemoryFetchEdge& edge(const ClientId& id) { return *edges_.at(request_topic(id)); }
  std::int64_t now_ms() const { return now_ms_; }
  bool acknowledge = true;
  std::size_t max_in_flight = 0;

 private:
  void take(ClientOutput out, Bytes& assembled) {
    for (auto& r : out.requests) in_transit_.push_back(std::move(r));
    for (const auto& c : out.completed)
      std::copy(c.data.begin(), c.data.end(), assembled.begin() + c.offset_bytes);
  }

  const TestFile& file_;
  std::map<std::string, std::unique_ptr<MemoryFetchEdge>> edges_;
  std::deque<OutgoingRequest> in_transit_;
  std::int64_t now_ms_ = 0;
};

ClientConfig client_config(std::size_t parallel = 4) {
  ClientConfig c;
  c.response_topic = response_topic("cli-1", "get");
  c.parallel = parallel;
  c.request_timeout_ms = 2'000;
  c.busy_retry_delay_ms = 200;
  c.busy_retries_max = 50;
  return c;
}

std::vector<FileFragment> plan_of(const TestFile& file, const std::vector<ClientId>& holders) {
  std::vector<query::FragmentHolders> fragments;
  for (const auto& f : file.fragments) fragments.push_back({f.hash, f.size_bytes(), holders});
  auto planned = plan_fetch(
      {file.hash, static_cast<std::int64_t>(file.content.size()), file.fragments.size(), 0, 0},
      fragments, {});
  EXPECT_TRUE(planned.ok());
  return std::move(planned).value();
}

struct FetchWired : ::testing::Test {
  SplitMix64 random{7};
  TestFile file = cut_file(pattern(12 * fragment_size_bytes + 345, 21), fragment_size_bytes);
};

TEST_F(FetchWired, AGetFromThreeEdgesReturnsTheIdenticalBytesSpreadOverThem) {
  Network net(file);
  for (const char* id : {"a", "b", "c"}) net.add_edge(id, net.all_fragments());
  Client client(client_config(), plan_of(file, {"a", "b", "c"}), random);
  const Bytes got = net.get(client);
  EXPECT_TRUE(client.complete());
  EXPECT_EQ(got, file.content);
  EXPECT_EQ(net.max_in_flight, 4u);
  for (const char* id : {"a", "b", "c"}) {
    EXPECT_GE(net.edge(id).server.metrics().ok, 4u) << id;  // 13 fragments spread over 3
    EXPECT_EQ(net.edge(id).server.response_bytes_in_flight(), 0u);
  }
  EXPECT_EQ(client.metrics().fallbacks, 0u);
}

TEST_F(FetchWired, ACorruptCopyIsDroppedByItsEdgeAndFetchedFromAnother) {
  Network net(file);
  std::map<Hash, Bytes> damaged = net.all_fragments();
  const Hash victim = file.fragments[2].hash;  // fragment 2 starts with "a"
  damaged[victim][17] ^= 0x40;
  MemoryFetchEdge& a = net.add_edge("a", damaged);
  net.add_edge("b", net.all_fragments());
  Client client(client_config(), plan_of(file, {"a", "b"}), random);
  const Bytes got = net.get(client);
  ASSERT_TRUE(client.complete());
  EXPECT_EQ(got, file.content);
  EXPECT_EQ(a.lost, std::vector<Hash>{victim});
  EXPECT_FALSE(a.stored.count(victim));
  EXPECT_EQ(client.metrics().fallbacks, 1u);
}

TEST_F(FetchWired, TheEdgeTellsItsTorrentServerOfTheCorruptCopy) {
  // mqds-edge's pairing: the Server's `lost` goes to TorrentServer::fragment_lost, whose output
  // deletes the copy and rejoins.
  SplitMix64 torrent_random{3};
  TorrentConfig torrent_config;
  torrent_config.client_id = "a";
  TorrentSnapshot snapshot;
  snapshot.fragment_size_bytes = fragment_size_bytes;
  snapshot.files[file.hash] = file.metadata;
  snapshot.stored_fragments = file.fragment_infos();
  TorrentServer torrent(torrent_config, snapshot, torrent_random);
  torrent.on_connected(0);

  std::map<Hash, Bytes> stored;
  for (const auto& f : file.fragments) stored[f.hash] = f.data;
  stored[file.fragments[0].hash][0] ^= 1;
  MemoryFetchEdge edge("a", stored);
  Client client(client_config(1), plan_of(file, {"a"}), random);
  edge.receive(client.start(0).requests.at(0));
  edge.serve();
  ASSERT_EQ(edge.lost.size(), 1u);
  const Output out = torrent.fragment_lost(1, edge.lost[0]);
  EXPECT_EQ(testing::effects_of<store::DeleteFragment>(out).size(), 1u);
  EXPECT_NE(testing::find_publish(out, topics::client_join_requested), nullptr);
  EXPECT_FALSE(torrent.stored_fragments().count(file.fragments[0].hash));
  // And the requester hears not-found, so it moves on.
  auto responses = edge.take_outbox();
  ASSERT_EQ(responses.size(), 1u);
  const ClientOutput next = client.on_response(2, std::move(responses[0]));
  ASSERT_EQ(next.requests.size(), 1u);  // "a" was its only holder: on to the next fragment
  EXPECT_EQ(client.missing().at(0).problems.at(0).problem,
            "not-found (the stored copy was corrupt and is deleted)");
}

TEST_F(FetchWired, ABusyEdgeIsAskedAgainUntilItHasRoom) {
  Network net(file);
  // Room for one reply in flight: of the eight requests that arrive together, one is served and
  // the others are answered busy until the broker acknowledges it.
  MemoryFetchEdge& a = net.add_edge("a", net.all_fragments(), ServerConfig{{}, 64, 1});
  Client client(client_config(8), plan_of(file, {"a"}), random);
  const Bytes got = net.get(client);
  EXPECT_TRUE(client.complete());
  EXPECT_EQ(got, file.content);
  EXPECT_GE(a.server.metrics().busy, 7u);
  EXPECT_EQ(client.metrics().busy_retries, a.server.metrics().busy);
  EXPECT_EQ(client.metrics().fallbacks, 0u);
}

TEST_F(FetchWired, WithoutAcknowledgementsABusyEdgeIsGivenUpAfterTheRetries) {
  Network net(file);
  MemoryFetchEdge& a = net.add_edge("a", net.all_fragments(), ServerConfig{{}, 64, 1});
  net.acknowledge = false;  // the broker never frees the edge's budget
  ClientConfig config = client_config(2);
  Client client(config, plan_of(file, {"a"}), random);
  net.get(client);
  EXPECT_TRUE(client.finished());
  EXPECT_EQ(a.server.metrics().ok, 1u);
  const auto missing = client.missing();
  ASSERT_EQ(missing.size(), file.fragments.size() - 1);
  EXPECT_EQ(missing[0].problems,
            (std::vector<HolderProblem>{{"a", "busy (too many bytes in flight; ask again)"}}));
}

TEST_F(FetchWired, AHolderThatIsGoneCostsATimeoutThenTheNextHolderServes) {
  Network net(file);
  net.add_edge("b", net.all_fragments());  // nobody serves "gone"'s request topic
  Client client(client_config(), plan_of(file, {"gone", "b"}), random);
  const Bytes got = net.get(client);
  ASSERT_TRUE(client.complete());
  EXPECT_EQ(got, file.content);
  // Fragments 0, 2, 4... started with "gone": each waited out one timeout.
  EXPECT_EQ(client.metrics().timeouts, 7u);
  EXPECT_GE(net.now_ms(), 2'000);
}

TEST_F(FetchWired, WhenEveryHolderFailsTheReportSaysWhatEachAnswered) {
  Network net(file);
  std::map<Hash, Bytes> partial = net.all_fragments();
  partial.erase(file.fragments[1].hash);
  net.add_edge("a", partial);
  Client client(client_config(), plan_of(file, {"a", "gone"}), random);
  net.get(client);
  EXPECT_TRUE(client.finished());
  const auto missing = client.missing();
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].index, 1u);
  // Fragment 1 started with "gone".
  EXPECT_EQ(missing[0].problems,
            (std::vector<HolderProblem>{{"gone", "no answer within 2000 ms"},
                                        {"a", "not-found (not stored here)"}}));
  EXPECT_EQ(client.done_bytes(),
            static_cast<std::int64_t>(file.content.size()) - file.fragments[1].size_bytes());
}

}  // namespace
}  // namespace mqds::fetch
