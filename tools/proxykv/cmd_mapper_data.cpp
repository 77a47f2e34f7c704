// proxykv make-mapper-data: proxy features + target KVzip labels for mapper training.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "model_options.h"
#include "proxykv/model/prompt_format.h"
#include "proxykv/scoring/scorer.h"
#include "proxykv/training/mapper_data.h"

namespace proxykv::cli {
namespace {

struct MapperDataArgs {
  std::string proxy, target, out;
  std::vector<std::string> data;
  std::vector<std::string> channels{"kvzip"};
  int64_t kvzip_chunk = 2048;
  int64_t window = 64;
  int64_t limit = 0;
  int64_t per_shard = 64;
  RuntimeOptions runtime;
};

Status run(const MapperDataArgs& args) {
  args.runtime.apply();
  PROXYKV_ASSIGN_OR_RETURN(auto proxy, DecoderLM::load(args.proxy, args.runtime.load_options()));
  PROXYKV_ASSIGN_OR_RETURN(auto target, DecoderLM::load(args.target, args.runtime.load_options()));
  PROXYKV_ASSIGN_OR_RETURN(Tokenizer tok,
                           Tokenizer::from_file((std::filesystem::path(args.target) / "tokenizer.json").string()));
  const PromptFormat format = PromptFormat::for_model(tok, target->spec());
  if (!format.family) {
    return invalid_argument("the target's tokenizer lacks the tiny family's special tokens (<bos> <ctx> </ctx> <q> <a> "
                            "<repeat>): the task files are in the family's language");
  }
  std::vector<tasks::TaskContext> contexts;
  for (const auto& file : args.data) {
    PROXYKV_ASSIGN_OR_RETURN(auto read, tasks::read_task_file(file));
    contexts.insert(contexts.end(), read.begin(), read.end());
  }
  training::MapperDataOptions opts;
  opts.features.channels = args.channels;
  scoring::apply_prompt_format(format, opts.features.scorer);
  opts.features.scorer.kvzip_chunk = args.kvzip_chunk;
  opts.features.scorer.window = args.window;
  opts.contexts_per_shard = args.per_shard;
  opts.limit = args.limit;
  PROXYKV_RETURN_IF_ERROR(training::make_mapper_data(*proxy, *target, tok, contexts, opts, args.out,
                                                     [](int64_t done, int64_t total) {
                                                       if (done % 16 == 0 || done == total) {
                                                         std::cerr << "make-mapper-data: " << done << "/" << total
                                                                   << " contexts\n";
                                                       }
                                                     }));
  std::cerr << "make-mapper-data: wrote " << args.out << "\n";
  return Status::ok();
}

}  // namespace

void register_make_mapper_data(CLI::App& app) {
  auto args = std::make_shared<MapperDataArgs>();
  CLI::App* cmd = app.add_subcommand("make-mapper-data", "proxy features and target KVzip labels for the mapper");
  cmd->add_option("--proxy", args->proxy, "proxy model directory")->required();
  cmd->add_option("--target", args->target, "target model directory (with tokenizer.json)")->required();
  cmd->add_option("--data", args->data, "task files (JSONL), comma-separated")->required()->delimiter(',');
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--channels", args->channels, "proxy feature channels")->delimiter(',');
  cmd->add_option("--kvzip-chunk", args->kvzip_chunk, "KVzip reconstruction chunk (tokens)");
  cmd->add_option("--window", args->window, "observation window of the attention channels");
  cmd->add_option("--limit", args->limit, "contexts at most (0: all)");
  cmd->add_option("--per-shard", args->per_shard, "contexts per shard");
  args->runtime.add_to(cmd);
  on_run(cmd, [args] { return run(*args); });
}

}  // namespace proxykv::cli
