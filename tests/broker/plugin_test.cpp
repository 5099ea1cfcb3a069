// The tracker plugin inside Debian's real mosquitto 2.0.11, driven by real MQTT clients.
//
// Every test starts its own broker on its own port with short timeouts, so tests are independent
// and may run in parallel. Payloads are built with mqds::encode and everything the tracker
// publishes is read back with mqds::decode, so the wire format is part of what is tested.
//
// "Nothing was received" is checked after Client::sync(), a round trip through the broker that
// comes back after anything the broker queued for that client before it.
//
// When a test fails, its broker's directory is kept and every failure names the broker's log.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "broker.hpp"
#include "client.hpp"
#include "mqds/events.hpp"
#include "mqds/hash.hpp"
#include "mqds/random.hpp"

namespace mqds::broker_test {
namespace {

using Clock = std::chrono::steady_clock;

// The tracker answers on the broker's next TICK (about every 100 ms when idle).
constexpr std::chrono::milliseconds answer_timeout = 5s;
constexpr std::int64_t join_timeout_ms = 800;
constexpr std::int64_t fragment_size_bytes = 1024;
constexpr std::uint64_t replicas = 2;

PluginOptions fast_options() {
  return {{"fragment_size", std::to_string(fragment_size_bytes)},
          {"replicas", std::to_string(replicas)},
          {"join_timeout_ms", std::to_string(join_timeout_ms)},
          {"request_timeout_ms", "500"},
          {"delivery_timeout_ms", "1000"},
          {"revision_beacon_ms", "1000"},
          {"startup_settle_ms", "0"}};
}

BrokerConfig config_with(PluginOptions options) {
  BrokerConfig config;
  config.plugin_options = std::move(options);
  return config;
}

Uuid fresh_uuid() {
  static std::mutex mutex;
  static SplitMix64 random((std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}());
  std::lock_guard lock(mutex);
  return random.next_uuid();
}

bool acknowledged(int code) {
  return code >= 0 && code < 0x80;
}

std::string endpoint(int n) {
  return "grpc://10.0.0." + std::to_string(n) + ":50051";
}

ClientJoinRequested join_request(const std::string& endpoint_uri) {
  ClientJoinRequested request;
  request.event_id = fresh_uuid();
  request.hash_algorithm = "SHA256";
  request.endpoints = {endpoint_uri};
  return request;
}

// A torrent server that holds one file of one fragment, cut at `fragment_size`.
void add_stored_file(ClientJoinRequested& request, std::int64_t fragment_size) {
  const std::string content(static_cast<std::size_t>(fragment_size), 'x');
  const Hash fragment = sha256(content);
  request.fragment_size_bytes = fragment_size;
  request.known_file_infos[fragment] = FileMetadata{fragment_size, {fragment}};
  request.stored_fragments[fragment] = FragmentMetadata{fragment_size};
}

template <class T>
std::string_view topic_for() {
  return topic_of(Event(std::in_place_type<T>));
}

// The event in a message the tracker published; an undecodable one is a failure of the plugin.
template <class T>
std::optional<T> event_in(const Message& message) {
  auto decoded = decode(message.topic, message.payload);
  if (!decoded.ok()) {
    ADD_FAILURE() << "the tracker published an undecodable payload on " << message.topic << " ("
                  << decoded.error().to_string() << "): " << message.payload.substr(0, 300);
    return std::nullopt;
  }
  if (auto* event = std::get_if<T>(&decoded.value())) return *event;
  return std::nullopt;
}

// Takes the first T on its topic that `match` accepts.
template <class T>
std::optional<T> wait_event(Client& client, const std::function<bool(const T&)>& match = {},
                            std::chrono::milliseconds timeout = answer_timeout) {
  const std::string_view topic = topic_for<T>();
  auto message = client.wait_for(
      [&](const Message& m) {
        if (m.topic != topic) return false;
        auto event = event_in<T>(m);
        return event && (!match || match(*event));
      },
      timeout);
  if (!message) return std::nullopt;
  return event_in<T>(*message);
}

// Every queued T that `match` accepts, without waiting (call sync() first).
template <class T>
std::vector<T> queued_events(Client& client, const std::function<bool(const T&)>& match = {}) {
  std::vector<T> found;
  while (auto event = wait_event<T>(client, match, 0ms)) found.push_back(*event);
  return found;
}

struct Joined {
  ClientJoinAccepted accepted;
  ClientRegistered registered;
};

// The specification's Client Join, standard procedure: request, accepted, succeeded, registered.
// The client must be subscribed to clients/registered to see its own registration.
::testing::AssertionResult join(Client& client, const ClientJoinRequested& request,
                                Joined* joined = nullptr) {
  const int sent = client.publish(topics::client_join_requested, encode(request), 2);
  if (!acknowledged(sent))
    return ::testing::AssertionFailure()
           << client.id() << "'s ClientJoinRequested was answered with " << describe_reason(sent);
  const auto answer = client.wait_for(
      [&](const Message& m) {
        if (m.topic == topics::client_join_accepted) {
          auto accepted = event_in<ClientJoinAccepted>(m);
          return accepted && accepted->request_event_id == request.event_id;
        }
        if (m.topic == topics::client_join_denied) {
          auto denied = event_in<ClientJoinDenied>(m);
          return denied && denied->request_event_id == request.event_id;
        }
        return false;
      },
      answer_timeout);
  if (!answer)
    return ::testing::AssertionFailure()
           << "no ClientJoinAccepted or ClientJoinDenied for " << client.id()
           << "'s request within " << answer_timeout.count()
           << " ms: look for 'mqds:' lines in the broker log";
  if (answer->topic == topics::client_join_denied) {
    const auto denied = event_in<ClientJoinDenied>(*answer);
    return ::testing::AssertionFailure()
           << client.id() << " was denied (code " << denied->reason_code
           << "): " << denied->reason.value_or("no reason");
  }
  Joined result;
  result.accepted = *event_in<ClientJoinAccepted>(*answer);
  const ClientJoinSucceeded succeeded{fresh_uuid(), request.event_id};
  const int confirmed = client.publish(topics::client_join_succeeded, encode(succeeded), 2);
  if (!acknowledged(confirmed))
    return ::testing::AssertionFailure()
           << client.id() << "'s ClientJoinSucceeded was answered with "
           << describe_reason(confirmed);
  const auto registered = wait_event<ClientRegistered>(
      client, [&](const ClientRegistered& r) { return r.client_identifier == client.id(); });
  if (!registered)
    return ::testing::AssertionFailure()
           << "no ClientRegistered for " << client.id() << " within " << answer_timeout.count()
           << " ms after its ClientJoinSucceeded";
  result.registered = *registered;
  if (joined) *joined = std::move(result);
  return ::testing::AssertionSuccess();
}

// One value of every event type the tracker issues, with a fresh EventId.
template <std::size_t... I>
std::vector<Event> all_events(std::index_sequence<I...>) {
  std::vector<Event> events{Event(std::in_place_index<I>)...};
  for (auto& event : events) std::visit([](auto& e) { e.event_id = fresh_uuid(); }, event);
  return events;
}

std::vector<Event> tracker_issued_events() {
  std::vector<Event> issued;
  for (auto& event : all_events(std::make_index_sequence<std::variant_size_v<Event>>{}))
    if (is_tracker_issued(event_type(event))) issued.push_back(std::move(event));
  return issued;
}

// A broker with the plugin and short timeouts, started for each test.
class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker = std::make_unique<Broker>(config_with(fast_options()));
    ASSERT_TRUE(broker->start());
  }

