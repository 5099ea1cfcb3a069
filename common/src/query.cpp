#include "mqds/query.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "mqds/limits.hpp"

namespace mqds::query {

namespace {

using nlohmann::json;

constexpr std::size_t answer_payload_bytes_max = 64u * 1024u * 1024u;

std::optional<DecodeError> read_size(const json& object, const char* field, std::size_t& value) {
  const auto it = object.find(field);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_unsigned()) return DecodeError{field, "must be a non-negative integer"};
  value = static_cast<std::size_t>(std::min<std::uint64_t>(it->get<std::uint64_t>(), SIZE_MAX));
  return std::nullopt;
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

// A typed reader for answers: the first problem wins, and later reads are no-ops.
struct Reader {
  std::optional<DecodeError> error;

  const json* field(const json& object, const char* name, bool required = true) {
    if (error) return nullptr;
    if (!object.is_object()) {
      error = DecodeError{name, "is inside something that is not an object"};
      return nullptr;
    }
    const auto it = object.find(name);
    if (it == object.end() || it->is_null()) {
      if (required) error = DecodeError{name, "missing"};
      return nullptr;
    }
    return &*it;
  }
  template <class T>
  T number(const json& object, const char* name, bool required = true) {
    const json* v = field(object, name, required);
    if (!v) return T{};
    if (!v->is_number_integer()) {
      error = DecodeError{name, "must be an integer"};
      return T{};
    }
    return v->get<T>();
  }
  std::string text(const json& object, const char* name) {
    const json* v = field(object, name);
    if (!v) return {};
    if (!v->is_string()) {
      error = DecodeError{name, "must be a string"};
      return {};
    }
    return v->get<std::string>();
  }
  Hash hash(const json& object, const char* name) {
    const std::string t = text(object, name);
    if (error) return {};
    auto h = Hash::from_hex(t);
    if (!h) error = DecodeError{name, "must be 64 hexadecimal characters"};
    return h.value_or(Hash{});
  }
  const json* array(const json& object, const char* name) {
    const json* v = field(object, name, false);
    if (v && !v->is_array()) {
      error = DecodeError{name, "must be an array"};
      return nullptr;
    }
    return v;
  }
  FileSummary file(const json& f) {
    return FileSummary{hash(f, "Hash"), number<std::int64_t>(f, "Size"),
                       number<std::size_t>(f, "Fragments"), number<std::size_t>(f, "ReplicasMin"),
                       number<std::size_t>(f, "UnderReplicated")};
  }
};

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

std::variant<Request, DecodeError> decode_request(std::string_view payload) {
  if (payload.size() > request_payload_bytes_max)
    return DecodeError{"",
                       "is longer than " + std::to_string(request_payload_bytes_max) + " bytes"};
  const json j = json::parse(payload, nullptr, false);
  if (j.is_discarded()) return DecodeError{"", "is not JSON"};
  if (!j.is_object()) return DecodeError{"", "must be a JSON object"};
  Request request;
  const auto kind = j.find("Query");
  if (kind == j.end() || !kind->is_string())
    return DecodeError{"Query", "must be \"files\", \"clients\" or \"file\""};
  const auto& name = kind->get_ref<const std::string&>();
  if (name == "files")
    request.kind = Kind::files;
  else if (name == "clients")
    request.kind = Kind::clients;
  else if (name == "file")
    request.kind = Kind::file;
  else
    return DecodeError{"Query", "must be \"files\", \"clients\" or \"file\""};
  if (request.kind == Kind::file) {
    const auto hash = j.find("Hash");
    if (hash == j.end() || !hash->is_string()) return DecodeError{"Hash", "missing"};
    request.hash = Hash::from_hex(hash->get_ref<const std::string&>());
    if (!request.hash) return DecodeError{"Hash", "must be 64 hexadecimal characters"};
  }
  if (auto e = read_size(j, "Offset", request.offset)) return *e;
  if (auto e = read_size(j, "Limit", request.limit)) return *e;
  request.limit = std::min(request.limit, page_max);
  return request;
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

std::variant<Answer, DecodeError> decode_answer(std::string_view payload) {
  if (payload.size() > answer_payload_bytes_max) return DecodeError{"", "is too large"};
  const json j = json::parse(payload, nullptr, false);
  if (j.is_discarded()) return DecodeError{"", "is not JSON"};
  if (!j.is_object()) return DecodeError{"", "must be a JSON object"};
  Answer a;
  Reader r;
  if (j.contains("Error")) {
    a.error = r.text(j, "Error");
    if (r.error) return *r.error;
    return a;
  }
  a.replicas = r.number<std::size_t>(j, "Replicas");
  a.fragment_size_bytes = r.number<std::int64_t>(j, "FragmentSize");
  a.revision = r.number<std::uint64_t>(j, "Revision");
  a.total = r.number<std::size_t>(j, "Total");
  a.offset = r.number<std::size_t>(j, "Offset");
  if (const json* files = r.array(j, "Files"))
    for (const auto& f : *files) a.files.push_back(r.file(f));
  if (const json* clients = r.array(j, "Clients"))
    for (const auto& c : *clients) {
      ClientSummary s;
      s.id = r.text(c, "ClientIdentifier");
      if (const json* endpoints = r.array(c, "Endpoints"))
        for (const auto& e : *endpoints)
          if (e.is_string() && s.endpoints.size() < limits::endpoints_per_client_max)
            s.endpoints.insert(e.get<std::string>());
      s.fragments = r.number<std::size_t>(c, "Fragments");
      s.bytes = r.number<std::int64_t>(c, "Bytes");
      if (r.field(c, "Capacity", false)) s.capacity_bytes = r.number<std::int64_t>(c, "Capacity");
      a.clients.push_back(std::move(s));
    }
  if (const json* file = r.field(j, "File", false)) {
    a.file = r.file(*file);
    if (const json* fragments = r.array(j, "FragmentHolders"))
      for (const auto& f : *fragments) {
        FragmentHolders h{r.hash(f, "Hash"), r.number<std::int64_t>(f, "Size"), {}};
        if (const json* holders = r.array(f, "Holders"))
          for (const auto& id : *holders)
            if (id.is_string()) h.holders.push_back(id.get<std::string>());
        a.fragments.push_back(std::move(h));
      }
  }
  if (r.error) return *r.error;
  return a;
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
