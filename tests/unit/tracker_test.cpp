// Unit tests of the Tracker Server state machine, one per use-case step or branch of the
// specification (Tracker Server Startup and Goodbye, Client Join with timeouts, Client Goodbye,
// Publish File Info and Fragment Distribution in docs/specification.md), with the lifecycle of a
// distribution round and the contract of next_deadline_ms().
//
// Every input is a real JSON payload (an event struct passed through encode()), and every
// assertion reads the tracker's publishes back through decode(), so the wire format is part of
// what is tested. Storage effects go through the TrackerMemoryStore the simulation uses.
#include "mqds/tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "mqds/fetch.hpp"
#include "mqds/placement.hpp"
#include "support/machine_harness.hpp"
#include "support/memory_store.hpp"

namespace mqds {
namespace {

using testing::all_of;
using testing::bytes_of;
using testing::cut_file;
using testing::describe;
using testing::distinct_of;
using testing::effects_of;
using testing::EventIds;
using testing::hashes_of;
using testing::logged;
using testing::logged_at_least;
using testing::only;
using testing::pattern;
using testing::publishes_of;
using testing::stage;
using testing::TestFile;
using testing::TestFragment;
using testing::TrackerMemoryStore;

std::optional<ClientId> to(const char* id) {
  return ClientId(id);
}

class TrackerFixture : public ::testing::Test {
 protected:
  TrackerFixture() {
    config.fragment_size_bytes = 100;
    config.replicas = 2;
    config.join_timeout_ms = 1'000;
    config.request_timeout_ms = 500;
    config.delivery_timeout_ms = 2'000;
    config.retry_delay_ms = 700;
    config.revision_beacon_ms = 600'000;  // out of the way unless a test is about it
    config.startup_settle_ms = 200;
  }

  // A tracker built from what the store holds, as the plugin builds it at broker start, then
  // started.
  Output boot(std::int64_t now_ms = 0) {
    tracker = std::make_unique<Tracker>(config, store.snapshot(), random);
    return apply(tracker->start(now_ms));
  }

  Output apply(Output out) {
    store.apply(out.storage);
    return out;
  }

  MessageResult send(std::int64_t now_ms, const ClientId& sender, const Event& event) {
    return send_raw(now_ms, sender, topic_of(event), encode(event));
  }

  MessageResult send_raw(std::int64_t now_ms, const ClientId& sender, std::string_view topic,
                         std::string_view payload) {
    MessageResult result = tracker->on_message(now_ms, sender, topic, payload);
    store.apply(result.output.storage);
    return result;
  }

  Output tick(std::int64_t now_ms) { return apply(tracker->on_tick(now_ms)); }
  Output disconnect(std::int64_t now_ms, const ClientId& id) {
    return apply(tracker->on_disconnect(now_ms, id));
  }

  // A request as mqds-edge sends it, with the Extensions it has.
  ClientJoinRequested request(const ClientId& id) {
    ClientJoinRequested r = spec_request(id);
    r.extensions = {std::string(extension_revision), std::string(extension_remove_orphans),
                    std::string(extension_join_retry), std::string(extension_trim)};
    return r;
  }
  // A request of a server that knows only the specification.
  ClientJoinRequested spec_request(const ClientId& id) {
    ClientJoinRequested r;
    r.event_id = ids();
    r.hash_algorithm = "SHA256";
    r.endpoints = {endpoint(id)};
    return r;
  }
  static std::string endpoint(const ClientId& id) { return "grpc://" + id + ":50051"; }

  // The whole join of a client: request, accept, succeeded; returns the ClientRegistered.
  ClientRegistered join(std::int64_t now_ms, const ClientId& id, const ClientJoinRequested& r) {
    const MessageResult accepted = send(now_ms, id, r);
    EXPECT_EQ(all_of<ClientJoinAccepted>(accepted.output).size(), 1u) << describe(accepted.output);
    const MessageResult succeeded = send(now_ms, id, ClientJoinSucceeded{ids(), r.event_id});
    return only<ClientRegistered>(succeeded.output);
  }
  ClientRegistered join(std::int64_t now_ms, const ClientId& id) {
    return join(now_ms, id, request(id));
  }

  TestFile file_of(std::size_t size_bytes, std::uint32_t seed) const {
    return cut_file(pattern(size_bytes, seed), config.fragment_size_bytes);
  }

  // The adapter's ingest: stage every fragment durably, then add_file().
  IngestResult ingest(std::int64_t now_ms, const TestFile& file) {
    const auto staged_sizes = stage(store, file);
    IngestResult result = tracker->add_file(now_ms, file.hash, file.metadata, staged_sizes);
    store.apply(result.output.storage);
    return result;
  }

  // Whom placement chooses for a fragment in the tracker's current view.
  std::vector<ClientId> targets(const TestFragment& f) const {
    return distribution_targets(tracker->view(), f.hash, f.size_bytes(), config.replicas);
  }

  static std::vector<std::string> delivered_targets(const Output& out) {
    std::vector<std::string> receivers;
    for (const Publish* p : publishes_of<FragmentDistributionDelivered>(out))
      if (p->to) receivers.push_back(*p->to);
    std::sort(receivers.begin(), receivers.end());
    return receivers;
  }

  TrackerConfig config;
  SplitMix64 random{20240601};
  TrackerMemoryStore store;
  std::unique_ptr<Tracker> tracker;
  EventIds ids;
};

// A service of three registered clients with one single-fragment file in distribution: the state
// right after FragmentDistributionStarted, where the specification's Fragment Distribution
// (docs/specification.md) begins.
class TrackerDistributionFixture : public TrackerFixture {
 protected:
  void SetUp() override {
    boot(0);
    for (const char* id : {"c1", "c2", "c3"}) join(10, id);
    file = file_of(60, 7);
    ASSERT_EQ(file.fragments.size(), 1u);
    fragment = file.fragments.front();
    const IngestResult r = ingest(started_at_ms, file);
    ASSERT_TRUE(r.ok()) << r.error;
    const auto started = only<FragmentDistributionStarted>(r.output);
    ASSERT_EQ(started.hash, fragment.hash);
    chosen = targets(fragment);
    ASSERT_EQ(chosen.size(), 2u);
    std::sort(chosen.begin(), chosen.end());
    for (const char* id : {"c1", "c2", "c3"})
      if (std::find(chosen.begin(), chosen.end(), id) == chosen.end()) bystander = id;
  }

  MessageResult requested(std::int64_t now_ms, const ClientId& id) {
    return send(now_ms, id, FragmentDistributionRequested{ids(), fragment.hash});
  }
  MessageResult obtained(std::int64_t now_ms, const ClientId& id) {
    return send(now_ms, id, FragmentDistributionObtained{ids(), fragment.hash});
  }
  MessageResult failed(std::int64_t now_ms, const ClientId& id, const char* reason) {
    return send(now_ms, id, FragmentDistributionFailed{ids(), fragment.hash, reason});
  }

