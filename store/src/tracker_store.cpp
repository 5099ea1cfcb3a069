#include "mqds/store/tracker_store.hpp"

#include "mqds/overloaded.hpp"
#include "records.hpp"

#include <cstring>
#include <set>
#include <stdexcept>

namespace mqds {

using namespace records;

namespace {

std::string holding_key(const ClientId& client, const Hash& hash) {
  std::string key = client;
  key += '\0';
  key += key_of(hash);
  return key;
}

std::string_view key_of(const Uuid& id) {
  return {reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size()};
}

std::string part_key(const Uuid& upload, std::uint32_t index) {
  std::string key(key_of(upload));
  for (int shift = 24; shift >= 0; shift -= 8)
    key += static_cast<char>(index >> shift);  // big-endian: key order is index order
  return key;
}

std::vector<Hash> part_hashes(const lmdb::Txn& txn, MDB_dbi parts, const Uuid& upload) {
  std::vector<Hash> hashes;
  txn.for_each(parts, key_of(upload),
               [&](std::string_view, std::string_view value) { hashes.push_back(hash_of(value)); });
  return hashes;
}

}  // namespace

TrackerStore::TrackerStore(const std::string& directory, std::size_t map_size_bytes)
    : env_(directory, map_size_bytes, 8) {
  lmdb::Txn txn(env_, false);
  meta_ = txn.open("meta");
  files_ = txn.open("files");
  fragments_ = txn.open("fragments");
  staged_ = txn.open("staged");
  holdings_ = txn.open("holdings");
  uploads_ = txn.open("uploads");
  parts_ = txn.open("parts");
  txn.commit();
}

std::optional<std::int64_t> TrackerStore::fragment_size_bytes() const {
  lmdb::Txn txn(env_, true);
  auto value = txn.get(meta_, "fragment_size");
  if (!value) return std::nullopt;
  return static_cast<std::int64_t>(u64_of(*value));
}

void TrackerStore::set_fragment_size(std::int64_t bytes) {
  lmdb::Txn txn(env_, false);
  txn.put(meta_, "fragment_size", u64_bytes(static_cast<std::uint64_t>(bytes)));
  txn.commit();
}

TrackerSnapshot TrackerStore::load() const {
  TrackerSnapshot snapshot;
  lmdb::Txn txn(env_, true);
  if (auto revision = txn.get(meta_, "revision")) snapshot.revision = u64_of(*revision);
  txn.for_each(files_, {}, [&](std::string_view key, std::string_view value) {
    snapshot.files.emplace(hash_of(key), file_of(value));
  });
  txn.for_each(fragments_, {}, [&](std::string_view key, std::string_view value) {
    snapshot.fragments.emplace(hash_of(key),
                               FragmentMetadata{static_cast<std::int64_t>(u64_of(value))});
  });
  std::set<Hash> referenced;
  for (const auto& [hash, file] : snapshot.files)
    referenced.insert(file.fragment_sequence.begin(), file.fragment_sequence.end());
  txn.for_each(staged_, {}, [&](std::string_view key, std::string_view value) {
    const Hash hash = hash_of(key);
    // Fragments of an upload still in progress are not distributable yet.
    if (referenced.count(hash))
      snapshot.staged.emplace(hash, static_cast<std::int64_t>(value.size()));
  });
  txn.for_each(holdings_, {}, [&](std::string_view key, std::string_view) {
    const auto nul = key.find('\0');
    if (nul == std::string_view::npos)
      throw std::runtime_error("store: a holding key is malformed");
    snapshot.holdings[ClientId(key.substr(0, nul))].insert(hash_of(key.substr(nul + 1)));
  });
  return snapshot;
}

void TrackerStore::apply(const std::vector<StorageEffect>& effects) {
  if (effects.empty()) return;
  lmdb::Txn txn(env_, false);
  for (const auto& effect : effects) {
    std::visit(
        Overloaded{
            [&](const store::PutFile& e) {
              txn.put(files_, key_of(e.hash), file_bytes(e.metadata));
            },
            [&](const store::DeleteFile& e) { txn.del(files_, key_of(e.hash)); },
            [&](const store::PutFragmentInfo& e) {
              txn.put(fragments_, key_of(e.hash),
                      u64_bytes(static_cast<std::uint64_t>(e.size_bytes)));
            },
            [&](const store::PutRevision& e) { txn.put(meta_, "revision", u64_bytes(e.revision)); },
            [&](const store::PutFragmentSize& e) {
              txn.put(meta_, "fragment_size", u64_bytes(static_cast<std::uint64_t>(e.size_bytes)));
            },
            [&](const store::DropStaged& e) { txn.del(staged_, key_of(e.hash)); },
            [&](const store::AddHolding& e) {
              txn.put(holdings_, holding_key(e.client, e.hash), std::string_view{});
            },
            [&](const store::PutHoldings& e) {
              std::vector<std::string> old;
              txn.for_each(holdings_, e.client + '\0',
                           [&](std::string_view key, std::string_view) { old.emplace_back(key); });
              for (const auto& key : old) txn.del(holdings_, key);
              for (const auto& hash : e.hashes)
                txn.put(holdings_, holding_key(e.client, hash), std::string_view{});
            },
            [&](const store::PutUpload& e) {
              std::string value(key_of(e.upload.declared_hash));
              value += u64_bytes(static_cast<std::uint64_t>(e.upload.size_bytes));
              value += e.upload.uploader;
              txn.put(uploads_, key_of(e.upload.id), value);
            },
            [&](const store::PutUploadParts& e) {
              std::uint32_t index = e.first_index;
              for (const auto& [hash, data] : e.fragments) {
                txn.put(staged_, key_of(hash), std::span<const std::uint8_t>(data));
                txn.put(parts_, part_key(e.upload, index++), key_of(hash));
              }
            },
            [&](const store::DeleteUpload& e) {
              const auto parts = part_hashes(txn, parts_, e.upload);
              for (std::uint32_t index = 0; index < parts.size(); ++index)
                txn.del(parts_, part_key(e.upload, index));
              txn.del(uploads_, key_of(e.upload));
            },
            [&](const auto&) {
              throw std::logic_error("a torrent server's effect reached the tracker store");
            },
        },
        effect);
  }
  txn.commit();
}

bool TrackerStore::read_staged(const Hash& hash,
                               const std::function<void(std::span<const std::uint8_t>)>& fn) const {
  lmdb::Txn txn(env_, true);
  auto value = txn.get(staged_, key_of(hash));
  if (!value) return false;
  fn(std::span(reinterpret_cast<const std::uint8_t*>(value->data()), value->size()));
  return true;
}

namespace {

UploadRecord upload_of(std::string_view key, std::string_view value) {
  if (key.size() != 16 || value.size() < Hash::size_bytes + 8)
    throw std::runtime_error("store: an upload record is malformed");
  UploadRecord upload;
  std::memcpy(upload.id.bytes.data(), key.data(), 16);
  upload.declared_hash = hash_of(value.substr(0, Hash::size_bytes));
  upload.size_bytes = static_cast<std::int64_t>(u64_of(value.substr(Hash::size_bytes, 8)));
  upload.uploader = ClientId(value.substr(Hash::size_bytes + 8));
  return upload;
}

}  // namespace

std::optional<UploadRecord> TrackerStore::find_upload(const Uuid& id) const {
  lmdb::Txn txn(env_, true);
  auto value = txn.get(uploads_, key_of(id));
  if (!value) return std::nullopt;
  return upload_of(key_of(id), *value);
}

std::vector<Uuid> TrackerStore::upload_ids() const {
  std::vector<Uuid> ids;
  lmdb::Txn txn(env_, true);
  txn.for_each(uploads_, {}, [&](std::string_view key, std::string_view value) {
    ids.push_back(upload_of(key, value).id);
  });
  return ids;
}

void TrackerStore::read_upload_parts(
    const Uuid& upload,
    const std::function<void(const Hash&, std::span<const std::uint8_t>)>& fn) const {
  lmdb::Txn txn(env_, true);
  for (const auto& hash : part_hashes(txn, parts_, upload)) {
    auto content = txn.get(staged_, key_of(hash));
    if (!content)
      throw std::runtime_error("store: fragment " + hash.to_hex() +
                               " of an upload is missing from staging");
    fn(hash, std::span(reinterpret_cast<const std::uint8_t*>(content->data()), content->size()));
  }
}

}  // namespace mqds