  int port() const { return broker->port(); }

  // Connects a client that subscribes to what a torrent server subscribes to.
  ::testing::AssertionResult torrent(Client& client) {
    if (auto connected = client.connect(port()); !connected) return connected;
    return client.subscribe(torrent_subscriptions());
  }

  std::unique_ptr<Broker> broker;
};

// --- The plugin loads and the broker serves ------------------------------------------------------

TEST_F(PluginTest, BrokerServesUnrelatedTopicsUnchanged) {
  EXPECT_NE(broker->log().find(std::string("Loading plugin: ") + MQDS_PLUGIN_PATH),
            std::string::npos)
      << "mosquitto did not load " << MQDS_PLUGIN_PATH;
  Client subscriber("plain-subscriber");
  Client publisher("plain-publisher");
  Client old_publisher("plain-publisher-311", Protocol::mqtt311);
  ASSERT_TRUE(subscriber.connect(port()));
  ASSERT_TRUE(publisher.connect(port()));
  ASSERT_TRUE(old_publisher.connect(port()));
  // Topics next to the protocol's, and payloads that would be malformed events there.
  ASSERT_TRUE(
      subscriber.subscribe(std::vector<std::string>{"plain/#", "clients/other", "tracker"}));
  const std::vector<std::pair<std::string, std::string>> messages{
      {"plain/a", "{not json"},
      {"clients/other", "{\"EventId\":1}"},
      {"tracker", ""},
      {"plain/b", "hello"}};
  for (int qos = 0; qos <= 2; ++qos) {
    for (const auto& [topic, payload] : messages) {
      SCOPED_TRACE("QoS " + std::to_string(qos) + " on " + topic);
      for (Client* sender : {&publisher, &old_publisher}) {
        const int code = sender->publish(topic, payload, qos);
        EXPECT_EQ(code, reason::success) << describe_reason(code);
        const auto received = subscriber.wait_for(topic, answer_timeout);
        ASSERT_TRUE(received) << "a plain message on " << topic << " did not arrive";
        EXPECT_EQ(received->payload, payload);
      }
    }
  }
  // The tracker is there all the same: a malformed event on its topic is dropped.
  const int code = publisher.publish(topics::client_join_succeeded, "{not json", 1);
  EXPECT_EQ(code, reason::not_authorized)
      << "the plugin does not judge protocol topics: " << describe_reason(code);
}

// --- Bad options stop the broker's start
// ----------------------------------------------------------

struct BadOption {
  const char* name;
  PluginOptions options;
  const char* logged;  // what the log must name
};

void PrintTo(const BadOption& option, std::ostream* out) {
  *out << option.name;
}

class BadOptionTest : public ::testing::TestWithParam<BadOption> {};

TEST_P(BadOptionTest, BrokerRefusesToStartAndSaysWhy) {
  PluginOptions options = fast_options();
  for (const auto& option : GetParam().options) options.push_back(option);
  Broker broker(config_with(options));
  const auto started = Clock::now();
  const auto status = broker.start_expecting_exit(5s);
  const auto elapsed = Clock::now() - started;
  ASSERT_TRUE(status)
      << "mosquitto kept running with a bad plugin option, or never ran (see above); it must "
         "start, then refuse the option and exit";
  EXPECT_NE(*status, 0) << "mosquitto exited with 0 despite the bad option";
  EXPECT_LT(elapsed, 3s) << "the broker took "
                         << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                         << " ms to give up; it should stop at once";
  EXPECT_NE(broker.log().find(GetParam().logged), std::string::npos)
      << "the log does not name " << GetParam().logged << "; its last lines:\n"
      << broker.log_tail(15);
}

INSTANTIATE_TEST_SUITE_P(
    Options, BadOptionTest,
    ::testing::Values(
        BadOption{"ZeroReplicas", {{"replicas", "0"}}, "plugin_opt_replicas"},
        BadOption{"UnknownOption", {{"no_such_option", "1"}}, "plugin_opt_no_such_option"},
        BadOption{"FragmentSizeNotANumber", {{"fragment_size", "1k"}}, "plugin_opt_fragment_size"},
        BadOption{"NegativeTimeout", {{"join_timeout_ms", "-5"}}, "plugin_opt_join_timeout_ms"}),
    [](const auto& p) { return std::string(p.param.name); });

// A data_dir the broker's user cannot write: root's and 0755, as it is before the chown.
BrokerConfig unwritable_data_dir_config() {
  BrokerConfig config = config_with(fast_options());
  config.chown_data_dir = false;
  return config;
}

void expect_refused_start(Broker& broker) {
  const auto status = broker.start_expecting_exit(5s);
  ASSERT_TRUE(status) << "mosquitto started with a data_dir it cannot write";
  EXPECT_NE(*status, 0);
}

TEST(BrokerStartTest, DataDirTheBrokerCannotWriteStopsIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "only as root: the broker then runs as the mosquitto user";
  Broker broker(unwritable_data_dir_config());
  expect_refused_start(broker);
  EXPECT_NE(broker.log().find("Permission denied"), std::string::npos)
      << "the log does not say why; its last lines:\n"
      << broker.log_tail(15);
}

TEST(BrokerStartTest, DataDirErrorNamesTheDirectory) {
  if (::geteuid() != 0) GTEST_SKIP() << "only as root: the broker then runs as the mosquitto user";
  Broker broker(unwritable_data_dir_config());
  expect_refused_start(broker);
  EXPECT_NE(broker.log().find(broker.data_dir()), std::string::npos)
      << "the log does not name the data directory; its last lines:\n"
      << broker.log_tail(15);
}

// --- Client Join ---------------------------------------------------------------------------------

class JoinTest : public PluginTest, public ::testing::WithParamInterface<Protocol> {};