  static constexpr std::int64_t started_at_ms = 300;
  TestFile file;
  TestFragment fragment;
  std::vector<ClientId> chosen;  // placement's targets, sorted
  ClientId bystander;            // the registered client placement did not choose
};

using TrackerStartup = TrackerFixture;
using TrackerShutdown = TrackerFixture;
using TrackerJoin = TrackerFixture;
using TrackerJoinDenied = TrackerFixture;
using TrackerRegistration = TrackerFixture;
using TrackerClientLeaves = TrackerFixture;
using TrackerMessages = TrackerFixture;
using TrackerIngest = TrackerFixture;
using TrackerDistribution = TrackerDistributionFixture;
using TrackerReplication = TrackerFixture;
using TrackerBeacon = TrackerFixture;
using TrackerHoldings = TrackerDistributionFixture;
using TrackerRestart = TrackerFixture;
using TrackerSpecOnly = TrackerFixture;

// --- Tracker Server Startup ---------------------------------------------------------------------

TEST_F(TrackerStartup, Step3PublishesTrackerHelloAndBumpsTheRevision) {
  store.revision = 41;
  const Output out = boot(0);
  ASSERT_EQ(out.publishes.size(), 1u) << describe(out);
  EXPECT_EQ(out.publishes[0].topic, topics::tracker_hello);
  EXPECT_FALSE(out.publishes[0].to) << "TrackerHello is for every torrent server";
  EXPECT_EQ(out.publishes[0].qos, 2);
  only<TrackerHello>(out);
  const auto revisions = effects_of<store::PutRevision>(out);
  ASSERT_EQ(revisions.size(), 1u);
  EXPECT_EQ(revisions[0].revision, 42u);
  EXPECT_EQ(tracker->view().revision(), 42u);
  EXPECT_EQ(store.revision, 42u);
  EXPECT_EQ(tracker->view().fragment_size_bytes(), 100);
}

// --- Tracker Server Goodbye ---------------------------------------------------------------------

TEST_F(TrackerShutdown, GoodbyePublishesTrackerGoodbyeAndUnregistersEveryClient) {
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const auto revision_before = tracker->view().revision();
  const Output out = apply(tracker->goodbye(20));
  const auto goodbyes = publishes_of<TrackerGoodbye>(out);
  ASSERT_EQ(goodbyes.size(), 1u) << describe(out);
  EXPECT_FALSE(goodbyes[0]->to);
  only<TrackerGoodbye>(out);
  EXPECT_TRUE(tracker->view().clients().empty());
  EXPECT_EQ(tracker->view().revision(), revision_before + 1);
  EXPECT_EQ(store.revision, revision_before + 1);
}

// --- Client Join: accepted (steps 3 to 5) -------------------------------------------------------

TEST_F(TrackerJoin, AcceptGivesAFreshClientTheWholeViewAndGoesToItAlone) {
  const TestFile file = file_of(250, 1);
  store.files[file.hash] = file.metadata;
  store.fragments = file.fragment_infos();
  boot(0);
  auto r1 = request("c1");
  r1.known_file_infos = {{file.hash, file.metadata}};
  r1.stored_fragments = {{file.fragments[0].hash, {100}}};
  join(10, "c1", r1);

  const auto r2 = request("c2");
  const MessageResult result = send(20, "c2", r2);
  EXPECT_EQ(result.verdict, Verdict::pass);
  const auto publishes = publishes_of<ClientJoinAccepted>(result.output);
  ASSERT_EQ(publishes.size(), 1u) << describe(result.output);
  EXPECT_EQ(publishes[0]->to, to("c2")) << "the accept is targeted at the joining client";
  const auto accepted = only<ClientJoinAccepted>(result.output);
  EXPECT_EQ(accepted.client_identifier, "c2");
  EXPECT_EQ(accepted.fragment_size_bytes, 100);
  EXPECT_EQ(accepted.add_file_infos, tracker->view().files());
  EXPECT_EQ(accepted.add_fragment_infos, tracker->view().fragments());
  EXPECT_TRUE(accepted.remove_file_infos.empty());
  EXPECT_TRUE(accepted.remove_fragment_infos.empty());
  EXPECT_EQ(accepted.clients, tracker->view().clients());
  EXPECT_EQ(accepted.request_event_id, r2.event_id);
  EXPECT_EQ(accepted.revision, tracker->view().revision());
  EXPECT_EQ(accepted.replicas, std::optional<std::uint64_t>(2));
  EXPECT_FALSE(tracker->view().is_registered("c2")) << "registered only on ClientJoinSucceeded";
  EXPECT_EQ(tracker->joins_in_flight(), 1u);
  EXPECT_EQ(tracker->metrics().joins_accepted, 2u);
}

TEST_F(TrackerJoin, AcceptListsExactlyWhatTheClientMustAddAndRemove) {
  const TestFile file = file_of(250, 1);  // fragments of 100, 100 and 50 bytes
  ASSERT_EQ(file.fragments.size(), 3u);
  const Hash& f0 = file.fragments[0].hash;
  const Hash& f1 = file.fragments[1].hash;
  const Hash& f2 = file.fragments[2].hash;
  store.files[file.hash] = file.metadata;
  store.fragments = file.fragment_infos();
  store.revision = 10;
  boot(0);  // revision 11
  auto r1 = request("c1");
  r1.known_file_infos = {{file.hash, file.metadata}};
  r1.stored_fragments = {{f0, {100}}, {f1, {100}}};
  r1.capacity_bytes = 5'000;
  join(10, "c1", r1);  // revision 12

  // c2 knows the file with another fragment order (a conflict), stores the last fragment, and
  // stores something no file of the service references.
  const Hash junk = sha256("not content of the service");
  FileMetadata conflicting = file.metadata;
  std::reverse(conflicting.fragment_sequence.begin(), conflicting.fragment_sequence.end());
  auto r2 = request("c2");
  r2.known_file_infos = {{file.hash, conflicting}};
  r2.stored_fragments = {{f2, {50}}, {junk, {100}}};
  const MessageResult result = send(20, "c2", r2);
  const auto accepted = only<ClientJoinAccepted>(result.output);

  EXPECT_EQ(accepted.client_identifier, "c2");
  EXPECT_EQ(accepted.fragment_size_bytes, 100);
  EXPECT_EQ(accepted.add_file_infos, (FileInfos{{file.hash, file.metadata}}));
  EXPECT_EQ(accepted.remove_file_infos, std::set<Hash>{file.hash});
  EXPECT_EQ(accepted.add_fragment_infos, (FragmentInfos{{f0, {100}}, {f1, {100}}}))
      << "the fragment c2 stores is not added back";
  EXPECT_EQ(accepted.remove_fragment_infos, std::set<Hash>{junk});
  EXPECT_EQ(accepted.clients, (std::map<ClientId, ClientMetadata>{
                                  {"c1", ClientMetadata{{endpoint("c1")}, {f0, f1}, 5'000}}}));
  EXPECT_EQ(accepted.request_event_id, r2.event_id);
  EXPECT_EQ(accepted.revision, std::optional<std::uint64_t>(12));
  EXPECT_EQ(accepted.replicas, std::optional<std::uint64_t>(2));
  EXPECT_TRUE(result.output.storage.empty()) << "nothing changes before ClientJoinSucceeded";
}

// --- Client Join: denied ------------------------------------------------------------------------

// The one ClientJoinDenied of an output, checked for what every denial must carry.
ClientJoinDenied expect_denied(const MessageResult& result, const ClientId& id,
                               std::uint32_t code) {
  EXPECT_TRUE(all_of<ClientJoinAccepted>(result.output).empty()) << describe(result.output);
  const auto publishes = publishes_of<ClientJoinDenied>(result.output);
  EXPECT_EQ(publishes.size(), 1u) << describe(result.output);
  if (!publishes.empty()) {
    EXPECT_EQ(publishes[0]->to, std::optional<ClientId>(id))
        << "a denial goes to the denied client";
  }
  const auto denied = only<ClientJoinDenied>(result.output);
  EXPECT_EQ(denied.client_identifier, id);
  EXPECT_EQ(denied.reason_code, code);
  EXPECT_TRUE(denied.reason && !denied.reason->empty()) << "every denial says why";
  return denied;
}

TEST_F(TrackerJoinDenied, WrongFragmentSizeIsCode1) {
  boot(0);
  auto r = request("c1");
  r.fragment_size_bytes = 200;
  const auto denied = expect_denied(send(10, "c1", r), "c1", denial::wrong_fragment_size);
  EXPECT_NE(denied.reason->find("FragmentSize 200"), std::string::npos) << *denied.reason;
  EXPECT_EQ(denied.request_event_id, r.event_id);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
  EXPECT_EQ(tracker->metrics().joins_denied, 1u);
}

TEST_F(TrackerJoinDenied, WrongHashAlgorithmIsCode2) {
  boot(0);
  auto r = request("c1");
  r.hash_algorithm = "MD5";
  const auto denied = expect_denied(send(10, "c1", r), "c1", denial::wrong_hash_algorithm);
  EXPECT_NE(denied.reason->find("MD5"), std::string::npos) << *denied.reason;
  EXPECT_EQ(denied.request_event_id, r.event_id);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
}

TEST_F(TrackerJoinDenied, EndpointOfARegisteredClientIsCode4) {
  boot(0);
  auto r1 = request("c1");
  r1.endpoints = {"grpc://shared:50051"};
  join(10, "c1", r1);
  auto r2 = request("c2");
  r2.endpoints = {"grpc://shared:50051", endpoint("c2")};
  const auto denied = expect_denied(send(20, "c2", r2), "c2", denial::endpoint_conflict);
  EXPECT_NE(denied.reason->find("grpc://shared:50051 (used by c1)"), std::string::npos)
      << *denied.reason;
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
}

TEST_F(TrackerJoinDenied, EndpointClaimedByAJoinInProgressIsCode4) {
  boot(0);
  auto r1 = request("c1");
  r1.endpoints = {"grpc://shared:50051"};
  ASSERT_EQ(all_of<ClientJoinAccepted>(send(10, "c1", r1).output).size(), 1u);
  auto r2 = request("c2");
  r2.endpoints = {"grpc://shared:50051"};
  expect_denied(send(20, "c2", r2), "c2", denial::endpoint_conflict);
  EXPECT_EQ(tracker->joins_in_flight(), 1u) << "c1's join goes on";
}

TEST_F(TrackerJoinDenied, SeveralProblemsGiveTheFirstCodeAndNameEveryCause) {
  boot(0);
  join(10, "c1");
  auto r = request("c2");
  r.fragment_size_bytes = 4096;
  r.hash_algorithm = "SHA1";
  r.endpoints = {endpoint("c1")};
  // The reference reads one of 1, 2, 4 and 128; a combination such as 7 it cannot read at all.
  const auto denied = expect_denied(send(20, "c2", r), "c2", denial::wrong_fragment_size);
  EXPECT_EQ(denied.reason_code, 1u);
  EXPECT_NE(denied.reason->find("FragmentSize"), std::string::npos) << *denied.reason;
  EXPECT_NE(denied.reason->find("SHA1"), std::string::npos) << *denied.reason;
  EXPECT_NE(denied.reason->find(endpoint("c1")), std::string::npos) << *denied.reason;
}

TEST_F(TrackerJoinDenied, MalformedRequestIsCode128WithAReasonNamingTheField) {
  boot(0);
  // Endpoints is required by the spec's table.
  const std::string payload =
      R"({"EventId":"fb3f146d-c74e-4c75-a3e7-1e768b2e986f","HashAlgorithm":"SHA256",)"
      R"("KnownFileInfos":{},"StoredFragments":{}})";
  const MessageResult result = send_raw(10, "c1", topics::client_join_requested, payload);
  EXPECT_EQ(result.verdict, Verdict::drop);
  const auto denied = expect_denied(result, "c1", denial::other);
  EXPECT_NE(denied.reason->find("Endpoints"), std::string::npos) << *denied.reason;
  EXPECT_FALSE(denied.request_event_id) << "a request that did not decode has no EventId to answer";
  EXPECT_EQ(tracker->metrics().events_rejected, 1u);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
}

// Who may be a torrent server is the adapter's policy (plugin_opt_edge_users); the tracker answers
// a join of anybody else at once, without reading it, and registers nothing.
TEST_F(TrackerJoinDenied, UnauthorisedJoinIsCode128WithTheAdaptersReasonAndIsNotRead) {
  boot(0);
  const MessageResult result =
      tracker->on_unauthorised("liar", topics::client_join_requested, "not in edge_users");
  EXPECT_EQ(result.verdict, Verdict::drop);
  const auto denied = expect_denied(result, "liar", denial::other);
  EXPECT_EQ(denied.reason, "not in edge_users");
  EXPECT_FALSE(denied.request_event_id) << "the request was not read";
  EXPECT_EQ(tracker->metrics().events_unauthorised, 1u);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);

  // Its other events are dropped unanswered and change nothing.
  const MessageResult obtained =
      tracker->on_unauthorised("liar", topics::fragment_distribution_obtained, "no");
  EXPECT_EQ(obtained.verdict, Verdict::drop);
  EXPECT_TRUE(obtained.output.publishes.empty()) << describe(obtained.output);
  EXPECT_EQ(tracker->metrics().events_unauthorised, 2u);
  EXPECT_FALSE(tracker->view().is_registered("liar"));

  // A join the adapter does not want answered (the client was told once) is dropped, counted.
  const MessageResult again =
      tracker->on_unauthorised("liar", topics::client_join_requested, "no", false);
  EXPECT_EQ(again.verdict, Verdict::drop);
  EXPECT_TRUE(again.output.publishes.empty()) << describe(again.output);
  EXPECT_EQ(tracker->metrics().events_unauthorised, 3u);

  // A tracker topic is not a torrent server's: nothing to answer, nothing counted.
  EXPECT_EQ(tracker->on_unauthorised("liar", topics::client_registered, "no").verdict,
            Verdict::drop);
  EXPECT_EQ(tracker->metrics().events_unauthorised, 3u);
}

// A request over join_request_bytes_max is not decoded: its text after the EventId is not even
// JSON here, and the denial says it is too large, not malformed. Its EventId is answered.
TEST_F(TrackerJoinDenied, RequestOverTheSizeBoundIsCode128ToItAloneAndNotDecoded) {
  config.join_request_bytes_max = 64 * 1024;
  boot(0);
  const auto r1 = request("c1");
  const std::string encoded = encode(r1);
  std::string payload = encoded.substr(0, encoded.size() - 1) + R"(,"Padding":")";
  payload.resize(config.join_request_bytes_max + 1, 'x');  // no closing quote: invalid JSON
  const MessageResult result = send_raw(10, "c1", topics::client_join_requested, payload);
  EXPECT_EQ(result.verdict, Verdict::drop) << "nobody else may receive it";
  const auto denied = expect_denied(result, "c1", denial::other);
  EXPECT_EQ(denied.request_event_id, r1.event_id);
  EXPECT_NE(denied.reason->find("65537 bytes exceeds"), std::string::npos) << *denied.reason;
  EXPECT_NE(denied.reason->find("plugin_opt_join_request_max"), std::string::npos)
      << *denied.reason;
  EXPECT_TRUE(logged(result.output, "'c1'")) << describe(result.output);
  EXPECT_EQ(tracker->metrics().events_rejected, 1u);
  EXPECT_EQ(tracker->metrics().joins_denied, 1u);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);

  // Not decoded, so its EventId was not remembered either: the same request at its own size is
  // served, and a request exactly at the bound is read.
  EXPECT_EQ(
      all_of<ClientJoinAccepted>(send_raw(20, "c1", topics::client_join_requested, encoded).output)
          .size(),
      1u);
  const std::string r2 = encode(request("c2"));
  std::string at_bound = r2.substr(0, r2.size() - 1) + R"(,"Padding":")";
  at_bound.resize(config.join_request_bytes_max - 2, 'x');
  at_bound += "\"}";
  EXPECT_EQ(
      all_of<ClientJoinAccepted>(send_raw(30, "c2", topics::client_join_requested, at_bound).output)
          .size(),
      1u);
}

// Without the EventId at its head (a writer that orders the fields otherwise), the denial names no
// request: only the payload's first bytes are looked at.
TEST_F(TrackerJoinDenied, RequestOverTheSizeBoundWithoutALeadingEventIdIsDeniedAnyway) {
  config.join_request_bytes_max = 64 * 1024;
  boot(0);
  std::string payload = R"({"Padding":")";
  payload.resize(config.join_request_bytes_max + 100, ' ');
  const auto denied = expect_denied(send_raw(10, "c1", topics::client_join_requested, payload),
                                    "c1", denial::other);
  EXPECT_FALSE(denied.request_event_id);
}

TEST_F(TrackerJoinDenied, TooManyJoinsInFlightIsCode128) {
  config.joins_in_flight_max = 1;
  boot(0);
  ASSERT_EQ(all_of<ClientJoinAccepted>(send(10, "c1", request("c1")).output).size(), 1u);
  const auto r2 = request("c2");
  const auto denied = expect_denied(send(20, "c2", r2), "c2", denial::other);
  EXPECT_NE(denied.reason->find("too many joins"), std::string::npos) << *denied.reason;
  EXPECT_EQ(denied.request_event_id, r2.event_id);
  EXPECT_EQ(tracker->joins_in_flight(), 1u);
}

// The specification's Client Join with timeouts: the ClientJoinSucceeded is lost; the tracker's
// clock runs out.
TEST_F(TrackerJoinDenied, JoinTimeoutWithoutSucceededIsCode128) {
  boot(0);
  const auto r = request("c1");
  ASSERT_EQ(all_of<ClientJoinAccepted>(send(100, "c1", r).output).size(), 1u);
  const Output early = tick(100 + config.join_timeout_ms - 1);
  EXPECT_TRUE(publishes_of<ClientJoinDenied>(early).empty()) << describe(early);
  EXPECT_EQ(tracker->joins_in_flight(), 1u);

  MessageResult timed_out;
  timed_out.output = tick(100 + config.join_timeout_ms);
  const auto denied = expect_denied(timed_out, "c1", denial::other);
  EXPECT_NE(denied.reason->find("timed out"), std::string::npos) << *denied.reason;
  EXPECT_EQ(denied.request_event_id, r.event_id);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
  EXPECT_EQ(tracker->metrics().joins_timed_out, 1u);

  // The Succeeded that arrives after all registers nothing.
  const MessageResult late =
      send(100 + config.join_timeout_ms + 1, "c1", ClientJoinSucceeded{ids(), r.event_id});
  EXPECT_TRUE(all_of<ClientRegistered>(late.output).empty()) << describe(late.output);
  EXPECT_FALSE(tracker->view().is_registered("c1"));
}

TEST_F(TrackerJoinDenied, ServiceAtItsMaximumOfClientsIsCode128ButAResyncIsNot) {
  config.registered_clients_max = 1;
  boot(0);
  join(10, "c1");
  const auto denied = expect_denied(send(20, "c2", request("c2")), "c2", denial::other);
  EXPECT_NE(denied.reason->find("maximum of 1 clients"), std::string::npos) << *denied.reason;
  EXPECT_EQ(all_of<ClientJoinAccepted>(send(30, "c1", request("c1")).output).size(), 1u)
      << "a registered client that rejoins does not count twice";
}

// --- Client Join: succeeded, failed, stale ------------------------------------------------------

TEST_F(TrackerRegistration, SucceededRegistersTheClientAndAnnouncesWhatItBrought) {
  boot(0);                                // revision 1
  const TestFile file = file_of(150, 3);  // 100 + 50 bytes
  auto r = request("c1");
  r.known_file_infos = {{file.hash, file.metadata}};
  r.stored_fragments = file.fragment_infos();
  r.capacity_bytes = 1'000;
  const auto accepted = only<ClientJoinAccepted>(send(10, "c1", r).output);
  EXPECT_TRUE(accepted.add_file_infos.empty());
  EXPECT_TRUE(accepted.remove_fragment_infos.empty());

  const MessageResult result = send(20, "c1", ClientJoinSucceeded{ids(), r.event_id});
  EXPECT_EQ(result.verdict, Verdict::pass);
  const auto publishes = publishes_of<ClientRegistered>(result.output);
  ASSERT_EQ(publishes.size(), 1u) << describe(result.output);
  EXPECT_FALSE(publishes[0]->to) << "every registered client updates its view";
  const auto registered = only<ClientRegistered>(result.output);
  const std::set<Hash> held = hashes_of(file.fragment_infos());
  EXPECT_EQ(registered.client_identifier, "c1");
  EXPECT_EQ(registered.info, (ClientMetadata{{endpoint("c1")}, held, 1'000}));
  EXPECT_EQ(registered.added_files, (FileInfos{{file.hash, file.metadata}}));
  EXPECT_EQ(registered.added_fragments, file.fragment_infos());
  EXPECT_EQ(registered.revision, std::optional<std::uint64_t>(2));

  const auto files = effects_of<store::PutFile>(result.output);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].hash, file.hash);
  EXPECT_EQ(files[0].metadata, file.metadata);
  const auto fragments = effects_of<store::PutFragmentInfo>(result.output);
  ASSERT_EQ(fragments.size(), 2u);
  for (const auto& f : fragments)
    EXPECT_EQ(file.fragment_infos().at(f.hash).size_bytes, f.size_bytes);
  const auto holdings = effects_of<store::PutHoldings>(result.output);
  ASSERT_EQ(holdings.size(), 1u);
  EXPECT_EQ(holdings[0].client, "c1");
  EXPECT_EQ(holdings[0].hashes, held);
  const auto revisions = effects_of<store::PutRevision>(result.output);
  ASSERT_EQ(revisions.size(), 1u);
  EXPECT_EQ(revisions[0].revision, 2u);

  EXPECT_TRUE(tracker->view().is_registered("c1"));
  EXPECT_EQ(tracker->view().clients().at("c1"), registered.info);
  EXPECT_EQ(store.files.at(file.hash), file.metadata);
  EXPECT_EQ(store.fragments, file.fragment_infos());
  EXPECT_EQ(store.holdings.at("c1"), held);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
  EXPECT_EQ(tracker->metrics().clients_registered, 1u);
}

TEST_F(TrackerRegistration, FailedDropsThePendingJoin) {
  boot(0);
  const auto r = request("c1");
  send(10, "c1", r);
  ASSERT_EQ(tracker->joins_in_flight(), 1u);
  const MessageResult failed = send(20, "c1", ClientJoinFailed{ids(), "disk full", r.event_id});
  EXPECT_TRUE(failed.output.publishes.empty()) << describe(failed.output);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
  EXPECT_TRUE(logged(failed.output, "disk full"));

  const MessageResult late = send(30, "c1", ClientJoinSucceeded{ids(), r.event_id});
  EXPECT_TRUE(all_of<ClientRegistered>(late.output).empty()) << describe(late.output);
  EXPECT_FALSE(tracker->view().is_registered("c1"));
  // Nor does its timeout fire any more.
  EXPECT_TRUE(all_of<ClientJoinDenied>(tick(10 + config.join_timeout_ms)).empty());
}

TEST_F(TrackerRegistration, SucceededWithAStaleRequestEventIdIsIgnored) {
  boot(0);
  const auto first = request("c1");
  const auto second = request("c1");
  send(10, "c1", first);
  send(20, "c1", second);  // supersedes the first
  ASSERT_EQ(tracker->joins_in_flight(), 1u);

  const MessageResult stale = send(30, "c1", ClientJoinSucceeded{ids(), first.event_id});
  EXPECT_TRUE(stale.output.publishes.empty()) << describe(stale.output);
  EXPECT_TRUE(stale.output.storage.empty());
  EXPECT_FALSE(tracker->view().is_registered("c1"));
  EXPECT_EQ(tracker->joins_in_flight(), 1u);

  // A stale Failed does not cancel the current join either.
  send(35, "c1", ClientJoinFailed{ids(), "old attempt", first.event_id});
  EXPECT_EQ(tracker->joins_in_flight(), 1u);

  const MessageResult current = send(40, "c1", ClientJoinSucceeded{ids(), second.event_id});
  EXPECT_EQ(only<ClientRegistered>(current.output).client_identifier, "c1");
  EXPECT_TRUE(tracker->view().is_registered("c1"));
}

TEST_F(TrackerRegistration, SucceededAfterAConflictingChangeOfTheViewIsDenied) {
  boot(0);
  const TestFile mine = file_of(150, 16);
  const TestFile other = file_of(150, 17);
  auto r = request("c1");
  r.known_file_infos = {{mine.hash, mine.metadata}};  // new to the service
  send(10, "c1", r);
  // Before c1 confirms, the service publishes other metadata under the same file hash.
  ASSERT_TRUE(tracker->add_file(20, mine.hash, other.metadata, stage(store, other)).ok());
  const MessageResult succeeded = send(30, "c1", ClientJoinSucceeded{ids(), r.event_id});
  EXPECT_TRUE(all_of<ClientRegistered>(succeeded.output).empty()) << describe(succeeded.output);
  const auto denied = expect_denied(succeeded, "c1", denial::other);
  EXPECT_NE(denied.reason->find("view changed"), std::string::npos) << *denied.reason;
  EXPECT_EQ(denied.request_event_id, r.event_id);
  EXPECT_FALSE(tracker->view().is_registered("c1"));
  EXPECT_EQ(tracker->view().files().at(mine.hash), other.metadata);
}

// tracker.hpp: "a request from a client that is already registered is a resync ... it stays
// registered ... and if what it holds is unchanged the tracker confirms with a ClientRegistered
// for it alone at the current Revision".
TEST_F(TrackerRegistration, RequestFromARegisteredClientIsAResyncConfirmedToItAlone) {
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const auto revision = tracker->view().revision();
  const auto r = request("c1");
  const MessageResult again = send(20, "c1", r);
  EXPECT_TRUE(all_of<ClientGoodbye>(again.output).empty()) << describe(again.output);
  EXPECT_TRUE(tracker->view().is_registered("c1")) << "a resync keeps the client registered";
  const auto accepted = only<ClientJoinAccepted>(again.output);
  EXPECT_EQ(accepted.revision, revision);
  EXPECT_EQ(accepted.clients.count("c1"), 0u) << "the client itself is not among the others";
  EXPECT_EQ(accepted.clients.count("c2"), 1u);

  const MessageResult succeeded = send(30, "c1", ClientJoinSucceeded{ids(), r.event_id});
  const auto publishes = publishes_of<ClientRegistered>(succeeded.output);
  ASSERT_EQ(publishes.size(), 1u) << describe(succeeded.output);
  EXPECT_EQ(publishes[0]->to, to("c1")) << "nothing changed: the rest of the fleet is not told";
  const auto confirmed = only<ClientRegistered>(succeeded.output);
  EXPECT_EQ(confirmed.client_identifier, "c1");
  EXPECT_EQ(confirmed.revision, revision);
  EXPECT_EQ(confirmed.request_event_id, r.event_id);
  EXPECT_TRUE(effects_of<store::PutRevision>(succeeded.output).empty());
  EXPECT_EQ(tracker->view().revision(), revision);
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
}

TEST_F(TrackerRegistration, ResyncThatChangesWhatTheClientHoldsIsAnnouncedToEveryone) {
  boot(0);
  const TestFile file = file_of(100, 4);
  ASSERT_TRUE(ingest(5, file).ok());
  join(10, "c1");
  const auto revision = tracker->view().revision();
  auto r = request("c1");
  r.known_file_infos = {{file.hash, file.metadata}};
  r.stored_fragments = file.fragment_infos();  // it came back with the fragment
  send(20, "c1", r);
  const MessageResult succeeded = send(30, "c1", ClientJoinSucceeded{ids(), r.event_id});
  const auto publishes = publishes_of<ClientRegistered>(succeeded.output);
  ASSERT_EQ(publishes.size(), 1u) << describe(succeeded.output);
  EXPECT_FALSE(publishes[0]->to);
  const auto registered = only<ClientRegistered>(succeeded.output);
  EXPECT_EQ(registered.revision, revision + 1);
  EXPECT_FALSE(registered.request_event_id);
  EXPECT_EQ(registered.info.stored_fragments, hashes_of(file.fragment_infos()));
  EXPECT_TRUE(tracker->view().holds("c1", file.fragments[0].hash));
}

// --- Client Goodbye and lost clients ------------------------------------------------------------

TEST_F(TrackerClientLeaves, GoodbyeIsRewrittenWithTheSenderAndTheRevision) {
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const auto revision = tracker->view().revision();
  const ClientGoodbye goodbye{ids(), std::nullopt, std::nullopt};
  const MessageResult result = send(20, "c1", goodbye);
  EXPECT_EQ(result.verdict, Verdict::rewrite);
  const Result<Event> rewritten = decode(topics::client_goodbye, result.rewritten_payload);
  ASSERT_TRUE(rewritten.ok()) << rewritten.error().to_string();
  const auto& stamped = std::get<ClientGoodbye>(rewritten.value());
  EXPECT_EQ(stamped.event_id, goodbye.event_id) << "it is the client's own event, stamped";
  EXPECT_EQ(stamped.client_identifier, to("c1"));
  EXPECT_EQ(stamped.revision, revision + 1);
  EXPECT_TRUE(result.output.publishes.empty()) << "the broker forwards the rewritten payload";
  EXPECT_FALSE(tracker->view().is_registered("c1"));
  EXPECT_TRUE(tracker->view().is_registered("c2"));
  EXPECT_EQ(store.revision, revision + 1);
  EXPECT_EQ(tracker->metrics().clients_lost, 0u);
}

TEST_F(TrackerClientLeaves, SpoofedClientIdentifierInAGoodbyeIsOverwritten) {
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const auto revision = tracker->view().revision();
  const MessageResult result = send(20, "c1", ClientGoodbye{ids(), ClientId("c2"), 999});
  ASSERT_EQ(result.verdict, Verdict::rewrite);
  const Result<Event> rewritten = decode(topics::client_goodbye, result.rewritten_payload);
  ASSERT_TRUE(rewritten.ok());
  const auto& stamped = std::get<ClientGoodbye>(rewritten.value());
  EXPECT_EQ(stamped.client_identifier, to("c1"));
  EXPECT_EQ(stamped.revision, revision + 1);
  EXPECT_FALSE(tracker->view().is_registered("c1"));
  EXPECT_TRUE(tracker->view().is_registered("c2")) << "c1 cannot make c2 leave";
}

TEST_F(TrackerClientLeaves, GoodbyeFromAnUnregisteredClientChangesNoView) {
  boot(0);
  join(10, "c1");
  const auto revision = tracker->view().revision();
  const MessageResult result =
      send(20, "stranger", ClientGoodbye{ids(), ClientId("c1"), std::nullopt});
  ASSERT_EQ(result.verdict, Verdict::rewrite);
  const Result<Event> rewritten = decode(topics::client_goodbye, result.rewritten_payload);
  ASSERT_TRUE(rewritten.ok());
  const auto& stamped = std::get<ClientGoodbye>(rewritten.value());
  EXPECT_EQ(stamped.client_identifier, to("stranger"));
  EXPECT_FALSE(stamped.revision) << "no view change, no Revision";
  EXPECT_EQ(tracker->view().revision(), revision);
  EXPECT_TRUE(tracker->view().is_registered("c1"));
}

TEST_F(TrackerClientLeaves, GoodbyeDuringAJoinDropsThePendingJoin) {
  boot(0);
  const auto r = request("c1");
  send(10, "c1", r);
  send(20, "c1", ClientGoodbye{ids(), std::nullopt, std::nullopt});
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
  EXPECT_TRUE(
      all_of<ClientRegistered>(send(30, "c1", ClientJoinSucceeded{ids(), r.event_id}).output)
          .empty());
}

TEST_F(TrackerClientLeaves, LostConnectionOfARegisteredClientPublishesItsGoodbye) {
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const auto revision = tracker->view().revision();
  const Output out = disconnect(20, "c1");
  const auto publishes = publishes_of<ClientGoodbye>(out);
  ASSERT_EQ(publishes.size(), 1u) << describe(out);
  EXPECT_FALSE(publishes[0]->to);
  const auto goodbye = only<ClientGoodbye>(out);
  EXPECT_EQ(goodbye.client_identifier, to("c1"));
  EXPECT_EQ(goodbye.revision, revision + 1);
  EXPECT_FALSE(tracker->view().is_registered("c1"));
  EXPECT_EQ(tracker->metrics().clients_lost, 1u);
  EXPECT_EQ(store.revision, revision + 1);
}

TEST_F(TrackerClientLeaves, LostConnectionOfAnUnregisteredClientIsSilent) {
  boot(0);
  send(10, "c1", request("c1"));  // joining, not registered
  const auto revision = tracker->view().revision();
  const Output out = disconnect(20, "c1");
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_EQ(tracker->joins_in_flight(), 0u) << "the join dies with the connection";
  EXPECT_EQ(tracker->view().revision(), revision);
  EXPECT_EQ(tracker->metrics().clients_lost, 0u);
  EXPECT_TRUE(disconnect(30, "never-seen").publishes.empty());
}

// --- Topics, duplicates, malformed payloads -----------------------------------------------------

TEST_F(TrackerMessages, ClientPublishingOnATrackerIssuedTopicIsDropped) {
  boot(0);
  join(10, "c1");
  const Hash h = sha256("x");
  const std::vector<Event> forged = {
      TrackerHello{ids()},
      TrackerGoodbye{ids()},
      ClientJoinAccepted{ids(), "c1", 100, {}, {}, {}, {}, {}, std::nullopt, 1, 2},
      ClientJoinDenied{ids(), "c2", denial::other, "forged", std::nullopt},
      ClientRegistered{
          ids(), "c9", ClientMetadata{{"grpc://c9"}, {}, std::nullopt}, {}, {}, 99, std::nullopt},
      FileInfoPublished{ids(), h, 1, {h}, 99},
      FragmentDistributionStarted{ids(), h, 1},
      FragmentDistributionDelivered{ids(), h, bytes_of("x"), {"c1"}, 1},
      FragmentDistributionEnded{ids(), h, 1, {"c1"}, 99},
      TrackerRevision{ids(), 99},
  };
  const auto revision = tracker->view().revision();
  for (const Event& event : forged) {
    const MessageResult result = send(20, "c1", event);
    EXPECT_EQ(result.verdict, Verdict::drop) << topic_of(event);
    EXPECT_TRUE(result.output.publishes.empty()) << topic_of(event);
    EXPECT_TRUE(result.output.storage.empty()) << topic_of(event);
    EXPECT_TRUE(logged_at_least(result.output, LogLevel::warning)) << topic_of(event);
  }
  EXPECT_EQ(tracker->metrics().events_rejected, forged.size());
  EXPECT_EQ(tracker->view().revision(), revision);
  EXPECT_TRUE(tracker->view().files().empty());
}

TEST_F(TrackerMessages, DuplicateEventIdIsDroppedAndProcessedOnce) {
  boot(0);
  const auto r = request("c1");
  const std::string payload = encode(r);
  const MessageResult first = send_raw(10, "c1", topics::client_join_requested, payload);
  EXPECT_EQ(all_of<ClientJoinAccepted>(first.output).size(), 1u);
  const MessageResult second = send_raw(11, "c1", topics::client_join_requested, payload);
  EXPECT_EQ(second.verdict, Verdict::drop);
  EXPECT_TRUE(second.output.publishes.empty()) << describe(second.output);
  EXPECT_EQ(tracker->metrics().events_duplicated, 1u);
  EXPECT_EQ(tracker->metrics().joins_accepted, 1u);

  // A goodbye delivered twice is forwarded, and changes the view, once.
  send(20, "c1", ClientJoinSucceeded{ids(), r.event_id});
  const auto revision = tracker->view().revision();
  const std::string goodbye = encode(ClientGoodbye{ids(), std::nullopt, std::nullopt});
  EXPECT_EQ(send_raw(30, "c1", topics::client_goodbye, goodbye).verdict, Verdict::rewrite);
  EXPECT_EQ(send_raw(31, "c1", topics::client_goodbye, goodbye).verdict, Verdict::drop);
  EXPECT_EQ(tracker->view().revision(), revision + 1);
  EXPECT_EQ(tracker->metrics().events_duplicated, 2u);
}

TEST_F(TrackerMessages, MalformedPayloadsAreDroppedAndLogged) {
  boot(0);
  join(10, "c1");
  const auto revision = tracker->view().revision();
  const std::vector<std::pair<std::string_view, std::string>> bad = {
      {topics::client_goodbye, "not json"},
      {topics::fragment_distribution_requested, "{}"},
      {topics::fragment_distribution_obtained,
       R"({"EventId":"fb3f146d-c74e-4c75-a3e7-1e768b2e986f","Hash":"XYZ"})"},
      {topics::fragment_distribution_failed,
       R"({"EventId":"not-a-guid","Hash":")" + sha256("x").to_hex() + "\"}"},
      {topics::client_join_succeeded, "[1,2,3]"},
      {topics::client_join_failed, R"({"EventId":5})"},
      {topics::client_goodbye, std::string("{\"EventId\":\"\xff\xfe\"}")},
      {topics::client_join_succeeded, ""},
  };
  for (const auto& [topic, payload] : bad) {
    const MessageResult result = send_raw(20, "c1", topic, payload);
    EXPECT_EQ(result.verdict, Verdict::drop) << topic << " " << payload;
    EXPECT_TRUE(result.output.publishes.empty()) << topic << " " << payload;
    EXPECT_TRUE(logged(result.output, "malformed")) << describe(result.output);
  }
  EXPECT_EQ(tracker->metrics().events_rejected, bad.size());
  EXPECT_EQ(tracker->view().revision(), revision);
  EXPECT_TRUE(tracker->view().is_registered("c1"));
}

TEST_F(TrackerMessages, MessagesOutsideTheProtocolPassUntouched) {
  boot(0);
  const MessageResult result = send_raw(10, "c1", "sensors/temperature", "21.5");
  EXPECT_EQ(result.verdict, Verdict::pass);
  EXPECT_TRUE(result.output.empty());
}

TEST_F(TrackerMessages, MessageWithoutAClientIdIsDropped) {
  boot(0);
  const MessageResult result = send(10, "", request("c1"));
  EXPECT_EQ(result.verdict, Verdict::drop);
  EXPECT_TRUE(result.output.publishes.empty());
  EXPECT_EQ(tracker->joins_in_flight(), 0u);
}

// --- Publish File Info and the start of distribution --------------------------------------------

TEST_F(TrackerIngest, AddFilePublishesFileInfoAndDistributesAfterTheSettleTime) {
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const auto revision = tracker->view().revision();
  const TestFile file = file_of(250, 5);
  const IngestResult result = ingest(50, file);  // inside startup_settle_ms
  ASSERT_TRUE(result.ok()) << result.error;
  const auto publishes = publishes_of<FileInfoPublished>(result.output);
  ASSERT_EQ(publishes.size(), 1u) << describe(result.output);
  EXPECT_FALSE(publishes[0]->to);
  const auto published = only<FileInfoPublished>(result.output);
  EXPECT_EQ(published.hash, file.hash);
  EXPECT_EQ(published.size_bytes, 250);
  EXPECT_EQ(published.fragment_sequence, file.metadata.fragment_sequence);
  EXPECT_EQ(published.revision, revision + 1);
  const auto files = effects_of<store::PutFile>(result.output);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].metadata, file.metadata);
  EXPECT_EQ(store.revision, revision + 1);
  EXPECT_EQ(tracker->view().files().at(file.hash), file.metadata);
  EXPECT_EQ(tracker->metrics().files_published, 1u);
  EXPECT_EQ(tracker->metrics().ingested_bytes, 250u);
  EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(result.output).empty())
      << "clients may still be rejoining";
  for (const auto& f : file.fragments) EXPECT_TRUE(tracker->is_staged(f.hash));

  EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(tick(config.startup_settle_ms - 1)).empty());
  const Output settled = tick(config.startup_settle_ms);
  const auto started = distinct_of<FragmentDistributionStarted>(settled);
  ASSERT_EQ(started.size(), 3u) << describe(settled);
  std::map<Hash, std::int64_t> sizes;
  for (const auto& s : started) sizes[s.hash] = s.size_bytes;
  EXPECT_EQ(sizes, file.staged_sizes()) << "Started carries each fragment's Hash and Size";
  // Each to the clients placement chose, each alone: offered a fragment, a server that knows only
  // the specification asks for it and then waits for its Delivered.
  for (const auto& s : started) {
    std::vector<std::string> to;
    for (const Publish* p : publishes_of<FragmentDistributionStarted>(settled))
      if (std::get<FragmentDistributionStarted>(*decode(p->topic, p->payload)).hash == s.hash)
        to.push_back(p->to.value_or("everyone"));
    std::sort(to.begin(), to.end());
    auto chosen = distribution_targets(tracker->view(), s.hash, s.size_bytes, config.replicas);
    std::sort(chosen.begin(), chosen.end());
    EXPECT_EQ(to, std::vector<std::string>(chosen.begin(), chosen.end()));
  }
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 3u);
  EXPECT_EQ(tracker->metrics().distributions_started, 3u);
}

