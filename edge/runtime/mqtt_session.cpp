#include "mqtt_session.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <cstdlib>
#include <stdexcept>

namespace mqds::runtime {

namespace {

struct Library {
  Library() { mosquitto_lib_init(); }
  ~Library() { mosquitto_lib_cleanup(); }
};

void use_library() {
  static Library library;
}

const char* or_null(const std::string& s) {
  return s.empty() ? nullptr : s.c_str();
}

constexpr std::size_t user_properties_max = 32;

}  // namespace

std::string describe_error(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return std::string("system error: ") + mosquitto_strerror(rc);
  return mosquitto_strerror(rc);
}

std::optional<std::string> Received::user_property(std::string_view name) const {
  for (const auto& [key, value] : user_properties)
    if (key == name) return value;
  return std::nullopt;
}

MqttSession::MqttSession(const ConnectionOptions& options, int receive_maximum, Handlers handlers)
    : options_(options), handlers_(std::move(handlers)) {
  use_library();
  mosq_ = mosquitto_new(or_null(options_.client_id), true, this);
  if (!mosq_) throw std::runtime_error("cannot create an MQTT client (out of memory?)");
  try {
    auto check = [](int rc, const char* what) {
      if (rc != MOSQ_ERR_SUCCESS)
        throw std::runtime_error(std::string(what) + ": " + describe_error(rc));
    };
    check(mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5), "MQTT 5");
    check(mosquitto_int_option(mosq_, MOSQ_OPT_RECEIVE_MAXIMUM, receive_maximum),
          "receive maximum");
    // Acknowledgements and events are small packets that the other side waits for: with Nagle's
    // algorithm each can sit behind a delayed ACK for 40 ms, which throttled uploads to a tenth
    // of what the broker can take (seen with strace).
    check(mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1), "TCP_NODELAY");
    if (options_.username)
      check(mosquitto_username_pw_set(mosq_, options_.username->c_str(),
                                      options_.password ? options_.password->c_str() : nullptr),
            "username");
    if (options_.tls())
      check(mosquitto_tls_set(mosq_, or_null(options_.cafile), or_null(options_.capath),
                              or_null(options_.cert), or_null(options_.key), nullptr),
            "TLS set-up");
  } catch (...) {
    mosquitto_destroy(mosq_);
    throw;
  }
  mosquitto_connect_v5_callback_set(mosq_, on_connect);
  mosquitto_disconnect_v5_callback_set(mosq_, on_disconnect);
  mosquitto_publish_v5_callback_set(mosq_, on_publish);
  mosquitto_subscribe_v5_callback_set(mosq_, on_subscribe);
  mosquitto_message_v5_callback_set(mosq_, on_message);
}

