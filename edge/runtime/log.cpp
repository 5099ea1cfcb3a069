#include "log.hpp"

#include <cstdio>

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
               static_cast<int>(level_name(level).size()), level_name(level).data(), static_cast<int>(text.size()),
               text.data());
  std::fflush(stderr);
}

}  // namespace mqds::runtime
