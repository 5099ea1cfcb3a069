#include "connection_options.hpp"

#include <CLI/CLI.hpp>

#include "mqds/limits.hpp"

namespace mqds::runtime {

std::string ConnectionOptions::describe() const {
  return host + ":" + std::to_string(effective_port());
}

void add_connection_options(CLI::App& app, ConnectionOptions& options) {
  app.add_option("-h,--host", options.host, "broker host")->capture_default_str();
  app.add_option("-p,--port", options.port, "broker port (default 1883, 8883 with TLS)")
      ->check(CLI::Range(1, 65535));
  app.add_option("-i,--id", options.client_id, "MQTT client id")
      ->check(CLI::Validator(
          [](std::string& id) -> std::string {
            if (id.empty() || id.size() > limits::client_id_bytes_max)
              return "must have 1 to " + std::to_string(limits::client_id_bytes_max) + " bytes";
            if (id.find_first_of("/+#") != std::string::npos)
              return "must not contain '/', '+' or '#'";
            return {};
          },
          "ID"));
  app.add_option("-u,--username", options.username, "MQTT username");
  app.add_option("-P,--password", options.password,
                 "MQTT password (prefer a config file: -P shows in ps)");
  app.add_option("--cafile", options.cafile, "CA certificates file; turns TLS on")
      ->check(CLI::ExistingFile);
  app.add_option("--capath", options.capath, "CA certificates directory; turns TLS on")
      ->check(CLI::ExistingDirectory);
  app.add_option("--cert", options.cert, "client certificate (PEM), with --key")
      ->check(CLI::ExistingFile);
  app.add_option("--key", options.key, "client private key (PEM), with --cert")
      ->check(CLI::ExistingFile);
  app.add_option(
         "-k,--keepalive", options.keepalive_s,
         "seconds between pings; the broker declares the connection lost after 1.5 times this")
      ->capture_default_str()
      ->check(CLI::Range(5, 65535));
}

std::optional<std::string> check_connection_options(const ConnectionOptions& options) {
  if (options.cert.empty() != options.key.empty()) return "--cert and --key go together";
  if (!options.cert.empty() && !options.tls()) return "--cert needs --cafile or --capath (TLS)";
  if (options.password && !options.username) return "--password needs --username";
  return std::nullopt;
}

}  // namespace mqds::runtime
