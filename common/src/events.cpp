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
// ClientJoinRequested, which grows with the service, is read as a stream instead, with the same
// rules (join_reader.hpp); its DOM reader below stays as the reference the tests compare with.
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
#include <tuple>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "mqds/base64.hpp"
#include "mqds/limits.hpp"
#include "join_reader.hpp"
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

// ---------------------------------------------------------------------------------------------
// Schemas: each event's properties listed once, in wire order, with how each is written and read.
//
// A codec knows one JSON type and its bounds: write(JsonWriter&, const T&) and
// read(const json&, path) -> T. A Field names a property, the member it lives in and its codec;
// an optional member is written only when it has a value, and read as absent when missing or
// null. encode() writes an event's fields in the order of its Schema, decode() reads them in the
// same order, so the first problem in a payload is deterministic and both directions agree by
// construction. The order is the reference implementation's (docs/wire-format.md's examples),
// with our extension fields last.

template <class T>
struct Schema;  // specialised below for every object of the wire format

template <class T>
void write_object_fields(JsonWriter& w, const T& value);
template <class T>
T read_object_fields(const Fields& fields);

struct UuidCodec {
  static void write(JsonWriter& w, const Uuid& v) { w.uuid(v); }
  static Uuid read(const json& v, const std::string& path) { return read_uuid(v, path); }
};

struct HashCodec {
  static void write(JsonWriter& w, const Hash& v) { w.hash(v); }
  static Hash read(const json& v, const std::string& path) { return read_hash(v, path); }
};

template <std::size_t MinBytes, std::size_t MaxBytes>
struct StringCodec {
  static void write(JsonWriter& w, const std::string& v) { w.string(v); }
  static std::string read(const json& v, const std::string& path) {
    return read_string(v, path, MinBytes, MaxBytes);
  }
};
using ClientIdCodec = StringCodec<1, limits::client_id_bytes_max>;
using ReasonCodec = StringCodec<0, limits::reason_bytes_max>;
using HashAlgorithmCodec = StringCodec<0, limits::hash_algorithm_bytes_max>;

template <std::int64_t Min, std::int64_t Max>
struct IntCodec {
  static void write(JsonWriter& w, std::int64_t v) { w.integer(v); }
  static std::int64_t read(const json& v, const std::string& path) {
    return read_int(v, path, Min, Max);
  }
};
using FragmentSizeCodec = IntCodec<1, limits::fragment_size_bytes_max>;
using FileSizeCodec = IntCodec<0, limits::file_size_bytes_max>;
using CapacityCodec = IntCodec<0, std::numeric_limits<std::int64_t>::max()>;

struct RevisionCodec {
  static void write(JsonWriter& w, std::uint64_t v) { w.integer(v); }
  static std::uint64_t read(const json& v, const std::string& path) { return read_uint(v, path); }
};

struct ReplicasCodec {
  static void write(JsonWriter& w, std::uint64_t v) { w.integer(v); }
  static std::uint64_t read(const json& v, const std::string& path) {
    const auto replicas = read_uint(v, path);
    if (replicas == 0) reject(path, "must be positive");
    return replicas;
  }
};

struct ReasonCodeCodec {
  static void write(JsonWriter& w, std::uint32_t v) { w.integer(v); }
  static std::uint32_t read(const json& v, const std::string& path) {
    if (!v.is_number_integer()) reject(path, "must be an integer");
    constexpr auto problem = "must combine only 1, 2, 4 and 128";
    if (!v.is_number_unsigned() && v.get<std::int64_t>() < 0) reject(path, problem);
    const auto code = v.get<std::uint64_t>();
    if (code == 0) reject(path, "must not be zero");
    if ((code & ~std::uint64_t{denial::all}) != 0) reject(path, problem);
    return static_cast<std::uint32_t>(code);
  }
};

// A JSON array of hashes, for the sequences and the sets alike.
template <class Hashes>
void write_hash_array(JsonWriter& w, const Hashes& hashes) {
  w.open_array();
  for (const auto& h : hashes) w.hash(h);
  w.close_array();
}

