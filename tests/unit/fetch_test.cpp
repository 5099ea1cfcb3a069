// Unit tests of the fetch protocol's codecs (the request, the response's User Properties) and of
// the topic rules the edge, the command line and the plugin share.
#include "mqds/fetch.hpp"

#include <gtest/gtest.h>

#include <string>

#include "mqds/limits.hpp"

namespace mqds::fetch {
namespace {

const Hash some_hash = sha256(std::string_view("fragment"));

std::string error_of(std::string_view payload) {
  auto result = decode_request(payload);
  return result ? "decoded" : result.error().to_string();
}

TEST(FetchRequest, RoundTrips) {
  const Request request{some_hash, 4096, 1000};
  const auto decoded = decode_request(encode_request(request));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, request);
}

TEST(FetchRequest, OffsetAndLengthDefaultToTheWholeFirstChunk) {
  const auto decoded = decode_request("{\"Hash\":\"" + some_hash.to_hex() + "\"}");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->offset_bytes, 0);
  EXPECT_EQ(decoded->length_bytes, chunk_bytes_max);
}

TEST(FetchRequest, LengthIsClampedToOneChunk) {
  const auto decoded =
      decode_request("{\"Hash\":\"" + some_hash.to_hex() + "\",\"Length\":5000000}");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->length_bytes, chunk_bytes_max);
}

TEST(FetchRequest, BadRequestsNameTheField) {
  EXPECT_EQ(error_of("not json"), "invalid JSON");
  EXPECT_EQ(error_of("[]"), "must be an object");
  EXPECT_EQ(error_of("{}"), "Hash: missing");
  EXPECT_EQ(error_of("{\"Hash\":7}"), "Hash: must be a string");
  EXPECT_EQ(error_of("{\"Hash\":\"ABC\"}"), "Hash: must be 64 hexadecimal characters");
  const std::string hash = "\"Hash\":\"" + some_hash.to_hex() + "\"";
  EXPECT_EQ(error_of("{" + hash + ",\"Offset\":-1}"), "Offset: must not be negative");
  EXPECT_EQ(error_of("{" + hash + ",\"Offset\":\"0\"}"), "Offset: must be an integer");
  EXPECT_EQ(error_of("{" + hash + ",\"Offset\":1e3}"), "Offset: must be an integer");
  EXPECT_EQ(error_of("{" + hash + ",\"Offset\":99999999999999999999}"),
            "Offset: must be an integer");
  EXPECT_EQ(error_of("{" + hash + ",\"Length\":18446744073709551615}"), "Length: exceeds 67108864");
  EXPECT_NE(error_of(std::string(request_payload_bytes_max + 1, ' ')).find("exceeds 512 bytes"),
            std::string::npos);
}

TEST(FetchTopics, EndpointNamesTheRequestTopic) {
  EXPECT_EQ(request_topic("edge-a"), "mqds/fetch/request/edge-a");
  EXPECT_EQ(endpoint_of("edge-a"), "mqtt:mqds/fetch/request/edge-a");
  EXPECT_EQ(request_topic_of_endpoint("mqtt:mqds/fetch/request/edge-a"),
            "mqds/fetch/request/edge-a");
  EXPECT_EQ(request_topic_of_endpoint("grpc://edge-a:50051"), std::nullopt);
  EXPECT_EQ(request_topic_of_endpoint("mqtt:elsewhere/edge-a"), std::nullopt);
}

TEST(FetchTopics, RequestTopicNamesOneEdge) {
  EXPECT_EQ(edge_of_request_topic("mqds/fetch/request/edge-a"), "edge-a");
  EXPECT_EQ(edge_of_request_topic("mqds/fetch/request/"), std::nullopt);
  EXPECT_EQ(edge_of_request_topic("mqds/fetch/request/a/b"), std::nullopt);
  EXPECT_EQ(edge_of_request_topic("mqds/fetch/request/+"), std::nullopt);
  EXPECT_EQ(edge_of_request_topic("mqds/fetch/response/edge-a"), std::nullopt);
}

