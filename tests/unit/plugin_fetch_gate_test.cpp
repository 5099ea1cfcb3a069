// The tracker plugin's fetch gate without a broker: who may fetch, where responses go, counting
// and rate-limited log lines. The broker tests (tests/broker/fetch_test.cpp) check the same rules
// through a real mosquitto.
#include <gtest/gtest.h>

#include <deque>
#include <tuple>
#include <vector>
#include <string>

#include "fetch_gate.hpp"
#include "mqds/hash.hpp"

namespace mqds::plugin {
namespace {

FetchGate gate_for(std::vector<std::string> users, bool anyone = false) {
  FetchOptions options;
  options.users = std::move(users);
  options.anyone = anyone;
  return FetchGate(options);
}

// What a request asks for: `length` bytes of a fragment.
std::string asking(std::int64_t length) {
  fetch::Request request;
  request.hash = sha256(std::string_view("a fragment"));
  request.length_bytes = length;
  return fetch::encode_request(request);
}

// A request that passes with fetch_users "alice", for 1 KiB.
FetchRequest good_request() {
  static const std::string payload = asking(1024);
  FetchRequest r;
  r.topic = "mqds/fetch/request/edge-1";
  r.client_id = "getter";
  r.username = "alice";
  r.protocol_version = 5;
  r.payload = payload;
  r.payload_bytes = payload.size();
  r.response_topic = "mqds/fetch/response/getter/7";
  r.correlation = "0123456789abcdef";
  r.correlation_bytes = 16;
  return r;
}

// good_request() from `requester`, asking with `payload`: the strings its views point into are
// kept in `kept`.
FetchRequest request_from(std::deque<std::string>& kept, std::string_view requester,
                          const std::string& correlation, const std::string& payload,
                          std::vector<std::string> receipts = {}) {
  FetchRequest r = good_request();
  r.client_id = kept.emplace_back(requester);
  r.response_topic = kept.emplace_back(fetch::response_topic(requester));
  r.correlation = kept.emplace_back(correlation);
  r.payload = kept.emplace_back(payload);
  r.payload_bytes = payload.size();
  for (auto& receipt : receipts) r.receipts.push_back(kept.emplace_back(std::move(receipt)));
  return r;
}

// The answer of `edge` to good_request(), with `correlation`.
FetchResponse answer_from(std::string_view edge,
                          std::optional<std::string_view> correlation = "0123456789abcdef") {
  FetchResponse r;
  r.topic = "mqds/fetch/response/getter/7";
  r.responder = edge;
  r.correlation = correlation;
  r.payload_bytes = 1024;
  return r;
}

FetchRefusal refusal_of(const std::variant<std::string_view, FetchRefusal>& judged) {
  EXPECT_TRUE(std::holds_alternative<FetchRefusal>(judged)) << "it was delivered";
  return std::holds_alternative<FetchRefusal>(judged) ? std::get<FetchRefusal>(judged)
                                                      : FetchRefusal::delivery_failed;
}

TEST(FetchGate, TopicsAreSortedByPrefix) {
  EXPECT_EQ(FetchGate::kind("mqds/fetch/request/e"), FetchGate::Kind::request);
  EXPECT_EQ(FetchGate::kind("mqds/fetch/request/"), FetchGate::Kind::request);
  EXPECT_EQ(FetchGate::kind("mqds/fetch/response/r/x"), FetchGate::Kind::response);
  EXPECT_EQ(FetchGate::kind("mqds/fetch/other"), FetchGate::Kind::other);
  EXPECT_EQ(FetchGate::kind("mqds/fetch/request"), FetchGate::Kind::other);
  EXPECT_EQ(FetchGate::kind("mqds/fetch/"), FetchGate::Kind::other);
  EXPECT_EQ(FetchGate::kind("mqds/fetch"), FetchGate::Kind::none);
  EXPECT_EQ(FetchGate::kind("mqds/ingest/begin"), FetchGate::Kind::none);
  EXPECT_EQ(FetchGate::kind("tracker/revision"), FetchGate::Kind::none);
}

TEST(FetchGate, AProperRequestPasses) {
  const auto gate = gate_for({"alice"});
  EXPECT_EQ(gate.judge_request(good_request()), std::nullopt);
  auto no_correlation = good_request();
  no_correlation.correlation_bytes.reset();
  EXPECT_EQ(gate.judge_request(no_correlation), std::nullopt) << "Correlation Data is optional";
  auto bare = good_request();
  bare.response_topic = "mqds/fetch/response/getter";
  EXPECT_EQ(gate.judge_request(bare), std::nullopt) << "the suffix is optional";
  auto limits = good_request();
  limits.payload_bytes = fetch::request_payload_bytes_max;
  limits.correlation_bytes = fetch::correlation_bytes_max;
  EXPECT_EQ(gate.judge_request(limits), std::nullopt) << "the limits themselves are allowed";
}

TEST(FetchGate, EveryRuleRefusesWithItsReason) {
  const auto gate = gate_for({"alice"});
  const auto refused = [&](auto change) {
    auto r = good_request();
    change(r);
    return gate.judge_request(r);
  };
  EXPECT_EQ(refused([](FetchRequest& r) { r.username = "bob"; }), FetchRefusal::user_not_allowed);
  EXPECT_EQ(refused([](FetchRequest& r) { r.username = nullptr; }), FetchRefusal::user_not_allowed);
  EXPECT_EQ(refused([](FetchRequest& r) { r.topic = "mqds/fetch/request/"; }),
            FetchRefusal::bad_request_topic);
  EXPECT_EQ(refused([](FetchRequest& r) { r.topic = "mqds/fetch/request/a/b"; }),
            FetchRefusal::bad_request_topic);
  EXPECT_EQ(refused([](FetchRequest& r) { r.retain = true; }), FetchRefusal::retained_request);
  EXPECT_EQ(
      refused([](FetchRequest& r) { r.payload_bytes = fetch::request_payload_bytes_max + 1; }),
      FetchRefusal::request_too_large);
  EXPECT_EQ(refused([](FetchRequest& r) { r.protocol_version = 4; }), FetchRefusal::not_mqtt5);
  EXPECT_EQ(refused([](FetchRequest& r) { r.properties_readable = false; }),
            FetchRefusal::properties_unreadable);
  EXPECT_EQ(refused([](FetchRequest& r) { r.response_topic.reset(); }),
            FetchRefusal::no_response_topic);
  EXPECT_EQ(refused([](FetchRequest& r) { r.response_topic = "replies/getter"; }),
            FetchRefusal::response_topic_not_fetch);
  EXPECT_EQ(refused([](FetchRequest& r) { r.response_topic = "mqds/fetch/response/"; }),
            FetchRefusal::response_topic_not_fetch);
  EXPECT_EQ(refused([](FetchRequest& r) { r.response_topic = "mqds/fetch/response/getter/#"; }),
            FetchRefusal::response_topic_not_fetch);
  EXPECT_EQ(refused([](FetchRequest& r) { r.response_topic = "mqds/fetch/response/victim"; }),
            FetchRefusal::response_topic_not_own);
  EXPECT_EQ(refused([](FetchRequest& r) { r.response_topic = "mqds/fetch/response/getter2"; }),
            FetchRefusal::response_topic_not_own);
  EXPECT_EQ(refused([](FetchRequest& r) { r.response_topic = "mqds/fetch/response/gette"; }),
            FetchRefusal::response_topic_not_own);
  EXPECT_EQ(refused([](FetchRequest& r) {
              r.client_id = "";
              r.response_topic = "mqds/fetch/response/";
            }),
            FetchRefusal::response_topic_not_fetch);
  EXPECT_EQ(
      refused([](FetchRequest& r) { r.correlation_bytes = fetch::correlation_bytes_max + 1; }),
      FetchRefusal::correlation_too_large);
}

TEST(FetchGate, NoClientFetchesAsTheTracker) {
  // The tracker's repairs are answered on its own response topic, and what arrives there is taken
  // for the tracker's: a client may not ask for answers there, even one whose client id is the
  // tracker's requester name, and whatever the suffix.
  const auto gate = gate_for({}, true);
  const std::string tracker_topic = fetch::response_topic(fetch::tracker_requester, "repair");
  EXPECT_EQ(tracker_topic, "mqds/fetch/response/$mqds-tracker/repair");
  for (const std::string& topic : {tracker_topic, fetch::response_topic(fetch::tracker_requester),
                                   fetch::response_topic(fetch::tracker_requester, "other")}) {
    auto r = good_request();
    r.response_topic = topic;
    EXPECT_EQ(gate.judge_request(r), FetchRefusal::response_topic_of_tracker) << topic;
    r.client_id = fetch::tracker_requester;
    EXPECT_EQ(gate.judge_request(r), FetchRefusal::response_topic_of_tracker)
        << topic << " from a client that took the tracker's name as its id";
  }
  auto lookalike = good_request();
  lookalike.client_id = "$mqds-tracker2";
  lookalike.response_topic = "mqds/fetch/response/$mqds-tracker2/repair";
  EXPECT_EQ(gate.judge_request(lookalike), std::nullopt) << "only the tracker's own name";

  EXPECT_TRUE(FetchGate::is_tracker_response(tracker_topic));
  EXPECT_TRUE(FetchGate::is_tracker_response("mqds/fetch/response/$mqds-tracker"));
  EXPECT_FALSE(FetchGate::is_tracker_response("mqds/fetch/response/$mqds-tracker2/repair"));
  EXPECT_FALSE(FetchGate::is_tracker_response("mqds/fetch/response/getter/7"));
  EXPECT_FALSE(FetchGate::is_tracker_response("mqds/fetch/request/$mqds-tracker"));
  EXPECT_FALSE(FetchGate::is_tracker_response("mqds/fetch/response/$mqds-tracker/#"))
      << "no wildcards";
}

TEST(FetchGate, OffByDefaultAndStarMeansEveryone) {
  const auto off = gate_for({});
  EXPECT_FALSE(off.enabled());
  EXPECT_EQ(off.judge_request(good_request()), FetchRefusal::fetch_off);
  const auto off_response = off.judge_response("mqds/fetch/response/getter", 10);
  ASSERT_TRUE(std::holds_alternative<FetchRefusal>(off_response));
  EXPECT_EQ(std::get<FetchRefusal>(off_response), FetchRefusal::fetch_off);

  const auto everyone = gate_for({}, true);
  auto anonymous = good_request();
  anonymous.username = nullptr;
  EXPECT_EQ(everyone.judge_request(anonymous), std::nullopt);
}

TEST(FetchGate, ResponsesGoToTheRequesterTheTopicNames) {
  const auto gate = gate_for({"alice"});
  const auto to = gate.judge_response("mqds/fetch/response/getter/abc/def", 1024);
  ASSERT_TRUE(std::holds_alternative<std::string_view>(to));
  EXPECT_EQ(std::get<std::string_view>(to), "getter");
  const auto bare = gate.judge_response("mqds/fetch/response/getter", 0);
  ASSERT_TRUE(std::holds_alternative<std::string_view>(bare));
  EXPECT_EQ(std::get<std::string_view>(bare), "getter");
  const auto at_limit =
      gate.judge_response("mqds/fetch/response/getter", FetchGate::response_payload_bytes_max);
  EXPECT_TRUE(std::holds_alternative<std::string_view>(at_limit));

  for (const char* bad :
       {"mqds/fetch/response/", "mqds/fetch/response//x", "mqds/fetch/response/a+b"}) {
    const auto refused = gate.judge_response(bad, 1);
    ASSERT_TRUE(std::holds_alternative<FetchRefusal>(refused)) << bad;
    EXPECT_EQ(std::get<FetchRefusal>(refused), FetchRefusal::bad_response_topic) << bad;
  }
  const auto too_large =
      gate.judge_response("mqds/fetch/response/getter", FetchGate::response_payload_bytes_max + 1);
  ASSERT_TRUE(std::holds_alternative<FetchRefusal>(too_large));
  EXPECT_EQ(std::get<FetchRefusal>(too_large), FetchRefusal::response_too_large);
}

TEST(FetchGate, AResponseIsDeliveredOnlyFromTheEdgeAskedOnceForAnOutstandingRequest) {
  auto gate = gate_for({"alice"});
  // Nobody asked yet: even the right edge with the right data is refused.
  EXPECT_EQ(refusal_of(gate.answer(0, answer_from("edge-1"))),
            FetchRefusal::response_not_requested);
  ASSERT_EQ(gate.admit(0, good_request()), std::nullopt);
  EXPECT_EQ(gate.outstanding(), 1u);
  // Another client, the right correlation: a forger.
  EXPECT_EQ(refusal_of(gate.answer(1, answer_from("forger"))),
            FetchRefusal::response_not_requested);
  // The edge asked, with other or no Correlation Data, or on another of the requester's topics.
  EXPECT_EQ(refusal_of(gate.answer(1, answer_from("edge-1", "0123456789abcdeX"))),
            FetchRefusal::response_not_requested);
  EXPECT_EQ(refusal_of(gate.answer(1, answer_from("edge-1", std::nullopt))),
            FetchRefusal::response_not_requested);
  auto elsewhere = answer_from("edge-1");
  elsewhere.topic = "mqds/fetch/response/getter/8";
  EXPECT_EQ(refusal_of(gate.answer(1, elsewhere)), FetchRefusal::response_not_requested);
  // The answer: delivered to the requester, once.
  const auto delivered = gate.answer(2, answer_from("edge-1"));
  ASSERT_TRUE(std::holds_alternative<std::string_view>(delivered));
  EXPECT_EQ(std::get<std::string_view>(delivered), "getter");
  EXPECT_EQ(gate.outstanding(), 0u);
  EXPECT_EQ(refusal_of(gate.answer(3, answer_from("edge-1"))),
            FetchRefusal::response_not_requested);
  // Form and size are still judged first.
  auto large = answer_from("edge-1");
  large.payload_bytes = FetchGate::response_payload_bytes_max + 1;
  EXPECT_EQ(refusal_of(gate.answer(3, large)), FetchRefusal::response_too_large);
}

TEST(FetchGate, ARequestWithoutCorrelationDataIsAnsweredWithout) {
  auto gate = gate_for({"alice"});
  auto request = good_request();
  request.correlation.reset();
  request.correlation_bytes.reset();
  ASSERT_EQ(gate.admit(0, request), std::nullopt);
  EXPECT_EQ(refusal_of(gate.answer(1, answer_from("edge-1"))),
            FetchRefusal::response_not_requested);
  EXPECT_TRUE(std::holds_alternative<std::string_view>(
      gate.answer(1, answer_from("edge-1", std::nullopt))));
}

TEST(FetchGate, OutstandingRequestsAreBoundedExpireAndLeaveWithTheirRequester) {
  auto gate = gate_for({"alice"});
  std::vector<std::string> correlations;
  for (std::size_t i = 0; i <= FetchGate::outstanding_per_requester_max; ++i)
    correlations.push_back("c" + std::to_string(i));
  for (std::size_t i = 0; i < FetchGate::outstanding_per_requester_max; ++i) {
    auto request = good_request();
    request.correlation = correlations[i];
    ASSERT_EQ(gate.admit(0, request), std::nullopt) << i;
  }
  auto one_more = good_request();
  one_more.correlation = correlations.back();
  EXPECT_EQ(gate.admit(0, one_more), FetchRefusal::too_many_outstanding);
  // The same request again is not one more.
  auto again = good_request();
  again.correlation = correlations[0];
  EXPECT_EQ(gate.admit(0, again), std::nullopt);
  // Another requester has its own budget.
  auto other = good_request();
  other.client_id = "other";
  other.response_topic = "mqds/fetch/response/other";
  EXPECT_EQ(gate.admit(0, other), std::nullopt);
  EXPECT_EQ(gate.outstanding(), FetchGate::outstanding_per_requester_max + 1);

  // Unanswered requests are given up after outstanding_timeout_ms; an answer after that is late.
  gate.expire(FetchGate::outstanding_timeout_ms - 1);
  EXPECT_EQ(gate.outstanding(), FetchGate::outstanding_per_requester_max + 1);
  EXPECT_EQ(refusal_of(gate.answer(FetchGate::outstanding_timeout_ms,
                                   answer_from("edge-1", correlations[1]))),
            FetchRefusal::response_not_requested);
  gate.expire(FetchGate::outstanding_timeout_ms);
  EXPECT_EQ(gate.outstanding(), 0u);
  EXPECT_EQ(gate.admit(FetchGate::outstanding_timeout_ms, one_more), std::nullopt);

  // A requester that disconnects takes its requests with it.
  gate.forget_requester("getter");
  EXPECT_EQ(gate.outstanding(), 0u);
  EXPECT_EQ(refusal_of(gate.answer(FetchGate::outstanding_timeout_ms,
                                   answer_from("edge-1", correlations.back()))),
            FetchRefusal::response_not_requested);
}

TEST(FetchGate, ARequesterIsOwedAtMostItsBudgetOfBytes) {
  constexpr std::size_t mib = 1024 * 1024;
  FetchOptions options;
  options.users = {"alice"};
  options.bytes_per_client = 4 * mib;
  FetchGate gate(options);
  const std::string chunk = asking(fetch::chunk_bytes_max);
  std::deque<std::string> kept;  // what the requests' views point into
  const auto request = [&](const std::string& correlation, const std::string& payload,
                           std::string_view requester = "getter") {
    return request_from(kept, requester, correlation, payload);
  };
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(gate.admit(0, request("c" + std::to_string(i), chunk)), std::nullopt) << i;
  EXPECT_EQ(gate.outstanding_bytes("getter"), 4 * mib);
  // Full: a fifth chunk is refused, and so is a single byte more.
  EXPECT_EQ(gate.admit(0, request("c4", chunk)), FetchRefusal::too_many_bytes_outstanding);
  EXPECT_EQ(gate.admit(0, request("c5", asking(1))), FetchRefusal::too_many_bytes_outstanding);
  // The same request again reserves nothing more.
  EXPECT_EQ(gate.admit(0, request("c0", chunk)), std::nullopt);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 4 * mib);
  // Another requester has a budget of its own.
  EXPECT_EQ(gate.admit(0, request("c0", chunk, "other")), std::nullopt);

