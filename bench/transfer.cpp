// What is timed:
// - ours: `mqds put FILE` from start to exit (it exits once every fragment has k replicas), with
//   mosquitto + the tracker plugin and `edges` mqds-edge processes; then `mqds get` to exit
//   (fetched, verified, fsynced, renamed).
// - raw: a libmosquitto publisher sends the file in 1 MiB QoS 1 messages through the broker with no
//   plugin to `replicas` subscribers that store every message in LMDB with mqds-edge's commit
//   policy, until the last is durable; then `replicas` publishers read the file back from those
//   stores, each half of it, to one subscriber that writes it to a file and fsyncs it.
// Both read the input from the page cache: it is written just before.
#include "transfer.hpp"

#include <fcntl.h>
#include <mosquitto.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "edge_process.hpp"
#include "raw_pipeline.hpp"
#include "services.hpp"

namespace mqds::bench {

namespace {

struct Measured {
  double seconds = 0;
  double upload_seconds = 0;  // ours: until FileInfoPublished
  double bytes_sent_per_fragment = 0;
};

// Ours: put, then get.
std::pair<Measured, Measured> run_ours(const TransferOptions& options, const std::string& input) {
  broker_test::Broker broker(
      production_broker(true, ours_options(options.replicas, {{"metrics_interval_ms", "500"}})));
  require(broker.start(), "broker with the plugin");
  const std::string port = std::to_string(broker.port());
  auto edges = start_edges(broker.port(), options.edges, options.work_dir);
  Watcher watcher(broker.port(), {"$SYS/broker/mqds/#", bytes_sent_topic, "files/info"});
  watcher.wait_value("$SYS/broker/mqds/clients/registered", std::to_string(options.edges), 30s);
  const std::uint64_t bytes_before = to_u64(watcher.fresh(bytes_sent_topic));

  Measured put;
  edge_test::Completed put_run;
  const auto put_start = Clock::now();
  std::thread putter([&] {
    put_run = edge_test::run_mqds({"-p", port, "-q", "put", input}, 60min);
  });
  try {
    put.upload_seconds =
        std::chrono::duration<double>(watcher.next("files/info", 60min).first - put_start).count();
  } catch (const Failure&) {}
  putter.join();
  put.seconds = seconds_since(put_start);
  if (put_run.status != 0)
    throw Failure("mqds put exited " + std::to_string(put_run.status) + ": " + put_run.err);
  const std::string hash = put_run.out.substr(0, put_run.out.find('\n'));
  std::this_thread::sleep_for(1500ms);  // the last events reach the edges; $SYS catches up
  const std::uint64_t bytes_after = to_u64(watcher.fresh(bytes_sent_topic));
  const std::uint64_t fragments = chunks_of(options.file_bytes);
  put.bytes_sent_per_fragment =
      static_cast<double>(bytes_after - bytes_before) / static_cast<double>(fragments);

  Measured get;
  const std::string output = options.work_dir + "/ours.out";
  const auto get_start = Clock::now();
  const auto get_run = edge_test::run_mqds({"-p", port, "-q", "get", hash, "-o", output}, 60min);
  get.seconds = seconds_since(get_start);
  if (get_run.status != 0)
    throw Failure("mqds get exited " + std::to_string(get_run.status) + ": " + get_run.err);
  if (!same_content(input, output)) throw Failure("mqds get wrote other content than was put");
  std::filesystem::remove(output);
  for (auto& edge : edges) edge->terminate();
  return {put, get};
}

// Raw: publisher -> broker -> subscribers writing LMDB; then stores -> broker -> one file.
std::pair<Measured, Measured> run_raw(const TransferOptions& options, const std::string& input) {
  broker_test::Broker broker(production_broker(false));
  require(broker.start(), "broker without the plugin");
  const std::uint64_t messages = chunks_of(options.file_bytes);

  std::vector<std::unique_ptr<RawStore>> stores;
  std::vector<std::unique_ptr<RawConnection>> subscribers;
  for (int i = 0; i < options.replicas; ++i) {
    const std::string dir = options.work_dir + "/raw-" + std::to_string(i);
    std::filesystem::create_directories(dir);
    stores.push_back(
        std::make_unique<RawStore>(dir, std::size_t{4} * options.file_bytes + (64u << 20)));
    RawStore* store = stores.back().get();
    subscribers.push_back(std::make_unique<RawConnection>(
        "raw-sub-" + std::to_string(i), broker.port(), [store](const mosquitto_message& m) {
          store->add(index_of(m), m.payload, static_cast<std::size_t>(m.payloadlen));
        }));
    subscribers.back()->set_after_pass([store] { store->commit(); });
    subscribers.back()->run();
    subscribers.back()->subscribe("bench/raw/#", 1);
  }
  Watcher watcher(broker.port(), {bytes_sent_topic});
  const std::uint64_t bytes_before = to_u64(watcher.fresh(bytes_sent_topic));

  Measured put;
  {
    RawConnection publisher("raw-pub", broker.port());
    publisher.run();
    const auto start = Clock::now();
    std::ifstream in(input, std::ios::binary);
    std::vector<char> chunk(chunk_bytes);
    for (std::uint64_t i = 0; i < messages; ++i) {
      in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      publisher.publish("bench/raw/" + std::to_string(i), chunk.data(),
                        static_cast<std::size_t>(in.gcount()));
    }
    publisher.wait_all_acknowledged();
    for (std::size_t i = 0; i < stores.size(); ++i)
      wait_until([&] { return stores[i]->committed() >= messages; },
                 [&] { subscribers[i]->rethrow_if_failed(); }, "the raw subscribers' last commit");
    put.seconds = seconds_since(start);
  }
  std::this_thread::sleep_for(1500ms);
  const std::uint64_t bytes_after = to_u64(watcher.fresh(bytes_sent_topic));
  put.bytes_sent_per_fragment =
      static_cast<double>(bytes_after - bytes_before) / static_cast<double>(messages);
  subscribers.clear();  // the stores are only read from now on

  Measured get;
  const std::string output = options.work_dir + "/raw.out";
  const int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Failure("cannot create " + output);
  const std::unique_ptr<const int, void (*)(const int*)> closing(&fd,
                                                                 [](const int* f) { ::close(*f); });
  std::atomic<std::uint64_t> written{0};
  RawConnection receiver("raw-receiver", broker.port(), [&](const mosquitto_message& m) {
    const auto offset = static_cast<off_t>(index_of(m) * chunk_bytes);
    if (::pwrite(fd, m.payload, static_cast<std::size_t>(m.payloadlen), offset) != m.payloadlen)
      throw Failure("cannot write " + output);
    ++written;
  });
  receiver.run();
  receiver.subscribe("bench/fanin/#", 1);
  const auto start = Clock::now();
  std::vector<std::thread> holders;
  std::vector<std::exception_ptr> holder_failures(static_cast<std::size_t>(options.replicas));
  for (int i = 0; i < options.replicas; ++i) {
    holders.emplace_back([&, i] {
      try {
        RawConnection holder("raw-holder-" + std::to_string(i), broker.port());
        holder.run();
        stores[static_cast<std::size_t>(i)]->for_each([&](std::uint64_t key, const void* data,
                                                          std::size_t size) {
          if (key % static_cast<std::uint64_t>(options.replicas) == static_cast<std::uint64_t>(i))
            holder.publish("bench/fanin/" + std::to_string(key), data, size);
        });
        holder.wait_all_acknowledged();
      } catch (...) {
        holder_failures[static_cast<std::size_t>(i)] = std::current_exception();
      }
    });
  }
  for (auto& holder : holders) holder.join();
  for (const auto& failure : holder_failures)
    if (failure) std::rethrow_exception(failure);
  wait_until([&] { return written >= messages; }, [&] { receiver.rethrow_if_failed(); },
             "the raw fan-in");
  ::fsync(fd);
  get.seconds = seconds_since(start);
  if (!same_content(input, output))
    throw Failure("the raw fan-in wrote other content than was published");
  std::filesystem::remove(output);
  return {put, get};
}

}  // namespace

void run_transfer(Report& report, const TransferOptions& options) {
  const std::string input = options.work_dir + "/input.bin";
  write_random_file(input, options.file_bytes, 2026);
  const double file_mb = mb(options.file_bytes);
  const std::string shape = std::to_string(options.file_bytes >> 20) + " MiB, " +
                            std::to_string(options.edges) +
                            " edges, k=" + std::to_string(options.replicas);

  const auto [raw_put, raw_get] = run_raw(options, input);
  report.add(
      "distribution",
      "raw: publisher -> broker -> " + std::to_string(options.replicas) + " LMDB subscribers",
      file_mb / raw_put.seconds, "MB/s");
  report.add("distribution", "raw: broker bytes sent per message", raw_put.bytes_sent_per_fragment,
             "bytes");
  report.add("retrieval",
             "raw: " + std::to_string(options.replicas) + " LMDB publishers -> broker -> file",
             file_mb / raw_get.seconds, "MB/s");

  const auto [put, get] = run_ours(options, input);
  report.add("distribution", "mqds put until k replicas (" + shape + ")", file_mb / put.seconds,
             "MB/s");
  report.add("distribution", "  of which upload until FileInfoPublished", put.upload_seconds, "s");
  report.add("distribution", "  of which spreading to the edges", put.seconds - put.upload_seconds,
             "s");
  report.add("distribution", "broker bytes sent per fragment", put.bytes_sent_per_fragment,
             "bytes");
  report.add("retrieval", "mqds get, verified and fsynced", file_mb / get.seconds, "MB/s");

  report.target("distribution_throughput", raw_put.seconds / put.seconds, 0.8);
  report.target("distribution_bytes_per_fragment",
                put.bytes_sent_per_fragment / (static_cast<double>(options.replicas) * chunk_bytes),
                1.05, true);
  report.target("retrieval_throughput", raw_get.seconds / get.seconds, 0.8);
  std::filesystem::remove(input);
}

}  // namespace mqds::bench
