// proxykv prune-model: a smaller model of the same family cut out of a trained one (layers, query heads per KV
// group, MLP channels; see proxykv/training/prune.h), written in HF layout with the source's tokenizer. Training
// the result (train-lm with "init_from") makes the family's proxy from its target.
#include <iostream>
#include <memory>

#include "commands.h"
#include "model_options.h"
#include "proxykv/training/prune.h"

namespace proxykv::cli {
namespace {

struct PruneArgs {
  std::string model;
  std::string out;
  std::vector<int64_t> layers;
  int64_t q_heads_per_group = 0;
  int64_t intermediate = 0;
};

Status run_prune(const PruneArgs& a) {
  LoadOptions load;
  load.dtype = "float32";
  PROXYKV_ASSIGN_OR_RETURN(auto source, DecoderLM::load(a.model, load));
  PROXYKV_ASSIGN_OR_RETURN(auto pruned, training::prune_decoder(*source, {a.layers, a.q_heads_per_group, a.intermediate}));
  PROXYKV_RETURN_IF_ERROR(pruned->save(a.out));
  PROXYKV_RETURN_IF_ERROR(copy_tokenizer(a.model, a.out));
  const auto& s = pruned->spec();
  std::cerr << "proxykv prune-model: " << s.num_layers << " layers, " << s.num_heads << " query / " << s.num_kv_heads
            << " KV heads, intermediate " << s.intermediate_size << ": " << s.num_parameters() << " parameters ("
            << source->spec().num_parameters() << " in the source, "
            << static_cast<double>(source->spec().num_parameters()) / static_cast<double>(s.num_parameters())
            << "x) in " << a.out << "\n";
  return Status::ok();
}

}  // namespace

void register_prune_model(CLI::App& app) {
  auto args = std::make_shared<PruneArgs>();
  CLI::App* cmd = app.add_subcommand("prune-model", "cut a smaller model of the same family out of a trained one");
  cmd->add_option("--model", args->model, "source model directory (HF layout)")->required();
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--layers", args->layers, "source layers to keep, in order (default: all)")->delimiter(',');
  cmd->add_option("--q-heads-per-group", args->q_heads_per_group,
                  "query heads kept per KV group, by weight norm (default: all)");
  cmd->add_option("--intermediate", args->intermediate, "MLP channels kept, by weight norm (default: all)");
  on_run(cmd, [args] { return run_prune(*args); });
}

}  // namespace proxykv::cli
