// kaban: the staff member's command-line front end over kaban::agent.
#include <iostream>

#include <CLI/CLI.hpp>

#include "kaban/protocol/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "kaban: carries your training courses and staff messages on this device, encrypted,\n"
      "and keeps them readable offline."};
  app.set_version_flag("--version", std::string(kaban::protocol::kaban_version()));
  app.require_subcommand(0);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::cout << app.help();
  return 0;
}
