// Who may be a torrent server, whose client id is whose, and TLS with certificate identities, in
// Debian's mosquitto with real boards (mqds-edge), the real command line and real attackers:
// - liars: clients that are not in plugin_opt_edge_users ask to join, anonymously, with an
//   account of their own, or with a board's account under another id; each is denied at once and
//   told why, and the boards that may join store the data;
// - takeover: a client that connects with a board's id, anonymously or as another user, is refused
//   at CONNECT and the board keeps its connection;
// - TLS: boards authenticate with certificates (the broker takes their identity as username and
//   client id), people with passwords over TLS, and the plugin binds board ids to those identities.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "edge_process.hpp"
#include "fixtures.hpp"

namespace mqds::edge_test {
namespace {

namespace reason = broker_test::reason;

const std::string openssl = "/usr/bin/openssl";
const std::string mosquitto_passwd = "/usr/bin/mosquitto_passwd";

// What the broker's authentication reads: a password file and, for TLS, a CA that signed the
// broker's certificate (for 127.0.0.1) and one client certificate per identity (its CN), all made
// here with openssl and mosquitto_passwd. In a directory of their own, readable by the user the
// broker runs as (mosquitto, when started as root), removed afterwards.
class Credentials {
 public:
  Credentials() {
    char pattern[] = "/tmp/mqds-credentials-XXXXXX";
    if (!::mkdtemp(pattern)) {
      ADD_FAILURE() << "mkdtemp under /tmp failed: " << std::strerror(errno);
      return;
    }
    dir_ = pattern;
    ::chmod(dir_.c_str(), 0755);  // the broker's user reads the files
  }
  ~Credentials() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  Credentials(const Credentials&) = delete;
  Credentials& operator=(const Credentials&) = delete;

