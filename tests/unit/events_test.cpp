#include "mqds/events.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "mqds/base64.hpp"
#include "mqds/limits.hpp"

// Golden payloads are string literals in the reference's format. The hashes are spliced in by
// literal concatenation, sorted here as std::set<Hash> sorts them: HA < HB < HC.
#define HA "2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE"  // SHA-256 "foo"
#define HB \
  "7F83B1657FF1FC53B92DC18148A1D65DFC2D4B1FA3D677284ADDD200126D9069"  // SHA-256 "Hello World!"
#define HC "FCDE2B2EDBA56BF408601FB721FE9B5C338D10EE429EA04FAE5511B68FBF8FB9"  // SHA-256 "bar"
#define HA_LOWER "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
#define HB_LOWER "7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069"
#define ID "fb3f146d-c74e-4c75-a3e7-1e768b2e986f"
#define ID2 "0f8fad5b-d9cb-469f-a165-70867728950e"

namespace mqds {
namespace {

using nlohmann::json;
using namespace std::string_view_literals;

Hash hash(std::string_view hex) {
  const auto h = Hash::from_hex(hex);
  if (!h) throw std::invalid_argument("test hash is not hexadecimal");
  return *h;
}

Uuid uuid(std::string_view text) {
  const auto u = Uuid::parse(text);
  if (!u) throw std::invalid_argument("test uuid is malformed");
  return *u;
}

Bytes bytes(std::string_view text) {
  return Bytes(text.begin(), text.end());
}

// decode() reads ClientJoinRequested as a stream; the DOM reader it replaced must agree with it:
// the same event, or the same error. Every join payload of these tests goes through this check.
void expect_same_as_dom(std::string_view topic, std::string_view payload) {
  if (topic != topics::client_join_requested) return;
  const auto stream = decode(topic, payload);
  const auto dom = decode_join_requested_with_dom(payload);
  ASSERT_EQ(stream.ok(), dom.ok())
      << "stream: " << (stream.ok() ? "ok" : stream.error().to_string())
      << ", DOM: " << (dom.ok() ? "ok" : dom.error().to_string()) << ": " << payload.substr(0, 300);
  if (stream.ok()) {
    EXPECT_EQ(stream.value(), dom.value()) << payload.substr(0, 300);
  } else {
    EXPECT_EQ(stream.error().to_string(), dom.error().to_string()) << payload.substr(0, 300);
  }
}

// The exact text, and the exact event back from it.
void expect_golden(const Event& event, std::string_view golden) {
  EXPECT_EQ(encode(event), golden);
  const auto result = decode(topic_of(event), golden);
  ASSERT_TRUE(result.ok()) << result.error().to_string();
  EXPECT_EQ(result.value(), event);
  expect_same_as_dom(topic_of(event), golden);
}

template <typename T>
T decode_as(std::string_view topic, std::string_view payload) {
  expect_same_as_dom(topic, payload);
  const auto result = decode(topic, payload);
  if (!result.ok()) throw std::runtime_error("decode failed: " + result.error().to_string());
  return std::get<T>(result.value());
}

void expect_error(std::string_view topic, std::string_view payload, std::string_view field,
                  std::string_view problem) {
  expect_same_as_dom(topic, payload);
  const auto result = decode(topic, payload);
  ASSERT_FALSE(result.ok()) << "decoded although " << field
                            << " should be rejected: " << payload.substr(0, 300);
  EXPECT_EQ(result.error().field, field);
  EXPECT_EQ(result.error().problem, problem);
}

// Edits of a golden payload, addressed by JSON pointer ("/KnownFileInfos/<hash>/Size").
std::string replaced(std::string_view text, const std::string& pointer, const json& value) {
  auto document = json::parse(text);
  document[json::json_pointer(pointer)] = value;
  return document.dump();
}

std::string removed(std::string_view text, const std::string& pointer) {
  auto document = json::parse(text);
  const json::json_pointer path(pointer);
  document[path.parent_pointer()].erase(path.back());
  return document.dump();
}

json strings(std::size_t count, std::size_t size_bytes) {
  json items = json::array();
  for (std::size_t i = 0; i < count; ++i) {
    auto text = std::to_string(i);
    text.insert(0, size_bytes - text.size(), 'x');
    items.push_back(text);
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// One golden payload per event type

constexpr std::string_view hello_golden = R"({"EventId":")" ID R"("})";

TEST(EventTrackerHello, GoldenRoundTrip) {
  expect_golden(TrackerHello{uuid(ID)}, hello_golden);
}

TEST(EventTrackerHello, Errors) {
  expect_error(topics::tracker_hello, "{}", "EventId", "missing");
  expect_error(topics::tracker_hello, R"({"EventId":5})", "EventId", "must be a string");
  expect_error(topics::tracker_hello, R"({"EventId":"fb3f146d"})", "EventId", "must be a GUID");
}

TEST(EventTrackerGoodbye, GoldenRoundTrip) {
  expect_golden(TrackerGoodbye{uuid(ID)}, hello_golden);
}

TEST(EventTrackerGoodbye, Errors) {
  expect_error(topics::tracker_goodbye, removed(hello_golden, "/EventId"), "EventId", "missing");
  expect_error(topics::tracker_goodbye, replaced(hello_golden, "/EventId", true), "EventId",
               "must be a string");
}

constexpr std::string_view join_requested_golden =
    R"({"EventId":")" ID R"(","FragmentSize":1024,"HashAlgorithm":"SHA256",)"
    R"("KnownFileInfos":{")" HB R"(":{"Size":1,"FragmentSequence":[")" HA R"("]}},)"
    R"("StoredFragments":{")" HA R"(":{"Size":1}},)"
    R"("Endpoints":["grpc://10.243.138.183:50051"],"Capacity":1048576,"ObtainedFragments":{")" HC
    R"(":{"Size":7}}})";

ClientJoinRequested join_requested() {
  ClientJoinRequested e;
  e.event_id = uuid(ID);
  e.hash_algorithm = "SHA256";
  e.fragment_size_bytes = 1024;
  e.known_file_infos = {{hash(HB), FileMetadata{1, {hash(HA)}}}};
  e.stored_fragments = {{hash(HA), FragmentMetadata{1}}};
  e.endpoints = {"grpc://10.243.138.183:50051"};
  e.capacity_bytes = 1048576;
  e.obtained_fragments = {{hash(HC), FragmentMetadata{7}}};
  return e;
}

TEST(EventClientJoinRequested, GoldenRoundTrip) {
  expect_golden(join_requested(), join_requested_golden);
}

TEST(EventClientJoinRequested, FreshServerWithoutOptionals) {
  ClientJoinRequested e;
  e.event_id = uuid(ID);
  e.hash_algorithm = "SHA256";
  expect_golden(
      e, R"({"EventId":")" ID
         R"(","HashAlgorithm":"SHA256","KnownFileInfos":{},"StoredFragments":{},"Endpoints":[]})");
}

TEST(EventClientJoinRequested, Errors) {
  const auto topic = topics::client_join_requested;
  const auto& g = join_requested_golden;
  expect_error(topic, removed(g, "/HashAlgorithm"), "HashAlgorithm", "missing");
  expect_error(topic, removed(g, "/KnownFileInfos"), "KnownFileInfos", "missing");
  expect_error(topic, removed(g, "/StoredFragments"), "StoredFragments", "missing");
  expect_error(topic, removed(g, "/Endpoints"), "Endpoints", "missing");
  expect_error(topic, removed(g, "/KnownFileInfos/" HB "/Size"), "KnownFileInfos." HB ".Size",
               "missing");
  expect_error(topic, removed(g, "/KnownFileInfos/" HB "/FragmentSequence"),
               "KnownFileInfos." HB ".FragmentSequence", "missing");
  expect_error(topic, removed(g, "/StoredFragments/" HA "/Size"), "StoredFragments." HA ".Size",
               "missing");
  expect_error(topic, replaced(g, "/FragmentSize", "1024"), "FragmentSize", "must be an integer");
  expect_error(topic, replaced(g, "/HashAlgorithm", 256), "HashAlgorithm", "must be a string");
  expect_error(topic, replaced(g, "/KnownFileInfos", json::array()), "KnownFileInfos",
               "must be an object");
  expect_error(topic, replaced(g, "/StoredFragments/" HA, 1), "StoredFragments." HA,
               "must be an object");
  expect_error(topic, replaced(g, "/Endpoints", "grpc://a"), "Endpoints", "must be an array");
  expect_error(topic, replaced(g, "/KnownFileInfos/" HB "/Size", -1), "KnownFileInfos." HB ".Size",
               "must not be negative");
  expect_error(topic, replaced(g, "/KnownFileInfos/" HB "/FragmentSequence/0", "H2"),
               "KnownFileInfos." HB ".FragmentSequence[0]", "must be 64 hexadecimal characters");
  expect_error(topic, replaced(g, "/StoredFragments/" HA "/Size", 0), "StoredFragments." HA ".Size",
               "must be positive");
  expect_error(topic, replaced(g, "/Capacity", -1), "Capacity", "must not be negative");
  expect_error(topic, replaced(g, "/Capacity", 1.5), "Capacity", "must be an integer");
  expect_error(topic, replaced(g, "/ObtainedFragments", json::array()), "ObtainedFragments",
               "must be an object");
  expect_error(topic, replaced(g, "/ObtainedFragments/" HC "/Size", 0),
               "ObtainedFragments." HC ".Size", "must be positive");
  const auto without_obtained = replaced(g, "/ObtainedFragments", nullptr);
  EXPECT_TRUE(decode_as<ClientJoinRequested>(topic, without_obtained).obtained_fragments.empty());
}

TEST(EventClientJoinRequested, DictionaryKeysMustBeHashes) {
  const auto payload = replaced(join_requested_golden, "/StoredFragments/H2", json{{"Size", 1}});
  expect_error(topics::client_join_requested, payload, "StoredFragments.H2",
               "must be 64 hexadecimal characters");
}

TEST(EventClientJoinRequested, KeysThatDifferOnlyInCaseAreDuplicates) {
  const auto payload =
      replaced(join_requested_golden, "/StoredFragments/" HB_LOWER, json{{"Size", 1}});
  const auto twice = replaced(payload, "/StoredFragments/" HB, json{{"Size", 1}});
  expect_error(topics::client_join_requested, twice, "StoredFragments." HB_LOWER,
               "duplicate entry");
}

