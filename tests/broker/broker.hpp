// A real mosquitto broker, started by a test as a child process with the mqds tracker plugin.
//
// Each Broker owns a fresh directory under /tmp (mkdtemp) holding mosquitto.conf, broker.log (the
// broker's own log, every log type), broker.out (its stdout and stderr, which is where errors go
// before the log file is open) and data/ (the plugin's data_dir). It listens on a free loopback
// port picked by binding port 0; a port taken by someone else in between is retried with another.
//
// Debian's mosquitto started as root drops privileges to the user `mosquitto` before it opens the
// log file and before it initialises the plugin, so data/ and broker.log are given to that user.
//
// While a Broker lives, every failure the test reports names the broker's log. When the test
// fails, the directory is kept and the log's last lines are printed; MQDS_KEEP_TEST_DIRS=1 keeps
// it for passing tests too.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mqds::broker_test {

using PluginOptions = std::vector<std::pair<std::string, std::string>>;  // plugin_opt_<key> <value>

struct BrokerConfig {
  PluginOptions plugin_options;
  bool load_plugin = true;
  // Adds plugin_opt_data_dir <dir>/data unless plugin_options name a data_dir. Adds
  // plugin_opt_acl_fallback allow (the broker has no ACL) unless plugin_options name it, and
  // plugin_opt_edge_users * with plugin_opt_edge_ids any unless they name either.
  bool default_data_dir = true;
  // Gives <dir>/data to the mosquitto user when the test runs as root (the broker refuses to start
  // otherwise); false keeps it root's, to test that refusal.
  bool chown_data_dir = true;
  std::vector<std::string> extra_config_lines;
  // Written right after the first listener line: its TLS settings, for instance.
  std::vector<std::string> listener_lines;
  bool allow_anonymous = true;
  // Written before the listener: options mosquitto wants before any other (per_listener_settings).
  std::vector<std::string> first_config_lines;
  // log_type lines: tests log everything; a benchmark keeps the broker's production default.
  std::vector<std::string> log_types = {"all"};
};

class Broker {
 public:
  explicit Broker(BrokerConfig config = {});
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Starts the broker and waits (at most startup_timeout) until it runs and accepts connections.
  // A broker that exits or does not come up is a failure carrying its log's last lines.
  [[nodiscard]] ::testing::AssertionResult start();
  // SIGTERM, then waits at most stop_timeout for it to exit before SIGKILL.
  [[nodiscard]] ::testing::AssertionResult stop();
  // SIGKILL: no cleanup, no final commit; what the plugin committed must survive.
  void kill9();
  // Stops the broker if it runs and starts it again on the same port and data directory.
  [[nodiscard]] ::testing::AssertionResult restart();
  // For a broker that must refuse to start: starts it and returns its exit status (the exit code,
  // or 128 + signal), or nullopt if it still runs after `timeout` (it is then killed).
  std::optional<int> start_expecting_exit(std::chrono::milliseconds timeout);

  bool running();
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string data_dir() const { return dir_ + "/data"; }
  std::string log_path() const { return dir_ + "/broker.log"; }
  // broker.log, then what the process wrote to stdout and stderr.
  std::string log() const;
  std::string log_tail(std::size_t lines = 40) const;
  // One line for failure messages: where the log is and how to keep it.
  std::string where() const;

  static constexpr std::chrono::milliseconds startup_timeout{5'000};
  static constexpr std::chrono::milliseconds stop_timeout{5'000};

 private:
  enum class Spawned : std::uint8_t { ready, port_taken, failed };
  Spawned spawn_and_wait(std::string& failure);
  void write_config() const;
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  std::string out_path() const { return dir_ + "/broker.out"; }

  BrokerConfig config_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  bool port_fixed_ = false;  // after the first start, restarts keep the port
  int last_status_ = 0;      // waitpid status of the last exit
  std::optional<::testing::ScopedTrace> trace_;
};

// The mosquitto executable: $MQDS_MOSQUITTO, else the first on PATH, /usr/sbin, /usr/local/sbin.
std::optional<std::string> find_mosquitto();

}  // namespace mqds::broker_test
