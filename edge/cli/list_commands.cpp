// mqds ls and mqds status: the tracker's view, as a table for people or JSON for scripts.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
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

// The clients and the away edges of every page: both lists are paged by the same Offset, so the
// pages go on until the longer one is done. An older tracker sends no away list.
std::pair<std::vector<query::ClientSummary>, std::vector<query::AwayClient>> all_clients(
    CliSession& session, query::Answer& last) {
  std::vector<query::ClientSummary> clients;
  std::vector<query::AwayClient> away;
  for (std::size_t offset = 0;;) {
    last = session.ask(query::Request{query::Kind::clients, std::nullopt, offset, query::page_max});
    clients.insert(clients.end(), last.clients.begin(), last.clients.end());
    away.insert(away.end(), last.away.begin(), last.away.end());
    const std::size_t advanced = std::max(last.clients.size(), last.away.size());
    offset += advanced;
    if (advanced == 0 || offset >= std::max(last.total, last.away_total.value_or(0))) break;
  }
  return {std::move(clients), std::move(away)};
}

// When an edge that has been away for `away_ms` left, by this machine's clock, in UTC (ISO 8601):
// the tracker sends durations, since its clock is the broker's monotonic one.
std::string left_at(std::int64_t away_ms) {
  const auto when = std::chrono::system_clock::now() - std::chrono::milliseconds(away_ms);
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

nlohmann::json optional_count(const std::optional<std::size_t>& n) {
  return n ? nlohmann::json(*n) : nlohmann::json(nullptr);
}

std::string count_or_dash(const std::optional<std::size_t>& n) {
  return n ? std::to_string(*n) : "-";
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
                     {"FragmentsUnderReplicated", f.fragments_under_replicated},
                     // null from a tracker that does not say
                     {"FragmentsUnavailable", optional_count(f.fragments_unavailable)},
                     {"FragmentsShortHeldAway", optional_count(f.fragments_short_held_away)}});
    std::cout << out.dump(2) << "\n";
    return exit_status::ok;
  }
  std::printf("%-64s  %12s  %9s  %7s  %11s  %s\n", "HASH", "SIZE", "FRAGMENTS", "COPIES", "SHORT",
              "UNAVAILABLE");
  std::size_t files_at_risk = 0, short_total = 0, unavailable_total = 0;
  for (const auto& f : files) {
    const std::string copies = std::to_string(f.replicas_min) + "/" + std::to_string(last.replicas);
    std::string short_of_k = std::to_string(f.fragments_under_replicated);
    if (f.fragments_short_held_away.value_or(0))
      short_of_k += " (" + std::to_string(*f.fragments_short_held_away) + " away)";
    std::printf("%-64s  %12s  %9zu  %7s  %11s  %s\n", f.hash.to_hex().c_str(),
                human_bytes(f.size_bytes).c_str(), f.fragments, copies.c_str(), short_of_k.c_str(),
                count_or_dash(f.fragments_unavailable).c_str());
    files_at_risk += f.fragments_under_replicated || f.fragments_unavailable.value_or(0);
    short_total += f.fragments_under_replicated;
    unavailable_total += f.fragments_unavailable.value_or(0);
  }
  std::printf(
      "%zu file%s; copies are the fewest any fragment of a file has on registered edges, of k = "
      "%zu "
      "desired\n",
      files.size(), files.size() == 1 ? "" : "s", last.replicas);
  if (files_at_risk)
    std::printf(
        "%zu file%s at risk: %zu fragments short of k (\"away\": with a copy on an edge that is "
        "away, waited for before repair), %zu unavailable (no registered edge holds them)\n",
        files_at_risk, files_at_risk == 1 ? "" : "s", short_total, unavailable_total);
  return exit_status::ok;
}

int show_status(CliSession& session, bool as_json) {
  query::Answer last;
  const auto [clients, away] = all_clients(session, last);
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
    nlohmann::json away_list = nlohmann::json::array();
    for (const auto& a : away)
      away_list.push_back({{"ClientIdentifier", a.id},
                           {"Fragments", a.fragments},
                           {"AwayMs", a.away_ms},
                           {"Since", left_at(a.away_ms)},
                           {"CountsForMs", a.counts_for_ms}});
    nlohmann::json repair(nullptr);  // a tracker that does not say
    if (last.repair)
      repair = {{"InFlight", last.repair->in_flight},
                {"Started", last.repair->started},
                {"Ended", last.repair->ended},
                {"Failed", last.repair->failed},
                {"FragmentsUnderReplicated", last.repair->fragments_under_replicated},
                {"FragmentsUnavailable", last.repair->fragments_unavailable},
                {"DelayMs", last.repair->delay_ms}};
    nlohmann::json out{{"Clients", std::move(list)},
                       {"Away", std::move(away_list)},
                       {"Repair", std::move(repair)},
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
  if (!away.empty()) {
    std::printf("\n%-32s  %9s  %9s  %-20s  %s\n", "AWAY", "FRAGMENTS", "AWAY FOR", "SINCE",
                "REPAIRED IN");
    for (const auto& a : away)
      std::printf("%-32s  %9zu  %7lld s  %-20s  %lld s\n", a.id.c_str(), a.fragments,
                  static_cast<long long>(a.away_ms / 1000), left_at(a.away_ms).c_str(),
                  static_cast<long long>((a.counts_for_ms + 999) / 1000));
  }
  if (last.away_total && away.empty())
    std::printf("no edge is away\n");
  else if (last.away_total)
    std::printf(
        "%zu edge%s away: copies on an away edge still count until the repair delay passes, then "
        "they are copied again from the other holders\n",
        away.size(), away.size() == 1 ? "" : "s");
  if (last.repair)
    std::printf(
        "repair: %zu in flight; %llu started, %llu ended, %llu failed since the broker started; "
        "fragments %zu short of k, %zu unavailable; repair delay %lld s\n",
        last.repair->in_flight, static_cast<unsigned long long>(last.repair->started),
        static_cast<unsigned long long>(last.repair->ended),
        static_cast<unsigned long long>(last.repair->failed),
        last.repair->fragments_under_replicated, last.repair->fragments_unavailable,
        static_cast<long long>(last.repair->delay_ms / 1000));
  return exit_status::ok;
}

}  // namespace mqds::cli
