#include "client.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <sys/socket.h>

#include <cstdlib>
#include <memory>
#include <utility>

namespace mqds::broker_test {

namespace {

using Clock = std::chrono::steady_clock;

void init_library_once() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

// libmosquitto's mosquitto_property_read_* copies are malloc'ed: the application free()s them.
struct Freed {
  void operator()(void* p) const { std::free(p); }
};
using CopiedString = std::unique_ptr<char, Freed>;
using CopiedBytes = std::unique_ptr<void, Freed>;

void read_properties(const mosquitto_property* properties, Message& message) {
  if (!properties) return;
  char* text = nullptr;
  if (mosquitto_property_read_string(properties, MQTT_PROP_RESPONSE_TOPIC, &text, false)) {
    CopiedString owned(text);
    message.response_topic = owned ? std::string(owned.get()) : std::string();
  }
  void* bytes = nullptr;
  std::uint16_t length = 0;
  if (mosquitto_property_read_binary(properties, MQTT_PROP_CORRELATION_DATA, &bytes, &length,
                                     false)) {
    CopiedBytes owned(bytes);
    message.correlation_data =
        owned ? std::string(static_cast<const char*>(owned.get()), length) : std::string();
  }
  for (const mosquitto_property* p = properties; p; p = mosquitto_property_next(p)) {
    if (mosquitto_property_identifier(p) != MQTT_PROP_USER_PROPERTY) continue;
    char* name = nullptr;
    char* value = nullptr;
    if (!mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, false))
      continue;
    CopiedString owned_name(name), owned_value(value);
    message.user_properties.emplace_back(owned_name ? owned_name.get() : "",
                                         owned_value ? owned_value.get() : "");
  }
}

// A property list for mosquitto_publish_v5, which copies it: the caller frees it.
struct PropertyList {
  mosquitto_property* list = nullptr;
  PropertyList() = default;
  PropertyList(const PropertyList&) = delete;
  PropertyList& operator=(const PropertyList&) = delete;
  ~PropertyList() { mosquitto_property_free_all(&list); }
};

// MOSQ_ERR_SUCCESS, or why the properties cannot be built (a too long value, bad UTF-8).
int build_properties(const PublishProperties& properties, PropertyList& out) {
  int rc = MOSQ_ERR_SUCCESS;
  if (properties.response_topic)
    rc = mosquitto_property_add_string(&out.list, MQTT_PROP_RESPONSE_TOPIC,
                                       properties.response_topic->c_str());
  if (rc == MOSQ_ERR_SUCCESS && properties.correlation_data) {
    if (properties.correlation_data->size() > 65535) return MOSQ_ERR_INVAL;
    rc = mosquitto_property_add_binary(
        &out.list, MQTT_PROP_CORRELATION_DATA, properties.correlation_data->data(),
        static_cast<std::uint16_t>(properties.correlation_data->size()));
  }
  for (const auto& [name, value] : properties.user_properties) {
    if (rc != MOSQ_ERR_SUCCESS) break;
    rc = mosquitto_property_add_string_pair(&out.list, MQTT_PROP_USER_PROPERTY, name.c_str(),
                                            value.c_str());
  }
  return rc;
}

}  // namespace

std::string describe_reason(int code) {
  if (code == reason::timed_out) return "no acknowledgement (timed out)";
  if (code < 0) return std::string("not sent: ") + mosquitto_strerror(-code);
  static const char hex[] = "0123456789abcdef";
  return std::string("0x") + hex[(code >> 4) & 0xf] + hex[code & 0xf] + " " +
         mosquitto_reason_string(code);
}

Client::Client(std::string id, Protocol protocol) : id_(std::move(id)), protocol_(protocol) {
  init_library_once();
  mosq_ = mosquitto_new(id_.c_str(), true, this);
  if (!mosq_) {
    ADD_FAILURE() << "mosquitto_new(" << id_ << ") failed: out of memory or a bad client id";
    return;
  }
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION,
                       protocol_ == Protocol::mqtt5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  mosquitto_threaded_set(mosq_, true);  // our own network thread; see the header
  mosquitto_connect_v5_callback_set(mosq_, on_connect);
  mosquitto_disconnect_v5_callback_set(mosq_, on_disconnect);
  mosquitto_subscribe_v5_callback_set(mosq_, on_subscribe);
  mosquitto_publish_v5_callback_set(mosq_, on_publish);
  mosquitto_message_v5_callback_set(mosq_, on_message);
}

