#include "join_reader.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mqds/hash.hpp"
#include "mqds/limits.hpp"
#include "wire_reader.hpp"

namespace mqds::wire {

namespace {

// The top-level fields, in the order the DOM reader checks them: the first problem reported is
// that of the first field in this order that has one.
enum class Slot : std::uint8_t {
  event_id,
  hash_algorithm,
  fragment_size,
  known_file_infos,
  stored_fragments,
  endpoints,
  capacity,
  obtained_fragments,
  delivery_encodings,
  extensions,
  unknown,
};
constexpr std::size_t slot_count = static_cast<std::size_t>(Slot::unknown);
constexpr std::array<std::string_view, slot_count> slot_names{
    "EventId",   "HashAlgorithm", "FragmentSize",      "KnownFileInfos",    "StoredFragments",
    "Endpoints", "Capacity",      "ObtainedFragments", "DeliveryEncodings", "Extensions"};

Slot slot_of(std::string_view name) {
  for (std::size_t i = 0; i < slot_count; ++i)
    if (slot_names[i] == name) return static_cast<Slot>(i);
  return Slot::unknown;
}

bool is_dictionary(Slot slot) {
  return slot == Slot::known_file_infos || slot == Slot::stored_fragments ||
         slot == Slot::obtained_fragments;
}

bool is_list(Slot slot) {
  return slot == Slot::endpoints || slot == Slot::delivery_encodings || slot == Slot::extensions;
}

// Optional fields: absent or null is no value; the others are "missing" without one.
bool is_optional(Slot slot) {
  return slot == Slot::fragment_size || slot == Slot::capacity ||
         slot == Slot::obtained_fragments || slot == Slot::delivery_encodings ||
         slot == Slot::extensions;
}

// Where the next SAX event belongs.
enum class At : std::uint8_t {
  document,      // before the payload's value
  top,           // in the payload's object: a key or its end
  top_value,     // the value of the top-level field `slot_`
  dictionary,    // in the dictionary of `slot_`: a key (a hash) or its end
  entry_value,   // the value of the dictionary key `key_`
  entry,         // in that value's object (FileMetadata, FragmentMetadata): a key or its end
  member_value,  // the value of the entry's member `member_`
  sequence,      // in FragmentSequence: a hash or its end
  list,          // in the list of strings of `slot_`: a string or its end
  skip,          // inside a value nobody reads, `skip_depth_` levels deep
  done,          // after the payload's value
};

enum class Member : std::uint8_t { size, fragment_sequence, unknown };

// A rejection with its path filled in when it happens: the reader builds no path for a field that
// is fine, which is every field of a large legitimate join.
template <class Read, class Path>
bool attempt(std::optional<Rejection>& error, Read&& read, Path&& path) {
  try {
    read();
    return true;
  } catch (Rejection& rejection) {
    if (!error) {
      rejection.field = path();
      error = std::move(rejection);
    }
    return false;
  }
}

const std::string no_path;

class JoinHandler final : public nlohmann::json_sax<json> {
 public:
  ClientJoinRequested take() {
    if (invalid_) reject("", "invalid JSON");
    if (!object_) reject("", "must be an object");
    const auto check = [&](Slot slot) {
      const auto i = static_cast<std::size_t>(slot);
      if (errors_[i]) throw std::move(*errors_[i]);
      if (!present_[i] && !is_optional(slot)) reject(std::string(slot_names[i]), "missing");
    };
    check(Slot::event_id);
    check(Slot::hash_algorithm);
    check(Slot::fragment_size);
    // Under another algorithm the hashes cannot be checked as SHA-256 digests: the collections are
    // not read (see read_client_join_requested in events.cpp) and their problems do not count.
    const bool sha256 = is_sha256_name(e_.hash_algorithm);
    if (sha256) {
      check(Slot::known_file_infos);
      check(Slot::stored_fragments);
    }
    check(Slot::endpoints);
    check(Slot::capacity);
    if (sha256) check(Slot::obtained_fragments);
    check(Slot::delivery_encodings);
    check(Slot::extensions);
    if (!sha256) {
      e_.known_file_infos.clear();
      e_.stored_fragments.clear();
      e_.obtained_fragments.clear();
    }
    return std::move(e_);
  }

  // --- nlohmann::json_sax -----------------------------------------------------------------------

