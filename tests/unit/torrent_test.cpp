// Unit tests of the Torrent Server state machine, one per use-case step or branch of the
// specification (Torrent Server Startup, Client Join with timeouts, Fragment Distribution and the
// failure handling of docs/specification.md), its phases and their transitions, and an end-to-end
// run of one tracker and three torrent servers through a tiny synchronous router.
//
// Every input is a real JSON payload (an event struct passed through encode()), and every
// assertion reads the server's publishes back through decode(). Storage effects go through the
// TorrentMemoryStore the simulation uses, so "stored" means what a store would hold.
#include "mqds/torrent.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mqds/assert.hpp"
#include "mqds/placement.hpp"
#include "mqds/tracker.hpp"
#include "support/machine_harness.hpp"
#include "support/memory_store.hpp"

namespace mqds {
namespace {

using testing::all_of;
using testing::cut_file;
using testing::describe;
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
using testing::TorrentMemoryStore;
using testing::TrackerMemoryStore;

TestFragment fragment_of(std::size_t size_bytes, std::uint32_t seed) {
  Bytes data = pattern(size_bytes, seed);
  const Hash hash = sha256(data);
  return {hash, std::move(data)};
}

class TorrentFixture : public ::testing::Test {
 protected:
  TorrentFixture() {
    config.client_id = "t1";
    config.endpoints = {"grpc://t1:50051"};
    config.default_replicas = 2;
    config.join_timeout_ms = 1'000;
    config.registration_timeout_ms = 1'000;
    config.join_retry_min_ms = 1'000;
    config.join_retry_max_ms = 8'000;
    config.request_timeout_ms = 3'000;
    config.temporary_timeout_ms = 60'000;
  }

  // A server built from what its store holds, as mqds-edge builds it at start-up.
  void make() { torrent = std::make_unique<TorrentServer>(config, store.snapshot(), random); }

  // Applies the storage effects and remembers the last ClientJoinRequested it sent.
  Output track(Output out) {
    store.apply(out.storage);
    for (const auto& r : all_of<ClientJoinRequested>(out)) request = r;
    return out;
  }

  Output connect(std::int64_t now_ms) {
    if (!torrent) make();
    return track(torrent->on_connected(now_ms));
  }
  Output receive(std::int64_t now_ms, const Event& event) {
    return receive_raw(now_ms, topic_of(event), encode(event));
  }
  Output receive_raw(std::int64_t now_ms, std::string_view topic, std::string_view payload) {
    return track(torrent->on_message(now_ms, topic, payload));
  }
  Output tick(std::int64_t now_ms) { return track(torrent->on_tick(now_ms)); }

  // The tracker's answer to the last request: nothing to change, at `revision`.
  ClientJoinAccepted accept(std::uint64_t revision = 5) {
    ClientJoinAccepted a;
    a.event_id = ids();
    a.client_identifier = config.client_id;
    a.fragment_size_bytes = 100;
    a.request_event_id = request.event_id;
    a.revision = revision;
    a.replicas = 2;
    return a;
  }

  std::set<Hash> held() const { return hashes_of(torrent->stored_fragments()); }

  ClientRegistered registered(std::uint64_t revision) {
    ClientRegistered r;
    r.event_id = ids();
    r.client_identifier = config.client_id;
    r.info = ClientMetadata{config.endpoints, held(), config.capacity_bytes};
    r.revision = revision;
    return r;
  }

  // Connect at 0, accept at 10, registered at 20: the view is then at `revision` + 1.
  void register_with(ClientJoinAccepted a) {
    connect(0);
    a.request_event_id = request.event_id;
    const Output succeeded = receive(10, a);
    ASSERT_EQ(all_of<ClientJoinSucceeded>(succeeded).size(), 1u) << describe(succeeded);
    const Output done = receive(20, registered(*a.revision + 1));
    ASSERT_EQ(torrent->phase(), TorrentPhase::registered) << describe(done);
  }
  void register_alone() { register_with(accept()); }

  // A view-changing event is numbered after the current Revision.
  std::uint64_t next_revision() const { return torrent->view().revision() + 1; }

  FragmentDistributionDelivered delivered(const TestFragment& f,
                                          std::set<ClientId> receivers = {"t1"}) {
    return FragmentDistributionDelivered{ids(), f.hash, f.data, std::move(receivers),
                                         torrent->view().revision()};
  }
  FragmentDistributionEnded ended(const TestFragment& f, std::set<ClientId> receivers) {
    return FragmentDistributionEnded{ids(), f.hash, f.size_bytes(), std::move(receivers),
                                     next_revision()};
  }

  // A denial the operator must fix is logged as an error that says what to do; the server keeps
  // running, asks again after operator_retry_ms, and at once at the next TrackerHello.
  void expect_operator_denial(std::uint32_t code, std::string_view advice) {
    connect(0);
    const Output out =
        receive(10, ClientJoinDenied{ids(), "t1", code, "as the tracker says", request.event_id});
    EXPECT_FALSE(out.fatal) << "a denial never stops a server: " << describe(out);
    ASSERT_TRUE(logged_at_least(out, LogLevel::error)) << describe(out);
    const std::string text = describe(out);
    EXPECT_NE(text.find(advice), std::string::npos) << text;
    EXPECT_NE(text.find("as the tracker says"), std::string::npos) << text;
    EXPECT_TRUE(out.publishes.empty());
    EXPECT_EQ(torrent->phase(), TorrentPhase::unregistered);
    EXPECT_EQ(torrent->next_deadline_ms(), 10 + config.operator_retry_ms);
    EXPECT_TRUE(tick(10 + config.operator_retry_ms - 1).publishes.empty());
    EXPECT_EQ(all_of<ClientJoinRequested>(tick(10 + config.operator_retry_ms)).size(), 1u)
        << "it asks again";
    EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
  }