MqttSession::~MqttSession() {
  if (connected_) disconnect(1'000);
  mosquitto_destroy(mosq_);
}

template <class F>
void MqttSession::guarded(F&& body) noexcept {
  if (failure_) return;  // the first failure is the one step() reports
  try {
    body();
  } catch (...) {
    failure_ = std::current_exception();
  }
}

bool MqttSession::connect(std::string& why) {
  disconnecting_ = false;
  const int rc = socket_open_ ? mosquitto_reconnect(mosq_)
                              : mosquitto_connect_bind_v5(mosq_, options_.host.c_str(),
                                                          options_.effective_port(),
                                                          options_.keepalive_s, nullptr, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) {
    why = describe_error(rc);
    return false;
  }
  // After the first connect libmosquitto knows host and port: reconnect() reuses them.
  socket_open_ = true;
  return true;
}

bool MqttSession::step(int timeout_ms) {
  const int rc = mosquitto_loop(mosq_, timeout_ms, 1);
  if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
  if (rc != MOSQ_ERR_SUCCESS && connected_) mark_lost(describe_error(rc));
  if (rc != MOSQ_ERR_SUCCESS && failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
  return rc == MOSQ_ERR_SUCCESS;
}

void MqttSession::mark_lost(const std::string& why) {
  if (!connected_) return;
  connected_ = false;
  if (!disconnecting_ && handlers_.lost) guarded([&] { handlers_.lost(why); });
}

int MqttSession::publish(const Outgoing& message) {
  mosquitto_property* properties = nullptr;
  int rc = MOSQ_ERR_SUCCESS;
  if (!message.response_topic.empty())
    rc = mosquitto_property_add_string(&properties, MQTT_PROP_RESPONSE_TOPIC,
                                       std::string(message.response_topic).c_str());
  if (rc == MOSQ_ERR_SUCCESS && !message.correlation_data.empty())
    rc = mosquitto_property_add_binary(&properties, MQTT_PROP_CORRELATION_DATA,
                                       message.correlation_data.data(),
                                       static_cast<std::uint16_t>(message.correlation_data.size()));
  if (rc == MOSQ_ERR_SUCCESS && message.user_properties)
    for (const auto& [name, value] : *message.user_properties) {
      rc = mosquitto_property_add_string_pair(&properties, MQTT_PROP_USER_PROPERTY, name.c_str(),
                                              value.c_str());
      if (rc != MOSQ_ERR_SUCCESS) break;
    }
  int mid = 0;
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mosquitto_publish_v5(mosq_, &mid, std::string(message.topic).c_str(),
                              static_cast<int>(message.payload.size()), message.payload.data(),
                              message.qos, false, properties);
  mosquitto_property_free_all(&properties);
  return rc == MOSQ_ERR_SUCCESS ? mid : -rc;
}

int MqttSession::subscribe(const std::vector<std::string>& topics, int qos) {
  std::vector<char*> pointers;
  for (const auto& topic : topics) pointers.push_back(const_cast<char*>(topic.c_str()));
  int mid = 0;
  const int rc = mosquitto_subscribe_multiple(mosq_, &mid, static_cast<int>(pointers.size()),
                                              pointers.data(), qos, 0, nullptr);
  return rc == MOSQ_ERR_SUCCESS ? mid : -rc;
}

void MqttSession::disconnect(int timeout_ms) {
  if (!socket_open_) return;
  disconnecting_ = true;
  mosquitto_disconnect_v5(mosq_, MQTT_RC_NORMAL_DISCONNECTION, nullptr);
  // The DISCONNECT is written by the loop; a few short steps are enough on a live connection.
  for (int waited = 0; connected_ && waited < timeout_ms; waited += 10)
    mosquitto_loop(mosq_, 10, 1);
  connected_ = false;
  failure_ = nullptr;
}

void MqttSession::on_connect(mosquitto*, void* self, int rc, int, const mosquitto_property*) {
  auto* s = static_cast<MqttSession*>(self);
  s->guarded([&] {
    if (rc == 0) {
      s->connected_ = true;
      if (s->handlers_.connected) s->handlers_.connected();
    } else if (s->handlers_.refused) {
      s->handlers_.refused(rc >= 128 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc));
    }
  });
}

void MqttSession::on_disconnect(mosquitto*, void* self, int rc, const mosquitto_property*) {
  auto* s = static_cast<MqttSession*>(self);
  s->mark_lost(rc == 0 ? "disconnected" : describe_error(rc));
}

void MqttSession::on_publish(mosquitto*, void* self, int mid, int reason_code,
                             const mosquitto_property*) {
  auto* s = static_cast<MqttSession*>(self);
  s->guarded([&] {
    if (s->handlers_.published) s->handlers_.published(mid, reason_code);
  });
}

void MqttSession::on_subscribe(mosquitto*, void* self, int mid, int count, const int* granted,
                               const mosquitto_property*) {
  auto* s = static_cast<MqttSession*>(self);
  s->guarded([&] {
    if (s->handlers_.subscribed)
      s->handlers_.subscribed(mid, std::vector<int>(granted, granted + count));
  });
}

void MqttSession::on_message(mosquitto*, void* self, const mosquitto_message* message,
                             const mosquitto_property* props) {
  auto* s = static_cast<MqttSession*>(self);
  s->guarded([&] {
    if (!s->handlers_.message || !message->topic) return;
    Received received;
    received.topic = message->topic;
    received.payload.assign(static_cast<const char*>(message->payload),
                            message->payload ? static_cast<std::size_t>(message->payloadlen) : 0);
    received.qos = message->qos;
    char* text = nullptr;
    if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &text, false) && text) {
      received.response_topic = text;
      std::free(text);
    }
    void* binary = nullptr;
    std::uint16_t length = 0;
    if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &binary, &length,
                                       false) &&
        binary) {
      received.correlation_data.assign(static_cast<const char*>(binary), length);
      std::free(binary);
    }
    bool skip_first = false;
    // Bounded: a message can carry any number of them, and only a few names mean anything here.
    for (const mosquitto_property* p = props; received.user_properties.size() < user_properties_max;
         skip_first = true) {
      char* name = nullptr;
      char* value = nullptr;
      p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
                                              skip_first);
      if (!p) break;
      received.user_properties.emplace_back(name ? name : "", value ? value : "");
      std::free(name);
      std::free(value);
    }
    s->handlers_.message(std::move(received));
  });
}

}  // namespace mqds::runtime
