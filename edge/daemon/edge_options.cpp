#include "edge_options.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cmath>
#include <iostream>
#include <optional>

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

// A duration in whole seconds, minutes, hours or days ("90s", "30m", "12h", "7d"; a bare number is
// seconds), in ms; nullopt if it is none or exceeds `max_ms`.
std::optional<std::int64_t> duration_ms(const std::string& text, std::int64_t max_ms) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  // 10 digits hold far more than 366 days in seconds (8 digits), and 10 digits of days in ms stay
  // inside 64 bits: neither stoll nor the multiplication below can overflow.
  if (digits == 0 || digits > 10) return std::nullopt;
  const std::string unit = text.substr(digits);
  std::int64_t unit_ms = 0;
  if (unit.empty() || unit == "s")
    unit_ms = 1'000;
  else if (unit == "m")
    unit_ms = 60'000;
  else if (unit == "h")
    unit_ms = 3'600'000;
  else if (unit == "d")
    unit_ms = 86'400'000;
  else
    return std::nullopt;
  const std::int64_t ms = std::stoll(text.substr(0, digits)) * unit_ms;
  if (ms > max_ms) return std::nullopt;
  return ms;
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
  std::string scrub_interval = "7d";
  app.add_option("--scrub-interval", scrub_interval,
                 "re-verify every stored fragment once in this time, in the background: 90s, 30m, "
                 "12h, 7d (a bare number is seconds); 0 turns it off")
      ->capture_default_str();
  // 4 MB/s: SHA-256 in software on a Raspberry Pi 3-class core runs at 20 to 60 MB/s and an SD
  // card reads 20 to 90 MB/s, so the scrub takes at most about a fifth of one core and a small
  // share of the card even when the rate, not the interval, paces it; and 4 MB/s still covers
  // 2.4 TB a week, more than such a board stores, so with the default interval it never binds.
  double scrub_rate_mb_per_s = 4;
  app.add_option("--scrub-rate", scrub_rate_mb_per_s,
                 "the background verification never reads faster than this many MB/s (10^6 "
                 "bytes); one pass takes the interval or longer")
      ->capture_default_str();
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
  const auto interval_ms = duration_ms(scrub_interval, scrub::PacerConfig::interval_ms_max);
  if (!interval_ms)
    return Error{"--scrub-interval",
                 "must be 0 (off) or a whole number of s, m, h or d up to 366d, not '" +
                     scrub_interval + "'"};
  options.scrub.interval_ms = *interval_ms;
  // At least 1 kB/s, so the wait after the largest fragment (64 MiB) stays under a day; at most
  // 10 GB/s, beyond any board's storage.
  if (!(scrub_rate_mb_per_s >= 0.001 && scrub_rate_mb_per_s <= 10'000))
    return Error{"--scrub-rate", "must be 0.001 to 10000 (MB/s)"};
  options.scrub.rate_bytes_per_s = std::llround(scrub_rate_mb_per_s * 1e6);
  if (auto why = scrub::Pacer::invalid(options.scrub)) return Error{"--scrub-interval", *why};
  if (options.connection.client_id.empty()) options.connection.client_id = default_client_id();
  if (options.endpoints.size() + 1 > limits::endpoints_per_client_max)
    return Error{"--endpoint", "at most " + std::to_string(limits::endpoints_per_client_max - 1) +
                                   " besides the fetch endpoint"};
  if (verbose && quiet) return Error{"--verbose", "excludes --quiet"};
  options.log_level = verbose ? LogLevel::debug : quiet ? LogLevel::warning : LogLevel::info;
  return options;
}

}  // namespace mqds::edge
