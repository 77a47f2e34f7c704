#include "proxykv/mapper/mapper_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>  // clip_grad.h uses torch::Tensor without including it

#include <torch/nn/utils/clip_grad.h>

#include "json_fields.h"
#include "proxykv/mapper/mapper_metrics.h"

namespace proxykv::mapper {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double lr_at(const MapperTrainConfig& c, int64_t step, int64_t total_steps) {
  if (step < c.warmup_steps) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - c.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - c.warmup_steps) / span);
  return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress)));
}

// Weight decay on weight matrices only: biases, LayerNorm gains, the proxy-head embeddings, the target-head queries
// and the relative-position biases are left alone (decaying them pulls heads towards each other).
std::vector<torch::optim::OptimizerParamGroup> param_groups(const HybridAxialMapper& mapper,
                                                            const MapperTrainConfig& c) {
  std::vector<at::Tensor> decay, keep;
  for (const auto& item : mapper->named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    const bool matrix = item.value().dim() >= 2 && name.find("head_embed") == std::string::npos &&
                        name.find("queries") == std::string::npos && name.find("rel_bias") == std::string::npos;
    (matrix ? decay : keep).push_back(item.value());
  }
  // Every group carries complete options: libtorch ignores the optimizer defaults for a group with its own options.
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, options(c.weight_decay));
  if (!keep.empty()) groups.emplace_back(keep, options(0.0));
  return groups;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Data

Status check_samples(const std::vector<MapperSample>& samples, const MapperPairShape& shape, const std::string& what) {
  for (size_t i = 0; i < samples.size(); ++i) {
    const MapperSample& s = samples[i];
    const std::string name = what + " sample " + std::to_string(i) + (s.id.empty() ? "" : " ('" + s.id + "')");
    if (!s.features.defined() || !s.labels.defined()) return invalid_argument(name + ": missing tensors");
    if (!at::isFloatingType(s.features.scalar_type()) || !at::isFloatingType(s.labels.scalar_type())) {
      return invalid_argument(name + ": features and labels must be floating point");
    }
    if (s.features.dim() != 3 || s.features.size(0) != shape.channels || s.features.size(1) != shape.proxy_heads() ||
        s.labels.dim() != 2 || s.labels.size(0) != shape.target_heads() || s.features.size(2) != s.labels.size(1) ||
        s.features.size(2) < 1) {
      std::ostringstream m;
      m << name << ": features " << s.features.sizes() << " and labels " << s.labels.sizes()
        << " do not fit [C=" << shape.channels << ", P=" << shape.proxy_heads()
        << ", T] and [Q=" << shape.target_heads() << ", T] (" << shape.to_string() << ")";
      return invalid_argument(m.str());
    }
  }
  return Status::ok();
}

std::vector<MapperSample> with_label_rows(const std::vector<MapperSample>& samples, const std::string& label_rows) {
  if (label_rows == "each") return samples;
  std::vector<MapperSample> out = samples;
  for (MapperSample& s : out) s.labels = std::get<0>(s.labels.max(0, /*keepdim=*/true)).expand_as(s.labels).contiguous();
  return out;
}

std::vector<MapperWindow> plan_windows(const std::vector<MapperSample>& samples, int64_t window, int64_t stride) {
  std::vector<MapperWindow> out;
  for (size_t i = 0; i < samples.size(); ++i) {
    const int64_t t = samples[i].features.size(-1);
    for (int64_t start = 0;; start += stride) {
      out.push_back({i, start});
      if (start + window >= t) break;
    }
  }
  return out;
}

MapperBatch gather_windows(const std::vector<MapperSample>& samples, const std::vector<MapperWindow>& windows,
                           int64_t window) {
  std::vector<at::Tensor> features, labels, valid;
  for (const MapperWindow& w : windows) {
    const MapperSample& s = samples.at(w.sample);
    const int64_t t = s.features.size(-1);
    const int64_t end = std::min(t, w.start + window), pad = window - (end - w.start);
    features.push_back(at::constant_pad_nd(s.features.slice(-1, w.start, end).to(at::kFloat), {0, pad}));
    labels.push_back(at::constant_pad_nd(s.labels.slice(-1, w.start, end).to(at::kFloat), {0, pad}));
    valid.push_back(at::arange(window, at::kLong).lt(end - w.start));
  }
  return {at::stack(features), at::stack(labels), at::stack(valid)};
}

// ---------------------------------------------------------------------------------------------------------------
// Config

