// The broker connection of mqds-edge and mqds, with the flags of mosquitto_sub: -h host, -p port,
// -i client id, -u/-P username and password, --cafile/--capath/--cert/--key for TLS, -k keepalive.
// A config file (-c) takes the same names without dashes: `host = broker.lan`.
#pragma once

#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace mqds::runtime {

struct ConnectionOptions {
  std::string host = "localhost";
  int port = 0;  // 0: 1883, or 8883 with TLS
  std::string client_id;
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::string cafile;
  std::string capath;
  std::string cert;
  std::string key;
  int keepalive_s = 30;

  bool tls() const { return !cafile.empty() || !capath.empty(); }
  int effective_port() const { return port != 0 ? port : (tls() ? 8883 : 1883); }
  // "host:port", for logs.
  std::string describe() const;
};

// Registers the flags on `app`, writing into `options` (which must outlive the parse).
void add_connection_options(CLI::App& app, ConnectionOptions& options);
// What is wrong with a combination the flags alone cannot check ("--cert needs --key"), if
// anything.
std::optional<std::string> check_connection_options(const ConnectionOptions& options);

}  // namespace mqds::runtime
