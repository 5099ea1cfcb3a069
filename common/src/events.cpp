// The JSON codec of the events.
//
// Theory of operation: encode() writes the compact JSON text directly, property by property in the
// order of the spec's parameter tables with the extension fields last. It does not build an
// nlohmann DOM first: nlohmann's insertion-ordered object checks every new key against all earlier
// ones, which is quadratic for the dictionaries of a large view, and a DOM costs several times the
// payload in memory. Every string that is not plain printable ASCII is escaped by nlohmann itself,
// so the text is byte for byte what nlohmann's dump() would produce.
//
// decode() treats its input as hostile. It bounds the payload size and the nesting depth before
// parsing, parses with nlohmann without exceptions, then checks every field for presence, type and
// range in table order, so the first problem found is deterministic and named by its JSON path.
// The checks are those of the core's one reader of untrusted input (wire_reader.hpp), which also
// turns every failure into an Error; nothing escapes decode().
#include "mqds/events.hpp"

#include <array>
#include <charconv>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <stdexcept>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "mqds/base64.hpp"
#include "mqds/limits.hpp"
#include "wire_reader.hpp"

namespace mqds {

namespace {

using json = nlohmann::json;
using wire::exceeds;
using wire::Fields;
using wire::index_path;
using wire::key_path;
using wire::read_array;
using wire::read_hash;
using wire::read_hash_set;
using wire::read_hash_text;
using wire::read_int;
using wire::read_object;
using wire::read_string;
using wire::read_uint;
using wire::read_uuid;
using wire::reject;

// Our schemas nest four levels deep (payload, Clients, a client, its Endpoints); the margin lets
// unknown extension fields of other implementations through.
constexpr std::size_t nesting_depth_max = 64;

// ---------------------------------------------------------------------------------------------
// Encoding

// Strings that are printable ASCII without quote or backslash are written as they are; anything
// else goes through nlohmann, which also replaces invalid UTF-8 (a reason text built from a system
// message, say) by U+FFFD instead of emitting a payload no peer can parse.
void append_json_string(std::string& out, std::string_view text) {
  bool plain = true;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7F || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out += '"';
    out += text;
    out += '"';
    return;
  }
  out += json(std::string(text)).dump(-1, ' ', false, json::error_handler_t::replace);
}

class JsonWriter {
 public:
  void open_object() {
    separate();
    out_ += '{';
    first_ = true;
  }
  void close_object() {
    out_ += '}';
    first_ = false;
  }
  void open_array() {
    separate();
    out_ += '[';
    first_ = true;
  }
  void close_array() {
    out_ += ']';
    first_ = false;
  }
  // Property names are our own PascalCase literals and need no escaping.
  void name(std::string_view property) {
    separate();
    out_ += '"';
    out_ += property;
    out_ += "\":";
    first_ = true;
  }
  // A dictionary key: a hash or a client identifier.
  void key(std::string_view text) {
    separate();
    append_json_string(out_, text);
    out_ += ':';
    first_ = true;
  }
  void string(std::string_view text) {
    separate();
    append_json_string(out_, text);
    first_ = false;
  }
  void hash(const Hash& hash) { string(hash.to_hex()); }
  void uuid(const Uuid& uuid) { string(uuid.to_string()); }
  template <typename Integer>
  void integer(Integer value) {
    static_assert(std::is_integral_v<Integer>);
    separate();
    std::array<char, 24> digits{};
    const auto end = std::to_chars(digits.data(), digits.data() + digits.size(), value).ptr;
    out_.append(digits.data(), end);
    first_ = false;
  }
  std::string take() { return std::move(out_); }

 private:
  void separate() {
    if (!first_) out_ += ',';
  }

