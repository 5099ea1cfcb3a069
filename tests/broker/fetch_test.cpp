// Fetch through the real broker (common/include/mqds/fetch.hpp, plugin/fetch_gate.hpp): the plugin
// decides who may send a request, and delivers every response to its requester alone.
//
// The "edge" here is a plain MQTT client that answers like mqds-edge does: on the request's
// Response Topic, QoS 1, with the request's Correlation Data, User Properties and the raw bytes.
// "Nothing was received" is always checked after Client::sync(), a round trip through the broker
// that comes back after anything the broker queued for that client before it.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "broker.hpp"
#include "client.hpp"
#include "mqds/fetch.hpp"
#include "mqds/hash.hpp"
#include "mqds/random.hpp"

namespace mqds::broker_test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds delivery_timeout = 10s;
const std::string edge_id = "edge-1";
const std::string request_topic = fetch::request_topic(edge_id);

BrokerConfig fetch_config(const std::string& fetch_users) {
  BrokerConfig config;
  config.plugin_options = {{"startup_settle_ms", "0"}, {"metrics_interval_ms", "200"}};
  if (!fetch_users.empty()) config.plugin_options.emplace_back("fetch_users", fetch_users);
  return config;
}

// A request for `length` bytes of a fragment (a whole chunk unless told).
std::string request_payload(std::int64_t length = fetch::chunk_bytes_max) {
  fetch::Request request;
  request.hash = sha256(std::string_view("a fragment"));
  request.length_bytes = length;
  return fetch::encode_request(request);
}

std::string random_bytes(std::size_t size, std::uint64_t seed) {
  SplitMix64 random(seed);
  std::string bytes(size, '\0');
  for (auto& b : bytes) b = static_cast<char>(random.next_u64());
  return bytes;
}

// Correlation Data with bytes a string would not survive: a NUL, 0xFF, invalid UTF-8.
const std::string correlation = std::string("corr\0\xff\xfe-17", 11);

PublishProperties request_properties(const std::string& response_topic) {
  PublishProperties p;
  p.response_topic = response_topic;
  p.correlation_data = correlation;
  return p;
}

PublishProperties ok_response_properties(const std::string& correlation_data, std::size_t size) {
  PublishProperties p;
  p.correlation_data = correlation_data;
  p.user_properties = {{std::string(fetch::property_status), "ok"},
                       {std::string(fetch::property_size), std::to_string(size)},
                       {std::string(fetch::property_offset), "0"}};
  return p;
}

std::string describe_message(const Message& m) {
  return m.topic + " (" + std::to_string(m.payload.size()) + " bytes)";
}

// Every queued message that `match` accepts, after a sync: what the broker ever sent it so far.
std::vector<Message> received_after_sync(Client& client,
                                         const std::function<bool(const Message&)>& match) {
  EXPECT_TRUE(client.sync());
  std::vector<Message> found;
  while (auto m = client.wait_for(match, 0ms)) found.push_back(std::move(*m));
  return found;
}

class FetchTest : public ::testing::Test {
 protected:
  void start(BrokerConfig config) {
    broker = std::make_unique<Broker>(std::move(config));
    ASSERT_TRUE(broker->start());
  }

  // A connected client, with `username` if not empty.
  std::unique_ptr<Client> connected(const std::string& id, const std::string& username = {},
                                    Protocol protocol = Protocol::mqtt5) {
    auto client = std::make_unique<Client>(id, protocol);
    if (!username.empty()) client->set_credentials(username);
    auto ok = client->connect(broker->port());
    EXPECT_TRUE(ok) << broker->where();
    return client;
  }

  // A client subscribed to the requests of `edge_id`, as mqds-edge is.
  std::unique_ptr<Client> edge() {
    auto client = connected(edge_id);
    EXPECT_TRUE(client->subscribe(std::vector<std::string>{request_topic}, 1));
    return client;
  }

  // The $SYS/broker/mqds/fetch/* figures, once they all equal `expected` (or the last seen).
  std::map<std::string, std::string> wait_for_figures(
      const std::map<std::string, std::string>& expected) {
    Client monitor("metrics-monitor");
    EXPECT_TRUE(monitor.connect(broker->port()));
    EXPECT_TRUE(monitor.subscribe(std::vector<std::string>{"$SYS/broker/mqds/fetch/#"}, 0));
    std::map<std::string, std::string> figures;
    const auto deadline = Clock::now() + delivery_timeout;
    while (Clock::now() < deadline) {
      for (const auto& m : monitor.drain())
        figures[m.topic.substr(std::string("$SYS/broker/mqds/").size())] = m.payload;
      bool all = true;
      for (const auto& [name, value] : expected)
        all = all && figures.count(name) && figures[name] == value;
      if (all) break;
      std::this_thread::sleep_for(50ms);
    }
    return figures;
  }