// A sequence, not a set: a file may repeat a fragment (a run of zeros, say).
struct HashSequenceCodec {
  static void write(JsonWriter& w, const std::vector<Hash>& hashes) { write_hash_array(w, hashes); }
  static std::vector<Hash> read(const json& v, const std::string& path) {
    const auto& items = read_array(v, path, limits::fragments_per_file_max);
    std::vector<Hash> hashes;
    hashes.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i)
      hashes.push_back(read_hash(items[i], index_path(path, i)));
    return hashes;
  }
};

template <std::size_t EntriesMax>
struct HashSetCodec {
  static void write(JsonWriter& w, const std::set<Hash>& hashes) { write_hash_array(w, hashes); }
  static std::set<Hash> read(const json& v, const std::string& path) {
    return read_hash_set(v, path, EntriesMax);
  }
};
using FileSetCodec = HashSetCodec<limits::files_per_event_max>;
using FragmentSetCodec = HashSetCodec<limits::fragments_per_event_max>;

template <std::size_t EntriesMax, std::size_t MinBytes, std::size_t MaxBytes>
struct StringSetCodec {
  static void write(JsonWriter& w, const std::set<std::string>& strings) {
    w.open_array();
    for (const auto& s : strings) w.string(s);
    w.close_array();
  }
  static std::set<std::string> read(const json& v, const std::string& path) {
    return wire::read_string_set(v, path, EntriesMax, MinBytes, MaxBytes);
  }
};
using EndpointsCodec =
    StringSetCodec<limits::endpoints_per_client_max, 1, limits::endpoint_bytes_max>;
using ReceiversCodec =
    StringSetCodec<limits::receivers_per_event_max, 1, limits::client_id_bytes_max>;

// An object with a Schema of its own (FileMetadata, FragmentMetadata, ClientMetadata).
template <class T>
struct ObjectCodec {
  static void write(JsonWriter& w, const T& v) {
    w.open_object();
    write_object_fields(w, v);
    w.close_object();
  }
  static T read(const json& v, const std::string& path) {
    read_object(v, path, std::numeric_limits<std::size_t>::max());
    return read_object_fields<T>(Fields(v, path));
  }
};

// A dictionary keyed by hashes. Two keys that differ only in case name the same hash.
template <std::size_t EntriesMax, class Value>
struct HashKeyedCodec {
  static void write(JsonWriter& w, const std::map<Hash, Value>& entries) {
    w.open_object();
    for (const auto& [hash, value] : entries) {
      w.key(hash.to_hex());
      ObjectCodec<Value>::write(w, value);
    }
    w.close_object();
  }
  static std::map<Hash, Value> read(const json& v, const std::string& path) {
    std::map<Hash, Value> entries;
    for (const auto& [key, member] : read_object(v, path, EntriesMax)) {
      const auto member_path = key_path(path, key);
      const auto hash = read_hash_text(key, member_path);
      if (!entries.emplace(hash, ObjectCodec<Value>::read(member, member_path)).second)
        reject(member_path, "duplicate entry");
    }
    return entries;
  }
};
using FileInfosCodec = HashKeyedCodec<limits::files_per_event_max, FileMetadata>;
using FragmentInfosCodec = HashKeyedCodec<limits::fragments_per_event_max, FragmentMetadata>;

struct ClientsCodec {
  static void write(JsonWriter& w, const std::map<ClientId, ClientMetadata>& clients) {
    w.open_object();
    for (const auto& [id, client] : clients) {
      w.key(id);
      ObjectCodec<ClientMetadata>::write(w, client);
    }
    w.close_object();
  }
  static std::map<ClientId, ClientMetadata> read(const json& v, const std::string& path) {
    std::map<ClientId, ClientMetadata> clients;
    for (const auto& [key, member] : read_object(v, path, limits::clients_per_event_max)) {
      const auto member_path = key_path(path, key);
      wire::check_string_size(key, member_path, 1, limits::client_id_bytes_max);
      clients.emplace(key, ObjectCodec<ClientMetadata>::read(member, member_path));
    }
    return clients;
  }
};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class Codec, class Object, class Member>
struct Field {
  std::string_view name;
  Member Object::*member;
};