  std::string out_;
  bool first_ = true;
};

void write_hash_set(JsonWriter& w, const std::set<Hash>& hashes) {
  w.open_array();
  for (const auto& h : hashes) w.hash(h);
  w.close_array();
}

void write_string_set(JsonWriter& w, const std::set<std::string>& strings) {
  w.open_array();
  for (const auto& s : strings) w.string(s);
  w.close_array();
}

void write_file_infos(JsonWriter& w, const FileInfos& files) {
  w.open_object();
  for (const auto& [hash, file] : files) {
    w.key(hash.to_hex());
    w.open_object();
    w.name("Size");
    w.integer(file.size_bytes);
    w.name("FragmentSequence");
    w.open_array();
    for (const auto& h : file.fragment_sequence) w.hash(h);
    w.close_array();
    w.close_object();
  }
  w.close_object();
}

void write_fragment_infos(JsonWriter& w, const FragmentInfos& fragments) {
  w.open_object();
  for (const auto& [hash, fragment] : fragments) {
    w.key(hash.to_hex());
    w.open_object();
    w.name("Size");
    w.integer(fragment.size_bytes);
    w.close_object();
  }
  w.close_object();
}

void write_client_metadata(JsonWriter& w, const ClientMetadata& client) {
  w.open_object();
  w.name("Endpoints");
  write_string_set(w, client.endpoints);
  w.name("StoredFragments");
  write_hash_set(w, client.stored_fragments);
  if (client.capacity_bytes) {
    w.name("Capacity");
    w.integer(*client.capacity_bytes);
  }
  w.close_object();
}

void write_optional_revision(JsonWriter& w, const std::optional<std::uint64_t>& revision) {
  if (revision) {
    w.name("Revision");
    w.integer(*revision);
  }
}

void write_optional_reason(JsonWriter& w, const std::optional<std::string>& reason) {
  if (reason) {
    w.name("Reason");
    w.string(*reason);
  }
}

void write_optional_request_event_id(JsonWriter& w, const std::optional<Uuid>& request_event_id) {
  if (request_event_id) {
    w.name("RequestEventId");
    w.uuid(*request_event_id);
  }
}

void write_fields(JsonWriter& w, const TrackerHello& e) {
  w.name("EventId");
  w.uuid(e.event_id);
}

void write_fields(JsonWriter& w, const TrackerGoodbye& e) {
  w.name("EventId");
  w.uuid(e.event_id);
}

// Field order follows the reference implementation's serializer (the examples of
// docs/wire-format.md), where it differs from the order of the spec's table.
void write_fields(JsonWriter& w, const ClientJoinRequested& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  if (e.fragment_size_bytes) {
    w.name("FragmentSize");
    w.integer(*e.fragment_size_bytes);
  }
  w.name("HashAlgorithm");
  w.string(e.hash_algorithm);
  w.name("KnownFileInfos");
  write_file_infos(w, e.known_file_infos);
  w.name("StoredFragments");
  write_fragment_infos(w, e.stored_fragments);
  w.name("Endpoints");
  write_string_set(w, e.endpoints);
  if (e.capacity_bytes) {
    w.name("Capacity");
    w.integer(*e.capacity_bytes);
  }
  if (!e.obtained_fragments.empty()) {
    w.name("ObtainedFragments");
    write_fragment_infos(w, e.obtained_fragments);
  }
  if (!e.delivery_encodings.empty()) {
    w.name("DeliveryEncodings");
    write_string_set(w, e.delivery_encodings);
  }
}

void write_fields(JsonWriter& w, const ClientJoinAccepted& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("ClientIdentifier");
  w.string(e.client_identifier);
  w.name("FragmentSize");
  w.integer(e.fragment_size_bytes);
  w.name("AddFileInfos");
  write_file_infos(w, e.add_file_infos);
  w.name("AddFragmentInfos");
  write_fragment_infos(w, e.add_fragment_infos);
  w.name("RemoveFileInfos");
  write_hash_set(w, e.remove_file_infos);
  w.name("RemoveFragmentInfos");
  write_hash_set(w, e.remove_fragment_infos);
  w.name("Clients");
  w.open_object();
  for (const auto& [id, client] : e.clients) {
    w.key(id);
    write_client_metadata(w, client);
  }
  w.close_object();
  write_optional_request_event_id(w, e.request_event_id);
  write_optional_revision(w, e.revision);
  if (e.replicas) {
    w.name("Replicas");
    w.integer(*e.replicas);
  }
}

void write_fields(JsonWriter& w, const ClientJoinDenied& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("ClientIdentifier");
  w.string(e.client_identifier);
  w.name("ReasonCode");
  w.integer(e.reason_code);
  write_optional_reason(w, e.reason);
  write_optional_request_event_id(w, e.request_event_id);
}

void write_fields(JsonWriter& w, const ClientJoinSucceeded& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  write_optional_request_event_id(w, e.request_event_id);
}

void write_fields(JsonWriter& w, const ClientJoinFailed& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  write_optional_reason(w, e.reason);
  write_optional_request_event_id(w, e.request_event_id);
}

void write_fields(JsonWriter& w, const ClientRegistered& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("ClientIdentifier");
  w.string(e.client_identifier);
  w.name("Info");
  write_client_metadata(w, e.info);
  w.name("AddedFiles");
  write_file_infos(w, e.added_files);
  w.name("AddedFragments");
  write_fragment_infos(w, e.added_fragments);
  write_optional_revision(w, e.revision);
  write_optional_request_event_id(w, e.request_event_id);
}

void write_fields(JsonWriter& w, const ClientGoodbye& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  if (e.client_identifier) {
    w.name("ClientIdentifier");
    w.string(*e.client_identifier);
  }
  write_optional_revision(w, e.revision);
}

void write_fields(JsonWriter& w, const FileInfoPublished& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("Hash");
  w.hash(e.hash);
  w.name("Size");
  w.integer(e.size_bytes);
  w.name("FragmentSequence");
  w.open_array();
  for (const auto& h : e.fragment_sequence) w.hash(h);
  w.close_array();
  write_optional_revision(w, e.revision);
}

void write_fields(JsonWriter& w, const FragmentDistributionStarted& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("Hash");
  w.hash(e.hash);
  w.name("Size");
  w.integer(e.size_bytes);
}

void write_fields(JsonWriter& w, const FragmentDistributionRequested& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("Hash");
  w.hash(e.hash);
}

void write_fields(JsonWriter& w, const FragmentDistributionObtained& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("Hash");
  w.hash(e.hash);
}

void write_fields(JsonWriter& w, const FragmentDistributionFailed& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("Hash");
  w.hash(e.hash);
  write_optional_reason(w, e.reason);
}

void write_fields(JsonWriter& w, const FragmentDistributionEnded& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("Hash");
  w.hash(e.hash);
  w.name("Size");
  w.integer(e.size_bytes);
  w.name("Receivers");
  write_string_set(w, e.receivers);
  write_optional_revision(w, e.revision);
}

void write_fields(JsonWriter& w, const TrackerRevision& e) {
  w.name("EventId");
  w.uuid(e.event_id);
  w.name("Revision");
  w.integer(e.revision);
}

// A Delivered payload is everything around the Base64 of the fragment: the text before it and the
// text after it, both small, so the fragment itself is encoded once, straight into its place.
struct DeliveredFrame {
  std::string head;
  std::string tail;
};

DeliveredFrame delivered_frame(const Uuid& event_id, const Hash& hash,
                               const std::set<ClientId>& receivers,
                               std::optional<std::uint64_t> revision) {
  DeliveredFrame frame;
  frame.head = R"({"EventId":")" + event_id.to_string() + R"(","Hash":")" + hash.to_hex() +
               R"(","Receivers":[)";
  bool first = true;
  for (const auto& receiver : receivers) {
    if (!first) frame.head += ',';
    append_json_string(frame.head, receiver);
    first = false;
  }
  frame.head += R"(],"Data":")";
  frame.tail = "\"";
  if (revision) frame.tail += R"(,"Revision":)" + std::to_string(*revision);
  frame.tail += '}';
  return frame;
}

