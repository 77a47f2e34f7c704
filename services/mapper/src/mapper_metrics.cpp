#include "proxykv/mapper/mapper_metrics.h"

#include <cmath>

#include "score_groups.h"

namespace proxykv::mapper {
namespace {

// Lifts [Q, T] / [T] inputs to the batched [1, Q, T] / [1, T] form.
void batch_inputs(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid, at::Tensor& p,
                  at::Tensor& l, at::Tensor& v) {
  TORCH_CHECK(pred.defined() && label.defined() && pred.sizes() == label.sizes(), "pred ", pred.sizes(), " and label ",
              label.sizes(), " must have one shape");
  TORCH_CHECK(pred.dim() == 2 || pred.dim() == 3, "score maps must be [B, Q, T] or [Q, T]");
  const bool single = pred.dim() == 2;
  p = single ? pred.unsqueeze(0) : pred;
  l = single ? label.unsqueeze(0) : label;
  v = valid.defined() && valid.dim() == 1 ? valid.unsqueeze(0) : valid;
}

// 0-based ranks of a 1-D tensor, ties sharing their average rank.
at::Tensor average_ranks(const at::Tensor& x) {
  auto [sorted, index] = x.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto [unique, inverse, counts] = at::unique_consecutive(sorted, /*return_inverse=*/false, /*return_counts=*/true);
  at::Tensor ends = counts.cumsum(0).to(at::kDouble);
  at::Tensor mean_rank = ends - (counts.to(at::kDouble) + 1) / 2;  // mean of start .. end-1
  at::Tensor ranks_sorted = mean_rank.repeat_interleave(counts);
  return at::empty_like(ranks_sorted).scatter_(0, index, ranks_sorted);
}

}  // namespace

at::Tensor topk_recall(const at::Tensor& pred, const at::Tensor& label, double rho, const at::Tensor& valid,
                       scoring::SelectionLevel level, int64_t heads_per_layer) {
  TORCH_CHECK(rho > 0 && rho <= 1, "topk_recall: rho must be in (0, 1], got ", rho);
  at::Tensor p, l, v;
  batch_inputs(pred, label, valid, p, l, v);
  const detail::ScoreGroups g = detail::make_groups(p.detach(), l.detach(), v, level, heads_per_layer);
  const std::vector<int64_t> k = detail::top_counts(g.n_valid, rho);
  at::Tensor in_label = detail::top_members(detail::descending_order(g.label, g.valid), k);
  at::Tensor in_pred = detail::top_members(detail::descending_order(g.pred, g.valid), k);
  at::Tensor hits = in_label.logical_and(in_pred).sum(1).to(at::kDouble).to(at::kCPU);
  at::Tensor wanted = detail::to_long_tensor(k, at::kCPU).to(at::kDouble);
  return hits.view({g.batch, g.groups_per_sample}).sum(1) / wanted.view({g.batch, g.groups_per_sample}).sum(1);
}

at::Tensor spearman(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid) {
  at::Tensor p, l, v;
  batch_inputs(pred, label, valid, p, l, v);
  const detail::ScoreGroups g =
      detail::make_groups(p.detach(), l.detach(), v, scoring::SelectionLevel::kGlobal, /*heads_per_layer=*/0);
  at::Tensor out = at::zeros({g.batch}, at::kDouble);
  for (int64_t b = 0; b < g.batch; ++b) {
    if (g.n_valid[b] < 2) continue;
    at::Tensor keep = g.valid[b].to(at::kCPU);
    at::Tensor rp = average_ranks(g.pred[b].to(at::kCPU).to(at::kDouble).masked_select(keep));
    at::Tensor rl = average_ranks(g.label[b].to(at::kCPU).to(at::kDouble).masked_select(keep));
    rp = rp - rp.mean();
    rl = rl - rl.mean();
    const double denom = std::sqrt((rp * rp).sum().item<double>() * (rl * rl).sum().item<double>());
    if (denom > 0) out[b] = (rp * rl).sum().item<double>() / denom;
  }
  return out;
}

}  // namespace proxykv::mapper