Client::~Client() {
  if (!mosq_) return;
  if (connected_) disconnect();
  stop_network_thread();
  mosquitto_destroy(mosq_);
}

void Client::on_connect(mosquitto*, void* self, int rc, int, const mosquitto_property*) {
  auto* client = static_cast<Client*>(self);
  {
    std::lock_guard lock(client->mutex_);
    client->connack_ = rc;
    client->connected_ = rc == 0;
    client->disconnected_ = false;
  }
  client->changed_.notify_all();
}

void Client::on_disconnect(mosquitto*, void* self, int rc, const mosquitto_property*) {
  auto* client = static_cast<Client*>(self);
  {
    std::lock_guard lock(client->mutex_);
    client->disconnect_rc_ = rc;
    client->connected_ = false;
    client->disconnected_ = true;
  }
  client->changed_.notify_all();
}

void Client::on_subscribe(mosquitto*, void* self, int mid, int count, const int* granted,
                          const mosquitto_property*) {
  auto* client = static_cast<Client*>(self);
  {
    std::lock_guard lock(client->mutex_);
    client->subacks_[mid].assign(granted, granted + count);
  }
  client->changed_.notify_all();
}

void Client::on_publish(mosquitto*, void* self, int mid, int reason_code,
                        const mosquitto_property*) {
  auto* client = static_cast<Client*>(self);
  {
    std::lock_guard lock(client->mutex_);
    client->acks_[mid] = reason_code;
  }
  client->changed_.notify_all();
}

void Client::on_message(mosquitto*, void* self, const mosquitto_message* message,
                        const mosquitto_property* properties) {
  auto* client = static_cast<Client*>(self);
  Message copy;
  copy.topic = message->topic ? message->topic : "";
  if (message->payload && message->payloadlen > 0)
    copy.payload.assign(static_cast<const char*>(message->payload),
                        static_cast<std::size_t>(message->payloadlen));
  copy.qos = message->qos;
  copy.retain = message->retain;
  read_properties(properties, copy);
  {
    std::lock_guard lock(client->mutex_);
    client->messages_.push_back(std::move(copy));
  }
  client->changed_.notify_all();
}

void Client::start_network_thread() {
  stopping_ = false;
  network_ = std::thread([this] {
    while (!stopping_) {
      // Returns at least every 50 ms so a stop request is seen; without a connection it fails at
      // once and we idle instead of reconnecting.
      if (mosquitto_loop(mosq_, 50, 1) != MOSQ_ERR_SUCCESS) std::this_thread::sleep_for(20ms);
    }
  });
}

void Client::stop_network_thread() {
  stopping_ = true;
  if (network_.joinable()) network_.join();
}

void Client::set_receive_maximum(int messages) {
  if (mosq_) mosquitto_int_option(mosq_, MOSQ_OPT_RECEIVE_MAXIMUM, messages);
}

void Client::set_credentials(const std::string& username,
                             const std::optional<std::string>& password) {
  if (!mosq_) return;
  const int rc =
      mosquitto_username_pw_set(mosq_, username.c_str(), password ? password->c_str() : nullptr);
  if (rc != MOSQ_ERR_SUCCESS)
    ADD_FAILURE() << "client " << id_ << ": mosquitto_username_pw_set(" << username
                  << "): " << mosquitto_strerror(rc);
}

void Client::set_tls(const std::string& cafile, const std::optional<std::string>& certfile,
                     const std::optional<std::string>& keyfile) {
  if (!mosq_) return;
  const int rc =
      mosquitto_tls_set(mosq_, cafile.c_str(), nullptr, certfile ? certfile->c_str() : nullptr,
                        keyfile ? keyfile->c_str() : nullptr, nullptr);
  if (rc != MOSQ_ERR_SUCCESS)
    ADD_FAILURE() << "client " << id_ << ": mosquitto_tls_set(" << cafile
                  << "): " << mosquitto_strerror(rc);
}

