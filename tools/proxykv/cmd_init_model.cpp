// proxykv init-model: a randomly initialised model directory (config.json, model.safetensors and, for the tiny
// family's vocabulary, tokenizer.json), for benchmarks that need a model of a given shape but not a trained one
// (e.g. a larger target in bench/services_bench.py).
#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/tasks/vocabulary.h"

namespace proxykv::cli {
namespace {

struct InitModelArgs {
  std::string config;
  std::string out;
  uint64_t seed = 0;
  double init_std = 0.02;
};

Status run_init_model(const InitModelArgs& a) {
  std::ifstream in(a.config);
  if (!in) return not_found(a.config + ": cannot open");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument(a.config + ": not a JSON object");
  // A training config (models/configs/*.json) holds the HF config under "model".
  if (j.contains("model") && j["model"].is_object()) j = j["model"];
  PROXYKV_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::from_json(j, a.config));
  PROXYKV_ASSIGN_OR_RETURN(auto model, DecoderLM::random_init(spec, a.seed, a.init_std));
  PROXYKV_RETURN_IF_ERROR(model->save(a.out));
  if (spec.vocab_size == tasks::kFamilyVocabSize) {
    PROXYKV_RETURN_IF_ERROR(tasks::write_family_tokenizer(a.out + "/tokenizer.json"));
  }
  std::cerr << "proxykv init-model: " << spec.num_parameters() << " parameters (random, seed " << a.seed
            << ") in " << a.out << "\n";
  return Status::ok();
}

}  // namespace

void register_init_model(CLI::App& app) {
  auto args = std::make_shared<InitModelArgs>();
  CLI::App* cmd = app.add_subcommand("init-model", "write a randomly initialised model directory of a given shape");
  cmd->add_option("--config", args->config, "HF config.json, or a training config with a \"model\" object")
      ->required();
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--seed", args->seed, "initialisation seed")->capture_default_str();
  cmd->add_option("--init-std", args->init_std, "std of the normal init of weight matrices")->capture_default_str();
  on_run(cmd, [args] { return run_init_model(*args); });
}

}  // namespace proxykv::cli
