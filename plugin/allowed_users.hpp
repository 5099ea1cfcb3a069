// Who may do something the plugin guards (upload, fetch): MQTT usernames from an option such as
// plugin_opt_ingest_users, or "*" for every client, anonymous ones included. One check, so every
// guarded action reads its option the same way.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace mqds::plugin {

struct AllowedUsers {
  std::vector<std::string> users;  // MQTT usernames
  bool anyone = false;             // "*"

  bool enabled() const { return anyone || !users.empty(); }
  // `username` is nullptr for a client that gave none: only "*" lets it in.
  bool allows(const char* username) const {
    if (anyone) return true;
    return username && std::find(users.begin(), users.end(), username) != users.end();
  }
};

}  // namespace mqds::plugin
