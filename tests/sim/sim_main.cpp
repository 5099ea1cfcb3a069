// Runs the simulation over a range of seeds. A failing seed is printed with the command that
// replays it alone, with every participant's log.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "sim/simulation.hpp"

int main(int argc, char** argv) {
  std::uint64_t first = 0, count = 100;
  bool verbose = false, classic = false, spec_only = true;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    auto value = [&]() -> std::uint64_t {
      if (a + 1 >= argc) {
        std::fprintf(stderr, "%s needs a number\n", arg.c_str());
        std::exit(2);
      }
      return std::strtoull(argv[++a], nullptr, 10);
    };
    if (arg == "--first")
      first = value();
    else if (arg == "--count")
      count = value();
    else if (arg == "--seed") {
      first = value();
      count = 1;
      verbose = true;
    } else if (arg == "--classic") {
      classic = true;
    } else if (arg == "--no-spec-only") {
      spec_only = false;
    } else if (arg == "--quiet-seed") {
      first = value();
      count = 1;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--first N --count M | --seed N | --quiet-seed N] [--classic] "
                   "[--no-spec-only]\n",
                   argv[0]);
      return 2;
    }
  }
  const auto started = std::chrono::steady_clock::now();
  std::uint64_t passed = 0, failed = 0, slowest_ms = 0, messages = 0, crashes = 0;
  std::uint64_t store_failures = 0, torn_writes = 0, copies_lost = 0, safety_checks = 0;
  std::uint64_t uploads = 0, uploads_aborted = 0, uploads_resumed = 0, gets = 0, gets_complete = 0;
  std::uint64_t spec_boards = 0, spec_clients = 0, spec_seeds = 0, spec_only_fragments = 0;
  std::uint64_t retired = 0, wiped = 0, repairs_started = 0, repairs_ended = 0, repairs_failed = 0;
  std::uint64_t late = 0, moves_started = 0, moves_ended = 0, trimmed = 0;
  for (std::uint64_t seed = first; seed < first + count; ++seed) {
    mqds::sim::Options options;
    options.seed = seed;
    options.verbose = verbose;
    options.classic = classic;
    options.spec_only = spec_only;
    const auto r = mqds::sim::run(options);
    messages += r.messages_delivered;
    crashes += r.crashes + r.broker_restarts;
    store_failures += r.store_failures;
    torn_writes += r.torn_writes;
    copies_lost += r.copies_lost;
    safety_checks += r.safety_checks;
    uploads += r.uploads;
    uploads_aborted += r.uploads_aborted;
    uploads_resumed += r.uploads_resumed;
    gets += r.gets;
    gets_complete += r.gets_complete;
    spec_boards += r.spec_only_boards;
    spec_clients += r.spec_only_clients;
    spec_seeds += r.spec_only_boards != 0;
    spec_only_fragments += r.fragments_only_on_spec_only;
    retired += r.boards_retired;
    wiped += r.disks_wiped;
    repairs_started += r.repairs_started;
    repairs_ended += r.repairs_ended;
    repairs_failed += r.repairs_failed;
    late += r.boards_late;
    moves_started += r.moves_started;
    moves_ended += r.moves_ended;
    trimmed += r.copies_trimmed;
    if (r.ok) {
      ++passed;
      slowest_ms =
          std::max<std::uint64_t>(slowest_ms, static_cast<std::uint64_t>(r.converged_after_ms));
    } else {
      ++failed;
      std::printf("seed %llu FAILED: %s\n  replay: %s --seed %llu\n",
                  static_cast<unsigned long long>(seed), r.failure.c_str(), argv[0],
                  static_cast<unsigned long long>(seed));
    }
    if (verbose)
      std::printf(
          "seed %llu: %llu torrents, %llu files, %llu fragments, %llu messages (%llu dropped, %llu "
          "duplicated), "
          "%llu crashes, %llu broker restarts, converged %lld ms after faults; %llu spec-only "
          "boards (%llu client ids)\n",
          static_cast<unsigned long long>(seed), static_cast<unsigned long long>(r.torrents),
          static_cast<unsigned long long>(r.files), static_cast<unsigned long long>(r.fragments),
          static_cast<unsigned long long>(r.messages_delivered),
          static_cast<unsigned long long>(r.messages_dropped),
          static_cast<unsigned long long>(r.messages_duplicated),
          static_cast<unsigned long long>(r.crashes),
          static_cast<unsigned long long>(r.broker_restarts),
          static_cast<long long>(r.converged_after_ms),
          static_cast<unsigned long long>(r.spec_only_boards),
          static_cast<unsigned long long>(r.spec_only_clients));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "simulation: seeds %llu..%llu, %llu messages, %llu crashes, slowest convergence %llu ms of "
      "simulated time, %.1f s\n",
      static_cast<unsigned long long>(first), static_cast<unsigned long long>(first + count - 1),
      static_cast<unsigned long long>(messages), static_cast<unsigned long long>(crashes),
      static_cast<unsigned long long>(slowest_ms), seconds);
  std::printf(
      "storage: %llu failed commits, %llu torn writes, %llu copies lost; %llu safety checks\n",
      static_cast<unsigned long long>(store_failures), static_cast<unsigned long long>(torn_writes),
      static_cast<unsigned long long>(copies_lost), static_cast<unsigned long long>(safety_checks));
  std::printf(
      "ingest: %llu uploads (%llu aborted, %llu resumed); fetch: %llu gets, %llu complete\n",
      static_cast<unsigned long long>(uploads), static_cast<unsigned long long>(uploads_aborted),
      static_cast<unsigned long long>(uploads_resumed), static_cast<unsigned long long>(gets),
      static_cast<unsigned long long>(gets_complete));
  std::printf(
      "spec-only: %llu boards in %llu seeds, %llu client ids; %llu fragments a final get could "
      "only have had from them\n",
      static_cast<unsigned long long>(spec_boards), static_cast<unsigned long long>(spec_seeds),
      static_cast<unsigned long long>(spec_clients),
      static_cast<unsigned long long>(spec_only_fragments));
  std::printf(
      "repair: %llu boards lost for good, %llu disks replaced; %llu repairs started, %llu ended, "
      "%llu failed (counted by the tracker that ran last)\n",
      static_cast<unsigned long long>(retired), static_cast<unsigned long long>(wiped),
      static_cast<unsigned long long>(repairs_started),
      static_cast<unsigned long long>(repairs_ended),
      static_cast<unsigned long long>(repairs_failed));
  std::printf(
      "balance: %llu boards joined late; %llu copies moved of %llu started, %llu surplus copies "
      "trimmed (counted by the tracker that ran last)\n",
      static_cast<unsigned long long>(late), static_cast<unsigned long long>(moves_ended),
      static_cast<unsigned long long>(moves_started), static_cast<unsigned long long>(trimmed));
  std::printf("%llu passed, %llu failed\n", static_cast<unsigned long long>(passed),
              static_cast<unsigned long long>(failed));
  return failed == 0 ? 0 : 1;
}
