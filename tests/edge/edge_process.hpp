// mqds-edge run by a test as a child process: its data directory and log live in a directory the
// test gives (the Broker's, so that both are kept together when a test fails and removed together
// when it passes). While it lives, a failing test prints the tail of its log.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mqds::edge_test {

class EdgeProcess {
 public:
  EdgeProcess(std::string id, const std::string& parent_dir);
  ~EdgeProcess();  // SIGKILL if still running; prints the log's tail if the test failed
  EdgeProcess(const EdgeProcess&) = delete;
  EdgeProcess& operator=(const EdgeProcess&) = delete;

  // Starts mqds-edge -p port -i id --data-dir <dir> -v (unless `extra` has -q) plus `extra`,
  // appending to its log.
  [[nodiscard]] ::testing::AssertionResult start(int port,
                                                 const std::vector<std::string>& extra = {});
  // Waits until the log (of this process life, since the last start) has `count` lines containing
  // `text`.
  [[nodiscard]] ::testing::AssertionResult wait_log(std::string_view text,
                                                    std::chrono::milliseconds timeout,
                                                    std::size_t count = 1);
  std::size_t log_count(std::string_view text) const;
  // SIGTERM, then the exit status (code, or 128 + signal); nullopt if it did not exit in time (then
  // killed).
  std::optional<int> terminate(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void kill9();
  // The exit status once it exits by itself, nullopt if it still runs after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  bool running();
  pid_t pid() const { return pid_; }
  // A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), nullopt if it does not run.
  std::optional<long> memory_kib(const std::string& field) const;

  const std::string& id() const { return id_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string log() const;  // since the last start
  std::string log_tail(std::size_t lines = 30) const;

 private:
  std::string id_;
  std::string data_dir_;
  std::string log_path_;
  std::size_t log_start_ = 0;
  pid_t pid_ = -1;
};

// Runs a program to completion (at most `timeout`, then it is killed): its exit status and output.
struct Completed {
  int status = -1;
  std::string output;  // stdout and stderr, as they interleaved
  std::string out;     // stdout alone (only run_mqds keeps them apart)
  std::string err;     // stderr alone
};
Completed run_edge(const std::vector<std::string>& args,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));
Completed run_mqds(const std::vector<std::string>& args,
                   std::chrono::milliseconds timeout = std::chrono::seconds(60));
// Any other program, by its path (/usr/bin/openssl).
Completed run_program(const std::string& program, const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace mqds::edge_test
