// Ingest: how files enter the service, over MQTT and under the broker's own authentication (an
// extension of the specification; the README documents it in "Ingest").
//
//   mqds/ingest/begin                      {"Hash":file hash,"Size":bytes,"UploadId":GUID}
//   mqds/ingest/chunk/<UploadId>/<Offset>  the raw bytes of the file from Offset
//   mqds/ingest/abort                      {"UploadId":GUID}
// and the tracker answers on mqds/ingest/status, to the uploading client only:
//   {"ChunkSize":max,"Offset":n[,"Reason":..],"State":"receiving","UploadId":..,"Window":bytes}
//   {"Fragments":n,"Hash":..,"Size":n,"State":"published","UploadId":..}
//   {"Reason":..,"State":"failed"[,"UploadId":..]}   no UploadId when none could be read
//
// Theory of operation. Two machines without I/O speak the protocol, through this codec.
//
// Receiver, the tracker's side. The adapter feeds it every message on an ingest topic with the
// publisher's client id and whether that client's user may upload, and calls flush() once per pass
// of the broker's loop. Offset is how much of the file the receiver holds: the next chunk must
// start there, and a chunk that does not, or that the window cannot take, is answered with the
// Offset to resume from and a Reason. Arriving bytes are cut into fragments (Fragmenter) and
// hashed; flush() asks for them to be staged durably (store::PutUploadParts) and only then answers
// "receiving" with the new Offset, so the uploader never runs ahead of what is durable by more
// than Window. While chunks keep coming, flush() lets them gather, so that one commit covers
// megabytes. When every byte arrived and the content hashes to the declared Hash, flush() hands the
// upload over (Flushed::verified); the adapter gives it to Tracker::add_file and then to finish(),
// whose "published" queues behind the tracker's FileInfoPublished. A failed upload forgets its
// parts and drops the staged content nobody else needs. An upload idle for idle_timeout_ms leaves
// memory; `begin` with the same UploadId (also after a restart) resumes it from its durable parts,
// read back through DurableUploads and hashed again, since a SHA-256 state cannot be stored.
//
// Sender, the uploader's side. It says what to publish: begin, then the chunk ranges that may be
// sent now (at most ChunkSize each, none beyond Window of the last Offset the tracker told), from
// Offset again when a status gives a Reason; and it says when the upload is over, published with
// its Fragments or failed with the tracker's Reason. The adapter reads the file and moves bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqds/events.hpp"
#include "mqds/fragmenter.hpp"
#include "mqds/limits.hpp"
#include "mqds/output.hpp"
#include "mqds/result.hpp"
#include "mqds/tracker.hpp"

namespace mqds::ingest {

namespace topics {
inline constexpr std::string_view prefix = "mqds/ingest/";
inline constexpr std::string_view begin = "mqds/ingest/begin";
inline constexpr std::string_view chunk_prefix = "mqds/ingest/chunk/";
inline constexpr std::string_view abort = "mqds/ingest/abort";
inline constexpr std::string_view status = "mqds/ingest/status";
}  // namespace topics

inline bool is_ingest_topic(std::string_view topic) {
  return topic.substr(0, topics::prefix.size()) == topics::prefix;
}
inline bool is_chunk_topic(std::string_view topic) {
  return topic.substr(0, topics::chunk_prefix.size()) == topics::chunk_prefix;
}

// Bounds of what a status may announce, and so of the plugin's options.
inline constexpr std::int64_t chunk_bytes_limit = limits::fragment_size_bytes_max;
inline constexpr std::int64_t window_bytes_limit = std::int64_t{1} << 30;
// begin, abort and status are small JSON objects; anything larger is not one.
inline constexpr std::size_t message_payload_bytes_max = 16 * 1024;

struct Begin {
  Uuid upload_id;
  Hash hash;
  std::int64_t size_bytes = 0;
  friend bool operator==(const Begin&, const Begin&) = default;
};

struct Abort {
  Uuid upload_id;
  friend bool operator==(const Abort&, const Abort&) = default;
};

// Where a chunk belongs: mqds/ingest/chunk/<UploadId>/<Offset>.
struct ChunkAddress {
  Uuid upload_id;
  std::int64_t offset_bytes = 0;
  friend bool operator==(const ChunkAddress&, const ChunkAddress&) = default;
};

enum class State : std::uint8_t { receiving, published, failed };
std::string_view state_name(State state);

struct Status {
  // Absent only on a failed status that answers a message whose UploadId could not be read.
  std::optional<Uuid> upload_id;
  State state = State::failed;
  // receiving: send from offset_bytes, at most chunk_bytes_max per chunk ("ChunkSize"), and at
  // most window_bytes beyond offset_bytes.
  std::int64_t offset_bytes = 0;
  std::int64_t chunk_bytes_max = 0;
  std::int64_t window_bytes = 0;
  // published
  Hash hash;
  std::int64_t size_bytes = 0;
  std::size_t fragments = 0;
  // receiving: why a chunk was not taken (resend from offset_bytes); failed: why, always set.
  std::optional<std::string> reason;

