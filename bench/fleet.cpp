#include "fleet.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>

#include <chrono>
#include <utility>

#include "mqds/events.hpp"
#include "services.hpp"

namespace mqds::bench {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Fleet::Edge {
  Fleet* fleet = nullptr;
  mosquitto* mosq = nullptr;
  SplitMix64 random;
  TorrentServer server;
  bool connected = false;
  bool subscribed = false;
  std::size_t accepted_bytes = 0;

  Edge(Fleet* owner, TorrentConfig config, TorrentSnapshot snapshot, std::uint64_t seed)
      : fleet(owner), random(seed), server(std::move(config), std::move(snapshot), random) {}
};

Fleet::Fleet(int port) : port_(port) {}

Fleet::~Fleet() {
  for (auto& edge : edges_) {
    if (edge->mosq == nullptr) continue;
    mosquitto_disconnect(edge->mosq);
    mosquitto_loop_write(edge->mosq, 1);
    mosquitto_destroy(edge->mosq);
  }
}

std::size_t Fleet::add(TorrentConfig config, TorrentSnapshot snapshot) {
  const std::string id = config.client_id;
  auto edge =
      std::make_unique<Edge>(this, std::move(config), std::move(snapshot), 0x5EED + edges_.size());
  edge->mosq = mosquitto_new(id.c_str(), true, edge.get());
  if (edge->mosq == nullptr) throw Failure("mosquitto_new failed for " + id);
  mosquitto_int_option(edge->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(edge->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
  mosquitto_connect_callback_set(edge->mosq, &on_connect);
  mosquitto_subscribe_callback_set(edge->mosq, &on_subscribe);
  mosquitto_message_callback_set(edge->mosq, &on_message);
  if (mosquitto_connect(edge->mosq, "127.0.0.1", port_, 300) != MOSQ_ERR_SUCCESS)
    throw Failure("cannot connect " + id + " (open file limit?)");
  edges_.push_back(std::move(edge));
  return edges_.size() - 1;
}

void Fleet::connect_all(std::int64_t timeout_ms) {
  const bool done = run_until(
      [&] {
        for (const auto& edge : edges_)
          if (!edge->subscribed) return false;
        return true;
      },
      timeout_ms);
  if (!done) throw Failure("the simulated edges did not all connect and subscribe in time");
}

void Fleet::join(std::size_t index) {
  Edge& edge = *edges_.at(index);
  handle(edge, edge.server.on_connected(now_ms()));
}

const TorrentServer& Fleet::server(std::size_t index) const {
  return edges_.at(index)->server;
}
std::size_t Fleet::accepted_bytes(std::size_t index) const {
  return edges_.at(index)->accepted_bytes;
}

std::size_t Fleet::registered() const {
  std::size_t n = 0;
  for (const auto& edge : edges_) n += edge->server.phase() == TorrentPhase::registered;
  return n;
}

void Fleet::handle(Edge& edge, Output out) {
  // Storage effects have nowhere to go: a simulated edge's data is its snapshot.
  for (auto& publish : out.publishes)
    mosquitto_publish(edge.mosq, nullptr, publish.topic.c_str(),
                      static_cast<int>(publish.payload.size()), publish.payload.data(), publish.qos,
                      false);
  if (out.fatal && fatal_.empty()) fatal_ = edge.server.client_id() + ": " + *out.fatal;
}

// Nothing thrown may cross libmosquitto's C callbacks: what throws in one is kept, and
// run_until throws it.
template <typename Body>
void Fleet::guarded(Body&& body) {
  try {
    body();
  } catch (...) {
    if (!failure_) failure_ = std::current_exception();
  }
}

void Fleet::on_connect(mosquitto* mosq, void* self, int rc) {
  auto* edge = static_cast<Edge*>(self);
  if (rc != 0) return;
  edge->fleet->guarded([&] { subscribe(mosq, *edge); });
}

void Fleet::subscribe(mosquitto* mosq, Edge& edge) {
  edge.connected = true;
  std::vector<std::string> topics;
  for (auto topic : torrent_subscriptions()) topics.emplace_back(topic);
  std::vector<char*> patterns;
  for (auto& topic : topics) patterns.push_back(topic.data());
  mosquitto_subscribe_multiple(mosq, nullptr, static_cast<int>(patterns.size()), patterns.data(), 2,
                               0, nullptr);
}

void Fleet::on_subscribe(mosquitto*, void* self, int, int, const int*) {
  static_cast<Edge*>(self)->subscribed = true;
}

void Fleet::on_message(mosquitto*, void* self, const mosquitto_message* message) {
  auto* edge = static_cast<Edge*>(self);
  edge->fleet->guarded([&] {
    const std::string_view topic(message->topic);
    const std::string_view payload(static_cast<const char*>(message->payload),
                                   static_cast<std::size_t>(message->payloadlen));
    if (topic == topics::client_join_accepted)
      edge->accepted_bytes = std::max(edge->accepted_bytes, payload.size());
    edge->fleet->handle(*edge, edge->server.on_message(now_ms(), topic, payload));
  });
}

bool Fleet::run_until(const std::function<bool()>& done, std::int64_t timeout_ms) {
  const std::int64_t deadline = now_ms() + timeout_ms;
  std::vector<pollfd> fds(edges_.size());
  std::int64_t next_misc_ms = 0;
  while (!done()) {
    if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
    const std::int64_t now = now_ms();
    if (now >= deadline) return false;
    for (std::size_t i = 0; i < edges_.size(); ++i) {
      mosquitto* mosq = edges_[i]->mosq;
      fds[i] = {mosquitto_socket(mosq),
                static_cast<short>(POLLIN | (mosquitto_want_write(mosq) ? POLLOUT : 0)), 0};
    }
    ::poll(fds.data(), fds.size(), 10);
    for (std::size_t i = 0; i < edges_.size(); ++i) {
      Edge& edge = *edges_[i];
      if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) mosquitto_loop_read(edge.mosq, 1);
      if (mosquitto_want_write(edge.mosq)) mosquitto_loop_write(edge.mosq, 1);
    }
    if (now >= next_misc_ms) {  // keepalives, and the state machines' timers (join retries)
      for (auto& edge : edges_) {
        mosquitto_loop_misc(edge->mosq);
        if (auto at = edge->server.next_deadline_ms(); at && *at <= now)
          handle(*edge, edge->server.on_tick(now));
      }
      next_misc_ms = now + 50;
    }
  }
  return true;
}

}  // namespace mqds::bench
