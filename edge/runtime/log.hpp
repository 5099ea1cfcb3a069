// One line per event on stderr, which systemd's journal (or the terminal) collects: the level, then
// the text. The programs of edge/ are single-threaded, so there is no locking.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mqds/output.hpp"

namespace mqds::runtime {

class Log {
 public:
  explicit Log(std::string_view program, LogLevel threshold = LogLevel::info)
      : program_(program), threshold_(threshold) {}
  void set_threshold(LogLevel level) { threshold_ = level; }
  bool enabled(LogLevel level) const { return level >= threshold_; }
  void write(LogLevel level, std::string_view text) const;
  void operator()(LogLevel level, std::string_view text) const { write(level, text); }

 private:
  std::string_view program_;
  LogLevel threshold_;
};

std::string_view level_name(LogLevel level);

// "512 B", "3.2 MiB", "20.0 GiB": sizes for people reading logs and progress.
std::string human_bytes(std::int64_t bytes);

}  // namespace mqds::runtime
