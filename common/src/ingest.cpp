// Theory of operation: see mqds/ingest.hpp. The codec comes first, then the Receiver, whose every
// durable write is a storage effect the adapter commits before it publishes the answers that speak
// of it, then the Sender.
#include "mqds/ingest.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>
#include <utility>

#include "mqds/assert.hpp"
#include "wire_reader.hpp"

namespace mqds::ingest {

// ---- Codec -----------------------------------------------------------------------------------

namespace {

using nlohmann::json;

// The length of the UTF-8 sequence a byte starts, or 0 if it starts none.
std::size_t utf8_length(std::uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

// A Reason cut to limits::reason_bytes_max at a character boundary, with bytes that are not UTF-8
// replaced by '?': the decoder's bound holds for whatever text a failure carries.
std::string bounded_reason(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t length = utf8_length(static_cast<std::uint8_t>(text[i]));
    bool valid = length != 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k)
      valid = (static_cast<std::uint8_t>(text[i + k]) & 0xC0) == 0x80;
    const std::string_view character = valid ? text.substr(i, length) : std::string_view("?");
    if (out.size() + character.size() > limits::reason_bytes_max) break;
    out += character;
    i += valid ? length : 1;
  }
  return out;
}

std::string dump(const json& j) {
  // Valid UTF-8 by construction; `replace` keeps a bug in that from throwing on the broker's
  // thread.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Uuid read_upload_id(const wire::Fields& f) {
  return wire::read_uuid(f.required("UploadId"), f.path("UploadId"));
}

std::int64_t read_bytes(const wire::Fields& f, std::string_view name, std::int64_t min_value,
                        std::int64_t max_value) {
  return wire::read_int(f.required(name), f.path(name), min_value, max_value);
}

}  // namespace

std::string_view state_name(State state) {
  switch (state) {
    case State::receiving: return "receiving";
    case State::published: return "published";
    case State::failed: return "failed";
  }
  return "failed";
}

Status Status::receiving(const Uuid& id, std::int64_t offset_bytes, std::int64_t chunk_bytes_max,
                         std::int64_t window_bytes, std::optional<std::string> reason) {
  Status s;
  s.upload_id = id;
  s.state = State::receiving;
  s.offset_bytes = offset_bytes;
  s.chunk_bytes_max = chunk_bytes_max;
  s.window_bytes = window_bytes;
  s.reason = std::move(reason);
  return s;
}

Status Status::published(const Uuid& id, const Hash& hash, std::int64_t size_bytes,
                         std::size_t fragments) {
  Status s;
  s.upload_id = id;
  s.state = State::published;
  s.hash = hash;
  s.size_bytes = size_bytes;
  s.fragments = fragments;
  return s;
}

Status Status::failed(std::optional<Uuid> id, std::string reason) {
  Status s;
  s.upload_id = id;
  s.state = State::failed;
  s.reason = std::move(reason);
  return s;
}

std::string encode(const Begin& begin) {
  return dump(json{{"UploadId", begin.upload_id.to_string()},
                   {"Hash", begin.hash.to_hex()},
                   {"Size", begin.size_bytes}});
}

std::string encode(const Abort& abort) {
  return dump(json{{"UploadId", abort.upload_id.to_string()}});
}

std::string encode(const Status& status) {
  json j = json::object();
  if (status.upload_id) j["UploadId"] = status.upload_id->to_string();
  j["State"] = state_name(status.state);
  switch (status.state) {
    case State::receiving:
      j["Offset"] = status.offset_bytes;
      j["ChunkSize"] = status.chunk_bytes_max;
      j["Window"] = status.window_bytes;
      if (status.reason) j["Reason"] = bounded_reason(*status.reason);
      break;
    case State::published:
      j["Hash"] = status.hash.to_hex();
      j["Size"] = status.size_bytes;
      j["Fragments"] = status.fragments;
      break;
    case State::failed: j["Reason"] = bounded_reason(status.reason.value_or("")); break;
  }
  return dump(j);
}

std::string chunk_topic(const Uuid& upload_id, std::int64_t offset_bytes) {
  return std::string(topics::chunk_prefix) + upload_id.to_string() + "/" +
         std::to_string(offset_bytes);
}