template <class Codec, class Object, class Member>
constexpr Field<Codec, Object, Member> field(std::string_view name, Member Object::*member) {
  return {name, member};
}

template <class Codec, class Object, class Member>
void write_field(JsonWriter& w, const Object& object, const Field<Codec, Object, Member>& f) {
  const Member& value = object.*(f.member);
  if constexpr (is_optional<Member>::value) {
    if (!value) return;
    w.name(f.name);
    Codec::write(w, *value);
  } else {
    w.name(f.name);
    Codec::write(w, value);
  }
}

template <class Codec, class Object, class Member>
void read_field(const Fields& fields, Object& object, const Field<Codec, Object, Member>& f) {
  if constexpr (is_optional<Member>::value) {
    if (const json* value = fields.optional(f.name))
      object.*(f.member) = Codec::read(*value, fields.path(f.name));
  } else {
    object.*(f.member) = Codec::read(fields.required(f.name), fields.path(f.name));
  }
}

template <class T>
void write_object_fields(JsonWriter& w, const T& value) {
  std::apply([&](const auto&... f) { (write_field(w, value, f), ...); }, Schema<T>::fields);
}

// The fold runs left to right: fields are read in the order of the Schema.
template <class T>
T read_object_fields(const Fields& fields) {
  T value{};
  std::apply([&](const auto&... f) { (read_field(fields, value, f), ...); }, Schema<T>::fields);
  return value;
}

template <>
struct Schema<FileMetadata> {
  static constexpr std::tuple fields{
      field<FileSizeCodec>("Size", &FileMetadata::size_bytes),
      field<HashSequenceCodec>("FragmentSequence", &FileMetadata::fragment_sequence)};
};
template <>
struct Schema<FragmentMetadata> {
  static constexpr std::tuple fields{
      field<FragmentSizeCodec>("Size", &FragmentMetadata::size_bytes)};
};
template <>
struct Schema<ClientMetadata> {
  static constexpr std::tuple fields{
      field<EndpointsCodec>("Endpoints", &ClientMetadata::endpoints),
      field<FragmentSetCodec>("StoredFragments", &ClientMetadata::stored_fragments),
      field<CapacityCodec>("Capacity", &ClientMetadata::capacity_bytes)};
};

