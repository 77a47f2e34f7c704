// proxykv train-lm: trains a tiny-family model from a JSON config (models/configs/*.json).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <streambuf>

#include "commands.h"
#include "proxykv/training/lm_trainer.h"

namespace proxykv::cli {
namespace {

// Writes everything to two stream buffers (stdout and the log file); flushing one flushes both.
class TeeBuf : public std::streambuf {
 public:
  TeeBuf(std::streambuf* a, std::streambuf* b) : a_(a), b_(b) {}

 protected:
  int overflow(int c) override {
    if (c == traits_type::eof()) return traits_type::not_eof(c);
    const bool ok =
        a_->sputc(static_cast<char>(c)) != traits_type::eof() && b_->sputc(static_cast<char>(c)) != traits_type::eof();
    return ok ? c : traits_type::eof();
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    const std::streamsize na = a_->sputn(s, n), nb = b_->sputn(s, n);
    return std::min(na, nb);
  }
  int sync() override { return (a_->pubsync() == 0 && b_->pubsync() == 0) ? 0 : -1; }

 private:
  std::streambuf* a_;
  std::streambuf* b_;
};

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::ostringstream out;
  out << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return out.str();
}

}  // namespace

void register_train_lm(CLI::App& app) {
  struct Args {
    std::string config;
    bool resume = false;
    int64_t steps = -1;
    std::string log;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("train-lm", "train a tiny-family decoder with the TASKS.md curriculum");
  cmd->add_option("--config", args->config, "training config JSON")->required();
  cmd->add_flag("--resume", args->resume, "continue from <out_dir>/checkpoint when it exists");
  cmd->add_option("--stop-after", args->steps, "stop (with a checkpoint) after this many steps of this run");
  cmd->add_option("--log", args->log,
                  "also append the progress lines to this file (e.g. <out_dir>/train.log), after a '--- DATE' line");
  cmd->callback([args] {
    auto config = training::TrainLmConfig::from_file(args->config);
    if (!config.is_ok()) {
      std::cerr << "proxykv train-lm: " << config.status().to_string() << "\n";
      set_exit_code(1);
      return;
    }
    std::ofstream log_file;
    if (!args->log.empty()) {
      log_file.open(args->log, std::ios::app);
      if (!log_file) {
        std::cerr << "proxykv train-lm: cannot open --log " << args->log << " for appending\n";
        set_exit_code(1);
        return;
      }
      log_file << "--- " << utc_now() << " train-lm --config " << args->config << (args->resume ? " --resume" : "");
      if (args->steps >= 0) log_file << " --stop-after " << args->steps;
      log_file << std::endl;
    }
    TeeBuf tee(std::cout.rdbuf(), log_file.rdbuf());
    std::ostream tee_stream(&tee);
    std::ostream& progress = args->log.empty() ? std::cout : tee_stream;
    auto result = training::train_lm(*config, args->resume, progress, args->steps);
    progress.flush();
    if (!result.is_ok()) {
      std::cerr << "proxykv train-lm: " << result.status().to_string() << "\n";
      set_exit_code(1);
    }
  });
}

}  // namespace proxykv::cli
