// Unit tests of fetch::Server, the edge's side of fetch: every answer it can give, the queue and
// the in-flight budget, with real fragments and requests in their wire form.
#include "mqds/fetch_server.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "support/fetch_harness.hpp"
#include "support/machine_harness.hpp"

namespace mqds::fetch {
namespace {

using testing::pattern;

const std::string edge_topic = request_topic("edge-a");
const std::string reply_topic = response_topic("cli-1", "get");

ServerConfig config(std::size_t queue_max = 64, std::size_t budget_bytes = 16 * 1024 * 1024) {
  return ServerConfig{edge_topic, queue_max, budget_bytes};
}

IncomingRequest request(const std::string& payload, std::string_view correlation = "c1",
                        std::string_view response = reply_topic) {
  return IncomingRequest{edge_topic, payload, response, correlation};
}

std::string ask(const Hash& hash, std::int64_t offset_bytes = 0,
                std::int64_t length_bytes = chunk_bytes_max) {
  return encode_request(Request{hash, offset_bytes, length_bytes});
}

// Queues one request and serves it: the Lookup the machine asks for, answered with `outcome`.
ServerOutput serve_one(Server& server, const std::string& payload, const LookupOutcome& outcome,
                       std::string_view correlation = "c1") {
  EXPECT_TRUE(server.on_request(request(payload, correlation)).empty());
  const ServerOutput step = server.serve_next();
  EXPECT_TRUE(step.replies.empty());
  if (!step.lookup) {
    ADD_FAILURE() << "no lookup";
    return {};
  }
  return server.on_lookup(step.lookup->ticket, outcome);
}

const Reply& only_reply(const ServerOutput& out) {
  EXPECT_EQ(out.replies.size(), 1u);
  return out.replies.front();
}

struct FetchServer : ::testing::Test {
  Bytes content = pattern(3000, 7);
  Hash hash = sha256(content);
  LookupOutcome stored = LookupOutcome::stored(3000);
};

TEST_F(FetchServer, AStoredFragmentIsAnsweredWithItsRangeAndProperties) {
  Server server(config());
  const ServerOutput step = [&] {
    EXPECT_TRUE(server.on_request(request(ask(hash), "corr-7")).empty());
    EXPECT_EQ(server.waiting(), 1u);
    return server.serve_next();
  }();
  ASSERT_TRUE(step.lookup);
  EXPECT_EQ(step.lookup->hash, hash);
  EXPECT_EQ(server.waiting(), 0u);
  EXPECT_EQ(server.lookups_pending(), 1u);

  const ServerOutput out = server.on_lookup(step.lookup->ticket, stored);
  const Reply& reply = only_reply(out);
  EXPECT_FALSE(out.lost);
  EXPECT_EQ(reply.topic, reply_topic);
  EXPECT_EQ(reply.correlation_data, "corr-7");
  EXPECT_EQ(reply.properties(),
            (UserProperties{{"Status", "ok"}, {"Size", "3000"}, {"Offset", "0"}}));
  EXPECT_EQ(reply.length_bytes, 3000);
  EXPECT_EQ(server.lookups_pending(), 0u);
  EXPECT_EQ(server.metrics().ok, 1u);
  EXPECT_EQ(server.metrics().bytes_served, 3000u);

  // The payload the adapter sends: the fragment's bytes of that range.
  const auto response = testing::delivered(reply, &content);
  EXPECT_EQ(response.payload, std::string(content.begin(), content.end()));
}

TEST_F(FetchServer, APartOfAFragmentIsTheRangeAskedForAndTheLastChunkIsShorter) {
  Server server(config());
  const Reply middle = only_reply(serve_one(server, ask(hash, 1000, 500), stored));
  EXPECT_EQ(middle.header.offset_bytes, 1000);
  EXPECT_EQ(middle.header.size_bytes, 3000);
  EXPECT_EQ(middle.length_bytes, 500);
  const Reply last = only_reply(serve_one(server, ask(hash, 2500, 1000), stored));
  EXPECT_EQ(last.header.offset_bytes, 2500);
  EXPECT_EQ(last.length_bytes, 500);
  // At the very end: nothing left, which is no error.
  const Reply end = only_reply(serve_one(server, ask(hash, 3000, 10), stored));
  EXPECT_EQ(end.header.status, Status::ok);
  EXPECT_EQ(end.length_bytes, 0);
}

TEST_F(FetchServer, AnOffsetBeyondTheFragmentIsABadRequest) {
  Server server(config());
  const Reply reply = only_reply(serve_one(server, ask(hash, 3001, 10), stored));
  EXPECT_EQ(reply.properties(),
            (UserProperties{{"Status", "bad-request"},
                            {"Reason", "Offset is beyond the fragment's 3000 bytes"}}));
  EXPECT_EQ(reply.length_bytes, 0);
  EXPECT_EQ(server.metrics().bad_request, 1u);
}

TEST_F(FetchServer, AFragmentNotStoredIsNotFound) {
  Server server(config());
  const ServerOutput out = serve_one(server, ask(hash), LookupOutcome::not_found());
  const Reply& reply = only_reply(out);
  EXPECT_EQ(reply.header.status, Status::not_found);
  EXPECT_EQ(reply.header.reason, "not stored here");
  EXPECT_EQ(reply.correlation_data, "c1");
  EXPECT_FALSE(out.lost);
}

TEST_F(FetchServer, ACorruptCopyIsNotFoundAndReportedLost) {
  Server server(config());
  const ServerOutput out = serve_one(server, ask(hash), LookupOutcome::corrupt());
  ASSERT_TRUE(out.lost);
  EXPECT_EQ(*out.lost, hash);
  const Reply& reply = only_reply(out);
  EXPECT_EQ(reply.header.status, Status::not_found);
  EXPECT_EQ(reply.header.reason, "the stored copy was corrupt and is deleted");
  EXPECT_EQ(server.metrics().lost, 1u);
}

TEST_F(FetchServer, AMalformedRequestIsABadRequestAtOnceWithoutWaiting) {
  Server server(config());
  const ServerOutput out = server.on_request(request("{\"Hash\":\"nope\"}", "c9"));
  const Reply& reply = only_reply(out);
  EXPECT_EQ(reply.topic, reply_topic);
  EXPECT_EQ(reply.correlation_data, "c9");
  EXPECT_EQ(reply.header.status, Status::bad_request);
  EXPECT_EQ(reply.header.reason, "Hash: must be 64 hexadecimal characters");
  EXPECT_EQ(server.waiting(), 0u);
}

TEST_F(FetchServer, AResponseTopicOutsideFetchResponsesIsNeverAnswered) {
  Server server(config());
  for (const char* topic :
       {"", "tracker/hello", "mqds/query/response/cli-1", "mqds/fetch/response/",
        "mqds/fetch/response/#", "mqds/fetch/request/edge-b"}) {
    const ServerOutput out = server.on_request(request(ask(hash), "c1", topic));
    EXPECT_TRUE(out.replies.empty()) << topic;
    ASSERT_EQ(out.logs.size(), 1u) << topic;
    EXPECT_EQ(out.logs[0].level, LogLevel::warning);
    EXPECT_NE(out.logs[0].text.find("Response Topic is not under mqds/fetch/response/"),
              std::string::npos);
  }
  // Not even a malformed request is answered there.
  EXPECT_TRUE(server.on_request(request("garbage", "c1", "tracker/hello")).replies.empty());
  EXPECT_EQ(server.waiting(), 0u);
  EXPECT_EQ(server.metrics().refused, 7u);
}

TEST_F(FetchServer, ARequestOnAnotherTopicIsIgnored) {
  Server server(config());
  IncomingRequest elsewhere = request(ask(hash));
  elsewhere.topic = "mqds/fetch/request/edge-b";
  EXPECT_TRUE(server.on_request(elsewhere).replies.empty());
  EXPECT_EQ(server.waiting(), 0u);
}

TEST_F(FetchServer, CorrelationDataIsEchoedAsBytesAndCutToItsBound) {
  Server server(config());
  const std::string binary("a\0\xff", 3);
  EXPECT_EQ(only_reply(serve_one(server, ask(hash), stored, binary)).correlation_data, binary);
  const std::string huge(correlation_bytes_max + 50, 'x');
  EXPECT_EQ(only_reply(serve_one(server, ask(hash), stored, huge)).correlation_data,
            huge.substr(0, correlation_bytes_max));
}

TEST_F(FetchServer, BeyondTheQueueBoundTheAnswerIsBusyAtOnce) {
  Server server(config(2));
  EXPECT_TRUE(server.on_request(request(ask(hash), "1")).empty());
  EXPECT_TRUE(server.on_request(request(ask(hash), "2")).empty());
  const Reply busy = only_reply(server.on_request(request(ask(hash), "3")));
  EXPECT_EQ(busy.correlation_data, "3");
  EXPECT_EQ(busy.properties(),
            (UserProperties{{"Status", "busy"}, {"Reason", "too many requests waiting"}}));
  EXPECT_EQ(server.waiting(), 2u);
  // Serving makes room again.
  ASSERT_TRUE(server.serve_next().lookup);
  EXPECT_TRUE(server.on_request(request(ask(hash), "4")).empty());
  EXPECT_EQ(server.waiting(), 2u);
  EXPECT_EQ(server.metrics().busy, 1u);
}

TEST_F(FetchServer, BeyondTheByteBudgetTheAnswerIsBusyUntilAcknowledgementsFreeIt) {
  Server server(config(64, 5000));
  const Reply first = only_reply(serve_one(server, ask(hash), stored, "1"));
  server.on_sent(11, first);
  EXPECT_EQ(server.response_bytes_in_flight(), 3000u);
  const Reply second = only_reply(serve_one(server, ask(hash), stored, "2"));
  server.on_sent(12, second);
  EXPECT_EQ(server.response_bytes_in_flight(), 6000u);

  // Over the budget: the next request is answered busy without a lookup.
  EXPECT_TRUE(server.on_request(request(ask(hash), "3")).empty());
  const ServerOutput refused = server.serve_next();
  EXPECT_FALSE(refused.lookup);
  const Reply busy = only_reply(refused);
  EXPECT_EQ(busy.correlation_data, "3");
  EXPECT_EQ(busy.header.status, Status::busy);
  EXPECT_EQ(busy.header.reason, "too many bytes in flight; ask again");
  server.on_sent(13, busy);  // an empty payload costs nothing
  EXPECT_EQ(server.response_bytes_in_flight(), 6000u);

  // PUBACKs free the budget; other messages' acknowledgements are not replies.
  EXPECT_TRUE(server.on_acknowledged(11));
  EXPECT_TRUE(server.on_acknowledged(13));
  EXPECT_FALSE(server.on_acknowledged(11));
  EXPECT_FALSE(server.on_acknowledged(99));
  EXPECT_EQ(server.response_bytes_in_flight(), 3000u);
  EXPECT_EQ(only_reply(serve_one(server, ask(hash), stored, "4")).header.status, Status::ok);
}

TEST_F(FetchServer, AReusedMessageIdDoesNotLeakBudget) {
  Server server(config());
  const Reply reply = only_reply(serve_one(server, ask(hash), stored));
  server.on_sent(5, reply);
  server.on_sent(5, reply);
  EXPECT_EQ(server.response_bytes_in_flight(), 3000u);
  EXPECT_TRUE(server.on_acknowledged(5));
  EXPECT_EQ(server.response_bytes_in_flight(), 0u);
}

TEST_F(FetchServer, ALostConnectionForgetsTheQueueLookupsAndBytesInFlight) {
  Server server(config());
  server.on_sent(1, only_reply(serve_one(server, ask(hash), stored)));
  EXPECT_TRUE(server.on_request(request(ask(hash), "a")).empty());
  EXPECT_TRUE(server.on_request(request(ask(hash), "b")).empty());
  const ServerOutput step = server.serve_next();
  ASSERT_TRUE(step.lookup);

  server.on_disconnected();
  EXPECT_EQ(server.waiting(), 0u);
  EXPECT_EQ(server.response_bytes_in_flight(), 0u);
  EXPECT_FALSE(server.on_acknowledged(1));
  // The store's answer for a request of the old connection is answered to nobody.
  EXPECT_TRUE(server.on_lookup(step.lookup->ticket, stored).empty());
  EXPECT_TRUE(server.serve_next().empty());
}

TEST_F(FetchServer, RequestsAreServedInTheOrderTheyArrived) {
  Server server(config());
  const Bytes other = pattern(100, 8);
  EXPECT_TRUE(server.on_request(request(ask(hash), "first")).empty());
  EXPECT_TRUE(server.on_request(request(ask(sha256(other)), "second")).empty());
  const ServerOutput a = server.serve_next();
  const ServerOutput b = server.serve_next();
  ASSERT_TRUE(a.lookup && b.lookup);
  EXPECT_EQ(a.lookup->hash, hash);
  EXPECT_EQ(b.lookup->hash, sha256(other));
  // Lookups may be answered in any order; each reply goes to its own request.
  EXPECT_EQ(
      only_reply(server.on_lookup(b.lookup->ticket, LookupOutcome::stored(100))).correlation_data,
      "second");
  EXPECT_EQ(only_reply(server.on_lookup(a.lookup->ticket, stored)).correlation_data, "first");
}

TEST_F(FetchServer, NonOkAnswersAreLoggedAtDebugLevelOnly) {
  Server server(config());
  const ServerOutput out = serve_one(server, ask(hash), LookupOutcome::not_found());
  ASSERT_EQ(out.logs.size(), 1u);
  EXPECT_EQ(out.logs[0].level, LogLevel::debug);
  EXPECT_EQ(out.logs[0].text, "fetch answered not-found: not stored here");
  EXPECT_TRUE(serve_one(server, ask(hash), stored).logs.empty());
}

}  // namespace
}  // namespace mqds::fetch