  static Status receiving(const Uuid& id, std::int64_t offset_bytes, std::int64_t chunk_bytes_max,
                          std::int64_t window_bytes, std::optional<std::string> reason = {});
  static Status published(const Uuid& id, const Hash& hash, std::int64_t size_bytes,
                          std::size_t fragments);
  static Status failed(std::optional<Uuid> id, std::string reason);
  friend bool operator==(const Status&, const Status&) = default;
};

// Encoders write the JSON the protocol has always used (keys in alphabetical order). A Reason
// longer than limits::reason_bytes_max is cut there, so the decoder accepts whatever they write.
std::string encode(const Begin& begin);
std::string encode(const Abort& abort);
std::string encode(const Status& status);
std::string chunk_topic(const Uuid& upload_id, std::int64_t offset_bytes);

// Decoders never throw; every Error names the field that is wrong.
Result<Begin> decode_begin(std::string_view payload) noexcept;
Result<Abort> decode_abort(std::string_view payload) noexcept;
Result<Status> decode_status(std::string_view payload) noexcept;
Result<ChunkAddress> decode_chunk_topic(std::string_view topic) noexcept;
// The UploadId of a begin or abort that does not decode as a whole, so its refusal can name it.
std::optional<Uuid> upload_id_of(std::string_view payload) noexcept;

// ---- Receiver: the tracker's side ------------------------------------------------------------

// The bounds of an upload (the plugin's plugin_opt_ingest_* options).
struct ReceiverConfig {
  std::size_t chunk_bytes_max = 1024 * 1024;
  std::size_t window_bytes = 8 * 1024 * 1024;  // at least chunk_bytes_max
  std::size_t uploads_max = 8;                 // uploads in memory at once
  // Uploads in memory at once from one client, so one client cannot hold every slot; a client's
  // uploads leave memory when it disconnects (they can be resumed).
  std::size_t uploads_per_client_max = 2;
  std::int64_t file_size_bytes_max = std::int64_t{1} << 40;
  std::int64_t idle_timeout_ms = 600'000;
  // How long an upload out of memory (idle, its uploader gone, the tracker restarted) keeps its
  // record and durable parts for a resume; then it is dropped as an aborted one is. Without it
  // an upload nobody comes back for (mqds put killed, its abort lost) stays stored for ever.
  std::int64_t resume_window_ms = 86'400'000;
};

// Whether the publisher of a message may upload; the adapter decides (plugin_opt_ingest_users).
enum class Permission : std::uint8_t { granted, denied, disabled };

// What the tracker's store holds of uploads begun earlier, for resuming one after a restart or an
// idle timeout. Reading it is I/O, so the adapter provides it (TrackerStore, and
// TrackerMemoryStore in tests).
class DurableUploads {
 public:
  virtual ~DurableUploads() = default;
  virtual std::optional<UploadRecord> find_upload(const Uuid& id) const = 0;
  // Every stored upload record; read once, when the tracker starts.
  virtual std::vector<Uuid> upload_ids() const = 0;
  // Calls fn(hash, content) for the upload's durable parts in order (content valid during the
  // call); throws if one cannot be read.
  virtual void read_upload_parts(
      const Uuid& id,
      const std::function<void(const Hash&, std::span<const std::uint8_t>)>& fn) const = 0;
};

// An upload whose every byte arrived and matches its declared hash: ready for Tracker::add_file.
struct VerifiedUpload {
  Uuid id;
  ClientId uploader;
  FileDigest digest;
  std::map<Hash, std::int64_t> staged_sizes;  // add_file's argument
};

struct Flushed {
  Output output;
  std::vector<VerifiedUpload> verified;
};

// True for a staged fragment something outside the receiver still needs (the tracker's staging):
// a failed upload that shares it must not delete it.
using StillNeeded = std::function<bool(const Hash&)>;

struct ReceiverMetrics {
  std::uint64_t uploads_begun = 0;  // new ones, not resumed
  std::uint64_t uploads_resumed = 0;
  std::uint64_t uploads_verified = 0;
  std::uint64_t uploads_failed = 0;
  std::uint64_t uploads_idle = 0;      // left memory after idle_timeout_ms
  std::uint64_t uploads_released = 0;  // left memory because their uploader disconnected
  std::uint64_t uploads_expired = 0;   // dropped from the store after resume_window_ms
  std::uint64_t received_bytes = 0;
  std::uint64_t chunks_refused = 0;     // answered with a Reason, at most once per pass
  std::uint64_t chunks_duplicated = 0;  // bytes it held already: ignored
};

class Receiver {
 public:
  Receiver(ReceiverConfig config, std::int64_t fragment_size_bytes, const DurableUploads& durable);
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  static bool handles(std::string_view topic) { return is_ingest_topic(topic); }

