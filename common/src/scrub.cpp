#include "mqds/scrub.hpp"

#include <algorithm>

#include "mqds/assert.hpp"
#include "mqds/limits.hpp"

namespace mqds::scrub {

Pacer::Pacer(PacerConfig config, std::int64_t now_ms) : config_(config), next_step_ms_(now_ms) {
  MQDS_ASSERT(!invalid(config_));
}

std::optional<const char*> Pacer::invalid(const PacerConfig& config) {
  if (config.interval_ms < 0 || config.interval_ms > PacerConfig::interval_ms_max)
    return "the interval must be 0 (off) to 366 days";
  if (config.rate_bytes_per_s < 1) return "the rate must be at least 1 byte/s";
  return std::nullopt;
}

std::optional<std::int64_t> Pacer::next_step_ms() const {
  if (!enabled()) return std::nullopt;
  return next_step_ms_;
}

void Pacer::begin_pass(std::int64_t now_ms, std::int64_t store_bytes) {
  MQDS_ASSERT(!in_pass_);
  in_pass_ = true;
  pass_ = PassFigures{pass_.number + 1, now_ms, std::max<std::int64_t>(store_bytes, 0), 0, 0};
}

void Pacer::verified(std::int64_t began_ms, std::int64_t size_bytes) {
  MQDS_ASSERT(in_pass_);
  // No stored fragment is larger (the integrity check drops one larger than the fragment size);
  // the bound keeps interval * size inside 64 bits whatever the caller passes.
  const std::int64_t size =
      std::clamp<std::int64_t>(size_bytes, 0, limits::fragment_size_bytes_max);
  ++pass_.fragments;
  pass_.bytes += size;
  // Rounded up, both: rounding down would let many small fragments read faster than the bound.
  const std::int64_t rate_delay_ms =
      (size * 1000 + config_.rate_bytes_per_s - 1) / config_.rate_bytes_per_s;
  // A fragment larger than what the pass began with gets the whole interval, not more.
  const std::int64_t pass_bytes = std::max<std::int64_t>({pass_.store_bytes, size, 1});
  const std::int64_t share_delay_ms = (config_.interval_ms * size + pass_bytes - 1) / pass_bytes;
  next_step_ms_ = began_ms + std::max(rate_delay_ms, share_delay_ms);
}

void Pacer::end_pass(std::int64_t now_ms) {
  MQDS_ASSERT(in_pass_);
  in_pass_ = false;
  next_step_ms_ = std::max(now_ms, pass_.began_ms + config_.interval_ms);
}

}  // namespace mqds::scrub
