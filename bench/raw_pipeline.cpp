#include "raw_pipeline.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <chrono>
#include <cstring>
#include <stdexcept>

namespace mqds::bench {

namespace {

using namespace std::chrono_literals;
constexpr std::size_t group_commit_bytes = 8u << 20;  // as mqds-edge

void check_lmdb(int rc, const char* what) {
  if (rc != MDB_SUCCESS) throw std::runtime_error(std::string(what) + ": " + mdb_strerror(rc));
}

}  // namespace

RawConnection::RawConnection(const std::string& id, int port, OnMessage handler)
    : on_message_(std::move(handler)) {
  mosq_ = mosquitto_new(id.c_str(), true, this);
  if (mosq_ == nullptr) throw std::runtime_error("mosquitto_new failed");
  mosquitto_threaded_set(mosq_, true);  // publishes come from other threads than the loop
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(mosq_, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
  mosquitto_message_v5_callback_set(mosq_, &on_message);
  mosquitto_publish_v5_callback_set(mosq_, &on_publish);
  mosquitto_subscribe_v5_callback_set(mosq_, &on_subscribe);
  if (mosquitto_connect(mosq_, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS) {
    mosquitto_destroy(mosq_);
    throw std::runtime_error("cannot connect " + id + " to port " + std::to_string(port));
  }
}

RawConnection::~RawConnection() {
  stopping_ = true;
  if (loop_.joinable()) loop_.join();
  mosquitto_disconnect(mosq_);
  mosquitto_destroy(mosq_);
}

void RawConnection::run() {
  loop_ = std::thread([this] {
    while (!stopping_) {
      if (mosquitto_loop(mosq_, 100, 1) != MOSQ_ERR_SUCCESS) std::this_thread::sleep_for(10ms);
      try {
        if (after_pass_) after_pass_();
      } catch (...) {
        fail(std::current_exception());
      }
    }
  });
}

void RawConnection::subscribe(const std::string& pattern, int qos) {
  mosquitto_subscribe(mosq_, nullptr, pattern.c_str(), qos);
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, 10s, [&] { return subscribed_; }))
    throw std::runtime_error("no SUBACK");
}

void RawConnection::publish(const std::string& topic, const void* data, std::size_t size,
                            std::size_t window) {
  {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, 60s, [&] { return unacknowledged_ < window || failure_; }))
      throw std::runtime_error("no PUBACK for 60 s");
    if (failure_) std::rethrow_exception(failure_);
    ++unacknowledged_;
  }
  const int rc =
      mosquitto_publish(mosq_, nullptr, topic.c_str(), static_cast<int>(size), data, 1, false);
  if (rc != MOSQ_ERR_SUCCESS)
    throw std::runtime_error(std::string("publish: ") + mosquitto_strerror(rc));
}

void RawConnection::wait_all_acknowledged() {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, 60s, [&] { return unacknowledged_ == 0 || failure_; }))
    throw std::runtime_error("no PUBACK for 60 s");
  if (failure_) std::rethrow_exception(failure_);
}

void RawConnection::on_message(mosquitto*, void* self, const mosquitto_message* message,
                               const mosquitto_property*) {
  auto* c = static_cast<RawConnection*>(self);
  try {
    if (c->on_message_) c->on_message_(*message);
  } catch (...) {
    c->fail(std::current_exception());
  }
}

void RawConnection::fail(std::exception_ptr failure) {
  std::lock_guard lock(mutex_);
  if (!failure_) failure_ = failure;
  changed_.notify_all();
}

void RawConnection::rethrow_if_failed() {
  std::lock_guard lock(mutex_);
  if (failure_) std::rethrow_exception(failure_);
}

void RawConnection::on_publish(mosquitto*, void* self, int, int, const mosquitto_property*) {
  auto* c = static_cast<RawConnection*>(self);
  std::lock_guard lock(c->mutex_);
  --c->unacknowledged_;
  c->changed_.notify_all();
}

void RawConnection::on_subscribe(mosquitto*, void* self, int, int, const int*,
                                 const mosquitto_property*) {
  auto* c = static_cast<RawConnection*>(self);
  std::lock_guard lock(c->mutex_);
  c->subscribed_ = true;
  c->changed_.notify_all();
}

RawStore::RawStore(const std::string& dir, std::size_t map_bytes) {
  check_lmdb(mdb_env_create(&env_), "mdb_env_create");
  check_lmdb(mdb_env_set_mapsize(env_, map_bytes), "mdb_env_set_mapsize");
  check_lmdb(mdb_env_open(env_, dir.c_str(), 0, 0644), "mdb_env_open");
  MDB_txn* txn = nullptr;
  check_lmdb(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
  check_lmdb(mdb_dbi_open(txn, nullptr, MDB_INTEGERKEY, &dbi_), "mdb_dbi_open");
  check_lmdb(mdb_txn_commit(txn), "mdb_txn_commit");
}

RawStore::~RawStore() {
  mdb_env_close(env_);
}

void RawStore::add(std::uint64_t key, const void* data, std::size_t size) {
  pending_.emplace_back(key, std::string(static_cast<const char*>(data), size));
  pending_bytes_ += size;
  if (pending_bytes_ >= group_commit_bytes) commit();
}

void RawStore::commit() {
  if (pending_.empty()) return;
  MDB_txn* txn = nullptr;
  check_lmdb(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
  for (auto& [key, value] : pending_) {
    MDB_val k{sizeof key, &key};
    MDB_val v{value.size(), value.data()};
    check_lmdb(mdb_put(txn, dbi_, &k, &v, 0), "mdb_put");
  }
  check_lmdb(mdb_txn_commit(txn), "mdb_txn_commit");
  committed_ += pending_.size();
  pending_.clear();
  pending_bytes_ = 0;
}

void RawStore::for_each(const std::function<void(std::uint64_t, const void*, std::size_t)>& f) {
  MDB_txn* txn = nullptr;
  check_lmdb(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn), "mdb_txn_begin");
  MDB_cursor* cursor = nullptr;
  check_lmdb(mdb_cursor_open(txn, dbi_, &cursor), "mdb_cursor_open");
  MDB_val k, v;
  for (int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    std::uint64_t key = 0;
    std::memcpy(&key, k.mv_data, sizeof key);
    f(key, v.mv_data, v.mv_size);
  }
  mdb_cursor_close(cursor);
  mdb_txn_abort(txn);
}

}  // namespace mqds::bench
