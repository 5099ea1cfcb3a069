// Randomness is injected so the core stays deterministic: adapters seed from the OS, the
// simulation from its seed.
#pragma once

#include <cstdint>

#include "mqds/uuid.hpp"

namespace mqds {

class Random {
 public:
  virtual ~Random() = default;
  virtual std::uint64_t next_u64() = 0;

  Uuid next_uuid() {
    const std::uint64_t high = next_u64();
    return Uuid::v4_from(high, next_u64());
  }
  // Uniform in [0, bound); bound > 0. The slight modulo bias is irrelevant for jitter.
  std::uint64_t below(std::uint64_t bound) { return next_u64() % bound; }
};

// SplitMix64: small, fast, and good enough for EventIds and jitter (not for secrets).
class SplitMix64 final : public Random {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next_u64() override {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

}  // namespace mqds