  // A message under mqds/ingest/. `files` are the files the service has: a begin for one of them
  // is answered "published" at once (a repeated put, or a "published" answer that was lost).
  // Verdict drop: the publisher may not publish there; rewrite (to nothing): a chunk, whose
  // content is for the tracker only.
  MessageResult on_message(std::int64_t now_ms, const ClientId& sender, Permission permission,
                           std::string_view topic, std::string_view payload,
                           const FileInfos& files);
  // Once per pass of the broker's loop. `ticking`: another flush follows in the next pass whether
  // or not a message arrives, so chunks still arriving may wait for it to be committed together;
  // without that promise nothing would flush again for an uploader that waits, and everything is
  // committed now. Every upload in `verified` must go to finish() before the next flush.
  Flushed flush(std::int64_t now_ms, bool ticking, const StillNeeded& still_needed);
  // The client's connection is gone: its uploads leave memory at the next flush that finds
  // nothing of theirs pending, freeing their slots; `begin` resumes them from what is durable.
  void on_disconnect(const ClientId& client);
  // After the adapter gave a verified upload to Tracker::add_file (`error` is what it said, empty
  // on success): "published", or failed with its parts dropped.
  Output finish(const VerifiedUpload& upload, const std::string& error,
                const StillNeeded& still_needed);

  // Staged content is stored once per hash, whoever staged it. When the tracker lets go of a
  // fragment (it reached its holders) that an upload in progress has staged as one of its parts,
  // deleting the content would leave that upload's file without it once it is published. The
  // adapter passes every batch through this before committing it: it removes those DropStaged.
  void keep_parts_in_progress(std::vector<StorageEffect>& effects) const;

  std::size_t uploads_in_progress() const { return uploads_.size(); }
  const ReceiverConfig& config() const { return config_; }
  const ReceiverMetrics& metrics() const { return metrics_; }

