// mqds-edge as a process, against Debian's mosquitto with the tracker plugin: joining, rejoining
// after a broker restart, distribution into its LMDB store, the integrity check at start-up, a
// kill -9 during a distribution, goodbye on SIGTERM, capacity, fatal denials, the pace of the
// background scrub and its command line.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "broker.hpp"
#include "client.hpp"
#include "edge_process.hpp"
#include "fixtures.hpp"
#include "mqds/events.hpp"
#include "mqds/fetch.hpp"
#include "mqds/store/edge_store.hpp"
#include "runtime/mqtt_session.hpp"
#include "support/machine_harness.hpp"
#include "uploader.hpp"

namespace mqds::edge_test {
namespace {

// A fetch client over the same MQTT 5 session mqds uses: one request at a time, answered or timed
// out.
class Fetcher {
 public:
  struct Answer {
    std::string status;
    std::string reason;
    std::string data;
    std::string size;
    std::string offset;
  };

  explicit Fetcher(int port) {
    runtime::ConnectionOptions options;
    options.host = "127.0.0.1";
    options.port = port;
    options.client_id = "fetcher";
    runtime::MqttSession::Handlers handlers;
    handlers.connected = [this] { connected_ = true; };
    handlers.message = [this](runtime::Received&& m) { received_.push_back(std::move(m)); };
    handlers.subscribed = [this](int, const std::vector<int>&) { subscribed_ = true; };
    session_ = std::make_unique<runtime::MqttSession>(options, 1000, std::move(handlers));
    std::string why;
    EXPECT_TRUE(session_->connect(why)) << why;
    for (int i = 0; i < 200 && !connected_; ++i) session_->step(10);
    EXPECT_TRUE(connected_);
    // The plugin delivers a response to the subscribers of its topic that it names.
    EXPECT_GE(session_->subscribe({fetch::response_topic("fetcher", "t")}, 1), 0);
    for (int i = 0; i < 200 && !subscribed_; ++i) session_->step(10);
    EXPECT_TRUE(subscribed_);
  }

  std::optional<Answer> ask(const std::string& edge, std::string_view payload,
                            std::chrono::milliseconds timeout = 5s) {
    const std::string correlation = "c" + std::to_string(++asked_);
    const std::string topic = fetch::request_topic(edge);
    runtime::Outgoing request(topic, payload, 1);
    const std::string response_topic = fetch::response_topic("fetcher", "t");
    request.response_topic = response_topic;
    request.correlation_data = correlation;
    // The receipts of the answers read so far, as mqds get echoes them.
    const runtime::UserProperties receipts = std::exchange(receipts_, {});
    if (!receipts.empty()) request.user_properties = &receipts;
    if (session_->publish(request) < 0) return std::nullopt;
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      session_->step(10);
      for (auto it = received_.begin(); it != received_.end(); ++it) {
        if (it->correlation_data != correlation) continue;
        if (auto receipt = it->user_property(fetch::property_receipt))
          receipts_.emplace_back(fetch::property_receipt, std::move(*receipt));
        Answer answer{it->user_property("Status").value_or(""),
                      it->user_property("Reason").value_or(""), it->payload,
                      it->user_property("Size").value_or(""),
                      it->user_property("Offset").value_or("")};
        received_.erase(it);
        return answer;
      }
    }
    return std::nullopt;
  }
  std::optional<Answer> ask(const std::string& edge, const fetch::Request& r) {
    return ask(edge, fetch::encode_request(r));
  }