TEST(EventClientJoinRequested, FragmentSequenceMayRepeatAFragment) {
  const auto payload = replaced(join_requested_golden, "/KnownFileInfos/" HB,
                                json{{"Size", 2048}, {"FragmentSequence", {HA, HA}}});
  const auto e = decode_as<ClientJoinRequested>(topics::client_join_requested, payload);
  EXPECT_EQ(e.known_file_infos.at(hash(HB)).fragment_sequence,
            (std::vector<Hash>{hash(HA), hash(HA)}));
}

TEST(EventClientJoinRequested, FragmentSizeBounds) {
  const auto topic = topics::client_join_requested;
  const auto at_limit =
      replaced(join_requested_golden, "/FragmentSize", limits::fragment_size_bytes_max);
  EXPECT_EQ(decode_as<ClientJoinRequested>(topic, at_limit).fragment_size_bytes,
            limits::fragment_size_bytes_max);
  expect_error(
      topic, replaced(join_requested_golden, "/FragmentSize", limits::fragment_size_bytes_max + 1),
      "FragmentSize", "exceeds 67108864");
  expect_error(topic, replaced(join_requested_golden, "/FragmentSize", 0), "FragmentSize",
               "must be positive");
  expect_error(topic, replaced(join_requested_golden, "/FragmentSize", -1024), "FragmentSize",
               "must be positive");
  const auto fragment_at_limit = replaced(join_requested_golden, "/StoredFragments/" HA "/Size",
                                          limits::fragment_size_bytes_max);
  EXPECT_TRUE(decode(topic, fragment_at_limit).ok());
  expect_error(topic,
               replaced(join_requested_golden, "/StoredFragments/" HA "/Size",
                        limits::fragment_size_bytes_max + 1),
               "StoredFragments." HA ".Size", "exceeds 67108864");
}

TEST(EventClientJoinRequested, FileSizeBounds) {
  const auto topic = topics::client_join_requested;
  const auto empty_file = replaced(join_requested_golden, "/KnownFileInfos/" HB,
                                   json{{"Size", 0}, {"FragmentSequence", json::array()}});
  EXPECT_EQ(decode_as<ClientJoinRequested>(topic, empty_file).known_file_infos.at(hash(HB)),
            (FileMetadata{0, {}}));
  const auto size = "/KnownFileInfos/" HB "/Size";
  EXPECT_TRUE(
      decode(topic, replaced(join_requested_golden, size, limits::file_size_bytes_max)).ok());
  expect_error(topic, replaced(join_requested_golden, size, limits::file_size_bytes_max + 1),
               "KnownFileInfos." HB ".Size", "exceeds 70368744177664");
}

