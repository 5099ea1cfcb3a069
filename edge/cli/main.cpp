// mqds: the command line people and scripts use to put files into the service, get them back, and
// see its state. It talks to the tracker plugin (ingest, query) and to the edges (fetch) through
// the broker; see the README.
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

#include "commands.hpp"
#include "runtime/allocator.hpp"
#include "runtime/connection_options.hpp"

int main(int argc, char** argv) {
  using namespace mqds;
  using namespace mqds::cli;
  // put and get hold a few dozen MiB of fragments at a time; a short-lived command keeps them.
  runtime::keep_freed_memory(32 << 20, 256 << 20);
  CLI::App app{"mqds: put files into an mqds service, get them back, and see its state.", "mqds"};
  app.set_help_flag("--help", "print this help and exit");
  app.require_subcommand(1);
  runtime::ConnectionOptions connection;
  runtime::add_connection_options(app, connection);
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "no progress on stderr");

  PutOptions put_options;
  auto* put_command =
      app.add_subcommand("put", "upload a file; prints its hash (uppercase hex) as the last line");
  put_command->add_option("FILE", put_options.path, "the file to upload")
      ->required()
      ->check(CLI::ExistingFile);
  bool no_wait = false;
  put_command->add_flag("--no-wait", no_wait,
                        "return once the tracker published the file, before it is replicated");
  int wait_seconds = 600;
  put_command
      ->add_option("--wait-timeout", wait_seconds,
                   "seconds to wait for every fragment's k replicas")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));

  GetOptions get_options;
  auto* get_command =
      app.add_subcommand("get", "download a file by its hash, verified, written atomically");
  get_command->add_option("HASH", get_options.hash, "the file's hash (64 hexadecimal characters)")
      ->required();
  get_command->add_option("-o,--output", get_options.output, "where to write it")->required();
  get_command->add_option("--parallel", get_options.parallel, "fragments fetched at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));

  bool ls_json = false, status_json = false;
  auto* ls_command =
      app.add_subcommand("ls", "the files: hash, size, fragments, replicas present and desired");
  ls_command->add_flag("--json", ls_json, "JSON for scripts");
  auto* status_command =
      app.add_subcommand("status", "the edges: fragments and bytes stored, capacity, balance");
  status_command->add_flag("--json", status_json, "JSON for scripts");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_status::usage;
  }
  if (auto problem = runtime::check_connection_options(connection)) {
    std::cerr << "mqds: " << *problem << "\n";
    return exit_status::usage;
  }
  std::signal(SIGPIPE, SIG_IGN);
  try {
    CliSession session(connection);
    session.connect();
    if (*put_command) {
      put_options.wait = !no_wait;
      put_options.wait_timeout = std::chrono::seconds(wait_seconds);
      put_options.quiet = quiet;
      return put(session, put_options);
    }
    if (*get_command) {
      get_options.quiet = quiet;
      return get(session, get_options);
    }
    if (*ls_command) return list_files(session, ls_json);
    return show_status(session, status_json);
  } catch (const std::exception& e) {
    std::cerr << "mqds: " << e.what() << "\n";
    return exit_status::failed;
  }
}
