// The commands of `mqds`. Each returns the process's exit status and throws CliError for a
// failure it reports in words.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "cli_session.hpp"

namespace mqds::cli {

namespace exit_status {
inline constexpr int ok = 0;
inline constexpr int usage = 1;
inline constexpr int failed =
    2;  // the message says what: unknown file, missing fragments, no broker...
}  // namespace exit_status

struct PutOptions {
  std::string path;
  bool wait = true;
  std::chrono::seconds wait_timeout{600};
  bool quiet = false;
};
int put(CliSession& session, const PutOptions& options);

struct GetOptions {
  std::string hash;
  std::string output;
  std::size_t parallel = 8;
  std::chrono::milliseconds request_timeout{10'000};
  bool quiet = false;
};
int get(CliSession& session, const GetOptions& options);

int list_files(CliSession& session, bool json);
int show_status(CliSession& session, bool json);

}  // namespace mqds::cli
