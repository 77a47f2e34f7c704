// Subcommand registry of the proxykv CLI. Each cmd_*.cpp defines one register_* function.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

#include "proxykv/core/status.h"

namespace proxykv::cli {

void register_all(CLI::App& app);
// Exit code set by the subcommand that ran (0 = success).
int exit_code();
void set_exit_code(int code);
// Makes `run` the subcommand's action: a failed Status is printed as "proxykv <subcommand>: <status>" on stderr and
// sets exit code 1.
void on_run(CLI::App* cmd, std::function<Status()> run);

void register_forward(CLI::App& app);
void register_generate(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_bench_decoder(CLI::App& app);
void register_train_lm(CLI::App& app);
void register_eval(CLI::App& app);
void register_bench_scoring(CLI::App& app);
void register_make_mapper_data(CLI::App& app);
void register_train_mapper(CLI::App& app);
void register_make_tasks(CLI::App& app);
void register_write_family_tokenizer(CLI::App& app);
void register_init_model(CLI::App& app);
void register_curve_keygen(CLI::App& app);
void register_eval_repeat(CLI::App& app);
void register_prune_model(CLI::App& app);
void register_average_models(CLI::App& app);

}  // namespace proxykv::cli