TEST(EventClientJoinRequested, CapacityBounds) {
  const auto topic = topics::client_join_requested;
  EXPECT_EQ(decode_as<ClientJoinRequested>(topic, replaced(join_requested_golden, "/Capacity", 0))
                .capacity_bytes,
            0);
  const auto largest =
      replaced(join_requested_golden, "/Capacity", std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(decode_as<ClientJoinRequested>(topic, largest).capacity_bytes,
            std::numeric_limits<std::int64_t>::max());
  expect_error(topic, replaced(join_requested_golden, "/Capacity", 9223372036854775808ULL),
               "Capacity", "exceeds 9223372036854775807");
}

TEST(EventClientJoinRequested, EndpointBounds) {
  const auto topic = topics::client_join_requested;
  const auto& g = join_requested_golden;
  const auto many = limits::endpoints_per_client_max;
  EXPECT_EQ(decode_as<ClientJoinRequested>(topic, replaced(g, "/Endpoints", strings(many, 8)))
                .endpoints.size(),
            many);
  expect_error(topic, replaced(g, "/Endpoints", strings(many + 1, 8)), "Endpoints",
               "exceeds 16 entries");
  const auto longest = limits::endpoint_bytes_max;
  EXPECT_TRUE(decode(topic, replaced(g, "/Endpoints", strings(1, longest))).ok());
  expect_error(topic, replaced(g, "/Endpoints", strings(1, longest + 1)), "Endpoints[0]",
               "exceeds 1024 bytes");
  expect_error(topic, replaced(g, "/Endpoints", json{"grpc://a", ""}), "Endpoints[1]",
               "must not be empty");
  expect_error(topic, replaced(g, "/Endpoints", json{"grpc://a", "grpc://a"}), "Endpoints[1]",
               "duplicate entry");
  expect_error(topic, replaced(g, "/Endpoints", json{"grpc://a", 7}), "Endpoints[1]",
               "must be a string");
}

TEST(EventClientJoinRequested, HashAlgorithmIsABoundedString) {
  const auto topic = topics::client_join_requested;
  const std::string longest(limits::hash_algorithm_bytes_max, 'X');
  EXPECT_EQ(decode_as<ClientJoinRequested>(
                topic, replaced(join_requested_golden, "/HashAlgorithm", longest))
                .hash_algorithm,
            longest);
  expect_error(topic, replaced(join_requested_golden, "/HashAlgorithm", longest + "X"),
               "HashAlgorithm", "exceeds 32 bytes");
}

TEST(EventClientJoinRequested, LowercaseSha256NameIsDecodedFully) {
  const auto payload = replaced(join_requested_golden, "/HashAlgorithm", "sha256");
  auto expected = join_requested();
  expected.hash_algorithm = "sha256";
  EXPECT_EQ(decode_as<ClientJoinRequested>(topics::client_join_requested, payload), expected);
}

TEST(EventClientJoinRequested, OtherAlgorithmSkipsTheHashesSoTheTrackerCanDeny) {
  // MD5 digests: 32 hex characters, not valid SHA-256 hashes.
  const std::string payload =
      R"({"EventId":")" ID R"(","HashAlgorithm":"MD5","FragmentSize":512,)"
      R"("KnownFileInfos":{"5d41402abc4b2a76b9719d911017c592":{"Size":5,"FragmentSequence":["5d41402abc4b2a76b9719d911017c592"]}},)"
      R"("StoredFragments":{"5d41402abc4b2a76b9719d911017c592":{"Size":5}},"Endpoints":["grpc://b"],"Capacity":9,)"
      R"("ObtainedFragments":{"5d41402abc4b2a76b9719d911017c592":{"Size":5}}})";
  ClientJoinRequested expected;
  expected.event_id = uuid(ID);
  expected.hash_algorithm = "MD5";
  expected.fragment_size_bytes = 512;
  expected.endpoints = {"grpc://b"};
  expected.capacity_bytes = 9;
  EXPECT_EQ(decode_as<ClientJoinRequested>(topics::client_join_requested, payload), expected);
  // The fields the denial needs are still checked.
  expect_error(topics::client_join_requested, replaced(payload, "/FragmentSize", 0), "FragmentSize",
               "must be positive");
  expect_error(topics::client_join_requested, removed(payload, "/Endpoints"), "Endpoints",
               "missing");
}

// --- ClientJoinRequested read as a stream ----------------------------------------------------
// decode() reads the join request without a document (common/src/join_reader.hpp). Every case
// below is also checked against the DOM reader by expect_error and decode_as.

// The golden request with `members` spliced in at the head of the object at `pointer`.
std::string with_members(std::string_view text, std::string_view before, std::string_view members) {
  std::string out(text);
  const auto at = out.find(before);
  if (at == std::string::npos) throw std::invalid_argument("no such text in the payload");
  out.insert(at + before.size(), members);
  return out;
}

TEST(EventClientJoinRequestedStream, WrongTypesAtEveryLevel) {
  const auto topic = topics::client_join_requested;
  const auto& g = join_requested_golden;
  const auto known = "/KnownFileInfos/" HB;
  const std::string known_path = "KnownFileInfos." HB;
  struct Case {
    std::string pointer;
    json value;
    std::string field;
    std::string problem;
  };
  const std::vector<Case> cases{
      {"/EventId", json::object(), "EventId", "must be a string"},
      {"/EventId", json::array(), "EventId", "must be a string"},
      {"/EventId", 7, "EventId", "must be a string"},
      {"/EventId", "not-a-guid", "EventId", "must be a GUID"},
      {"/HashAlgorithm", json::array({"SHA256"}), "HashAlgorithm", "must be a string"},
      {"/HashAlgorithm", true, "HashAlgorithm", "must be a string"},
      {"/FragmentSize", json::object(), "FragmentSize", "must be an integer"},
      {"/FragmentSize", 1.5, "FragmentSize", "must be an integer"},
      {"/KnownFileInfos", "x", "KnownFileInfos", "must be an object"},
      {"/KnownFileInfos", 1, "KnownFileInfos", "must be an object"},
      {"/StoredFragments", json::array({json::object()}), "StoredFragments", "must be an object"},
      {known, json::array(), known_path, "must be an object"},
      {known, "x", known_path, "must be an object"},
      {known, nullptr, known_path, "must be an object"},
      {std::string(known) + "/Size", json::object(), known_path + ".Size", "must be an integer"},
      {std::string(known) + "/Size", "1", known_path + ".Size", "must be an integer"},
      {std::string(known) + "/Size", true, known_path + ".Size", "must be an integer"},
      {std::string(known) + "/FragmentSequence", json::object(), known_path + ".FragmentSequence",
       "must be an array"},
      {std::string(known) + "/FragmentSequence", HA, known_path + ".FragmentSequence",
       "must be an array"},
      {std::string(known) + "/FragmentSequence", json::array({1}),
       known_path + ".FragmentSequence[0]", "must be a string"},
      {std::string(known) + "/FragmentSequence", json::array({HA, json::array()}),
       known_path + ".FragmentSequence[1]", "must be a string"},
      {std::string(known) + "/FragmentSequence", json::array({json::object()}),
       known_path + ".FragmentSequence[0]", "must be a string"},
      {std::string(known) + "/FragmentSequence", json::array({nullptr}),
       known_path + ".FragmentSequence[0]", "must be a string"},
      {"/StoredFragments/" HA "/Size", json::array(), "StoredFragments." HA ".Size",
       "must be an integer"},
      {"/StoredFragments/" HA "/Size", -5, "StoredFragments." HA ".Size", "must be positive"},
      {"/Endpoints", json::object(), "Endpoints", "must be an array"},
      {"/Endpoints", json::array({json::array()}), "Endpoints[0]", "must be a string"},
      {"/Endpoints", json::array({"grpc://a", json::object()}), "Endpoints[1]", "must be a string"},
      {"/Endpoints", json::array({nullptr}), "Endpoints[0]", "must be a string"},
      {"/Capacity", json::object(), "Capacity", "must be an integer"},
      {"/Capacity", "1", "Capacity", "must be an integer"},
      {"/ObtainedFragments", json::array(), "ObtainedFragments", "must be an object"},
      {"/ObtainedFragments/" HC, 7, "ObtainedFragments." HC, "must be an object"},
      {"/DeliveryEncodings", json::object(), "DeliveryEncodings", "must be an array"},
      {"/DeliveryEncodings", json::array({1}), "DeliveryEncodings[0]", "must be a string"},
      {"/DeliveryEncodings", json::array({""}), "DeliveryEncodings[0]", "must not be empty"},
      {"/Extensions", "Revision", "Extensions", "must be an array"},
      {"/Extensions", json::array({"Revision", json::array()}), "Extensions[1]",
       "must be a string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.pointer + " = " + c.value.dump());
    expect_error(topic, replaced(g, c.pointer, c.value), c.field, c.problem);
  }
}

TEST(EventClientJoinRequestedStream, NullsAreAbsentForOptionalsAndMissingForTheRest) {
  const auto topic = topics::client_join_requested;
  const auto& g = join_requested_golden;
  auto e = decode_as<ClientJoinRequested>(
      topic,
      replaced(replaced(replaced(g, "/ObtainedFragments", nullptr), "/FragmentSize", nullptr),
               "/Capacity", nullptr));
  EXPECT_FALSE(e.fragment_size_bytes);
  EXPECT_FALSE(e.capacity_bytes);
  EXPECT_TRUE(e.obtained_fragments.empty());
  e = decode_as<ClientJoinRequested>(
      topic, replaced(replaced(g, "/DeliveryEncodings", nullptr), "/Extensions", nullptr));
  EXPECT_TRUE(e.delivery_encodings.empty());
  EXPECT_TRUE(e.extensions.empty());
  expect_error(topic, replaced(g, "/EventId", nullptr), "EventId", "missing");
  expect_error(topic, replaced(g, "/HashAlgorithm", nullptr), "HashAlgorithm", "missing");
  expect_error(topic, replaced(g, "/KnownFileInfos", nullptr), "KnownFileInfos", "missing");
  expect_error(topic, replaced(g, "/StoredFragments", nullptr), "StoredFragments", "missing");
  expect_error(topic, replaced(g, "/Endpoints", nullptr), "Endpoints", "missing");
  expect_error(topic, replaced(g, "/KnownFileInfos/" HB "/Size", nullptr),
               "KnownFileInfos." HB ".Size", "missing");
  expect_error(topic, replaced(g, "/KnownFileInfos/" HB "/FragmentSequence", nullptr),
               "KnownFileInfos." HB ".FragmentSequence", "missing");
  expect_error(topic, replaced(g, "/StoredFragments/" HA "/Size", nullptr),
               "StoredFragments." HA ".Size", "missing");
}

TEST(EventClientJoinRequestedStream, UnknownFieldsAreIgnoredAtEveryLevel) {
  const auto topic = topics::client_join_requested;
  const std::string noise = R"("Future":{"Nested":[1,{"Size":-1,"EventId":[]},[[null]]]},"x":"y",)";
  auto payload = with_members(join_requested_golden, "{", noise);
  payload = with_members(payload, "\"KnownFileInfos\":{\"" HB "\":{", noise);
  // FragmentSequence means nothing in a FragmentMetadata: an unknown member there.
  payload = with_members(payload, "\"StoredFragments\":{\"" HA "\":{",
                         noise + R"("FragmentSequence":{"bad":true},)");
  payload = with_members(payload, "\"ObtainedFragments\":{\"" HC "\":{", noise);
  EXPECT_EQ(decode_as<ClientJoinRequested>(topic, payload), join_requested());
}

// As in the DOM, a member repeated in an object takes its last value; a dictionary that repeats
// a key is a duplicate entry, whatever its case (the DOM kept the last value of an exact repeat).
TEST(EventClientJoinRequestedStream, RepeatedMembersTakeTheLastValueRepeatedKeysAreDuplicates) {
  const auto topic = topics::client_join_requested;
  const auto& g = join_requested_golden;
  auto payload = with_members(g, "{", R"("EventId":7,"Capacity":5,"StoredFragments":{"x":1},)");
  payload = with_members(payload, "\"KnownFileInfos\":{\"" HB "\":{",
                         R"("Size":-1,"FragmentSequence":"x",)");
  EXPECT_EQ(decode_as<ClientJoinRequested>(topic, payload), join_requested());
  auto without_capacity = join_requested();
  without_capacity.capacity_bytes.reset();
  EXPECT_EQ(decode_as<ClientJoinRequested>(
                topic, with_members(g, "\"Capacity\":1048576,", R"("Capacity":null,)")),
            without_capacity);

  const auto twice = with_members(g, "\"StoredFragments\":{", "\"" HA "\":{\"Size\":2},");
  const auto result = decode(topic, twice);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().to_string(), "StoredFragments." HA ": duplicate entry");
  EXPECT_TRUE(decode_join_requested_with_dom(twice).ok()) << "the one difference to the DOM reader";
}

TEST(EventClientJoinRequestedStream, NestingIsBoundedBeforeReading) {
  const auto topic = topics::client_join_requested;
  const auto deepest = with_members(join_requested_golden, "{",
                                    R"("X":)" + std::string(63, '[') + std::string(63, ']') + ",");
  EXPECT_EQ(decode_as<ClientJoinRequested>(topic, deepest), join_requested());
  const auto too_deep = with_members(join_requested_golden, "\"" HA "\":{",
                                     R"("X":)" + std::string(62, '[') + std::string(62, ']') + ",");
  expect_error(topic, too_deep, "", "nesting exceeds 64");
  expect_error(topic, std::string(100000, '{'), "", "nesting exceeds 64");
}

TEST(EventClientJoinRequestedStream, OverlongNamesAndKeysAreRefused) {
  const auto topic = topics::client_join_requested;
  const auto& g = join_requested_golden;
  expect_error(topic, replaced(g, "/Endpoints", json::array({std::string(1025, 'e')})),
               "Endpoints[0]", "exceeds 1024 bytes");
  expect_error(topic, replaced(g, "/DeliveryEncodings", json::array({std::string(33, 'c')})),
               "DeliveryEncodings[0]", "exceeds 32 bytes");
  expect_error(topic, replaced(g, "/Extensions", json::array({std::string(33, 'x')})),
               "Extensions[0]", "exceeds 32 bytes");
  expect_error(topic, replaced(g, "/HashAlgorithm", std::string(33, 'S')), "HashAlgorithm",
               "exceeds 32 bytes");
  // A hostile key is cut short in the error's path.
  const std::string key(10000, 'k');
  expect_error(topic, replaced(g, "/StoredFragments/" + key, json{{"Size", 1}}),
               "StoredFragments." + key.substr(0, 300) + "...",
               "must be 64 hexadecimal characters");
}

TEST(EventClientJoinRequestedStream, CountsAreCheckedBeforeEntries) {
  const auto topic = topics::client_join_requested;
  auto endpoints = strings(limits::endpoints_per_client_max + 1, 8);
  endpoints[1] = 7;  // a problem of an entry, after which the count still wins
  expect_error(topic, replaced(join_requested_golden, "/Endpoints", endpoints), "Endpoints",
               "exceeds 16 entries");
  auto extensions = strings(limits::extensions_max + 1, 4);
  extensions[0] = "";
  expect_error(topic, replaced(join_requested_golden, "/Extensions", extensions), "Extensions",
               "exceeds 16 entries");
}

TEST(EventClientJoinRequestedStream, ProblemsAreReportedInTheOrderOfTheSchema) {
  const auto topic = topics::client_join_requested;
  // Endpoints comes before Capacity in the schema, whatever the order in the text.
  auto payload = replaced(join_requested_golden, "/Capacity", -1);
  payload = replaced(payload, "/Endpoints", 1);
  expect_error(topic, payload, "Endpoints", "must be an array");
  // The text's order is not the schema's: a later EventId problem is still the first.
  const auto reordered = R"({"Endpoints":5,"HashAlgorithm":"SHA256","EventId":1})";
  expect_error(topic, reordered, "EventId", "must be a string");
  // Invalid JSON wins over every problem found before it.
  expect_error(topic, R"({"EventId":1,"Endpoints":[)", "", "invalid JSON");
  expect_error(topic, R"([{"EventId":")" ID R"("}])", "", "must be an object");
  expect_error(topic, "\"text\"", "", "must be an object");
  expect_error(topic, "{}", "EventId", "missing");
}

// HashAlgorithm may come after the collections: they are read, and their problems forgotten if it
// names another algorithm.
TEST(EventClientJoinRequestedStream, AnotherAlgorithmNamedLastStillSkipsTheHashes) {
  const auto topic = topics::client_join_requested;
  const std::string payload =
      R"({"EventId":")" ID R"(","KnownFileInfos":{"5d41402abc4b2a76b9719d911017c592":{"Size":-5}},)"
      R"("StoredFragments":[],"Endpoints":["grpc://b"],"ObtainedFragments":7,"HashAlgorithm":"MD5"})";
  const auto e = decode_as<ClientJoinRequested>(topic, payload);
  EXPECT_EQ(e.hash_algorithm, "MD5");
  EXPECT_TRUE(e.known_file_infos.empty());
  EXPECT_TRUE(e.stored_fragments.empty());
  EXPECT_TRUE(e.obtained_fragments.empty());
  auto sha = payload;
  sha.replace(sha.find("\"MD5\""), 5, "\"SHA256\"");
  expect_error(topic, sha, "KnownFileInfos.5d41402abc4b2a76b9719d911017c592",
               "must be 64 hexadecimal characters");
}

TEST(EventClientJoinRequestedStream, ALargeRequestReadsAsTheDomReadsIt) {
  ClientJoinRequested e = join_requested();
  for (int i = 0; i < 20000; ++i) {
    const Hash h = sha256("fragment " + std::to_string(i));
    e.stored_fragments[h] = FragmentMetadata{1 + i};
    if (i % 100 == 0) e.known_file_infos[h] = FileMetadata{100, {h, h, h}};
  }
  const auto text = encode(e);
  EXPECT_EQ(decode_as<ClientJoinRequested>(topics::client_join_requested, text), e);
}

TEST(EventCodec, LeadingEventIdIsFoundOnlyAtTheHead) {
  EXPECT_EQ(leading_event_id(join_requested_golden), uuid(ID));
  EXPECT_EQ(leading_event_id(" {\n\t\"EventId\" : \"" ID "\", broken"), uuid(ID));
  EXPECT_EQ(leading_event_id(R"({"EventId":"FB3F146D-C74E-4C75-A3E7-1E768B2E986F")"), uuid(ID));
  EXPECT_FALSE(leading_event_id(R"({"HashAlgorithm":"SHA256","EventId":")" ID R"("})"));
  EXPECT_FALSE(leading_event_id(R"({"EventId":")" ID));
  EXPECT_FALSE(leading_event_id(R"({"EventId":"fb3f146d"})"));
  EXPECT_FALSE(leading_event_id(R"({"EventId":7})"));
  EXPECT_FALSE(leading_event_id(""));
  EXPECT_FALSE(leading_event_id(std::string(100000, ' ') + R"({"EventId":")" ID R"("})"));
}

constexpr std::string_view join_accepted_golden =
    R"({"EventId":")" ID R"(","ClientIdentifier":"c1","FragmentSize":1024,)"
    R"("AddFileInfos":{")" HB R"(":{"Size":1500,"FragmentSequence":[")" HA R"(",")" HC R"("]}},)"
    R"("AddFragmentInfos":{")" HA R"(":{"Size":1024},")" HC R"(":{"Size":476}},)"
    R"("RemoveFileInfos":[")" HC R"("],"RemoveFragmentInfos":[")" HA R"(",")" HB R"("],)"
    R"("Clients":{"c0":{"Endpoints":["grpc://10.0.0.1:50051"],"StoredFragments":[")" HA R"(",")" HC
    R"("],)"
    R"("Capacity":1073741824},"c2":{"Endpoints":[],"StoredFragments":[]}},)"
    R"("RequestEventId":")" ID2 R"(","Revision":42,"Replicas":3})";

ClientJoinAccepted join_accepted() {
  ClientJoinAccepted e;
  e.event_id = uuid(ID);
  e.client_identifier = "c1";
  e.fragment_size_bytes = 1024;
  e.add_file_infos = {{hash(HB), FileMetadata{1500, {hash(HA), hash(HC)}}}};
  e.add_fragment_infos = {{hash(HA), FragmentMetadata{1024}}, {hash(HC), FragmentMetadata{476}}};
  e.remove_file_infos = {hash(HC)};
  e.remove_fragment_infos = {hash(HA), hash(HB)};
  e.clients = {{"c0", ClientMetadata{{"grpc://10.0.0.1:50051"}, {hash(HA), hash(HC)}, 1073741824}},
               {"c2", ClientMetadata{}}};
  e.request_event_id = uuid(ID2);
  e.revision = 42;
  e.replicas = 3;
  return e;
}

TEST(EventClientJoinAccepted, GoldenRoundTrip) {
  expect_golden(join_accepted(), join_accepted_golden);
}

TEST(EventClientJoinAccepted, WithoutExtensions) {
  auto e = join_accepted();
  e.request_event_id.reset();
  e.revision.reset();
  e.replicas.reset();
  e.clients.clear();
  const auto golden =
      R"({"EventId":")" ID R"(","ClientIdentifier":"c1","FragmentSize":1024,)"
      R"("AddFileInfos":{")" HB R"(":{"Size":1500,"FragmentSequence":[")" HA R"(",")" HC R"("]}},)"
      R"("AddFragmentInfos":{")" HA R"(":{"Size":1024},")" HC R"(":{"Size":476}},)"
      R"("RemoveFileInfos":[")" HC R"("],"RemoveFragmentInfos":[")" HA R"(",")" HB R"("],)"
      R"("Clients":{}})";
  expect_golden(e, golden);
}

TEST(EventClientJoinAccepted, Errors) {
  const auto topic = topics::client_join_accepted;
  const auto& g = join_accepted_golden;
  for (const auto* field :
       {"EventId", "ClientIdentifier", "FragmentSize", "AddFileInfos", "AddFragmentInfos",
        "RemoveFileInfos", "RemoveFragmentInfos", "Clients"}) {
    expect_error(topic, removed(g, std::string("/") + field), field, "missing");
  }
  expect_error(topic, removed(g, "/Clients/c0/Endpoints"), "Clients.c0.Endpoints", "missing");
  expect_error(topic, removed(g, "/Clients/c0/StoredFragments"), "Clients.c0.StoredFragments",
               "missing");
  expect_error(topic, replaced(g, "/ClientIdentifier", json::array()), "ClientIdentifier",
               "must be a string");
  expect_error(topic, replaced(g, "/RemoveFileInfos", json::object()), "RemoveFileInfos",
               "must be an array");
  expect_error(topic, replaced(g, "/RemoveFragmentInfos/1", HA_LOWER), "RemoveFragmentInfos[1]",
               "duplicate entry");
  expect_error(topic, replaced(g, "/Clients/c0", "x"), "Clients.c0", "must be an object");
  expect_error(topic, replaced(g, "/Clients/c0/StoredFragments/0", 1),
               "Clients.c0.StoredFragments[0]", "must be a string");
  expect_error(topic, replaced(g, "/Clients/c0/Capacity", -5), "Clients.c0.Capacity",
               "must not be negative");
  expect_error(topic, replaced(g, "/RequestEventId", "x"), "RequestEventId", "must be a GUID");
  expect_error(topic, replaced(g, "/Revision", -1), "Revision", "must not be negative");
  expect_error(topic, replaced(g, "/FragmentSize", 0), "FragmentSize", "must be positive");
  expect_error(topic, replaced(g, "/Replicas", 0), "Replicas", "must be positive");
  expect_error(topic, replaced(g, "/Replicas", "3"), "Replicas", "must be an integer");
  expect_error(topic, replaced(g, "/Replicas", -3), "Replicas", "must not be negative");
}

TEST(EventClientJoinAccepted, ClientsBounds) {
  const auto topic = topics::client_join_accepted;
  json clients = json::object();
  for (std::size_t i = 0; i < limits::clients_per_event_max; ++i) {
    clients["c" + std::to_string(i)] =
        json{{"Endpoints", json::array()}, {"StoredFragments", json::array()}};
  }
  EXPECT_EQ(
      decode_as<ClientJoinAccepted>(topic, replaced(join_accepted_golden, "/Clients", clients))
          .clients.size(),
      limits::clients_per_event_max);
  clients["c-extra"] = json{{"Endpoints", json::array()}, {"StoredFragments", json::array()}};
  expect_error(topic, replaced(join_accepted_golden, "/Clients", clients), "Clients",
               "exceeds 10000 entries");
}

TEST(EventClientJoinAccepted, ClientIdentifierKeysAreBounded) {
  const auto topic = topics::client_join_accepted;
  const json empty_client{{"Endpoints", json::array()}, {"StoredFragments", json::array()}};
  const std::string longest(limits::client_id_bytes_max, 'k');
  EXPECT_TRUE(
      decode(topic, replaced(join_accepted_golden, "/Clients", json{{longest, empty_client}}))
          .ok());
  expect_error(topic,
               replaced(join_accepted_golden, "/Clients", json{{longest + "k", empty_client}}),
               "Clients." + longest + "k", "exceeds 256 bytes");
  expect_error(topic, replaced(join_accepted_golden, "/Clients", json{{"", empty_client}}),
               "Clients.", "must not be empty");
}

TEST(EventClientJoinAccepted, HostileKeysAreShortenedInTheErrorPath) {
  const std::string key(100000, 'z');
  const auto result = decode(topics::client_join_accepted,
                             replaced(join_accepted_golden, "/AddFragmentInfos", json{{key, 1}}));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().problem, "must be 64 hexadecimal characters");
  EXPECT_LT(result.error().field.size(), 400u);
  EXPECT_TRUE(result.error().field.starts_with("AddFragmentInfos.zzz"));
}

