// Progress of a long transfer on stderr: a bar redrawn in place on a terminal (bytes, rate, time
// left), or a plain line every 10 % when stderr is a file or a pipe, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "runtime/log.hpp"

namespace mqds::cli {

class Progress {
 public:
  Progress(std::string label, std::int64_t total_bytes, bool quiet);
  // Sets how many bytes are done; redraws at most 10 times a second.
  void update(std::int64_t done_bytes);
  // Ends the bar with a summary line.
  void finish(const std::string& summary);

 private:
  void draw(bool final);

  std::string label_;
  std::int64_t total_;
  std::int64_t done_ = 0;
  bool quiet_;
  bool terminal_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point drawn_;
};

using runtime::human_bytes;

}  // namespace mqds::cli
