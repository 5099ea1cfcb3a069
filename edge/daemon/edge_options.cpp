#include "edge_options.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>

#include <iostream>

#include "mqds/fetch.hpp"
#include "mqds/limits.hpp"

namespace mqds::edge {

namespace {

// A stable default: an edge's identity keys what the tracker believes it stores.
std::string default_client_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "mqds-edge";
  std::string id = std::string("mqds-edge-") + host;
  for (char& c : id)
    if (c == '/' || c == '+' || c == '#') c = '-';
  return id;
}

}  // namespace

Result<EdgeOptions> parse_edge_options(int argc, const char* const* argv) {
  EdgeOptions options;
  CLI::App app{
      "mqds-edge: an mqds torrent server. Joins the service run by the tracker inside the MQTT "
      "broker, stores the "
      "fragments the tracker places on it, and serves them back.",
      "mqds-edge"};
  app.set_help_flag("--help", "print this help and exit");
  app.set_config("-c,--config", "",
                 "config file: the long option names as keys, `key = value` per line");
  app.allow_config_extras(false);
  runtime::add_connection_options(app, options.connection);
  app.add_option("--data-dir", options.data_dir, "directory of the LMDB store (created if missing)")
      ->required();
  std::uint64_t capacity = 0;
  auto* capacity_option =
      app.add_option("--capacity", capacity,
                     "bytes this server may store: 500M, 20G, 1T (binary units); default no limit")
          ->transform(CLI::AsSizeValue(false));
  app.add_option("--endpoint", options.endpoints,
                 "a URI announced to the service besides mqtt:mqds/fetch/request/<id> (repeatable)")
      ->check(CLI::Validator(
          [](std::string& uri) -> std::string {
            if (uri.empty() || uri.size() > limits::endpoint_bytes_max)
              return "must have 1 to " + std::to_string(limits::endpoint_bytes_max) + " bytes";
            if (uri.find(':') == std::string::npos) return "must be a URI (scheme:...)";
            return {};
          },
          "URI"));
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "log every fragment and event decision");
  app.add_flag("-q,--quiet", quiet, "log warnings and errors only");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    app.exit(e);
    options.help_shown = true;
    return options;
  } catch (const CLI::ParseError& e) {
    return Error{"", std::string(e.what()) + "; run with --help for more information"};
  }
  if (auto problem = runtime::check_connection_options(options.connection))
    return Error{"", std::move(*problem)};
  if (capacity_option->count() > 0) {
    if (capacity == 0 || capacity > static_cast<std::uint64_t>(INT64_MAX))
      return Error{"--capacity", "must be at least 1 byte"};
    options.capacity_bytes = static_cast<std::int64_t>(capacity);
  }
  if (options.connection.client_id.empty()) options.connection.client_id = default_client_id();
  if (options.endpoints.size() + 1 > limits::endpoints_per_client_max)
    return Error{"--endpoint", "at most " + std::to_string(limits::endpoints_per_client_max - 1) +
                                   " besides the fetch endpoint"};
  if (verbose && quiet) return Error{"--verbose", "excludes --quiet"};
  options.log_level = verbose ? LogLevel::debug : quiet ? LogLevel::warning : LogLevel::info;
  return options;
}

}  // namespace mqds::edge