 private:
  std::unique_ptr<runtime::MqttSession> session_;
  bool connected_ = false;
  bool subscribed_ = false;
  runtime::UserProperties receipts_;
  int asked_ = 0;
  std::vector<runtime::Received> received_;
};

std::string text_of(const Bytes& data) {
  return std::string(reinterpret_cast<const char*>(data.data()), data.size());
}

// --- Join -------------------------------------------------------------------------------------

TEST(EdgeJoin, JoinsWithItsConfigFileAndIsAnnouncedWithItsFetchEndpointAndCapacity) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  const std::string config = broker.dir() + "/edge-a.conf";
  std::ofstream(config)
      << "# the same keys as the flags\nendpoint = https://edge-a.example:8443/\ncapacity = 1M\n";
  ASSERT_TRUE(edge.start(broker.port(), {"-c", config}));
  const auto registered = monitor.wait_event(
      topics::client_registered,
      [](const json& e) { return e.value("ClientIdentifier", "") == "edge-a"; }, 10s);
  ASSERT_TRUE(registered) << edge.log_tail() << broker.where();
  EXPECT_EQ(
      strings_of((*registered)["Info"]["Endpoints"]),
      (std::set<std::string>{"mqtt:mqds/fetch/request/edge-a", "https://edge-a.example:8443/"}))
      << registered->dump();
  EXPECT_EQ((*registered)["Info"].value("Capacity", std::int64_t{0}), 1024 * 1024)
      << registered->dump();
  EXPECT_TRUE(edge.wait_log("registered with 0 fragments", 5s));
  EXPECT_TRUE(edge.wait_log("integrity: 0 fragments and 0 temporary intact", 1s));
}

TEST(EdgeJoin, RejoinsAfterTheBrokerRestarts) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port()));
  ASSERT_TRUE(edge.wait_log("registered with", 10s));
  ASSERT_TRUE(broker.restart());
  EXPECT_TRUE(edge.wait_log("connection to the broker lost", 10s));
  // Reconnecting is backed off by 0.5 to 1 s; the tracker's start settles at once here.
  EXPECT_TRUE(edge.wait_log("registered with", 15s, 2)) << broker.where();
  EXPECT_TRUE(edge.running());
}

TEST(EdgeJoin, SigtermSaysGoodbyeAndExitsZero) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port()));
  ASSERT_TRUE(edge.wait_log("registered with", 10s));
  EXPECT_EQ(edge.terminate(), 0);
  const auto goodbye = monitor.wait_event(
      topics::client_goodbye,
      [](const json& e) { return e.value("ClientIdentifier", "") == "edge-a"; }, 5s);
  EXPECT_TRUE(goodbye) << "no ClientGoodbye naming edge-a; " << broker.where();
  EXPECT_TRUE(edge.wait_log("said goodbye; stopped", 1s));
  EXPECT_TRUE(monitor.wait_figures({{"clients/registered", "0"}}, 5s));
}

TEST(EdgeJoin, Kill9IsSeenByTheTrackerAsALostClient) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port()));
  ASSERT_TRUE(edge.wait_log("registered with", 10s));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 5s));
  edge.kill9();
  // The socket closes with the process: the broker sees the loss at once, without waiting for
  // keepalive.
  EXPECT_TRUE(monitor.wait_figures({{"clients/registered", "0"}, {"clients/lost", "1"}}, 5s));
}

// --- Distribution (the specification's Fragment Distribution, docs/specification.md)
// -----------------------------------------------------------------

TEST(EdgeDistribution, EveryFragmentIsStoredDurablyOnExactlyKEdges) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  std::vector<std::unique_ptr<EdgeProcess>> edges;
  for (const char* id : {"edge-a", "edge-b", "edge-c"}) {
    edges.push_back(std::make_unique<EdgeProcess>(id, broker.dir()));
    ASSERT_TRUE(edges.back()->start(broker.port()));
  }
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "3"}}, 10s));
  const Bytes content = random_content(40 * fragment_size - 1000, 1);
  const auto file = testing::cut_file(content, fragment_size);
  ASSERT_TRUE(put(broker.port(), content)) << broker.where();
  ASSERT_TRUE(wait_distributed(monitor, 40, 30s)) << broker.where();

  std::map<Hash, int> holders;
  for (auto& edge : edges) {
    ASSERT_TRUE(wait_settled(*edge));
    ASSERT_EQ(edge->terminate(), 0) << edge->id();
    IntegrityReport report;
    const auto snapshot = stored_by(*edge, &report);
    EXPECT_EQ(report.dropped_corrupt + report.dropped_unknown, 0u) << edge->id();
    EXPECT_TRUE(snapshot.temporary_fragments.empty()) << edge->id() << " kept temporary copies";
    EXPECT_EQ(snapshot.fragment_size_bytes, fragment_size);
    EXPECT_TRUE(snapshot.files.count(file.hash)) << edge->id() << " does not know the file";
    for (const auto& [hash, fragment] : snapshot.stored_fragments) ++holders[hash];
  }
  ASSERT_EQ(holders.size(), 40u);
  for (const auto& f : file.fragments) EXPECT_EQ(holders[f.hash], 2) << f.hash.to_hex();
}