Result<Begin> decode_begin(std::string_view payload) noexcept {
  return wire::decode_untrusted<Begin>([&] {
    const auto document = wire::parse_json(payload, message_payload_bytes_max);
    const auto f = wire::Fields::of_document(document);
    Begin begin;
    begin.upload_id = read_upload_id(f);
    begin.hash = wire::read_hash(f.required("Hash"), f.path("Hash"));
    begin.size_bytes = read_bytes(f, "Size", 0, limits::file_size_bytes_max);
    return begin;
  });
}

Result<Abort> decode_abort(std::string_view payload) noexcept {
  return wire::decode_untrusted<Abort>([&] {
    const auto document = wire::parse_json(payload, message_payload_bytes_max);
    return Abort{read_upload_id(wire::Fields::of_document(document))};
  });
}

std::optional<Uuid> upload_id_of(std::string_view payload) noexcept {
  auto id = decode_abort(payload);  // an abort is nothing but the UploadId
  if (!id) return std::nullopt;
  return id->upload_id;
}

Result<Status> decode_status(std::string_view payload) noexcept {
  return wire::decode_untrusted<Status>([&] {
    const auto document = wire::parse_json(payload, message_payload_bytes_max);
    const auto f = wire::Fields::of_document(document);
    Status status;
    const auto& state = wire::read_string(f.required("State"), f.path("State"), 0, 16);
    if (state == "receiving")
      status.state = State::receiving;
    else if (state == "published")
      status.state = State::published;
    else if (state == "failed")
      status.state = State::failed;
    else
      wire::reject(f.path("State"), "must be \"receiving\", \"published\" or \"failed\"");
    // A refusal of a message whose UploadId could not be read names none.
    if (status.state != State::failed || f.optional("UploadId"))
      status.upload_id = read_upload_id(f);
    auto reason = [&](bool required) -> std::optional<std::string> {
      const auto* value = required ? &f.required("Reason") : f.optional("Reason");
      if (!value) return std::nullopt;
      return wire::read_string(*value, f.path("Reason"), 0, limits::reason_bytes_max);
    };
    switch (status.state) {
      case State::receiving:
        status.offset_bytes = read_bytes(f, "Offset", 0, limits::file_size_bytes_max);
        status.chunk_bytes_max = read_bytes(f, "ChunkSize", 1, chunk_bytes_limit);
        status.window_bytes = read_bytes(f, "Window", 1, window_bytes_limit);
        status.reason = reason(false);
        break;
      case State::published:
        status.hash = wire::read_hash(f.required("Hash"), f.path("Hash"));
        status.size_bytes = read_bytes(f, "Size", 0, limits::file_size_bytes_max);
        status.fragments = static_cast<std::size_t>(read_bytes(
            f, "Fragments", 0, static_cast<std::int64_t>(limits::fragments_per_file_max)));
        break;
      case State::failed: status.reason = reason(true); break;
    }
    return status;
  });
}

Result<ChunkAddress> decode_chunk_topic(std::string_view topic) noexcept {
  return wire::decode_untrusted<ChunkAddress>([&] {
    const auto malformed = [] {
      wire::reject("topic", "must be mqds/ingest/chunk/<UploadId>/<Offset>");
    };
    if (!is_chunk_topic(topic)) malformed();
    const auto rest = topic.substr(topics::chunk_prefix.size());
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos) malformed();
    const auto id = Uuid::parse(rest.substr(0, slash));
    if (!id) wire::reject("topic", "its UploadId must be a GUID");
    const auto text = rest.substr(slash + 1);
    std::int64_t offset = -1;
    const auto [at, ec] = std::from_chars(text.data(), text.data() + text.size(), offset);
    if (ec != std::errc() || at != text.data() + text.size() || offset < 0 ||
        offset > limits::file_size_bytes_max)
      wire::reject("topic", "its Offset must be an integer from 0 to " +
                                std::to_string(limits::file_size_bytes_max));
    return ChunkAddress{*id, offset};
  });
}

// ---- Receiver --------------------------------------------------------------------------------

