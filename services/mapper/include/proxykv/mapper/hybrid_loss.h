// The Multi-Granularity Hybrid Loss (DESIGN §5.4; arXiv 2605.16360): the mapper's training objective. The point is
// ranking consistency with the target's KVzip scores at the selection level used, not regression of their values.
//
// Inputs: pred [B, Q, T] (mapper scores, any scale), label [B, Q, T] (target KVzip scores: max-softmax
// probabilities in [0, 1], heavy-tailed), valid [B, T] bool (undefined = all valid). Every term is computed per
// selection group — the sample's Q*T entries at level global (KVzip's default), a target layer's H*T at level layer,
// a target head's T at level head — over its valid entries only, then averaged over the non-empty groups.
// Let s = pred, l = label, y = the regression target (label_transform):
//   "log"  (default): y = log(l + eps). KVzip scores span ~6 orders of magnitude; in linear units a few entries near 1
//          dominate every squared error and the ~1e-4 mass, where the selection boundary at rho 0.3-0.7 lies, is flat.
//          The log keeps the order and spreads the boundary region; eps (1e-6) floors exact zeros.
//   "rank": y = normalised rank in [0, 1] (1 = top): fully distribution-free, but blind to gaps between scores.
//
// (i)   binary (multi-ratio): for each rho in `ratios`, y_rho = 1 for the entries in the label's top-rho set of the
//       group (budget llround(rho * n_valid), ties: earlier entry first, as scoring::select_entries); the logit is
//       (s - thr_rho) / binary_temperature where thr_rho is the midpoint between the k-th and (k+1)-th largest
//       PREDICTED score of the group (detached): the boundary the predicted selection would use. BCE-with-logits,
//       mean over valid entries, averaged over the ratios. It is what top-rho recall rewards, at several budgets.
// (ii)  value-weighted MSE: z-score s and y over the group's valid entries (so scale and offset of s are free), then
//       sum w (z(s) - z(y))^2 / sum w with w = mse_weight_floor + minmax(y): entries that matter weigh up to
//       (1 + floor) / floor times more. mse_value_weighted = false gives w = 1 (the plain-MSE ablation).
// (iii) intra-top-K rank: `intra_pairs` pairs (i, j), i != j, drawn uniformly inside the label's top-K set of each
//       group (K = intra_topk_ratio of its valid entries, default 0.3); RankNet logistic loss
//       softplus(-sign(l_i - l_j) * (s_i - s_j) / rank_temperature), mean over pairs with l_i != l_j. It orders the
//       entries that matter among themselves, which the binary term cannot see.
// (iv)  mass-aware global rank: `mass_pairs` pairs drawn uniformly among all valid entries of each group, the same
//       logistic loss, weighted by |m_i - m_j| where m = l / sum(l) is the label's attention mass share in the group:
//       misordering a heavy entry below a light one costs in proportion to the mass lost. Weighted mean.
// (v)   cosine: 1 - cos(n(s), n(y)) per group over valid entries, n = min-max to [0, 1] (cosine_norm "minmax",
//       default: monotone, shape-only), or "softmax": cos(softmax(s), m) (prediction as a distribution against the
//       label's mass distribution).
// total = sum of weight * term. A weight of 0 switches a term off: it is not computed and its tensor is undefined.
// Pairs are drawn with the caller's generator (CPU generator; deterministic tests and resumable training).
//
// The rank terms reach ~0 for a perfect ranking at a large enough scale of s (RankNet's infimum); the binary term
// too. MSE and cosine reach 0 when s is an affine function of y (of min-max(y)), and are scale-free in s.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"
#include "proxykv/scoring/selection.h"

namespace proxykv::mapper {

struct HybridLossConfig {
  double binary_weight = 1.0;
  double mse_weight = 1.0;
  double intra_rank_weight = 1.0;
  double mass_rank_weight = 1.0;
  double cosine_weight = 1.0;

  scoring::SelectionLevel level = scoring::SelectionLevel::kGlobal;
  int64_t heads_per_layer = 0;  // target KV heads per layer: needed by level layer only

  std::string label_transform = "log";  // "log" | "rank"
  double label_eps = 1e-6;

  std::vector<double> ratios = {0.1, 0.2, 0.3, 0.5, 0.7};
  double binary_temperature = 1.0;

  bool mse_value_weighted = true;
  double mse_weight_floor = 0.1;

  double intra_topk_ratio = 0.3;
  int64_t intra_pairs = 512;  // per group
  int64_t mass_pairs = 512;   // per group
  double rank_temperature = 1.0;

  std::string cosine_norm = "minmax";  // "minmax" | "softmax"

  Status validate() const;
  nlohmann::json to_json() const;
  // Missing keys keep their defaults; unknown keys are refused.
  static Result<HybridLossConfig> from_json(const nlohmann::json& j, const std::string& origin);
};

struct HybridLossTerms {
  at::Tensor total;  // scalar, differentiable (0 with a graph to pred when every term is off)
  at::Tensor binary, mse, intra_rank, mass_rank, cosine;  // scalars; undefined when switched off

  // "total" and every computed term by name ("binary", "mse", "intra_rank", "mass_rank", "cosine"), for logs.
  std::map<std::string, double> values() const;
};

// Throws c10::Error on inconsistent shapes (a programming error: the trainer validates its data up front).
HybridLossTerms hybrid_loss(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid,
                            const HybridLossConfig& config, at::Generator generator);

}  // namespace proxykv::mapper
