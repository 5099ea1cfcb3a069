// The ingest protocol of the core (common/include/mqds/ingest.hpp): its codec, the tracker's
// Receiver and the uploader's Sender, alone and driving each other through the codec. Effects are
// applied to a TrackerMemoryStore, so a "restart" is a new machine over what was committed.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mqds/ingest.hpp"
#include "support/machine_harness.hpp"
#include "support/memory_store.hpp"

namespace mqds::ingest {
namespace {

using mqds::testing::cut_file;
using mqds::testing::effects_of;
using mqds::testing::pattern;
using mqds::testing::TestFile;
using mqds::testing::TrackerMemoryStore;

const Uuid upload_a = Uuid::v4_from(0xA, 1);
const Uuid upload_b = Uuid::v4_from(0xB, 2);

std::string as_text(const Bytes& data, std::size_t offset, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data.data()) + offset, size);
}

// ---- Codec -----------------------------------------------------------------------------------

Hash hash_of_text(std::string_view text) {
  return sha256(text);
}

TEST(IngestCodec, BeginIsWrittenAsItAlwaysWasAndReadBack) {
  const Begin begin{Uuid::parse("0f8fad5b-d9cb-469f-a165-70867728950e").value(),
                    hash_of_text("file"), 12345};
  const std::string golden =
      "{\"Hash\":\"" + begin.hash.to_hex() +
      "\",\"Size\":12345,\"UploadId\":\"0f8fad5b-d9cb-469f-a165-70867728950e\"}";
  EXPECT_EQ(encode(begin), golden);
  const auto decoded = decode_begin(golden);
  ASSERT_TRUE(decoded) << decoded.error().to_string();
  EXPECT_EQ(*decoded, begin);
  // The GUID and the hash are accepted in either case.
  std::string lower_hash = begin.hash.to_hex();
  for (auto& c : lower_hash) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto other_case = decode_begin("{\"Hash\":\"" + lower_hash +
                                       "\",\"Size\":12345,\"UploadId\":\"0F8FAD5B-D9CB-469F-A165-"
                                       "70867728950E\"}");
  ASSERT_TRUE(other_case) << other_case.error().to_string();
  EXPECT_EQ(*other_case, begin);
}

TEST(IngestCodec, AbortIsWrittenAsItAlwaysWasAndReadBack) {
  const Abort abort{upload_a};
  EXPECT_EQ(encode(abort), "{\"UploadId\":\"" + upload_a.to_string() + "\"}");
  EXPECT_EQ(*decode_abort(encode(abort)), abort);
}

TEST(IngestCodec, StatusesAreWrittenAsTheyAlwaysWereAndReadBack) {
  const std::string id = upload_a.to_string();
  const Hash hash = hash_of_text("file");
  const std::vector<std::pair<Status, std::string>> cases = {
      {Status::receiving(upload_a, 4096, 1024, 8192),
       R"({"ChunkSize":1024,"Offset":4096,"State":"receiving","UploadId":")" + id +
           R"(","Window":8192})"},
      {Status::receiving(upload_a, 0, 1024, 8192, "expected Offset 0"),
       R"({"ChunkSize":1024,"Offset":0,"Reason":"expected Offset 0","State":"receiving","UploadId":")" +
           id + R"(","Window":8192})"},
      {Status::published(upload_a, hash, 3000, 3),
       R"({"Fragments":3,"Hash":")" + hash.to_hex() +
           R"(","Size":3000,"State":"published","UploadId":")" + id + R"("})"},
      {Status::failed(upload_a, "aborted by the uploader"),
       R"({"Reason":"aborted by the uploader","State":"failed","UploadId":")" + id + R"("})"},
      // A refusal that names no upload omits UploadId; it never writes null.
      {Status::failed(std::nullopt, "this user may not upload"),
       R"({"Reason":"this user may not upload","State":"failed"})"},
  };
  for (const auto& [status, golden] : cases) {
    EXPECT_EQ(encode(status), golden);
    const auto decoded = decode_status(golden);
    ASSERT_TRUE(decoded) << golden << ": " << decoded.error().to_string();
    EXPECT_EQ(*decoded, status) << golden;
  }
}

TEST(IngestCodec, AFailedStatusWithANullUploadIdIsReadAsNone) {
  // What trackers before this codec wrote for a refusal.
  const auto decoded =
      decode_status(R"({"Reason":"uploads are disabled","State":"failed","UploadId":null})");
  ASSERT_TRUE(decoded) << decoded.error().to_string();
  EXPECT_FALSE(decoded->upload_id);
  EXPECT_EQ(decoded->reason, "uploads are disabled");
}

TEST(IngestCodec, ChunkTopicsAreWrittenAndReadBack) {
  EXPECT_EQ(chunk_topic(upload_a, 4096), "mqds/ingest/chunk/" + upload_a.to_string() + "/4096");
  const auto address = decode_chunk_topic(chunk_topic(upload_a, 4096));
  ASSERT_TRUE(address) << address.error().to_string();
  EXPECT_EQ(*address, (ChunkAddress{upload_a, 4096}));
  EXPECT_TRUE(is_chunk_topic(chunk_topic(upload_a, 0)));
  EXPECT_TRUE(Receiver::handles(topics::abort));
  EXPECT_FALSE(Receiver::handles("mqds/ingestx"));
}

struct DecodeCase {
  std::string payload;
  std::string field;
  std::string problem;
};

template <class Decode>
void expect_errors(Decode decode, const std::vector<DecodeCase>& cases) {
  for (const auto& c : cases) {
    const auto result = decode(c.payload);
    ASSERT_FALSE(result) << c.payload << " was accepted";
    EXPECT_EQ(result.error().field, c.field) << c.payload;
    EXPECT_NE(result.error().problem.find(c.problem), std::string::npos)
        << c.payload << ": " << result.error().to_string();
  }
}

TEST(IngestCodec, EveryBeginErrorNamesItsField) {
  const std::string id = "\"UploadId\":\"" + upload_a.to_string() + "\"";
  const std::string hash = "\"Hash\":\"" + hash_of_text("x").to_hex() + "\"";
  expect_errors(
      decode_begin,
      {
          {"", "", "invalid JSON"},
          {"[]", "", "must be an object"},
          {"{" + hash + ",\"Size\":1}", "UploadId", "missing"},
          {"{\"UploadId\":7," + hash + ",\"Size\":1}", "UploadId", "must be a string"},
          {"{\"UploadId\":\"x\"," + hash + ",\"Size\":1}", "UploadId", "must be a GUID"},
          {"{" + id + ",\"Size\":1}", "Hash", "missing"},
          {"{" + id + ",\"Hash\":\"ab\",\"Size\":1}", "Hash", "64 hexadecimal characters"},
          {"{" + id + "," + hash + "}", "Size", "missing"},
          {"{" + id + "," + hash + ",\"Size\":-1}", "Size", "must not be negative"},
          {"{" + id + "," + hash + ",\"Size\":1.5}", "Size", "must be an integer"},
          {"{" + id + "," + hash + ",\"Size\":70368744177665}", "Size", "exceeds"},
      });
  // Too large to be a begin: refused before it is parsed.
  expect_errors(decode_begin, {{std::string(message_payload_bytes_max + 1, ' '), "", "exceeds"}});
}

