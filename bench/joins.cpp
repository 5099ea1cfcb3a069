// 1. A service of `view_clients` registered torrent servers holding `view_files` files of
//    `fragments_per_file` fragments, each fragment on 3 of them (k = 3): a new, empty torrent
//    server joins; timed from its ClientJoinRequested to the ClientRegistered that names it, with
//    the size of the ClientJoinAccepted it received (the whole view, which it must learn).
//    The service is built by the servers' own joins: each brings the files it holds, as a board
//    with stored data does after the tracker's data directory was lost.
// 2. `fleet` empty torrent servers, connected and subscribed, all send ClientJoinRequested at the
//    same moment: timed until every one is registered. The tracker lets `joins_in_flight` (64)
//    joins run at once and denies the rest with "Other", which they retry after a jittered backoff,
//    exactly as mqds-edge does.
#include "joins.hpp"

#include "fleet.hpp"
#include "mqds/hash.hpp"
#include "services.hpp"

namespace mqds::bench {

namespace {

constexpr std::int64_t fragment_bytes = 1 << 20;

// Distinct hashes for made-up files and fragments: what they hash matters to nobody.
Hash nth_hash(std::uint64_t& counter) {
  return sha256(std::to_string(counter++));
}

TorrentConfig config_for(const std::string& id) {
  TorrentConfig config;
  config.client_id = id;
  config.endpoints = {"mqtt:mqds/fetch/request/" + id};
  return config;
}

broker_test::BrokerConfig join_broker(int max_clients) {
  return production_broker(true, {{"replicas", "3"},
                                  {"startup_settle_ms", "0"},
                                  {"max_clients", std::to_string(max_clients)},
                                  {"metrics_interval_ms", "1000"}});
}

void one_join_into_a_large_view(Report& report, const JoinOptions& options) {
  // Files f are held by clients f / files_per_client and the next two (wrapping around).
  std::uint64_t counter = 0;
  std::vector<std::pair<Hash, FileMetadata>> files;
  for (int f = 0; f < options.view_files; ++f) {
    FileMetadata file;
    file.size_bytes = fragment_bytes * options.fragments_per_file;
    for (int i = 0; i < options.fragments_per_file; ++i)
      file.fragment_sequence.push_back(nth_hash(counter));
    files.emplace_back(nth_hash(counter), std::move(file));
  }
  const int files_per_client =
      (options.view_files + options.view_clients - 1) / options.view_clients;

  broker_test::Broker broker(join_broker(options.view_clients + 10));
  require(broker.start(), "broker with the plugin");
  Fleet service(broker.port());
  for (int c = 0; c < options.view_clients; ++c) {
    TorrentSnapshot snapshot;
    snapshot.fragment_size_bytes = fragment_bytes;
    for (int copy = 0; copy < 3; ++copy) {
      const int owner = (c - copy + options.view_clients) % options.view_clients;
      for (int f = owner * files_per_client;
           f < std::min(options.view_files, (owner + 1) * files_per_client); ++f) {
        snapshot.files.insert(files[static_cast<std::size_t>(f)]);
        for (const auto& hash : files[static_cast<std::size_t>(f)].second.fragment_sequence)
          snapshot.stored_fragments[hash] = FragmentMetadata{fragment_bytes};
      }
    }
    service.add(config_for("holder-" + std::to_string(c)), std::move(snapshot));
  }
  service.connect_all(60'000);
  const auto build_start = Clock::now();
  for (std::size_t i = 0; i < service.size(); ++i) service.join(i);
  if (!service.run_until([&] { return service.registered() == service.size(); }, 600'000))
    throw Failure("only " + std::to_string(service.registered()) + " of " +
                  std::to_string(service.size()) + " holders registered" +
                  (service.fatal().empty() ? "" : ": " + service.fatal()));
  report.add(
      "joins",
      "build: " + std::to_string(options.view_clients) + " holders join with " +
          std::to_string(files.size() * static_cast<std::size_t>(options.fragments_per_file)) +
          " fragments x 3",
      seconds_since(build_start), "s");

  const std::size_t newcomer = service.add(config_for("newcomer"), TorrentSnapshot{});
  service.connect_all(10'000);
  const auto start = Clock::now();
  service.join(newcomer);
  const bool registered = service.run_until(
      [&] { return service.server(newcomer).phase() == TorrentPhase::registered; }, 120'000);
  const double seconds = seconds_since(start);
  if (!registered) throw Failure("the newcomer was not registered within 120 s");
  const std::string view =
      std::to_string(options.view_clients) + " clients, " + std::to_string(options.view_files) +
      " files, " + std::to_string(options.view_files * options.fragments_per_file) + " fragments";
  report.add("joins", "new client, join request to registration (" + view + ")", seconds, "s");
  report.add("joins", "  its ClientJoinAccepted",
             static_cast<double>(service.accepted_bytes(newcomer)) / 1e6, "MB");
  if (service.server(newcomer).view().fragments().size() !=
      files.size() * static_cast<std::size_t>(options.fragments_per_file))
    throw Failure("the newcomer's view lacks fragments");
  // Measured: the broker goes first, so it does not spend its stop announcing a hundred clients
  // lost to each other.
  broker.kill9();
}

void a_fleet_joins_at_once(Report& report, const JoinOptions& options) {
  broker_test::Broker broker(join_broker(options.fleet + 10));
  require(broker.start(), "broker with the plugin");
  Fleet fleet(broker.port());
  for (int i = 0; i < options.fleet; ++i)
    fleet.add(config_for("board-" + std::to_string(i)), TorrentSnapshot{});
  fleet.connect_all(120'000);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < fleet.size(); ++i) fleet.join(i);
  if (!fleet.run_until([&] { return fleet.registered() == fleet.size(); }, 600'000))
    throw Failure("only " + std::to_string(fleet.registered()) + " of " +
                  std::to_string(fleet.size()) + " registered within 600 s");
  std::uint64_t requests = 0;
  for (std::size_t i = 0; i < fleet.size(); ++i)
    requests += fleet.server(i).metrics().joins_requested;
  report.add("joins", std::to_string(options.fleet) + " clients join at once, until all registered",
             seconds_since(start), "s");
  report.add("joins", "  join requests sent (denied ones are retried)",
             static_cast<double>(requests), "");
  broker.kill9();  // as above: a million goodbyes are not what is measured
}

}  // namespace

void run_joins(Report& report, const JoinOptions& options) {
  one_join_into_a_large_view(report, options);
  a_fleet_joins_at_once(report, options);
}

}  // namespace mqds::bench