TEST(EdgeDistribution, AnEdgeStoresNoMoreThanItsCapacity) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess small("edge-small", broker.dir()), big_a("edge-big-a", broker.dir()),
      big_b("edge-big-b", broker.dir());
  ASSERT_TRUE(small.start(broker.port(), {"--capacity", std::to_string(4 * fragment_size)}));
  ASSERT_TRUE(big_a.start(broker.port()));
  ASSERT_TRUE(big_b.start(broker.port()));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "3"}}, 10s));
  const Bytes content = random_content(20 * fragment_size, 2);
  ASSERT_TRUE(put(broker.port(), content)) << broker.where();
  ASSERT_TRUE(wait_distributed(monitor, 20, 30s)) << broker.where();
  std::size_t replicas = 0;
  for (EdgeProcess* edge : {&small, &big_a, &big_b}) {
    ASSERT_TRUE(wait_settled(*edge));
    ASSERT_EQ(edge->terminate(), 0);
    const auto stored = stored_by(*edge).stored_fragments;
    replicas += stored.size();
    if (edge == &small) {
      EXPECT_LE(stored.size(), 4u) << "the small edge exceeded its capacity";
    }
  }
  EXPECT_EQ(replicas, 40u);
}

TEST(EdgeIntegrity, AFragmentCorruptedOnDiskIsDroppedAtStartAndNotReported) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess a("edge-a", broker.dir()), b("edge-b", broker.dir());
  ASSERT_TRUE(a.start(broker.port()));
  ASSERT_TRUE(b.start(broker.port()));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "2"}}, 10s));
  const Bytes content = random_content(8 * fragment_size, 3);
  const auto file = testing::cut_file(content, fragment_size);
  ASSERT_TRUE(put(broker.port(), content));
  ASSERT_TRUE(wait_distributed(monitor, 8, 30s)) << broker.where();
  ASSERT_TRUE(wait_settled(a));
  ASSERT_EQ(a.terminate(), 0);
  const auto& victim = file.fragments[3];
  ASSERT_TRUE(corrupt_on_disk(a.data_dir(), victim.data));
  ASSERT_TRUE(a.start(broker.port()));
  EXPECT_TRUE(a.wait_log(
      "integrity: dropped fragment " + victim.hash.to_hex() + ": its content hashes to", 10s));
  EXPECT_TRUE(a.wait_log("7 fragments and 0 temporary intact", 1s));
  const auto request = monitor.wait_event(
      topics::client_join_requested,
      [](const json& e) {
        return e.contains("StoredFragments") && e["StoredFragments"].size() == 7;
      },
      10s);
  ASSERT_TRUE(request) << "no join request reporting the 7 intact fragments";
  EXPECT_FALSE((*request)["StoredFragments"].contains(victim.hash.to_hex()));
  EXPECT_TRUE(a.wait_log("registered with 7 fragments", 10s));
}