  // An answer gives back what its request reserved, whatever its size.
  FetchResponse response = answer_from("edge-1", "c0");
  response.topic = "mqds/fetch/response/getter";
  response.payload_bytes = 10;
  ASSERT_FALSE(std::holds_alternative<FetchRefusal>(gate.answer(1, response)));
  EXPECT_EQ(gate.outstanding_bytes("getter"), 3 * mib);
  EXPECT_EQ(gate.admit(1, request("c6", asking(1000))), std::nullopt);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 3 * mib + 1000);

  // A Length beyond a chunk reserves a chunk (an edge answers no more); one the gate cannot read
  // reserves a whole chunk too.
  EXPECT_EQ(FetchGate::reserved_bytes(asking(3 * fetch::chunk_bytes_max)), mib);
  EXPECT_EQ(FetchGate::reserved_bytes("not a request"), mib);
  EXPECT_EQ(FetchGate::reserved_bytes(asking(0)), 0u);

  // Given up, or gone with its requester: nothing stays reserved.
  gate.expire(FetchGate::outstanding_timeout_ms);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 1000u) << "c6 was admitted later";
  gate.forget_requester("getter");
  EXPECT_EQ(gate.outstanding_bytes("getter"), 0u);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(gate.admit(2, request("d" + std::to_string(i), chunk)), std::nullopt) << i;
}

