#include "mqds/fetch_server.hpp"

#include <algorithm>
#include <utility>

#include "mqds/assert.hpp"

namespace mqds::fetch {

namespace {

// Topics and reasons from the network are cut to this in log lines.
constexpr std::size_t logged_text_bytes_max = 200;

std::string cut(std::string_view text) {
  return std::string(text.substr(0, logged_text_bytes_max));
}

}  // namespace

Server::Server(ServerConfig config) : config_(std::move(config)) {
  MQDS_ASSERT(edge_of_request_topic(config_.request_topic).has_value());
}

void Server::answer(ServerOutput& out, std::string topic, std::string correlation_data,
                    Status status, std::string reason) {
  MQDS_ASSERT(status != Status::ok);
  switch (status) {
    case Status::not_found: ++metrics_.not_found; break;
    case Status::bad_request: ++metrics_.bad_request; break;
    case Status::busy: ++metrics_.busy; break;
    case Status::ok: break;
  }
  out.log(LogLevel::debug, "fetch answered " + std::string(status_name(status)) + ": " + reason);
  Reply reply;
  reply.topic = std::move(topic);
  reply.correlation_data = std::move(correlation_data);
  reply.header.status = status;
  reply.header.reason = std::move(reason);
  out.replies.push_back(std::move(reply));
}

void Server::answer(ServerOutput& out, const Waiting& waiting, Status status, std::string reason) {
  answer(out, waiting.response_topic, waiting.correlation_data, status, std::move(reason));
}

ServerOutput Server::on_request(const IncomingRequest& request) {
  ServerOutput out;
  ++metrics_.requests;
  if (request.topic != config_.request_topic) {
    ++metrics_.refused;
    out.log(LogLevel::warning,
            "ignored a fetch request on another edge's topic '" + cut(request.topic) + "'");
    return out;
  }
  if (!requester_of_response_topic(request.response_topic)) {
    // Answering on any topic a request names would let anyone make this board publish there.
    ++metrics_.refused;
    out.log(LogLevel::warning, "ignored a fetch request whose Response Topic is not under " +
                                   std::string(response_prefix) + ": '" +
                                   cut(request.response_topic) + "'");
    return out;
  }
  // The broker's gate bounds Correlation Data already; an edge behind another broker must not
  // echo more than a requester can expect.
  std::string correlation(request.correlation_data.substr(0, correlation_bytes_max));
  std::string response_topic(request.response_topic);
  auto decoded = decode_request(request.payload);
  if (!decoded) {
    answer(out, std::move(response_topic), std::move(correlation), Status::bad_request,
           decoded.error().to_string());
    return out;
  }
  if (queue_.size() >= config_.queue_max) {
    answer(out, std::move(response_topic), std::move(correlation), Status::busy,
           "too many requests waiting");
    return out;
  }
  queue_.push_back(Waiting{*decoded, std::move(response_topic), std::move(correlation)});
  return out;
}

ServerOutput Server::serve_next() {
  ServerOutput out;
  if (queue_.empty()) return out;
  Waiting waiting = std::move(queue_.front());
  queue_.pop_front();
  if (response_bytes_in_flight_ >= config_.response_bytes_in_flight_max) {
    answer(out, waiting, Status::busy, "too many bytes in flight; ask again");
    return out;
  }
  const std::uint64_t ticket = next_ticket_++;
  out.lookup = Lookup{ticket, waiting.request.hash};
  pending_.emplace(ticket, std::move(waiting));
  return out;
}

ServerOutput Server::on_lookup(std::uint64_t ticket, const LookupOutcome& outcome) {
  ServerOutput out;
  const auto it = pending_.find(ticket);
  if (it == pending_.end()) return out;
  const Waiting waiting = std::move(it->second);
  pending_.erase(it);
  const Request& wanted = waiting.request;
  switch (outcome.kind) {
    case LookupOutcome::Kind::not_found:
      answer(out, waiting, Status::not_found, "not stored here");
      return out;
    case LookupOutcome::Kind::corrupt:
      ++metrics_.lost;
      out.lost = wanted.hash;  // TorrentServer::fragment_lost logs it
      answer(out, waiting, Status::not_found, "the stored copy was corrupt and is deleted");
      return out;
    case LookupOutcome::Kind::stored: break;
  }
  MQDS_ASSERT(outcome.size_bytes >= 0);
  if (wanted.offset_bytes > outcome.size_bytes) {
    answer(out, waiting, Status::bad_request,
           "Offset is beyond the fragment's " + std::to_string(outcome.size_bytes) + " bytes");
    return out;
  }
  Reply reply;
  reply.topic = waiting.response_topic;
  reply.correlation_data = waiting.correlation_data;
  reply.header.status = Status::ok;
  reply.header.size_bytes = outcome.size_bytes;
  reply.header.offset_bytes = wanted.offset_bytes;
  reply.length_bytes = std::min(wanted.length_bytes, outcome.size_bytes - wanted.offset_bytes);
  MQDS_ASSERT(reply.length_bytes >= 0 && reply.length_bytes <= chunk_bytes_max);
  ++metrics_.ok;
  metrics_.bytes_served += static_cast<std::uint64_t>(reply.length_bytes);
  out.replies.push_back(std::move(reply));
  return out;
}

void Server::on_sent(int message_id, const Reply& reply) {
  const auto bytes = static_cast<std::size_t>(reply.length_bytes);
  // A message id is only reused once acknowledged; should an adapter's library reuse one early,
  // the older entry's bytes must still leave the budget.
  if (const auto it = in_flight_.find(message_id); it != in_flight_.end())
    response_bytes_in_flight_ -= it->second;
  in_flight_[message_id] = bytes;
  response_bytes_in_flight_ += bytes;
}

bool Server::on_acknowledged(int message_id) {
  const auto it = in_flight_.find(message_id);
  if (it == in_flight_.end()) return false;
  MQDS_ASSERT(response_bytes_in_flight_ >= it->second);
  response_bytes_in_flight_ -= it->second;
  in_flight_.erase(it);
  return true;
}

void Server::on_disconnected() {
  queue_.clear();
  pending_.clear();
  in_flight_.clear();
  response_bytes_in_flight_ = 0;
}

}  // namespace mqds::fetch
