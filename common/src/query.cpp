#include "mqds/query.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <map>

#include "mqds/limits.hpp"
#include "mqds/tracker.hpp"
#include "wire_reader.hpp"

namespace mqds::query {

namespace {

using nlohmann::json;

constexpr std::size_t answer_payload_bytes_max = 64u * 1024u * 1024u;

std::size_t read_size(const wire::Fields& fields, std::string_view name, std::size_t otherwise) {
  const auto* value = fields.optional(name);
  if (!value) return otherwise;
  return static_cast<std::size_t>(
      std::min<std::uint64_t>(wire::read_uint(*value, fields.path(name)), SIZE_MAX));
}

// The page [offset, offset + limit) of n entries.
std::pair<std::size_t, std::size_t> page_of(std::size_t n, const Request& request) {
  const std::size_t first = std::min(request.offset, n);
  return {first, std::min(n, first + std::min(request.limit, page_max))};
}

// Fragments with a copy on an edge that is away and still counts (as the tracker counts them: away
// for less than repair_delay_ms), and those edges, in client id order.
struct Away {
  std::set<Hash> held;
  std::vector<AwayClient> clients;
};

Away away_of(const RepairFacts& facts) {
  Away away;
  if (!facts.away_since_ms) return away;
  for (const auto& [id, since_ms] : *facts.away_since_ms) {
    const std::int64_t away_ms = facts.now_ms - since_ms;
    // Past the delay its copies count no more (the tracker forgets it at its next tick): it is
    // gone, not away, and what it held is repaired.
    if (away_ms >= facts.repair_delay_ms) continue;
    std::size_t fragments = 0;
    if (facts.holdings) {
      if (const auto held = facts.holdings->find(id); held != facts.holdings->end()) {
        fragments = held->second.size();
        away.held.insert(held->second.begin(), held->second.end());
      }
    }
    away.clients.push_back(AwayClient{id, std::max<std::int64_t>(away_ms, 0),
                                      facts.repair_delay_ms - away_ms, fragments});
  }
  return away;
}

FileSummary summarize(const Hash& hash, const FileMetadata& file,
                      const std::map<Hash, std::size_t>& holders, std::size_t replicas,
                      const RepairFacts* facts, const Away& away) {
  FileSummary summary{hash, file.size_bytes, file.fragment_sequence.size(), 0, 0, {}, {}};
  if (facts) {
    summary.fragments_unavailable = 0;
    summary.fragments_short_held_away = 0;
  }
  bool first = true;
  for (const auto& fragment : file.fragment_sequence) {
    const auto it = holders.find(fragment);
    const std::size_t count = it == holders.end() ? 0 : it->second;
    summary.replicas_min = first ? count : std::min(summary.replicas_min, count);
    first = false;
    if (count < replicas) ++summary.fragments_under_replicated;
    if (!facts) continue;
    // A staged fragment is the distribution's: the broker has its content and sends it on.
    if (count == 0 && !(facts->is_staged && facts->is_staged(fragment)))
      ++*summary.fragments_unavailable;
    if (count < replicas && away.held.count(fragment)) ++*summary.fragments_short_held_away;
  }
  return summary;
}

json file_json(const FileSummary& f) {
  json j{{"Hash", f.hash.to_hex()},
         {"Size", f.size_bytes},
         {"Fragments", f.fragments},
         {"ReplicasMin", f.replicas_min},
         {"UnderReplicated", f.fragments_under_replicated}};
  if (f.fragments_unavailable) j["Unavailable"] = *f.fragments_unavailable;
  if (f.fragments_short_held_away) j["ShortHeldAway"] = *f.fragments_short_held_away;
  return j;
}

FileSummary read_file_summary(const wire::json& value, const std::string& path) {
  wire::read_object(value, path, 16);
  const wire::Fields f(value, path);
  constexpr auto count_max = std::numeric_limits<std::int64_t>::max();
  auto count = [&](std::string_view name) {
    return static_cast<std::size_t>(wire::read_int(f.required(name), f.path(name), 0, count_max));
  };
  FileSummary summary;
  summary.hash = wire::read_hash(f.required("Hash"), f.path("Hash"));
  summary.size_bytes =
      wire::read_int(f.required("Size"), f.path("Size"), 0, limits::file_size_bytes_max);
  summary.fragments = count("Fragments");
  summary.replicas_min = count("ReplicasMin");
  summary.fragments_under_replicated = count("UnderReplicated");
  if (f.optional("Unavailable")) summary.fragments_unavailable = count("Unavailable");
  if (f.optional("ShortHeldAway")) summary.fragments_short_held_away = count("ShortHeldAway");
  return summary;
}

const wire::json::array_t* optional_array(const wire::Fields& f, std::string_view name,
                                          std::size_t entries_max) {
  const auto* value = f.optional(name);
  return value ? &wire::read_array(*value, f.path(name), entries_max) : nullptr;
}

}  // namespace

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::files: return "files";
    case Kind::clients: return "clients";
    case Kind::file: return "file";
  }
  return "files";
}