template <>
struct Schema<TrackerHello> {
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &TrackerHello::event_id)};
};
template <>
struct Schema<TrackerGoodbye> {
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &TrackerGoodbye::event_id)};
};
template <>
struct Schema<ClientJoinAccepted> {
  using E = ClientJoinAccepted;
  static constexpr std::tuple fields{
      field<UuidCodec>("EventId", &E::event_id),
      field<ClientIdCodec>("ClientIdentifier", &E::client_identifier),
      field<FragmentSizeCodec>("FragmentSize", &E::fragment_size_bytes),
      field<FileInfosCodec>("AddFileInfos", &E::add_file_infos),
      field<FragmentInfosCodec>("AddFragmentInfos", &E::add_fragment_infos),
      field<FileSetCodec>("RemoveFileInfos", &E::remove_file_infos),
      field<FragmentSetCodec>("RemoveFragmentInfos", &E::remove_fragment_infos),
      field<ClientsCodec>("Clients", &E::clients),
      field<UuidCodec>("RequestEventId", &E::request_event_id),
      field<RevisionCodec>("Revision", &E::revision),
      field<ReplicasCodec>("Replicas", &E::replicas)};
};
template <>
struct Schema<ClientJoinDenied> {
  using E = ClientJoinDenied;
  static constexpr std::tuple fields{
      field<UuidCodec>("EventId", &E::event_id),
      field<ClientIdCodec>("ClientIdentifier", &E::client_identifier),
      field<ReasonCodeCodec>("ReasonCode", &E::reason_code),
      field<ReasonCodec>("Reason", &E::reason),
      field<UuidCodec>("RequestEventId", &E::request_event_id)};
};
template <>
struct Schema<ClientJoinSucceeded> {
  using E = ClientJoinSucceeded;
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &E::event_id),
                                     field<UuidCodec>("RequestEventId", &E::request_event_id)};
};
template <>
struct Schema<ClientJoinFailed> {
  using E = ClientJoinFailed;
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &E::event_id),
                                     field<ReasonCodec>("Reason", &E::reason),
                                     field<UuidCodec>("RequestEventId", &E::request_event_id)};
};
template <>
struct Schema<ClientRegistered> {
  using E = ClientRegistered;
  static constexpr std::tuple fields{
      field<UuidCodec>("EventId", &E::event_id),
      field<ClientIdCodec>("ClientIdentifier", &E::client_identifier),
      field<ObjectCodec<ClientMetadata>>("Info", &E::info),
      field<FileInfosCodec>("AddedFiles", &E::added_files),
      field<FragmentInfosCodec>("AddedFragments", &E::added_fragments),
      field<RevisionCodec>("Revision", &E::revision),
      field<UuidCodec>("RequestEventId", &E::request_event_id)};
};
template <>
struct Schema<ClientGoodbye> {
  using E = ClientGoodbye;
  static constexpr std::tuple fields{
      field<UuidCodec>("EventId", &E::event_id),
      field<ClientIdCodec>("ClientIdentifier", &E::client_identifier),
      field<RevisionCodec>("Revision", &E::revision)};
};
template <>
struct Schema<FileInfoPublished> {
  using E = FileInfoPublished;
  static constexpr std::tuple fields{
      field<UuidCodec>("EventId", &E::event_id), field<HashCodec>("Hash", &E::hash),
      field<FileSizeCodec>("Size", &E::size_bytes),
      field<HashSequenceCodec>("FragmentSequence", &E::fragment_sequence),
      field<RevisionCodec>("Revision", &E::revision)};
};
template <>
struct Schema<FragmentDistributionStarted> {
  using E = FragmentDistributionStarted;
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &E::event_id),
                                     field<HashCodec>("Hash", &E::hash),
                                     field<FragmentSizeCodec>("Size", &E::size_bytes)};
};
template <>
struct Schema<FragmentDistributionRequested> {
  using E = FragmentDistributionRequested;
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &E::event_id),
                                     field<HashCodec>("Hash", &E::hash)};
};
template <>
struct Schema<FragmentDistributionObtained> {
  using E = FragmentDistributionObtained;
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &E::event_id),
                                     field<HashCodec>("Hash", &E::hash)};
};
template <>
struct Schema<FragmentDistributionFailed> {
  using E = FragmentDistributionFailed;
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &E::event_id),
                                     field<HashCodec>("Hash", &E::hash),
                                     field<ReasonCodec>("Reason", &E::reason)};
};
template <>
struct Schema<FragmentDistributionEnded> {
  using E = FragmentDistributionEnded;
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &E::event_id),
                                     field<HashCodec>("Hash", &E::hash),
                                     field<FragmentSizeCodec>("Size", &E::size_bytes),
                                     field<ReceiversCodec>("Receivers", &E::receivers),
                                     field<RevisionCodec>("Revision", &E::revision)};
};
template <>
struct Schema<TrackerRevision> {
  using E = TrackerRevision;
  static constexpr std::tuple fields{field<UuidCodec>("EventId", &E::event_id),
                                     field<RevisionCodec>("Revision", &E::revision)};
};