// The CBOR form (RFC 8949, definite lengths, shortest heads) around the byte string of the
// fragment.
void append_cbor_head(std::string& out, std::uint8_t major, std::uint64_t value) {
  const auto type = static_cast<std::uint8_t>(major << 5);
  int bytes = 0;
  if (value < 24) {
    out += static_cast<char>(type | value);
  } else if (value <= 0xFF) {
    out += static_cast<char>(type | 24);
    bytes = 1;
  } else if (value <= 0xFFFF) {
    out += static_cast<char>(type | 25);
    bytes = 2;
  } else if (value <= 0xFFFFFFFF) {
    out += static_cast<char>(type | 26);
    bytes = 4;
  } else {
    out += static_cast<char>(type | 27);
    bytes = 8;
  }
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

void append_cbor_text(std::string& out, std::string_view text) {
  append_cbor_head(out, 3, text.size());
  out += text;
}

DeliveredFrame delivered_cbor_frame(const Uuid& event_id, const Hash& hash,
                                    std::size_t data_size_bytes,
                                    const std::set<ClientId>& receivers,
                                    std::optional<std::uint64_t> revision) {
  DeliveredFrame frame;
  append_cbor_head(frame.head, 5, revision ? 5 : 4);
  append_cbor_text(frame.head, "EventId");
  append_cbor_text(frame.head, event_id.to_string());
  append_cbor_text(frame.head, "Hash");
  append_cbor_text(frame.head, hash.to_hex());
  append_cbor_text(frame.head, "Receivers");
  append_cbor_head(frame.head, 4, receivers.size());
  for (const auto& receiver : receivers) append_cbor_text(frame.head, receiver);
  append_cbor_text(frame.head, "Data");
  append_cbor_head(frame.head, 2, data_size_bytes);
  if (revision) {
    append_cbor_text(frame.tail, "Revision");
    append_cbor_head(frame.tail, 0, *revision);
  }
  return frame;
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::int64_t read_fragment_size(const json& value, const std::string& path) {
  return read_int(value, path, 1, limits::fragment_size_bytes_max);
}

std::int64_t read_capacity(const json& value, const std::string& path) {
  return read_int(value, path, 0, std::numeric_limits<std::int64_t>::max());
}

std::uint32_t read_reason_code(const json& value, const std::string& path) {
  if (!value.is_number_integer()) reject(path, "must be an integer");
  constexpr auto problem = "must combine only 1, 2, 4 and 128";
  if (!value.is_number_unsigned() && value.get<std::int64_t>() < 0) reject(path, problem);
  const auto code = value.get<std::uint64_t>();
  if (code == 0) reject(path, "must not be zero");
  if ((code & ~std::uint64_t{denial::all}) != 0) reject(path, problem);
  return static_cast<std::uint32_t>(code);
}

const std::string& read_client_id(const json& value, const std::string& path) {
  return read_string(value, path, 1, limits::client_id_bytes_max);
}

std::string read_reason(const json& value, const std::string& path) {
  return read_string(value, path, 0, limits::reason_bytes_max);
}

// A sequence, not a set: a file may repeat a fragment (a run of zeros, say).
std::vector<Hash> read_hash_sequence(const json& value, const std::string& path) {
  const auto& items = read_array(value, path, limits::fragments_per_file_max);
  std::vector<Hash> hashes;
  hashes.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i)
    hashes.push_back(read_hash(items[i], index_path(path, i)));
  return hashes;
}

std::set<std::string> read_endpoints(const json& value, const std::string& path) {
  const auto& items = read_array(value, path, limits::endpoints_per_client_max);
  std::set<std::string> endpoints;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto item_path = index_path(path, i);
    if (!endpoints.insert(read_string(items[i], item_path, 1, limits::endpoint_bytes_max)).second) {
      reject(item_path, "duplicate entry");
    }
  }
  return endpoints;
}