TEST(FetchTopics, ResponseTopicBelongsToItsRequester) {
  EXPECT_EQ(response_topic("cli-1"), "mqds/fetch/response/cli-1");
  EXPECT_EQ(response_topic("cli-1", "7"), "mqds/fetch/response/cli-1/7");
  EXPECT_EQ(requester_of_response_topic("mqds/fetch/response/cli-1"), "cli-1");
  EXPECT_EQ(requester_of_response_topic("mqds/fetch/response/cli-1/7/x"), "cli-1");
  EXPECT_EQ(requester_of_response_topic("mqds/fetch/response/"), std::nullopt);
  EXPECT_EQ(requester_of_response_topic("mqds/fetch/response//x"), std::nullopt);
  EXPECT_EQ(requester_of_response_topic("mqds/fetch/response/#"), std::nullopt);
  EXPECT_EQ(requester_of_response_topic("tracker/hello"), std::nullopt);
}

TEST(FetchResponseProperties, RoundTrip) {
  const ResponseHeader ok{Status::ok, 5000, 1024, ""};
  const UserProperties properties = encode_response_properties(ok);
  EXPECT_EQ(properties, (UserProperties{{"Status", "ok"}, {"Size", "5000"}, {"Offset", "1024"}}));
  const auto decoded = decode_response_properties(properties);
  ASSERT_TRUE(decoded.ok()) << decoded.error().to_string();
  EXPECT_EQ(*decoded, ok);

  const ResponseHeader busy{Status::busy, 0, 0, "ask again"};
  EXPECT_EQ(encode_response_properties(busy),
            (UserProperties{{"Status", "busy"}, {"Reason", "ask again"}}));
  EXPECT_EQ(*decode_response_properties(encode_response_properties(busy)), busy);
}

std::string header_error(const UserProperties& properties) {
  auto result = decode_response_properties(properties);
  return result ? "decoded" : result.error().to_string();
}

TEST(FetchResponseProperties, BadPropertiesNameTheProperty) {
  EXPECT_EQ(header_error({}), "Status: missing");
  EXPECT_EQ(header_error({{"Reason", "x"}}), "Status: missing");
  EXPECT_EQ(header_error({{"Status", "OK"}}), "Status: unknown 'OK'");
  EXPECT_EQ(header_error({{"Status", std::string(100, 'x')}}),
            "Status: unknown '" + std::string(32, 'x') + "...'");
  EXPECT_EQ(header_error({{"Status", "ok"}, {"Offset", "0"}}), "Size: missing");
  EXPECT_EQ(header_error({{"Status", "ok"}, {"Size", "10"}}), "Offset: missing");
  for (const char* size :
       {"", "-1", "+1", " 1", "1 ", "1e3", "0x10", "1.0", "99999999999999999999"})
    EXPECT_EQ(header_error({{"Status", "ok"}, {"Size", size}, {"Offset", "0"}}),
              "Size: must be a decimal integer")
        << "'" << size << "'";
  EXPECT_EQ(header_error({{"Status", "ok"}, {"Size", "67108865"}, {"Offset", "0"}}),
            "Size: exceeds 67108864");
}

TEST(FetchResponseProperties, TheFirstOfEachNameCountsAndReasonsAreCut) {
  const auto decoded = decode_response_properties(
      {{"Status", "not-found"}, {"Status", "ok"}, {"Reason", std::string(5000, 'r')}});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->status, Status::not_found);
  EXPECT_EQ(decoded->reason.size(), limits::reason_bytes_max);
  // A reason is optional, and Size and Offset are only read from ok answers.
  const auto bare = decode_response_properties({{"Status", "busy"}, {"Size", "nonsense"}});
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->reason, "");
}

TEST(FetchStatus, NamesRoundTrip) {
  for (Status s : {Status::ok, Status::not_found, Status::bad_request, Status::busy})
    EXPECT_EQ(parse_status(status_name(s)), s);
  EXPECT_EQ(parse_status("OK"), std::nullopt);
}

}  // namespace
}  // namespace mqds::fetch