TEST(IngestCodec, EveryAbortErrorNamesItsField) {
  expect_errors(decode_abort, {
                                  {"{}", "UploadId", "missing"},
                                  {"{\"UploadId\":null}", "UploadId", "missing"},
                                  {"{\"UploadId\":\"nope\"}", "UploadId", "must be a GUID"},
                              });
}

TEST(IngestCodec, EveryStatusErrorNamesItsField) {
  const std::string id = "\"UploadId\":\"" + upload_a.to_string() + "\"";
  const std::string receiving = "{" + id + ",\"State\":\"receiving\",";
  expect_errors(
      decode_status,
      {
          {"{" + id + "}", "State", "missing"},
          {"{" + id + ",\"State\":\"done\"}", "State", "must be \"receiving\""},
          {R"({"State":"receiving","Offset":0,"ChunkSize":1,"Window":1})", "UploadId", "missing"},
          {R"({"State":"published"})", "UploadId", "missing"},
          {receiving + "\"ChunkSize\":1,\"Window\":1}", "Offset", "missing"},
          {receiving + "\"Offset\":-5,\"ChunkSize\":1,\"Window\":1}", "Offset",
           "must not be negative"},
          {receiving + "\"Offset\":0,\"ChunkSize\":0,\"Window\":1}", "ChunkSize",
           "must be positive"},
          {receiving + "\"Offset\":0,\"ChunkSize\":1}", "Window", "missing"},
          {receiving + "\"Offset\":0,\"ChunkSize\":1,\"Window\":1,\"Reason\":3}", "Reason",
           "must be a string"},
          {"{" + id + R"(,"State":"published","Size":1,"Fragments":1})", "Hash", "missing"},
          {"{" + id + R"(,"State":"published","Hash":")" + hash_of_text("x").to_hex() +
               R"(","Size":1})",
           "Fragments", "missing"},
          {"{" + id + R"(,"State":"failed"})", "Reason", "missing"},
          {R"({"State":"failed","Reason":")" + std::string(limits::reason_bytes_max + 1, 'x') +
               "\"}",
           "Reason", "exceeds"},
      });
}

TEST(IngestCodec, EveryChunkTopicErrorNamesTheTopic) {
  for (const std::string& topic :
       {std::string("mqds/ingest/begin"), std::string("mqds/ingest/chunk/"),
        "mqds/ingest/chunk/" + upload_a.to_string(), std::string("mqds/ingest/chunk/nope/0"),
        "mqds/ingest/chunk/" + upload_a.to_string() + "/",
        "mqds/ingest/chunk/" + upload_a.to_string() + "/-1",
        "mqds/ingest/chunk/" + upload_a.to_string() + "/1x"}) {
    const auto address = decode_chunk_topic(topic);
    ASSERT_FALSE(address) << topic;
    EXPECT_EQ(address.error().field, "topic") << topic;
  }
}

TEST(IngestCodec, AReasonIsCutToWhatTheDecoderAcceptsAndStaysUtf8) {
  std::string long_reason;
  while (long_reason.size() < 3 * limits::reason_bytes_max) long_reason += "\xC3\xA9tape ";
  long_reason += "\xFF";  // not UTF-8
  const std::string payload = encode(Status::failed(upload_a, long_reason));
  const auto decoded = decode_status(payload);
  ASSERT_TRUE(decoded) << decoded.error().to_string();
  EXPECT_LE(decoded->reason->size(), limits::reason_bytes_max);
  EXPECT_EQ(decoded->reason->substr(0, 7), "\xC3\xA9tape ");
  EXPECT_EQ(encode(Status::failed(upload_a, "bad \xFF byte")).find('\xFF'), std::string::npos);
}

TEST(IngestCodec, TheUploadIdOfAnUnreadableBeginIsStillFound) {
  EXPECT_EQ(upload_id_of("{\"UploadId\":\"" + upload_a.to_string() + "\",\"Size\":\"x\"}"),
            upload_a);
  EXPECT_FALSE(upload_id_of("{\"Size\":1}"));
  EXPECT_FALSE(upload_id_of("not json"));
}

// ---- Receiver --------------------------------------------------------------------------------

constexpr std::int64_t fragment_size = 100;

ReceiverConfig small_config() {
  ReceiverConfig config;
  config.chunk_bytes_max = 100;
  config.window_bytes = 400;
  config.uploads_max = 2;
  config.file_size_bytes_max = 100'000;
  config.idle_timeout_ms = 1'000;
  return config;
}

// A Receiver over a TrackerMemoryStore: every Output's effects are applied before the next input,
// as the plugin commits them, and its statuses are read back through the codec.
class ReceiverTest : public ::testing::Test {
 protected:
  void restart() {
    receiver = std::make_unique<Receiver>(config, fragment_size, store);
    statuses.clear();
  }

  MessageResult message(std::int64_t now_ms, std::string_view topic, std::string_view payload,
                        Permission permission = Permission::granted,
                        const ClientId& sender = "uploader") {
    MessageResult result = receiver->on_message(now_ms, sender, permission, topic, payload, files);
    take(result.output);
    return result;
  }
  MessageResult begin(std::int64_t now_ms, const Uuid& id, const TestFile& of,
                      const ClientId& sender = "uploader") {
    return message(now_ms, topics::begin,
                   encode(Begin{id, of.hash, static_cast<std::int64_t>(of.content.size())}),
                   Permission::granted, sender);
  }
  MessageResult chunk(std::int64_t now_ms, const Uuid& id, const Bytes& content, std::size_t offset,
                      std::size_t size, const ClientId& sender = "uploader") {
    return message(now_ms, chunk_topic(id, static_cast<std::int64_t>(offset)),
                   as_text(content, offset, size), Permission::granted, sender);
  }
  // Sends content[from, to) in chunks of chunk_bytes_max, with a pass of the broker's loop after
  // each: an uploader that keeps to its window.
  void feed(std::int64_t now_ms, const Uuid& id, const Bytes& content, std::size_t from,
            std::size_t to) {
    for (std::size_t at = from; at < to; at += config.chunk_bytes_max) {
      chunk(now_ms, id, content, at, std::min(config.chunk_bytes_max, to - at));
      flush(now_ms);
    }
  }
  // Sends content[from, to) in chunks of chunk_bytes_max, without a flush between them.
  void chunks(std::int64_t now_ms, const Uuid& id, const Bytes& content, std::size_t from,
              std::size_t to) {
    for (std::size_t at = from; at < to; at += config.chunk_bytes_max)
      chunk(now_ms, id, content, at, std::min(config.chunk_bytes_max, to - at));
  }