std::set<ClientId> read_receivers(const json& value, const std::string& path) {
  const auto& items = read_array(value, path, limits::receivers_per_event_max);
  std::set<ClientId> receivers;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto item_path = index_path(path, i);
    if (!receivers.insert(read_client_id(items[i], item_path)).second)
      reject(item_path, "duplicate entry");
  }
  return receivers;
}

FileMetadata read_file_metadata(const json& value, const std::string& path) {
  read_object(value, path, std::numeric_limits<std::size_t>::max());
  const Fields fields(value, path);
  FileMetadata file;
  file.size_bytes =
      read_int(fields.required("Size"), fields.path("Size"), 0, limits::file_size_bytes_max);
  file.fragment_sequence =
      read_hash_sequence(fields.required("FragmentSequence"), fields.path("FragmentSequence"));
  return file;
}

FragmentMetadata read_fragment_metadata(const json& value, const std::string& path) {
  read_object(value, path, std::numeric_limits<std::size_t>::max());
  const Fields fields(value, path);
  FragmentMetadata fragment;
  fragment.size_bytes = read_fragment_size(fields.required("Size"), fields.path("Size"));
  return fragment;
}

// Two keys that differ only in case name the same hash.
FileInfos read_file_infos(const json& value, const std::string& path) {
  FileInfos files;
  for (const auto& [key, member] : read_object(value, path, limits::files_per_event_max)) {
    const auto member_path = key_path(path, key);
    const auto hash = read_hash_text(key, member_path);
    if (!files.emplace(hash, read_file_metadata(member, member_path)).second)
      reject(member_path, "duplicate entry");
  }
  return files;
}

