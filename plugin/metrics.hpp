// The tracker's figures under $SYS/broker/mqds/, published like the broker's own $SYS topics:
// retained, every interval, and only the values that changed since the last time.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "acl_gate.hpp"
#include "edge_gate.hpp"
#include "fetch_gate.hpp"
#include "mqds/tracker.hpp"

namespace mqds::plugin {

inline constexpr const char* metrics_prefix = "$SYS/broker/mqds/";

// The plugin's own counters, beside the tracker's.
struct GateMetrics {
  FetchMetrics fetch;
  AclMetrics acl;
  EdgeMetrics edges;
};

// Every figure as (topic below the prefix, value).
std::vector<std::pair<std::string, std::uint64_t>> metric_values(const TrackerMetrics& m,
                                                                 const TrackerGauges& g,
                                                                 const GateMetrics& gates);

class MetricsPublisher {
 public:
  explicit MetricsPublisher(std::int64_t interval_ms) : interval_ms_(interval_ms) {}
  // The (full topic, value) pairs to publish now: none before the interval has passed.
  std::vector<std::pair<std::string, std::string>> due(std::int64_t now_ms, const Tracker& tracker,
                                                       const GateMetrics& gates);

 private:
  std::int64_t interval_ms_;
  std::int64_t next_ms_ = 0;
  std::map<std::string, std::uint64_t> last_;
};

}  // namespace mqds::plugin
