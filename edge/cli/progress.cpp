#include "progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace mqds::cli {

Progress::Progress(std::string label, std::int64_t total_bytes, bool quiet)
    : label_(std::move(label)),
      total_(total_bytes),
      quiet_(quiet),
      terminal_(::isatty(STDERR_FILENO) != 0),
      started_(std::chrono::steady_clock::now()) {}

void Progress::update(std::int64_t done_bytes) {
  done_ = done_bytes;
  if (quiet_) return;
  const auto now = std::chrono::steady_clock::now();
  if (terminal_) {
    if (now - drawn_ < std::chrono::milliseconds(100)) return;
    drawn_ = now;
    draw(false);
    return;
  }
  const int decile = total_ > 0 ? static_cast<int>(done_ * 10 / total_) : 10;
  if (decile == last_decile_) return;
  last_decile_ = decile;
  draw(false);
}

void Progress::draw(bool final) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0;
  const double fraction =
      total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  char eta[32] = "";
  if (!final && rate > 0 && done_ < total_)
    std::snprintf(eta, sizeof eta, "  %.0f s left", static_cast<double>(total_ - done_) / rate);
  if (terminal_) {
    constexpr int width = 30;
    const int filled = static_cast<int>(fraction * width);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %s / %s  %s/s%s\033[K", label_.c_str(), bar.c_str(),
                 human_bytes(done_).c_str(), human_bytes(total_).c_str(),
                 human_bytes(static_cast<std::int64_t>(rate)).c_str(), eta);
  } else {
    std::fprintf(stderr, "%s: %3.0f %%  %s / %s  %s/s%s\n", label_.c_str(), fraction * 100,
                 human_bytes(done_).c_str(), human_bytes(total_).c_str(),
                 human_bytes(static_cast<std::int64_t>(rate)).c_str(), eta);
  }
  std::fflush(stderr);
}

void Progress::finish(const std::string& summary) {
  if (quiet_) return;
  if (terminal_) {
    draw(true);
    std::fprintf(stderr, "\n");
  }
  std::fprintf(stderr, "%s: %s\n", label_.c_str(), summary.c_str());
  std::fflush(stderr);
}

}  // namespace mqds::cli