FragmentInfos read_fragment_infos(const json& value, const std::string& path) {
  FragmentInfos fragments;
  for (const auto& [key, member] : read_object(value, path, limits::fragments_per_event_max)) {
    const auto member_path = key_path(path, key);
    const auto hash = read_hash_text(key, member_path);
    if (!fragments.emplace(hash, read_fragment_metadata(member, member_path)).second) {
      reject(member_path, "duplicate entry");
    }
  }
  return fragments;
}

ClientMetadata read_client_metadata(const json& value, const std::string& path) {
  read_object(value, path, std::numeric_limits<std::size_t>::max());
  const Fields fields(value, path);
  ClientMetadata client;
  client.endpoints = read_endpoints(fields.required("Endpoints"), fields.path("Endpoints"));
  client.stored_fragments =
      read_hash_set(fields.required("StoredFragments"), fields.path("StoredFragments"),
                    limits::fragments_per_event_max);
  if (const json* capacity = fields.optional("Capacity"))
    client.capacity_bytes = read_capacity(*capacity, fields.path("Capacity"));
  return client;
}

std::map<ClientId, ClientMetadata> read_clients(const json& value, const std::string& path) {
  std::map<ClientId, ClientMetadata> clients;
  for (const auto& [key, member] : read_object(value, path, limits::clients_per_event_max)) {
    const auto member_path = key_path(path, key);
    wire::check_string_size(key, member_path, 1, limits::client_id_bytes_max);
    clients.emplace(key, read_client_metadata(member, member_path));
  }
  return clients;
}

Uuid read_event_id(const Fields& fields) {
  return read_uuid(fields.required("EventId"), fields.path("EventId"));
}

Hash read_hash_field(const Fields& fields) {
  return read_hash(fields.required("Hash"), fields.path("Hash"));
}

std::optional<std::uint64_t> read_optional_revision(const Fields& fields) {
  if (const json* revision = fields.optional("Revision"))
    return read_uint(*revision, fields.path("Revision"));
  return std::nullopt;
}

std::optional<std::string> read_optional_reason(const Fields& fields) {
  if (const json* reason = fields.optional("Reason"))
    return read_reason(*reason, fields.path("Reason"));
  return std::nullopt;
}

std::optional<Uuid> read_optional_request_event_id(const Fields& fields) {
  if (const json* id = fields.optional("RequestEventId"))
    return read_uuid(*id, fields.path("RequestEventId"));
  return std::nullopt;
}

ClientJoinRequested read_client_join_requested(const Fields& f) {
  ClientJoinRequested e;
  e.event_id = read_event_id(f);
  e.hash_algorithm = read_string(f.required("HashAlgorithm"), f.path("HashAlgorithm"), 0,
                                 limits::hash_algorithm_bytes_max);
  if (const json* size = f.optional("FragmentSize"))
    e.fragment_size_bytes = read_fragment_size(*size, f.path("FragmentSize"));
  // Under another algorithm the hashes cannot be checked as SHA-256 digests, and rejecting the
  // payload would leave the server without an answer. Decoding what the denial needs lets the
  // tracker reply WrongHashAlgorithm, as the spec wants; the collections stay empty.
  const bool sha256 = is_sha256_name(e.hash_algorithm);
  if (sha256) {
    e.known_file_infos = read_file_infos(f.required("KnownFileInfos"), f.path("KnownFileInfos"));
    e.stored_fragments =
        read_fragment_infos(f.required("StoredFragments"), f.path("StoredFragments"));
  }
  e.endpoints = read_endpoints(f.required("Endpoints"), f.path("Endpoints"));
  if (const json* capacity = f.optional("Capacity"))
    e.capacity_bytes = read_capacity(*capacity, f.path("Capacity"));
  if (const json* obtained = f.optional("ObtainedFragments"); obtained && sha256) {
    e.obtained_fragments = read_fragment_infos(*obtained, f.path("ObtainedFragments"));
  }
  if (const json* encodings = f.optional("DeliveryEncodings")) {
    const auto path = f.path("DeliveryEncodings");
    if (!encodings->is_array()) reject(path, "must be an array");
    if (encodings->size() > limits::delivery_encodings_max)
      reject(path, exceeds(limits::delivery_encodings_max, "entries"));
    for (std::size_t i = 0; i < encodings->size(); ++i)
      e.delivery_encodings.insert(read_string((*encodings)[i], path + "[" + std::to_string(i) + "]",
                                              1, limits::delivery_encoding_bytes_max));
  }
  return e;
}

