// mqds_bench: every benchmark of mqds against its baseline measured in the same run. Prints the
// figures as they come (stderr), then a table and one `NAME: ratio X (target Y)` line per target
// (stdout). Exit status 0 when every section ran (targets met or not), 1 on bad usage, 2 when a
// section could not run.
#include <sys/resource.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "hashing.hpp"
#include "joins.hpp"
#include "overhead.hpp"
#include "repair.hpp"
#include "report.hpp"
#include "runtime/allocator.hpp"
#include "services.hpp"
#include "transfer.hpp"

namespace {

// A thousand simulated boards need a thousand sockets here and in the broker, which inherits this.
void raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mqds::bench;
  CLI::App app{"mqds benchmarks, each against a baseline measured in the same run"};
  const std::vector<std::string> all = {"hashing", "overhead", "transfer", "repair", "joins"};
  std::vector<std::string> sections = all;
  TransferOptions transfer;
  RepairOptions repair;
  JoinOptions joins;
  std::uint64_t file_mib = 1024;
  std::string work_parent = std::filesystem::temp_directory_path().string();
  app.add_option("sections", sections, "which to run (default: all)")->check(CLI::IsMember(all));
  app.add_option("--file-mib", file_mib, "size of the file put and got back, MiB")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--edges", transfer.edges, "mqds-edge processes")->check(CLI::Range(1, 64));
  app.add_option("--replicas", transfer.replicas, "k for the transfer and the repair")
      ->check(CLI::Range(1, 16));
  app.add_option("--repair-edges", repair.edges, "mqds-edge processes of the repair, one lost")
      ->check(CLI::Range(3, 64));
  app.add_option("--fleet", joins.fleet, "simulated boards joining at once")
      ->check(CLI::Range(1, 10000));
  app.add_option("--view-clients", joins.view_clients, "holders of the large view")
      ->check(CLI::Range(3, 10000));
  app.add_option("--view-files", joins.view_files, "files of the large view")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--work-dir", work_parent,
                 "where the data goes (needs about 6 times the file size)")
      ->check(CLI::ExistingDirectory);
  CLI11_PARSE(app, argc, argv);
  transfer.file_bytes = file_mib << 20;
  repair.file_bytes = transfer.file_bytes;
  repair.replicas = transfer.replicas;
  raise_open_file_limit();
  // The raw pipeline's clients live in this process: they get the same allocator settings as
  // mqds-edge and mqds, so the baseline is not slowed by page faults ours avoid.
  mqds::runtime::keep_freed_memory(16 << 20, 16 << 20);

  const std::set<std::string> wanted(sections.begin(), sections.end());
  Report report;
  std::fprintf(stderr, "mqds_bench: %s\n",
               [&] {
                 std::string names;
                 for (const auto& s : all)
                   if (wanted.count(s)) names += s + " ";
                 return names;
               }()
                   .c_str());
  auto run = [&](const std::string& name, auto&& body) {
    if (!wanted.count(name)) return;
    try {
      body();
    } catch (const std::exception& e) {
      report.failed(name, e.what());
    }
  };
  run("hashing", [&] { run_hashing(report); });
  run("overhead", [&] { run_overhead(report); });
  run("transfer", [&] {
    const WorkDir dir(work_parent);
    transfer.work_dir = dir.path();
    run_transfer(report, transfer);
  });
  run("repair", [&] {
    const WorkDir dir(work_parent);
    repair.work_dir = dir.path();
    run_repair(report, repair);
  });
  run("joins", [&] { run_joins(report, joins); });
  return report.print(stdout) ? 0 : 2;
}