  // One pass of the broker's loop: flush, and hand verified uploads over as the plugin does (the
  // tracker's add_file is played by `files` and `tracker_staged`, or fails with `add_file_error`).
  Output flush(std::int64_t now_ms, bool ticking = false) {
    Flushed flushed = receiver->flush(now_ms, ticking, still_needed());
    take(flushed.output);
    Output all = std::move(flushed.output);
    for (const auto& upload : flushed.verified) {
      verified.push_back(upload);
      if (add_file_error.empty()) {
        files[upload.digest.hash] = upload.digest.metadata;
        for (const auto& [hash, size] : upload.staged_sizes) tracker_staged.insert(hash);
      }
      Output finished = receiver->finish(upload, add_file_error, still_needed());
      take(finished);
      for (auto& e : finished.storage) all.storage.push_back(std::move(e));
      for (auto& p : finished.publishes) all.publishes.push_back(std::move(p));
    }
    return all;
  }

  StillNeeded still_needed() {
    return [this](const Hash& h) { return tracker_staged.count(h) != 0; };
  }

  void take(const Output& out) {
    store.apply(out.storage);
    for (const auto& p : out.publishes) {
      EXPECT_EQ(p.topic, topics::status);
      EXPECT_TRUE(p.to) << "a status goes to its uploader only";
      const auto status = decode_status(p.payload);
      ASSERT_TRUE(status) << p.payload << ": " << status.error().to_string();
      statuses.push_back(*status);
    }
  }

  // The statuses published since the last call.
  std::vector<Status> answers() { return std::exchange(statuses, {}); }
  Status only_answer() {
    auto all = answers();
    EXPECT_EQ(all.size(), 1u);
    return all.empty() ? Status{} : all.front();
  }

  Bytes staged_content_of(const TestFile& of) const {
    Bytes content;
    for (const auto& f : of.fragments) {
      const auto it = store.staged.find(f.hash);
      if (it == store.staged.end()) return {};
      content.insert(content.end(), it->second.begin(), it->second.end());
    }
    return content;
  }

  ReceiverConfig config = small_config();
  TrackerMemoryStore store;
  std::unique_ptr<Receiver> receiver = std::make_unique<Receiver>(config, fragment_size, store);
  FileInfos files;
  std::set<Hash> tracker_staged;
  std::string add_file_error;
  std::vector<Status> statuses;
  std::vector<VerifiedUpload> verified;
  TestFile file = cut_file(pattern(1'050, 1), fragment_size);  // 11 fragments, the last of 50
};

TEST_F(ReceiverTest, BeginIsRecordedDurablyAndAnsweredWithOffsetZero) {
  const auto result = begin(0, upload_a, file);
  EXPECT_EQ(result.verdict, Verdict::pass);
  const auto put = effects_of<store::PutUpload>(result.output);
  ASSERT_EQ(put.size(), 1u);
  EXPECT_EQ(put[0].upload, (UploadRecord{upload_a, file.hash, 1'050, "uploader"}));
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 0, 100, 400));
  EXPECT_EQ(receiver->uploads_in_progress(), 1u);
}

TEST_F(ReceiverTest, ChunksInOrderAreStagedAtTheFlushThenAcknowledged) {
  begin(0, upload_a, file);
  answers();
  const auto result = chunk(1, upload_a, file.content, 0, 100);
  EXPECT_EQ(result.verdict, Verdict::rewrite) << "subscribers must not see file content";
  EXPECT_EQ(result.rewritten_payload, "");
  chunk(1, upload_a, file.content, 100, 100);
  EXPECT_TRUE(answers().empty()) << "acknowledged only once durable";
  EXPECT_TRUE(store.upload_parts.empty());

  const Output flushed = flush(2);
  const auto parts = effects_of<store::PutUploadParts>(flushed);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].first_index, 0u);
  ASSERT_EQ(parts[0].fragments.size(), 2u);
  EXPECT_EQ(parts[0].fragments[0].first, file.fragments[0].hash);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 200, 100, 400));
  EXPECT_EQ(store.upload_parts.at(upload_a).size(), 2u);
  // Parts of an upload in progress are not distributable after a restart.
  EXPECT_TRUE(store.snapshot().staged.empty());
}

TEST_F(ReceiverTest, AVerifiedUploadIsHandedOverAndPublishedAfterTheTrackerTookIt) {
  begin(0, upload_a, file);
  feed(1, upload_a, file.content, 0, 1'000);
  chunk(2, upload_a, file.content, 1'000, 50);
  answers();
  EXPECT_TRUE(verified.empty());
  const Output flushed = flush(3);
  ASSERT_EQ(verified.size(), 1u);
  EXPECT_EQ(verified[0].digest.hash, file.hash);
  EXPECT_EQ(verified[0].digest.metadata, file.metadata);
  EXPECT_EQ(verified[0].staged_sizes, file.staged_sizes());
  EXPECT_EQ(effects_of<store::DeleteUpload>(flushed).size(), 1u);
  EXPECT_TRUE(effects_of<store::DropStaged>(flushed).empty());
  EXPECT_EQ(only_answer(), Status::published(upload_a, file.hash, 1'050, 11));
  EXPECT_EQ(staged_content_of(file), file.content);
  EXPECT_TRUE(store.uploads.empty());
  EXPECT_TRUE(store.upload_parts.empty());
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
  EXPECT_EQ(receiver->metrics().uploads_verified, 1u);
}

// A file that shares fragments with one the tracker has already spread: when the tracker lets go
// of such a fragment while the upload is in progress, its content must stay for the upload (found
// by the simulation: the published file's fragment was then delivered from an empty staging).
TEST_F(ReceiverTest, TheTrackerDoesNotDeleteTheContentOfPartsOfAnUploadInProgress) {
  begin(0, upload_a, file);
  chunk(1, upload_a, file.content, 0, 100);
  flush(2);
  std::vector<StorageEffect> effects{store::DropStaged{file.fragments[0].hash},
                                     store::DropStaged{file.fragments[5].hash},
                                     store::PutRevision{3}};
  receiver->keep_parts_in_progress(effects);
  ASSERT_EQ(effects.size(), 2u);
  EXPECT_EQ(std::get<store::DropStaged>(effects[0]).hash, file.fragments[5].hash)
      << "a fragment no upload holds is dropped as the tracker asks";
  EXPECT_TRUE(std::holds_alternative<store::PutRevision>(effects[1]));
}

TEST_F(ReceiverTest, AnEmptyFileIsPublishedWithoutChunks) {
  const TestFile empty = cut_file({}, fragment_size);
  begin(0, upload_a, empty);
  EXPECT_EQ(only_answer().state, State::receiving);
  flush(1);
  EXPECT_EQ(only_answer(), Status::published(upload_a, empty.hash, 0, 0));
}

TEST_F(ReceiverTest, AChunkOutOfOrderIsAnsweredWithTheOffsetToResumeFrom) {
  begin(0, upload_a, file);
  chunk(1, upload_a, file.content, 0, 100);
  answers();
  chunk(1, upload_a, file.content, 200, 100);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 100, 100, 400, "expected Offset 100"));
  // One answer a pass: the uploader resends from Offset, and answering each refused chunk of its
  // window again would make it resend the window as many times (a storm under duplication).
  chunk(1, upload_a, file.content, 300, 100);
  EXPECT_TRUE(answers().empty());
  EXPECT_EQ(receiver->metrics().chunks_refused, 2u);
  // A copy of bytes it holds is no gap: nothing to answer.
  chunk(1, upload_a, file.content, 0, 100);
  EXPECT_TRUE(answers().empty());
  EXPECT_EQ(receiver->metrics().chunks_duplicated, 1u);
}

TEST_F(ReceiverTest, AChunkOutsideItsBoundsIsRefused) {
  begin(0, upload_a, file);
  answers();
  message(1, chunk_topic(upload_a, 0), "");
  EXPECT_EQ(only_answer().reason, "a chunk has 1 to 100 bytes");
  flush(2, true);
  answers();
  chunk(3, upload_a, file.content, 0, 101);
  EXPECT_EQ(only_answer().reason, "a chunk has 1 to 100 bytes");
  message(1, "mqds/ingest/chunk/" + upload_a.to_string() + "/x", "data");
  const Status malformed = only_answer();
  EXPECT_EQ(malformed.state, State::failed);
  EXPECT_NE(malformed.reason->find("topic: its Offset"), std::string::npos);
}

TEST_F(ReceiverTest, AFullWindowRefusesTheChunkUntilTheNextStatus) {
  begin(0, upload_a, file);
  answers();
  // Ticking, and each pass brings chunks: they gather until half the window is pending.
  chunks(1, upload_a, file.content, 0, 400);
  chunk(1, upload_a, file.content, 400, 100);
  EXPECT_EQ(only_answer(),
            Status::receiving(upload_a, 400, 100, 400, "window full: wait for the next status"));
  flush(2, true);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 400, 100, 400));
  chunk(3, upload_a, file.content, 400, 100);
  EXPECT_TRUE(answers().empty());
}