TEST_F(TrackerIngest, RoundsInFlightAreLimited) {
  config.distributions_in_flight_max = 2;
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const TestFile file = file_of(250, 6);
  const IngestResult result = ingest(300, file);
  ASSERT_TRUE(result.ok()) << result.error;
  const auto started = distinct_of<FragmentDistributionStarted>(result.output);
  ASSERT_EQ(started.size(), 2u) << describe(result.output);
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 2u);
  EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(tick(301)).empty()) << "still two in flight";

  // Finishing one round lets the third fragment start.
  const Hash& first = started[0].hash;
  for (const char* id : {"c1", "c2"}) send(310, id, FragmentDistributionRequested{ids(), first});
  send(320, "c1", FragmentDistributionObtained{ids(), first});
  const MessageResult last = send(330, "c2", FragmentDistributionObtained{ids(), first});
  EXPECT_EQ(only<FragmentDistributionEnded>(last.output).hash, first);
  const auto next = distinct_of<FragmentDistributionStarted>(last.output);
  ASSERT_EQ(next.size(), 1u) << describe(last.output);
  EXPECT_NE(next[0].hash, started[0].hash);
  EXPECT_NE(next[0].hash, started[1].hash);
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 2u);
}

TEST_F(TrackerIngest, MetadataInconsistentWithTheFragmentSizeIsRefused) {
  boot(0);
  const TestFile file = file_of(150, 8);  // two fragments at 100 bytes
  FileMetadata wrong = file.metadata;
  wrong.size_bytes = 250;  // would need three
  const auto revision = tracker->view().revision();
  const IngestResult result = tracker->add_file(10, file.hash, wrong, stage(store, file));
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.error.find("do not make 250 bytes"), std::string::npos) << result.error;
  EXPECT_TRUE(result.output.empty()) << describe(result.output);
  EXPECT_TRUE(tracker->view().files().empty());
  EXPECT_FALSE(tracker->is_staged(file.fragments[0].hash));
  EXPECT_EQ(tracker->view().revision(), revision);
}