  std::unique_ptr<Broker> broker;
};

// --- Off by default ------------------------------------------------------------------------------

TEST_F(FetchTest, OffByDefaultRequestsAndResponsesAreRefused) {
  start(fetch_config(""));
  auto edge_client = edge();
  auto getter = connected("getter");
  ASSERT_TRUE(getter->subscribe(std::vector<std::string>{"mqds/fetch/response/getter"}, 1));
  auto eve = connected("eve");
  ASSERT_TRUE(eve->subscribe(std::vector<std::string>{"#"}, 1));

  const int rc = getter->publish(request_topic, request_payload(), 1,
                                 request_properties("mqds/fetch/response/getter"));
  EXPECT_EQ(rc, reason::not_authorized) << describe_reason(rc);
  const int answered =
      edge_client->publish("mqds/fetch/response/getter", "data", 1, ok_response_properties("c", 4));
  EXPECT_EQ(answered, reason::not_authorized) << describe_reason(answered);

  const auto fetch_topic = [](const Message& m) { return m.topic.rfind("mqds/fetch/", 0) == 0; };
  EXPECT_TRUE(received_after_sync(*edge_client, fetch_topic).empty())
      << "the edge received a request";
  EXPECT_TRUE(received_after_sync(*getter, fetch_topic).empty())
      << "the getter received a response";
  EXPECT_TRUE(received_after_sync(*eve, fetch_topic).empty())
      << "a subscriber of # received fetch traffic";
  EXPECT_NE(broker->log().find("fetching is disabled; allow it with plugin_opt_fetch_users"),
            std::string::npos);
  EXPECT_NE(broker->log().find("fetching is off (no plugin_opt_fetch_users)"), std::string::npos)
      << "the refusal is logged with its reason";
}

// --- The round trip ------------------------------------------------------------------------------

TEST_F(FetchTest, ARequestReachesItsEdgeAndTheResponseOnlyItsRequester) {
  start(fetch_config("*"));
  auto edge_client = edge();
  const std::string response_topic = fetch::response_topic("getter", "7");
  auto getter = connected("getter");
  // Subscribed to its own response topic too: it must still get exactly one copy.
  ASSERT_TRUE(getter->subscribe(std::vector<std::string>{response_topic}, 1));
  auto eve = connected("eve");
  ASSERT_TRUE(eve->subscribe(std::vector<std::string>{"#"}, 2));

  const std::string payload = request_payload();
  const int sent = getter->publish(request_topic, payload, 1, request_properties(response_topic));
  EXPECT_EQ(sent, reason::success) << describe_reason(sent) << "; " << broker->where();

  const auto request = edge_client->wait_for(request_topic, delivery_timeout);
  ASSERT_TRUE(request) << "the edge did not receive the request; " << broker->where();
  EXPECT_EQ(request->payload, payload);
  ASSERT_TRUE(request->response_topic) << "the Response Topic was lost";
  EXPECT_EQ(*request->response_topic, response_topic);
  ASSERT_TRUE(request->correlation_data) << "the Correlation Data was lost";
  EXPECT_EQ(*request->correlation_data, correlation);

  // The edge answers as mqds-edge does: a full chunk of binary data.
  const std::string data = random_bytes(static_cast<std::size_t>(fetch::chunk_bytes_max), 42);
  const auto response_properties = ok_response_properties(*request->correlation_data, data.size());
  const int answered = edge_client->publish(*request->response_topic, data, 1, response_properties,
                                            delivery_timeout);
  // The plugin delivers its own copy and refuses the original: the edge sees 0x87 (it expects it).
  EXPECT_EQ(answered, reason::not_authorized) << describe_reason(answered);

  const auto response = getter->wait_for(response_topic, delivery_timeout);
  ASSERT_TRUE(response) << "the requester did not receive the response; " << broker->where();
  EXPECT_EQ(response->payload.size(), data.size());
  EXPECT_TRUE(response->payload == data) << "the response's bytes differ from what the edge sent";
  EXPECT_EQ(response->qos, 0) << "the plugin's copy is QoS 0: the broker keeps nothing of it";
  EXPECT_FALSE(response->retain);
  ASSERT_TRUE(response->correlation_data);
  EXPECT_EQ(*response->correlation_data, correlation);
  EXPECT_EQ(response->user_properties, response_properties.user_properties);

  const auto more =
      received_after_sync(*getter, [&](const Message& m) { return m.topic == response_topic; });
  EXPECT_TRUE(more.empty()) << "the requester received " << more.size() + 1
                            << " copies of the response";
  const auto leaked = received_after_sync(*eve, [&](const Message& m) {
    return m.topic == response_topic || m.payload.size() >= 1024 ||
           m.payload.find(data.substr(0, 64)) != std::string::npos;
  });
  for (const auto& m : leaked)
    ADD_FAILURE() << "a subscriber of # received " << describe_message(m);
  EXPECT_TRUE(
      received_after_sync(*edge_client, [&](const Message& m) { return m.topic == response_topic; })
          .empty())
      << "the edge received its own response";
  EXPECT_TRUE(broker->running());
}

