#include "edge_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace mqds::edge_test {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string read_from(const std::string& path, std::size_t from) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(from));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::size_t size_of(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<std::size_t>(size);
}

int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return status;
}

// fork + exec of `program` with stdout appended to `out_path` and stderr to `err_path`.
pid_t spawn(const std::string& program, const std::vector<std::string>& args,
            const std::string& out_path, const std::string& err_path) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int err =
        err_path == out_path ? out : ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) ::dup2(out, STDOUT_FILENO);
    if (err >= 0) ::dup2(err, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

const std::string edge_program = MQDS_EDGE_PATH;
const std::string mqds_program = MQDS_CLI_PATH;

std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status_code(status);
    if (r < 0) return std::nullopt;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

}  // namespace

EdgeProcess::EdgeProcess(std::string id, const std::string& parent_dir)
    : id_(std::move(id)),
      data_dir_(parent_dir + "/" + id_),
      log_path_(parent_dir + "/" + id_ + ".log") {}

EdgeProcess::~EdgeProcess() {
  if (running()) kill9();
  if (::testing::Test::HasFailure())
    std::cerr << "---- last lines of " << log_path_ << " ----\n" << log_tail() << "----\n";
}

::testing::AssertionResult EdgeProcess::start(int port, const std::vector<std::string>& extra) {
  if (running()) return ::testing::AssertionFailure() << id_ << " is already running";
  log_start_ = size_of(log_path_);
  std::vector<std::string> args{"-p", std::to_string(port), "-i", id_, "--data-dir", data_dir_};
  // Verbose unless the test asks for quiet: failures then show every decision.
  if (std::find(extra.begin(), extra.end(), "-q") == extra.end()) args.emplace_back("-v");
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = spawn(edge_program, args, log_path_, log_path_);
  if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << std::strerror(errno);
  return ::testing::AssertionSuccess();
}

std::string EdgeProcess::log() const {
  return read_from(log_path_, log_start_);
}

std::string EdgeProcess::log_tail(std::size_t lines) const {
  const std::string text = read_from(log_path_, 0);
  std::size_t at = text.size();
  for (std::size_t n = 0; n <= lines && at > 0; ++n) {
    const auto newline = text.rfind('\n', at - 1);
    if (newline == std::string::npos) return text;
    at = newline;
  }
  return text.substr(at == 0 ? 0 : at + 1);
}

std::size_t EdgeProcess::log_count(std::string_view text) const {
  const std::string all = log();
  std::size_t count = 0;
  for (std::size_t at = all.find(text); at != std::string::npos;
       at = all.find(text, at + text.size()))
    ++count;
  return count;
}

::testing::AssertionResult EdgeProcess::wait_log(std::string_view text,
                                                 std::chrono::milliseconds timeout,
                                                 std::size_t count) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (log_count(text) >= count) return ::testing::AssertionSuccess();
    std::this_thread::sleep_for(20ms);
  }
  return ::testing::AssertionFailure() << id_ << " did not log \"" << text << "\" " << count
                                       << " time(s) within " << timeout.count() << " ms; its log:\n"
                                       << log_tail();
}

std::optional<int> EdgeProcess::terminate(std::chrono::milliseconds timeout) {
  if (pid_ < 0) return std::nullopt;
  ::kill(pid_, SIGTERM);
  auto status = wait_for_exit(pid_, timeout);
  if (!status) {
    kill9();
    return std::nullopt;
  }
  pid_ = -1;
  return status;
}

void EdgeProcess::kill9() {
  if (pid_ < 0) return;
  ::kill(pid_, SIGKILL);
  wait_for_exit(pid_, 5s);
  pid_ = -1;
}

std::optional<int> EdgeProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ < 0) return std::nullopt;
  auto status = wait_for_exit(pid_, timeout);
  if (status) pid_ = -1;
  return status;
}

bool EdgeProcess::running() {
  if (pid_ < 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::optional<long> EdgeProcess::memory_kib(const std::string& field) const {
  if (pid_ < 0) return std::nullopt;
  std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return std::nullopt;
}

namespace {

Completed run(const std::string& program, const std::vector<std::string>& args,
              std::chrono::milliseconds timeout, bool separate) {
  char out_path[] = "/tmp/mqds-run-out-XXXXXX";
  char err_path[] = "/tmp/mqds-run-err-XXXXXX";
  for (char* path : {out_path, err_path}) {
    const int fd = ::mkstemp(path);
    if (fd >= 0) ::close(fd);
  }
  Completed completed;
  const pid_t pid = spawn(program, args, out_path, separate ? err_path : out_path);
  auto status = wait_for_exit(pid, timeout);
  if (!status) {
    ::kill(pid, SIGKILL);
    wait_for_exit(pid, 5s);
  }
  completed.status = status.value_or(-1);
  completed.out = read_from(out_path, 0);
  completed.err = separate ? read_from(err_path, 0) : std::string();
  completed.output = completed.out + completed.err;
  ::unlink(out_path);
  ::unlink(err_path);
  return completed;
}

}  // namespace

Completed run_edge(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  return run(edge_program, args, timeout, false);
}

Completed run_mqds(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  return run(mqds_program, args, timeout, true);
}

Completed run_program(const std::string& program, const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout) {
  return run(program, args, timeout, false);
}

}  // namespace mqds::edge_test
