#include "edge_gate.hpp"

#include <algorithm>

namespace mqds::plugin {

namespace {

std::string quoted(std::string_view text) {
  return "'" + shortened(text, EdgeGate::logged_text_bytes_max) + "'";
}

}  // namespace

std::optional<std::string> EdgeGate::refusal(std::string_view client_id,
                                             const char* username) const {
  if (!options_.enabled())
    return "nobody may be a torrent server on this broker until its operator names them in "
           "plugin_opt_edge_users";
  if (!options_.allows(username))
    return username ? "user " + quoted(username) +
                          " may not be a torrent server: it is not in plugin_opt_edge_users"
                    : std::string(
                          "a client without a username may not be a torrent server: "
                          "connect as one of the users in plugin_opt_edge_users");
  if (options_.ids == EdgeIds::username && (!username || client_id != username))
    return username ? "a torrent server's client id must be its username (" + quoted(username) +
                          "), not " + quoted(client_id) + " (plugin_opt_edge_ids username)"
                    : std::string(
                          "a torrent server's client id must be its username, and this "
                          "client gave none (plugin_opt_edge_ids username)");
  return std::nullopt;
}

bool EdgeGate::first_refusal(std::string_view client_id) {
  if (refused_.count(client_id) || refused_.size() >= refused_clients_max) return false;
  refused_.emplace(client_id);
  return true;
}

std::optional<LogLine> EdgeGate::refused(std::int64_t now_ms, std::string_view client_id,
                                         const char* username, std::string_view topic,
                                         const std::string& why) {
  return refusal_log_.pass(now_ms, [&] {
    return "refused " + shortened(topic, logged_text_bytes_max) + " from client " +
           quoted(client_id) + " (user " + (username ? quoted(username) : std::string("none")) +
           "): " + why;
  });
}

EdgeGate::Connect EdgeGate::judge_connect(std::int64_t now_ms, std::string_view client_id,
                                          const char* username, bool known_server) {
  if (!binds_ids()) return {};
  if (username && client_id == username) return {};
  const auto& named = options_.users;
  const bool named_server = std::find(named.begin(), named.end(), client_id) != named.end();
  if (!named_server && !known_server) return {};
  ++metrics_.connects_refused;
  return Connect{true, connect_log_.pass(now_ms, [&] {
                   return "refused the connection of client " + quoted(client_id) + " (user " +
                          (username ? quoted(username) : std::string("none")) +
                          "): that is a torrent server's client id, which only user " +
                          quoted(client_id) +
                          " may use (plugin_opt_edge_ids username); it would have closed the "
                          "torrent server's connection";
                 })};
}

}  // namespace mqds::plugin
