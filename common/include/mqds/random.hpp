// Randomness is injected so the core stays deterministic: adapters seed from the OS, the
// simulation from its seed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

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
  // 16 random bytes as 32 lowercase hex digits: a token a client cannot guess when drawn from the
  // kernel (fetch Correlation Data, Receipts).
  std::string hex_token() {
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    text.reserve(32);
    for (int word = 0; word < 2; ++word) {
      const std::uint64_t bits = next_u64();
      for (int shift = 60; shift >= 0; shift -= 4) text.push_back(digits[(bits >> shift) & 0xF]);
    }
    return text;
  }
};

// Exponential backoff with jitter: each delay is drawn from [d/2, d], and d doubles from min_ms up
// to max_ms. The jitter spreads the retries of a whole fleet that lost the tracker at one moment.
class Backoff {
 public:
  Backoff(std::int64_t min_ms, std::int64_t max_ms)
      : min_ms_(min_ms), max_ms_(max_ms), next_ms_(min_ms) {}
  std::int64_t next_delay_ms(Random& random) {
    const auto half = next_ms_ / 2;
    const auto delay =
        half + static_cast<std::int64_t>(random.below(static_cast<std::uint64_t>(half + 1)));
    next_ms_ = std::min(next_ms_ * 2, max_ms_);
    return delay;
  }
  void reset() { next_ms_ = min_ms_; }

 private:
  std::int64_t min_ms_;
  std::int64_t max_ms_;
  std::int64_t next_ms_;
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
