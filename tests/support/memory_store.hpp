// In-memory stores that apply the core's storage effects the way the LMDB stores do: all effects
// of one step at once. Used by unit tests and the simulation; what they hold survives a simulated
// crash of the machine that owns them, exactly like a committed transaction.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <variant>
#include <vector>

#include "mqds/ingest.hpp"
#include "mqds/output.hpp"
#include "mqds/overloaded.hpp"
#include "mqds/torrent.hpp"
#include "mqds/tracker.hpp"

namespace mqds::testing {

using mqds::Overloaded;

struct TorrentMemoryStore {
  std::optional<std::int64_t> fragment_size_bytes;
  FileInfos files;
  std::map<Hash, Bytes> persisted;
  std::map<Hash, Bytes> temporary;

  void apply(const std::vector<StorageEffect>& effects) {
    for (const auto& effect : effects) {
      std::visit(Overloaded{
                     [&](const store::PutFile& e) { files[e.hash] = e.metadata; },
                     [&](const store::DeleteFile& e) { files.erase(e.hash); },
                     [&](const store::PutFragmentSize& e) { fragment_size_bytes = e.size_bytes; },
                     [&](const store::PutTemporaryFragment& e) { temporary[e.hash] = e.data; },
                     [&](const store::PersistFragment& e) {
                       auto it = temporary.find(e.hash);
                       if (it == temporary.end())
                         throw std::logic_error("persist of a fragment not held temporarily");
                       persisted[e.hash] = std::move(it->second);
                       temporary.erase(it);
                     },
                     [&](const store::DeleteFragment& e) {
                       temporary.erase(e.hash);
                       persisted.erase(e.hash);
                     },
                     [&](const auto&) {
                       throw std::logic_error("a tracker effect reached a torrent store");
                     },
                 },
                 effect);
    }
  }

  TorrentSnapshot snapshot() const {
    TorrentSnapshot s;
    s.fragment_size_bytes = fragment_size_bytes;
    s.files = files;
    for (const auto& [hash, data] : persisted)
      s.stored_fragments.emplace(hash, FragmentMetadata{static_cast<std::int64_t>(data.size())});
    for (const auto& [hash, data] : temporary)
      s.temporary_fragments.emplace(hash, FragmentMetadata{static_cast<std::int64_t>(data.size())});
    return s;
  }
};

// Also what an ingest::Receiver reads back to resume an upload, as TrackerStore does.
struct TrackerMemoryStore final : ingest::DurableUploads {
  FileInfos files;
  FragmentInfos fragments;
  std::uint64_t revision = 0;
  std::map<Hash, Bytes> staged;
  std::map<ClientId, std::set<Hash>> holdings;
  std::map<Uuid, UploadRecord> uploads;
  std::map<Uuid, std::vector<Hash>> upload_parts;  // in order

  void apply(const std::vector<StorageEffect>& effects) {
    for (const auto& effect : effects) {
      std::visit(Overloaded{
                     [&](const store::PutFile& e) { files[e.hash] = e.metadata; },
                     [&](const store::PutFragmentInfo& e) {
                       fragments[e.hash] = FragmentMetadata{e.size_bytes};
                     },
                     [&](const store::PutRevision& e) { revision = e.revision; },
                     [&](const store::DropStaged& e) { staged.erase(e.hash); },
                     [&](const store::AddHolding& e) { holdings[e.client].insert(e.hash); },
                     [&](const store::PutHoldings& e) { holdings[e.client] = e.hashes; },
                     [&](const store::PutUpload& e) { uploads[e.upload.id] = e.upload; },
                     [&](const store::PutUploadParts& e) {
                       auto& parts = upload_parts[e.upload];
                       if (parts.size() != e.first_index)
                         throw std::logic_error("upload parts out of sequence");
                       for (const auto& [hash, data] : e.fragments) {
                         staged[hash] = data;
                         parts.push_back(hash);
                       }
                     },
                     [&](const store::DeleteUpload& e) {
                       uploads.erase(e.upload);
                       upload_parts.erase(e.upload);
                     },
                     [&](const auto&) {
                       throw std::logic_error("a torrent effect reached the tracker store");
                     },
                 },
                 effect);
    }
  }

  TrackerSnapshot snapshot() const {
    TrackerSnapshot s;
    s.files = files;
    s.fragments = fragments;
    s.revision = revision;
    // As TrackerStore::load(): the parts of an upload in progress are not distributable until a
    // published file references them.
    std::set<Hash> referenced;
    for (const auto& [hash, file] : files)
      referenced.insert(file.fragment_sequence.begin(), file.fragment_sequence.end());
    std::set<Hash> uploading;
    for (const auto& [id, parts] : upload_parts) uploading.insert(parts.begin(), parts.end());
    for (const auto& [hash, data] : staged)
      if (referenced.count(hash) || !uploading.count(hash))
        s.staged.emplace(hash, static_cast<std::int64_t>(data.size()));
    s.holdings = holdings;
    return s;
  }

  std::optional<UploadRecord> find_upload(const Uuid& id) const override {
    const auto it = uploads.find(id);
    if (it == uploads.end()) return std::nullopt;
    return it->second;
  }
  std::vector<Uuid> upload_ids() const override {
    std::vector<Uuid> ids;
    for (const auto& [id, record] : uploads) ids.push_back(id);
    return ids;
  }
  void read_upload_parts(
      const Uuid& id,
      const std::function<void(const Hash&, std::span<const std::uint8_t>)>& fn) const override {
    const auto it = upload_parts.find(id);
    if (it == upload_parts.end()) return;
    for (const auto& hash : it->second) {
      const auto content = staged.find(hash);
      if (content == staged.end())
        throw std::runtime_error("fragment " + hash.to_hex() +
                                 " of an upload is missing from staging");
      fn(hash, content->second);
    }
  }

  // What the plugin does for a Publish with `staged`: the payload is encoded from the store, or
  // from the content a repair fetched.
  std::string delivered_payload(const StagedDelivery& delivery) const {
    if (delivery.content) {
      const auto& content = *delivery.content;
      const std::span<const std::uint8_t> data(
          reinterpret_cast<const std::uint8_t*>(content.data()), content.size());
      std::string payload(staged_delivery_size(delivery, data.size()), '\0');
      encode_staged_delivery_into(delivery, data, payload.data(), payload.size());
      return payload;
    }
    const Bytes& data = staged.at(delivery.hash);
    std::string payload(staged_delivery_size(delivery, data.size()), '\0');
    encode_staged_delivery_into(delivery, data, payload.data(), payload.size());
    return payload;
  }
};

}  // namespace mqds::testing