constexpr std::string_view join_denied_golden =
    R"({"EventId":")" ID
    R"(","ClientIdentifier":"c1","ReasonCode":131,"Reason":"Timeout","RequestEventId":")" ID2
    R"("})";

TEST(EventClientJoinDenied, GoldenRoundTrip) {
  expect_golden(ClientJoinDenied{uuid(ID), "c1", 131, "Timeout", uuid(ID2)}, join_denied_golden);
  expect_golden(
      ClientJoinDenied{uuid(ID), "c1", denial::wrong_fragment_size, std::nullopt, std::nullopt},
      R"({"EventId":")" ID R"(","ClientIdentifier":"c1","ReasonCode":1})");
}

TEST(EventClientJoinDenied, Errors) {
  const auto topic = topics::client_join_denied;
  expect_error(topic, removed(join_denied_golden, "/ClientIdentifier"), "ClientIdentifier",
               "missing");
  expect_error(topic, removed(join_denied_golden, "/ReasonCode"), "ReasonCode", "missing");
  expect_error(topic, replaced(join_denied_golden, "/ReasonCode", "Other"), "ReasonCode",
               "must be an integer");
  expect_error(topic, replaced(join_denied_golden, "/Reason", 1), "Reason", "must be a string");
  expect_error(topic, replaced(join_denied_golden, "/ClientIdentifier", ""), "ClientIdentifier",
               "must not be empty");
}

TEST(EventClientJoinDenied, ReasonCodeCombinations) {
  const auto topic = topics::client_join_denied;
  for (const std::uint32_t code : {1u, 2u, 3u, 4u, 7u, 128u, 131u, 135u}) {
    EXPECT_EQ(decode_as<ClientJoinDenied>(topic, replaced(join_denied_golden, "/ReasonCode", code))
                  .reason_code,
              code);
  }
  expect_error(topic, replaced(join_denied_golden, "/ReasonCode", 0), "ReasonCode",
               "must not be zero");
  for (const json& code :
       {json(8), json(256), json(-1), json(136), json(18446744073709551615ULL)}) {
    expect_error(topic, replaced(join_denied_golden, "/ReasonCode", code), "ReasonCode",
                 "must combine only 1, 2, 4 and 128");
  }
  expect_error(topic, replaced(join_denied_golden, "/ReasonCode", 1.0), "ReasonCode",
               "must be an integer");
}