  // The password file for these users (username, password).
  ::testing::AssertionResult add_passwords(
      const std::vector<std::pair<std::string, std::string>>& users) {
    for (const auto& [user, password] : users) {
      std::vector<std::string> args{"-b", password_file(), user, password};
      if (!std::filesystem::exists(password_file())) args.insert(args.begin(), "-c");
      if (auto r = ran(mosquitto_passwd, args); !r) return r;
    }
    ::chmod(password_file().c_str(), 0644);
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult make_certificates(const std::vector<std::string>& identities) {
    if (auto r = ran(openssl, {"req", "-x509", "-newkey", "ec", "-pkeyopt",
                               "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", path("ca.key"),
                               "-out", ca(), "-days", "2", "-subj", "/CN=mqds test CA"});
        !r)
      return r;
    std::ofstream(path("server.ext")) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    if (auto r = signed_certificate("server", "127.0.0.1", path("server.ext")); !r) return r;
    for (const auto& id : identities)
      if (auto r = signed_certificate(id, id, ""); !r) return r;
    for (const auto& entry : std::filesystem::directory_iterator(dir_))
      ::chmod(entry.path().c_str(), 0644);  // test keys, read by the broker's user
    return ::testing::AssertionSuccess();
  }

  std::string password_file() const { return path("passwords"); }
  std::string ca() const { return path("ca.crt"); }
  std::string cert(const std::string& name) const { return path(name + ".crt"); }
  std::string key(const std::string& name) const { return path(name + ".key"); }

  // The listener lines of a TLS listener with the broker's certificate.
  std::vector<std::string> tls_listener(int port) const {
    return {"listener " + std::to_string(port) + " 127.0.0.1", "cafile " + ca(),
            "certfile " + cert("server"), "keyfile " + key("server")};
  }

 private:
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  ::testing::AssertionResult signed_certificate(const std::string& name, const std::string& cn,
                                                const std::string& extensions) {
    if (auto r = ran(openssl,
                     {"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", key(name), "-out", path(name + ".csr"), "-subj", "/CN=" + cn});
        !r)
      return r;
    std::vector<std::string> args{"x509",
                                  "-req",
                                  "-in",
                                  path(name + ".csr"),
                                  "-CA",
                                  ca(),
                                  "-CAkey",
                                  path("ca.key"),
                                  "-CAcreateserial",
                                  "-out",
                                  cert(name),
                                  "-days",
                                  "2"};
    if (!extensions.empty()) args.insert(args.end(), {"-extfile", extensions});
    return ran(openssl, args);
  }

  static ::testing::AssertionResult ran(const std::string& program,
                                        const std::vector<std::string>& args) {
    const auto done = run_program(program, args);
    if (done.status == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << program << " exited with " << done.status << ": " << done.output;
  }

  std::string dir_;
};

// A loopback port nobody listens on now (the kernel's choice for port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
    port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

// The test service's options with these plugin options set (replaced, or added).
BrokerConfig service_config(const broker_test::PluginOptions& options) {
  BrokerConfig config = edge_config();
  for (const auto& [key, value] : options) {
    std::erase_if(config.plugin_options, [&](const auto& kv) { return kv.first == key; });
    config.plugin_options.emplace_back(key, value);
  }
  return config;
}

// A join request as the specification's torrent server sends it.
std::string spec_join() {
  ClientJoinRequested request;
  request.event_id = Uuid::v4_from(std::random_device{}(), 1);
  request.hash_algorithm = "SHA256";
  request.endpoints = {"tcp://127.0.0.1:" + std::to_string(free_port())};
  return encode(Event{request});
}

// Publishes a join as `liar` and waits for the ClientJoinDenied addressed to it: its Reason.
std::optional<std::string> denial_for(Client& liar) {
  if (!liar.subscribe(std::vector<std::string>{std::string(topics::client_join_denied),
                                               std::string(topics::client_registered)},
                      1))
    return std::nullopt;
  // The plugin refuses the publish itself (0x87 in the PUBACK) and answers with the denial.
  if (liar.publish(topics::client_join_requested, spec_join(), 1) != reason::not_authorized)
    return std::nullopt;
  const auto denied = liar.wait_for(
      [&](const Message& m) {
        if (m.topic != topics::client_join_denied) return false;
        const json event = json::parse(m.payload, nullptr, false);
        return event.is_object() && event.value("ClientIdentifier", "") == liar.id();
      },
      5s);
  if (!denied) return std::nullopt;
  return json::parse(denied->payload).value("Reason", "");
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

const std::string password = "correct horse";

class EdgeUsers : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(credentials.add_passwords(
        {{"edge-a", password}, {"edge-b", password}, {"mallory", password}}));
    BrokerConfig config =
        service_config({{"edge_users", "edge-a, edge-b"}, {"edge_ids", "username"}});
    config.extra_config_lines.push_back("password_file " + credentials.password_file());
    broker = std::make_unique<Broker>(config);
    ASSERT_TRUE(broker->start());
    monitor = std::make_unique<Monitor>(broker->port());
  }

  std::unique_ptr<EdgeProcess> start_edge(const std::string& id) {
    auto edge = std::make_unique<EdgeProcess>(id, broker->dir());
    EXPECT_TRUE(edge->start(broker->port(), {"-u", id, "-P", password}));
    return edge;
  }

  Credentials credentials;
  std::unique_ptr<Broker> broker;
  std::unique_ptr<Monitor> monitor;
};

// Issue: four anonymous clients joined beside two real edges (k = 2), answered for everything
// and stored nothing; put said yes, and the file could not be read back.
TEST_F(EdgeUsers, OnlyTheNamedUsersJoinAndEveryLiarIsToldWhy) {
  Client anonymous("liar-1");
  ASSERT_TRUE(anonymous.connect(broker->port()));
  const auto anonymous_reason = denial_for(anonymous);
  ASSERT_TRUE(anonymous_reason) << "no denial for an anonymous client";
  EXPECT_TRUE(contains(*anonymous_reason, "without a username")) << *anonymous_reason;

  Client stranger("mallory");
  stranger.set_credentials("mallory", password);
  ASSERT_TRUE(stranger.connect(broker->port()));
  const auto stranger_reason = denial_for(stranger);
  ASSERT_TRUE(stranger_reason) << "no denial for a user not in edge_users";
  EXPECT_EQ(*stranger_reason,
            "user 'mallory' may not be a torrent server: it is not in plugin_opt_edge_users");

  // A board's account under another id (one no board uses, so the broker lets it connect).
  Client borrowed("edge-z");
  borrowed.set_credentials("edge-a", password);
  ASSERT_TRUE(borrowed.connect(broker->port()));
  const auto borrowed_reason = denial_for(borrowed);
  ASSERT_TRUE(borrowed_reason) << "no denial for a board's account under another id";
  EXPECT_TRUE(contains(*borrowed_reason, "client id must be its username")) << *borrowed_reason;

  auto edge_a = start_edge("edge-a");
  auto edge_b = start_edge("edge-b");
  ASSERT_TRUE(
      monitor->wait_figures({{"clients/registered", "2"}, {"events/unauthorised", "3"}}, 10s));

  // The data lands on the boards and comes back.
  const Bytes content = random_content(12 * fragment_size + 3, 41);
  const std::string in = broker->dir() + "/in.bin", out = broker->dir() + "/out.bin";
  std::ofstream(in, std::ios::binary)
      .write(reinterpret_cast<const char*>(content.data()),
             static_cast<std::streamsize>(content.size()));
  const auto put = run_mqds({"-p", std::to_string(broker->port()), "put", in});
  ASSERT_EQ(put.status, 0) << put.err;
  ASSERT_TRUE(wait_distributed(*monitor, 13, 10s));
  const auto status = run_mqds({"-p", std::to_string(broker->port()), "status", "--json"});
  const json state = json::parse(status.out, nullptr, false);
  ASSERT_TRUE(state.is_object()) << status.out;
  ASSERT_EQ(state["Clients"].size(), 2u) << status.out;
  for (const auto& client : state["Clients"])
    EXPECT_EQ(client.value("Fragments", 0), 13) << "every copy is on a board: " << status.out;
  const auto got =
      run_mqds({"-p", std::to_string(broker->port()), "get", sha256(content).to_hex(), "-o", out});
  ASSERT_EQ(got.status, 0) << got.err;
  std::ifstream back(out, std::ios::binary);
  EXPECT_TRUE(Bytes(std::istreambuf_iterator<char>(back), {}) == content) << "the bytes differ";

  // The liars are still connected and were never registered; the broker says who was refused (the
  // first of them: the log is rate-limited).
  EXPECT_TRUE(anonymous.connected() && stranger.connected() && borrowed.connected());
  EXPECT_TRUE(monitor->wait_figures({{"clients/registered", "2"}}, 1s));
  EXPECT_TRUE(contains(broker->log(),
                       "refused clients/join/requested from client 'liar-1' (user "
                       "none): a client without a username may not be"))
      << broker->where();
}

// Issue: a client that connects with a board's id (anonymous, or any user) kicks the board off,
// and doing it again keeps the board out.
TEST_F(EdgeUsers, NobodyConnectsWithABoardsIdButTheBoard) {
  auto edge_a = start_edge("edge-a");
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "1"}}, 10s));
  ASSERT_TRUE(edge_a->wait_log("connected to", 5s));

  for (int attempt = 0; attempt < 3; ++attempt) {
    Client impostor("edge-a");
    impostor.set_credentials("mallory", password);
    EXPECT_FALSE(impostor.connect(broker->port())) << "another user took the board's id";
    EXPECT_EQ(impostor.connack_code(), reason::not_authorized);
    Client anonymous("edge-a");
    EXPECT_FALSE(anonymous.connect(broker->port())) << "an anonymous client took the board's id";
    // A board named in edge_users that has not connected yet is protected as well.
    Client early("edge-b");
    early.set_credentials("edge-a", password);
    EXPECT_FALSE(early.connect(broker->port())) << "a client took a named board's id";
  }
  ASSERT_TRUE(monitor->wait_figures({{"clients/refused_id", "9"}}, 5s));
  EXPECT_TRUE(monitor->wait_figures({{"clients/registered", "1"}, {"clients/lost", "0"}}, 1s));
  EXPECT_EQ(edge_a->log_count("connected to"), 1u) << "the board lost its connection";
  EXPECT_TRUE(contains(broker->log(),
                       "refused the connection of client 'edge-a' (user "
                       "'mallory'): that is a torrent server's client id"))
      << broker->where();

  // The board itself comes back under its id.
  ASSERT_EQ(edge_a->terminate(), 0);
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "0"}}, 5s));
  ASSERT_TRUE(edge_a->start(broker->port(), {"-u", "edge-a", "-P", password}));
  EXPECT_TRUE(monitor->wait_figures({{"clients/registered", "1"}}, 10s));
}

