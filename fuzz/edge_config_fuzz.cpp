// mqds-edge's config file (`mqds-edge -c FILE`), read by parse_edge_options through CLI11. The
// file is the operator's, not the network's, but it is the one parser of mqds-edge that reads a
// whole file of text, and a board that crashes on a typo does not come back by itself.
//
// The input is the file's content, written to a temporary file for each run (CLI11 reads config
// from a path).
//
// Contract: parse_edge_options returns options or an Error and never throws; accepted options
// keep the bounds the daemon relies on (a client id, at most 15 extra endpoints of 1 to 1,024
// bytes that look like URIs, a positive capacity, connection flags that go together).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "edge_options.hpp"
#include "fuzz_check.hpp"
#include "mqds/limits.hpp"

using namespace mqds;

namespace {

const std::string& config_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/mqds-edge-config-fuzz." +
           std::to_string(::getpid()) + ".conf";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = config_path();
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) fuzz::contract_broken("cannot write the config file", path);
  if (size > 0 && std::fwrite(data, 1, size, file) != size)
    fuzz::contract_broken("cannot write the config file", path);
  std::fclose(file);

  const char* argv[] = {"mqds-edge", "-c", path.c_str()};
  fuzz::no_throw("parse_edge_options never throws", [&] {
    auto options = edge::parse_edge_options(3, argv);
    if (!options || options->help_shown) return;
    fuzz::check(!options->connection.client_id.empty(), "a client id is always set");
    fuzz::check(options->endpoints.size() < limits::endpoints_per_client_max,
                "at most 15 endpoints besides the fetch endpoint");
    for (const auto& endpoint : options->endpoints)
      fuzz::check(!endpoint.empty() && endpoint.size() <= limits::endpoint_bytes_max &&
                      endpoint.find(':') != std::string::npos,
                  "an endpoint is a URI of 1 to 1,024 bytes", endpoint);
    fuzz::check(!options->capacity_bytes || *options->capacity_bytes > 0, "a capacity is positive");
    fuzz::check(!runtime::check_connection_options(options->connection).has_value(),
                "accepted connection flags go together");
  });
  return 0;
}
