// proxykv generate: greedy generation from a text prompt.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "model_options.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/tokenizer.h"

namespace proxykv::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string tokenizer;  // default: <model>/tokenizer.json
  std::string prompt;
  int64_t max_tokens = 32;
  bool add_bos = false;
  RuntimeOptions runtime;
};

Status run_generate(const GenerateArgs& args) {
  args.runtime.apply();
  const std::string tok_path =
      args.tokenizer.empty() ? (std::filesystem::path(args.model) / "tokenizer.json").string() : args.tokenizer;
  PROXYKV_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::from_file(tok_path));
  PROXYKV_ASSIGN_OR_RETURN(auto model, DecoderLM::load(args.model, args.runtime.load_options()));
  std::vector<int32_t> ids32 = tokenizer.encode(args.prompt);
  std::vector<int64_t> ids(ids32.begin(), ids32.end());
  if (args.add_bos && model->spec().bos_token_id) ids.insert(ids.begin(), *model->spec().bos_token_id);
  if (ids.empty()) return invalid_argument("the prompt encodes to no tokens");
  for (int64_t id : ids) {
    if (id < 0 || id >= model->spec().vocab_size) {
      return out_of_range("token id " + std::to_string(id) + " from the tokenizer is outside the model's vocabulary");
    }
  }
  std::vector<int64_t> stop;
  if (model->spec().eos_token_id) stop.push_back(*model->spec().eos_token_id);
  KvCache cache = model->new_cache();
  std::vector<int64_t> out =
      model->generate_greedy(at::tensor(ids, at::TensorOptions().dtype(at::kLong)), cache, args.max_tokens, stop);
  if (!out.empty() && !stop.empty() && out.back() == stop.front()) out.pop_back();
  std::cout << tokenizer.decode(std::vector<int32_t>(out.begin(), out.end()), /*skip_special_tokens=*/true) << "\n";
  return Status::ok();
}

}  // namespace

void register_generate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "greedy generation from a text prompt");
  cmd->add_option("--model", args->model, "HF model directory (config.json, weights, tokenizer.json)")->required();
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--prompt", args->prompt, "prompt text (special tokens such as <bos> are recognised)")->required();
  cmd->add_option("--max-tokens", args->max_tokens, "tokens to generate at most")->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--add-bos", args->add_bos, "prepend the model's bos_token_id");
  args->runtime.add_to(cmd);
  on_run(cmd, [args] { return run_generate(*args); });
}

}  // namespace proxykv::cli
