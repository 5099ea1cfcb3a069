// The baseline: what moving the same bytes costs without mqds. Plain libmosquitto clients through
// the broker with no plugin, and subscribers that write what they receive to LMDB with the commit
// policy of mqds-edge (one durable transaction per pass of the network loop, early at 8 MiB).
#pragma once

#include <lmdb.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct mosquitto;
struct mosquitto_message;
typedef struct mqtt5__property mosquitto_property;

namespace mqds::bench {

// One libmosquitto MQTT 5 connection with a Receive Maximum of 65,535 (as mqds-edge sets), its
// network loop on a thread of its own.
class RawConnection {
 public:
  using OnMessage = std::function<void(const mosquitto_message&)>;
  RawConnection(const std::string& id, int port, OnMessage handler = {});
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void subscribe(const std::string& pattern, int qos);
  // Publishes at QoS 1, waiting while `window` messages are unacknowledged.
  void publish(const std::string& topic, const void* data, std::size_t size,
               std::size_t window = 16);
  void wait_all_acknowledged();
  // What went wrong on the loop's thread (a callback that threw), thrown here; nothing thrown may
  // cross libmosquitto's C callbacks, so they keep it for the threads that wait.
  void rethrow_if_failed();
  // After each pass of the network loop (on the loop's thread).
  void set_after_pass(std::function<void()> after_pass) { after_pass_ = std::move(after_pass); }
  // Starts the network loop thread.
  void run();

 private:
  void fail(std::exception_ptr failure);
  static void on_message(mosquitto*, void* self, const mosquitto_message* message,
                         const mosquitto_property*);
  static void on_publish(mosquitto*, void* self, int mid, int reason, const mosquitto_property*);
  static void on_subscribe(mosquitto*, void* self, int mid, int count, const int* granted,
                           const mosquitto_property*);

  mosquitto* mosq_ = nullptr;
  OnMessage on_message_;
  std::function<void()> after_pass_;
  std::thread loop_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t unacknowledged_ = 0;
  bool subscribed_ = false;
  std::exception_ptr failure_;
};

// An LMDB environment of 1 MiB-ish values keyed by a message number, written in group commits.
class RawStore {
 public:
  RawStore(const std::string& dir, std::size_t map_bytes);
  ~RawStore();
  RawStore(const RawStore&) = delete;
  RawStore& operator=(const RawStore&) = delete;

  void add(std::uint64_t key, const void* data, std::size_t size);  // commits at 8 MiB pending
  void commit();                                                    // durable when it returns
  std::size_t committed() const { return committed_.load(); }
  // Every value in key order, read straight from the memory map.
  void for_each(
      const std::function<void(std::uint64_t key, const void* data, std::size_t size)>& f);

 private:
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  std::vector<std::pair<std::uint64_t, std::string>> pending_;
  std::size_t pending_bytes_ = 0;
  std::atomic<std::size_t> committed_{0};
};

}  // namespace mqds::bench
