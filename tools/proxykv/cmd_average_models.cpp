// proxykv average-models: the weighted mean of the weights of checkpoints of one model (see
// proxykv/training/average.h), written in HF layout with the first model's tokenizer.
#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.h"
#include "model_options.h"
#include "proxykv/training/average.h"

namespace proxykv::cli {
namespace {

struct AverageArgs {
  std::vector<std::string> models;
  std::vector<double> weights;
  std::string out;
};

Status run_average(const AverageArgs& a) {
  namespace fs = std::filesystem;
  // Overwriting an input while it is read would leave neither; a path that cannot be resolved is left to the loader.
  std::error_code out_ec;
  const fs::path out = fs::weakly_canonical(a.out, out_ec);
  for (const auto& m : a.models) {
    std::error_code in_ec;
    const fs::path in = fs::weakly_canonical(m, in_ec);
    if (!out_ec && !in_ec && in == out) return invalid_argument(a.out + " is also an input; write the average elsewhere");
  }
  LoadOptions load;
  load.dtype = "float32";
  std::vector<std::unique_ptr<DecoderLM>> loaded;
  std::vector<const DecoderLM*> models;
  for (const auto& m : a.models) {
    PROXYKV_ASSIGN_OR_RETURN(auto model, DecoderLM::load(m, load));
    models.push_back(model.get());
    loaded.push_back(std::move(model));
  }
  PROXYKV_ASSIGN_OR_RETURN(auto mean, training::average_decoders(models, a.weights));
  PROXYKV_RETURN_IF_ERROR(mean->save(a.out));
  PROXYKV_RETURN_IF_ERROR(copy_tokenizer(a.models[0], a.out));
  std::cerr << "proxykv average-models: the mean of " << models.size() << " models in " << a.out << "\n";
  return Status::ok();
}

}  // namespace

void register_average_models(CLI::App& app) {
  auto args = std::make_shared<AverageArgs>();
  CLI::App* cmd = app.add_subcommand("average-models", "average the weights of checkpoints of one model");
  cmd->add_option("--models", args->models, "model directories (HF layout, one config), comma-separated")
      ->required()
      ->delimiter(',');
  cmd->add_option("--weights", args->weights, "one weight per model, comma-separated (default: equal)")
      ->delimiter(',');
  cmd->add_option("--out", args->out, "output directory")->required();
  on_run(cmd, [args] { return run_average(*args); });
}

}  // namespace proxykv::cli
