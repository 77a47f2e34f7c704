// proxykv eval-repeat: reconstruction accuracy (tools/eval/include/proxykv/eval/reconstruction.h) of a model on
// task files: after the repeat prompt, teacher-forced next-token accuracy over the context, per task.
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "model_options.h"
#include "proxykv/eval/reconstruction.h"
#include "proxykv/tasks/task_suite.h"

namespace proxykv::cli {
namespace {

struct EvalRepeatArgs {
  std::string model;
  std::vector<std::string> data;
  std::string out;
  int64_t chunk = 256;
  int64_t tail = 8;
  int64_t limit = 0;
  RuntimeOptions runtime;
};

Status run_eval_repeat(const EvalRepeatArgs& args) {
  args.runtime.apply();
  PROXYKV_ASSIGN_OR_RETURN(auto model, DecoderLM::load(args.model, args.runtime.load_options()));
  PROXYKV_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                           Tokenizer::from_file((std::filesystem::path(args.model) / "tokenizer.json").string()));
  const PromptFormat format = PromptFormat::for_model(tokenizer, model->spec());
  eval::ReconstructionOptions options{args.chunk, args.tail};
  struct Row {
    eval::ReconstructionCount count;
    int64_t contexts = 0;
  };
  std::map<std::string, Row> per_task;
  eval::ReconstructionCount all;
  for (const auto& file : args.data) {
    PROXYKV_ASSIGN_OR_RETURN(auto contexts, tasks::read_task_file(file));
    const size_t n = args.limit > 0 ? std::min<size_t>(contexts.size(), args.limit) : contexts.size();
    for (size_t i = 0; i < n; ++i) {
      std::vector<int64_t> ids = format.context_ids(tokenizer, contexts[i].context);
      ids.erase(ids.begin(), ids.begin() + static_cast<int64_t>(format.context_prefix.size()));
      ids.resize(ids.size() - format.context_suffix.size());
      PROXYKV_ASSIGN_OR_RETURN(eval::ReconstructionCount c, eval::reconstruction_accuracy(*model, format, ids, options));
      Row& row = per_task[contexts[i].task];
      row.count.correct += c.correct;
      row.count.tokens += c.tokens;
      ++row.contexts;
      all.correct += c.correct;
      all.tokens += c.tokens;
      std::cerr << "\rproxykv eval-repeat: " << file << " " << (i + 1) << "/" << n << std::flush;
    }
    std::cerr << "\n";
  }
  if (all.tokens == 0) return invalid_argument("the data files hold no contexts");
  nlohmann::json results = nlohmann::json::array();
  std::cout << std::left << std::setw(20) << "task" << std::setw(10) << "accuracy" << std::setw(10) << "contexts"
            << "tokens\n";
  for (const auto& [task, row] : per_task) {
    results.push_back({{"task", task}, {"accuracy", row.count.accuracy()}, {"contexts", row.contexts},
                       {"tokens", row.count.tokens}});
    std::cout << std::setw(20) << task << std::setw(10) << std::fixed << std::setprecision(4) << row.count.accuracy()
              << std::setw(10) << row.contexts << row.count.tokens << "\n";
  }
  std::cout << std::setw(20) << "(all)" << std::setw(10) << all.accuracy() << std::setw(10) << "" << all.tokens << "\n";
  nlohmann::json j = {{"model", args.model},
                      {"chunk", args.chunk},
                      {"tail", args.tail},
                      {"results", results},
                      {"summary", {{"accuracy", all.accuracy()}, {"tokens", all.tokens}}}};
  std::ofstream out(args.out);
  out << j.dump(2) << "\n";
  if (!out) return invalid_argument(args.out + ": cannot write results");
  return Status::ok();
}

}  // namespace

void register_eval_repeat(CLI::App& app) {
  auto args = std::make_shared<EvalRepeatArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval-repeat", "reconstruction accuracy: teacher-forced next-token accuracy over the context after <repeat>");
  cmd->add_option("--model", args->model, "model directory (with tokenizer.json)")->required();
  cmd->add_option("--data", args->data, "task files, comma-separated")->required()->delimiter(',');
  cmd->add_option("--out", args->out, "results JSON")->required();
  cmd->add_option("--chunk", args->chunk, "context tokens per repeat chunk")->capture_default_str();
  cmd->add_option("--tail", args->tail, "previous chunk's tokens after the repeat prompt")->capture_default_str();
  cmd->add_option("--limit", args->limit, "contexts per file at most (0: all)");
  args->runtime.add_to(cmd);
  on_run(cmd, [args] { return run_eval_repeat(*args); });
}

}  // namespace proxykv::cli
