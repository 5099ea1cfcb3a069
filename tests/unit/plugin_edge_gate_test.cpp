// Who may be a torrent server and whose client id is whose, without a broker.
// tests/broker/edge_users_test.cpp checks the same rules in a real mosquitto with real boards.
#include <gtest/gtest.h>

#include <string>

#include "edge_gate.hpp"

namespace mqds::plugin {
namespace {

EdgeGate gate(std::vector<std::string> users, bool anyone, EdgeIds ids) {
  EdgeOptions options;
  options.users = std::move(users);
  options.anyone = anyone;
  options.ids = ids;
  return EdgeGate(options);
}

TEST(EdgeGate, NobodyIsATorrentServerUntilTheOperatorNamesThem) {
  const EdgeGate g = gate({}, false, EdgeIds::username);
  const auto why = g.refusal("board-1", "board-1");
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("plugin_opt_edge_users"), std::string::npos) << *why;
  EXPECT_FALSE(g.binds_ids()) << "with nobody allowed, no id is anybody's";
}

TEST(EdgeGate, OnlyNamedUsersUnderTheirOwnIds) {
  const EdgeGate g = gate({"board-1", "board-2"}, false, EdgeIds::username);
  EXPECT_FALSE(g.refusal("board-1", "board-1"));
  EXPECT_FALSE(g.refusal("board-2", "board-2"));

  const auto stranger = g.refusal("mallory", "mallory");
  ASSERT_TRUE(stranger);
  EXPECT_EQ(*stranger,
            "user 'mallory' may not be a torrent server: it is not in "
            "plugin_opt_edge_users");
  const auto anonymous = g.refusal("liar-1", nullptr);
  ASSERT_TRUE(anonymous);
  EXPECT_NE(anonymous->find("without a username"), std::string::npos) << *anonymous;
  const auto borrowed = g.refusal("board-2", "board-1");
  ASSERT_TRUE(borrowed) << "board-1 may not act as board-2";
  EXPECT_EQ(*borrowed,
            "a torrent server's client id must be its username ('board-1'), not "
            "'board-2' (plugin_opt_edge_ids username)");
}

TEST(EdgeGate, AnyIdLetsBoardsShareAnAccount) {
  const EdgeGate g = gate({"boards"}, false, EdgeIds::any);
  EXPECT_FALSE(g.refusal("board-1", "boards"));
  EXPECT_FALSE(g.refusal("board-2", "boards"));
  EXPECT_TRUE(g.refusal("board-3", "alice"));
  EXPECT_FALSE(g.binds_ids());
}

TEST(EdgeGate, StarWithBoundIdsStillNeedsAUsernameThatIsTheId) {
  const EdgeGate g = gate({}, true, EdgeIds::username);
  EXPECT_FALSE(g.refusal("anyone", "anyone"));
  EXPECT_TRUE(g.refusal("anyone", nullptr));
  EXPECT_TRUE(g.refusal("anyone", "someone-else"));
  const EdgeGate open = gate({}, true, EdgeIds::any);
  EXPECT_FALSE(open.refusal("anyone", nullptr)) << "the specification's open service";
}

TEST(EdgeGate, ClientIdsOfTorrentServersAreTheirsAlone) {
  EdgeGate g = gate({"board-1"}, false, EdgeIds::username);
  ASSERT_TRUE(g.binds_ids());
  // The board itself, and clients with ids of their own, are the broker's to judge.
  EXPECT_FALSE(g.judge_connect(0, "board-1", "board-1", false).refuse);
  EXPECT_FALSE(g.judge_connect(0, "mqds-get-1", "alice", false).refuse);
  EXPECT_FALSE(g.judge_connect(0, "mqds-get-2", nullptr, false).refuse);

  // A named board's id, asked for by somebody else or by nobody in particular.
  const auto taken = g.judge_connect(0, "board-1", "alice", false);
  EXPECT_TRUE(taken.refuse);
  ASSERT_TRUE(taken.log);
  EXPECT_NE(taken.log->text.find("'board-1'"), std::string::npos) << taken.log->text;
  EXPECT_NE(taken.log->text.find("'alice'"), std::string::npos) << taken.log->text;
  EXPECT_TRUE(g.judge_connect(1, "board-1", nullptr, false).refuse);
  // The id of a server the tracker knows, though not named (edge_users *, or named no more).
  EXPECT_TRUE(g.judge_connect(2, "board-9", "alice", true).refuse);
  EXPECT_FALSE(g.judge_connect(3, "board-9", "board-9", true).refuse);
  EXPECT_EQ(g.metrics().connects_refused, 3u);
}

TEST(EdgeGate, IdsAreNotProtectedWhenNotBound) {
  EdgeGate g = gate({"board-1"}, false, EdgeIds::any);
  EXPECT_FALSE(g.judge_connect(0, "board-1", "alice", true).refuse);
  EXPECT_EQ(g.metrics().connects_refused, 0u);
}

// In mosquitto 2.0.11 an answer to one client whose queue is full is never freed: a client that
// floods joins and never reads is told why once per connection, not once per join.
TEST(EdgeGate, ARefusedClientIsAnsweredOncePerConnection) {
  EdgeGate g = gate({"board-1"}, false, EdgeIds::username);
  EXPECT_TRUE(g.first_refusal("liar"));
  EXPECT_FALSE(g.first_refusal("liar"));
  EXPECT_TRUE(g.first_refusal("other"));
  g.forget("liar");
  EXPECT_TRUE(g.first_refusal("liar")) << "a new connection is told again";
}

TEST(EdgeGate, RefusalsAreLoggedAtMostOncePerInterval) {
  EdgeGate g = gate({"board-1"}, false, EdgeIds::username);
  EXPECT_TRUE(g.refused(0, "liar", nullptr, "clients/join/requested", "why"));
  EXPECT_FALSE(g.refused(1, "liar", nullptr, "clients/join/requested", "why"));
  EXPECT_FALSE(g.refused(2, "liar", nullptr, "clients/join/requested", "why"));
  const auto next = g.refused(EdgeGate::log_interval_ms, "liar", nullptr, "x", "why");
  ASSERT_TRUE(next);
  EXPECT_NE(next->text.find("and 2 more"), std::string::npos) << next->text;
  EXPECT_TRUE(g.judge_connect(1, "board-1", "alice", false).log)
      << "connections have their own interval";
}

}  // namespace
}  // namespace mqds::plugin