// The control for the test above: what mosquitto does when the plugin does not bind ids (as before
// plugin_opt_edge_ids existed). Another user asking for the board's id is let in and the board
// loses its connection; and a liar without a board's account joins when anyone may.
TEST(EdgeIdsAny, WithoutBoundIdsAnotherUserTakesTheBoardsIdAndLiarsJoin) {
  Credentials credentials;
  ASSERT_TRUE(credentials.add_passwords({{"edge-a", password}, {"mallory", password}}));
  BrokerConfig config = service_config({{"edge_users", "*"}, {"edge_ids", "any"}});
  config.extra_config_lines.push_back("password_file " + credentials.password_file());
  Broker broker(config);
  ASSERT_TRUE(broker.start());
  Monitor monitor(broker.port());
  EdgeProcess edge_a("edge-a", broker.dir());
  ASSERT_TRUE(edge_a.start(broker.port(), {"-u", "edge-a", "-P", password}));
  ASSERT_TRUE(monitor.wait_figures({{"clients/registered", "1"}}, 10s));

  Client impostor("edge-a");
  impostor.set_credentials("mallory", password);
  EXPECT_TRUE(impostor.connect(broker.port()));
  EXPECT_TRUE(monitor.wait_figures({{"clients/lost", "1"}}, 5s)) << "the board kept its session";

  Client liar("liar-1");
  ASSERT_TRUE(liar.connect(broker.port()));
  ASSERT_TRUE(
      liar.subscribe(std::vector<std::string>{std::string(topics::client_join_accepted)}, 1));
  EXPECT_EQ(liar.publish(topics::client_join_requested, spec_join(), 1), reason::success);
  EXPECT_TRUE(liar.wait_for(topics::client_join_accepted, 5s)) << "an anonymous liar was refused";
}

