// Deterministic simulation of one tracker and a fleet of torrent servers (TigerBeetle's VOPR in
// spirit). One seed chooses everything: fleet size, fragment size, replicas, files, and the faults
// of the network (loss, duplication, delay and so reordering) and of the participants (crashes,
// lost connections, broker restarts, graceful stops) and of storage (commits that fail, torn
// writes that leave a fragment corrupt, local copies found corrupt when read back). After the
// fault phase the network behaves and every participant comes back; within a bounded time the
// system must converge. Safety is checked after every step: the views' invariants, and that the
// tracker never counts a copy a board does not hold. Files enter through the ingest protocol (an
// uploader that pauses, resumes and sometimes aborts) and are got back through the fetch protocol,
// during the faults and once more, every one of them, after convergence.
#pragma once

#include <cstdint>
#include <string>

namespace mqds::sim {

struct Options {
  std::uint64_t seed = 0;
  bool verbose = false;  // print every participant's log lines
  std::int64_t fault_ms = 60'000;
  std::int64_t converge_ms = 180'000;
  // The scenarios of the seeds as they were before storage faults, uploads and gets existed:
  // files are staged directly, nothing is lost in storage, nobody gets a file.
  bool classic = false;
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
  std::uint64_t store_failures = 0;  // commits that failed: the process stopped, or the
                                     // tracker restarted from its store
  std::uint64_t torn_writes = 0;     // a commit that left a fragment corrupt, then power loss
  std::uint64_t copies_lost = 0;     // local copies found corrupt (read back or at start-up)
  std::uint64_t safety_checks = 0;
  std::uint64_t uploads = 0;  // files put through the ingest protocol
  std::uint64_t uploads_aborted = 0;
  std::uint64_t uploads_resumed = 0;  // resumed from what was durable (pause, broker restart)
  std::uint64_t gets = 0;             // files got back through the fetch protocol
  std::uint64_t gets_complete = 0;
  std::uint64_t files = 0;
  std::uint64_t fragments = 0;
  std::uint64_t torrents = 0;
};

Result run(const Options& options);

}  // namespace mqds::sim