std::optional<int> Client::connack_code() const {
  std::lock_guard lock(mutex_);
  return connack_;
}

void Client::set_will(std::string_view topic, std::string_view payload, int qos, bool retain,
                      const PublishProperties& properties) {
  if (!mosq_) return;
  PropertyList list;
  int rc = build_properties(properties, list);
  if (rc == MOSQ_ERR_SUCCESS) {
    const std::string topic_text(topic);
    rc = mosquitto_will_set_v5(mosq_, topic_text.c_str(), static_cast<int>(payload.size()),
                               payload.data(), qos, retain,
                               protocol_ == Protocol::mqtt5 ? list.list : nullptr);
    // On success libmosquitto owns the list.
    if (rc == MOSQ_ERR_SUCCESS && protocol_ == Protocol::mqtt5) list.list = nullptr;
  }
  if (rc != MOSQ_ERR_SUCCESS)
    ADD_FAILURE() << "client " << id_ << ": mosquitto_will_set_v5(" << topic
                  << "): " << mosquitto_strerror(rc);
}

::testing::AssertionResult Client::connect(int port, int keepalive_s,
                                           std::chrono::milliseconds timeout) {
  if (!mosq_) return ::testing::AssertionFailure() << "client " << id_ << " was not created";
  stop_network_thread();
  {
    std::lock_guard lock(mutex_);
    connack_.reset();
  }
  const int rc = mosquitto_connect(mosq_, "127.0.0.1", port, keepalive_s);
  if (rc != MOSQ_ERR_SUCCESS)
    return ::testing::AssertionFailure()
           << "client " << id_ << " cannot connect to 127.0.0.1:" << port << ": "
           << mosquitto_strerror(rc) << " (is the broker running?)";
  start_network_thread();
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, timeout, [&] { return connack_.has_value(); }))
    return ::testing::AssertionFailure()
           << "client " << id_ << ": no CONNACK within " << timeout.count() << " ms";
  if (*connack_ != 0)
    return ::testing::AssertionFailure()
           << "client " << id_ << ": CONNACK refused: " << mosquitto_reason_string(*connack_)
           << " (" << *connack_ << ")";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Client::subscribe(const std::vector<std::string>& topics, int qos,
                                             std::chrono::milliseconds timeout) {
  std::vector<char*> pointers;
  std::vector<std::string> copies = topics;
  for (auto& t : copies) pointers.push_back(t.data());
  int mid = 0;
  const int rc = mosquitto_subscribe_multiple(mosq_, &mid, static_cast<int>(pointers.size()),
                                              pointers.data(), qos, 0, nullptr);
  if (rc != MOSQ_ERR_SUCCESS)
    return ::testing::AssertionFailure()
           << "client " << id_ << ": subscribe failed: " << mosquitto_strerror(rc);
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, timeout, [&] { return subacks_.count(mid) != 0; }))
    return ::testing::AssertionFailure()
           << "client " << id_ << ": no SUBACK within " << timeout.count() << " ms";
  const auto granted = subacks_[mid];
  subacks_.erase(mid);
  for (std::size_t i = 0; i < granted.size() && i < topics.size(); ++i) {
    if (granted[i] >= 0x80)
      return ::testing::AssertionFailure() << "client " << id_ << ": subscription to " << topics[i]
                                           << " refused with reason 0x" << std::hex << granted[i];
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Client::subscribe(std::span<const std::string_view> topics, int qos,
                                             std::chrono::milliseconds timeout) {
  return subscribe(std::vector<std::string>(topics.begin(), topics.end()), qos, timeout);
}

int Client::publish_async(std::string_view topic, std::string_view payload, int qos) {
  const std::string topic_text(topic);
  int mid = 0;
  const int rc =
      mosquitto_publish_v5(mosq_, &mid, topic_text.c_str(), static_cast<int>(payload.size()),
                           payload.data(), qos, false, nullptr);
  return rc == MOSQ_ERR_SUCCESS ? mid : -rc;
}

int Client::publish_async(std::string_view topic, std::string_view payload, int qos,
                          const PublishProperties& properties, bool retain) {
  PropertyList list;
  if (const int rc = build_properties(properties, list); rc != MOSQ_ERR_SUCCESS) return -rc;
  const std::string topic_text(topic);
  int mid = 0;
  const int rc =
      mosquitto_publish_v5(mosq_, &mid, topic_text.c_str(), static_cast<int>(payload.size()),
                           payload.data(), qos, retain, list.list);
  return rc == MOSQ_ERR_SUCCESS ? mid : -rc;
}

std::optional<int> Client::wait_published(int mid, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, timeout, [&] { return acks_.count(mid) != 0; })) return std::nullopt;
  const int code = acks_[mid];
  acks_.erase(mid);
  return code;
}