ClientJoinAccepted read_client_join_accepted(const Fields& f) {
  ClientJoinAccepted e;
  e.event_id = read_event_id(f);
  e.client_identifier = read_client_id(f.required("ClientIdentifier"), f.path("ClientIdentifier"));
  e.fragment_size_bytes = read_fragment_size(f.required("FragmentSize"), f.path("FragmentSize"));
  e.add_file_infos = read_file_infos(f.required("AddFileInfos"), f.path("AddFileInfos"));
  e.add_fragment_infos =
      read_fragment_infos(f.required("AddFragmentInfos"), f.path("AddFragmentInfos"));
  e.remove_file_infos = read_hash_set(f.required("RemoveFileInfos"), f.path("RemoveFileInfos"),
                                      limits::files_per_event_max);
  e.remove_fragment_infos =
      read_hash_set(f.required("RemoveFragmentInfos"), f.path("RemoveFragmentInfos"),
                    limits::fragments_per_event_max);
  e.clients = read_clients(f.required("Clients"), f.path("Clients"));
  e.request_event_id = read_optional_request_event_id(f);
  e.revision = read_optional_revision(f);
  if (const json* replicas = f.optional("Replicas")) {
    const auto path = f.path("Replicas");
    e.replicas = read_uint(*replicas, path);
    if (*e.replicas == 0) reject(path, "must be positive");
  }
  return e;
}

ClientJoinDenied read_client_join_denied(const Fields& f) {
  ClientJoinDenied e;
  e.event_id = read_event_id(f);
  e.client_identifier = read_client_id(f.required("ClientIdentifier"), f.path("ClientIdentifier"));
  e.reason_code = read_reason_code(f.required("ReasonCode"), f.path("ReasonCode"));
  e.reason = read_optional_reason(f);
  e.request_event_id = read_optional_request_event_id(f);
  return e;
}

ClientRegistered read_client_registered(const Fields& f) {
  ClientRegistered e;
  e.event_id = read_event_id(f);
  e.client_identifier = read_client_id(f.required("ClientIdentifier"), f.path("ClientIdentifier"));
  e.info = read_client_metadata(f.required("Info"), f.path("Info"));
  e.added_files = read_file_infos(f.required("AddedFiles"), f.path("AddedFiles"));
  e.added_fragments = read_fragment_infos(f.required("AddedFragments"), f.path("AddedFragments"));
  e.revision = read_optional_revision(f);
  e.request_event_id = read_optional_request_event_id(f);
  return e;
}

ClientGoodbye read_client_goodbye(const Fields& f) {
  ClientGoodbye e;
  e.event_id = read_event_id(f);
  if (const json* id = f.optional("ClientIdentifier"))
    e.client_identifier = read_client_id(*id, f.path("ClientIdentifier"));
  e.revision = read_optional_revision(f);
  return e;
}

FileInfoPublished read_file_info_published(const Fields& f) {
  FileInfoPublished e;
  e.event_id = read_event_id(f);
  e.hash = read_hash_field(f);
  e.size_bytes = read_int(f.required("Size"), f.path("Size"), 0, limits::file_size_bytes_max);
  e.fragment_sequence =
      read_hash_sequence(f.required("FragmentSequence"), f.path("FragmentSequence"));
  e.revision = read_optional_revision(f);
  return e;
}

FragmentDistributionStarted read_fragment_distribution_started(const Fields& f) {
  FragmentDistributionStarted e;
  e.event_id = read_event_id(f);
  e.hash = read_hash_field(f);
  e.size_bytes = read_fragment_size(f.required("Size"), f.path("Size"));
  return e;
}