TEST_F(FetchTest, AResponseForARequesterThatIsNotConnectedReachesNobody) {
  start(fetch_config("*"));
  auto edge_client = edge();
  auto eve = connected("eve");
  ASSERT_TRUE(eve->subscribe(std::vector<std::string>{"#"}, 1));
  const std::string topic = fetch::response_topic("gone");
  const int answered =
      edge_client->publish(topic, random_bytes(4096, 1), 1, ok_response_properties("c", 4096));
  EXPECT_EQ(answered, reason::not_authorized) << describe_reason(answered);
  EXPECT_TRUE(
      received_after_sync(*eve, [&](const Message& m) { return m.topic == topic; }).empty());
  // The one it names connects afterwards: nothing was kept for it (a clean session).
  auto gone = connected("gone");
  ASSERT_TRUE(gone->subscribe(std::vector<std::string>{topic}, 1));
  EXPECT_TRUE(
      received_after_sync(*gone, [&](const Message& m) { return m.topic == topic; }).empty());
}

// --- Refusals ------------------------------------------------------------------------------------

// alice may fetch; everybody else may not. The broker takes the username without a password
// (allow_anonymous true and no password_file), which is enough to test the option.
class FetchRefusalTest : public FetchTest {
 protected:
  void SetUp() override {
    start(fetch_config("alice, carol"));
    edge_client = connected(edge_id);
    // Every request topic: a request that passes anywhere under it is seen.
    ASSERT_TRUE(edge_client->subscribe(std::vector<std::string>{"mqds/fetch/request/#"}, 1));
    getter = connected("getter", "alice");
    ASSERT_TRUE(getter->subscribe(std::vector<std::string>{"mqds/fetch/response/getter/#"}, 1));
  }

  // The request is refused with 0x87 and no subscriber of request topics sees it.
  void expect_refused(Client& sender, const std::string& topic, const std::string& payload,
                      const PublishProperties& properties, const std::string& why,
                      bool retain = false) {
    SCOPED_TRACE(why);
    const int rc = sender.publish(topic, payload, 1, properties, 5s, retain);
    EXPECT_EQ(rc, reason::not_authorized) << why << ": " << describe_reason(rc);
    const auto seen = received_after_sync(
        *edge_client, [&](const Message& m) { return m.topic.rfind("mqds/fetch/", 0) == 0; });
    for (const auto& m : seen)
      ADD_FAILURE() << why << ": the edge received " << describe_message(m);
  }

  std::unique_ptr<Client> edge_client;
  std::unique_ptr<Client> getter;
};

TEST_F(FetchRefusalTest, AProperRequestFromAFetchUserPasses) {
  const std::string response_topic = fetch::response_topic("getter", "1");
  const int rc =
      getter->publish(request_topic, request_payload(), 1, request_properties(response_topic));
  EXPECT_EQ(rc, reason::success) << describe_reason(rc);
  const auto request = edge_client->wait_for(request_topic, delivery_timeout);
  ASSERT_TRUE(request) << broker->where();
  EXPECT_EQ(request->response_topic, response_topic);
  // The second user of the list too, and without Correlation Data (it is optional).
  auto carol = connected("carol-client", "carol");
  PublishProperties no_correlation;
  no_correlation.response_topic = fetch::response_topic("carol-client");
  EXPECT_EQ(carol->publish(request_topic, request_payload(), 1, no_correlation), reason::success);
  const auto second = edge_client->wait_for(request_topic, delivery_timeout);
  ASSERT_TRUE(second) << broker->where();
  EXPECT_FALSE(second->correlation_data);
}

