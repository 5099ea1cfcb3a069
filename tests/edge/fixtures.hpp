// What the tests of mqds-edge and mqds share: a broker configured for a small service, a monitor of
// the tracker's figures and events, uploads, and looks into an edge's store.
#pragma once

#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "broker.hpp"
#include "client.hpp"
#include "edge_process.hpp"
#include "mqds/events.hpp"
#include "mqds/random.hpp"
#include "mqds/store/edge_store.hpp"
#include "uploader.hpp"

namespace mqds::edge_test {

using broker_test::Broker;
using broker_test::BrokerConfig;
using broker_test::Client;
using broker_test::Message;
using broker_test::Uploader;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t fragment_size = 16 * 1024;

inline BrokerConfig edge_config(std::int64_t fragment_bytes = fragment_size, int replicas = 2) {
  BrokerConfig config;
  config.plugin_options = {{"fragment_size", std::to_string(fragment_bytes)},
                           {"replicas", std::to_string(replicas)},
                           {"startup_settle_ms", "0"},
                           {"join_timeout_ms", "3000"},
                           {"request_timeout_ms", "1500"},
                           {"delivery_timeout_ms", "3000"},
                           {"retry_delay_ms", "300"},
                           {"revision_beacon_ms", "1000"},
                           {"metrics_interval_ms", "100"},
                           {"ingest_users", "*"},
                           {"fetch_users", "*"}};
  return config;
}

// Watches the tracker's figures ($SYS/broker/mqds/...) and the service's events.
class Monitor {
 public:
  // `credentials`: the username and password of a broker that lets nobody in anonymously.
  explicit Monitor(int port,
                   const std::optional<std::pair<std::string, std::string>>& credentials = {})
      : client_("monitor") {
    if (credentials) client_.set_credentials(credentials->first, credentials->second);
    EXPECT_TRUE(client_.connect(port));
    EXPECT_TRUE(client_.subscribe(std::vector<std::string>{"$SYS/broker/mqds/#", "clients/#"}, 0));
  }

  // Waits until every named figure has the given value.
  ::testing::AssertionResult wait_figures(const std::map<std::string, std::string>& wanted,
                                          std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      bool all = true;
      for (const auto& [name, value] : wanted) all = all && figures_[name] == value;
      if (all) return ::testing::AssertionSuccess();
      if (Clock::now() >= deadline) break;
      take(200ms);
    }
    std::string seen;
    for (const auto& [name, value] : figures_) seen += name + "=" + value + " ";
    return ::testing::AssertionFailure()
           << "figures not reached in " << timeout.count() << " ms; seen: " << seen;
  }

  // Waits until the figures satisfy `holds` (figures not yet seen read as absent).
  ::testing::AssertionResult wait_until(
      const std::function<bool(const std::map<std::string, std::string>&)>& holds,
      std::chrono::milliseconds timeout, std::string_view what) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (holds(figures_)) return ::testing::AssertionSuccess();
      if (Clock::now() >= deadline) break;
      take(200ms);
    }
    std::string seen;
    for (const auto& [name, value] : figures_) seen += name + "=" + value + " ";
    return ::testing::AssertionFailure()
           << what << ": not reached in " << timeout.count() << " ms; seen: " << seen;
  }

  // The last value of a figure as a number, nullopt if not seen yet (or not a number).
  std::optional<std::uint64_t> figure(const std::string& name) const {
    return figure_in(figures_, name);
  }
  static std::optional<std::uint64_t> figure_in(const std::map<std::string, std::string>& figures,
                                                const std::string& name) {
    const auto it = figures.find(name);
    if (it == figures.end() || it->second.empty() ||
        it->second.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    return std::stoull(it->second);
  }
  // Reads what arrived, waiting at most `timeout` for something.
  void refresh(std::chrono::milliseconds timeout = 200ms) { take(timeout); }

  // The next event on `topic` whose JSON satisfies `match`.
  std::optional<json> wait_event(std::string_view topic,
                                 const std::function<bool(const json&)>& match,
                                 std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      for (auto it = events_.begin(); it != events_.end(); ++it) {
        if (it->first != topic || !match(it->second)) continue;
        json found = it->second;
        events_.erase(it);
        return found;
      }
      take(200ms);
    }
    return std::nullopt;
  }

 private:
  void take(std::chrono::milliseconds timeout) {
    auto m = client_.wait_for([](const Message&) { return true; }, timeout);
    for (; m; m = client_.wait_for([](const Message&) { return true; }, 0ms)) {
      static constexpr std::string_view prefix = "$SYS/broker/mqds/";
      if (m->topic.rfind(prefix, 0) == 0) {
        figures_[m->topic.substr(prefix.size())] = m->payload;
      } else {
        json event = json::parse(m->payload, nullptr, false);
        if (event.is_object() && events_.size() < 10'000)
          events_.emplace_back(m->topic, std::move(event));
      }
    }
  }

  Client client_;
  std::map<std::string, std::string> figures_;
  std::vector<std::pair<std::string, json>> events_;
};

