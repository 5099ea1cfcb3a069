#include "metrics.hpp"

namespace mqds::plugin {

std::vector<std::pair<std::string, std::uint64_t>> metric_values(const TrackerMetrics& m,
                                                                 const TrackerGauges& g,
                                                                 const GateMetrics& gates) {
  const FetchMetrics& f = gates.fetch;
  return {
      {"clients/registered", g.registered_clients},
      {"clients/lost", m.clients_lost},
      {"clients/refused_id", gates.edges.connects_refused},
      {"clients/away", g.clients_away},
      {"files", g.files},
      {"fragments", g.fragments},
      {"fragments/under_replicated", g.under_replicated_fragments},
      {"fragments/staged", g.staged_fragments},
      {"fragments/unavailable", g.unavailable_fragments},
      {"bytes/ingested", m.ingested_bytes},
      {"bytes/distributed", m.distributed_bytes},
      {"bytes/repaired", m.repaired_bytes},
      {"bytes/repair_fetched", m.repair_fetched_bytes},
      {"distributions/in_flight", g.distributions_in_flight},
      {"distributions/started", m.distributions_started},
      {"distributions/ended", m.distributions_ended},
      {"distributions/failed", m.deliveries_failed},
      {"repairs/in_flight", g.repairs_in_flight},
      {"repairs/started", m.repairs_started},
      {"repairs/ended", m.repairs_ended},
      {"repairs/failed", m.repairs_failed},
      {"rebalances/started", m.rebalances_started},
      {"rebalances/ended", m.rebalances_ended},
      {"rebalances/failed", m.rebalances_failed},
      {"bytes/rebalanced", m.rebalanced_bytes},
      {"fragments/misplaced", g.misplaced_fragments},
      {"copies/surplus", g.surplus_copies},
      {"copies/trimmed", m.copies_trimmed},
      {"copies/trim_requests", m.trim_requests},
      {"joins/in_flight", g.joins_in_flight},
      {"joins/accepted", m.joins_accepted},
      {"joins/denied", m.joins_denied},
      {"joins/timed_out", m.joins_timed_out},
      {"joins/awaiting_hello", g.clients_awaiting_hello},
      {"joins/hellos_sent", m.hellos_sent},
      {"events/replayed", m.events_replayed},
      {"events/rejected", m.events_rejected},
      {"events/duplicated", m.events_duplicated},
      {"events/out_of_place", m.events_out_of_place},
      {"events/unauthorised", m.events_unauthorised},
      {"acl/writes_refused", gates.acl.writes_refused},
      {"acl/wills_refused", gates.acl.wills_refused},
      {"fetch/requests", f.requests},
      {"fetch/refused", f.refused},
      {"fetch/responses", f.responses},
      {"fetch/bytes", f.bytes},
  };
}

std::vector<std::pair<std::string, std::string>> MetricsPublisher::due(std::int64_t now_ms,
                                                                       const Tracker& tracker,
                                                                       const GateMetrics& gates) {
  std::vector<std::pair<std::string, std::string>> out;
  if (now_ms < next_ms_) return out;
  next_ms_ = now_ms + interval_ms_;
  for (const auto& [name, value] : metric_values(tracker.metrics(), tracker.gauges(), gates)) {
    auto [it, inserted] = last_.try_emplace(name, value);
    if (!inserted && it->second == value) continue;
    it->second = value;
    out.emplace_back(std::string(metrics_prefix) + name, std::to_string(value));
  }
  return out;
}

}  // namespace mqds::plugin
