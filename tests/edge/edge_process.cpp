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

// fork + exec of mqds-edge with stdout and stderr appended to `output_path`.
pid_t spawn(const std::vector<std::string>& args, const std::string& output_path) {
  std::vector<char*> argv;
  static std::string program = MQDS_EDGE_PATH;
  argv.push_back(program.data());
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

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
    : id_(std::move(id)), data_dir_(parent_dir + "/" + id_), log_path_(parent_dir + "/" + id_ + ".log") {}

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
  pid_ = spawn(args, log_path_);
  if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << std::strerror(errno);
  return ::testing::AssertionSuccess();
}

std::string EdgeProcess::log() const { return read_from(log_path_, log_start_); }

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
  for (std::size_t at = all.find(text); at != std::string::npos; at = all.find(text, at + text.size())) ++count;
  return count;
}

::testing::AssertionResult EdgeProcess::wait_log(std::string_view text, std::chrono::milliseconds timeout,
                                                 std::size_t count) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (log_count(text) >= count) return ::testing::AssertionSuccess();
    std::this_thread::sleep_for(20ms);
  }
  return ::testing::AssertionFailure() << id_ << " did not log \"" << text << "\" " << count << " time(s) within "
                                       << timeout.count() << " ms; its log:\n"
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

Completed run_edge(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  char pattern[] = "/tmp/mqds-edge-run-XXXXXX";
  const int fd = ::mkstemp(pattern);
  if (fd >= 0) ::close(fd);
  Completed completed;
  const pid_t pid = spawn(args, pattern);
  auto status = wait_for_exit(pid, timeout);
  if (!status) {
    ::kill(pid, SIGKILL);
    wait_for_exit(pid, 5s);
  }
  completed.status = status.value_or(-1);
  completed.output = read_from(pattern, 0);
  ::unlink(pattern);
  return completed;
}

}  // namespace mqds::edge_test
