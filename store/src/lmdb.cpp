#include "mqds/store/lmdb.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace mqds::lmdb {

Error::Error(const char* what, int code)
    : std::runtime_error(std::string(what) + ": " + mdb_strerror(code)), code_(code) {}

void check(int rc, const char* what) {
  if (rc != MDB_SUCCESS) throw Error(what, rc);
}

Env::Env(const std::string& directory, std::size_t map_size_bytes, unsigned max_dbs) {
  if (::mkdir(directory.c_str(), 0750) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot create " + directory + ": " + std::strerror(errno));
  check(mdb_env_create(&env_), "mdb_env_create");
  try {
    check(mdb_env_set_maxdbs(env_, max_dbs), "mdb_env_set_maxdbs");
    check(mdb_env_set_mapsize(env_, map_size_bytes), "mdb_env_set_mapsize");
    check(mdb_env_open(env_, directory.c_str(), 0, 0640), "mdb_env_open");
  } catch (...) {
    mdb_env_close(env_);
    env_ = nullptr;
    throw;
  }
}

Env::~Env() {
  if (env_) mdb_env_close(env_);
}

Txn::Txn(const Env& env, bool read_only) {
  check(mdb_txn_begin(env.get(), nullptr, read_only ? MDB_RDONLY : 0, &txn_), "mdb_txn_begin");
}

void Txn::commit() {
  MDB_txn* txn = txn_;
  txn_ = nullptr;  // committed or not, the handle is gone
  check(mdb_txn_commit(txn), "mdb_txn_commit");
}

void Txn::abort() noexcept {
  if (txn_) mdb_txn_abort(txn_);
  txn_ = nullptr;
}

MDB_dbi Txn::open(const char* name, unsigned flags) {
  MDB_dbi dbi;
  check(mdb_dbi_open(txn_, name, flags, &dbi), "mdb_dbi_open");
  return dbi;
}

std::optional<std::string_view> Txn::get(MDB_dbi dbi, std::string_view key) const {
  MDB_val k = val(key), v;
  const int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  check(rc, "mdb_get");
  return view(v);
}

void Txn::put(MDB_dbi dbi, std::string_view key, std::string_view value) {
  MDB_val k = val(key), v = val(value);
  check(mdb_put(txn_, dbi, &k, &v, 0), "mdb_put");
}

void Txn::put(MDB_dbi dbi, std::string_view key, std::span<const std::uint8_t> value) {
  MDB_val k = val(key), v = val(value);
  check(mdb_put(txn_, dbi, &k, &v, 0), "mdb_put");
}

bool Txn::del(MDB_dbi dbi, std::string_view key) {
  MDB_val k = val(key);
  const int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  check(rc, "mdb_del");
  return true;
}

Cursor::Cursor(const Txn& txn, MDB_dbi dbi) {
  check(mdb_cursor_open(txn.get(), dbi, &cursor_), "mdb_cursor_open");
}

bool Cursor::seek(std::string_view key, MDB_val& k, MDB_val& v) {
  k = val(key);
  const int rc = key.empty() ? mdb_cursor_get(cursor_, &k, &v, MDB_FIRST)
                             : mdb_cursor_get(cursor_, &k, &v, MDB_SET_RANGE);
  if (rc == MDB_NOTFOUND) return false;
  check(rc, "mdb_cursor_get");
  return true;
}

bool Cursor::next(MDB_val& k, MDB_val& v) {
  const int rc = mdb_cursor_get(cursor_, &k, &v, MDB_NEXT);
  if (rc == MDB_NOTFOUND) return false;
  check(rc, "mdb_cursor_get");
  return true;
}

}  // namespace mqds::lmdb