 private:
  struct Upload;
  void begin(std::int64_t now_ms, const ClientId& client, std::string_view payload,
             const FileInfos& files, Output& out);
  void chunk(std::int64_t now_ms, const ClientId& client, std::string_view topic,
             std::string_view payload, Output& out);
  // Marks the upload failed; one that is only in the store is brought back to be dropped, so an
  // abort always leaves nothing behind.
  void abort(std::int64_t now_ms, const ClientId& client, std::string_view payload, Output& out);
  // A begin for an upload not in memory: resumed from the store, or new.
  void open(std::int64_t now_ms, const ClientId& client, const Begin& begin, Output& out);
  // Rebuilds an upload from its durable parts; throws if they cannot be read.
  std::unique_ptr<Upload> replay(const UploadRecord& record);
  // The group-commit policy: whether this flush may leave the upload's new fragments pending.
  bool gathering(const Upload& upload, bool ticking) const;
  // Asks for the pending fragments to be staged durably as the upload's next parts.
  static void stage_pending(Upload& upload, Output& out);
  // The "receiving" status; the Offset it tells bounds what the uploader may send next.
  void answer_receiving(Upload& upload, Output& out, std::optional<std::string> reason = {});
  // Forgets an upload that failed: its record, its parts, and the staged content of its durable
  // parts that neither `still_needed` nor another upload in memory uses.
  void drop(const Upload& upload, const std::string& failure, const StillNeeded& still_needed,
            Output& out);
  // The upload left memory at `now_ms` with something durable: it waits for a resume.
  void rest(const Uuid& id, std::int64_t now_ms);
  // Drops the stored uploads out of memory whose resume window has passed.
  void expire_resting(std::int64_t now_ms, const StillNeeded& still_needed, Output& out);
  bool shared_with_another(const Upload& upload, const Hash& fragment) const;

  ReceiverConfig config_;
  std::int64_t fragment_size_bytes_;
  const DurableUploads& durable_;
  ReceiverMetrics metrics_;
  std::map<Uuid, std::unique_ptr<Upload>> uploads_;
  // Uploads in the store but not in memory, and when each is dropped unless begun again. Those
  // stored before the tracker started are read at the first flush, and given a whole window.
  std::map<Uuid, std::int64_t> resting_;
  std::int64_t resting_due_ms_ = std::numeric_limits<std::int64_t>::max();  // the earliest
  bool resting_loaded_ = false;
};

// ---- Sender: the uploader's side -------------------------------------------------------------

struct ChunkRange {
  std::int64_t offset_bytes = 0;
  std::int64_t size_bytes = 0;
  friend bool operator==(const ChunkRange&, const ChunkRange&) = default;
};

enum class SenderPhase : std::uint8_t {
  beginning,  // begin sent, waiting for the first status
  sending,
  published,
  failed,
};

class Sender {
 public:
  Sender(const Uuid& upload_id, const Hash& hash, std::int64_t size_bytes);

  // The begin to publish, first and again to resume after a lost connection or a restart of the
  // tracker: the next "receiving" status says where to go on from.
  Begin begin();
  // True if the status is about this upload (a failed one without UploadId answers whatever this
  // client sent); only those move the sender on.
  bool concerns(const Status& status) const;
  void on_status(const Status& status);
  // The next chunk that may be published now, if any; it counts as sent. `end_bytes` stops short
  // of an offset (to pause an upload).
  std::optional<ChunkRange> next_chunk(
      std::int64_t end_bytes = std::numeric_limits<std::int64_t>::max());
  std::string chunk_topic(const ChunkRange& chunk) const {
    return ingest::chunk_topic(upload_id_, chunk.offset_bytes);
  }

  SenderPhase phase() const { return phase_; }
  bool done() const { return phase_ == SenderPhase::published || phase_ == SenderPhase::failed; }
  const Uuid& upload_id() const { return upload_id_; }
  std::int64_t size_bytes() const { return size_bytes_; }
  // What the tracker acknowledged holding.
  std::int64_t acknowledged_bytes() const { return acknowledged_bytes_; }
  std::int64_t sent_bytes() const { return sent_bytes_; }
  // The last status that moved the sender: published (Fragments) or failed (Reason) once done.
  const std::optional<Status>& last_status() const { return last_status_; }
  // Why it failed (the tracker's Reason, or what was wrong with its answer).
  const std::string& failure() const { return failure_; }

 private:
  void fail(std::string why);

  Uuid upload_id_;
  Hash hash_;
  std::int64_t size_bytes_;
  SenderPhase phase_ = SenderPhase::beginning;
  std::int64_t acknowledged_bytes_ = 0;
  std::int64_t sent_bytes_ = 0;
  std::int64_t chunk_bytes_max_ = 1;
  std::int64_t window_bytes_ = 1;
  std::optional<Status> last_status_;
  std::string failure_;
};

}  // namespace mqds::ingest
