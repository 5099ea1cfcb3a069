// A fetch user that floods an edge with requests for 1 MiB fragments and never reads its socket,
// against Debian's mosquitto with the tracker plugin and a real mqds-edge holding the data, with
// mosquitto's default limits and with the byte limits an operator sets for clients that do not
// read (max_queued_bytes, max_inflight_bytes). The broker must hold a bounded number of bytes for
// the flooder while it is connected (its plugin_opt_fetch_bytes_per_client: it never echoes a
// Receipt), keep none of them once it left, and serve another client's `mqds get` throughout.
//
// Before the budget, the broker held about 1 MiB per request while the flooder stayed connected,
// and with byte limits kept each response it dropped for good (mosquitto 2.0.11 never frees a
// message published to one client by id that it drops, see TrackerPlugin::on_fetch).
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "edge_process.hpp"
#include "fixtures.hpp"
#include "mqds/fetch.hpp"
#include "support/machine_harness.hpp"

namespace mqds::edge_test {
namespace {

constexpr std::int64_t mib = 1024 * 1024;
constexpr std::int64_t flood_fragment_size = mib;
constexpr int flood_requests = 400;
// The broker's limits for what waits for one client (when the test sets them), and the plugin's
// budget of one requester.
constexpr std::int64_t max_queued_bytes = 8 * mib;
constexpr std::int64_t max_inflight_bytes = 4 * mib;
constexpr std::int64_t fetch_bytes_per_client = 4 * mib;

// An MQTT 5 client on a raw socket: it connects, waits for its CONNACK, then only writes. What the
// broker sends it stays in the broker once the socket's small receive buffer is full.
class NonReader {
 public:
  explicit NonReader(std::string id) : id_(std::move(id)) {}
  ~NonReader() { close(); }

  ::testing::AssertionResult connect(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int small = 4096;  // the kernel doubles it; still far below one response
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
      return ::testing::AssertionFailure() << "cannot connect to port " << port;
    std::string body = text("MQTT");
    body += '\x05';                              // MQTT 5
    body += '\x02';                              // clean start
    body += std::string("\x00\x3c", 2);          // keepalive 60 s
    body += std::string("\x03\x21\xff\xff", 4);  // Receive Maximum 65,535: as many as it likes
    body += text(id_);
    if (!send(packet(0x10, body))) return ::testing::AssertionFailure() << "CONNECT not sent";
    timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    char connack[64];
    const ssize_t got = ::recv(fd_, connack, sizeof connack, 0);
    if (got < 4 || connack[0] != 0x20 || connack[3] != 0)
      return ::testing::AssertionFailure() << "no successful CONNACK";
    // Subscribed to its own response topic, as a requester is.
    std::string subscribe = std::string("\x00\x01\x00", 3) + text(fetch::response_topic(id_));
    subscribe += '\x01';  // QoS 1
    if (!send(packet(static_cast<char>(0x82), subscribe)))
      return ::testing::AssertionFailure() << "SUBSCRIBE not sent";
    char suback[64];
    if (::recv(fd_, suback, sizeof suback, 0) < 6 || suback[0] != static_cast<char>(0x90) ||
        static_cast<unsigned char>(suback[5]) >= 0x80)
      return ::testing::AssertionFailure() << "the subscription was not granted";
    return ::testing::AssertionSuccess();
  }

