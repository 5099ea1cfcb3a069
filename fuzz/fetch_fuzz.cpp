// Fetch, on both sides of the broker: a fragment request as mqds-edge receives it, the User
// Properties of a response as `mqds get` receives them, the topics and endpoints both read, and
// the two machines that take those messages whole (fetch::Server, fetch::Client).
//
// The first byte picks what is fuzzed (modulo 5):
//   0  decode_request(payload)
//   1  decode_response_properties(properties), the properties drawn from the input
//   2  the topic and endpoint readers: edge_of_request_topic, requester_of_response_topic,
//      request_topic_of_endpoint
//   3  fetch::Server::on_request with a drawn topic, Response Topic, Correlation Data and payload,
//      then serve_next and on_lookup with a drawn outcome
//   4  fetch::Client with a plan of one 3000-byte fragment on two holders: drawn responses, some
//      on the right topic with the Correlation Data of a request in flight, so the fuzzer reaches
//      the code that takes an answer
//
// Contract: nothing throws; an accepted request or response header re-encodes to itself; a topic
// reader's answer rebuilds the topic; the Server answers only on a response topic and every
// answer's properties decode to its header; the Client completes a fragment only with bytes that
// hash to it.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "mqds/fetch.hpp"
#include "mqds/fetch_client.hpp"
#include "mqds/fetch_server.hpp"
#include "mqds/limits.hpp"
#include "mqds/random.hpp"

using namespace mqds;
using namespace mqds::fetch;

namespace {

void fuzz_request(std::string_view payload) {
  auto request = decode_request(payload);
  if (!request) return;
  fuzz::check(request->length_bytes <= chunk_bytes_max, "Length is clamped to a chunk");
  const std::string encoded = encode_request(*request);
  auto again = decode_request(encoded);
  fuzz::check(again.ok() && *again == *request, "a request round-trips", encoded);
}

UserProperties draw_properties(FuzzedDataProvider& in) {
  static constexpr std::string_view names[] = {property_status, property_size, property_offset,
                                               property_reason};
  UserProperties properties;
  const auto count = in.ConsumeIntegralInRange<std::size_t>(0, 6);
  for (std::size_t i = 0; i < count && in.remaining_bytes() > 0; ++i) {
    const auto pick = in.ConsumeIntegralInRange<std::size_t>(0, 4);
    std::string name = pick < 4 ? std::string(names[pick]) : in.ConsumeRandomLengthString(16);
    properties.emplace_back(std::move(name), in.ConsumeRandomLengthString(64));
  }
  return properties;
}

void fuzz_response_properties(FuzzedDataProvider& in) {
  const UserProperties properties = draw_properties(in);
  auto header = decode_response_properties(properties);
  if (!header) return;
  const UserProperties encoded = encode_response_properties(*header);
  auto again = decode_response_properties(encoded);
  fuzz::check(again.ok() && *again == *header, "response properties round-trip");
}

void fuzz_topics(std::string_view text) {
  if (const auto edge = edge_of_request_topic(text))
    fuzz::check(request_topic(*edge) == text, "an edge's request topic rebuilds the topic");
  if (const auto requester = requester_of_response_topic(text)) {
    fuzz::check(requester->find('/') == std::string_view::npos, "a requester is one topic level");
    const std::string rebuilt = response_topic(*requester);
    fuzz::check(text.substr(0, rebuilt.size()) == rebuilt,
                "a response topic starts with its requester's");
  }
  if (const auto topic = request_topic_of_endpoint(text))
    fuzz::check(
        std::string(endpoint_scheme) + *topic == text && edge_of_request_topic(*topic).has_value(),
        "a fetch endpoint names a request topic");
}

void check_replies(const ServerOutput& out) {
  for (const Reply& reply : out.replies) {
    fuzz::check(requester_of_response_topic(reply.topic).has_value(),
                "the Server answers on response topics only", reply.topic);
    auto header = decode_response_properties(reply.properties());
    fuzz::check(header.ok() && *header == reply.header, "a reply's properties decode to it");
    fuzz::check(reply.length_bytes >= 0 && reply.length_bytes <= chunk_bytes_max,
                "a reply carries at most a chunk");
  }
}

void fuzz_server(FuzzedDataProvider& in) {
  const std::string edge_topic = request_topic("edge-a");
  Server server(ServerConfig{edge_topic, 4, 4096});
  int message_id = 1;
  while (in.remaining_bytes() > 0) {
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: {
        const std::string topic = in.ConsumeBool() ? edge_topic : in.ConsumeRandomLengthString(64);
        const std::string response =
            in.ConsumeBool() ? response_topic("cli-1", "get") : in.ConsumeRandomLengthString(64);
        const std::string correlation = in.ConsumeRandomLengthString(32);
        const std::string payload = in.ConsumeRandomLengthString(256);
        check_replies(server.on_request({topic, payload, response, correlation}));
        break;
      }
      case 1: {
        const ServerOutput out = server.serve_next();
        check_replies(out);
        if (out.lookup && in.ConsumeBool()) {
          LookupOutcome outcome;
          switch (in.ConsumeIntegralInRange<int>(0, 2)) {
            case 0:
              outcome = LookupOutcome::stored(
                  in.ConsumeIntegralInRange<std::int64_t>(1, limits::fragment_size_bytes_max));
              break;
            case 1: outcome = LookupOutcome::not_found(); break;
            default: outcome = LookupOutcome::corrupt(); break;
          }
          const ServerOutput answered = server.on_lookup(out.lookup->ticket, outcome);
          check_replies(answered);
          for (const Reply& reply : answered.replies) server.on_sent(message_id++, reply);
        }
        break;
      }
      case 2: (void)server.on_acknowledged(in.ConsumeIntegralInRange<int>(0, message_id)); break;
      default: server.on_disconnected(); break;
    }
    fuzz::check(server.waiting() <= server.config().queue_max, "the queue stays bounded");
  }
}

