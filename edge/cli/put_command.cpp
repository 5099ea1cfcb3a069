// mqds put: the file goes in through the ingest protocol, as the core's ingest::Sender says
// (common/include/mqds/ingest.hpp), then put waits until every fragment has its k replicas.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "mqds/ingest.hpp"
#include "progress.hpp"

namespace mqds::cli {

namespace {

using Clock = std::chrono::steady_clock;

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

// Waits for the next status about the sender's upload and moves the sender on with it.
void receive_status(CliSession& session, ingest::Sender& sender,
                    std::chrono::milliseconds timeout) {
  std::optional<ingest::Status> status;
  std::optional<Error> unreadable;
  const auto about_this_upload = [&](const runtime::Received& m) {
    if (m.topic != ingest::topics::status) return false;
    auto decoded = ingest::decode_status(m.payload);
    if (!decoded) {
      unreadable = decoded.error();
      return false;
    }
    if (!sender.concerns(*decoded)) return false;
    status = std::move(*decoded);
    return true;
  };
  if (!session.wait_for(about_this_upload, timeout)) {
    if (unreadable)
      throw CliError("the tracker's answer about the upload is unreadable: " +
                     unreadable->to_string());
    throw CliError(
        "no answer from the tracker about the upload: is the mqds plugin loaded, and ingest on?");
  }
  sender.on_status(*status);
}

// The ingest protocol (common/include/mqds/ingest.hpp): the Sender says what to send, this
// function reads it from the file and publishes it, until the tracker answers published or failed.
void upload(CliSession& session, const File& file, const Hash& hash, bool quiet) {
  ingest::Sender sender(upload_id_for(hash, file.size(), session.client_id()), hash, file.size());
  const std::string begin = ingest::encode(sender.begin());
  session.publish(runtime::Outgoing(ingest::topics::begin, begin, 1));
  receive_status(session, sender, std::chrono::seconds(10));

  Progress progress("uploading", file.size(), quiet);
  std::vector<char> chunk;
  while (!sender.done()) {
    progress.update(sender.acknowledged_bytes());
    while (const auto range = sender.next_chunk()) {
      const auto size = static_cast<std::size_t>(range->size_bytes);
      file.read(range->offset_bytes, size, chunk);
      const std::string topic = sender.chunk_topic(*range);
      session.publish(runtime::Outgoing(topic, std::string_view(chunk.data(), size), 1));
    }
    receive_status(session, sender, std::chrono::seconds(30));
  }
  if (sender.phase() == ingest::SenderPhase::failed)
    throw CliError("the tracker refused the upload: " + sender.failure());
  progress.update(file.size());
  progress.finish("published " + std::to_string(sender.last_status()->fragments) + " fragments");
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