  // A fetch request at QoS 1 with its Response Topic and Correlation Data; never waits for the
  // PUBACK (it never reads).
  bool request(const std::string& topic, const std::string& payload, int number) {
    std::string properties;
    properties += '\x08';  // Response Topic
    properties += text(fetch::response_topic(id_));
    properties += '\x09';  // Correlation Data
    properties += text("flood-" + std::to_string(number));
    std::string body = text(topic);
    const auto mid = static_cast<std::uint16_t>(number % 65'535 + 1);
    body += static_cast<char>(mid >> 8);
    body += static_cast<char>(mid & 0xff);
    body += varint(properties.size()) + properties + payload;
    return send(packet(0x32, body));
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  static std::string varint(std::size_t n) {
    std::string out;
    do {
      auto byte = static_cast<char>(n % 128);
      n /= 128;
      if (n > 0) byte = static_cast<char>(byte | 0x80);
      out += byte;
    } while (n > 0);
    return out;
  }
  static std::string text(const std::string& s) {
    return std::string{static_cast<char>(s.size() >> 8), static_cast<char>(s.size() & 0xff)} + s;
  }
  static std::string packet(char type, const std::string& body) {
    return std::string(1, type) + varint(body.size()) + body;
  }
  bool send(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

  std::string id_;
  int fd_ = -1;
};

// A field of /proc/<pid>/status in KiB.
long status_kib(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

// The broker's own figure of the payload bytes its message store holds.
class StoreMonitor {
 public:
  explicit StoreMonitor(int port) : client_("store-monitor") {
    EXPECT_TRUE(client_.connect(port));
    EXPECT_TRUE(client_.subscribe(std::vector<std::string>{"$SYS/broker/store/messages/bytes"}, 0));
  }
  // The value after the broker had time to publish it again (sys_interval 1).
  std::int64_t settled() {
    std::this_thread::sleep_for(2500ms);
    for (const auto& m : client_.drain()) bytes_ = std::stoll(m.payload);
    return bytes_;
  }

 private:
  Client client_;
  std::int64_t bytes_ = -1;
};

// The broker and the plugin as the test wants them; `broker_limits`: with the limits an operator
// sets for clients that do not read (max_queued_bytes, max_inflight_bytes), or with mosquitto's
// defaults (none on bytes).
BrokerConfig flood_config(bool broker_limits) {
  BrokerConfig config = edge_config(flood_fragment_size, 1);
  config.plugin_options.emplace_back("fetch_bytes_per_client",
                                     std::to_string(fetch_bytes_per_client));
  if (broker_limits)
    config.extra_config_lines = {"max_queued_bytes " + std::to_string(max_queued_bytes),
                                 "max_inflight_bytes " + std::to_string(max_inflight_bytes)};
  return config;
}

// Floods, gets the file meanwhile, and checks what the broker held and what it kept.
void flood(bool broker_limits) {
  Broker broker(flood_config(broker_limits));
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge("edge-a", broker.dir());
  ASSERT_TRUE(edge.start(broker.port(), {"-q"}));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));
  const Bytes content = random_content(4 * flood_fragment_size, 21);
  const auto file = testing::cut_file(content, flood_fragment_size);
  const std::string path = broker.dir() + "/input.bin";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(content.data()),
             static_cast<std::streamsize>(content.size()));
  const std::string port = std::to_string(broker.port());
  const auto put = run_mqds({"-p", port, "put", path});
  ASSERT_EQ(put.status, 0) << put.err;
  ASSERT_TRUE(wait_settled(edge));
  StoreMonitor store(broker.port());
  const std::int64_t stored_before = store.settled();
  const long rss_before_kib = status_kib(broker.pid(), "VmRSS");

  NonReader flooder("flooder");
  ASSERT_TRUE(flooder.connect(broker.port()));
  const std::string request_topic = fetch::request_topic(edge.id());
  long peak_kib = rss_before_kib;
  for (int i = 0; i < flood_requests; ++i) {
    fetch::Request request;
    request.hash = file.fragments[static_cast<std::size_t>(i) % file.fragments.size()].hash;
    ASSERT_TRUE(flooder.request(request_topic, fetch::encode_request(request), i)) << i;
    // In bursts the edge keeps up with: every burst could be answered in full.
    if (i % 16 == 15) {
      std::this_thread::sleep_for(20ms);
      peak_kib = std::max(peak_kib, status_kib(broker.pid(), "VmRSS"));
    }
  }
  std::this_thread::sleep_for(500ms);  // the last answers arrive
  peak_kib = std::max(peak_kib, status_kib(broker.pid(), "VmRSS"));
  // While the flooder is still connected, another client gets the file.
  const std::string out = broker.dir() + "/output.bin";
  const auto got = run_mqds({"-p", port, "get", file.hash.to_hex(), "-o", out});
  EXPECT_EQ(got.status, 0) << got.err;
  peak_kib = std::max(peak_kib, status_kib(broker.pid(), "VmRSS"));

  flooder.close();
  const std::int64_t stored_after = store.settled();
  const long rss_after_kib = status_kib(broker.pid(), "VmRSS");
  const auto mib_of = [](long kib) { return static_cast<double>(kib) / 1024.0; };
  std::cout << "[ flood    ] " << flood_requests << " requests for 1 MiB"
            << (broker_limits ? " (broker byte limits)" : " (no broker byte limits)")
            << ": broker VmRSS " << mib_of(rss_before_kib) << " MiB before, peak "
            << mib_of(peak_kib) << " MiB, " << mib_of(rss_after_kib)
            << " MiB after the flooder left; message store " << stored_after - stored_before
            << " B more than before\n";
  ::testing::Test::RecordProperty("rss_growth_peak_kib",
                                  static_cast<int>(peak_kib - rss_before_kib));
  ::testing::Test::RecordProperty("rss_growth_after_kib",
                                  static_cast<int>(rss_after_kib - rss_before_kib));

  // While connected: the flooder's budget, which the broker may hold twice (the stored message and
  // its packet on the way out), what is on its way from the edge, and the get's answers; not a MiB
  // a request.
  // Once it left, the broker keeps nothing of it.
  EXPECT_LT(stored_after - stored_before, mib) << "responses stay in the broker's message store";
#ifndef MQDS_SANITIZED  // AddressSanitizer's shadow memory and quarantine make resident sizes
                        // meaningless
  constexpr long bound_kib = (3 * fetch_bytes_per_client + 16 * mib) / 1024;
  EXPECT_LT(peak_kib - rss_before_kib, bound_kib)
      << "the broker holds what a client that does not read was sent";
  EXPECT_LT(rss_after_kib - rss_before_kib, 8 * mib / 1024) << "the memory was not given back";
#endif

  // And another get afterwards.
  const auto again = run_mqds({"-p", port, "get", file.hash.to_hex(), "-o", out + ".2"});
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_TRUE(broker.running());
}

// Mosquitto's defaults: nothing but the plugin's budget bounds what waits for the flooder.
TEST(FetchFlood, AClientThatNeverReadsIsOwedNoMoreThanItsBudget) {
  flood(false);
}

// With the broker's byte limits, what the broker drops for the flooder must be freed: 2.0.11 keeps
// a message published to one client by id that it drops.
TEST(FetchFlood, WithBrokerLimitsNothingOfItStaysAfterItLeft) {
  flood(true);
}

}  // namespace
}  // namespace mqds::edge_test