std::string encode_request(const Request& request) {
  json j{{"Query", kind_name(request.kind)}, {"Offset", request.offset}, {"Limit", request.limit}};
  if (request.hash) j["Hash"] = request.hash->to_hex();
  return j.dump();
}

Result<Request> decode_request(std::string_view payload) noexcept {
  return wire::decode_untrusted<Request>([&] {
    const auto document = wire::parse_json(payload, request_payload_bytes_max);
    const auto f = wire::Fields::of_document(document);
    Request request;
    const auto& kind = wire::read_string(f.required("Query"), f.path("Query"), 0, 16);
    if (kind == "files")
      request.kind = Kind::files;
    else if (kind == "clients")
      request.kind = Kind::clients;
    else if (kind == "file")
      request.kind = Kind::file;
    else
      wire::reject(f.path("Query"), "must be \"files\", \"clients\" or \"file\"");
    if (request.kind == Kind::file)
      request.hash = wire::read_hash(f.required("Hash"), f.path("Hash"));
    request.offset = read_size(f, "Offset", request.offset);
    request.limit = std::min(read_size(f, "Limit", request.limit), page_max);
    return request;
  });
}

RepairFacts repair_facts(const Tracker& tracker, std::int64_t now_ms) {
  RepairFacts facts;
  facts.now_ms = now_ms;
  facts.repair_delay_ms = tracker.config().repair_delay_ms;
  facts.away_since_ms = &tracker.away_since();
  facts.holdings = &tracker.holdings();
  facts.is_staged = [&tracker](const Hash& hash) { return tracker.is_staged(hash); };
  facts.summary = [&tracker] {
    const TrackerGauges gauges = tracker.gauges();
    const TrackerMetrics& metrics = tracker.metrics();
    return RepairSummary{gauges.repairs_in_flight,
                         metrics.repairs_started,
                         metrics.repairs_ended,
                         metrics.repairs_failed,
                         gauges.under_replicated_fragments,
                         gauges.unavailable_fragments,
                         tracker.config().repair_delay_ms};
  };
  return facts;
}

Answer answer(const DistributionView& view, std::size_t replicas, const Request& request,
              const RepairFacts* facts) {
  Answer a;
  a.replicas = replicas;
  a.fragment_size_bytes = view.fragment_size_bytes();
  a.revision = view.revision();
  std::map<Hash, std::size_t> holders;
  if (request.kind != Kind::clients)
    for (const auto& [id, client] : view.clients())
      for (const auto& hash : client.stored_fragments) ++holders[hash];
  const Away away = facts && request.kind != Kind::clients ? away_of(*facts) : Away{};

  switch (request.kind) {
    case Kind::files: {
      a.total = view.files().size();
      const auto [first, last] = page_of(a.total, request);
      a.offset = first;
      auto it = view.files().begin();
      std::advance(it, static_cast<std::ptrdiff_t>(first));
      for (std::size_t i = first; i < last; ++i, ++it)
        a.files.push_back(summarize(it->first, it->second, holders, replicas, facts, away));
      break;
    }
    case Kind::clients: {
      a.total = view.clients().size();
      const auto [first, last] = page_of(a.total, request);
      a.offset = first;
      auto it = view.clients().begin();
      std::advance(it, static_cast<std::ptrdiff_t>(first));
      for (std::size_t i = first; i < last; ++i, ++it)
        a.clients.push_back(ClientSummary{it->first, it->second.endpoints,
                                          it->second.stored_fragments.size(),
                                          view.used_bytes(it->first), it->second.capacity_bytes});
      if (!facts) break;
      // The away edges of the same page of their own list: a page stays within page_max entries
      // of each list, and the requester pages on until both are done.
      Away all_away = away_of(*facts);
      a.away_total = all_away.clients.size();
      const auto [away_first, away_last] = page_of(*a.away_total, request);
      a.away.assign(std::make_move_iterator(all_away.clients.begin() +
                                            static_cast<std::ptrdiff_t>(away_first)),
                    std::make_move_iterator(all_away.clients.begin() +
                                            static_cast<std::ptrdiff_t>(away_last)));
      if (facts->summary) a.repair = facts->summary();
      break;
    }
    case Kind::file: {
      const auto file = view.files().find(*request.hash);
      if (file == view.files().end()) {
        a.error = "no file " + request.hash->to_hex();
        break;
      }
      a.file = summarize(file->first, file->second, holders, replicas, facts, away);
      const auto& sequence = file->second.fragment_sequence;
      a.total = sequence.size();
      const auto [first, last] = page_of(a.total, request);
      a.offset = first;
      // Holder lists only for this page: one pass over the clients per page.
      std::map<Hash, std::vector<ClientId>> named;
      for (std::size_t i = first; i < last; ++i) named[sequence[i]];
      for (const auto& [id, client] : view.clients())
        for (auto& [hash, ids] : named)
          if (client.stored_fragments.count(hash)) ids.push_back(id);
      for (std::size_t i = first; i < last; ++i) {
        const auto fragment = view.fragments().find(sequence[i]);
        a.fragments.push_back(FragmentHolders{
            sequence[i], fragment == view.fragments().end() ? 0 : fragment->second.size_bytes,
            named[sequence[i]]});
      }
      break;
    }
  }
  return a;
}

