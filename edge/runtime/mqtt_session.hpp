// One MQTT 5 connection over libmosquitto, driven from the program's own single-threaded loop.
//
// Why not mosquitto_loop_start: the state machines are not thread-safe and must see messages,
// ticks and the connection in one order, so the program calls step() itself with the time left to
// its next deadline. Handlers run inside step(), from libmosquitto's callbacks; an exception a
// handler throws is caught in the C callback and rethrown by step() once libmosquitto returned.
//
// The connection never reconnects by itself: the program decides when (with backoff), and the
// state machine learns of every loss.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "connection_options.hpp"

struct mosquitto;
struct mosquitto_message;
typedef struct mqtt5__property mosquitto_property;

namespace mqds::runtime {

using UserProperties = std::vector<std::pair<std::string, std::string>>;

struct Received {
  std::string topic;
  std::string payload;
  int qos = 0;
  std::string response_topic;    // MQTT 5 request/response ("" if none)
  std::string correlation_data;  // raw bytes ("" if none)
  UserProperties user_properties;
  std::optional<std::string> user_property(std::string_view name) const;
};

// A message to publish. Its fields are views: what they point to must live until publish() returns
// (libmosquitto copies it).
struct Outgoing {
  Outgoing(std::string_view topic_, std::string_view payload_, int qos_)
      : topic(topic_), payload(payload_), qos(qos_) {}
  std::string_view topic;
  std::string_view payload;
  int qos = 2;
  std::string_view response_topic;
  std::string_view correlation_data;
  const UserProperties* user_properties = nullptr;
};

class MqttSession {
 public:
  struct Handlers {
    std::function<void()> connected;                      // CONNACK accepted
    std::function<void(const std::string& why)> refused;  // CONNACK refused (bad credentials...)
    std::function<void(const std::string& why)> lost;     // an established connection ended
    std::function<void(Received&&)> message;
    std::function<void(int mid, int reason_code)> published;  // QoS 1 PUBACK / QoS 2 PUBCOMP
    std::function<void(int mid, const std::vector<int>& granted)> subscribed;
  };

  // MQTT 5, clean start, TLS if the options ask for it. receive_maximum bounds the QoS 1 and 2
  // messages the broker may have in flight to us. Throws std::runtime_error on a setup failure
  // (an unreadable certificate, out of memory).
  MqttSession(const ConnectionOptions& options, int receive_maximum, Handlers handlers);
  ~MqttSession();
  MqttSession(const MqttSession&) = delete;
  MqttSession& operator=(const MqttSession&) = delete;

  // Opens the TCP (and TLS) connection and sends CONNECT; CONNACK arrives in a later step().
  // False with the reason when the broker cannot be reached.
  bool connect(std::string& why);
  // Network I/O for at most timeout_ms. False once the connection is gone (the `lost` or `refused`
  // handler has then been called).
  bool step(int timeout_ms);
  // The message id, or a negative libmosquitto error.
  int publish(const Outgoing& message);
  int subscribe(const std::vector<std::string>& topics, int qos);
  // A clean DISCONNECT; waits at most timeout_ms for it to be written.
  void disconnect(int timeout_ms);

  bool connected() const { return connected_; }

 private:
  static void on_connect(mosquitto*, void* self, int rc, int flags, const mosquitto_property*);
  static void on_disconnect(mosquitto*, void* self, int rc, const mosquitto_property*);
  static void on_publish(mosquitto*, void* self, int mid, int reason_code,
                         const mosquitto_property*);
  static void on_subscribe(mosquitto*, void* self, int mid, int count, const int* granted,
                           const mosquitto_property*);
  static void on_message(mosquitto*, void* self, const mosquitto_message* message,
                         const mosquitto_property* props);
  template <class F>
  void guarded(F&& body) noexcept;
  void mark_lost(const std::string& why);

  ConnectionOptions options_;
  Handlers handlers_;
  mosquitto* mosq_ = nullptr;
  bool socket_open_ = false;
  bool connected_ = false;
  bool disconnecting_ = false;
  std::exception_ptr failure_;
};

// libmosquitto's words for an error or a reason code.
std::string describe_error(int rc);

}  // namespace mqds::runtime