TEST_F(FetchRefusalTest, RequestsBreakingARuleAreRefused) {
  const std::string own = fetch::response_topic("getter", "1");
  expect_refused(*getter, request_topic, request_payload(), {}, "no Response Topic");
  PublishProperties correlation_only;
  correlation_only.correlation_data = "c";
  expect_refused(*getter, request_topic, request_payload(), correlation_only,
                 "Correlation Data without Response Topic");
  expect_refused(*getter, request_topic, request_payload(),
                 request_properties(fetch::response_topic("victim")),
                 "someone else's response topic");
  expect_refused(*getter, request_topic, request_payload(),
                 request_properties(fetch::response_topic("getter2")),
                 "a response topic of a client whose id starts with the requester's");
  expect_refused(*getter, request_topic, request_payload(), request_properties("replies/getter"),
                 "a Response Topic outside mqds/fetch/response/");
  expect_refused(*getter, request_topic, std::string(fetch::request_payload_bytes_max + 1, ' '),
                 request_properties(own), "a payload over request_payload_bytes_max");
  PublishProperties long_correlation = request_properties(own);
  long_correlation.correlation_data = std::string(fetch::correlation_bytes_max + 1, 'c');
  expect_refused(*getter, request_topic, request_payload(), long_correlation,
                 "Correlation Data over correlation_bytes_max");
  expect_refused(*getter, "mqds/fetch/request/edge-1/extra", request_payload(),
                 request_properties(own), "a request topic naming more than one level");
  expect_refused(*getter, "mqds/fetch/request/", request_payload(), request_properties(own),
                 "a request topic naming no edge");
  expect_refused(*getter, request_topic, request_payload(), request_properties(own),
                 "a retained request", true);
  expect_refused(*getter, "mqds/fetch/other", request_payload(), request_properties(own),
                 "a topic that is not a fetch topic");

  auto mallory = connected("mallory", "mallory");
  expect_refused(*mallory, request_topic, request_payload(),
                 request_properties(fetch::response_topic("mallory")), "a user not in fetch_users");
  auto anonymous = connected("anonymous");
  expect_refused(*anonymous, request_topic, request_payload(),
                 request_properties(fetch::response_topic("anonymous")),
                 "a client without a username");

  // Each reason is logged in words (once: the log is rate-limited per reason).
  const std::string log = broker->log();
  for (const char* words :
       {"(user 'alice'): the request has no Response Topic",
        "(user 'alice'): its Response Topic names another client",
        "(user 'alice'): its Response Topic is not mqds/fetch/response/<its own client id>[/...]",
        "(user 'alice'): the request payload is longer than 512 bytes",
        "(user 'alice'): its Correlation Data is longer than 256 bytes",
        "(user 'alice'): a request topic must name one edge",
        "(user 'alice'): a request must not be retained",
        "(user 'alice'): the topic is neither mqds/fetch/request/<edge> nor",
        "from client 'mallory' (user 'mallory'): its username is not in plugin_opt_fetch_users"})
    EXPECT_NE(log.find(words), std::string::npos)
        << "no log line with: " << words << "; " << broker->where();

  // The victim whose topic was named got nothing either.
  auto victim = connected("victim", "carol");
  ASSERT_TRUE(victim->subscribe(
      std::vector<std::string>{"mqds/fetch/response/victim/#", "mqds/fetch/response/victim"}, 1));
  EXPECT_TRUE(received_after_sync(*victim, [](const Message& m) {
                return m.topic.rfind("mqds/fetch/", 0) == 0;
              }).empty());
  EXPECT_TRUE(broker->running());
}

TEST_F(FetchRefusalTest, AnMqtt311RequestIsRefused) {
  // MQTT 3.1.1 has neither a Response Topic nor reason codes: its PUBACK reads as success, but the
  // request must not reach the edge.
  auto old = connected("old-getter", "alice", Protocol::mqtt311);
  const int rc = old->publish(request_topic, request_payload(), 1);
  EXPECT_EQ(rc, reason::success) << "an MQTT 3.1.1 PUBACK has no reason code: "
                                 << describe_reason(rc);
  const auto seen = received_after_sync(
      *edge_client, [](const Message& m) { return m.topic.rfind("mqds/fetch/", 0) == 0; });
  EXPECT_TRUE(seen.empty()) << "the edge received an MQTT 3.1.1 request";
  EXPECT_NE(broker->log().find("requests need MQTT 5 (a Response Topic)"), std::string::npos)
      << broker->where();
  EXPECT_TRUE(old->connected()) << "a refused publish must not disconnect its client: "
                                << old->disconnect_reason();
}

