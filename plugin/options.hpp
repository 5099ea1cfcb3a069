// The plugin's options, from the plugin_opt_<key> lines of mosquitto.conf. Parsing is pure so it
// can be tested without a broker; a bad value is an error naming the option and the reason, and the
// broker refuses to start with it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "allowed_users.hpp"
#include "edge_gate.hpp"
#include "fetch_gate.hpp"
#include "mqds/ingest.hpp"
#include "mqds/result.hpp"
#include "mqds/tracker.hpp"

namespace mqds::plugin {

// Who may upload (plugin_opt_ingest_users) and the bounds of an upload (plugin_opt_ingest_*).
struct IngestOptions : AllowedUsers, ingest::ReceiverConfig {
  ingest::Permission permission(const char* username) const {
    if (!enabled()) return ingest::Permission::disabled;
    return allows(username) ? ingest::Permission::granted : ingest::Permission::denied;
  }
};

// What the broker decides of an access that no ACL judged (every ACL_CHECK callback deferred, the
// plugin's included). Mosquitto 2.0.11 denies it; the plugin can allow it instead, as the broker
// does when no ACL is configured at all.
enum class AclFallback : std::uint8_t {
  // The broker's ACLs (acl_file, dynamic security, an auth plugin) decide, and deny what none of
  // them allows. With no ACL at all, that denies everything.
  defer,
  // For a broker without any ACL: what the plugin does not refuse is allowed. With the
  // dynamic-security plugin or an auth plugin that defers, it would allow what they leave to the
  // broker's default (deny); acl_file never defers, so it still decides.
  allow,
};

struct Options {
  std::string data_dir;
  std::size_t map_size_bytes = std::size_t{16} << 30;  // LMDB's map is address space, not memory
  std::int64_t metrics_interval_ms = 10'000;           // as the broker's sys_interval default
  TrackerConfig tracker;
  EdgeOptions edges;
  IngestOptions ingest;
  FetchOptions fetch;
  AclFallback acl_fallback = AclFallback::defer;
};

using RawOptions = std::vector<std::pair<std::string, std::string>>;

// Options, or an Error such as {"plugin_opt_replicas", "must be an integer from 1 to 16, not 'x'"}.
Result<Options> parse_options(const RawOptions& raw);

}  // namespace mqds::plugin
