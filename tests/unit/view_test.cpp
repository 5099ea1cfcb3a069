#include <gtest/gtest.h>

#include "mqds/view.hpp"

namespace mqds {
namespace {

Hash h(std::uint8_t n) {
  Hash hash;
  hash.digest.fill(n);
  return hash;
}

constexpr std::int64_t fs = 100;

// A service with file F1 = [f1 (100), f2 (50)] stored on c1, and file F2 = [f3 (100)] unstored.
DistributionView service() {
  DistributionView view;
  view.set_fragment_size(fs);
  view.set_revision(7);
  view.put_file(h(0xF1), FileMetadata{150, {h(1), h(2)}});
  view.put_file(h(0xF2), FileMetadata{100, {h(3)}});
  view.put_fragment(h(1), 100);
  view.put_fragment(h(2), 50);
  view.put_fragment(h(3), 100);
  view.put_client("c1", ClientMetadata{{"mqtt://c1"}, {h(1), h(2)}, 1000});
  return view;
}

ClientJoinRequested request() {
  ClientJoinRequested r;
  r.hash_algorithm = "SHA256";
  r.endpoints = {"mqtt://c2"};
  return r;
}

const JoinAcceptance& accepted(const JoinPlan& plan) {
  EXPECT_TRUE(std::holds_alternative<JoinAcceptance>(plan)) << std::get<JoinDenial>(plan).reason;
  return std::get<JoinAcceptance>(plan);
}

std::uint32_t denied_code(const JoinPlan& plan) {
  EXPECT_TRUE(std::holds_alternative<JoinDenial>(plan));
  return std::holds_alternative<JoinDenial>(plan) ? std::get<JoinDenial>(plan).reason_code : 0;
}

TEST(ViewJoin, AFreshServerGetsTheWholeViewAndBringsNothing) {
  const auto view = service();
  const auto plan = view.plan_join("c2", request(), {}, {});
  const auto& a = accepted(plan);
  EXPECT_EQ(a.add_file_infos, view.files());
  EXPECT_EQ(a.add_fragment_infos, view.fragments());
  EXPECT_TRUE(a.remove_file_infos.empty());
  EXPECT_TRUE(a.remove_fragment_infos.empty());
  EXPECT_EQ(a.clients, view.clients());
  EXPECT_TRUE(a.new_files.empty());
  EXPECT_TRUE(a.new_fragments.empty());
  EXPECT_EQ(a.client.endpoints, std::set<std::string>{"mqtt://c2"});
}

TEST(ViewJoin, WrongHashAlgorithmIsCode2) {
  auto r = request();
  r.hash_algorithm = "MD5";
  EXPECT_EQ(denied_code(service().plan_join("c2", r, {}, {})), denial::wrong_hash_algorithm);
  r.hash_algorithm = "sha256";  // compared case-insensitively
  accepted(service().plan_join("c2", r, {}, {}));
}

TEST(ViewJoin, WrongFragmentSizeIsCode1AndAbsentSizeIsFine) {
  auto r = request();
  r.fragment_size_bytes = 4096;
  EXPECT_EQ(denied_code(service().plan_join("c2", r, {}, {})), denial::wrong_fragment_size);
  r.fragment_size_bytes = fs;
  accepted(service().plan_join("c2", r, {}, {}));
}

TEST(ViewJoin, EndpointOfAnotherRegisteredOrJoiningClientIsCode4) {
  auto r = request();
  r.endpoints = {"mqtt://c1"};
  EXPECT_EQ(denied_code(service().plan_join("c2", r, {}, {})), denial::endpoint_conflict);
  // Its own endpoint is no conflict when a registered client rejoins.
  accepted(service().plan_join("c1", r, {}, {}));
  r.endpoints = {"mqtt://c3"};
  EXPECT_EQ(denied_code(service().plan_join("c2", r, {{"c3", {"mqtt://c3"}}}, {})),
            denial::endpoint_conflict);
}

TEST(ViewJoin, OneCodeTheFirstThatFailsAndTheReasonNamesEachProblem) {
  auto r = request();
  r.hash_algorithm = "MD5";
  r.fragment_size_bytes = 1;
  r.endpoints = {"mqtt://c1"};
  const auto plan = service().plan_join("c2", r, {}, {});
  EXPECT_EQ(denied_code(plan), denial::wrong_fragment_size);
  const auto& reason = std::get<JoinDenial>(plan).reason;
  EXPECT_NE(reason.find("HashAlgorithm"), std::string::npos);
  EXPECT_NE(reason.find("FragmentSize 1"), std::string::npos);
  EXPECT_NE(reason.find("mqtt://c1 (used by c1)"), std::string::npos);
}

TEST(ViewJoin, AConflictingFileInfoIsReplacedByTheServicesOne) {
  auto r = request();
  r.fragment_size_bytes = fs;
  r.known_file_infos[h(0xF1)] = FileMetadata{100, {h(9)}};
  r.known_file_infos[h(0xF2)] = FileMetadata{100, {h(3)}};
  const auto plan = service().plan_join("c2", r, {}, {});
  const auto& a = accepted(plan);
  EXPECT_EQ(a.remove_file_infos, std::set<Hash>{h(0xF1)});
  ASSERT_EQ(a.add_file_infos.size(), 1u);
  EXPECT_EQ(a.add_file_infos.at(h(0xF1)), (FileMetadata{150, {h(1), h(2)}}));
}

TEST(ViewJoin, NewFilesAndFragmentsAreAnnouncedAndInconsistentOnesRemoved) {
  auto r = request();
  r.fragment_size_bytes = fs;
  r.known_file_infos[h(0xA1)] = FileMetadata{120, {h(10), h(11)}};  // consistent, new
  r.known_file_infos[h(0xA2)] = FileMetadata{120, {h(12)}};  // 120 bytes cannot be 1 fragment
  r.known_file_infos[h(0xA3)] = FileMetadata{100, {h(2)}};   // says f2 has 100 bytes; it has 50
  r.stored_fragments[h(10)] = FragmentMetadata{100};         // new, right size
  r.stored_fragments[h(11)] = FragmentMetadata{30};          // last fragment must be 20
  r.stored_fragments[h(1)] = FragmentMetadata{100};          // known
  r.stored_fragments[h(42)] = FragmentMetadata{10};          // no file references it
  r.extensions = {std::string(extension_remove_orphans)};    // as mqds-edge asks
  const auto plan = service().plan_join("c2", r, {}, {});
  const auto& a = accepted(plan);
  EXPECT_EQ(a.new_files.size(), 1u);
  EXPECT_TRUE(a.new_files.count(h(0xA1)));
  EXPECT_EQ(a.remove_file_infos, (std::set<Hash>{h(0xA2), h(0xA3)}));
  EXPECT_EQ(a.new_fragments, (FragmentInfos{{h(10), FragmentMetadata{100}}}));
  EXPECT_EQ(a.remove_fragment_infos, (std::set<Hash>{h(11), h(42)}));
  EXPECT_EQ(a.client.stored_fragments, (std::set<Hash>{h(1), h(10)}));
  // It learns the fragments it does not store.
  EXPECT_EQ(a.add_fragment_infos, (FragmentInfos{{h(2), {50}}, {h(3), {100}}}));
}

// The specification keeps RemoveFragmentInfos for conflicts: a server that did not ask for
// orphans to be removed keeps one and announces it, unless its size contradicts the view's.
TEST(ViewJoin, AnOrphanIsKeptForAServerThatDidNotAskForItsRemoval) {
  auto r = request();
  r.fragment_size_bytes = fs;
  r.stored_fragments[h(42)] = FragmentMetadata{10};  // no file references it, new to the view
  r.stored_fragments[h(11)] = FragmentMetadata{30};  // the same, at a size the files contradict
  r.known_file_infos[h(0xA1)] = FileMetadata{120, {h(10), h(11)}};
  const auto a = accepted(service().plan_join("c2", r, {}, {}));
  EXPECT_EQ(a.remove_fragment_infos, std::set<Hash>{h(11)});
  EXPECT_EQ(a.new_fragments, (FragmentInfos{{h(42), FragmentMetadata{10}}}));
  EXPECT_EQ(a.client.stored_fragments, std::set<Hash>{h(42)});
}

TEST(ViewJoin, ObtainedFragmentsSurviveOnlyWhereAnEndedNamedTheClient) {
  auto r = request();
  r.fragment_size_bytes = fs;
  r.obtained_fragments[h(2)] = FragmentMetadata{50};
  r.obtained_fragments[h(3)] = FragmentMetadata{100};
  const auto plan = service().plan_join("c2", r, {}, {h(3)});
  const auto& a = accepted(plan);
  EXPECT_EQ(a.client.stored_fragments, std::set<Hash>{h(3)});
  EXPECT_EQ(a.remove_fragment_infos, std::set<Hash>{h(2)});
}

TEST(ViewJoin, ARejoiningClientIsNotListedAmongTheOthers) {
  auto r = request();
  r.endpoints = {"mqtt://c1"};
  const auto plan = service().plan_join("c1", r, {}, {});
  EXPECT_TRUE(accepted(plan).clients.empty());
}

TEST(ViewJoin, StillConsistentNoticesAConflictThatAppearedDuringTheJoin) {
  auto view = service();
  auto r = request();
  r.fragment_size_bytes = fs;
  r.known_file_infos[h(0xA1)] = FileMetadata{100, {h(10)}};
  r.stored_fragments[h(10)] = FragmentMetadata{100};
  const auto plan = view.plan_join("c2", r, {}, {});
  const auto& a = accepted(plan);
  EXPECT_TRUE(view.still_consistent(a));
  view.put_file(h(0xA1), FileMetadata{100, {h(10)}});  // the same: fine
  EXPECT_TRUE(view.still_consistent(a));
  view.put_fragment(h(10), 99);
  EXPECT_FALSE(view.still_consistent(a));
}

TEST(ViewApply, RegisteredEndedAndGoodbyeKeepUsedBytes) {
  auto view = service();
  EXPECT_EQ(view.used_bytes("c1"), 150);
  EXPECT_EQ(view.free_bytes("c1"), 850);
  ClientRegistered registered;
  registered.client_identifier = "c2";
  registered.info = ClientMetadata{{"mqtt://c2"}, {h(10)}, std::nullopt};
  registered.added_files[h(0xA1)] = FileMetadata{100, {h(10)}};
  registered.added_fragments[h(10)] = FragmentMetadata{100};
  view.apply_registered(registered);
  EXPECT_TRUE(view.is_registered("c2"));
  EXPECT_EQ(view.used_bytes("c2"), 100);
  EXPECT_EQ(view.free_bytes("c2"), std::nullopt);

  FragmentDistributionEnded ended;
  ended.hash = h(3);
  ended.size_bytes = 100;
  ended.receivers = {"c1", "c2", "gone"};
  view.apply_ended(ended);
  EXPECT_EQ(view.holder_count(h(3)), 2u);
  EXPECT_EQ(view.used_bytes("c1"), 250);
  EXPECT_EQ(view.holders(h(3)), (std::vector<ClientId>{"c1", "c2"}));
  view.apply_ended(ended);  // applying twice changes nothing
  EXPECT_EQ(view.used_bytes("c1"), 250);

  view.remove_client("c1");
  EXPECT_EQ(view.holder_count(h(3)), 1u);
  EXPECT_EQ(view.used_bytes("c1"), 0);
  view.remove_fragment(h(3));
  EXPECT_EQ(view.used_bytes("c2"), 100);
}

TEST(ViewApply, ExpectedFragmentSizes) {
  EXPECT_EQ(DistributionView::expected_fragment_sizes(FileMetadata{0, {}}, 100),
            std::vector<std::int64_t>{});
  EXPECT_EQ(DistributionView::expected_fragment_sizes(FileMetadata{250, {h(1), h(2), h(3)}}, 100),
            (std::vector<std::int64_t>{100, 100, 50}));
  EXPECT_EQ(DistributionView::expected_fragment_sizes(FileMetadata{200, {h(1), h(2)}}, 100),
            (std::vector<std::int64_t>{100, 100}));
  EXPECT_FALSE(DistributionView::expected_fragment_sizes(FileMetadata{201, {h(1), h(2)}}, 100));
  EXPECT_FALSE(DistributionView::expected_fragment_sizes(FileMetadata{0, {h(1)}}, 100));
}

}  // namespace
}  // namespace mqds

