// Unit tests of fetch::Client, the requester's side of fetch, and of plan_fetch: every answer an
// edge can give and what the client makes of it, with real fragments cut by the Fragmenter and
// requests and answers in their wire form.
#include "mqds/fetch_client.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "support/fetch_harness.hpp"
#include "support/machine_harness.hpp"

namespace mqds::fetch {
namespace {

using testing::cut_file;
using testing::pattern;
using testing::TestFile;

const std::string my_topic = response_topic("cli-1", "get");

ClientConfig config(std::size_t parallel = 8) {
  ClientConfig c;
  c.response_topic = my_topic;
  c.parallel = parallel;
  c.request_timeout_ms = 1'000;
  c.busy_retry_delay_ms = 200;
  c.busy_retries_max = 3;
  return c;
}

// The plan for `file` with the given holders of every fragment, through plan_fetch.
std::vector<FileFragment> plan_of(const TestFile& file, const std::vector<ClientId>& holders) {
  std::vector<query::FragmentHolders> fragments;
  for (const auto& f : file.fragments) fragments.push_back({f.hash, f.size_bytes(), holders});
  const query::FileSummary summary{file.hash, static_cast<std::int64_t>(file.content.size()),
                                   file.fragments.size(), 0, 0};
  auto planned = plan_fetch(summary, fragments, {});
  EXPECT_TRUE(planned.ok());
  return std::move(planned).value();
}

Request decoded(const OutgoingRequest& r) {
  auto request = decode_request(r.payload);
  EXPECT_TRUE(request.ok()) << r.payload;
  return request.ok() ? *request : Request{};
}

// What an edge holding `fragment` answers to `r`, as the requester receives it.
IncomingResponse ok_answer(const OutgoingRequest& r, const Bytes& fragment) {
  const Request wanted = decoded(r);
  Reply reply;
  reply.topic = r.response_topic;
  reply.correlation_data = r.correlation_data;
  reply.header = ResponseHeader{Status::ok, static_cast<std::int64_t>(fragment.size()),
                                wanted.offset_bytes, ""};
  reply.length_bytes = std::min(wanted.length_bytes,
                                static_cast<std::int64_t>(fragment.size()) - wanted.offset_bytes);
  return testing::delivered(reply, &fragment);
}

IncomingResponse status_answer(const OutgoingRequest& r, Status status, std::string reason) {
  Reply reply;
  reply.topic = r.response_topic;
  reply.correlation_data = r.correlation_data;
  reply.header = ResponseHeader{status, 0, 0, std::move(reason)};
  return testing::delivered(reply, nullptr);
}

struct FetchClient : ::testing::Test {
  SplitMix64 random{42};
  TestFile file = cut_file(pattern(4 * 1000 + 300, 3), 1000);  // 5 fragments, the last of 300

