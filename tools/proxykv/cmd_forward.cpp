// proxykv forward: logits of a model for the input_ids of a safetensors file (the golden-parity path).
#include <iostream>

#include "commands.h"
#include "model_options.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/tensor/safetensors.h"
#include "proxykv/tensor/torch_tensor.h"

namespace proxykv::cli {
namespace {

struct ForwardArgs {
  std::string model;
  std::string input_ids;
  std::string out;
  std::string reference;  // optional: safetensors file with tensor logits to compare against
  RuntimeOptions runtime;
};

Status run_forward(const ForwardArgs& args) {
  args.runtime.apply();
  PROXYKV_ASSIGN_OR_RETURN(auto model, DecoderLM::load(args.model, args.runtime.load_options()));
  PROXYKV_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(args.input_ids));
  PROXYKV_ASSIGN_OR_RETURN(TensorView view, file->get("input_ids"));
  if (view.dtype != DType::kI64 || view.shape.size() != 2 || view.shape[0] != 1 || view.shape[1] < 1) {
    return invalid_argument(args.input_ids + ": 'input_ids' must be int64 [1, T] with T >= 1");
  }
  PROXYKV_ASSIGN_OR_RETURN(at::Tensor ids, to_torch(view));
  const int64_t vocab = model->spec().vocab_size;
  if (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= vocab) {
    return out_of_range(args.input_ids + ": token ids must lie in [0, " + std::to_string(vocab) + ")");
  }
  KvCache cache = model->new_cache();
  PrefillOptions opts;
  opts.all_logits = true;
  at::Tensor logits = model->prefill(ids[0], cache, opts).unsqueeze(0);  // [1, T, V]
  PROXYKV_ASSIGN_OR_RETURN(TensorToWrite out, from_torch("logits", logits));
  PROXYKV_RETURN_IF_ERROR(write_safetensors(args.out, {out}, {{"format", "pt"}}));
  std::cerr << "proxykv forward: wrote logits [1, " << logits.size(1) << ", " << logits.size(2) << "] to " << args.out
            << "\n";
  if (!args.reference.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(auto ref_file, SafetensorsFile::open(args.reference));
    PROXYKV_ASSIGN_OR_RETURN(TensorView ref_view, ref_file->get("logits"));
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor ref, to_torch(ref_view));
    if (!ref.sizes().equals(logits.sizes())) {
      return invalid_argument(args.reference + ": reference logits have another shape than the model's");
    }
    const double diff = (ref.to(at::kDouble) - logits.to(at::kDouble)).abs().max().item<double>();
    std::cout << "max |logits - reference| = " << diff << "\n";
  }
  return Status::ok();
}

}  // namespace

void register_forward(CLI::App& app) {
  auto args = std::make_shared<ForwardArgs>();
  CLI::App* cmd = app.add_subcommand("forward", "logits of a model for int64 input_ids [1,T] from a safetensors file");
  cmd->add_option("--model", args->model, "HF model directory")->required();
  cmd->add_option("--input-ids", args->input_ids, "safetensors file with tensor input_ids (int64 [1,T])")->required();
  cmd->add_option("--out", args->out, "output safetensors file (tensor logits, float32 [1,T,V])")->required();
  cmd->add_option("--reference", args->reference, "compare with tensor 'logits' of this safetensors file");
  args->runtime.add_to(cmd);
  on_run(cmd, [args] { return run_forward(*args); });
}

}  // namespace proxykv::cli
