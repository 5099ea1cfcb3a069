// The one reader of untrusted bytes in the core: every decoder (events, ingest, fetch, query)
// parses with it and fails with it.
//
// Theory of operation. decode_untrusted() runs a decoder body and turns whatever it throws into
// an Error: a Rejection (the peer's bad data, naming the field and the problem), out of memory,
// or anything else (reported as an internal error). Nothing escapes it, so a decoder is written
// as straight-line code that reads fields in the order of its schema and calls reject() at the
// first problem; the first problem found is therefore deterministic and named by its JSON path.
//
// Documents come from parse_json() or parse_cbor(), which bound the input's size and nesting
// before anything is built: nlohmann's DOM allocates a value per open bracket, so an unbounded
// "[[[[..." would cost gigabytes before failing. CBOR is read into the same nlohmann document the
// JSON parser builds, so both forms go through the same field checks.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/result.hpp"

namespace mqds::wire {

using json = nlohmann::json;

// Thrown by reject() inside a decoder; decode_untrusted() turns it into an Error.
struct Rejection {
  std::string field;
  std::string problem;
};

[[noreturn]] void reject(std::string field, std::string problem);
// "exceeds 1024 bytes"
std::string exceeds(std::uint64_t max, std::string_view unit = {});

std::string member_path(std::string_view parent, std::string_view name);
// A dictionary key in a path, cut short: a hostile key must not make the error message huge.
std::string key_path(std::string_view parent, std::string_view key);
std::string index_path(std::string_view parent, std::size_t index);

// What parse_json checks before parsing, for readers that parse as a stream: at most `bytes_max`
// bytes, nesting at most `depth_max`, no NUL.
void check_json_text(std::string_view payload, std::size_t bytes_max, std::size_t depth_max);
// JSON text of at most `bytes_max` bytes, nesting at most `depth_max`; rejects "invalid JSON".
json parse_json(std::string_view payload, std::size_t bytes_max, std::size_t depth_max = 64);
// CBOR (RFC 8949) of at most `bytes_max` bytes: definite lengths, unsigned and negative integers,
// text and byte strings, arrays of at most `array_entries_max`, maps with text keys and at most
// `map_entries_max` entries, false, true and null; nesting at most `depth_max`. Floats, tags,
// indefinite lengths, repeated keys and anything after the top-level item are rejected.
json parse_cbor(std::string_view payload, std::size_t bytes_max, std::size_t depth_max,
                std::size_t array_entries_max, std::size_t map_entries_max);
// True when the payload starts like a CBOR map (major type 5), which JSON never does.
bool looks_like_cbor_map(std::string_view payload);

// One JSON object of the payload together with its path.
class Fields {
 public:
  Fields(const json& object, std::string path) : object_(object), path_(std::move(path)) {}
  // The payload itself: rejects "must be an object" unless it is one.
  static Fields of_document(const json& document);

  // Absent and null are the same: the reference omits null optionals, others may write them.
  const json* optional(std::string_view name) const;
  const json& required(std::string_view name) const;
  std::string path(std::string_view name) const { return member_path(path_, name); }

 private:
  const json& object_;
  std::string path_;
};

Uuid read_uuid(const json& value, const std::string& path);
Hash read_hash_text(std::string_view text, const std::string& path);
Hash read_hash(const json& value, const std::string& path);
// An integer in [min_value, max_value]; min_value is the schema's lower bound.
std::int64_t read_int(const json& value, const std::string& path, std::int64_t min_value,
                      std::int64_t max_value);
std::uint64_t read_uint(const json& value, const std::string& path);
void check_string_size(std::string_view text, const std::string& path, std::size_t min_bytes,
                       std::size_t max_bytes);
const std::string& read_string(const json& value, const std::string& path, std::size_t min_bytes,
                               std::size_t max_bytes);
const json::array_t& read_array(const json& value, const std::string& path,
                                std::size_t max_entries);
const json::object_t& read_object(const json& value, const std::string& path,
                                  std::size_t max_entries);
// A JSON array of unique hashes.
std::set<Hash> read_hash_set(const json& value, const std::string& path, std::size_t max_entries);
// A JSON array of unique strings of `min_bytes` to `max_bytes` each.
std::set<std::string> read_string_set(const json& value, const std::string& path,
                                      std::size_t max_entries, std::size_t min_bytes,
                                      std::size_t max_bytes);

// The message of an Error for an exception that is not a Rejection. Building the message may
// itself run out of memory; the fallback fits std::string's inline buffer, so it cannot.
Error internal_error(const char* what) noexcept;

// Runs `body` (returning T) and turns anything it throws into an Error.
template <class T, class Body>
Result<T> decode_untrusted(Body&& body) noexcept {
  try {
    return Result<T>(body());
  } catch (Rejection& rejection) {
    return Error{std::move(rejection.field), std::move(rejection.problem)};
  } catch (const std::bad_alloc&) {
    return Error{"", "out of memory"};
  } catch (const std::exception& error) {
    return internal_error(error.what());
  } catch (...) {
    return Error{"", "internal error"};
  }
}

}  // namespace mqds::wire
