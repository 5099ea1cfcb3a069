#include "broker.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

extern char** environ;

namespace mqds::broker_test {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int start_attempts_max = 5;

// Binds 127.0.0.1:0 and gives the port back to the kernel; the broker binds it right after. Another
// process may take it in between: start() then tries another one.
int pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

bool accepts_connections(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return ok;
}

std::string read_file(const std::string& path, std::size_t from = 0) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(from));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::size_t file_size(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<std::size_t>(size);
}

std::string last_lines(const std::string& text, std::size_t lines) {
  std::size_t at = text.size();
  if (at > 0 && text[at - 1] == '\n') --at;
  for (std::size_t n = 0; n < lines && at > 0; ++n) {
    const auto newline = text.rfind('\n', at - 1);
    if (newline == std::string::npos) return text;
    at = newline;
  }
  return text.substr(at == 0 ? 0 : at + 1);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped with status " + std::to_string(status);
}

int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return status;
}

// Gives a path to the user Debian's broker drops to, when we run as root. Without that user the
// broker keeps running as root and needs nothing.
void give_to_mosquitto_user(const std::string& path) {
  if (::geteuid() != 0) return;
  const passwd* user = ::getpwnam("mosquitto");
  if (!user) return;
  if (::chown(path.c_str(), user->pw_uid, user->pw_gid) != 0)
    ADD_FAILURE() << "chown " << path << " to mosquitto: " << std::strerror(errno);
}

}  // namespace

