// The ingest protocol: how files enter the service, over MQTT and under the broker's own
// authentication. An uploader (`mqds put`) publishes
//   mqds/ingest/begin                    {"UploadId":GUID,"Hash":file hash,"Size":bytes}
//   mqds/ingest/chunk/<UploadId>/<Offset> the raw bytes of the file from Offset
//   mqds/ingest/abort                    {"UploadId":GUID}
// and the tracker answers on mqds/ingest/status, to the uploading client only:
//   {"UploadId":..,"State":"receiving","Offset":n,"ChunkSize":max,"Window":bytes[,"Reason":..]}
//   {"UploadId":..,"State":"published","Hash":..,"Size":n,"Fragments":n}
//   {"UploadId":..,"State":"failed","Reason":..}
// Offset is how much of the file the tracker holds: the next chunk must start there, and a chunk
// that does not is answered with the Offset to resume from. An uploader keeps at most Window bytes
// beyond the last Offset it was told. Received fragments are staged durably at the next flush;
// "published" is sent only after the file was verified against the declared hash and its
// FileInfoPublished is durable. After a broker restart, `begin` with the same UploadId resumes
// from what was made durable.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "allowed_users.hpp"
#include "mqds/fragmenter.hpp"
#include "mqds/store/tracker_store.hpp"

namespace mqds::plugin {

namespace ingest_topics {
inline constexpr std::string_view prefix = "mqds/ingest/";
inline constexpr std::string_view begin = "mqds/ingest/begin";
inline constexpr std::string_view chunk_prefix = "mqds/ingest/chunk/";
inline constexpr std::string_view abort = "mqds/ingest/abort";
inline constexpr std::string_view status = "mqds/ingest/status";
}  // namespace ingest_topics

// Who may upload (plugin_opt_ingest_users) and the bounds of an upload.
struct IngestOptions : AllowedUsers {
  std::size_t chunk_bytes_max = 1024 * 1024;
  std::size_t window_bytes = 8 * 1024 * 1024;
  std::size_t uploads_max = 8;
  std::int64_t file_size_bytes_max = std::int64_t{1} << 40;
  std::int64_t idle_timeout_ms = 600'000;
};

struct IngestReply {
  std::string to;  // the uploader's client id
  std::string payload;
};

// An upload that ended: verified and ready for Tracker::add_file, or failed (`failure` set).
struct CompletedUpload {
  Uuid id;
  std::string uploader;
  FileDigest digest;
  std::map<Hash, std::int64_t> staged_sizes;
  std::string failure;
};

class Ingest {
 public:
  // `known_file` tells whether the service already has a file: such an upload is answered
  // "published" at once (a repeated put, or a "published" answer that was lost).
  using KnownFile = std::function<const FileMetadata*(const Hash&)>;
  Ingest(IngestOptions options, TrackerStore& store, std::int64_t fragment_size_bytes,
         KnownFile known_file);
  ~Ingest();

  static bool handles(std::string_view topic) {
    return topic.substr(0, ingest_topics::prefix.size()) == ingest_topics::prefix;
  }
  bool enabled() const { return options_.enabled(); }

  // A message on an ingest topic. False: the publisher may not publish there (drop it).
  bool on_message(std::int64_t now_ms, const std::string& client, const char* username,
                  std::string_view topic, std::string_view payload,
                  std::vector<IngestReply>& replies);
  // Stages what arrived durably, then answers uploaders; returns the uploads that ended.
  // `ticking`: another flush follows in the broker's next loop pass whether or not a message
  // arrives (TICK), so chunks still arriving may wait for it to be committed together. Without
  // TICK nothing would call flush again for an uploader that waits: everything is committed.
  std::vector<CompletedUpload> flush(std::int64_t now_ms, std::vector<IngestReply>& replies,
                                     bool ticking);
  // Once the plugin has given a verified upload to Tracker::add_file (`error` is what it said):
  // forget it, or drop it and the staged content `still_needed` rejects.
  void finish(const CompletedUpload& upload, const std::string& error,
              const std::function<bool(const Hash&)>& still_needed,
              std::vector<IngestReply>& replies);

  std::size_t uploads_in_progress() const { return uploads_.size(); }

 private:
  struct Upload;
  void begin(std::int64_t now_ms, const std::string& client, std::string_view payload,
             std::vector<IngestReply>& replies);
  void chunk(std::int64_t now_ms, const std::string& client, std::string_view topic,
             std::string_view payload, std::vector<IngestReply>& replies);
  void fail(const Uuid& id, const std::string& to, const std::string& reason,
            std::vector<IngestReply>& replies);
  // The "receiving" status; the Offset it tells bounds what the uploader may send next.
  std::string receiving(Upload& upload, const std::string& reason = {}) const;
  static std::string published(const Uuid& id, const Hash& hash, const FileMetadata& file);
  std::unique_ptr<Upload> resume(const UploadRecord& record);

  IngestOptions options_;
  TrackerStore& store_;
  std::int64_t fragment_size_bytes_;
  KnownFile known_file_;
  std::map<Uuid, std::unique_ptr<Upload>> uploads_;
};

}  // namespace mqds::plugin
