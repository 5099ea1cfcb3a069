// The command line's broker connection: MqttSession driven synchronously, with waits that end on
// a condition or a timeout, and the request/response exchanges the commands need (query, fetch).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mqds/query.hpp"
#include "runtime/mqtt_session.hpp"

namespace mqds::cli {

// A failure the command reports in words and exits non-zero for.
class CliError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class CliSession {
 public:
  // A missing client id becomes "mqds-<host>-<pid>": unique enough, and readable in broker logs.
  explicit CliSession(runtime::ConnectionOptions options);

  // Connects and waits for the broker's answer; throws CliError saying why it failed.
  void connect(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Subscribes and waits for the grant; throws CliError when refused.
  void subscribe(const std::vector<std::string>& topics,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Network I/O for at most timeout_ms; throws CliError once the connection is lost.
  void step(int timeout_ms);

  // The message id (throws CliError when it cannot be sent).
  int publish(const runtime::Outgoing& message);
  // The acknowledgement's reason code once it arrived.
  std::optional<int> acknowledgement(int mid) const;
  void forget_acknowledgement(int mid) { acks_.erase(mid); }

  // Takes the first received message `match` accepts, stepping up to `timeout` for it.
  std::optional<runtime::Received> wait_for(
      const std::function<bool(const runtime::Received&)>& match,
      std::chrono::milliseconds timeout);
  // Takes every message received so far, in the order it arrived.
  std::deque<runtime::Received> take_received() { return std::exchange(inbox_, {}); }

  // One query to the tracker (common/include/mqds/query.hpp); throws CliError on no answer or an
  // error answer.
  query::Answer ask(const query::Request& request,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

  const std::string& client_id() const { return options_.client_id; }
  std::string next_correlation() { return std::to_string(++correlations_); }

 private:
  runtime::ConnectionOptions options_;
  std::unique_ptr<runtime::MqttSession> session_;
  bool connected_ = false;
  std::optional<std::string> refused_;
  std::optional<std::string> lost_;
  std::map<int, std::vector<int>> subacks_;
  std::map<int, int> acks_;
  std::deque<runtime::Received> inbox_;
  std::uint64_t correlations_ = 0;
};

}  // namespace mqds::cli