struct Fragment {
  std::string content;
  Hash hash;
};

const Fragment& fragment() {
  static const Fragment f = [] {
    Fragment made;
    for (int i = 0; i < 3000; ++i) made.content.push_back(static_cast<char>(i * 7 + 3));
    made.hash = sha256(std::string_view(made.content));
    return made;
  }();
  return f;
}

void fuzz_client(FuzzedDataProvider& in) {
  const Fragment& f = fragment();
  const std::string my_topic = response_topic("cli-1", "get");
  std::vector<FileFragment> plan{FileFragment{
      f.hash,
      static_cast<std::int64_t>(f.content.size()),
      0,
      {Holder{"edge-a", request_topic("edge-a")}, Holder{"edge-b", request_topic("edge-b")}},
      false}};
  SplitMix64 random(7);
  Client client(ClientConfig{my_topic, 2, 1'000, 200, 3}, std::move(plan), random);
  std::int64_t now_ms = 0;
  std::vector<OutgoingRequest> in_flight;
  const auto take = [&](ClientOutput out) {
    for (auto& r : out.requests) in_flight.push_back(std::move(r));
    for (const auto& done : out.completed)
      fuzz::check(sha256(std::string_view(done.data)) == f.hash,
                  "a completed fragment hashes to its hash");
  };
  take(client.start(now_ms));
  while (in.remaining_bytes() > 0 && !client.finished()) {
    now_ms += in.ConsumeIntegralInRange<std::int64_t>(0, 1'500);
    if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
      take(client.on_tick(now_ms));
      continue;
    }
    IncomingResponse response;
    const bool answer_a_request = !in_flight.empty() && in.ConsumeBool();
    if (answer_a_request) {
      const auto& r = in_flight[in.ConsumeIntegralInRange<std::size_t>(0, in_flight.size() - 1)];
      response.topic = r.response_topic;
      response.correlation_data = r.correlation_data;
    } else {
      response.topic = in.ConsumeBool() ? my_topic : in.ConsumeRandomLengthString(64);
      response.correlation_data = in.ConsumeRandomLengthString(32);
    }
    response.user_properties = draw_properties(in);
    if (in.ConsumeBool()) {
      // A slice of the real fragment, so an answer can be right.
      const auto offset = in.ConsumeIntegralInRange<std::size_t>(0, f.content.size());
      const auto length = in.ConsumeIntegralInRange<std::size_t>(0, f.content.size() - offset);
      response.payload = f.content.substr(offset, length);
    } else {
      response.payload = in.ConsumeRandomLengthString(4096);
    }
    take(client.on_response(now_ms, std::move(response)));
    fuzz::check(client.done_bytes() <= static_cast<std::int64_t>(f.content.size()),
                "done bytes never exceed the file");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  FuzzedDataProvider in(data + 1, size - 1);
  fuzz::no_throw("fetch never throws on what arrives", [&] {
    switch (data[0] % 5) {
      case 0: fuzz_request(rest); break;
      case 1: fuzz_response_properties(in); break;
      case 2: fuzz_topics(rest); break;
      case 3: fuzz_server(in); break;
      default: fuzz_client(in); break;
    }
  });
  return 0;
}