// Boards on a listener that takes their identity from their certificate (and makes it their client
// id), people with passwords on a TLS listener of their own, nobody anonymous.
class Tls : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(credentials.make_certificates({"board-1", "board-2", "mallory"}));
    ASSERT_TRUE(credentials.add_passwords({{"alice", password}, {"operator", password}}));
    boards_port = free_port();
    people_port = free_port();
    ASSERT_NE(boards_port, people_port);
    BrokerConfig config = service_config(
        {{"edge_users", "board-1,board-2"}, {"ingest_users", "alice"}, {"fetch_users", "alice"}});
    config.allow_anonymous = false;
    config.extra_config_lines.push_back("password_file " + credentials.password_file());
    for (const auto& line : credentials.tls_listener(boards_port))
      config.extra_config_lines.push_back(line);
    for (const char* line : {"require_certificate true", "use_identity_as_username true",
                             "use_username_as_clientid true"})
      config.extra_config_lines.emplace_back(line);
    for (const auto& line : credentials.tls_listener(people_port))
      config.extra_config_lines.push_back(line);
    broker = std::make_unique<Broker>(config);
    ASSERT_TRUE(broker->start());
    monitor =
        std::make_unique<Monitor>(broker->port(), std::pair{std::string("operator"), password});
  }

  std::unique_ptr<EdgeProcess> start_board(const std::string& identity, const std::string& id) {
    auto edge = std::make_unique<EdgeProcess>(id, broker->dir());
    EXPECT_TRUE(
        edge->start(boards_port, {"--cafile", credentials.ca(), "--cert",
                                  credentials.cert(identity), "--key", credentials.key(identity)}));
    return edge;
  }

  Completed mqds(std::vector<std::string> args) {
    args.insert(args.begin(), {"-p", std::to_string(people_port), "--cafile", credentials.ca(),
                               "-u", "alice", "-P", password});
    return run_mqds(args);
  }

  Credentials credentials;
  int boards_port = 0, people_port = 0;
  std::unique_ptr<Broker> broker;
  std::unique_ptr<Monitor> monitor;
};

