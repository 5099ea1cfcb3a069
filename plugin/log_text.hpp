// The plugin's log lines about what clients do: client-supplied text in them is bounded and never
// cut inside a UTF-8 character, and a line a client can provoke at will is rate-limited.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mqds/output.hpp"

namespace mqds::plugin {

// At most `bytes_max` bytes of `text` for a log line, cut at a UTF-8 character boundary.
inline std::string shortened(std::string_view text, std::size_t bytes_max) {
  if (text.size() <= bytes_max) return std::string(text);
  std::size_t end = bytes_max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end)) + "...";
}

// One kind of line a client can provoke at will: at most one per interval, so that an attacker
// cannot flood the broker's log, and the next says how many were left out.
class LogLimiter {
 public:
  static constexpr std::int64_t default_interval_ms = 10'000;
  LogLimiter() = default;
  explicit LogLimiter(std::int64_t interval_ms) : interval_ms_(interval_ms) {}

  // The line `make_text()` writes, or nullopt while the interval since the last line runs (then
  // the text is not even made).
  template <class MakeText>
  std::optional<LogLine> pass(std::int64_t now_ms, MakeText&& make_text,
                              LogLevel level = LogLevel::notice) {
    if (logged_ && now_ms - last_ms_ < interval_ms_) {
      ++unlogged_;
      return std::nullopt;
    }
    std::string text = make_text();
    if (unlogged_ > 0)
      text += " (and " + std::to_string(unlogged_) + " more in the last " +
              std::to_string((now_ms - last_ms_) / 1000) + " s, not logged)";
    logged_ = true;
    last_ms_ = now_ms;
    unlogged_ = 0;
    return LogLine{level, std::move(text)};
  }

 private:
  std::int64_t interval_ms_ = default_interval_ms;
  bool logged_ = false;
  std::int64_t last_ms_ = 0;
  std::uint64_t unlogged_ = 0;
};

}  // namespace mqds::plugin