TEST_F(FetchRefusalTest, MalformedAndOversizedResponsesAreRefusedAndReachNobody) {
  auto eve = connected("eve", "alice");
  ASSERT_TRUE(eve->subscribe(std::vector<std::string>{"#"}, 1));
  // The plugin's bound: a chunk and 64 KiB (plugin/fetch_gate.hpp).
  constexpr std::size_t response_bytes_max = fetch::chunk_bytes_max + 64 * 1024;
  const std::string own = fetch::response_topic("getter", "1");
  const auto props = ok_response_properties(correlation, 10);

  for (const std::string topic : {"mqds/fetch/response/", "mqds/fetch/response//1"}) {
    SCOPED_TRACE(topic);
    const int rc = edge_client->publish(topic, "data", 1, props);
    EXPECT_EQ(rc, reason::not_authorized) << describe_reason(rc);
  }
  const int too_large = edge_client->publish(own, random_bytes(response_bytes_max + 1, 5), 1, props,
                                             delivery_timeout);
  EXPECT_EQ(too_large, reason::not_authorized) << describe_reason(too_large);
  const auto fetch_topic = [](const Message& m) {
    return m.topic.rfind("mqds/fetch/response", 0) == 0;
  };
  EXPECT_TRUE(received_after_sync(*getter, fetch_topic).empty())
      << "the requester received a refused response";
  EXPECT_TRUE(received_after_sync(*eve, fetch_topic).empty())
      << "a subscriber of # received a refused response";

  // At the bound it goes through, to the requester only, once it asked.
  ASSERT_EQ(getter->publish(request_topic, request_payload(), 1, request_properties(own)),
            reason::success);
  ASSERT_TRUE(edge_client->wait_for(request_topic, delivery_timeout)) << broker->where();
  const std::string largest = random_bytes(response_bytes_max, 6);
  EXPECT_EQ(edge_client->publish(own, largest, 1, props, delivery_timeout), reason::not_authorized);
  const auto delivered = getter->wait_for(own, delivery_timeout);
  ASSERT_TRUE(delivered) << broker->where();
  EXPECT_TRUE(delivered->payload == largest);
  EXPECT_TRUE(received_after_sync(*eve, fetch_topic).empty())
      << "a subscriber of # received the response";
  EXPECT_TRUE(broker->running());
}

// --- Forgers and wills ---------------------------------------------------------------------------

TEST_F(FetchRefusalTest, OnlyTheEdgeAskedAnswersOnceAndForgedResponsesAreRefused) {
  const std::string own = fetch::response_topic("getter", "1");
  auto eve = connected("eve", "carol");  // a fetch user, and another edge
  ASSERT_TRUE(eve->subscribe(std::vector<std::string>{"#"}, 1));
  auto forged_before =
      eve->publish(own, "forged before any request", 1, ok_response_properties(correlation, 25));
  EXPECT_EQ(forged_before, reason::not_authorized) << describe_reason(forged_before);

  ASSERT_EQ(getter->publish(request_topic, request_payload(), 1, request_properties(own)),
            reason::success);
  const auto request = edge_client->wait_for(request_topic, delivery_timeout);
  ASSERT_TRUE(request) << broker->where();
  // Eve knows the topic and even the Correlation Data: she is not the edge that was asked.
  const std::string forged = "forged data";
  const int code = eve->publish(own, forged, 1, ok_response_properties(correlation, forged.size()));
  EXPECT_EQ(code, reason::not_authorized) << describe_reason(code);
  // The edge asked, with other Correlation Data or on another of the getter's topics: not an
  // answer.
  EXPECT_EQ(edge_client->publish(own, forged, 1, ok_response_properties("guess", forged.size())),
            reason::not_authorized);
  EXPECT_EQ(edge_client->publish(fetch::response_topic("getter", "2"), forged, 1,
                                 ok_response_properties(correlation, forged.size())),
            reason::not_authorized);
  EXPECT_TRUE(received_after_sync(
                  *getter, [&](const Message& m) { return m.topic.rfind("mqds/fetch/", 0) == 0; })
                  .empty())
      << "the getter received a forged response";

  // The answer of the edge asked gets through, once.
  const std::string data = random_bytes(4096, 9);
  const auto props = ok_response_properties(correlation, data.size());
  EXPECT_EQ(edge_client->publish(own, data, 1, props), reason::not_authorized);
  const auto answer = getter->wait_for(own, delivery_timeout);
  ASSERT_TRUE(answer) << "the real answer did not arrive; " << broker->where();
  EXPECT_TRUE(answer->payload == data);
  EXPECT_EQ(edge_client->publish(own, data, 1, props), reason::not_authorized);
  EXPECT_TRUE(
      received_after_sync(*getter, [&](const Message& m) { return m.topic == own; }).empty())
      << "a second answer to one request was delivered";
  EXPECT_TRUE(received_after_sync(*eve, [&](const Message& m) { return m.topic == own; }).empty());
  EXPECT_NE(broker->log().find("it answers no request waiting for this edge's answer"),
            std::string::npos)
      << broker->where();
}

