// A test uploader that speaks the plugin's ingest protocol (README, "Ingest"): begin, chunks kept
// within the window the tracker announces, and the status answers.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "client.hpp"
#include "mqds/events.hpp"

namespace mqds::broker_test {

class Uploader {
 public:
  explicit Uploader(const std::string& id) : client_(id) {}
  ::testing::AssertionResult connect(int port) { return client_.connect(port); }
  Client& client() { return client_; }

  // Publishes begin and returns the tracker's first status about this upload.
  std::optional<nlohmann::json> begin(const Uuid& id, const Hash& hash, std::size_t size);
  // The next status about this upload (answers about earlier ones may still be queued).
  std::optional<nlohmann::json> status(const Uuid& id, std::chrono::milliseconds timeout);
  std::optional<nlohmann::json> any_status(std::chrono::milliseconds timeout);
  // Sends data[from, to) in chunks, keeping within the window the tracker announced, and returns
  // the last status (published or failed), or the status that acknowledged `to` when `to` is not
  // the end, or nullopt on a timeout.
  std::optional<nlohmann::json> send(const Uuid& id, const Bytes& data, std::size_t from,
                                     std::size_t to, std::size_t chunk, std::size_t window);

  static constexpr const char* ingest_begin = "mqds/ingest/begin";
  static constexpr const char* ingest_status = "mqds/ingest/status";

 private:
  Client client_;
};

}  // namespace mqds::broker_test