FragmentDistributionDelivered read_fragment_distribution_delivered(const Fields& f) {
  FragmentDistributionDelivered e;
  e.event_id = read_event_id(f);
  e.hash = read_hash_field(f);
  const auto data_path = f.path("Data");
  const json& data = f.required("Data");
  constexpr auto data_bytes_max = static_cast<std::size_t>(limits::fragment_size_bytes_max);
  if (data.is_binary()) {  // CBOR
    e.data = data.get_binary();
  } else {
    if (!data.is_string()) reject(data_path, "must be a string");
    const auto& text = data.get_ref<const std::string&>();
    // Checked on the text first so an oversized fragment is never decoded.
    if (text.size() > base64_encoded_size(data_bytes_max))
      reject(data_path, exceeds(data_bytes_max, "bytes"));
    if (!base64_decode(text, e.data)) reject(data_path, "must be Base64");
  }
  if (e.data.empty()) reject(data_path, "must not be empty");
  if (e.data.size() > data_bytes_max) reject(data_path, exceeds(data_bytes_max, "bytes"));
  e.receivers = read_receivers(f.required("Receivers"), f.path("Receivers"));
  e.revision = read_optional_revision(f);
  return e;
}

FragmentDistributionEnded read_fragment_distribution_ended(const Fields& f) {
  FragmentDistributionEnded e;
  e.event_id = read_event_id(f);
  e.hash = read_hash_field(f);
  e.size_bytes = read_fragment_size(f.required("Size"), f.path("Size"));
  e.receivers = read_receivers(f.required("Receivers"), f.path("Receivers"));
  e.revision = read_optional_revision(f);
  return e;
}

Event read_event(EventType type, const Fields& f) {
  switch (type) {
    case EventType::tracker_hello: return TrackerHello{read_event_id(f)};
    case EventType::tracker_goodbye: return TrackerGoodbye{read_event_id(f)};
    case EventType::client_join_requested: return read_client_join_requested(f);
    case EventType::client_join_accepted: return read_client_join_accepted(f);
    case EventType::client_join_denied: return read_client_join_denied(f);
    case EventType::client_join_succeeded: {
      ClientJoinSucceeded e;
      e.event_id = read_event_id(f);
      e.request_event_id = read_optional_request_event_id(f);
      return e;
    }
    case EventType::client_join_failed: {
      ClientJoinFailed e;
      e.event_id = read_event_id(f);
      e.reason = read_optional_reason(f);
      e.request_event_id = read_optional_request_event_id(f);
      return e;
    }
    case EventType::client_registered: return read_client_registered(f);
    case EventType::client_goodbye: return read_client_goodbye(f);
    case EventType::file_info_published: return read_file_info_published(f);
    case EventType::fragment_distribution_started: return read_fragment_distribution_started(f);
    case EventType::fragment_distribution_requested: {
      FragmentDistributionRequested e;
      e.event_id = read_event_id(f);
      e.hash = read_hash_field(f);
      return e;
    }
    case EventType::fragment_distribution_delivered: return read_fragment_distribution_delivered(f);
    case EventType::fragment_distribution_obtained: {
      FragmentDistributionObtained e;
      e.event_id = read_event_id(f);
      e.hash = read_hash_field(f);
      return e;
    }
    case EventType::fragment_distribution_failed: {
      FragmentDistributionFailed e;
      e.event_id = read_event_id(f);
      e.hash = read_hash_field(f);
      e.reason = read_optional_reason(f);
      return e;
    }
    case EventType::fragment_distribution_ended: return read_fragment_distribution_ended(f);
    case EventType::tracker_revision: {
      TrackerRevision e;
      e.event_id = read_event_id(f);
      e.revision = read_uint(f.required("Revision"), f.path("Revision"));
      return e;
    }
  }
  reject("", "unknown event type");
}

}  // namespace

std::optional<EventType> event_type_for_topic(std::string_view topic) {
  for (std::size_t i = 0; i < event_table.size(); ++i)
    if (event_table[i].topic == topic) return static_cast<EventType>(i);
  return std::nullopt;
}

std::size_t delivered_payload_size(const Uuid& event_id, const Hash& hash,
                                   std::size_t data_size_bytes, const std::set<ClientId>& receivers,
                                   std::optional<std::uint64_t> revision) {
  const auto frame = delivered_frame(event_id, hash, receivers, revision);
  return frame.head.size() + base64_encoded_size(data_size_bytes) + frame.tail.size();
}