TEST(EdgeCrash, Kill9DuringADistributionLeavesAStoreThatOpensAndCatchesUp) {
  Broker broker(edge_config());
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess a("edge-a", broker.dir()), b("edge-b", broker.dir());
  ASSERT_TRUE(a.start(broker.port()));
  ASSERT_TRUE(b.start(broker.port()));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "2"}}, 10s));
  constexpr std::size_t fragments = 300;
  const Bytes content = random_content(fragments * fragment_size, 4);
  const auto file = testing::cut_file(content, fragment_size);
  std::thread upload([&] { EXPECT_TRUE(put(broker.port(), content)); });
  // Killed in the middle: some fragments persisted, some temporary, some requested.
  const bool started = a.wait_log("obtained ", 30s, 40);
  a.kill9();
  upload.join();
  ASSERT_TRUE(started);
  ASSERT_TRUE(a.start(broker.port()));
  EXPECT_TRUE(a.wait_log("dropped 0 corrupt, 0 unknown", 10s));
  ASSERT_TRUE(wait_distributed(monitor, fragments, 60s)) << broker.where();
  for (EdgeProcess* edge : {&a, &b}) {
    ASSERT_TRUE(wait_settled(*edge));
    ASSERT_EQ(edge->terminate(), 0);
    IntegrityReport report;
    const auto snapshot = stored_by(*edge, &report);
    EXPECT_EQ(report.dropped_corrupt + report.dropped_unknown, 0u) << edge->id();
    EXPECT_EQ(snapshot.stored_fragments.size(), fragments) << edge->id();
    EXPECT_TRUE(snapshot.temporary_fragments.empty()) << edge->id();
  }
}

// --- Fetch ------------------------------------------------------------------------------------

TEST(EdgeFetch, ServesStoredFragmentsInChunksAndSaysWhyWhenItCannot) {
  Broker broker(edge_config(fragment_size, 1));
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port()));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));
  const Bytes content = random_content(3 * fragment_size + 100, 6);
  const auto file = testing::cut_file(content, fragment_size);
  ASSERT_TRUE(put(broker.port(), content));
  ASSERT_TRUE(wait_distributed(monitor, 4, 30s)) << broker.where();

  Fetcher fetcher(broker.port());
  for (const auto& f : file.fragments) {
    const auto answer = fetcher.ask("edge-a", fetch::Request{f.hash, 0, fetch::chunk_bytes_max});
    ASSERT_TRUE(answer) << "no answer; " << broker.where();
    EXPECT_EQ(answer->status, "ok") << answer->reason;
    EXPECT_EQ(answer->size, std::to_string(f.data.size()));
    EXPECT_EQ(answer->offset, "0");
    EXPECT_TRUE(answer->data == text_of(f.data)) << "the bytes differ";
  }
  // A part of a fragment: the chunks a larger fragment is fetched in.
  const auto& first = file.fragments[0];
  const auto part = fetcher.ask("edge-a", fetch::Request{first.hash, 1000, 500});
  ASSERT_TRUE(part);
  EXPECT_EQ(part->status, "ok");
  EXPECT_EQ(part->offset, "1000");
  EXPECT_TRUE(part->data == text_of(first.data).substr(1000, 500));

  const auto unknown =
      fetcher.ask("edge-a", fetch::Request{sha256(std::string_view("nothing")), 0, 10});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, "not-found");
  EXPECT_TRUE(unknown->data.empty());
  const auto beyond = fetcher.ask("edge-a", fetch::Request{first.hash, fragment_size + 1, 10});
  ASSERT_TRUE(beyond);
  EXPECT_EQ(beyond->status, "bad-request");
  EXPECT_NE(beyond->reason.find("beyond"), std::string::npos) << beyond->reason;
  const auto malformed = fetcher.ask("edge-a", "{\"Hash\":\"nope\"}");
  ASSERT_TRUE(malformed);
  EXPECT_EQ(malformed->status, "bad-request");
  EXPECT_EQ(malformed->reason, "Hash: must be 64 hexadecimal characters");
  EXPECT_TRUE(edge.running());
}

