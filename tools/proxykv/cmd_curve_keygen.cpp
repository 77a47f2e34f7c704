// proxykv curve-keygen: the deployment's CURVE server keypair (docs/operations.md "CURVE"), written as
// NAME.key (public) and NAME.key_secret (secret, mode 0600) for the curve_*_key_file keys and the Kubernetes
// Secret proxykv-curve (deploy/README.md).
#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.h"
#include "proxykv/transport/curve.h"

namespace proxykv::cli {

void register_curve_keygen(CLI::App& app) {
  struct Args {
    std::string out;
    std::string name = "cluster";
    bool force = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("curve-keygen", "write a CURVE keypair (NAME.key, NAME.key_secret) for the services");
  cmd->add_option("--out", args->out, "directory to write into (created when missing)")->required();
  cmd->add_option("--name", args->name, "file name stem")->capture_default_str();
  cmd->add_flag("--force", args->force, "overwrite an existing keypair");
  cmd->callback([args] {
    namespace fs = std::filesystem;
    const fs::path base = fs::path(args->out) / args->name;
    const std::string public_file = base.string() + ".key", secret_file = base.string() + ".key_secret";
    auto fail = [](const std::string& why) {
      std::cerr << "proxykv curve-keygen: " << why << "\n";
      set_exit_code(1);
    };
    if (!args->force && (fs::exists(public_file) || fs::exists(secret_file))) {
      return fail(public_file + " or " + secret_file + " exists (a running deployment may use it); --force replaces it");
    }
    std::error_code ec;
    fs::create_directories(args->out, ec);
    if (ec) return fail("cannot create " + args->out + ": " + ec.message());
    auto keys = transport::generate_curve_keypair();
    if (!keys.is_ok()) return fail(keys.status().to_string());
    if (Status s = transport::save_curve_keypair(*keys, args->out, args->name); !s.is_ok()) return fail(s.to_string());
    std::cerr << "proxykv curve-keygen: wrote " << public_file << " and " << secret_file << "\n";
    std::cout << keys->public_key << "\n";
  });
}

}  // namespace proxykv::cli
