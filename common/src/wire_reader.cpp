#include "wire_reader.hpp"

#include <cstring>
#include <limits>
#include <utility>

namespace mqds::wire {

namespace {

// Dictionary keys are echoed in error paths; a hostile key must not make the error message huge.
constexpr std::size_t path_key_bytes_max = 300;

// nlohmann's DOM parser allocates a value for every open array or object, so a payload of nothing
// but '[' would cost gigabytes before failing; this linear scan bounds the nesting first. It also
// rejects NUL, which nlohmann takes for the end of the input although JSON allows it nowhere
// unescaped, so "{}\0garbage" would otherwise pass.
void check_structure(std::string_view payload, std::size_t nesting_depth_max) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : payload) {
    if (c == '\0') reject("", "invalid JSON");
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > nesting_depth_max)
        reject("", "nesting exceeds " + std::to_string(nesting_depth_max));
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

// CBOR (RFC 8949) read into the same document the JSON parser builds, so both forms go through
// the same field checks. nlohmann's own CBOR reader appends a byte string one byte at a time,
// which made reading a 1 MiB fragment cost more than storing it (measured with perf on mqds-edge);
// this reader copies it whole. It takes what an event needs: definite lengths, unsigned and
// negative integers, text and byte strings, arrays, maps with text keys, false, true and null.
// Floats, tags, indefinite lengths and anything after the top-level item are refused, and the
// nesting is bounded before any recursion can exhaust the stack.
class CborReader {
 public:
  CborReader(std::string_view input, std::size_t depth_max, std::size_t array_entries_max,
             std::size_t map_entries_max)
      : in_(input),
        depth_max_(depth_max),
        array_entries_max_(array_entries_max),
        map_entries_max_(map_entries_max) {}

  json document() {
    json value = item(0);
    if (at_ != in_.size()) invalid();
    return value;
  }

 private:
  [[noreturn]] static void invalid() { reject("", "invalid CBOR"); }

  std::uint8_t byte() {
    if (at_ >= in_.size()) invalid();
    return static_cast<std::uint8_t>(in_[at_++]);
  }

  // The argument of an item head; `info` is the head's low five bits.
  std::uint64_t argument(std::uint8_t info) {
    if (info < 24) return info;
    int bytes = 0;
    switch (info) {
      case 24: bytes = 1; break;
      case 25: bytes = 2; break;
      case 26: bytes = 4; break;
      case 27: bytes = 8; break;
      default: invalid();  // 28-30 reserved, 31 indefinite length
    }
    std::uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) value = (value << 8) | byte();
    return value;
  }

  std::string_view take(std::uint64_t size) {
    if (size > in_.size() - at_) invalid();
    const auto taken = in_.substr(at_, static_cast<std::size_t>(size));
    at_ += static_cast<std::size_t>(size);
    return taken;
  }

  json item(std::size_t depth) {
    if (depth > depth_max_) reject("", "nesting exceeds " + std::to_string(depth_max_));
    const std::uint8_t head = byte();
    const auto major = static_cast<std::uint8_t>(head >> 5);
    const auto info = static_cast<std::uint8_t>(head & 0x1F);
    if (major == 7) {
      switch (info) {
        case 20: return false;
        case 21: return true;
        case 22: return nullptr;
        default: invalid();
      }
    }
    const std::uint64_t arg = argument(info);
    switch (major) {
      case 0: return arg;
      case 1:
        if (arg > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) invalid();
        return -1 - static_cast<std::int64_t>(arg);
      case 2: {
        const auto bytes = take(arg);
        const auto* first =
            reinterpret_cast<const std::uint8_t*>(bytes.data());  // copied whole, not per byte
        return json::binary(json::binary_t::container_type(first, first + bytes.size()));
      }
      case 3: {
        const auto text = take(arg);
        if (!valid_utf8(text)) reject("", "invalid CBOR: a text string is not UTF-8");
        return std::string(text);
      }
      case 4: {
        // Every element takes at least one byte: a count beyond what is left is a lie, refused
        // before anything is reserved for it. A longer array than the caller allows is refused
        // before it is built (a document costs more memory than its CBOR).
        if (arg > in_.size() - at_ || arg > array_entries_max_) invalid();
        json array = json::array();
        for (std::uint64_t i = 0; i < arg; ++i) array.push_back(item(depth + 1));
        return array;
      }
      case 5: {
        if (arg > (in_.size() - at_) / 2 || arg > map_entries_max_) invalid();
        json object = json::object();
        for (std::uint64_t i = 0; i < arg; ++i) {
          json key = item(depth + 1);
          if (!key.is_string()) invalid();
          auto& name = key.get_ref<std::string&>();
          if (object.contains(name)) reject("", "invalid CBOR: a map repeats a key");
          object[std::move(name)] = item(depth + 1);
        }
        return object;
      }
      default: invalid();  // major 6: tags
    }
  }

  // RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF (as nlohmann's JSON parser).
  static bool valid_utf8(std::string_view text) {
    for (std::size_t i = 0; i < text.size();) {
      const auto c = static_cast<std::uint8_t>(text[i]);
      std::size_t length = 0;
      std::uint32_t min = 0;
      std::uint32_t code = 0;
      if (c < 0x80) {
        ++i;
        continue;
      }
      if ((c & 0xE0) == 0xC0) {
        length = 2;
        min = 0x80;
        code = c & 0x1Fu;
      } else if ((c & 0xF0) == 0xE0) {
        length = 3;
        min = 0x800;
        code = c & 0x0Fu;
      } else if ((c & 0xF8) == 0xF0) {
        length = 4;
        min = 0x10000;
        code = c & 0x07u;
      } else
        return false;
      if (i + length > text.size()) return false;
      for (std::size_t k = 1; k < length; ++k) {
        const auto next = static_cast<std::uint8_t>(text[i + k]);
        if ((next & 0xC0) != 0x80) return false;
        code = (code << 6) | (next & 0x3Fu);
      }
      if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
      i += length;
    }
    return true;
  }

  std::string_view in_;
  std::size_t depth_max_;
  std::size_t array_entries_max_;
  std::size_t map_entries_max_;
  std::size_t at_ = 0;
};

}  // namespace

[[noreturn]] void reject(std::string field, std::string problem) {
  throw Rejection{std::move(field), std::move(problem)};
}

std::string member_path(std::string_view parent, std::string_view name) {
  std::string path(parent);
  if (!path.empty()) path += '.';
  path += name;
  return path;
}

std::string key_path(std::string_view parent, std::string_view key) {
  if (key.size() <= path_key_bytes_max) return member_path(parent, key);
  return member_path(parent, key.substr(0, path_key_bytes_max)) + "...";
}

std::string index_path(std::string_view parent, std::size_t index) {
  return std::string(parent) + '[' + std::to_string(index) + ']';
}

std::string exceeds(std::uint64_t max, std::string_view unit) {
  std::string problem = "exceeds " + std::to_string(max);
  if (!unit.empty()) {
    problem += ' ';
    problem += unit;
  }
  return problem;
}

Fields Fields::of_document(const json& document) {
  if (!document.is_object()) reject("", "must be an object");
  return Fields(document, "");
}

