// proxykv eval: accuracy of a target model on task files (JSONL), per method and task.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "model_options.h"
#include "proxykv/eval/evaluator.h"
#include "proxykv/eval/proxy_methods.h"

namespace proxykv::cli {
namespace {

struct EvalArgs {
  std::string target;
  std::vector<std::string> data;
  std::vector<std::string> methods{"full"};
  std::vector<double> ratios{0.1, 0.2, 0.3, 0.5, 0.7};
  std::string level = "global";
  double head_floor = 0.0;
  std::string out;
  std::string plot;
  std::string answers;  // JSONL of every query's answer per method and ratio
  int64_t kvzip_chunk = 2048;
  uint64_t seed = 0;
  std::string proxy;                // proxy model directory (proxy methods)
  std::vector<std::string> mappers;  // DIR (as "proxykv") or NAME=DIR
  std::string iam;                  // IAM map JSON (kvzip_iam)
  int64_t limit = 0;
  int64_t max_answer_tokens = 48;
  std::vector<int64_t> whole_layers;  // diagnostic: layers kept whole
  std::vector<std::string> whole_words;  // diagnostic: words whose context tokens are kept everywhere
  RuntimeOptions runtime;
};

// A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise (logs stay readable).
class ProgressBar {
 public:
  ProgressBar() : tty_(::isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()) {}
  void operator()(int64_t done, int64_t total) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double eta = done ? elapsed / done * (total - done) : 0;
    const int width = 30, filled = static_cast<int>(width * done / std::max<int64_t>(total, 1));
    const int decile = static_cast<int>(10 * done / std::max<int64_t>(total, 1));
    if (!tty_ && decile == last_decile_ && done != total) return;
    last_decile_ = decile;
    std::cerr << (tty_ ? "\r" : "") << "[" << std::string(filled, '#') << std::string(width - filled, '.') << "] "
              << done << "/" << total << " contexts, " << std::fixed << std::setprecision(0) << elapsed << " s, ETA "
              << eta << " s" << (tty_ && done != total ? "" : "\n") << std::flush;
  }

 private:
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  int last_decile_ = -1;
};

Status run_eval(const EvalArgs& args) {
  args.runtime.apply();
  PROXYKV_ASSIGN_OR_RETURN(auto target, DecoderLM::load(args.target, args.runtime.load_options()));
  PROXYKV_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                           Tokenizer::from_file((std::filesystem::path(args.target) / "tokenizer.json").string()));
  std::vector<tasks::TaskContext> contexts;
  for (const auto& file : args.data) {
    PROXYKV_ASSIGN_OR_RETURN(auto read, tasks::read_task_file(file));
    const size_t n = args.limit > 0 ? std::min<size_t>(read.size(), args.limit) : read.size();
    contexts.insert(contexts.end(), read.begin(), read.begin() + n);
  }
  if (contexts.empty()) return invalid_argument("the data files hold no contexts");
  eval::EvalOptions options;
  options.methods = args.methods;
  options.ratios = args.ratios;
  options.max_answer_tokens = args.max_answer_tokens;
  options.kvzip_chunk = args.kvzip_chunk;
  options.seed = args.seed;
  for (int64_t l : args.whole_layers) {
    if (l < 0 || l >= target->spec().num_layers) {
      return invalid_argument("--whole-layers: layer " + std::to_string(l) + " is not in [0, " +
                              std::to_string(target->spec().num_layers) + ")");
    }
  }
  options.whole_layers = args.whole_layers;
  for (const std::string& word : args.whole_words) {
    const std::optional<int32_t> id = tokenizer.token_to_id(word);
    if (!id) return invalid_argument("--whole-words: '" + word + "' is not a token of the target's tokenizer");
    options.whole_token_ids.push_back(*id);
  }
  options.record_answers = !args.answers.empty();
  PROXYKV_ASSIGN_OR_RETURN(options.level, scoring::parse_selection_level(args.level));
  options.head_floor = args.head_floor;
  if (Status s = scoring::check_head_floor(options.head_floor, options.level); !s.is_ok()) {
    return invalid_argument("--head-floor: " + s.message());
  }
  std::unique_ptr<DecoderLM> proxy;
  eval::ProxyMethods proxy_methods;
  if (!args.proxy.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(proxy, DecoderLM::load(args.proxy, args.runtime.load_options()));
    if (proxy->spec().vocab_size != target->spec().vocab_size) {
      return invalid_argument("--proxy and --target have different vocabularies: not one family");
    }
    proxy_methods.proxy = proxy.get();
    mapper::MapperPairShape shape;
    shape.proxy_layers = proxy->spec().num_layers;
    shape.proxy_kv_heads = proxy->spec().num_kv_heads;
    shape.target_layers = target->spec().num_layers;
    shape.target_kv_heads = target->spec().num_kv_heads;
    for (const auto& spec : args.mappers) {
      const auto eq = spec.find('=');
      const std::string name = eq == std::string::npos ? "proxykv" : spec.substr(0, eq);
      const std::string dir = eq == std::string::npos ? spec : spec.substr(eq + 1);
      PROXYKV_ASSIGN_OR_RETURN(mapper::MapperConfig mc, mapper::read_mapper_config(dir));
      shape.channels = mc.shape.channels;
      PROXYKV_ASSIGN_OR_RETURN(mapper::LoadedMapper loaded, mapper::load_mapper(dir, shape));
      if (!loaded.trained_level.empty() && loaded.trained_level != args.level) {
        std::cerr << "eval: warning: mapper " << name << " (" << dir << ") was trained for selection level "
                  << loaded.trained_level << ", evaluated here at level " << args.level << "\n";
      }
      PROXYKV_ASSIGN_OR_RETURN(std::vector<std::string> channels, eval::mapper_channels(dir));
      proxy_methods.mapper_channels[name] = channels;
      proxy_methods.mappers[name] = std::make_shared<mapper::LoadedMapper>(std::move(loaded));
    }
    if (!args.iam.empty()) {
      PROXYKV_ASSIGN_OR_RETURN(proxy_methods.iam_map,
                               eval::load_iam_map(args.iam, shape.proxy_layers * shape.proxy_kv_heads,
                                                  shape.target_layers * shape.target_kv_heads));
    }
    options.proxy_methods = &proxy_methods;
  }
  PROXYKV_ASSIGN_OR_RETURN(eval::Evaluator evaluator, eval::Evaluator::create(*target, tokenizer, options));
  ProgressBar bar;
  PROXYKV_ASSIGN_OR_RETURN(eval::EvalReport report, evaluator.run(contexts, std::ref(bar)));
  nlohmann::json j = report.to_json();
  std::ofstream out(args.out);
  out << j.dump(2) << "\n";
  if (!out) return invalid_argument(args.out + ": cannot write results");
  if (!args.answers.empty()) {
    std::ofstream lines(args.answers);
    for (const eval::EvalAnswer& a : report.answers) lines << a.to_json().dump() << "\n";
    if (!lines) return invalid_argument(args.answers + ": cannot write answers");
  }
  std::cout << std::left << std::setw(10) << "method" << std::setw(7) << "ratio" << std::setw(20) << "task"
            << std::setw(10) << "accuracy" << std::setw(10) << "fidelity" << std::setw(9) << "queries" << std::setw(12)
            << "kv_bytes"
            << "score_s\n";
  auto print = [](const nlohmann::json& row, const std::string& task) {
    std::cout << std::left << std::setw(10) << row["method"].get<std::string>() << std::setw(7) << std::fixed
              << std::setprecision(2) << row["keep_ratio"].get<double>() << std::setw(20) << task << std::setw(10)
              << std::setprecision(3) << row["accuracy"].get<double>() << std::setw(10) << row["fidelity"].get<double>()
              << std::setw(9) << row["queries"].get<int64_t>() << std::setw(12) << std::setprecision(0)
              << row["kv_bytes"].get<double>() << std::setprecision(4) << row["score_s"].get<double>() << "\n";
  };
  for (const auto& row : j["results"]) print(row, row["task"].get<std::string>());
  for (const auto& row : j["summary"]) print(row, "(all)");
  std::cout << "mean prefill " << std::setprecision(4) << j["prefill_s"].get<double>() << " s per context\n";
  if (!args.plot.empty()) {
    PROXYKV_RETURN_IF_ERROR(eval::plot_accuracy(j, args.plot, "accuracy vs keep ratio (" + args.level + ")"));
    std::cerr << "proxykv eval: wrote " << args.plot << "\n";
  }
  return Status::ok();
}

}  // namespace

