#include "ingest.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>

namespace mqds::plugin {

using nlohmann::json;

struct Ingest::Upload {
  UploadRecord record;
  std::unique_ptr<Fragmenter> fragmenter;
  std::int64_t received_bytes = 0;
  std::uint32_t durable_fragments = 0;
  std::vector<std::pair<Hash, Bytes>> pending;  // fragments not yet durable
  std::size_t pending_bytes = 0;
  std::map<Hash, std::int64_t> staged_sizes;
  std::optional<FileDigest> digest;  // set once every byte arrived
  std::string failure;
  bool owes_answer = false;
  bool fed_this_pass = false;  // a chunk arrived since the last flush
  std::int64_t told_bytes =
      0;  // the Offset of the last "receiving" status: it may send Window beyond
  bool replaying =
      false;  // rebuilding from the store after a restart: fragments are durable already
  std::int64_t last_activity_ms = 0;
};

Ingest::Ingest(IngestOptions options, TrackerStore& store, std::int64_t fragment_size_bytes,
               KnownFile known_file)
    : options_(std::move(options)),
      store_(store),
      fragment_size_bytes_(fragment_size_bytes),
      known_file_(std::move(known_file)) {}

std::string Ingest::published(const Uuid& id, const Hash& hash, const FileMetadata& file) {
  return json{{"UploadId", id.to_string()},
              {"State", "published"},
              {"Hash", hash.to_hex()},
              {"Size", file.size_bytes},
              {"Fragments", file.fragment_sequence.size()}}
      .dump();
}

Ingest::~Ingest() = default;

namespace {

std::optional<Uuid> uuid_field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return Uuid::parse(it->get_ref<const std::string&>());
}

std::string failed_payload(const std::optional<Uuid>& id, const std::string& reason) {
  json j;
  j["UploadId"] = id ? json(id->to_string()) : json(nullptr);
  j["State"] = "failed";
  j["Reason"] = reason;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string Ingest::receiving(Upload& upload, const std::string& reason) const {
  upload.told_bytes = upload.received_bytes;
  json j{{"UploadId", upload.record.id.to_string()},
         {"State", "receiving"},
         {"Offset", upload.received_bytes},
         {"ChunkSize", options_.chunk_bytes_max},
         {"Window", options_.window_bytes}};
  if (!reason.empty()) j["Reason"] = reason;
  return j.dump();
}

void Ingest::fail(const Uuid& id, const std::string& to, const std::string& reason,
                  std::vector<IngestReply>& replies) {
  replies.push_back({to, failed_payload(id, reason)});
}

bool Ingest::on_message(std::int64_t now_ms, const std::string& client, const char* username,
                        std::string_view topic, std::string_view payload,
                        std::vector<IngestReply>& replies) {
  if (topic == ingest_topics::status) return false;  // only the tracker answers there
  const bool allowed = options_.allows(username);
  if (!allowed || client.empty()) {
    replies.push_back(
        {client, failed_payload(std::nullopt,
                                enabled() ? "this user may not upload (plugin_opt_ingest_users)"
                                          : "uploads are disabled (plugin_opt_ingest_users)")});
    return false;
  }
  if (topic == ingest_topics::begin) {
    begin(now_ms, client, payload, replies);
  } else if (topic.substr(0, ingest_topics::chunk_prefix.size()) == ingest_topics::chunk_prefix) {
    chunk(now_ms, client, topic, payload, replies);
  } else if (topic == ingest_topics::abort) {
    const json j = json::parse(payload, nullptr, false);
    const auto id = j.is_object() ? uuid_field(j, "UploadId") : std::nullopt;
    auto it = id ? uploads_.find(*id) : uploads_.end();
    if (it != uploads_.end() && it->second->record.uploader == client)
      it->second->failure = "aborted by the uploader";
  } else {
    return false;
  }
  return true;
}

void Ingest::begin(std::int64_t now_ms, const std::string& client, std::string_view payload,
                   std::vector<IngestReply>& replies) {
  const json j = json::parse(payload, nullptr, false);
  if (!j.is_object()) return fail({}, client, "begin: payload must be a JSON object", replies);
  const auto id = uuid_field(j, "UploadId");
  if (!id) return fail({}, client, "begin: UploadId must be a GUID", replies);
  auto hash_it = j.find("Hash");
  const auto hash = hash_it != j.end() && hash_it->is_string()
                        ? Hash::from_hex(hash_it->get_ref<const std::string&>())
                        : std::nullopt;
  if (!hash) return fail(*id, client, "begin: Hash must be 64 hexadecimal characters", replies);
  auto size_it = j.find("Size");
  if (size_it == j.end() || !size_it->is_number_integer() || size_it->get<std::int64_t>() < 0 ||
      size_it->get<std::int64_t>() > options_.file_size_bytes_max)
    return fail(
        *id, client,
        "begin: Size must be an integer from 0 to " + std::to_string(options_.file_size_bytes_max),
        replies);
  const auto size = size_it->get<std::int64_t>();

  if (const FileMetadata* known = known_file_(*hash);
      known && known->size_bytes == size && !uploads_.count(*id)) {
    replies.push_back({client, published(*id, *hash, *known)});
    return;
  }
  if (auto it = uploads_.find(*id); it != uploads_.end()) {
    Upload& upload = *it->second;
    if (upload.record.uploader != client || upload.record.declared_hash != *hash ||
        upload.record.size_bytes != size)
      return fail(*id, client, "begin: this UploadId belongs to another upload", replies);
    upload.last_activity_ms = now_ms;
    replies.push_back({client, receiving(upload)});
    return;
  }
  if (uploads_.size() >= options_.uploads_max)
    return fail(*id, client,
                "too many uploads in progress (" + std::to_string(options_.uploads_max) +
                    "); try again later",
                replies);

  std::unique_ptr<Upload> upload;
  if (const auto record = store_.find_upload(*id)) {
    if (record->uploader != client || record->declared_hash != *hash || record->size_bytes != size)
      return fail(*id, client, "begin: this UploadId belongs to another upload", replies);
    try {
      upload = resume(*record);
    } catch (const std::exception& e) {
      store_.drop_upload(*id, [](const Hash&) { return true; });
      return fail(*id, client,
                  std::string("cannot resume this upload (") + e.what() + "); begin a new one",
                  replies);
    }
  }
  if (!upload) {
    upload = resume(UploadRecord{*id, *hash, size, client});
    store_.begin_upload(upload->record);
  }
  upload->last_activity_ms = now_ms;
  if (size == 0 && !upload->digest) upload->digest = upload->fragmenter->finish();
  replies.push_back({client, receiving(*upload)});
  uploads_.emplace(*id, std::move(upload));
}

std::unique_ptr<Ingest::Upload> Ingest::resume(const UploadRecord& record) {
  auto upload = std::make_unique<Upload>();
  upload->record = record;
  Upload* u = upload.get();
  upload->fragmenter = std::make_unique<Fragmenter>(fragment_size_bytes_, [u](const Fragment& f) {
    u->staged_sizes[f.hash] = static_cast<std::int64_t>(f.data.size());
    if (u->replaying) return;
    u->pending.emplace_back(f.hash, Bytes(f.data.begin(), f.data.end()));
    u->pending_bytes += f.data.size();
  });
  // Re-hashing what is durable rebuilds the file hash; a SHA-256 state cannot be stored.
  upload->replaying = true;
  store_.read_upload_parts(record.id, [&](const Hash&, std::span<const std::uint8_t> content) {
    upload->fragmenter->feed(content);
    upload->received_bytes += static_cast<std::int64_t>(content.size());
    ++upload->durable_fragments;
  });
  upload->replaying = false;
  if (upload->received_bytes == record.size_bytes && record.size_bytes > 0)
    upload->digest = upload->fragmenter->finish();
  return upload;
}

void Ingest::chunk(std::int64_t now_ms, const std::string& client, std::string_view topic,
                   std::string_view payload, std::vector<IngestReply>& replies) {
  // mqds/ingest/chunk/<UploadId>/<Offset>
  const auto rest = topic.substr(ingest_topics::chunk_prefix.size());
  const auto slash = rest.find('/');
  const auto id =
      slash == std::string_view::npos ? std::nullopt : Uuid::parse(rest.substr(0, slash));
  std::int64_t offset = -1;
  if (id) {
    const auto text = rest.substr(slash + 1);
    const auto [at, ec] = std::from_chars(text.data(), text.data() + text.size(), offset);
    if (ec != std::errc() || at != text.data() + text.size()) offset = -1;
  }
  if (!id || offset < 0)
    return fail(id.value_or(Uuid{}), client,
                "chunk topic must be mqds/ingest/chunk/<UploadId>/<Offset>", replies);
  auto it = uploads_.find(*id);
  if (it == uploads_.end() || it->second->record.uploader != client)
    return fail(*id, client, "unknown upload: send begin first (again after a broker restart)",
                replies);
  Upload& upload = *it->second;
  upload.last_activity_ms = now_ms;
  if (!upload.failure.empty() || upload.digest) return;
  if (offset != upload.received_bytes) {
    replies.push_back(
        {client, receiving(upload, "expected Offset " + std::to_string(upload.received_bytes))});
    return;
  }
  if (payload.empty() || payload.size() > options_.chunk_bytes_max) {
    replies.push_back(
        {client, receiving(upload, "a chunk has 1 to " + std::to_string(options_.chunk_bytes_max) +
                                       " bytes")});
    return;
  }
  if (upload.pending_bytes + payload.size() > options_.window_bytes) {
    replies.push_back({client, receiving(upload, "window full: wait for the next status")});
    return;
  }
  if (upload.received_bytes + static_cast<std::int64_t>(payload.size()) >
      upload.record.size_bytes) {
    upload.failure =
        "more bytes than the declared Size " + std::to_string(upload.record.size_bytes);
    return;
  }
  upload.fragmenter->feed(
      std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()));
  upload.received_bytes += static_cast<std::int64_t>(payload.size());
  upload.owes_answer = true;
  upload.fed_this_pass = true;
  if (upload.received_bytes == upload.record.size_bytes)
    upload.digest = upload.fragmenter->finish();
}

std::vector<CompletedUpload> Ingest::flush(std::int64_t now_ms, std::vector<IngestReply>& replies,
                                           bool ticking) {
  std::vector<CompletedUpload> completed;
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    Upload& upload = *it->second;
    // While chunks keep coming and the uploader still has window left, they are committed
    // together: once half the window is pending, once the uploader has used its whole window, or
    // in the first pass that brings none. One commit, and its fsync, covers megabytes instead of
    // one chunk, and the uploader is never left waiting on a commit that waits for it.
    const bool window_left = upload.received_bytes - upload.told_bytes +
                                 static_cast<std::int64_t>(options_.chunk_bytes_max) <=
                             static_cast<std::int64_t>(options_.window_bytes);
    const bool more_coming = ticking && upload.fed_this_pass && window_left &&
                             upload.pending_bytes < options_.window_bytes / 2 && !upload.digest &&
                             upload.failure.empty();
    upload.fed_this_pass = false;
    if (more_coming) {
      ++it;
      continue;
    }
    if (!upload.pending.empty() && upload.failure.empty()) {
      try {
        store_.put_upload_parts(upload.record.id, upload.durable_fragments, upload.pending);
        upload.durable_fragments += static_cast<std::uint32_t>(upload.pending.size());
      } catch (const std::exception& e) {
        upload.failure = std::string("staging failed: ") + e.what();
      }
      upload.pending.clear();
      upload.pending_bytes = 0;
    }
    if (upload.failure.empty() && upload.digest &&
        upload.digest->hash != upload.record.declared_hash)
      upload.failure = "the content hashes to " + upload.digest->hash.to_hex() +
                       ", not the declared " + upload.record.declared_hash.to_hex();
    if (!upload.failure.empty() || upload.digest) {
      completed.push_back(CompletedUpload{upload.record.id, upload.record.uploader,
                                          upload.digest.value_or(FileDigest{}), upload.staged_sizes,
                                          upload.failure});
      it = uploads_.erase(it);
      continue;
    }
    if (upload.owes_answer) {
      replies.push_back({upload.record.uploader, receiving(upload)});
      upload.owes_answer = false;
    }
    // An idle upload leaves memory; what is durable can still be resumed with begin.
    if (now_ms - upload.last_activity_ms > options_.idle_timeout_ms) {
      it = uploads_.erase(it);
      continue;
    }
    ++it;
  }
  return completed;
}

void Ingest::finish(const CompletedUpload& upload, const std::string& error,
                    const std::function<bool(const Hash&)>& still_needed,
                    std::vector<IngestReply>& replies) {
  const std::string& failure = upload.failure.empty() ? error : upload.failure;
  if (!failure.empty()) {
    // Uploads of files with common content share staged fragments: keep what another one uses.
    store_.drop_upload(upload.id, [&](const Hash& fragment) {
      if (still_needed(fragment)) return true;
      for (const auto& [id, other] : uploads_)
        if (other->staged_sizes.count(fragment)) return true;
      return false;
    });
    fail(upload.id, upload.uploader, failure, replies);
    return;
  }
  store_.finish_upload(upload.id);
  replies.push_back(
      {upload.uploader, published(upload.id, upload.digest.hash, upload.digest.metadata)});
}

}  // namespace mqds::plugin