namespace {

void answer(Output& out, const ClientId& to, const Status& status) {
  out.publishes.push_back({std::string(topics::status), encode(status), to, std::nullopt, 2});
}

// A begin again for an upload (to resume it) must come from its uploader and declare the same file.
bool same_upload(const UploadRecord& record, const ClientId& client, const Begin& begin) {
  return record.uploader == client && record.declared_hash == begin.hash &&
         record.size_bytes == begin.size_bytes;
}

}  // namespace

struct Receiver::Upload {
  UploadRecord record;
  std::unique_ptr<Fragmenter> fragmenter;
  std::int64_t received_bytes = 0;
  std::int64_t durable_bytes = 0;  // the part of received_bytes that is staged durably
  std::uint32_t durable_fragments = 0;
  std::set<Hash> durable_parts;
  std::vector<std::pair<Hash, Bytes>> pending;  // fragments not yet durable
  std::size_t pending_bytes = 0;
  std::map<Hash, std::int64_t> staged_sizes;
  std::optional<FileDigest> digest;  // set once every byte arrived
  std::string failure;
  bool owes_answer = false;
  // A refusal was answered in this pass: the uploader resends from the Offset it was told, so
  // answering every refused chunk of a window again would only make it resend the window again.
  bool refused_this_pass = false;
  bool fed_this_pass = false;  // a chunk arrived since the last flush
  // The Offset of the last "receiving" status: the uploader may send Window beyond it.
  std::int64_t told_bytes = 0;
  bool replaying = false;      // fragments fed from the store are durable already
  std::vector<Hash> replayed;  // while replaying: the fragments cut from the stored parts
  bool handed_over = false;    // verified, in the adapter's hands until finish()
  bool uploader_gone = false;  // its client disconnected: it leaves memory once nothing is pending
  std::int64_t last_activity_ms = 0;

  bool over() const { return !failure.empty() || digest.has_value(); }
  // Received bytes are durable, pending, or the tail the fragmenter still buffers; never more
  // than the declared Size, and never less than what the uploader was told.
  void check() const {
    MQDS_ASSERT(received_bytes <= record.size_bytes);
    MQDS_ASSERT(durable_bytes + static_cast<std::int64_t>(pending_bytes) <= received_bytes);
    MQDS_ASSERT(told_bytes <= received_bytes);
  }
};

Receiver::Receiver(ReceiverConfig config, std::int64_t fragment_size_bytes,
                   const DurableUploads& durable)
    : config_(config), fragment_size_bytes_(fragment_size_bytes), durable_(durable) {
  MQDS_ASSERT(config_.chunk_bytes_max >= 1 && config_.window_bytes >= config_.chunk_bytes_max);
}

Receiver::~Receiver() = default;

MessageResult Receiver::on_message(std::int64_t now_ms, const ClientId& sender,
                                   Permission permission, std::string_view topic,
                                   std::string_view payload, const FileInfos& files) {
  MessageResult result;
  Output& out = result.output;
  result.verdict = Verdict::drop;
  if (topic == topics::status) return result;  // only the tracker answers there
  if (permission != Permission::granted || sender.empty()) {
    // Without a client id there is nobody to answer: an empty `to` would reach every subscriber.
    if (!sender.empty())
      answer(
          out, sender,
          Status::failed(std::nullopt, permission == Permission::disabled
                                           ? "uploads are disabled (plugin_opt_ingest_users)"
                                           : "this user may not upload (plugin_opt_ingest_users)"));
    return result;
  }
  if (topic == topics::begin) {
    begin(now_ms, sender, payload, files, out);
    result.verdict = Verdict::pass;
  } else if (is_chunk_topic(topic)) {
    chunk(now_ms, sender, topic, payload, out);
    // File content is for the tracker only: subscribers of mqds/ingest/# see an empty message.
    result.verdict = payload.empty() ? Verdict::pass : Verdict::rewrite;
  } else if (topic == topics::abort) {
    abort(now_ms, sender, payload, out);
    result.verdict = Verdict::pass;
  }
  return result;
}

