// One MQTT client (libmosquitto, MQTT 5 by default, or 3.1.1) for tests against a real broker.
//
// The client runs its own network thread (mosquitto_threaded_set + mosquitto_loop) instead of
// mosquitto_loop_start: it never reconnects by itself, and lose_connection() can stop it without
// pthread_cancel, so a lost connection stays lost until the test connects a new client.
//
// Received messages go to a queue that the test waits on. Publishing waits for the broker's
// PUBACK (QoS 1) or PUBCOMP/PUBREC (QoS 2) and returns its MQTT 5 reason code, so a message the
// plugin dropped (0x87 Not authorized) is visible to the publisher. An MQTT 3.1.1 acknowledgement
// carries no reason code: there every acknowledged publish reads as success.
//
// MQTT 5 properties: a publish may carry a Response Topic, Correlation Data and User Properties
// (PublishProperties), and a received Message exposes the same three.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

struct mosquitto;
struct mosquitto_message;
typedef struct mqtt5__property mosquitto_property;

namespace mqds::broker_test {

using namespace std::chrono_literals;

enum class Protocol : std::uint8_t { mqtt5, mqtt311 };

// MQTT 5 reason codes the tests look at.
namespace reason {
inline constexpr int success = 0x00;
inline constexpr int no_matching_subscribers = 0x10;
inline constexpr int not_authorized = 0x87;
inline constexpr int timed_out = -1;  // no acknowledgement arrived (not an MQTT code)
}  // namespace reason

// "0x87 Not authorized", for failure messages.
std::string describe_reason(int code);

using UserProperties = std::vector<std::pair<std::string, std::string>>;  // in the order sent

struct Message {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
  // MQTT 5 properties as received; nullopt when absent.
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;  // binary
  UserProperties user_properties;
};

// MQTT 5 properties of an outgoing publish; an MQTT 3.1.1 client cannot send any.
struct PublishProperties {
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;  // binary, at most 65,535 bytes
  UserProperties user_properties;
};

class Client {
 public:
  explicit Client(std::string id, Protocol protocol = Protocol::mqtt5);
  ~Client();  // a clean DISCONNECT if still connected
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // MQTT 5 Receive Maximum sent in CONNECT (libmosquitto's default is 20); call before connect().
  void set_receive_maximum(int messages);
  // Username (and password) sent in CONNECT; call before connect(). Without, the client has none.
  void set_credentials(const std::string& username,
                       const std::optional<std::string>& password = std::nullopt);
  // TLS with the CA file that signed the broker's certificate and, optionally, a client
  // certificate and its key (PEM files); call before connect().
  void set_tls(const std::string& cafile, const std::optional<std::string>& certfile = std::nullopt,
               const std::optional<std::string>& keyfile = std::nullopt);
  // The MQTT Will sent in CONNECT, which the broker publishes when the connection is lost without
  // DISCONNECT (lose_connection()); call before connect(). Properties only with MQTT 5.
  void set_will(std::string_view topic, std::string_view payload, int qos, bool retain = false,
                const PublishProperties& properties = {});
  // Connects and waits for a successful CONNACK.
  [[nodiscard]] ::testing::AssertionResult connect(int port, int keepalive_s = 60,
                                                   std::chrono::milliseconds timeout = 5s);
  // Subscribes and waits for the SUBACK; a refused topic is a failure.
  [[nodiscard]] ::testing::AssertionResult subscribe(const std::vector<std::string>& topics,
                                                     int qos = 2,
                                                     std::chrono::milliseconds timeout = 5s);
  [[nodiscard]] ::testing::AssertionResult subscribe(std::span<const std::string_view> topics,
                                                     int qos = 2,
                                                     std::chrono::milliseconds timeout = 5s);

  // Publishes and waits for the acknowledgement: the reason code (reason::*), reason::timed_out if
  // none came, or the negated libmosquitto error if the publish could not be sent. QoS 0 has no
  // acknowledgement: it returns success once the message is written.
  int publish(std::string_view topic, std::string_view payload, int qos = 2,
              std::chrono::milliseconds timeout = 5s);
  // The same with MQTT 5 properties (on an MQTT 3.1.1 client: -MOSQ_ERR_NOT_SUPPORTED).
  int publish(std::string_view topic, std::string_view payload, int qos,
              const PublishProperties& properties, std::chrono::milliseconds timeout = 5s,
              bool retain = false);
  // Sends without waiting; the message id for wait_published, or a negated libmosquitto error.
  int publish_async(std::string_view topic, std::string_view payload, int qos);
  int publish_async(std::string_view topic, std::string_view payload, int qos,
                    const PublishProperties& properties, bool retain = false);
  std::optional<int> wait_published(int mid, std::chrono::milliseconds timeout = 5s);

  // Takes the first queued message that `match` accepts, waiting up to `timeout` for one.
  std::optional<Message> wait_for(const std::function<bool(const Message&)>& match,
                                  std::chrono::milliseconds timeout);
  std::optional<Message> wait_for(std::string_view topic, std::chrono::milliseconds timeout);
  // Takes every queued message.
  std::vector<Message> drain();
  std::size_t queued() const;
  // Waits until every message the broker queued for this client before now has arrived: a round
  // trip through the broker on a topic of its own. After it, "nothing received" means nothing sent.
  [[nodiscard]] ::testing::AssertionResult sync(std::chrono::milliseconds timeout = 5s);

  // Ends the connection without DISCONNECT: the network thread stops and the socket is shut down,
  // so the broker sees a lost connection (its will, its DISCONNECT event).
  void lose_connection();
  // A clean DISCONNECT, waiting (bounded) for it to be sent.
  void disconnect();

  bool connected() const { return connected_; }
  // The reason code of the last CONNACK (0 accepted, 0x87 Not authorized...), nullopt if none came.
  std::optional<int> connack_code() const;
  // Why the connection last ended, as libmosquitto reported it ("" while it never ended).
  std::string disconnect_reason() const;
  const std::string& id() const { return id_; }
  Protocol protocol() const { return protocol_; }

 private:
  static void on_connect(mosquitto*, void* self, int rc, int flags, const mosquitto_property*);
  static void on_disconnect(mosquitto*, void* self, int rc, const mosquitto_property*);
  static void on_subscribe(mosquitto*, void* self, int mid, int count, const int* granted,
                           const mosquitto_property*);
  static void on_publish(mosquitto*, void* self, int mid, int reason_code,
                         const mosquitto_property*);
  static void on_message(mosquitto*, void* self, const mosquitto_message* message,
                         const mosquitto_property*);
  void start_network_thread();
  void stop_network_thread();

  std::string id_;
  Protocol protocol_;
  mosquitto* mosq_ = nullptr;
  std::thread network_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> connected_{false};

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<int> connack_;
  std::map<int, std::vector<int>> subacks_;  // mid -> granted QoS or reason per topic
  std::map<int, int> acks_;                  // mid -> reason code
  std::deque<Message> messages_;
  bool disconnected_ = false;
  std::optional<int> disconnect_rc_;
  bool sync_subscribed_ = false;
  std::uint64_t sync_count_ = 0;
};

}  // namespace mqds::broker_test