std::string encode_answer(const Answer& a) {
  if (a.error) return json{{"Error", *a.error}}.dump();
  json j{{"Replicas", a.replicas},
         {"FragmentSize", a.fragment_size_bytes},
         {"Revision", a.revision},
         {"Total", a.total},
         {"Offset", a.offset}};
  if (!a.files.empty()) {
    json files = json::array();
    for (const auto& f : a.files) files.push_back(file_json(f));
    j["Files"] = std::move(files);
  }
  if (!a.clients.empty()) {
    json clients = json::array();
    for (const auto& c : a.clients) {
      json entry{{"ClientIdentifier", c.id},
                 {"Endpoints", c.endpoints},
                 {"Fragments", c.fragments},
                 {"Bytes", c.bytes}};
      if (c.capacity_bytes) entry["Capacity"] = *c.capacity_bytes;
      clients.push_back(std::move(entry));
    }
    j["Clients"] = std::move(clients);
  }
  if (a.away_total) j["AwayTotal"] = *a.away_total;
  if (!a.away.empty()) {
    json away = json::array();
    for (const auto& c : a.away)
      away.push_back(json{{"ClientIdentifier", c.id},
                          {"AwayMs", c.away_ms},
                          {"CountsForMs", c.counts_for_ms},
                          {"Fragments", c.fragments}});
    j["Away"] = std::move(away);
  }
  if (a.repair) {
    const RepairSummary& r = *a.repair;
    j["Repair"] = json{{"InFlight", r.in_flight},
                       {"Started", r.started},
                       {"Ended", r.ended},
                       {"Failed", r.failed},
                       {"UnderReplicated", r.fragments_under_replicated},
                       {"Unavailable", r.fragments_unavailable},
                       {"DelayMs", r.delay_ms}};
  }
  if (a.file) {
    j["File"] = file_json(*a.file);
    json fragments = json::array();
    for (const auto& f : a.fragments)
      fragments.push_back(
          json{{"Hash", f.hash.to_hex()}, {"Size", f.size_bytes}, {"Holders", f.holders}});
    j["FragmentHolders"] = std::move(fragments);
  }
  return j.dump();
}

