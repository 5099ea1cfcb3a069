// Distribution (a file put and spread to its k replicas) and retrieval (the file fetched back),
// each against the raw pipeline the same bytes need without mqds.
#pragma once

#include <cstdint>
#include <string>

#include "report.hpp"

namespace mqds::bench {

struct TransferOptions {
  std::uint64_t file_bytes = std::uint64_t{1} << 30;
  int edges = 4;
  int replicas = 2;
  std::string work_dir;  // room for the file about 5 times over
};

void run_transfer(Report& report, const TransferOptions& options);

}  // namespace mqds::bench