inline Bytes random_content(std::size_t size, std::uint64_t seed) {
  SplitMix64 rng(seed);
  Bytes data(size);
  for (auto& b : data) b = static_cast<std::uint8_t>(rng.next_u64());
  return data;
}

// Uploads `content` through the plugin's ingest protocol; the file's hash once it is published.
inline ::testing::AssertionResult put(int port, const Bytes& content) {
  Uploader uploader("uploader");
  if (auto r = uploader.connect(port); !r) return r;
  const Uuid id = Uuid::v4_from(content.size(), 77);
  const auto begun = uploader.begin(id, sha256(content), content.size());
  if (!begun || begun->state != ingest::State::receiving)
    return ::testing::AssertionFailure() << "begin: " << broker_test::describe(begun);
  const auto done = uploader.send(id, content);
  if (!done || done->state != ingest::State::published)
    return ::testing::AssertionFailure() << "upload: " << broker_test::describe(done);
  return ::testing::AssertionSuccess();
}

// Everything uploaded has k holders and nothing waits in the tracker's staging.
inline ::testing::AssertionResult wait_distributed(Monitor& monitor, std::size_t fragments,
                                                   std::chrono::milliseconds timeout) {
  return monitor.wait_figures({{"fragments", std::to_string(fragments)},
                               {"fragments/under_replicated", "0"},
                               {"fragments/staged", "0"},
                               {"distributions/in_flight", "0"}},
                              timeout);
}

// Waits until a running edge holds no temporary copy: the tracker's figures can say "done" while
// the last Ended are still on their way to the edge. LMDB lets this process read alongside it.
inline ::testing::AssertionResult wait_settled(const EdgeProcess& edge,
                                               std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  EdgeUsage usage;
  while (Clock::now() < deadline) {
    usage = EdgeStore(edge.data_dir(), std::size_t{1} << 32).usage();
    if (usage.temporary == 0) return ::testing::AssertionSuccess();
    std::this_thread::sleep_for(50ms);
  }
  return ::testing::AssertionFailure()
         << edge.id() << " still holds " << usage.temporary << " temporary copies";
}

// What a stopped edge's store holds, after its own integrity check.
inline TorrentSnapshot stored_by(const EdgeProcess& edge, IntegrityReport* report_out = nullptr) {
  EdgeStore store(edge.data_dir(), std::size_t{1} << 32);
  IntegrityReport report;
  auto snapshot = store.verify_and_load(report, [](const std::string&, const std::string&) {});
  if (report_out) *report_out = report;
  return snapshot;
}

// Flips one byte in the middle of every copy of `data` in the edge's data.mdb: LMDB writes changes
// to new pages, so the freed pages of a fragment's temporary copy may still hold its bytes too.
inline ::testing::AssertionResult corrupt_on_disk(const std::string& data_dir, const Bytes& data) {
  const std::string path = data_dir + "/data.mdb";
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string needle(reinterpret_cast<const char*>(data.data()),
                           std::min<std::size_t>(data.size(), 256));
  const int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) return ::testing::AssertionFailure() << "open " << path;
  std::size_t copies = 0;
  for (auto at = file.find(needle); at != std::string::npos; at = file.find(needle, at + 1)) {
    const char flipped = static_cast<char>(~file[at + data.size() / 2]);
    if (::pwrite(fd, &flipped, 1, static_cast<off_t>(at + data.size() / 2)) == 1) ++copies;
  }
  ::close(fd);
  if (copies == 0) return ::testing::AssertionFailure() << "fragment content not found in " << path;
  return ::testing::AssertionSuccess();
}

inline std::set<std::string> strings_of(const json& array) {
  std::set<std::string> out;
  if (array.is_array())
    for (const auto& v : array)
      if (v.is_string()) out.insert(v.get<std::string>());
  return out;
}

}  // namespace mqds::edge_test
