#include "uploader.hpp"

#include <algorithm>

namespace mqds::broker_test {

namespace {
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string as_text(const Bytes& data, std::size_t offset, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data.data()) + offset, size);
}
}  // namespace

std::optional<json> Uploader::begin(const Uuid& id, const Hash& hash, std::size_t size) {
  client_.publish(
      ingest_begin,
      json{{"UploadId", id.to_string()}, {"Hash", hash.to_hex()}, {"Size", size}}.dump(), 1);
  return status(id, 5s);
}

std::optional<json> Uploader::status(const Uuid& id, std::chrono::milliseconds timeout) {
  const std::string wanted = id.to_string();
  auto found = client_.wait_for(
      [&](const Message& m) {
        if (m.topic != ingest_status) return false;
        const json j = json::parse(m.payload, nullptr, false);
        return j.is_object() && j.value("UploadId", "") == wanted;
      },
      timeout);
  if (!found) return std::nullopt;
  return json::parse(found->payload, nullptr, false);
}

std::optional<json> Uploader::any_status(std::chrono::milliseconds timeout) {
  auto m = client_.wait_for(ingest_status, timeout);
  if (!m) return std::nullopt;
  return json::parse(m->payload, nullptr, false);
}

std::optional<json> Uploader::send(const Uuid& id, const Bytes& data, std::size_t from,
                                   std::size_t to, std::size_t chunk, std::size_t window) {
  std::size_t acknowledged = from, sent = from;
  const auto deadline = Clock::now() + 60s;
  while (Clock::now() < deadline) {
    while (sent < to && sent + chunk <= acknowledged + window) {
      const std::size_t n = std::min(chunk, to - sent);
      client_.publish_async("mqds/ingest/chunk/" + id.to_string() + "/" + std::to_string(sent),
                            as_text(data, sent, n), 1);
      sent += n;
    }
    auto s = status(id, 10s);
    if (!s || !s->is_object()) return std::nullopt;
    const std::string state = s->value("State", "");
    if (state != "receiving") return s;
    acknowledged = std::max(acknowledged, s->value("Offset", std::size_t{0}));
    // An answer with a Reason refused a chunk: resume where the tracker says. Without one it is
    // an acknowledgement that may lag behind what was sent since.
    if (s->contains("Reason")) acknowledged = sent = s->value("Offset", std::size_t{0});
    if (to < data.size() && acknowledged >= to) return s;
  }
  return std::nullopt;
}

}  // namespace mqds::broker_test