TEST_F(TrackerIngest, FragmentNeitherStagedNorKnownIsRefused) {
  boot(0);
  const TestFile file = file_of(150, 9);
  std::map<Hash, std::int64_t> staged_sizes = file.staged_sizes();
  staged_sizes.erase(file.fragments[1].hash);
  const IngestResult result = tracker->add_file(10, file.hash, file.metadata, staged_sizes);
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.error.find("fragment 1 (" + file.fragments[1].hash.to_hex() +
                              ") is neither staged nor known"),
            std::string::npos)
      << result.error;
  EXPECT_TRUE(result.output.empty());
  EXPECT_TRUE(tracker->view().files().empty());
}

TEST_F(TrackerIngest, StagedFragmentOfTheWrongSizeIsRefused) {
  boot(0);
  const TestFile file = file_of(150, 10);
  std::map<Hash, std::int64_t> staged_sizes = file.staged_sizes();
  staged_sizes[file.fragments[0].hash] = 99;
  const IngestResult result = tracker->add_file(10, file.hash, file.metadata, staged_sizes);
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.error.find("has 99 bytes where 100 are expected"), std::string::npos)
      << result.error;
  EXPECT_TRUE(tracker->view().files().empty());
}

TEST_F(TrackerIngest, FileAlreadyPublishedWithOtherMetadataIsRefused) {
  boot(0);
  const TestFile file = file_of(150, 11);
  ASSERT_TRUE(ingest(10, file).ok());
  // Consistent in itself (two staged fragments of 100 bytes), but not what was published.
  const FileMetadata other{200, {file.fragments[0].hash, file.fragments[0].hash}};
  const IngestResult result = tracker->add_file(20, file.hash, other, {});
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.error.find("already published with other metadata"), std::string::npos)
      << result.error;
  EXPECT_EQ(tracker->view().files().at(file.hash), file.metadata);
}

TEST_F(TrackerIngest, TheSameFileAddedAgainIsNotPublishedTwice) {
  boot(0);
  const TestFile file = file_of(150, 12);
  ASSERT_TRUE(ingest(10, file).ok());
  const auto revision = tracker->view().revision();
  const IngestResult again = ingest(20, file);
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_TRUE(all_of<FileInfoPublished>(again.output).empty());
  EXPECT_EQ(tracker->view().revision(), revision);
}

// --- Fragment Distribution ----------------------------------------------------------------------

TEST_F(TrackerDistribution, DeliveredGoesOnlyToTheRequestersOnceAllTargetsAnswered) {
  const MessageResult first = requested(started_at_ms + 10, chosen[0]);
  EXPECT_TRUE(publishes_of<FragmentDistributionDelivered>(first.output).empty())
      << "the other target has not answered";
  EXPECT_EQ(first.verdict, Verdict::pass);

  const MessageResult second = requested(started_at_ms + 20, chosen[1]);
  const auto delivered = publishes_of<FragmentDistributionDelivered>(second.output);
  ASSERT_EQ(delivered.size(), 2u) << describe(second.output);
  EXPECT_EQ(delivered_targets(second.output), chosen) << "one targeted Publish per receiver";
  for (const Publish* p : delivered) {
    ASSERT_TRUE(p->to) << "a Delivered is never broadcast";
    ASSERT_TRUE(p->staged) << "the adapter encodes the Data from staging";
    EXPECT_TRUE(p->payload.empty());
    EXPECT_EQ(p->staged->hash, fragment.hash);
    EXPECT_EQ(p->staged->receivers, std::set<ClientId>(chosen.begin(), chosen.end()));
  }
  const auto events = all_of<FragmentDistributionDelivered>(second.output, &store);
  ASSERT_EQ(events.size(), 2u);
  for (const auto& e : events) {
    EXPECT_EQ(e.hash, fragment.hash);
    EXPECT_EQ(e.data, fragment.data);
    EXPECT_EQ(e.receivers, std::set<ClientId>(chosen.begin(), chosen.end()));
  }
  EXPECT_EQ(events[0].event_id, events[1].event_id) << "the same event, delivered to each receiver";
}

TEST_F(TrackerReplication, DeliveredIsCborForTheReceiversThatAskedForItAndJsonForTheOthers) {
  boot(0);
  std::set<ClientId> cbor_clients;
  for (const char* id : {"c1", "c2", "c3", "c4"}) {
    ClientJoinRequested r = request(id);
    if (std::string(id) != "c2" && std::string(id) != "c4") {
      r.delivery_encodings = {"CBOR", "unknown-to-this-tracker"};
      cbor_clients.insert(id);
    } else {
      r.delivery_encodings = {"unknown-to-this-tracker"};
    }
    join(10, id, r);
  }
  std::size_t cbor = 0, json = 0;
  for (std::uint32_t seed = 1; seed <= 8; ++seed) {
    const TestFile file = file_of(60, seed);
    const IngestResult r = ingest(1000 * seed, file);
    ASSERT_TRUE(r.ok()) << r.error;
    const auto hash = file.fragments.front().hash;
    ASSERT_EQ(only<FragmentDistributionStarted>(r.output).hash, hash);
    MessageResult last;
    for (const auto& id : targets(file.fragments.front()))
      last = send(1000 * seed + 1, id, FragmentDistributionRequested{ids(), hash});
    const auto delivered = publishes_of<FragmentDistributionDelivered>(last.output);
    ASSERT_EQ(delivered.size(), 2u) << describe(last.output);
    for (const Publish* p : delivered) {
      EXPECT_EQ(p->staged->cbor, cbor_clients.count(*p->to) == 1) << *p->to;
      ++(p->staged->cbor ? cbor : json);
    }
    // Either form decodes to the same event.
    const auto events = all_of<FragmentDistributionDelivered>(last.output, &store);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0], events[1]);
    EXPECT_EQ(events[0].data, file.fragments.front().data);
    for (const Publish* p : delivered)
      send(1000 * seed + 2, *p->to, FragmentDistributionObtained{ids(), hash});
  }
  EXPECT_GT(cbor, 0u);
  EXPECT_GT(json, 0u);
}

TEST_F(TrackerDistribution, RequestedFromANonTargetOrAnUnregisteredClientIsIgnored) {
  EXPECT_TRUE(requested(started_at_ms + 10, bystander).output.publishes.empty());
  EXPECT_TRUE(requested(started_at_ms + 10, "stranger").output.publishes.empty());
  // Neither counts as a requester: when the targets stay silent, nobody gets the fragment.
  const Output timeout = tick(started_at_ms + config.request_timeout_ms);
  EXPECT_TRUE(publishes_of<FragmentDistributionDelivered>(timeout).empty()) << describe(timeout);
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 0u);
}

TEST_F(TrackerDistribution, AtTheRequestTimeoutTheRoundDeliversToThoseThatAsked) {
  requested(started_at_ms + 10, chosen[0]);
  // chosen[1] never answers: at the request timeout the round delivers to chosen[0] alone.
  const Output timeout = tick(started_at_ms + config.request_timeout_ms);
  EXPECT_EQ(delivered_targets(timeout), std::vector<std::string>{chosen[0]});
}

TEST_F(TrackerDistribution, NobodyRequestingEndsNothingAndRetriesAfterTheRetryDelay) {
  const std::int64_t timeout_ms = started_at_ms + config.request_timeout_ms;
  const Output timeout = tick(timeout_ms);
  EXPECT_TRUE(all_of<FragmentDistributionEnded>(timeout).empty())
      << "nothing was sent, nothing to end";
  EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(tick(timeout_ms + config.retry_delay_ms - 1))
                  .empty());
  const Output retry = tick(timeout_ms + config.retry_delay_ms);
  EXPECT_EQ(only<FragmentDistributionStarted>(retry).hash, fragment.hash);
}

TEST_F(TrackerDistribution, FailedWhileRequestingCountsAsAnAnswer) {
  requested(started_at_ms + 10, chosen[0]);
  const MessageResult declined = failed(started_at_ms + 20, chosen[1], "not enough free capacity");
  EXPECT_EQ(delivered_targets(declined.output), std::vector<std::string>{chosen[0]})
      << "no need to wait for the request timeout";
}

TEST_F(TrackerDistribution, ObtainedFromAllEndsTheRoundAndDropsTheStagedCopy) {
  requested(started_at_ms + 10, chosen[0]);
  requested(started_at_ms + 10, chosen[1]);
  const auto revision = tracker->view().revision();
  const MessageResult one = obtained(started_at_ms + 20, chosen[0]);
  EXPECT_TRUE(all_of<FragmentDistributionEnded>(one.output).empty()) << describe(one.output);
  const MessageResult both = obtained(started_at_ms + 30, chosen[1]);

  const auto publishes = publishes_of<FragmentDistributionEnded>(both.output);
  ASSERT_EQ(publishes.size(), 1u) << describe(both.output);
  EXPECT_FALSE(publishes[0]->to);
  const auto ended = only<FragmentDistributionEnded>(both.output);
  EXPECT_EQ(ended.hash, fragment.hash);
  EXPECT_EQ(ended.size_bytes, fragment.size_bytes());
  EXPECT_EQ(ended.receivers, std::set<ClientId>(chosen.begin(), chosen.end()));
  EXPECT_EQ(ended.revision, revision + 1);

  const auto holdings = effects_of<store::AddHolding>(both.output);
  ASSERT_EQ(holdings.size(), 2u);
  for (const auto& h : holdings) {
    EXPECT_EQ(h.hash, fragment.hash);
    EXPECT_NE(std::find(chosen.begin(), chosen.end(), h.client), chosen.end()) << h.client;
  }
  const auto infos = effects_of<store::PutFragmentInfo>(both.output);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].size_bytes, fragment.size_bytes());
  const auto dropped = effects_of<store::DropStaged>(both.output);
  ASSERT_EQ(dropped.size(), 1u) << "two holders make the replicas";
  EXPECT_EQ(dropped[0].hash, fragment.hash);

  EXPECT_FALSE(tracker->is_staged(fragment.hash));
  EXPECT_EQ(store.staged.count(fragment.hash), 0u);
  EXPECT_EQ(store.fragments.at(fragment.hash).size_bytes, fragment.size_bytes());
  EXPECT_EQ(tracker->view().holder_count(fragment.hash), 2u);
  for (const auto& id : chosen) EXPECT_EQ(store.holdings.at(id).count(fragment.hash), 1u) << id;
  EXPECT_EQ(tracker->metrics().distributed_bytes,
            2u * static_cast<std::uint64_t>(fragment.size_bytes()));
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 0u);
  EXPECT_EQ(tracker->gauges().under_replicated_fragments, 0u);
}

TEST_F(TrackerDistribution, ReceiverThatNeverConfirmsIsLeftOutAtTheDeliveryTimeout) {
  requested(started_at_ms + 10, chosen[0]);
  const MessageResult delivery = requested(started_at_ms + 10, chosen[1]);
  ASSERT_EQ(delivered_targets(delivery.output).size(), 2u);
  obtained(started_at_ms + 20, chosen[0]);
  const std::int64_t deadline_ms = started_at_ms + 10 + config.delivery_timeout_ms;

  EXPECT_TRUE(all_of<FragmentDistributionEnded>(tick(deadline_ms - 1)).empty());
  const Output timeout = tick(deadline_ms);
  const auto ended = only<FragmentDistributionEnded>(timeout);
  EXPECT_EQ(ended.receivers, std::set<ClientId>{chosen[0]}) << "only the client that obtained it";
  EXPECT_TRUE(effects_of<store::DropStaged>(timeout).empty())
      << "one holder is short of two replicas";
  EXPECT_TRUE(tracker->is_staged(fragment.hash));
  EXPECT_EQ(store.staged.count(fragment.hash), 1u);
  EXPECT_EQ(tracker->metrics().deliveries_failed, 1u);
  EXPECT_EQ(tracker->view().holder_count(fragment.hash), 1u);

  // Rescheduled at once, for one more replica among the clients that do not hold it.
  const auto again = distinct_of<FragmentDistributionStarted>(timeout);
  ASSERT_EQ(again.size(), 1u) << describe(timeout);
  EXPECT_EQ(again[0].hash, fragment.hash);
  const auto next = targets(fragment);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_NE(next[0], chosen[0]);
}