Status MapperTrainConfig::validate() const {
  PROXYKV_RETURN_IF_ERROR(loss.validate());
  if (window < 1 || stride < 1 || stride > window) {
    return invalid_argument("mapper training: need window >= 1 and 1 <= stride <= window");
  }
  if (batch_size < 1 || epochs < 0) return invalid_argument("mapper training: need batch_size >= 1, epochs >= 0");
  if (!(lr > 0) || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(weight_decay >= 0) || !(clip >= 0) ||
      warmup_steps < 1 || !(min_lr_ratio >= 0 && min_lr_ratio <= 1)) {
    return invalid_argument(
        "mapper training: need lr > 0, betas in [0, 1), weight_decay >= 0, clip >= 0, warmup_steps >= 1, "
        "min_lr_ratio in [0, 1]");
  }
  for (double r : eval_ratios) {
    if (!(r > 0 && r <= 1)) return invalid_argument("mapper training: every eval ratio must be in (0, 1]");
  }
  if (label_rows != "each" && label_rows != "max") {
    return invalid_argument("mapper training: label_rows must be \"each\" or \"max\", got \"" + label_rows + "\"");
  }
  return Status::ok();
}

std::string MapperTrainConfig::selection_level() const {
  return label_rows == "max" ? "token" : scoring::selection_level_name(loss.level);
}

json MapperTrainConfig::to_json() const {
  return json{{"loss", loss.to_json()},
              {"window", window},
              {"stride", stride},
              {"batch_size", batch_size},
              {"epochs", epochs},
              {"lr", lr},
              {"beta1", beta1},
              {"beta2", beta2},
              {"weight_decay", weight_decay},
              {"clip", clip},
              {"warmup_steps", warmup_steps},
              {"min_lr_ratio", min_lr_ratio},
              {"seed", seed},
              {"eval_ratios", eval_ratios},
              {"label_rows", label_rows}};
}

