// A test uploader that speaks the plugin's ingest protocol (common/include/mqds/ingest.hpp) with
// the core's Sender and codec, as `mqds put` does: it only moves bytes between them and the broker.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "client.hpp"
#include "mqds/events.hpp"
#include "mqds/ingest.hpp"

namespace mqds::broker_test {

class Uploader {
 public:
  explicit Uploader(const std::string& id) : client_(id) {}
  ::testing::AssertionResult connect(int port) { return client_.connect(port); }
  Client& client() { return client_; }

  // Publishes begin (again for an upload begun before: it resumes) and returns the tracker's first
  // status about this upload.
  std::optional<ingest::Status> begin(const Uuid& id, const Hash& hash, std::size_t size);
  // The next status about upload `id` (answers about earlier ones may still be queued).
  std::optional<ingest::Status> status(const Uuid& id, std::chrono::milliseconds timeout);
  // The next status, whatever it is about.
  std::optional<ingest::Status> any_status(std::chrono::milliseconds timeout);
  // Sends `data`, the content begun as `id`, from where the tracker is and within the window it
  // announced, until it answers published or failed, or (with `stop_at`) until it acknowledged
  // holding that many bytes. The last status, or nullopt on a timeout.
  std::optional<ingest::Status> send(const Uuid& id, const Bytes& data,
                                     std::optional<std::size_t> stop_at = std::nullopt);

 private:
  Client client_;
  std::map<Uuid, ingest::Sender> senders_;
};

// The status as the tracker wrote it, or "no answer": for failure messages.
std::string describe(const std::optional<ingest::Status>& status);

}  // namespace mqds::broker_test
