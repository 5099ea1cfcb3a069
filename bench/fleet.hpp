// A fleet of simulated torrent servers in one process: each is the core's TorrentServer (the
// same state machine mqds-edge runs) behind its own libmosquitto connection, with its stored
// data described by a snapshot instead of an LMDB store. All connections are served by one thread
// polling their sockets, so a thousand of them cost a thousand sockets, not a thousand threads.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mqds/random.hpp"
#include "mqds/torrent.hpp"

struct mosquitto;
struct mosquitto_message;

namespace mqds::bench {

class Fleet {
 public:
  explicit Fleet(int port);
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // Connects a torrent server and subscribes it to the tracker's topics; it does not join yet.
  std::size_t add(TorrentConfig config, TorrentSnapshot snapshot);
  // Connects and subscribes everything added so far (waits at most `timeout_ms`).
  void connect_all(std::int64_t timeout_ms);
  // The server tells its state machine it is connected, which sends ClientJoinRequested.
  void join(std::size_t index);
  // Serves every connection until `done` is true or `timeout_ms` passes; false on a timeout.
  bool run_until(const std::function<bool()>& done, std::int64_t timeout_ms);

  std::size_t size() const { return edges_.size(); }
  const TorrentServer& server(std::size_t index) const;
  std::size_t registered() const;
  // The largest ClientJoinAccepted payload the server received, in bytes.
  std::size_t accepted_bytes(std::size_t index) const;
  // A fatal denial (the tracker refused a server for good), if any.
  const std::string& fatal() const { return fatal_; }

  struct Edge;

 private:
  void handle(Edge& edge, Output out);
  template <typename Body>
  void guarded(Body&& body);
  static void subscribe(mosquitto* mosq, Edge& edge);
  static void on_connect(mosquitto*, void* self, int rc);
  static void on_subscribe(mosquitto*, void* self, int mid, int count, const int* granted);
  static void on_message(mosquitto*, void* self, const mosquitto_message* message);

  int port_;
  std::vector<std::unique_ptr<Edge>> edges_;
  std::string fatal_;
  std::exception_ptr failure_;  // thrown in a callback, rethrown by run_until
};

std::int64_t now_ms();

}  // namespace mqds::bench
