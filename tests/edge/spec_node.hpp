// A torrent server that knows only the specification (tests/support/spec_server.hpp) on a real
// MQTT connection, as the C# reference connects: MQTT 3.1.1, clean session, one SUBSCRIBE of its
// topics at QoS 1, publishes at QoS 2, never reconnects. A thread of its own feeds the machine
// what arrives and the passage of time, so it runs beside mqds-edge processes while the test waits.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client.hpp"
#include "support/spec_server.hpp"

namespace mqds::edge_test {

// 32 lowercase hexadecimal characters, new at every start, as the reference client's ids are.
inline std::string spec_client_id() {
  static constexpr char digits[] = "0123456789abcdef";
  std::random_device device;
  std::string id;
  for (int i = 0; i < 32; ++i) id += digits[device() % 16];
  return id;
}

class SpecNode {
 public:
  explicit SpecNode(std::string id = spec_client_id(), spec_only::Disk disk = {},
                    std::string endpoint = {})
      : client_(id, broker_test::Protocol::mqtt311),
        machine_(
            spec_only::Config{id, endpoint.empty() ? "tcp://" + id + ".local:50051" : endpoint},
            std::move(disk)) {}
  ~SpecNode() { stop_thread(); }
  SpecNode(const SpecNode&) = delete;
  SpecNode& operator=(const SpecNode&) = delete;

  // Connects, subscribes, sends its ClientJoinRequested and starts feeding the machine; `paused`,
  // what arrives waits in the connection until resume() (a board too busy to read).
  ::testing::AssertionResult start(int port, bool paused = false) {
    paused_ = paused;
    if (auto r = client_.connect(port); !r) return r;
    std::vector<std::string> topics = spec_only::Server::topics();
    if (auto r = client_.subscribe(topics, 1); !r) return r;
    {
      std::lock_guard lock(mutex_);
      send(machine_.on_connected(now_ms()));
    }
    thread_ = std::thread([this] { run(); });
    return ::testing::AssertionSuccess();
  }

  void resume() { paused_ = false; }

  // The specification's Client Goodbye: ClientGoodbye, then a clean DISCONNECT.
  void say_goodbye() {
    stop_thread();
    std::lock_guard lock(mutex_);
    for (const auto& m : machine_.goodbye()) client_.publish(m.topic, m.payload, 2);
    client_.disconnect();
  }
  // The socket closes without DISCONNECT (a crash, a pulled cable).
  void lose_connection() {
    stop_thread();
    client_.lose_connection();
  }

  // Reads the machine under its lock.
  template <class F>
  auto with_machine(F&& read) const {
    std::lock_guard lock(mutex_);
    return read(machine_);
  }
  spec_only::Phase phase() const {
    return with_machine([](auto& m) { return m.phase(); });
  }
  spec_only::Counters counters() const {
    return with_machine([](auto& m) { return m.counters(); });
  }
  spec_only::View view() const {
    return with_machine([](auto& m) { return m.view(); });
  }
  spec_only::Disk disk() const {
    return with_machine([](auto& m) { return m.disk(); });
  }
  // Topics received, in order.
  std::vector<std::string> received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  const std::string& id() const { return client_.id(); }

  // Waits until `done` holds for the machine.
  ::testing::AssertionResult wait(const std::function<bool(const spec_only::Server&)>& done,
                                  std::chrono::milliseconds timeout, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (with_machine(done)) return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return ::testing::AssertionFailure()
           << id() << ": not " << what << " within " << timeout.count() << " ms; phase "
           << spec_only::phase_name(phase()) << ", last denial " << counters().last_reason;
  }
  ::testing::AssertionResult wait_registered(std::chrono::milliseconds timeout) {
    return wait([](const auto& m) { return m.phase() == spec_only::Phase::registered; }, timeout,
                "registered");
  }

 private:
  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void send(const std::vector<spec_only::Message>& messages) {
    for (const auto& m : messages) client_.publish_async(m.topic, m.payload, 2);
  }
  void run() {
    while (!stopping_) {
      if (paused_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      auto message = client_.wait_for([](const broker_test::Message&) { return true; },
                                      std::chrono::milliseconds(20));
      std::lock_guard lock(mutex_);
      if (message) {
        received_.push_back(message->topic);
        send(machine_.on_message(now_ms(), message->topic, message->payload));
      }
      send(machine_.on_tick(now_ms()));
    }
  }
  void stop_thread() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }

  broker_test::Client client_;
  mutable std::mutex mutex_;
  spec_only::Server machine_;
  std::vector<std::string> received_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> paused_{false};
  std::thread thread_;
};

}  // namespace mqds::edge_test
