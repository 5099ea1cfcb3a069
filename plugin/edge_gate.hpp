// Who may be a torrent server, and whose client id is whose.
//
// The specification lets any client that can publish on clients/join/requested join the service,
// and the tracker then believes what it says it stores: a client that answers Requested and
// Obtained for everything while storing nothing takes the place of real copies, and the data is
// lost. So only the MQTT users in plugin_opt_edge_users may publish a torrent server's events; a
// join from anybody else is denied at once, with the reason, and the rest of its events are
// dropped.
//
// Mosquitto does not tie client ids to users: a client that connects with a board's id closes the
// board's connection, and can keep it out. With plugin_opt_edge_ids username (the default) a
// torrent server's client id must be its username (with certificates, the identity the broker took
// from the certificate: use_identity_as_username), and the plugin refuses at CONNECT a client that
// asks for a torrent server's id without being that user. A torrent server's id is one named in
// edge_users, or one the tracker has known as a torrent server.
//
// Mosquitto 2.0.11 asks plugins at CONNECT (MOSQ_EVT_BASIC_AUTH) only on a listener that checks
// usernames; on one that takes identities from certificates it asks nobody (src/handle_connect.c):
// there, use_username_as_clientid true makes the broker itself give every client its identity as
// its id. docs/mosquitto-plugin.md has the details.
//
// The gate makes no broker calls and reads no clock; its log lines are rate-limited.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "allowed_users.hpp"
#include "log_text.hpp"
#include "mqds/output.hpp"

namespace mqds::plugin {

enum class EdgeIds : std::uint8_t {
  username,  // a torrent server's client id is its username, and only that user may use it
  any,       // any id (boards that share one account, or anonymous ones): ids are not protected
};

// plugin_opt_edge_users and plugin_opt_edge_ids.
struct EdgeOptions : AllowedUsers {
  EdgeIds ids = EdgeIds::username;
};

struct EdgeMetrics {
  std::uint64_t connects_refused = 0;  // asked for a torrent server's id that is not theirs
};

class EdgeGate {
 public:
  static constexpr std::int64_t log_interval_ms = LogLimiter::default_interval_ms;
  static constexpr std::size_t logged_text_bytes_max = 160;

  explicit EdgeGate(EdgeOptions options) : options_(std::move(options)) {}

  // Why client `client_id`, authenticated as `username` (nullptr: none), may not publish a torrent
  // server's events; nullopt if it may. The text is sent to the client in its ClientJoinDenied.
  std::optional<std::string> refusal(std::string_view client_id, const char* username) const;
  // The same as a rate-limited line for the broker's log.
  std::optional<LogLine> refused(std::int64_t now_ms, std::string_view client_id,
                                 const char* username, std::string_view topic,
                                 const std::string& why);

  // Whether this is the first refusal of `client_id` since it connected (and so to be answered).
  // Remembers at most refused_clients_max clients; beyond that, nobody new is answered.
  bool first_refusal(std::string_view client_id);
  // The client disconnected: a new connection is answered again.
  void forget(std::string_view client_id) {
    if (const auto it = refused_.find(client_id); it != refused_.end()) refused_.erase(it);
  }
  static constexpr std::size_t refused_clients_max = 65'536;

  // Whether a connecting client must be refused because `client_id` is a torrent server's and it
  // is not that user. `known_server`: the tracker knows the id as a torrent server's. A log line
  // (rate-limited) comes with a refusal.
  struct Connect {
    bool refuse = false;
    std::optional<LogLine> log;
  };
  Connect judge_connect(std::int64_t now_ms, std::string_view client_id, const char* username,
                        bool known_server);
  // Whether judge_connect can refuse anything: the broker is asked to call it only then.
  bool binds_ids() const { return options_.ids == EdgeIds::username && options_.enabled(); }

  const EdgeOptions& options() const { return options_; }
  const EdgeMetrics& metrics() const { return metrics_; }

 private:
  EdgeOptions options_;
  EdgeMetrics metrics_;
  std::set<std::string, std::less<>> refused_;  // answered once since they connected
  LogLimiter refusal_log_, connect_log_;
};

}  // namespace mqds::plugin
