#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "options.hpp"

namespace mqds::plugin {
namespace {

Options parsed(const RawOptions& raw) {
  auto result = parse_options(raw);
  EXPECT_TRUE(result.ok()) << result.error().to_string();
  return result ? *result : Options{};
}

std::string error_of(const RawOptions& raw) {
  auto result = parse_options(raw);
  EXPECT_FALSE(result.ok());
  return result ? "" : result.error().to_string();
}

TEST(PluginOptions, DefaultsNeedOnlyTheDataDir) {
  const auto o = parsed({{"data_dir", "/var/lib/mosquitto/mqds"}});
  EXPECT_EQ(o.data_dir, "/var/lib/mosquitto/mqds");
  EXPECT_EQ(o.tracker.fragment_size_bytes, 1024 * 1024);
  EXPECT_EQ(o.tracker.replicas, 3u);
  EXPECT_EQ(o.tracker.join_request_bytes_max, 32u * 1024 * 1024);
  EXPECT_FALSE(o.ingest.anyone);
  EXPECT_TRUE(o.ingest.users.empty());
  EXPECT_FALSE(o.fetch.anyone);
  EXPECT_TRUE(o.fetch.users.empty());
  EXPECT_FALSE(o.fetch.enabled()) << "fetching is off until users are named";
  EXPECT_EQ(o.fetch.bytes_per_client, 16u * 1024 * 1024);
  EXPECT_EQ(o.tracker.repair_delay_ms, 600'000) << "a board may reboot for ten minutes";
  EXPECT_EQ(o.tracker.repairs_in_flight_max, 8u);
  EXPECT_EQ(o.tracker.repair_bytes_per_s, 0) << "no byte rate";
  EXPECT_TRUE(o.tracker.rebalance);
}

TEST(PluginOptions, EveryOptionIsRead) {
  const auto o = parsed({{"data_dir", "d"},
                         {"fragment_size", "4096"},
                         {"replicas", "2"},
                         {"hash_algorithm", "sha256"},
                         {"join_timeout_ms", "800"},
                         {"request_timeout_ms", "500"},
                         {"delivery_timeout_ms", "900"},
                         {"retry_delay_ms", "700"},
                         {"revision_beacon_ms", "600"},
                         {"startup_settle_ms", "0"},
                         {"joins_in_flight", "5"},
                         {"distributions_in_flight", "7"},
                         {"max_clients", "9"},
                         {"join_request_max", "1048576"},
                         {"map_size", "1048576"},
                         {"metrics_interval_ms", "1000"},
                         {"ingest_users", " alice, bob ,*"},
                         {"ingest_chunk_size", "2048"},
                         {"ingest_window", "4096"},
                         {"ingest_uploads", "3"},
                         {"ingest_uploads_per_client", "1"},
                         {"ingest_file_size_max", "100"},
                         {"ingest_idle_timeout_ms", "1000"},
                         {"ingest_resume_window_ms", "3600000"},
                         {"fetch_users", "carol ,dave"},
                         {"fetch_bytes_per_client", "2097152"},
                         {"repair_delay_ms", "3000"},
                         {"repairs_in_flight", "2"},
                         {"repair_bytes_per_s", "1000000"},
                         {"rebalance", "false"}});
  EXPECT_EQ(o.tracker.fragment_size_bytes, 4096);
  EXPECT_EQ(o.tracker.replicas, 2u);
  EXPECT_EQ(o.tracker.join_timeout_ms, 800);
  EXPECT_EQ(o.tracker.request_timeout_ms, 500);
  EXPECT_EQ(o.tracker.delivery_timeout_ms, 900);
  EXPECT_EQ(o.tracker.retry_delay_ms, 700);
  EXPECT_EQ(o.tracker.revision_beacon_ms, 600);
  EXPECT_EQ(o.tracker.startup_settle_ms, 0);
  EXPECT_EQ(o.tracker.joins_in_flight_max, 5u);
  EXPECT_EQ(o.tracker.distributions_in_flight_max, 7u);
  EXPECT_EQ(o.tracker.registered_clients_max, 9u);
  EXPECT_EQ(o.tracker.join_request_bytes_max, 1048576u);
  EXPECT_EQ(o.map_size_bytes, 1048576u);
  EXPECT_EQ(o.metrics_interval_ms, 1000);
  EXPECT_EQ(o.ingest.users, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_TRUE(o.ingest.anyone);
  EXPECT_EQ(o.ingest.chunk_bytes_max, 2048u);
  EXPECT_EQ(o.ingest.window_bytes, 4096u);
  EXPECT_EQ(o.ingest.uploads_max, 3u);
  EXPECT_EQ(o.ingest.uploads_per_client_max, 1u);
  EXPECT_EQ(o.ingest.file_size_bytes_max, 100);
  EXPECT_EQ(o.ingest.idle_timeout_ms, 1000);
  EXPECT_EQ(o.ingest.resume_window_ms, 3'600'000);
  EXPECT_EQ(o.fetch.users, (std::vector<std::string>{"carol", "dave"}));
  EXPECT_FALSE(o.fetch.anyone);
  EXPECT_EQ(o.fetch.bytes_per_client, 2097152u);
  EXPECT_EQ(o.tracker.repair_delay_ms, 3000);
  EXPECT_EQ(o.tracker.repairs_in_flight_max, 2u);
  EXPECT_EQ(o.tracker.repair_bytes_per_s, 1'000'000);
  EXPECT_FALSE(o.tracker.rebalance);
}

TEST(PluginOptions, RepairMayStartAtOnceButNotWaitForever) {
  EXPECT_EQ(parsed({{"data_dir", "d"}, {"repair_delay_ms", "0"}}).tracker.repair_delay_ms, 0)
      << "0: a copy stops counting as soon as its holder leaves";
  EXPECT_EQ(parsed({{"data_dir", "d"}, {"repair_delay_ms", "604800000"}}).tracker.repair_delay_ms,
            604'800'000)
      << "a week";
  EXPECT_EQ(
      parsed({{"data_dir", "d"}, {"repairs_in_flight", "1024"}}).tracker.repairs_in_flight_max,
      1024u);
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"repair_delay_ms", "604800001"}}),
            "plugin_opt_repair_delay_ms: must be an integer from 0 to 604800000, not '604800001'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"repair_delay_ms", "-1"}}),
            "plugin_opt_repair_delay_ms: must be an integer from 0 to 604800000, not '-1'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"repair_delay_ms", "10m"}}),
            "plugin_opt_repair_delay_ms: must be an integer from 0 to 604800000, not '10m'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"repairs_in_flight", "0"}}),
            "plugin_opt_repairs_in_flight: must be an integer from 1 to 1024, not '0'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"repairs_in_flight", "1025"}}),
            "plugin_opt_repairs_in_flight: must be an integer from 1 to 1024, not '1025'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"repair_bytes_per_s", "-1"}}),
            "plugin_opt_repair_bytes_per_s: must be an integer from 0 to 10000000000, not '-1'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"rebalance", "yes"}}),
            "plugin_opt_rebalance: must be true or false, not 'yes'");
}