// ClientJoinRequested has no Schema: its reader must decode HashAlgorithm first and skip the
// collections under another algorithm (see read_client_join_requested), and two of its
// extension fields are left out when empty rather than when absent.
void write_client_join_requested(JsonWriter& w, const ClientJoinRequested& e) {
  w.name("EventId");
  UuidCodec::write(w, e.event_id);
  if (e.fragment_size_bytes) {
    w.name("FragmentSize");
    FragmentSizeCodec::write(w, *e.fragment_size_bytes);
  }
  w.name("HashAlgorithm");
  HashAlgorithmCodec::write(w, e.hash_algorithm);
  w.name("KnownFileInfos");
  FileInfosCodec::write(w, e.known_file_infos);
  w.name("StoredFragments");
  FragmentInfosCodec::write(w, e.stored_fragments);
  w.name("Endpoints");
  EndpointsCodec::write(w, e.endpoints);
  if (e.capacity_bytes) {
    w.name("Capacity");
    CapacityCodec::write(w, *e.capacity_bytes);
  }
  if (!e.obtained_fragments.empty()) {
    w.name("ObtainedFragments");
    FragmentInfosCodec::write(w, e.obtained_fragments);
  }
  if (!e.delivery_encodings.empty()) {
    w.name("DeliveryEncodings");
    StringSetCodec<limits::delivery_encodings_max, 1, limits::delivery_encoding_bytes_max>::write(
        w, e.delivery_encodings);
  }
  if (!e.extensions.empty()) {
    w.name("Extensions");
    StringSetCodec<limits::extensions_max, 1, limits::extension_bytes_max>::write(w, e.extensions);
  }
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

// Reads the event of variant index I if `type` is it; the two events without a Schema are read by
// their own functions.
template <std::size_t I>
bool read_alternative(EventType type, const Fields& f, Event& event) {
  using E = std::variant_alternative_t<I, Event>;
  if constexpr (std::is_same_v<E, ClientJoinRequested> ||
                std::is_same_v<E, FragmentDistributionDelivered>) {
    return false;
  } else {
    if (static_cast<std::size_t>(type) != I) return false;
    event = read_object_fields<E>(f);
    return true;
  }
}

template <std::size_t... I>
Event read_by_index(EventType type, const Fields& f, std::index_sequence<I...>) {
  Event event;
  if (!(read_alternative<I>(type, f, event) || ...)) reject("", "unknown event type");
  return event;
}

// An optional list of names (DeliveryEncodings, Extensions); empty when absent. Repeated names
// are harmless here, unlike in the hash sets: the set keeps one.
std::set<std::string> read_names(const Fields& f, std::string_view name, std::size_t count_max,
                                 std::size_t bytes_max) {
  std::set<std::string> names;
  if (const json* list = f.optional(name)) {
    const auto path = f.path(name);
    const auto& items = read_array(*list, path, count_max);
    for (std::size_t i = 0; i < items.size(); ++i)
      names.insert(read_string(items[i], index_path(path, i), 1, bytes_max));
  }
  return names;
}

ClientJoinRequested read_client_join_requested(const Fields& f) {
  ClientJoinRequested e;
  e.event_id = UuidCodec::read(f.required("EventId"), f.path("EventId"));
  e.hash_algorithm = HashAlgorithmCodec::read(f.required("HashAlgorithm"), f.path("HashAlgorithm"));
  if (const json* size = f.optional("FragmentSize"))
    e.fragment_size_bytes = FragmentSizeCodec::read(*size, f.path("FragmentSize"));
  // Under another algorithm the hashes cannot be checked as SHA-256 digests, and rejecting the
  // payload would leave the server without an answer. Decoding what the denial needs lets the
  // tracker reply WrongHashAlgorithm, as the spec wants; the collections stay empty.
  const bool sha256 = is_sha256_name(e.hash_algorithm);
  if (sha256) {
    e.known_file_infos =
        FileInfosCodec::read(f.required("KnownFileInfos"), f.path("KnownFileInfos"));
    e.stored_fragments =
        FragmentInfosCodec::read(f.required("StoredFragments"), f.path("StoredFragments"));
  }
  e.endpoints = EndpointsCodec::read(f.required("Endpoints"), f.path("Endpoints"));
  if (const json* capacity = f.optional("Capacity"))
    e.capacity_bytes = CapacityCodec::read(*capacity, f.path("Capacity"));
  if (const json* obtained = f.optional("ObtainedFragments"); obtained && sha256)
    e.obtained_fragments = FragmentInfosCodec::read(*obtained, f.path("ObtainedFragments"));
  e.delivery_encodings = read_names(f, "DeliveryEncodings", limits::delivery_encodings_max,
                                    limits::delivery_encoding_bytes_max);
  e.extensions = read_names(f, "Extensions", limits::extensions_max, limits::extension_bytes_max);
  return e;
}

// Delivered has no Schema either: its Data is Base64 text in JSON and a byte string in CBOR, and
// its writer frames the fragment (delivered_frame) instead of building the payload in memory.
FragmentDistributionDelivered read_fragment_distribution_delivered(const Fields& f) {
  FragmentDistributionDelivered e;
  e.event_id = UuidCodec::read(f.required("EventId"), f.path("EventId"));
  e.hash = HashCodec::read(f.required("Hash"), f.path("Hash"));
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
  e.receivers = ReceiversCodec::read(f.required("Receivers"), f.path("Receivers"));
  if (const json* revision = f.optional("Revision"))
    e.revision = RevisionCodec::read(*revision, f.path("Revision"));
  return e;
}

Event read_event(EventType type, const Fields& f) {
  switch (type) {
    case EventType::client_join_requested: return read_client_join_requested(f);
    case EventType::fragment_distribution_delivered: return read_fragment_distribution_delivered(f);
    default: break;
  }
  // Every other event reads its Schema: the variant alternative of `type`.
  return read_by_index(type, f, std::make_index_sequence<event_type_count>{});
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
        using E = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<E, ClientJoinRequested>)
          write_client_join_requested(writer, e);
        else if constexpr (!std::is_same_v<E, FragmentDistributionDelivered>)
          write_object_fields(writer, e);
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
    } else if (*type == EventType::client_join_requested) {
      // The one event that grows with the service: read as a stream, never as a document
      // (join_reader.hpp).
      return wire::read_client_join_requested_stream(payload, nesting_depth_max);
    } else {
      document = wire::parse_json(payload, limits::event_payload_bytes_max, nesting_depth_max);
    }
    return read_event(*type, Fields::of_document(document));
  });
}