Result<Answer> decode_answer(std::string_view payload) noexcept {
  return wire::decode_untrusted<Answer>([&] {
    const auto document = wire::parse_json(payload, answer_payload_bytes_max);
    const auto f = wire::Fields::of_document(document);
    Answer a;
    if (const auto* error = f.optional("Error")) {
      a.error = wire::read_string(*error, f.path("Error"), 0, limits::reason_bytes_max);
      return a;
    }
    constexpr auto count_max = std::numeric_limits<std::int64_t>::max();
    auto count = [&](std::string_view name) {
      return static_cast<std::size_t>(wire::read_int(f.required(name), f.path(name), 0, count_max));
    };
    a.replicas = count("Replicas");
    a.fragment_size_bytes = wire::read_int(f.required("FragmentSize"), f.path("FragmentSize"), 0,
                                           limits::fragment_size_bytes_max);
    a.revision = wire::read_uint(f.required("Revision"), f.path("Revision"));
    a.total = count("Total");
    a.offset = count("Offset");
    if (const auto* files = optional_array(f, "Files", page_max))
      for (std::size_t i = 0; i < files->size(); ++i)
        a.files.push_back(read_file_summary((*files)[i], wire::index_path(f.path("Files"), i)));
    if (const auto* clients = optional_array(f, "Clients", page_max)) {
      for (std::size_t i = 0; i < clients->size(); ++i) {
        const auto path = wire::index_path(f.path("Clients"), i);
        wire::read_object((*clients)[i], path, 16);
        const wire::Fields c((*clients)[i], path);
        ClientSummary summary;
        summary.id = wire::read_string(c.required("ClientIdentifier"), c.path("ClientIdentifier"),
                                       1, limits::client_id_bytes_max);
        summary.endpoints =
            wire::read_string_set(c.required("Endpoints"), c.path("Endpoints"),
                                  limits::endpoints_per_client_max, 1, limits::endpoint_bytes_max);
        summary.fragments = static_cast<std::size_t>(
            wire::read_int(c.required("Fragments"), c.path("Fragments"), 0, count_max));
        summary.bytes = wire::read_int(c.required("Bytes"), c.path("Bytes"), 0, count_max);
        if (const auto* capacity = c.optional("Capacity"))
          summary.capacity_bytes = wire::read_int(*capacity, c.path("Capacity"), 0, count_max);
        a.clients.push_back(std::move(summary));
      }
    }
    if (f.optional("AwayTotal")) a.away_total = count("AwayTotal");
    if (const auto* away = optional_array(f, "Away", page_max)) {
      for (std::size_t i = 0; i < away->size(); ++i) {
        const auto path = wire::index_path(f.path("Away"), i);
        wire::read_object((*away)[i], path, 16);
        const wire::Fields c((*away)[i], path);
        AwayClient client;
        client.id = wire::read_string(c.required("ClientIdentifier"), c.path("ClientIdentifier"), 1,
                                      limits::client_id_bytes_max);
        client.away_ms = wire::read_int(c.required("AwayMs"), c.path("AwayMs"), 0, count_max);
        client.counts_for_ms =
            wire::read_int(c.required("CountsForMs"), c.path("CountsForMs"), 0, count_max);
        client.fragments = static_cast<std::size_t>(
            wire::read_int(c.required("Fragments"), c.path("Fragments"), 0, count_max));
        a.away.push_back(std::move(client));
      }
    }
    if (const auto* repair = f.optional("Repair")) {
      wire::read_object(*repair, f.path("Repair"), 16);
      const wire::Fields r(*repair, f.path("Repair"));
      auto number = [&](std::string_view name) {
        return wire::read_int(r.required(name), r.path(name), 0, count_max);
      };
      RepairSummary summary;
      summary.in_flight = static_cast<std::size_t>(number("InFlight"));
      summary.started = wire::read_uint(r.required("Started"), r.path("Started"));
      summary.ended = wire::read_uint(r.required("Ended"), r.path("Ended"));
      summary.failed = wire::read_uint(r.required("Failed"), r.path("Failed"));
      summary.fragments_under_replicated = static_cast<std::size_t>(number("UnderReplicated"));
      summary.fragments_unavailable = static_cast<std::size_t>(number("Unavailable"));
      summary.delay_ms = number("DelayMs");
      a.repair = summary;
    }
    if (const auto* file = f.optional("File")) {
      a.file = read_file_summary(*file, f.path("File"));
      if (const auto* fragments = optional_array(f, "FragmentHolders", page_max)) {
        for (std::size_t i = 0; i < fragments->size(); ++i) {
          const auto path = wire::index_path(f.path("FragmentHolders"), i);
          wire::read_object((*fragments)[i], path, 16);
          const wire::Fields h((*fragments)[i], path);
          FragmentHolders holders;
          holders.hash = wire::read_hash(h.required("Hash"), h.path("Hash"));
          holders.size_bytes = wire::read_int(h.required("Size"), h.path("Size"), 0,
                                              limits::fragment_size_bytes_max);
          for (const auto& id :
               wire::read_string_set(h.required("Holders"), h.path("Holders"),
                                     limits::clients_per_event_max, 1, limits::client_id_bytes_max))
            holders.holders.push_back(id);
          a.fragments.push_back(std::move(holders));
        }
      }
    }
    return a;
  });
}

std::optional<std::string_view> requester_of_response_topic(std::string_view topic) {
  if (topic.substr(0, response_prefix.size()) != response_prefix ||
      topic.find_first_of("+#") != std::string_view::npos)
    return std::nullopt;
  const std::string_view rest = topic.substr(response_prefix.size());
  const std::string_view requester = rest.substr(0, rest.find('/'));
  if (requester.empty() || requester.size() > limits::client_id_bytes_max) return std::nullopt;
  return requester;
}

}  // namespace mqds::query