TEST(EdgeFetch, ACopyFoundCorruptWhenServedIsDeletedAndReportedByARejoin) {
  Broker broker(edge_config(fragment_size, 1));
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port()));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));
  const Bytes content = random_content(2 * fragment_size, 7);
  const auto file = testing::cut_file(content, fragment_size);
  ASSERT_TRUE(put(broker.port(), content));
  ASSERT_TRUE(wait_distributed(monitor, 2, 30s)) << broker.where();

  // Bit rot under a running edge: LMDB reads the same pages the file has.
  const auto& victim = file.fragments[1];
  ASSERT_TRUE(corrupt_on_disk(edge.data_dir(), victim.data));
  Fetcher fetcher(broker.port());
  const auto answer = fetcher.ask("edge-a", fetch::Request{victim.hash, 0, fetch::chunk_bytes_max});
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, "not-found");
  EXPECT_NE(answer->reason.find("corrupt"), std::string::npos) << answer->reason;
  EXPECT_TRUE(edge.wait_log("lost the local copy of " + victim.hash.to_hex(), 5s));
  EXPECT_TRUE(edge.wait_log("registered with 1 fragments", 10s));
  // The tracker now counts the fragment as under-replicated: its view says the truth.
  EXPECT_TRUE(monitor.wait_figures({{"fragments/under_replicated", "1"}}, 10s));
  const auto again = fetcher.ask("edge-a", fetch::Request{victim.hash, 0, 10});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, "not-found");
}

// --- Scrubbing ----------------------------------------------------------------------------------

// How long the last logged scrub pass over `fragments` fragments took, in seconds; -1 if none.
double scrub_pass_seconds(const std::string& log, std::size_t fragments) {
  const std::string wanted = "verified " + std::to_string(fragments) + " fragments (";
  const auto at = log.rfind(wanted);
  if (at == std::string::npos) return -1;
  const auto in = log.find(") in ", at);
  if (in == std::string::npos) return -1;
  return std::strtod(log.c_str() + in + 5, nullptr);
}

// The background scrub paces itself: with an interval too short for the store, the rate bounds a
// pass (it never reads faster); with a long one, a pass is spread over the interval.
TEST(EdgeScrub, APassIsBoundedByTheRateAndSpreadOverTheInterval) {
  constexpr std::size_t fragments = 32;
  constexpr double store_bytes = fragments * fragment_size;  // 512 KiB
  Broker broker(edge_config(fragment_size, 1));
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port(), {"--scrub-interval", "1s", "--scrub-rate", "0.2"}));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));
  ASSERT_TRUE(put(broker.port(), random_content(fragments * fragment_size, 11)));
  ASSERT_TRUE(wait_distributed(monitor, fragments, 30s)) << broker.where();
  ASSERT_TRUE(wait_settled(edge));

  // 524,288 bytes at 200,000 B/s: no pass over the whole store in less than 2.62 s.
  ASSERT_TRUE(edge.wait_log("verified 32 fragments", 20s)) << edge.log_tail();
  const double rate_bound_s = scrub_pass_seconds(edge.log(), fragments);
  const double achieved_mb_per_s = store_bytes / rate_bound_s / 1e6;
  std::printf("[ scrub    ] bounded by 0.2 MB/s: a pass over %.0f bytes took %.3f s (%.3f MB/s)\n",
              store_bytes, rate_bound_s, achieved_mb_per_s);
  EXPECT_GE(rate_bound_s, store_bytes / 200'000) << "read faster than --scrub-rate";
  EXPECT_LT(rate_bound_s, 2 * store_bytes / 200'000 + 1) << "far slower than the rate allows";
  EXPECT_EQ(edge.log_count("is corrupt"), 0u);

  // 4 s for the store, at a rate that does not bind: 125 ms per fragment.
  ASSERT_EQ(edge.terminate(), 0);
  ASSERT_TRUE(edge.start(broker.port(), {"--scrub-interval", "4s", "--scrub-rate", "100"}));
  ASSERT_TRUE(edge.wait_log("verified 32 fragments", 20s)) << edge.log_tail();
  const double interval_s = scrub_pass_seconds(edge.log(), fragments);
  std::printf("[ scrub    ] paced by a 4 s interval: a pass over %.0f bytes took %.3f s\n",
              store_bytes, interval_s);
  EXPECT_GE(interval_s, 4.0) << "a pass went faster than its interval";
  EXPECT_LT(interval_s, 6.0) << "a pass took far longer than its interval";
  EXPECT_EQ(edge.terminate(), 0);
}

// --- Footprint ----------------------------------------------------------------------------------

// The figures of the README: resident memory while 10,000 fragments stream in, and idle with them
// stored, after a restart that verified every one. Printed for the record; the bound asserted is
// what a small board can give, not a timing.
TEST(EdgeFootprint, MemoryStaysSmallWithTenThousandFragments) {
  constexpr std::int64_t small_fragment = 4096;
  constexpr std::size_t fragments = 10'000;
  BrokerConfig config = edge_config(small_fragment, 1);
  config.plugin_options.emplace_back("distributions_in_flight", "64");
  Broker broker(config);
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port(), {"-q"}));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));
  ASSERT_TRUE(put(broker.port(), random_content(fragments * small_fragment, 9)));
  ASSERT_TRUE(wait_distributed(monitor, fragments, 120s)) << broker.where();
  ASSERT_TRUE(wait_settled(edge));
  const long peak_kib = edge.memory_kib("VmHWM").value_or(-1);
  ASSERT_EQ(edge.terminate(), 0);
  ASSERT_TRUE(edge.start(broker.port(), {"-q"}));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));
  std::this_thread::sleep_for(2s);  // idle: registered, nothing to do
  const long idle_kib = edge.memory_kib("VmRSS").value_or(-1);
  std::cout << "mqds-edge with " << fragments << " fragments of " << small_fragment
            << " B: peak RSS while receiving " << static_cast<double>(peak_kib) / 1024.0
            << " MiB, idle RSS after a verifying restart " << static_cast<double>(idle_kib) / 1024.0
            << " MiB\n";
  ::testing::Test::RecordProperty("peak_rss_kib", static_cast<int>(peak_kib));
  ::testing::Test::RecordProperty("idle_rss_kib", static_cast<int>(idle_kib));
