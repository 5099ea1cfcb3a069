// One publisher, one subscriber, QoS 1 both ways, through a broker with the plugin loaded (with
// its store, and uploads and fetches allowed) and through one without. The runs alternate, seven
// of each, and the best of each counts: noise from the rest of the machine only ever slows a run
// down, so the best is the closest to what the broker itself can do. The broker's own CPU time
// per message is reported too: on 2 cores shared with the clients it varies less than throughput.
#include "overhead.hpp"

#include <mosquitto.h>

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
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

// utime + stime of a process, in seconds.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto after_name = text.rfind(')');
  if (after_name == std::string::npos) return 0;
  std::istringstream fields(text.substr(after_name + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i)
    if (i == 14 || i == 15) ticks += std::stod(field);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct Rate {
  double messages_per_second = 0;
  double broker_cpu_us_per_message = 0;
};

constexpr int rounds = 7;

// Messages delivered per second, and what they cost the broker.
Rate pub_sub_rate(bool with_plugin, const Traffic& traffic) {
  broker_test::Broker broker(
      production_broker(with_plugin, {{"ingest_users", "*"}, {"fetch_users", "*"}}));
  require(broker.start(), with_plugin ? "broker with the plugin" : "broker without the plugin");
  std::atomic<std::size_t> received{0};
  RawConnection subscriber("overhead-sub", broker.port(),
                           [&](const mosquitto_message&) { ++received; });
  subscriber.run();
  subscriber.subscribe("sensors/#", 1);
  RawConnection publisher("overhead-pub", broker.port());
  publisher.run();
  const std::vector<char> payload(traffic.message_bytes, 'x');
  const double cpu_before = cpu_seconds(broker.pid());
  const auto start = Clock::now();
  for (std::size_t i = 0; i < traffic.messages; ++i)
    publisher.publish("sensors/board-" + std::to_string(i % 100) + "/temperature", payload.data(),
                      payload.size(), 64);
  const auto deadline = Clock::now() + 5min;
  while (received < traffic.messages) {
    if (Clock::now() > deadline)
      throw Failure("the subscriber received " + std::to_string(received.load()) + " of " +
                    std::to_string(traffic.messages) + " messages");
    std::this_thread::sleep_for(100us);
  }
  const double seconds = seconds_since(start);
  const double cpu = cpu_seconds(broker.pid()) - cpu_before;
  const auto messages = static_cast<double>(traffic.messages);
  return {messages / seconds, cpu / messages * 1e6};
}

}  // namespace

void run_overhead(Report& report) {
  const Traffic traffics[] = {{"64 B", 64, 200'000}, {"1 MiB", 1u << 20, 4'000}};
  for (const auto& traffic : traffics) {
    Rate without{0, 1e9}, with{0, 1e9};  // the best: the most messages, the least CPU
    for (int round = 0; round < rounds; ++round) {
      for (auto [plugin, best] : {std::pair{false, &without}, std::pair{true, &with}}) {
        const Rate r = pub_sub_rate(plugin, traffic);
        best->messages_per_second = std::max(best->messages_per_second, r.messages_per_second);
        best->broker_cpu_us_per_message =
            std::min(best->broker_cpu_us_per_message, r.broker_cpu_us_per_message);
      }
    }
    const std::string what =
        std::string(traffic.name) + " messages, QoS 1, 1 publisher, 1 subscriber";
    report.add("overhead", what + ", no plugin", without.messages_per_second, "msg/s");
    report.add("overhead", what + ", plugin loaded", with.messages_per_second, "msg/s");
    report.add("overhead", "  broker CPU per message, no plugin", without.broker_cpu_us_per_message,
               "us");
    report.add("overhead", "  broker CPU per message, plugin loaded",
               with.broker_cpu_us_per_message, "us");
    report.target(
        std::string("plugin_overhead_") + (traffic.message_bytes < 1024 ? "small" : "1MiB"),
        with.messages_per_second / without.messages_per_second, 0.97);
  }
}

}  // namespace mqds::bench
