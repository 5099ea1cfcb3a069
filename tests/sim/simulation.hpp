// Deterministic simulation of one tracker and a fleet of torrent servers (TigerBeetle's VOPR in
// spirit). One seed chooses everything: fleet size, fragment size, replicas, files, and the faults
// of the network (loss, duplication, delay and so reordering) and of the participants (crashes,
// lost connections, broker restarts, graceful stops) and of storage (commits that fail, torn
// writes that leave a fragment corrupt, local copies found corrupt when read back). After the
// fault phase the network behaves and every participant comes back; within a bounded time the
// system must converge. Safety is checked after every step: the views' invariants, and that the
// tracker never counts a copy a board does not hold. Files enter through the ingest protocol (an
// uploader that pauses, resumes and sometimes aborts) and are got back through the fetch protocol,
// during the faults and once more, every one of them, after convergence. About a quarter of the
// boards run a client that knows only the specification (tests/support/spec_server.hpp), as the
// C# reference does: a reliable link while connected, no reconnection (each start is a new client
// id on the same disk), no fetch; they must converge too, but for the clients that left, which
// such a client cannot tell from a ClientGoodbye.
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
  // About a quarter of the boards (chosen by the seed; none when classic) run a client that knows
  // only the specification (tests/support/spec_server.hpp), as the C# reference does.
  bool spec_only = true;
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
  std::uint64_t spec_only_boards = 0;             // boards running the specification-only client
  std::uint64_t spec_only_clients = 0;            // the client ids they started as (one per start)
  std::uint64_t fragments_only_on_spec_only = 0;  // missed by a final get: no mqds-edge holds them
  std::uint64_t boards_retired = 0;               // died for good
  std::uint64_t disks_wiped = 0;                  // came back empty under the same id
  // Of the tracker that ran last (a broker restart starts its counts again).
  std::uint64_t repairs_started = 0;
  std::uint64_t repairs_ended = 0;
  std::uint64_t repairs_failed = 0;
  std::uint64_t moves_started = 0;  // rebalancing
  std::uint64_t moves_ended = 0;
  std::uint64_t copies_trimmed = 0;
  std::uint64_t boards_late = 0;  // joined while the faults went on
};

Result run(const Options& options);

}  // namespace mqds::sim
