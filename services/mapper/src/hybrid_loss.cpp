#include "proxykv/mapper/hybrid_loss.h"

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>

#include "json_fields.h"
#include "score_groups.h"

namespace proxykv::mapper {
namespace {

using detail::ScoreGroups;
using nlohmann::json;

// Mean over the non-empty groups of a per-group value [G].
at::Tensor group_mean(const at::Tensor& per_group, const std::vector<int64_t>& n_valid) {
  at::Tensor nonempty = detail::to_long_tensor(n_valid, per_group.device()).gt(0).to(per_group.scalar_type());
  return (per_group * nonempty).sum() / nonempty.sum().clamp_min(1);
}

at::Tensor valid_counts(const ScoreGroups& g) {
  return detail::to_long_tensor(g.n_valid, g.valid.device()).to(at::kFloat).clamp_min(1).unsqueeze(1);  // [G, 1]
}

// z-score over each group's valid entries (0 at invalid entries).
at::Tensor standardize(const at::Tensor& x, const at::Tensor& vf, const at::Tensor& n) {
  at::Tensor mean = (x * vf).sum(1, true) / n;
  at::Tensor centered = (x - mean) * vf;
  at::Tensor var = (centered * centered).sum(1, true) / n;
  return centered / (var + 1e-8).sqrt();
}

// Min-max to [0, 1] over each group's valid entries (0 at invalid entries).
at::Tensor min_max(const at::Tensor& x, const at::Tensor& valid) {
  at::Tensor lo = at::where(valid, x, at::full({}, INFINITY, x.options())).amin(1, true);
  at::Tensor hi = at::where(valid, x, at::full({}, -INFINITY, x.options())).amax(1, true);
  at::Tensor any = valid.any(1, true);
  lo = at::where(any, lo, at::zeros({}, x.options()));
  hi = at::where(any, hi, at::zeros({}, x.options()));
  return at::where(valid, (x - lo) / (hi - lo).clamp_min(1e-12), at::zeros({}, x.options()));
}

at::Tensor masked_cosine(const at::Tensor& a, const at::Tensor& b, const at::Tensor& vf) {
  at::Tensor dot = (a * b * vf).sum(1);
  at::Tensor na = ((a * a * vf).sum(1) + 1e-12).sqrt();
  at::Tensor nb = ((b * b * vf).sum(1) + 1e-12).sqrt();
  return dot / (na * nb);
}

// The regression target y of the label (see the header): log(l + eps) or the normalised rank (1 = top).
at::Tensor label_target(const ScoreGroups& g, const at::Tensor& order, const HybridLossConfig& c) {
  if (c.label_transform == "log") {
    return at::where(g.valid, (g.label.clamp_min(0) + c.label_eps).log(), at::zeros({}, g.label.options()));
  }
  const int64_t n = order.size(1);
  at::Tensor positions = at::arange(n, order.options()).unsqueeze(0).expand_as(order);
  at::Tensor rank_of = at::empty_like(order).scatter_(1, order, positions).to(at::kFloat);
  at::Tensor last = detail::to_long_tensor(g.n_valid, order.device()).to(at::kFloat).sub(1).unsqueeze(1);
  return at::where(g.valid, (last - rank_of) / last.clamp_min(1), at::zeros({}, g.label.options()));
}

// Label mass share of each entry in its group: l / sum(l) over valid entries.
at::Tensor label_mass(const ScoreGroups& g) {
  at::Tensor l = at::where(g.valid, g.label.clamp_min(0), at::zeros({}, g.label.options()));
  return l / l.sum(1, true).clamp_min(1e-30);
}

at::Tensor binary_term(const ScoreGroups& g, const at::Tensor& order, const HybridLossConfig& c) {
  const int64_t n = g.pred.size(1);
  at::Tensor vf = g.valid.to(at::kFloat);
  at::Tensor sorted_pred = std::get<0>(
      at::where(g.valid, g.pred.detach(), at::full({}, -INFINITY, g.pred.options())).sort(1, /*descending=*/true));
  at::Tensor n_valid = detail::to_long_tensor(g.n_valid, g.pred.device());
  at::Tensor total = at::zeros({}, g.pred.options());
  for (double rho : c.ratios) {
    std::vector<int64_t> k = detail::top_counts(g.n_valid, rho);
    at::Tensor kt = detail::to_long_tensor(k, g.pred.device()).unsqueeze(1);  // [G, 1]
    at::Tensor target = detail::top_members(order, k).logical_and(g.valid).to(at::kFloat);
    at::Tensor hi = sorted_pred.gather(1, (kt - 1).clamp_min(0));
    at::Tensor lo = sorted_pred.gather(1, kt.clamp_max(n - 1));
    // Midpoint between the last kept and the first dropped predicted score; when everything is kept, 1 below.
    at::Tensor thr = at::where(kt.lt(n_valid.unsqueeze(1)), (hi + lo) / 2, hi - 1);
    thr = at::where(n_valid.unsqueeze(1).gt(0), thr, at::zeros({}, thr.options()));
    at::Tensor bce = at::binary_cross_entropy_with_logits((g.pred - thr) / c.binary_temperature, target, {}, {},
                                                          at::Reduction::None);
    total = total + group_mean((bce * vf).sum(1) / valid_counts(g).squeeze(1), g.n_valid);
  }
  return total / static_cast<double>(c.ratios.size());
}

at::Tensor mse_term(const ScoreGroups& g, const at::Tensor& y, const HybridLossConfig& c) {
  at::Tensor vf = g.valid.to(at::kFloat);
  at::Tensor n = valid_counts(g);
  at::Tensor diff = standardize(g.pred, vf, n) - standardize(y, vf, n);
  at::Tensor w = c.mse_value_weighted ? (min_max(y, g.valid) + c.mse_weight_floor) * vf : vf;
  return group_mean((w * diff * diff).sum(1) / w.sum(1).clamp_min(1e-12), g.n_valid);
}

struct Pairs {
  at::Tensor i, j;  // [G, n_pairs] entry indices
  at::Tensor ok;    // [G, n_pairs] float: 1 where the group had >= 2 candidates
};

// Pairs of distinct entries drawn uniformly from the first pool[g] entries of `order` in each group.
Pairs sample_pairs(const at::Tensor& order, const std::vector<int64_t>& pool, int64_t n_pairs, at::Generator& gen) {
  const int64_t groups = order.size(0), n = order.size(1);
  at::Tensor size = detail::to_long_tensor(pool, at::kCPU).to(at::kDouble).unsqueeze(1);  // [G, 1]
  at::Tensor u1 = at::rand({groups, n_pairs}, gen, at::TensorOptions().dtype(at::kDouble));
  at::Tensor u2 = at::rand({groups, n_pairs}, gen, at::TensorOptions().dtype(at::kDouble));
  at::Tensor a = (u1 * size).floor().to(at::kLong);
  at::Tensor b = (u2 * (size - 1).clamp_min(0)).floor().to(at::kLong);
  b = b + b.ge(a).to(at::kLong);  // skip a itself: b is uniform over the other pool entries
  const at::Tensor max_index = at::full({}, n - 1, at::kLong);
  a = at::minimum(a, max_index).to(order.device());
  b = at::minimum(b, max_index).to(order.device());
  Pairs p;
  p.i = order.gather(1, a);
  p.j = order.gather(1, b);
  p.ok = size.ge(2).to(at::kFloat).expand({groups, n_pairs}).to(order.device());
  return p;
}

// RankNet logistic loss of each pair: softplus(-sign(l_i - l_j) * (s_i - s_j) / temperature), 0 for ties.
std::pair<at::Tensor, at::Tensor> pair_losses(const ScoreGroups& g, const Pairs& p, double temperature) {
  at::Tensor sign = (g.label.gather(1, p.i) - g.label.gather(1, p.j)).sign();
  at::Tensor margin = sign * (g.pred.gather(1, p.i) - g.pred.gather(1, p.j)) / temperature;
  return {at::softplus(-margin), sign.abs() * p.ok};
}

at::Tensor intra_rank_term(const ScoreGroups& g, const at::Tensor& order, const HybridLossConfig& c,
                           at::Generator& gen) {
  Pairs p = sample_pairs(order, detail::top_counts(g.n_valid, c.intra_topk_ratio), c.intra_pairs, gen);
  auto [loss, w] = pair_losses(g, p, c.rank_temperature);
  return (loss * w).sum() / w.sum().clamp_min(1);
}

at::Tensor mass_rank_term(const ScoreGroups& g, const at::Tensor& order, const HybridLossConfig& c,
                          at::Generator& gen) {
  Pairs p = sample_pairs(order, g.n_valid, c.mass_pairs, gen);
  auto [loss, w] = pair_losses(g, p, c.rank_temperature);
  at::Tensor mass = label_mass(g);
  w = w * (mass.gather(1, p.i) - mass.gather(1, p.j)).abs();
  return (loss * w).sum() / w.sum().clamp_min(1e-30);
}

at::Tensor cosine_term(const ScoreGroups& g, const at::Tensor& y, const HybridLossConfig& c) {
  at::Tensor vf = g.valid.to(at::kFloat);
  at::Tensor cos;
  if (c.cosine_norm == "minmax") {
    cos = masked_cosine(min_max(g.pred, g.valid), min_max(y, g.valid), vf);
  } else {
    at::Tensor p = at::softmax(g.pred.masked_fill(g.valid.logical_not(), -1e9), 1) * vf;
    cos = masked_cosine(p, label_mass(g), vf);
  }
  return group_mean(1 - cos, g.n_valid);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

Status HybridLossConfig::validate() const {
  for (double w : {binary_weight, mse_weight, intra_rank_weight, mass_rank_weight, cosine_weight}) {
    if (!(w >= 0) || !std::isfinite(w)) return invalid_argument("hybrid loss: term weights must be finite and >= 0");
  }
  if (level == scoring::SelectionLevel::kToken) {
    // A token's kept-or-not depends on the max over all rows, which no per-entry ranking term expresses.
    return invalid_argument("hybrid loss: level token is a selection rule, not a loss level; train with layer "
                            "(or global, head) and select at token level");
  }
  if (level == scoring::SelectionLevel::kLayer && heads_per_layer < 1) {
    return invalid_argument("hybrid loss: level layer needs heads_per_layer >= 1");
  }
  if (label_transform != "log" && label_transform != "rank") {
    return invalid_argument("hybrid loss: label_transform '" + label_transform + "' is not one of log, rank");
  }
  if (!(label_eps > 0)) return invalid_argument("hybrid loss: label_eps must be > 0");
  if (binary_weight > 0 && ratios.empty()) return invalid_argument("hybrid loss: 'ratios' is empty");
  for (double r : ratios) {
    if (!(r > 0 && r <= 1)) return invalid_argument("hybrid loss: every ratio must be in (0, 1]");
  }
  if (!(binary_temperature > 0) || !(rank_temperature > 0)) {
    return invalid_argument("hybrid loss: temperatures must be > 0");
  }
  if (!(mse_weight_floor > 0)) return invalid_argument("hybrid loss: mse_weight_floor must be > 0");
  if (!(intra_topk_ratio > 0 && intra_topk_ratio <= 1)) {
    return invalid_argument("hybrid loss: intra_topk_ratio must be in (0, 1]");
  }
  if (intra_pairs < 1 || mass_pairs < 1) return invalid_argument("hybrid loss: pair counts must be >= 1");
  if (cosine_norm != "minmax" && cosine_norm != "softmax") {
    return invalid_argument("hybrid loss: cosine_norm '" + cosine_norm + "' is not one of minmax, softmax");
  }
  return Status::ok();
}

json HybridLossConfig::to_json() const {
  return json{{"binary_weight", binary_weight},
              {"mse_weight", mse_weight},
              {"intra_rank_weight", intra_rank_weight},
              {"mass_rank_weight", mass_rank_weight},
              {"cosine_weight", cosine_weight},
              {"level", scoring::selection_level_name(level)},
              {"heads_per_layer", heads_per_layer},
              {"label_transform", label_transform},
              {"label_eps", label_eps},
              {"ratios", ratios},
              {"binary_temperature", binary_temperature},
              {"mse_value_weighted", mse_value_weighted},
              {"mse_weight_floor", mse_weight_floor},
              {"intra_topk_ratio", intra_topk_ratio},
              {"intra_pairs", intra_pairs},
              {"mass_pairs", mass_pairs},
              {"rank_temperature", rank_temperature},
              {"cosine_norm", cosine_norm}};
}

Result<HybridLossConfig> HybridLossConfig::from_json(const json& j, const std::string& origin) {
  HybridLossConfig c;
  if (!j.is_object()) return invalid_argument(origin + ": loss config must be a JSON object");
  PROXYKV_RETURN_IF_ERROR(detail::refuse_unknown_keys(j, origin, c.to_json()));
  std::string level = scoring::selection_level_name(c.level);
  try {
    detail::read_field(j, "binary_weight", c.binary_weight);
    detail::read_field(j, "mse_weight", c.mse_weight);
    detail::read_field(j, "intra_rank_weight", c.intra_rank_weight);
    detail::read_field(j, "mass_rank_weight", c.mass_rank_weight);
    detail::read_field(j, "cosine_weight", c.cosine_weight);
    detail::read_field(j, "level", level);
    detail::read_field(j, "heads_per_layer", c.heads_per_layer);
    detail::read_field(j, "label_transform", c.label_transform);
    detail::read_field(j, "label_eps", c.label_eps);
    detail::read_field(j, "ratios", c.ratios);
    detail::read_field(j, "binary_temperature", c.binary_temperature);
    detail::read_field(j, "mse_value_weighted", c.mse_value_weighted);
    detail::read_field(j, "mse_weight_floor", c.mse_weight_floor);
    detail::read_field(j, "intra_topk_ratio", c.intra_topk_ratio);
    detail::read_field(j, "intra_pairs", c.intra_pairs);
    detail::read_field(j, "mass_pairs", c.mass_pairs);
    detail::read_field(j, "rank_temperature", c.rank_temperature);
    detail::read_field(j, "cosine_norm", c.cosine_norm);
  } catch (const json::exception& e) {
    return invalid_argument(origin + ": " + e.what());
  }
  Result<scoring::SelectionLevel> parsed = scoring::parse_selection_level(level);
  if (!parsed.is_ok()) return invalid_argument(origin + ": " + parsed.status().message());
  c.level = parsed.value();
  Status valid = c.validate();
  if (!valid.is_ok()) return invalid_argument(origin + ": " + valid.message());
  return c;
}

std::map<std::string, double> HybridLossTerms::values() const {
  std::map<std::string, double> out;
  auto put = [&](const char* name, const at::Tensor& t) {
    if (t.defined()) out[name] = t.item<double>();
  };
  put("total", total);
  put("binary", binary);
  put("mse", mse);
  put("intra_rank", intra_rank);
  put("mass_rank", mass_rank);
  put("cosine", cosine);
  return out;
}

HybridLossTerms hybrid_loss(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid,
                            const HybridLossConfig& config, at::Generator generator) {
  Status ok = config.validate();
  TORCH_CHECK(ok.is_ok(), ok.message());
  TORCH_CHECK(pred.defined() && label.defined(), "hybrid_loss needs pred and label");
  const ScoreGroups g = detail::make_groups(pred, label.detach(), valid, config.level, config.heads_per_layer);
  const at::Tensor order = detail::descending_order(g.label, g.valid);
  at::Tensor y;
  if (config.mse_weight > 0 || (config.cosine_weight > 0 && config.cosine_norm == "minmax")) {
    y = label_target(g, order, config);
  }

  // One pair-sampling stream per rank term, both always drawn: switching one term off (an ablation) leaves the
  // pairs of the other unchanged.
  at::Tensor seeds = at::randint(int64_t{1} << 62, {2}, generator, at::TensorOptions().dtype(at::kLong));
  at::Generator intra_gen = at::detail::createCPUGenerator(static_cast<uint64_t>(seeds[0].item<int64_t>()));
  at::Generator mass_gen = at::detail::createCPUGenerator(static_cast<uint64_t>(seeds[1].item<int64_t>()));

  HybridLossTerms out;
  out.total = g.pred.sum() * 0;  // keeps a graph to pred even when every term is off
  if (config.binary_weight > 0) {
    out.binary = binary_term(g, order, config);
    out.total = out.total + config.binary_weight * out.binary;
  }
  if (config.mse_weight > 0) {
    out.mse = mse_term(g, y, config);
    out.total = out.total + config.mse_weight * out.mse;
  }
  if (config.intra_rank_weight > 0) {
    out.intra_rank = intra_rank_term(g, order, config, intra_gen);
    out.total = out.total + config.intra_rank_weight * out.intra_rank;
  }
  if (config.mass_rank_weight > 0) {
    out.mass_rank = mass_rank_term(g, order, config, mass_gen);
    out.total = out.total + config.mass_rank_weight * out.mass_rank;
  }
  if (config.cosine_weight > 0) {
    out.cosine = cosine_term(g, y, config);
    out.total = out.total + config.cosine_weight * out.cosine;
  }
  return out;
}

}  // namespace proxykv::mapper