std::optional<std::string> find_mosquitto() {
  if (const char* explicit_path = std::getenv("MQDS_MOSQUITTO"); explicit_path && *explicit_path) {
    if (::access(explicit_path, X_OK) == 0) return std::string(explicit_path);
    return std::nullopt;
  }
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string entries(path);
    std::size_t at = 0;
    while (at <= entries.size()) {
      const auto colon = entries.find(':', at);
      const auto end = colon == std::string::npos ? entries.size() : colon;
      if (end > at) dirs.push_back(entries.substr(at, end - at));
      at = end + 1;
    }
  }
  dirs.emplace_back("/usr/sbin");
  dirs.emplace_back("/usr/local/sbin");
  for (const auto& dir : dirs) {
    const std::string candidate = dir + "/mosquitto";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

Broker::Broker(BrokerConfig config) : config_(std::move(config)) {
  char pattern[] = "/tmp/mqds-broker-XXXXXX";
  if (!::mkdtemp(pattern)) {
    ADD_FAILURE() << "mkdtemp under /tmp failed: " << std::strerror(errno)
                  << "; check that /tmp is writable";
    return;
  }
  dir_ = pattern;
  // The broker runs as `mosquitto` after dropping root: it must be able to reach data/ and the log.
  ::chmod(dir_.c_str(), 0755);
  if (::mkdir(data_dir().c_str(), 0755) != 0)
    ADD_FAILURE() << "mkdir " << data_dir() << ": " << std::strerror(errno);
  if (config_.chown_data_dir) give_to_mosquitto_user(data_dir());
  std::ofstream(log_path()).close();
  give_to_mosquitto_user(log_path());
  port_ = pick_free_port();
  trace_.emplace(__FILE__, __LINE__, where());
}

Broker::~Broker() {
  if (pid_ > 0) {
    auto stopped = stop();
    if (!stopped) ADD_FAILURE() << stopped.message();
  }
  if (dir_.empty()) return;
  const bool failed = ::testing::Test::HasFailure();
  const char* keep_env = std::getenv("MQDS_KEEP_TEST_DIRS");
  const bool keep = failed || (keep_env && *keep_env && std::string(keep_env) != "0");
  if (failed) {
    std::cerr << "[ broker   ] the test failed; the broker's directory is kept: " << dir_ << "\n"
              << "[ broker   ] log: " << log_path() << " (stdout/stderr: " << out_path()
              << "); its last lines:\n"
              << log_tail(30) << "\n";
  }
  if (!keep) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string Broker::where() const {
  return "broker log: " + log_path() + " (stdout/stderr in " + out_path() +
         "; kept when the test fails, or always with MQDS_KEEP_TEST_DIRS=1)";
}

std::string Broker::log() const {
  std::string text = read_file(log_path());
  const std::string out = read_file(out_path());
  if (!out.empty()) text += "\n--- broker stdout/stderr ---\n" + out;
  return text;
}

std::string Broker::log_tail(std::size_t lines) const {
  return last_lines(log(), lines);
}

void Broker::write_config() const {
  std::ofstream conf(dir_ + "/mosquitto.conf", std::ios::trunc);
  for (const auto& line : config_.first_config_lines) conf << line << "\n";
  conf << "listener " << port_ << " 127.0.0.1\n";
  for (const auto& line : config_.listener_lines) conf << line << "\n";
  conf << "allow_anonymous " << (config_.allow_anonymous ? "true" : "false") << "\n"
       << "sys_interval 1\n"
       << "log_dest file " << log_path() << "\n";
  for (const auto& type : config_.log_types) conf << "log_type " << type << "\n";
  if (config_.load_plugin) {
    conf << "plugin " << MQDS_PLUGIN_PATH << "\n";
    bool names_data_dir = false, names_acl_fallback = false, names_edges = false;
    for (const auto& [key, value] : config_.plugin_options) {
      conf << "plugin_opt_" << key << " " << value << "\n";
      names_data_dir = names_data_dir || key == "data_dir";
      names_acl_fallback = names_acl_fallback || key == "acl_fallback";
      names_edges = names_edges || key == "edge_users" || key == "edge_ids";
    }
    // Anonymous test clients join as torrent servers under any id, as the specification has it.
    if (!names_edges) conf << "plugin_opt_edge_users *\nplugin_opt_edge_ids any\n";
    if (config_.default_data_dir && !names_data_dir)
      conf << "plugin_opt_data_dir " << data_dir() << "\n";
    // This broker has no ACL of its own: what the plugin does not refuse is allowed.
    if (!names_acl_fallback) conf << "plugin_opt_acl_fallback allow\n";
  }
  for (const auto& line : config_.extra_config_lines) conf << line << "\n";
}

::testing::AssertionResult Broker::start() {
  if (dir_.empty())
    return ::testing::AssertionFailure() << "the broker has no directory (mkdtemp failed)";
  if (pid_ > 0)
    return ::testing::AssertionFailure() << "the broker already runs (pid " << pid_ << ")";
  const bool keep_port = port_fixed_;
  std::string failure;
  for (int attempt = 1; attempt <= start_attempts_max; ++attempt) {
    switch (spawn_and_wait(failure)) {
      case Spawned::ready: port_fixed_ = true; return ::testing::AssertionSuccess();
      case Spawned::failed: return ::testing::AssertionFailure() << failure;
      case Spawned::port_taken:
        if (keep_port) {
          std::this_thread::sleep_for(200ms);  // a restart keeps its port: wait for it to be free
        } else {
          port_ = pick_free_port();
        }
        break;
    }
  }
  return ::testing::AssertionFailure() << "the broker found its port taken " << start_attempts_max
                                       << " times; last attempt: " << failure;
}

Broker::Spawned Broker::spawn_and_wait(std::string& failure) {
  const auto mosquitto = find_mosquitto();
  if (!mosquitto) {
    failure =
        "the mosquitto broker is not installed (looked at $MQDS_MOSQUITTO, PATH, /usr/sbin, "
        "/usr/local/sbin): "
        "run scripts/setup.sh to install Debian's mosquitto";
    return Spawned::failed;
  }
  write_config();
  const std::size_t log_from = file_size(log_path());
  const std::size_t out_from = file_size(out_path());
  const std::string conf = dir_ + "/mosquitto.conf";

  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed, and the test has other threads (its MQTT clients).
  std::vector<std::string> env_text;
  for (char** e = environ; *e; ++e) {
    std::string entry(*e);
#ifdef MQDS_BROKER_PRELOAD
    if (entry.rfind("LD_PRELOAD=", 0) == 0 || entry.rfind("ASAN_OPTIONS=", 0) == 0) continue;
#endif
    env_text.push_back(std::move(entry));
  }
#ifdef MQDS_BROKER_PRELOAD
  // A sanitized plugin in Debian's unsanitized broker: the ASan runtime (and libstdc++, see
  // CMakeLists.txt) must be loaded first, and the broker's own allocations at exit are not ours to
  // judge.
  env_text.push_back(std::string("LD_PRELOAD=") + MQDS_BROKER_PRELOAD);
  const char* asan_options = std::getenv("ASAN_OPTIONS");
  env_text.push_back(
      std::string("ASAN_OPTIONS=detect_leaks=0") +
      (asan_options && *asan_options ? std::string(":") + asan_options : std::string()));
#endif
  std::vector<char*> envp;
  for (auto& entry : env_text) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::string arg0 = *mosquitto, arg1 = "-c", arg2 = conf;
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};

  const int out_fd = ::open(out_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out_fd < 0 || null_fd < 0) {
    failure = "cannot open " + out_path() + " or /dev/null: " + std::strerror(errno);
    if (out_fd >= 0) ::close(out_fd);
    if (null_fd >= 0) ::close(null_fd);
    return Spawned::failed;
  }
  const long open_max = ::sysconf(_SC_OPEN_MAX);
  const int close_to = open_max > 0 && open_max < 65536 ? static_cast<int>(open_max) : 65536;
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
    // The test's own sockets must not leak into the broker, or closing them would not close them.
    if (::close_range(3, ~0U, 0) != 0)
      for (int fd = 3; fd < close_to; ++fd) ::close(fd);
    ::execve(argv[0], argv, envp.data());
    static const char message[] = "exec of mosquitto failed\n";
    [[maybe_unused]] auto ignored = ::write(2, message, sizeof message - 1);
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(null_fd);
  if (child < 0) {
    failure = std::string("fork failed: ") + std::strerror(errno);
    return Spawned::failed;
  }
  pid_ = child;

  const auto deadline = Clock::now() + startup_timeout;
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      last_status_ = status;
      const std::string started = read_file(log_path(), log_from) + read_file(out_path(), out_from);
      if (started.find("Address already in use") != std::string::npos) {
        failure = "port " + std::to_string(port_) + " already in use";
        return Spawned::port_taken;
      }
      failure = "mosquitto " + describe_status(status) + " while starting; " + where() +
                "; its last lines:\n" + log_tail(25);
      return Spawned::failed;
    }
    // "running" is logged once the listeners are open and the plugin is initialised; connecting
    // also proves that the port is ours and not another broker's.
    const std::string started = read_file(log_path(), log_from);
    if (started.find(" running") != std::string::npos && accepts_connections(port_))
      return Spawned::ready;
    std::this_thread::sleep_for(20ms);
  }
  kill9();
  failure = "mosquitto did not come up on port " + std::to_string(port_) + " within " +
            std::to_string(startup_timeout.count()) + " ms (killed); " + where() +
            "; its last lines:\n" + log_tail(25);
  return Spawned::failed;
}