void Receiver::answer_receiving(Upload& upload, Output& out, std::optional<std::string> reason) {
  upload.told_bytes = upload.received_bytes;
  if (reason) ++metrics_.chunks_refused;
  answer(out, upload.record.uploader,
         Status::receiving(upload.record.id, upload.received_bytes,
                           static_cast<std::int64_t>(config_.chunk_bytes_max),
                           static_cast<std::int64_t>(config_.window_bytes), std::move(reason)));
}

void Receiver::begin(std::int64_t now_ms, const ClientId& client, std::string_view payload,
                     const FileInfos& files, Output& out) {
  const auto decoded = decode_begin(payload);
  if (!decoded)
    return answer(out, client,
                  Status::failed(upload_id_of(payload), "begin: " + decoded.error().to_string()));
  const Begin& b = *decoded;
  if (b.size_bytes > config_.file_size_bytes_max)
    return answer(out, client,
                  Status::failed(b.upload_id, "begin: Size: exceeds " +
                                                  std::to_string(config_.file_size_bytes_max)));

  if (const auto it = uploads_.find(b.upload_id); it != uploads_.end()) {
    Upload& upload = *it->second;
    if (!same_upload(upload.record, client, b))
      return answer(out, client,
                    Status::failed(b.upload_id, "begin: this UploadId belongs to another upload"));
    upload.last_activity_ms = now_ms;
    upload.uploader_gone = false;  // back before its upload left memory
    return answer_receiving(upload, out);
  }
  if (const auto known = files.find(b.hash);
      known != files.end() && known->second.size_bytes == b.size_bytes) {
    // The file was published meanwhile, by another upload of the same content: this upload is
    // over too. A record it left in the store (begun before a restart, or before it went idle)
    // would otherwise stay there for ever, since nothing resumes an upload answered "published".
    // Its parts stay staged: they are the published file's fragments.
    if (const auto record = durable_.find_upload(b.upload_id);
        record && same_upload(*record, client, b))
      out.storage.push_back(store::DeleteUpload{b.upload_id});
    return answer(out, client,
                  Status::published(b.upload_id, b.hash, known->second.size_bytes,
                                    known->second.fragment_sequence.size()));
  }
  if (uploads_.size() >= config_.uploads_max)
    return answer(out, client,
                  Status::failed(b.upload_id, "too many uploads in progress (" +
                                                  std::to_string(config_.uploads_max) +
                                                  "); try again later"));
  const auto of_client =
      static_cast<std::size_t>(std::count_if(uploads_.begin(), uploads_.end(), [&](const auto& u) {
        return u.second->record.uploader == client;
      }));
  if (of_client >= config_.uploads_per_client_max)
    return answer(out, client,
                  Status::failed(b.upload_id, "this client has " + std::to_string(of_client) +
                                                  " uploads in progress, the most one client may "
                                                  "have; finish or abort one first"));
  open(now_ms, client, b, out);
}

void Receiver::open(std::int64_t now_ms, const ClientId& client, const Begin& b, Output& out) {
  std::unique_ptr<Upload> upload;
  if (const auto record = durable_.find_upload(b.upload_id)) {
    if (!same_upload(*record, client, b))
      return answer(out, client,
                    Status::failed(b.upload_id, "begin: this UploadId belongs to another upload"));
    try {
      upload = replay(*record);
      ++metrics_.uploads_resumed;
    } catch (const std::exception& e) {
      // Its parts stay staged: a published file may reference them.
      out.storage.push_back(store::DeleteUpload{b.upload_id});
      return answer(out, client,
                    Status::failed(b.upload_id, std::string("cannot resume this upload (") +
                                                    e.what() + "); begin a new one"));
    }
  } else {
    upload = replay(UploadRecord{b.upload_id, b.hash, b.size_bytes, client});
    out.storage.push_back(store::PutUpload{upload->record});
    ++metrics_.uploads_begun;
  }
  upload->last_activity_ms = now_ms;
  if (b.size_bytes == 0 && !upload->digest) upload->digest = upload->fragmenter->finish();
  answer_receiving(*upload, out);
  upload->check();
  resting_.erase(b.upload_id);
  uploads_.emplace(b.upload_id, std::move(upload));
}

