// kaban-server: the sync server's command-line front end over kaban::server.
#include <iostream>

#include <CLI/CLI.hpp>

#include "kaban/protocol/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "kaban-server: distributes courses, relays staff messages and enforces device policy\n"
      "for Kaban agents over mutual TLS."};
  app.set_version_flag("--version", std::string(kaban::protocol::kaban_version()));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::cout << app.help();
  return 0;
}