std::optional<int> Broker::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      last_status_ = status;
      return status;
    }
    if (done < 0 && errno == ECHILD) {  // reaped elsewhere: nothing more to learn
      pid_ = -1;
      return last_status_;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

::testing::AssertionResult Broker::stop() {
  if (pid_ <= 0) return ::testing::AssertionSuccess();
  const pid_t stopping = pid_;
  if (!running()) {
    return ::testing::AssertionFailure()
           << "mosquitto (pid " << stopping << ") had already " << describe_status(last_status_)
           << " before the test stopped it: it crashed or was killed; " << where()
           << "; its last lines:\n"
           << log_tail(25);
  }
  ::kill(stopping, SIGTERM);
  if (const auto status = wait_exit(stop_timeout)) {
    if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "mosquitto (pid " << stopping << ") " << describe_status(*status)
           << " on SIGTERM instead of exiting cleanly; " << where() << "; its last lines:\n"
           << log_tail(25);
  }
  kill9();
  return ::testing::AssertionFailure()
         << "mosquitto (pid " << stopping << ") did not stop within " << stop_timeout.count()
         << " ms of SIGTERM and was killed; " << where() << "; its last lines:\n"
         << log_tail(25);
}

void Broker::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  if (!wait_exit(stop_timeout))
    ADD_FAILURE() << "mosquitto (pid " << pid_ << ") survived SIGKILL for 5 s";
}

::testing::AssertionResult Broker::restart() {
  if (auto stopped = stop(); !stopped) return stopped;
  return start();
}

std::optional<int> Broker::start_expecting_exit(std::chrono::milliseconds timeout) {
  if (!find_mosquitto()) {
    ADD_FAILURE() << "the mosquitto broker is not installed: run scripts/setup.sh to install "
                     "Debian's mosquitto";
    return std::nullopt;
  }
  auto started = start();
  if (pid_ <= 0) {
    // start() saw it exit; the status is what it left.
    return started ? std::nullopt : std::optional<int>(status_code(last_status_));
  }
  if (const auto status = wait_exit(timeout)) return status_code(*status);
  kill9();
  return std::nullopt;
}

bool Broker::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    last_status_ = status;
    return false;
  }
  return true;
}

}  // namespace mqds::broker_test
