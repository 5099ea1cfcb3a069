// The events of the specification as the tracker and every torrent server receive them: untrusted
// bytes on one of the 17 event topics through decode(topic, payload), JSON on every topic and CBOR
// on fragments/distribution/delivered.
//
// One target for all topics: the first byte picks the topic (modulo 18; the 18th is a topic that
// is no event's, which must be refused), the rest is the payload. The events share one reader and
// most of their field codecs, so inputs that reach deep into one event teach the fuzzer about the
// others, and one corpus holds every golden payload.
//
// Contract: decode never throws; what it accepts is an event of the topic's type; encode() of it
// decodes to the same event and is canonical (encoding that again gives the same bytes); a
// FragmentDistributionDelivered also round-trips through CBOR and the encoders that write into a
// buffer. ClientJoinRequested, which decode() reads as a stream, is read by the DOM reader it
// replaced as well (decode_join_requested_with_dom), and both must agree: the same event, or both a
// refusal. The one allowed difference is a payload in which some object repeats a key: the stream
// refuses a dictionary that repeats one, where the DOM kept the last value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include <set>
#include <vector>

#include "fuzz_check.hpp"
#include "mqds/events.hpp"

using namespace mqds;

namespace {

// True when some object of the JSON text repeats a key.
class RepeatedKeyFinder : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool found = false;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& name) override {
    if (!keys_.back().insert(name).second) found = true;
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  std::vector<std::set<std::string>> keys_;
};

bool repeats_a_key(std::string_view payload) {
  RepeatedKeyFinder finder;
  nlohmann::json::sax_parse(payload.begin(), payload.end(), &finder);
  return finder.found;
}

void check_join_against_dom(std::string_view payload, const Result<Event>& decoded) {
  const auto dom = decode_join_requested_with_dom(payload);
  if (decoded.ok() != dom.ok()) {
    fuzz::check(!decoded.ok() && repeats_a_key(payload),
                "the stream and the DOM readers of ClientJoinRequested agree",
                decoded.ok() ? "stream accepted, DOM: " + dom.error().to_string()
                             : "DOM accepted, stream: " + decoded.error().to_string());
    return;
  }
  if (decoded.ok()) fuzz::check(*decoded == *dom, "the stream and the DOM read the same join");
}

void check_delivered(const FragmentDistributionDelivered& d) {
  const Event event = d;
  const std::string json = encode(event);

  std::string into(
      delivered_payload_size(d.event_id, d.hash, d.data.size(), d.receivers, d.revision), '\0');
  encode_delivered_into(d.event_id, d.hash, d.data, d.receivers, into.data(), into.size(),
                        d.revision);
  fuzz::check(into == json, "encode_delivered_into writes what encode writes", json);

  std::string cbor(
      delivered_cbor_payload_size(d.event_id, d.hash, d.data.size(), d.receivers, d.revision),
      '\0');
  encode_delivered_cbor_into(d.event_id, d.hash, d.data, d.receivers, cbor.data(), cbor.size(),
                             d.revision);
  auto back = decode(topics::fragment_distribution_delivered, cbor);
  fuzz::check(back.ok(), "the CBOR encoding of an accepted Delivered decodes",
              back.ok() ? "" : back.error().to_string());
  fuzz::check(*back == event, "the CBOR encoding of an accepted Delivered decodes to it");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t pick = data[0] % (event_type_count + 1);
  const std::string_view topic =
      pick < event_type_count ? event_table[pick].topic : std::string_view("tracker/unknown");
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);

  fuzz::no_throw("decode(topic, payload) and its re-encoding never throw", [&] {
    auto decoded = decode(topic, payload);
    if (topic == topics::client_join_requested) check_join_against_dom(payload, decoded);
    if (!decoded) {
      fuzz::check(!decoded.error().to_string().empty(), "a refusal says why");
      return;
    }
    fuzz::check(pick < event_type_count, "an unknown topic is refused");
    const Event& event = *decoded;
    fuzz::check(topic_of(event) == topic, "an accepted event is the topic's event");

    const std::string encoded = encode(event);
    auto again = decode(topic, encoded);
    fuzz::check(again.ok(), "what decode accepted re-encodes to something it accepts",
                encoded + (again.ok() ? "" : " -> " + again.error().to_string()));
    fuzz::check(*again == event, "decode(encode(decode(x))) == decode(x)", encoded);
    fuzz::check(encode(*again) == encoded, "encode is canonical", encoded);

    if (const auto* delivered = std::get_if<FragmentDistributionDelivered>(&event))
      check_delivered(*delivered);
  });
  return 0;
}
