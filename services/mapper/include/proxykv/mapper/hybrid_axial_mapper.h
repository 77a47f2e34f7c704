// HybridAxialMapper: the proxy's per-head importance features -> importance scores for every target (layer, KV head)
// (DESIGN §5.4; the paper's mapper, arXiv 2605.16360).
//
// Input: features [B, C, P, T] (C channels, P = L_p * H_p proxy (layer, KV head) rows in layer-major order, T context
// tokens) and an optional bool mask [B, T] (true = real token, false = padding; undefined = all real).
// Output: scores [B, Q, T], Q = L_t * H_t target rows in layer-major order. Scores are ranking logits: only their
// order inside a selection group means something (the loss never fixes their scale). Scores of padded positions
// are 0 and meaningless.
//
// variant "hybrid" (default): axial over (proxy head, time), three stages:
//  (a) temporal feature extraction, per proxy head: `conv_layers` 1-D convolutions along time (kernel `conv_kernel`,
//      'same' zero padding, GELU, residual from the second layer on), weights shared by all proxy heads; a learned
//      per-proxy-head embedding is added to the result so later stages know which proxy head a row is.
//  (b) time-axis context, per proxy head: `time_layers` pre-LayerNorm transformer blocks whose self-attention is
//      restricted to the band |i - j| <= time_window (a radius: each token sees 2 * time_window + 1 tokens), with a
//      learned relative-position bias per attention head. Computed in chunks of time_window tokens, each chunk
//      attending to itself and its two neighbours, so cost and memory grow linearly with T. The one-sided receptive
//      field of (a)+(b) is conv_layers * (conv_kernel / 2) + time_layers * time_window tokens (receptive_field()).
//  (c) head-axis cross-attention, per token: one learned query per target row attends (n_attn_heads heads) over the
//      P proxy-head vectors of that token; a residual feed-forward block, then a read-out vector of the target row's
//      own (w_q . LayerNorm(z) + b_q) gives one scalar. The per-row read-out lets each target head weigh the
//      temporal features differently (e.g. another delay after a needle's key) at the cost of Q * (d + 1) weights.
// variant "linear" (the proxykv_linear ablation): score[q, t] = W[q, :] . x[:, :, t] + b[q] over the C * P
// (transformed) features of token t; nothing else (no temporal context, no attention).
//
// Input transform (both variants). KVzip-style features are max-softmax probabilities in [0, 1] with a heavy tail
// (most ~1e-4..1e-2, a few near 1); in linear units the convolutions would see almost only the few large values.
//   "log" (default): x -> (ln(max(x, 0) + eps) - ln(sqrt(eps))) / (ln(1 / eps) / 4): monotone, [eps, 1] -> [-2, 2]
//          centred on sqrt(eps) (1e-3 for eps 1e-6), so a log-normal spread of a few nats arrives with unit-order
//          variance. On the synthetic fit of the unit tests (200 steps) it reached top-0.3 recall 0.96 where symlog
//          (same information squeezed into a band of std ~0.15 around 0.5) reached 0.89 and raw values 0.63.
//   "symlog": x -> sign(x) * log1p(|x| / eps) / log1p(1 / eps), for signed channels.
//   "none": features unchanged.
// Padded tokens are zero after the transform (not the transform of 0), exactly what 'same' padding sees.
//
// Masking: padded tokens are zeroed before and after every layer that mixes along time and masked out of the band
// attention's keys, so a real token's score is exactly what it would be without the padding.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"

namespace proxykv::mapper {

// The (proxy, target) pair shape a mapper fits. A checkpoint for another shape is refused.
struct MapperPairShape {
  int64_t channels = 1;
  int64_t proxy_layers = 0;
  int64_t proxy_kv_heads = 0;
  int64_t target_layers = 0;
  int64_t target_kv_heads = 0;

  int64_t proxy_heads() const { return proxy_layers * proxy_kv_heads; }     // P
  int64_t target_heads() const { return target_layers * target_kv_heads; }  // Q
  bool operator==(const MapperPairShape& o) const;
  bool operator!=(const MapperPairShape& o) const { return !(*this == o); }
  // "C=4, proxy 2 layers x 2 KV heads -> target 4 layers x 2 KV heads"
  std::string to_string() const;
};

struct MapperConfig {
  MapperPairShape shape;
  std::string proxy_id;   // free-form (model path or name), informational
  std::string target_id;  // free-form, informational

  std::string variant = "hybrid";       // "hybrid" | "linear"
  // "log" | "symlog" | "none". "log" is for raw masses >= 0; proxy_features.h already writes its attention
  // channels as logs, so mappers of those features use "none" (train_mapper_epochs refuses "log" on negatives).
  std::string input_transform = "log";
  double input_eps = 1e-6;
  int64_t d_model = 32;
  int64_t conv_kernel = 5;  // odd
  int64_t conv_layers = 2;
  int64_t time_window = 64;  // band radius of the time attention, tokens
  int64_t time_layers = 1;
  int64_t n_attn_heads = 4;  // divides d_model; used by both attentions
  double dropout = 0.1;