namespace mqds {
namespace {

TEST(ViewInvariants, HoldThroughEveryOperation) {
  DistributionView view = service();
  EXPECT_EQ(view.check_invariants(), std::nullopt);
  view.apply_ended(FragmentDistributionEnded{{}, h(3), 100, {"c1", "gone"}, 8});
  EXPECT_EQ(view.check_invariants(), std::nullopt);
  EXPECT_EQ(view.used_bytes("c1"), 250);
  view.put_fragment(h(3), 60);  // a size correction keeps the holders' sums right
  EXPECT_EQ(view.check_invariants(), std::nullopt);
  view.remove_fragment(h(1));
  EXPECT_EQ(view.check_invariants(), std::nullopt);
  view.remove_client("c1");
  EXPECT_EQ(view.check_invariants(), std::nullopt);
}

TEST(ViewInvariants, AFileWhoseFragmentsDoNotMakeItsSizeIsNamed) {
  DistributionView view = service();
  view.put_file(h(0xF3), FileMetadata{250, {h(1)}});  // 250 bytes need 3 fragments of 100
  const auto broken = view.check_invariants();
  ASSERT_TRUE(broken);
  EXPECT_NE(broken->find(h(0xF3).to_hex()), std::string::npos) << *broken;
}

}  // namespace
}  // namespace mqds