TEST_F(ReceiverTest, ChunksArrivingWhileTheBrokerTicksAreCommittedTogether) {
  config.window_bytes = 1'000;  // room to gather: half the window is 5 chunks
  restart();
  begin(0, upload_a, file);
  answers();
  chunk(1, upload_a, file.content, 0, 100);
  EXPECT_TRUE(flush(2, true).empty()) << "more is coming: wait for it";
  chunk(3, upload_a, file.content, 100, 100);
  EXPECT_TRUE(flush(4, true).empty());
  const Output quiet = flush(5, true);  // a pass that brought nothing
  const auto parts = effects_of<store::PutUploadParts>(quiet);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].fragments.size(), 2u) << "one commit for both";
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 200, 100, 1'000));

  // Without TICK nothing would flush again for an uploader that waits: commit at once.
  chunk(6, upload_a, file.content, 200, 100);
  EXPECT_EQ(effects_of<store::PutUploadParts>(flush(7, false)).size(), 1u);
  EXPECT_EQ(only_answer().offset_bytes, 300);
}

TEST_F(ReceiverTest, MoreBytesThanTheDeclaredSizeFailTheUploadAndDropItsParts) {
  const TestFile small = cut_file(pattern(150, 2), fragment_size);
  const Bytes longer = pattern(300, 2);
  begin(0, upload_a, small);
  chunk(1, upload_a, longer, 0, 100);
  flush(2);
  answers();
  chunk(3, upload_a, longer, 100, 100);
  const Output failed = flush(4);
  EXPECT_EQ(only_answer(), Status::failed(upload_a, "more bytes than the declared Size 150"));
  EXPECT_EQ(effects_of<store::DeleteUpload>(failed).size(), 1u);
  ASSERT_EQ(effects_of<store::DropStaged>(failed).size(), 1u);
  EXPECT_EQ(effects_of<store::DropStaged>(failed)[0].hash, small.fragments[0].hash);
  EXPECT_TRUE(store.staged.empty());
  EXPECT_TRUE(store.uploads.empty());
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
}

TEST_F(ReceiverTest, ContentThatDoesNotMatchTheDeclaredHashFails) {
  TestFile wrong = file;
  wrong.hash.digest[0] ^= 0xFF;
  begin(0, upload_a, wrong);
  feed(1, upload_a, file.content, 0, file.content.size());
  const Status failed = answers().back();
  EXPECT_EQ(failed.state, State::failed);
  EXPECT_EQ(failed.reason, "the content hashes to " + file.hash.to_hex() + ", not the declared " +
                               wrong.hash.to_hex());
  EXPECT_TRUE(verified.empty()) << "never handed to the tracker";
  EXPECT_TRUE(store.staged.empty());
  EXPECT_TRUE(store.uploads.empty());
  EXPECT_EQ(receiver->metrics().uploads_failed, 1u);
}

TEST_F(ReceiverTest, WhatTheTrackerRefusesFailsTheUpload) {
  add_file_error = "file X is already published with other metadata";
  begin(0, upload_a, file);
  feed(1, upload_a, file.content, 0, file.content.size());
  EXPECT_EQ(verified.size(), 1u);
  EXPECT_EQ(answers().back(), Status::failed(upload_a, add_file_error));
  EXPECT_TRUE(store.staged.empty());
}

TEST_F(ReceiverTest, AnAbortFromItsUploaderFailsTheUploadAtTheNextFlush) {
  begin(0, upload_a, file);
  chunk(1, upload_a, file.content, 0, 100);
  flush(2);
  answers();
  message(3, topics::abort, encode(Abort{upload_a}), Permission::granted, "somebody-else");
  flush(4);
  EXPECT_TRUE(answers().empty()) << "only its uploader may abort it";
  const auto result = message(5, topics::abort, encode(Abort{upload_a}));
  EXPECT_EQ(result.verdict, Verdict::pass);
  flush(6);
  EXPECT_EQ(only_answer(), Status::failed(upload_a, "aborted by the uploader"));
  EXPECT_TRUE(store.staged.empty());
  EXPECT_TRUE(store.uploads.empty());
}