TEST(EventClientJoinDenied, ReasonBounds) {
  const auto topic = topics::client_join_denied;
  const std::string longest(limits::reason_bytes_max, 'r');
  EXPECT_EQ(
      decode_as<ClientJoinDenied>(topic, replaced(join_denied_golden, "/Reason", longest)).reason,
      longest);
  expect_error(topic, replaced(join_denied_golden, "/Reason", longest + "r"), "Reason",
               "exceeds 1024 bytes");
}

constexpr std::string_view join_succeeded_golden =
    R"({"EventId":")" ID R"(","RequestEventId":")" ID2 R"("})";

TEST(EventClientJoinSucceeded, GoldenRoundTrip) {
  expect_golden(ClientJoinSucceeded{uuid(ID), uuid(ID2)}, join_succeeded_golden);
  expect_golden(ClientJoinSucceeded{uuid(ID), std::nullopt}, hello_golden);
}

TEST(EventClientJoinSucceeded, Errors) {
  expect_error(topics::client_join_succeeded, R"({"eventId":")" ID R"("})", "EventId", "missing");
  expect_error(topics::client_join_succeeded, R"({"EventId":[]})", "EventId", "must be a string");
  expect_error(topics::client_join_succeeded, replaced(join_succeeded_golden, "/RequestEventId", 1),
               "RequestEventId", "must be a string");
}

constexpr std::string_view join_failed_golden =
    R"({"EventId":")" ID R"(","Reason":"disk full","RequestEventId":")" ID2 R"("})";

TEST(EventClientJoinFailed, GoldenRoundTrip) {
  expect_golden(ClientJoinFailed{uuid(ID), "disk full", uuid(ID2)}, join_failed_golden);
  expect_golden(ClientJoinFailed{uuid(ID), std::nullopt, std::nullopt}, hello_golden);
}

TEST(EventClientJoinFailed, Errors) {
  expect_error(topics::client_join_failed, removed(join_failed_golden, "/EventId"), "EventId",
               "missing");
  expect_error(topics::client_join_failed,
               replaced(join_failed_golden, "/RequestEventId", "{" ID2 "}"), "RequestEventId",
               "must be a GUID");
  expect_error(topics::client_join_failed, replaced(join_failed_golden, "/Reason", json::object()),
               "Reason", "must be a string");
  const std::string longest(limits::reason_bytes_max, 'r');
  EXPECT_TRUE(
      decode(topics::client_join_failed, replaced(join_failed_golden, "/Reason", longest)).ok());
  expect_error(topics::client_join_failed, replaced(join_failed_golden, "/Reason", longest + "r"),
               "Reason", "exceeds 1024 bytes");
}

constexpr std::string_view registered_golden =
    R"({"EventId":")" ID R"(","ClientIdentifier":"c3",)"
    R"("Info":{"Endpoints":["grpc://10.0.0.3:50051"],"StoredFragments":[")" HA
    R"("],"Capacity":4096},)"
    R"("AddedFiles":{")" HB R"(":{"Size":3,"FragmentSequence":[")" HA R"("]}},)"
    R"("AddedFragments":{")" HA R"(":{"Size":3}},"Revision":7})";

TEST(EventClientRegistered, GoldenRoundTrip) {
  ClientRegistered e;
  e.event_id = uuid(ID);
  e.client_identifier = "c3";
  e.info = ClientMetadata{{"grpc://10.0.0.3:50051"}, {hash(HA)}, 4096};
  e.added_files = {{hash(HB), FileMetadata{3, {hash(HA)}}}};
  e.added_fragments = {{hash(HA), FragmentMetadata{3}}};
  e.revision = 7;
  expect_golden(e, registered_golden);
}

TEST(EventClientRegistered, Errors) {
  const auto topic = topics::client_registered;
  for (const auto* field :
       {"EventId", "ClientIdentifier", "Info", "AddedFiles", "AddedFragments"}) {
    expect_error(topic, removed(registered_golden, std::string("/") + field), field, "missing");
  }
  expect_error(topic, removed(registered_golden, "/Info/Endpoints"), "Info.Endpoints", "missing");
  expect_error(topic, replaced(registered_golden, "/Info", json::array()), "Info",
               "must be an object");
  expect_error(topic, replaced(registered_golden, "/AddedFragments", "x"), "AddedFragments",
               "must be an object");
  expect_error(topic, replaced(registered_golden, "/Info/StoredFragments/1", HA),
               "Info.StoredFragments[1]", "duplicate entry");
  expect_error(topic, replaced(registered_golden, "/Revision", "7"), "Revision",
               "must be an integer");
}

constexpr std::string_view goodbye_golden =
    R"({"EventId":")" ID R"(","ClientIdentifier":"c1","Revision":9})";

TEST(EventClientGoodbye, GoldenRoundTrip) {
  expect_golden(ClientGoodbye{uuid(ID), "c1", 9}, goodbye_golden);
  expect_golden(ClientGoodbye{uuid(ID), std::nullopt, std::nullopt}, hello_golden);
}

TEST(EventClientGoodbye, Errors) {
  expect_error(topics::client_goodbye, removed(goodbye_golden, "/EventId"), "EventId", "missing");
  expect_error(topics::client_goodbye, replaced(goodbye_golden, "/ClientIdentifier", 1),
               "ClientIdentifier", "must be a string");
  expect_error(topics::client_goodbye, replaced(goodbye_golden, "/ClientIdentifier", ""),
               "ClientIdentifier", "must not be empty");
}

constexpr std::string_view file_info_golden =
    R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":2000,"FragmentSequence":[")" HC R"(",")" HA
    R"("],"Revision":3})";

TEST(EventFileInfoPublished, GoldenRoundTrip) {
  expect_golden(FileInfoPublished{uuid(ID), hash(HB), 2000, {hash(HC), hash(HA)}, 3},
                file_info_golden);
}

TEST(EventFileInfoPublished, Errors) {
  const auto topic = topics::file_info_published;
  for (const auto* field : {"EventId", "Hash", "Size", "FragmentSequence"}) {
    expect_error(topic, removed(file_info_golden, std::string("/") + field), field, "missing");
  }
  expect_error(topic, replaced(file_info_golden, "/Size", "2000"), "Size", "must be an integer");
  expect_error(topic, replaced(file_info_golden, "/Hash", HB "0"), "Hash",
               "must be 64 hexadecimal characters");
  expect_error(topic, replaced(file_info_golden, "/FragmentSequence/1", nullptr),
               "FragmentSequence[1]", "must be a string");
  EXPECT_TRUE(decode(topic, replaced(file_info_golden, "/Size", limits::file_size_bytes_max)).ok());
  expect_error(topic, replaced(file_info_golden, "/Size", limits::file_size_bytes_max + 1), "Size",
               "exceeds 70368744177664");
}

constexpr std::string_view started_golden =
    R"({"EventId":")" ID R"(","Hash":")" HA R"(","Size":1024})";

TEST(EventFragmentDistributionStarted, GoldenRoundTrip) {
  expect_golden(FragmentDistributionStarted{uuid(ID), hash(HA), 1024}, started_golden);
}

TEST(EventFragmentDistributionStarted, Errors) {
  const auto topic = topics::fragment_distribution_started;
  expect_error(topic, removed(started_golden, "/Size"), "Size", "missing");
  expect_error(topic, removed(started_golden, "/Hash"), "Hash", "missing");
  expect_error(topic, replaced(started_golden, "/Size", true), "Size", "must be an integer");
  expect_error(topic, replaced(started_golden, "/Size", 0), "Size", "must be positive");
  expect_error(topic, replaced(started_golden, "/Size", limits::fragment_size_bytes_max + 1),
               "Size", "exceeds 67108864");
}

constexpr std::string_view hash_only_golden = R"({"EventId":")" ID R"(","Hash":")" HB R"("})";

TEST(EventFragmentDistributionRequested, GoldenRoundTrip) {
  expect_golden(FragmentDistributionRequested{uuid(ID), hash(HB)}, hash_only_golden);
}

TEST(EventFragmentDistributionRequested, Errors) {
  const auto topic = topics::fragment_distribution_requested;
  expect_error(topic, removed(hash_only_golden, "/Hash"), "Hash", "missing");
  expect_error(topic, replaced(hash_only_golden, "/Hash", 12), "Hash", "must be a string");
}

constexpr std::string_view delivered_golden =
    R"({"EventId":")" ID R"(","Hash":")" HB
    R"(","Receivers":["c1","c2"],"Data":"SGVsbG8gV29ybGQh"})";

TEST(EventFragmentDistributionDelivered, GoldenRoundTrip) {
  expect_golden(
      FragmentDistributionDelivered{
          uuid(ID), hash(HB), bytes("Hello World!"), {"c1", "c2"}, std::nullopt},
      delivered_golden);
}

TEST(EventFragmentDistributionDelivered, RevisionExtensionComesLast) {
  expect_golden(
      FragmentDistributionDelivered{uuid(ID), hash(HB), bytes("Hello World!"), {"c1"}, 42},
      R"({"EventId":")" ID R"(","Hash":")" HB
      R"(","Receivers":["c1"],"Data":"SGVsbG8gV29ybGQh","Revision":42})");
}

TEST(EventFragmentDistributionDelivered, Errors) {
  const auto topic = topics::fragment_distribution_delivered;
  for (const auto* field : {"EventId", "Hash", "Data", "Receivers"}) {
    expect_error(topic, removed(delivered_golden, std::string("/") + field), field, "missing");
  }
  expect_error(topic, replaced(delivered_golden, "/Data", json::array({1, 2})), "Data",
               "must be a string");
  expect_error(topic, replaced(delivered_golden, "/Data", "SGVsbG8gV29ybGQ"), "Data",
               "must be Base64");
  expect_error(topic, replaced(delivered_golden, "/Data", "SGVs bG8="), "Data", "must be Base64");
  expect_error(topic, replaced(delivered_golden, "/Data", ""), "Data", "must not be empty");
  expect_error(topic, replaced(delivered_golden, "/Receivers", "c1"), "Receivers",
               "must be an array");
  expect_error(topic, replaced(delivered_golden, "/Receivers/1", "c1"), "Receivers[1]",
               "duplicate entry");
  expect_error(topic, replaced(delivered_golden, "/Receivers/0", ""), "Receivers[0]",
               "must not be empty");
}

