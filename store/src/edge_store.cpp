#include "mqds/store/edge_store.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <stdexcept>

#include "mqds/overloaded.hpp"
#include "records.hpp"

namespace mqds {

using namespace records;

namespace {

std::span<const std::uint8_t> bytes_of(std::string_view value) {
  return {reinterpret_cast<const std::uint8_t*>(value.data()), value.size()};
}

// LMDB has no API for where it mapped the file (mdb_env_info's address is only set with
// MDB_FIXEDMAP), so it is looked up in /proc/self/maps by the data file's device and inode. Not
// found: nothing is ever released, which costs memory, never correctness.
MappedRange map_of(const lmdb::Env& env) {
  mdb_filehandle_t fd;
  struct stat file {};
  if (mdb_env_get_fd(env.get(), &fd) != MDB_SUCCESS || ::fstat(fd, &file) != 0) return {};
  std::ifstream maps("/proc/self/maps");
  std::string line;
  MappedRange found;
  while (std::getline(maps, line)) {
    unsigned long long begin = 0, end = 0, offset = 0, inode = 0;
    unsigned major_dev = 0, minor_dev = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu", &begin, &end, perms, &offset,
                    &major_dev, &minor_dev, &inode) != 7)
      continue;
    if (inode != file.st_ino || major_dev != major(file.st_dev) || minor_dev != minor(file.st_dev))
      continue;
    if (end - begin > found.end - found.begin)
      found = {static_cast<std::uintptr_t>(begin), static_cast<std::uintptr_t>(end)};
  }
  return found;
}

// Drops the pages of a value read from the memory map from this process's resident set. LMDB maps
// its file read-only and writes with pwrite, so every mapped page is clean: the kernel keeps it in
// its page cache and the next read faults it back in. That holds for a page the value shares with
// a B-tree node too, which only costs that node a fault. A value written earlier in the same write
// transaction lives in a heap page LMDB allocated, not in the map: that one is left alone, since
// MADV_DONTNEED on heap memory would zero it.
void release(const MappedRange& map, std::string_view value) {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto data = reinterpret_cast<std::uintptr_t>(value.data());
  if (data < map.begin || data + value.size() > map.end) return;
  const auto begin = data & ~(page - 1);
  const auto end = (data + value.size() + page - 1) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// Deletes a fragment's entry. LMDB reads the header of a value's overflow pages to free them, which
// maps that page in: release it afterwards, or every deleted fragment would stay resident. Getting
// the value first touches only the B-tree leaf.
void delete_fragment(const MappedRange& map, lmdb::Txn& txn, MDB_dbi dbi, std::string_view key) {
  const auto value = txn.get(dbi, key);
  if (!value) return;
  const std::string_view range = *value;
  txn.del(dbi, key);
  release(map, range);
}

}  // namespace

EdgeStore::EdgeStore(const std::string& directory, std::size_t map_size_bytes)
    : env_(directory, map_size_bytes, 4), map_(map_of(env_)) {
  lmdb::Txn txn(env_, false);
  meta_ = txn.open("meta");
  files_ = txn.open("files");
  fragments_ = txn.open("fragments");
  temporary_ = txn.open("temporary");
  txn.commit();
}

std::optional<std::int64_t> EdgeStore::fragment_size_bytes() const {
  lmdb::Txn txn(env_, true);
  auto value = txn.get(meta_, "fragment_size");
  if (!value) return std::nullopt;
  return static_cast<std::int64_t>(u64_of(*value));
}