TEST_P(JoinTest, AcceptedThenRegisteredAndAnnouncedToRegisteredClients) {
  Client first("first");
  ASSERT_TRUE(torrent(first));
  Joined first_joined;
  ASSERT_TRUE(join(first, join_request(endpoint(1)), &first_joined));
  ASSERT_TRUE(first_joined.registered.revision);

  Client second("second", GetParam());
  ASSERT_TRUE(torrent(second));
  const auto request = join_request(endpoint(2));
  const int sent = second.publish(topics::client_join_requested, encode(request), 2);
  EXPECT_TRUE(acknowledged(sent)) << describe_reason(sent);

  const auto accepted = wait_event<ClientJoinAccepted>(
      second, [&](const ClientJoinAccepted& a) { return a.request_event_id == request.event_id; });
  ASSERT_TRUE(accepted) << "no ClientJoinAccepted answering the request within "
                        << answer_timeout.count() << " ms";
  EXPECT_EQ(accepted->client_identifier, "second");
  EXPECT_EQ(accepted->fragment_size_bytes, fragment_size_bytes);
  EXPECT_EQ(accepted->replicas, replicas);
  ASSERT_TRUE(accepted->revision) << "ClientJoinAccepted carries no Revision";
  EXPECT_EQ(*accepted->revision, *first_joined.registered.revision)
      << "the Revision is the view's current one";
  ASSERT_EQ(accepted->clients.count("first"), 1u)
      << "the registered client is missing from Clients";
  EXPECT_EQ(accepted->clients.at("first").endpoints, std::set<std::string>{endpoint(1)});
  EXPECT_EQ(accepted->clients.count("second"), 0u);

  const ClientJoinSucceeded succeeded{fresh_uuid(), request.event_id};
  const int confirmed = second.publish(topics::client_join_succeeded, encode(succeeded), 2);
  EXPECT_TRUE(acknowledged(confirmed)) << describe_reason(confirmed);

  const auto announced = wait_event<ClientRegistered>(
      first, [](const ClientRegistered& r) { return r.client_identifier == "second"; });
  ASSERT_TRUE(announced) << "the registered client was not told of the new one";
  EXPECT_EQ(announced->info.endpoints, request.endpoints);
  ASSERT_TRUE(announced->revision);
  EXPECT_EQ(*announced->revision, *accepted->revision + 1) << "a registration is one view change";
  EXPECT_FALSE(announced->request_event_id) << "a new registration is not a resync confirmation";
  const auto own = wait_event<ClientRegistered>(
      second, [](const ClientRegistered& r) { return r.client_identifier == "second"; });
  EXPECT_TRUE(own)
      << "the joining client, subscribed to clients/registered, did not see its registration";
}

INSTANTIATE_TEST_SUITE_P(Protocols, JoinTest, ::testing::Values(Protocol::mqtt5, Protocol::mqtt311),
                         [](const auto& p) {
                           return p.param == Protocol::mqtt5 ? "Mqtt5" : "Mqtt311";
                         });

TEST_F(PluginTest, JoinAcceptedGoesToTheJoiningClientOnly) {
  Client bystander("bystander");
  ASSERT_TRUE(bystander.connect(port()));
  ASSERT_TRUE(bystander.subscribe(std::vector<std::string>{
      std::string(topics::client_join_accepted), std::string(topics::client_join_denied)}));
  // The joining client subscribes to nothing: targeted answers reach it anyway.
  Client joiner("joiner");
  ASSERT_TRUE(joiner.connect(port()));
  const auto request = join_request(endpoint(3));
  EXPECT_TRUE(acknowledged(joiner.publish(topics::client_join_requested, encode(request), 2)));
  const auto accepted = wait_event<ClientJoinAccepted>(
      joiner, [&](const ClientJoinAccepted& a) { return a.request_event_id == request.event_id; });
  ASSERT_TRUE(accepted) << "the joining client, subscribed to nothing, got no ClientJoinAccepted";
  ASSERT_TRUE(bystander.sync());
  EXPECT_TRUE(queued_events<ClientJoinAccepted>(bystander).empty())
      << "a client subscribed to clients/join/accepted received another client's "
         "ClientJoinAccepted";
}

// --- Denials -------------------------------------------------------------------------------------

const std::string taken_endpoint = endpoint(9);

struct Denial {
  const char* name;
  std::uint32_t code;
  std::function<void(ClientJoinRequested&)> change;
  std::vector<std::string> reason_names;
};

void PrintTo(const Denial& denied, std::ostream* out) {
  *out << denied.name;
}

class DenialTest : public PluginTest, public ::testing::WithParamInterface<Denial> {};

TEST_P(DenialTest, DeniedWithTheCodeToTheApplicantOnly) {
  Client holder("holder");
  ASSERT_TRUE(torrent(holder));
  ASSERT_TRUE(join(holder, join_request(taken_endpoint)));

  Client applicant("applicant");
  ASSERT_TRUE(torrent(applicant));
  auto request = join_request(endpoint(4));
  GetParam().change(request);
  const int sent = applicant.publish(topics::client_join_requested, encode(request), 2);
  EXPECT_TRUE(acknowledged(sent)) << "a well-formed request is not dropped: "
                                  << describe_reason(sent);

  const auto denied = wait_event<ClientJoinDenied>(
      applicant, [&](const ClientJoinDenied& d) { return d.request_event_id == request.event_id; });
  ASSERT_TRUE(denied) << "no ClientJoinDenied answering the request within "
                      << answer_timeout.count() << " ms";
  EXPECT_EQ(denied->reason_code, GetParam().code);
  EXPECT_EQ(denied->client_identifier, "applicant");
  ASSERT_TRUE(denied->reason) << "a denial should say why";
  for (const auto& name : GetParam().reason_names)
    EXPECT_NE(denied->reason->find(name), std::string::npos)
        << "Reason '" << *denied->reason << "' lacks " << name;

  ASSERT_TRUE(applicant.sync());
  EXPECT_TRUE(queued_events<ClientJoinAccepted>(applicant).empty())
      << "a denied client was also accepted";
  ASSERT_TRUE(holder.sync());
  EXPECT_TRUE(queued_events<ClientJoinDenied>(holder).empty())
      << "another client received the denial";
}

INSTANTIATE_TEST_SUITE_P(
    Codes, DenialTest,
    ::testing::Values(Denial{"WrongFragmentSize1",
                             1,
                             [](ClientJoinRequested& r) { add_stored_file(r, 4096); },
                             {"FragmentSize"}},
                      Denial{"WrongHashAlgorithm2",
                             2,
                             [](ClientJoinRequested& r) { r.hash_algorithm = "MD5"; },
                             {"HashAlgorithm"}},
                      Denial{"EndpointConflict4",
                             4,
                             [](ClientJoinRequested& r) { r.endpoints = {taken_endpoint}; },
                             {taken_endpoint}},
                      Denial{"AllThreeGiveTheFirstCode1",
                             1,
                             [](ClientJoinRequested& r) {
                               add_stored_file(r, 4096);
                               r.hash_algorithm = "MD5";
                               r.endpoints = {taken_endpoint};
                             },
                             {"FragmentSize", "HashAlgorithm", taken_endpoint}}),
    [](const auto& p) { return std::string(p.param.name); });

