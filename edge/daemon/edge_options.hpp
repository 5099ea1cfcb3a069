// mqds-edge's command line and config file. Every flag has a config-file key of the same long
// name (`data-dir = /var/lib/mqds-edge`, `endpoint = ...` once per endpoint); flags win over the
// file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mqds/output.hpp"
#include "mqds/result.hpp"
#include "mqds/scrub.hpp"
#include "runtime/connection_options.hpp"

namespace mqds::edge {

struct EdgeOptions {
  runtime::ConnectionOptions connection;
  std::string data_dir;
  std::optional<std::int64_t> capacity_bytes;  // nullopt: no limit
  std::vector<std::string> endpoints;          // announced besides the fetch endpoint
  // Background scrubbing: one pass over the store per interval, never reading faster than the
  // rate (--scrub-interval, --scrub-rate; see mqds/scrub.hpp).
  scrub::PacerConfig scrub;
  LogLevel log_level = LogLevel::info;
  bool help_shown = false;  // --help printed the help: nothing else to do
};

// Exit statuses, documented in the README and the systemd unit.
namespace exit_status {
inline constexpr int stopped = 0;  // SIGTERM or SIGINT: said goodbye
inline constexpr int usage = 1;    // a bad flag, value or config file
// The broker refused a subscription, or the tracker accepted this server with another fragment
// size than its stored data's: only a person can fix it. A join denial is not one of them.
inline constexpr int operator_must_act = 2;
inline constexpr int storage = 3;  // the data directory cannot be opened or written
}  // namespace exit_status

// The options (with help_shown after --help, which printed the help), or an Error naming the flag.
Result<EdgeOptions> parse_edge_options(int argc, const char* const* argv);

}  // namespace mqds::edge
