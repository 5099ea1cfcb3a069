// Entry points of mqds_tracker.so for Mosquitto 2.0 (plugin API v5). Only these three symbols
// are exported. Every callback catches everything: an exception crossing into the broker's C code
// would take down the broker for every device.
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>

#include <exception>
#include <iterator>
#include <memory>
#include <string_view>
#include <vector>

#include "options.hpp"
#include "tracker_plugin.hpp"

namespace {

using mqds::plugin::TrackerPlugin;

struct Instance {
  mosquitto_plugin_id_t* identifier;
  std::unique_ptr<TrackerPlugin> plugin;
  // Whether on_acl_fallback is at the end of the broker's ACL callbacks (see on_acl_check).
  bool fallback_registered = false;
};

// Runs a callback body; on any exception logs it and returns `on_failure`.
template <class F>
int guarded(const char* where, int on_failure, F&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: %s failed: %s", where, e.what());
  } catch (...) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: %s failed", where);
  }
  return on_failure;
}

int on_message(int, void* event_data, void* userdata) {
  // A message the tracker could not judge is not delivered: it might be one no client may send.
  return guarded("MESSAGE", MOSQ_ERR_ACL_DENIED, [&] {
    return static_cast<Instance*>(userdata)->plugin->on_message(
        *static_cast<mosquitto_evt_message*>(event_data));
  });
}

int on_acl_fallback(int, void* event_data, void* userdata) {
  return guarded("ACL_CHECK", MOSQ_ERR_PLUGIN_DEFER, [&] {
    return static_cast<Instance*>(userdata)->plugin->on_acl_fallback(
        *static_cast<mosquitto_evt_acl_check*>(event_data));
  });
}

int on_acl_check(int, void* event_data, void* userdata) {
  auto* instance = static_cast<Instance*>(userdata);
  // Mosquitto 2.0.11 asks the ACL callbacks in the order they were registered, stops at the first
  // that does not defer, and denies when all defer (src/security.c, mosquitto_acl_check). This one
  // is registered at init, before the broker's acl_file check (registered after every plugin's
  // init) and before plugins loaded later: it refuses what no client may publish and defers the
  // rest. The fallback must come after all of them, so it is appended here, at the first check,
  // once every callback is in place (appending to the list the broker is walking is safe: it only
  // changes the last element's next). A reload re-registers the acl_file check: see on_reload.
  if (!instance->fallback_registered) {
    const int rc = mosquitto_callback_register(instance->identifier, MOSQ_EVT_ACL_CHECK,
                                               on_acl_fallback, nullptr, instance);
    instance->fallback_registered = rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_ALREADY_EXISTS;
    if (!instance->fallback_registered)
      mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: registering the ACL fallback failed: %s",
                           mosquitto_strerror(rc));
  }
  auto* event = static_cast<mosquitto_evt_acl_check*>(event_data);
  // A write the plugin could not judge is refused (it might be one no client may send), and so is
  // a read of a fetch or query answer (only its requester may read it); anything else is left to
  // the broker's ACLs.
  const bool answer_topic =
      event->topic && (std::string_view(event->topic).starts_with("mqds/fetch/response/") ||
                       std::string_view(event->topic).starts_with("mqds/query/"));
  const int on_failure =
      event->access == MOSQ_ACL_WRITE || answer_topic ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_PLUGIN_DEFER;
  return guarded("ACL_CHECK", on_failure, [&] { return instance->plugin->on_acl_check(*event); });
}

int on_reload(int, void*, void* userdata) {
  // The broker unregisters its acl_file check before a reload and registers it again after this
  // event: the fallback leaves the list now and is appended again, after it, at the next check.
  auto* instance = static_cast<Instance*>(userdata);
  mosquitto_callback_unregister(instance->identifier, MOSQ_EVT_ACL_CHECK, on_acl_fallback, nullptr);
  instance->fallback_registered = false;
  return MOSQ_ERR_PLUGIN_DEFER;  // anything else would stop the reload of the other plugins
}

int on_tick(int, void*, void* userdata) {
  return guarded("TICK", MOSQ_ERR_SUCCESS, [&] {
    static_cast<Instance*>(userdata)->plugin->on_tick();
    return MOSQ_ERR_SUCCESS;
  });
}