TEST_F(PluginTest, MalformedJoinRequestDroppedAndDeniedWithOther) {
  Client applicant("applicant");
  ASSERT_TRUE(torrent(applicant));

  auto without_algorithm = nlohmann::json::parse(encode(join_request(endpoint(5))));
  without_algorithm.erase("HashAlgorithm");
  const std::vector<std::pair<std::string, std::string>> cases{
      {"invalid JSON", "{\"EventId\":"},
      {"no HashAlgorithm", without_algorithm.dump()},
  };
  for (const auto& [what, payload] : cases) {
    SCOPED_TRACE(what);
    const int sent = applicant.publish(topics::client_join_requested, payload, 2);
    EXPECT_EQ(sent, reason::not_authorized)
        << "a malformed request must be dropped: " << describe_reason(sent);
    const auto denied = wait_event<ClientJoinDenied>(applicant);
    ASSERT_TRUE(denied) << "no ClientJoinDenied for a malformed request within "
                        << answer_timeout.count() << " ms";
    EXPECT_EQ(denied->reason_code, denial::other);
    EXPECT_EQ(denied->client_identifier, "applicant");
    EXPECT_FALSE(denied->request_event_id) << "a malformed request has no EventId to answer";
    ASSERT_TRUE(denied->reason);
    if (what == "no HashAlgorithm") {
      EXPECT_NE(denied->reason->find("HashAlgorithm"), std::string::npos)
          << "Reason '" << *denied->reason << "' does not name the missing field";
    }
  }
  // The applicant can still join.
  EXPECT_TRUE(join(applicant, join_request(endpoint(5))));
}

TEST_F(PluginTest, JoinWithoutSucceededTimesOutWithOther) {
  Client watcher("watcher");
  ASSERT_TRUE(torrent(watcher));
  Client applicant("applicant");
  ASSERT_TRUE(torrent(applicant));
  const auto request = join_request(endpoint(6));
  EXPECT_TRUE(acknowledged(applicant.publish(topics::client_join_requested, encode(request), 2)));
  const auto accepted = wait_event<ClientJoinAccepted>(applicant, [&](const ClientJoinAccepted& a) {
    return a.request_event_id == request.event_id;
  });
  ASSERT_TRUE(accepted);
  const auto accepted_at = Clock::now();

  const auto denied = wait_event<ClientJoinDenied>(
      applicant, [&](const ClientJoinDenied& d) { return d.request_event_id == request.event_id; },
      std::chrono::milliseconds(join_timeout_ms) + 3s);
  ASSERT_TRUE(denied) << "no ClientJoinDenied after the join timeout of " << join_timeout_ms
                      << " ms";
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - accepted_at);
  // The deadline runs from when the tracker handled the request, up to one TICK before we saw the
  // answer.
  EXPECT_GE(waited.count(), join_timeout_ms - 300) << "denied before the join timeout";
  EXPECT_EQ(denied->reason_code, denial::other);
  ASSERT_TRUE(denied->reason);
  EXPECT_NE(denied->reason->find("timed out"), std::string::npos) << "Reason: " << *denied->reason;

  // A ClientJoinSucceeded after the timeout registers nobody.
  EXPECT_TRUE(acknowledged(
      applicant.publish(topics::client_join_succeeded,
                        encode(ClientJoinSucceeded{fresh_uuid(), request.event_id}), 2)));
  std::this_thread::sleep_for(300ms);  // a TICK or two, in case a registration were pending
  ASSERT_TRUE(watcher.sync());
  EXPECT_TRUE(queued_events<ClientRegistered>(watcher).empty())
      << "a timed-out join was registered";
  // A new attempt works.
  EXPECT_TRUE(join(applicant, join_request(endpoint(6))));
}

// --- Spoofing
// --------------------------------------------------------------------------------------

TEST_F(PluginTest, ClientsCannotPublishOnTrackerTopics) {
  Client watcher("watcher");
  ASSERT_TRUE(watcher.connect(port()));
  std::vector<std::string> watched;
  for (const auto& event : tracker_issued_events()) watched.emplace_back(topic_of(event));
  ASSERT_EQ(watched.size(), 10u);
  ASSERT_TRUE(watcher.subscribe(watched));
  Client spoofer("spoofer");
  ASSERT_TRUE(spoofer.connect(port()));

  for (const auto& event : tracker_issued_events()) {
    const std::string topic(topic_of(event));
    SCOPED_TRACE(topic);
    const std::string payload = encode(event);
    for (int qos : {1, 2}) {
      const int code = spoofer.publish(topic, payload, qos);
      EXPECT_EQ(code, reason::not_authorized) << "QoS " << qos << ": " << describe_reason(code);
    }
    ASSERT_TRUE(watcher.sync());
    const auto leaked =
        watcher.wait_for([&](const Message& m) { return m.payload == payload; }, 0ms);
    EXPECT_FALSE(leaked) << "a subscriber of " << topic << " received the spoofed event";
  }
  EXPECT_TRUE(broker->running());
}

TEST_F(PluginTest, GoodbyeNamesItsRealPublisher) {
  Client victim("victim");
  ASSERT_TRUE(torrent(victim));
  ASSERT_TRUE(join(victim, join_request(endpoint(1))));
  Client liar("liar");
  ASSERT_TRUE(torrent(liar));
  Joined liar_joined;
  ASSERT_TRUE(join(liar, join_request(endpoint(2)), &liar_joined));

  const ClientGoodbye forged{fresh_uuid(), ClientId("victim"), std::nullopt};
  const int sent = liar.publish(topics::client_goodbye, encode(forged), 2);
  EXPECT_EQ(sent, reason::success)
      << "the goodbye is delivered, stamped: " << describe_reason(sent);
  const auto goodbye = wait_event<ClientGoodbye>(
      victim, [&](const ClientGoodbye& g) { return g.event_id == forged.event_id; });
  ASSERT_TRUE(goodbye) << "the victim did not receive the liar's goodbye";
  EXPECT_EQ(goodbye->client_identifier, "liar")
      << "ClientIdentifier must be the publisher's real id";
  ASSERT_TRUE(goodbye->revision) << "a registered client's goodbye is a view change";
  EXPECT_EQ(*goodbye->revision, *liar_joined.registered.revision + 1);

  // From a client that is not registered: stamped too, and no view change.
  Client stranger("stranger");
  ASSERT_TRUE(stranger.connect(port()));
  const ClientGoodbye forged_again{fresh_uuid(), ClientId("victim"), std::nullopt};
  EXPECT_TRUE(acknowledged(stranger.publish(topics::client_goodbye, encode(forged_again), 2)));
  const auto stranger_goodbye = wait_event<ClientGoodbye>(
      victim, [&](const ClientGoodbye& g) { return g.event_id == forged_again.event_id; });
  ASSERT_TRUE(stranger_goodbye);
  EXPECT_EQ(stranger_goodbye->client_identifier, "stranger");
  EXPECT_FALSE(stranger_goodbye->revision) << "an unregistered client's goodbye changes no view";

  // The victim is still registered; the liar is not.
  Client newcomer("newcomer");
  ASSERT_TRUE(torrent(newcomer));
  Joined newcomer_joined;
  ASSERT_TRUE(join(newcomer, join_request(endpoint(3)), &newcomer_joined));
  EXPECT_EQ(newcomer_joined.accepted.clients.count("victim"), 1u)
      << "the victim was unregistered by a forgery";
  EXPECT_EQ(newcomer_joined.accepted.clients.count("liar"), 0u)
      << "the liar's own goodbye did not unregister it";
  ASSERT_TRUE(victim.sync());
  EXPECT_TRUE(queued_events<ClientGoodbye>(
                  victim, [](const ClientGoodbye& g) { return g.client_identifier == "victim"; })
                  .empty())
      << "a goodbye naming the victim went out";
}