std::optional<Uuid> leading_event_id(std::string_view payload) noexcept {
  // Whitespace is bounded too, so a hostile payload of blanks is not scanned to its end.
  constexpr std::size_t blanks_max = 64;
  std::size_t at = 0;
  const auto skip_blanks = [&] {
    for (std::size_t n = 0; n < blanks_max && at < payload.size(); ++n, ++at) {
      const char c = payload[at];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    }
  };
  const auto expect = [&](std::string_view token) {
    skip_blanks();
    if (payload.substr(at, token.size()) != token) return false;
    at += token.size();
    return true;
  };
  if (!expect("{") || !expect("\"EventId\"") || !expect(":") || !expect("\"")) return std::nullopt;
  constexpr std::size_t guid_chars = 36;
  if (payload.size() - at < guid_chars + 1 || payload[at + guid_chars] != '"') return std::nullopt;
  return Uuid::parse(payload.substr(at, guid_chars));
}

Result<Event> decode_join_requested_with_dom(std::string_view payload) noexcept {
  return wire::decode_untrusted<Event>([&]() -> Event {
    if (wire::looks_like_cbor_map(payload))
      wire::reject("", "CBOR is accepted for FragmentDistributionDelivered only");
    const json document =
        wire::parse_json(payload, limits::event_payload_bytes_max, nesting_depth_max);
    return read_client_join_requested(Fields::of_document(document));
  });
}

}  // namespace mqds
