// Helpers for the unit tests of the tracker and torrent state machines: deterministic EventIds and
// content, real files cut by the Fragmenter, and ways to read an Output back as decoded events
// and typed storage effects. Tests feed and check real JSON payloads, never the structs directly,
// so the wire codec is part of every assertion.
#pragma once

#include <algorithm>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/fragmenter.hpp"
#include "mqds/hash.hpp"
#include "mqds/output.hpp"
#include "mqds/uuid.hpp"
#include "support/memory_store.hpp"

namespace mqds::testing {

// EventIds for the events a test injects. They come from their own range, so they can never
// collide with the ones a machine draws from its SplitMix64.
class EventIds {
 public:
  Uuid operator()() { return Uuid::v4_from(0x7E57'7E57'0000'0000ull, next_++); }

 private:
  std::uint64_t next_ = 1;
};

inline Bytes bytes_of(std::string_view text) {
  return Bytes(text.begin(), text.end());
}

// Deterministic content that differs for every seed (an LCG, so no two fragments are equal).
inline Bytes pattern(std::size_t size_bytes, std::uint32_t seed) {
  Bytes data(size_bytes);
  std::uint32_t state = seed * 2654435761u + 1u;
  for (auto& b : data) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<std::uint8_t>(state >> 24);
  }
  return data;
}

struct TestFragment {
  Hash hash;
  Bytes data;
  std::int64_t size_bytes() const { return static_cast<std::int64_t>(data.size()); }
};

struct TestFile {
  Hash hash;
  FileMetadata metadata;
  Bytes content;
  std::vector<TestFragment> fragments;  // in sequence order

  // The argument add_file() takes for a file whose every fragment was staged.
  std::map<Hash, std::int64_t> staged_sizes() const {
    std::map<Hash, std::int64_t> sizes;
    for (const auto& f : fragments) sizes[f.hash] = f.size_bytes();
    return sizes;
  }
  FragmentInfos fragment_infos() const {
    FragmentInfos infos;
    for (const auto& f : fragments) infos[f.hash] = FragmentMetadata{f.size_bytes()};
    return infos;
  }
};

// Cuts content the way the adapters do: with the real Fragmenter.
inline TestFile cut_file(const Bytes& content, std::int64_t fragment_size_bytes) {
  TestFile file;
  file.content = content;
  Fragmenter fragmenter(fragment_size_bytes, [&](const Fragment& f) {
    file.fragments.push_back({f.hash, Bytes(f.data.begin(), f.data.end())});
  });
  fragmenter.feed(content);
  const FileDigest digest = fragmenter.finish();
  file.hash = digest.hash;
  file.metadata = digest.metadata;
  return file;
}

// What the tracker's adapter does before add_file(): the fragments go to staging durably.
inline std::map<Hash, std::int64_t> stage(TrackerMemoryStore& store, const TestFile& file) {
  for (const auto& f : file.fragments) store.staged[f.hash] = f.data;
  return file.staged_sizes();
}

// The bytes a Publish carries on the wire: a staged Delivered is encoded from the tracker's store,
// as the plugin does.
inline std::string wire_payload(const Publish& p, const TrackerMemoryStore* store) {
  if (!p.staged) return p.payload;
  if (!store) {
    ADD_FAILURE() << "a staged Delivered needs the tracker's store to be encoded";
    return {};
  }
  if (!p.staged->content && !store->staged.count(p.staged->hash)) {
    ADD_FAILURE() << "a staged Delivered names " << p.staged->hash.to_hex()
                  << ", which is not in staging";
    return {};
  }
  return store->delivered_payload(*p.staged);
}

inline std::optional<Event> decode_publish(const Publish& p,
                                           const TrackerMemoryStore* store = nullptr) {
  const std::string payload = wire_payload(p, store);
  Result<Event> result = decode(p.topic, payload);
  if (!result.ok()) {
    ADD_FAILURE() << "a machine published an undecodable payload on " << p.topic << ": "
                  << result.error().to_string() << "\n"
                  << payload;
    return std::nullopt;
  }
  return std::move(result.value());
}

// One line per publish and log, for failure messages.
inline std::string describe(const Output& out) {
  std::string text;
  for (const auto& p : out.publishes) {
    text += "  publish " + p.topic;
    if (p.to) text += " to " + *p.to;
    if (p.staged) text += " (staged)";
    text += ": " + p.payload.substr(0, 300) + "\n";
  }
  for (const auto& line : out.logs) text += "  log: " + line.text + "\n";
  if (out.fatal) text += "  fatal: " + *out.fatal + "\n";
  return text.empty() ? "  (empty output)\n" : text;
}

template <class T>
std::string_view topic_for() {
  return topic_of(Event{T{}});
}

template <class T>
std::string_view name_for() {
  return event_name(event_type(Event{T{}}));
}

// The publishes of an Output on the topic of T.
template <class T>
std::vector<const Publish*> publishes_of(const Output& out) {
  std::vector<const Publish*> found;
  for (const auto& p : out.publishes)
    if (p.topic == topic_for<T>()) found.push_back(&p);
  return found;
}

// The pointers point into the Output: it must outlive them.
template <class T>
std::vector<const Publish*> publishes_of(const Output&& out) = delete;

inline const Publish* find_publish(const Output& out, std::string_view topic) {
  for (const auto& p : out.publishes)
    if (p.topic == topic) return &p;
  return nullptr;
}
const Publish* find_publish(const Output&& out, std::string_view topic) = delete;

// Every publish on the topic of T, decoded.
template <class T>
std::vector<T> all_of(const Output& out, const TrackerMemoryStore* store = nullptr) {
  std::vector<T> events;
  for (const Publish* p : publishes_of<T>(out)) {
    auto event = decode_publish(*p, store);
    if (!event) continue;
    if (const T* e = std::get_if<T>(&*event)) events.push_back(*e);
  }
  return events;
}

// Every distinct event of type T, in order: an event published to several clients, each alone,
// counts once.
template <class T>
std::vector<T> distinct_of(const Output& out, const TrackerMemoryStore* store = nullptr) {
  std::vector<T> events;
  for (auto& e : all_of<T>(out, store))
    if (std::none_of(events.begin(), events.end(),
                     [&](const T& seen) { return seen.event_id == e.event_id; }))
      events.push_back(std::move(e));
  return events;
}

// The one event of type T (it may go to several clients, each alone); a test failure (and a
// default T) if there is not exactly one.
template <class T>
T only(const Output& out, const TrackerMemoryStore* store = nullptr) {
  auto events = distinct_of<T>(out, store);
  EXPECT_EQ(events.size(), 1u) << "expected exactly one " << name_for<T>() << " in:\n"
                               << describe(out);
  return events.empty() ? T{} : events.front();
}

template <class E>
std::vector<E> effects_of(const Output& out) {
  std::vector<E> found;
  for (const auto& effect : out.storage)
    if (const E* e = std::get_if<E>(&effect)) found.push_back(*e);
  return found;
}

inline bool logged(const Output& out, std::string_view text) {
  for (const auto& line : out.logs)
    if (line.text.find(text) != std::string::npos) return true;
  return false;
}

inline bool logged_at_least(const Output& out, LogLevel level) {
  for (const auto& line : out.logs)
    if (line.level >= level) return true;
  return false;
}

inline std::set<Hash> hashes_of(const FragmentInfos& infos) {
  std::set<Hash> hashes;
  for (const auto& [hash, fragment] : infos) hashes.insert(hash);
  return hashes;
}

}  // namespace mqds::testing
