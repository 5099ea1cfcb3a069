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
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu", &begin, &end, perms, &offset, &major_dev, &minor_dev,
                    &inode) != 7)
      continue;
    if (inode != file.st_ino || major_dev != major(file.st_dev) || minor_dev != minor(file.st_dev)) continue;
    if (end - begin > found.end - found.begin) found = {static_cast<std::uintptr_t>(begin), static_cast<std::uintptr_t>(end)};
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

TorrentSnapshot EdgeStore::verify_and_load(IntegrityReport& report,
                                           const std::function<void(const std::string&, const std::string&)>& on_drop) {
  const auto started = std::chrono::steady_clock::now();
  report = IntegrityReport{};
  TorrentSnapshot snapshot;
  std::vector<std::pair<MDB_dbi, std::string>> drops;  // keys to delete
  {
    lmdb::Txn txn(env_, true);
    if (auto size = txn.get(meta_, "fragment_size")) snapshot.fragment_size_bytes = static_cast<std::int64_t>(u64_of(*size));
    txn.for_each(files_, {}, [&](std::string_view key, std::string_view value) {
      snapshot.files.emplace(hash_of(key), file_of(value));
    });
    auto check = [&](MDB_dbi dbi, FragmentInfos& intact, std::size_t& count) {
      txn.for_each(dbi, {}, [&](std::string_view key, std::string_view value) {
        const std::string name = key.size() == Hash::size_bytes ? hash_of(key).to_hex() : "a key of " + std::to_string(key.size()) + " bytes";
        std::string why;
        if (key.size() != Hash::size_bytes) why = "its key is not a hash";
        else if (!snapshot.fragment_size_bytes) why = "no fragment size is stored";
        else if (value.empty() || static_cast<std::int64_t>(value.size()) > *snapshot.fragment_size_bytes)
          why = "it has " + std::to_string(value.size()) + " bytes, outside 1.." + std::to_string(*snapshot.fragment_size_bytes);
        else if (dbi == temporary_ && snapshot.stored_fragments.count(hash_of(key)))
          why = "it is also persisted";
        if (why.empty()) {
          report.bytes_checked += static_cast<std::int64_t>(value.size());
          const Hash actual = sha256(bytes_of(value));
          release(map_, value);
          if (actual != hash_of(key)) {
            ++report.dropped_corrupt;
            drops.emplace_back(dbi, std::string(key));
            on_drop(name, "its content hashes to " + actual.to_hex());
            return;
          }
          intact.emplace(hash_of(key), FragmentMetadata{static_cast<std::int64_t>(value.size())});
          ++count;
          return;
        }
        ++report.dropped_unknown;
        drops.emplace_back(dbi, std::string(key));
        on_drop(name, why);
      });
    };
    check(fragments_, snapshot.stored_fragments, report.fragments_intact);
    check(temporary_, snapshot.temporary_fragments, report.temporary_intact);
  }
  if (!drops.empty()) {
    lmdb::Txn txn(env_, false);
    for (const auto& [dbi, key] : drops) delete_fragment(map_, txn, dbi, key);
    txn.commit();
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return snapshot;
}

void EdgeStore::apply(const std::vector<StorageEffect>& effects) {
  if (effects.empty()) return;
  lmdb::Txn txn(env_, false);
  for (const auto& effect : effects) {
    std::visit(Overloaded{
                   [&](const store::PutFile& e) { txn.put(files_, key_of(e.hash), file_bytes(e.metadata)); },
                   [&](const store::DeleteFile& e) { txn.del(files_, key_of(e.hash)); },
                   [&](const store::PutFragmentSize& e) {
                     txn.put(meta_, "fragment_size", u64_bytes(static_cast<std::uint64_t>(e.size_bytes)));
                   },
                   [&](const store::PutTemporaryFragment& e) {
                     txn.put(temporary_, key_of(e.hash), std::span<const std::uint8_t>(e.data));
                   },
                   [&](const store::PersistFragment& e) {
                     auto content = txn.get(temporary_, key_of(e.hash));
                     if (!content) throw std::logic_error("persist of " + e.hash.to_hex() + ", which is not held temporarily");
                     // put may move pages: the value read must not be used after it.
                     const std::string copy(*content);
                     txn.put(fragments_, key_of(e.hash), copy);
                     delete_fragment(map_, txn, temporary_, key_of(e.hash));
                   },
                   [&](const store::DeleteFragment& e) {
                     delete_fragment(map_, txn, temporary_, key_of(e.hash));
                     delete_fragment(map_, txn, fragments_, key_of(e.hash));
                   },
                   [&](const auto&) { throw std::logic_error("a tracker effect reached the edge store"); },
               },
               effect);
  }
  txn.commit();
}

EdgeStore::ReadResult EdgeStore::read_fragment(const Hash& hash,
                                               const std::function<void(std::span<const std::uint8_t>)>& fn) const {
  lmdb::Txn txn(env_, true);
  auto value = txn.get(fragments_, key_of(hash));
  if (!value) return ReadResult::not_found;
  const auto content = bytes_of(*value);
  if (sha256(content) != hash) {
    release(map_, *value);
    return ReadResult::corrupt;
  }
  fn(content);
  release(map_, *value);
  return ReadResult::ok;
}

EdgeUsage EdgeStore::usage() const {
  EdgeUsage usage;
  lmdb::Txn txn(env_, true);
  MDB_stat stat;
  lmdb::check(mdb_stat(txn.get(), files_, &stat), "mdb_stat");
  usage.files = stat.ms_entries;
  // Sizes are in the values' headers: walking the keys touches no content page.
  txn.for_each(fragments_, {}, [&](std::string_view, std::string_view value) {
    ++usage.fragments;
    usage.fragment_bytes += static_cast<std::int64_t>(value.size());
  });
  txn.for_each(temporary_, {}, [&](std::string_view, std::string_view value) {
    ++usage.temporary;
    usage.temporary_bytes += static_cast<std::int64_t>(value.size());
  });
  return usage;
}

}  // namespace mqds
