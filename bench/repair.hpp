// Repair: the time to bring back to k the copies of one edge lost for good, against the raw
// broker moving the same bytes from the surviving holders' LMDB stores to the new holders' stores.
#pragma once

#include <cstdint>
#include <string>

#include "report.hpp"

namespace mqds::bench {

struct RepairOptions {
  std::uint64_t file_bytes = std::uint64_t{1} << 30;
  int edges = 6;
  int replicas = 2;
  std::string work_dir;  // room for the file about 3 times over
};

void run_repair(Report& report, const RepairOptions& options);

}  // namespace mqds::bench
