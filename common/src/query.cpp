#include "mqds/query.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <map>

#include "mqds/limits.hpp"
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

FileSummary summarize(const Hash& hash, const FileMetadata& file,
                      const std::map<Hash, std::size_t>& holders, std::size_t replicas) {
  FileSummary summary{hash, file.size_bytes, file.fragment_sequence.size(), 0, 0};
  bool first = true;
  for (const auto& fragment : file.fragment_sequence) {
    const auto it = holders.find(fragment);
    const std::size_t count = it == holders.end() ? 0 : it->second;
    summary.replicas_min = first ? count : std::min(summary.replicas_min, count);
    first = false;
    if (count < replicas) ++summary.fragments_under_replicated;
  }
  return summary;
}

json file_json(const FileSummary& f) {
  return json{{"Hash", f.hash.to_hex()},
              {"Size", f.size_bytes},
              {"Fragments", f.fragments},
              {"ReplicasMin", f.replicas_min},
              {"UnderReplicated", f.fragments_under_replicated}};
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

Answer answer(const DistributionView& view, std::size_t replicas, const Request& request) {
  Answer a;
  a.replicas = replicas;
  a.fragment_size_bytes = view.fragment_size_bytes();
  a.revision = view.revision();
  std::map<Hash, std::size_t> holders;
  if (request.kind != Kind::clients)
    for (const auto& [id, client] : view.clients())
      for (const auto& hash : client.stored_fragments) ++holders[hash];

  switch (request.kind) {
    case Kind::files: {
      a.total = view.files().size();
      const auto [first, last] = page_of(a.total, request);
      a.offset = first;
      auto it = view.files().begin();
      std::advance(it, static_cast<std::ptrdiff_t>(first));
      for (std::size_t i = first; i < last; ++i, ++it)
        a.files.push_back(summarize(it->first, it->second, holders, replicas));
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
      break;
    }
    case Kind::file: {
      const auto file = view.files().find(*request.hash);
      if (file == view.files().end()) {
        a.error = "no file " + request.hash->to_hex();
        break;
      }
      a.file = summarize(file->first, file->second, holders, replicas);
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