// A requester that never reads cannot be sent more than its budget: what it was answered stays
// owed until it echoes the answers' receipts.
TEST(FetchGate, AnAnswerStaysOwedUntilItsReceiptComesBack) {
  constexpr std::size_t mib = 1024 * 1024;
  FetchOptions options;
  options.users = {"alice"};
  options.bytes_per_client = 4 * mib;
  FetchGate gate(options);
  const std::string chunk = asking(fetch::chunk_bytes_max);
  std::deque<std::string> kept;  // what the requests' and responses' views point into
  const auto request = [&](const std::string& correlation, std::vector<std::string> receipts = {},
                           std::string_view requester = "getter") {
    return request_from(kept, requester, correlation, chunk, std::move(receipts));
  };
  const auto answer = [&](const std::string& correlation, std::size_t bytes,
                          std::optional<std::string> receipt,
                          std::string_view requester = "getter") {
    FetchResponse r;
    r.topic = kept.emplace_back(fetch::response_topic(requester));
    r.responder = "edge-1";
    r.correlation = kept.emplace_back(correlation);
    r.payload_bytes = bytes;
    if (receipt) r.receipt = kept.emplace_back(*receipt);
    return !std::holds_alternative<FetchRefusal>(gate.answer(1, r));
  };
  for (int i = 0; i < 4; ++i) {
    const std::string c = "c" + std::to_string(i);
    ASSERT_EQ(gate.admit(0, request(c)), std::nullopt) << i;
    ASSERT_TRUE(answer(c, mib, "r" + std::to_string(i))) << i;
  }
  // Answered, not yet read: still owed, and nothing more passes.
  EXPECT_EQ(gate.outstanding(), 0u);
  EXPECT_EQ(gate.unconfirmed(), 4u);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 4 * mib);
  EXPECT_EQ(gate.admit(2, request("c4")), FetchRefusal::too_many_bytes_outstanding);
  // Time frees nothing: a requester that does not read stays owed until it leaves.
  gate.expire(10 * FetchGate::outstanding_timeout_ms);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 4 * mib);
  // Receipts it never got, and another requester's echo of them, free nothing.
  EXPECT_EQ(gate.admit(3, request("o1", {"r0", "r1", "guess"}, "other")), std::nullopt);
  EXPECT_EQ(gate.admit(3, request("c5", {"guess"})), FetchRefusal::too_many_bytes_outstanding);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 4 * mib);
  // Two receipts echoed: those answers are no longer owed, and this request fits.
  EXPECT_EQ(gate.admit(4, request("c6", {"r0", "r1"})), std::nullopt);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 3 * mib);
  EXPECT_EQ(gate.unconfirmed(), 2u);
  // A receipt counts once: echoing r0 again frees nothing (this request just fits).
  EXPECT_EQ(gate.admit(5, request("c7", {"r0"})), std::nullopt);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 4 * mib);
  // An answer without a receipt, with an empty or oversized one, or an empty answer, is not held:
  // nothing could free it.
  EXPECT_TRUE(answer("c6", mib, std::nullopt));
  EXPECT_TRUE(answer("c7", mib, std::nullopt));
  EXPECT_EQ(gate.outstanding_bytes("getter"), 2 * mib);
  for (const auto& [c, receipt, bytes] :
       {std::tuple<std::string, std::string, std::size_t>{"c8", "", mib},
        {"c9", std::string(fetch::receipt_bytes_max + 1, 'x'), mib},
        {"c10", "empty", 0}}) {
    ASSERT_EQ(gate.admit(6, request(c)), std::nullopt) << c;
    EXPECT_TRUE(answer(c, bytes, receipt)) << c;
    EXPECT_EQ(gate.outstanding_bytes("getter"), 2 * mib) << c;
  }
  // An answer the broker could not deliver is not owed: its receipt will never come back.
  ASSERT_EQ(gate.admit(7, request("c11")), std::nullopt);
  FetchResponse lost;
  lost.topic = kept.emplace_back(fetch::response_topic("getter"));
  lost.responder = "edge-1";
  lost.correlation = kept.emplace_back("c11");
  lost.payload_bytes = mib;
  lost.receipt = kept.emplace_back("r11");
  ASSERT_FALSE(std::holds_alternative<FetchRefusal>(gate.answer(7, lost)));
  EXPECT_EQ(gate.outstanding_bytes("getter"), 3 * mib);
  gate.undelivered("getter", lost);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 2 * mib);
  gate.undelivered("getter", lost);
  EXPECT_EQ(gate.outstanding_bytes("getter"), 2 * mib) << "once";
  // Gone: nothing is owed any more.
  gate.forget_requester("getter");
  EXPECT_EQ(gate.outstanding_bytes("getter"), 0u);
  EXPECT_EQ(gate.unconfirmed(), 0u);
  EXPECT_EQ(gate.outstanding_bytes("other"), mib) << "the other requester's request is its own";
}

