#include "mqds/fetch.hpp"

#include <algorithm>
#include <charconv>

#include "mqds/limits.hpp"
#include "wire_reader.hpp"

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

Result<Request> decode_request(std::string_view payload) noexcept {
  return wire::decode_untrusted<Request>([&] {
    const auto document = wire::parse_json(payload, request_payload_bytes_max);
    const auto fields = wire::Fields::of_document(document);
    Request request;
    request.hash = wire::read_hash(fields.required("Hash"), fields.path("Hash"));
    if (const auto* offset = fields.optional("Offset"))
      request.offset_bytes =
          wire::read_int(*offset, fields.path("Offset"), 0, limits::fragment_size_bytes_max);
    if (const auto* length = fields.optional("Length"))
      request.length_bytes =
          wire::read_int(*length, fields.path("Length"), 0, limits::fragment_size_bytes_max);
    request.length_bytes = std::min(request.length_bytes, chunk_bytes_max);
    return request;
  });
}

UserProperties encode_response_properties(const ResponseHeader& header) {
  UserProperties properties{
      {std::string(property_status), std::string(status_name(header.status))}};
  if (header.status == Status::ok) {
    properties.emplace_back(property_size, std::to_string(header.size_bytes));
    properties.emplace_back(property_offset, std::to_string(header.offset_bytes));
  } else {
    properties.emplace_back(property_reason, header.reason);
  }
  return properties;
}

namespace {

const std::string* first_property(const UserProperties& properties, std::string_view name) {
  for (const auto& [key, value] : properties)
    if (key == name) return &value;
  return nullptr;
}

// A User Property's value is text, not JSON: plain decimal digits, no sign, no spaces.
std::int64_t read_decimal(const std::string& text, std::string_view name, std::int64_t max_value) {
  std::int64_t value = 0;
  const char* const end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || text.front() == '-' || error != std::errc() || stop != end)
    wire::reject(std::string(name), "must be a decimal integer");
  if (value > max_value)
    wire::reject(std::string(name), wire::exceeds(static_cast<std::uint64_t>(max_value)));
  return value;
}

}  // namespace

Result<ResponseHeader> decode_response_properties(const UserProperties& properties) noexcept {
  return wire::decode_untrusted<ResponseHeader>([&] {
    ResponseHeader header;
    const std::string* status = first_property(properties, property_status);
    if (!status) wire::reject(std::string(property_status), "missing");
    const auto parsed = parse_status(*status);
    if (!parsed) {
      // Echoed to a person: cut, so a hostile edge cannot make the message huge.
      wire::reject(std::string(property_status),
                   "unknown '" + status->substr(0, 32) + (status->size() > 32 ? "...'" : "'"));
    }
    header.status = *parsed;
    if (header.status == Status::ok) {
      const auto read = [&](std::string_view name) {
        const std::string* text = first_property(properties, name);
        if (!text) wire::reject(std::string(name), "missing");
        return read_decimal(*text, name, limits::fragment_size_bytes_max);
      };
      header.size_bytes = read(property_size);
      header.offset_bytes = read(property_offset);
    } else if (const std::string* reason = first_property(properties, property_reason)) {
      header.reason = reason->substr(0, limits::reason_bytes_max);
    }
    return header;
  });
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
