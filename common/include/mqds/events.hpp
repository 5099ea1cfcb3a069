// The sixteen events of the specification, one extension event, and their JSON wire form.
//
// Wire rules (docs/wire-format.md): compact UTF-8 JSON with the PascalCase names of the spec's
// tables, lowercase GUIDs, uppercase hex hashes, Base64 Data, integer ReasonCode flags; null
// optionals are omitted on output and accepted absent or null on input; unknown fields are ignored.
//
// Extension fields (all optional, so the C# implementation ignores them and still interoperates):
// - "Revision" on the tracker's view-changing events and "tracker/revision": lets a torrent
//   server notice a lost event (a gap) and rejoin, as the revision numbers of docs/specification.md
//   ("Failure handling") ask. On FragmentDistributionDelivered it is the Revision when the data was
//   sent, which tells a late Ended of an earlier round of the same fragment from the Ended of this
//   one.
// - "RequestEventId" on ClientJoinAccepted, ClientJoinDenied, ClientJoinSucceeded and
//   ClientJoinFailed: which join request they answer, so a late answer to an earlier attempt is not
//   mistaken for the answer to the current one. On ClientRegistered it marks a confirmation: sent
//   to a registered client alone after a resync that changed nothing, it is not a view change.
// - "Replicas" on ClientJoinAccepted: the service's replication factor k, which torrent servers
//   need to compute the same placement as the tracker.
// - "ClientIdentifier" on ClientGoodbye: stamped by the tracker from the publishing connection,
//   because the spec's ClientGoodbye does not say who leaves.
// - "Capacity" (bytes) on ClientJoinRequested and ClientMetadata: placement respects free space.
// - "ObtainedFragments" on ClientJoinRequested: fragments the server confirmed with Obtained but
//   whose Ended it has not seen. The tracker keeps those that an Ended named it for and lists the
//   rest in RemoveFragmentInfos, so a connection lost between Obtained and Ended loses no replica.
// - "Reason" on ClientJoinFailed and FragmentDistributionFailed: a human-readable cause.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mqds/hash.hpp"
#include "mqds/result.hpp"
#include "mqds/uuid.hpp"