namespace {

// Writes head, the `data_bytes` that `write_data` puts in place, then tail. A short buffer is the
// caller's bug, not bad peer data: refused before anything is written.
template <typename WriteData>
void write_framed(const DeliveredFrame& frame, std::size_t data_bytes, char* out,
                  std::size_t out_size_bytes, const char* refusal, WriteData&& write_data) {
  if (out_size_bytes < frame.head.size() + data_bytes + frame.tail.size())
    throw std::length_error(refusal);
  std::memcpy(out, frame.head.data(), frame.head.size());
  write_data(out + frame.head.size());
  std::memcpy(out + frame.head.size() + data_bytes, frame.tail.data(), frame.tail.size());
}

}  // namespace

void encode_delivered_into(const Uuid& event_id, const Hash& hash,
                           std::span<const std::uint8_t> data, const std::set<ClientId>& receivers,
                           char* out, std::size_t out_size_bytes,
                           std::optional<std::uint64_t> revision) {
  write_framed(delivered_frame(event_id, hash, receivers, revision),
               base64_encoded_size(data.size()), out, out_size_bytes,
               "encode_delivered_into: buffer smaller than delivered_payload_size()",
               [&](char* at) { base64_encode_into(data, at); });
}

std::size_t delivered_cbor_payload_size(const Uuid& event_id, const Hash& hash,
                                        std::size_t data_size_bytes,
                                        const std::set<ClientId>& receivers,
                                        std::optional<std::uint64_t> revision) {
  const auto frame = delivered_cbor_frame(event_id, hash, data_size_bytes, receivers, revision);
  return frame.head.size() + data_size_bytes + frame.tail.size();
}

void encode_delivered_cbor_into(const Uuid& event_id, const Hash& hash,
                                std::span<const std::uint8_t> data,
                                const std::set<ClientId>& receivers, char* out,
                                std::size_t out_size_bytes, std::optional<std::uint64_t> revision) {
  write_framed(delivered_cbor_frame(event_id, hash, data.size(), receivers, revision), data.size(),
               out, out_size_bytes,
               "encode_delivered_cbor_into: buffer smaller than delivered_cbor_payload_size()",
               [&](char* at) {
                 if (!data.empty()) std::memcpy(at, data.data(), data.size());
               });
}

std::string encode(const Event& event) {
  if (const auto* delivered = std::get_if<FragmentDistributionDelivered>(&event)) {
    std::string text(
        delivered_payload_size(delivered->event_id, delivered->hash, delivered->data.size(),
                               delivered->receivers, delivered->revision),
        '\0');
    encode_delivered_into(delivered->event_id, delivered->hash, delivered->data,
                          delivered->receivers, text.data(), text.size(), delivered->revision);
    return text;
  }
  JsonWriter writer;
  writer.open_object();
  std::visit(
      [&writer](const auto& e) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(e)>, FragmentDistributionDelivered>)
          write_fields(writer, e);
      },
      event);
  writer.close_object();
  return writer.take();
}

Result<Event> decode(std::string_view topic, std::string_view payload) noexcept {
  return wire::decode_untrusted<Event>([&]() -> Event {
    const auto type = event_type_for_topic(topic);
    if (!type) wire::reject("", "unknown topic");
    json document;
    if (wire::looks_like_cbor_map(payload)) {
      if (*type != EventType::fragment_distribution_delivered)
        wire::reject("", "CBOR is accepted for FragmentDistributionDelivered only");
      // The largest fragment, its fields and the most receivers fit well within this.
      constexpr std::size_t cbor_payload_bytes_max =
          static_cast<std::size_t>(limits::fragment_size_bytes_max) + (std::size_t{1} << 20);
      constexpr std::size_t cbor_map_entries_max = 32;  // a Delivered has 5 fields
      document = wire::parse_cbor(payload, cbor_payload_bytes_max, limits::cbor_depth_max,
                                  limits::receivers_per_event_max, cbor_map_entries_max);
    } else {
      document = wire::parse_json(payload, limits::event_payload_bytes_max, nesting_depth_max);
    }
    return read_event(*type, Fields::of_document(document));
  });
}

}  // namespace mqds