std::unique_ptr<Receiver::Upload> Receiver::replay(const UploadRecord& record) {
  auto upload = std::make_unique<Upload>();
  upload->record = record;
  Upload* u = upload.get();
  upload->fragmenter = std::make_unique<Fragmenter>(fragment_size_bytes_, [u](const Fragment& f) {
    u->staged_sizes[f.hash] = static_cast<std::int64_t>(f.data.size());
    if (u->replaying) {
      u->replayed.push_back(f.hash);
      return;
    }
    u->pending.emplace_back(f.hash, Bytes(f.data.begin(), f.data.end()));
    u->pending_bytes += f.data.size();
  });
  upload->replaying = true;
  std::vector<Hash> stored;
  durable_.read_upload_parts(record.id, [&](const Hash& hash, std::span<const std::uint8_t> data) {
    const auto size = static_cast<std::int64_t>(data.size());
    // Stored data is trusted no more than a chunk: it must still fit the declared Size.
    if (size > record.size_bytes - upload->received_bytes)
      throw std::runtime_error("its stored parts exceed its Size");
    upload->fragmenter->feed(data);
    upload->received_bytes += size;
    upload->durable_bytes += size;
    upload->durable_parts.insert(hash);
    stored.push_back(hash);
    ++upload->durable_fragments;
  });
  if (upload->received_bytes == record.size_bytes && record.size_bytes > 0)
    upload->digest = upload->fragmenter->finish();
  upload->replaying = false;
  // Every stored part is one whole fragment (only the last may be short, and it is cut when the
  // file is complete): the parts must be exactly what the fragmenter cut, or one is corrupt.
  if (upload->replayed != stored) throw std::runtime_error("a stored part does not match its hash");
  upload->replayed = {};
  return upload;
}

void Receiver::chunk(std::int64_t now_ms, const ClientId& client, std::string_view topic,
                     std::string_view payload, Output& out) {
  const auto address = decode_chunk_topic(topic);
  if (!address)
    return answer(out, client, Status::failed(std::nullopt, address.error().to_string()));
  const auto it = uploads_.find(address->upload_id);
  if (it == uploads_.end() || it->second->record.uploader != client)
    return answer(
        out, client,
        Status::failed(address->upload_id,
                       "unknown upload: send begin first (again after a broker restart)"));
  Upload& upload = *it->second;
  upload.last_activity_ms = now_ms;
  if (upload.over()) return;  // the answer comes with the next flush
  const auto refuse = [&](std::string reason) {
    if (std::exchange(upload.refused_this_pass, true)) {
      ++metrics_.chunks_refused;
      return;
    }
    answer_receiving(upload, out, std::move(reason));
  };
  if (address->offset_bytes < upload.received_bytes &&
      address->offset_bytes + static_cast<std::int64_t>(payload.size()) <= upload.received_bytes) {
    ++metrics_.chunks_duplicated;  // bytes it holds already: a resend, nothing to answer
    return;
  }
  if (address->offset_bytes != upload.received_bytes)
    return refuse("expected Offset " + std::to_string(upload.received_bytes));
  if (payload.empty() || payload.size() > config_.chunk_bytes_max)
    return refuse("a chunk has 1 to " + std::to_string(config_.chunk_bytes_max) + " bytes");
  if (upload.pending_bytes + payload.size() > config_.window_bytes)
    return refuse("window full: wait for the next status");
  const auto size = static_cast<std::int64_t>(payload.size());
  if (size > upload.record.size_bytes - upload.received_bytes) {
    upload.failure =
        "more bytes than the declared Size " + std::to_string(upload.record.size_bytes);
    return;
  }
  try {
    upload.fragmenter->feed(
        std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()));
  } catch (const std::exception& e) {
    upload.failure = std::string("cannot cut the file: ") + e.what();
    return;
  }
  upload.received_bytes += size;
  metrics_.received_bytes += payload.size();
  upload.owes_answer = true;
  upload.fed_this_pass = true;
  if (upload.received_bytes == upload.record.size_bytes)
    upload.digest = upload.fragmenter->finish();
  upload.check();
}