// Answers awaiting their receipt are bounded per requester; counted against everybody's cap, one
// user with many connections could hold 16,384 of them and shut every other requester out.
TEST(FetchGate, AnswersAwaitingTheirReceiptDoNotFillEverybodysCap) {
  auto gate = gate_for({"alice"});
  std::deque<std::string> kept;
  std::size_t answered = 0;
  for (std::size_t c = 0; answered < FetchGate::outstanding_max; ++c) {
    const std::string requester = "flooder-" + std::to_string(c);
    for (std::size_t i = 0; i < FetchGate::outstanding_per_requester_max; ++i, ++answered) {
      auto request = good_request();
      request.client_id = kept.emplace_back(requester);
      request.response_topic = kept.emplace_back(fetch::response_topic(requester));
      request.correlation = kept.emplace_back("c" + std::to_string(i));
      request.payload =
          kept.emplace_back(R"({"Hash":")" + std::string(64, 'A') + R"(","Offset":0,"Length":1})");
      request.payload_bytes = request.payload.size();
      ASSERT_EQ(gate.admit(0, request), std::nullopt) << requester << " " << i;
      FetchResponse response;
      response.topic = *request.response_topic;
      response.responder = "edge-1";
      response.correlation = *request.correlation;
      response.payload_bytes = 1;
      response.receipt = kept.emplace_back("r" + std::to_string(i));
      ASSERT_FALSE(std::holds_alternative<FetchRefusal>(gate.answer(0, response)));
    }
  }
  EXPECT_EQ(gate.unconfirmed(), FetchGate::outstanding_max);
  EXPECT_EQ(gate.admit(1, good_request()), std::nullopt) << "another requester is still served";
}