TEST(EventFragmentDistributionDelivered, ReceiverBounds) {
  const auto topic = topics::fragment_distribution_delivered;
  const auto many = limits::receivers_per_event_max;
  const auto at_limit = replaced(delivered_golden, "/Receivers", strings(many, 8));
  EXPECT_EQ(decode_as<FragmentDistributionDelivered>(topic, at_limit).receivers.size(), many);
  expect_error(topic, replaced(delivered_golden, "/Receivers", strings(many + 1, 8)), "Receivers",
               "exceeds 1024 entries");
  const auto longest = limits::client_id_bytes_max;
  EXPECT_TRUE(decode(topic, replaced(delivered_golden, "/Receivers", strings(1, longest))).ok());
  expect_error(topic, replaced(delivered_golden, "/Receivers", strings(1, longest + 1)),
               "Receivers[0]", "exceeds 256 bytes");
}

TEST(EventFragmentDistributionDelivered, OversizedDataIsRejectedBeforeDecoding) {
  const auto data_max = static_cast<std::size_t>(limits::fragment_size_bytes_max);
  std::string payload = R"({"EventId":")" ID R"(","Hash":")" HB R"(","Data":")";
  payload.append(base64_encoded_size(data_max) + 4, 'A');
  payload += R"(","Receivers":["c1"]})";
  expect_error(topics::fragment_distribution_delivered, payload, "Data", "exceeds 67108864 bytes");
}

TEST(EventFragmentDistributionDelivered, DataAtTheLimitIsAccepted) {
  FragmentDistributionDelivered e{
      uuid(ID),
      hash(HB),
      Bytes(static_cast<std::size_t>(limits::fragment_size_bytes_max), 0x5A),
      {"c1"},
      std::nullopt};
  const auto text = encode(e);
  EXPECT_EQ(decode_as<FragmentDistributionDelivered>(topics::fragment_distribution_delivered, text),
            e);
}

TEST(EventFragmentDistributionDelivered, EncodeIntoWritesExactlyWhatEncodeWrites) {
  const std::set<ClientId> receivers{"c1", "needs \"quotes\"", "tab\there", "caf\xc3\xa9", "\x01"};
  for (const std::size_t size : {1u, 2u, 3u, 4u, 1000u, 65536u}) {
    Bytes data(size);
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 3);
    const FragmentDistributionDelivered e{uuid(ID), hash(HC), data, receivers, size};
    const auto expected = encode(e);
    ASSERT_EQ(delivered_payload_size(e.event_id, e.hash, data.size(), receivers, size),
              expected.size());
    std::string out(expected.size(), '?');
    encode_delivered_into(e.event_id, e.hash, data, receivers, out.data(), out.size(), size);
    EXPECT_EQ(out, expected);
    // The same text nlohmann writes for the same document, and it decodes back.
    const json reference{{"EventId", ID},
                         {"Hash", HC},
                         {"Data", base64_encode(data)},
                         {"Receivers", receivers},
                         {"Revision", size}};
    EXPECT_EQ(json::parse(expected), reference);
    EXPECT_EQ(
        decode_as<FragmentDistributionDelivered>(topics::fragment_distribution_delivered, expected),
        e);
  }
}

TEST(EventFragmentDistributionDelivered, EncodeIntoRefusesAShortBuffer) {
  const Bytes data = bytes("Hello World!");
  const std::set<ClientId> receivers{"c1"};
  const auto size = delivered_payload_size(uuid(ID), hash(HB), data.size(), receivers);
  std::string out(size - 1, '?');
  EXPECT_THROW(encode_delivered_into(uuid(ID), hash(HB), data, receivers, out.data(), out.size()),
               std::length_error);
  EXPECT_EQ(out, std::string(size - 1, '?'));
}

// The CBOR form: written by hand straight into the broker's buffer, read through nlohmann.
std::string delivered_cbor(const FragmentDistributionDelivered& e) {
  std::string out(
      delivered_cbor_payload_size(e.event_id, e.hash, e.data.size(), e.receivers, e.revision), '?');
  encode_delivered_cbor_into(e.event_id, e.hash, e.data, e.receivers, out.data(), out.size(),
                             e.revision);
  return out;
}

TEST(EventFragmentDistributionDeliveredCbor, RoundTripsAndCostsTheFragmentPlusAFrame) {
  const std::set<ClientId> receivers{"c1", "needs \"quotes\"", "caf\xc3\xa9"};
  for (const std::size_t size : {1u, 23u, 24u, 255u, 256u, 65535u, 65536u, 1u << 20}) {
    Bytes data(size);
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 3);
    for (const auto revision : {std::optional<std::uint64_t>{}, std::optional<std::uint64_t>{23},
                                std::optional<std::uint64_t>{std::uint64_t{1} << 40}}) {
      const FragmentDistributionDelivered e{uuid(ID), hash(HC), data, receivers, revision};
      const auto payload = delivered_cbor(e);
      EXPECT_LT(payload.size(), size + 200) << "no Base64: the fragment's own size plus its fields";
      EXPECT_EQ(decode_as<FragmentDistributionDelivered>(topics::fragment_distribution_delivered,
                                                         payload),
                e);
      // What nlohmann (any CBOR encoder) makes of the same document is the same payload.
      json reference{
          {"EventId", ID}, {"Hash", HC}, {"Receivers", receivers}, {"Data", json::binary(data)}};
      if (revision) reference["Revision"] = *revision;
      EXPECT_EQ(json::from_cbor(payload), reference);
      const auto theirs = json::to_cbor(reference);
      EXPECT_EQ(decode_as<FragmentDistributionDelivered>(topics::fragment_distribution_delivered,
                                                         std::string(theirs.begin(), theirs.end())),
                e);
    }
  }
}

TEST(EventFragmentDistributionDeliveredCbor, RefusesAShortBuffer) {
  const Bytes data = bytes("Hello World!");
  const auto size = delivered_cbor_payload_size(uuid(ID), hash(HB), data.size(), {"c1"});
  std::string out(size - 1, '?');
  EXPECT_THROW(encode_delivered_cbor_into(uuid(ID), hash(HB), data, {"c1"}, out.data(), out.size()),
               std::length_error);
}

