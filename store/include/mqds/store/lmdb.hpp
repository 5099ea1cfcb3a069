// A thin RAII layer over LMDB: move-only environment and transaction, "not found" as an empty
// optional, every other failure as lmdb::Error carrying LMDB's code. A value read from LMDB points
// into the memory map: it is valid only until the transaction ends or the next write in it.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mqds::lmdb {

class Error : public std::runtime_error {
 public:
  Error(const char* what, int code);
  int code() const { return code_; }
  // MDB_MAP_FULL can be cured by a larger map; corruption and panics cannot.
  bool recoverable() const { return code_ == MDB_MAP_FULL || code_ == MDB_READERS_FULL; }

 private:
  int code_;
};

void check(int rc, const char* what);

inline MDB_val val(std::string_view bytes) {
  return MDB_val{bytes.size(), const_cast<char*>(bytes.data())};
}
inline MDB_val val(std::span<const std::uint8_t> bytes) {
  return MDB_val{bytes.size(), const_cast<std::uint8_t*>(bytes.data())};
}
inline std::string_view view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

class Env {
 public:
  // Creates the directory's data.mdb if needed. The default flags make every commit durable.
  Env(const std::string& directory, std::size_t map_size_bytes, unsigned max_dbs);
  ~Env();
  Env(Env&& other) noexcept : env_(other.env_) { other.env_ = nullptr; }
  Env& operator=(Env&&) = delete;
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  MDB_env* get() const { return env_; }

 private:
  MDB_env* env_ = nullptr;
};

class Txn {
 public:
  Txn(const Env& env, bool read_only);
  ~Txn() { abort(); }  // an uncommitted transaction leaves no trace
  Txn(Txn&& other) noexcept : txn_(other.txn_) { other.txn_ = nullptr; }
  Txn& operator=(Txn&&) = delete;
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  void commit();
  void abort() noexcept;
  MDB_txn* get() const { return txn_; }

  MDB_dbi open(const char* name, unsigned flags = MDB_CREATE);
  std::optional<std::string_view> get(MDB_dbi dbi, std::string_view key) const;
  void put(MDB_dbi dbi, std::string_view key, std::string_view value);
  void put(MDB_dbi dbi, std::string_view key, std::span<const std::uint8_t> value);
  bool del(MDB_dbi dbi, std::string_view key);

  // Calls fn(key, value) for every entry whose key starts with prefix, in key order.
  template <class F>
  void for_each(MDB_dbi dbi, std::string_view prefix, F&& fn) const;

 private:
  MDB_txn* txn_ = nullptr;
};

class Cursor {
 public:
  Cursor(const Txn& txn, MDB_dbi dbi);
  ~Cursor() { mdb_cursor_close(cursor_); }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  // Positions at the first key >= key (or the first key); false when there is none.
  bool seek(std::string_view key, MDB_val& k, MDB_val& v);
  bool next(MDB_val& k, MDB_val& v);

 private:
  MDB_cursor* cursor_ = nullptr;
};

template <class F>
void Txn::for_each(MDB_dbi dbi, std::string_view prefix, F&& fn) const {
  Cursor cursor(*this, dbi);
  MDB_val k, v;
  for (bool more = cursor.seek(prefix, k, v); more; more = cursor.next(k, v)) {
    const auto key = view(k);
    if (key.substr(0, prefix.size()) != prefix) break;
    fn(key, view(v));
  }
}

}  // namespace mqds::lmdb