TEST_F(ReceiverTest, AFailedUploadKeepsTheStagedFragmentsOthersNeed) {
  // B shares its first fragment with A (in progress) and its second with a published file.
  const Bytes shared_head = pattern(100, 3);
  const Bytes published_part = pattern(100, 4);
  Bytes a_content = shared_head;
  a_content.insert(a_content.end(), 50, 7);
  Bytes b_content = shared_head;
  b_content.insert(b_content.end(), published_part.begin(), published_part.end());
  b_content.insert(b_content.end(), 30, 9);
  const TestFile a = cut_file(a_content, fragment_size);
  const TestFile b = cut_file(b_content, fragment_size);
  tracker_staged.insert(b.fragments[1].hash);

  begin(0, upload_a, a);
  chunk(1, upload_a, a_content, 0, 100);
  begin(1, upload_b, b);
  chunks(1, upload_b, b_content, 0, 200);
  flush(2);
  message(3, topics::abort, encode(Abort{upload_b}));
  const Output failed = flush(4);
  EXPECT_TRUE(effects_of<store::DropStaged>(failed).empty())
      << "the head is A's, the second fragment the tracker's";
  EXPECT_EQ(store.staged.count(b.fragments[0].hash), 1u);
  EXPECT_EQ(store.uploads.count(upload_b), 0u);
  EXPECT_EQ(store.uploads.count(upload_a), 1u);
}

