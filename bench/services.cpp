#include "services.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "mqds/random.hpp"

namespace mqds::bench {

broker_test::BrokerConfig production_broker(bool with_plugin, broker_test::PluginOptions options) {
  broker_test::BrokerConfig config;
  config.load_plugin = with_plugin;
  config.plugin_options = std::move(options);
  config.log_types = {"error", "warning", "notice", "information"};
  // As config/mosquitto.conf recommends; the baseline runs with the same setting.
  config.extra_config_lines = {"set_tcp_nodelay true"};
  return config;
}

Watcher::Watcher(int port, const std::vector<std::string>& topics) : client_("bench-watcher") {
  require(client_.connect(port), "watcher connect");
  require(client_.subscribe(topics, 0), "watcher subscribe");
}

void Watcher::take(std::chrono::milliseconds timeout) {
  auto m = client_.wait_for([](const broker_test::Message&) { return true; }, timeout);
  for (; m; m = client_.wait_for([](const broker_test::Message&) { return true; }, 0ms)) {
    values_[m->topic] = m->payload;
    auto& arrivals = arrivals_[m->topic];
    if (arrivals.size() < 1000) arrivals.emplace_back(Clock::now(), m->payload);
  }
}

std::string Watcher::fresh(const std::string& topic, std::chrono::milliseconds timeout) {
  take(0ms);
  arrivals_.erase(topic);
  return next(topic, timeout).second;
}

void Watcher::wait_value(const std::string& topic, const std::string& value,
                         std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (values_[topic] != value) {
    if (Clock::now() >= deadline)
      throw Failure(topic + " is \"" + values_[topic] + "\" after " +
                    std::to_string(timeout.count()) + " ms, not \"" + value + "\"");
    take(100ms);
  }
}

std::pair<Clock::time_point, std::string> Watcher::next(const std::string& topic,
                                                        std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    auto& arrivals = arrivals_[topic];
    if (!arrivals.empty()) {
      auto first = arrivals.front();
      arrivals.erase(arrivals.begin());
      return first;
    }
    if (Clock::now() >= deadline)
      throw Failure("nothing on " + topic + " within " + std::to_string(timeout.count()) + " ms");
    take(100ms);
  }
}

WorkDir::WorkDir(const std::string& parent) : path_(parent + "/mqds-bench-XXXXXX") {
  // mkdtemp replaces the six X of its template with a name nobody else has.
  if (::mkdtemp(path_.data()) == nullptr) throw Failure("cannot make a directory in " + parent);
}

WorkDir::~WorkDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void write_random_file(const std::string& path, std::uint64_t bytes, std::uint64_t seed) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Failure("cannot create " + path);
  SplitMix64 rng(seed);
  std::vector<std::uint64_t> block((1u << 20) / sizeof(std::uint64_t));
  for (std::uint64_t written = 0; written < bytes;) {
    for (auto& word : block) word = rng.next_u64();
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(bytes - written, 1u << 20));
    if (::write(fd, block.data(), n) != static_cast<ssize_t>(n)) {
      ::close(fd);
      throw Failure("cannot write " + path);
    }
    written += n;
  }
  ::close(fd);
}

}  // namespace mqds::bench