TEST(EventFragmentDistributionDeliveredCbor, BadPayloadsAreRejectedWithoutCrashing) {
  const auto topic = topics::fragment_distribution_delivered;
  const FragmentDistributionDelivered e{uuid(ID), hash(HB), bytes("Hello World!"), {"c1"}, 7};
  const auto good = delivered_cbor(e);
  // Every truncation, and trailing bytes.
  for (std::size_t n = 1; n < good.size(); ++n)
    expect_error(topic, good.substr(0, n), "", "invalid CBOR");
  expect_error(topic, good + '\0', "", "invalid CBOR");
  // CBOR only for Delivered: every other event stays JSON.
  expect_error(topics::fragment_distribution_obtained, good, "",
               "CBOR is accepted for FragmentDistributionDelivered only");
  // Maps nested 100,000 deep would exhaust the stack of a recursive reader.
  std::string deep;
  for (int i = 0; i < 100'000; ++i) deep += "\xA1\x61k";
  deep += '\x00';
  expect_error(topic, deep, "", "nesting exceeds 8");
  // Tags, floats and indefinite lengths are not part of the format; text is UTF-8; keys are unique.
  expect_error(topic, std::string("\xA1\x61k\xC1\x00", 5), "", "invalid CBOR");
  expect_error(topic, std::string("\xA1\x61k\xF9\x3C\x00", 6), "", "invalid CBOR");
  expect_error(topic, std::string("\xA1\x61k\x5F\x41x\xFF", 7), "", "invalid CBOR");
  expect_error(topic, std::string("\xBF\x61k\x00\xFF", 5), "", "invalid CBOR");
  expect_error(topic, std::string("\xA1\x61k\x62\xC0\x80", 6), "",
               "invalid CBOR: a text string is not UTF-8");
  expect_error(topic, std::string("\xA1\x61k\x63\xED\xA0\x80", 7), "",
               "invalid CBOR: a text string is not UTF-8");
  expect_error(topic, std::string("\xA2\x61k\x00\x61k\x01", 7), "",
               "invalid CBOR: a map repeats a key");
  // A count larger than what follows is refused before anything is reserved for it.
  expect_error(topic, std::string("\xA1\x61k\x9B\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 12), "",
               "invalid CBOR");
  expect_error(topic, std::string("\xBB\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 9), "", "invalid CBOR");
  expect_error(topic, std::string("\xA1\x61k\x5B\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 12), "",
               "invalid CBOR");
  // No more receivers than an event may name, no more map entries than a Delivered needs, no
  // payload larger than the largest fragment and its fields: a document costs more memory than
  // its CBOR, so these are refused before they are built.
  std::string many("\xA1\x61k\x99\x04\x01", 6);  // an array of 1,025 items
  many.append(1025, '\x80');
  expect_error(topic, many, "", "invalid CBOR");
  std::string wide("\xB8\x21", 2);  // a map of 33 entries
  for (int i = 0; i < 33; ++i) wide += std::string("\x62k") + static_cast<char>('A' + i) + '\x00';
  expect_error(topic, wide, "", "invalid CBOR");
  std::string huge = good;
  huge.resize(
      static_cast<std::size_t>(limits::fragment_size_bytes_max) + (std::size_t{1} << 20) + 1, '\0');
  expect_error(topic, huge, "", "exceeds 68157440 bytes");
  // The same field checks as JSON.
  auto document = json::from_cbor(good);
  document["Data"] = json::binary(Bytes{});
  const auto empty = json::to_cbor(document);
  expect_error(topic, std::string(empty.begin(), empty.end()), "Data", "must not be empty");
  document["Data"] = 12;
  const auto number = json::to_cbor(document);
  expect_error(topic, std::string(number.begin(), number.end()), "Data", "must be a string");
  document.erase("Hash");
  const auto no_hash = json::to_cbor(document);
  expect_error(topic, std::string(no_hash.begin(), no_hash.end()), "Hash", "missing");
}

TEST(EventClientJoinRequested, DeliveryEncodingsRoundTripAndAreBounded) {
  auto e = join_requested();
  e.delivery_encodings = {"CBOR", "something-newer"};
  const auto text = encode(e);
  EXPECT_NE(text.find(R"("DeliveryEncodings":["CBOR","something-newer"])"), std::string::npos)
      << text;
  EXPECT_EQ(decode_as<ClientJoinRequested>(topics::client_join_requested, text), e);
  const auto topic = topics::client_join_requested;
  expect_error(topic, replaced(text, "/DeliveryEncodings", "CBOR"), "DeliveryEncodings",
               "must be an array");
  expect_error(topic, replaced(text, "/DeliveryEncodings", strings(9, 4)), "DeliveryEncodings",
               "exceeds 8 entries");
  expect_error(topic, replaced(text, "/DeliveryEncodings/0", std::string(33, 'x')),
               "DeliveryEncodings[0]", "exceeds 32 bytes");
  // Absent (the C# reference): no extension asked for.
  EXPECT_TRUE(
      decode_as<ClientJoinRequested>(topic, join_requested_golden).delivery_encodings.empty());
}

TEST(EventClientJoinRequested, ExtensionsRoundTripAndAreBounded) {
  auto e = join_requested();
  e.extensions = {"JoinRetry", "RemoveOrphans", "Revision", "SomethingNewer"};
  const auto text = encode(e);
  EXPECT_NE(text.find(R"("Extensions":["JoinRetry","RemoveOrphans","Revision","SomethingNewer"])"),
            std::string::npos)
      << text;
  EXPECT_EQ(decode_as<ClientJoinRequested>(topics::client_join_requested, text), e);
  const auto topic = topics::client_join_requested;
  expect_error(topic, replaced(text, "/Extensions", "Revision"), "Extensions", "must be an array");
  expect_error(topic, replaced(text, "/Extensions", strings(17, 4)), "Extensions",
               "exceeds 16 entries");
  expect_error(topic, replaced(text, "/Extensions/0", std::string(33, 'x')), "Extensions[0]",
               "exceeds 32 bytes");
  // Absent (the C# reference): served as the specification's torrent server.
  EXPECT_TRUE(decode_as<ClientJoinRequested>(topic, join_requested_golden).extensions.empty());
}

TEST(EventFragmentDistributionObtained, GoldenRoundTrip) {
  expect_golden(FragmentDistributionObtained{uuid(ID), hash(HB)}, hash_only_golden);
}

TEST(EventFragmentDistributionObtained, Errors) {
  const auto topic = topics::fragment_distribution_obtained;
  expect_error(topic, removed(hash_only_golden, "/Hash"), "Hash", "missing");
  expect_error(topic, removed(hash_only_golden, "/EventId"), "EventId", "missing");
  expect_error(topic, replaced(hash_only_golden, "/Hash", json::object()), "Hash",
               "must be a string");
}

constexpr std::string_view failed_golden =
    R"({"EventId":")" ID R"(","Hash":")" HB R"(","Reason":"hash mismatch"})";

TEST(EventFragmentDistributionFailed, GoldenRoundTrip) {
  expect_golden(FragmentDistributionFailed{uuid(ID), hash(HB), "hash mismatch"}, failed_golden);
  expect_golden(FragmentDistributionFailed{uuid(ID), hash(HB), std::nullopt}, hash_only_golden);
}

TEST(EventFragmentDistributionFailed, Errors) {
  const auto topic = topics::fragment_distribution_failed;
  expect_error(topic, removed(failed_golden, "/Hash"), "Hash", "missing");
  expect_error(topic, replaced(failed_golden, "/Reason", false), "Reason", "must be a string");
  expect_error(topic,
               replaced(failed_golden, "/Reason", std::string(limits::reason_bytes_max + 1, 'r')),
               "Reason", "exceeds 1024 bytes");
}

constexpr std::string_view ended_golden =
    R"({"EventId":")" ID R"(","Hash":")" HB
    R"(","Size":12,"Receivers":["c1","c9"],"Revision":18446744073709551615})";

TEST(EventFragmentDistributionEnded, GoldenRoundTrip) {
  expect_golden(
      FragmentDistributionEnded{uuid(ID), hash(HB), 12, {"c1", "c9"}, 18446744073709551615ULL},
      ended_golden);
  expect_golden(FragmentDistributionEnded{uuid(ID), hash(HB), 12, {}, std::nullopt},
                R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":12,"Receivers":[]})");
}

TEST(EventFragmentDistributionEnded, Errors) {
  const auto topic = topics::fragment_distribution_ended;
  for (const auto* field : {"EventId", "Hash", "Size", "Receivers"}) {
    expect_error(topic, removed(ended_golden, std::string("/") + field), field, "missing");
  }
  expect_error(topic, replaced(ended_golden, "/Receivers/1", 9), "Receivers[1]",
               "must be a string");
  expect_error(topic, replaced(ended_golden, "/Size", 12.5), "Size", "must be an integer");
}

constexpr std::string_view revision_golden = R"({"EventId":")" ID R"(","Revision":1234})";

TEST(EventTrackerRevision, GoldenRoundTrip) {
  expect_golden(TrackerRevision{uuid(ID), 1234}, revision_golden);
}

TEST(EventTrackerRevision, Errors) {
  const auto topic = topics::tracker_revision;
  expect_error(topic, removed(revision_golden, "/Revision"), "Revision", "missing");
  expect_error(topic, replaced(revision_golden, "/Revision", "1234"), "Revision",
               "must be an integer");
  expect_error(topic, replaced(revision_golden, "/Revision", -1), "Revision",
               "must not be negative");
  expect_error(topic, R"({"EventId":")" ID R"(","Revision":18446744073709551616})", "Revision",
               "must be an integer");
  EXPECT_EQ(decode_as<TrackerRevision>(topic, replaced(revision_golden, "/Revision", 0)).revision,
            0u);
}

// ---------------------------------------------------------------------------------------------
// Rules common to every event

TEST(EventCodec, VariantAndEventTypeCountsAgree) {
  // A new alternative needs a topic, a name and its own golden test above.
  EXPECT_EQ(std::variant_size_v<Event>, event_type_count);
  EXPECT_EQ(event_name(EventType::tracker_revision), "TrackerRevision");
}

TEST(EventCodec, UnknownFieldsAreIgnored) {
  const auto payload = R"({"Extra":{"Nested":[1,2,{"x":null}]},"EventId":")" ID R"(","Hash":")" HB
                       R"(","hash":5,"Size":12,"Receivers":["c1"],"Future":true})";
  const auto e = decode_as<FragmentDistributionEnded>(topics::fragment_distribution_ended, payload);
  EXPECT_EQ(e, (FragmentDistributionEnded{uuid(ID), hash(HB), 12, {"c1"}, std::nullopt}));
}

TEST(EventCodec, NullOptionalsAreAbsent) {
  const auto payload =
      R"({"EventId":")" ID R"(","HashAlgorithm":"SHA256","FragmentSize":null,"KnownFileInfos":{},)"
      R"("StoredFragments":{},"Endpoints":[],"Capacity":null})";
  const auto e = decode_as<ClientJoinRequested>(topics::client_join_requested, payload);
  EXPECT_FALSE(e.fragment_size_bytes);
  EXPECT_FALSE(e.capacity_bytes);
  const auto denied = decode_as<ClientJoinDenied>(
      topics::client_join_denied,
      R"({"EventId":")" ID
      R"(","ClientIdentifier":"c1","ReasonCode":4,"Reason":null,"RequestEventId":null})");
  EXPECT_FALSE(denied.reason);
  EXPECT_FALSE(denied.request_event_id);
  const auto goodbye = decode_as<ClientGoodbye>(
      topics::client_goodbye, R"({"EventId":")" ID R"(","ClientIdentifier":null,"Revision":null})");
  EXPECT_EQ(goodbye, (ClientGoodbye{uuid(ID), std::nullopt, std::nullopt}));
}

TEST(EventCodec, NullRequiredFieldIsMissing) {
  expect_error(topics::fragment_distribution_requested, R"({"EventId":")" ID R"(","Hash":null})",
               "Hash", "missing");
}

TEST(EventCodec, LowercaseHashesAndUppercaseGuidsAreAccepted) {
  std::string id_upper = ID;
  std::transform(id_upper.begin(), id_upper.end(), id_upper.begin(), [](char c) {
    return static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  });
  const auto payload = R"({"EventId":")" + id_upper +
                       R"(","Hash":")" HB_LOWER R"(","Size":2000,)"
                       R"("FragmentSequence":[")" HA_LOWER R"("]})";
  const auto e = decode_as<FileInfoPublished>(topics::file_info_published, payload);
  EXPECT_EQ(e, (FileInfoPublished{uuid(ID), hash(HB), 2000, {hash(HA)}, std::nullopt}));
  const auto dictionary = replaced(join_requested_golden, "/KnownFileInfos",
                                   json{{HB_LOWER, {{"Size", 1}, {"FragmentSequence", {HA}}}}});
  EXPECT_EQ(decode_as<ClientJoinRequested>(topics::client_join_requested, dictionary),
            join_requested());
}

TEST(EventCodec, NamesAreCaseSensitive) {
  expect_error(topics::fragment_distribution_requested,
               R"({"eventid":")" ID R"(","hash":")" HB R"("})", "EventId", "missing");
}

TEST(EventCodec, UnknownTopicIsRejected) {
  expect_error("tracker/hellos", hello_golden, "", "unknown topic");
  expect_error("", hello_golden, "", "unknown topic");
  expect_error("Tracker/Hello", hello_golden, "", "unknown topic");
}

TEST(EventCodec, PayloadOfAnotherTopicFailsOnItsFirstMissingField) {
  expect_error(topics::file_info_published, hello_golden, "Hash", "missing");
}