// --- Wills ---------------------------------------------------------------------------------------

// A will is published by the broker when its client's connection is lost; the MESSAGE callback
// never sees it, the ACL check does (plugin/acl_gate.hpp).
struct WillCase {
  Protocol protocol;
  int qos;
};

std::string describe_will_case(const ::testing::TestParamInfo<WillCase>& info) {
  return std::string(info.param.protocol == Protocol::mqtt5 ? "Mqtt5" : "Mqtt311") + "Qos" +
         std::to_string(info.param.qos);
}

class WillTest : public PluginTest, public ::testing::WithParamInterface<WillCase> {
 protected:
  // A client with `will` that loses its connection without DISCONNECT.
  void die_with_will(const std::string& id, const std::string& topic, const std::string& payload,
                     bool retain = false) {
    Client dying(id, GetParam().protocol);
    dying.set_will(topic, payload, GetParam().qos, retain);
    ASSERT_TRUE(dying.connect(port()));
    dying.lose_connection();
  }

  // Proof that wills are sent in this set-up: one on an ordinary topic reaches `watcher`.
  void expect_an_ordinary_will_arrives(Client& watcher, const std::string& id) {
    const std::string payload = "ordinary will of " + id;
    die_with_will(id, "plain/wills", payload);
    const auto arrived =
        watcher.wait_for([&](const Message& m) { return m.payload == payload; }, answer_timeout);
    ASSERT_TRUE(arrived) << "a will on an ordinary topic did not arrive: the test proves nothing; "
                         << broker->where();
  }
};

TEST_P(WillTest, AWillOnATrackerTopicReachesNobody) {
  Client watcher("watcher");
  ASSERT_TRUE(watcher.connect(port()));
  std::vector<std::string> watched{"plain/wills"};
  for (const auto& event : tracker_issued_events()) watched.emplace_back(topic_of(event));
  ASSERT_TRUE(watcher.subscribe(watched));

  int n = 0;
  for (const auto& event : tracker_issued_events()) {
    const std::string topic(topic_of(event));
    SCOPED_TRACE(topic);
    const std::string payload = encode(event);
    die_with_will("forger-" + std::to_string(n++), topic, payload);
    // A will is sent when the broker sees the socket close; the next ordinary will comes after it.
    expect_an_ordinary_will_arrives(watcher, "witness-" + std::to_string(n));
    ASSERT_TRUE(watcher.sync());
    const auto leaked =
        watcher.wait_for([&](const Message& m) { return m.payload == payload; }, 0ms);
    EXPECT_FALSE(leaked) << "a subscriber of " << topic << " received the will";
  }
  EXPECT_NE(broker->log().find("only the tracker publishes there"), std::string::npos)
      << broker->where();
  EXPECT_TRUE(broker->running());
}

TEST_P(WillTest, AGoodbyeWillCannotNameAnotherClientAndTheTrackerAnnouncesTheLoss) {
  Client victim("victim");
  ASSERT_TRUE(torrent(victim));
  Joined victim_joined;
  ASSERT_TRUE(join(victim, join_request(endpoint(1)), &victim_joined));
  ASSERT_TRUE(victim.subscribe(std::vector<std::string>{"plain/wills"}));
  // The liar is registered too, and dies with a goodbye that carries a stamp naming the victim at
  // the Revision the liar's own loss brings (the victim's registration, the liar's, then this).
  Client liar("liar", GetParam().protocol);
  Joined liar_joined;
  ClientGoodbye forged{fresh_uuid(), ClientId("victim"), std::nullopt};
  forged.revision = *victim_joined.registered.revision + 2;
  liar.set_will(topics::client_goodbye, encode(forged), GetParam().qos);
  ASSERT_TRUE(liar.connect(port()));
  ASSERT_TRUE(liar.subscribe(torrent_subscriptions()));
  ASSERT_TRUE(join(liar, join_request(endpoint(2)), &liar_joined));
  liar.lose_connection();

  // The tracker announces the liar's loss itself, stamped with its real id.
  const auto goodbye = wait_event<ClientGoodbye>(
      victim, [](const ClientGoodbye& g) { return g.client_identifier == "liar"; });
  ASSERT_TRUE(goodbye) << "the tracker did not announce the lost client; " << broker->where();
  ASSERT_TRUE(goodbye->revision);
  EXPECT_EQ(*goodbye->revision, *liar_joined.registered.revision + 1);
  expect_an_ordinary_will_arrives(victim, "witness");
  ASSERT_TRUE(victim.sync());
  EXPECT_TRUE(queued_events<ClientGoodbye>(victim,
                                           [&](const ClientGoodbye& g) {
                                             return g.event_id == forged.event_id ||
                                                    g.client_identifier == "victim";
                                           })
                  .empty())
      << "the liar's will reached a torrent server";
  EXPECT_NE(broker->log().find("the will of client 'liar' on clients/goodbye reaches nobody"),
            std::string::npos)
      << broker->where();

  // Goodbyes published the ordinary way are still stamped with their publisher.
  Client leaver("leaver");
  ASSERT_TRUE(torrent(leaver));
  ASSERT_TRUE(join(leaver, join_request(endpoint(4))));
  const ClientGoodbye said{fresh_uuid(), ClientId("victim"), std::nullopt};
  EXPECT_TRUE(acknowledged(leaver.publish(topics::client_goodbye, encode(said), 2)));
  const auto stamped = wait_event<ClientGoodbye>(
      victim, [&](const ClientGoodbye& g) { return g.event_id == said.event_id; });
  ASSERT_TRUE(stamped) << broker->where();
  EXPECT_EQ(stamped->client_identifier, "leaver");

  // The victim is still registered.
  Client newcomer("newcomer");
  ASSERT_TRUE(torrent(newcomer));
  Joined newcomer_joined;
  ASSERT_TRUE(join(newcomer, join_request(endpoint(5)), &newcomer_joined));
  EXPECT_EQ(newcomer_joined.accepted.clients.count("victim"), 1u)
      << "the will unregistered the victim";
}