const json* Fields::optional(std::string_view name) const {
  const auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

const json& Fields::required(std::string_view name) const {
  if (const json* value = optional(name)) return *value;
  reject(path(name), "missing");
}

Uuid read_uuid(const json& value, const std::string& path) {
  if (!value.is_string()) reject(path, "must be a string");
  const auto uuid = Uuid::parse(value.get_ref<const std::string&>());
  if (!uuid) reject(path, "must be a GUID");
  return *uuid;
}

Hash read_hash_text(std::string_view text, const std::string& path) {
  const auto hash = Hash::from_hex(text);
  if (!hash) reject(path, "must be 64 hexadecimal characters");
  return *hash;
}

Hash read_hash(const json& value, const std::string& path) {
  if (!value.is_string()) reject(path, "must be a string");
  return read_hash_text(value.get_ref<const std::string&>(), path);
}

// min_value is 0 or 1, the only lower bounds of the schema. nlohmann stores every non-negative
// number it parses as unsigned, and only those can exceed the int64 range.
std::int64_t read_int(const json& value, const std::string& path, std::int64_t min_value,
                      std::int64_t max_value) {
  if (!value.is_number_integer()) reject(path, "must be an integer");
  if (value.is_number_unsigned() &&
      value.get<std::uint64_t>() > static_cast<std::uint64_t>(max_value)) {
    reject(path, exceeds(static_cast<std::uint64_t>(max_value)));
  }
  const auto signed_value = value.get<std::int64_t>();
  if (signed_value < min_value)
    reject(path, min_value > 0 ? "must be positive" : "must not be negative");
  if (signed_value > max_value) reject(path, exceeds(static_cast<std::uint64_t>(max_value)));
  return signed_value;
}

std::uint64_t read_uint(const json& value, const std::string& path) {
  if (!value.is_number_integer()) reject(path, "must be an integer");
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  const auto signed_value = value.get<std::int64_t>();
  if (signed_value < 0) reject(path, "must not be negative");
  return static_cast<std::uint64_t>(signed_value);
}

void check_string_size(std::string_view text, const std::string& path, std::size_t min_bytes,
                       std::size_t max_bytes) {
  if (text.size() < min_bytes) reject(path, "must not be empty");
  if (text.size() > max_bytes) reject(path, exceeds(max_bytes, "bytes"));
}

const std::string& read_string(const json& value, const std::string& path, std::size_t min_bytes,
                               std::size_t max_bytes) {
  if (!value.is_string()) reject(path, "must be a string");
  const auto& text = value.get_ref<const std::string&>();
  check_string_size(text, path, min_bytes, max_bytes);
  return text;
}

const json::array_t& read_array(const json& value, const std::string& path,
                                std::size_t max_entries) {
  if (!value.is_array()) reject(path, "must be an array");
  const auto& items = value.get_ref<const json::array_t&>();
  if (items.size() > max_entries) reject(path, exceeds(max_entries, "entries"));
  return items;
}

const json::object_t& read_object(const json& value, const std::string& path,
                                  std::size_t max_entries) {
  if (!value.is_object()) reject(path, "must be an object");
  const auto& members = value.get_ref<const json::object_t&>();
  if (members.size() > max_entries) reject(path, exceeds(max_entries, "entries"));
  return members;
}

std::set<Hash> read_hash_set(const json& value, const std::string& path, std::size_t max_entries) {
  const auto& items = read_array(value, path, max_entries);
  std::set<Hash> hashes;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto item_path = index_path(path, i);
    if (!hashes.insert(read_hash(items[i], item_path)).second) reject(item_path, "duplicate entry");
  }
  return hashes;
}

std::set<std::string> read_string_set(const json& value, const std::string& path,
                                      std::size_t max_entries, std::size_t min_bytes,
                                      std::size_t max_bytes) {
  const auto& items = read_array(value, path, max_entries);
  std::set<std::string> strings;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto item_path = index_path(path, i);
    if (!strings.insert(read_string(items[i], item_path, min_bytes, max_bytes)).second)
      reject(item_path, "duplicate entry");
  }
  return strings;
}

void check_json_text(std::string_view payload, std::size_t bytes_max, std::size_t depth_max) {
  if (payload.size() > bytes_max) reject("", exceeds(bytes_max, "bytes"));
  check_structure(payload, depth_max);
}

json parse_json(std::string_view payload, std::size_t bytes_max, std::size_t depth_max) {
  check_json_text(payload, bytes_max, depth_max);
  json document = json::parse(payload, nullptr, false);
  if (document.is_discarded()) reject("", "invalid JSON");
  return document;
}

json parse_cbor(std::string_view payload, std::size_t bytes_max, std::size_t depth_max,
                std::size_t array_entries_max, std::size_t map_entries_max) {
  if (payload.size() > bytes_max) reject("", exceeds(bytes_max, "bytes"));
  return CborReader(payload, depth_max, array_entries_max, map_entries_max).document();
}

bool looks_like_cbor_map(std::string_view payload) {
  if (payload.empty()) return false;
  const auto first = static_cast<std::uint8_t>(payload.front());
  return first >= 0xA0 && first <= 0xBF;  // major type 5
}

Error internal_error(const char* what) noexcept {
  try {
    return Error{"", std::string("internal error: ") + what};
  } catch (...) {
    return Error{"", "internal error"};
  }
}

}  // namespace mqds::wire
