// Unit tests of the specification-only torrent server (tests/support/spec_server.hpp), the model
// of the C# reference client. Every input is hand-written JSON with the specification's field
// names, and every publish is read back with nlohmann: nothing here goes through mqds's codec.
#include "support/spec_server.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mqds/base64.hpp"
#include "mqds/hash.hpp"

namespace mqds::spec_only {
namespace {

using json = nlohmann::json;

const std::string self = "0123456789abcdef0123456789abcdef";
const std::string other = "fedcba9876543210fedcba9876543210";
const std::string guid = "fb3f146d-c74e-4c75-a3e7-1e768b2e986f";

std::vector<std::uint8_t> bytes(const std::string& text) {
  return {text.begin(), text.end()};
}
std::string hash_of(const std::string& text) {
  return sha256(text).to_hex();
}
std::string base64_of(const std::string& text) {
  const auto b = bytes(text);
  return base64_encode(b);
}

json only(const std::vector<Message>& out, const std::string& topic) {
  EXPECT_EQ(out.size(), 1u);
  if (out.size() != 1) return json();
  EXPECT_EQ(out[0].topic, topic);
  return json::parse(out[0].payload);
}

std::set<std::string> keys_of(const json& object) {
  std::set<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.insert(key);
  return keys;
}

json accepted(const std::string& id = self) {
  return json{{"EventId", guid},
              {"ClientIdentifier", id},
              {"FragmentSize", 4},
              {"AddFileInfos", json::object()},
              {"AddFragmentInfos", json::object()},
              {"RemoveFileInfos", json::array()},
              {"RemoveFragmentInfos", json::array()},
              {"Clients", json::object()}};
}

json registered(const std::string& id, std::vector<std::string> stored = {}) {
  return json{
      {"EventId", guid},
      {"ClientIdentifier", id},
      {"Info",
       {{"Endpoints", {"tcp://" + id.substr(0, 4) + ":5000"}}, {"StoredFragments", stored}}},
      {"AddedFiles", json::object()},
      {"AddedFragments", json::object()}};
}

json denied(const json& code, const std::string& id = self) {
  return json{{"EventId", guid}, {"ClientIdentifier", id}, {"ReasonCode", code}};
}

json started(const std::string& hash, std::int64_t size) {
  return json{{"EventId", guid}, {"Hash", hash}, {"Size", size}};
}

json delivered(const std::string& hash, const std::string& content,
               std::vector<std::string> receivers = {self}) {
  return json{
      {"EventId", guid}, {"Hash", hash}, {"Data", base64_of(content)}, {"Receivers", receivers}};
}

json ended(const std::string& hash, std::int64_t size, std::vector<std::string> receivers) {
  return json{{"EventId", guid}, {"Hash", hash}, {"Size", size}, {"Receivers", receivers}};
}

json hello() {
  return json{{"EventId", guid}};
}

class SpecServer : public ::testing::Test {
 protected:
  Server server{Config{self, "tcp://board-1:5000", 5'000}, Disk{}};

  std::vector<Message> feed(std::int64_t now_ms, const std::string& topic, const json& event) {
    return server.on_message(now_ms, topic, event.dump());
  }
  void join_and_register() {
    server.on_connected(0);
    only(feed(10, "clients/join/accepted", accepted()), "clients/join/succeeded");
    EXPECT_TRUE(feed(20, "clients/registered", registered(self)).empty());
    ASSERT_EQ(server.phase(), Phase::registered);
  }
};

TEST(SpecServerTopics, AreTheTenOfTheSpecificationsTorrentServer) {
  const std::set<std::string> topics(Server::topics().begin(), Server::topics().end());
  EXPECT_EQ(topics, (std::set<std::string>{
                        "tracker/hello", "tracker/goodbye", "clients/join/accepted",
                        "clients/join/denied", "clients/registered", "clients/goodbye",
                        "files/info", "fragments/distribution/started",
                        "fragments/distribution/delivered", "fragments/distribution/ended"}));
}

TEST_F(SpecServer, AFreshServerAsksToJoinWithTheSpecificationsFieldsAlone) {
  EXPECT_EQ(server.phase(), Phase::waiting_for_hello);
  const json request = only(server.on_connected(0), "clients/join/requested");
  EXPECT_EQ(keys_of(request), (std::set<std::string>{"EventId", "HashAlgorithm", "KnownFileInfos",
                                                     "StoredFragments", "Endpoints"}));
  EXPECT_EQ(request["HashAlgorithm"], "SHA256");
  EXPECT_EQ(request["KnownFileInfos"], json::object());
  EXPECT_EQ(request["StoredFragments"], json::object());
  EXPECT_EQ(request["Endpoints"], json::array({"tcp://board-1:5000"}));
  EXPECT_EQ(request["EventId"].get<std::string>().size(), 36u);
  EXPECT_EQ(server.phase(), Phase::joining);
  EXPECT_EQ(server.next_deadline_ms(), 5'000);
}

TEST(SpecServerJoin, AServerWithDataReportsItAllOrphansIncluded) {
  Disk disk;
  disk.fragment_size = 4;
  disk.files["F"] = FileMeta{4, {hash_of("abcd")}};
  disk.fragments[hash_of("abcd")] = bytes("abcd");
  disk.fragments[hash_of("zz")] = bytes("zz");  // no file references it
  Server server(Config{self, "tcp://board-1:5000"}, disk);
  const json request = only(server.on_connected(0), "clients/join/requested");
  EXPECT_EQ(request["FragmentSize"], 4);
  EXPECT_EQ(request["KnownFileInfos"]["F"]["Size"], 4);
  EXPECT_EQ(request["KnownFileInfos"]["F"]["FragmentSequence"], json::array({hash_of("abcd")}));
  EXPECT_EQ(request["StoredFragments"][hash_of("abcd")]["Size"], 4);
  EXPECT_EQ(request["StoredFragments"][hash_of("zz")]["Size"], 2);
  const auto first = request["EventId"];
  server.on_message(10, "tracker/hello", hello().dump());
  EXPECT_EQ(server.counters().joins_requested, 2u);
  EXPECT_NE(
      first,
      json::parse(server.on_message(20, "tracker/hello", hello().dump())[0].payload).at("EventId"));
}

TEST_F(SpecServer, AcceptedIsAppliedAndAnsweredWithSucceededThenItsOwnRegisteredRegistersIt) {
  Disk disk;
  disk.fragment_size = 4;
  disk.fragments[hash_of("gone")] = bytes("gone");
  disk.fragments[hash_of("keep")] = bytes("keep");
  disk.files["OLD"] = FileMeta{4, {hash_of("gone")}};
  server = Server(Config{self, "tcp://board-1:5000"}, disk);
  server.on_connected(0);
  json a = accepted();
  a["AddFileInfos"] = {{"NEW", {{"Size", 4}, {"FragmentSequence", {hash_of("keep")}}}}};
  a["AddFragmentInfos"] = {{hash_of("abcd"), {{"Size", 4}}}};
  a["RemoveFileInfos"] = {"OLD"};
  a["RemoveFragmentInfos"] = {hash_of("gone")};
  a["Clients"] = {{other, {{"Endpoints", {"tcp://b:1"}}, {"StoredFragments", {hash_of("abcd")}}}}};
  const json succeeded = only(feed(10, "clients/join/accepted", a), "clients/join/succeeded");
  EXPECT_EQ(keys_of(succeeded), std::set<std::string>{"EventId"});
  EXPECT_EQ(server.phase(), Phase::awaiting_registration);
  EXPECT_EQ(server.disk().fragments.count(hash_of("gone")), 0u);
  EXPECT_EQ(server.disk().fragments.count(hash_of("keep")), 1u);
  EXPECT_EQ(server.disk().files.count("OLD"), 0u);
  EXPECT_EQ(server.disk().files.count("NEW"), 1u);
  EXPECT_EQ(server.disk().fragment_size, 4);
  EXPECT_EQ(server.view().fragments,
            (std::map<std::string, std::int64_t>{{hash_of("abcd"), 4}, {hash_of("keep"), 4}}));
  EXPECT_EQ(server.view().clients.at(other).stored, std::set<std::string>{hash_of("abcd")});
  EXPECT_EQ(server.next_deadline_ms(), 5'010);

  // Another client's registration is dropped while it is not registered itself.
  EXPECT_TRUE(feed(20, "clients/registered", registered("c2")).empty());
  EXPECT_EQ(server.counters().dropped_unregistered, 1u);
  EXPECT_EQ(server.view().clients.count("c2"), 0u);
  EXPECT_TRUE(feed(30, "clients/registered", registered(self, {hash_of("keep")})).empty());
  EXPECT_EQ(server.phase(), Phase::registered);
  EXPECT_EQ(server.view().clients.at(self).stored, std::set<std::string>{hash_of("keep")});
  EXPECT_EQ(server.next_deadline_ms(), std::nullopt);
  // Registered, it applies the others' registrations.
  EXPECT_TRUE(feed(40, "clients/registered", registered("c2")).empty());
  EXPECT_EQ(server.view().clients.count("c2"), 1u);
}

TEST_F(SpecServer, JoinAnswersNamingAnotherClientAreIgnored) {
  server.on_connected(0);
  EXPECT_TRUE(feed(10, "clients/join/accepted", accepted(other)).empty());
  EXPECT_TRUE(feed(10, "clients/join/denied", denied(128, other)).empty());
  EXPECT_EQ(server.phase(), Phase::joining);
  EXPECT_EQ(server.counters().ignored_other_clients, 2u);
}

TEST(SpecServerDenial, EachCodeOfTheEnumerationIsReadAndLeavesItWaitingForTrackerHello) {
  for (const int code : {1, 2, 4, 128}) {
    Server server(Config{self, "tcp://board-1:5000"}, Disk{});
    server.on_connected(0);
    json d = denied(code);
    d["Reason"] = "because";
    EXPECT_TRUE(server.on_message(10, "clients/join/denied", d.dump()).empty());
    EXPECT_EQ(server.phase(), Phase::waiting_for_hello) << code;
    EXPECT_EQ(server.counters().denials, 1u);
    EXPECT_EQ(server.counters().last_reason_code, code);
    EXPECT_EQ(server.counters().last_reason, "because");
    EXPECT_EQ(server.next_deadline_ms(), std::nullopt);
    // Only a TrackerHello makes it try again.
    EXPECT_TRUE(server.on_tick(60'000).empty());
    only(server.on_message(60'000, "tracker/hello", hello().dump()), "clients/join/requested");
    EXPECT_EQ(server.phase(), Phase::joining);
  }
}

TEST_F(SpecServer, ACodeOutsideTheEnumerationIsUnreadableSoTheJoinTimesOut) {
  server.on_connected(0);
  for (const json& code : {json(3), json("1"), json(1.0), json(nullptr)})
    EXPECT_TRUE(feed(10, "clients/join/denied", denied(code)).empty());
  EXPECT_EQ(server.counters().dropped_malformed, 4u);
  EXPECT_EQ(server.counters().denials, 0u);
  EXPECT_EQ(server.phase(), Phase::joining);
  server.on_tick(4'999);
  EXPECT_EQ(server.phase(), Phase::joining);
  server.on_tick(5'000);
  EXPECT_EQ(server.phase(), Phase::waiting_for_hello);
  EXPECT_EQ(server.counters().timeouts, 1u);
}

TEST_F(SpecServer, NoRegistrationWithinTheTimeoutLeavesItWaitingForTrackerHello) {
  server.on_connected(0);
  only(feed(1'000, "clients/join/accepted", accepted()), "clients/join/succeeded");
  server.on_tick(5'999);
  EXPECT_EQ(server.phase(), Phase::awaiting_registration);
  server.on_tick(6'000);
  EXPECT_EQ(server.phase(), Phase::waiting_for_hello);
  EXPECT_EQ(server.counters().timeouts, 1u);
  // Its ClientRegistered, late, no longer registers it.
  EXPECT_TRUE(feed(6'100, "clients/registered", registered(self)).empty());
  EXPECT_EQ(server.phase(), Phase::waiting_for_hello);
}

TEST_F(SpecServer, UntilRegisteredItDropsFileInfosAndFragmentEvents) {
  server.on_connected(0);
  const std::string h = hash_of("abcd");
  feed(1, "files/info",
       json{{"EventId", guid}, {"Hash", "F"}, {"Size", 4}, {"FragmentSequence", {h}}});
  feed(2, "fragments/distribution/started", started(h, 4));
  feed(3, "fragments/distribution/delivered", delivered(h, "abcd"));
  feed(4, "fragments/distribution/ended", ended(h, 4, {other}));
  feed(5, "clients/registered", registered(other));
  EXPECT_EQ(server.counters().dropped_unregistered, 5u);
  only(feed(6, "clients/join/accepted", accepted()), "clients/join/succeeded");
  feed(7, "files/info",
       json{{"EventId", guid}, {"Hash", "F"}, {"Size", 4}, {"FragmentSequence", {h}}});
  EXPECT_EQ(server.counters().dropped_unregistered, 6u);
  EXPECT_TRUE(server.view().files.empty());
}

TEST_F(SpecServer, TrackerHelloInAnyPhaseForgetsTheViewAndRejoinsWithWhatItStores) {
  join_and_register();
  const std::string h = hash_of("abcd");
  only(feed(100, "fragments/distribution/started", started(h, 4)),
       "fragments/distribution/requested");
  only(feed(110, "fragments/distribution/delivered", delivered(h, "abcd")),
       "fragments/distribution/obtained");
  feed(120, "fragments/distribution/ended", ended(h, 4, {self}));
  EXPECT_FALSE(server.view().clients.empty());
  const json request = only(feed(200, "tracker/hello", hello()), "clients/join/requested");
  EXPECT_EQ(server.phase(), Phase::joining);
  EXPECT_TRUE(server.view().clients.empty());
  EXPECT_TRUE(server.view().fragments.empty());
  EXPECT_EQ(request["FragmentSize"], 4);
  EXPECT_EQ(request["StoredFragments"][h]["Size"], 4);
  EXPECT_EQ(server.counters().hellos, 1u);
}

TEST_F(SpecServer, OneDistributionAtATime) {
  join_and_register();
  const std::string a = hash_of("aaaa"), b = hash_of("bbbb");
  const json request = only(feed(100, "fragments/distribution/started", started(a, 4)),
                            "fragments/distribution/requested");
  EXPECT_EQ(keys_of(request), (std::set<std::string>{"EventId", "Hash"}));
  EXPECT_EQ(request["Hash"], a);
  EXPECT_TRUE(feed(110, "fragments/distribution/started", started(b, 4)).empty());
  EXPECT_EQ(server.counters().ignored_busy, 1u);
  EXPECT_EQ(server.next_deadline_ms(), 5'100);
  const json obtained = only(feed(120, "fragments/distribution/delivered", delivered(a, "aaaa")),
                             "fragments/distribution/obtained");
  EXPECT_EQ(obtained["Hash"], a);
  EXPECT_EQ(server.disk().fragments.at(a), bytes("aaaa"));
  // Free again: the next Started is answered, and without a Delivered it frees itself in time.
  only(feed(130, "fragments/distribution/started", started(b, 4)),
       "fragments/distribution/requested");
  server.on_tick(5'129);
  EXPECT_TRUE(feed(5'129, "fragments/distribution/started", started(a, 4)).empty());
  server.on_tick(5'130);
  EXPECT_EQ(server.counters().delivery_timeouts, 1u);
  only(feed(5'140, "fragments/distribution/started", started(a, 4)),
       "fragments/distribution/requested");
}

TEST_F(SpecServer, DataThatDoesNotMatchItsHashIsAnsweredWithFailedAndNotKept) {
  join_and_register();
  const std::string h = hash_of("abcd");
  only(feed(100, "fragments/distribution/started", started(h, 4)),
       "fragments/distribution/requested");
  const json failed = only(feed(110, "fragments/distribution/delivered", delivered(h, "abce")),
                           "fragments/distribution/failed");
  EXPECT_EQ(failed["Hash"], h);
  EXPECT_TRUE(server.disk().fragments.empty());
  EXPECT_EQ(server.counters().failed, 1u);
}

TEST_F(SpecServer, EndedAddsItsReceiversAndAFragmentItWasNotNamedForIsDeleted) {
  join_and_register();
  feed(50, "clients/registered", registered(other));
  const std::string a = hash_of("aaaa"), b = hash_of("bbbb");
  feed(100, "fragments/distribution/started", started(a, 4));
  feed(110, "fragments/distribution/delivered", delivered(a, "aaaa", {self, other}));
  feed(120, "fragments/distribution/ended", ended(a, 4, {other}));
  EXPECT_EQ(server.disk().fragments.count(a), 0u);
  EXPECT_EQ(server.view().clients.at(other).stored, std::set<std::string>{a});
  EXPECT_TRUE(server.view().clients.at(self).stored.empty());
  EXPECT_EQ(server.view().fragments.at(a), 4);
  feed(200, "fragments/distribution/started", started(b, 4));
  feed(210, "fragments/distribution/delivered", delivered(b, "bbbb"));
  feed(220, "fragments/distribution/ended", ended(b, 4, {self, "unknown"}));
  EXPECT_EQ(server.disk().fragments.count(b), 1u);
  EXPECT_EQ(server.view().clients.at(self).stored, std::set<std::string>{b});
  EXPECT_EQ(server.view().clients.count("unknown"), 0u);
}

TEST_F(SpecServer, ClientGoodbyeCannotTellWhoLeft) {
  join_and_register();
  feed(50, "clients/registered", registered(other));
  EXPECT_TRUE(feed(60, "clients/goodbye",
                   json{{"EventId", guid}, {"ClientIdentifier", other}, {"Revision", 9}})
                  .empty());
  EXPECT_EQ(server.view().clients.count(other), 1u);
  EXPECT_EQ(server.counters().goodbyes_ignored, 1u);
  const json bye = only(server.goodbye(), "clients/goodbye");
  EXPECT_EQ(keys_of(bye), std::set<std::string>{"EventId"});
}

TEST_F(SpecServer, UnknownFieldsAreSkipped) {
  server.on_connected(0);
  json a = accepted();
  a["Revision"] = 42;
  a["Replicas"] = 3;
  a["RequestEventId"] = guid;
  a["Clients"] = {
      {other,
       {{"Endpoints", json::array()}, {"StoredFragments", json::array()}, {"Capacity", 4096}}}};
  only(feed(10, "clients/join/accepted", a), "clients/join/succeeded");
  json r = registered(self);
  r["Revision"] = 7;
  r["Info"]["Capacity"] = 1;
  feed(20, "clients/registered", r);
  EXPECT_EQ(server.phase(), Phase::registered);
  EXPECT_EQ(server.counters().dropped_malformed, 0u);
}

TEST_F(SpecServer, AMissingRequiredFieldOrAnotherTypeDropsTheWholeEvent) {
  server.on_connected(0);
  std::vector<json> bad;
  for (const char* field :
       {"EventId", "ClientIdentifier", "FragmentSize", "AddFileInfos", "AddFragmentInfos",
        "RemoveFileInfos", "RemoveFragmentInfos", "Clients"}) {
    json a = accepted();
    a.erase(field);
    bad.push_back(a);
    a[field] = nullptr;
    bad.push_back(a);
  }
  json a = accepted();
  a["FragmentSize"] = "4";
  bad.push_back(a);
  a = accepted();
  a["FragmentSize"] = 4.5;
  bad.push_back(a);
  a = accepted();
  a["RemoveFragmentInfos"] = "H";
  bad.push_back(a);
  a = accepted();
  a["AddFileInfos"] = {{"F", {{"Size", 4}, {"FragmentSequence", {1}}}}};
  bad.push_back(a);
  a = accepted();
  a["Clients"] = {{other, {{"Endpoints", json::array()}}}};
  bad.push_back(a);
  a = accepted();
  a["EventId"] = "not-a-guid";
  bad.push_back(a);
  a = accepted();
  a.erase("EventId");
  a["eventId"] = guid;  // names are case-sensitive
  bad.push_back(a);
  for (const auto& event : bad) EXPECT_TRUE(feed(10, "clients/join/accepted", event).empty());
  EXPECT_TRUE(server.on_message(10, "clients/join/accepted", "{not json").empty());
  EXPECT_TRUE(server.on_message(10, "clients/join/accepted", "[]").empty());
  EXPECT_EQ(server.counters().dropped_malformed, bad.size() + 2);
  EXPECT_EQ(server.phase(), Phase::joining);

  json d = denied(1);
  d["Reason"] = 5;
  EXPECT_TRUE(feed(10, "clients/join/denied", d).empty());
  EXPECT_EQ(server.counters().denials, 0u);
  only(feed(20, "clients/join/accepted", accepted()), "clients/join/succeeded");
  feed(30, "clients/registered", registered(self));
  const std::string h = hash_of("abcd");
  json s = started(h, 4);
  s["Size"] = "4";
  EXPECT_TRUE(feed(40, "fragments/distribution/started", s).empty());
  only(feed(50, "fragments/distribution/started", started(h, 4)),
       "fragments/distribution/requested");
  json dv = delivered(h, "abcd");
  dv["Data"] = "not base64!";
  EXPECT_TRUE(feed(60, "fragments/distribution/delivered", dv).empty());
  dv = delivered(h, "abcd");
  dv["Receivers"] = self;
  EXPECT_TRUE(feed(60, "fragments/distribution/delivered", dv).empty());
  EXPECT_TRUE(server.disk().fragments.empty());
  EXPECT_EQ(server.counters().dropped_malformed, bad.size() + 2 + 4);
}

}  // namespace
}  // namespace mqds::spec_only
