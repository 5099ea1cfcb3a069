// What a state machine asks its adapter to do after one input.
//
// The adapter applies `storage` in one transaction and makes it durable, THEN sends `publishes` in
// order. That order is what makes "durable before acknowledged" hold for every event: an
// Obtained, a ClientJoinSucceeded or an Ended is only ever sent after the data it speaks of is on
// disk. If the commit fails, nothing is sent and the adapter rebuilds the machine from its store.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/fetch.hpp"

namespace mqds {

// An upload in progress (mqds/ingest.hpp): what its `begin` declared, kept so that it can resume
// after a restart.
struct UploadRecord {
  Uuid id;
  Hash declared_hash;
  std::int64_t size_bytes = 0;
  ClientId uploader;
  friend bool operator==(const UploadRecord&, const UploadRecord&) = default;
};

// Storage effects. The tracker uses the file, fragment-info, revision, staging, holding and upload
// ones; a torrent server the file, fragment-size and fragment ones.
namespace store {
struct PutFile {
  Hash hash;
  FileMetadata metadata;
};
struct DeleteFile {
  Hash hash;
};
struct PutFragmentInfo {
  Hash hash;
  std::int64_t size_bytes;
};
struct PutRevision {
  std::uint64_t revision;
};
struct PutFragmentSize {
  std::int64_t size_bytes;
};
// Tracker: the staged copy of a fragment is no longer needed (it reached its replicas).
struct DropStaged {
  Hash hash;
};
// Tracker: the ledger of which fragments each client (registered or not) was named for.
struct AddHolding {
  ClientId client;
  Hash hash;
};
struct PutHoldings {
  ClientId client;
  std::set<Hash> hashes;
};
// Tracker: an upload began; its record lets a `begin` after a restart resume it.
struct PutUpload {
  UploadRecord upload;
};
// Tracker: fragments of an upload, staged by their hash and listed as its parts numbered from
// `first_index`, so that a resumed upload reads them back in order. They are not distributable
// until a published file references them.
struct PutUploadParts {
  Uuid upload;
  std::uint32_t first_index = 0;
  std::vector<std::pair<Hash, Bytes>> fragments;
};
// Tracker: forget an upload's record and its list of parts. Their staged content stays (a
// published file references it); what nobody needs goes with DropStaged.
struct DeleteUpload {
  Uuid upload;
};
// Torrent server: keep a verified fragment apart from the persisted ones until Ended names us.
struct PutTemporaryFragment {
  Hash hash;
  Bytes data;
};
struct PersistFragment {
  Hash hash;
};
// Deletes a temporary or persisted fragment.
struct DeleteFragment {
  Hash hash;
};
}  // namespace store

using StorageEffect =
    std::variant<store::PutFile, store::DeleteFile, store::PutFragmentInfo, store::PutRevision,
                 store::PutFragmentSize, store::DropStaged, store::AddHolding, store::PutHoldings,
                 store::PutUpload, store::PutUploadParts, store::DeleteUpload,
                 store::PutTemporaryFragment, store::PersistFragment, store::DeleteFragment>;

// A FragmentDistributionDelivered whose Data is the staged fragment: the adapter encodes it with
// encode_delivered_into() (or its CBOR twin) straight from its store, so fragment content never
// passes through the core and is read once per delivery.
struct StagedDelivery {
  Uuid event_id;
  Hash hash;
  std::set<ClientId> receivers;
  std::uint64_t revision = 0;
  bool cbor = false;  // the receiver asked for CBOR when it joined
  // A repair's content, fetched from a holder and verified by the tracker: it is not in staging,
  // and this is read instead. Shared by the round's Delivered of every receiver.
  std::shared_ptr<const std::string> content = nullptr;
};

// The payload of a StagedDelivery for the fragment `data`, in the encoding its receiver accepts.
inline std::size_t staged_delivery_size(const StagedDelivery& d, std::size_t data_size_bytes) {
  return d.cbor
             ? delivered_cbor_payload_size(d.event_id, d.hash, data_size_bytes, d.receivers,
                                           d.revision)
             : delivered_payload_size(d.event_id, d.hash, data_size_bytes, d.receivers, d.revision);
}
inline void encode_staged_delivery_into(const StagedDelivery& d, std::span<const std::uint8_t> data,
                                        char* out, std::size_t out_size_bytes) {
  if (d.cbor)
    encode_delivered_cbor_into(d.event_id, d.hash, data, d.receivers, out, out_size_bytes,
                               d.revision);
  else
    encode_delivered_into(d.event_id, d.hash, data, d.receivers, out, out_size_bytes, d.revision);
}

struct Publish {
  std::string topic;
  std::string payload;         // empty when `staged` is set
  std::optional<ClientId> to;  // deliver to this client only
  std::optional<StagedDelivery> staged;
  int qos = 2;  // docs/wire-format.md: events go at QoS 2, never retained
};

enum class LogLevel : std::uint8_t { debug, info, notice, warning, error };

struct LogLine {
  LogLevel level;
  std::string text;
};

struct Output {
  std::vector<StorageEffect> storage;
  std::vector<Publish> publishes;
  std::vector<LogLine> logs;
  // Fetch requests the tracker sends to a holder of a fragment it repairs (mqds/fetch.hpp), after
  // `publishes`, at QoS 1 with their Response Topic and Correlation Data.
  std::vector<fetch::OutgoingRequest> fetch_requests;
  // Set when the process cannot go on without an operator (a torrent server whose stored data has
  // another fragment size than the service): the adapter logs it and exits non-zero.
  std::optional<std::string> fatal;

  bool empty() const {
    return storage.empty() && publishes.empty() && logs.empty() && fetch_requests.empty() && !fatal;
  }
  void log(LogLevel level, std::string text) { logs.push_back({level, std::move(text)}); }
  void publish(const Event& event, std::optional<ClientId> to = std::nullopt) {
    publishes.push_back(
        {std::string(topic_of(event)), encode(event), std::move(to), std::nullopt, 2});
  }
};

}  // namespace mqds
