// The project's SHA-256 against `openssl speed -evp sha256`, in the same run.
#pragma once

#include "report.hpp"

namespace mqds::bench {

void run_hashing(Report& report);

}  // namespace mqds::bench
