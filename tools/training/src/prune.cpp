#include "proxykv/training/prune.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <string>

#include <torch/torch.h>

namespace proxykv::training {
namespace {

double norm_of(const at::Tensor& t) { return t.to(at::kDouble).norm().item<double>(); }

at::Tensor index_tensor(const std::vector<int64_t>& idx, const at::Tensor& like) {
  return at::tensor(idx, at::TensorOptions().dtype(at::kLong).device(like.device()));
}

// Rows of the fused q/k/v projection a kept query-head list selects: the kept query heads, then every K and V row.
std::vector<int64_t> qkv_rows(const ModelSpec& s, const std::vector<int64_t>& heads) {
  std::vector<int64_t> rows;
  for (const int64_t h : heads) {
    for (int64_t d = 0; d < s.head_dim; ++d) rows.push_back(h * s.head_dim + d);
  }
  for (int64_t r = s.q_dim(); r < s.q_dim() + 2 * s.kv_dim(); ++r) rows.push_back(r);
  return rows;
}

std::vector<int64_t> head_columns(const ModelSpec& s, const std::vector<int64_t>& heads) {
  std::vector<int64_t> cols;
  for (const int64_t h : heads) {
    for (int64_t d = 0; d < s.head_dim; ++d) cols.push_back(h * s.head_dim + d);
  }
  return cols;
}

// The query heads each KV group keeps (heads of group g are g*G .. g*G+G-1, as the attention kernel groups them).
std::vector<int64_t> kept_heads(const ModelSpec& s, const LayerWeights& w, int64_t per_group) {
  std::vector<int64_t> kept;
  const int64_t g_size = s.group_size();
  for (int64_t g = 0; g < s.num_kv_heads; ++g) {
    std::vector<double> score(static_cast<size_t>(g_size));
    for (int64_t i = 0; i < g_size; ++i) {
      const int64_t h = g * g_size + i;
      score[static_cast<size_t>(i)] = norm_of(w.w_qkv.narrow(0, h * s.head_dim, s.head_dim)) *
                                      norm_of(w.w_o.narrow(1, h * s.head_dim, s.head_dim));
    }
    for (const int64_t i : top_indices_in_order(score, per_group)) kept.push_back(g * g_size + i);
  }
  return kept;
}

std::vector<int64_t> kept_channels(const ModelSpec& s, const LayerWeights& w, int64_t keep) {
  std::vector<double> score(static_cast<size_t>(s.intermediate_size));
  const at::Tensor gate = w.w_gate_up.narrow(0, 0, s.intermediate_size).to(at::kDouble);
  const at::Tensor up = w.w_gate_up.narrow(0, s.intermediate_size, s.intermediate_size).to(at::kDouble);
  const at::Tensor prod = gate.norm(2, {1}) * up.norm(2, {1}) * w.w_down.to(at::kDouble).norm(2, {0});
  for (int64_t j = 0; j < s.intermediate_size; ++j) score[static_cast<size_t>(j)] = prod[j].item<double>();
  return top_indices_in_order(score, keep);
}

}  // namespace

std::vector<int64_t> top_indices_in_order(const std::vector<double>& scores, int64_t keep) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return scores[static_cast<size_t>(a)] > scores[static_cast<size_t>(b)];
  });
  order.resize(static_cast<size_t>(std::clamp<int64_t>(keep, 0, static_cast<int64_t>(order.size()))));
  std::sort(order.begin(), order.end());
  return order;
}

Result<std::unique_ptr<DecoderLM>> prune_decoder(const DecoderLM& source, const PruneOptions& options) {
  const ModelSpec& s = source.spec();
  std::vector<int64_t> layers = options.layers;
  if (layers.empty()) {
    layers.resize(static_cast<size_t>(s.num_layers));
    std::iota(layers.begin(), layers.end(), 0);
  }
  for (const int64_t l : layers) {
    if (l < 0 || l >= s.num_layers) {
      return invalid_argument("prune: layer " + std::to_string(l) + " is not in 0.." + std::to_string(s.num_layers - 1));
    }
  }
  if (std::set<int64_t>(layers.begin(), layers.end()).size() != layers.size()) {
    return invalid_argument("prune: a layer is listed twice");
  }
  const int64_t per_group = options.q_heads_per_group > 0 ? options.q_heads_per_group : s.group_size();
  if (per_group > s.group_size()) {
    return invalid_argument("prune: " + std::to_string(per_group) + " query heads per KV group asked, the model has " +
                            std::to_string(s.group_size()));
  }
  const int64_t inter = options.intermediate > 0 ? options.intermediate : s.intermediate_size;
  if (inter > s.intermediate_size) {
    return invalid_argument("prune: intermediate " + std::to_string(inter) + " exceeds the model's " +
                            std::to_string(s.intermediate_size));
  }

  ModelSpec out_spec = s;
  out_spec.num_layers = static_cast<int64_t>(layers.size());
  out_spec.num_heads = per_group * s.num_kv_heads;
  out_spec.intermediate_size = inter;
  LoadOptions load;
  load.device = source.options().device().str();
  load.dtype = "float32";
  PROXYKV_ASSIGN_OR_RETURN(auto pruned, DecoderLM::random_init(out_spec, 0, 0.02, load));

  torch::NoGradGuard no_grad;
  const ModelWeights& from = source.weights();
  ModelWeights& to = pruned->weights();
  to.embed.copy_(from.embed);
  to.final_norm.copy_(from.final_norm);
  if (!s.tie_word_embeddings) to.lm_head.copy_(from.lm_head);
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerWeights& a = from.layers[static_cast<size_t>(layers[i])];
    LayerWeights& b = to.layers[i];
    const std::vector<int64_t> heads = kept_heads(s, a, per_group);
    const at::Tensor rows = index_tensor(qkv_rows(s, heads), a.w_qkv);
    const at::Tensor cols = index_tensor(head_columns(s, heads), a.w_o);
    const at::Tensor ch = index_tensor(kept_channels(s, a, inter), a.w_down);
    b.input_norm.copy_(a.input_norm);
    b.post_norm.copy_(a.post_norm);
    b.w_qkv.copy_(a.w_qkv.index_select(0, rows));
    if (a.b_qkv.defined()) b.b_qkv.copy_(a.b_qkv.index_select(0, rows));
    if (a.q_norm.defined()) {
      b.q_norm.copy_(a.q_norm);
      b.k_norm.copy_(a.k_norm);
    }
    b.w_o.copy_(a.w_o.index_select(1, cols));
    if (a.b_o.defined()) b.b_o.copy_(a.b_o);
    const at::Tensor gate = a.w_gate_up.narrow(0, 0, s.intermediate_size).index_select(0, ch);
    const at::Tensor up = a.w_gate_up.narrow(0, s.intermediate_size, s.intermediate_size).index_select(0, ch);
    b.w_gate_up.copy_(at::cat({gate, up}, 0));
    b.w_down.copy_(a.w_down.index_select(1, ch));
  }
  return pruned;
}

}  // namespace proxykv::training