void Receiver::abort(std::int64_t now_ms, const ClientId& client, std::string_view payload,
                     Output& out) {
  const auto decoded = decode_abort(payload);
  if (!decoded) return;
  const auto it = uploads_.find(decoded->upload_id);
  if (it != uploads_.end()) {
    if (it->second->record.uploader == client && !it->second->handed_over)
      it->second->failure = "aborted by the uploader";
    return;
  }
  // Not in memory (idle, or the tracker restarted): an upload that stays in the store would never
  // go away. It is brought back only to be dropped at the next flush, like one in memory.
  const auto record = durable_.find_upload(decoded->upload_id);
  if (!record || record->uploader != client) {
    answer(out, client, Status::failed(decoded->upload_id, "no such upload"));
    return;
  }
  std::unique_ptr<Upload> upload;
  try {
    upload = replay(*record);
  } catch (const std::exception&) {
    // Its parts stay staged: a published file may reference them.
    out.storage.push_back(store::DeleteUpload{decoded->upload_id});
    answer(out, client, Status::failed(decoded->upload_id, "aborted by the uploader"));
    return;
  }
  upload->last_activity_ms = now_ms;
  upload->failure = "aborted by the uploader";
  resting_.erase(decoded->upload_id);
  uploads_.emplace(decoded->upload_id, std::move(upload));
}

bool Receiver::gathering(const Upload& upload, bool ticking) const {
  // While chunks keep coming and the uploader still has window left, they are committed
  // together: once half the window is pending, once the uploader has used its whole window, or
  // in the first pass that brings none. One commit, and its fsync, covers megabytes instead of
  // one chunk, and the uploader is never left waiting on a commit that waits for it.
  const bool window_left = upload.received_bytes - upload.told_bytes +
                               static_cast<std::int64_t>(config_.chunk_bytes_max) <=
                           static_cast<std::int64_t>(config_.window_bytes);
  return ticking && upload.fed_this_pass && window_left &&
         upload.pending_bytes < config_.window_bytes / 2 && !upload.over();
}

void Receiver::stage_pending(Upload& upload, Output& out) {
  if (upload.pending.empty()) return;
  for (const auto& [hash, data] : upload.pending) {
    upload.durable_bytes += static_cast<std::int64_t>(data.size());
    upload.durable_parts.insert(hash);
  }
  store::PutUploadParts parts{upload.record.id, upload.durable_fragments, {}};
  upload.durable_fragments += static_cast<std::uint32_t>(upload.pending.size());
  parts.fragments = std::move(upload.pending);
  out.storage.push_back(std::move(parts));
  upload.pending.clear();
  upload.pending_bytes = 0;
}

Flushed Receiver::flush(std::int64_t now_ms, bool ticking, const StillNeeded& still_needed) {
  Flushed flushed;
  Output& out = flushed.output;
  if (!resting_loaded_) {
    resting_loaded_ = true;
    for (const Uuid& id : durable_.upload_ids())
      if (!uploads_.count(id)) rest(id, now_ms);
  }
  expire_resting(now_ms, still_needed, out);
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    Upload& upload = *it->second;
    MQDS_ASSERT(!upload.handed_over);  // the adapter finishes every verified upload first
    const bool gather = gathering(upload, ticking);
    upload.fed_this_pass = false;
    upload.refused_this_pass = false;
    if (gather) {
      ++it;
      continue;
    }
    if (upload.failure.empty()) stage_pending(upload, out);
    if (upload.failure.empty() && upload.digest &&
        upload.digest->hash != upload.record.declared_hash)
      upload.failure = "the content hashes to " + upload.digest->hash.to_hex() +
                       ", not the declared " + upload.record.declared_hash.to_hex();
    if (!upload.failure.empty()) {
      const auto gone = std::move(it->second);
      it = uploads_.erase(it);
      drop(*gone, gone->failure, still_needed, out);
      continue;
    }
    if (upload.digest) {
      MQDS_ASSERT(upload.durable_bytes == upload.record.size_bytes);
      upload.handed_over = true;
      ++metrics_.uploads_verified;
      flushed.verified.push_back(VerifiedUpload{upload.record.id, upload.record.uploader,
                                                *upload.digest, upload.staged_sizes});
      ++it;
      continue;
    }
    if (upload.owes_answer) {
      answer_receiving(upload, out);
      upload.owes_answer = false;
    }
    upload.check();
    const bool gone = upload.uploader_gone && upload.pending.empty();
    if (gone || now_ms - upload.last_activity_ms > config_.idle_timeout_ms) {
      // It leaves memory, and its slot is free for others; what is durable can still be resumed
      // with begin. One with nothing durable is forgotten: resuming it would be beginning it
      // anew, which stores a new record (a begin retried past the abort that ended it reopens
      // it for nobody, say). One with something durable waits for resume_window_ms.
      MQDS_ASSERT(upload.pending.empty());
      ++(gone ? metrics_.uploads_released : metrics_.uploads_idle);
      const bool forgotten = upload.durable_bytes == 0;
      if (forgotten)
        out.storage.push_back(store::DeleteUpload{upload.record.id});
      else
        rest(upload.record.id, now_ms);
      out.log(
          LogLevel::info,
          "upload " + upload.record.id.to_string() + " from '" + upload.record.uploader +
              (gone ? "' left memory: its client disconnected at " : "' idle: left memory at ") +
              std::to_string(upload.durable_bytes) + " durable bytes" +
              (forgotten ? "; nothing to resume, forgotten" : ""));
      it = uploads_.erase(it);
      continue;
    }
    ++it;
  }
  return flushed;
}