TEST(EventCodec, HostilePayloads) {
  const auto topic = topics::fragment_distribution_started;
  expect_error(topic, "", "", "invalid JSON");
  expect_error(topic, " ", "", "invalid JSON");
  expect_error(topic, "{", "", "invalid JSON");
  expect_error(topic, R"({"EventId":")" ID R"("}})", "", "invalid JSON");
  expect_error(topic, "[]", "", "must be an object");
  expect_error(topic, R"([{"EventId":")" ID R"("}])", "", "must be an object");
  expect_error(topic, "\"text\"", "", "must be an object");
  expect_error(topic, "null", "", "must be an object");
  expect_error(topic, "42", "", "must be an object");
  expect_error(topic, std::string(started_golden) + std::string("\0", 1), "", "invalid JSON");
  expect_error(topic, std::string("{}\0garbage", 10), "", "invalid JSON");
  const auto nul_in_string = std::string(R"({"EventId":")" ID) + '\0' + R"("})";
  expect_error(topic, nul_in_string, "", "invalid JSON");
  expect_error(topic, R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":1e400})", "",
               "invalid JSON");
  expect_error(topic, R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":18446744073709551616})",
               "Size", "must be an integer");
  expect_error(topic, R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":18446744073709551615})",
               "Size", "exceeds 67108864");
  expect_error(topic, R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":-9223372036854775809})",
               "Size", "must be an integer");
  expect_error(topic, R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":1.5})", "Size",
               "must be an integer");
  expect_error(topic, R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":1.0})", "Size",
               "must be an integer");
  expect_error(topic, R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":true})", "Size",
               "must be an integer");
  expect_error(topic, R"({"EventId":")" ID R"(","Hash":")" HB R"(","Size":-1})", "Size",
               "must be positive");
  expect_error(topic, "{\"EventId\":\"" ID "\",\"Hash\":\"\xff\xfe\",\"Size\":1}", "",
               "invalid JSON");
  expect_error(topic, "{\"EventId\":\"" ID "\",\"Hash\":\"\xc3\x28\",\"Size\":1}", "",
               "invalid JSON");
  expect_error(topic, "\xef\xbb\xbf{}", "EventId", "missing");
}

TEST(EventCodec, DeepNestingIsRejectedCheaply) {
  expect_error(topics::tracker_hello, std::string(1000000, '['), "", "nesting exceeds 64");
  expect_error(topics::tracker_hello, std::string(1000000, '{'), "", "nesting exceeds 64");
  // Brackets inside strings do not count.
  const auto in_string = R"({"EventId":")" ID R"(","X":")" + std::string(1000, '[') + R"(\"["})";
  EXPECT_TRUE(decode(topics::tracker_hello, in_string).ok());
  const auto deepest =
      R"({"EventId":")" ID R"(","X":)" + std::string(63, '[') + std::string(63, ']') + "}";
  EXPECT_TRUE(decode(topics::tracker_hello, deepest).ok());
  const auto too_deep =
      R"({"EventId":")" ID R"(","X":)" + std::string(64, '[') + std::string(64, ']') + "}";
  expect_error(topics::tracker_hello, too_deep, "", "nesting exceeds 64");
}

TEST(EventCodec, OversizedPayloadIsRejectedBeforeParsing) {
  const std::string payload(limits::event_payload_bytes_max + 1, ' ');
  expect_error(topics::tracker_hello, payload, "", "exceeds 268435456 bytes");
}

TEST(EventCodec, StringsNeedingEscapesRoundTrip) {
  const std::string id = "c\"1\\ \x01\x1f\n\t caf\xc3\xa9 \xe2\x82\xac /";
  const ClientGoodbye e{uuid(ID), id, std::nullopt};
  const auto text = encode(e);
  EXPECT_EQ(text, nlohmann::ordered_json({{"EventId", ID}, {"ClientIdentifier", id}}).dump());
  EXPECT_EQ(decode_as<ClientGoodbye>(topics::client_goodbye, text), e);
  ClientJoinAccepted accepted = join_accepted();
  accepted.clients = {{id, ClientMetadata{{"grpc://\"x\""}, {}, std::nullopt}}};
  EXPECT_EQ(decode_as<ClientJoinAccepted>(topics::client_join_accepted, encode(accepted)),
            accepted);
}

TEST(EventCodec, InvalidUtf8IsReplacedSoThePayloadStaysValid) {
  const ClientJoinFailed e{uuid(ID), std::string("bad \xff byte"), std::nullopt};
  const auto text = encode(e);
  EXPECT_EQ(text, R"({"EventId":")" ID "\",\"Reason\":\"bad \xef\xbf\xbd byte\"}");
  EXPECT_TRUE(decode(topics::client_join_failed, text).ok());
}

TEST(EventCodec, ErrorToString) {
  EXPECT_EQ((Error{"KnownFileInfos." HB ".Size", "must be positive"}).to_string(),
            "KnownFileInfos." HB ".Size: must be positive");
  EXPECT_EQ((Error{"", "invalid JSON"}).to_string(), "invalid JSON");
}

TEST(EventCodec, MutatedGoldensNeverCrashAndReencodeCanonically) {
  const std::vector<std::pair<std::string_view, std::string_view>> goldens{
      {topics::client_join_requested, join_requested_golden},
      {topics::client_join_accepted, join_accepted_golden},
      {topics::client_join_denied, join_denied_golden},
      {topics::client_registered, registered_golden},
      {topics::client_goodbye, goodbye_golden},
      {topics::file_info_published, file_info_golden},
      {topics::fragment_distribution_delivered, delivered_golden},
      {topics::fragment_distribution_ended, ended_golden},
      {topics::tracker_revision, revision_golden},
  };
  constexpr std::uint32_t seed = 20240601;
  std::mt19937 random(seed);
  // The sv suffix keeps the NUL and what follows it.
  constexpr auto alphabet = "{}[]\",:0123456789-.eEtrufalsn \\x\x00\xff"sv;
  std::size_t decoded = 0;
  for (const auto& [topic, golden] : goldens) {
    for (int round = 0; round < 500; ++round) {
      std::string payload(golden);
      const int edits = 1 + static_cast<int>(random() % 4);
      for (int edit = 0; edit < edits && !payload.empty(); ++edit) {
        const auto at = random() % payload.size();
        const char c = alphabet[random() % alphabet.size()];
        switch (random() % 4) {
          case 0: payload[at] = c; break;
          case 1: payload.insert(at, 1, c); break;
          case 2: payload.erase(at, 1); break;
          default: payload.resize(at); break;
        }
      }
      const auto result = decode(topic, payload);
      if (topic == topics::client_join_requested) {
        const auto dom = decode_join_requested_with_dom(payload);
        ASSERT_EQ(result.ok(), dom.ok()) << "seed " << seed << ": " << payload;
        if (result.ok()) {
          EXPECT_EQ(result.value(), dom.value()) << "seed " << seed << ": " << payload;
        }
      }
      if (!result.ok()) continue;
      ++decoded;
      const auto again = decode(topic, encode(result.value()));
      ASSERT_TRUE(again.ok()) << "seed " << seed << ": " << payload << " -> "
                              << again.error().to_string();
      EXPECT_EQ(again.value(), result.value()) << "seed " << seed << ": " << payload;
    }
  }
  // Some mutations must survive (a changed digit, say), or the re-encoding check above tests
  // nothing.
  EXPECT_GT(decoded, 100u);
}

// ---------------------------------------------------------------------------------------------
// Topics and issuers

TEST(EventTopics, EveryTypeHasItsOwnTopicAndName) {
  std::set<std::string_view> seen_topics;
  std::set<std::string_view> seen_names;
  for (std::size_t i = 0; i < event_type_count; ++i) {
    const auto type = static_cast<EventType>(i);
    const auto topic = topic_of(type);
    EXPECT_FALSE(topic.empty());
    EXPECT_EQ(event_type_for_topic(topic), type);
    EXPECT_TRUE(seen_topics.insert(topic).second) << topic;
    EXPECT_TRUE(seen_names.insert(event_name(type)).second) << event_name(type);
  }
  EXPECT_EQ(topic_of(EventType::file_info_published), "files/info");
  EXPECT_EQ(topic_of(EventType::fragment_distribution_delivered),
            "fragments/distribution/delivered");
  EXPECT_EQ(event_name(EventType::client_join_requested), "ClientJoinRequested");
  EXPECT_EQ(event_name(EventType::fragment_distribution_ended), "FragmentDistributionEnded");
  EXPECT_EQ(topic_of(Event{TrackerRevision{}}), "tracker/revision");
  EXPECT_FALSE(event_type_for_topic("files/info/"));
}

TEST(EventTopics, IssuersFollowTheSpecTable) {
  for (const auto type :
       {EventType::tracker_hello, EventType::tracker_goodbye, EventType::client_join_accepted,
        EventType::client_join_denied, EventType::client_registered, EventType::file_info_published,
        EventType::fragment_distribution_started, EventType::fragment_distribution_delivered,
        EventType::fragment_distribution_ended, EventType::tracker_revision}) {
    EXPECT_TRUE(is_tracker_issued(type)) << event_name(type);
  }
  for (const auto type :
       {EventType::client_join_requested, EventType::client_join_succeeded,
        EventType::client_join_failed, EventType::client_goodbye,
        EventType::fragment_distribution_requested, EventType::fragment_distribution_obtained,
        EventType::fragment_distribution_failed}) {
    EXPECT_FALSE(is_tracker_issued(type)) << event_name(type);
  }
}

TEST(EventTopics, SubscriptionsFollowTheStartupProcedures) {
  const auto torrent = torrent_subscriptions();
  EXPECT_EQ(
      std::vector<std::string_view>(torrent.begin(), torrent.end()),
      (std::vector<std::string_view>{
          "tracker/hello", "tracker/goodbye", "clients/join/accepted", "clients/join/denied",
          "clients/registered", "clients/goodbye", "files/info", "fragments/distribution/started",
          "fragments/distribution/delivered", "fragments/distribution/ended", "tracker/revision"}));
  const auto tracker = tracker_subscriptions();
  EXPECT_EQ(std::vector<std::string_view>(tracker.begin(), tracker.end()),
            (std::vector<std::string_view>{
                "clients/join/requested", "clients/join/succeeded", "clients/join/failed",
                "clients/goodbye", "fragments/distribution/requested",
                "fragments/distribution/obtained", "fragments/distribution/failed"}));
  // The tracker consumes only what torrent servers issue; torrent servers consume what the tracker
  // issues, plus ClientGoodbye from their peers.
  for (const auto topic : tracker) {
    const auto type = event_type_for_topic(topic);
    ASSERT_TRUE(type);
    EXPECT_FALSE(is_tracker_issued(*type)) << topic;
  }
  for (const auto topic : torrent) {
    const auto type = event_type_for_topic(topic);
    ASSERT_TRUE(type);
    EXPECT_TRUE(is_tracker_issued(*type) || *type == EventType::client_goodbye) << topic;
  }
}

}  // namespace
}  // namespace mqds
