// Joins at scale: one board joining a large service, and a whole fleet joining at once.
#pragma once

#include "report.hpp"

namespace mqds::bench {

struct JoinOptions {
  int view_clients = 100;
  int view_files = 1'000;
  int fragments_per_file = 100;  // 100,000 fragments with the defaults
  int fleet = 1'000;
};

void run_joins(Report& report, const JoinOptions& options);

}  // namespace mqds::bench
