// Unit tests of the query answers the tracker gives `mqds ls`, `status` and `get`: computed from a
// view, paged, and read back by the command line exactly as they were written.
#include "mqds/query.hpp"

#include <gtest/gtest.h>

#include "support/machine_harness.hpp"

namespace mqds::query {
namespace {

using mqds::testing::cut_file;
using mqds::testing::pattern;
using mqds::testing::TestFile;

// Two files over three clients at k = 2: the first fully replicated, the second missing one copy.
struct Service {
  DistributionView view;
  TestFile first = cut_file(pattern(250, 1), 100);   // 3 fragments
  TestFile second = cut_file(pattern(100, 2), 100);  // 1 fragment

  Service() {
    view.set_fragment_size(100);
    view.set_revision(9);
    for (const auto* f : {&first, &second}) {
      view.put_file(f->hash, f->metadata);
      for (const auto& fragment : f->fragments)
        view.put_fragment(fragment.hash, fragment.size_bytes());
    }
    view.put_client("a", ClientMetadata{{"mqtt:mqds/fetch/request/a"},
                                        {first.fragments[0].hash, first.fragments[1].hash,
                                         first.fragments[2].hash},
                                        1000});
    view.put_client("b", ClientMetadata{{"mqtt:mqds/fetch/request/b"},
                                        {first.fragments[0].hash, first.fragments[1].hash,
                                         second.fragments[0].hash},
                                        std::nullopt});
    view.put_client(
        "c",
        ClientMetadata{{"mqtt:mqds/fetch/request/c"}, {first.fragments[2].hash}, std::nullopt});
  }
};

Answer round_trip(const Answer& a) {
  auto decoded = decode_answer(encode_answer(a));
  EXPECT_TRUE(decoded.ok()) << decoded.error().to_string();
  return decoded.ok() ? *decoded : Answer{};
}

TEST(Query, FilesSayHowWellEachIsReplicated) {
  Service s;
  const Answer a = answer(s.view, 2, Request{Kind::files, std::nullopt, 0, 10});
  ASSERT_EQ(a.files.size(), 2u);
  EXPECT_EQ(a.total, 2u);
  EXPECT_EQ(a.replicas, 2u);
  EXPECT_EQ(a.revision, 9u);
  for (const auto& f : a.files) {
    if (f.hash == s.first.hash) {
      EXPECT_EQ(f.fragments, 3u);
      EXPECT_EQ(f.size_bytes, 250);
      EXPECT_EQ(f.replicas_min, 2u);
      EXPECT_EQ(f.fragments_under_replicated, 0u);
    } else {
      EXPECT_EQ(f.replicas_min, 1u);
      EXPECT_EQ(f.fragments_under_replicated, 1u);
    }
  }
  EXPECT_EQ(round_trip(a), a);
}

TEST(Query, ClientsSayWhatEachStores) {
  Service s;
  const Answer a = answer(s.view, 2, Request{Kind::clients, std::nullopt, 0, 10});
  ASSERT_EQ(a.clients.size(), 3u);
  EXPECT_EQ(a.clients[0].id, "a");
  EXPECT_EQ(a.clients[0].fragments, 3u);
  EXPECT_EQ(a.clients[0].bytes, 250);
  EXPECT_EQ(a.clients[0].capacity_bytes, 1000);
  EXPECT_EQ(a.clients[1].capacity_bytes, std::nullopt);
  EXPECT_EQ(a.clients[2].endpoints, (std::set<std::string>{"mqtt:mqds/fetch/request/c"}));
  EXPECT_EQ(round_trip(a), a);
}

TEST(Query, AFileListsItsFragmentsInOrderWithTheirHolders) {
  Service s;
  const Answer a = answer(s.view, 2, Request{Kind::file, s.first.hash, 0, 10});
  ASSERT_TRUE(a.file);
  ASSERT_EQ(a.fragments.size(), 3u);
  EXPECT_EQ(a.fragments[0].hash, s.first.fragments[0].hash);
  EXPECT_EQ(a.fragments[0].holders, (std::vector<ClientId>{"a", "b"}));
  EXPECT_EQ(a.fragments[2].holders, (std::vector<ClientId>{"a", "c"}));
  EXPECT_EQ(a.fragments[2].size_bytes, 50);
  EXPECT_EQ(round_trip(a), a);
}

TEST(Query, PagesAreBoundedAndSayWhereTheyAre) {
  Service s;
  const Answer a = answer(s.view, 2, Request{Kind::file, s.first.hash, 1, 1});
  EXPECT_EQ(a.total, 3u);
  EXPECT_EQ(a.offset, 1u);
  ASSERT_EQ(a.fragments.size(), 1u);
  EXPECT_EQ(a.fragments[0].hash, s.first.fragments[1].hash);
  const Answer beyond = answer(s.view, 2, Request{Kind::clients, std::nullopt, 99, 5});
  EXPECT_TRUE(beyond.clients.empty());
  EXPECT_EQ(beyond.offset, 3u);
  auto decoded = decode_request("{\"Query\":\"files\",\"Limit\":99999999}");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->limit, page_max);
}

TEST(Query, AnUnknownFileIsAnErrorThatSaysWhich) {
  Service s;
  const Hash unknown = sha256(std::string_view("x"));
  const Answer a = answer(s.view, 2, Request{Kind::file, unknown, 0, 10});
  ASSERT_TRUE(a.error);
  EXPECT_EQ(*a.error, "no file " + unknown.to_hex());
  EXPECT_EQ(round_trip(a).error, a.error);
}

TEST(Query, BadRequestsNameTheField) {
  auto error = [](std::string_view payload) {
    auto r = decode_request(payload);
    return r ? std::string("decoded") : r.error().to_string();
  };
  EXPECT_EQ(error("{}"), "Query: missing");
  EXPECT_EQ(error("{\"Query\":\"everything\"}"),
            "Query: must be \"files\", \"clients\" or \"file\"");
  EXPECT_EQ(error("{\"Query\":\"file\"}"), "Hash: missing");
  EXPECT_EQ(error("{\"Query\":\"file\",\"Hash\":\"zz\"}"),
            "Hash: must be 64 hexadecimal characters");
  EXPECT_EQ(error("{\"Query\":\"files\",\"Offset\":-1}"), "Offset: must not be negative");
  EXPECT_EQ(error("nope"), "invalid JSON");
  const Request r{Kind::file, sha256(std::string_view("x")), 5, 7};
  auto decoded = decode_request(encode_request(r));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, r);
}

TEST(Query, AnswersThatAreNotAnswersAreRejected) {
  EXPECT_FALSE(decode_answer("[]").ok());
  EXPECT_FALSE(decode_answer("{\"Replicas\":\"two\"}").ok());
  EXPECT_FALSE(
      decode_answer("{\"Replicas\":2,\"FragmentSize\":1,\"Revision\":1,\"Total\":1,\"Offset\":0,"
                    "\"Files\":[{\"Hash\":1}]}")
          .ok());
}

TEST(Query, ResponseTopicsBelongToTheirRequester) {
  EXPECT_EQ(requester_of_response_topic("mqds/query/response/cli"), "cli");
  EXPECT_EQ(requester_of_response_topic("mqds/query/response/cli/1"), "cli");
  EXPECT_EQ(requester_of_response_topic("mqds/query/response/#"), std::nullopt);
  EXPECT_EQ(requester_of_response_topic("mqds/fetch/response/cli"), std::nullopt);
}

}  // namespace
}  // namespace mqds::query
