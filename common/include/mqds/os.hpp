// The operating system's clock and randomness, for the adapters (the plugin, mqds-edge, mqds). The
// core never calls these: its machines are given `now` and a Random, so the simulation can run
// them on its own clock and seed. This header belongs to the library mqds_os, which the core does
// not link.
#pragma once

#include <cstdint>

namespace mqds::os {

// CLOCK_MONOTONIC in milliseconds: never jumps with the wall clock.
std::int64_t monotonic_ms();
// 64 bits from getrandom(); falls back to the clock if the kernel cannot give them.
std::uint64_t random_seed();

}  // namespace mqds::os