TEST_F(Tls, BoardsWithCertificatesAndPeopleWithPasswordsOverTls) {
  auto board_1 = start_board("board-1", "board-1");
  auto board_2 = start_board("board-2", "board-2");
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "2"}}, 15s));

  const Bytes content = random_content(9 * fragment_size + 11, 43);
  const std::string in = broker->dir() + "/in.bin", out = broker->dir() + "/out.bin";
  std::ofstream(in, std::ios::binary)
      .write(reinterpret_cast<const char*>(content.data()),
             static_cast<std::streamsize>(content.size()));
  const auto put = mqds({"put", in});
  ASSERT_EQ(put.status, 0) << put.err;
  ASSERT_TRUE(wait_distributed(*monitor, 10, 10s));
  const auto got = mqds({"get", sha256(content).to_hex(), "-o", out});
  ASSERT_EQ(got.status, 0) << got.err;
  std::ifstream back(out, std::ios::binary);
  EXPECT_TRUE(Bytes(std::istreambuf_iterator<char>(back), {}) == content) << "the bytes differ";

  // Without the CA, the command line does not trust the broker; without a password, it is refused.
  const auto untrusted =
      run_mqds({"-p", std::to_string(people_port), "--cafile", credentials.cert("mallory"), "-u",
                "alice", "-P", password, "ls"});
  EXPECT_NE(untrusted.status, 0) << untrusted.out;
  const auto anonymous =
      run_mqds({"-p", std::to_string(people_port), "--cafile", credentials.ca(), "ls"});
  EXPECT_NE(anonymous.status, 0) << anonymous.out;
}

TEST_F(Tls, ACertificateIsNotABoardUnlessNamedAndCannotTakeABoardsId) {
  auto board_1 = start_board("board-1", "board-1");
  ASSERT_TRUE(monitor->wait_figures({{"clients/registered", "1"}}, 15s));

  // Mallory's certificate, asking for board-1's id on the boards' listener: the broker makes its
  // identity its id, so board-1 keeps its connection, and the plugin refuses it as a torrent
  // server.
  Client impostor("board-1");
  impostor.set_tls(credentials.ca(), credentials.cert("mallory"), credentials.key("mallory"));
  ASSERT_TRUE(impostor.connect(boards_port));
  ASSERT_TRUE(
      impostor.subscribe(std::vector<std::string>{std::string(topics::client_join_denied)}, 1));
  ASSERT_EQ(impostor.publish(topics::client_join_requested, spec_join(), 1),
            reason::not_authorized);
  const auto denied = impostor.wait_for(topics::client_join_denied, 5s);
  ASSERT_TRUE(denied) << "no denial for mallory";
  const json event = json::parse(denied->payload);
  EXPECT_EQ(event.value("ClientIdentifier", ""), "mallory") << "the broker gave it its identity";
  EXPECT_TRUE(contains(event.value("Reason", ""), "user 'mallory' may not be a torrent server"))
      << denied->payload;

  // With a password, on the people's listener, board-1's id is refused at CONNECT.
  Client alice("board-1");
  alice.set_tls(credentials.ca());
  alice.set_credentials("alice", password);
  EXPECT_FALSE(alice.connect(people_port)) << "alice took board-1's id";
  EXPECT_EQ(alice.connack_code(), reason::not_authorized);

  // mqds-edge with mallory's certificate is told why and keeps asking, without crashing.
  auto mallory = start_board("mallory", "mallory");
  EXPECT_TRUE(mallory->wait_log("may not be a torrent server", 10s)) << mallory->log_tail();
  EXPECT_TRUE(mallory->running());

  EXPECT_TRUE(monitor->wait_figures({{"clients/registered", "1"}, {"clients/lost", "0"}}, 2s));
  EXPECT_EQ(board_1->log_count("connected to"), 1u) << "board-1 lost its connection";
}

}  // namespace
}  // namespace mqds::edge_test