TorrentSnapshot EdgeStore::verify_and_load(
    IntegrityReport& report,
    const std::function<void(const std::string&, const std::string&)>& on_drop) {
  const auto started = std::chrono::steady_clock::now();
  report = IntegrityReport{};
  TorrentSnapshot snapshot;
  std::vector<std::pair<MDB_dbi, std::string>> drops;  // keys to delete
  std::vector<std::string> migrations;  // temporary content in the earlier layout, intact
  {
    lmdb::Txn txn(env_, true);
    if (auto size = txn.get(meta_, "fragment_size"))
      snapshot.fragment_size_bytes = static_cast<std::int64_t>(u64_of(*size));
    txn.for_each(files_, {}, [&](std::string_view key, std::string_view value) {
      snapshot.files.emplace(hash_of(key), file_of(value));
    });
    auto name_of = [](std::string_view key) {
      return key.size() == Hash::size_bytes ? hash_of(key).to_hex()
                                            : "a key of " + std::to_string(key.size()) + " bytes";
    };
    auto drop = [&](MDB_dbi dbi, std::string_view key, const std::string& why) {
      ++report.dropped_unknown;
      drops.emplace_back(dbi, std::string(key));
      on_drop(name_of(key), why);
    };
    // Why content cannot be accounted for, or "" when it can be verified.
    auto unaccountable = [&](std::string_view key, std::string_view value) -> std::string {
      if (key.size() != Hash::size_bytes) return "its key is not a hash";
      if (!snapshot.fragment_size_bytes) return "no fragment size is stored";
      if (value.empty() || static_cast<std::int64_t>(value.size()) > *snapshot.fragment_size_bytes)
        return "it has " + std::to_string(value.size()) + " bytes, outside 1.." +
               std::to_string(*snapshot.fragment_size_bytes);
      return "";
    };
    // True when the content matches its hash; a corrupt one is dropped.
    auto intact = [&](MDB_dbi dbi, std::string_view key, std::string_view value) {
      report.bytes_checked += static_cast<std::int64_t>(value.size());
      const Hash actual = sha256(bytes_of(value));
      release(map_, value);
      if (actual == hash_of(key)) return true;
      ++report.dropped_corrupt;
      drops.emplace_back(dbi, std::string(key));
      on_drop(name_of(key), "its content hashes to " + actual.to_hex());
      return false;
    };

    std::set<std::string, std::less<>> markers;
    std::vector<std::pair<std::string, std::string_view>> legacy;  // key, content
    txn.for_each(temporary_, {}, [&](std::string_view key, std::string_view value) {
      if (key.size() != Hash::size_bytes) return drop(temporary_, key, "its key is not a hash");
      if (value.empty())
        markers.emplace(key);
      else
        legacy.emplace_back(std::string(key), value);
    });
    // Marks are taken off as their content is found: those left have none.
    txn.for_each(fragments_, {}, [&](std::string_view key, std::string_view value) {
      const auto mark = markers.find(key);
      const bool temporary = mark != markers.end();
      if (temporary) markers.erase(mark);
      if (auto why = unaccountable(key, value); !why.empty()) {
        if (temporary) drops.emplace_back(temporary_, std::string(key));
        return drop(fragments_, key, why);
      }
      if (!intact(fragments_, key, value)) {
        if (temporary) drops.emplace_back(temporary_, std::string(key));
        return;
      }
      if (temporary) {
        snapshot.temporary_fragments.emplace(
            hash_of(key), FragmentMetadata{static_cast<std::int64_t>(value.size())});
        ++report.temporary_intact;
      } else {
        snapshot.stored_fragments.emplace(
            hash_of(key), FragmentMetadata{static_cast<std::int64_t>(value.size())});
        ++report.fragments_intact;
      }
    });
    for (const auto& key : markers) drop(temporary_, key, "its content is missing");
    // Stores written before temporary copies moved into `fragments` keep their content here.
    for (const auto& [key, value] : legacy) {
      if (snapshot.stored_fragments.count(hash_of(key)) ||
          snapshot.temporary_fragments.count(hash_of(key))) {
        drop(temporary_, key, "it is also in fragments");
        continue;
      }
      if (auto why = unaccountable(key, value); !why.empty()) {
        drop(temporary_, key, why);
        continue;
      }
      if (!intact(temporary_, key, value)) continue;
      migrations.push_back(key);
      snapshot.temporary_fragments.emplace(
          hash_of(key), FragmentMetadata{static_cast<std::int64_t>(value.size())});
      ++report.temporary_intact;
    }
  }
  if (!drops.empty() || !migrations.empty()) {
    lmdb::Txn txn(env_, false);
    for (const auto& [dbi, key] : drops) delete_fragment(map_, txn, dbi, key);
    for (const auto& key : migrations) {
      auto content = txn.get(temporary_, key);
      if (!content) continue;
      const std::string copy(
          *content);  // put may move pages: the value read must not be used after it
      txn.put(fragments_, key, copy);
      delete_fragment(map_, txn, temporary_, key);
      txn.put(temporary_, key, std::string_view{});
    }
    txn.commit();
  }
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return snapshot;
}

