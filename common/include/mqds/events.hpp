// The sixteen events of the specification, one extension event, and their JSON wire form.
//
// Wire rules (WIRE-FORMAT.md): compact UTF-8 JSON with the PascalCase names of the spec's tables,
// lowercase GUIDs, uppercase hex hashes, Base64 Data, integer ReasonCode flags; null optionals are
// omitted on output and accepted absent or null on input; unknown fields are ignored.
//
// Extension fields (all optional, so the C# implementation ignores them and still interoperates):
// - "Revision" on the tracker's view-changing events and "tracker/revision": lets a torrent
//   server notice a lost event (a gap) and rejoin, as seed 003's revision numbers do. On
//   FragmentDistributionDelivered it is the Revision when the data was sent, which tells a late
//   Ended of an earlier round of the same fragment from the Ended of this one.
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

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
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

struct TrackerHello {
  Uuid event_id;
  friend bool operator==(const TrackerHello&, const TrackerHello&) = default;
};

struct TrackerGoodbye {
  Uuid event_id;
  friend bool operator==(const TrackerGoodbye&, const TrackerGoodbye&) = default;
};

struct ClientJoinRequested {
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
  friend bool operator==(const ClientJoinRequested&, const ClientJoinRequested&) = default;
};

struct ClientJoinAccepted {
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
  Uuid event_id;
  ClientId client_identifier;
  std::uint32_t reason_code = denial::other;
  std::optional<std::string> reason;
  std::optional<Uuid> request_event_id;
  friend bool operator==(const ClientJoinDenied&, const ClientJoinDenied&) = default;
};

struct ClientJoinSucceeded {
  Uuid event_id;
  std::optional<Uuid> request_event_id;
  friend bool operator==(const ClientJoinSucceeded&, const ClientJoinSucceeded&) = default;
};

struct ClientJoinFailed {
  Uuid event_id;
  std::optional<std::string> reason;
  std::optional<Uuid> request_event_id;
  friend bool operator==(const ClientJoinFailed&, const ClientJoinFailed&) = default;
};

struct ClientRegistered {
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
  Uuid event_id;
  std::optional<ClientId> client_identifier;
  std::optional<std::uint64_t> revision;
  friend bool operator==(const ClientGoodbye&, const ClientGoodbye&) = default;
};

struct FileInfoPublished {
  Uuid event_id;
  Hash hash;
  std::int64_t size_bytes = 0;
  std::vector<Hash> fragment_sequence;
  std::optional<std::uint64_t> revision;
  friend bool operator==(const FileInfoPublished&, const FileInfoPublished&) = default;
};

struct FragmentDistributionStarted {
  Uuid event_id;
  Hash hash;
  std::int64_t size_bytes = 0;
  friend bool operator==(const FragmentDistributionStarted&,
                         const FragmentDistributionStarted&) = default;
};

struct FragmentDistributionRequested {
  Uuid event_id;
  Hash hash;
  friend bool operator==(const FragmentDistributionRequested&,
                         const FragmentDistributionRequested&) = default;
};

struct FragmentDistributionDelivered {
  Uuid event_id;
  Hash hash;
  Bytes data;
  std::set<ClientId> receivers;
  std::optional<std::uint64_t> revision;
  friend bool operator==(const FragmentDistributionDelivered&,
                         const FragmentDistributionDelivered&) = default;
};

struct FragmentDistributionObtained {
  Uuid event_id;
  Hash hash;
  friend bool operator==(const FragmentDistributionObtained&,
                         const FragmentDistributionObtained&) = default;
};

struct FragmentDistributionFailed {
  Uuid event_id;
  Hash hash;
  std::optional<std::string> reason;
  friend bool operator==(const FragmentDistributionFailed&,
                         const FragmentDistributionFailed&) = default;
};

struct FragmentDistributionEnded {
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

// The variant index doubles as the event type; the topic table in events.cpp follows this order.
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
inline constexpr std::size_t event_type_count = 17;

namespace topics {
inline constexpr std::string_view tracker_hello = "tracker/hello";
inline constexpr std::string_view tracker_goodbye = "tracker/goodbye";
inline constexpr std::string_view client_join_requested = "clients/join/requested";
inline constexpr std::string_view client_join_accepted = "clients/join/accepted";
inline constexpr std::string_view client_join_denied = "clients/join/denied";
inline constexpr std::string_view client_join_succeeded = "clients/join/succeeded";
inline constexpr std::string_view client_join_failed = "clients/join/failed";
inline constexpr std::string_view client_registered = "clients/registered";
inline constexpr std::string_view client_goodbye = "clients/goodbye";
inline constexpr std::string_view file_info_published = "files/info";
inline constexpr std::string_view fragment_distribution_started = "fragments/distribution/started";
inline constexpr std::string_view fragment_distribution_requested =
    "fragments/distribution/requested";
inline constexpr std::string_view fragment_distribution_delivered =
    "fragments/distribution/delivered";
inline constexpr std::string_view fragment_distribution_obtained =
    "fragments/distribution/obtained";
inline constexpr std::string_view fragment_distribution_failed = "fragments/distribution/failed";
inline constexpr std::string_view fragment_distribution_ended = "fragments/distribution/ended";
inline constexpr std::string_view tracker_revision = "tracker/revision";
}  // namespace topics

inline EventType event_type(const Event& e) {
  return static_cast<EventType>(e.index());
}
std::string_view event_name(EventType type);  // "ClientJoinRequested"...
std::string_view topic_of(EventType type);
inline std::string_view topic_of(const Event& e) {
  return topic_of(event_type(e));
}
std::optional<EventType> event_type_for_topic(std::string_view topic);

// Who issues an event, by the spec's table (TrackerRevision: the tracker).
bool is_tracker_issued(EventType type);
// The topics a torrent server subscribes to, and those the tracker consumes.
std::span<const std::string_view> torrent_subscriptions();
std::span<const std::string_view> tracker_subscriptions();

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
Result<Event> decode(std::string_view topic, std::string_view payload) noexcept;

}  // namespace mqds