int on_basic_auth(int, void* event_data, void* userdata) {
  // A client that could not be judged is refused: it might be taking over a torrent server's id.
  return guarded("BASIC_AUTH", MOSQ_ERR_AUTH, [&] {
    auto* event = static_cast<mosquitto_evt_basic_auth*>(event_data);
    return static_cast<Instance*>(userdata)->plugin->on_basic_auth(
        mosquitto_client_id(event->client), event->username);
  });
}

int on_disconnect(int, void* event_data, void* userdata) {
  return guarded("DISCONNECT", MOSQ_ERR_SUCCESS, [&] {
    auto* event = static_cast<mosquitto_evt_disconnect*>(event_data);
    static_cast<Instance*>(userdata)->plugin->on_disconnect(mosquitto_client_id(event->client));
    return MOSQ_ERR_SUCCESS;
  });
}

struct Registration {
  int event;
  MOSQ_FUNC_generic_callback callback;
};
constexpr Registration registrations[] = {
    {MOSQ_EVT_MESSAGE, on_message},       {MOSQ_EVT_TICK, on_tick},
    {MOSQ_EVT_DISCONNECT, on_disconnect}, {MOSQ_EVT_ACL_CHECK, on_acl_check},
    {MOSQ_EVT_RELOAD, on_reload},
};

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int mosquitto_plugin_version(int count,
                                                                    const int* versions) {
  for (int i = 0; i < count; ++i)
    if (versions[i] == 5) return 5;
  return -1;
}

__attribute__((visibility("default"))) int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier,
                                                                 void** userdata,
                                                                 struct mosquitto_opt* options,
                                                                 int option_count) {
  try {
    mqds::plugin::RawOptions raw;
    for (int i = 0; i < option_count; ++i)
      raw.emplace_back(options[i].key ? options[i].key : "",
                       options[i].value ? options[i].value : "");
    auto parsed = mqds::plugin::parse_options(raw);
    if (!parsed) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: %s", parsed.error().to_string().c_str());
      return MOSQ_ERR_INVAL;
    }
    auto instance = std::make_unique<Instance>();
    instance->identifier = identifier;
    instance->plugin = std::make_unique<TrackerPlugin>(std::move(parsed).value());
    std::vector<Registration> wanted(std::begin(registrations), std::end(registrations));
    // BASIC_AUTH only when it can refuse someone: once a plugin takes part in the password check,
    // mosquitto 2.0.11 refuses a username that no check accepted (src/security.c), which a broker
    // that checks no passwords would otherwise let in.
    if (instance->plugin->binds_edge_ids()) wanted.push_back({MOSQ_EVT_BASIC_AUTH, on_basic_auth});
    for (const auto& r : wanted) {
      const int rc =
          mosquitto_callback_register(identifier, r.event, r.callback, nullptr, instance.get());
      if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: registering a callback failed: %s",
                             mosquitto_strerror(rc));
        for (const auto& done : wanted)
          mosquitto_callback_unregister(identifier, done.event, done.callback, nullptr);
        return rc;
      }
    }
    *userdata = instance.release();
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqds: tracker plugin ready");
    return MOSQ_ERR_SUCCESS;
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: cannot start the tracker: %s", e.what());
  } catch (...) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: cannot start the tracker");
  }
  return MOSQ_ERR_UNKNOWN;
}

__attribute__((visibility("default"))) int mosquitto_plugin_cleanup(void* userdata,
                                                                    struct mosquitto_opt*, int) {
  std::unique_ptr<Instance> instance(static_cast<Instance*>(userdata));
  if (!instance) return MOSQ_ERR_SUCCESS;
  for (const auto& r : registrations)
    mosquitto_callback_unregister(instance->identifier, r.event, r.callback, nullptr);
  mosquitto_callback_unregister(instance->identifier, MOSQ_EVT_ACL_CHECK, on_acl_fallback, nullptr);
  if (instance->plugin && instance->plugin->binds_edge_ids())
    mosquitto_callback_unregister(instance->identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth,
                                  nullptr);
  return guarded("cleanup", MOSQ_ERR_SUCCESS, [&] {
    instance.reset();  // closes the store; what was committed stays
    return MOSQ_ERR_SUCCESS;
  });
}

}  // extern "C"
