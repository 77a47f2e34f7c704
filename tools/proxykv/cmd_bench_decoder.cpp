// proxykv bench-decoder: prefill and decode throughput of a model (loaded or randomly initialised).
#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "model_options.h"
#include "proxykv/model/decoder_lm.h"

namespace proxykv::cli {
namespace {

struct BenchArgs {
  std::string model;  // empty: random model from the shape options
  int64_t hidden = 512, layers = 8, heads = 8, kv_heads = 2, intermediate = 1408, vocab = 512;
  std::vector<int64_t> prompt_tokens{512, 2048};
  int64_t decode_tokens = 64;
  int64_t chunk = 512;
  int repeats = 3;
  RuntimeOptions runtime;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Status run_bench(const BenchArgs& args) {
  args.runtime.apply();
  std::unique_ptr<DecoderLM> model;
  std::string label;
  if (!args.model.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(model, DecoderLM::load(args.model, args.runtime.load_options()));
    label = args.model;
  } else {
    ModelSpec spec;
    spec.arch = Architecture::kQwen3;
    spec.qk_norm = true;
    spec.vocab_size = args.vocab;
    spec.hidden_size = args.hidden;
    spec.num_layers = args.layers;
    spec.num_heads = args.heads;
    spec.num_kv_heads = args.kv_heads;
    spec.head_dim = args.hidden / args.heads;
    spec.intermediate_size = args.intermediate;
    spec.max_position_embeddings = 1 << 20;
    spec.rope_theta = 1e6;
    PROXYKV_ASSIGN_OR_RETURN(model, DecoderLM::random_init(spec, 7, 0.02, args.runtime.load_options()));
    std::ostringstream s;
    s << "random qwen3 h" << args.hidden << " L" << args.layers << " H" << args.heads << "/" << args.kv_heads;
    label = s.str();
  }
  const ModelSpec& spec = model->spec();
  std::cout << "model: " << label << " (" << spec.num_parameters() << " params), threads " << at::get_num_threads()
            << ", chunk " << args.chunk << ", best of " << args.repeats << "\n";
  std::cout << std::left << std::setw(10) << "prompt" << std::setw(18) << "prefill tok/s" << std::setw(16)
            << "prefill s" << std::setw(18) << "decode tok/s"
            << "\n";
  for (int64_t T : args.prompt_tokens) {
    at::Tensor ids = at::randint(spec.vocab_size, {T}, at::TensorOptions().dtype(at::kLong));
    double best_prefill = 1e30, best_decode = 1e30;
    for (int r = 0; r < args.repeats; ++r) {
      KvCache cache = model->new_cache();
      PrefillOptions opts;
      opts.chunk_size = args.chunk;
      auto t0 = std::chrono::steady_clock::now();
      at::Tensor logits = model->prefill(ids, cache, opts);
      best_prefill = std::min(best_prefill, seconds_since(t0));
      int64_t token = logits[0].argmax().item<int64_t>();
      t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < args.decode_tokens; ++i)
        token = model->decode_step(token, cache).argmax().item<int64_t>();
      best_decode = std::min(best_decode, seconds_since(t0));
    }
    const double prefill_tps = T / best_prefill, decode_tps = args.decode_tokens / best_decode;
    std::cout << std::left << std::setw(10) << T << std::setw(18) << std::fixed << std::setprecision(1) << prefill_tps
              << std::setw(16) << std::setprecision(4) << best_prefill << std::setw(18) << std::setprecision(1)
              << decode_tps << "\n";
    nlohmann::json row = {{"model", label},
                          {"params", spec.num_parameters()},
                          {"prompt_tokens", T},
                          {"prefill_tokens_per_s", prefill_tps},
                          {"decode_tokens_per_s", decode_tps},
                          {"threads", at::get_num_threads()}};
    std::cerr << "JSON " << row.dump() << "\n";
  }
  return Status::ok();
}

}  // namespace

void register_bench_decoder(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench-decoder", "prefill and decode tokens/s of a model");
  cmd->add_option("--model", args->model, "HF model directory (default: a random model of the given shape)");
  cmd->add_option("--hidden", args->hidden);
  cmd->add_option("--layers", args->layers);
  cmd->add_option("--heads", args->heads);
  cmd->add_option("--kv-heads", args->kv_heads);
  cmd->add_option("--intermediate", args->intermediate);
  cmd->add_option("--vocab", args->vocab);
  cmd->add_option("--prompt-tokens", args->prompt_tokens, "prompt lengths")->delimiter(',');
  cmd->add_option("--decode-tokens", args->decode_tokens);
  cmd->add_option("--chunk", args->chunk, "prefill chunk size");
  cmd->add_option("--repeats", args->repeats, "runs per point (best is reported)");
  args->runtime.add_to(cmd);
  on_run(cmd, [args] { return run_bench(*args); });
}

}  // namespace proxykv::cli
