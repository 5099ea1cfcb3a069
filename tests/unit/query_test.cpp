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

// The Service with repair under way at k = 2: "d" left 4 s ago holding the second file's fragment
// and the only copy of a third file; "e" left 5 s ago holding a third copy of a fragment that has
// its two anyway; "f" left longer ago than the 10 s delay and "g" exactly that long ago, so their
// copies no longer count. A fourth file is staged, on no edge yet.
struct Repairing : Service {
  TestFile third = cut_file(pattern(80, 3), 100);   // 1 fragment, on "d" alone
  TestFile fourth = cut_file(pattern(90, 4), 100);  // 1 fragment, staged
  std::map<ClientId, std::int64_t> away_since_ms{
      {"d", 1'000}, {"e", 0}, {"f", -20'000}, {"g", -5'000}};
  std::map<ClientId, std::set<Hash>> holdings;
  RepairFacts facts;
  int summaries = 0;

  Repairing() {
    for (const auto* f : {&third, &fourth}) {
      view.put_file(f->hash, f->metadata);
      view.put_fragment(f->fragments[0].hash, f->fragments[0].size_bytes());
    }
    holdings["d"] = {second.fragments[0].hash, third.fragments[0].hash};
    holdings["e"] = {first.fragments[0].hash};
    holdings["f"] = {first.fragments[0].hash, fourth.fragments[0].hash};
    facts.now_ms = 5'000;
    facts.repair_delay_ms = 10'000;
    facts.away_since_ms = &away_since_ms;
    facts.holdings = &holdings;
    facts.is_staged = [this](const Hash& h) { return h == fourth.fragments[0].hash; };
    facts.summary = [this] {
      ++summaries;
      return RepairSummary{3, 10, 6, 1, 4, 1, 10'000};
    };
  }

  const FileSummary& of(const Answer& a, const TestFile& file) const {
    for (const auto& f : a.files)
      if (f.hash == file.hash) return f;
    static const FileSummary none;
    ADD_FAILURE() << "no entry for " << file.hash.to_hex();
    return none;
  }
};

TEST(Query, FilesSayWhichFragmentsAreUnavailableAndWhichShortOnesHaveACopyAway) {
  Repairing s;
  const Answer a = answer(s.view, 2, Request{Kind::files, std::nullopt, 0, 10}, &s.facts);
  ASSERT_EQ(a.files.size(), 4u);
  // Fully replicated: nothing short, nothing unavailable, whatever "e" holds ("f"'s copy is past
  // the delay anyway).
  EXPECT_EQ(s.of(a, s.first).fragments_under_replicated, 0u);
  EXPECT_EQ(s.of(a, s.first).fragments_unavailable, 0u);
  EXPECT_EQ(s.of(a, s.first).fragments_short_held_away, 0u);
  // One copy on "b", the other on "d", away: short, and waited for.
  EXPECT_EQ(s.of(a, s.second).replicas_min, 1u);
  EXPECT_EQ(s.of(a, s.second).fragments_under_replicated, 1u);
  EXPECT_EQ(s.of(a, s.second).fragments_unavailable, 0u);
  EXPECT_EQ(s.of(a, s.second).fragments_short_held_away, 1u);
  // Its only copy is on "d": nobody can read it until "d" is back.
  EXPECT_EQ(s.of(a, s.third).replicas_min, 0u);
  EXPECT_EQ(s.of(a, s.third).fragments_unavailable, 1u);
  EXPECT_EQ(s.of(a, s.third).fragments_short_held_away, 1u);
  // Staged: the distribution has it, so it is short but not unavailable; "f"'s copy no longer
  // counts, so nothing is waited for.
  EXPECT_EQ(s.of(a, s.fourth).fragments_under_replicated, 1u);
  EXPECT_EQ(s.of(a, s.fourth).fragments_unavailable, 0u);
  EXPECT_EQ(s.of(a, s.fourth).fragments_short_held_away, 0u);
  EXPECT_EQ(s.summaries, 0) << "a files answer needs no gauges";
  EXPECT_TRUE(a.away.empty());
  EXPECT_EQ(a.repair, std::nullopt);
  EXPECT_EQ(round_trip(a), a);
  // The same for a single file, as `mqds get` asks.
  const Answer one = answer(s.view, 2, Request{Kind::file, s.third.hash, 0, 10}, &s.facts);
  ASSERT_TRUE(one.file);
  EXPECT_EQ(one.file->fragments_unavailable, 1u);
  EXPECT_EQ(round_trip(one), one);
}

TEST(Query, ClientsListTheEdgesAwayWhoseCopiesStillCountAndTheRepairs) {
  Repairing s;
  const Answer a = answer(s.view, 2, Request{Kind::clients, std::nullopt, 0, 10}, &s.facts);
  EXPECT_EQ(a.clients.size(), 3u);
  EXPECT_EQ(a.away_total, 2u) << "f and g have been away for the delay: they are gone";
  EXPECT_EQ(a.away, (std::vector<AwayClient>{{"d", 4'000, 6'000, 2}, {"e", 5'000, 5'000, 1}}));
  EXPECT_EQ(a.repair, (RepairSummary{3, 10, 6, 1, 4, 1, 10'000}));
  EXPECT_EQ(s.summaries, 1);
  EXPECT_EQ(round_trip(a), a);
  const std::string wire = encode_answer(a);
  EXPECT_NE(wire.find("{\"AwayMs\":4000,\"ClientIdentifier\":\"d\",\"CountsForMs\":6000,"
                      "\"Fragments\":2}"),
            std::string::npos)
      << wire;
  EXPECT_NE(wire.find("\"Repair\":{\"DelayMs\":10000,\"Ended\":6,\"Failed\":1,\"InFlight\":3,"
                      "\"Started\":10,\"Unavailable\":1,\"UnderReplicated\":4}"),
            std::string::npos)
      << wire;
}

TEST(Query, AwayEdgesArePagedLikeTheClients) {
  Repairing s;
  const Answer second = answer(s.view, 2, Request{Kind::clients, std::nullopt, 1, 1}, &s.facts);
  ASSERT_EQ(second.clients.size(), 1u);
  EXPECT_EQ(second.clients[0].id, "b");
  EXPECT_EQ(second.away_total, 2u);
  ASSERT_EQ(second.away.size(), 1u);
  EXPECT_EQ(second.away[0].id, "e");
  // Past the away list, the clients go on alone.
  const Answer third = answer(s.view, 2, Request{Kind::clients, std::nullopt, 2, 1}, &s.facts);
  EXPECT_EQ(third.clients.size(), 1u);
  EXPECT_TRUE(third.away.empty());
}

TEST(Query, WithoutFactsOrFromAnOlderTrackerTheRepairFieldsAreAbsent) {
  Repairing s;
  const Answer files = answer(s.view, 2, Request{Kind::files, std::nullopt, 0, 10});
  const Answer clients = answer(s.view, 2, Request{Kind::clients, std::nullopt, 0, 10});
  for (const auto& f : files.files) {
    EXPECT_EQ(f.fragments_unavailable, std::nullopt);
    EXPECT_EQ(f.fragments_short_held_away, std::nullopt);
  }
  EXPECT_EQ(clients.away_total, std::nullopt);
  EXPECT_EQ(clients.repair, std::nullopt);
  const std::string wire = encode_answer(files) + encode_answer(clients);
  for (const char* name : {"Unavailable", "ShortHeldAway", "Away", "Repair"})
    EXPECT_EQ(wire.find(name), std::string::npos) << name << " in " << wire;
  // An answer as a tracker before them wrote it.
  auto old = decode_answer(
      "{\"Replicas\":2,\"FragmentSize\":100,\"Revision\":1,\"Total\":1,\"Offset\":0,"
      "\"Files\":[{\"Hash\":\"" +
      s.first.hash.to_hex() +
      "\",\"Size\":250,\"Fragments\":3,\"ReplicasMin\":2,"
      "\"UnderReplicated\":0}]}");
  ASSERT_TRUE(old.ok()) << old.error().to_string();
  EXPECT_EQ(old->files.at(0).fragments_unavailable, std::nullopt);
  EXPECT_EQ(old->away_total, std::nullopt);
}

TEST(Query, BadRepairFieldsAreRejectedNamingThem) {
  auto error = [](const std::string& extra) {
    auto r = decode_answer(
        "{\"Replicas\":2,\"FragmentSize\":1,\"Revision\":1,\"Total\":0,\"Offset\":0," + extra +
        "}");
    return r ? std::string("decoded") : r.error().to_string();
  };
  EXPECT_EQ(error("\"Away\":[{\"ClientIdentifier\":\"d\",\"AwayMs\":-1,\"CountsForMs\":0,"
                  "\"Fragments\":0}]"),
            "Away[0].AwayMs: must not be negative");
  EXPECT_EQ(error("\"Away\":[{\"ClientIdentifier\":\"\",\"AwayMs\":1,\"CountsForMs\":0,"
                  "\"Fragments\":0}]"),
            "Away[0].ClientIdentifier: must not be empty");
  EXPECT_EQ(error("\"Repair\":{\"InFlight\":1}"), "Repair.Started: missing");
  EXPECT_EQ(error("\"AwayTotal\":\"two\""), "AwayTotal: must be an integer");
  std::string many = "\"Away\":[";
  for (std::size_t i = 0; i <= page_max; ++i) many += std::string(i ? "," : "") + "{}";
  EXPECT_NE(error(many + "]").find("Away"), std::string::npos) << "over page_max entries";
}

TEST(Query, ResponseTopicsBelongToTheirRequester) {
  EXPECT_EQ(requester_of_response_topic("mqds/query/response/cli"), "cli");
  EXPECT_EQ(requester_of_response_topic("mqds/query/response/cli/1"), "cli");
  EXPECT_EQ(requester_of_response_topic("mqds/query/response/#"), std::nullopt);
  EXPECT_EQ(requester_of_response_topic("mqds/fetch/response/cli"), std::nullopt);
}

}  // namespace
}  // namespace mqds::query