TEST_F(TrackerDistribution, FailedAfterDeliveryEndsTheRoundWithoutThatClient) {
  requested(started_at_ms + 10, chosen[0]);
  requested(started_at_ms + 10, chosen[1]);
  obtained(started_at_ms + 20, chosen[0]);
  const MessageResult result =
      failed(started_at_ms + 30, chosen[1], "Data hashes to something else");
  EXPECT_EQ(only<FragmentDistributionEnded>(result.output).receivers,
            std::set<ClientId>{chosen[0]});
  EXPECT_EQ(tracker->metrics().deliveries_failed, 1u);
  EXPECT_TRUE(tracker->is_staged(fragment.hash));
}

TEST_F(TrackerDistribution, ReceiverLostDuringDeliveryDoesNotHoldTheRoundUp) {
  requested(started_at_ms + 10, chosen[0]);
  requested(started_at_ms + 10, chosen[1]);
  obtained(started_at_ms + 20, chosen[0]);
  const Output lost = disconnect(started_at_ms + 30, chosen[1]);
  EXPECT_EQ(only<ClientGoodbye>(lost).client_identifier, std::optional<ClientId>(chosen[1]));
  EXPECT_EQ(only<FragmentDistributionEnded>(lost).receivers, std::set<ClientId>{chosen[0]});
}

// A round has two stages, each with its deadline: requesting (until every target answered, or the
// request timeout) and delivering (until every receiver settled, or the delivery timeout). Then it
// is gone, and what still arrives for it changes nothing.
TEST_F(TrackerDistribution, RoundGoesFromRequestingToDeliveringToEnded) {
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 1u);
  requested(started_at_ms + 10, chosen[0]);
  const MessageResult delivery = requested(started_at_ms + 20, chosen[1]);
  ASSERT_EQ(delivered_targets(delivery.output), chosen) << describe(delivery.output);
  EXPECT_TRUE(requested(started_at_ms + 30, chosen[0]).output.publishes.empty())
      << "requesting is over";
  EXPECT_TRUE(tick(started_at_ms + config.request_timeout_ms).empty())
      << "the request deadline belonged to the stage it left";
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 1u);

  obtained(started_at_ms + 600, chosen[0]);
  const MessageResult both = obtained(started_at_ms + 610, chosen[1]);
  EXPECT_EQ(only<FragmentDistributionEnded>(both.output).receivers,
            std::set<ClientId>(chosen.begin(), chosen.end()));
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 0u);
  const auto revision = tracker->view().revision();
  EXPECT_TRUE(obtained(started_at_ms + 620, chosen[0]).output.publishes.empty());
  EXPECT_TRUE(failed(started_at_ms + 630, chosen[1], "late").output.publishes.empty());
  EXPECT_TRUE(tick(started_at_ms + 20 + config.delivery_timeout_ms).empty())
      << "nor does the delivery deadline outlive the round";
  EXPECT_EQ(tracker->view().revision(), revision);
  EXPECT_EQ(tracker->metrics().distributions_ended, 1u);
  EXPECT_EQ(tracker->metrics().deliveries_failed, 0u);
}

// Receivers that resync leave the round completely; when none is left it ends, naming nobody,
// and the fragment is tried again after the retry delay.
TEST_F(TrackerDistribution, RoundWhoseReceiversAllLeaveEndsNamingNobody) {
  requested(started_at_ms + 10, chosen[0]);
  requested(started_at_ms + 10, chosen[1]);
  const MessageResult first = send(started_at_ms + 20, chosen[0], request(chosen[0]));
  EXPECT_TRUE(all_of<FragmentDistributionEnded>(first.output).empty()) << describe(first.output);
  const std::int64_t left_ms = started_at_ms + 30;
  const MessageResult second = send(left_ms, chosen[1], request(chosen[1]));
  EXPECT_TRUE(only<FragmentDistributionEnded>(second.output).receivers.empty());
  EXPECT_EQ(tracker->gauges().distributions_in_flight, 0u);
  EXPECT_EQ(tracker->metrics().deliveries_failed, 0u);
  EXPECT_TRUE(
      distinct_of<FragmentDistributionStarted>(tick(left_ms + config.retry_delay_ms - 1)).empty());
  EXPECT_EQ(only<FragmentDistributionStarted>(tick(left_ms + config.retry_delay_ms)).hash,
            fragment.hash);
}

// What fits no join or round in progress is ignored, counted and logged at debug; the broker still
// forwards it unchanged (it is well formed, only late or misplaced).
TEST_F(TrackerDistribution, EventsThatFitNoJoinOrRoundAreCountedAndLogged) {
  std::uint64_t counted = 0;
  auto expect_out_of_place = [&](const MessageResult& result, std::string_view what) {
    ++counted;
    EXPECT_EQ(tracker->metrics().events_out_of_place, counted) << what;
    EXPECT_EQ(result.verdict, Verdict::pass) << what;
    EXPECT_TRUE(result.output.publishes.empty() && result.output.storage.empty())
        << what << "\n"
        << describe(result.output);
    // A Failed is logged with its reason first, as any Failed is.
    ASSERT_FALSE(result.output.logs.empty()) << what;
    EXPECT_EQ(result.output.logs.back().level, LogLevel::debug) << what;
    EXPECT_NE(result.output.logs.back().text.find(what), std::string::npos)
        << result.output.logs.back().text;
  };
  auto expect_used = [&](const MessageResult& result) {
    EXPECT_EQ(tracker->metrics().events_out_of_place, counted) << describe(result.output);
  };

  // Requesting: only the targets' Requested or Failed.
  expect_out_of_place(requested(started_at_ms + 1, bystander), "outside its distribution");
  expect_out_of_place(requested(started_at_ms + 2, "stranger"), "from unregistered 'stranger'");
  expect_out_of_place(obtained(started_at_ms + 3, chosen[0]), "Obtained for");
  expect_out_of_place(failed(started_at_ms + 4, bystander, "full"), "Failed for");
  expect_used(requested(started_at_ms + 5, chosen[0]));
  expect_used(requested(started_at_ms + 6, chosen[1]));

  // Delivering: each receiver's Obtained or Failed, once.
  expect_out_of_place(requested(started_at_ms + 7, chosen[0]), "outside its distribution");
  expect_out_of_place(obtained(started_at_ms + 8, bystander), "Obtained for");
  expect_used(obtained(started_at_ms + 9, chosen[0]));
  expect_out_of_place(obtained(started_at_ms + 10, chosen[0]), "Obtained for");
  expect_used(obtained(started_at_ms + 11, chosen[1]));
  ASSERT_EQ(tracker->gauges().distributions_in_flight, 0u);

  // Over: nothing is left to confirm.
  expect_out_of_place(failed(started_at_ms + 12, chosen[1], "late"), "Failed for");

  // Joins: an answer for no join in progress, or for another request.
  expect_out_of_place(send(started_at_ms + 13, "c9", ClientJoinSucceeded{ids(), ids()}),
                      "ClientJoinSucceeded from 'c9' answers no join in progress");
  expect_out_of_place(send(started_at_ms + 14, "c9", ClientJoinFailed{ids(), "no", ids()}),
                      "ClientJoinFailed from 'c9' answers no join in progress");
  const auto r = request("c9");
  send(started_at_ms + 15, "c9", r);
  expect_out_of_place(send(started_at_ms + 16, "c9", ClientJoinSucceeded{ids(), ids()}),
                      "ClientJoinSucceeded from 'c9'");
  expect_used(send(started_at_ms + 17, "c9", ClientJoinSucceeded{ids(), r.event_id}));
  EXPECT_TRUE(tracker->view().is_registered("c9"));
}

