// proxykv train-lm: trains a tiny-family model from a JSON config (models/configs/*.json).
#include <iostream>

#include "commands.h"
#include "proxykv/training/lm_trainer.h"

namespace proxykv::cli {

void register_train_lm(CLI::App& app) {
  struct Args {
    std::string config;
    bool resume = false;
    int64_t steps = -1;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("train-lm", "train a tiny-family decoder with the TASKS.md curriculum");
  cmd->add_option("--config", args->config, "training config JSON")->required();
  cmd->add_flag("--resume", args->resume, "continue from <out_dir>/checkpoint when it exists");
  cmd->add_option("--stop-after", args->steps, "stop (with a checkpoint) after this many steps of this run");
  cmd->callback([args] {
    auto config = training::TrainLmConfig::from_file(args->config);
    if (!config.is_ok()) {
      std::cerr << "proxykv train-lm: " << config.status().to_string() << "\n";
      set_exit_code(1);
      return;
    }
    auto result = training::train_lm(*config, args->resume, std::cout, args->steps);
    if (!result.is_ok()) {
      std::cerr << "proxykv train-lm: " << result.status().to_string() << "\n";
      set_exit_code(1);
    }
  });
}

}  // namespace proxykv::cli
