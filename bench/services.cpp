#include "services.hpp"

#include <fcntl.h>
#include <mosquitto.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
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

broker_test::PluginOptions ours_options(int replicas, broker_test::PluginOptions more) {
  broker_test::PluginOptions options{{"replicas", std::to_string(replicas)},
                                     {"startup_settle_ms", "0"},
                                     {"ingest_users", "*"},
                                     {"fetch_users", "*"}};
  for (auto& option : more) options.push_back(std::move(option));
  return options;
}

std::vector<std::unique_ptr<edge_test::EdgeProcess>> start_edges(int port, int count,
                                                                 const std::string& work_dir) {
  std::vector<std::unique_ptr<edge_test::EdgeProcess>> edges;
  for (int i = 1; i <= count; ++i) {
    edges.push_back(
        std::make_unique<edge_test::EdgeProcess>("edge-" + std::to_string(i), work_dir));
    require(edges.back()->start(port, {"-q"}), "mqds-edge");
  }
  return edges;
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

const Watcher::Values& Watcher::values() {
  take(0ms);
  return values_;
}

Clock::time_point Watcher::wait_values(const std::function<bool(const Values&)>& done,
                                       std::chrono::milliseconds timeout, const std::string& what) {
  const auto deadline = Clock::now() + timeout;
  take(0ms);
  while (!done(values_)) {
    if (Clock::now() >= deadline)
      throw Failure(what + " did not happen within " + std::to_string(timeout.count()) + " ms");
    take(10ms);
  }
  return Clock::now();
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

bool same_content(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  std::vector<char> ba(chunk_bytes), bb(chunk_bytes);
  while (fa && fb) {
    fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    if (fa.gcount() != fb.gcount() || !std::equal(ba.begin(), ba.begin() + fa.gcount(), bb.begin()))
      return false;
  }
  return !fa && !fb;
}

std::uint64_t to_u64(const std::string& text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    throw Failure("not a number: \"" + text + "\"");
  return value;
}

std::uint64_t index_of(const mosquitto_message& message) {
  const std::string_view topic(message.topic);
  try {
    return to_u64(std::string(topic.substr(topic.rfind('/') + 1)));
  } catch (const Failure&) {
    throw Failure("unexpected topic " + std::string(topic));
  }
}

}  // namespace mqds::bench
