#include "uploader.hpp"

#include <limits>

namespace mqds::broker_test {

namespace {

using Clock = std::chrono::steady_clock;

std::optional<ingest::Status> decoded(const std::optional<Message>& message) {
  if (!message) return std::nullopt;
  auto status = ingest::decode_status(message->payload);
  if (!status) {
    ADD_FAILURE() << "the tracker sent an unreadable status: " << status.error().to_string() << "\n"
                  << message->payload;
    return std::nullopt;
  }
  return *status;
}

}  // namespace

std::optional<ingest::Status> Uploader::begin(const Uuid& id, const Hash& hash, std::size_t size) {
  ingest::Sender& sender =
      senders_.insert_or_assign(id, ingest::Sender(id, hash, static_cast<std::int64_t>(size)))
          .first->second;
  client_.publish(ingest::topics::begin, ingest::encode(sender.begin()), 1);
  auto first = status(id, 5s);
  if (first) sender.on_status(*first);
  return first;
}

std::optional<ingest::Status> Uploader::status(const Uuid& id, std::chrono::milliseconds timeout) {
  // A failed status without UploadId answers a message whose UploadId the tracker could not read.
  return decoded(client_.wait_for(
      [&](const Message& m) {
        if (m.topic != ingest::topics::status) return false;
        const auto s = ingest::decode_status(m.payload);
        return !s || (s->upload_id ? *s->upload_id == id : s->state == ingest::State::failed);
      },
      timeout));
}

std::optional<ingest::Status> Uploader::any_status(std::chrono::milliseconds timeout) {
  return decoded(client_.wait_for(ingest::topics::status, timeout));
}

std::optional<ingest::Status> Uploader::send(const Uuid& id, const Bytes& data,
                                             std::optional<std::size_t> stop_at) {
  const auto found = senders_.find(id);
  if (found == senders_.end()) {
    ADD_FAILURE() << "send() of upload " << id.to_string() << " before its begin()";
    return std::nullopt;
  }
  ingest::Sender& sender = found->second;
  const auto end_bytes =
      stop_at ? static_cast<std::int64_t>(*stop_at) : std::numeric_limits<std::int64_t>::max();
  const auto deadline = Clock::now() + 60s;
  while (Clock::now() < deadline) {
    if (sender.done() || (stop_at && sender.acknowledged_bytes() >= end_bytes))
      return sender.last_status();
    while (const auto chunk = sender.next_chunk(end_bytes)) {
      const auto* first = reinterpret_cast<const char*>(data.data()) + chunk->offset_bytes;
      client_.publish_async(sender.chunk_topic(*chunk),
                            std::string_view(first, static_cast<std::size_t>(chunk->size_bytes)),
                            1);
    }
    const auto next = status(id, 10s);
    if (!next) return std::nullopt;
    sender.on_status(*next);
  }
  return std::nullopt;
}

std::string describe(const std::optional<ingest::Status>& status) {
  return status ? ingest::encode(*status) : "no answer";
}

}  // namespace mqds::broker_test