struct FetchWillCase {
  Protocol protocol;
  int qos;
};

std::string describe_fetch_will_case(const ::testing::TestParamInfo<FetchWillCase>& param) {
  return std::string(param.param.protocol == Protocol::mqtt5 ? "Mqtt5" : "Mqtt311") + "Qos" +
         std::to_string(param.param.qos);
}

class FetchWillTest : public FetchRefusalTest,
                      public ::testing::WithParamInterface<FetchWillCase> {};

TEST_P(FetchWillTest, AWillOnARequestTopicReachesNoEdge) {
  ASSERT_TRUE(edge_client->subscribe(std::vector<std::string>{"plain/wills"}, 1));
  // Mallory may not fetch; alice may, but a will is judged by nobody (its Response Topic could
  // name anyone): neither reaches the edge.
  for (const std::string user : {"mallory", "alice"}) {
    SCOPED_TRACE(user);
    const std::string id = user + "-dying";
    {
      Client dying(id, GetParam().protocol);
      dying.set_credentials(user);
      dying.set_will(request_topic, request_payload(), GetParam().qos, false,
                     request_properties(fetch::response_topic(id)));
      ASSERT_TRUE(dying.connect(broker->port()));
      dying.lose_connection();
    }
    {
      Client witness(user + "-witness", GetParam().protocol);
      witness.set_will("plain/wills", "witness of " + user, 1);
      ASSERT_TRUE(witness.connect(broker->port()));
      witness.lose_connection();
    }
    ASSERT_TRUE(edge_client->wait_for(
        [&](const Message& m) { return m.payload == "witness of " + user; }, delivery_timeout))
        << "an ordinary will did not arrive: the test proves nothing; " << broker->where();
    const auto seen = received_after_sync(
        *edge_client, [](const Message& m) { return m.topic.rfind("mqds/fetch/", 0) == 0; });
    for (const auto& m : seen) ADD_FAILURE() << "the edge received a will: " << describe_message(m);
  }
  EXPECT_TRUE(broker->running());
}

INSTANTIATE_TEST_SUITE_P(Wills, FetchWillTest,
                         ::testing::Values(FetchWillCase{Protocol::mqtt311, 1},
                                           FetchWillCase{Protocol::mqtt311, 2},
                                           FetchWillCase{Protocol::mqtt5, 1},
                                           FetchWillCase{Protocol::mqtt5, 2}),
                         describe_fetch_will_case);

// --- What the operator sees ----------------------------------------------------------------------

TEST_F(FetchTest, FiguresCountRequestsRefusalsResponsesAndBytes) {
  start(fetch_config("*"));
  // All four are published at start, as zeros.
  auto initial = wait_for_figures({{"fetch/requests", "0"},
                                   {"fetch/refused", "0"},
                                   {"fetch/responses", "0"},
                                   {"fetch/bytes", "0"}});
  EXPECT_EQ(initial["fetch/requests"], "0");
  EXPECT_EQ(initial["fetch/bytes"], "0");

  auto edge_client = edge();
  auto getter = connected("getter");
  const std::string own = fetch::response_topic("getter");
  ASSERT_TRUE(getter->subscribe(std::vector<std::string>{own}, 1));
  for (std::size_t size : {1000u, 2345u, 0u}) {
    PublishProperties props = request_properties(own);
    props.correlation_data = "c" + std::to_string(size);
    ASSERT_EQ(getter->publish(request_topic, request_payload(), 1, props), reason::success);
  }
  EXPECT_EQ(getter->publish(request_topic, request_payload(), 1, PublishProperties{}),
            reason::not_authorized);
  EXPECT_EQ(getter->publish(request_topic, request_payload(), 1,
                            request_properties(fetch::response_topic("x"))),
            reason::not_authorized);
  EXPECT_EQ(edge_client->publish("mqds/fetch/response/", "x", 1, PublishProperties{}),
            reason::not_authorized);
  for (std::size_t size : {1000u, 2345u, 0u})
    EXPECT_EQ(edge_client->publish(own, random_bytes(size, size), 1,
                                   ok_response_properties("c" + std::to_string(size), size)),
              reason::not_authorized);
  ASSERT_TRUE(getter->wait_for(own, delivery_timeout));

  const std::map<std::string, std::string> expected{{"fetch/requests", "3"},
                                                    {"fetch/refused", "3"},
                                                    {"fetch/responses", "3"},
                                                    {"fetch/bytes", "3345"}};
  const auto figures = wait_for_figures(expected);
  for (const auto& [name, value] : expected) {
    const auto it = figures.find(name);
    EXPECT_TRUE(it != figures.end() && it->second == value)
        << "$SYS/broker/mqds/" << name << " is " << (it == figures.end() ? "missing" : it->second)
        << ", expected " << value << "; " << broker->where();
  }
}