#ifndef MQDS_SANITIZED
  EXPECT_LT(idle_kib, 32 * 1024);
  EXPECT_LT(peak_kib, 64 * 1024);
#endif
}

// --- Denials the operator must fix, and the command line ----------------------------------------

// A denial only a person can fix does not stop the board: it says what to do, keeps running (its
// systemd unit would not restart a stopped one), and asks again later and at every TrackerHello.
TEST(EdgeDenied, DataCutAtAnotherFragmentSizeKeepsItRunningAndSaysWhatToDo) {
  std::string data_dir;
  {
    Broker first(edge_config());
    ASSERT_TRUE(first.start());
    Monitor monitor(first.port());
    EdgeProcess edge("edge-a", first.dir());
    ASSERT_TRUE(edge.start(first.port()));
    ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));
    ASSERT_TRUE(put(first.port(), random_content(3 * fragment_size, 5)));
    ASSERT_TRUE(edge.wait_log("registered with", 1s));
    ASSERT_TRUE(edge.wait_log("persisting", 20s));
    ASSERT_EQ(edge.terminate(), 0);
    data_dir = "/tmp/mqds-edge-denied-" + std::to_string(::getpid());
    std::filesystem::remove_all(data_dir);
    std::filesystem::copy(edge.data_dir(), data_dir);
  }
  Broker second(edge_config(fragment_size / 2, 1));
  ASSERT_TRUE(second.start());
  EdgeProcess edge("edge-a", second.dir());
  std::filesystem::copy(data_dir, edge.data_dir());
  std::filesystem::remove_all(data_dir);
  ASSERT_TRUE(edge.start(second.port()));
  ASSERT_TRUE(edge.wait_log("move the data directory aside", 15s)) << edge.log_tail();
  EXPECT_FALSE(edge.wait_exit(2s)) << "a denial stopped the board: " << edge.log_tail();
  EXPECT_TRUE(edge.running());
  // The tracker restarts: the board asks again at once, and is denied again for the same reason.
  ASSERT_TRUE(second.restart());
  ASSERT_TRUE(edge.wait_log("move the data directory aside", 20s, 2)) << edge.log_tail();
  EXPECT_TRUE(edge.running());
  EXPECT_EQ(edge.terminate(), 0) << edge.log_tail();
}

