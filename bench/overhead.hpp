// What loading the tracker plugin costs traffic that has nothing to do with mqds: ordinary
// pub/sub through the broker with and without the plugin.
#pragma once

#include "report.hpp"

namespace mqds::bench {

void run_overhead(Report& report);

}  // namespace mqds::bench