  TorrentConfig config;
  SplitMix64 random{99};
  TorrentMemoryStore store;
  std::unique_ptr<TorrentServer> torrent;
  ClientJoinRequested request;
  EventIds ids;
};

using TorrentJoinRequest = TorrentFixture;
using TorrentJoinAccept = TorrentFixture;
using TorrentJoinDenied = TorrentFixture;
using TorrentJoinTimeouts = TorrentFixture;
using TorrentRegistration = TorrentFixture;
using TorrentTrackerPresence = TorrentFixture;
using TorrentViewUpdates = TorrentFixture;
using TorrentDistribution = TorrentFixture;
using TorrentTemporaries = TorrentFixture;
using TorrentGoodbye = TorrentFixture;
using TorrentMessages = TorrentFixture;
using TorrentPhases = TorrentFixture;

// --- Torrent Server Startup step 3, Client Join step 1: the request ------------------------------

TEST_F(TorrentJoinRequest, FreshServerOmitsFragmentSize) {
  config.capacity_bytes = 10'000;
  const Output out = connect(0);
  const auto publishes = publishes_of<ClientJoinRequested>(out);
  ASSERT_EQ(publishes.size(), 1u) << describe(out);
  EXPECT_FALSE(publishes[0]->to);
  EXPECT_EQ(publishes[0]->payload.find("FragmentSize"), std::string::npos)
      << "a server without data lets the service choose: " << publishes[0]->payload;
  const auto r = only<ClientJoinRequested>(out);
  EXPECT_FALSE(r.fragment_size_bytes);
  EXPECT_EQ(r.hash_algorithm, "SHA256");
  EXPECT_TRUE(r.known_file_infos.empty());
  EXPECT_TRUE(r.stored_fragments.empty());
  EXPECT_TRUE(r.obtained_fragments.empty());
  EXPECT_EQ(r.endpoints, config.endpoints);
  EXPECT_EQ(r.capacity_bytes, std::optional<std::int64_t>(10'000));
  // It follows the Revision, deletes orphans and retries on its own: the tracker need not make
  // up for a server that knows only the specification.
  EXPECT_EQ(r.extensions,
            (std::set<std::string>{"JoinRetry", "RemoveOrphans", "Revision", "Trim"}));
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
  EXPECT_EQ(torrent->metrics().joins_requested, 1u);
}

TEST_F(TorrentJoinRequest, ServerThatKnowsAFragmentSizeButHoldsNoDataOmitsIt) {
  store.fragment_size_bytes = 100;  // everything it held was deleted at an earlier join
  const Output out = connect(0);
  const auto publishes = publishes_of<ClientJoinRequested>(out);
  ASSERT_EQ(publishes.size(), 1u);
  EXPECT_EQ(publishes[0]->payload.find("FragmentSize"), std::string::npos) << publishes[0]->payload;
}

TEST_F(TorrentJoinRequest, ServerWithDataReportsFragmentSizeFilesStoredAndObtainedFragments) {
  config.capacity_bytes = 1'000'000;
  const TestFile file = cut_file(pattern(150, 1), 100);
  store.fragment_size_bytes = 100;
  store.files[file.hash] = file.metadata;
  store.persisted[file.fragments[0].hash] = file.fragments[0].data;
  store.temporary[file.fragments[1].hash] = file.fragments[1].data;
  const auto r = only<ClientJoinRequested>(connect(0));
  EXPECT_EQ(r.fragment_size_bytes, std::optional<std::int64_t>(100));
  EXPECT_EQ(r.known_file_infos, (FileInfos{{file.hash, file.metadata}}));
  EXPECT_EQ(r.stored_fragments, (FragmentInfos{{file.fragments[0].hash, {100}}}));
  EXPECT_EQ(r.obtained_fragments, (FragmentInfos{{file.fragments[1].hash, {50}}}));
  EXPECT_EQ(r.endpoints, config.endpoints);
  EXPECT_EQ(r.capacity_bytes, std::optional<std::int64_t>(1'000'000));
}

// --- Failure handling: a subscriber loses some or all of its local copy -------------------------

TEST_F(TorrentRegistration, LostLocalCopyIsDeletedAndReportedByARejoin) {
  const TestFile file = cut_file(pattern(150, 1), 100);
  store.fragment_size_bytes = 100;
  store.files[file.hash] = file.metadata;
  store.persisted[file.fragments[0].hash] = file.fragments[0].data;
  store.persisted[file.fragments[1].hash] = file.fragments[1].data;
  make();
  register_alone();
  const Output out = track(torrent->fragment_lost(30, file.fragments[0].hash));
  EXPECT_EQ(effects_of<store::DeleteFragment>(out).size(), 1u) << describe(out);
  EXPECT_FALSE(store.persisted.count(file.fragments[0].hash));
  const auto r = only<ClientJoinRequested>(out);
  EXPECT_EQ(r.stored_fragments, (FragmentInfos{{file.fragments[1].hash, {50}}}));
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
  EXPECT_TRUE(logged(out, "lost the local copy"));
}

TEST_F(TorrentRegistration, LosingAFragmentItDoesNotHoldChangesNothing) {
  register_alone();
  const Output out = torrent->fragment_lost(30, fragment_of(10, 3).hash);
  EXPECT_TRUE(out.empty()) << describe(out);
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
}

TEST_F(TorrentRegistration, LostWhileDisconnectedIsReportedByTheNextJoin) {
  const TestFile file = cut_file(pattern(150, 1), 100);
  store.fragment_size_bytes = 100;
  store.files[file.hash] = file.metadata;
  store.persisted[file.fragments[0].hash] = file.fragments[0].data;
  make();
  const Output out = track(torrent->fragment_lost(5, file.fragments[0].hash));
  EXPECT_TRUE(all_of<ClientJoinRequested>(out).empty()) << "no join while disconnected";
  EXPECT_TRUE(only<ClientJoinRequested>(connect(10)).stored_fragments.empty());
}

// --- Client Join steps 7 and 8: applying the accept ---------------------------------------------

TEST_F(TorrentJoinAccept, AcceptedForAnotherClientIsIgnored) {
  connect(0);
  auto a = accept();
  a.client_identifier = "t2";
  const Output out = receive(10, a);
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_TRUE(out.storage.empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
}

TEST_F(TorrentJoinAccept, AcceptedWithAStaleRequestEventIdIsIgnored) {
  connect(0);
  auto a = accept();
  a.request_event_id = ids();  // answers some earlier request
  const Output out = receive(10, a);
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_TRUE(out.storage.empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
  EXPECT_FALSE(torrent->fragment_size_bytes());
}

// The accept comes from a real tracker, so "the view the tracker will have" is the tracker's.
TEST_F(TorrentJoinAccept, AcceptedIsAppliedAndTheViewBecomesTheTrackers) {
  // The service: file F (three fragments), registered client c1 holding the first two.
  TrackerConfig tracker_config;
  tracker_config.fragment_size_bytes = 100;
  tracker_config.replicas = 2;
  const TestFile f = cut_file(pattern(250, 2), 100);
  TrackerMemoryStore tracker_store;
  tracker_store.files[f.hash] = f.metadata;
  tracker_store.fragments = f.fragment_infos();
  SplitMix64 tracker_random(5);
  Tracker tracker(tracker_config, tracker_store.snapshot(), tracker_random);
  tracker_store.apply(tracker.start(0).storage);
  auto tracker_says = [&](std::int64_t now_ms, const ClientId& sender, const Event& e) {
    MessageResult r = tracker.on_message(now_ms, sender, topic_of(e), encode(e));
    tracker_store.apply(r.output.storage);
    return r.output;
  };
  ClientJoinRequested c1;
  c1.event_id = ids();
  c1.hash_algorithm = "SHA256";
  c1.known_file_infos = {{f.hash, f.metadata}};
  c1.stored_fragments = {{f.fragments[0].hash, {100}}, {f.fragments[1].hash, {100}}};
  c1.endpoints = {"grpc://c1:50051"};
  tracker_says(1, "c1", c1);
  tracker_says(2, "c1", ClientJoinSucceeded{ids(), c1.event_id});

  // t1 knows F with another fragment order, stores F's last fragment, a fragment no file
  // references, and a file H of its own.
  const TestFile h = cut_file(pattern(80, 3), 100);
  const TestFragment junk = fragment_of(100, 4);
  FileMetadata conflicting = f.metadata;
  std::reverse(conflicting.fragment_sequence.begin(), conflicting.fragment_sequence.end());
  store.fragment_size_bytes = 100;
  store.files = {{f.hash, conflicting}, {h.hash, h.metadata}};
  store.persisted = {{f.fragments[2].hash, f.fragments[2].data},
                     {h.fragments[0].hash, h.fragments[0].data},
                     {junk.hash, junk.data}};

  connect(10);
  const Output accepted = tracker_says(11, "t1", request);
  const auto accept_publishes = publishes_of<ClientJoinAccepted>(accepted);
  ASSERT_EQ(accept_publishes.size(), 1u) << describe(accepted);
  const Output applied = receive_raw(12, accept_publishes[0]->topic, accept_publishes[0]->payload);

  const auto deleted_files = effects_of<store::DeleteFile>(applied);
  ASSERT_EQ(deleted_files.size(), 1u) << describe(applied);
  EXPECT_EQ(deleted_files[0].hash, f.hash);
  const auto deleted = effects_of<store::DeleteFragment>(applied);
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_EQ(deleted[0].hash, junk.hash);
  const auto put = effects_of<store::PutFile>(applied);
  ASSERT_EQ(put.size(), 1u);
  EXPECT_EQ(put[0].hash, f.hash);
  EXPECT_EQ(put[0].metadata, f.metadata) << "the service's version replaces the conflicting one";
  EXPECT_TRUE(effects_of<store::PutFragmentSize>(applied).empty()) << "the size did not change";
  const auto succeeded = only<ClientJoinSucceeded>(applied);
  EXPECT_EQ(succeeded.request_event_id, request.event_id);
  EXPECT_EQ(torrent->phase(), TorrentPhase::awaiting_registration);

  // Before its registration, its view is the tracker's without itself.
  const DistributionView& mine = torrent->view();
  EXPECT_EQ(mine.files(), (FileInfos{{f.hash, f.metadata}, {h.hash, h.metadata}}));
  FragmentInfos expected_fragments = tracker.view().fragments();
  expected_fragments[h.fragments[0].hash] = FragmentMetadata{h.fragments[0].size_bytes()};
  EXPECT_EQ(mine.fragments(), expected_fragments);
  EXPECT_EQ(mine.clients(), tracker.view().clients());
  EXPECT_EQ(mine.revision(), tracker.view().revision());
  EXPECT_EQ(mine.fragment_size_bytes(), 100);
  EXPECT_EQ(store.files.at(f.hash), f.metadata);
  EXPECT_EQ(store.persisted.count(junk.hash), 0u);
  EXPECT_EQ(store.persisted.size(), 2u);

  // Step 8 reaches the tracker; ClientRegistered comes back; the views are equal.
  const Output registration = tracker_says(13, "t1", succeeded);
  const auto announced = publishes_of<ClientRegistered>(registration);
  ASSERT_EQ(announced.size(), 1u) << describe(registration);
  receive_raw(14, announced[0]->topic, announced[0]->payload);
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
  EXPECT_TRUE(torrent->view() == tracker.view());
  EXPECT_EQ(held(), (std::set<Hash>{f.fragments[2].hash, h.fragments[0].hash}));
}

TEST_F(TorrentJoinAccept, FreshServerAdoptsTheServicesFragmentSize) {
  connect(0);
  const Output out = receive(10, accept());
  const auto sizes = effects_of<store::PutFragmentSize>(out);
  ASSERT_EQ(sizes.size(), 1u) << describe(out);
  EXPECT_EQ(sizes[0].size_bytes, 100);
  EXPECT_EQ(store.fragment_size_bytes, std::optional<std::int64_t>(100));
  EXPECT_EQ(torrent->fragment_size_bytes(), std::optional<std::int64_t>(100));
  EXPECT_EQ(only<ClientJoinSucceeded>(out).request_event_id, request.event_id);
  EXPECT_EQ(torrent->phase(), TorrentPhase::awaiting_registration);
}

TEST_F(TorrentJoinAccept, AcceptWithAnotherFragmentSizeWhileHoldingDataIsFatal) {
  const TestFile file = cut_file(pattern(100, 5), 100);
  store.fragment_size_bytes = 100;
  store.files[file.hash] = file.metadata;
  store.persisted[file.fragments[0].hash] = file.fragments[0].data;
  connect(0);
  auto a = accept();
  a.fragment_size_bytes = 200;
  a.remove_fragment_infos = {file.fragments[0].hash};
  const Output out = receive(10, a);
  const auto failed = only<ClientJoinFailed>(out);
  EXPECT_EQ(failed.request_event_id, request.event_id);
  EXPECT_TRUE(failed.reason && failed.reason->find("200") != std::string::npos);
  ASSERT_TRUE(out.fatal) << describe(out);
  EXPECT_NE(out.fatal->find("move the data directory aside"), std::string::npos) << *out.fatal;
  EXPECT_TRUE(out.storage.empty()) << "nothing is deleted on the way out";
  EXPECT_TRUE(all_of<ClientJoinSucceeded>(out).empty());
  EXPECT_EQ(store.persisted.size(), 1u);
  EXPECT_NE(torrent->phase(), TorrentPhase::awaiting_registration);
}

TEST_F(TorrentJoinAccept, TemporariesNotRemovedArePersisted) {
  const TestFragment keep = fragment_of(100, 6);
  const TestFragment drop = fragment_of(100, 7);
  store.temporary = {{keep.hash, keep.data}, {drop.hash, drop.data}};
  const auto r = only<ClientJoinRequested>(connect(0));
  EXPECT_EQ(r.obtained_fragments, (FragmentInfos{{keep.hash, {100}}, {drop.hash, {100}}}));
  auto a = accept();
  a.remove_fragment_infos = {drop.hash};
  const Output out = receive(10, a);
  const auto deleted = effects_of<store::DeleteFragment>(out);
  ASSERT_EQ(deleted.size(), 1u) << describe(out);
  EXPECT_EQ(deleted[0].hash, drop.hash);
  const auto persisted = effects_of<store::PersistFragment>(out);
  ASSERT_EQ(persisted.size(), 1u);
  EXPECT_EQ(persisted[0].hash, keep.hash);
  EXPECT_EQ(store.persisted, (std::map<Hash, Bytes>{{keep.hash, keep.data}}));
  EXPECT_TRUE(store.temporary.empty());
  EXPECT_EQ(torrent->temporary_count(), 0u);
  EXPECT_EQ(held(), std::set<Hash>{keep.hash});
  EXPECT_EQ(torrent->metrics().fragments_persisted, 1u);
}

// --- Client Join: denied ------------------------------------------------------------------------

TEST_F(TorrentJoinDenied, OtherRetriesAfterAJitteredBackoff) {
  connect(0);
  const Uuid first = request.event_id;
  const Output out = receive(100, ClientJoinDenied{ids(), "t1", denial::other, "busy", first});
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_FALSE(out.fatal);
  EXPECT_EQ(torrent->phase(), TorrentPhase::unregistered);
  const auto retry_ms = torrent->next_deadline_ms();
  ASSERT_TRUE(retry_ms);
  EXPECT_GE(*retry_ms, 100 + config.join_retry_min_ms / 2);
  EXPECT_LE(*retry_ms, 100 + config.join_retry_min_ms);
  EXPECT_TRUE(tick(*retry_ms - 1).publishes.empty());
  const auto again = only<ClientJoinRequested>(tick(*retry_ms));
  EXPECT_NE(again.event_id, first);
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
}

TEST_F(TorrentJoinDenied, BackoffDoublesUpToTheMaximum) {
  connect(0);
  std::int64_t now_ms = 0;
  for (const std::int64_t backoff_ms : {1'000, 2'000, 4'000, 8'000, 8'000}) {
    receive(now_ms, ClientJoinDenied{ids(), "t1", denial::other, "busy", request.event_id});
    const auto retry_ms = torrent->next_deadline_ms();
    ASSERT_TRUE(retry_ms);
    EXPECT_GE(*retry_ms - now_ms, backoff_ms / 2) << "backoff " << backoff_ms;
    EXPECT_LE(*retry_ms - now_ms, backoff_ms) << "backoff " << backoff_ms;
    now_ms = *retry_ms;
    ASSERT_EQ(all_of<ClientJoinRequested>(tick(now_ms)).size(), 1u);
  }
}

// The tracker's denial of a request over its size bound (Other, naming the option): the server
// says why and asks again after its backoff, never at once, so a board too large for the tracker
// does not send its large request in a loop.
TEST_F(TorrentJoinDenied, ARequestTooLargeForTheTrackerIsLoggedAndAskedAgainWithBackoff) {
  connect(0);
  const std::string reason =
      "ClientJoinRequested of 40000000 bytes exceeds the tracker's bound of 33554432 bytes "
      "(plugin_opt_join_request_max)";
  const Output out =
      receive(10, ClientJoinDenied{ids(), "t1", denial::other, reason, request.event_id});
  EXPECT_TRUE(logged(out, "plugin_opt_join_request_max")) << describe(out);
  EXPECT_TRUE(all_of<ClientJoinRequested>(out).empty()) << "no request sent at once";
  const auto retry_ms = torrent->next_deadline_ms();
  ASSERT_TRUE(retry_ms);
  EXPECT_GE(*retry_ms - 10, config.join_retry_min_ms / 2);
}

TEST_F(TorrentJoinDenied, JitterStaysWithinTheBackoffWindow) {
  std::set<std::int64_t> delays;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    SplitMix64 seeded(seed);
    TorrentServer server(config, TorrentSnapshot{}, seeded);
    const auto r = only<ClientJoinRequested>(server.on_connected(0));
    const Event denied = ClientJoinDenied{ids(), "t1", denial::other, "busy", r.event_id};
    server.on_message(0, topic_of(denied), encode(denied));
    const auto retry_ms = server.next_deadline_ms();
    ASSERT_TRUE(retry_ms);
    EXPECT_GE(*retry_ms, config.join_retry_min_ms / 2) << "seed " << seed;
    EXPECT_LE(*retry_ms, config.join_retry_min_ms) << "seed " << seed;
    delays.insert(*retry_ms);
  }
  EXPECT_GT(delays.size(), 50u) << "the retries of a fleet are spread";
  EXPECT_LE(*delays.begin(), config.join_retry_min_ms / 2 + 100) << "over the whole window";
  EXPECT_GE(*delays.rbegin(), config.join_retry_min_ms - 100) << "over the whole window";
}

TEST_F(TorrentJoinDenied, WrongFragmentSizeSaysToMoveTheDataAsideAndAsksAgainLater) {
  expect_operator_denial(denial::wrong_fragment_size, "move the data directory aside");
}

TEST_F(TorrentJoinDenied, WrongHashAlgorithmSaysSoAndAsksAgainLater) {
  expect_operator_denial(denial::wrong_hash_algorithm, "hashes with another algorithm");
}

TEST_F(TorrentJoinDenied, EndpointConflictSaysToChooseAnotherEndpointAndAsksAgainLater) {
  expect_operator_denial(denial::endpoint_conflict, "its own --endpoint");
}

TEST_F(TorrentJoinDenied, AfterADenialTheOperatorMustFixATrackerHelloMakesItJoinAtOnce) {
  connect(0);
  receive(10, ClientJoinDenied{ids(), "t1", denial::wrong_fragment_size, "no", request.event_id});
  ASSERT_EQ(torrent->phase(), TorrentPhase::unregistered);
  const Output hello = receive(20, TrackerHello{ids()});
  EXPECT_EQ(all_of<ClientJoinRequested>(hello).size(), 1u) << describe(hello);
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
}

TEST_F(TorrentJoinDenied, ADenialThatNamesNoRequestIsNeverOneThatNeedsAPerson) {
  // Anyone able to publish a denial could have written it: it costs a retry, nothing more.
  connect(0);
  const Output out =
      receive(10, ClientJoinDenied{ids(), "t1", denial::wrong_fragment_size, "no", std::nullopt});
  EXPECT_FALSE(out.fatal) << describe(out);
  EXPECT_FALSE(logged_at_least(out, LogLevel::error)) << describe(out);
  EXPECT_EQ(torrent->phase(), TorrentPhase::unregistered);
  ASSERT_TRUE(torrent->next_deadline_ms());
  EXPECT_LE(*torrent->next_deadline_ms(), 10 + config.join_retry_max_ms)
      << "retried with the ordinary backoff";
}

TEST_F(TorrentJoinDenied, DenialOfAnotherClientOrAnEarlierRequestIsIgnored) {
  connect(0);
  const Output other =
      receive(10, ClientJoinDenied{ids(), "t2", denial::wrong_fragment_size, "no", std::nullopt});
  EXPECT_TRUE(other.empty()) << describe(other);
  const Output stale =
      receive(10, ClientJoinDenied{ids(), "t1", denial::wrong_fragment_size, "no", ids()});
  EXPECT_TRUE(stale.publishes.empty() && stale.storage.empty() && !stale.fatal) << describe(stale);
  EXPECT_FALSE(logged_at_least(stale, LogLevel::info)) << describe(stale);
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
  EXPECT_EQ(torrent->metrics().events_out_of_phase, 1u) << "the stale one; the other's is not ours";
}

// --- Client Join with timeouts ------------------------------------------------------------------

TEST_F(TorrentJoinTimeouts, NoAnswerWithinJoinTimeoutRetriesLater) {
  connect(0);
  const Uuid first = request.event_id;
  EXPECT_TRUE(tick(config.join_timeout_ms - 1).empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
  const Output timeout = tick(config.join_timeout_ms);
  EXPECT_TRUE(timeout.publishes.empty()) << describe(timeout);
  EXPECT_TRUE(logged_at_least(timeout, LogLevel::warning));
  EXPECT_EQ(torrent->phase(), TorrentPhase::unregistered);
  const auto retry_ms = torrent->next_deadline_ms();
  ASSERT_TRUE(retry_ms);
  EXPECT_GE(*retry_ms, config.join_timeout_ms + config.join_retry_min_ms / 2);
  EXPECT_LE(*retry_ms, config.join_timeout_ms + config.join_retry_min_ms);
  EXPECT_NE(only<ClientJoinRequested>(tick(*retry_ms)).event_id, first);
}

TEST_F(TorrentJoinTimeouts, NoRegistrationWithinTimeoutSendsFailedThenRetries) {
  connect(0);
  const Uuid first = request.event_id;
  receive(10, accept());
  ASSERT_EQ(torrent->phase(), TorrentPhase::awaiting_registration);
  EXPECT_TRUE(tick(10 + config.registration_timeout_ms - 1).publishes.empty());
  const Output timeout = tick(10 + config.registration_timeout_ms);
  const auto failed = only<ClientJoinFailed>(timeout);
  EXPECT_EQ(failed.request_event_id, first);
  EXPECT_TRUE(failed.reason && !failed.reason->empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::unregistered);
  const auto retry_ms = torrent->next_deadline_ms();
  ASSERT_TRUE(retry_ms);
  EXPECT_NE(only<ClientJoinRequested>(tick(*retry_ms)).event_id, first);
}

// --- Client Join: registration ------------------------------------------------------------------

TEST_F(TorrentRegistration, ClientRegisteredNamingThisServerRegistersIt) {
  connect(0);
  receive(10, accept(5));
  const Output out = receive(20, registered(6));
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
  EXPECT_EQ(torrent->metrics().registrations, 1u);
  EXPECT_TRUE(torrent->view().is_registered("t1"));
  EXPECT_EQ(torrent->view().revision(), 6u);
  EXPECT_FALSE(torrent->next_deadline_ms()) << "no timeout left running";
}

TEST_F(TorrentRegistration, ClientRegisteredWithOtherFragmentsThanItHoldsRejoins) {
  connect(0);
  receive(10, accept(5));
  auto r = registered(6);
  r.info.stored_fragments = {fragment_of(10, 8).hash};
  r.added_fragments = {{*r.info.stored_fragments.begin(), {10}}};
  const Output out = receive(20, r);
  EXPECT_EQ(all_of<ClientJoinRequested>(out).size(), 1u) << describe(out);
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
}

TEST_F(TorrentRegistration, ConfirmationOfAResyncRegistersWithoutAViewChange) {
  register_alone();  // revision 6
  const Output hello = receive(30, TrackerHello{ids()});
  ASSERT_EQ(all_of<ClientJoinRequested>(hello).size(), 1u);
  receive(40, accept(6));
  auto confirmation = registered(6);
  confirmation.request_event_id = request.event_id;
  const Output out = receive(50, confirmation);
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
  EXPECT_EQ(torrent->view().revision(), 6u);
}

TEST_F(TorrentRegistration, ConfirmationAheadOfTheAcceptRejoins) {
  register_alone();
  receive(30, TrackerHello{ids()});
  receive(40, accept(6));
  auto confirmation = registered(8);  // two view changes went by unseen
  confirmation.request_event_id = request.event_id;
  const Output out = receive(50, confirmation);
  EXPECT_EQ(all_of<ClientJoinRequested>(out).size(), 1u) << describe(out);
  EXPECT_EQ(torrent->metrics().revision_gaps, 1u);
}

// --- The tracker comes and goes -----------------------------------------------------------------

TEST_F(TorrentTrackerPresence, TrackerHelloTriggersARejoin) {
  register_alone();
  const Output out = receive(30, TrackerHello{ids()});
  const auto r = only<ClientJoinRequested>(out);
  EXPECT_EQ(r.endpoints, config.endpoints);
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
}

TEST_F(TorrentTrackerPresence, TrackerGoodbyeUnregisters) {
  register_alone();
  const Output out = receive(30, TrackerGoodbye{ids()});
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_EQ(torrent->phase(), TorrentPhase::unregistered);
  // Started is not for it any more.
  const TestFragment f = fragment_of(50, 9);
  EXPECT_TRUE(
      receive(40, FragmentDistributionStarted{ids(), f.hash, f.size_bytes()}).publishes.empty());
  // If no TrackerHello comes, it asks again after the longest backoff.
  EXPECT_EQ(torrent->next_deadline_ms(),
            std::optional<std::int64_t>(30 + config.join_retry_max_ms));
  EXPECT_TRUE(tick(30 + config.join_retry_max_ms - 1).publishes.empty());
  EXPECT_EQ(all_of<ClientJoinRequested>(tick(30 + config.join_retry_max_ms)).size(), 1u);
}

// --- View updates and their Revision ------------------------------------------------------------

TEST_F(TorrentViewUpdates, FileInfoPublishedStoresTheFile) {
  register_alone();
  const TestFile file = cut_file(pattern(150, 10), 100);
  const Output out = receive(
      30,
      FileInfoPublished{ids(), file.hash, 150, file.metadata.fragment_sequence, next_revision()});
  const auto put = effects_of<store::PutFile>(out);
  ASSERT_EQ(put.size(), 1u) << describe(out);
  EXPECT_EQ(put[0].hash, file.hash);
  EXPECT_EQ(put[0].metadata, file.metadata);
  EXPECT_EQ(store.files.at(file.hash), file.metadata);
  EXPECT_EQ(torrent->view().files().at(file.hash), file.metadata);
  EXPECT_EQ(torrent->view().revision(), 7u);
}

TEST_F(TorrentViewUpdates, RevisionGapTriggersARejoin) {
  register_alone();  // revision 6
  const TestFile file = cut_file(pattern(150, 11), 100);
  const Output out =
      receive(30, FileInfoPublished{ids(), file.hash, 150, file.metadata.fragment_sequence, 8});
  EXPECT_TRUE(out.storage.empty()) << "an event after a gap is not applied";
  EXPECT_EQ(all_of<ClientJoinRequested>(out).size(), 1u) << describe(out);
  EXPECT_EQ(torrent->metrics().revision_gaps, 1u);
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
  EXPECT_FALSE(torrent->view().files().count(file.hash));
}

TEST_F(TorrentViewUpdates, StaleRevisionIsIgnored) {
  register_alone();  // revision 6
  const TestFile file = cut_file(pattern(150, 12), 100);
  const Output out =
      receive(30, FileInfoPublished{ids(), file.hash, 150, file.metadata.fragment_sequence, 6});
  EXPECT_TRUE(out.empty()) << describe(out);
  EXPECT_FALSE(torrent->view().files().count(file.hash));
  EXPECT_EQ(torrent->metrics().revision_gaps, 0u);
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
}

TEST_F(TorrentViewUpdates, TrackerRevisionAheadTriggersARejoin) {
  register_alone();  // revision 6
  EXPECT_TRUE(receive(30, TrackerRevision{ids(), 6}).empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
  const Output out = receive(40, TrackerRevision{ids(), 7});
  EXPECT_EQ(all_of<ClientJoinRequested>(out).size(), 1u) << describe(out);
  EXPECT_EQ(torrent->metrics().revision_gaps, 1u);
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
}

TEST_F(TorrentViewUpdates, ClientGoodbyeWithAnIdentifierRemovesThatClient) {
  auto a = accept(5);
  a.clients = {{"c1", ClientMetadata{{"grpc://c1"}, {}, std::nullopt}},
               {"c2", ClientMetadata{{"grpc://c2"}, {}, std::nullopt}}};
  register_with(a);
  ASSERT_TRUE(torrent->view().is_registered("c1"));
  const Output out = receive(30, ClientGoodbye{ids(), ClientId("c1"), next_revision()});
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_FALSE(torrent->view().is_registered("c1"));
  EXPECT_TRUE(torrent->view().is_registered("c2"));
  EXPECT_EQ(torrent->view().revision(), 7u);
}

TEST_F(TorrentViewUpdates, ClientGoodbyeWithoutAnIdentifierIsIgnored) {
  auto a = accept(5);
  a.clients = {{"c1", ClientMetadata{{"grpc://c1"}, {}, std::nullopt}}};
  register_with(a);
  const Output out = receive(30, ClientGoodbye{ids(), std::nullopt, std::nullopt});
  EXPECT_TRUE(out.empty()) << describe(out);
  EXPECT_TRUE(torrent->view().is_registered("c1"));
  EXPECT_EQ(torrent->view().revision(), 6u);
  // Not even its Revision is taken: without the tracker's stamp it is not the tracker's event.
  EXPECT_TRUE(receive(40, ClientGoodbye{ids(), std::nullopt, next_revision()}).empty());
  EXPECT_EQ(torrent->view().revision(), 6u);
  EXPECT_TRUE(torrent->view().is_registered("c1"));
}

// A client still joining says goodbye: the tracker forwards it stamped but without a Revision,
// since no view changed. The client comes back and registers; the goodbye, delayed on the way,
// arrives after that registration and must not take it out of the view.
TEST_F(TorrentViewUpdates, LateGoodbyeWithoutARevisionKeepsTheClientThatRegisteredSince) {
  register_alone();  // revision 6
  ClientRegistered c1;
  c1.event_id = ids();
  c1.client_identifier = "c1";
  c1.info = ClientMetadata{{"grpc://c1"}, {}, std::nullopt};
  c1.revision = next_revision();
  receive(30, c1);
  ASSERT_TRUE(torrent->view().is_registered("c1"));
  const Output out = receive(40, ClientGoodbye{ids(), ClientId("c1"), std::nullopt});
  EXPECT_TRUE(out.publishes.empty()) << describe(out);
  EXPECT_TRUE(out.storage.empty()) << describe(out);
  EXPECT_TRUE(torrent->view().is_registered("c1")) << "no Revision, no view change";
  EXPECT_EQ(torrent->view().revision(), 7u);
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
  // The same goodbye naming this server is no reason to rejoin either.
  EXPECT_TRUE(receive(50, ClientGoodbye{ids(), ClientId("t1"), std::nullopt}).publishes.empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
  // Its leaving, numbered, does.
  receive(60, ClientGoodbye{ids(), ClientId("c1"), next_revision()});
  EXPECT_FALSE(torrent->view().is_registered("c1"));
  EXPECT_EQ(torrent->view().revision(), 8u);
}

TEST_F(TorrentViewUpdates, ClientGoodbyeNamingThisServerRejoins) {
  register_alone();
  const Output out = receive(30, ClientGoodbye{ids(), ClientId("t1"), next_revision()});
  EXPECT_EQ(all_of<ClientJoinRequested>(out).size(), 1u) << describe(out);
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
}

TEST_F(TorrentViewUpdates, ClientRegisteredOfAnotherClientAddsItAndItsFiles) {
  register_alone();
  const TestFile file = cut_file(pattern(60, 13), 100);
  ClientRegistered other;
  other.event_id = ids();
  other.client_identifier = "c7";
  other.info = ClientMetadata{{"grpc://c7"}, {file.fragments[0].hash}, 4'000};
  other.added_files = {{file.hash, file.metadata}};
  other.added_fragments = file.fragment_infos();
  other.revision = next_revision();
  const Output out = receive(30, other);
  const auto put = effects_of<store::PutFile>(out);
  ASSERT_EQ(put.size(), 1u) << describe(out);
  EXPECT_EQ(put[0].hash, file.hash);
  EXPECT_EQ(torrent->view().clients().at("c7"), other.info);
  EXPECT_TRUE(torrent->view().holds("c7", file.fragments[0].hash));
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
}

// --- Fragment Distribution, the torrent server's side -------------------------------------------

TEST_F(TorrentDistribution, StartedIsRequestedOnlyWhenPlacementNamesThisServer) {
  auto a = accept(5);
  a.replicas = 1;
  a.clients = {{"c1", ClientMetadata{{"grpc://c1"}, {}, std::nullopt}},
               {"c2", ClientMetadata{{"grpc://c2"}, {}, std::nullopt}}};
  register_with(a);
  std::optional<TestFragment> mine;
  std::optional<TestFragment> theirs;
  for (std::uint32_t seed = 100; seed < 200 && (!mine || !theirs); ++seed) {
    TestFragment f = fragment_of(100, seed);
    const auto targets = distribution_targets(torrent->view(), f.hash, f.size_bytes(), 1);
    ASSERT_EQ(targets.size(), 1u);
    (targets[0] == "t1" ? mine : theirs) = std::move(f);
  }
  ASSERT_TRUE(mine && theirs);

  const Output requested =
      receive(30, FragmentDistributionStarted{ids(), mine->hash, mine->size_bytes()});
  EXPECT_EQ(only<FragmentDistributionRequested>(requested).hash, mine->hash);
  EXPECT_EQ(torrent->metrics().fragments_requested, 1u);
  const Output ignored =
      receive(40, FragmentDistributionStarted{ids(), theirs->hash, theirs->size_bytes()});
  EXPECT_TRUE(ignored.publishes.empty()) << describe(ignored);
  EXPECT_EQ(torrent->metrics().fragments_requested, 1u);
}

TEST_F(TorrentDistribution, StartedWithoutFreeCapacityIsAnsweredWithFailed) {
  config.capacity_bytes = 150;
  register_alone();  // the only client: placement always names it
  const TestFragment a = fragment_of(100, 14);
  const TestFragment b = fragment_of(100, 15);
  EXPECT_EQ(only<FragmentDistributionRequested>(
                receive(30, FragmentDistributionStarted{ids(), a.hash, 100}))
                .hash,
            a.hash);
  const Output out = receive(40, FragmentDistributionStarted{ids(), b.hash, 100});
  EXPECT_TRUE(all_of<FragmentDistributionRequested>(out).empty()) << describe(out);
  const auto failed = only<FragmentDistributionFailed>(out);
  EXPECT_EQ(failed.hash, b.hash);
  EXPECT_EQ(failed.reason, std::optional<std::string>("not enough free capacity"));
}

TEST_F(TorrentDistribution, StartedWhileJoiningIsIgnored) {
  connect(0);
  const TestFragment f = fragment_of(100, 16);
  EXPECT_TRUE(receive(10, FragmentDistributionStarted{ids(), f.hash, 100}).publishes.empty());
}

TEST_F(TorrentDistribution, DeliveredNotNamingThisServerIsIgnoredAndCounted) {
  register_alone();
  const TestFragment f = fragment_of(80, 17);
  const Output out = receive(30, delivered(f, {"c1", "c2"}));
  EXPECT_TRUE(out.empty()) << describe(out);
  EXPECT_EQ(torrent->metrics().deliveries_unexpected, 1u);
  EXPECT_EQ(torrent->temporary_count(), 0u);
}

TEST_F(TorrentDistribution, DeliveredWithTheWrongHashIsRefused) {
  register_alone();
  const TestFragment f = fragment_of(80, 18);
  auto d = delivered(f);
  d.data = pattern(80, 19);
  const Output out = receive(30, d);
  EXPECT_TRUE(out.storage.empty()) << describe(out);
  const auto failed = only<FragmentDistributionFailed>(out);
  EXPECT_EQ(failed.hash, f.hash);
  EXPECT_NE(failed.reason.value_or("").find("hashes to " + sha256(d.data).to_hex()),
            std::string::npos);
  EXPECT_TRUE(all_of<FragmentDistributionObtained>(out).empty());
  EXPECT_TRUE(store.temporary.empty());
  EXPECT_EQ(torrent->temporary_count(), 0u);
  EXPECT_EQ(torrent->metrics().deliveries_rejected, 1u);
}

TEST_F(TorrentDistribution, DeliveredLargerThanTheFragmentSizeIsRefused) {
  register_alone();
  const TestFragment f = fragment_of(101, 20);  // its hash matches: only the size is wrong
  const Output out = receive(30, delivered(f));
  EXPECT_TRUE(out.storage.empty()) << describe(out);
  const auto failed = only<FragmentDistributionFailed>(out);
  EXPECT_NE(failed.reason.value_or("").find("101 bytes"), std::string::npos);
  EXPECT_TRUE(store.temporary.empty());
  EXPECT_EQ(torrent->metrics().deliveries_rejected, 1u);
}

TEST_F(TorrentDistribution, GoodDeliveredIsStoredTemporarilyThenConfirmed) {
  register_alone();
  const TestFragment f = fragment_of(80, 21);
  const Output out = receive(30, delivered(f));
  // One Output: the adapter commits the storage before it sends the Obtained.
  ASSERT_EQ(out.storage.size(), 1u) << describe(out);
  const auto* temporary = std::get_if<store::PutTemporaryFragment>(&out.storage[0]);
  ASSERT_TRUE(temporary);
  EXPECT_EQ(temporary->hash, f.hash);
  EXPECT_EQ(temporary->data, f.data);
  ASSERT_EQ(out.publishes.size(), 1u);
  EXPECT_EQ(only<FragmentDistributionObtained>(out).hash, f.hash);
  EXPECT_EQ(store.temporary.at(f.hash), f.data);
  EXPECT_TRUE(store.persisted.empty()) << "persisted only when Ended names it";
  EXPECT_EQ(torrent->temporary_count(), 1u);
  EXPECT_EQ(torrent->metrics().fragments_obtained, 1u);
}

TEST_F(TorrentDistribution, DuplicateDeliveredIsConfirmedAgainAndStoredOnce) {
  register_alone();
  const TestFragment f = fragment_of(80, 22);
  const auto first = delivered(f);
  receive(30, first);
  const Output again = receive(40, delivered(f));  // a new event for the same fragment
  EXPECT_TRUE(again.storage.empty()) << describe(again);
  EXPECT_EQ(only<FragmentDistributionObtained>(again).hash, f.hash)
      << "the first Obtained may have been lost";
  const Output replay = receive(50, first);  // the same event twice
  EXPECT_TRUE(replay.empty()) << describe(replay);
  EXPECT_EQ(torrent->metrics().fragments_obtained, 1u);
  EXPECT_EQ(store.temporary.size(), 1u);
}

TEST_F(TorrentDistribution, EndedNamingThisServerPersistsTheFragment) {
  register_alone();
  const TestFragment f = fragment_of(80, 23);
  receive(30, delivered(f));
  const Output out = receive(40, ended(f, {"t1", "c1"}));
  const auto persisted = effects_of<store::PersistFragment>(out);
  ASSERT_EQ(persisted.size(), 1u) << describe(out);
  EXPECT_EQ(persisted[0].hash, f.hash);
  EXPECT_EQ(out.storage.size(), 1u);
  EXPECT_EQ(store.persisted.at(f.hash), f.data);
  EXPECT_TRUE(store.temporary.empty());
  EXPECT_EQ(torrent->temporary_count(), 0u);
  EXPECT_EQ(held(), std::set<Hash>{f.hash});
  EXPECT_TRUE(torrent->view().holds("t1", f.hash));
  EXPECT_EQ(torrent->view().fragments().at(f.hash).size_bytes, 80);
  EXPECT_EQ(torrent->view().revision(), 7u);
  EXPECT_EQ(torrent->metrics().fragments_persisted, 1u);
}

TEST_F(TorrentDistribution, EndedNotNamingThisServerDeletesTheTemporaryCopy) {
  register_alone();
  const TestFragment f = fragment_of(80, 24);
  receive(30, delivered(f));
  const Output out = receive(40, ended(f, {"c1"}));
  const auto deleted = effects_of<store::DeleteFragment>(out);
  ASSERT_EQ(deleted.size(), 1u) << describe(out);
  EXPECT_EQ(deleted[0].hash, f.hash);
  EXPECT_TRUE(effects_of<store::PersistFragment>(out).empty());
  EXPECT_TRUE(store.temporary.empty());
  EXPECT_TRUE(store.persisted.empty());
  EXPECT_TRUE(held().empty());
  EXPECT_FALSE(torrent->view().holds("t1", f.hash));
}

TEST_F(TorrentDistribution, EndedNamingThisServerForAFragmentItDoesNotHoldRejoins) {
  register_alone();
  const TestFragment f = fragment_of(80, 30);
  const Output out = receive(30, ended(f, {"t1"}));
  EXPECT_TRUE(effects_of<store::PersistFragment>(out).empty());
  EXPECT_EQ(all_of<ClientJoinRequested>(out).size(), 1u) << "its view would claim a copy it lacks";
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
}

TEST_F(TorrentDistribution, RequestWithoutDeliveryExpiresAndCanBeMadeAgain) {
  register_alone();
  const TestFragment f = fragment_of(100, 31);
  const Event started = FragmentDistributionStarted{ids(), f.hash, 100};
  EXPECT_EQ(all_of<FragmentDistributionRequested>(receive(30, started)).size(), 1u);
  const Output pending = receive(40, FragmentDistributionStarted{ids(), f.hash, 100});
  EXPECT_TRUE(pending.publishes.empty()) << "already asked";
  EXPECT_EQ(torrent->next_deadline_ms(),
            std::optional<std::int64_t>(30 + config.request_timeout_ms));
  tick(30 + config.request_timeout_ms);
  const Output again = receive(50'000, FragmentDistributionStarted{ids(), f.hash, 100});
  EXPECT_EQ(all_of<FragmentDistributionRequested>(again).size(), 1u) << describe(again);
}

// events.hpp: the Revision on Delivered "tells a late Ended of an earlier round of the same
// fragment from the Ended of this one".
TEST_F(TorrentDistribution, LateEndedOfAnEarlierRoundLeavesTheNewCopyAlone) {
  register_alone();  // revision 6
  const TestFragment f = fragment_of(80, 25);
  // The tracker ended an earlier round at revision 7 without this server, then delivered the
  // fragment to it in a new round; the network brings the Delivered before that Ended.
  auto d = delivered(f);
  d.revision = 7;
  receive(30, d);
  const Output late = receive(40, FragmentDistributionEnded{ids(), f.hash, 80, {"c1"}, 7});
  EXPECT_TRUE(effects_of<store::DeleteFragment>(late).empty()) << describe(late);
  EXPECT_EQ(torrent->temporary_count(), 1u);
  EXPECT_EQ(store.temporary.count(f.hash), 1u);
  const Output current = receive(50, FragmentDistributionEnded{ids(), f.hash, 80, {"t1"}, 8});
  EXPECT_EQ(effects_of<store::PersistFragment>(current).size(), 1u) << describe(current);
  EXPECT_EQ(store.persisted.count(f.hash), 1u);
}

// --- Temporary copies across connections --------------------------------------------------------

TEST_F(TorrentTemporaries, TemporariesSurviveADisconnectAndAreReportedInTheNextRequest) {
  register_alone();
  const TestFragment f = fragment_of(80, 26);
  receive(30, delivered(f));
  const Output lost = track(torrent->on_disconnected(40));
  EXPECT_TRUE(lost.storage.empty()) << "nothing is deleted when the connection drops";
  EXPECT_EQ(torrent->phase(), TorrentPhase::disconnected);
  EXPECT_EQ(torrent->temporary_count(), 1u);
  const auto r = only<ClientJoinRequested>(connect(50));
  EXPECT_EQ(r.obtained_fragments, (FragmentInfos{{f.hash, {80}}}));
  EXPECT_TRUE(r.stored_fragments.empty());

  // And after a restart of the process, from what the store holds.
  make();
  const auto after_restart = only<ClientJoinRequested>(connect(60));
  EXPECT_EQ(after_restart.obtained_fragments, (FragmentInfos{{f.hash, {80}}}));
}

TEST_F(TorrentTemporaries, TemporaryWithoutEndedIsSettledByARejoin) {
  register_alone();
  const TestFragment f = fragment_of(80, 27);
  receive(100, delivered(f));
  EXPECT_EQ(torrent->next_deadline_ms(),
            std::optional<std::int64_t>(100 + config.temporary_timeout_ms));
  EXPECT_TRUE(tick(100 + config.temporary_timeout_ms - 1).empty());
  const Output out = tick(100 + config.temporary_timeout_ms);
  EXPECT_EQ(only<ClientJoinRequested>(out).obtained_fragments, (FragmentInfos{{f.hash, {80}}}));
  EXPECT_TRUE(out.storage.empty()) << "the tracker's ledger decides, not a guess";
}

TEST_F(TorrentTemporaries, MessagesWhileDisconnectedAreIgnored) {
  register_alone();
  torrent->on_disconnected(30);
  const Output hello = receive(40, TrackerHello{ids()});
  EXPECT_TRUE(hello.publishes.empty() && hello.storage.empty()) << describe(hello);
  EXPECT_FALSE(logged_at_least(hello, LogLevel::info)) << describe(hello);
  EXPECT_EQ(torrent->metrics().events_out_of_phase, 1u);
  EXPECT_TRUE(tick(1'000'000).empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::disconnected);
}

// --- Client Goodbye -----------------------------------------------------------------------------

TEST_F(TorrentGoodbye, GoodbyePublishesClientGoodbye) {
  register_alone();
  const Output out = track(torrent->goodbye(30));
  const auto publishes = publishes_of<ClientGoodbye>(out);
  ASSERT_EQ(publishes.size(), 1u) << describe(out);
  EXPECT_FALSE(publishes[0]->to);
  const auto goodbye = only<ClientGoodbye>(out);
  EXPECT_FALSE(goodbye.client_identifier) << "the tracker stamps who leaves, not the client";
  EXPECT_FALSE(goodbye.revision);
  EXPECT_EQ(torrent->phase(), TorrentPhase::disconnected);
  EXPECT_TRUE(track(torrent->goodbye(40)).publishes.empty()) << "said once";
}

// --- Phases and their transitions ---------------------------------------------------------------

// Every allowed transition happens, through the public interface, and no other: the debug line
// enter() writes for each is read back.
TEST_F(TorrentPhases, TheServerMakesExactlyTheTransitionsOfItsTable) {
  using P = TorrentPhase;
  std::set<std::pair<P, P>> seen;
  auto record = [&](const Output& out) {
    for (const auto& line : out.logs) {
      if (line.level != LogLevel::debug || line.text.rfind("phase ", 0) != 0) continue;
      bool found = false;
      for (int from = 0; from <= static_cast<int>(P::registered); ++from)
        for (int to = 0; to <= static_cast<int>(P::registered); ++to)
          if (line.text == "phase " + std::string(phase_name(static_cast<P>(from))) + " -> " +
                               std::string(phase_name(static_cast<P>(to)))) {
            seen.emplace(static_cast<P>(from), static_cast<P>(to));
            found = true;
          }
      EXPECT_TRUE(found) << line.text;
    }
    return out;
  };
  auto fresh = [&] {
    torrent.reset();
    request = {};
    record(connect(0));  // disconnected -> joining
  };
  auto accepted = [&](std::int64_t now_ms) { record(receive(now_ms, accept())); };
  auto registered_now = [&](std::int64_t now_ms) { record(receive(now_ms, registered(6))); };

  fresh();
  record(receive(10, TrackerHello{ids()}));        // joining -> joining
  record(tick(10 + config.join_timeout_ms));       // joining -> unregistered
  record(receive(2'000, TrackerGoodbye{ids()}));   // unregistered -> unregistered
  record(receive(2'010, TrackerHello{ids()}));     // unregistered -> joining
  record(track(torrent->on_disconnected(2'020)));  // joining -> disconnected

  fresh();
  receive(10, ClientJoinDenied{ids(), "t1", denial::other, "busy", request.event_id});
  record(track(torrent->on_disconnected(20)));  // unregistered -> disconnected

  fresh();
  accepted(10);                              // joining -> awaiting registration
  record(receive(20, TrackerHello{ids()}));  // awaiting registration -> joining

  fresh();
  accepted(10);
  record(tick(10 + config.registration_timeout_ms));  // awaiting registration -> unregistered

  fresh();
  accepted(10);
  record(track(torrent->goodbye(20)));  // awaiting registration -> disconnected

  fresh();
  accepted(10);
  registered_now(20);                        // awaiting registration -> registered
  record(receive(30, TrackerHello{ids()}));  // registered -> joining

  fresh();
  accepted(10);
  registered_now(20);
  record(receive(30, TrackerGoodbye{ids()}));  // registered -> unregistered

  fresh();
  accepted(10);
  registered_now(20);
  record(track(torrent->on_disconnected(30)));  // registered -> disconnected

  std::set<std::pair<P, P>> table;
  for (int from = 0; from <= static_cast<int>(P::registered); ++from)
    for (int to = 0; to <= static_cast<int>(P::registered); ++to)
      if (TorrentServer::transition_allowed(static_cast<P>(from), static_cast<P>(to)))
        table.emplace(static_cast<P>(from), static_cast<P>(to));
  EXPECT_EQ(table.size(), 15u);
  EXPECT_EQ(seen, table);
}

TEST_F(TorrentPhases, AnIllegalTransitionIsABug) {
  EXPECT_FALSE(TorrentServer::transition_allowed(TorrentPhase::unregistered,
                                                 TorrentPhase::awaiting_registration));
  EXPECT_THROW(TorrentServer::check_transition(TorrentPhase::unregistered,
                                               TorrentPhase::awaiting_registration),
               AssertionFailure)
      << "an accept is only ever applied while joining";
  EXPECT_THROW(
      TorrentServer::check_transition(TorrentPhase::disconnected, TorrentPhase::registered),
      AssertionFailure);
  EXPECT_NO_THROW(
      TorrentServer::check_transition(TorrentPhase::joining, TorrentPhase::awaiting_registration));
}

TEST_F(TorrentPhases, EachPhaseCarriesItsOwnDeadline) {
  make();
  EXPECT_FALSE(torrent->next_deadline_ms()) << "disconnected: waits for the connection";
  connect(0);
  EXPECT_EQ(torrent->next_deadline_ms(), std::optional<std::int64_t>(config.join_timeout_ms));
  receive(10, accept());
  EXPECT_EQ(torrent->next_deadline_ms(),
            std::optional<std::int64_t>(10 + config.registration_timeout_ms));
  receive(20, registered(6));
  EXPECT_FALSE(torrent->next_deadline_ms()) << "registered with nothing pending";
  receive(30, TrackerGoodbye{ids()});
  EXPECT_EQ(torrent->next_deadline_ms(),
            std::optional<std::int64_t>(30 + config.join_retry_max_ms));
  track(torrent->on_disconnected(40));
  EXPECT_FALSE(torrent->next_deadline_ms()) << "the retry belonged to the phase it left";
  EXPECT_TRUE(tick(1'000'000).empty());
}

// A late answer to an earlier attempt names that attempt's request and changes nothing.
TEST_F(TorrentPhases, EachJoinAttemptHasItsOwnRequestId) {
  connect(0);
  const ClientJoinRequested first = request;
  receive(10, TrackerHello{ids()});
  ASSERT_NE(request.event_id, first.event_id);
  auto late = accept();
  late.request_event_id = first.event_id;
  EXPECT_TRUE(receive(20, late).publishes.empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::joining);
  const Output current = receive(30, accept());
  EXPECT_EQ(only<ClientJoinSucceeded>(current).request_event_id, request.event_id);
  auto late_denial = ClientJoinDenied{ids(), "t1", denial::other, "busy", first.event_id};
  EXPECT_TRUE(receive(40, late_denial).publishes.empty());
  EXPECT_EQ(torrent->phase(), TorrentPhase::awaiting_registration);
  const Output timeout = tick(30 + config.registration_timeout_ms);
  EXPECT_EQ(only<ClientJoinFailed>(timeout).request_event_id, request.event_id);
}

// A message meant for this server that its phase cannot use is ignored, counted and logged at
// debug, with the event and the phase.
TEST_F(TorrentPhases, MessagesItsPhaseCannotUseAreCountedAndLogged) {
  std::uint64_t counted = 0;
  auto expect_out_of_phase = [&](const Output& out, std::string_view event,
                                 std::string_view phase) {
    ++counted;
    EXPECT_EQ(torrent->metrics().events_out_of_phase, counted) << event << "\n" << describe(out);
    EXPECT_TRUE(out.publishes.empty() && out.storage.empty() && !out.fatal) << describe(out);
    ASSERT_EQ(out.logs.size(), 1u) << describe(out);
    EXPECT_EQ(out.logs[0].level, LogLevel::debug);
    EXPECT_NE(out.logs[0].text.find(event), std::string::npos) << out.logs[0].text;
    EXPECT_NE(out.logs[0].text.find(phase), std::string::npos) << out.logs[0].text;
  };
  const TestFragment f = fragment_of(80, 40);
  const TestFile file = cut_file(pattern(60, 41), 100);

  connect(0);  // joining: nothing but the answer to its request is of use
  auto stale = accept();
  stale.request_event_id = ids();
  expect_out_of_phase(receive(1, stale), "ClientJoinAccepted", "joining: it answers another");
  expect_out_of_phase(receive(2, FragmentDistributionStarted{ids(), f.hash, 80}),
                      "FragmentDistributionStarted", "joining");
  expect_out_of_phase(
      receive(3, FileInfoPublished{ids(), file.hash, 60, file.metadata.fragment_sequence, 9}),
      "FileInfoPublished", "joining");
  expect_out_of_phase(receive(4, TrackerRevision{ids(), 9}), "TrackerRevision", "joining");
  ClientRegistered other;
  other.event_id = ids();
  other.client_identifier = "c7";
  other.info = ClientMetadata{{"grpc://c7"}, {}, std::nullopt};
  other.revision = 9;
  expect_out_of_phase(receive(5, other), "ClientRegistered", "joining");

  receive(10, accept());  // awaiting registration: a view, but no fragments yet
  expect_out_of_phase(receive(11, accept()), "ClientJoinAccepted", "awaiting registration");
  expect_out_of_phase(receive(12, delivered(f)), "FragmentDistributionDelivered",
                      "awaiting registration");
  auto other_confirmation = registered(5);
  other_confirmation.request_event_id = ids();
  expect_out_of_phase(receive(13, other_confirmation), "ClientRegistered",
                      "awaiting registration: it answers another");

  receive(20, registered(6));
  ASSERT_EQ(torrent->phase(), TorrentPhase::registered);
  auto late = accept();
  late.request_event_id = std::nullopt;
  expect_out_of_phase(receive(21, late), "ClientJoinAccepted", "registered");
  expect_out_of_phase(
      receive(22, ClientJoinDenied{ids(), "t1", denial::other, "late", std::nullopt}),
      "ClientJoinDenied", "registered");
  auto confirmation = registered(6);
  confirmation.request_event_id = request.event_id;
  expect_out_of_phase(receive(23, confirmation), "ClientRegistered", "registered");

  receive(30, TrackerGoodbye{ids()});  // unregistered: waiting to ask again
  expect_out_of_phase(receive(31, FragmentDistributionStarted{ids(), f.hash, 80}),
                      "FragmentDistributionStarted", "unregistered");
  EXPECT_EQ(torrent->metrics().joins_requested, 1u);
}

// Messages addressed to another server are none of this one's business in any phase: they keep
// their own counters (or none), not events_out_of_phase.
TEST_F(TorrentPhases, MessagesForOtherServersAreNotOutOfPhase) {
  connect(0);
  auto theirs = accept();
  theirs.client_identifier = "t2";
  EXPECT_TRUE(receive(1, theirs).empty());
  EXPECT_TRUE(receive(2, ClientJoinDenied{ids(), "t2", denial::other, "no", std::nullopt}).empty());
  const TestFragment f = fragment_of(80, 42);
  EXPECT_TRUE(receive(3, delivered(f, {"c1"})).empty());
  EXPECT_EQ(torrent->metrics().deliveries_unexpected, 1u);
  EXPECT_TRUE(receive(4, ClientGoodbye{ids(), std::nullopt, std::nullopt}).empty());
  EXPECT_TRUE(receive(5, FragmentDistributionRequested{ids(), f.hash}).empty())
      << "what other clients send the tracker";
  // Neither are a stale view change or a repeated event while following the view.
  receive(10, accept());
  receive(20, registered(6));
  EXPECT_TRUE(receive(30, TrackerRevision{ids(), 6}).empty());
  const std::string hello = encode(TrackerHello{ids()});
  receive_raw(40, topics::tracker_hello, hello);
  EXPECT_TRUE(receive_raw(50, topics::tracker_hello, hello).empty());
  EXPECT_EQ(torrent->metrics().events_out_of_phase, 0u);
}

// --- Hostile and repeated input -----------------------------------------------------------------

TEST_F(TorrentMessages, MalformedPayloadsAreLoggedAndIgnored) {
  register_alone();
  const DistributionView before = torrent->view();
  const std::string hash = fragment_of(10, 28).hash.to_hex();
  const std::vector<std::pair<std::string_view, std::string>> bad = {
      {topics::tracker_hello, "not json"},
      {topics::client_join_accepted, R"({"EventId":"fb3f146d-c74e-4c75-a3e7-1e768b2e986f"})"},
      {topics::file_info_published, ""},
      {topics::fragment_distribution_started,
       R"({"EventId":"fb3f146d-c74e-4c75-a3e7-1e768b2e986f","Hash":")" + hash + R"(","Size":-1})"},
      {topics::fragment_distribution_delivered,
       R"({"EventId":"fb3f146d-c74e-4c75-a3e7-1e768b2e986f","Hash":")" + hash +
           R"(","Receivers":["t1"],"Data":"%%%"})"},
      {topics::fragment_distribution_ended, "[]"},
      {topics::client_goodbye,
       R"({"EventId":"fb3f146d-c74e-4c75-a3e7-1e768b2e986f","ClientIdentifier":7})"},
      {topics::tracker_revision,
       R"({"EventId":"fb3f146d-c74e-4c75-a3e7-1e768b2e986f","Revision":"x"})"},
  };
  for (const auto& [topic, payload] : bad) {
    const Output out = receive_raw(30, topic, payload);
    EXPECT_TRUE(out.publishes.empty()) << topic << " " << payload << "\n" << describe(out);
    EXPECT_TRUE(out.storage.empty()) << topic;
    EXPECT_FALSE(out.fatal) << topic;
    EXPECT_TRUE(logged(out, "malformed")) << topic << "\n" << describe(out);
    EXPECT_TRUE(logged_at_least(out, LogLevel::warning)) << topic;
  }
  EXPECT_EQ(torrent->metrics().events_rejected, bad.size());
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);
  EXPECT_TRUE(torrent->view() == before);
}

TEST_F(TorrentMessages, DuplicateEventIdsAreProcessedOnce) {
  register_alone();
  const std::string hello = encode(TrackerHello{ids()});
  EXPECT_EQ(all_of<ClientJoinRequested>(receive_raw(30, topics::tracker_hello, hello)).size(), 1u);
  receive(40, accept(6));
  receive(50, registered(7));
  ASSERT_EQ(torrent->phase(), TorrentPhase::registered);
  EXPECT_TRUE(receive_raw(60, topics::tracker_hello, hello).empty())
      << "the same TrackerHello again";
  EXPECT_EQ(torrent->phase(), TorrentPhase::registered);

  const TestFile file = cut_file(pattern(150, 29), 100);
  const std::string info = encode(
      FileInfoPublished{ids(), file.hash, 150, file.metadata.fragment_sequence, next_revision()});
  EXPECT_EQ(effects_of<store::PutFile>(receive_raw(70, topics::file_info_published, info)).size(),
            1u);
  EXPECT_TRUE(receive_raw(80, topics::file_info_published, info).empty());
  EXPECT_EQ(torrent->metrics().joins_requested, 2u);
}

// --- End to end: one tracker, three torrent servers, no faults ---------------------------------

// A broker in miniature: every publish is queued and delivered in order, the tracker sees every
// client message first (it lives in the broker) and decides whether it is forwarded, rewritten or
// dropped; targeted and staged publishes reach their one client.
class Router {
 public:
  struct Node {
    TorrentServer* machine;
    TorrentMemoryStore* store;
    bool connected = false;
  };

  Router(Tracker& tracker, TrackerMemoryStore& tracker_store)
      : tracker_(tracker), tracker_store_(tracker_store) {}

  void add(TorrentServer& machine, TorrentMemoryStore& store) {
    nodes_.push_back({&machine, &store});
  }
  std::int64_t now_ms = 0;

  void from_tracker(Output out) {
    EXPECT_FALSE(out.fatal);
    tracker_store_.apply(out.storage);
    for (const auto& p : out.publishes) {
      if (p.staged) {
        EXPECT_TRUE(p.to && p.staged->receivers.count(*p.to))
            << "a Delivered goes to one of its receivers";
        if (p.to) deliver(index_of(*p.to), p.topic, tracker_store_.delivered_payload(*p.staged));
        continue;
      }
      EXPECT_NE(p.topic, topics::fragment_distribution_delivered)
          << "a Delivered is never broadcast";
      if (p.to)
        deliver(index_of(*p.to), p.topic, p.payload);
      else
        broadcast(p.topic, p.payload);
    }
  }

  void from_torrent(std::size_t i, Output out) {
    EXPECT_FALSE(out.fatal) << nodes_[i].machine->client_id() << ": " << out.fatal.value_or("");
    nodes_[i].store->apply(out.storage);
    for (const auto& p : out.publishes) {
      const ClientId sender = nodes_[i].machine->client_id();
      queue_.push_back([this, sender, p] {
        MessageResult r = tracker_.on_message(now_ms, sender, p.topic, p.payload);
        const Verdict verdict = r.verdict;
        const std::string forwarded = verdict == Verdict::rewrite ? r.rewritten_payload : p.payload;
        from_tracker(std::move(r.output));
        if (verdict != Verdict::drop) broadcast(p.topic, forwarded);
      });
    }
  }

  void connect(std::size_t i) {
    nodes_[i].connected = true;
    from_torrent(i, nodes_[i].machine->on_connected(now_ms));
  }

  void tick(std::int64_t at_ms) {
    now_ms = at_ms;
    from_tracker(tracker_.on_tick(now_ms));
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      from_torrent(i, nodes_[i].machine->on_tick(now_ms));
    run();
  }

  // Delivers until nothing is in flight; bounded, so a livelock fails instead of hanging.
  void run() {
    for (std::size_t steps = 0; !queue_.empty(); ++steps) {
      ASSERT_LT(steps, 100'000u) << "messages keep flowing at t=" << now_ms;
      auto next = std::move(queue_.front());
      queue_.pop_front();
      next();
    }
  }

 private:
  std::size_t index_of(const ClientId& id) const {
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].machine->client_id() == id) return i;
    ADD_FAILURE() << "the tracker addressed an unknown client " << id;
    return nodes_.size();
  }

  void deliver(std::size_t i, const std::string& topic, const std::string& payload) {
    if (i >= nodes_.size() || !nodes_[i].connected) return;
    queue_.push_back([this, i, topic, payload] {
      from_torrent(i, nodes_[i].machine->on_message(now_ms, topic, payload));
    });
  }

  void broadcast(const std::string& topic, const std::string& payload) {
    const auto subscriptions = torrent_subscriptions();
    if (std::find(subscriptions.begin(), subscriptions.end(), topic) == subscriptions.end()) return;
    for (std::size_t i = 0; i < nodes_.size(); ++i) deliver(i, topic, payload);
  }

  Tracker& tracker_;
  TrackerMemoryStore& tracker_store_;
  std::vector<Node> nodes_;
  std::deque<std::function<void()>> queue_;
};

TEST(MachinesEndToEnd, StartupJoinIngestAndDistributionConverge) {
  TrackerConfig tracker_config;
  tracker_config.fragment_size_bytes = 64;
  tracker_config.replicas = 2;
  tracker_config.startup_settle_ms = 200;
  tracker_config.distributions_in_flight_max = 4;
  TrackerMemoryStore tracker_store;
  SplitMix64 tracker_random(1);
  Tracker tracker(tracker_config, tracker_store.snapshot(), tracker_random);
  Router router(tracker, tracker_store);

  constexpr std::size_t torrents = 3;
  std::vector<TorrentMemoryStore> stores(torrents);
  std::vector<std::unique_ptr<SplitMix64>> randoms;
  std::vector<std::unique_ptr<TorrentServer>> machines;
  for (std::size_t i = 0; i < torrents; ++i) {
    TorrentConfig c;
    c.client_id = "edge-" + std::to_string(i);
    c.endpoints = {"grpc://edge-" + std::to_string(i) + ":50051"};
    randoms.push_back(std::make_unique<SplitMix64>(100 + i));
    machines.push_back(std::make_unique<TorrentServer>(c, stores[i].snapshot(), *randoms.back()));
    router.add(*machines.back(), stores[i]);
  }

  // Tracker Server Startup, then every Torrent Server joins.
  router.from_tracker(tracker.start(0));
  router.now_ms = 10;
  for (std::size_t i = 0; i < torrents; ++i) router.connect(i);
  router.run();
  ASSERT_EQ(tracker.view().clients().size(), torrents);
  for (const auto& m : machines) {
    ASSERT_EQ(m->phase(), TorrentPhase::registered) << m->client_id();
    EXPECT_TRUE(m->view() == tracker.view()) << m->client_id();
  }

  // Ingest: the adapter cuts and stages the content, then publishes the file.
  const Bytes content = pattern(1'000, 42);
  const TestFile file = cut_file(content, tracker_config.fragment_size_bytes);
  ASSERT_EQ(file.fragments.size(), 16u);
  router.now_ms = 300;
  IngestResult ingested =
      tracker.add_file(router.now_ms, file.hash, file.metadata, stage(tracker_store, file));
  ASSERT_TRUE(ingested.ok()) << ingested.error;
  router.from_tracker(std::move(ingested.output));
  router.run();

  // Distribution runs on the clock until every fragment has its replicas.
  std::int64_t now_ms = 300;
  auto done = [&] {
    if (tracker.gauges().staged_fragments != 0 || tracker.gauges().distributions_in_flight != 0)
      return false;
    for (const auto& s : stores)
      if (!s.temporary.empty()) return false;
    return true;
  };
  while (!done() && now_ms < 120'000) router.tick(now_ms += 100);
  ASSERT_TRUE(done()) << tracker.gauges().staged_fragments
                      << " fragments still staged at t=" << now_ms;
  EXPECT_TRUE(tracker_store.staged.empty());

  // Every torrent server's view is the tracker's, and it stores exactly what the view says.
  std::size_t replicas_stored = 0;
  for (std::size_t i = 0; i < torrents; ++i) {
    const TorrentServer& m = *machines[i];
    EXPECT_EQ(m.phase(), TorrentPhase::registered) << m.client_id();
    EXPECT_TRUE(m.view() == tracker.view())
        << m.client_id() << " at revision " << m.view().revision() << " vs "
        << tracker.view().revision();
    std::set<Hash> held;
    for (const auto& [hash, data] : stores[i].persisted) {
      held.insert(hash);
      EXPECT_EQ(sha256(data), hash)
          << m.client_id() << " stores bytes that do not hash to their name";
    }
    EXPECT_EQ(held, tracker.view().clients().at(m.client_id()).stored_fragments) << m.client_id();
    EXPECT_EQ(stores[i].files, tracker.view().files()) << m.client_id();
    replicas_stored += held.size();
  }
  for (const auto& f : file.fragments) EXPECT_EQ(tracker.view().holder_count(f.hash), 2u);
  EXPECT_EQ(replicas_stored, 2 * file.fragments.size());

  // The file can be put back together from what the torrent servers store.
  Bytes rebuilt;
  for (const Hash& hash : file.metadata.fragment_sequence) {
    const auto holders = tracker.view().holders(hash);
    ASSERT_FALSE(holders.empty());
    const std::size_t i = static_cast<std::size_t>(holders.front().back() - '0');
    const Bytes& data = stores[i].persisted.at(hash);
    rebuilt.insert(rebuilt.end(), data.begin(), data.end());
  }
  EXPECT_EQ(rebuilt, content);
  EXPECT_EQ(sha256(rebuilt), file.hash);
  EXPECT_EQ(tracker.metrics().distributed_bytes, 2u * content.size());
}

}  // namespace
}  // namespace mqds
