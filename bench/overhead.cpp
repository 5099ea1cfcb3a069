// One publisher, one subscriber, QoS 1 both ways, through a broker with the plugin loaded (with
// its store, and uploads and fetches allowed) and through one without. The runs alternate, three
// of each, and the best of each counts: noise from the rest of the machine only ever slows a run
// down, so the best is the closest to what the broker itself can do.
#include "overhead.hpp"

#include <mosquitto.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "raw_pipeline.hpp"
#include "services.hpp"

namespace mqds::bench {

namespace {

struct Traffic {
  const char* name;
  std::size_t message_bytes;
  std::size_t messages;
};

// Messages delivered per second.
double pub_sub_rate(bool with_plugin, const Traffic& traffic) {
  broker_test::Broker broker(production_broker(with_plugin, {{"ingest_users", "*"}, {"fetch_users", "*"}}));
  require(broker.start(), with_plugin ? "broker with the plugin" : "broker without the plugin");
  std::atomic<std::size_t> received{0};
  RawConnection subscriber("overhead-sub", broker.port(), [&](const mosquitto_message&) { ++received; });
  subscriber.run();
  subscriber.subscribe("sensors/#", 1);
  RawConnection publisher("overhead-pub", broker.port());
  publisher.run();
  const std::vector<char> payload(traffic.message_bytes, 'x');
  const auto start = Clock::now();
  for (std::size_t i = 0; i < traffic.messages; ++i)
    publisher.publish("sensors/board-" + std::to_string(i % 100) + "/temperature", payload.data(), payload.size(), 64);
  const auto deadline = Clock::now() + 5min;
  while (received < traffic.messages) {
    if (Clock::now() > deadline) throw Failure("the subscriber received " + std::to_string(received.load()) + " of " +
                                               std::to_string(traffic.messages) + " messages");
    std::this_thread::sleep_for(100us);
  }
  return static_cast<double>(traffic.messages) / seconds_since(start);
}

}  // namespace

void run_overhead(Report& report) {
  const Traffic traffics[] = {{"64 B", 64, 200'000}, {"1 MiB", 1u << 20, 2'000}};
  for (const auto& traffic : traffics) {
    double without = 0, with = 0;
    for (int round = 0; round < 3; ++round) {
      without = std::max(without, pub_sub_rate(false, traffic));
      with = std::max(with, pub_sub_rate(true, traffic));
    }
    const std::string what = std::string(traffic.name) + " messages, QoS 1, 1 publisher, 1 subscriber";
    report.add("overhead", what + ", no plugin", without, "msg/s");
    report.add("overhead", what + ", plugin loaded", with, "msg/s");
    report.target(std::string("plugin_overhead_") + (traffic.message_bytes < 1024 ? "small" : "1MiB"), with / without, 0.97);
  }
}

}  // namespace mqds::bench
