// Deterministic simulation of one tracker and a fleet of torrent servers (TigerBeetle's VOPR in
// spirit). One seed chooses everything: fleet size, fragment size, replicas, files, and the faults
// of the network (loss, duplication, delay and so reordering) and of the participants (crashes,
// lost connections, broker restarts, graceful stops). After the fault phase the network behaves
// and every participant comes back; within a bounded time the system must converge.
#pragma once

#include <cstdint>
#include <string>

namespace mqds::sim {

struct Options {
  std::uint64_t seed = 0;
  bool verbose = false;  // print every participant's log lines
  std::int64_t fault_ms = 60'000;
  std::int64_t converge_ms = 180'000;
};

struct Result {
  bool ok = false;
  std::string failure;                  // the first violated invariant, if any
  std::int64_t converged_after_ms = 0;  // after the fault phase
  std::uint64_t messages_delivered = 0;
  std::uint64_t messages_dropped = 0;
  std::uint64_t messages_duplicated = 0;
  std::uint64_t crashes = 0;
  std::uint64_t broker_restarts = 0;
  std::uint64_t files = 0;
  std::uint64_t fragments = 0;
  std::uint64_t torrents = 0;
};

Result run(const Options& options);

}  // namespace mqds::sim
