// What the benchmarks share: a clock, brokers configured like production (no debug log), a
// watcher of retained figures and events, and test data.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "broker.hpp"
#include "client.hpp"
#include "edge_process.hpp"

struct mosquitto_message;

namespace mqds::bench {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A benchmark that cannot go on (a broker that does not start, a program that fails): the section
// is reported as failed and the run goes on with the next one.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
inline void require(const ::testing::AssertionResult& result, const std::string& what) {
  if (!result) throw Failure(what + ": " + result.message());
}

// mosquitto with the tracker plugin (or without it), logging what a production broker logs.
broker_test::BrokerConfig production_broker(bool with_plugin,
                                            broker_test::PluginOptions options = {});
// The plugin options of the benchmarks of ours: k, no settling, anyone may put and get; `more`
// besides.
broker_test::PluginOptions ours_options(int replicas, broker_test::PluginOptions more = {});
// `count` mqds-edge processes edge-1, edge-2, ... (quiet), their data under `work_dir`.
std::vector<std::unique_ptr<edge_test::EdgeProcess>> start_edges(int port, int count,
                                                                 const std::string& work_dir);

// A client that keeps the last value of each retained figure and the arrival of each event.
class Watcher {
 public:
  Watcher(int port, const std::vector<std::string>& topics);
  // The value of `topic` published after this call (the broker refreshes $SYS every second).
  std::string fresh(const std::string& topic, std::chrono::milliseconds timeout = 5s);
  // Waits until `topic` has `value`.
  void wait_value(const std::string& topic, const std::string& value,
                  std::chrono::milliseconds timeout);
  // Waits until `done` holds for the last value of every topic (a topic not seen yet reads as
  // ""): when the message that made it hold arrived (within 10 ms).
  using Values = std::map<std::string, std::string>;
  // The last value of every topic, with what has arrived until now.
  const Values& values();
  Clock::time_point wait_values(const std::function<bool(const Values&)>& done,
                                std::chrono::milliseconds timeout, const std::string& what);
  // Waits for the next message on `topic`: when it arrived, and its payload.
  std::pair<Clock::time_point, std::string> next(const std::string& topic,
                                                 std::chrono::milliseconds timeout);

 private:
  void take(std::chrono::milliseconds timeout);
  broker_test::Client client_;
  Values values_;
  std::map<std::string, std::vector<std::pair<Clock::time_point, std::string>>> arrivals_;
};

// A fresh directory under `parent` (mkdtemp), removed with everything in it when this goes.
class WorkDir {
 public:
  explicit WorkDir(const std::string& parent);
  ~WorkDir();
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A file of `bytes` pseudo-random bytes (incompressible, reproducible from `seed`).
void write_random_file(const std::string& path, std::uint64_t bytes, std::uint64_t seed);
// Whether two files have the same bytes.
bool same_content(const std::string& a, const std::string& b);

// The plugin's default fragment size, and the size of the raw pipelines' messages.
inline constexpr std::size_t chunk_bytes = 1u << 20;
inline std::uint64_t chunks_of(std::uint64_t bytes) {
  return (bytes + chunk_bytes - 1) / chunk_bytes;
}
inline double mb(std::uint64_t bytes) {
  return static_cast<double>(bytes) / 1e6;
}

// The broker's own counters of what it sent and received (refreshed every second).
inline constexpr const char* bytes_sent_topic = "$SYS/broker/bytes/sent";
inline constexpr const char* bytes_received_topic = "$SYS/broker/bytes/received";

// A decimal figure ($SYS, an LMDB count); throws Failure on anything else.
std::uint64_t to_u64(const std::string& text);
// The number a raw message's topic ends with (bench/raw/<n>): its key.
std::uint64_t index_of(const mosquitto_message& message);

// Waits until `done`, checking `failed` (which throws what went wrong elsewhere) along the way.
template <typename Done, typename Failed>
void wait_until(Done done, Failed failed, const std::string& what) {
  const auto deadline = Clock::now() + std::chrono::minutes(10);
  while (!done()) {
    failed();
    if (Clock::now() > deadline) throw Failure(what + " did not happen within 10 minutes");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace mqds::bench
