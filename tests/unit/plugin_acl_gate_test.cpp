// The plugin's ACL rules without a broker: which writes are refused or watched, and how the
// delivery of a watched will is recognised. tests/broker/plugin_test.cpp (WillTest,
// BrokerAclTest) and tests/broker/fetch_test.cpp (FetchWillTest) check them in a real mosquitto.
#include <gtest/gtest.h>

#include <string>

#include "acl_gate.hpp"
#include "mqds/events.hpp"

namespace mqds::plugin {
namespace {

struct Gates {
  FetchGate fetch;
  AclGate acl;
  Gates(std::vector<std::string> ingest_users, std::vector<std::string> fetch_users)
      : fetch(FetchOptions{{std::move(fetch_users), false}}),
        acl(AllowedUsers{std::move(ingest_users), false}, fetch) {}
};

Write write_on(std::string_view topic, std::string_view payload = "{}", bool retain = false) {
  Write w;
  w.client_id = "c1";
  w.username = "alice";
  w.topic = topic;
  w.payload = payload;
  w.retain = retain;
  return w;
}

TEST(AclGate, TrackerTopicsAreRefusedAndCountedAsTheTrackersOwn) {
  Gates g({}, {});
  for (const auto topic :
       {topics::tracker_hello, topics::file_info_published, topics::client_registered,
        topics::client_join_accepted, topics::fragment_distribution_delivered}) {
    const auto d = g.acl.judge_write(0, write_on(topic));
    EXPECT_EQ(d.verdict, AclVerdict::refuse) << topic;
    EXPECT_TRUE(d.tracker_topic) << "the tracker counts and logs it: " << topic;
  }
}

TEST(AclGate, ClientEventsAreWatchedAndNeverRetained) {
  Gates g({}, {});
  EXPECT_EQ(g.acl.judge_write(0, write_on(topics::client_goodbye)).verdict, AclVerdict::watch);
  EXPECT_EQ(g.acl.judge_write(0, write_on(topics::client_join_requested)).verdict,
            AclVerdict::watch);
  const auto retained = g.acl.judge_write(0, write_on(topics::client_goodbye, "{}", true));
  EXPECT_EQ(retained.verdict, AclVerdict::refuse);
  ASSERT_TRUE(retained.log);
  EXPECT_NE(retained.log->text.find("an event is never retained"), std::string::npos);
}

TEST(AclGate, OtherTopicsAreLeftToTheBroker) {
  Gates g({}, {});
  for (const auto topic : {"plain/topic", "clients", "mqds/other", "$SYS/x"})
    EXPECT_EQ(g.acl.judge_write(0, write_on(topic)).verdict, AclVerdict::no_opinion) << topic;
  EXPECT_EQ(g.acl.judge_read(0, "reader", "tracker/hello", "{}").verdict, AclVerdict::no_opinion);
}

TEST(AclGate, FetchRulesThatNeedNoPropertiesAreAppliedToWrites) {
  Gates g({}, {"alice"});
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/fetch/request/edge-1")).verdict, AclVerdict::watch);
  auto mallory = write_on("mqds/fetch/request/edge-1");
  mallory.username = "mallory";
  const auto refused = g.acl.judge_write(0, mallory);
  EXPECT_EQ(refused.verdict, AclVerdict::refuse);
  EXPECT_EQ(refused.fetch, FetchRefusal::user_not_allowed) << "logged by the fetch gate";
  auto old = write_on("mqds/fetch/request/edge-1");
  old.protocol_version = 4;
  EXPECT_EQ(g.acl.judge_write(0, old).fetch, FetchRefusal::not_mqtt5);
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/fetch/request/edge-1", "{}", true)).fetch,
            FetchRefusal::retained_request);
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/fetch/x")).fetch, FetchRefusal::not_a_fetch_topic);
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/fetch/response/r")).verdict, AclVerdict::watch);
  // A response reaches the requester its topic names, and nobody else; query answers reach
  // requesters only through the plugin, which skips READ.
  EXPECT_EQ(g.acl.judge_read(0, "r", "mqds/fetch/response/r", "data").verdict, AclVerdict::allow);
  EXPECT_EQ(g.acl.judge_read(0, "r", "mqds/fetch/response/r/get", "data").verdict,
            AclVerdict::allow);
  EXPECT_EQ(g.acl.judge_read(0, "reader", "mqds/fetch/response/r", "data").verdict,
            AclVerdict::refuse);
  EXPECT_EQ(g.acl.judge_read(0, "r", "mqds/fetch/response/rr", "data").verdict, AclVerdict::refuse);
  EXPECT_EQ(g.acl.judge_read(0, "", "mqds/fetch/response/", "data").verdict, AclVerdict::refuse);
  EXPECT_EQ(g.acl.judge_read(0, "r", "mqds/query/response/r", "{}").verdict, AclVerdict::refuse);
}

TEST(AclGate, AnswersToTheTrackerPassWithFetchingOffAndAreReadByNobody) {
  // A torrent server answers the tracker's repair fetch on the tracker's response topic; fetching
  // for clients (fetch_users) has nothing to do with it.
  const std::string topic = "mqds/fetch/response/$mqds-tracker/repair";
  for (const bool fetching : {false, true}) {
    Gates g({}, fetching ? std::vector<std::string>{"alice"} : std::vector<std::string>{});
    const std::string one_chunk(1024, 'f');  // Write holds views: the bytes must outlive it
    auto edge = write_on(topic, one_chunk);
    edge.username = "board-1";
    EXPECT_EQ(g.acl.judge_write(0, edge).verdict, AclVerdict::watch)
        << "judged by the tracker in MESSAGE";
    EXPECT_EQ(g.acl.judge_write(0, write_on(topic, "x", true)).verdict, AclVerdict::refuse)
        << "never retained";
    const std::string too_large(FetchGate::response_payload_bytes_max + 1, 'f');
    EXPECT_EQ(g.acl.judge_write(0, write_on(topic, too_large)).fetch,
              FetchRefusal::response_too_large);
    g.acl.published();
    EXPECT_EQ(g.acl.judge_read(0, "$mqds-tracker", topic, "x").verdict, AclVerdict::refuse)
        << "not even by a client that took the tracker's name as its id";
    EXPECT_EQ(g.acl.judge_read(0, "reader", topic, "x").verdict, AclVerdict::refuse);
  }
  Gates off({}, {});
  EXPECT_EQ(off.acl.judge_write(0, write_on("mqds/fetch/response/r")).fetch,
            FetchRefusal::fetch_off)
      << "answers to clients still need fetching on";
}

TEST(AclGate, AWillOnAResponseTopicReachesNotEvenTheRequesterItNames) {
  Gates g({}, {"alice"});
  const std::string payload(300, 'z');
  ASSERT_EQ(g.acl.judge_write(0, write_on("mqds/fetch/response/r", payload)).verdict,
            AclVerdict::watch);
  const auto read = g.acl.judge_read(0, "r", "mqds/fetch/response/r", payload);
  EXPECT_EQ(read.verdict, AclVerdict::refuse);
  EXPECT_TRUE(read.log);
  EXPECT_EQ(g.acl.metrics().wills_refused, 1u);
  // The plugin's own copy of a response, published after the MESSAGE of the edge's: allowed.
  g.acl.published();
  EXPECT_EQ(g.acl.judge_read(0, "r", "mqds/fetch/response/r", payload).verdict, AclVerdict::allow);
}

TEST(AclGate, UploadsAndQueries) {
  Gates g({"alice"}, {});
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/ingest/begin")).verdict, AclVerdict::watch);
  auto stranger = write_on("mqds/ingest/begin");
  stranger.username = "bob";
  EXPECT_EQ(g.acl.judge_write(0, stranger).verdict, AclVerdict::watch)
      << "MESSAGE answers one who may not upload with a status";
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/ingest/status")).verdict, AclVerdict::refuse);
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/ingest/begin", "{}", true)).verdict,
            AclVerdict::refuse);
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/query/request")).verdict, AclVerdict::watch);
  EXPECT_EQ(g.acl.judge_write(0, write_on("mqds/query/response/x")).verdict, AclVerdict::refuse);
  auto bob = write_on("mqds/query/request");
  bob.username = "bob";
  EXPECT_EQ(g.acl.judge_write(0, bob).verdict, AclVerdict::refuse);
}

