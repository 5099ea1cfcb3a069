// Entry points of mqds_tracker.so for Mosquitto 2.0 (plugin API v5). Only these three symbols
// are exported. Every callback catches everything: an exception crossing into the broker's C code
// would take down the broker for every device.
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>

#include <exception>
#include <memory>

#include "options.hpp"
#include "tracker_plugin.hpp"

namespace {

using mqds::plugin::TrackerPlugin;

struct Instance {
  mosquitto_plugin_id_t* identifier;
  std::unique_ptr<TrackerPlugin> plugin;
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

int on_tick(int, void*, void* userdata) {
  return guarded("TICK", MOSQ_ERR_SUCCESS, [&] {
    static_cast<Instance*>(userdata)->plugin->on_tick();
    return MOSQ_ERR_SUCCESS;
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
    {MOSQ_EVT_MESSAGE, on_message},
    {MOSQ_EVT_TICK, on_tick},
    {MOSQ_EVT_DISCONNECT, on_disconnect},
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
    for (const auto& r : registrations) {
      const int rc =
          mosquitto_callback_register(identifier, r.event, r.callback, nullptr, instance.get());
      if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: registering a callback failed: %s",
                             mosquitto_strerror(rc));
        for (const auto& done : registrations)
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
  return guarded("cleanup", MOSQ_ERR_SUCCESS, [&] {
    instance.reset();  // closes the store; what was committed stays
    return MOSQ_ERR_SUCCESS;
  });
}

}  // extern "C"
