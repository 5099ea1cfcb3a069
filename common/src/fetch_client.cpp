#include "mqds/fetch_client.hpp"

#include <algorithm>
#include <utility>

#include "mqds/assert.hpp"
#include "mqds/hash.hpp"

namespace mqds::fetch {

Result<std::vector<FileFragment>> plan_fetch(const query::FileSummary& file,
                                             const std::vector<query::FragmentHolders>& fragments,
                                             const std::vector<query::ClientSummary>& clients) {
  std::map<ClientId, std::string> topic_of;
  for (const auto& client : clients) {
    std::string topic = request_topic(client.id);
    for (const auto& endpoint : client.endpoints)
      if (auto named = request_topic_of_endpoint(endpoint)) topic = std::move(*named);
    topic_of[client.id] = std::move(topic);
  }
  std::vector<FileFragment> planned;
  planned.reserve(fragments.size());
  std::int64_t at_bytes = 0;
  for (const auto& fragment : fragments) {
    FileFragment f;
    f.hash = fragment.hash;
    f.size_bytes = fragment.size_bytes;
    f.offset_bytes = at_bytes;
    for (const auto& id : fragment.holders) {
      const auto it = topic_of.find(id);
      f.holders.push_back(Holder{id, it != topic_of.end() ? it->second : request_topic(id)});
    }
    at_bytes += fragment.size_bytes;
    planned.push_back(std::move(f));
  }
  if (at_bytes != file.size_bytes)
    return Error{"",
                 "the tracker's fragments of " + file.hash.to_hex() + " do not add up to its size"};
  return planned;
}

Client::Client(ClientConfig config, std::vector<FileFragment> fragments, Random& random)
    : config_(std::move(config)),
      fragments_(std::move(fragments)),
      random_(random),
      states_(fragments_.size()) {
  MQDS_ASSERT(config_.parallel >= 1);
  MQDS_ASSERT(requester_of_response_topic(config_.response_topic).has_value());
  for (std::size_t i = 0; i < fragments_.size(); ++i) {
    FileFragment& f = fragments_[i];
    MQDS_ASSERT(f.size_bytes >= 0);
    if (f.present) {
      states_[i].phase = Phase::done;
      done_bytes_ += f.size_bytes;
      continue;
    }
    // Spread the load: each fragment starts with another of its holders.
    if (!f.holders.empty())
      std::rotate(f.holders.begin(),
                  f.holders.begin() + static_cast<std::ptrdiff_t>(i % f.holders.size()),
                  f.holders.end());
    waiting_.push_back(i);
  }
}

std::string Client::draw_correlation() {
  return random_.hex_token();
}

void Client::ask(std::int64_t now_ms, std::size_t index, ClientOutput& out) {
  const FileFragment& f = fragments_[index];
  State& s = states_[index];
  MQDS_ASSERT(s.phase != Phase::done && s.phase != Phase::missing);
  if (s.holder >= f.holders.size()) {
    s.phase = Phase::missing;
    s.data.clear();
    s.data.shrink_to_fit();
    missing_.push_back(index);
    return;
  }
  const auto offset_bytes = static_cast<std::int64_t>(s.data.size());
  MQDS_ASSERT(offset_bytes < f.size_bytes || f.size_bytes == 0);
  const std::int64_t length_bytes = std::min(chunk_bytes_max, f.size_bytes - offset_bytes);
  std::string correlation = draw_correlation();
  const bool inserted = in_flight_
                            .emplace(correlation, InFlight{index, offset_bytes, length_bytes,
                                                           now_ms + config_.request_timeout_ms})
                            .second;
  MQDS_ASSERT(inserted);  // 128 random bits: a repeat means the Random is broken
  s.phase = Phase::in_flight;
  ++metrics_.requests;
  out.requests.push_back(
      OutgoingRequest{f.holders[s.holder].request_topic,
                      encode_request(Request{f.hash, offset_bytes, length_bytes}),
                      config_.response_topic, std::move(correlation)});
}

void Client::next_holder(std::int64_t now_ms, std::size_t index, std::string problem,
                         ClientOutput& out) {
  State& s = states_[index];
  const FileFragment& f = fragments_[index];
  MQDS_ASSERT(s.holder < f.holders.size());
  s.problems.push_back(HolderProblem{f.holders[s.holder].id, std::move(problem)});
  s.data.clear();
  s.busy_retries = 0;
  ++s.holder;
  ++metrics_.fallbacks;
  ask(now_ms, index, out);
}

void Client::fill(std::int64_t now_ms, ClientOutput& out) {
  while (!waiting_.empty() && in_flight_.size() + retry_at_.size() < config_.parallel) {
    const std::size_t index = waiting_.front();
    waiting_.pop_front();
    ask(now_ms, index, out);
  }
}

ClientOutput Client::start(std::int64_t now_ms) {
  ClientOutput out;
  fill(now_ms, out);
  check_invariants();
  return out;
}

ClientOutput Client::on_response(std::int64_t now_ms, IncomingResponse response) {
  ClientOutput out;
  const auto it = in_flight_.find(response.correlation_data);
  if (it == in_flight_.end() || response.topic != config_.response_topic) {
    ++metrics_.responses_ignored;
    return out;
  }
  const InFlight request = it->second;
  in_flight_.erase(it);
  ++metrics_.responses_accepted;
  take_answer(now_ms, request, response, out);
  fill(now_ms, out);
  check_invariants();
  return out;
}

ClientOutput Client::on_refused(std::int64_t now_ms, const std::string& correlation_data,
                                int reason_code) {
  ClientOutput out;
  const auto it = in_flight_.find(correlation_data);
  if (it == in_flight_.end()) return out;
  const std::size_t index = it->second.index;
  in_flight_.erase(it);
  State& s = states_[index];
  // Like busy: the broker refuses a requester owed too much until answers arrive, and a refusal
  // that does not pass (a user not allowed) still ends after busy_retries_max.
  if (++s.busy_retries <= config_.busy_retries_max) {
    ++metrics_.refused_retries;
    s.phase = Phase::retrying;
    retry_at_[index] = now_ms + config_.busy_retry_delay_ms;
  } else {
    next_holder(now_ms, index,
                "the broker refused the request (reason code " + std::to_string(reason_code) + ")",
                out);
  }
  fill(now_ms, out);
  check_invariants();
  return out;
}

namespace {

// Why an ok answer cannot be the chunk asked for, if it cannot.
std::optional<std::string> misfit(const ResponseHeader& header, std::int64_t payload_bytes,
                                  std::int64_t asked_offset_bytes, std::int64_t asked_length_bytes,
                                  std::int64_t fragment_size_bytes) {
  if (header.offset_bytes == asked_offset_bytes && header.size_bytes == fragment_size_bytes &&
      payload_bytes <= asked_length_bytes && (payload_bytes > 0 || asked_length_bytes == 0))
    return std::nullopt;
  return "an answer that does not fit the fragment (Offset " + std::to_string(header.offset_bytes) +
         ", Size " + std::to_string(header.size_bytes) + ", " + std::to_string(payload_bytes) +
         " bytes for " + std::to_string(asked_length_bytes) + " at " +
         std::to_string(asked_offset_bytes) + " of " + std::to_string(fragment_size_bytes) + ")";
}

}  // namespace

void Client::take_answer(std::int64_t now_ms, const InFlight& request, IncomingResponse& response,
                         ClientOutput& out) {
  const std::size_t index = request.index;
  State& s = states_[index];
  const auto header = decode_response_properties(response.user_properties);
  if (!header) {
    next_holder(now_ms, index,
                "an answer that is not understood (" + header.error().to_string() + ")", out);
    return;
  }
  if (header->status == Status::busy && ++s.busy_retries <= config_.busy_retries_max) {
    ++metrics_.busy_retries;
    s.phase = Phase::retrying;
    retry_at_[index] = now_ms + config_.busy_retry_delay_ms;
    return;
  }
  if (header->status != Status::ok) {
    next_holder(now_ms, index,
                std::string(status_name(header->status)) + " (" + header->reason + ")", out);
    return;
  }
  const auto payload_bytes = static_cast<std::int64_t>(response.payload.size());
  if (auto problem = misfit(*header, payload_bytes, request.offset_bytes, request.length_bytes,
                            fragments_[index].size_bytes)) {
    next_holder(now_ms, index, std::move(*problem), out);
    return;
  }
  metrics_.bytes_received += static_cast<std::uint64_t>(payload_bytes);
  if (s.data.empty())
    s.data = std::move(response.payload);  // a fragment of one chunk is never copied
  else
    s.data += response.payload;
  s.busy_retries = 0;
  if (static_cast<std::int64_t>(s.data.size()) < fragments_[index].size_bytes)
    ask(now_ms, index, out);  // the next chunk of a large fragment
  else
    complete(now_ms, index, out);
}

void Client::complete(std::int64_t now_ms, std::size_t index, ClientOutput& out) {
  State& s = states_[index];
  const FileFragment& f = fragments_[index];
  if (const Hash actual = sha256(std::string_view(s.data)); actual != f.hash) {
    next_holder(now_ms, index, "bad data (hashes to " + actual.to_hex() + ")", out);
    return;
  }
  s.phase = Phase::done;
  done_bytes_ += f.size_bytes;
  out.completed.push_back(CompletedFragment{index, f.offset_bytes, std::move(s.data)});
  s.data = std::string();
}

ClientOutput Client::on_tick(std::int64_t now_ms) {
  ClientOutput out;
  for (auto it = retry_at_.begin(); it != retry_at_.end();) {
    if (it->second > now_ms) {
      ++it;
      continue;
    }
    const std::size_t index = it->first;
    it = retry_at_.erase(it);
    ask(now_ms, index, out);
  }
  // In the order they were due (then file order), not in the random order of their correlations.
  std::vector<InFlight> expired;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.deadline_ms > now_ms) {
      ++it;
      continue;
    }
    expired.push_back(it->second);
    it = in_flight_.erase(it);
  }
  std::sort(expired.begin(), expired.end(), [](const InFlight& a, const InFlight& b) {
    return a.deadline_ms != b.deadline_ms ? a.deadline_ms < b.deadline_ms : a.index < b.index;
  });
  for (const auto& request : expired) {
    ++metrics_.timeouts;
    next_holder(now_ms, request.index,
                "no answer within " + std::to_string(config_.request_timeout_ms) + " ms", out);
  }
  fill(now_ms, out);
  check_invariants();
  return out;
}

std::optional<std::int64_t> Client::next_deadline_ms() const {
  std::optional<std::int64_t> next;
  const auto consider = [&](std::int64_t at_ms) {
    if (!next || at_ms < *next) next = at_ms;
  };
  for (const auto& [correlation, request] : in_flight_) consider(request.deadline_ms);
  for (const auto& [index, at_ms] : retry_at_) consider(at_ms);
  return next;
}

bool Client::finished() const {
  return waiting_.empty() && in_flight_.empty() && retry_at_.empty();
}

std::vector<MissingFragment> Client::missing() const {
  std::vector<MissingFragment> result;
  for (const std::size_t index : missing_)
    result.push_back(MissingFragment{index, fragments_[index].hash, states_[index].problems});
  return result;
}

void Client::check_invariants() const {
  MQDS_ASSERT(in_flight_.size() + retry_at_.size() <= config_.parallel);
  // Cheap enough for every input: at most `parallel` entries each.
  for (const auto& [correlation, request] : in_flight_)
    MQDS_ASSERT(states_[request.index].phase == Phase::in_flight);
  for (const auto& [index, at_ms] : retry_at_) MQDS_ASSERT(states_[index].phase == Phase::retrying);
}

}  // namespace mqds::fetch