void Receiver::on_disconnect(const ClientId& client) {
  for (auto& [id, upload] : uploads_)
    if (upload->record.uploader == client && !upload->handed_over) upload->uploader_gone = true;
}

Output Receiver::finish(const VerifiedUpload& verified, const std::string& error,
                        const StillNeeded& still_needed) {
  Output out;
  const auto it = uploads_.find(verified.id);
  MQDS_ASSERT(it != uploads_.end() && it->second->handed_over);
  auto upload = std::move(it->second);
  uploads_.erase(it);
  if (!error.empty()) {
    drop(*upload, error, still_needed, out);
    return out;
  }
  // Its fragments stay staged: the published file references them now.
  out.storage.push_back(store::DeleteUpload{verified.id});
  answer(out, verified.uploader,
         Status::published(verified.id, verified.digest.hash, verified.digest.metadata.size_bytes,
                           verified.digest.metadata.fragment_sequence.size()));
  return out;
}

void Receiver::keep_parts_in_progress(std::vector<StorageEffect>& effects) const {
  const auto held = [this](const Hash& fragment) {
    for (const auto& [id, upload] : uploads_)
      if (upload->durable_parts.count(fragment)) return true;
    return false;
  };
  std::erase_if(effects, [&](const StorageEffect& effect) {
    const auto* drop = std::get_if<store::DropStaged>(&effect);
    return drop && held(drop->hash);
  });
}

bool Receiver::shared_with_another(const Upload& upload, const Hash& fragment) const {
  for (const auto& [id, other] : uploads_)
    if (other.get() != &upload && other->staged_sizes.count(fragment)) return true;
  return false;
}

void Receiver::rest(const Uuid& id, std::int64_t now_ms) {
  const std::int64_t at = now_ms + config_.resume_window_ms;
  resting_[id] = at;
  resting_due_ms_ = std::min(resting_due_ms_, at);
}

void Receiver::expire_resting(std::int64_t now_ms, const StillNeeded& still_needed, Output& out) {
  if (now_ms < resting_due_ms_) return;  // flushes run every pass of the broker's loop
  resting_due_ms_ = std::numeric_limits<std::int64_t>::max();
  for (auto it = resting_.begin(); it != resting_.end();) {
    if (it->second > now_ms) {
      resting_due_ms_ = std::min(resting_due_ms_, it->second);
      ++it;
      continue;
    }
    const Uuid id = it->first;
    it = resting_.erase(it);
    const auto record = durable_.find_upload(id);
    if (!record || uploads_.count(id)) continue;  // finished or aborted meanwhile, or begun again
    // Only its part list is read: what is dropped need not be hashed again.
    Upload expired;
    expired.record = *record;
    try {
      durable_.read_upload_parts(id, [&](const Hash& hash, std::span<const std::uint8_t> data) {
        expired.durable_parts.insert(hash);
        expired.durable_bytes += static_cast<std::int64_t>(data.size());
      });
    } catch (const std::exception& e) {
      out.log(LogLevel::warning, "upload " + id.to_string() + ": " + e.what() +
                                     "; its record is dropped without those parts");
    }
    ++metrics_.uploads_expired;
    drop(expired,
         "nobody resumed it within " + std::to_string(config_.resume_window_ms) + " ms (" +
             std::to_string(expired.durable_bytes) + " durable bytes)",
         still_needed, out);
  }
}

