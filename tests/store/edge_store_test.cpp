// EdgeStore against real LMDB environments, each in its own temp directory under /tmp: effects
// round-trip exactly like the in-memory reference (TorrentMemoryStore), one apply() is all or
// nothing (a throwing effect, a full map), content corrupted on disk and data the store cannot
// account for are dropped at start-up and stay dropped, read_fragment serves only verified bytes, a
// kill -9 in the middle of a stream of commits leaves a batch boundary, and neither the start-up
// check nor serving nor a scrub pass leaves the content it read in the process's resident memory;
// scrub_next walks the persisted fragments from a cursor and finds a corrupt one.
//
// On a failure, the temp directory is removed; to keep it for inspection with mdb_dump, run the
// binary with MQDS_KEEP_STORE_DIRS=1 (the path is printed).
#include "mqds/store/edge_store.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/machine_harness.hpp"

namespace mqds::edge_store_test {
namespace {

using mqds::testing::cut_file;
using mqds::testing::pattern;
using mqds::testing::TestFragment;
using mqds::testing::TorrentMemoryStore;

// Address space only: the file grows with what is stored. Large enough for the 200 MiB test.
constexpr std::size_t map_size_bytes = std::size_t{1} << 30;

// A fresh directory under /tmp, removed when the test ends, passed or failed.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/mqds-edge-store-XXXXXX";
    if (!::mkdtemp(name))
      throw std::runtime_error(std::string("mkdtemp under /tmp failed: ") + std::strerror(errno));
    path_ = name;
  }
  ~TempDir() {
    if (std::getenv("MQDS_KEEP_STORE_DIRS")) {
      std::fprintf(stderr, "kept %s\n", path_.c_str());
      return;
    }
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string data_file() const { return path_ + "/data.mdb"; }

 private:
  std::string path_;
};

TestFragment make_fragment(std::size_t size_bytes, std::uint32_t seed) {
  Bytes data = pattern(size_bytes, seed);
  return {sha256(data), std::move(data)};
}

struct Drop {
  std::string name;  // the hash in hex, or "a key of N bytes"
  std::string why;
};

struct Loaded {
  TorrentSnapshot snapshot;
  IntegrityReport report;
  std::vector<Drop> drops;
};

Loaded load(EdgeStore& store) {
  Loaded loaded;
  loaded.snapshot =
      store.verify_and_load(loaded.report, [&](const std::string& name, const std::string& why) {
        loaded.drops.push_back({name, why});
      });
  return loaded;
}

// What a restarted daemon sees: a new EdgeStore on the same directory, checked at start-up.
Loaded reopen_and_load(const std::string& directory) {
  EdgeStore store(directory, map_size_bytes);
  return load(store);
}

std::string describe(const std::vector<Drop>& drops) {
  std::string text;
  for (const auto& d : drops) text += "  dropped " + d.name + ": " + d.why + "\n";
  return text.empty() ? "  (nothing dropped)\n" : text;
}

const Drop* find_drop(const std::vector<Drop>& drops, const std::string& name) {
  for (const auto& d : drops)
    if (d.name == name) return &d;
  return nullptr;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Hex-keyed copies of the snapshot's maps, so a failing comparison prints readable hashes.
std::map<std::string, std::int64_t> sizes_by_hex(const FragmentInfos& infos) {
  std::map<std::string, std::int64_t> sizes;
  for (const auto& [hash, info] : infos) sizes[hash.to_hex()] = info.size_bytes;
  return sizes;
}

std::map<std::string, std::string> files_by_hex(const FileInfos& files) {
  std::map<std::string, std::string> described;
  for (const auto& [hash, file] : files) {
    std::string text = std::to_string(file.size_bytes) + " bytes:";
    for (const auto& fragment : file.fragment_sequence) text += " " + fragment.to_hex();
    described[hash.to_hex()] = text;
  }
  return described;
}

void expect_same_snapshot(const TorrentSnapshot& actual, const TorrentSnapshot& expected) {
  EXPECT_EQ(actual.fragment_size_bytes, expected.fragment_size_bytes);
  EXPECT_EQ(files_by_hex(actual.files), files_by_hex(expected.files));
  EXPECT_EQ(sizes_by_hex(actual.stored_fragments), sizes_by_hex(expected.stored_fragments));
  EXPECT_EQ(sizes_by_hex(actual.temporary_fragments), sizes_by_hex(expected.temporary_fragments));
}

void expect_usage_of(const EdgeUsage& usage, const TorrentMemoryStore& expected) {
  std::int64_t fragment_bytes = 0, temporary_bytes = 0;
  for (const auto& [hash, data] : expected.persisted)
    fragment_bytes += static_cast<std::int64_t>(data.size());
  for (const auto& [hash, data] : expected.temporary)
    temporary_bytes += static_cast<std::int64_t>(data.size());
  EXPECT_EQ(usage.files, expected.files.size());
  EXPECT_EQ(usage.fragments, expected.persisted.size());
  EXPECT_EQ(usage.fragment_bytes, fragment_bytes);
  EXPECT_EQ(usage.temporary, expected.temporary.size());
  EXPECT_EQ(usage.temporary_bytes, temporary_bytes);
}

// Every entry of one of the store's named databases, read with raw LMDB. Only while no EdgeStore
// is open on the directory: a process must not open the same environment twice.
std::map<std::string, std::string> raw_entries(const std::string& directory, const char* db) {
  lmdb::Env env(directory, map_size_bytes, 4);
  lmdb::Txn txn(env, true);
  const MDB_dbi dbi = txn.open(db, 0);
  std::map<std::string, std::string> entries;
  txn.for_each(dbi, {},
               [&](std::string_view key, std::string_view value) { entries.emplace(key, value); });
  return entries;
}

// Writes what no effect can: used to plant keys that are not hashes. Same rule as raw_entries.
void raw_put(const std::string& directory, const char* db, const std::string& key,
             const std::string& value) {
  lmdb::Env env(directory, map_size_bytes, 4);
  lmdb::Txn txn(env, false);
  const MDB_dbi dbi = txn.open(db);
  txn.put(dbi, key, value);
  txn.commit();
}

// Deletes an entry behind the store's back (content lost). Same rule as raw_entries.
void raw_del(const std::string& directory, const char* db, const std::string& key) {
  lmdb::Env env(directory, map_size_bytes, 4);
  lmdb::Txn txn(env, false);
  const MDB_dbi dbi = txn.open(db);
  txn.del(dbi, key);
  txn.commit();
}

std::string key_of(const Hash& hash) {
  return {reinterpret_cast<const char*>(hash.digest.data()), Hash::size_bytes};
}

std::string string_of(const Bytes& data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

// Flips one byte of every copy of `needle` found in `file` and returns where each copy starts.
// LMDB is copy-on-write: a persisted fragment's bytes may also lie in the freed pages of its
// temporary copy, so flipping every copy is how to be sure the live one is hit.
std::vector<std::size_t> flip_on_disk(const std::string& file, std::span<const std::uint8_t> needle,
                                      std::size_t flip_at) {
  std::ifstream in(file, std::ios::binary);
  const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string_view wanted(reinterpret_cast<const char*>(needle.data()), needle.size());
  std::vector<std::size_t> found;
  for (auto at = content.find(wanted); at != std::string::npos; at = content.find(wanted, at + 1))
    found.push_back(at);
  const int fd = ::open(file.c_str(), O_RDWR);
  if (fd < 0) throw std::runtime_error("cannot open " + file + ": " + std::strerror(errno));
  for (const auto at : found) {
    const char flipped = static_cast<char>(content[at + flip_at] ^ 0x01);
    if (::pwrite(fd, &flipped, 1, static_cast<off_t>(at + flip_at)) != 1) {
      ::close(fd);
      throw std::runtime_error("cannot write " + file + ": " + std::strerror(errno));
    }
  }
  ::close(fd);
  return found;
}

// Where flip_on_disk() looks in a fragment and which of its bytes it flips: well inside the value,
// so in an LMDB overflow page that holds nothing else, and long enough to occur nowhere by chance.
constexpr std::size_t needle_offset = 5000;
constexpr std::size_t needle_bytes = 64;
constexpr std::size_t flip_in_needle = 10;

// The content LMDB holds once flip_on_disk() hit a fragment.
Bytes corrupted(const Bytes& data) {
  Bytes copy = data;
  copy[needle_offset + flip_in_needle] ^= 0x01;
  return copy;
}

std::vector<std::size_t> corrupt_on_disk(const TempDir& dir, const TestFragment& fragment) {
  return flip_on_disk(dir.data_file(),
                      std::span(fragment.data).subspan(needle_offset, needle_bytes),
                      flip_in_needle);
}

class EdgeStoreTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

// 1. Every effect, in several transactions, survives a restart as the reference store holds it.
TEST_F(EdgeStoreTest, EffectsRoundTripThroughARestartLikeTheMemoryStore) {
  constexpr std::int64_t fragment_size_bytes = 8 * 1024;
  const auto file_a = cut_file(pattern(20'000, 1), fragment_size_bytes);  // 8192 + 8192 + 3616
  const auto file_b = cut_file(pattern(5'000, 2), fragment_size_bytes);
  const auto file_c = cut_file(pattern(9'000, 3), fragment_size_bytes);
  ASSERT_EQ(file_a.fragments.size(), 3u);
  ASSERT_EQ(file_b.fragments.size(), 1u);
  ASSERT_EQ(file_c.fragments.size(), 2u);
  const TestFragment& a0 = file_a.fragments[0];
  const TestFragment& a1 = file_a.fragments[1];
  const TestFragment& a2 = file_a.fragments[2];
  const TestFragment& b0 = file_b.fragments[0];
  const TestFragment& c0 = file_c.fragments[0];
  const TestFragment& c1 = file_c.fragments[1];

  const std::vector<std::vector<StorageEffect>> batches = {
      {store::PutFragmentSize{fragment_size_bytes}, store::PutFile{file_a.hash, file_a.metadata},
       store::PutTemporaryFragment{a0.hash, a0.data}, store::PutTemporaryFragment{a1.hash, a1.data},
       store::PutTemporaryFragment{a2.hash, a2.data}},
      {store::PersistFragment{a0.hash}, store::PersistFragment{a1.hash},
       store::PutFile{file_b.hash, file_b.metadata}, store::PutTemporaryFragment{b0.hash, b0.data}},
      // A fragment obtained and persisted in one step; a persisted and a temporary one deleted.
      {store::PutTemporaryFragment{c0.hash, c0.data}, store::PersistFragment{c0.hash},
       store::DeleteFragment{a1.hash}, store::DeleteFragment{b0.hash},
       store::DeleteFile{file_b.hash}},
      // Deleting what is not there does nothing; a temporary copy put again is replaced.
      {store::PutFile{file_c.hash, file_c.metadata}, store::DeleteFile{file_b.hash},
       store::DeleteFragment{b0.hash}, store::PutTemporaryFragment{c1.hash, c1.data},
       store::PutTemporaryFragment{c1.hash, c1.data},
       store::PutTemporaryFragment{a1.hash, a1.data}},
  };

  TorrentMemoryStore expected;
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    for (const auto& batch : batches) {
      store.apply(batch);
      expected.apply(batch);
    }
    SCOPED_TRACE("the store that applied the effects");
    expect_usage_of(store.usage(), expected);
  }
  ASSERT_EQ(expected.persisted.size(), 2u);  // a0, c0
  ASSERT_EQ(expected.temporary.size(), 3u);  // a2, c1, a1
  ASSERT_EQ(expected.files.size(), 2u);      // file_a, file_c

  {
    EdgeStore store(dir_.path(), map_size_bytes);
    SCOPED_TRACE("a new store on the same directory");
    EXPECT_EQ(store.fragment_size_bytes(), std::optional<std::int64_t>(fragment_size_bytes));
    expect_usage_of(store.usage(), expected);
    const auto loaded = load(store);
    expect_same_snapshot(loaded.snapshot, expected.snapshot());
    EXPECT_TRUE(loaded.drops.empty()) << describe(loaded.drops);
    EXPECT_EQ(loaded.report.fragments_intact, 2u);
    EXPECT_EQ(loaded.report.temporary_intact, 3u);
    EXPECT_EQ(loaded.report.dropped_corrupt, 0u);
    EXPECT_EQ(loaded.report.dropped_unknown, 0u);
    EXPECT_EQ(loaded.report.bytes_checked, a0.size_bytes() + c0.size_bytes() + a2.size_bytes() +
                                               c1.size_bytes() + a1.size_bytes());
    for (const auto& [hash, data] : expected.persisted) {
      int calls = 0;
      const auto result = store.read_fragment(hash, [&](std::span<const std::uint8_t> content) {
        ++calls;
        EXPECT_TRUE(std::equal(content.begin(), content.end(), data.begin(), data.end()))
            << hash.to_hex();
      });
      EXPECT_EQ(result, EdgeStore::ReadResult::ok) << hash.to_hex();
      EXPECT_EQ(calls, 1) << hash.to_hex();
    }
  }
  // The temporary copies have no reader in EdgeStore: compare their bytes in LMDB itself. Every
  // fragment's content is in `fragments`, written once; `temporary` marks the unpersisted ones.
  std::map<std::string, std::string> expected_marks, expected_content;
  for (const auto& [hash, data] : expected.temporary) {
    expected_marks[key_of(hash)] = "";
    expected_content[key_of(hash)] = string_of(data);
  }
  for (const auto& [hash, data] : expected.persisted)
    expected_content[key_of(hash)] = string_of(data);
  EXPECT_TRUE(raw_entries(dir_.path(), "temporary") == expected_marks)
      << "the temporary marks are not exactly these";
  EXPECT_TRUE(raw_entries(dir_.path(), "fragments") == expected_content)
      << "the fragments database does not hold exactly the bytes put in it";
}

// 1b. A store written when `temporary` held the content of unpersisted fragments opens in the
// current layout: an intact copy is moved (and marked), one of a fragment also in `fragments` goes.
TEST_F(EdgeStoreTest, AStoreOfTheEarlierLayoutIsMovedToTheCurrentOne) {
  constexpr std::int64_t fragment_size_bytes = 4096;
  const auto persisted = make_fragment(4000, 60);
  const auto obtained = make_fragment(3000, 61);
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    store.apply({store::PutFragmentSize{fragment_size_bytes},
                 store::PutTemporaryFragment{persisted.hash, persisted.data},
                 store::PersistFragment{persisted.hash}});
  }
  raw_put(dir_.path(), "temporary", key_of(obtained.hash), string_of(obtained.data));
  raw_put(dir_.path(), "temporary", key_of(persisted.hash), string_of(persisted.data));

  const auto loaded = reopen_and_load(dir_.path());
  EXPECT_EQ(loaded.report.fragments_intact, 1u);
  EXPECT_EQ(loaded.report.temporary_intact, 1u);
  EXPECT_EQ(loaded.report.dropped_unknown, 1u) << describe(loaded.drops);
  const Drop* drop = find_drop(loaded.drops, persisted.hash.to_hex());
  ASSERT_NE(drop, nullptr) << describe(loaded.drops);
  EXPECT_EQ(drop->why, "it is also in fragments");
  EXPECT_EQ(sizes_by_hex(loaded.snapshot.temporary_fragments),
            (std::map<std::string, std::int64_t>{{obtained.hash.to_hex(), 3000}}));
  EXPECT_TRUE(raw_entries(dir_.path(), "temporary") ==
              (std::map<std::string, std::string>{{key_of(obtained.hash), ""}}));
  EXPECT_TRUE(
      raw_entries(dir_.path(), "fragments") ==
      (std::map<std::string, std::string>{{key_of(persisted.hash), string_of(persisted.data)},
                                          {key_of(obtained.hash), string_of(obtained.data)}}));
  // Moved for good: it persists like any other, and the next start has nothing to move or drop.
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    store.apply({store::PersistFragment{obtained.hash}});
  }
  const auto again = reopen_and_load(dir_.path());
  EXPECT_TRUE(again.drops.empty()) << describe(again.drops);
  EXPECT_EQ(again.report.fragments_intact, 2u);
  EXPECT_TRUE(raw_entries(dir_.path(), "temporary").empty());
}

// 2. A step whose last effect throws leaves nothing of that step, and the store stays usable.
TEST_F(EdgeStoreTest, AnApplyThatThrowsLeavesNothingOfItsBatch) {
  const auto held = make_fragment(3000, 10);
  const auto persisted = make_fragment(3000, 11);
  const auto arriving = make_fragment(3000, 12);
  const auto never_obtained = make_fragment(3000, 13);
  const auto file = cut_file(pattern(6000, 14), 4096);
  const auto other_file = cut_file(pattern(7000, 15), 4096);
  const std::vector<StorageEffect> setup = {
      store::PutFragmentSize{4096},
      store::PutFile{file.hash, file.metadata},
      store::PutTemporaryFragment{held.hash, held.data},
      store::PutTemporaryFragment{persisted.hash, persisted.data},
      store::PersistFragment{persisted.hash},
  };
  TorrentMemoryStore expected;
  expected.apply(setup);

  // Every kind of effect first, then one that cannot be applied.
  const std::vector<StorageEffect> doomed_head = {
      store::PutFragmentSize{8192},      store::PutFile{other_file.hash, other_file.metadata},
      store::DeleteFile{file.hash},      store::PutTemporaryFragment{arriving.hash, arriving.data},
      store::PersistFragment{held.hash}, store::DeleteFragment{persisted.hash},
  };
  const std::vector<std::pair<const char*, StorageEffect>> last_effects = {
      {"a persist of a fragment not held temporarily", store::PersistFragment{never_obtained.hash}},
      {"a tracker effect", store::PutRevision{7}},
  };

  {
    EdgeStore store(dir_.path(), map_size_bytes);
    store.apply(setup);
    for (const auto& [what, last] : last_effects) {
      SCOPED_TRACE(std::string("the batch ends with ") + what);
      auto doomed = doomed_head;
      doomed.push_back(last);
      TorrentMemoryStore reference = expected;
      EXPECT_THROW(reference.apply(doomed), std::logic_error)
          << "the reference store should refuse it too";
      EXPECT_THROW(store.apply(doomed), std::logic_error);
      EXPECT_EQ(store.fragment_size_bytes(), std::optional<std::int64_t>(4096));
      expect_usage_of(store.usage(), expected);
    }
  }
  {
    SCOPED_TRACE("after a restart");
    EdgeStore store(dir_.path(), map_size_bytes);
    const auto loaded = load(store);
    expect_same_snapshot(loaded.snapshot, expected.snapshot());
    EXPECT_TRUE(loaded.drops.empty()) << describe(loaded.drops);

    // A failed transaction must not block the next one.
    const std::vector<StorageEffect> next = {
        store::PutTemporaryFragment{arriving.hash, arriving.data},
        store::PersistFragment{arriving.hash}};
    store.apply(next);
    expected.apply(next);
    expect_usage_of(store.usage(), expected);
  }
  expect_same_snapshot(reopen_and_load(dir_.path()).snapshot, expected.snapshot());
}

// 2b. A step that does not fit the map fails as a whole and can be retried with a larger map.
TEST_F(EdgeStoreTest, AnApplyThatFillsTheMapLeavesNothingOfItsBatch) {
  constexpr std::size_t small_map_bytes = 1024 * 1024;
  const auto kept = make_fragment(100'000, 60);
  TorrentMemoryStore expected;
  const std::vector<StorageEffect> setup = {store::PutFragmentSize{512 * 1024},
                                            store::PutTemporaryFragment{kept.hash, kept.data},
                                            store::PersistFragment{kept.hash}};
  expected.apply(setup);
  std::vector<StorageEffect> too_big = {store::DeleteFragment{kept.hash}};
  for (std::uint32_t i = 0; i < 3; ++i) {
    const auto f = make_fragment(400 * 1024, 61 + i);
    too_big.push_back(store::PutTemporaryFragment{f.hash, f.data});
  }
  {
    EdgeStore store(dir_.path(), small_map_bytes);
    store.apply(setup);
    try {
      store.apply(too_big);
      ADD_FAILURE() << "1.2 MiB of fragments fit a map of 1 MiB: the test no longer fills the map";
    } catch (const lmdb::Error& e) {
      EXPECT_EQ(e.code(), MDB_MAP_FULL) << e.what();
      EXPECT_TRUE(e.recoverable()) << e.what();
    }
    expect_usage_of(store.usage(), expected);
    const auto small = make_fragment(1000, 64);
    const std::vector<StorageEffect> next = {store::PutTemporaryFragment{small.hash, small.data}};
    store.apply(next);
    expected.apply(next);
    expect_usage_of(store.usage(), expected);
  }
  const auto loaded = reopen_and_load(dir_.path());
  expect_same_snapshot(loaded.snapshot, expected.snapshot());
  EXPECT_TRUE(loaded.drops.empty()) << describe(loaded.drops);
}

// 3. A fragment whose bytes changed on disk is dropped at start-up, and only it.
void check_corruption_is_dropped(const TempDir& dir, bool temporary) {
  constexpr std::int64_t fragment_size_bytes = 16 * 1024;
  // Larger than a page, so each value lies in LMDB overflow pages of its own.
  std::vector<TestFragment> fragments;
  for (std::uint32_t i = 0; i < 5; ++i)
    fragments.push_back(make_fragment(static_cast<std::size_t>(9000 + 1500 * i), 20 + i));
  const std::size_t victim_index = temporary ? 3 : 1;  // 0..2 persisted, 3..4 temporary
  const TestFragment& victim = fragments[victim_index];

  std::vector<StorageEffect> obtain = {store::PutFragmentSize{fragment_size_bytes}};
  std::vector<StorageEffect> persist;
  for (std::size_t i = 0; i < fragments.size(); ++i) {
    obtain.push_back(store::PutTemporaryFragment{fragments[i].hash, fragments[i].data});
    if (i < 3) persist.push_back(store::PersistFragment{fragments[i].hash});
  }
  std::int64_t all_bytes = 0;
  for (const auto& f : fragments) all_bytes += f.size_bytes();
  {
    EdgeStore store(dir.path(), map_size_bytes);
    store.apply(obtain);
    store.apply(persist);
  }

  const auto copies = corrupt_on_disk(dir, victim);
  ASSERT_GE(copies.size(), 1u) << "the victim's bytes were not found in " << dir.data_file();
  const std::string expected_why =
      "its content hashes to " + sha256(corrupted(victim.data)).to_hex();

  const auto loaded = reopen_and_load(dir.path());
  EXPECT_EQ(loaded.report.dropped_corrupt, 1u) << describe(loaded.drops);
  EXPECT_EQ(loaded.report.dropped_unknown, 0u) << describe(loaded.drops);
  EXPECT_EQ(loaded.report.fragments_intact, temporary ? 3u : 2u);
  EXPECT_EQ(loaded.report.temporary_intact, temporary ? 1u : 2u);
  EXPECT_EQ(loaded.report.bytes_checked, all_bytes)
      << "every fragment is hashed, the corrupt one too";
  ASSERT_EQ(loaded.drops.size(), 1u) << describe(loaded.drops);
  EXPECT_EQ(loaded.drops[0].name, victim.hash.to_hex());
  EXPECT_EQ(loaded.drops[0].why, expected_why);
  for (std::size_t i = 0; i < fragments.size(); ++i) {
    const bool in_stored = loaded.snapshot.stored_fragments.count(fragments[i].hash) == 1;
    const bool in_temporary = loaded.snapshot.temporary_fragments.count(fragments[i].hash) == 1;
    EXPECT_EQ(in_stored, i != victim_index && i < 3) << "fragment " << i;
    EXPECT_EQ(in_temporary, i != victim_index && i >= 3) << "fragment " << i;
  }

  SCOPED_TRACE("after the next restart");
  EdgeStore store(dir.path(), map_size_bytes);
  const auto again = load(store);
  EXPECT_TRUE(again.drops.empty()) << "the corrupt fragment was not deleted:\n"
                                   << describe(again.drops);
  EXPECT_EQ(again.report.fragments_intact + again.report.temporary_intact, 4u);
  EXPECT_EQ(again.report.bytes_checked, all_bytes - victim.size_bytes());
  EXPECT_EQ(again.snapshot.stored_fragments.count(victim.hash) +
                again.snapshot.temporary_fragments.count(victim.hash),
            0u);
  EXPECT_EQ(store.read_fragment(victim.hash, [](std::span<const std::uint8_t>) {}),
            EdgeStore::ReadResult::not_found);
}

TEST_F(EdgeStoreTest, APersistedFragmentCorruptOnDiskIsDroppedAlone) {
  check_corruption_is_dropped(dir_, false);
}

TEST_F(EdgeStoreTest, ATemporaryFragmentCorruptOnDiskIsDroppedAlone) {
  check_corruption_is_dropped(dir_, true);
}

// 4a. Content without a fragment size cannot be checked against one: it goes.
TEST_F(EdgeStoreTest, FragmentsWithoutAFragmentSizeAreDroppedAsUnknown) {
  const auto persisted = make_fragment(5000, 30);
  const auto held = make_fragment(5000, 31);
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    store.apply({store::PutTemporaryFragment{persisted.hash, persisted.data},
                 store::PersistFragment{persisted.hash},
                 store::PutTemporaryFragment{held.hash, held.data}});
    const auto loaded = load(store);
    EXPECT_EQ(loaded.report.dropped_unknown, 2u) << describe(loaded.drops);
    EXPECT_EQ(loaded.report.dropped_corrupt, 0u);
    EXPECT_EQ(loaded.report.bytes_checked, 0);
    EXPECT_FALSE(loaded.snapshot.fragment_size_bytes.has_value());
    EXPECT_TRUE(loaded.snapshot.stored_fragments.empty());
    EXPECT_TRUE(loaded.snapshot.temporary_fragments.empty());
    for (const auto* f : {&persisted, &held}) {
      const Drop* drop = find_drop(loaded.drops, f->hash.to_hex());
      ASSERT_NE(drop, nullptr) << f->hash.to_hex() << " not reported:\n" << describe(loaded.drops);
      EXPECT_TRUE(contains(drop->why, "no fragment size")) << drop->why;
    }
  }
  EXPECT_TRUE(raw_entries(dir_.path(), "fragments").empty());
  EXPECT_TRUE(raw_entries(dir_.path(), "temporary").empty());
}

// 4b. Every other kind of entry the store cannot account for goes; what is valid stays.
TEST_F(EdgeStoreTest, DataTheStoreCannotAccountForIsDroppedAsUnknown) {
  constexpr std::int64_t fragment_size_bytes = 4096;
  const auto full = make_fragment(4096, 40);  // exactly the fragment size: valid
  const auto too_big = make_fragment(4097, 41);
  const auto empty = make_fragment(0, 42);
  const auto both = make_fragment(3000, 43);  // persisted, and a temporary copy came again
  const auto lost = make_fragment(2000, 44);  // marked temporary, its content gone
  const std::string short_key(31, 'k'), long_key(33, 'k'), tiny_key = "abc";
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    store.apply({store::PutFragmentSize{fragment_size_bytes},
                 store::PutTemporaryFragment{full.hash, full.data},
                 store::PutTemporaryFragment{too_big.hash, too_big.data},
                 store::PutTemporaryFragment{both.hash, both.data}});
    store.apply({store::PersistFragment{full.hash}, store::PersistFragment{too_big.hash},
                 store::PersistFragment{both.hash},
                 store::PutTemporaryFragment{empty.hash, empty.data}});
    // Content is addressed by its hash: it is not written again, but the fragment is temporary
    // again, as the core now holds it (persisted at Ended, deleted otherwise).
    store.apply({store::PutTemporaryFragment{both.hash, both.data},
                 store::PutTemporaryFragment{lost.hash, lost.data}});
  }
  raw_del(dir_.path(), "fragments", key_of(lost.hash));
  raw_put(dir_.path(), "fragments", short_key, "not a fragment");
  raw_put(dir_.path(), "fragments", long_key, "not a fragment either");
  raw_put(dir_.path(), "temporary", tiny_key, "nor this");

  const auto loaded = reopen_and_load(dir_.path());
  EXPECT_EQ(loaded.report.dropped_unknown, 6u) << describe(loaded.drops);
  EXPECT_EQ(loaded.report.dropped_corrupt, 0u) << describe(loaded.drops);
  EXPECT_EQ(loaded.report.fragments_intact, 1u);
  EXPECT_EQ(loaded.report.temporary_intact, 1u);
  EXPECT_EQ(loaded.report.bytes_checked, full.size_bytes() + both.size_bytes());
  EXPECT_EQ(sizes_by_hex(loaded.snapshot.stored_fragments),
            (std::map<std::string, std::int64_t>{{full.hash.to_hex(), 4096}}));
  EXPECT_EQ(sizes_by_hex(loaded.snapshot.temporary_fragments),
            (std::map<std::string, std::int64_t>{{both.hash.to_hex(), 3000}}));

  const std::vector<std::pair<std::string, std::string>> expected_drops = {
      {too_big.hash.to_hex(), "it has 4097 bytes, outside 1..4096"},
      {empty.hash.to_hex(), "it has 0 bytes, outside 1..4096"},
      {lost.hash.to_hex(), "its content is missing"},
      {"a key of 31 bytes", "its key is not a hash"},
      {"a key of 33 bytes", "its key is not a hash"},
      {"a key of 3 bytes", "its key is not a hash"},
  };
  for (const auto& [name, why] : expected_drops) {
    const Drop* drop = find_drop(loaded.drops, name);
    ASSERT_NE(drop, nullptr) << name << " was not reported:\n" << describe(loaded.drops);
    EXPECT_EQ(drop->why, why) << name;
  }

  // Gone for good, and the content of `both` is intact, written once, marked temporary.
  std::map<std::string, std::string> expected_fragments = {
      {key_of(full.hash), string_of(full.data)}, {key_of(both.hash), string_of(both.data)}};
  EXPECT_TRUE(raw_entries(dir_.path(), "fragments") == expected_fragments)
      << "the fragments database keeps a drop";
  EXPECT_TRUE(raw_entries(dir_.path(), "temporary") ==
              (std::map<std::string, std::string>{{key_of(both.hash), ""}}))
      << "the temporary database keeps a drop";
  const auto again = reopen_and_load(dir_.path());
  EXPECT_TRUE(again.drops.empty()) << describe(again.drops);
}

// 5. read_fragment verifies what it hands out and leaves a corrupt copy for the machine to delete.
TEST_F(EdgeStoreTest, ReadFragmentVerifiesAndLeavesACorruptCopyInPlace) {
  const auto good = make_fragment(12'000, 50);
  const auto bad = make_fragment(12'000, 51);
  const auto held = make_fragment(12'000, 52);
  const auto unknown = make_fragment(12'000, 53);
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    store.apply({store::PutFragmentSize{16 * 1024},
                 store::PutTemporaryFragment{good.hash, good.data},
                 store::PutTemporaryFragment{bad.hash, bad.data},
                 store::PutTemporaryFragment{held.hash, held.data}});
    store.apply({store::PersistFragment{good.hash}, store::PersistFragment{bad.hash}});
  }
  ASSERT_GE(corrupt_on_disk(dir_, bad).size(), 1u)
      << "the fragment's bytes were not found in " << dir_.data_file();

  {
    EdgeStore store(dir_.path(), map_size_bytes);
    Bytes read;
    int calls = 0;
    auto collect = [&](std::span<const std::uint8_t> content) {
      ++calls;
      read.assign(content.begin(), content.end());
    };
    EXPECT_EQ(store.read_fragment(good.hash, collect), EdgeStore::ReadResult::ok);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(read == good.data) << "read_fragment handed out other bytes than were stored";

    calls = 0;
    EXPECT_EQ(store.read_fragment(unknown.hash, collect), EdgeStore::ReadResult::not_found);
    EXPECT_EQ(store.read_fragment(held.hash, collect), EdgeStore::ReadResult::not_found)
        << "a fragment held only temporarily is not served";
    EXPECT_EQ(store.read_fragment(bad.hash, collect), EdgeStore::ReadResult::corrupt);
    EXPECT_EQ(store.read_fragment(bad.hash, collect), EdgeStore::ReadResult::corrupt)
        << "a second read";
    EXPECT_EQ(calls, 0) << "fn was called for a fragment that is missing or corrupt";
  }
  const auto fragments = raw_entries(dir_.path(), "fragments");
  const auto it = fragments.find(key_of(bad.hash));
  ASSERT_NE(it, fragments.end()) << "read_fragment deleted the corrupt copy";
  EXPECT_TRUE(it->second == string_of(corrupted(bad.data)));
}

// 5b. The background scrub walks the persisted fragments one step at a time, in key order, from
// a cursor that survives deletions and additions between steps, hashes each, and leaves a corrupt
// copy in place for the machine to delete (as read_fragment does).
TEST_F(EdgeStoreTest, ScrubNextWalksThePersistedFragmentsAndFindsTheCorruptOne) {
  std::vector<TestFragment> persisted;
  for (std::uint32_t i = 0; i < 6; ++i) persisted.push_back(make_fragment(12'000 + i, 60 + i));
  const auto temporary = make_fragment(12'000, 70);
  const auto added = make_fragment(12'000, 71);
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    std::vector<StorageEffect> obtain = {
        store::PutFragmentSize{16 * 1024},
        store::PutTemporaryFragment{temporary.hash, temporary.data}};
    std::vector<StorageEffect> persist;
    for (const auto& f : persisted) {
      obtain.push_back(store::PutTemporaryFragment{f.hash, f.data});
      persist.push_back(store::PersistFragment{f.hash});
    }
    store.apply(obtain);
    store.apply(persist);
  }
  // In key order, as LMDB walks them.
  std::sort(persisted.begin(), persisted.end(), [](const TestFragment& a, const TestFragment& b) {
    return key_of(a.hash) < key_of(b.hash);
  });
  const TestFragment& bad = persisted[4];
  ASSERT_GE(corrupt_on_disk(dir_, bad).size(), 1u)
      << "the fragment's bytes were not found in " << dir_.data_file();

  {
    EdgeStore store(dir_.path(), map_size_bytes);
    // A whole pass: every persisted fragment once, the temporary one never.
    std::vector<EdgeStore::Scrubbed> pass;
    std::optional<Hash> after;
    for (int step = 0; step < 20; ++step) {
      const auto found = store.scrub_next(after);
      if (!found) break;
      pass.push_back(*found);
      after = found->hash;
    }
    ASSERT_EQ(pass.size(), persisted.size()) << "a pass visits each persisted fragment once";
    for (std::size_t i = 0; i < pass.size(); ++i) {
      EXPECT_EQ(pass[i].hash, persisted[i].hash) << "step " << i;
      EXPECT_EQ(pass[i].size_bytes, persisted[i].size_bytes()) << "step " << i;
      EXPECT_EQ(pass[i].intact(), i != 4) << "step " << i;
    }
    EXPECT_EQ(pass[4].actual, sha256(corrupted(bad.data)));
    EXPECT_FALSE(store.scrub_next(after)) << "past the last key the pass is over";
    ASSERT_TRUE(store.scrub_next(std::nullopt));
    EXPECT_EQ(store.scrub_next(std::nullopt)->hash, persisted[0].hash)
        << "the next pass starts from the first key";

    // Between steps the fragment just verified and the next one are deleted, and another is
    // persisted: the walk goes on from the next key there is, and meets the new one if its key
    // comes later.
    const auto first = store.scrub_next(std::nullopt);
    ASSERT_TRUE(first);
    store.apply({store::DeleteFragment{persisted[0].hash}, store::DeleteFragment{persisted[1].hash},
                 store::PutTemporaryFragment{added.hash, added.data}});
    store.apply({store::PersistFragment{added.hash}});
    std::vector<std::string> expected;
    for (std::size_t i = 2; i < persisted.size(); ++i)
      expected.push_back(key_of(persisted[i].hash));
    if (key_of(added.hash) > key_of(persisted[0].hash)) expected.push_back(key_of(added.hash));
    std::sort(expected.begin(), expected.end());
    std::vector<std::string> walked;
    after = first->hash;
    for (int step = 0; step < 20; ++step) {
      const auto found = store.scrub_next(after);
      if (!found) break;
      walked.push_back(key_of(found->hash));
      after = found->hash;
    }
    EXPECT_EQ(walked, expected);
  }
  const auto fragments = raw_entries(dir_.path(), "fragments");
  const auto it = fragments.find(key_of(bad.hash));
  ASSERT_NE(it, fragments.end()) << "scrub_next deleted the corrupt copy itself";
  EXPECT_TRUE(it->second == string_of(corrupted(bad.data)));
}

// 6. kill -9 at any moment leaves the state after some whole batch.
//
// Batch 0 stores the fragment size. Batch 2g-1 obtains the 4 fragments of generation g; batch 2g
// persists them and deletes generation g-1. Every batch also puts a marker file whose size is its
// own number and whose sequence names its generation, so the store says which batch it ends at.
constexpr std::int64_t kill_fragment_size_bytes = 64 * 1024;
constexpr std::uint32_t fragments_per_generation = 4;
// Bounds the child should the parent fail to kill it (it also dies with its parent).
constexpr std::uint64_t kill_batches_max = 1'000'000;

Hash marker_hash() {
  return sha256(std::string_view("mqds edge_store_test: the last batch applied"));
}

std::vector<TestFragment> generation(std::uint64_t g) {
  std::vector<TestFragment> fragments;
  for (std::uint32_t i = 0; i < fragments_per_generation; ++i)
    fragments.push_back(
        make_fragment(static_cast<std::size_t>(kill_fragment_size_bytes),
                      static_cast<std::uint32_t>(g) * fragments_per_generation + i + 1000));
  return fragments;
}

std::vector<Hash> hashes_of(const std::vector<TestFragment>& fragments) {
  std::vector<Hash> hashes;
  for (const auto& f : fragments) hashes.push_back(f.hash);
  return hashes;
}

std::vector<StorageEffect> kill_batch(std::uint64_t n) {
  std::vector<StorageEffect> batch;
  const std::uint64_t g = (n + 1) / 2;
  std::vector<Hash> named;
  if (n == 0) {
    batch.push_back(store::PutFragmentSize{kill_fragment_size_bytes});
  } else if (n % 2 == 1) {
    const auto fresh = generation(g);
    for (const auto& f : fresh) batch.push_back(store::PutTemporaryFragment{f.hash, f.data});
    named = hashes_of(fresh);
  } else {
    named = hashes_of(generation(g));
    for (const auto& hash : named) batch.push_back(store::PersistFragment{hash});
    if (g > 1)
      for (const auto& hash : hashes_of(generation(g - 1)))
        batch.push_back(store::DeleteFragment{hash});
  }
  batch.push_back(store::PutFile{marker_hash(), FileMetadata{static_cast<std::int64_t>(n), named}});
  return batch;
}

// What the store holds after batch n, built with the reference store from the last two batches
// (each batch 2g-1 and 2g rewrites everything the earlier ones left).
TorrentMemoryStore state_after(std::uint64_t n) {
  TorrentMemoryStore state;
  state.apply(kill_batch(0));
  if (n == 0) return state;
  const std::uint64_t g = (n + 1) / 2;
  if (g > 1) {  // generation g-1 persisted
    for (const auto& f : generation(g - 1)) state.persisted[f.hash] = f.data;
  }
  state.apply(kill_batch(2 * g - 1));
  if (n % 2 == 0) state.apply(kill_batch(n));
  return state;
}

[[noreturn]] void apply_batches_until_killed(const std::string& directory) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  int status = 0;
  try {
    EdgeStore store(directory, map_size_bytes);
    for (std::uint64_t n = 0; n < kill_batches_max; ++n) store.apply(kill_batch(n));
    status = 4;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "the child applying batches failed: %s\n", e.what());
    status = 3;
  }
  ::_exit(status);  // never back into gtest, and no flush of the parent's buffers
}

TEST(EdgeStoreKill, AKillNineLeavesTheStateOfAWholeBatch) {
  for (const int delay_ms : {170, 230, 290, 340, 410}) {
    SCOPED_TRACE("killed after " + std::to_string(delay_ms) + " ms");
    TempDir dir;
    std::fflush(nullptr);
    const pid_t child = ::fork();
    ASSERT_NE(child, -1) << "fork failed: " << std::strerror(errno);
    if (child == 0) apply_batches_until_killed(dir.path());
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child ended by itself (exit status "
        << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << "); see its message above";

    EdgeStore store(dir.path(), map_size_bytes);
    const auto loaded = load(store);
    EXPECT_EQ(loaded.report.dropped_corrupt, 0u) << describe(loaded.drops);
    EXPECT_EQ(loaded.report.dropped_unknown, 0u) << describe(loaded.drops);
    const auto marker = loaded.snapshot.files.find(marker_hash());
    ASSERT_NE(marker, loaded.snapshot.files.end())
        << "no batch was committed in " << delay_ms << " ms: is " << dir.path()
        << " on a very slow disk?";
    ASSERT_EQ(loaded.snapshot.files.size(), 1u);
    const auto n = static_cast<std::uint64_t>(marker->second.size_bytes);
    SCOPED_TRACE("the store ends at batch " + std::to_string(n));
    const TorrentMemoryStore expected = state_after(n);
    expect_same_snapshot(loaded.snapshot, expected.snapshot());
    EXPECT_EQ(loaded.report.fragments_intact, expected.persisted.size());
    EXPECT_EQ(loaded.report.temporary_intact, expected.temporary.size());
    for (const auto& [hash, data] : expected.persisted) {
      Bytes read;
      EXPECT_EQ(
          store.read_fragment(
              hash, [&](std::span<const std::uint8_t> c) { read.assign(c.begin(), c.end()); }),
          EdgeStore::ReadResult::ok);
      EXPECT_TRUE(read == data) << hash.to_hex();
    }
  }
}

// 7. Hashing 200 MiB at start-up, or serving it, must not leave it in the daemon's resident set.
std::int64_t resident_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  ADD_FAILURE() << "no VmRSS line in /proc/self/status";
  return 0;
}

TEST_F(EdgeStoreTest, CheckingAndServingTheContentDoesNotLeaveItResident) {
  constexpr std::size_t fragment_size_bytes = 512 * 1024;
  constexpr std::uint32_t fragment_count = 400;  // 200 MiB
  constexpr std::uint32_t per_batch = 20;
  constexpr std::int64_t growth_kib_max = 64 * 1024;
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    store.apply({store::PutFragmentSize{static_cast<std::int64_t>(fragment_size_bytes)}});
    for (std::uint32_t first = 0; first < fragment_count; first += per_batch) {
      std::vector<StorageEffect> batch;
      std::vector<Hash> batch_hashes;
      for (std::uint32_t i = first; i < first + per_batch; ++i) {
        auto f = make_fragment(fragment_size_bytes, 5000 + i);
        batch_hashes.push_back(f.hash);
        batch.push_back(store::PutTemporaryFragment{f.hash, std::move(f.data)});
      }
      // Half of them persisted, so both databases are walked.
      if (first % (2 * per_batch) == 0)
        for (const auto& hash : batch_hashes) batch.push_back(store::PersistFragment{hash});
      store.apply(batch);
    }
  }

  // Measured in a store that wrote nothing, and around each call only: what the writes left in the
  // heap is in every baseline.
  IntegrityReport report;
  {
    EdgeStore store(dir_.path(), map_size_bytes);
    std::int64_t before_kib = resident_kib();
    const EdgeUsage usage = store.usage();
    EXPECT_EQ(usage.fragments + usage.temporary, fragment_count);
    EXPECT_EQ(usage.fragment_bytes + usage.temporary_bytes,
              static_cast<std::int64_t>(fragment_size_bytes) * fragment_count);
    std::int64_t growth_kib = resident_kib() - before_kib;
    EXPECT_LT(growth_kib, 16 * 1024)
        << "VmRSS grew by " << growth_kib / 1024
        << " MiB while usage() only walked the keys: it reads content pages";

    before_kib = resident_kib();
    std::vector<Drop> drops;
    const TorrentSnapshot snapshot =
        store.verify_and_load(report, [&](const std::string& name, const std::string& why) {
          drops.push_back({name, why});
        });
    EXPECT_TRUE(drops.empty()) << describe(drops);
    growth_kib = resident_kib() - before_kib;
    EXPECT_LT(growth_kib, growth_kib_max)
        << "VmRSS grew by " << growth_kib / 1024 << " MiB while verify_and_load hashed "
        << report.bytes_checked / (1024 * 1024)
        << " MiB: the pages it read are not released (madvise)";

    // Serving fetches reads the same way: a daemon that served every fragment holds none of them.
    before_kib = resident_kib();
    std::int64_t served_bytes = 0;
    auto serve = [&](std::span<const std::uint8_t> content) {
      served_bytes += static_cast<std::int64_t>(content.size());
    };
    for (const auto& [hash, info] : snapshot.stored_fragments)
      EXPECT_EQ(store.read_fragment(hash, serve), EdgeStore::ReadResult::ok) << hash.to_hex();
    EXPECT_EQ(served_bytes, static_cast<std::int64_t>(fragment_size_bytes) * (fragment_count / 2));
    growth_kib = resident_kib() - before_kib;
    EXPECT_LT(growth_kib, growth_kib_max)
        << "VmRSS grew by " << growth_kib / 1024 << " MiB while read_fragment served "
        << served_bytes / (1024 * 1024) << " MiB: the pages it read are not released";

    // So does the background scrub: a whole pass leaves none of the store resident either.
    before_kib = resident_kib();
    std::int64_t scrubbed_bytes = 0;
    std::optional<Hash> after;
    for (std::uint32_t step = 0; step <= fragment_count; ++step) {
      const auto found = store.scrub_next(after);
      if (!found) break;
      EXPECT_TRUE(found->intact()) << found->hash.to_hex();
      scrubbed_bytes += found->size_bytes;
      after = found->hash;
    }
    EXPECT_EQ(scrubbed_bytes, static_cast<std::int64_t>(fragment_size_bytes) * (fragment_count / 2))
        << "a pass covers the persisted fragments";
    growth_kib = resident_kib() - before_kib;
    EXPECT_LT(growth_kib, growth_kib_max)
        << "VmRSS grew by " << growth_kib / 1024 << " MiB while a scrub pass hashed "
        << scrubbed_bytes / (1024 * 1024) << " MiB: the pages it read are not released";
  }
  EXPECT_EQ(report.bytes_checked, static_cast<std::int64_t>(fragment_size_bytes) * fragment_count);
  EXPECT_EQ(report.fragments_intact + report.temporary_intact, fragment_count);
  EXPECT_EQ(report.fragments_intact, fragment_count / 2);
}

}  // namespace
}  // namespace mqds::edge_store_test
