#include "cli_session.hpp"

#include <unistd.h>

namespace mqds::cli {

namespace {
using Clock = std::chrono::steady_clock;

// Received messages waiting for a command to take them; beyond this the oldest go (a command
// that does not take them does not want them).
constexpr std::size_t inbox_max = 4096;
}  // namespace

CliSession::CliSession(runtime::ConnectionOptions options) : options_(std::move(options)) {
  if (options_.client_id.empty()) {
    char host[64] = {};
    ::gethostname(host, sizeof host - 1);
    options_.client_id = "mqds-" + std::string(host) + "-" + std::to_string(::getpid());
    for (char& c : options_.client_id)
      if (c == '/' || c == '+' || c == '#') c = '-';
  }
  runtime::MqttSession::Handlers handlers;
  handlers.connected = [this] { connected_ = true; };
  handlers.refused = [this](const std::string& why) { refused_ = why; };
  handlers.lost = [this](const std::string& why) { lost_ = why; };
  handlers.message = [this](runtime::Received&& m) {
    if (inbox_.size() >= inbox_max) inbox_.pop_front();
    inbox_.push_back(std::move(m));
  };
  handlers.published = [this](int mid, int rc) { acks_[mid] = rc; };
  handlers.subscribed = [this](int mid, const std::vector<int>& granted) {
    subacks_[mid] = granted;
  };
  // Answers to our own requests are what arrives in flight: a few hundred is plenty.
  session_ = std::make_unique<runtime::MqttSession>(options_, 1024, std::move(handlers));
}

void CliSession::connect(std::chrono::milliseconds timeout) {
  std::string why;
  if (!session_->connect(why))
    throw CliError("cannot reach the broker at " + options_.describe() + ": " + why);
  const auto deadline = Clock::now() + timeout;
  while (!connected_ && !refused_ && !lost_ && Clock::now() < deadline) session_->step(20);
  if (refused_)
    throw CliError("the broker at " + options_.describe() +
                   " refused the connection: " + *refused_);
  if (!connected_) throw CliError("no answer from the broker at " + options_.describe());
}

void CliSession::step(int timeout_ms) {
  session_->step(timeout_ms);
  if (lost_) throw CliError("lost the connection to the broker: " + *lost_);
}

void CliSession::subscribe(const std::vector<std::string>& topics,
                           std::chrono::milliseconds timeout) {
  const int mid = session_->subscribe(topics, 1);
  if (mid < 0) throw CliError("cannot subscribe: " + runtime::describe_error(-mid));
  const auto deadline = Clock::now() + timeout;
  while (!subacks_.count(mid) && Clock::now() < deadline) step(20);
  if (!subacks_.count(mid)) throw CliError("the broker did not answer a subscription");
  for (std::size_t i = 0; i < subacks_[mid].size(); ++i)
    if (subacks_[mid][i] >= 128)
      throw CliError("the broker refused the subscription to " + topics[i]);
}

int CliSession::publish(const runtime::Outgoing& message) {
  const int mid = session_->publish(message);
  if (mid < 0)
    throw CliError("cannot publish on " + std::string(message.topic) + ": " +
                   runtime::describe_error(-mid));
  return mid;
}

std::optional<int> CliSession::acknowledgement(int mid) const {
  const auto it = acks_.find(mid);
  if (it == acks_.end()) return std::nullopt;
  return it->second;
}

std::optional<runtime::Received> CliSession::wait_for(
    const std::function<bool(const runtime::Received&)>& match, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
      if (!match(*it)) continue;
      runtime::Received found = std::move(*it);
      inbox_.erase(it);
      return found;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    step(10);
  }
}

query::Answer CliSession::ask(const query::Request& request, std::chrono::milliseconds timeout) {
  const std::string payload = query::encode_request(request);
  const std::string correlation = "q" + next_correlation();
  const std::string response_topic =
      std::string(query::response_prefix) + options_.client_id + "/query";
  runtime::Outgoing out(query::request_topic, payload, 1);
  out.response_topic = response_topic;
  out.correlation_data = correlation;
  const int mid = publish(out);
  const auto answer = wait_for(
      [&](const runtime::Received& m) { return m.correlation_data == correlation; }, timeout);
  if (!answer) {
    if (auto rc = acknowledgement(mid); rc && *rc >= 128)
      throw CliError("the broker refused the query (reason " + std::to_string(*rc) +
                     "): is the mqds tracker plugin loaded, and this user allowed to query?");
    throw CliError(
        "no answer from the tracker: is the mqds tracker plugin loaded in the broker at " +
        options_.describe() + "?");
  }
  forget_acknowledgement(mid);
  auto decoded = query::decode_answer(answer->payload);
  if (!decoded)
    throw CliError("the tracker's answer is not understood: " + decoded.error().to_string());
  auto& a = *decoded;
  if (a.error) throw CliError(*a.error);
  return std::move(a);
}

}  // namespace mqds::cli
