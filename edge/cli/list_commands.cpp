// mqds ls and mqds status: the tracker's view, as a table for people or JSON for scripts.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "progress.hpp"

namespace mqds::cli {

namespace {

template <class Entry>
std::vector<Entry> all_pages(CliSession& session, query::Kind kind,
                             std::vector<Entry> query::Answer::*list, query::Answer& last) {
  std::vector<Entry> entries;
  for (std::size_t offset = 0;;) {
    last = session.ask(query::Request{kind, std::nullopt, offset, query::page_max});
    auto& page = last.*list;
    entries.insert(entries.end(), page.begin(), page.end());
    offset = last.offset + page.size();
    if (page.empty() || offset >= last.total) break;
  }
  return entries;
}

}  // namespace

int list_files(CliSession& session, bool as_json) {
  query::Answer last;
  const auto files = all_pages(session, query::Kind::files, &query::Answer::files, last);
  if (as_json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : files)
      out.push_back({{"Hash", f.hash.to_hex()},
                     {"Size", f.size_bytes},
                     {"Fragments", f.fragments},
                     {"ReplicasPresent", f.replicas_min},
                     {"ReplicasDesired", last.replicas},
                     {"FragmentsUnderReplicated", f.fragments_under_replicated}});
    std::cout << out.dump(2) << "\n";
    return exit_status::ok;
  }
  std::printf("%-64s  %12s  %9s  %s\n", "HASH", "SIZE", "FRAGMENTS", "REPLICAS");
  for (const auto& f : files) {
    std::printf("%-64s  %12s  %9zu  %zu/%zu", f.hash.to_hex().c_str(),
                human_bytes(f.size_bytes).c_str(), f.fragments, f.replicas_min, last.replicas);
    if (f.fragments_under_replicated)
      std::printf("  (%zu fragments short)", f.fragments_under_replicated);
    std::printf("\n");
  }
  std::printf(
      "%zu file%s; replicas are the fewest copies any fragment of a file has, of %zu desired\n",
      files.size(), files.size() == 1 ? "" : "s", last.replicas);
  return exit_status::ok;
}

int show_status(CliSession& session, bool as_json) {
  query::Answer last;
  const auto clients = all_pages(session, query::Kind::clients, &query::Answer::clients, last);
  // Balance: how far the most and least loaded clients are from the mean, in fragments.
  double mean = 0;
  for (const auto& c : clients) mean += static_cast<double>(c.fragments);
  mean = clients.empty() ? 0 : mean / static_cast<double>(clients.size());
  std::size_t most = 0, least = clients.empty() ? 0 : SIZE_MAX;
  double variance = 0;
  for (const auto& c : clients) {
    most = std::max(most, c.fragments);
    least = std::min(least, c.fragments);
    variance +=
        (static_cast<double>(c.fragments) - mean) * (static_cast<double>(c.fragments) - mean);
  }
  const double deviation =
      clients.empty() ? 0 : std::sqrt(variance / static_cast<double>(clients.size()));
  auto percent_from_mean = [&](std::size_t n) {
    return mean > 0 ? (static_cast<double>(n) - mean) / mean * 100 : 0.0;
  };
  if (as_json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& c : clients) {
      nlohmann::json entry{{"ClientIdentifier", c.id},
                           {"Endpoints", c.endpoints},
                           {"Fragments", c.fragments},
                           {"Bytes", c.bytes}};
      entry["Capacity"] =
          c.capacity_bytes ? nlohmann::json(*c.capacity_bytes) : nlohmann::json(nullptr);
      list.push_back(std::move(entry));
    }
    nlohmann::json out{{"Clients", std::move(list)},
                       {"Replicas", last.replicas},
                       {"FragmentSize", last.fragment_size_bytes},
                       {"Revision", last.revision},
                       {"Balance",
                        {{"MeanFragments", mean},
                         {"StandardDeviation", deviation},
                         {"MostAboveMeanPercent", percent_from_mean(most)},
                         {"LeastBelowMeanPercent", percent_from_mean(least)}}}};
    std::cout << out.dump(2) << "\n";
    return exit_status::ok;
  }
  std::printf("%-32s  %9s  %12s  %12s  %s\n", "CLIENT", "FRAGMENTS", "STORED", "CAPACITY",
              "ENDPOINTS");
  for (const auto& c : clients) {
    std::string endpoints;
    for (const auto& e : c.endpoints) endpoints += (endpoints.empty() ? "" : " ") + e;
    std::printf(
        "%-32s  %9zu  %12s  %12s  %s\n", c.id.c_str(), c.fragments, human_bytes(c.bytes).c_str(),
        c.capacity_bytes ? human_bytes(*c.capacity_bytes).c_str() : "unlimited", endpoints.c_str());
  }
  std::printf("%zu clients registered; k = %zu; fragment size %s; revision %llu\n", clients.size(),
              last.replicas, human_bytes(last.fragment_size_bytes).c_str(),
              static_cast<unsigned long long>(last.revision));
  if (!clients.empty())
    std::printf(
        "balance: %.1f fragments per client on average, standard deviation %.1f; most %+.1f %%, "
        "least %+.1f %% from the mean\n",
        mean, deviation, percent_from_mean(most), percent_from_mean(least));
  return exit_status::ok;
}

}  // namespace mqds::cli