TEST(PluginOptions, FetchUsersAreReadLikeIngestUsers) {
  const auto o = parsed({{"data_dir", "d"}, {"fetch_users", " alice, bob ,*"}});
  EXPECT_EQ(o.fetch.users, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_TRUE(o.fetch.anyone);
  EXPECT_TRUE(o.ingest.users.empty()) << "fetch_users must not allow uploads";
  EXPECT_FALSE(o.ingest.anyone);

  const auto star = parsed({{"data_dir", "d"}, {"fetch_users", "*"}});
  EXPECT_TRUE(star.fetch.anyone);
  EXPECT_TRUE(star.fetch.users.empty());
  EXPECT_TRUE(star.fetch.enabled());

  // Empty names between commas are skipped; only commas and spaces are empty.
  const auto sparse = parsed({{"data_dir", "d"}, {"fetch_users", ",, erin ,,"}});
  EXPECT_EQ(sparse.fetch.users, (std::vector<std::string>{"erin"}));
  EXPECT_FALSE(sparse.fetch.anyone);
  const auto none = parsed({{"data_dir", "d"}, {"fetch_users", " , "}});
  EXPECT_FALSE(none.fetch.enabled());

  // Named twice, the lists add up, as for ingest_users.
  const auto twice = parsed({{"data_dir", "d"}, {"fetch_users", "a"}, {"fetch_users", "b"}});
  EXPECT_EQ(twice.fetch.users, (std::vector<std::string>{"a", "b"}));

  const auto uploads = parsed({{"data_dir", "d"}, {"ingest_users", "*"}});
  EXPECT_FALSE(uploads.fetch.enabled()) << "ingest_users must not allow fetching";
}

TEST(PluginOptions, NobodyIsATorrentServerUntilNamedAndIdsAreBoundToUsers) {
  const auto defaults = parsed({{"data_dir", "d"}});
  EXPECT_FALSE(defaults.edges.enabled()) << "like uploads and fetching, off until users are named";
  EXPECT_EQ(defaults.edges.ids, EdgeIds::username);

  const auto o = parsed({{"data_dir", "d"}, {"edge_users", "board-1, board-2"}});
  EXPECT_EQ(o.edges.users, (std::vector<std::string>{"board-1", "board-2"}));
  EXPECT_FALSE(o.edges.anyone);
  EXPECT_TRUE(o.ingest.users.empty()) << "edge_users must not allow uploads";
  EXPECT_FALSE(o.fetch.enabled()) << "edge_users must not allow fetching";

  const auto open = parsed({{"data_dir", "d"}, {"edge_users", "*"}, {"edge_ids", "any"}});
  EXPECT_TRUE(open.edges.anyone);
  EXPECT_EQ(open.edges.ids, EdgeIds::any);
  EXPECT_EQ(parsed({{"data_dir", "d"}, {"edge_ids", "username"}}).edges.ids, EdgeIds::username);
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"edge_ids", "cert"}}),
            "plugin_opt_edge_ids: must be username or any, not 'cert'");
}

