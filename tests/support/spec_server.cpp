// The specification-only torrent server (spec_server.hpp). Every payload is read with nlohmann
// from the specification's field tables: a field the event requires must be present, not null and
// of its JSON type, or the whole event is dropped; unknown fields are skipped.
#include "support/spec_server.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <nlohmann/json.hpp>

#include "mqds/base64.hpp"
#include "mqds/hash.hpp"

namespace mqds::spec_only {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace topic {
constexpr std::string_view tracker_hello = "tracker/hello";
constexpr std::string_view tracker_goodbye = "tracker/goodbye";
constexpr std::string_view join_requested = "clients/join/requested";
constexpr std::string_view join_accepted = "clients/join/accepted";
constexpr std::string_view join_denied = "clients/join/denied";
constexpr std::string_view join_succeeded = "clients/join/succeeded";
constexpr std::string_view registered = "clients/registered";
constexpr std::string_view client_goodbye = "clients/goodbye";
constexpr std::string_view file_info = "files/info";
constexpr std::string_view started = "fragments/distribution/started";
constexpr std::string_view requested = "fragments/distribution/requested";
constexpr std::string_view delivered = "fragments/distribution/delivered";
constexpr std::string_view obtained = "fragments/distribution/obtained";
constexpr std::string_view failed = "fragments/distribution/failed";
constexpr std::string_view ended = "fragments/distribution/ended";
}  // namespace topic

// ClientJoinDeniedCode: WrongFragmentSize, WrongHashAlgorithm, EndpointConflict, Other.
constexpr std::int64_t denied_codes[] = {1, 2, 4, 128};

// A field the event requires: present and not null.
const json* required(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<std::string> as_string(const json* value) {
  if (!value || !value->is_string()) return std::nullopt;
  return value->get<std::string>();
}

std::optional<std::int64_t> as_int64(const json* value) {
  if (!value) return std::nullopt;
  if (value->is_number_unsigned()) {
    const auto u = value->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (value->is_number_integer()) return value->get<std::int64_t>();
  return std::nullopt;
}

// System.Guid's "D" form: 8-4-4-4-12 hexadecimal digits, either case.
bool is_guid(const json* value) {
  const auto text = as_string(value);
  if (!text || text->size() != 36) return false;
  for (std::size_t i = 0; i < text->size(); ++i) {
    const char c = (*text)[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

std::optional<std::vector<std::string>> as_strings(const json* value) {
  if (!value || !value->is_array()) return std::nullopt;
  std::vector<std::string> out;
  out.reserve(value->size());
  for (const auto& entry : *value) {
    if (!entry.is_string()) return std::nullopt;
    out.push_back(entry.get<std::string>());
  }
  return out;
}

std::optional<std::set<std::string>> as_string_set(const json* value) {
  auto list = as_strings(value);
  if (!list) return std::nullopt;
  return std::set<std::string>(list->begin(), list->end());
}

std::optional<FileMeta> as_file(const json& value) {
  if (!value.is_object()) return std::nullopt;
  const auto size = as_int64(required(value, "Size"));
  auto sequence = as_strings(required(value, "FragmentSequence"));
  if (!size || !sequence) return std::nullopt;
  return FileMeta{*size, std::move(*sequence)};
}

std::optional<std::map<std::string, FileMeta>> as_files(const json* value) {
  if (!value || !value->is_object()) return std::nullopt;
  std::map<std::string, FileMeta> out;
  for (const auto& [hash, entry] : value->items()) {
    auto file = as_file(entry);
    if (!file) return std::nullopt;
    out[hash] = std::move(*file);
  }
  return out;
}

std::optional<std::map<std::string, std::int64_t>> as_fragments(const json* value) {
  if (!value || !value->is_object()) return std::nullopt;
  std::map<std::string, std::int64_t> out;
  for (const auto& [hash, entry] : value->items()) {
    if (!entry.is_object()) return std::nullopt;
    const auto size = as_int64(required(entry, "Size"));
    if (!size) return std::nullopt;
    out[hash] = *size;
  }
  return out;
}

std::optional<ClientMeta> as_client(const json* value) {
  if (!value || !value->is_object()) return std::nullopt;
  auto endpoints = as_string_set(required(*value, "Endpoints"));
  auto stored = as_string_set(required(*value, "StoredFragments"));
  if (!endpoints || !stored) return std::nullopt;
  return ClientMeta{std::move(*endpoints), std::move(*stored)};
}

std::optional<std::map<std::string, ClientMeta>> as_clients(const json* value) {
  if (!value || !value->is_object()) return std::nullopt;
  std::map<std::string, ClientMeta> out;
  for (const auto& [id, entry] : value->items()) {
    auto client = as_client(&entry);
    if (!client) return std::nullopt;
    out[id] = std::move(*client);
  }
  return out;
}

// The specification's events a torrent server reads, each with only its own fields.
struct Accepted {
  std::string client_identifier;
  std::int64_t fragment_size = 0;
  std::map<std::string, FileMeta> add_files;
  std::map<std::string, std::int64_t> add_fragments;
  std::set<std::string> remove_files;
  std::set<std::string> remove_fragments;
  std::map<std::string, ClientMeta> clients;
};

std::optional<Accepted> read_accepted(const json& e) {
  Accepted a;
  auto id = as_string(required(e, "ClientIdentifier"));
  auto size = as_int64(required(e, "FragmentSize"));
  auto add_files = as_files(required(e, "AddFileInfos"));
  auto add_fragments = as_fragments(required(e, "AddFragmentInfos"));
  auto remove_files = as_string_set(required(e, "RemoveFileInfos"));
  auto remove_fragments = as_string_set(required(e, "RemoveFragmentInfos"));
  auto clients = as_clients(required(e, "Clients"));
  if (!id || !size || !add_files || !add_fragments || !remove_files || !remove_fragments ||
      !clients)
    return std::nullopt;
  a.client_identifier = std::move(*id);
  a.fragment_size = *size;
  a.add_files = std::move(*add_files);
  a.add_fragments = std::move(*add_fragments);
  a.remove_files = std::move(*remove_files);
  a.remove_fragments = std::move(*remove_fragments);
  a.clients = std::move(*clients);
  return a;
}

struct Denied {
  std::string client_identifier;
  std::int64_t reason_code = 0;
  std::string reason;
};

std::optional<Denied> read_denied(const json& e) {
  auto id = as_string(required(e, "ClientIdentifier"));
  const auto code = as_int64(required(e, "ReasonCode"));
  if (!id || !code) return std::nullopt;
  if (std::find(std::begin(denied_codes), std::end(denied_codes), *code) == std::end(denied_codes))
    return std::nullopt;  // not a ClientJoinDeniedCode: the enum cannot be read
  Denied d{std::move(*id), *code, {}};
  if (const json* reason = required(e, "Reason")) {  // optional, but a string when present
    if (!reason->is_string()) return std::nullopt;
    d.reason = reason->get<std::string>();
  }
  return d;
}

struct Registered {
  std::string client_identifier;
  ClientMeta info;
  std::map<std::string, FileMeta> added_files;
  std::map<std::string, std::int64_t> added_fragments;
};

std::optional<Registered> read_registered(const json& e) {
  auto id = as_string(required(e, "ClientIdentifier"));
  auto info = as_client(required(e, "Info"));
  auto files = as_files(required(e, "AddedFiles"));
  auto fragments = as_fragments(required(e, "AddedFragments"));
  if (!id || !info || !files || !fragments) return std::nullopt;
  return Registered{std::move(*id), std::move(*info), std::move(*files), std::move(*fragments)};
}

std::string upper(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

std::string_view phase_name(Phase phase) {
  switch (phase) {
    case Phase::waiting_for_hello: return "waiting for TrackerHello";
    case Phase::joining: return "joining";
    case Phase::awaiting_registration: return "awaiting its ClientRegistered";
    case Phase::registered: return "registered";
  }
  return "?";
}

Server::Server(Config config, Disk disk) : config_(std::move(config)), disk_(std::move(disk)) {}

const std::vector<std::string>& Server::topics() {
  static const std::vector<std::string> all = {
      std::string(topic::tracker_hello), std::string(topic::tracker_goodbye),
      std::string(topic::join_accepted), std::string(topic::join_denied),
      std::string(topic::registered),    std::string(topic::client_goodbye),
      std::string(topic::file_info),     std::string(topic::started),
      std::string(topic::delivered),     std::string(topic::ended),
  };
  return all;
}

std::string Server::next_event_id() {
  // Unique without a random source: the SHA-256 of the client id and a counter, as a version 4
  // GUID.
  const Hash digest = sha256(config_.client_id + "/" + std::to_string(++events_sent_));
  auto b = digest.digest;
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3F) | 0x80);
  static constexpr char digits[] = "0123456789abcdef";
  std::string text;
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    text += digits[b[i] >> 4];
    text += digits[b[i] & 0x0F];
  }
  return text;
}

Message Server::event(std::string_view topic, std::string json_text) const {
  return Message{std::string(topic), std::move(json_text)};
}

std::vector<Message> Server::join(std::int64_t now_ms) {
  ordered_json request;
  request["EventId"] = next_event_id();
  request["HashAlgorithm"] = "SHA256";
  if (disk_.fragment_size && !disk_.fragments.empty())
    request["FragmentSize"] = *disk_.fragment_size;
  ordered_json files = ordered_json::object();
  for (const auto& [hash, file] : disk_.files)
    files[hash] = ordered_json{{"Size", file.size}, {"FragmentSequence", file.sequence}};
  request["KnownFileInfos"] = std::move(files);
  ordered_json stored = ordered_json::object();
  for (const auto& [hash, data] : disk_.fragments)
    stored[hash] = ordered_json{{"Size", static_cast<std::int64_t>(data.size())}};
  request["StoredFragments"] = std::move(stored);
  request["Endpoints"] = ordered_json::array({config_.endpoint});
  phase_ = Phase::joining;
  join_deadline_ms_ = now_ms + config_.timeout_ms;
  ++counters_.joins_requested;
  return {event(topic::join_requested, request.dump())};
}

std::vector<Message> Server::on_connected(std::int64_t now_ms) {
  return join(now_ms);
}

std::vector<Message> Server::goodbye() {
  ordered_json bye;
  bye["EventId"] = next_event_id();
  phase_ = Phase::waiting_for_hello;
  join_deadline_ms_.reset();
  busy_.reset();
  return {event(topic::client_goodbye, bye.dump())};
}

std::optional<std::int64_t> Server::next_deadline_ms() const {
  std::optional<std::int64_t> next = join_deadline_ms_;
  if (busy_ && (!next || busy_->deadline_ms < *next)) next = busy_->deadline_ms;
  return next;
}

std::vector<Message> Server::on_tick(std::int64_t now_ms) {
  if (join_deadline_ms_ && *join_deadline_ms_ <= now_ms) {
    // The specification's Client Join with timeouts: give up and wait for the next TrackerHello.
    ++counters_.timeouts;
    join_deadline_ms_.reset();
    phase_ = Phase::waiting_for_hello;
  }
  if (busy_ && busy_->deadline_ms <= now_ms) {
    ++counters_.delivery_timeouts;
    busy_.reset();
  }
  return {};
}

std::vector<Message> Server::on_message(std::int64_t now_ms, std::string_view topic,
                                        std::string_view payload) {
  const json e = json::parse(payload, nullptr, false);
  if (e.is_discarded() || !e.is_object() || !is_guid(required(e, "EventId"))) {
    ++counters_.dropped_malformed;
    return {};
  }
  auto malformed = [this]() -> std::vector<Message> {
    ++counters_.dropped_malformed;
    return {};
  };
  const bool registered = phase_ == Phase::registered;
  auto unregistered = [this]() -> std::vector<Message> {
    ++counters_.dropped_unregistered;
    return {};
  };

  if (topic == topic::tracker_hello) {
    ++counters_.hellos;
    view_ = View{};
    busy_.reset();
    received_.clear();
    return join(now_ms);
  }
  if (topic == topic::tracker_goodbye) {
    // Every registered client is unregistered and waits for the next TrackerHello.
    phase_ = Phase::waiting_for_hello;
    join_deadline_ms_.reset();
    busy_.reset();
    return {};
  }
  if (topic == topic::join_accepted) {
    auto a = read_accepted(e);
    if (!a) return malformed();
    if (a->client_identifier != config_.client_id) {
      ++counters_.ignored_other_clients;
      return {};
    }
    if (phase_ != Phase::joining) {
      ++counters_.ignored_out_of_place;
      return {};
    }
    // Step 7: change the view (and the storage) as the tracker says, then step 8.
    for (const auto& hash : a->remove_files) disk_.files.erase(hash);
    for (const auto& hash : a->remove_fragments)
      if (disk_.fragments.erase(hash)) ++counters_.fragments_deleted;
    for (const auto& [hash, file] : a->add_files) disk_.files[hash] = file;
    disk_.fragment_size = a->fragment_size;
    view_ = View{};
    view_.files = disk_.files;
    for (const auto& [hash, data] : disk_.fragments)
      view_.fragments[hash] = static_cast<std::int64_t>(data.size());
    for (const auto& [hash, size] : a->add_fragments) view_.fragments[hash] = size;
    for (const auto& hash : a->remove_fragments) view_.fragments.erase(hash);
    view_.clients = std::move(a->clients);
    phase_ = Phase::awaiting_registration;
    join_deadline_ms_ = now_ms + config_.timeout_ms;
    ordered_json succeeded;
    succeeded["EventId"] = next_event_id();
    return {event(topic::join_succeeded, succeeded.dump())};
  }
  if (topic == topic::join_denied) {
    auto d = read_denied(e);
    if (!d) return malformed();
    if (d->client_identifier != config_.client_id) {
      ++counters_.ignored_other_clients;
      return {};
    }
    if (phase_ != Phase::joining && phase_ != Phase::awaiting_registration) {
      ++counters_.ignored_out_of_place;
      return {};
    }
    ++counters_.denials;
    counters_.last_reason_code = d->reason_code;
    counters_.last_reason = std::move(d->reason);
    phase_ = Phase::waiting_for_hello;
    join_deadline_ms_.reset();
    return {};
  }
  if (topic == topic::registered) {
    auto r = read_registered(e);
    if (!r) return malformed();
    if (!registered) {
      if (r->client_identifier != config_.client_id || phase_ != Phase::awaiting_registration)
        return unregistered();
      phase_ = Phase::registered;
      join_deadline_ms_.reset();
    }
    for (const auto& [hash, file] : r->added_files) {
      view_.files[hash] = file;
      disk_.files[hash] = file;
    }
    for (const auto& [hash, size] : r->added_fragments) view_.fragments[hash] = size;
    view_.clients[r->client_identifier] = std::move(r->info);
    return {};
  }
  if (topic == topic::client_goodbye) {
    // Only an EventId: nobody can tell who left (mqds's ClientIdentifier is an unknown field).
    ++counters_.goodbyes_ignored;
    return {};
  }
  if (topic == topic::file_info) {
    auto hash = as_string(required(e, "Hash"));
    const auto size = as_int64(required(e, "Size"));
    auto sequence = as_strings(required(e, "FragmentSequence"));
    if (!hash || !size || !sequence) return malformed();
    if (!registered) return unregistered();
    FileMeta file{*size, std::move(*sequence)};
    view_.files[*hash] = file;
    disk_.files[*hash] = std::move(file);
    return {};
  }
  if (topic == topic::started) {
    auto hash = as_string(required(e, "Hash"));
    const auto size = as_int64(required(e, "Size"));
    if (!hash || !size) return malformed();
    if (!registered) return unregistered();
    if (busy_) {
      ++counters_.ignored_busy;
      return {};
    }
    busy_ = Distribution{*hash, now_ms + config_.timeout_ms};
    ++counters_.requested;
    ordered_json request;
    request["EventId"] = next_event_id();
    request["Hash"] = *hash;
    return {event(topic::requested, request.dump())};
  }
  if (topic == topic::delivered) {
    auto hash = as_string(required(e, "Hash"));
    const auto data_text = as_string(required(e, "Data"));
    const auto receivers = as_string_set(required(e, "Receivers"));
    if (!hash || !data_text || !receivers) return malformed();
    std::vector<std::uint8_t> data;
    if (!base64_decode(*data_text, data)) return malformed();  // byte[] cannot be read
    if (!registered) return unregistered();
    if (!busy_ || busy_->hash != *hash || !receivers->count(config_.client_id)) {
      ++counters_.ignored_out_of_place;
      return {};
    }
    busy_.reset();
    ordered_json answer;
    answer["EventId"] = next_event_id();
    answer["Hash"] = *hash;
    if (sha256(std::span<const std::uint8_t>(data)).to_hex() != upper(*hash)) {
      ++counters_.failed;
      return {event(topic::failed, answer.dump())};
    }
    received_[*hash] = disk_.fragments.count(*hash) != 0;
    disk_.fragments[*hash] = std::move(data);
    ++counters_.obtained;
    return {event(topic::obtained, answer.dump())};
  }
  if (topic == topic::ended) {
    auto hash = as_string(required(e, "Hash"));
    const auto size = as_int64(required(e, "Size"));
    const auto receivers = as_string_set(required(e, "Receivers"));
    if (!hash || !size || !receivers) return malformed();
    if (!registered) return unregistered();
    view_.fragments[*hash] = *size;
    for (const auto& receiver : *receivers) {
      auto client = view_.clients.find(receiver);
      if (client != view_.clients.end()) client->second.stored.insert(*hash);
    }
    const auto received = received_.find(*hash);
    if (received != received_.end()) {
      const bool held_before = received->second;
      received_.erase(received);
      if (!receivers->count(config_.client_id) && !held_before) {
        disk_.fragments.erase(*hash);
        ++counters_.fragments_deleted;
      }
    }
    return {};
  }
  ++counters_.ignored_out_of_place;  // a topic it does not subscribe to
  return {};
}

}  // namespace mqds::spec_only
