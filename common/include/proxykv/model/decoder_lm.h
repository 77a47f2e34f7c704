// DecoderLM: a Llama/Qwen2/Qwen3 decoder in LibTorch, for inference over a KvCache and for training.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/model/attention.h"
#include "proxykv/model/kv_cache.h"
#include "proxykv/model/model_spec.h"
#include "proxykv/model/rope.h"

namespace proxykv {

// Weights in compute layout: q/k/v and gate/up projections fused for one matmul each.
struct LayerWeights {
  at::Tensor input_norm;  // [hidden]
  at::Tensor w_qkv;       // [q_dim + 2 kv_dim, hidden]
  at::Tensor b_qkv;       // [q_dim + 2 kv_dim] or undefined
  at::Tensor q_norm;      // [head_dim] (Qwen3) or undefined
  at::Tensor k_norm;
  at::Tensor w_o;        // [hidden, q_dim]
  at::Tensor b_o;        // [hidden] or undefined
  at::Tensor post_norm;  // [hidden]
  at::Tensor w_gate_up;  // [2 intermediate, hidden]
  at::Tensor w_down;     // [hidden, intermediate]
};

struct ModelWeights {
  at::Tensor embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  at::Tensor final_norm;  // [hidden]
  at::Tensor lm_head;     // [vocab, hidden]; the same tensor as embed when tied
  // Every trainable tensor once (a tied head is not listed twice).
  std::vector<at::Tensor> parameters() const;
};

struct LoadOptions {
  std::string device = "cpu";  // "cpu", "cuda", "cuda:N"
  std::string dtype = "auto";  // "auto" (float32 on CPU, bfloat16 on CUDA), "float32", "bfloat16", "float16"
};

struct PrefillOptions {
  int64_t chunk_size = 512;  // tokens per forward chunk (bounds activation memory: chunk x context scores)
  bool all_logits = false;   // logits of every position, or only of the last one
  bool commit = true;        // false: the cache is restored afterwards (teacher forcing without growing it)
  AttentionObserver* observer = nullptr;
};

class DecoderLM {
 public:
  // Loads an HF directory (config.json + model.safetensors or a sharded index).
  static Result<std::unique_ptr<DecoderLM>> load(const std::string& model_dir, const LoadOptions& options = {});
  // A randomly initialised model (normal(0, init_std) matrices, unit norms), for training and benchmarks.
  static Result<std::unique_ptr<DecoderLM>> random_init(const ModelSpec& spec, uint64_t seed, double init_std,
                                                        const LoadOptions& options = {});
  // Writes config.json and model.safetensors (float32, HF tensor names) into `dir` (created if missing).
  Status save(const std::string& dir) const;

  const ModelSpec& spec() const { return spec_; }
  const at::TensorOptions& options() const { return options_; }
  ModelWeights& weights() { return weights_; }
  const ModelWeights& weights() const { return weights_; }
  const RotaryEmbedding& rope() const { return rope_; }

  KvCache new_cache() const;

  // Feeds ids (int64 [T]) at positions cache.next_position().. in chunks, appending their K/V to the cache.
  // Returns float32 logits [T, vocab] (all_logits) or [1, vocab]. Runs without autograd.
  at::Tensor prefill(const at::Tensor& ids, KvCache& cache, const PrefillOptions& options = {}) const;
  // One token: returns float32 logits [vocab].
  at::Tensor decode_step(int64_t token, KvCache& cache) const;
  // Greedy decoding after `prompt` (prefilled into `cache`); stops after max_new_tokens or at a stop id.
  std::vector<int64_t> generate_greedy(const at::Tensor& prompt, KvCache& cache, int64_t max_new_tokens,
                                       const std::vector<int64_t>& stop_ids = {}) const;
  // Answers a question from a prefilled context: greedy after `question`, then the cache is restored to what it
  // was before, so the question's KV is dropped and the next question sees only the context. The stop id that
  // ended generation, if any, is not returned.
  std::vector<int64_t> answer(const at::Tensor& question, KvCache& cache, int64_t max_new_tokens,
                              const std::vector<int64_t>& stop_ids) const;

  // Training/reference path: full causal forward over ids [B, T] (positions 0..T-1), no cache, with autograd.
  // Returns logits [B, T, vocab] in the compute dtype. key_drop (optional, bool, broadcastable to
  // [layers, B, kv_heads, T, T]): true where query row i must not see key column j in that layer and KV head,
  // on top of the causal mask; what evicting entry j from that head's cache after position j does to later queries.
  // attention (optional): receives layer `attention_layer`'s attention probabilities (-1: the last layer's)
  // [B, num_heads, T, T] (float, query row by key column, in autograd's graph), for a training loss on where the
  // model looks (PhaseMix::attention_supervision). The layer must exist.
  at::Tensor forward_batch(const at::Tensor& ids, const at::Tensor& key_drop = {}, at::Tensor* attention = nullptr,
                           int64_t attention_layer = -1) const;

 private:
  DecoderLM(ModelSpec spec, at::TensorOptions options, ModelWeights weights);
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;
  at::Tensor mlp(const LayerWeights& w, const at::Tensor& x) const;
  at::Tensor forward_chunk(const at::Tensor& ids, KvCache& cache, bool all_logits, AttentionObserver* observer) const;

  ModelSpec spec_;
  at::TensorOptions options_;
  ModelWeights weights_;
  RotaryEmbedding rope_;
};

// Parses "cpu" / "cuda" / "cuda:N"; an unavailable CUDA device is an error naming it.
Result<at::Device> parse_device(const std::string& device);

}  // namespace proxykv
