// mqds-edge: the torrent-server daemon of a board. See edge_daemon.hpp for how it works and the
// README for how to run it.
#include <csignal>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <variant>

#include "edge_daemon.hpp"
#include "edge_options.hpp"
#include "runtime/allocator.hpp"
#include "runtime/log.hpp"

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void request_stop(int) {
  stop_requested = 1;
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a wait in poll() ends at once
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a broken connection is an error return, not a death
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mqds;
  // Up to 16 MiB (two batches) while receiving; EdgeDaemon gives it back with malloc_trim once a
  // burst is over.
  runtime::keep_freed_memory(16 << 20, 16 << 20);
  auto parsed = edge::parse_edge_options(argc, argv);
  if (!parsed) {
    std::cerr << "mqds-edge: " << parsed.error().to_string() << "\n";
    return edge::exit_status::usage;
  }
  if (parsed->help_shown) return edge::exit_status::stopped;
  auto& options = *parsed;
  runtime::Log log("mqds-edge", options.log_level);
  install_signal_handlers();
  std::unique_ptr<edge::EdgeDaemon> daemon;
  try {
    daemon = std::make_unique<edge::EdgeDaemon>(options, log);
  } catch (const std::exception& e) {
    log(LogLevel::error, "cannot open the store in " + options.data_dir + ": " + e.what());
    return edge::exit_status::storage;
  }
  try {
    return daemon->run(stop_requested);
  } catch (const std::exception& e) {
    // A store that fails to read (corruption LMDB detects) or an unexpected failure: the process
    // stops, and its supervisor restarts it, which verifies the store again.
    log(LogLevel::error, std::string("stopping: ") + e.what());
    return edge::exit_status::storage;
  }
}
