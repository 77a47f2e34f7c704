#include "score_groups.h"

#include <algorithm>
#include <cmath>

namespace proxykv::mapper::detail {

ScoreGroups make_groups(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid,
                        scoring::SelectionLevel level, int64_t heads_per_layer) {
  const at::Tensor& ref = pred.defined() ? pred : label;
  TORCH_CHECK(ref.defined() && ref.dim() == 3, "score maps must be [B, Q, T]");
  TORCH_CHECK(!pred.defined() || !label.defined() || pred.sizes() == label.sizes(), "pred ", pred.sizes(),
              " and label ", label.sizes(), " differ in shape");
  const int64_t b = ref.size(0), q = ref.size(1), t = ref.size(2);
  TORCH_CHECK(!valid.defined() ||
                  (valid.scalar_type() == at::kBool && valid.dim() == 2 && valid.size(0) == b && valid.size(1) == t),
              "valid must be bool [B, T] = [", b, ", ", t, "]");
  at::Tensor v = valid.defined() ? valid.to(ref.device())
                                 : at::ones({b, t}, at::TensorOptions().dtype(at::kBool).device(ref.device()));
  v = v.unsqueeze(1).expand({b, q, t});

  ScoreGroups g;
  g.batch = b;
  int64_t n = 0;
  switch (level) {
    case scoring::SelectionLevel::kGlobal:
      g.groups_per_sample = 1;
      n = q * t;
      break;
    case scoring::SelectionLevel::kLayer:
      TORCH_CHECK(heads_per_layer > 0 && q % heads_per_layer == 0, "level layer needs heads_per_layer dividing Q=", q,
                  ", got ", heads_per_layer);
      g.groups_per_sample = q / heads_per_layer;
      n = heads_per_layer * t;
      break;
    case scoring::SelectionLevel::kHead:
      g.groups_per_sample = q;
      n = t;
      break;
    case scoring::SelectionLevel::kToken:
      TORCH_CHECK(false, "score groups: level token has no per-entry groups (HybridLossConfig::validate refuses it)");
  }
  const int64_t groups = b * g.groups_per_sample;
  if (pred.defined()) g.pred = pred.to(at::kFloat).reshape({groups, n});
  if (label.defined()) g.label = label.to(at::kFloat).reshape({groups, n});
  g.valid = v.reshape({groups, n});
  at::Tensor counts = g.valid.sum(1).to(at::kCPU).to(at::kLong).contiguous();
  g.n_valid.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + groups);
  return g;
}

at::Tensor descending_order(const at::Tensor& values, const at::Tensor& valid) {
  at::Tensor v = at::where(valid, values.detach(), at::full({}, -INFINITY, values.options()));
  // Stable descending sort keeps equal values in index order; the invalid entries (-inf) come last.
  return std::get<1>(v.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
}

std::vector<int64_t> top_counts(const std::vector<int64_t>& n_valid, double rho) {
  std::vector<int64_t> k(n_valid.size(), 0);
  for (size_t i = 0; i < n_valid.size(); ++i) {
    if (n_valid[i] == 0) continue;
    k[i] = std::clamp<int64_t>(std::llround(rho * static_cast<double>(n_valid[i])), 1, n_valid[i]);
  }
  return k;
}

at::Tensor to_long_tensor(const std::vector<int64_t>& v, const at::Device& device) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong)).to(device);
}

at::Tensor top_members(const at::Tensor& order, const std::vector<int64_t>& k) {
  const int64_t n = order.size(1);
  at::Tensor positions = at::arange(n, order.options()).unsqueeze(0).expand_as(order);
  at::Tensor rank_of = at::empty_like(order).scatter_(1, order, positions);
  return rank_of.lt(to_long_tensor(k, order.device()).unsqueeze(1));
}

}  // namespace proxykv::mapper::detail