namespace mqds {

using ClientId = std::string;
using Bytes = std::vector<std::uint8_t>;

// ClientJoinDeniedCode. A denial carries the OR of every code that applies.
namespace denial {
inline constexpr std::uint32_t wrong_fragment_size = 1;
inline constexpr std::uint32_t wrong_hash_algorithm = 2;
inline constexpr std::uint32_t endpoint_conflict = 4;
inline constexpr std::uint32_t other = 128;
inline constexpr std::uint32_t all =
    wrong_fragment_size | wrong_hash_algorithm | endpoint_conflict | other;
}  // namespace denial

struct FileMetadata {
  std::int64_t size_bytes = 0;
  std::vector<Hash> fragment_sequence;
  friend bool operator==(const FileMetadata&, const FileMetadata&) = default;
};

struct FragmentMetadata {
  std::int64_t size_bytes = 0;
  friend bool operator==(const FragmentMetadata&, const FragmentMetadata&) = default;
};

struct ClientMetadata {
  std::set<std::string> endpoints;
  std::set<Hash> stored_fragments;
  std::optional<std::int64_t> capacity_bytes;  // extension "Capacity"; absent = unlimited
  friend bool operator==(const ClientMetadata&, const ClientMetadata&) = default;
};

using FileInfos = std::map<Hash, FileMetadata>;
using FragmentInfos = std::map<Hash, FragmentMetadata>;

// What the protocol says about an event type, written once beside its struct: its name, its
// topic, who issues it, and whether torrent servers subscribe to it (the tracker consumes every
// event a torrent server issues). The table below is built from these, in the variant's order.
enum class Issuer : std::uint8_t { tracker, torrent_server };
struct EventInfo {
  std::string_view name;   // "ClientJoinRequested"
  std::string_view topic;  // "clients/join/requested"
  Issuer issuer;
  bool torrents_subscribe;  // "Torrent Server Startup", step 2 (plus the revision beacon)
};

struct TrackerHello {
  static constexpr EventInfo protocol{"TrackerHello", "tracker/hello", Issuer::tracker, true};
  Uuid event_id;
  friend bool operator==(const TrackerHello&, const TrackerHello&) = default;
};

struct TrackerGoodbye {
  static constexpr EventInfo protocol{"TrackerGoodbye", "tracker/goodbye", Issuer::tracker, true};
  Uuid event_id;
  friend bool operator==(const TrackerGoodbye&, const TrackerGoodbye&) = default;
};

struct ClientJoinRequested {
  static constexpr EventInfo protocol{"ClientJoinRequested", "clients/join/requested",
                                      Issuer::torrent_server, false};
  Uuid event_id;
  std::string hash_algorithm;
  std::optional<std::int64_t> fragment_size_bytes;  // absent: a fresh server without data
  FileInfos known_file_infos;
  FragmentInfos stored_fragments;
  std::set<std::string> endpoints;
  std::optional<std::int64_t> capacity_bytes;
  FragmentInfos obtained_fragments;  // extension; omitted when empty
  // Extension "DeliveryEncodings": besides JSON, the encodings in which this server accepts
  // FragmentDistributionDelivered ("CBOR"); omitted when empty. Unknown names are kept, not used.
  std::set<std::string> delivery_encodings;
  // Extension "Extensions": the behaviours beyond the specification this server has, so the
  // tracker can stop making up for their absence (extension_* below); omitted when empty. A client
  // that lists none is served as the specification's torrent server. Unknown names are kept.
  std::set<std::string> extensions;
  friend bool operator==(const ClientJoinRequested&, const ClientJoinRequested&) = default;
};

struct ClientJoinAccepted {
  static constexpr EventInfo protocol{"ClientJoinAccepted", "clients/join/accepted",
                                      Issuer::tracker, true};
  Uuid event_id;
  ClientId client_identifier;
  std::int64_t fragment_size_bytes = 0;
  FileInfos add_file_infos;
  FragmentInfos add_fragment_infos;
  std::set<Hash> remove_file_infos;
  std::set<Hash> remove_fragment_infos;
  std::map<ClientId, ClientMetadata> clients;
  std::optional<Uuid> request_event_id;
  std::optional<std::uint64_t> revision;
  std::optional<std::uint64_t> replicas;
  friend bool operator==(const ClientJoinAccepted&, const ClientJoinAccepted&) = default;
};

struct ClientJoinDenied {
  static constexpr EventInfo protocol{"ClientJoinDenied", "clients/join/denied", Issuer::tracker,
                                      true};
  Uuid event_id;
  ClientId client_identifier;
  std::uint32_t reason_code = denial::other;
  std::optional<std::string> reason;
  std::optional<Uuid> request_event_id;
  friend bool operator==(const ClientJoinDenied&, const ClientJoinDenied&) = default;
};

struct ClientJoinSucceeded {
  static constexpr EventInfo protocol{"ClientJoinSucceeded", "clients/join/succeeded",
                                      Issuer::torrent_server, false};
  Uuid event_id;
  std::optional<Uuid> request_event_id;
  friend bool operator==(const ClientJoinSucceeded&, const ClientJoinSucceeded&) = default;
};

struct ClientJoinFailed {
  static constexpr EventInfo protocol{"ClientJoinFailed", "clients/join/failed",
                                      Issuer::torrent_server, false};
  Uuid event_id;
  std::optional<std::string> reason;
  std::optional<Uuid> request_event_id;
  friend bool operator==(const ClientJoinFailed&, const ClientJoinFailed&) = default;
};

struct ClientRegistered {
  static constexpr EventInfo protocol{"ClientRegistered", "clients/registered", Issuer::tracker,
                                      true};
  Uuid event_id;
  ClientId client_identifier;
  ClientMetadata info;
  FileInfos added_files;
  FragmentInfos added_fragments;
  std::optional<std::uint64_t> revision;
  std::optional<Uuid> request_event_id;  // set on a confirmation only
  friend bool operator==(const ClientRegistered&, const ClientRegistered&) = default;
};

struct ClientGoodbye {
  static constexpr EventInfo protocol{"ClientGoodbye", "clients/goodbye", Issuer::torrent_server,
                                      true};
  Uuid event_id;
  std::optional<ClientId> client_identifier;
  std::optional<std::uint64_t> revision;
  friend bool operator==(const ClientGoodbye&, const ClientGoodbye&) = default;
};

struct FileInfoPublished {
  static constexpr EventInfo protocol{"FileInfoPublished", "files/info", Issuer::tracker, true};
  Uuid event_id;
  Hash hash;
  std::int64_t size_bytes = 0;
  std::vector<Hash> fragment_sequence;
  std::optional<std::uint64_t> revision;
  friend bool operator==(const FileInfoPublished&, const FileInfoPublished&) = default;
};

struct FragmentDistributionStarted {
  static constexpr EventInfo protocol{"FragmentDistributionStarted",
                                      "fragments/distribution/started", Issuer::tracker, true};
  Uuid event_id;
  Hash hash;
  std::int64_t size_bytes = 0;
  friend bool operator==(const FragmentDistributionStarted&,
                         const FragmentDistributionStarted&) = default;
};

struct FragmentDistributionRequested {
  static constexpr EventInfo protocol{"FragmentDistributionRequested",
                                      "fragments/distribution/requested", Issuer::torrent_server,
                                      false};
  Uuid event_id;
  Hash hash;
  friend bool operator==(const FragmentDistributionRequested&,
                         const FragmentDistributionRequested&) = default;
};

struct FragmentDistributionDelivered {
  static constexpr EventInfo protocol{"FragmentDistributionDelivered",
                                      "fragments/distribution/delivered", Issuer::tracker, true};
  Uuid event_id;
  Hash hash;
  Bytes data;
  std::set<ClientId> receivers;
  std::optional<std::uint64_t> revision;
  friend bool operator==(const FragmentDistributionDelivered&,
                         const FragmentDistributionDelivered&) = default;
};

struct FragmentDistributionObtained {
  static constexpr EventInfo protocol{"FragmentDistributionObtained",
                                      "fragments/distribution/obtained", Issuer::torrent_server,
                                      false};
  Uuid event_id;
  Hash hash;
  friend bool operator==(const FragmentDistributionObtained&,
                         const FragmentDistributionObtained&) = default;
};

struct FragmentDistributionFailed {
  static constexpr EventInfo protocol{"FragmentDistributionFailed", "fragments/distribution/failed",
                                      Issuer::torrent_server, false};
  Uuid event_id;
  Hash hash;
  std::optional<std::string> reason;
  friend bool operator==(const FragmentDistributionFailed&,
                         const FragmentDistributionFailed&) = default;
};

struct FragmentDistributionEnded {
  static constexpr EventInfo protocol{"FragmentDistributionEnded", "fragments/distribution/ended",
                                      Issuer::tracker, true};
  Uuid event_id;
  Hash hash;
  std::int64_t size_bytes = 0;
  std::set<ClientId> receivers;
  std::optional<std::uint64_t> revision;
  friend bool operator==(const FragmentDistributionEnded&,
                         const FragmentDistributionEnded&) = default;
};

// Extension: published by the tracker when it has been quiet for a while, so that a torrent server
// that lost the last view-changing event notices it even when nothing else follows.
struct TrackerRevision {
  static constexpr EventInfo protocol{"TrackerRevision", "tracker/revision", Issuer::tracker, true};
  Uuid event_id;
  std::uint64_t revision = 0;
  friend bool operator==(const TrackerRevision&, const TrackerRevision&) = default;
};

using Event = std::variant<TrackerHello, TrackerGoodbye, ClientJoinRequested, ClientJoinAccepted,
                           ClientJoinDenied, ClientJoinSucceeded, ClientJoinFailed,
                           ClientRegistered, ClientGoodbye, FileInfoPublished,
                           FragmentDistributionStarted, FragmentDistributionRequested,
                           FragmentDistributionDelivered, FragmentDistributionObtained,
                           FragmentDistributionFailed, FragmentDistributionEnded, TrackerRevision>;

// Every event's EventInfo, in the variant's order: event_table[event.index()].
namespace detail {
template <std::size_t... I>
constexpr auto make_event_table(std::index_sequence<I...>) {
  return std::array<EventInfo, sizeof...(I)>{std::variant_alternative_t<I, Event>::protocol...};
}
}  // namespace detail
inline constexpr auto event_table =
    detail::make_event_table(std::make_index_sequence<std::variant_size_v<Event>>{});
inline constexpr std::size_t event_type_count = event_table.size();

// The variant index doubles as the event type, so `switch` can name events; the static_asserts
// below hold the enum to the variant's order.
enum class EventType : std::uint8_t {
  tracker_hello,
  tracker_goodbye,
  client_join_requested,
  client_join_accepted,
  client_join_denied,
  client_join_succeeded,
  client_join_failed,
  client_registered,
  client_goodbye,
  file_info_published,
  fragment_distribution_started,
  fragment_distribution_requested,
  fragment_distribution_delivered,
  fragment_distribution_obtained,
  fragment_distribution_failed,
  fragment_distribution_ended,
  tracker_revision,
};

template <class T, std::size_t I = 0>
constexpr EventType event_type_of() {
  static_assert(I < std::variant_size_v<Event>, "not an event of the Event variant");
  if constexpr (std::is_same_v<std::variant_alternative_t<I, Event>, T>)
    return static_cast<EventType>(I);
  else
    return event_type_of<T, I + 1>();
}
static_assert(event_type_of<TrackerHello>() == EventType::tracker_hello);
static_assert(event_type_of<TrackerGoodbye>() == EventType::tracker_goodbye);
static_assert(event_type_of<ClientJoinRequested>() == EventType::client_join_requested);
static_assert(event_type_of<ClientJoinAccepted>() == EventType::client_join_accepted);
static_assert(event_type_of<ClientJoinDenied>() == EventType::client_join_denied);
static_assert(event_type_of<ClientJoinSucceeded>() == EventType::client_join_succeeded);
static_assert(event_type_of<ClientJoinFailed>() == EventType::client_join_failed);
static_assert(event_type_of<ClientRegistered>() == EventType::client_registered);
static_assert(event_type_of<ClientGoodbye>() == EventType::client_goodbye);
static_assert(event_type_of<FileInfoPublished>() == EventType::file_info_published);
static_assert(event_type_of<FragmentDistributionStarted>() ==
              EventType::fragment_distribution_started);
static_assert(event_type_of<FragmentDistributionRequested>() ==
              EventType::fragment_distribution_requested);
static_assert(event_type_of<FragmentDistributionDelivered>() ==
              EventType::fragment_distribution_delivered);
static_assert(event_type_of<FragmentDistributionObtained>() ==
              EventType::fragment_distribution_obtained);
static_assert(event_type_of<FragmentDistributionFailed>() ==
              EventType::fragment_distribution_failed);
static_assert(event_type_of<FragmentDistributionEnded>() == EventType::fragment_distribution_ended);
static_assert(event_type_of<TrackerRevision>() == EventType::tracker_revision);
static_assert(event_type_count == static_cast<std::size_t>(EventType::tracker_revision) + 1);

namespace detail {
constexpr bool names_and_topics_are_unique() {
  for (std::size_t i = 0; i < event_table.size(); ++i)
    for (std::size_t k = i + 1; k < event_table.size(); ++k)
      if (event_table[i].name == event_table[k].name ||
          event_table[i].topic == event_table[k].topic)
        return false;
  return true;
}
}  // namespace detail
static_assert(detail::names_and_topics_are_unique(), "two events share a name or a topic");

namespace topics {
inline constexpr std::string_view tracker_hello = TrackerHello::protocol.topic;
inline constexpr std::string_view tracker_goodbye = TrackerGoodbye::protocol.topic;
inline constexpr std::string_view client_join_requested = ClientJoinRequested::protocol.topic;
inline constexpr std::string_view client_join_accepted = ClientJoinAccepted::protocol.topic;
inline constexpr std::string_view client_join_denied = ClientJoinDenied::protocol.topic;
inline constexpr std::string_view client_join_succeeded = ClientJoinSucceeded::protocol.topic;
inline constexpr std::string_view client_join_failed = ClientJoinFailed::protocol.topic;
inline constexpr std::string_view client_registered = ClientRegistered::protocol.topic;
inline constexpr std::string_view client_goodbye = ClientGoodbye::protocol.topic;
inline constexpr std::string_view file_info_published = FileInfoPublished::protocol.topic;
inline constexpr std::string_view fragment_distribution_started =
    FragmentDistributionStarted::protocol.topic;
inline constexpr std::string_view fragment_distribution_requested =
    FragmentDistributionRequested::protocol.topic;
inline constexpr std::string_view fragment_distribution_delivered =
    FragmentDistributionDelivered::protocol.topic;
inline constexpr std::string_view fragment_distribution_obtained =
    FragmentDistributionObtained::protocol.topic;
inline constexpr std::string_view fragment_distribution_failed =
    FragmentDistributionFailed::protocol.topic;
inline constexpr std::string_view fragment_distribution_ended =
    FragmentDistributionEnded::protocol.topic;
inline constexpr std::string_view tracker_revision = TrackerRevision::protocol.topic;
}  // namespace topics

inline EventType event_type(const Event& e) {
  return static_cast<EventType>(e.index());
}
constexpr const EventInfo& event_info(EventType type) {
  return event_table[static_cast<std::size_t>(type)];
}
constexpr std::string_view event_name(EventType type) {
  return event_info(type).name;
}
constexpr std::string_view topic_of(EventType type) {
  return event_info(type).topic;
}
inline std::string_view topic_of(const Event& e) {
  return topic_of(event_type(e));
}
std::optional<EventType> event_type_for_topic(std::string_view topic);

// Who issues an event, by the spec's table (TrackerRevision: the tracker).
constexpr bool is_tracker_issued(EventType type) {
  return event_info(type).issuer == Issuer::tracker;
}

namespace detail {
// The topics of the events `wanted` selects, in the variant's order.
template <class Wanted>
constexpr auto topics_where(Wanted wanted) {
  constexpr std::size_t n_max = event_table.size();
  std::array<std::string_view, n_max> selected{};
  std::size_t n = 0;
  for (const auto& info : event_table)
    if (wanted(info)) selected[n++] = info.topic;
  return std::pair{selected, n};
}
constexpr auto torrent_topics =
    topics_where([](const EventInfo& info) { return info.torrents_subscribe; });
constexpr auto tracker_topics =
    topics_where([](const EventInfo& info) { return info.issuer == Issuer::torrent_server; });
}  // namespace detail

// The topics a torrent server subscribes to ("Torrent Server Startup", step 2, and the revision
// beacon), and those the tracker consumes ("Tracker Server Startup", step 2).
inline std::span<const std::string_view> torrent_subscriptions() {
  return {detail::torrent_topics.first.data(), detail::torrent_topics.second};
}
inline std::span<const std::string_view> tracker_subscriptions() {
  return {detail::tracker_topics.first.data(), detail::tracker_topics.second};
}

std::string encode(const Event& event);

// Writes a FragmentDistributionDelivered payload without first copying the fragment into an Event,
// so an adapter can encode straight from its store into the buffer it hands to the broker.
std::size_t delivered_payload_size(const Uuid& event_id, const Hash& hash,
                                   std::size_t data_size_bytes, const std::set<ClientId>& receivers,
                                   std::optional<std::uint64_t> revision = std::nullopt);
void encode_delivered_into(const Uuid& event_id, const Hash& hash,
                           std::span<const std::uint8_t> data, const std::set<ClientId>& receivers,
                           char* out, std::size_t out_size_bytes,
                           std::optional<std::uint64_t> revision = std::nullopt);

// FragmentDistributionDelivered in CBOR (RFC 8949): the same fields as the JSON form, with Data as
// a byte string instead of Base64 text. Sent only to a torrent server whose ClientJoinRequested
// listed "CBOR" in DeliveryEncodings, so a fragment costs its size on the wire, not 4/3 of it.
// decode() tells the forms apart by the first byte: a CBOR map (0xA0-0xBF) is never JSON.
inline constexpr std::string_view delivery_encoding_cbor = "CBOR";

// Names in ClientJoinRequested's Extensions (docs/wire-format.md, "Extension fields").
// The server follows the Revision sequence from its ClientJoinAccepted on: it applies the view
// changes that arrive while it waits for its registration and rejoins on a gap, so the tracker
// need not replay them to it.
inline constexpr std::string_view extension_revision = "Revision";
// The server deletes fragments no file references when the tracker lists them in
// RemoveFragmentInfos; the specification keeps that list for conflicts, so a server without it
// announces such fragments and keeps them.
inline constexpr std::string_view extension_remove_orphans = "RemoveOrphans";
// After a denial for a passing reason (Other) the server retries on its own, with backoff; a
// server without it waits for a TrackerHello, which the tracker then sends it alone.
inline constexpr std::string_view extension_join_retry = "JoinRetry";
// A fragment that ClientJoinAccepted lists in both RemoveFragmentInfos and AddFragmentInfos is a
// copy to delete of a fragment that stays in the service (trimming a surplus copy): the server
// deletes its copy and keeps the fragment in its view. The specification's server would drop the
// fragment from its view, so the tracker never asks it to delete a copy.
inline constexpr std::string_view extension_trim = "Trim";
std::size_t delivered_cbor_payload_size(const Uuid& event_id, const Hash& hash,
                                        std::size_t data_size_bytes,
                                        const std::set<ClientId>& receivers,
                                        std::optional<std::uint64_t> revision = std::nullopt);
void encode_delivered_cbor_into(const Uuid& event_id, const Hash& hash,
                                std::span<const std::uint8_t> data,
                                const std::set<ClientId>& receivers, char* out,
                                std::size_t out_size_bytes,
                                std::optional<std::uint64_t> revision = std::nullopt);

// Decodes untrusted bytes received on a topic. Never throws; an unknown topic, invalid JSON or
// any field out of its type or bounds gives an Error that names the field.
// A ClientJoinRequested, the one event whose size grows with the service, is read as a stream
// without building a document, so it costs about its own size in memory.
Result<Event> decode(std::string_view topic, std::string_view payload) noexcept;

// The EventId of a payload that begins with it, `{"EventId":"<GUID>"` (whitespace allowed between
// the tokens), as mqds and the reference write every event; nullopt otherwise. Reads at most the
// first few hundred bytes: it lets the tracker answer a request it will not decode.
std::optional<Uuid> leading_event_id(std::string_view payload) noexcept;

// ClientJoinRequested read through nlohmann's DOM, as decode() read it before it read it as a
// stream. It costs about 8 times the payload in memory: not for production, only the reference that
// the unit tests and the fuzz target (fuzz/events_fuzz.cpp) compare decode() with.
Result<Event> decode_join_requested_with_dom(std::string_view payload) noexcept;

}  // namespace mqds