TEST(FetchGate, AnswersAwaitingTheirReceiptCountAmongARequestersOutstanding) {
  auto gate = gate_for({"alice"});
  std::deque<std::string> kept;
  for (std::size_t i = 0; i < FetchGate::outstanding_per_requester_max; ++i) {
    auto request = good_request();
    request.correlation = kept.emplace_back("c" + std::to_string(i));
    ASSERT_EQ(gate.admit(0, request), std::nullopt) << i;
    FetchResponse response = answer_from("edge-1", *request.correlation);
    response.receipt = kept.emplace_back("r" + std::to_string(i));
    ASSERT_FALSE(std::holds_alternative<FetchRefusal>(gate.answer(1, response))) << i;
  }
  auto one_more = good_request();
  one_more.correlation = "more";
  EXPECT_EQ(gate.admit(2, one_more), FetchRefusal::too_many_outstanding);
  one_more.receipts = {"r0"};
  EXPECT_EQ(gate.admit(2, one_more), std::nullopt);
}

TEST(FetchGate, CountsWhatTheAdapterReports) {
  auto gate = gate_for({"alice"});
  EXPECT_EQ(gate.admit(0, good_request()), std::nullopt);
  auto second = good_request();
  second.correlation = "another";
  EXPECT_EQ(gate.admit(0, second), std::nullopt);
  gate.delivered(1000);
  gate.delivered(24);
  (void)gate.refused(0, FetchRefusal::user_not_allowed, "c", nullptr, "mqds/fetch/request/e");
  EXPECT_EQ(gate.metrics().requests, 2u);
  EXPECT_EQ(gate.metrics().responses, 2u);
  EXPECT_EQ(gate.metrics().bytes, 1024u);
  EXPECT_EQ(gate.metrics().refused, 1u);
}

