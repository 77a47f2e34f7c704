// proxykv: the offline command-line tool. Each subcommand lives in its own cmd_*.cpp and registers itself here.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "commands.h"
#include "proxykv/core/logging.h"

int main(int argc, char** argv) {
  CLI::App app{"proxykv: offline tools for ProxyKV (forward, generate, tokenize, ...)"};
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")->envname("PROXYKV_LOG_LEVEL");
  app.parse_complete_callback([&] {
    if (!proxykv::set_log_level(log_level)) throw CLI::ValidationError("--log-level", "unknown level " + log_level);
  });
  proxykv::cli::register_all(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "proxykv: error: " << e.what() << "\n";
    return 1;
  }
  return proxykv::cli::exit_code();
}