// Fewer registered clients than replicas: the fragment goes to those there are, the staged copy
// stays, and a client that registers later gets it.
TEST_F(TrackerReplication, FragmentShortOfReplicasWaitsForANewClient) {
  config.replicas = 3;
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const TestFile file = file_of(60, 13);
  const TestFragment& f = file.fragments.front();
  const IngestResult ingested = ingest(300, file);
  ASSERT_EQ(only<FragmentDistributionStarted>(ingested.output).hash, f.hash);
  for (const char* id : {"c1", "c2"}) send(310, id, FragmentDistributionRequested{ids(), f.hash});
  send(320, "c1", FragmentDistributionObtained{ids(), f.hash});
  const MessageResult last = send(330, "c2", FragmentDistributionObtained{ids(), f.hash});
  EXPECT_EQ(only<FragmentDistributionEnded>(last.output).receivers,
            (std::set<ClientId>{"c1", "c2"}));
  EXPECT_TRUE(effects_of<store::DropStaged>(last.output).empty());
  EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(last.output).empty())
      << "no client can take it now";
  EXPECT_TRUE(tracker->is_staged(f.hash));
  EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(tick(60'000)).empty())
      << "it waits, it does not spin";

  const auto r3 = request("c3");
  send(60'010, "c3", r3);
  const MessageResult registered = send(60'020, "c3", ClientJoinSucceeded{ids(), r3.event_id});
  EXPECT_EQ(only<FragmentDistributionStarted>(registered.output).hash, f.hash)
      << describe(registered.output);
  const MessageResult delivery = send(60'030, "c3", FragmentDistributionRequested{ids(), f.hash});
  EXPECT_EQ(delivered_targets(delivery.output), std::vector<std::string>{"c3"});
  const MessageResult done = send(60'040, "c3", FragmentDistributionObtained{ids(), f.hash});
  EXPECT_EQ(only<FragmentDistributionEnded>(done.output).receivers, std::set<ClientId>{"c3"});
  EXPECT_EQ(effects_of<store::DropStaged>(done.output).size(), 1u);
  EXPECT_FALSE(tracker->is_staged(f.hash));
  EXPECT_EQ(tracker->view().holder_count(f.hash), 3u);
}

TEST_F(TrackerReplication, FileIngestedBeforeAnyClientIsDistributedWhenOneRegisters) {
  config.replicas = 1;
  boot(0);
  const TestFile file = file_of(60, 14);
  ASSERT_TRUE(ingest(300, file).ok());
  EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(tick(1'000)).empty());
  const auto r = request("c1");
  send(1'010, "c1", r);
  const MessageResult registered = send(1'020, "c1", ClientJoinSucceeded{ids(), r.event_id});
  EXPECT_EQ(only<FragmentDistributionStarted>(registered.output).hash, file.fragments[0].hash);
}

// --- TrackerRevision beacon ---------------------------------------------------------------------

TEST_F(TrackerBeacon, RevisionIsRepeatedAfterAQuietPeriod) {
  config.revision_beacon_ms = 5'000;
  boot(0);
  EXPECT_TRUE(all_of<TrackerRevision>(tick(4'999)).empty());
  const Output beacon = tick(5'000);
  const auto publishes = publishes_of<TrackerRevision>(beacon);
  ASSERT_EQ(publishes.size(), 1u) << describe(beacon);
  EXPECT_FALSE(publishes[0]->to);
  EXPECT_EQ(only<TrackerRevision>(beacon).revision, tracker->view().revision());
  EXPECT_TRUE(all_of<TrackerRevision>(tick(9'999)).empty());
  EXPECT_EQ(all_of<TrackerRevision>(tick(10'000)).size(), 1u);

  // A view change is itself news: the quiet period starts again.
  join(12'000, "c1");
  EXPECT_TRUE(all_of<TrackerRevision>(tick(16'999)).empty());
  EXPECT_EQ(only<TrackerRevision>(tick(17'000)).revision, tracker->view().revision());
}

// next_deadline_ms() is always set: at the latest the next beacon; earlier when a join, a round or
// a queued fragment has work. Ticking before it does nothing, ticking at it does the work.
TEST_F(TrackerBeacon, NextDeadlineIsTheBeaconWhenIdleAndTheEarliestWorkOtherwise) {
  config.revision_beacon_ms = 5'000;
  boot(0);
  EXPECT_EQ(tracker->next_deadline_ms(), 5'000) << "idle: the beacon";
  EXPECT_TRUE(tick(4'999).empty());
  EXPECT_EQ(all_of<TrackerRevision>(tick(5'000)).size(), 1u);
  EXPECT_EQ(tracker->next_deadline_ms(), 10'000);

  const auto r = request("c1");
  send(6'000, "c1", r);
  EXPECT_EQ(tracker->next_deadline_ms(), 6'000 + config.join_timeout_ms) << "the pending join";
  send(6'010, "c1", ClientJoinSucceeded{ids(), r.event_id});
  EXPECT_EQ(tracker->next_deadline_ms(), 6'010 + config.revision_beacon_ms)
      << "registered: the beacon, counted from that view change";

  const TestFile file = file_of(60, 43);
  ASSERT_TRUE(ingest(6'020, file).ok());
  const std::int64_t started_ms = 6'020;
  EXPECT_EQ(tracker->next_deadline_ms(), started_ms + config.request_timeout_ms)
      << "the round's request deadline";
  EXPECT_TRUE(tick(started_ms + config.request_timeout_ms - 1).empty());
  // Nobody asks: the round ends, and the fragment waits out the retry delay.
  const Output timeout = tick(started_ms + config.request_timeout_ms);
  EXPECT_TRUE(timeout.publishes.empty()) << describe(timeout);
  const std::int64_t retry_ms = started_ms + config.request_timeout_ms + config.retry_delay_ms;
  EXPECT_EQ(tracker->next_deadline_ms(), retry_ms) << "the queued fragment's turn";
  EXPECT_TRUE(tick(retry_ms - 1).empty());
  EXPECT_EQ(only<FragmentDistributionStarted>(tick(retry_ms)).hash, file.fragments[0].hash);
}

// Before the settle time after start, a queued fragment waits for it.
TEST_F(TrackerBeacon, NextDeadlineOfAFragmentQueuedBeforeTheSettleTimeIsTheSettleTime) {
  boot(0);
  join(10, "c1");
  ASSERT_TRUE(ingest(20, file_of(60, 44)).ok());
  EXPECT_EQ(tracker->next_deadline_ms(), config.startup_settle_ms);
  EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(tick(config.startup_settle_ms - 1)).empty());
  EXPECT_EQ(distinct_of<FragmentDistributionStarted>(tick(config.startup_settle_ms)).size(), 1u);
}

// --- The holdings ledger ------------------------------------------------------------------------

TEST_F(TrackerHoldings, ClientNamedByAnEndedKeepsTheFragmentItReportsAsObtained) {
  requested(started_at_ms + 10, chosen[0]);
  requested(started_at_ms + 10, chosen[1]);
  obtained(started_at_ms + 20, chosen[0]);
  const Output ended = tick(started_at_ms + 10 + config.delivery_timeout_ms);
  ASSERT_EQ(only<FragmentDistributionEnded>(ended).receivers, std::set<ClientId>{chosen[0]});

  // Both lose their connection before they see the Ended, and come back with the temporary copy.
  const std::int64_t back_ms = 10'000;
  disconnect(back_ms, chosen[0]);
  disconnect(back_ms, chosen[1]);
  for (const auto& id : chosen) {
    auto r = request(id);
    r.known_file_infos = {{file.hash, file.metadata}};
    r.obtained_fragments = {{fragment.hash, {fragment.size_bytes()}}};
    const auto accepted = only<ClientJoinAccepted>(send(back_ms + 10, id, r).output);
    const auto registered = only<ClientRegistered>(
        send(back_ms + 20, id, ClientJoinSucceeded{ids(), r.event_id}).output);
    if (id == chosen[0]) {
      EXPECT_EQ(accepted.remove_fragment_infos.count(fragment.hash), 0u)
          << "an Ended named it: it keeps the replica";
      EXPECT_EQ(registered.info.stored_fragments.count(fragment.hash), 1u);
      EXPECT_TRUE(tracker->view().holds(id, fragment.hash));
    } else {
      EXPECT_EQ(accepted.remove_fragment_infos, std::set<Hash>{fragment.hash})
          << "no Ended named it: delete";
      EXPECT_EQ(registered.info.stored_fragments.count(fragment.hash), 0u);
      EXPECT_FALSE(tracker->view().holds(id, fragment.hash));
    }
  }
  EXPECT_EQ(store.holdings.at(chosen[0]).count(fragment.hash), 1u);
  EXPECT_EQ(store.holdings.at(chosen[1]).count(fragment.hash), 0u);
}

// tracker.hpp: "A ledger of holdings remembers which fragments each client was named for, also
// while it is away, so a client that lost its connection between Obtained and Ended keeps that
// replica." events.hpp (ObtainedFragments): "so a connection lost between Obtained and Ended loses
// no replica." Here the broker reports the loss before the round ends (a clean DISCONNECT, or a
// session takeover when the client reconnects quickly).
TEST_F(TrackerHoldings, ClientLostBetweenObtainedAndEndedKeepsThatReplica) {
  requested(started_at_ms + 10, chosen[0]);
  requested(started_at_ms + 10, chosen[1]);
  obtained(started_at_ms + 20, chosen[0]);
  disconnect(started_at_ms + 30, chosen[0]);
  const MessageResult last = obtained(started_at_ms + 40, chosen[1]);
  ASSERT_EQ(all_of<FragmentDistributionEnded>(last.output).size(), 1u) << describe(last.output);

  auto r = request(chosen[0]);
  r.known_file_infos = {{file.hash, file.metadata}};
  r.obtained_fragments = {{fragment.hash, {fragment.size_bytes()}}};
  const auto accepted = only<ClientJoinAccepted>(send(started_at_ms + 50, chosen[0], r).output);
  EXPECT_EQ(accepted.remove_fragment_infos.count(fragment.hash), 0u);
  const auto registered = only<ClientRegistered>(
      send(started_at_ms + 60, chosen[0], ClientJoinSucceeded{ids(), r.event_id}).output);
  EXPECT_EQ(registered.info.stored_fragments.count(fragment.hash), 1u);
}

// The copy a lost client confirmed is not yet named by an Ended when it joins again: its join
// plan tells it to delete that copy, so the round must not name it either (seeds 16868, 19352 and
// 19474 of the simulation: the tracker counted a copy that was gone and dropped the staging).
TEST_F(TrackerHoldings, ClientLostAfterObtainedThatJoinsBeforeTheEndedIsNotNamedByIt) {
  requested(started_at_ms + 10, chosen[0]);
  requested(started_at_ms + 10, chosen[1]);
  obtained(started_at_ms + 20, chosen[0]);
  disconnect(started_at_ms + 30, chosen[0]);

  auto r = request(chosen[0]);
  r.known_file_infos = {{file.hash, file.metadata}};
  r.obtained_fragments = {{fragment.hash, {fragment.size_bytes()}}};
  const auto accepted = only<ClientJoinAccepted>(send(started_at_ms + 40, chosen[0], r).output);
  EXPECT_EQ(accepted.remove_fragment_infos.count(fragment.hash), 1u)
      << "no Ended named it yet: the copy is deleted";
  send(started_at_ms + 50, chosen[0], ClientJoinSucceeded{ids(), r.event_id});

  const MessageResult last = obtained(started_at_ms + 60, chosen[1]);
  const auto ended = only<FragmentDistributionEnded>(last.output);
  EXPECT_EQ(ended.receivers, std::set<ClientId>{chosen[1]});
  EXPECT_FALSE(tracker->view().holds(chosen[0], fragment.hash));
  EXPECT_TRUE(tracker->is_staged(fragment.hash)) << "one holder of k: the staging stays";
}

// A receiver joins again after it sent its Obtained, before that Obtained arrives: its join
// deletes the copy (no Ended named it), the round ends without it, and the next round offers the
// fragment to it again. The Obtained still on its way confirms the deleted copy, not the next
// round's Delivered (seed 90731 of the simulation: the tracker counted a copy that was gone and
// dropped the staging).
TEST_F(TrackerHoldings, ObtainedOnItsWayWhenTheReceiverJoinedAgainConfirmsNoLaterRound) {
  requested(started_at_ms + 10, chosen[0]);
  requested(started_at_ms + 10, chosen[1]);
  obtained(started_at_ms + 20, chosen[1]);

  auto r = request(chosen[0]);
  r.known_file_infos = {{file.hash, file.metadata}};
  r.obtained_fragments = {{fragment.hash, {fragment.size_bytes()}}};
  const MessageResult rejoin = send(started_at_ms + 30, chosen[0], r);
  EXPECT_EQ(only<ClientJoinAccepted>(rejoin.output).remove_fragment_infos,
            std::set<Hash>{fragment.hash});
  EXPECT_EQ(only<FragmentDistributionEnded>(rejoin.output).receivers,
            std::set<ClientId>{chosen[1]});
  const auto offered = publishes_of<FragmentDistributionStarted>(rejoin.output);
  ASSERT_EQ(offered.size(), 1u) << describe(rejoin.output);
  ASSERT_EQ(offered.front()->to, std::optional<ClientId>(chosen[0]));
  send(started_at_ms + 40, chosen[0], ClientJoinSucceeded{ids(), r.event_id});
  ASSERT_EQ(delivered_targets(requested(started_at_ms + 50, chosen[0]).output),
            std::vector<std::string>{chosen[0]});

  const MessageResult late = obtained(started_at_ms + 60, chosen[0]);
  EXPECT_TRUE(all_of<FragmentDistributionEnded>(late.output).empty()) << describe(late.output);
  EXPECT_FALSE(tracker->view().holds(chosen[0], fragment.hash));
  EXPECT_TRUE(tracker->is_staged(fragment.hash)) << "one holder of k: the staging stays";

  const MessageResult confirmed = obtained(started_at_ms + 70, chosen[0]);
  EXPECT_EQ(only<FragmentDistributionEnded>(confirmed.output).receivers,
            std::set<ClientId>{chosen[0]});
  EXPECT_TRUE(tracker->view().holds(chosen[0], fragment.hash));
  EXPECT_FALSE(tracker->is_staged(fragment.hash));
}

// --- Restart from the durable store
// ---------------------------------------------------------------

TEST_F(TrackerRestart, RestartedTrackerKeepsFilesFragmentsStagingHoldingsAndRevision) {
  boot(0);
  join(10, "c1");
  join(10, "c2");
  const TestFile file = file_of(150, 15);  // fragments of 100 and 50 bytes
  const Hash& a = file.fragments[0].hash;
  const Hash& b = file.fragments[1].hash;
  const IngestResult ingested = ingest(300, file);
  ASSERT_EQ(distinct_of<FragmentDistributionStarted>(ingested.output).size(), 2u);
  // a reaches both clients; b only c1, whose round ends at the delivery timeout.
  for (const char* id : {"c1", "c2"}) {
    send(310, id, FragmentDistributionRequested{ids(), a});
    send(310, id, FragmentDistributionRequested{ids(), b});
  }
  send(320, "c1", FragmentDistributionObtained{ids(), a});
  send(320, "c2", FragmentDistributionObtained{ids(), a});
  send(320, "c1", FragmentDistributionObtained{ids(), b});
  const Output timeout = tick(310 + config.delivery_timeout_ms);
  ASSERT_EQ(only<FragmentDistributionEnded>(timeout).receivers, std::set<ClientId>{"c1"});
  ASSERT_FALSE(tracker->is_staged(a));
  ASSERT_TRUE(tracker->is_staged(b));

  const DistributionView before = tracker->view();
  const auto holdings = tracker->holdings();
  SplitMix64 other_random(7);
  Tracker restarted(config, store.snapshot(), other_random);
  EXPECT_EQ(restarted.view().files(), before.files());
  EXPECT_EQ(restarted.view().fragments(), before.fragments());
  EXPECT_EQ(restarted.view().revision(), before.revision());
  EXPECT_TRUE(restarted.view().clients().empty()) << "connections do not survive a restart";
  EXPECT_TRUE(restarted.is_staged(b));
  EXPECT_FALSE(restarted.is_staged(a));
  EXPECT_EQ(restarted.holdings(), holdings);
  EXPECT_EQ(restarted.holdings().at("c1"), (std::set<Hash>{a, b}));
  EXPECT_EQ(restarted.holdings().at("c2"), std::set<Hash>{a});

  // After its TrackerHello and the settle time, the staged fragment is distributed again.
  const std::int64_t restart_ms = 50'000;
  const Output hello = restarted.start(restart_ms);
  store.apply(hello.storage);
  EXPECT_EQ(restarted.view().revision(), before.revision() + 1);
  EXPECT_EQ(store.revision, before.revision() + 1);
  for (const char* id : {"c1", "c2"}) {
    ClientJoinRequested r = request(id);
    r.known_file_infos = {{file.hash, file.metadata}};
    r.stored_fragments = {{a, {100}}};
    if (std::string(id) == "c1") r.stored_fragments[b] = FragmentMetadata{50};
    const MessageResult accepted =
        restarted.on_message(restart_ms + 10, id, topic_of(Event{r}), encode(r));
    EXPECT_TRUE(only<ClientJoinAccepted>(accepted.output).remove_fragment_infos.empty());
    const Event succeeded = ClientJoinSucceeded{ids(), r.event_id};
    const MessageResult registered =
        restarted.on_message(restart_ms + 20, id, topic_of(succeeded), encode(succeeded));
    store.apply(registered.output.storage);
    EXPECT_TRUE(distinct_of<FragmentDistributionStarted>(registered.output).empty())
        << "still settling";
  }
  const Output settled = restarted.on_tick(restart_ms + config.startup_settle_ms);
  EXPECT_EQ(only<FragmentDistributionStarted>(settled).hash, b);
  EXPECT_EQ(distribution_targets(restarted.view(), b, 50, config.replicas),
            std::vector<ClientId>{"c2"});
}

}  // namespace
}  // namespace mqds

// --- Torrent servers that know only the specification -------------------------------------------

namespace mqds {
namespace {

// The TrackerHello publishes of an output, by the client each goes to ("" for everyone).
std::vector<std::string> hellos_to(const Output& out) {
  std::vector<std::string> to;
  for (const Publish* p : publishes_of<TrackerHello>(out)) to.push_back(p->to.value_or(""));
  return to;
}

// The specification keeps RemoveFragmentInfos for fragments "in conflict with existing data"; a
// fragment no file references is not, and the reference implementation keeps it.
TEST_F(TrackerSpecOnly, AFragmentNoFileReferencesIsKeptAndAnnouncedUnlessTheServerRemovesOrphans) {
  boot(0);
  const Hash orphan = sha256("not content of any file");
  const Hash clash = sha256("an orphan at another size");
  auto spec = spec_request("s1");
  spec.stored_fragments = {{orphan, {100}}, {clash, {40}}};
  const auto accepted = only<ClientJoinAccepted>(send(10, "s1", spec).output);
  EXPECT_TRUE(accepted.remove_fragment_infos.empty()) << "an orphan is no conflict";
  const auto registered =
      only<ClientRegistered>(send(20, "s1", ClientJoinSucceeded{ids(), spec.event_id}).output);
  EXPECT_EQ(registered.info.stored_fragments, (std::set<Hash>{orphan, clash}));
  EXPECT_EQ(hashes_of(registered.added_fragments), (std::set<Hash>{orphan, clash}));
  EXPECT_EQ(tracker->view().holder_count(orphan), 1u);
  EXPECT_EQ(tracker->gauges().under_replicated_fragments, 0u)
      << "nothing replicates a fragment no file references";

  // Another spec-only server with the same hash at another size conflicts with the view.
  auto other = spec_request("s2");
  other.stored_fragments = {{clash, {50}}};
  EXPECT_EQ(only<ClientJoinAccepted>(send(30, "s2", other).output).remove_fragment_infos,
            std::set<Hash>{clash});
  // mqds-edge asks for orphans to be removed, also those the view knows from another server.
  auto edge = request("e1");
  edge.stored_fragments = {{orphan, {100}}};
  EXPECT_EQ(only<ClientJoinAccepted>(send(40, "e1", edge).output).remove_fragment_infos,
            std::set<Hash>{orphan});
}

// Two joins at once: the second's ClientJoinAccepted cannot list the first, whose ClientRegistered
// it drops while it waits for its own.
TEST_F(TrackerSpecOnly, ViewChangesDuringAJoinAreReplayedToItAloneAfterItsRegistration) {
  boot(0);
  join(10, "e1");
  const auto spec = spec_request("s1");
  ASSERT_EQ(all_of<ClientJoinAccepted>(send(20, "s1", spec).output).size(), 1u);
  const ClientRegistered e2 = join(30, "e2");  // registers while s1 waits
  const MessageResult left = send(40, "e1", ClientGoodbye{ids(), std::nullopt, std::nullopt});
  ASSERT_EQ(left.verdict, Verdict::rewrite);
  const TestFile file = file_of(50, 3);
  ASSERT_TRUE(ingest(50, file).ok());

  const MessageResult done = send(60, "s1", ClientJoinSucceeded{ids(), std::nullopt});
  const Output& out = done.output;
  ASSERT_GE(out.publishes.size(), 4u) << describe(out);
  EXPECT_EQ(out.publishes[0].topic, topics::client_registered);
  EXPECT_FALSE(out.publishes[0].to) << "its registration is everybody's";
  const std::vector<std::string_view> replayed_topics = {
      topics::client_registered, topics::client_goodbye, topics::file_info_published};
  for (std::size_t i = 0; i < replayed_topics.size(); ++i) {
    const Publish& p = out.publishes[1 + i];
    EXPECT_EQ(p.topic, replayed_topics[i]) << describe(out);
    EXPECT_EQ(p.to, std::optional<ClientId>("s1")) << "a replay goes to the joiner alone";
  }
  const auto replayed_e2 =
      std::get<ClientRegistered>(*decode(topics::client_registered, out.publishes[1].payload));
  EXPECT_EQ(replayed_e2.event_id, e2.event_id) << "the same event, not a new one";
  const auto goodbye =
      std::get<ClientGoodbye>(*decode(topics::client_goodbye, out.publishes[2].payload));
  EXPECT_EQ(goodbye.client_identifier, std::optional<ClientId>("e1")) << "the stamped goodbye";
  EXPECT_EQ(tracker->metrics().events_replayed, 3u);
}

TEST_F(TrackerSpecOnly, AFragmentEndedDuringAJoinIsReplayed) {
  boot(0);
  join(10, "e1");
  join(10, "e2");
  const TestFile file = file_of(60, 9);
  ASSERT_TRUE(ingest(300, file).ok());  // Started after the settle time
  const auto spec = spec_request("s1");
  ASSERT_EQ(all_of<ClientJoinAccepted>(send(310, "s1", spec).output).size(), 1u);
  const Hash& hash = file.fragments[0].hash;
  for (const char* id : {"e1", "e2"}) send(320, id, FragmentDistributionRequested{ids(), hash});
  send(330, "e1", FragmentDistributionObtained{ids(), hash});
  const auto ended = all_of<FragmentDistributionEnded>(
      send(340, "e2", FragmentDistributionObtained{ids(), hash}).output);
  ASSERT_EQ(ended.size(), 1u);

  const Output out = send(350, "s1", ClientJoinSucceeded{ids(), std::nullopt}).output;
  const auto publishes = publishes_of<FragmentDistributionEnded>(out);
  ASSERT_EQ(publishes.size(), 1u) << describe(out);
  EXPECT_EQ(publishes[0]->to, std::optional<ClientId>("s1"));
  EXPECT_EQ(only<FragmentDistributionEnded>(out).event_id, ended[0].event_id);
}

// Invited by a TrackerHello while its earlier join is open, it asks again; the Accepted of the
// earlier request arrives next and, without RequestEventId, it applies that one.
TEST_F(TrackerSpecOnly, ASupersededJoinsReplayCarriesOverToTheNextRequest) {
  boot(0);
  send(10, "s1", spec_request("s1"));
  const ClientRegistered e1 = join(20, "e1");
  send(30, "s1", spec_request("s1"));
  const Output out = send(40, "s1", ClientJoinSucceeded{ids(), std::nullopt}).output;
  const auto replayed = publishes_of<ClientRegistered>(out);
  ASSERT_EQ(replayed.size(), 2u) << describe(out);
  EXPECT_EQ(replayed[1]->to, std::optional<ClientId>("s1"));
  EXPECT_EQ(
      std::get<ClientRegistered>(*decode(topics::client_registered, replayed[1]->payload)).event_id,
      e1.event_id);
}

TEST_F(TrackerSpecOnly, AServerThatFollowsTheRevisionIsSentNoReplay) {
  boot(0);
  const auto edge = request("e1");
  send(10, "e1", edge);
  join(20, "e2");
  const Output out = send(30, "e1", ClientJoinSucceeded{ids(), edge.event_id}).output;
  ASSERT_EQ(out.publishes.size(), 1u) << describe(out);
  EXPECT_EQ(tracker->metrics().events_replayed, 0u);
}

TEST_F(TrackerSpecOnly, AResyncConfirmedToItAloneIsFollowedByItsReplay) {
  boot(0);
  join(10, "s1", spec_request("s1"));
  const auto again = spec_request("s1");  // on a TrackerHello it forgets its view and rejoins
  send(20, "s1", again);
  const ClientRegistered e1 = join(30, "e1");
  const Output out = send(40, "s1", ClientJoinSucceeded{ids(), std::nullopt}).output;
  ASSERT_EQ(out.publishes.size(), 2u) << describe(out);
  EXPECT_EQ(out.publishes[0].to, std::optional<ClientId>("s1")) << "the confirmation";
  EXPECT_EQ(out.publishes[1].to, std::optional<ClientId>("s1"));
  EXPECT_EQ(std::get<ClientRegistered>(*decode(topics::client_registered, out.publishes[1].payload))
                .event_id,
            e1.event_id);
}

TEST_F(TrackerSpecOnly, AJoinThatWouldMissMoreThanItsReplayHoldsIsDeniedAndInvitedAgain) {
  config.join_replay_events_max = 1;
  boot(0);
  send(10, "s1", spec_request("s1"));
  join(20, "e1");
  join(30, "e2");
  const MessageResult done = send(40, "s1", ClientJoinSucceeded{ids(), std::nullopt});
  const auto denied = expect_denied(done, "s1", denial::other);
  EXPECT_NE(denied.reason->find("changed more than 1 times"), std::string::npos) << *denied.reason;
  EXPECT_FALSE(tracker->view().is_registered("s1"));
  EXPECT_EQ(hellos_to(done.output), std::vector<std::string>{"s1"})
      << "it waits for a TrackerHello; the slot is free at once";
}

// The reference client waits for a TrackerHello after a denial; the tracker sends one only at
// start, so without these it would never join again.
TEST_F(TrackerSpecOnly, DeniedForTooManyJoinsItIsSentTrackerHelloAloneWhenASlotFrees) {
  config.joins_in_flight_max = 1;
  boot(0);
  const auto r1 = request("e1");
  send(10, "e1", r1);
  const MessageResult s1 = send(20, "s1", spec_request("s1"));
  expect_denied(s1, "s1", denial::other);
  EXPECT_TRUE(hellos_to(s1.output).empty()) << "no slot yet";
  expect_denied(send(21, "s2", spec_request("s2")), "s2", denial::other);
  expect_denied(send(22, "e2", request("e2")), "e2", denial::other);  // retries on its own
  EXPECT_EQ(tracker->gauges().clients_awaiting_hello, 2u);

  const Output freed = send(30, "e1", ClientJoinSucceeded{ids(), r1.event_id}).output;
  EXPECT_EQ(hellos_to(freed), std::vector<std::string>{"s1"}) << "oldest first, one per slot";
  EXPECT_TRUE(hellos_to(tick(40)).empty()) << "s1's invitation holds the slot";
  const auto again = spec_request("s1");
  ASSERT_EQ(all_of<ClientJoinAccepted>(send(50, "s1", again).output).size(), 1u);
  const Output s1_done = send(60, "s1", ClientJoinSucceeded{ids(), std::nullopt}).output;
  EXPECT_EQ(hellos_to(s1_done), std::vector<std::string>{"s2"});
  EXPECT_EQ(tracker->metrics().hellos_sent, 2u);
  EXPECT_EQ(tracker->gauges().clients_awaiting_hello, 0u);
}

TEST_F(TrackerSpecOnly, AnInvitationThatIsNotTakenFreesItsSlotAtTheJoinTimeout) {
  config.joins_in_flight_max = 1;
  boot(0);
  const auto r1 = request("e1");
  send(10, "e1", r1);
  send(20, "s1", spec_request("s1"));
  send(21, "s2", spec_request("s2"));
  EXPECT_EQ(hellos_to(send(30, "e1", ClientJoinSucceeded{ids(), r1.event_id}).output),
            std::vector<std::string>{"s1"});
  EXPECT_EQ(tracker->next_deadline_ms(), 30 + config.join_timeout_ms);
  EXPECT_TRUE(hellos_to(tick(30 + config.join_timeout_ms - 1)).empty());
  EXPECT_EQ(hellos_to(tick(30 + config.join_timeout_ms)), std::vector<std::string>{"s2"});
}

TEST_F(TrackerSpecOnly, ATimedOutJoinIsDeniedAndInvitedAgain) {
  boot(0);
  send(100, "s1", spec_request("s1"));
  send(100, "e1", request("e1"));
  MessageResult timed_out;
  timed_out.output = tick(100 + config.join_timeout_ms);
  EXPECT_EQ(all_of<ClientJoinDenied>(timed_out.output).size(), 2u);
  EXPECT_EQ(hellos_to(timed_out.output), std::vector<std::string>{"s1"})
      << "mqds-edge retries on its own";
}

TEST_F(TrackerSpecOnly, AServerDeniedForAConflictingViewIsInvitedAgain) {
  boot(0);
  const TestFile mine = file_of(150, 16);
  const TestFile other = file_of(150, 17);
  auto r = spec_request("s1");
  r.known_file_infos = {{mine.hash, mine.metadata}};
  send(10, "s1", r);
  ASSERT_TRUE(tracker->add_file(20, mine.hash, other.metadata, stage(store, other)).ok());
  const MessageResult done = send(30, "s1", ClientJoinSucceeded{ids(), std::nullopt});
  expect_denied(done, "s1", denial::other);
  EXPECT_EQ(hellos_to(done.output), std::vector<std::string>{"s1"});
}

TEST_F(TrackerSpecOnly, AServerDeniedForAFullServiceIsInvitedWhenAClientLeaves) {
  config.registered_clients_max = 1;
  boot(0);
  join(10, "e1");
  expect_denied(send(20, "s1", spec_request("s1")), "s1", denial::other);
  EXPECT_TRUE(hellos_to(tick(30)).empty()) << "still full";
  EXPECT_EQ(hellos_to(disconnect(40, "e1")), std::vector<std::string>{"s1"});
}

// A board that restarts comes back under a new client id (the reference client makes one at every
// start) while its old connection is not yet found lost: its endpoint is still taken.
TEST_F(TrackerSpecOnly, DeniedForAnEndpointItIsInvitedOnceTheEndpointIsFree) {
  boot(0);
  join(10, "old", spec_request("old"));
  auto restarted = spec_request("new");
  restarted.endpoints = {endpoint("old")};
  const MessageResult denied = send(20, "new", restarted);
  expect_denied(denied, "new", denial::endpoint_conflict);
  EXPECT_TRUE(hellos_to(denied.output).empty());
  EXPECT_TRUE(hellos_to(tick(30)).empty()) << "the endpoint is still taken";
  EXPECT_EQ(tracker->gauges().clients_awaiting_hello, 1u);
  EXPECT_EQ(hellos_to(disconnect(40, "old")), std::vector<std::string>{"new"});

  auto edge = request("e2");
  edge.endpoints = {endpoint("e1")};
  join(50, "e1");
  expect_denied(send(60, "e2", edge), "e2", denial::endpoint_conflict);
  EXPECT_TRUE(hellos_to(disconnect(70, "e1")).empty()) << "mqds-edge retries on its own";
}

TEST_F(TrackerSpecOnly, AServerThatLeavesIsNotInvited) {
  config.joins_in_flight_max = 1;
  boot(0);
  const auto r1 = request("e1");
  send(10, "e1", r1);
  send(20, "s1", spec_request("s1"));
  disconnect(25, "s1");
  EXPECT_TRUE(hellos_to(send(30, "e1", ClientJoinSucceeded{ids(), r1.event_id}).output).empty());
  EXPECT_EQ(tracker->gauges().clients_awaiting_hello, 0u);
}

// Repair: four mqds-edge clients (with fetch endpoints) and a file of two fragments, each
// distributed to the two clients placement chose. What the tracker does when copies go.
class TrackerRepair : public TrackerFixture {
 protected:
  void SetUp() override {
    config.repair_delay_ms = 10'000;
    config.repair_scan_interval_ms = 1'000;
    boot(0);
    for (const char* id : {"e1", "e2", "e3", "e4"}) join(10, id, edge_request(id));
    file = file_of(150, 21);
    ASSERT_EQ(file.fragments.size(), 2u);
    const IngestResult r = ingest(300, file);
    ASSERT_TRUE(r.ok()) << r.error;
    for (const auto& f : file.fragments) {
      const auto chosen = targets(f);
      for (const auto& id : chosen) send(310, id, FragmentDistributionRequested{ids(), f.hash});
      for (const auto& id : chosen) send(320, id, FragmentDistributionObtained{ids(), f.hash});
      ASSERT_EQ(tracker->view().holder_count(f.hash), 2u);
      ASSERT_FALSE(tracker->is_staged(f.hash));
    }
    fragment = file.fragments.front();
    holders = tracker->view().holders(fragment.hash);
  }

  ClientJoinRequested edge_request(const ClientId& id) {
    ClientJoinRequested r = request(id);
    r.endpoints = {fetch::endpoint_of(id)};
    return r;
  }

  static std::vector<fetch::OutgoingRequest> fetches_of(const Output& out, const Hash& hash) {
    std::vector<fetch::OutgoingRequest> found;
    for (const auto& request : out.fetch_requests) {
      auto decoded = fetch::decode_request(request.payload);
      EXPECT_TRUE(decoded.ok());
      if (decoded.ok() && decoded.value().hash == hash) found.push_back(request);
    }
    return found;
  }

  // The holder's answer, as mqds-edge gives it.
  static fetch::IncomingResponse answer(const fetch::OutgoingRequest& request, const Bytes& data) {
    fetch::ResponseHeader header;
    header.size_bytes = static_cast<std::int64_t>(data.size());
    return {request.response_topic, request.correlation_data,
            fetch::encode_response_properties(header), std::string(data.begin(), data.end())};
  }

  // What ticks at `now_ms` and one scan interval later ask for `hash`: a scan wanted within an
  // interval of the last waits for it.
  std::vector<fetch::OutgoingRequest> fetches_within_a_scan(std::int64_t now_ms, const Hash& hash) {
    auto found = fetches_of(tick(now_ms), hash);
    for (auto& request : fetches_of(tick(now_ms + config.repair_scan_interval_ms), hash))
      found.push_back(std::move(request));
    return found;
  }

  Output respond(std::int64_t now_ms, fetch::IncomingResponse response) {
    return apply(tracker->on_fetch_response(now_ms, std::move(response)));
  }

  // The first request of the repair of `fragment` once its holder `gone` has been away for the
  // delay.
  fetch::OutgoingRequest repair_after_loss_of(const ClientId& gone, std::int64_t lost_at_ms) {
    disconnect(lost_at_ms, gone);
    const auto requests = fetches_of(tick(lost_at_ms + config.repair_delay_ms), fragment.hash);
    EXPECT_EQ(requests.size(), 1u);
    return requests.empty() ? fetch::OutgoingRequest{} : requests.front();
  }

  TestFile file;
  TestFragment fragment;
  std::vector<ClientId> holders;
};

TEST_F(TrackerRepair, AHolderThatLeftCountsUntilTheRepairDelayHasPassed) {
  disconnect(1'000, holders[0]);
  EXPECT_TRUE(tick(1'000 + config.repair_delay_ms - 1).fetch_requests.empty());
  EXPECT_EQ(tracker->gauges().clients_away, 1u);
  EXPECT_EQ(tracker->next_deadline_ms(), 1'000 + config.repair_delay_ms);
  const auto requests = fetches_within_a_scan(1'000 + config.repair_delay_ms, fragment.hash);
  ASSERT_EQ(requests.size(), 1u);
  // From the holder that is left, answered on the tracker's own topic.
  EXPECT_EQ(requests[0].topic, fetch::request_topic(holders[1]));
  EXPECT_EQ(requests[0].response_topic, Tracker::repair_response_topic());
  EXPECT_EQ(tracker->metrics().repairs_started, 1u);
  EXPECT_EQ(tracker->gauges().repairs_in_flight, 1u);
}

TEST_F(TrackerRepair, AHolderBackWithinTheDelaySetsOffNoRepair) {
  disconnect(1'000, holders[0]);
  ClientJoinRequested back = edge_request(holders[0]);
  back.obtained_fragments = {{fragment.hash, {fragment.size_bytes()}}};
  for (const auto& f : file.fragments)
    if (f.hash != fragment.hash && tracker->holdings().at(holders[0]).count(f.hash))
      back.obtained_fragments[f.hash] = {f.size_bytes()};
  join(5'000, holders[0], back);
  EXPECT_EQ(tracker->gauges().clients_away, 0u);
  const Output later = tick(1'000 + config.repair_delay_ms + 1'000);
  EXPECT_TRUE(later.fetch_requests.empty());
  EXPECT_EQ(tracker->metrics().repairs_started, 0u);
}

TEST_F(TrackerRepair, TheFetchedContentGoesToThePlacementTargetAlone) {
  const auto request = repair_after_loss_of(holders[0], 1'000);
  const std::int64_t t = 1'000 + config.repair_delay_ms;
  const Output fetched = respond(t + 10, answer(request, fragment.data));
  const auto started = publishes_of<FragmentDistributionStarted>(fetched);
  ASSERT_EQ(started.size(), 1u) << describe(fetched);
  const ClientId target = *started[0]->to;
  EXPECT_NE(target, holders[0]);
  EXPECT_NE(target, holders[1]);
  // The best-scored client placement adds to the holder that is left.
  EXPECT_EQ(targets(fragment), std::vector<ClientId>{target});

  const MessageResult asked =
      send(t + 20, target, FragmentDistributionRequested{ids(), fragment.hash});
  const auto delivered = publishes_of<FragmentDistributionDelivered>(asked.output);
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0]->to, target);
  ASSERT_TRUE(delivered[0]->staged && delivered[0]->staged->content);
  EXPECT_FALSE(store.staged.count(fragment.hash)) << "a repair stages nothing";
  const auto on_wire = all_of<FragmentDistributionDelivered>(asked.output, &store);
  ASSERT_EQ(on_wire.size(), 1u);
  EXPECT_EQ(on_wire[0].data, fragment.data);

  const MessageResult confirmed =
      send(t + 30, target, FragmentDistributionObtained{ids(), fragment.hash});
  const auto ended = only<FragmentDistributionEnded>(confirmed.output);
  EXPECT_EQ(ended.receivers, std::set<ClientId>{target});
  EXPECT_EQ(tracker->view().holder_count(fragment.hash), 2u);
  EXPECT_TRUE(tracker->holdings().at(target).count(fragment.hash));
  EXPECT_EQ(tracker->metrics().repairs_ended, 1u);
  EXPECT_EQ(tracker->metrics().repaired_bytes, static_cast<std::uint64_t>(fragment.size_bytes()));
  EXPECT_EQ(tracker->gauges().repairs_in_flight, 0u);
}

TEST_F(TrackerRepair, AnAnswerWithOtherBytesIsNeverDeliveredAndTheRepairIsTriedAgain) {
  const auto request = repair_after_loss_of(holders[0], 1'000);
  const std::int64_t t = 1'000 + config.repair_delay_ms;
  Bytes corrupt = fragment.data;
  corrupt[0] ^= 0x01;
  const Output answered = respond(t + 10, answer(request, corrupt));
  EXPECT_TRUE(publishes_of<FragmentDistributionStarted>(answered).empty());
  EXPECT_EQ(tracker->metrics().repairs_failed, 1u) << "its only registered holder gave bad data";
  EXPECT_TRUE(logged(answered, "bad data") || logged(answered, "hash")) << describe(answered);
  // Tried again after the retry delay, by a scan (at most one a repair_scan_interval_ms).
  const std::int64_t again =
      std::max(t + 10 + config.retry_delay_ms, t + config.repair_scan_interval_ms);
  EXPECT_EQ(tracker->next_deadline_ms(), again);
  EXPECT_TRUE(fetches_of(tick(again - 1), fragment.hash).empty());
  EXPECT_EQ(fetches_of(tick(again), fragment.hash).size(), 1u);
}

TEST_F(TrackerRepair, ACopyAHolderNoLongerListsIsRepairedAtOnce) {
  // The holder found its copy corrupt and joins again without it: no delay applies.
  ClientJoinRequested without = edge_request(holders[0]);
  for (const auto& f : file.fragments)
    if (f.hash != fragment.hash && tracker->holdings().at(holders[0]).count(f.hash))
      without.obtained_fragments[f.hash] = {f.size_bytes()};
  const MessageResult accepted = send(2'000, holders[0], without);
  const MessageResult registered =
      send(2'000, holders[0], ClientJoinSucceeded{ids(), without.event_id});
  auto requests = fetches_of(registered.output, fragment.hash);
  if (requests.empty()) requests = fetches_within_a_scan(2'001, fragment.hash);
  ASSERT_EQ(requests.size(), 1u) << describe(registered.output);
  EXPECT_EQ(requests[0].topic, fetch::request_topic(holders[1]));
}

TEST_F(TrackerRepair, AFragmentWithNoRegisteredHolderWaitsUntilOneComesBack) {
  disconnect(1'000, holders[0]);
  disconnect(1'000, holders[1]);
  const Output expired = tick(1'000 + config.repair_delay_ms);
  EXPECT_TRUE(fetches_of(expired, fragment.hash).empty());
  EXPECT_GE(tracker->gauges().unavailable_fragments, 1u);
  // One holder comes back with its copy: the other's is repaired from it.
  ClientJoinRequested back = edge_request(holders[1]);
  for (const auto& f : file.fragments)
    if (tracker->holdings().at(holders[1]).count(f.hash))
      back.obtained_fragments[f.hash] = {f.size_bytes()};
  const std::int64_t t = 1'000 + config.repair_delay_ms + 5'000;
  send(t, holders[1], back);
  const MessageResult registered = send(t, holders[1], ClientJoinSucceeded{ids(), back.event_id});
  const auto requests = fetches_of(registered.output, fragment.hash);
  ASSERT_EQ(requests.size(), 1u) << describe(registered.output);
  EXPECT_EQ(requests[0].topic, fetch::request_topic(holders[1]));
  EXPECT_EQ(tracker->gauges().unavailable_fragments, 0u);
}

TEST_F(TrackerRepair, RepairsInFlightAreBounded) {
  config.repairs_in_flight_max = 1;
  tracker = std::make_unique<Tracker>(config, store.snapshot(), random);
  apply(tracker->start(0));
  // Everybody back, then two holders gone for good: both fragments are short.
  for (const char* id : {"e1", "e2", "e3", "e4"}) {
    ClientJoinRequested r = edge_request(id);
    for (const auto& f : file.fragments)
      if (store.snapshot().holdings.count(id) && store.snapshot().holdings.at(id).count(f.hash))
        r.obtained_fragments[f.hash] = {f.size_bytes()};
    join(100, id, r);
  }
  std::set<ClientId> gone = {holders[0]};
  const auto& second = file.fragments.back();
  for (const auto& id : tracker->view().holders(second.hash))
    if (gone.size() < 2 && !tracker->holdings().at(id).count(fragment.hash)) gone.insert(id);
  for (const auto& id : gone) disconnect(1'000, id);
  const Output expired = tick(1'000 + config.repair_delay_ms);
  EXPECT_EQ(tracker->gauges().repairs_in_flight, 1u);
  EXPECT_EQ(expired.fetch_requests.size(), 1u) << describe(expired);
}

TEST_F(TrackerRepair, AHolderWithoutAFetchEndpointIsNoSource) {
  // The only holder left joined as a server that knows only the specification would: no fetch
  // endpoint to take the content from.
  ClientJoinRequested spec = spec_request(holders[1]);
  for (const auto& f : file.fragments)
    if (tracker->holdings().at(holders[1]).count(f.hash))
      spec.obtained_fragments[f.hash] = {f.size_bytes()};
  disconnect(500, holders[1]);
  join(600, holders[1], spec);
  disconnect(1'000, holders[0]);
  const Output expired = tick(1'000 + config.repair_delay_ms);
  EXPECT_TRUE(fetches_of(expired, fragment.hash).empty());
  EXPECT_EQ(tracker->metrics().repairs_started, 0u);
}

TEST_F(TrackerRepair, AnAnswerForNoRepairChangesNothing) {
  fetch::IncomingResponse stray{
      Tracker::repair_response_topic(), "0123456789abcdef0123456789abcdef", {}, "x"};
  const Output out = respond(1'000, std::move(stray));
  EXPECT_TRUE(out.publishes.empty());
  EXPECT_TRUE(out.fetch_requests.empty());
  EXPECT_EQ(tracker->metrics().events_out_of_place, 1u);
}

// Trimming and rebalancing, on the same fleet: four edges, k = 2, a file of two fragments.
class TrackerBalance : public TrackerRepair {
 protected:
  // A join request of `id` that reports what the ledger says it holds, plus `extra`.
  ClientJoinRequested rejoin_request(const ClientId& id, std::optional<Hash> extra = {},
                                     bool spec_only = false) {
    ClientJoinRequested r = spec_only ? spec_request(id) : edge_request(id);
    for (const auto& f : file.fragments)
      if ((tracker->holdings().count(id) && tracker->holdings().at(id).count(f.hash)) ||
          (extra && *extra == f.hash))
        r.stored_fragments[f.hash] = {f.size_bytes()};
    return r;
  }
  ClientId first_non_holder() const {
    for (const char* id : {"e1", "e2", "e3", "e4"})
      if (std::find(holders.begin(), holders.end(), id) == holders.end()) return id;
    return {};
  }
  // A client id placement ranks among the best `replicas` for `fragment` in a fleet of e1-e4 and
  // it.
  ClientId wanted_newcomer() const {
    for (int n = 0; n < 1'000; ++n) {
      const ClientId candidate = "n" + std::to_string(n);
      const std::vector<ClientId> fleet = {"e1", "e2", "e3", "e4", candidate};
      const auto top = rendezvous_top(fragment.hash, fleet, config.replicas);
      if (std::find(top.begin(), top.end(), candidate) != top.end()) return candidate;
    }
    return {};
  }
  static std::vector<std::string> started_targets(const Output& out) {
    std::vector<std::string> to;
    for (const Publish* p : publishes_of<FragmentDistributionStarted>(out))
      to.push_back(p->to.value_or(""));
    return to;
  }
  // The TrackerHello sent to clients alone by `out` and the next scan.
  std::vector<std::string> asked_within_a_scan(const Output& out, std::int64_t now_ms) {
    auto asked = hellos_to(out);
    for (auto& to : hellos_to(tick(now_ms + config.repair_scan_interval_ms))) asked.push_back(to);
    return asked;
  }
};

TEST_F(TrackerBalance, ASurplusCopyIsDeletedByTheHolderPlacementLikesLeastInItsNextJoin) {
  // A third client brings a copy (a disk restored from a backup): one more than k.
  const ClientId extra = first_non_holder();
  send(2'000, extra, rejoin_request(extra, fragment.hash));
  const MessageResult registered = send(2'000, extra, ClientJoinSucceeded{ids(), std::nullopt});
  ASSERT_EQ(tracker->view().holder_count(fragment.hash), 3u);
  const auto best_first = rendezvous_top(fragment.hash, tracker->view().holders(fragment.hash), 3);
  const ClientId least = best_first.back();
  EXPECT_EQ(asked_within_a_scan(registered.output, 2'000), std::vector<std::string>{least});
  EXPECT_EQ(tracker->gauges().surplus_copies, 1u);
  // Its next join deletes the copy, and keeps the fragment in its view.
  const ClientJoinRequested again = rejoin_request(least);
  ASSERT_TRUE(again.stored_fragments.count(fragment.hash));
  const MessageResult accepted = send(3'500, least, again);
  const auto& answer = only<ClientJoinAccepted>(accepted.output);
  EXPECT_TRUE(answer.remove_fragment_infos.count(fragment.hash));
  EXPECT_TRUE(answer.add_fragment_infos.count(fragment.hash));
  // Meanwhile it counts nowhere: no second holder is asked, nothing is repaired.
  EXPECT_TRUE(tracker->trimming().at(least).count(fragment.hash));
  EXPECT_TRUE(hellos_to(tick(3'600)).empty());
  const MessageResult done = send(3'700, least, ClientJoinSucceeded{ids(), again.event_id});
  EXPECT_EQ(tracker->view().holder_count(fragment.hash), 2u) << describe(done.output);
  EXPECT_FALSE(tracker->view().holds(least, fragment.hash));
  EXPECT_FALSE(tracker->holdings().at(least).count(fragment.hash));
  EXPECT_EQ(tracker->metrics().copies_trimmed, 1u);
  EXPECT_TRUE(tracker->trimming().empty());
  EXPECT_TRUE(fetches_of(tick(10'000), fragment.hash).empty()) << "k copies: nothing to repair";
  EXPECT_EQ(tracker->gauges().surplus_copies, 0u);
}

TEST_F(TrackerBalance, ACopyIsNeverTrimmedBelowKEvenWhenAHolderLeavesMeanwhile) {
  const ClientId extra = first_non_holder();
  send(2'000, extra, rejoin_request(extra, fragment.hash));
  send(2'000, extra, ClientJoinSucceeded{ids(), std::nullopt});
  const auto best_first = rendezvous_top(fragment.hash, tracker->view().holders(fragment.hash), 3);
  const ClientId least = best_first.back();
  tick(3'000);
  // One of the copies that were to stay goes before the holder of the surplus joins.
  disconnect(3'200, best_first.front());
  const MessageResult accepted = send(3'500, least, rejoin_request(least));
  EXPECT_FALSE(
      only<ClientJoinAccepted>(accepted.output).remove_fragment_infos.count(fragment.hash));
  EXPECT_EQ(tracker->metrics().copies_trimmed, 0u);
}

TEST_F(TrackerBalance, AServerOfTheSpecificationIsNeverAskedToDeleteACopy) {
  // The third copy is on a server without Trim: ClientJoinAccepted would take the fragment out
  // of its view. The two others are the only ones that can be fetched: they stay too.
  const ClientId extra = first_non_holder();
  send(2'000, extra, rejoin_request(extra, fragment.hash, true));
  const MessageResult registered = send(2'000, extra, ClientJoinSucceeded{ids(), std::nullopt});
  ASSERT_EQ(tracker->view().holder_count(fragment.hash), 3u);
  EXPECT_TRUE(asked_within_a_scan(registered.output, 2'000).empty());
  EXPECT_EQ(tracker->gauges().surplus_copies, 0u);
}

TEST_F(TrackerBalance, AClientPlacementWantsGetsACopyMovedToItThenTheLeastLikedIsTrimmed) {
  // A new client that placement ranks above a holder of the fragment.
  const ClientId newcomer = wanted_newcomer();
  ASSERT_FALSE(newcomer.empty());
  join(2'000, newcomer, edge_request(newcomer));
  auto requests = fetches_within_a_scan(2'000, fragment.hash);
  ASSERT_EQ(requests.size(), 1u) << "one copy moves, fetched from a holder";
  EXPECT_GE(tracker->metrics().rebalances_started, 1u);
  EXPECT_GE(tracker->gauges().misplaced_fragments, 1u);
  const Output fetched = respond(3'100, answer(requests[0], fragment.data));
  EXPECT_EQ(started_targets(fetched), std::vector<std::string>{newcomer});
  send(3'200, newcomer, FragmentDistributionRequested{ids(), fragment.hash});
  send(3'300, newcomer, FragmentDistributionObtained{ids(), fragment.hash});
  EXPECT_EQ(tracker->metrics().rebalances_ended, 1u);
  EXPECT_EQ(tracker->metrics().repairs_started, 0u) << "a move is no repair";
  ASSERT_EQ(tracker->view().holder_count(fragment.hash), 3u);
  // Copy first, delete after: the holder placement no longer wants is asked to delete its copy.
  const auto ideal =
      ideal_holders(tracker->view(), fragment.hash, fragment.size_bytes(), config.replicas);
  ClientId unwanted;
  for (const auto& holder : tracker->view().holders(fragment.hash))
    if (std::find(ideal.begin(), ideal.end(), holder) == ideal.end()) unwanted = holder;
  EXPECT_EQ(hellos_to(tick(4'400)), std::vector<std::string>{unwanted});
}

TEST_F(TrackerBalance, WithRebalancingOffNothingMoves) {
  // The broker restarts with plugin_opt_rebalance false; the fleet joins again, and grows.
  config.rebalance = false;
  boot(5'000);
  for (const char* id : {"e1", "e2", "e3", "e4"}) join(5'000, id, rejoin_request(id));
  const ClientId newcomer = wanted_newcomer();
  join(8'000, newcomer, edge_request(newcomer));
  EXPECT_TRUE(fetches_within_a_scan(8'000, fragment.hash).empty());
  EXPECT_EQ(tracker->metrics().rebalances_started, 0u);
}

}  // namespace
}  // namespace mqds