TEST_F(FetchTest, RefusalsCannotFloodTheLog) {
  start(fetch_config("alice"));
  auto flooder = connected("flooder");
  constexpr int refusals = 300;
  std::vector<int> mids;
  for (int i = 0; i < refusals; ++i)
    mids.push_back(flooder->publish_async(request_topic, request_payload(), 1));
  for (int mid : mids) {
    ASSERT_GT(mid, 0) << describe_reason(mid);
    EXPECT_EQ(flooder->wait_published(mid), reason::not_authorized);
  }
  const auto figures = wait_for_figures({{"fetch/refused", std::to_string(refusals)}});
  EXPECT_EQ(figures.count("fetch/refused") ? figures.at("fetch/refused") : "",
            std::to_string(refusals))
      << "every refusal is counted";
  const std::string log = broker->log();
  std::size_t lines = 0;
  for (auto at = log.find("fetch: refused"); at != std::string::npos;
       at = log.find("fetch: refused", at + 1))
    ++lines;
  EXPECT_EQ(lines, 1u) << "one line per reason per 10 s; " << broker->where();
  EXPECT_NE(
      log.find(
          "from client 'flooder' (no username): its username is not in plugin_opt_fetch_users"),
      std::string::npos)
      << "the line says who and why; " << broker->where();
}

}  // namespace
}  // namespace mqds::broker_test

namespace mqds::broker_test {
namespace {

// --- The broker's heap ---------------------------------------------------------------------------

// $SYS/broker/heap/current, the broker's count of what its allocator handed out: the plugin must
// neither leak what it hands the broker nor make the broker free more than it counted (memory from
// a different allocator), which would make the count wrap and, with memory_limit set, the broker
// refuse every client.
class HeapMonitor {
 public:
  explicit HeapMonitor(int port) : client_("heap-monitor") {
    EXPECT_TRUE(client_.connect(port));
    EXPECT_TRUE(client_.subscribe(std::vector<std::string>{"$SYS/broker/heap/current"}, 0));
  }
  // The value after the broker had time to publish it again (sys_interval 1).
  std::int64_t settled() {
    std::this_thread::sleep_for(2500ms);
    for (const auto& m : client_.drain())
      if (m.topic == "$SYS/broker/heap/current") heap_ = std::stoll(m.payload);
    return heap_;
  }