  bool null() override { return scalar(json(nullptr), nullptr); }
  bool boolean(bool value) override { return scalar(json(value), nullptr); }
  bool number_integer(number_integer_t value) override { return scalar(json(value), nullptr); }
  bool number_unsigned(number_unsigned_t value) override { return scalar(json(value), nullptr); }
  bool number_float(number_float_t value, const string_t&) override {
    return scalar(json(value), nullptr);
  }
  bool string(string_t& value) override { return scalar(json(), &value); }
  // JSON text has no binary values; for the interface only.
  bool binary(binary_t&) override {
    return scalar(json::binary(json::binary_t::container_type{}), nullptr);
  }

  bool start_object(std::size_t) override { return compound(true); }
  bool start_array(std::size_t) override { return compound(false); }
  bool end_object() override { return end(); }
  bool end_array() override { return end(); }

  bool key(string_t& name) override {
    switch (at_) {
      case At::top:
        slot_ = slot_of(name);
        if (slot_ != Slot::unknown) restart(slot_);
        at_ = At::top_value;
        break;
      case At::dictionary: dictionary_key(name); break;
      case At::entry:
        member_ = name == "Size" ? Member::size
                  : name == "FragmentSequence" && slot_ == Slot::known_file_infos
                      ? Member::fragment_sequence
                      : Member::unknown;
        // A repeated member takes its last value, as in the DOM.
        if (member_ == Member::size) {
          size_.reset();
          size_error_.reset();
        } else if (member_ == Member::fragment_sequence) {
          sequence_present_ = false;
          sequence_.clear();
          sequence_count_ = 0;
          sequence_error_.reset();
          sequence_too_long_ = false;
        }
        at_ = At::member_value;
        break;
      default: break;  // keys inside skipped values
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    invalid_ = true;
    return false;
  }

 private:
  std::optional<Rejection>& error_of(Slot slot) { return errors_[static_cast<std::size_t>(slot)]; }
  std::string slot_path() const { return std::string(slot_names[static_cast<std::size_t>(slot_)]); }
  std::string entry_path() const { return key_path(slot_path(), key_); }

  // A top-level field seen (again): the last occurrence is the one that counts, as in the DOM.
  void restart(Slot slot) {
    const auto i = static_cast<std::size_t>(slot);
    present_[i] = false;
    errors_[i].reset();
    too_many_[i] = false;
    count_ = 0;
    switch (slot) {
      case Slot::event_id: e_.event_id = {}; break;
      case Slot::hash_algorithm: e_.hash_algorithm.clear(); break;
      case Slot::fragment_size: e_.fragment_size_bytes.reset(); break;
      case Slot::known_file_infos: e_.known_file_infos.clear(); break;
      case Slot::stored_fragments: e_.stored_fragments.clear(); break;
      case Slot::endpoints: e_.endpoints.clear(); break;
      case Slot::capacity: e_.capacity_bytes.reset(); break;
      case Slot::obtained_fragments: e_.obtained_fragments.clear(); break;
      case Slot::delivery_encodings: e_.delivery_encodings.clear(); break;
      case Slot::extensions: e_.extensions.clear(); break;
      case Slot::unknown: break;
    }
  }

  // The first problem of a field, unless a count over its bound came first: the DOM checks the
  // size of a collection before its entries.
  void fail(Rejection rejection) {
    auto& error = error_of(slot_);
    if (!error) error = std::move(rejection);
  }
  // The bound on a collection's entries wins over any problem of an entry.
  void too_many(std::size_t max) {
    const auto i = static_cast<std::size_t>(slot_);
    if (too_many_[i]) return;
    too_many_[i] = true;
    errors_[i] = Rejection{slot_path(), exceeds(max, "entries")};
  }
  bool failed() const { return errors_[static_cast<std::size_t>(slot_)].has_value(); }

  void skip_from(At resume) {
    resume_ = resume;
    skip_depth_ = 1;
    at_ = At::skip;
  }

  // A value that is not an object or an array. `text` is set for a string (kept out of `value`,
  // so a hash costs no copy); `value` holds any other scalar.
  bool scalar(const json& value, std::string* text) {
    const auto as_json = [&]() -> json { return text ? json(*text) : value; };
    switch (at_) {
      case At::document:
        at_ = At::done;  // not an object
        break;
      case At::top_value:
        at_ = At::top;
        if (slot_ == Slot::unknown) break;
        if (!text && value.is_null()) break;  // null is absent
        top_scalar(as_json());
        break;
      case At::entry_value:
        at_ = At::dictionary;
        if (!failed())
          fail(Rejection{entry_path(), "must be an object"});  // null is no FileMetadata either
        break;
      case At::member_value:
        at_ = At::entry;
        if (member_ == Member::size) {
          if (!text && value.is_null()) break;  // null is absent
          const std::int64_t max = slot_ == Slot::known_file_infos
                                       ? limits::file_size_bytes_max
                                       : limits::fragment_size_bytes_max;
          const std::int64_t min = slot_ == Slot::known_file_infos ? 0 : 1;
          const json number = as_json();
          attempt(
              size_error_, [&] { size_ = read_int(number, no_path, min, max); },
              [&] { return member_path(entry_path(), "Size"); });
        } else if (member_ == Member::fragment_sequence) {
          if (!text && value.is_null()) break;
          sequence_error_ =
              Rejection{member_path(entry_path(), "FragmentSequence"), "must be an array"};
          sequence_present_ = true;
        }
        break;
      case At::sequence: sequence_element(text); break;
      case At::list: list_element(text); break;
      default: break;  // inside skipped values
    }
    return true;
  }

  void top_scalar(const json& value) {
    const auto i = static_cast<std::size_t>(slot_);
    const std::string path = slot_path();
    std::optional<Rejection>& error = errors_[i];
    const bool read = attempt(
        error,
        [&] {
          switch (slot_) {
            case Slot::event_id: e_.event_id = read_uuid(value, path); break;
            case Slot::hash_algorithm:
              e_.hash_algorithm = read_string(value, path, 0, limits::hash_algorithm_bytes_max);
              break;
            case Slot::fragment_size:
              e_.fragment_size_bytes = read_int(value, path, 1, limits::fragment_size_bytes_max);
              break;
            case Slot::capacity:
              e_.capacity_bytes =
                  read_int(value, path, 0, std::numeric_limits<std::int64_t>::max());
              break;
            default:
              if (is_dictionary(slot_))
                reject(path, "must be an object");
              else
                reject(path, "must be an array");
          }
        },
        [&] { return path; });
    present_[i] = read || error.has_value();
  }

  void dictionary_key(const std::string& name) {
    at_ = At::entry_value;
    key_ = name;
    const std::size_t max = slot_ == Slot::known_file_infos ? limits::files_per_event_max
                                                            : limits::fragments_per_event_max;
    if (++count_ > max) too_many(max);
    if (failed()) return;
    const auto hash = Hash::from_hex(name);
    if (!hash) {
      fail(Rejection{entry_path(), "must be 64 hexadecimal characters"});
      return;
    }
    hash_ = *hash;
  }

  void sequence_element(const std::string* text) {
    if (++sequence_count_ > limits::fragments_per_file_max) {
      if (!sequence_too_long_)
        sequence_error_ = Rejection{member_path(entry_path(), "FragmentSequence"),
                                    exceeds(limits::fragments_per_file_max, "entries")};
      sequence_too_long_ = true;
      sequence_.clear();
      return;
    }
    if (sequence_error_) return;
    const auto path = [&] {
      return index_path(member_path(entry_path(), "FragmentSequence"), sequence_count_ - 1);
    };
    if (!text) {
      sequence_error_ = Rejection{path(), "must be a string"};
      return;
    }
    const auto hash = Hash::from_hex(*text);
    if (!hash) {
      sequence_error_ = Rejection{path(), "must be 64 hexadecimal characters"};
      return;
    }
    sequence_.push_back(*hash);
  }

  void list_element(const std::string* text) {
    const bool endpoints = slot_ == Slot::endpoints;
    const std::size_t max = endpoints                           ? limits::endpoints_per_client_max
                            : slot_ == Slot::delivery_encodings ? limits::delivery_encodings_max
                                                                : limits::extensions_max;
    const std::size_t bytes_max = endpoints ? limits::endpoint_bytes_max
                                  : slot_ == Slot::delivery_encodings
                                      ? limits::delivery_encoding_bytes_max
                                      : limits::extension_bytes_max;
    if (++count_ > max) too_many(max);
    if (failed()) return;
    const auto path = [&] { return index_path(slot_path(), count_ - 1); };
    if (!text) {
      fail(Rejection{path(), "must be a string"});
      return;
    }
    std::optional<Rejection> error;
    if (!attempt(
            error, [&] { check_string_size(*text, no_path, 1, bytes_max); }, path)) {
      fail(std::move(*error));
      return;
    }
    auto& names = endpoints                           ? e_.endpoints
                  : slot_ == Slot::delivery_encodings ? e_.delivery_encodings
                                                      : e_.extensions;
    // A repeated endpoint is refused; a repeated name in the other lists is harmless.
    if (!names.insert(std::move(*text)).second && endpoints)
      fail(Rejection{path(), "duplicate entry"});
  }

  bool compound(bool object) {
    switch (at_) {
      case At::document:
        if (object) {
          object_ = true;
          at_ = At::top;
        } else {
          skip_from(At::done);
        }
        break;
      case At::top_value:
        if (slot_ == Slot::unknown) {
          skip_from(At::top);
          break;
        }
        present_[static_cast<std::size_t>(slot_)] = true;
        if (object && is_dictionary(slot_)) {
          at_ = At::dictionary;
        } else if (!object && is_list(slot_)) {
          at_ = At::list;
        } else {
          top_scalar(object ? json::object() : json::array());  // the type's message
          skip_from(At::top);
        }
        break;
      case At::entry_value:
        if (object && !failed()) {
          at_ = At::entry;
          size_.reset();
          size_error_.reset();
          sequence_present_ = false;
          sequence_.clear();
          sequence_count_ = 0;
          sequence_error_.reset();
          sequence_too_long_ = false;
          break;
        }
        if (!failed()) fail(Rejection{entry_path(), "must be an object"});
        skip_from(At::dictionary);
        break;
      case At::member_value:
        if (member_ == Member::fragment_sequence && !object) {
          sequence_present_ = true;
          at_ = At::sequence;
          break;
        }
        if (member_ == Member::size)
          size_error_ = Rejection{member_path(entry_path(), "Size"), "must be an integer"};
        else if (member_ == Member::fragment_sequence) {
          sequence_present_ = true;
          sequence_error_ =
              Rejection{member_path(entry_path(), "FragmentSequence"), "must be an array"};
        }
        skip_from(At::entry);
        break;
      case At::sequence:
        sequence_element(nullptr);
        skip_from(At::sequence);
        break;
      case At::list:
        list_element(nullptr);
        skip_from(At::list);
        break;
      case At::skip: ++skip_depth_; break;
      default: break;
    }
    return true;
  }

  bool end() {
    switch (at_) {
      case At::top: at_ = At::done; break;
      case At::dictionary: at_ = At::top; break;
      case At::entry:
        at_ = At::dictionary;
        end_entry();
        break;
      case At::sequence: at_ = At::entry; break;
      case At::list: at_ = At::top; break;
      case At::skip:
        if (--skip_depth_ == 0) at_ = resume_;
        break;
      default: break;
    }
    return true;
  }

  // An entry's members in the order of its schema: Size, then FragmentSequence.
  void end_entry() {
    if (failed()) return;
    if (size_error_) return fail(std::move(*size_error_));
    if (!size_) return fail(Rejection{member_path(entry_path(), "Size"), "missing"});
    if (slot_ == Slot::known_file_infos) {
      if (sequence_error_) return fail(std::move(*sequence_error_));
      if (!sequence_present_)
        return fail(Rejection{member_path(entry_path(), "FragmentSequence"), "missing"});
      if (!e_.known_file_infos.emplace(hash_, FileMetadata{*size_, std::move(sequence_)}).second)
        fail(Rejection{entry_path(), "duplicate entry"});
      sequence_ = {};
      return;
    }
    auto& fragments = slot_ == Slot::stored_fragments ? e_.stored_fragments : e_.obtained_fragments;
    if (!fragments.emplace(hash_, FragmentMetadata{*size_}).second)
      fail(Rejection{entry_path(), "duplicate entry"});
  }

  ClientJoinRequested e_;
  std::array<bool, slot_count> present_{};
  std::array<std::optional<Rejection>, slot_count> errors_{};
  std::array<bool, slot_count> too_many_{};
  bool invalid_ = false;
  bool object_ = false;

  At at_ = At::document;
  At resume_ = At::done;
  std::size_t skip_depth_ = 0;
  Slot slot_ = Slot::unknown;
  std::size_t count_ = 0;  // entries of the collection being read
  std::string key_;        // the dictionary key being read, for error paths
  Hash hash_;
  Member member_ = Member::unknown;
  std::optional<std::int64_t> size_;
  std::optional<Rejection> size_error_;
  bool sequence_present_ = false;
  std::vector<Hash> sequence_;
  std::size_t sequence_count_ = 0;
  std::optional<Rejection> sequence_error_;
  bool sequence_too_long_ = false;
};

}  // namespace

ClientJoinRequested read_client_join_requested_stream(std::string_view payload,
                                                      std::size_t depth_max) {
  // The same bounds as parse_json, before anything is read. The nesting bound also keeps the skip
  // depth small; nlohmann's SAX parser itself does not recurse.
  check_json_text(payload, limits::event_payload_bytes_max, depth_max);
  JoinHandler handler;
  json::sax_parse(payload.begin(), payload.end(), &handler);
  return handler.take();
}

}  // namespace mqds::wire