TEST(EdgeCommandLine, BadValuesGetAClearErrorAndExitOne) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases{
      {{"-p", "1883"}, "--data-dir is required"},
      {{"--data-dir", "/tmp/x", "-p", "0"}, "--port"},
      {{"--data-dir", "/tmp/x", "-p", "http"}, "--port"},
      {{"--data-dir", "/tmp/x", "--capacity", "lots"}, "--capacity"},
      {{"--data-dir", "/tmp/x", "--capacity", "0"}, "--capacity: must be at least 1 byte"},
      {{"--data-dir", "/tmp/x", "--endpoint", "no-scheme"}, "must be a URI"},
      {{"--data-dir", "/tmp/x", "-i", "a/b"}, "must not contain"},
      {{"--data-dir", "/tmp/x", "--cert", "/etc/hostname"}, "--cert and --key go together"},
      {{"--data-dir", "/tmp/x", "--cafile", "/nonexistent/ca.pem"}, "--cafile"},
      {{"--data-dir", "/tmp/x", "-c", "/nonexistent.conf"}, "nonexistent.conf"},
      {{"--data-dir", "/tmp/x", "--bogus"}, "--bogus"},
      {{"--data-dir", "/tmp/x", "--scrub-interval", "2w"}, "--scrub-interval: must be 0 (off)"},
      {{"--data-dir", "/tmp/x", "--scrub-interval", "-1d"}, "--scrub-interval"},
      {{"--data-dir", "/tmp/x", "--scrub-interval", "367d"}, "up to 366d"},
      {{"--data-dir", "/tmp/x", "--scrub-interval", "1.5h"}, "--scrub-interval"},
      {{"--data-dir", "/tmp/x", "--scrub-interval", "99999999999999999999d"}, "up to 366d"},
      {{"--data-dir", "/tmp/x", "--scrub-rate", "0"}, "--scrub-rate: must be 0.001 to 10000"},
      {{"--data-dir", "/tmp/x", "--scrub-rate", "fast"}, "--scrub-rate"},
  };
  for (const auto& c : cases) {
    const auto done = run_edge(c.args);
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    EXPECT_EQ(done.status, 1) << joined << "\n" << done.output;
    EXPECT_NE(done.output.find(c.says), std::string::npos) << joined << "\n" << done.output;
  }
}

TEST(EdgeCommandLine, AnUnknownConfigFileKeyIsAnError) {
  char dir[] = "/tmp/mqds-edge-conf-XXXXXX";
  ASSERT_TRUE(::mkdtemp(dir));
  const std::string config = std::string(dir) + "/edge.conf";
  std::ofstream(config) << "data-dir = " << dir << "/data\ncapacty = 5G\n";
  const auto done = run_edge({"-c", config});
  std::filesystem::remove_all(dir);
  EXPECT_EQ(done.status, 1) << done.output;
  EXPECT_NE(done.output.find("capacty"), std::string::npos) << done.output;
}

TEST(EdgeCommandLine, HelpListsEveryFlagAndExitsZero) {
  const auto done = run_edge({"--help"});
  EXPECT_EQ(done.status, 0);
  for (const char* flag :
       {"-h", "-p", "-i", "-u", "-P", "--cafile", "--cert", "--key", "--data-dir", "--capacity",
        "--endpoint", "--scrub-interval", "--scrub-rate", "-c"})
    EXPECT_NE(done.output.find(flag), std::string::npos) << flag << " missing from:\n"
                                                         << done.output;
}

}  // namespace
}  // namespace mqds::edge_test