Result<MapperTrainConfig> MapperTrainConfig::from_json(const json& j, const std::string& origin) {
  MapperTrainConfig c;
  if (!j.is_object()) return invalid_argument(origin + ": training config must be a JSON object");
  PROXYKV_RETURN_IF_ERROR(detail::refuse_unknown_keys(j, origin, c.to_json()));
  if (j.contains("loss")) {
    PROXYKV_ASSIGN_OR_RETURN(c.loss, HybridLossConfig::from_json(j.at("loss"), origin + ": loss"));
  }
  try {
    detail::read_field(j, "window", c.window);
    detail::read_field(j, "stride", c.stride);
    detail::read_field(j, "batch_size", c.batch_size);
    detail::read_field(j, "epochs", c.epochs);
    detail::read_field(j, "lr", c.lr);
    detail::read_field(j, "beta1", c.beta1);
    detail::read_field(j, "beta2", c.beta2);
    detail::read_field(j, "weight_decay", c.weight_decay);
    detail::read_field(j, "clip", c.clip);
    detail::read_field(j, "warmup_steps", c.warmup_steps);
    detail::read_field(j, "min_lr_ratio", c.min_lr_ratio);
    detail::read_field(j, "seed", c.seed);
    detail::read_field(j, "eval_ratios", c.eval_ratios);
    detail::read_field(j, "label_rows", c.label_rows);
  } catch (const json::exception& e) {
    return invalid_argument(origin + ": " + e.what());
  }
  Status valid = c.validate();
  if (!valid.is_ok()) return invalid_argument(origin + ": " + valid.message());
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation and training

Result<MapperEvalMetrics> evaluate_mapper(HybridAxialMapper& mapper, const std::vector<MapperSample>& samples,
                                          const std::vector<double>& ratios, const HybridLossConfig& loss_config,
                                          uint64_t seed) {
  PROXYKV_RETURN_IF_ERROR(check_samples(samples, mapper->config().shape, "validation"));
  HybridLossConfig loss = loss_config;
  if (loss.heads_per_layer == 0) loss.heads_per_layer = mapper->config().shape.target_kv_heads;
  PROXYKV_RETURN_IF_ERROR(loss.validate());
  for (double r : ratios) {
    if (!(r > 0 && r <= 1)) return invalid_argument("evaluate_mapper: every ratio must be in (0, 1]");
  }

  const bool was_training = mapper->is_training();
  mapper->eval();
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  MapperEvalMetrics m;
  try {
    for (const MapperSample& s : samples) {
      at::Tensor pred = mapper->forward(s.features.to(at::kFloat).unsqueeze(0));
      at::Tensor label = s.labels.to(at::kFloat).unsqueeze(0);
      for (double rho : ratios) {
        m.recall[rho] += topk_recall(pred, label, rho, {}, loss.level, loss.heads_per_layer).item<double>();
      }
      m.spearman += spearman(pred, label).item<double>();
      m.loss += hybrid_loss(pred, label, {}, loss, gen).total.item<double>();
      ++m.samples;
    }
  } catch (const std::exception& e) {
    mapper->train(was_training);
    return internal_error(std::string("mapper evaluation failed: ") + e.what());
  }
  mapper->train(was_training);
  if (m.samples == 0) return m;
  const double n = static_cast<double>(m.samples);
  for (auto& [rho, r] : m.recall) {
    r /= n;
    m.mean_recall += r / static_cast<double>(m.recall.size());
  }
  m.spearman /= n;
  m.loss /= n;
  return m;
}

Result<std::vector<MapperEpochMetrics>> train_mapper_epochs(HybridAxialMapper& mapper,
                                                            const std::vector<MapperSample>& train_in,
                                                            const std::vector<MapperSample>& val_in,
                                                            const MapperTrainConfig& config,
                                                            const MapperTrainHooks& hooks) {
  PROXYKV_RETURN_IF_ERROR(config.validate());
  const MapperPairShape& shape = mapper->config().shape;
  PROXYKV_RETURN_IF_ERROR(check_samples(train_in, shape, "training"));
  PROXYKV_RETURN_IF_ERROR(check_samples(val_in, shape, "validation"));
  if (mapper->config().input_transform == "log") {
    // The "log" transform clamps at 0 before its log: on features that are already logs (proxy_features.h writes
    // the attention channels as log(s + 1e-6) <= 0) it maps every value to one constant, and the mapper trains
    // blind to them. That happened to every mapper before 2026-12-03; refused by name since.
    for (const auto* set : {&train_in, &val_in}) {
      for (const MapperSample& s : *set) {
        const double lo = s.features.min().item<double>();
        if (lo < 0) {
          return invalid_argument("mapper training: input_transform \"log\" on features with negative values (" +
                                  std::to_string(lo) + " in '" + s.id +
                                  "'): they are already logs (proxy_features.h); use \"none\"");
        }
      }
    }
  }
  const std::vector<MapperSample> train = with_label_rows(train_in, config.label_rows);
  const std::vector<MapperSample> val = with_label_rows(val_in, config.label_rows);
  if (train.empty()) return invalid_argument("mapper training: the training set is empty");
  HybridLossConfig loss = config.loss;
  if (loss.heads_per_layer == 0) loss.heads_per_layer = shape.target_kv_heads;
  if (loss.level == scoring::SelectionLevel::kLayer && loss.heads_per_layer != shape.target_kv_heads) {
    return invalid_argument("mapper training: loss.heads_per_layer must be the target's KV heads per layer (" +
                            std::to_string(shape.target_kv_heads) + ")");
  }

  std::vector<MapperWindow> windows = plan_windows(train, config.window, config.stride);
  const int64_t n_windows = static_cast<int64_t>(windows.size());
  const int64_t steps_per_epoch = (n_windows + config.batch_size - 1) / config.batch_size;
  const int64_t total_steps = steps_per_epoch * config.epochs;

  torch::optim::AdamW optimizer(param_groups(mapper, config), torch::optim::AdamWOptions(config.lr));
  std::mt19937_64 order_rng(config.seed);
  at::Generator pair_gen = at::detail::createCPUGenerator(config.seed);
  const auto start = Clock::now();
  std::vector<MapperEpochMetrics> history;
  int64_t step = 0;

  // LibTorch reports its own failures (out of memory, a broken invariant) by exception: none leaves this function.
  try {
    for (int64_t epoch = 1; epoch <= config.epochs; ++epoch) {
      const auto epoch_start = Clock::now();
      mapper->train();
      std::shuffle(windows.begin(), windows.end(), order_rng);
      MapperEpochMetrics metrics;
      metrics.epoch = epoch;
      for (int64_t first = 0; first < n_windows; first += config.batch_size) {
        const std::vector<MapperWindow> batch_windows(windows.begin() + first,
                                                      windows.begin() + std::min(n_windows, first + config.batch_size));
        const MapperBatch batch = gather_windows(train, batch_windows, config.window);
        const double lr = lr_at(config, step, total_steps);
        for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

        at::Tensor pred = mapper->forward(batch.features, batch.valid);
        HybridLossTerms terms = hybrid_loss(pred, batch.labels, batch.valid, loss, pair_gen);
        optimizer.zero_grad();
        terms.total.backward();
        if (config.clip > 0) torch::nn::utils::clip_grad_norm_(mapper->parameters(), config.clip);
        optimizer.step();
        ++step;

        const std::map<std::string, double> values = terms.values();
        metrics.train_loss += values.at("total");
        for (const auto& [name, v] : values) {
          if (name != "total") metrics.train_terms[name] += v;
        }
        if (hooks.on_step) hooks.on_step({epoch, step, total_steps, values.at("total"), lr, seconds_since(start)});
      }
      metrics.steps = step;
      metrics.train_loss /= static_cast<double>(steps_per_epoch);
      for (auto& [name, v] : metrics.train_terms) v /= static_cast<double>(steps_per_epoch);
      if (!val.empty()) {
        PROXYKV_ASSIGN_OR_RETURN(metrics.val, evaluate_mapper(mapper, val, config.eval_ratios, loss, config.seed));
      }
      metrics.seconds = seconds_since(epoch_start);
      history.push_back(metrics);
      if (hooks.on_epoch) hooks.on_epoch(metrics);
    }
  } catch (const std::exception& e) {
    return internal_error(std::string("mapper training failed at step ") + std::to_string(step) + ": " + e.what());
  }
  return history;
}

}  // namespace proxykv::mapper