int Client::publish(std::string_view topic, std::string_view payload, int qos,
                    std::chrono::milliseconds timeout) {
  const int mid = publish_async(topic, payload, qos);
  if (mid <= 0) return mid == 0 ? reason::timed_out : mid;
  return wait_published(mid, timeout).value_or(reason::timed_out);
}

int Client::publish(std::string_view topic, std::string_view payload, int qos,
                    const PublishProperties& properties, std::chrono::milliseconds timeout,
                    bool retain) {
  const int mid = publish_async(topic, payload, qos, properties, retain);
  if (mid <= 0) return mid == 0 ? reason::timed_out : mid;
  return wait_published(mid, timeout).value_or(reason::timed_out);
}

std::optional<Message> Client::wait_for(const std::function<bool(const Message&)>& match,
                                        std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mutex_);
  std::size_t checked = 0;  // messages before this index did not match
  while (true) {
    for (; checked < messages_.size(); ++checked) {
      if (match(messages_[checked])) {
        Message found = std::move(messages_[checked]);
        messages_.erase(messages_.begin() + static_cast<std::ptrdiff_t>(checked));
        return found;
      }
    }
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout &&
        checked == messages_.size())
      return std::nullopt;
  }
}

std::optional<Message> Client::wait_for(std::string_view topic, std::chrono::milliseconds timeout) {
  return wait_for([&](const Message& m) { return m.topic == topic; }, timeout);
}

std::vector<Message> Client::drain() {
  std::lock_guard lock(mutex_);
  std::vector<Message> all(std::make_move_iterator(messages_.begin()),
                           std::make_move_iterator(messages_.end()));
  messages_.clear();
  return all;
}

std::string Client::disconnect_reason() const {
  std::lock_guard lock(mutex_);
  if (!disconnect_rc_) return "";
  // libmosquitto reports its own error codes, or an MQTT 5 reason from the broker's DISCONNECT.
  return std::to_string(*disconnect_rc_) + " (" + mosquitto_strerror(*disconnect_rc_) + " / " +
         mosquitto_reason_string(*disconnect_rc_) + ")";
}

std::size_t Client::queued() const {
  std::lock_guard lock(mutex_);
  return messages_.size();
}

::testing::AssertionResult Client::sync(std::chrono::milliseconds timeout) {
  const std::string topic = "mqds-test/sync/" + id_;
  if (!sync_subscribed_) {
    if (auto subscribed = subscribe(std::vector<std::string>{topic}, 1, timeout); !subscribed)
      return subscribed;
    sync_subscribed_ = true;
  }
  const std::string token = "sync " + std::to_string(++sync_count_);
  const int rc = publish(topic, token, 1, timeout);
  if (rc != reason::success)
    return ::testing::AssertionFailure() << "client " << id_ << ": sync publish answered " << rc;
  if (!wait_for([&](const Message& m) { return m.topic == topic && m.payload == token; }, timeout))
    return ::testing::AssertionFailure()
           << "client " << id_ << ": its own sync message did not come back within "
           << timeout.count() << " ms";
  return ::testing::AssertionSuccess();
}

void Client::lose_connection() {
  stop_network_thread();
  const int fd = mosquitto_socket(mosq_);
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  connected_ = false;
}

void Client::disconnect() {
  if (!connected_) return;
  mosquitto_disconnect_v5(mosq_, MQTT_RC_NORMAL_DISCONNECTION, nullptr);
  {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, 2s, [&] { return disconnected_; });
  }
  stop_network_thread();
  connected_ = false;
}

}  // namespace mqds::broker_test