TEST(AclGate, TheDeliveryOfAWatchedWriteBeforeItsMessageIsAWillsAndIsRefused) {
  Gates g({}, {});
  const std::string payload(200, 'x');
  auto will = write_on(topics::client_goodbye, payload);
  ASSERT_EQ(g.acl.judge_write(0, will).verdict, AclVerdict::watch);
  // Another message on the topic, or other bytes: not the will.
  EXPECT_EQ(g.acl.judge_read(0, "reader", topics::client_goodbye, std::string(200, 'y')).verdict,
            AclVerdict::no_opinion);
  EXPECT_EQ(g.acl.judge_read(0, "reader", topics::client_join_requested, payload).verdict,
            AclVerdict::no_opinion);
  // Every subscriber's delivery is refused; the will is logged and counted once.
  const auto first = g.acl.judge_read(0, "reader", topics::client_goodbye, payload);
  EXPECT_EQ(first.verdict, AclVerdict::refuse);
  ASSERT_TRUE(first.log);
  EXPECT_NE(first.log->text.find("the will of client 'c1' on clients/goodbye reaches nobody"),
            std::string::npos)
      << first.log->text;
  const auto second = g.acl.judge_read(0, "reader", topics::client_goodbye, payload);
  EXPECT_EQ(second.verdict, AclVerdict::refuse);
  EXPECT_FALSE(second.log);
  EXPECT_EQ(g.acl.metrics().wills_refused, 1u);

  // A publish: its MESSAGE comes between the write and the deliveries.
  ASSERT_EQ(g.acl.judge_write(0, will).verdict, AclVerdict::watch);
  g.acl.published();
  EXPECT_EQ(g.acl.judge_read(0, "reader", topics::client_goodbye, payload).verdict,
            AclVerdict::no_opinion);
  // A write the broker refused after the plugin deferred: forgotten at the end of the loop pass.
  ASSERT_EQ(g.acl.judge_write(0, will).verdict, AclVerdict::watch);
  g.acl.loop_passed();
  EXPECT_EQ(g.acl.judge_read(0, "reader", topics::client_goodbye, payload).verdict,
            AclVerdict::no_opinion);
}

}  // namespace
}  // namespace mqds::plugin
