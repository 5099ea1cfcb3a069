// The operating system's clock and randomness, for the adapters (the plugin, mqds-edge, mqds). The
// core never calls these: its machines are given `now` and a Random, so the simulation can run
// them on its own clock and seed. This header belongs to the library mqds_os, which the core does
// not link.
#pragma once

#include <cstdint>

#include "mqds/random.hpp"

namespace mqds::os {

// CLOCK_MONOTONIC in milliseconds: never jumps with the wall clock.
std::int64_t monotonic_ms();
// 64 bits from getrandom(); falls back to the clock if the kernel cannot give them.
std::uint64_t random_seed();

// Every draw straight from the kernel's generator (getrandom): for values another client must not
// be able to guess, such as the Correlation Data of `mqds get`, which a seeded sequence would make
// predictable. Throws std::runtime_error if the kernel gives no random bytes.
class KernelRandom final : public Random {
 public:
  std::uint64_t next_u64() override;
};

}  // namespace mqds::os
