#include "options.hpp"

#include <charconv>
#include <functional>
#include <algorithm>
#include <map>

#include "mqds/hash.hpp"
#include "mqds/limits.hpp"

namespace mqds::plugin {

namespace {

std::int64_t integer(const std::string& key, const std::string& value, std::int64_t min,
                     std::int64_t max) {
  std::int64_t result = 0;
  const auto* end = value.data() + value.size();
  const auto [at, ec] = std::from_chars(value.data(), end, result);
  if (ec != std::errc() || at != end || result < min || result > max)
    throw Error{"plugin_opt_" + key, "must be an integer from " + std::to_string(min) + " to " +
                                         std::to_string(max) + ", not '" + value + "'"};
  return result;
}

// Comma-separated MQTT usernames, spaces around them ignored; "*" stands for every client,
// anonymous ones included. Used by every option that names who may do something.
void users(const std::string& value, std::vector<std::string>& names, bool& anyone) {
  std::size_t start = 0;
  while (start <= value.size()) {
    const auto end = std::min(value.find(',', start), value.size());
    std::string user = value.substr(start, end - start);
    user.erase(0, user.find_first_not_of(' '));
    user.erase(user.find_last_not_of(' ') + 1);
    if (user == "*")
      anyone = true;
    else if (!user.empty())
      names.push_back(user);
    start = end + 1;
  }
}

}  // namespace

Result<Options> parse_options(const RawOptions& raw) {
  Options o;
  constexpr std::int64_t hour_ms = 3'600'000;
  constexpr std::int64_t repair_delay_ms_max = 7 * 24 * hour_ms;
  auto ms = [](std::int64_t& field) {
    return
        [&field](const std::string& k, const std::string& v) { field = integer(k, v, 1, hour_ms); };
  };
  auto count = [](std::size_t& field, std::int64_t max) {
    return [&field, max](const std::string& k, const std::string& v) {
      field = static_cast<std::size_t>(integer(k, v, 1, max));
    };
  };
  const std::map<std::string, std::function<void(const std::string&, const std::string&)>> handlers{
      {"data_dir",
       [&](const std::string& k, const std::string& v) {
         if (v.empty()) throw Error{"plugin_opt_" + k, "must name a directory"};
         o.data_dir = v;
       }},
      {"map_size",
       [&](const std::string& k, const std::string& v) {
         o.map_size_bytes = static_cast<std::size_t>(integer(k, v, 1 << 20, std::int64_t{1} << 44));
       }},
      {"fragment_size",
       [&](const std::string& k, const std::string& v) {
         o.tracker.fragment_size_bytes = integer(k, v, 1, limits::fragment_size_bytes_max);
       }},
      {"replicas", count(o.tracker.replicas, 16)},
      {"hash_algorithm",
       [&](const std::string& k, const std::string& v) {
         if (!is_sha256_name(v))
           throw Error{"plugin_opt_" + k, "only SHA256 is supported, not '" + v + "'"};
       }},
      {"join_timeout_ms", ms(o.tracker.join_timeout_ms)},
      {"request_timeout_ms", ms(o.tracker.request_timeout_ms)},
      {"delivery_timeout_ms", ms(o.tracker.delivery_timeout_ms)},
      {"retry_delay_ms", ms(o.tracker.retry_delay_ms)},
      {"revision_beacon_ms", ms(o.tracker.revision_beacon_ms)},
      {"startup_settle_ms",
       [&](const std::string& k, const std::string& v) {
         o.tracker.startup_settle_ms = integer(k, v, 0, hour_ms);
       }},
      {"metrics_interval_ms", ms(o.metrics_interval_ms)},
      // 0 repairs as soon as a holder leaves; at most a week.
      {"repair_delay_ms",
       [&](const std::string& k, const std::string& v) {
         o.tracker.repair_delay_ms = integer(k, v, 0, repair_delay_ms_max);
       }},
      {"repairs_in_flight", count(o.tracker.repairs_in_flight_max, 1'024)},
      // 0: no bound but repairs_in_flight; at most 10 GB/s, more than a broker moves.
      {"repair_bytes_per_s",
       [&](const std::string& k, const std::string& v) {
         o.tracker.repair_bytes_per_s = integer(k, v, 0, 10'000'000'000);
       }},
      {"rebalance",
       [&](const std::string& k, const std::string& v) {
         if (v == "true")
           o.tracker.rebalance = true;
         else if (v == "false")
           o.tracker.rebalance = false;
         else
           throw Error{"plugin_opt_" + k, "must be true or false, not '" + v + "'"};
       }},
      {"edge_users",
       [&](const std::string&, const std::string& v) { users(v, o.edges.users, o.edges.anyone); }},
      {"edge_ids",
       [&](const std::string& k, const std::string& v) {
         if (v == "username")
           o.edges.ids = EdgeIds::username;
         else if (v == "any")
           o.edges.ids = EdgeIds::any;
         else
           throw Error{"plugin_opt_" + k, "must be username or any, not '" + v + "'"};
       }},
      {"ingest_users", [&](const std::string&,
                           const std::string& v) { users(v, o.ingest.users, o.ingest.anyone); }},
      {"ingest_chunk_size",
       [&](const std::string& k, const std::string& v) {
         o.ingest.chunk_bytes_max =
             static_cast<std::size_t>(integer(k, v, 1024, ingest::chunk_bytes_limit));
       }},
      {"ingest_window",
       [&](const std::string& k, const std::string& v) {
         o.ingest.window_bytes =
             static_cast<std::size_t>(integer(k, v, 1024, ingest::window_bytes_limit));
       }},
      {"ingest_uploads", count(o.ingest.uploads_max, 1'024)},
      {"ingest_uploads_per_client", count(o.ingest.uploads_per_client_max, 1'024)},
      {"ingest_file_size_max",
       [&](const std::string& k, const std::string& v) {
         o.ingest.file_size_bytes_max = integer(k, v, 1, limits::file_size_bytes_max);
       }},
      {"ingest_idle_timeout_ms", ms(o.ingest.idle_timeout_ms)},
      // At least a minute, so a put that reconnects can resume; at most 30 days.
      {"ingest_resume_window_ms",
       [&](const std::string& k, const std::string& v) {
         o.ingest.resume_window_ms = integer(k, v, 60'000, 30 * 24 * hour_ms);
       }},
      {"fetch_users",
       [&](const std::string&, const std::string& v) { users(v, o.fetch.users, o.fetch.anyone); }},
      // At least one chunk, or no request could pass; at most 1 GiB owed to one client.
      {"fetch_bytes_per_client",
       [&](const std::string& k, const std::string& v) {
         o.fetch.bytes_per_client =
             static_cast<std::size_t>(integer(k, v, fetch::chunk_bytes_max, std::int64_t{1} << 30));
       }},
      {"acl_fallback",
       [&](const std::string& k, const std::string& v) {
         if (v == "defer")
           o.acl_fallback = AclFallback::defer;
         else if (v == "allow")
           o.acl_fallback = AclFallback::allow;
         else
           throw Error{"plugin_opt_" + k, "must be defer or allow, not '" + v + "'"};
       }},
      {"joins_in_flight", count(o.tracker.joins_in_flight_max, 10'000)},
      {"distributions_in_flight", count(o.tracker.distributions_in_flight_max, 4'096)},
      {"max_clients", count(o.tracker.registered_clients_max, 1'000'000)},
      // From 64 KiB, which a board of a few hundred files fits, to the bound on any event.
      {"join_request_max",
       [&](const std::string& k, const std::string& v) {
         o.tracker.join_request_bytes_max = static_cast<std::size_t>(
             integer(k, v, 64 * 1024, static_cast<std::int64_t>(limits::event_payload_bytes_max)));
       }},
  };
  try {
    for (const auto& [key, value] : raw) {
      auto handler = handlers.find(key);
      if (handler == handlers.end()) throw Error{"plugin_opt_" + key, "unknown option"};
      handler->second(key, value);
    }
    if (o.data_dir.empty())
      throw Error{"plugin_opt_data_dir", "required (the directory of the tracker's LMDB store)"};
    if (o.ingest.window_bytes < o.ingest.chunk_bytes_max)
      throw Error{"plugin_opt_ingest_window", "must be at least plugin_opt_ingest_chunk_size"};
  } catch (Error& failure) {
    return std::move(failure);
  }
  return o;
}

}  // namespace mqds::plugin