TEST_P(WillTest, AWillOnAClientTopicReachesNobodyAndARetainedOneIsNotKept) {
  Client watcher("watcher");
  ASSERT_TRUE(watcher.connect(port()));
  ASSERT_TRUE(watcher.subscribe(
      std::vector<std::string>{"plain/wills", std::string(topics::client_join_requested)}));
  const std::string request = encode(join_request(endpoint(7)));
  die_with_will("will-joiner", std::string(topics::client_join_requested), request);
  const std::string retained = encode(join_request(endpoint(8)));
  die_with_will("retained-joiner", std::string(topics::client_join_requested), retained, true);
  expect_an_ordinary_will_arrives(watcher, "witness");
  ASSERT_TRUE(watcher.sync());
  for (const auto& m : watcher.drain())
    EXPECT_TRUE(m.payload != request && m.payload != retained)
        << "a subscriber of " << m.topic << " received a will" << (m.retain ? " (retained)" : "");
  // A subscriber that comes later gets no retained will either.
  Client late("late");
  ASSERT_TRUE(late.connect(port()));
  ASSERT_TRUE(late.subscribe(std::vector<std::string>{std::string(topics::client_join_requested)}));
  ASSERT_TRUE(late.sync());
  EXPECT_FALSE(late.wait_for([&](const Message& m) { return m.payload == retained; }, 0ms))
      << "a retained will on a client topic was kept";
}

INSTANTIATE_TEST_SUITE_P(Wills, WillTest,
                         ::testing::Values(WillCase{Protocol::mqtt311, 1},
                                           WillCase{Protocol::mqtt311, 2},
                                           WillCase{Protocol::mqtt5, 1},
                                           WillCase{Protocol::mqtt5, 2}),
                         describe_will_case);

// --- The broker's own ACLs
// ------------------------------------------------------------------------

// The plugin's ACL check comes first and defers what it does not refuse: an acl_file still decides
// the rest, also after a reload (SIGHUP), and with plugin_opt_acl_fallback defer and no ACL at all
// the broker denies (mosquitto's rule when every ACL check defers).
class BrokerAclTest : public ::testing::Test {
 protected:
  void start(const std::string& fallback, bool with_acl_file) {
    BrokerConfig config = config_with(fast_options());
    config.plugin_options.emplace_back("acl_fallback", fallback);
    if (with_acl_file) {
      acl_path_ = ::testing::TempDir() + "mqds-acl-" + std::to_string(::getpid()) + "-" +
                  std::to_string(++files_);
      std::ofstream acl(acl_path_);
      // What the test's clients use (Client::sync publishes under mqds-test/), and files/# to
      // show that the plugin still refuses files/info there.
      acl << "topic readwrite open/#\ntopic readwrite files/#\ntopic readwrite mqds-test/#\n";
      acl.close();
      ::chmod(acl_path_.c_str(), 0644);
      config.extra_config_lines.push_back("acl_file " + acl_path_);
    }
    broker = std::make_unique<Broker>(std::move(config));
    ASSERT_TRUE(broker->start());
  }
  void TearDown() override {
    if (!acl_path_.empty()) std::remove(acl_path_.c_str());
  }

  // Whether `subscriber` receives what `publisher` publishes on `topic`, and the publish's code.
  std::pair<int, bool> round_trip(Client& publisher, Client& subscriber, const std::string& topic) {
    const std::string payload = "to " + topic + " #" + std::to_string(++sent_);
    const int code = publisher.publish(topic, payload, 1);
    EXPECT_TRUE(subscriber.sync());
    const bool arrived =
        subscriber.wait_for([&](const Message& m) { return m.payload == payload; }, 0ms)
            .has_value();
    return {code, arrived};
  }

  std::unique_ptr<Broker> broker;
  std::string acl_path_;
  int files_ = 0;
  int sent_ = 0;
};

TEST_F(BrokerAclTest, AnAclFileStillDecidesWhatThePluginDoesNotRefuseAlsoAfterAReload) {
  start("allow", true);
  Client subscriber("acl-subscriber");
  ASSERT_TRUE(subscriber.connect(broker->port()));
  ASSERT_TRUE(subscriber.subscribe(std::vector<std::string>{"open/#", "closed/#", "files/#"}));
  Client publisher("acl-publisher");
  ASSERT_TRUE(publisher.connect(broker->port()));
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "at start" : "after SIGHUP");
    const auto open = round_trip(publisher, subscriber, "open/a");
    EXPECT_EQ(open.first, reason::success) << describe_reason(open.first);
    EXPECT_TRUE(open.second) << "what the acl_file allows was not delivered; " << broker->where();
    const auto closed = round_trip(publisher, subscriber, "closed/a");
    EXPECT_EQ(closed.first, reason::not_authorized) << describe_reason(closed.first);
    EXPECT_FALSE(closed.second) << "what the acl_file denies was delivered";
    // The acl_file allows files/#, but only the tracker publishes on files/info.
    const auto forged = round_trip(publisher, subscriber, std::string(topics::file_info_published));
    EXPECT_EQ(forged.first, reason::not_authorized) << describe_reason(forged.first);
    EXPECT_FALSE(forged.second);
    if (pass == 0) {
      ASSERT_EQ(::kill(broker->pid(), SIGHUP), 0);
      std::this_thread::sleep_for(500ms);  // the reload happens in the broker's next loop pass
      ASSERT_TRUE(broker->running());
    }
  }
}

TEST_F(BrokerAclTest, WithFallbackDeferAndNoAclTheBrokerDeniesAndTheLogSaysWhy) {
  start("defer", false);
  Client publisher("acl-publisher");
  ASSERT_TRUE(publisher.connect(broker->port()));
  const int code = publisher.publish("open/a", "x", 1);
  EXPECT_EQ(code, reason::not_authorized) << describe_reason(code);
  EXPECT_NE(broker->log().find("set plugin_opt_acl_fallback allow"), std::string::npos)
      << broker->where();
}

// --- Malformed and hostile payloads --------------------------------------------------------------

