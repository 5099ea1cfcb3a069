// The pace of mqds-edge's background scrubbing: when it may re-verify its next stored fragment.
//
// Theory of operation. A board re-reads and hashes its persisted fragments one at a time, in key
// order, in passes over the whole store (docs/specification.md, "Failure handling": a subscriber
// loses some or all of its local copy). A pass should take about `interval_ms`, and reading must
// never go faster than `rate_bytes_per_s`: the scrub shares a small board's flash and CPU with
// everything else. The Pacer decides only when; the adapter reads and hashes. Like the rest of the
// core it reads no clock: every call takes the time, and the adapter runs a step only once due().
// - A pass begins with the bytes the store holds then. After a fragment of n bytes, the next step
//   is due the longer of n / rate (the bound) and interval * n / pass bytes (its share of the
//   pass) after that step BEGAN: n bytes read at t mean nothing more before t + n / rate, so over
//   any stretch of time T the reads add up to at most rate * T plus one fragment.
// - A pass that reaches the end early (the store shrank, or it is empty) waits for the interval
//   after its start: passes begin at most once per interval. A store that grows during a pass
//   makes that pass longer in proportion; the next one is paced by the new size.
// - The first pass begins when the Pacer is made: at start-up, just after the integrity check
//   read everything, so a fragment's copy is read again at most about one interval later.
#pragma once

#include <cstdint>
#include <optional>

namespace mqds::scrub {

struct PacerConfig {
  // One pass over the store takes about this long; 0 turns scrubbing off.
  std::int64_t interval_ms = 7LL * 24 * 3600 * 1000;
  // Reading never goes faster; at least 1.
  std::int64_t rate_bytes_per_s = 4'000'000;

  // Keeps interval * fragment size inside 64 bits (366 days in ms is below 2^35, a fragment at
  // most fragment_size_bytes_max = 2^26 bytes).
  static constexpr std::int64_t interval_ms_max = 366LL * 24 * 3600 * 1000;
};

// What one pass did so far (the current pass, or the last one once it ended).
struct PassFigures {
  std::uint64_t number = 0;  // 1 for the first pass
  std::int64_t began_ms = 0;
  std::int64_t store_bytes = 0;  // what the store held when it began
  std::uint64_t fragments = 0;
  std::int64_t bytes = 0;
};

class Pacer {
 public:
  // The config must be valid (valid()); the first pass is due at now_ms.
  Pacer(PacerConfig config, std::int64_t now_ms);

  // Why a config cannot be used, or nullopt when it can (the option parser says it to the user).
  static std::optional<const char*> invalid(const PacerConfig& config);

  bool enabled() const { return config_.interval_ms > 0; }
  // When the next step is due; nullopt when scrubbing is off.
  std::optional<std::int64_t> next_step_ms() const;
  bool due(std::int64_t now_ms) const { return enabled() && now_ms >= next_step_ms_; }
  // Between begin_pass and end_pass.
  bool in_pass() const { return in_pass_; }

  // A pass begins at the first key; the store holds store_bytes of persisted fragments.
  void begin_pass(std::int64_t now_ms, std::int64_t store_bytes);
  // A step that began at began_ms verified a fragment of size_bytes (intact or not: it was read).
  void verified(std::int64_t began_ms, std::int64_t size_bytes);
  // The pass found no fragment after the last one.
  void end_pass(std::int64_t now_ms);

  const PassFigures& pass() const { return pass_; }
  const PacerConfig& config() const { return config_; }

 private:
  PacerConfig config_;
  std::int64_t next_step_ms_;
  bool in_pass_ = false;
  PassFigures pass_;
};

}  // namespace mqds::scrub