void EdgeStore::apply(const std::vector<StorageEffect>& effects) {
  if (effects.empty()) return;
  lmdb::Txn txn(env_, false);
  for (const auto& effect : effects) {
    std::visit(
        Overloaded{
            [&](const store::PutFile& e) {
              txn.put(files_, key_of(e.hash), file_bytes(e.metadata));
            },
            [&](const store::DeleteFile& e) { txn.del(files_, key_of(e.hash)); },
            [&](const store::PutFragmentSize& e) {
              txn.put(meta_, "fragment_size", u64_bytes(static_cast<std::uint64_t>(e.size_bytes)));
            },
            [&](const store::PutTemporaryFragment& e) {
              const auto key = key_of(e.hash);
              // Content is addressed by its hash: content already here is the same bytes
              // and is not written again. The mark follows the core, which now holds it
              // as temporary (persisted at Ended, deleted otherwise).
              if (!txn.get(fragments_, key))
                txn.put(fragments_, key, std::span<const std::uint8_t>(e.data));
              txn.put(temporary_, key, std::string_view{});
            },
            [&](const store::PersistFragment& e) {
              // The content stays where it is: persisting writes no fragment twice.
              const auto key = key_of(e.hash);
              if (!txn.get(temporary_, key))
                throw std::logic_error("persist of " + e.hash.to_hex() +
                                       ", which is not held temporarily");
              txn.del(temporary_, key);
            },
            [&](const store::DeleteFragment& e) {
              const auto key = key_of(e.hash);
              if (txn.get(temporary_, key)) txn.del(temporary_, key);
              delete_fragment(map_, txn, fragments_, key);
            },
            [&](const auto&) { throw std::logic_error("a tracker effect reached the edge store"); },
        },
        effect);
  }
  txn.commit();
}

EdgeStore::ReadResult EdgeStore::read_fragment(
    const Hash& hash, const std::function<void(std::span<const std::uint8_t>)>& fn) const {
  lmdb::Txn txn(env_, true);
  const auto key = key_of(hash);
  auto value = txn.get(fragments_, key);
  if (!value || txn.get(temporary_, key)) return ReadResult::not_found;  // persisted ones only
  const auto content = bytes_of(*value);
  if (sha256(content) != hash) {
    release(map_, *value);
    return ReadResult::corrupt;
  }
  fn(content);
  release(map_, *value);
  return ReadResult::ok;
}

std::optional<EdgeStore::Scrubbed> EdgeStore::scrub_next(const std::optional<Hash>& after) const {
  lmdb::Txn txn(env_, true);
  lmdb::Cursor cursor(txn, fragments_);
  MDB_val k, v;
  // The walk past temporary keys reads only B-tree leaves, and there are no more of them than
  // copies the board holds temporarily (those it obtained in rounds not yet ended).
  for (bool more = cursor.seek(after ? key_of(*after) : std::string_view{}, k, v); more;
       more = cursor.next(k, v)) {
    const auto key = lmdb::view(k);
    if (after && key == key_of(*after)) continue;
    // Not a hash: verify_and_load drops such a key at start-up, and nothing writes one since.
    if (key.size() != Hash::size_bytes || txn.get(temporary_, key)) continue;
    const auto value = lmdb::view(v);
    Scrubbed found{hash_of(key), static_cast<std::int64_t>(value.size()), sha256(bytes_of(value))};
    // The pages read go back to the page cache: a pass over a large store would otherwise leave
    // it in the daemon's resident memory.
    release(map_, value);
    return found;
  }
  return std::nullopt;
}

EdgeUsage EdgeStore::usage() const {
  EdgeUsage usage;
  lmdb::Txn txn(env_, true);
  MDB_stat stat;
  lmdb::check(mdb_stat(txn.get(), files_, &stat), "mdb_stat");
  usage.files = stat.ms_entries;
  std::set<std::string, std::less<>> temporary;
  txn.for_each(temporary_, {},
               [&](std::string_view key, std::string_view) { temporary.emplace(key); });
  // Sizes are in the values' headers: walking the keys touches no content page.
  txn.for_each(fragments_, {}, [&](std::string_view key, std::string_view value) {
    if (temporary.count(key)) {
      ++usage.temporary;
      usage.temporary_bytes += static_cast<std::int64_t>(value.size());
    } else {
      ++usage.fragments;
      usage.fragment_bytes += static_cast<std::int64_t>(value.size());
    }
  });
  return usage;
}

}  // namespace mqds
