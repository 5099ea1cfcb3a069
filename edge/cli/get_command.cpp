// mqds get: the file's fragments and their holders from the tracker (query), then each fragment
// from an edge that holds it (fetch, several at once), verified, written at its place in
// <output>.part, and the whole file verified before it is renamed to <output>.
//
// What to ask of whom, and what to make of each answer, is the core's fetch::Client
// (common/include/mqds/fetch_client.hpp); this adapter moves bytes: MQTT messages in and out, the
// clock, and the .part file. An interrupted get resumes: the fragments already in <output>.part
// are verified here and handed to the Client as present.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <vector>

#include "commands.hpp"
#include "mqds/fetch.hpp"
#include "mqds/fetch_client.hpp"
#include "mqds/os.hpp"
#include "progress.hpp"

namespace mqds::cli {

namespace {

constexpr int step_max_ms = 20;
constexpr std::size_t missing_listed_max = 10;
// Lookups of a fragment's holders in one get: the first, then again when holders answered that
// they no longer store it.
constexpr int lookups_max = 3;
constexpr std::chrono::milliseconds lookup_pause{1'000};
// Receipts echoed in one request: what the tracker plugin reads of one (receipts_per_request_max).
constexpr std::size_t receipts_max = 64;

class PartFile {
 public:
  PartFile(const std::string& path, std::int64_t size) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw CliError("cannot open " + path + ": " + std::strerror(errno));
    struct stat st {};
    existed_ = ::fstat(fd_, &st) == 0 && st.st_size > 0;
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      throw CliError("cannot size " + path + ": " + std::strerror(errno));
  }
  ~PartFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool existed() const { return existed_; }
  void write(std::int64_t offset, const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t w = ::pwrite(fd_, data.data() + done, data.size() - done,
                                 static_cast<off_t>(offset) + static_cast<off_t>(done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw CliError("cannot write " + path_ + ": " + std::strerror(errno));
      done += static_cast<std::size_t>(w);
    }
  }
  std::string read(std::int64_t offset, std::size_t n) const {
    std::string data(n, '\0');
    std::size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd_, data.data() + done, n - done,
                                static_cast<off_t>(offset) + static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      done += static_cast<std::size_t>(r);
    }
    data.resize(done);
    return data;
  }
  void sync() {
    if (::fsync(fd_) != 0) throw CliError("cannot sync " + path_ + ": " + std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool existed_ = false;
};

// Every page of a list the tracker answers in pages.
template <class Entries>
void for_each_page(CliSession& session, query::Request request, Entries entries_of) {
  for (request.offset = 0;;) {
    const query::Answer answer = session.ask(request);
    const std::size_t count = entries_of(answer);
    request.offset = answer.offset + count;
    if (count == 0 || request.offset >= answer.total) break;
  }
}

// What the tracker knows: the file, its fragments in order, who holds each and how to reach them.
std::pair<query::FileSummary, std::vector<fetch::FileFragment>> ask_tracker(CliSession& session,
                                                                            const Hash& hash) {
  query::FileSummary file;
  std::vector<query::FragmentHolders> fragments;
  for_each_page(session, query::Request{query::Kind::file, hash, 0, query::page_max},
                [&](const query::Answer& a) {
                  file = *a.file;
                  fragments.insert(fragments.end(), a.fragments.begin(), a.fragments.end());
                  return a.fragments.size();
                });
  std::vector<query::ClientSummary> clients;
  for_each_page(session, query::Request{query::Kind::clients, std::nullopt, 0, query::page_max},
                [&](const query::Answer& a) {
                  clients.insert(clients.end(), a.clients.begin(), a.clients.end());
                  return a.clients.size();
                });
  auto planned = fetch::plan_fetch(file, fragments, clients);
  if (!planned) throw CliError(planned.error().to_string());
  return {file, std::move(planned).value()};
}

// Marks the fragments an earlier get left intact in the .part file; their bytes.
std::int64_t resume(const PartFile& part, std::vector<fetch::FileFragment>& fragments) {
  std::int64_t present_bytes = 0;
  if (!part.existed()) return present_bytes;
  for (auto& f : fragments) {
    const std::string data = part.read(f.offset_bytes, static_cast<std::size_t>(f.size_bytes));
    if (sha256(std::string_view(data)) != f.hash) continue;
    f.present = true;
    present_bytes += f.size_bytes;
  }
  return present_bytes;
}

// A request, with the Receipts of the answers read since the last one (which it empties): the
// broker counts an answer against this client's budget until it sees its Receipt.
int publish(CliSession& session, const fetch::OutgoingRequest& request,
            std::vector<std::string>& receipts) {
  runtime::Outgoing out(request.topic, request.payload, 1);
  out.response_topic = request.response_topic;
  out.correlation_data = request.correlation_data;
  runtime::UserProperties properties;
  for (auto& receipt : receipts)
    properties.emplace_back(fetch::property_receipt, std::move(receipt));
  receipts.clear();
  if (!properties.empty()) out.user_properties = &properties;
  return session.publish(out);
}

// Moves the Client's requests out and its answers in until it has nothing left to do.
void run(CliSession& session, fetch::Client& client, PartFile& part, Progress& progress) {
  // Requests whose PUBACK has not arrived (message id -> Correlation Data): a refused one (the
  // broker owes this client too many bytes already) is asked again, not waited for. Each PUBACK
  // comes within a round trip, so this holds about `parallel` entries.
  std::map<int, std::string> unacknowledged;
  // Receipts of the answers read and not yet echoed: one per answer since the last request, so
  // about `parallel`; past receipts_max the others stay unechoed (the broker forgets them when this
  // client disconnects).
  std::vector<std::string> receipts;
  const auto perform = [&](fetch::ClientOutput out) {
    for (const auto& request : out.requests)
      unacknowledged[publish(session, request, receipts)] = request.correlation_data;
    for (const auto& fragment : out.completed) part.write(fragment.offset_bytes, fragment.data);
    if (!out.completed.empty()) progress.update(client.done_bytes());
  };
  perform(client.start(os::monotonic_ms()));
  while (!client.finished()) {
    int wait_ms = step_max_ms;
    if (const auto deadline = client.next_deadline_ms())
      wait_ms = static_cast<int>(
          std::clamp<std::int64_t>(*deadline - os::monotonic_ms(), 0, step_max_ms));
    session.step(wait_ms);
    for (auto it = unacknowledged.begin(); it != unacknowledged.end();) {
      const auto code = session.acknowledgement(it->first);
      if (!code) {
        ++it;
        continue;
      }
      session.forget_acknowledgement(it->first);
      if (*code >= 128) perform(client.on_refused(os::monotonic_ms(), it->second, *code));
      it = unacknowledged.erase(it);
    }
    for (auto& message : session.take_received()) {
      if (auto receipt = message.user_property(fetch::property_receipt);
          receipt && receipts.size() < receipts_max)
        receipts.push_back(std::move(*receipt));
      perform(client.on_response(
          os::monotonic_ms(),
          fetch::IncomingResponse{std::move(message.topic), std::move(message.correlation_data),
                                  std::move(message.user_properties), std::move(message.payload)}));
    }
    perform(client.on_tick(os::monotonic_ms()));
  }
}

std::string describe_missing(const fetch::Client& client, const std::string& hash_text,
                             const std::string& part_path) {
  const auto missing = client.missing();
  std::string why = std::to_string(missing.size()) + " of " +
                    std::to_string(client.fragments().size()) + " fragments of " + hash_text +
                    " could not be fetched; what was fetched is kept in " + part_path +
                    " and a new get resumes from it:";
  for (std::size_t i = 0; i < missing.size() && i < missing_listed_max; ++i) {
    const auto& m = missing[i];
    why += "\n  fragment " + std::to_string(m.index) + " " + m.hash.to_hex() + ": ";
    if (client.fragments()[m.index].holders.empty()) why += "no edge holds it";
    for (std::size_t p = 0; p < m.problems.size(); ++p)
      why += (p ? "; " : "") + m.problems[p].holder + ": " + m.problems[p].problem;
  }
  return why;
}

// The whole file, read back from disk, must be the file asked for.
void verify_whole(const PartFile& part, const std::vector<fetch::FileFragment>& fragments,
                  const Hash& hash, const std::string& part_path) {
  Sha256 whole;
  for (const auto& f : fragments) {
    const std::string data = part.read(f.offset_bytes, static_cast<std::size_t>(f.size_bytes));
    whole.update(std::span(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
  }
  if (const Hash actual = whole.finish(); actual != hash)
    throw CliError("the assembled file hashes to " + actual.to_hex() + ", not " + hash.to_hex() +
                   "; " + part_path + " is kept");
}

}  // namespace

int get(CliSession& session, const GetOptions& options) {
  const auto hash = Hash::from_hex(options.hash);
  if (!hash)
    throw CliError("'" + options.hash + "' is not a file hash (64 hexadecimal characters)");
  auto [file, fragments] = ask_tracker(session, *hash);

  const std::string part_path = options.output + ".part";
  PartFile part(part_path, file.size_bytes);
  const std::int64_t present_bytes = resume(part, fragments);
  if (!options.quiet && present_bytes > 0)
    std::cerr << "resuming: " << human_bytes(present_bytes) << " already in " << part_path << "\n";

  fetch::ClientConfig config;
  config.response_topic = fetch::response_topic(session.client_id(), "get");
  config.parallel = options.parallel;
  config.request_timeout_ms = options.request_timeout.count();
  session.subscribe({config.response_topic});
  // Correlation Data must be unpredictable: a guessed one would let another client answer.
  os::KernelRandom random;
  Progress progress("downloading", file.size_bytes, options.quiet);
  // Copies move while a get runs (repair, rebalancing, trimming): a fragment that holders the
  // tracker named no longer have is looked up again, with its new holders, a few times.
  std::unique_ptr<fetch::Client> client;
  for (int lookup = 1;; ++lookup) {
    client = std::make_unique<fetch::Client>(config, std::move(fragments), random);
    progress.update(client->done_bytes());
    run(session, *client, part, progress);
    if (client->complete()) break;
    bool moved = false;
    for (const auto& missing : client->missing())
      for (const auto& problem : missing.problems)
        moved =
            moved || problem.problem.rfind(fetch::status_name(fetch::Status::not_found), 0) == 0;
    if (!moved || lookup == lookups_max)
      throw CliError(describe_missing(*client, options.hash, part_path));
    // The holder that deleted its copy is listed until its join ends: give it that long.
    session.step(static_cast<int>(lookup_pause.count()));
    fragments = ask_tracker(session, *hash).second;
    resume(part, fragments);
  }

  verify_whole(part, client->fragments(), *hash, part_path);
  part.sync();
  if (::rename(part_path.c_str(), options.output.c_str()) != 0)
    throw CliError("cannot rename " + part_path + " to " + options.output + ": " +
                   std::strerror(errno));
  progress.finish("verified " + human_bytes(file.size_bytes) + " in " +
                  std::to_string(client->fragments().size()) + " fragments");
  return exit_status::ok;
}

}  // namespace mqds::cli