  Status validate() const;
  // Flat JSON object: the pair shape keys, the ids and the architecture keys above.
  nlohmann::json to_json() const;
  // Missing keys keep their defaults (the pair shape keys are required); unknown keys are refused.
  static Result<MapperConfig> from_json(const nlohmann::json& j, const std::string& origin);
};

// Stage (a). x [N, C, T] (N = B * P rows, sample-major), valid [N, 1, T] float 0/1 -> [N, d_model, T].
class TemporalConvStackImpl : public torch::nn::Module {
 public:
  TemporalConvStackImpl(int64_t in_channels, int64_t d_model, int64_t kernel, int64_t layers, int64_t proxy_heads);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& valid);

 private:
  torch::nn::ModuleList convs_{nullptr};
  at::Tensor head_embed_;  // [P, d_model]
  int64_t proxy_heads_;
};
TORCH_MODULE(TemporalConvStack);

// Stage (b), one block. h [N, T, d], valid [N, T] bool -> [N, T, d] (padded rows zeroed).
class LocalTimeAttentionBlockImpl : public torch::nn::Module {
 public:
  LocalTimeAttentionBlockImpl(int64_t d_model, int64_t n_heads, int64_t radius, double dropout);
  at::Tensor forward(const at::Tensor& h, const at::Tensor& valid);
  // Without autograd, rows are processed in slices whose attention scores stay under this many elements.
  void set_max_chunk_elements(int64_t elements) { max_chunk_elements_ = elements; }

 private:
  at::Tensor band_attention(const at::Tensor& x, const at::Tensor& valid);
  int64_t n_heads_, radius_;
  int64_t max_chunk_elements_ = int64_t{1} << 25;
  torch::nn::LayerNorm ln_attn_{nullptr}, ln_ff_{nullptr};
  torch::nn::Linear qkv_{nullptr}, out_{nullptr}, ff_in_{nullptr}, ff_out_{nullptr};
  torch::nn::Dropout drop_{nullptr};
  at::Tensor rel_bias_;  // [n_heads, 2 * radius + 1]
};
TORCH_MODULE(LocalTimeAttentionBlock);

// Stage (c). h [B, P, T, d] -> scores [B, Q, T].
class HeadCrossAttentionImpl : public torch::nn::Module {
 public:
  HeadCrossAttentionImpl(int64_t d_model, int64_t n_heads, int64_t target_heads, double dropout);
  at::Tensor forward(const at::Tensor& h);

 private:
  int64_t n_heads_;
  at::Tensor queries_;  // [Q, d_model]
  torch::nn::LayerNorm ln_kv_{nullptr}, ln_ff_{nullptr}, ln_out_{nullptr};
  torch::nn::Linear key_{nullptr}, value_{nullptr}, out_{nullptr}, ff_in_{nullptr}, ff_out_{nullptr};
  torch::nn::Dropout drop_{nullptr};
  at::Tensor readout_weight_;  // [Q, d_model]
  at::Tensor readout_bias_;    // [Q]
};
TORCH_MODULE(HeadCrossAttention);

class HybridAxialMapperImpl : public torch::nn::Module {
 public:
  // Throws ProxykvError when the config is invalid (construction is a start-up path; load_mapper validates first).
  explicit HybridAxialMapperImpl(const MapperConfig& config);

  // features [B, C, P, T] float; mask [B, T] bool or undefined. Throws (c10::Error) on shapes that check_input
  // refuses: callers handling outside input run check_input first.
  at::Tensor forward(const at::Tensor& features, const at::Tensor& mask = {});
  Status check_input(const at::Tensor& features, const at::Tensor& mask = {}) const;

  const MapperConfig& config() const { return config_; }
  // One-sided number of tokens a score can depend on beyond its own (0 for the linear variant).
  int64_t receptive_field() const;

  // Memory bound of a forward without autograd (serving): the band attention is cut into row slices and the
  // head-axis stage into token slices so that no intermediate exceeds about this many elements (default 2^25,
  // 128 MiB of float32). Results are identical to the unsliced computation. Training (autograd on) keeps
  // everything for the backward pass anyway and ignores it.
  void set_max_chunk_elements(int64_t elements);

 private:
  at::Tensor transform_input(const at::Tensor& features) const;
  MapperConfig config_;
  int64_t max_chunk_elements_ = int64_t{1} << 25;
  TemporalConvStack conv_{nullptr};
  torch::nn::ModuleList time_{nullptr};
  HeadCrossAttention cross_{nullptr};
  torch::nn::Linear linear_{nullptr};
};
TORCH_MODULE(HybridAxialMapper);

// Number of scalar parameters (all trainable).
int64_t count_parameters(const torch::nn::Module& module);

}  // namespace proxykv::mapper
