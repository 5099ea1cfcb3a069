// What the benchmarks share: a clock, brokers configured like production (no debug log), a
// watcher of retained figures and events, and test data.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "broker.hpp"
#include "client.hpp"

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

// A client that keeps the last value of each retained figure and the arrival of each event.
class Watcher {
 public:
  Watcher(int port, const std::vector<std::string>& topics);
  // The value of `topic` published after this call (the broker refreshes $SYS every second).
  std::string fresh(const std::string& topic, std::chrono::milliseconds timeout = 5s);
  // Waits until `topic` has `value`.
  void wait_value(const std::string& topic, const std::string& value,
                  std::chrono::milliseconds timeout);
  // Waits for the next message on `topic`: when it arrived, and its payload.
  std::pair<Clock::time_point, std::string> next(const std::string& topic,
                                                 std::chrono::milliseconds timeout);

 private:
  void take(std::chrono::milliseconds timeout);
  broker_test::Client client_;
  std::map<std::string, std::string> values_;
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

}  // namespace mqds::bench