  const Bytes& data_of(const OutgoingRequest& r) {
    const Hash wanted = decoded(r).hash;
    for (const auto& f : file.fragments)
      if (f.hash == wanted) return f.data;
    ADD_FAILURE() << "a request for a fragment not in the file";
    return file.fragments[0].data;
  }
  std::size_t index_of(const OutgoingRequest& r) {
    const Hash wanted = decoded(r).hash;
    for (std::size_t i = 0; i < file.fragments.size(); ++i)
      if (file.fragments[i].hash == wanted) return i;
    return file.fragments.size();
  }
};

TEST(FetchPlan, OffsetsFollowTheSequenceAndTopicsTheEndpoints) {
  const TestFile file = cut_file(pattern(2500, 1), 1000);
  std::vector<query::FragmentHolders> fragments;
  for (const auto& f : file.fragments) fragments.push_back({f.hash, f.size_bytes(), {"a", "b"}});
  const query::FileSummary summary{file.hash, 2500, 3, 2, 0};
  std::vector<query::ClientSummary> clients(2);
  clients[0].id = "a";
  clients[0].endpoints = {"https://a.example/", "mqtt:mqds/fetch/request/a-fetcher"};
  clients[1].id = "c";  // not a holder: harmless
  const auto planned = plan_fetch(summary, fragments, clients);
  ASSERT_TRUE(planned.ok()) << planned.error().to_string();
  ASSERT_EQ(planned->size(), 3u);
  EXPECT_EQ((*planned)[0].offset_bytes, 0);
  EXPECT_EQ((*planned)[1].offset_bytes, 1000);
  EXPECT_EQ((*planned)[2].offset_bytes, 2000);
  EXPECT_EQ((*planned)[2].size_bytes, 500);
  EXPECT_EQ((*planned)[1].hash, file.fragments[1].hash);
  // "a" announced its fetch endpoint; "b" is unknown to the answer: the default topic.
  EXPECT_EQ((*planned)[0].holders, (std::vector<Holder>{{"a", "mqds/fetch/request/a-fetcher"},
                                                        {"b", "mqds/fetch/request/b"}}));
  EXPECT_FALSE((*planned)[0].present);
}

TEST(FetchPlan, FragmentsThatDoNotAddUpToTheFileAreAnError) {
  const TestFile file = cut_file(pattern(2500, 1), 1000);
  std::vector<query::FragmentHolders> fragments;
  for (const auto& f : file.fragments) fragments.push_back({f.hash, f.size_bytes(), {"a"}});
  fragments.pop_back();
  const auto planned = plan_fetch({file.hash, 2500, 3, 1, 0}, fragments, {});
  ASSERT_FALSE(planned.ok());
  EXPECT_EQ(planned.error().to_string(),
            "the tracker's fragments of " + file.hash.to_hex() + " do not add up to its size");
}

TEST_F(FetchClient, StartsParallelRequestsEachFragmentWithAnotherHolder) {
  Client client(config(3), plan_of(file, {"a", "b", "c"}), random);
  const ClientOutput out = client.start(0);
  ASSERT_EQ(out.requests.size(), 3u);
  EXPECT_EQ(client.in_flight(), 3u);
  EXPECT_EQ(out.requests[0].topic, "mqds/fetch/request/a");
  EXPECT_EQ(out.requests[1].topic, "mqds/fetch/request/b");
  EXPECT_EQ(out.requests[2].topic, "mqds/fetch/request/c");
  for (std::size_t i = 0; i < 3; ++i) {
    const Request r = decoded(out.requests[i]);
    EXPECT_EQ(r.hash, file.fragments[i].hash);
    EXPECT_EQ(r.offset_bytes, 0);
    EXPECT_EQ(r.length_bytes, 1000);
    EXPECT_EQ(out.requests[i].response_topic, my_topic);
  }
  EXPECT_EQ(client.next_deadline_ms(), 1'000);
  EXPECT_FALSE(client.finished());
}

TEST_F(FetchClient, CorrelationDataIsSixteenRandomBytesInHexNeverRepeated) {
  Client client(config(5), plan_of(file, {"a"}), random);
  const ClientOutput out = client.start(0);
  std::set<std::string> seen;
  for (const auto& r : out.requests) {
    EXPECT_EQ(r.correlation_data.size(), 32u);
    EXPECT_EQ(r.correlation_data.find_first_not_of("0123456789abcdef"), std::string::npos);
    seen.insert(r.correlation_data);
  }
  EXPECT_EQ(seen.size(), 5u);
  // Another seed, other correlations: nothing to guess from a sequence.
  SplitMix64 other{43};
  Client second(config(5), plan_of(file, {"a"}), other);
  for (const auto& r : second.start(0).requests) EXPECT_FALSE(seen.count(r.correlation_data));
}

TEST_F(FetchClient, EveryFragmentVerifiedComesOutAtItsOffset) {
  Client client(config(2), plan_of(file, {"a", "b"}), random);
  std::vector<OutgoingRequest> pending = client.start(0).requests;
  Bytes assembled(file.content.size());
  std::size_t completed = 0;
  while (!pending.empty()) {
    const OutgoingRequest r = pending.front();
    pending.erase(pending.begin());
    ClientOutput out = client.on_response(10, ok_answer(r, data_of(r)));
    for (auto& c : out.completed) {
      EXPECT_EQ(c.offset_bytes, client.fragments()[c.index].offset_bytes);
      std::copy(c.data.begin(), c.data.end(), assembled.begin() + c.offset_bytes);
      ++completed;
    }
    EXPECT_LE(client.in_flight(), 2u);
    pending.insert(pending.end(), out.requests.begin(), out.requests.end());
  }
  EXPECT_EQ(completed, 5u);
  EXPECT_TRUE(client.finished());
  EXPECT_TRUE(client.complete());
  EXPECT_TRUE(client.missing().empty());
  EXPECT_EQ(client.done_bytes(), 4300);
  EXPECT_EQ(assembled, file.content);
  EXPECT_EQ(client.next_deadline_ms(), std::nullopt);
  EXPECT_EQ(client.metrics().bytes_received, 4300u);
}

TEST_F(FetchClient, FragmentsAlreadyPresentAreNeverRequested) {
  auto plan = plan_of(file, {"a"});
  plan[0].present = plan[2].present = plan[4].present = true;
  Client client(config(8), plan, random);
  EXPECT_EQ(client.done_bytes(), 2300);
  const ClientOutput out = client.start(0);
  ASSERT_EQ(out.requests.size(), 2u);
  EXPECT_EQ(index_of(out.requests[0]), 1u);
  EXPECT_EQ(index_of(out.requests[1]), 3u);
  for (const auto& r : out.requests)
    EXPECT_EQ(client.on_response(1, ok_answer(r, data_of(r))).completed.size(), 1u);
  EXPECT_TRUE(client.complete());
  EXPECT_EQ(client.done_bytes(), 4300);
}

TEST_F(FetchClient, AllPresentIsFinishedAtOnce) {
  auto plan = plan_of(file, {"a"});
  for (auto& f : plan) f.present = true;
  Client client(config(), plan, random);
  EXPECT_TRUE(client.start(0).empty());
  EXPECT_TRUE(client.complete());
}

TEST_F(FetchClient, AFragmentLargerThanAChunkIsAskedForChunkByChunkFromOneHolder) {
  const std::int64_t size = 2 * chunk_bytes_max + 12345;
  const TestFile large = cut_file(pattern(static_cast<std::size_t>(size), 9), size);
  Client client(config(), plan_of(large, {"a", "b"}), random);
  OutgoingRequest r = client.start(0).requests.at(0);
  std::vector<std::int64_t> offsets, lengths;
  for (int chunk = 0; chunk < 3; ++chunk) {
    offsets.push_back(decoded(r).offset_bytes);
    lengths.push_back(decoded(r).length_bytes);
    EXPECT_EQ(r.topic, "mqds/fetch/request/a");
    ClientOutput out = client.on_response(chunk, ok_answer(r, large.fragments[0].data));
    if (chunk < 2) {
      ASSERT_EQ(out.requests.size(), 1u);
      EXPECT_TRUE(out.completed.empty());
      r = out.requests[0];
    } else {
      EXPECT_TRUE(out.requests.empty());
      ASSERT_EQ(out.completed.size(), 1u);
      EXPECT_TRUE(out.completed[0].data == std::string(large.content.begin(), large.content.end()));
    }
  }
  EXPECT_EQ(offsets, (std::vector<std::int64_t>{0, chunk_bytes_max, 2 * chunk_bytes_max}));
  EXPECT_EQ(lengths, (std::vector<std::int64_t>{chunk_bytes_max, chunk_bytes_max, 12345}));
  EXPECT_TRUE(client.complete());
}

TEST_F(FetchClient, BusyIsAskedAgainOfTheSameHolderAfterTheDelayThenTheNextHolder) {
  auto plan = plan_of(file, {"a", "b"});
  plan.resize(1);
  Client client(config(), plan, random);
  OutgoingRequest r = client.start(0).requests.at(0);
  for (int retry = 1; retry <= 3; ++retry) {
    EXPECT_TRUE(client.on_response(100, status_answer(r, Status::busy, "full")).empty());
    EXPECT_EQ(client.in_flight(), 0u);
    EXPECT_EQ(client.next_deadline_ms(), 300);
    EXPECT_TRUE(client.on_tick(299).empty());
    const ClientOutput again = client.on_tick(300);
    ASSERT_EQ(again.requests.size(), 1u);
    r = again.requests[0];
    EXPECT_EQ(r.topic, "mqds/fetch/request/a");
    EXPECT_EQ(client.next_deadline_ms(), 1'300);  // the request's own timeout
  }
  // The fourth busy in a row: given up on "a".
  const ClientOutput next = client.on_response(400, status_answer(r, Status::busy, "full"));
  ASSERT_EQ(next.requests.size(), 1u);
  EXPECT_EQ(next.requests[0].topic, "mqds/fetch/request/b");
  EXPECT_EQ(client.metrics().busy_retries, 3u);
  client.on_response(401, ok_answer(next.requests[0], file.fragments[0].data));
  EXPECT_TRUE(client.complete());
}

TEST_F(FetchClient, ARequestTheBrokerRefusedIsAskedAgainLikeBusyThenTheNextHolder) {
  auto plan = plan_of(file, {"a", "b"});
  plan.resize(1);
  Client client(config(), plan, random);
  OutgoingRequest r = client.start(0).requests.at(0);
  // A refusal of something no longer in flight changes nothing.
  EXPECT_TRUE(client.on_refused(50, "not a correlation", 0x87).empty());
  EXPECT_EQ(client.in_flight(), 1u);
  for (int retry = 1; retry <= 3; ++retry) {
    EXPECT_TRUE(client.on_refused(100, r.correlation_data, 0x87).empty());
    EXPECT_EQ(client.in_flight(), 0u);
    EXPECT_EQ(client.next_deadline_ms(), 300);
    const ClientOutput again = client.on_tick(300);
    ASSERT_EQ(again.requests.size(), 1u);
    EXPECT_NE(again.requests[0].correlation_data, r.correlation_data);
    r = again.requests[0];
    EXPECT_EQ(r.topic, "mqds/fetch/request/a");
  }
  // The fourth refusal in a row: given up on "a", and the problem says why.
  const ClientOutput next = client.on_refused(400, r.correlation_data, 0x87);
  ASSERT_EQ(next.requests.size(), 1u);
  EXPECT_EQ(next.requests[0].topic, "mqds/fetch/request/b");
  EXPECT_EQ(client.metrics().refused_retries, 3u);
  client.on_response(401, ok_answer(next.requests[0], file.fragments[0].data));
  ASSERT_TRUE(client.complete());
  EXPECT_TRUE(client.missing().empty());
  // The late answer of a refused request is ignored.
  EXPECT_TRUE(client.on_response(402, ok_answer(r, file.fragments[0].data)).empty());
}

TEST_F(FetchClient, ARetryWaitingKeepsItsSlot) {
  Client client(config(2), plan_of(file, {"a"}), random);
  const ClientOutput out = client.start(0);
  ASSERT_EQ(out.requests.size(), 2u);
  // Busy: the fragment waits to retry, and no third fragment takes its place meanwhile.
  EXPECT_TRUE(client.on_response(1, status_answer(out.requests[0], Status::busy, "")).empty());
  const ClientOutput done =
      client.on_response(2, ok_answer(out.requests[1], data_of(out.requests[1])));
  ASSERT_EQ(done.requests.size(), 1u);  // the third fragment, in the freed slot
  EXPECT_EQ(index_of(done.requests[0]), 2u);
}

// Every answer that makes the client give up on a holder, and the problem it keeps for it.
TEST_F(FetchClient, AnswersThatDoNotServeTheFragmentMoveToTheNextHolder) {
  struct Case {
    const char* name;
    std::function<IncomingResponse(const OutgoingRequest&, const Bytes&)> answer;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {"not-found",
       [](auto& r, auto&) { return status_answer(r, Status::not_found, "not stored here"); },
       "not-found (not stored here)"},
      {"bad-request", [](auto& r, auto&) { return status_answer(r, Status::bad_request, "no"); },
       "bad-request (no)"},
      {"no status",
       [](auto& r, auto& d) {
         auto a = ok_answer(r, d);
         a.user_properties.erase(a.user_properties.begin());
         return a;
       },
       "an answer that is not understood (Status: missing)"},
      {"unknown status",
       [](auto& r, auto& d) {
         auto a = ok_answer(r, d);
         a.user_properties[0].second = "maybe";
         return a;
       },
       "an answer that is not understood (Status: unknown 'maybe')"},
      {"wrong offset",
       [](auto& r, auto& d) {
         auto a = ok_answer(r, d);
         a.user_properties = encode_response_properties({Status::ok, 1000, 10, ""});
         return a;
       },
       "an answer that does not fit the fragment (Offset 10, Size 1000, 1000 bytes for 1000 at 0 "
       "of 1000)"},
      {"wrong size",
       [](auto& r, auto& d) {
         auto a = ok_answer(r, d);
         a.user_properties = encode_response_properties({Status::ok, 999, 0, ""});
         return a;
       },
       "an answer that does not fit the fragment (Offset 0, Size 999, 1000 bytes for 1000 at 0 of "
       "1000)"},
      {"empty payload",
       [](auto& r, auto& d) {
         auto a = ok_answer(r, d);
         a.payload.clear();
         return a;
       },
       "an answer that does not fit the fragment (Offset 0, Size 1000, 0 bytes for 1000 at 0 of "
       "1000)"},
      {"oversized payload",
       [](auto& r, auto& d) {
         auto a = ok_answer(r, d);
         a.payload += "x";
         return a;
       },
       "an answer that does not fit the fragment (Offset 0, Size 1000, 1001 bytes for 1000 at 0 of "
       "1000)"},
      {"bad data",
       [](auto& r, auto& d) {
         auto a = ok_answer(r, d);
         a.payload[500] ^= 1;
         return a;
       },
       ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto plan = plan_of(file, {"a", "b"});
    plan.resize(1);
    Client client(config(), plan, random);
    const OutgoingRequest first = client.start(0).requests.at(0);
    EXPECT_EQ(first.topic, "mqds/fetch/request/a");
    const ClientOutput out = client.on_response(5, c.answer(first, file.fragments[0].data));
    EXPECT_TRUE(out.completed.empty());
    ASSERT_EQ(out.requests.size(), 1u);
    EXPECT_EQ(out.requests[0].topic, "mqds/fetch/request/b");
    EXPECT_EQ(decoded(out.requests[0]).offset_bytes, 0);
    // "b" fails the same way: the fragment is missing, with both problems.
    const ClientOutput last =
        client.on_response(6, c.answer(out.requests[0], file.fragments[0].data));
    EXPECT_TRUE(last.empty());
    EXPECT_TRUE(client.finished());
    EXPECT_FALSE(client.complete());
    const auto missing = client.missing();
    ASSERT_EQ(missing.size(), 1u);
    EXPECT_EQ(missing[0].index, 0u);
    EXPECT_EQ(missing[0].hash, file.fragments[0].hash);
    ASSERT_EQ(missing[0].problems.size(), 2u);
    EXPECT_EQ(missing[0].problems[0].holder, "a");
    EXPECT_EQ(missing[0].problems[1].holder, "b");
    if (!c.problem.empty()) {
      EXPECT_EQ(missing[0].problems[0].problem, c.problem);
    }
    EXPECT_EQ(client.metrics().fallbacks, 2u);
  }
}

TEST_F(FetchClient, BadDataNamesWhatItHashesTo) {
  auto plan = plan_of(file, {"a"});
  plan.resize(1);
  Client client(config(), plan, random);
  const OutgoingRequest r = client.start(0).requests.at(0);
  IncomingResponse answer = ok_answer(r, file.fragments[0].data);
  answer.payload[0] ^= 1;
  const Hash actual = sha256(std::string_view(answer.payload));
  EXPECT_TRUE(client.on_response(1, answer).empty());
  EXPECT_EQ(client.missing().at(0).problems.at(0).problem,
            "bad data (hashes to " + actual.to_hex() + ")");
}

TEST_F(FetchClient, NoAnswerInTimeMovesToTheNextHolderAndALateAnswerIsIgnored) {
  auto plan = plan_of(file, {"a", "b"});
  plan.resize(1);
  Client client(config(), plan, random);
  const OutgoingRequest to_a = client.start(0).requests.at(0);
  EXPECT_TRUE(client.on_tick(999).empty());
  const ClientOutput out = client.on_tick(1'000);
  ASSERT_EQ(out.requests.size(), 1u);
  EXPECT_EQ(out.requests[0].topic, "mqds/fetch/request/b");
  EXPECT_EQ(client.metrics().timeouts, 1u);
  // "a" answers after all: too late, it changes nothing.
  EXPECT_TRUE(client.on_response(1'001, ok_answer(to_a, file.fragments[0].data)).empty());
  EXPECT_EQ(client.metrics().responses_ignored, 1u);
  EXPECT_EQ(client.in_flight(), 1u);
  // "b" never answers either.
  EXPECT_TRUE(client.on_tick(2'000).empty());
  EXPECT_TRUE(client.finished());
  const auto missing = client.missing();
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].problems, (std::vector<HolderProblem>{{"a", "no answer within 1000 ms"},
                                                             {"b", "no answer within 1000 ms"}}));
}

TEST_F(FetchClient, ForgedAnswersAreIgnored) {
  auto plan = plan_of(file, {"a", "b"});
  plan.resize(1);
  Client client(config(), plan, random);
  const OutgoingRequest r = client.start(0).requests.at(0);
  // Someone who guesses the sequence the command line once used.
  for (const char* guess : {"g1", "g2", "1", ""}) {
    IncomingResponse forged = status_answer(r, Status::not_found, "forged");
    forged.correlation_data = guess;
    EXPECT_TRUE(client.on_response(1, forged).empty());
  }
  // The right Correlation Data on another topic (another subscription of the requester).
  IncomingResponse elsewhere = status_answer(r, Status::not_found, "forged");
  elsewhere.topic = response_topic("cli-1", "query");
  EXPECT_TRUE(client.on_response(1, elsewhere).empty());
  EXPECT_EQ(client.metrics().responses_ignored, 5u);
  EXPECT_EQ(client.in_flight(), 1u);
  // The real answer still counts, once.
  const IncomingResponse real = ok_answer(r, file.fragments[0].data);
  EXPECT_EQ(client.on_response(2, real).completed.size(), 1u);
  EXPECT_TRUE(client.on_response(3, real).empty());
  EXPECT_EQ(client.metrics().responses_ignored, 6u);
  EXPECT_TRUE(client.complete());
}

TEST_F(FetchClient, AFragmentNobodyHoldsIsMissingWithNoProblem) {
  auto plan = plan_of(file, {});
  Client client(config(2), plan, random);
  EXPECT_TRUE(client.start(0).empty());
  EXPECT_TRUE(client.finished());
  const auto missing = client.missing();
  ASSERT_EQ(missing.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(missing[i].index, i);
    EXPECT_TRUE(missing[i].problems.empty());
  }
}

TEST_F(FetchClient, TheNextDeadlineIsTheEarliestTimeoutOrRetry) {
  Client client(config(2), plan_of(file, {"a"}), random);
  EXPECT_EQ(client.next_deadline_ms(), std::nullopt);
  const ClientOutput out = client.start(100);
  EXPECT_EQ(client.next_deadline_ms(), 1'100);
  client.on_response(150, status_answer(out.requests[0], Status::busy, ""));
  EXPECT_EQ(client.next_deadline_ms(), 350);
  client.on_tick(350);
  EXPECT_EQ(client.next_deadline_ms(), 1'100);  // the second request's timeout comes first
}

}  // namespace
}  // namespace mqds::fetch