TEST(FetchGate, RefusalsAreLoggedAtMostOncePerIntervalPerReasonAndSayWhy) {
  auto gate = gate_for({"alice"});
  constexpr auto interval = FetchGate::refusal_log_interval_ms;
  const auto first =
      gate.refused(1'000, FetchRefusal::user_not_allowed, "mallory", "eve", "mqds/fetch/request/e");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->level, LogLevel::notice);
  EXPECT_EQ(first->text,
            "fetch: refused a publish on mqds/fetch/request/e from client 'mallory' (user 'eve'): "
            "its username is not "
            "in plugin_opt_fetch_users");
  // The same reason within the interval: counted, not logged; another reason has its own budget.
  for (int i = 0; i < 1000; ++i)
    EXPECT_FALSE(gate.refused(1'000 + i, FetchRefusal::user_not_allowed, "mallory", "eve",
                              "mqds/fetch/request/e"));
  const auto other =
      gate.refused(1'500, FetchRefusal::no_response_topic, "x", nullptr, "mqds/fetch/request/e");
  ASSERT_TRUE(other);
  EXPECT_NE(other->text.find("(no username): the request has no Response Topic"), std::string::npos)
      << other->text;
  EXPECT_FALSE(gate.refused(1'000 + interval - 1, FetchRefusal::user_not_allowed, "m", "eve", "t"));
  // After the interval: one line that says how many were not logged.
  const auto later =
      gate.refused(1'000 + interval, FetchRefusal::user_not_allowed, "m", "eve", "t");
  ASSERT_TRUE(later);
  EXPECT_NE(later->text.find("(and 1001 more in the last 10 s, not logged)"), std::string::npos)
      << later->text;
  EXPECT_EQ(gate.metrics().refused, 1004u) << "every refusal is counted, logged or not";
  const auto delivery =
      gate.refused(0, FetchRefusal::delivery_failed, "edge", nullptr, "mqds/fetch/response/r");
  ASSERT_TRUE(delivery);
  EXPECT_EQ(delivery->level, LogLevel::warning)
      << "a failed delivery is the broker's trouble, not the client's";
}

TEST(FetchGate, LongClientIdsAndTopicsAreCutInLogLines) {
  auto gate = gate_for({"alice"});
  const std::string id(10'000, 'i');
  const std::string topic = "mqds/fetch/request/" + std::string(10'000, 't');
  // A multi-byte character across the cut is not split.
  const std::string user =
      std::string(FetchGate::logged_text_bytes_max - 1, 'u') + "\xc3\xa9" + "rest";
  const auto line = gate.refused(0, FetchRefusal::user_not_allowed, id, user.c_str(), topic);
  ASSERT_TRUE(line);
  EXPECT_LT(line->text.size(), 3 * FetchGate::logged_text_bytes_max + 300);
  EXPECT_NE(line->text.find(std::string(FetchGate::logged_text_bytes_max - 1, 'u') + "...'"),
            std::string::npos)
      << line->text;
}

TEST(FetchGate, EveryReasonHasWords) {
  for (std::size_t i = 0; i < fetch_refusal_kinds; ++i) {
    const auto words = describe(static_cast<FetchRefusal>(i));
    EXPECT_FALSE(words.empty());
    EXPECT_NE(words, "refused") << "reason " << i << " has no description";
  }
}

}  // namespace
}  // namespace mqds::plugin
