// What is timed:
// - ours: mosquitto with the tracker plugin (k, plugin_opt_repair_delay_ms 0, every other option at
//   its default) and `edges` mqds-edge processes holding a file put with `mqds put`. One edge is
//   killed (SIGKILL) and its data directory deleted; the time runs from the kill until the tracker
//   reports every fragment at k again: `$SYS/broker/mqds/fragments/under_replicated` 0,
//   `repairs/ended` up by the number of copies the edge held, none in flight. The figures are
//   refreshed every 100 ms here, which is all the time can be too long by.
// - raw: as many 1 MiB messages, spread evenly over the `edges - 1` survivors' LMDB stores; each
//   survivor publishes its share at QoS 1 through the broker without the plugin, each message to
//   another survivor, which writes it to its store with mqds-edge's commit policy; the time runs
//   until the last is durable.
// Both read what they send from the page cache: it was written just before.
#include "repair.hpp"

#include <mosquitto.h>

#include <nlohmann/json.hpp>

#include <exception>
#include <filesystem>
#include <memory>
#include <thread>

#include "edge_process.hpp"
#include "mqds/random.hpp"
#include "raw_pipeline.hpp"
#include "services.hpp"

namespace mqds::bench {

namespace {

const std::string figures = "$SYS/broker/mqds/";

std::uint64_t figure(const Watcher::Values& values, const std::string& name) {
  const auto found = values.find(figures + name);
  return found == values.end() || found->second.empty() ? 0 : to_u64(found->second);
}

// How many fragments each registered client holds, from `mqds status --json`.
std::map<std::string, std::uint64_t> fragments_per_client(const std::string& port) {
  const auto status = edge_test::run_mqds({"-p", port, "status", "--json"});
  if (status.status != 0) throw Failure("mqds status exited " + std::to_string(status.status));
  const auto state = nlohmann::json::parse(status.out, nullptr, false);
  if (!state.is_object() || !state.contains("Clients") || !state["Clients"].is_array())
    throw Failure("mqds status --json: " + status.out);
  std::map<std::string, std::uint64_t> out;
  for (const auto& client : state["Clients"])
    out[client.value("ClientIdentifier", "")] = client.value("Fragments", std::uint64_t{0});
  return out;
}

struct Measured {
  double seconds = 0;
  std::uint64_t copies = 0;  // the copies the lost edge held, each repaired once
  double bytes_sent_per_copy = 0;
  double bytes_received_per_copy = 0;
  std::uint64_t repairs_failed = 0;  // tried again after retry_delay_ms, within the time
};

Measured run_ours(const RepairOptions& options, const std::string& input) {
  broker_test::Broker broker(production_broker(
      true,
      ours_options(options.replicas, {{"metrics_interval_ms", "100"}, {"repair_delay_ms", "0"}})));
  require(broker.start(), "broker with the plugin");
  const std::string port = std::to_string(broker.port());
  auto edges = start_edges(broker.port(), options.edges, options.work_dir);
  Watcher watcher(broker.port(), {figures + "#", bytes_sent_topic, bytes_received_topic});
  watcher.wait_value(figures + "clients/registered", std::to_string(options.edges), 30s);

  const auto put = edge_test::run_mqds({"-p", port, "-q", "put", input}, 60min);
  if (put.status != 0)
    throw Failure("mqds put exited " + std::to_string(put.status) + ": " + put.err);
  const std::string hash = put.out.substr(0, put.out.find('\n'));
  // Settled: every fragment at k, nothing staged, no repair or move under way or waiting.
  watcher.wait_values(
      [](const Watcher::Values& v) {
        return figure(v, "fragments/under_replicated") == 0 && figure(v, "fragments/staged") == 0 &&
               figure(v, "repairs/in_flight") == 0 && figure(v, "fragments/misplaced") == 0 &&
               figure(v, "copies/surplus") == 0;
      },
      60s, "the fleet settling after mqds put");

  edge_test::EdgeProcess& lost = *edges.front();
  Measured ours;
  ours.copies = fragments_per_client(port).at(lost.id());
  if (ours.copies == 0) throw Failure(lost.id() + " holds nothing");
  const std::uint64_t ended_before = figure(watcher.values(), "repairs/ended");
  const std::uint64_t failed_before = figure(watcher.values(), "repairs/failed");
  const std::uint64_t sent_before = to_u64(watcher.fresh(bytes_sent_topic));
  // The broker republishes a counter only when it changed: received bytes stand still while the
  // fleet is idle, so their last value is the current one.
  const std::uint64_t received_before = to_u64(watcher.values().at(bytes_received_topic));

  const auto start = Clock::now();
  lost.kill9();
  std::filesystem::remove_all(lost.data_dir());
  const auto repaired = watcher.wait_values(
      [&](const Watcher::Values& v) {
        return figure(v, "repairs/ended") >= ended_before + ours.copies &&
               figure(v, "repairs/in_flight") == 0 && figure(v, "fragments/under_replicated") == 0;
      },
      30min, "the repair of " + std::to_string(ours.copies) + " copies");
  ours.seconds = std::chrono::duration<double>(repaired - start).count();

  std::this_thread::sleep_for(1500ms);  // $SYS catches up
  const auto copies = static_cast<double>(ours.copies);
  ours.bytes_sent_per_copy =
      static_cast<double>(to_u64(watcher.fresh(bytes_sent_topic)) - sent_before) / copies;
  ours.bytes_received_per_copy =
      static_cast<double>(to_u64(watcher.values().at(bytes_received_topic)) - received_before) /
      copies;
  ours.repairs_failed = figure(watcher.values(), "repairs/failed") - failed_before;

  // What the repair left: k copies of every fragment, and the file as it was put.
  const auto ls = edge_test::run_mqds({"-p", port, "ls", "--json"});
  const auto files = nlohmann::json::parse(ls.out, nullptr, false);
  if (ls.status != 0 || !files.is_array() || files.size() != 1 ||
      files[0].value("ReplicasPresent", -1) != options.replicas)
    throw Failure("after the repair, mqds ls --json: " + ls.out);
  const std::string output = options.work_dir + "/repaired.out";
  const auto get = edge_test::run_mqds({"-p", port, "-q", "get", hash, "-o", output}, 60min);
  if (get.status != 0)
    throw Failure("mqds get exited " + std::to_string(get.status) + ": " + get.err);
  if (!same_content(input, output)) throw Failure("mqds get after the repair returned other bytes");
  std::filesystem::remove(output);
  for (auto& edge : edges) edge->terminate();
  return ours;
}

double run_raw(const RepairOptions& options, std::uint64_t copies) {
  broker_test::Broker broker(production_broker(false));
  require(broker.start(), "broker without the plugin");
  const auto survivors = static_cast<std::uint64_t>(options.edges - 1);
  // Message n is held by survivor n % survivors and goes to one of the others, in turn.
  auto source_of = [&](std::uint64_t n) { return n % survivors; };
  auto target_of = [&](std::uint64_t n) {
    return (source_of(n) + 1 + (n / survivors) % (survivors - 1)) % survivors;
  };

  std::vector<std::unique_ptr<RawStore>> stores;
  std::vector<std::size_t> expected;  // what each store holds once every message arrived
  for (std::uint64_t i = 0; i < survivors; ++i) {
    const std::string dir = options.work_dir + "/raw-repair-" + std::to_string(i);
    std::filesystem::create_directories(dir);
    stores.push_back(std::make_unique<RawStore>(dir, 4 * copies * chunk_bytes + (64u << 20)));
    expected.push_back(0);
  }
  SplitMix64 random(2026);
  std::vector<std::uint64_t> chunk(chunk_bytes / sizeof(std::uint64_t));
  for (std::uint64_t n = 0; n < copies; ++n) {
    for (auto& word : chunk) word = random.next_u64();
    stores[source_of(n)]->add(n, chunk.data(), chunk_bytes);
    ++expected[source_of(n)];
    ++expected[target_of(n)];
  }
  for (auto& store : stores) store->commit();

  std::vector<std::unique_ptr<RawConnection>> new_holders;
  for (std::uint64_t i = 0; i < survivors; ++i) {
    RawStore* store = stores[i].get();
    new_holders.push_back(std::make_unique<RawConnection>(
        "raw-new-holder-" + std::to_string(i), broker.port(), [store](const mosquitto_message& m) {
          store->add(index_of(m), m.payload, static_cast<std::size_t>(m.payloadlen));
        }));
    new_holders.back()->set_after_pass([store] { store->commit(); });
    new_holders.back()->run();
    new_holders.back()->subscribe("bench/repair/" + std::to_string(i) + "/#", 1);
  }

  const auto start = Clock::now();
  std::vector<std::thread> holders;
  std::vector<std::exception_ptr> holder_failures(survivors);
  for (std::uint64_t i = 0; i < survivors; ++i) {
    holders.emplace_back([&, i] {
      try {
        RawConnection holder("raw-holder-" + std::to_string(i), broker.port());
        holder.run();
        stores[i]->for_each([&](std::uint64_t n, const void* data, std::size_t size) {
          if (source_of(n) == i)
            holder.publish("bench/repair/" + std::to_string(target_of(n)) + "/" + std::to_string(n),
                           data, size);
        });
        holder.wait_all_acknowledged();
      } catch (...) {
        holder_failures[i] = std::current_exception();
      }
    });
  }
  for (auto& holder : holders) holder.join();
  for (const auto& failure : holder_failures)
    if (failure) std::rethrow_exception(failure);
  for (std::uint64_t i = 0; i < survivors; ++i)
    wait_until([&] { return stores[i]->committed() >= expected[i]; },
               [&] { new_holders[i]->rethrow_if_failed(); }, "the raw new holders' last commit");
  return seconds_since(start);
}

}  // namespace

void run_repair(Report& report, const RepairOptions& options) {
  if (options.edges < 3 || options.replicas < 2 || options.replicas >= options.edges)
    throw Failure("a repair needs k >= 2 and at least k + 1 and 3 edges");
  const std::string input = options.work_dir + "/input.bin";
  write_random_file(input, options.file_bytes, 2027);
  const std::string shape = std::to_string(options.file_bytes >> 20) + " MiB, " +
                            std::to_string(options.edges) +
                            " edges, k=" + std::to_string(options.replicas);

  const Measured ours = run_ours(options, input);
  std::filesystem::remove(input);
  const double copies_mb = mb(ours.copies * chunk_bytes);
  report.add("repair", "copies the lost edge held (" + shape + ")",
             static_cast<double>(ours.copies), "");
  report.add("repair", "mqds: kill -9 and data deleted, until every fragment is at k", ours.seconds,
             "s");
  report.add("repair", "  repaired", copies_mb / ours.seconds, "MB/s");
  report.add("repair", "  repairs that failed and were tried again",
             static_cast<double>(ours.repairs_failed), "");
  report.add("repair", "  broker bytes received per repaired copy", ours.bytes_received_per_copy,
             "bytes");
  report.add("repair", "  broker bytes sent per repaired copy", ours.bytes_sent_per_copy, "bytes");

  const double raw_seconds = run_raw(options, ours.copies);
  report.add("repair",
             "raw: " + std::to_string(options.edges - 1) + " LMDB holders -> broker -> " +
                 std::to_string(options.edges - 1) + " LMDB new holders",
             copies_mb / raw_seconds, "MB/s");

  report.target("repair_throughput", raw_seconds / ours.seconds, 0.7);
  report.target("repair_bytes_per_copy", ours.bytes_sent_per_copy / chunk_bytes, 1.05, true);
}

}  // namespace mqds::bench