void Receiver::drop(const Upload& upload, const std::string& failure,
                    const StillNeeded& still_needed, Output& out) {
  ++metrics_.uploads_failed;
  out.storage.push_back(store::DeleteUpload{upload.record.id});
  // Uploads of files with common content share staged fragments: keep what another one uses.
  for (const Hash& fragment : upload.durable_parts)
    if (!still_needed(fragment) && !shared_with_another(upload, fragment))
      out.storage.push_back(store::DropStaged{fragment});
  out.log(LogLevel::notice, "upload " + upload.record.id.to_string() + " from '" +
                                upload.record.uploader + "' failed: " + failure);
  answer(out, upload.record.uploader, Status::failed(upload.record.id, failure));
}

// ---- Sender ----------------------------------------------------------------------------------

Sender::Sender(const Uuid& upload_id, const Hash& hash, std::int64_t size_bytes)
    : upload_id_(upload_id), hash_(hash), size_bytes_(size_bytes) {
  MQDS_ASSERT(size_bytes >= 0);
}

Begin Sender::begin() {
  if (!done()) phase_ = SenderPhase::beginning;
  return Begin{upload_id_, hash_, size_bytes_};
}

bool Sender::concerns(const Status& status) const {
  return status.upload_id ? *status.upload_id == upload_id_ : status.state == State::failed;
}

void Sender::fail(std::string why) {
  phase_ = SenderPhase::failed;
  failure_ = std::move(why);
}

void Sender::on_status(const Status& status) {
  if (!concerns(status) || done()) return;
  last_status_ = status;
  switch (status.state) {
    case State::failed: return fail(status.reason.value_or("no reason given"));
    case State::published:
      if (status.hash != hash_ || status.size_bytes != size_bytes_)
        return fail("the tracker published " + status.hash.to_hex() + " of " +
                    std::to_string(status.size_bytes) + " bytes for this upload");
      phase_ = SenderPhase::published;
      acknowledged_bytes_ = sent_bytes_ = size_bytes_;
      return;
    case State::receiving: break;
  }
  if (status.offset_bytes > size_bytes_)
    return fail("the tracker holds " + std::to_string(status.offset_bytes) +
                " bytes of a file of " + std::to_string(size_bytes_));
  chunk_bytes_max_ = std::max<std::int64_t>(1, status.chunk_bytes_max);
  window_bytes_ = std::max(chunk_bytes_max_, status.window_bytes);
  // The first answer to a begin says where the tracker is (after a restart: what was durable); a
  // Reason says a chunk was refused; either way sending goes on from Offset. Without a Reason an
  // answer is an acknowledgement that may lag behind what was sent since.
  if (phase_ == SenderPhase::beginning || status.reason || status.offset_bytes > sent_bytes_)
    acknowledged_bytes_ = sent_bytes_ = status.offset_bytes;
  else
    acknowledged_bytes_ = std::max(acknowledged_bytes_, status.offset_bytes);
  phase_ = SenderPhase::sending;
  MQDS_ASSERT(acknowledged_bytes_ <= sent_bytes_ && sent_bytes_ <= size_bytes_);
}

std::optional<ChunkRange> Sender::next_chunk(std::int64_t end_bytes) {
  if (phase_ != SenderPhase::sending) return std::nullopt;
  const std::int64_t end = std::min(end_bytes, size_bytes_);
  if (sent_bytes_ >= end) return std::nullopt;
  const std::int64_t size = std::min(chunk_bytes_max_, end - sent_bytes_);
  if (sent_bytes_ + size > acknowledged_bytes_ + window_bytes_) return std::nullopt;
  const ChunkRange chunk{sent_bytes_, size};
  sent_bytes_ += size;
  return chunk;
}

}  // namespace mqds::ingest