// config/mosquitto.conf is what operators copy: every option it sets, and every default it shows
// commented out, must be one the plugin takes.
TEST(PluginOptions, TheExampleConfigurationIsValid) {
  std::ifstream conf(std::string(MQDS_CONFIG_DIR) + "/mosquitto.conf");
  ASSERT_TRUE(conf) << MQDS_CONFIG_DIR << "/mosquitto.conf";
  RawOptions set, shown;
  std::string line;
  while (std::getline(conf, line)) {
    const bool commented = line.starts_with("#plugin_opt_");
    if (!commented && !line.starts_with("plugin_opt_")) continue;
    const std::string option = line.substr(line.find("plugin_opt_") + 11);
    const auto space = option.find(' ');
    ASSERT_NE(space, std::string::npos) << line;
    (commented ? shown : set).emplace_back(option.substr(0, space), option.substr(space + 1));
  }
  ASSERT_GE(set.size(), 5u) << "data_dir, the users and acl_fallback";
  ASSERT_GE(shown.size(), 20u) << "the defaults";
  const auto o = parsed(set);
  EXPECT_TRUE(o.edges.enabled() && o.ingest.enabled() && o.fetch.enabled());
  EXPECT_EQ(o.edges.ids, EdgeIds::username);
  RawOptions both = set;
  both.insert(both.end(), shown.begin(), shown.end());
  parsed(both);
}

TEST(PluginOptions, AclFallbackDefersUnlessTold) {
  EXPECT_EQ(parsed({{"data_dir", "d"}}).acl_fallback, AclFallback::defer)
      << "by default the broker's ACLs decide what the plugin does not refuse";
  EXPECT_EQ(parsed({{"data_dir", "d"}, {"acl_fallback", "allow"}}).acl_fallback,
            AclFallback::allow);
  EXPECT_EQ(parsed({{"data_dir", "d"}, {"acl_fallback", "defer"}}).acl_fallback,
            AclFallback::defer);
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"acl_fallback", "yes"}}),
            "plugin_opt_acl_fallback: must be defer or allow, not 'yes'");
}

TEST(PluginOptions, BadValuesNameTheOptionAndTheRule) {
  EXPECT_EQ(error_of({}),
            "plugin_opt_data_dir: required (the directory of the tracker's LMDB store)");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"replicas", "0"}}),
            "plugin_opt_replicas: must be an integer from 1 to 16, not '0'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"fragment_size", "1MB"}}),
            "plugin_opt_fragment_size: must be an integer from 1 to 67108864, not '1MB'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"hash_algorithm", "MD5"}}),
            "plugin_opt_hash_algorithm: only SHA256 is supported, not 'MD5'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"replica", "2"}}), "plugin_opt_replica: unknown option");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"fetch_user", "alice"}}),
            "plugin_opt_fetch_user: unknown option");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"join_request_max", "1000"}}),
            "plugin_opt_join_request_max: must be an integer from 65536 to 268435456, not '1000'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"join_request_max", "32MiB"}}),
            "plugin_opt_join_request_max: must be an integer from 65536 to 268435456, not '32MiB'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"join_timeout_ms", "-1"}}),
            "plugin_opt_join_timeout_ms: must be an integer from 1 to 3600000, not '-1'");
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"ingest_chunk_size", "8192"}, {"ingest_window", "4096"}}),
            "plugin_opt_ingest_window: must be at least plugin_opt_ingest_chunk_size");
  // Less than one chunk would refuse every request.
  EXPECT_EQ(error_of({{"data_dir", "d"}, {"fetch_bytes_per_client", "65536"}}),
            "plugin_opt_fetch_bytes_per_client: must be an integer from 1048576 to 1073741824, not "
            "'65536'");
}

}  // namespace
}  // namespace mqds::plugin