void register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "accuracy of a target model on task files (JSONL), per method and task");
  cmd->add_option("--target", args->target, "target model directory (with tokenizer.json)")->required();
  cmd->add_option("--data", args->data, "task files, comma-separated")->required()->delimiter(',');
  cmd->add_option("--methods", args->methods, "compression methods, comma-separated")->delimiter(',');
  cmd->add_option("--ratios", args->ratios, "keep ratios (fraction of KV kept), comma-separated")->delimiter(',');
  cmd->add_option("--level", args->level, "selection level: global | layer | head | token");
  cmd->add_option("--head-floor", args->head_floor,
                  "global and layer levels: each (layer, KV head) first keeps its best head_floor x its even share of "
                  "the budget (Ada-KV's safeguard; 0: none, 1: head level)");
  cmd->add_option("--kvzip-chunk", args->kvzip_chunk, "KVzip reconstruction chunk (tokens)");
  cmd->add_option("--seed", args->seed, "seed of the random scorer");
  cmd->add_option("--proxy", args->proxy, "proxy model directory (proxykv, proxy_direct, kvzip_iam)");
  cmd->add_option("--mapper", args->mappers, "mapper checkpoint DIR (method proxykv) or NAME=DIR, comma-separated")
      ->delimiter(',');
  cmd->add_option("--iam", args->iam, "IAM head map JSON from calibrate-iam (method kvzip_iam)");
  cmd->add_option("--out", args->out, "results JSON")->required();
  cmd->add_option("--answers", args->answers,
                  "also write every query's answer (per method and ratio) to this JSONL file: id, task, method, "
                  "keep_ratio, question, answers, output, correct, same_as_full");
  cmd->add_option("--plot", args->plot, "accuracy-vs-ratio plot (PNG, needs gnuplot)");
  cmd->add_option("--limit", args->limit, "contexts per file at most (0: all)");
  cmd->add_option("--max-answer-tokens", args->max_answer_tokens, "greedy decoding budget per query");
  cmd->add_option("--whole-layers", args->whole_layers,
                  "diagnostic: layers that keep their whole cache under every method (comma-separated)")
      ->delimiter(',');
  cmd->add_option("--whole-words", args->whole_words,
                  "diagnostic: words (tokens) whose context entries every method keeps in every layer and head, "
                  "beyond its budget (comma-separated)")
      ->delimiter(',');
  args->runtime.add_to(cmd);
  on_run(cmd, [args] { return run_eval(*args); });
}

}  // namespace proxykv::cli