TEST_F(PluginTest, MalformedPayloadsOnClientTopicsAreDroppedAndTheBrokerKeepsServing) {
  Client sender("sender");
  ASSERT_TRUE(torrent(sender));
  ASSERT_TRUE(join(sender, join_request(endpoint(1))));
  Client watcher("watcher");
  ASSERT_TRUE(watcher.connect(port()));
  ASSERT_TRUE(watcher.subscribe(tracker_subscriptions()));

  const std::string uuid = fresh_uuid().to_string();
  const std::vector<std::pair<std::string, std::string>> hostile{
      {"empty payload", ""},
      {"truncated JSON", "{\"EventId\":\"" + uuid},
      {"not JSON", "hello"},
      {"a JSON array", "[]"},
      {"JSON null", "null"},
      {"a JSON number", "42"},
      {"an empty object", "{}"},
      {"EventId of the wrong type", "{\"EventId\":17}"},
      {"EventId not a GUID", "{\"EventId\":\"not-a-guid\"}"},
      {"invalid UTF-8",
       "{\"EventId\":\"" + uuid + "\",\"Hash\":\"\xff\xfe\xfd\",\"Reason\":\"\xc3\x28\"}"},
      {"a NUL inside", std::string("{\"EventId\":\"") + uuid + std::string("\0\"}", 3)},
      {"1 MiB of '['", std::string(1 << 20, '[')},
      {"1 MiB of '{\"a\":'",
       [] {
         std::string deep;
         while (deep.size() < (1u << 20)) deep += "{\"a\":";
         return deep;
       }()},
      {"a 1 MiB EventId", "{\"EventId\":\"" + std::string(1 << 20, 'A') + "\"}"},
  };
  for (const auto topic : tracker_subscriptions()) {
    for (const auto& [what, payload] : hostile) {
      SCOPED_TRACE(std::string(topic) + ", " + what);
      const int code = sender.publish(topic, payload, 1);
      EXPECT_EQ(code, reason::not_authorized) << describe_reason(code);
      ASSERT_TRUE(broker->running()) << "the broker died on this payload";
    }
  }
  ASSERT_TRUE(watcher.sync());
  const auto leaked = watcher.drain();
  for (const auto& m : leaked) {
    if (m.topic.rfind("mqds-test/", 0) == 0) continue;
    ADD_FAILURE() << "a malformed payload was delivered on " << m.topic << ": "
                  << m.payload.substr(0, 80);
  }
  // Every malformed request was answered with a denial, to the sender only.
  ASSERT_TRUE(sender.sync());
  const auto denials = queued_events<ClientJoinDenied>(sender);
  EXPECT_EQ(denials.size(), hostile.size())
      << "one ClientJoinDenied per malformed ClientJoinRequested";
  for (const auto& d : denials) EXPECT_EQ(d.reason_code, denial::other);

  // The broker and the tracker still serve, and the sender is still registered.
  Client newcomer("newcomer");
  ASSERT_TRUE(torrent(newcomer));
  Joined joined;
  ASSERT_TRUE(join(newcomer, join_request(endpoint(2)), &joined));
  EXPECT_EQ(joined.accepted.clients.count("sender"), 1u)
      << "malformed events unregistered the sender";
}

// --- Lost clients --------------------------------------------------------------------------------

TEST_F(PluginTest, ClientLostWithoutGoodbyeIsAnnounced) {
  Client stayer("stayer");
  ASSERT_TRUE(torrent(stayer));
  ASSERT_TRUE(join(stayer, join_request(endpoint(1))));
  Client leaver("leaver");
  ASSERT_TRUE(torrent(leaver));
  Joined leaver_joined;
  ASSERT_TRUE(join(leaver, join_request(endpoint(2)), &leaver_joined));

  leaver.lose_connection();
  const auto goodbye = wait_event<ClientGoodbye>(
      stayer, [](const ClientGoodbye& g) { return g.client_identifier == "leaver"; });
  ASSERT_TRUE(goodbye) << "no ClientGoodbye for a client whose connection was lost, within "
                       << answer_timeout.count() << " ms";
  ASSERT_TRUE(goodbye->revision);
  EXPECT_EQ(*goodbye->revision, *leaver_joined.registered.revision + 1);
}

// --- Restart with state kept ---------------------------------------------------------------------

enum class Stop : std::uint8_t { sigterm, sigkill };

class RestartTest : public ::testing::TestWithParam<Stop> {};

TEST_P(RestartTest, RevisionSurvivesAndClientsRejoin) {
  Broker broker(config_with(fast_options()));
  ASSERT_TRUE(broker.start());
  std::uint64_t revision_before = 0;
  {
    Client a("a");
    Client b("b");
    ASSERT_TRUE(a.connect(broker.port()));
    ASSERT_TRUE(a.subscribe(torrent_subscriptions()));
    ASSERT_TRUE(b.connect(broker.port()));
    ASSERT_TRUE(b.subscribe(torrent_subscriptions()));
    ASSERT_TRUE(join(a, join_request(endpoint(1))));
    Joined b_joined;
    ASSERT_TRUE(join(b, join_request(endpoint(2)), &b_joined));
    revision_before = b_joined.registered.revision.value_or(0);
    ASSERT_GT(revision_before, 0u);
    if (GetParam() == Stop::sigterm) {
      ASSERT_TRUE(broker.stop());
    } else {
      broker.kill9();
    }
    // The clients' connections are gone with the broker; they go without a word.
    a.lose_connection();
    b.lose_connection();
  }
  EXPECT_TRUE(std::filesystem::exists(broker.data_dir() + "/data.mdb"))
      << "no LMDB store in " << broker.data_dir();

  ASSERT_TRUE(broker.start());
  Client a("a");
  Client b("b");
  ASSERT_TRUE(a.connect(broker.port()));
  ASSERT_TRUE(a.subscribe(torrent_subscriptions()));
  ASSERT_TRUE(b.connect(broker.port()));
  ASSERT_TRUE(b.subscribe(torrent_subscriptions()));
  Joined a_joined;
  ASSERT_TRUE(join(a, join_request(endpoint(1)), &a_joined));
  ASSERT_TRUE(a_joined.accepted.revision);
  EXPECT_GT(*a_joined.accepted.revision, revision_before)
      << "the Revision went back after the restart";
  EXPECT_TRUE(a_joined.accepted.clients.empty())
      << "registrations do not survive a restart; clients rejoin";
  Joined b_joined;
  ASSERT_TRUE(join(b, join_request(endpoint(2)), &b_joined));
  ASSERT_TRUE(b_joined.accepted.revision);
  EXPECT_GT(*b_joined.accepted.revision, *a_joined.accepted.revision);
  EXPECT_EQ(b_joined.accepted.clients.count("a"), 1u);
}

INSTANTIATE_TEST_SUITE_P(Signals, RestartTest, ::testing::Values(Stop::sigterm, Stop::sigkill),
                         [](const auto& p) {
                           return p.param == Stop::sigterm ? "Sigterm" : "Sigkill";
                         });

// --- Heap ----------------------------------------------------------------------------------------

// The broker's resident set, for the report: the plugin's own C++ allocations are not counted in
// $SYS/broker/heap/current, which only tracks the broker's allocations.
std::int64_t resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

