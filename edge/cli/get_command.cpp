// mqds get: the file's fragments and their holders from the tracker (query), then each fragment
// from an edge that holds it (fetch, several at once), verified, written at its place in
// <output>.part, and the whole file verified before it is renamed to <output>.
//
// An interrupted get resumes: the fragments already in <output>.part are verified and kept.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <vector>

#include "commands.hpp"
#include "mqds/fetch.hpp"
#include "progress.hpp"

namespace mqds::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto busy_retry = std::chrono::milliseconds(200);
constexpr int busy_retries_max = 50;

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

struct Fragment {
  Hash hash;
  std::int64_t offset = 0;  // in the file
  std::int64_t size = 0;
  std::vector<ClientId> holders;
  std::size_t holder = 0;  // the one being asked
  std::string data;        // received so far
  std::vector<std::string> problems;
  int busy_retries = 0;
  bool done = false;
};

struct InFlight {
  std::size_t fragment;
  std::int64_t offset;
  Clock::time_point deadline;
};

std::string hash_of_text(const std::string& data) {
  return sha256(std::string_view(data)).to_hex();
}

}  // namespace

int get(CliSession& session, const GetOptions& options) {
  const auto hash = Hash::from_hex(options.hash);
  if (!hash)
    throw CliError("'" + options.hash + "' is not a file hash (64 hexadecimal characters)");

  // What the tracker knows: the fragments in order, who holds each, and how to reach them.
  std::vector<Fragment> fragments;
  query::FileSummary file;
  for (std::size_t offset = 0;;) {
    const query::Answer a =
        session.ask(query::Request{query::Kind::file, *hash, offset, query::page_max});
    file = *a.file;
    for (const auto& f : a.fragments)
      fragments.push_back(Fragment{f.hash, 0, f.size_bytes, f.holders, 0, {}, {}, 0, false});
    offset = a.offset + a.fragments.size();
    if (a.fragments.empty() || offset >= a.total) break;
  }
  std::map<ClientId, std::string> request_topic;
  for (std::size_t offset = 0;;) {
    const query::Answer a =
        session.ask(query::Request{query::Kind::clients, std::nullopt, offset, query::page_max});
    for (const auto& c : a.clients) {
      std::string topic = fetch::request_topic(c.id);
      for (const auto& e : c.endpoints)
        if (auto t = fetch::request_topic_of_endpoint(e)) topic = *t;
      request_topic[c.id] = topic;
    }
    offset = a.offset + a.clients.size();
    if (a.clients.empty() || offset >= a.total) break;
  }
  std::int64_t at = 0;
  for (std::size_t i = 0; i < fragments.size(); ++i) {
    Fragment& f = fragments[i];
    f.offset = at;
    at += f.size;
    // Spread the load: each fragment starts with another of its holders.
    if (!f.holders.empty())
      std::rotate(f.holders.begin(),
                  f.holders.begin() + static_cast<std::ptrdiff_t>(i % f.holders.size()),
                  f.holders.end());
  }
  if (at != file.size_bytes)
    throw CliError("the tracker's fragments of " + options.hash + " do not add up to its size");

  const std::string part_path = options.output + ".part";
  PartFile part(part_path, file.size_bytes);
  std::int64_t done_bytes = 0;
  if (part.existed()) {
    for (auto& f : fragments)
      if (sha256(std::string_view(part.read(f.offset, static_cast<std::size_t>(f.size)))) ==
          f.hash) {
        f.done = true;
        done_bytes += f.size;
      }
    if (!options.quiet && done_bytes > 0)
      std::cerr << "resuming: " << human_bytes(done_bytes) << " already in " << part_path << "\n";
  }

  const std::string response_topic = fetch::response_topic(session.client_id(), "get");
  session.subscribe({response_topic});
  Progress progress("downloading", file.size_bytes, options.quiet);
  progress.update(done_bytes);

  std::deque<std::size_t> waiting;
  for (std::size_t i = 0; i < fragments.size(); ++i)
    if (!fragments[i].done) waiting.push_back(i);
  std::map<std::string, InFlight> in_flight;  // correlation -> request
  std::map<std::size_t, Clock::time_point> retry_at;
  std::vector<std::size_t> missing;

  auto ask_for = [&](std::size_t index) {
    Fragment& f = fragments[index];
    if (f.holder >= f.holders.size()) {
      missing.push_back(index);
      return;
    }
    const auto offset = static_cast<std::int64_t>(f.data.size());
    const std::string payload = fetch::encode_request(
        fetch::Request{f.hash, offset, std::min(fetch::chunk_bytes_max, f.size - offset)});
    const std::string correlation = "g" + session.next_correlation();
    const auto topic = request_topic.count(f.holders[f.holder])
                           ? request_topic[f.holders[f.holder]]
                           : fetch::request_topic(f.holders[f.holder]);
    runtime::Outgoing out(topic, payload, 1);
    out.response_topic = response_topic;
    out.correlation_data = correlation;
    session.publish(out);
    in_flight[correlation] = InFlight{index, offset, Clock::now() + options.request_timeout};
  };
  auto next_holder = [&](std::size_t index, const std::string& problem) {
    Fragment& f = fragments[index];
    f.problems.push_back(f.holders[f.holder] + ": " + problem);
    f.data.clear();
    f.busy_retries = 0;
    ++f.holder;
    ask_for(index);
  };

  while (!waiting.empty() || !in_flight.empty() || !retry_at.empty()) {
    while (!waiting.empty() && in_flight.size() + retry_at.size() < options.parallel) {
      const std::size_t index = waiting.front();
      waiting.pop_front();
      ask_for(index);
    }
    session.step(20);
    const auto now = Clock::now();
    for (auto it = retry_at.begin(); it != retry_at.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      ask_for(it->first);
      it = retry_at.erase(it);
    }
    for (auto it = in_flight.begin(); it != in_flight.end();) {
      auto answer = session.take_answer(it->first);
      if (!answer) {
        if (it->second.deadline > now) {
          ++it;
          continue;
        }
        const std::size_t index = it->second.fragment;
        it = in_flight.erase(it);
        next_holder(index,
                    "no answer within " + std::to_string(options.request_timeout.count()) + " ms");
        continue;
      }
      const InFlight request = it->second;
      it = in_flight.erase(it);
      Fragment& f = fragments[request.fragment];
      const std::string status = answer->user_property(fetch::property_status).value_or("");
      if (status == fetch::status_name(fetch::Status::busy) &&
          ++f.busy_retries <= busy_retries_max) {
        retry_at[request.fragment] = now + busy_retry;
        continue;
      }
      if (status != fetch::status_name(fetch::Status::ok)) {
        next_holder(request.fragment,
                    (status.empty() ? std::string("no status") : status) + " (" +
                        answer->user_property(fetch::property_reason).value_or("") + ")");
        continue;
      }
      if (answer->user_property(fetch::property_offset) != std::to_string(request.offset) ||
          answer->user_property(fetch::property_size) != std::to_string(f.size) ||
          answer->payload.empty()) {
        next_holder(request.fragment, "an answer that does not fit the fragment");
        continue;
      }
      f.data += answer->payload;
      if (static_cast<std::int64_t>(f.data.size()) < f.size) {
        ask_for(request.fragment);  // the next chunk of a large fragment
        continue;
      }
      if (static_cast<std::int64_t>(f.data.size()) != f.size ||
          sha256(std::string_view(f.data)) != f.hash) {
        next_holder(request.fragment, "bad data (hashes to " + hash_of_text(f.data) + ")");
        continue;
      }
      part.write(f.offset, f.data);
      f.data.clear();
      f.data.shrink_to_fit();
      f.done = true;
      done_bytes += f.size;
      progress.update(done_bytes);
    }
  }

  if (!missing.empty()) {
    std::string why = std::to_string(missing.size()) + " of " + std::to_string(fragments.size()) +
                      " fragments of " + options.hash +
                      " could not be fetched; what was fetched is kept in " + part_path +
                      " and a new get resumes from it:";
    for (std::size_t i = 0; i < missing.size() && i < 10; ++i) {
      const Fragment& f = fragments[missing[i]];
      why += "\n  fragment " + std::to_string(missing[i]) + " " + f.hash.to_hex() + ": ";
      if (f.holders.empty()) why += "no edge holds it";
      for (std::size_t p = 0; p < f.problems.size(); ++p) why += (p ? "; " : "") + f.problems[p];
    }
    throw CliError(why);
  }

  // The whole file, read back from disk, must be the file asked for.
  Sha256 whole;
  for (const auto& f : fragments) {
    const std::string data = part.read(f.offset, static_cast<std::size_t>(f.size));
    whole.update(std::span(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
  }
  if (const Hash actual = whole.finish(); actual != *hash)
    throw CliError("the assembled file hashes to " + actual.to_hex() + ", not " + options.hash +
                   "; " + part_path + " is kept");
  part.sync();
  if (::rename(part_path.c_str(), options.output.c_str()) != 0)
    throw CliError("cannot rename " + part_path + " to " + options.output + ": " +
                   std::strerror(errno));
  progress.finish("verified " + human_bytes(file.size_bytes) + " in " +
                  std::to_string(fragments.size()) + " fragments");
  return exit_status::ok;
}

}  // namespace mqds::cli