 private:
  Client client_;
  std::int64_t heap_ = -1;
};

// `count` exchanges: `getter` asks on `requests` (at most `window` at once, each with its own
// Correlation Data) and `edge` answers each on `responses` with that Correlation Data, as
// mqds-edge does; both wait until the other side received them all.
::testing::AssertionResult exchange(Client& getter, Client& edge, const std::string& requests,
                                    const std::string& responses, int count,
                                    const std::string& request, const std::string& data,
                                    int response_code) {
  constexpr int window = 50;  // below the plugin's 64 outstanding requests of one requester
  int sent = 0;
  const auto publish_all = [](Client& from, const std::vector<int>& mids, int expected,
                              const char* what) -> ::testing::AssertionResult {
    for (int mid : mids) {
      const auto code = mid > 0 ? from.wait_published(mid) : std::optional<int>(mid);
      if (code != expected)
        return ::testing::AssertionFailure()
               << "a " << what << " was answered " << describe_reason(code.value_or(-1));
    }
    return ::testing::AssertionSuccess();
  };
  for (int done = 0; done < count; done += window) {
    const int batch = std::min(window, count - done);
    std::vector<int> mids;
    for (int i = 0; i < batch; ++i) {
      PublishProperties props = request_properties(responses);
      props.correlation_data = "c" + std::to_string(sent + i);
      mids.push_back(getter.publish_async(requests, request, 1, props));
    }
    if (auto ok = publish_all(getter, mids, reason::success, "request"); !ok) return ok;
    for (int i = 0; i < batch; ++i)
      if (!edge.wait_for(requests, 5s))
        return ::testing::AssertionFailure() << "only " << done + i << " requests arrived";
    mids.clear();
    for (int i = 0; i < batch; ++i)
      mids.push_back(edge.publish_async(
          responses, data, 1, ok_response_properties("c" + std::to_string(sent + i), data.size())));
    if (auto ok = publish_all(edge, mids, response_code, "response"); !ok) return ok;
    for (int i = 0; i < batch; ++i)
      if (!getter.wait_for(responses, 5s))
        return ::testing::AssertionFailure() << "only " << done + i << " responses arrived";
    sent += batch;
  }
  return ::testing::AssertionSuccess();
}

// Fetch traffic against the same messages on ordinary topics: the plugin's requests and responses
// must move the broker's heap count exactly as much (Debian's 2.0.11 broker itself counts about 56
// B per MQTT 5 property it receives and never uncounts them: the ordinary messages show it too).
TEST(FetchHeapTest, RequestsAndResponsesMoveTheBrokerHeapAsOrdinaryMessagesDo) {
  constexpr int messages = 5'000;
  constexpr std::int64_t tolerance_bytes = 128 * 1024;  // 13 B a message each way
  Broker broker(fetch_config("*"));
  ASSERT_TRUE(broker.start());
  HeapMonitor heap(broker.port());
  Client edge_client(edge_id);
  edge_client.set_receive_maximum(65535);  // see Mqtt5ClientWithDefaultReceiveMaximumSurvivesABurst
  ASSERT_TRUE(edge_client.connect(broker.port()));
  ASSERT_TRUE(edge_client.subscribe(std::vector<std::string>{request_topic, "control/edge"}, 1));
  Client getter("getter");
  getter.set_receive_maximum(65535);
  ASSERT_TRUE(getter.connect(broker.port()));
  ASSERT_TRUE(getter.subscribe(
      std::vector<std::string>{"control/getter/r", fetch::response_topic("getter", "r")}, 1));

  // Each request asks for the 1 KiB it is answered: 50 of them at once stay far within the
  // plugin's budget of bytes owed to one requester.
  const std::string data = random_bytes(1024, 3);
  const std::string request = request_payload(static_cast<std::int64_t>(data.size()));
  struct Phase {
    const char* what;
    std::string request_topic, response_topic;
    int response_code;
  };
  const Phase phases[] = {
      {"ordinary publishes like requests and responses", "control/edge", "control/getter/r",
       reason::success},
      // The plugin delivers its own copy of a response and refuses the original.
      {"fetch requests and responses", request_topic, fetch::response_topic("getter", "r"),
       reason::not_authorized},
  };
  // Warm-up: the broker and the plugin reach their working sizes.
  for (const auto& p : phases)
    ASSERT_TRUE(exchange(getter, edge_client, p.request_topic, p.response_topic, 500, request, data,
                         p.response_code))
        << p.what;

  std::int64_t before = heap.settled();
  ASSERT_GT(before, 0) << "no $SYS/broker/heap/current value arrived";
  std::vector<std::int64_t> growth;
  for (const auto& p : phases) {
    ASSERT_TRUE(exchange(getter, edge_client, p.request_topic, p.response_topic, messages, request,
                         data, p.response_code))
        << p.what;
    const std::int64_t after = heap.settled();
    growth.push_back(after - before);
    std::cout << "[ heap     ] " << messages << " " << p.what << ": " << after - before << " B ("
              << static_cast<double>(after - before) / messages << " B each)\n";
    RecordProperty(std::string(p.what), std::to_string(after - before));
    before = after;
  }
  EXPECT_LE(growth[1], growth[0] + tolerance_bytes) << "the plugin leaks what it hands the broker";
  EXPECT_GE(growth[1], growth[0] - tolerance_bytes)
      << "the plugin makes the broker free more than it counted: memory from another allocator";
  EXPECT_TRUE(broker.running());
}

}  // namespace
}  // namespace mqds::broker_test
