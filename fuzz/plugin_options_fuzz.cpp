// The tracker plugin's options (the plugin_opt_<key> <value> lines of mosquitto.conf), read by
// parse_options when the broker loads the plugin. A bad line must stop the broker with a message,
// never take it down with a crash.
//
// The input is text as mosquitto.conf has it: one option per line, `plugin_opt_<key> <value>`
// (the prefix may be left out), the key up to the first space; the broker hands the plugin the key
// without its prefix and the value as written. The seeds are the options of config/mosquitto.conf.
//
// Contract: parse_options returns options or an Error naming a plugin_opt_ key, never throws; what
// it accepts keeps the bounds the tracker relies on.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "options.hpp"

using namespace mqds;

namespace {

void check_users(const plugin::AllowedUsers& allowed) {
  for (const auto& user : allowed.users)
    fuzz::check(!user.empty() && user != "*" && user.find(',') == std::string::npos &&
                    user.front() != ' ' && user.back() != ' ',
                "a user name is one trimmed, non-empty name", user);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  plugin::RawOptions raw;
  for (std::size_t start = 0; start < text.size();) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line.front() == '#') continue;
    if (line.substr(0, 11) == "plugin_opt_") line.remove_prefix(11);
    const std::size_t space = std::min(line.find(' '), line.size());
    const std::string_view value = space < line.size() ? line.substr(space + 1) : "";
    raw.emplace_back(std::string(line.substr(0, space)), std::string(value));
  }
  fuzz::no_throw("parse_options never throws", [&] {
    auto options = plugin::parse_options(raw);
    if (!options) {
      fuzz::check(options.error().field.rfind("plugin_opt_", 0) == 0,
                  "an error names a plugin_opt_ key", options.error().to_string());
      return;
    }
    const auto& o = *options;
    fuzz::check(!o.data_dir.empty(), "data_dir is required");
    fuzz::check(o.tracker.replicas >= 1 && o.tracker.replicas <= 16, "replicas is 1 to 16");
    fuzz::check(o.tracker.fragment_size_bytes >= 1 &&
                    o.tracker.fragment_size_bytes <= limits::fragment_size_bytes_max,
                "fragment_size is within the wire's bounds");
    fuzz::check(o.ingest.chunk_bytes_max >= 1 &&
                    o.ingest.chunk_bytes_max <= static_cast<std::size_t>(ingest::chunk_bytes_limit),
                "ingest_chunk_size is within a status's bounds");
    fuzz::check(o.ingest.window_bytes >= o.ingest.chunk_bytes_max &&
                    o.ingest.window_bytes <= static_cast<std::size_t>(ingest::window_bytes_limit),
                "ingest_window is at least a chunk and within a status's bounds");
    fuzz::check(o.tracker.repair_delay_ms >= 0 && o.tracker.repairs_in_flight_max >= 1,
                "the tracker's repair bounds hold (it throws otherwise)");
    check_users(o.ingest);
    check_users(o.fetch);
    check_users(o.edges);
  });
  return 0;
}
