#include "commands.h"

#include <iostream>

namespace proxykv::cli {
namespace {
int g_exit_code = 0;
}

int exit_code() {
  return g_exit_code;
}
void set_exit_code(int code) {
  g_exit_code = code;
}

void on_run(CLI::App* cmd, std::function<Status()> run) {
  cmd->callback([cmd, run = std::move(run)] {
    const Status s = run();
    if (!s.is_ok()) {
      std::cerr << "proxykv " << cmd->get_name() << ": " << s.to_string() << "\n";
      set_exit_code(1);
    }
  });
}

void register_all(CLI::App& app) {
  register_forward(app);
  register_generate(app);
  register_tokenize(app);
  register_bench_decoder(app);
  register_train_lm(app);
  register_eval(app);
  register_bench_scoring(app);
  register_make_mapper_data(app);
  register_train_mapper(app);
  register_make_tasks(app);
  register_write_family_tokenizer(app);
  register_init_model(app);
  register_prune_model(app);
  register_average_models(app);
  register_curve_keygen(app);
  register_eval_repeat(app);
}

}  // namespace proxykv::cli
