#include "mqds/fetch.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "mqds/limits.hpp"

namespace mqds::fetch {

std::string_view status_name(Status status) {
  switch (status) {
    case Status::ok: return "ok";
    case Status::not_found: return "not-found";
    case Status::bad_request: return "bad-request";
    case Status::busy: return "busy";
  }
  return "bad-request";
}

std::optional<Status> parse_status(std::string_view name) {
  for (Status s : {Status::ok, Status::not_found, Status::bad_request, Status::busy})
    if (status_name(s) == name) return s;
  return std::nullopt;
}

std::string encode_request(const Request& request) {
  return "{\"Hash\":\"" + request.hash.to_hex() +
         "\",\"Offset\":" + std::to_string(request.offset_bytes) +
         ",\"Length\":" + std::to_string(request.length_bytes) + "}";
}

namespace {

// An optional non-negative integer field; absent or null keeps `value`.
std::optional<DecodeError> read_count(const nlohmann::json& object, const char* field,
                                      std::int64_t& value) {
  const auto it = object.find(field);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) return DecodeError{field, "must be an integer"};
  if (it->is_number_unsigned()) {
    const auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(limits::fragment_size_bytes_max))
      return DecodeError{field, "is too large"};
    value = static_cast<std::int64_t>(v);
    return std::nullopt;
  }
  const auto v = it->get<std::int64_t>();
  if (v < 0) return DecodeError{field, "must not be negative"};
  if (v > limits::fragment_size_bytes_max) return DecodeError{field, "is too large"};
  value = v;
  return std::nullopt;
}

}  // namespace

std::variant<Request, DecodeError> decode_request(std::string_view payload) {
  if (payload.size() > request_payload_bytes_max)
    return DecodeError{"",
                       "is longer than " + std::to_string(request_payload_bytes_max) + " bytes"};
  const auto json = nlohmann::json::parse(payload, nullptr, false);
  if (json.is_discarded()) return DecodeError{"", "is not JSON"};
  if (!json.is_object()) return DecodeError{"", "must be a JSON object"};
  Request request;
  const auto hash = json.find("Hash");
  if (hash == json.end() || hash->is_null()) return DecodeError{"Hash", "missing"};
  if (!hash->is_string()) return DecodeError{"Hash", "must be a string"};
  const auto parsed = Hash::from_hex(hash->get_ref<const std::string&>());
  if (!parsed) return DecodeError{"Hash", "must be 64 hexadecimal characters"};
  request.hash = *parsed;
  if (auto e = read_count(json, "Offset", request.offset_bytes)) return *e;
  if (auto e = read_count(json, "Length", request.length_bytes)) return *e;
  request.length_bytes = std::min(request.length_bytes, chunk_bytes_max);
  return request;
}

std::string request_topic(std::string_view edge_client_id) {
  return std::string(request_prefix) + std::string(edge_client_id);
}

std::string endpoint_of(std::string_view edge_client_id) {
  return std::string(endpoint_scheme) + request_topic(edge_client_id);
}

std::optional<std::string> request_topic_of_endpoint(std::string_view endpoint) {
  if (endpoint.substr(0, endpoint_scheme.size()) != endpoint_scheme) return std::nullopt;
  const std::string_view topic = endpoint.substr(endpoint_scheme.size());
  if (!edge_of_request_topic(topic)) return std::nullopt;
  return std::string(topic);
}

namespace {
bool has_wildcard(std::string_view s) {
  return s.find_first_of("+#") != std::string_view::npos;
}
}  // namespace

std::optional<std::string_view> edge_of_request_topic(std::string_view topic) {
  if (topic.substr(0, request_prefix.size()) != request_prefix) return std::nullopt;
  const std::string_view edge = topic.substr(request_prefix.size());
  if (edge.empty() || edge.size() > limits::client_id_bytes_max || has_wildcard(edge) ||
      edge.find('/') != std::string_view::npos)
    return std::nullopt;
  return edge;
}

std::string response_topic(std::string_view requester_client_id, std::string_view suffix) {
  std::string topic = std::string(response_prefix) + std::string(requester_client_id);
  if (!suffix.empty()) topic += "/" + std::string(suffix);
  return topic;
}

std::optional<std::string_view> requester_of_response_topic(std::string_view topic) {
  if (topic.substr(0, response_prefix.size()) != response_prefix || has_wildcard(topic))
    return std::nullopt;
  std::string_view rest = topic.substr(response_prefix.size());
  const std::string_view requester = rest.substr(0, rest.find('/'));
  if (requester.empty() || requester.size() > limits::client_id_bytes_max) return std::nullopt;
  return requester;
}

}  // namespace mqds::fetch
