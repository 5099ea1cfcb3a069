// mqds put: the ingest protocol of the tracker plugin (README, "Ingest"), then waiting until every
// fragment of the file has its k replicas.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "progress.hpp"

namespace mqds::cli {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::string_view ingest_begin = "mqds/ingest/begin";
constexpr std::string_view ingest_status = "mqds/ingest/status";
constexpr std::size_t hash_buffer_bytes = 1024 * 1024;

class File {
 public:
  explicit File(const std::string& path)
      : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) throw CliError("cannot open " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode))
      throw CliError(path + " is not a regular file");
    size_ = st.st_size;
  }
  ~File() { ::close(fd_); }
  std::int64_t size() const { return size_; }
  // Reads exactly n bytes at offset (a file that shrinks meanwhile is an error).
  void read(std::int64_t offset, std::size_t n, std::vector<char>& into) const {
    into.resize(n);
    std::size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd_, into.data() + done, n - done,
                                static_cast<off_t>(offset) + static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        throw CliError("cannot read " + path_ +
                       (r < 0 ? std::string(": ") + std::strerror(errno) : ": it shrank"));
      done += static_cast<std::size_t>(r);
    }
  }

 private:
  std::string path_;
  int fd_;
  std::int64_t size_ = 0;
};

Hash hash_file(const File& file, bool quiet) {
  Progress progress("hashing", file.size(), quiet);
  Sha256 sha;
  std::vector<char> buffer;
  for (std::int64_t at = 0; at < file.size();) {
    const auto n =
        static_cast<std::size_t>(std::min<std::int64_t>(hash_buffer_bytes, file.size() - at));
    file.read(at, n, buffer);
    sha.update(std::span(reinterpret_cast<const std::uint8_t*>(buffer.data()), n));
    at += static_cast<std::int64_t>(n);
    progress.update(at);
  }
  return sha.finish();
}

// The same file from the same client id is the same upload: running put again resumes it.
Uuid upload_id_for(const Hash& hash, std::int64_t size, const std::string& client_id) {
  return Uuid::v4_from(hash.prefix_u64() ^ fnv1a64(client_id),
                       static_cast<std::uint64_t>(size) * 0x9E3779B97F4A7C15ull);
}

// Sends the file from the tracker's Offset within its Window until it answers published or failed.
json upload(CliSession& session, const File& file, const Hash& hash, bool quiet) {
  const Uuid id = upload_id_for(hash, file.size(), session.client_id());
  const std::string id_text = id.to_string();
  auto status_of_this_upload = [&](const runtime::Received& m) {
    if (m.topic != ingest_status) return false;
    const json j = json::parse(m.payload, nullptr, false);
    return j.is_object() && (j.value("UploadId", "") == id_text || !j.contains("UploadId"));
  };
  auto next_status = [&](std::chrono::milliseconds timeout) -> json {
    auto m = session.wait_for(status_of_this_upload, timeout);
    if (!m)
      throw CliError(
          "no answer from the tracker about the upload: is the mqds plugin loaded, and ingest on?");
    return json::parse(m->payload, nullptr, false);
  };
  const std::string begin =
      json{{"UploadId", id_text}, {"Hash", hash.to_hex()}, {"Size", file.size()}}.dump();
  session.publish(runtime::Outgoing(ingest_begin, begin, 1));
  json status = next_status(std::chrono::seconds(10));

  Progress progress("uploading", file.size(), quiet);
  std::int64_t acknowledged = 0, sent = 0;
  std::vector<char> chunk;
  while (status.value("State", "") == "receiving") {
    const auto offset = status.value("Offset", std::int64_t{0});
    const auto chunk_max =
        std::max<std::int64_t>(1, status.value("ChunkSize", std::int64_t{1} << 20));
    const auto window =
        std::max<std::int64_t>(chunk_max, status.value("Window", std::int64_t{8} << 20));
    acknowledged = std::max(acknowledged, offset);
    // A Reason means a chunk was refused (out of order, window full): resend from Offset.
    if (status.contains("Reason") || offset > sent) acknowledged = sent = offset;
    progress.update(acknowledged);
    while (sent < file.size() &&
           sent + std::min(chunk_max, file.size() - sent) <= acknowledged + window) {
      const auto n = static_cast<std::size_t>(std::min(chunk_max, file.size() - sent));
      file.read(sent, n, chunk);
      const std::string topic = "mqds/ingest/chunk/" + id_text + "/" + std::to_string(sent);
      session.publish(runtime::Outgoing(topic, std::string_view(chunk.data(), n), 1));
      sent += static_cast<std::int64_t>(n);
    }
    status = next_status(std::chrono::seconds(30));
  }
  if (status.value("State", "") != "published")
    throw CliError("the tracker refused the upload: " +
                   status.value("Reason", std::string("no reason given")));
  progress.update(file.size());
  progress.finish("published " + std::to_string(status.value("Fragments", 0)) + " fragments");
  return status;
}

void wait_replicated(CliSession& session, const Hash& hash, const PutOptions& options) {
  const auto deadline = Clock::now() + options.wait_timeout;
  std::size_t last_short = SIZE_MAX;
  while (true) {
    const query::Answer a = session.ask(query::Request{query::Kind::file, hash, 0, 1});
    const auto& file = *a.file;
    if (file.fragments_under_replicated == 0) {
      if (!options.quiet)
        std::cerr << "replicated: every one of the " << file.fragments << " fragments is stored on "
                  << a.replicas << " edges\n";
      return;
    }
    if (!options.quiet && file.fragments_under_replicated != last_short)
      std::cerr << "replicating: " << file.fragments - file.fragments_under_replicated << " of "
                << file.fragments << " fragments stored on " << a.replicas << " edges\n";
    last_short = file.fragments_under_replicated;
    if (Clock::now() >= deadline)
      throw CliError(std::to_string(file.fragments_under_replicated) + " of " +
                     std::to_string(file.fragments) + " fragments are still short of " +
                     std::to_string(a.replicas) +
                     " replicas (are enough edges registered, with room?); the file is in the "
                     "service, rerun put to "
                     "wait again");
    // A query costs the tracker one pass over the file's fragments: ten a second is nothing, and
    // put returns within 100 ms of the last replica.
    const auto until = Clock::now() + std::chrono::milliseconds(100);
    while (Clock::now() < until) session.step(50);
  }
}

}  // namespace

int put(CliSession& session, const PutOptions& options) {
  const File file(options.path);
  const Hash hash = hash_file(file, options.quiet);
  upload(session, file, hash, options.quiet);
  if (options.wait) wait_replicated(session, hash, options);
  std::cout << hash.to_hex() << std::endl;
  return exit_status::ok;
}

}  // namespace mqds::cli