TEST_F(PluginTest, BrokerHeapStaysFlatOver20000Events) {
  constexpr int joins = 10'000;
  constexpr int requests = 10'000;
  constexpr int window = 100;
  constexpr std::int64_t heap_growth_bytes_max = 1 << 20;

  Client monitor("heap-monitor");
  ASSERT_TRUE(monitor.connect(port()));
  ASSERT_TRUE(monitor.subscribe(std::vector<std::string>{"$SYS/broker/heap/current"}, 0));
  std::int64_t heap = -1;
  auto current_heap = [&] {
    for (const auto& m : monitor.drain())
      if (m.topic == "$SYS/broker/heap/current") heap = std::stoll(m.payload);
    return heap;
  };
  Client loader("loader");
  // Debian's broker lets a burst of QoS 2 messages overrun a client's Receive Maximum, and
  // libmosquitto then drops the connection (see
  // Mqtt5ClientWithDefaultReceiveMaximumSurvivesABurst).
  loader.set_receive_maximum(65535);
  ASSERT_TRUE(loader.connect(port()));

  // Joins from one client: each is answered with a ClientJoinAccepted sent to it alone, and
  // supersedes the one before. `count` requests, at most `window` unanswered at a time.
  auto run_joins = [&](int count) -> ::testing::AssertionResult {
    for (int done = 0; done < count; done += window) {
      std::vector<int> mids;
      for (int i = 0; i < window; ++i) {
        const int mid = loader.publish_async(topics::client_join_requested,
                                             encode(join_request(endpoint(7))), 1);
        if (mid <= 0)
          return ::testing::AssertionFailure() << "publish failed: " << describe_reason(mid);
        mids.push_back(mid);
      }
      for (int mid : mids) {
        const auto code = loader.wait_published(mid);
        if (!code || !acknowledged(*code))
          return ::testing::AssertionFailure()
                 << "request " << done << ": " << describe_reason(code.value_or(-1));
      }
      for (int i = 0; i < window; ++i) {
        if (!loader.wait_for(topics::client_join_accepted, answer_timeout))
          return ::testing::AssertionFailure()
                 << "only " << done + i << " of " << count << " joins were answered"
                 << (loader.connected()
                         ? ""
                         : "; the loader lost its connection: " + loader.disconnect_reason());
      }
    }
    return ::testing::AssertionSuccess();
  };
  // Requests for a fragment nobody distributes, from an unregistered client: ignored.
  auto run_requests = [&](int count) -> ::testing::AssertionResult {
    for (int done = 0; done < count; done += window) {
      std::vector<int> mids;
      for (int i = 0; i < window; ++i) {
        const FragmentDistributionRequested request{fresh_uuid(), sha256(std::to_string(i))};
        mids.push_back(
            loader.publish_async(topics::fragment_distribution_requested, encode(request), 1));
      }
      for (int mid : mids) {
        const auto code = mid > 0 ? loader.wait_published(mid) : std::optional<int>(mid);
        if (!code || !acknowledged(*code))
          return ::testing::AssertionFailure()
                 << "request " << done << ": " << describe_reason(code.value_or(-1));
      }
    }
    return ::testing::AssertionSuccess();
  };
  // The broker publishes its heap every second (sys_interval 1) when it changed.
  auto settle = [&] {
    std::this_thread::sleep_for(2500ms);
    loader.drain();
    return current_heap();
  };

  ASSERT_TRUE(run_joins(500))
      << "warm-up";  // lets the broker and the plugin reach their working sizes
  ASSERT_TRUE(run_requests(500)) << "warm-up";
  const std::int64_t heap_before = settle();
  const std::int64_t rss_before_kib = resident_kib(broker->pid());
  ASSERT_GT(heap_before, 0) << "no $SYS/broker/heap/current value arrived";

  const auto started = Clock::now();
  ASSERT_TRUE(run_joins(joins));
  ASSERT_TRUE(run_requests(requests));
  const auto load_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  const std::int64_t heap_after = settle();
  const std::int64_t rss_after_kib = resident_kib(broker->pid());

  const std::int64_t growth = heap_after - heap_before;
  const double per_event = static_cast<double>(growth) / (joins + requests);
  std::cout << "[ heap     ] $SYS/broker/heap/current before " << heap_before << " B, after "
            << heap_after << " B, growth " << growth << " B over " << joins + requests
            << " events (" << per_event << " B/event); load took " << load_ms
            << " ms; broker VmRSS " << rss_before_kib << " -> " << rss_after_kib << " KiB\n";
  RecordProperty("heap_before_bytes", std::to_string(heap_before));
  RecordProperty("heap_after_bytes", std::to_string(heap_after));
  RecordProperty("rss_before_kib", std::to_string(rss_before_kib));
  RecordProperty("rss_after_kib", std::to_string(rss_after_kib));
  EXPECT_LE(growth, heap_growth_bytes_max)
      << "the broker's heap grew by " << growth << " bytes (" << per_event
      << " per event): something the plugin hands the broker "
      << "leaks; compare the plugin's mosquitto_malloc/publish calls";
  EXPECT_TRUE(broker->running());
}

// Found while writing the heap test: Debian's mosquitto 2.0.11 overruns an MQTT 5 client's Receive
// Maximum with a burst of QoS 2 messages (its log shows 20 more PUBLISHes sent after the first
// PUBCOMP while 19 PUBCOMPs were still due: the quota seems freed at PUBREC), and
// libmosquitto 2.0.11 then drops the connection with "A network protocol error"
// (MOSQ_ERR_PROTOCOL). It happens without the plugin too (mosquitto_sub -V mqttv5 -q 2 fed 2,000
// messages by mosquitto_pub stops after about 140). Torrent servers on libmosquitto should connect
// with a large Receive Maximum (MOSQ_OPT_RECEIVE_MAXIMUM 65535: 5,000-message bursts arrived intact
// with 1,000).
TEST_F(PluginTest, Mqtt5ClientWithDefaultReceiveMaximumSurvivesABurst) {
  GTEST_SKIP() << "BROKER BUG (mosquitto 2.0.11, not the plugin): a burst of QoS 2 messages "
                  "overruns an MQTT 5 "
                  "client's default Receive Maximum of 20 and libmosquitto disconnects with a "
                  "protocol error";
  constexpr int burst = 200;
  Client client("burst");
  ASSERT_TRUE(client.connect(port()));
  std::vector<int> mids;
  for (int i = 0; i < burst; ++i)
    mids.push_back(
        client.publish_async(topics::client_join_requested, encode(join_request(endpoint(8))), 1));
  for (int mid : mids) {
    const auto code = mid > 0 ? client.wait_published(mid) : std::optional<int>(mid);
    ASSERT_TRUE(code && acknowledged(*code)) << "connection: " << client.disconnect_reason();
  }
  for (int i = 0; i < burst; ++i) {
    ASSERT_TRUE(client.wait_for(topics::client_join_accepted, answer_timeout))
        << i << " of " << burst << " answers arrived; connection: " << client.disconnect_reason();
  }
  EXPECT_TRUE(client.connected());
}

}  // namespace
}  // namespace mqds::broker_test
