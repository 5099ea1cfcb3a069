#include "log.hpp"

#include <cstdio>
#include <iterator>

namespace mqds::runtime {

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::notice: return "notice";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
  }
  return "info";
}

void Log::write(LogLevel level, std::string_view text) const {
  if (!enabled(level)) return;
  std::fprintf(stderr, "%.*s: %.*s: %.*s\n", static_cast<int>(program_.size()), program_.data(),
               static_cast<int>(level_name(level).size()), level_name(level).data(),
               static_cast<int>(text.size()), text.data());
  std::fflush(stderr);
}

std::string human_bytes(std::int64_t bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  auto value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(units)) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  if (unit == 0)
    std::snprintf(text, sizeof text, "%lld B", static_cast<long long>(bytes));
  else
    std::snprintf(text, sizeof text, "%.1f %s", value, units[unit]);
  return text;
}

}  // namespace mqds::runtime