TEST_F(ReceiverTest, AnIdleUploadLeavesMemoryAndResumesFromWhatIsDurable) {
  begin(0, upload_a, file);
  chunks(1, upload_a, file.content, 0, 300);
  flush(2);
  flush(2 + config.idle_timeout_ms + 1);
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
  EXPECT_EQ(receiver->metrics().uploads_idle, 1u);
  answers();
  begin(5'000, upload_a, file);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 300, 100, 400));
  EXPECT_EQ(receiver->metrics().uploads_resumed, 1u);
  feed(5'001, upload_a, file.content, 300, file.content.size());
  ASSERT_EQ(verified.size(), 1u);
  EXPECT_EQ(verified[0].digest.metadata, file.metadata) << "the rehashed parts count too";
  EXPECT_EQ(answers().back().state, State::published);
}

// A begin that arrives after the abort that ended its upload (retried by an uploader that heard
// nothing) opens it again for nobody; with nothing durable, it is forgotten as it leaves memory.
TEST_F(ReceiverTest, AnUploadThatLeavesMemoryWithNothingDurableIsForgotten) {
  begin(0, upload_a, file);
  message(1, topics::abort, encode(Abort{upload_a}));
  flush(2);
  EXPECT_EQ(store.uploads.count(upload_a), 0u);
  begin(3, upload_a, file);  // the duplicate
  flush(4);
  EXPECT_EQ(store.uploads.count(upload_a), 1u);
  flush(4 + config.idle_timeout_ms + 1);
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
  EXPECT_EQ(store.uploads.count(upload_a), 0u) << "nothing to resume, nothing kept";

  begin(5'000, upload_b, file);
  flush(5'001);
  receiver->on_disconnect("uploader");
  flush(5'002);
  EXPECT_EQ(store.uploads.count(upload_b), 0u) << "nor when its uploader disconnects";
  answers();
  begin(6'000, upload_b, file);
  EXPECT_EQ(only_answer(), Status::receiving(upload_b, 0, 100, 400)) << "it begins anew";
}

TEST_F(ReceiverTest, AnUploadNobodyResumesWithinTheWindowIsDroppedWithItsParts) {
  config.resume_window_ms = 10'000;
  restart();
  begin(0, upload_a, file);
  chunks(1, upload_a, file.content, 0, 300);
  flush(2);
  ASSERT_EQ(store.upload_parts.at(upload_a).size(), 3u);
  flush(1'003);  // idle: it leaves memory at 1,003 ms
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
  flush(11'002);
  EXPECT_EQ(store.uploads.count(upload_a), 1u) << "still within its window";
  answers();
  flush(11'003);
  EXPECT_EQ(store.uploads.count(upload_a), 0u);
  EXPECT_EQ(store.upload_parts.count(upload_a), 0u);
  EXPECT_TRUE(store.staged.empty()) << "its parts go with it";
  EXPECT_EQ(receiver->metrics().uploads_expired, 1u);
  EXPECT_EQ(only_answer().reason, "nobody resumed it within 10000 ms (300 durable bytes)");
  begin(12'000, upload_a, file);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 0, 100, 400)) << "a begin starts anew";
}

TEST_F(ReceiverTest, AnUploadResumedWithinTheWindowIsKeptAndGetsAWholeWindowWhenItLeavesAgain) {
  config.resume_window_ms = 10'000;
  restart();
  begin(0, upload_a, file);
  chunks(1, upload_a, file.content, 0, 300);
  flush(2);
  flush(1'003);  // idle
  begin(9'000, upload_a, file);
  EXPECT_EQ(receiver->metrics().uploads_resumed, 1u);
  flush(11'003);  // its first window ends, and it is idle again: it leaves memory now
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
  EXPECT_EQ(store.uploads.count(upload_a), 1u) << "resumed, its first window no longer counts";
  flush(21'002);
  EXPECT_EQ(store.uploads.count(upload_a), 1u);
  flush(21'003);
  EXPECT_EQ(store.uploads.count(upload_a), 0u);
}

TEST_F(ReceiverTest, UploadsStoredBeforeARestartGetAWholeWindowFromTheFirstFlush) {
  config.resume_window_ms = 10'000;
  restart();
  begin(0, upload_a, file);
  chunks(1, upload_a, file.content, 0, 300);
  flush(2);
  restart();  // the broker restarts: the upload is only in the store
  flush(50'000);
  flush(59'999);
  EXPECT_EQ(store.uploads.count(upload_a), 1u);
  flush(60'000);
  EXPECT_EQ(store.uploads.count(upload_a), 0u);
  EXPECT_EQ(receiver->metrics().uploads_expired, 1u);
}

TEST_F(ReceiverTest, AfterARestartBeginResumesFromTheDurableParts) {
  begin(0, upload_a, file);
  chunks(1, upload_a, file.content, 0, 300);
  flush(2);
  chunks(3, upload_a, file.content, 300, 400);
  EXPECT_TRUE(flush(4, true).empty()) << "still gathering when the broker dies";
  restart();
  // A chunk before begin finds nothing.
  chunk(10, upload_a, file.content, 500, 100);
  EXPECT_EQ(only_answer().state, State::failed);
  begin(11, upload_a, file);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 300, 100, 400))
      << "what was not committed is sent again";
  EXPECT_TRUE(effects_of<store::PutUpload>(begin(12, upload_a, file).output).empty());
  answers();
  feed(13, upload_a, file.content, 300, file.content.size());
  EXPECT_EQ(answers().back(), Status::published(upload_a, file.hash, 1'050, 11));
  EXPECT_EQ(staged_content_of(file), file.content);
}

TEST_F(ReceiverTest, AnUploadWhosePartsAreGoneCannotResume) {
  begin(0, upload_a, file);
  chunks(1, upload_a, file.content, 0, 200);
  flush(2);
  store.staged.erase(file.fragments[1].hash);
  restart();
  const auto result = begin(3, upload_a, file);
  const Status failed = only_answer();
  EXPECT_EQ(failed.state, State::failed);
  EXPECT_NE(failed.reason->find("cannot resume this upload"), std::string::npos);
  EXPECT_EQ(effects_of<store::DeleteUpload>(result.output).size(), 1u);
  // The next begin starts afresh.
  begin(4, upload_a, file);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 0, 100, 400));
}

TEST_F(ReceiverTest, AnUploadWithACorruptPartCannotResume) {
  begin(0, upload_a, file);
  feed(1, upload_a, file.content, 0, 300);
  store.staged.at(file.fragments[1].hash)[7] ^= 1;
  restart();
  begin(2, upload_a, file);
  const Status failed = only_answer();
  EXPECT_EQ(failed.state, State::failed);
  EXPECT_NE(failed.reason->find("does not match its hash"), std::string::npos) << *failed.reason;
}

TEST_F(ReceiverTest, AFileTheServiceHasIsPublishedAtOnce) {
  files[file.hash] = file.metadata;
  const auto result = begin(0, upload_a, file);
  EXPECT_EQ(only_answer(), Status::published(upload_a, file.hash, 1'050, 11));
  EXPECT_TRUE(result.output.storage.empty());
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
}

TEST_F(ReceiverTest, ABeginAnsweredPublishedDeletesTheRecordItsUploadLeftInTheStore) {
  // upload_a is begun and part of it made durable, then the tracker restarts; meanwhile another
  // upload of the same content publishes the file. The begin that resumes upload_a is answered
  // "published", and its record must not stay in the store for ever.
  begin(0, upload_a, file);
  feed(1, upload_a, file.content, 0, 300);
  ASSERT_EQ(store.uploads.count(upload_a), 1u);
  restart();
  files[file.hash] = file.metadata;
  for (const auto& f : file.fragments) tracker_staged.insert(f.hash);
  const auto result = begin(2, upload_a, file);
  EXPECT_EQ(only_answer(), Status::published(upload_a, file.hash, 1'050, 11));
  EXPECT_EQ(effects_of<store::DeleteUpload>(result.output).size(), 1u);
  EXPECT_TRUE(store.uploads.empty()) << "the upload record was left behind";
  EXPECT_TRUE(effects_of<store::DropStaged>(result.output).empty())
      << "its parts are the published file's fragments";
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
}

TEST_F(ReceiverTest, ABeginAnsweredPublishedLeavesAnotherUploadsRecordAlone) {
  begin(0, upload_a, file);
  restart();
  files[file.hash] = file.metadata;
  const auto result = begin(1, upload_a, file, "someone-else");
  EXPECT_EQ(only_answer().state, State::published);
  EXPECT_TRUE(effects_of<store::DeleteUpload>(result.output).empty());
  EXPECT_EQ(store.uploads.count(upload_a), 1u);
}

TEST_F(ReceiverTest, AUserWhoMayNotUploadIsRefusedWithAClearReason) {
  const std::string payload = encode(Begin{upload_a, file.hash, 1'050});
  const auto denied = message(0, topics::begin, payload, Permission::denied);
  EXPECT_EQ(denied.verdict, Verdict::drop);
  EXPECT_TRUE(denied.output.storage.empty());
  EXPECT_EQ(only_answer(),
            Status::failed(std::nullopt, "this user may not upload (plugin_opt_ingest_users)"));
  message(0, topics::begin, payload, Permission::disabled);
  EXPECT_EQ(only_answer().reason, "uploads are disabled (plugin_opt_ingest_users)");
  // A chunk is refused as well, and its content goes nowhere.
  EXPECT_EQ(message(0, chunk_topic(upload_a, 0), "data", Permission::denied).verdict,
            Verdict::drop);
  EXPECT_EQ(only_answer().state, State::failed);
  // Without a client id there is nobody to answer.
  message(0, topics::begin, payload, Permission::denied, "");
  EXPECT_TRUE(answers().empty());
  EXPECT_EQ(receiver->uploads_in_progress(), 0u);
}

TEST_F(ReceiverTest, OnlyTheTrackerPublishesStatuses) {
  const auto result = message(0, topics::status, encode(Status::failed(upload_a, "forged")));
  EXPECT_EQ(result.verdict, Verdict::drop);
  EXPECT_TRUE(answers().empty());
  EXPECT_EQ(message(0, "mqds/ingest/other", "{}").verdict, Verdict::drop);
}

TEST_F(ReceiverTest, AMalformedBeginIsRefusedNamingTheFieldAndTheUpload) {
  message(0, topics::begin, "{\"UploadId\":\"" + upload_a.to_string() + "\",\"Hash\":\"ab\"}");
  EXPECT_EQ(only_answer(),
            Status::failed(upload_a, "begin: Hash: must be 64 hexadecimal characters"));
  message(0, topics::begin, "nonsense");
  EXPECT_EQ(only_answer(), Status::failed(std::nullopt, "begin: invalid JSON"));
  message(0, topics::begin, encode(Begin{upload_a, file.hash, config.file_size_bytes_max + 1}));
  EXPECT_EQ(only_answer().reason, "begin: Size: exceeds 100000");
  EXPECT_TRUE(store.uploads.empty());
}

TEST_F(ReceiverTest, AnUploadIdBelongsToOneUploadAndOneUploader) {
  begin(0, upload_a, file);
  answers();
  TestFile other = cut_file(pattern(500, 9), fragment_size);
  begin(1, upload_a, other);
  EXPECT_EQ(only_answer().reason, "begin: this UploadId belongs to another upload");
  begin(1, upload_a, file, "intruder");
  EXPECT_EQ(only_answer().reason, "begin: this UploadId belongs to another upload");
  chunk(1, upload_a, file.content, 0, 100, "intruder");
  EXPECT_EQ(
      only_answer(),
      Status::failed(upload_a, "unknown upload: send begin first (again after a broker restart)"));
  // The same begin again is answered with where it stands.
  begin(2, upload_a, file);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 0, 100, 400));
}

TEST_F(ReceiverTest, UploadsInMemoryAreBounded) {
  begin(0, upload_a, file);
  begin(0, upload_b, cut_file(pattern(10, 5), fragment_size));
  answers();
  begin(0, Uuid::v4_from(0xC, 3), cut_file(pattern(10, 6), fragment_size));
  EXPECT_EQ(only_answer().reason, "too many uploads in progress (2); try again later");
  EXPECT_EQ(receiver->uploads_in_progress(), 2u);
}

// Opening every slot and sending nothing locked every other uploader out until the idle timeout.
TEST_F(ReceiverTest, OneClientHoldsAtMostItsShareOfTheUploads) {
  config.uploads_max = 4;
  restart();
  begin(0, upload_a, file);
  begin(0, upload_b, cut_file(pattern(10, 5), fragment_size));
  answers();
  begin(0, Uuid::v4_from(0xC, 3), cut_file(pattern(10, 6), fragment_size));
  EXPECT_EQ(only_answer().reason,
            "this client has 2 uploads in progress, the most one client may "
            "have; finish or abort one first");
  begin(0, Uuid::v4_from(0xD, 4), cut_file(pattern(10, 7), fragment_size), "another");
  EXPECT_EQ(only_answer().state, State::receiving) << "another client still has room";
  EXPECT_EQ(receiver->uploads_in_progress(), 3u);
}

TEST_F(ReceiverTest, AClientsUploadsLeaveMemoryWhenItDisconnectsAndResumeFromWhatIsDurable) {
  begin(0, upload_a, file);
  chunks(1, upload_a, file.content, 0, 300);
  flush(2, /*ticking=*/true);  // the chunks gather: nothing is staged yet
  receiver->on_disconnect("someone else");
  receiver->on_disconnect("uploader");
  EXPECT_EQ(receiver->uploads_in_progress(), 1u) << "nothing leaves before the next flush";
  flush(3, /*ticking=*/true);
  EXPECT_EQ(receiver->uploads_in_progress(), 0u) << "what arrived was staged first, then it left";
  EXPECT_EQ(receiver->metrics().uploads_released, 1u);
  answers();
  begin(4, upload_a, file);
  EXPECT_EQ(only_answer(), Status::receiving(upload_a, 300, 100, 400));
  feed(5, upload_a, file.content, 300, file.content.size());
  ASSERT_EQ(verified.size(), 1u);
  EXPECT_EQ(answers().back().state, State::published);
}

TEST_F(ReceiverTest, AnUploaderBackBeforeItsUploadLeftMemoryKeepsIt) {
  begin(0, upload_a, file);
  receiver->on_disconnect("uploader");
  begin(1, upload_a, file);
  flush(2);
  EXPECT_EQ(receiver->uploads_in_progress(), 1u);
  EXPECT_EQ(receiver->metrics().uploads_released, 0u);
}

// ---- Sender ----------------------------------------------------------------------------------

std::vector<ChunkRange> drain(Sender& sender, std::int64_t end = INT64_MAX) {
  std::vector<ChunkRange> ranges;
  while (auto chunk = sender.next_chunk(end)) ranges.push_back(*chunk);
  return ranges;
}

TEST(IngestSender, SendsNothingBeforeTheFirstStatusThenKeepsWithinTheWindow) {
  Sender sender(upload_a, hash_of_text("x"), 1'000);
  EXPECT_EQ(sender.begin(), (Begin{upload_a, hash_of_text("x"), 1'000}));
  EXPECT_TRUE(drain(sender).empty());
  sender.on_status(Status::receiving(upload_a, 0, 100, 250));
  EXPECT_EQ(drain(sender), (std::vector<ChunkRange>{{0, 100}, {100, 100}}));
  // An acknowledgement moves the window on; it lags behind what was sent.
  sender.on_status(Status::receiving(upload_a, 100, 100, 250));
  EXPECT_EQ(sender.acknowledged_bytes(), 100);
  EXPECT_EQ(drain(sender), (std::vector<ChunkRange>{{200, 100}}));
  EXPECT_EQ(sender.chunk_topic({200, 100}), chunk_topic(upload_a, 200));
}

TEST(IngestSender, ResendsFromTheOffsetAStatusWithAReasonGives) {
  Sender sender(upload_a, hash_of_text("x"), 1'000);
  sender.begin();
  sender.on_status(Status::receiving(upload_a, 0, 100, 400));
  EXPECT_EQ(drain(sender).size(), 4u);
  sender.on_status(Status::receiving(upload_a, 200, 100, 400, "expected Offset 200"));
  EXPECT_EQ(sender.sent_bytes(), 200);
  EXPECT_EQ(drain(sender).front(), (ChunkRange{200, 100}));
}

TEST(IngestSender, TheLastChunkIsShortAndAPauseIsRespected) {
  Sender sender(upload_a, hash_of_text("x"), 250);
  sender.begin();
  sender.on_status(Status::receiving(upload_a, 0, 100, 1'000));
  EXPECT_EQ(drain(sender, 150), (std::vector<ChunkRange>{{0, 100}, {100, 50}}));
  EXPECT_EQ(drain(sender), (std::vector<ChunkRange>{{150, 100}}));
}

TEST(IngestSender, CompletesWhenPublishedAndFailsWithTheTrackersReason) {
  const Hash hash = hash_of_text("x");
  Sender done(upload_a, hash, 300);
  done.begin();
  done.on_status(Status::receiving(upload_a, 0, 100, 400));
  drain(done);
  done.on_status(Status::published(upload_a, hash, 300, 3));
  EXPECT_EQ(done.phase(), SenderPhase::published);
  EXPECT_EQ(done.last_status()->fragments, 3u);
  EXPECT_TRUE(drain(done).empty());

  Sender refused(upload_a, hash, 300);
  refused.begin();
  EXPECT_FALSE(refused.concerns(Status::receiving(upload_b, 0, 1, 1)));
  refused.on_status(Status::failed(upload_b, "not mine"));
  EXPECT_EQ(refused.phase(), SenderPhase::beginning);
  // A refusal that names no upload answers what this client sent.
  refused.on_status(Status::failed(std::nullopt, "this user may not upload"));
  EXPECT_EQ(refused.phase(), SenderPhase::failed);
  EXPECT_EQ(refused.failure(), "this user may not upload");

  Sender confused(upload_a, hash, 300);
  confused.begin();
  confused.on_status(Status::published(upload_a, hash_of_text("y"), 300, 3));
  EXPECT_EQ(confused.phase(), SenderPhase::failed) << "published as another file";
  Sender beyond(upload_a, hash, 300);
  beyond.begin();
  beyond.on_status(Status::receiving(upload_a, 301, 100, 400));
  EXPECT_EQ(beyond.phase(), SenderPhase::failed);
}

TEST(IngestSender, ABeginAgainGoesOnFromWhereTheTrackerIs) {
  Sender sender(upload_a, hash_of_text("x"), 1'000);
  sender.begin();
  sender.on_status(Status::receiving(upload_a, 0, 100, 400));
  drain(sender);
  EXPECT_EQ(sender.sent_bytes(), 400);
  sender.begin();  // the connection was lost; the tracker restarted with 200 bytes durable
  EXPECT_TRUE(drain(sender).empty()) << "nothing until the tracker says where it is";
  sender.on_status(Status::receiving(upload_a, 200, 100, 400));
  EXPECT_EQ(drain(sender).front(), (ChunkRange{200, 100}));
}

// ---- A Sender and a Receiver through the codec -----------------------------------------------

// An uploader and the tracker's side (a Receiver and a real Tracker for add_file) joined by two
// FIFO links, as over one MQTT connection. The tracker's side can restart from its store, losing
// what was in flight and in memory, as after a kill -9 of the broker.
class IngestEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    tracker_config.fragment_size_bytes = fragment_size;
    tracker_config.replicas = 1;
    start_tracker();
  }

  void start_tracker() {
    tracker = std::make_unique<Tracker>(tracker_config, store.snapshot(), random);
    store.apply(tracker->start(now_ms).storage);
    receiver = std::make_unique<Receiver>(small_config(), fragment_size, store);
  }

  void restart_tracker() {
    to_tracker.clear();
    to_uploader.clear();
    start_tracker();
  }

  void commit(Output out) {
    store.apply(out.storage);  // durable first, then sent
    for (auto& p : out.publishes)
      if (p.topic == topics::status) {
        EXPECT_EQ(p.to, "uploader");
        to_uploader.push_back(std::move(p.payload));
      }
  }

  // The broker's loop: every message that arrived, then a flush and the hand-over to the tracker.
  void tracker_pass(bool ticking) {
    ++now_ms;
    while (!to_tracker.empty()) {
      auto [topic, payload] = std::move(to_tracker.front());
      to_tracker.pop_front();
      MessageResult r = receiver->on_message(now_ms, "uploader", Permission::granted, topic,
                                             payload, tracker->view().files());
      commit(std::move(r.output));
    }
    const StillNeeded still_needed = [this](const Hash& h) { return tracker->is_staged(h); };
    Flushed flushed = receiver->flush(now_ms, ticking, still_needed);
    commit(std::move(flushed.output));
    for (const auto& upload : flushed.verified) {
      IngestResult added = tracker->add_file(now_ms, upload.digest.hash, upload.digest.metadata,
                                             upload.staged_sizes);
      commit(std::move(added.output));
      commit(receiver->finish(upload, added.error, still_needed));
    }
  }

  // The uploader: statuses in, chunks out.
  void uploader_pass(Sender& sender, const Bytes& content) {
    while (!to_uploader.empty()) {
      const auto status = decode_status(to_uploader.front());
      to_uploader.pop_front();
      ASSERT_TRUE(status) << status.error().to_string();
      if (sender.concerns(*status)) sender.on_status(*status);
    }
    while (const auto chunk = sender.next_chunk())
      to_tracker.emplace_back(sender.chunk_topic(*chunk),
                              as_text(content, static_cast<std::size_t>(chunk->offset_bytes),
                                      static_cast<std::size_t>(chunk->size_bytes)));
  }

  void send_begin(Sender& sender) {
    to_tracker.emplace_back(std::string(topics::begin), encode(sender.begin()));
  }

  // Runs until the sender is done; restarts the tracker after `restart_after` passes, if given.
  void run(Sender& sender, const Bytes& content, std::optional<int> restart_after = {},
           bool ticking = true) {
    send_begin(sender);
    for (int pass = 0; pass < 10'000 && !sender.done(); ++pass) {
      if (restart_after && pass == *restart_after) {
        restart_tracker();
        send_begin(sender);  // the uploader reconnects and begins again
      }
      tracker_pass(ticking && pass % 3 != 2);
      uploader_pass(sender, content);
    }
  }

  void expect_published(const Sender& sender, const TestFile& file) {
    ASSERT_EQ(sender.phase(), SenderPhase::published) << sender.failure();
    EXPECT_EQ(sender.last_status()->fragments, file.fragments.size());
    ASSERT_EQ(tracker->view().files().count(file.hash), 1u);
    EXPECT_EQ(tracker->view().files().at(file.hash), file.metadata);
    for (const auto& f : file.fragments) {
      EXPECT_TRUE(tracker->is_staged(f.hash));
      ASSERT_EQ(store.staged.count(f.hash), 1u);
      EXPECT_EQ(store.staged.at(f.hash), f.data);
    }
    EXPECT_TRUE(store.uploads.empty());
    EXPECT_TRUE(store.upload_parts.empty());
    EXPECT_EQ(receiver->uploads_in_progress(), 0u);
  }

  TrackerConfig tracker_config;
  SplitMix64 random{7};
  TrackerMemoryStore store;
  std::unique_ptr<Tracker> tracker;
  std::unique_ptr<Receiver> receiver;
  std::deque<std::pair<std::string, std::string>> to_tracker;
  std::deque<std::string> to_uploader;
  std::int64_t now_ms = 0;
};

TEST_F(IngestEndToEnd, ASenderUploadsAFileThatTheTrackerPublishes) {
  const TestFile file = cut_file(pattern(2'345, 11), fragment_size);
  Sender sender(upload_a, file.hash, static_cast<std::int64_t>(file.content.size()));
  run(sender, file.content);
  expect_published(sender, file);
  EXPECT_EQ(tracker->metrics().files_published, 1u);
  // The same file again is published at once.
  Sender again(upload_b, file.hash, static_cast<std::int64_t>(file.content.size()));
  run(again, file.content);
  EXPECT_EQ(again.phase(), SenderPhase::published);
  EXPECT_EQ(tracker->metrics().files_published, 1u);
}

TEST_F(IngestEndToEnd, AnUploadSurvivesARestartOfTheTrackerAtAnyPoint) {
  // 13 fragments; a window of 400 bytes takes the upload about five passes.
  const TestFile file = cut_file(pattern(1'234, 12), fragment_size);
  const auto size = static_cast<std::int64_t>(file.content.size());
  for (int restart_after = 0; restart_after <= 4; ++restart_after) {
    SCOPED_TRACE("restart after pass " + std::to_string(restart_after));
    store = TrackerMemoryStore{};
    restart_tracker();
    Sender sender(upload_a, file.hash, size);
    run(sender, file.content, restart_after);
    expect_published(sender, file);
    // The receiver after the restart resumed the upload, and got again only what was not durable.
    EXPECT_EQ(receiver->metrics().uploads_resumed, restart_after == 0 ? 0u : 1u);
    if (restart_after >= 2) {
      EXPECT_LT(receiver->metrics().received_bytes, static_cast<std::uint64_t>(size));
    }
  }
}

TEST_F(IngestEndToEnd, WithoutTicksEveryPassCommits) {
  const TestFile file = cut_file(pattern(999, 13), fragment_size);
  Sender sender(upload_a, file.hash, static_cast<std::int64_t>(file.content.size()));
  run(sender, file.content, std::nullopt, false);
  expect_published(sender, file);
}

TEST_F(IngestEndToEnd, AWrongHashFailsAndLeavesNothingBehind) {
  const TestFile file = cut_file(pattern(777, 14), fragment_size);
  Hash wrong = file.hash;
  wrong.digest[31] ^= 1;
  Sender sender(upload_a, wrong, static_cast<std::int64_t>(file.content.size()));
  run(sender, file.content, 3);
  ASSERT_EQ(sender.phase(), SenderPhase::failed);
  EXPECT_NE(sender.failure().find("not the declared " + wrong.to_hex()), std::string::npos);
  EXPECT_TRUE(store.staged.empty());
  EXPECT_TRUE(store.uploads.empty());
  EXPECT_TRUE(store.upload_parts.empty());
  EXPECT_TRUE(tracker->view().files().empty());
}

}  // namespace
}  // namespace mqds::ingest
