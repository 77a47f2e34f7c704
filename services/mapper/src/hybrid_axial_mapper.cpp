#include "proxykv/mapper/hybrid_axial_mapper.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include <ATen/core/grad_mode.h>

#include "json_fields.h"

namespace proxykv::mapper {
namespace {

using nlohmann::json;

// GELU, tanh form. LibTorch 1.13's exact GELU ("none") computes a wrong backward when the incoming gradient is not
// contiguous (measured here: errors of order 1 on random inputs, gradients of 1e22 inside the mapper, whose
// transposes make such gradients), so training silently stalled. The tanh form's backward is correct; it differs
// from exact GELU by < 1e-3. Pinned by HybridAxialMapper.GradientsMatchFiniteDifferences.
at::Tensor gelu_tanh(const at::Tensor& x) {
  return at::gelu(x, "tanh");
}

// Score of a masked-out key: finite, so a row whose keys are all masked (a padded query) gives a uniform softmax
// instead of NaN, and exp() of it underflows to exactly 0 next to any real key.
constexpr double kMaskedScore = -1e9;

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// MapperPairShape / MapperConfig

bool MapperPairShape::operator==(const MapperPairShape& o) const {
  return channels == o.channels && proxy_layers == o.proxy_layers && proxy_kv_heads == o.proxy_kv_heads &&
         target_layers == o.target_layers && target_kv_heads == o.target_kv_heads;
}

std::string MapperPairShape::to_string() const {
  std::ostringstream s;
  s << "C=" << channels << ", proxy " << proxy_layers << " layers x " << proxy_kv_heads << " KV heads -> target "
    << target_layers << " layers x " << target_kv_heads << " KV heads";
  return s.str();
}

Status MapperConfig::validate() const {
  if (shape.channels < 1 || shape.proxy_layers < 1 || shape.proxy_kv_heads < 1 || shape.target_layers < 1 ||
      shape.target_kv_heads < 1) {
    return invalid_argument("mapper config: every pair shape value must be >= 1, got " + shape.to_string());
  }
  if (variant != "hybrid" && variant != "linear") {
    return invalid_argument("mapper config: variant '" + variant + "' is not one of hybrid, linear");
  }
  if (input_transform != "log" && input_transform != "symlog" && input_transform != "none") {
    return invalid_argument("mapper config: input_transform '" + input_transform + "' is not one of log, symlog, none");
  }
  if (!(input_eps > 0)) return invalid_argument("mapper config: input_eps must be > 0");
  if (variant == "linear") return Status::ok();
  if (d_model < 1 || n_attn_heads < 1 || d_model % n_attn_heads != 0) {
    return invalid_argument("mapper config: d_model (" + std::to_string(d_model) +
                            ") must be a positive multiple of n_attn_heads (" + std::to_string(n_attn_heads) + ")");
  }
  if (conv_kernel < 1 || conv_kernel % 2 == 0) {
    return invalid_argument("mapper config: conv_kernel must be odd and >= 1, got " + std::to_string(conv_kernel));
  }
  if (conv_layers < 1) return invalid_argument("mapper config: conv_layers must be >= 1");
  if (time_window < 1) return invalid_argument("mapper config: time_window must be >= 1");
  if (time_layers < 0) return invalid_argument("mapper config: time_layers must be >= 0");
  if (!(dropout >= 0 && dropout < 1)) return invalid_argument("mapper config: dropout must be in [0, 1)");
  return Status::ok();
}

json MapperConfig::to_json() const {
  return json{{"channels", shape.channels},
              {"proxy_layers", shape.proxy_layers},
              {"proxy_kv_heads", shape.proxy_kv_heads},
              {"target_layers", shape.target_layers},
              {"target_kv_heads", shape.target_kv_heads},
              {"proxy_id", proxy_id},
              {"target_id", target_id},
              {"variant", variant},
              {"input_transform", input_transform},
              {"input_eps", input_eps},
              {"d_model", d_model},
              {"conv_kernel", conv_kernel},
              {"conv_layers", conv_layers},
              {"time_window", time_window},
              {"time_layers", time_layers},
              {"n_attn_heads", n_attn_heads},
              {"dropout", dropout}};
}

Result<MapperConfig> MapperConfig::from_json(const json& j, const std::string& origin) {
  MapperConfig c;
  if (!j.is_object()) return invalid_argument(origin + ": mapper config must be a JSON object");
  PROXYKV_RETURN_IF_ERROR(detail::refuse_unknown_keys(j, origin, c.to_json()));
  for (const char* key : {"channels", "proxy_layers", "proxy_kv_heads", "target_layers", "target_kv_heads"}) {
    if (!j.contains(key)) return invalid_argument(origin + ": missing required key '" + std::string(key) + "'");
  }
  try {
    detail::read_field(j, "channels", c.shape.channels);
    detail::read_field(j, "proxy_layers", c.shape.proxy_layers);
    detail::read_field(j, "proxy_kv_heads", c.shape.proxy_kv_heads);
    detail::read_field(j, "target_layers", c.shape.target_layers);
    detail::read_field(j, "target_kv_heads", c.shape.target_kv_heads);
    detail::read_field(j, "proxy_id", c.proxy_id);
    detail::read_field(j, "target_id", c.target_id);
    detail::read_field(j, "variant", c.variant);
    detail::read_field(j, "input_transform", c.input_transform);
    detail::read_field(j, "input_eps", c.input_eps);
    detail::read_field(j, "d_model", c.d_model);
    detail::read_field(j, "conv_kernel", c.conv_kernel);
    detail::read_field(j, "conv_layers", c.conv_layers);
    detail::read_field(j, "time_window", c.time_window);
    detail::read_field(j, "time_layers", c.time_layers);
    detail::read_field(j, "n_attn_heads", c.n_attn_heads);
    detail::read_field(j, "dropout", c.dropout);
  } catch (const json::exception& e) {
    return invalid_argument(origin + ": " + e.what());
  }
  Status valid = c.validate();
  if (!valid.is_ok()) return invalid_argument(origin + ": " + valid.message());
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// Stage (a): temporal convolutions

TemporalConvStackImpl::TemporalConvStackImpl(int64_t in_channels, int64_t d_model, int64_t kernel, int64_t layers,
                                             int64_t proxy_heads)
    : proxy_heads_(proxy_heads) {
  convs_ = register_module("convs", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) {
    convs_->push_back(torch::nn::Conv1d(
        torch::nn::Conv1dOptions(i == 0 ? in_channels : d_model, d_model, kernel).padding(kernel / 2)));
  }
  head_embed_ = register_parameter("head_embed", at::randn({proxy_heads, d_model}) * 0.1);
}

at::Tensor TemporalConvStackImpl::forward(const at::Tensor& x, const at::Tensor& valid) {
  at::Tensor h = x;
  for (size_t i = 0; i < convs_->size(); ++i) {
    at::Tensor y = gelu_tanh(convs_[i]->as<torch::nn::Conv1d>()->forward(h));
    h = (i == 0 ? y : h + y) * valid;  // re-zero padding: the next conv must see zeros there, as 'same' padding
  }
  const int64_t n = h.size(0), d = h.size(1), t = h.size(2);
  h = (h.view({n / proxy_heads_, proxy_heads_, d, t}) + head_embed_.view({1, proxy_heads_, d, 1})).view({n, d, t});
  return h * valid;
}

// ---------------------------------------------------------------------------------------------------------------
// Stage (b): band attention along time

LocalTimeAttentionBlockImpl::LocalTimeAttentionBlockImpl(int64_t d_model, int64_t n_heads, int64_t radius,
                                                         double dropout)
    : n_heads_(n_heads), radius_(radius) {
  ln_attn_ = register_module("ln_attn", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  qkv_ = register_module("qkv", torch::nn::Linear(d_model, 3 * d_model));
  out_ = register_module("out", torch::nn::Linear(d_model, d_model));
  ln_ff_ = register_module("ln_ff", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  ff_in_ = register_module("ff_in", torch::nn::Linear(d_model, 2 * d_model));
  ff_out_ = register_module("ff_out", torch::nn::Linear(2 * d_model, d_model));
  drop_ = register_module("drop", torch::nn::Dropout(dropout));
  rel_bias_ = register_parameter("rel_bias", at::zeros({n_heads, 2 * radius + 1}));
}

// x [N, T, d] -> [N, T, d]. Chunks of W = radius tokens; chunk c's queries see keys [cW - W, cW + 2W), which contain
// every key within the band of each of its queries. Scores are [N, T/W, H, W, 3W]: linear in T.
at::Tensor LocalTimeAttentionBlockImpl::band_attention(const at::Tensor& x, const at::Tensor& valid) {
  const int64_t n = x.size(0), t = x.size(1), d = x.size(2), h = n_heads_, dh = d / n_heads_, w = radius_;
  const int64_t chunks = (t + w - 1) / w, tp = chunks * w;
  const int64_t scores_per_row = tp * h * 3 * w;
  if (n > 1 && !at::GradMode::is_enabled() && n * scores_per_row > max_chunk_elements_) {
    const int64_t rows = std::max<int64_t>(1, max_chunk_elements_ / scores_per_row);
    std::vector<at::Tensor> parts;
    for (int64_t r = 0; r < n; r += rows) {
      parts.push_back(band_attention(x.slice(0, r, std::min(n, r + rows)), valid.slice(0, r, std::min(n, r + rows))));
    }
    return at::cat(parts, 0);
  }
  at::Tensor qkv = at::constant_pad_nd(qkv_->forward(x), {0, 0, 0, tp - t}).view({n, tp, 3, h, dh});
  at::Tensor q = qkv.select(2, 0).view({n, chunks, w, h, dh}).permute({0, 1, 3, 2, 4});  // [N, c, H, W, dh]
  // Keys/values padded by one chunk on each side, then cut into overlapping 3W windows with stride W.
  auto windows = [&](const at::Tensor& m) {  // [N, tp, H, dh] -> [N, c, H, 3W, dh]
    return at::constant_pad_nd(m, {0, 0, 0, 0, w, w}).unfold(1, 3 * w, w).transpose(-1, -2);
  };
  at::Tensor k = windows(qkv.select(2, 1));
  at::Tensor v = windows(qkv.select(2, 2));
  at::Tensor key_valid =
      at::constant_pad_nd(valid.to(at::kFloat), {w, w + tp - t}).unfold(1, 3 * w, w).gt(0.5);  // [N, c, 3W]

  // Relative offset of key slot j from query slot i inside a chunk: (j - W) - i.
  auto opts = at::TensorOptions().dtype(at::kLong).device(x.device());
  at::Tensor rel = (at::arange(3 * w, opts).view({1, 3 * w}) - w) - at::arange(w, opts).view({w, 1});  // [W, 3W]
  at::Tensor band = rel.abs().le(w);
  at::Tensor bias = rel_bias_.index_select(1, (rel.clamp(-w, w) + w).flatten()).view({h, w, 3 * w});

  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(dh)) + bias;
  at::Tensor allowed = band.view({1, 1, 1, w, 3 * w}).logical_and(key_valid.view({n, chunks, 1, 1, 3 * w}));
  at::Tensor attn = drop_->forward(at::softmax(scores.masked_fill(allowed.logical_not(), kMaskedScore), -1));
  at::Tensor o = at::matmul(attn, v).permute({0, 1, 3, 2, 4}).reshape({n, tp, d});
  return out_->forward(o.slice(1, 0, t));
}

at::Tensor LocalTimeAttentionBlockImpl::forward(const at::Tensor& h, const at::Tensor& valid) {
  at::Tensor keep = valid.unsqueeze(-1);
  at::Tensor x = h + drop_->forward(band_attention(ln_attn_->forward(h), valid));
  x = x + drop_->forward(ff_out_->forward(gelu_tanh(ff_in_->forward(ln_ff_->forward(x)))));
  return at::where(keep, x, at::zeros({}, x.options()));
}

// ---------------------------------------------------------------------------------------------------------------
// Stage (c): learned target-head queries over the proxy heads of each token

HeadCrossAttentionImpl::HeadCrossAttentionImpl(int64_t d_model, int64_t n_heads, int64_t target_heads, double dropout)
    : n_heads_(n_heads) {
  queries_ =
      register_parameter("queries", at::randn({target_heads, d_model}) / std::sqrt(static_cast<double>(d_model)));
  ln_kv_ = register_module("ln_kv", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  key_ = register_module("key", torch::nn::Linear(d_model, d_model));
  value_ = register_module("value", torch::nn::Linear(d_model, d_model));
  out_ = register_module("out", torch::nn::Linear(d_model, d_model));
  ln_ff_ = register_module("ln_ff", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  ff_in_ = register_module("ff_in", torch::nn::Linear(d_model, 2 * d_model));
  ff_out_ = register_module("ff_out", torch::nn::Linear(2 * d_model, d_model));
  ln_out_ = register_module("ln_out", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  drop_ = register_module("drop", torch::nn::Dropout(dropout));
  const double bound = 1.0 / std::sqrt(static_cast<double>(d_model));  // nn.Linear's default init range
  readout_weight_ = register_parameter("readout_weight", at::rand({target_heads, d_model}) * (2 * bound) - bound);
  readout_bias_ = register_parameter("readout_bias", at::zeros({target_heads}));
}

at::Tensor HeadCrossAttentionImpl::forward(const at::Tensor& h) {
  const int64_t b = h.size(0), p = h.size(1), t = h.size(2), d = h.size(3), nh = n_heads_, dh = d / n_heads_;
  const int64_t nq = queries_.size(0);
  at::Tensor kv = ln_kv_->forward(h);
  at::Tensor k = key_->forward(kv).view({b, p, t, nh, dh}).permute({0, 2, 3, 4, 1});         // [B, T, H, dh, P]
  at::Tensor v = value_->forward(kv).view({b, p, t, nh, dh}).permute({0, 2, 3, 1, 4});       // [B, T, H, P, dh]
  at::Tensor q = queries_.view({nq, nh, dh}).permute({1, 0, 2});                             // [H, Q, dh]
  at::Tensor attn = at::softmax(at::matmul(q, k) / std::sqrt(static_cast<double>(dh)), -1);  // [B, T, H, Q, P]
  at::Tensor o = at::matmul(drop_->forward(attn), v).permute({0, 1, 3, 2, 4}).reshape({b, t, nq, d});
  at::Tensor z = queries_ + drop_->forward(out_->forward(o));  // [B, T, Q, d]
  z = z + drop_->forward(ff_out_->forward(gelu_tanh(ff_in_->forward(ln_ff_->forward(z)))));
  at::Tensor score = (ln_out_->forward(z) * readout_weight_).sum(-1) + readout_bias_;  // [B, T, Q]
  return score.permute({0, 2, 1});
}

// ---------------------------------------------------------------------------------------------------------------
// The mapper

HybridAxialMapperImpl::HybridAxialMapperImpl(const MapperConfig& config) : config_(config) {
  throw_if_error(config_.validate());
  const MapperPairShape& s = config_.shape;
  if (config_.variant == "linear") {
    linear_ = register_module("linear", torch::nn::Linear(s.channels * s.proxy_heads(), s.target_heads()));
    return;
  }
  conv_ = register_module("conv", TemporalConvStack(s.channels, config_.d_model, config_.conv_kernel,
                                                    config_.conv_layers, s.proxy_heads()));
  time_ = register_module("time", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.time_layers; ++i) {
    time_->push_back(
        LocalTimeAttentionBlock(config_.d_model, config_.n_attn_heads, config_.time_window, config_.dropout));
  }
  cross_ = register_module(
      "cross", HeadCrossAttention(config_.d_model, config_.n_attn_heads, s.target_heads(), config_.dropout));
}

Status HybridAxialMapperImpl::check_input(const at::Tensor& features, const at::Tensor& mask) const {
  const MapperPairShape& s = config_.shape;
  if (!features.defined() || features.dim() != 4 || !at::isFloatingType(features.scalar_type())) {
    return invalid_argument("mapper input: features must be a float tensor [B, C, P, T]");
  }
  if (features.size(0) < 1 || features.size(1) != s.channels || features.size(2) != s.proxy_heads() ||
      features.size(3) < 1) {
    std::ostringstream m;
    m << "mapper input: features " << features.sizes() << " do not fit [B, C=" << s.channels
      << ", P=" << s.proxy_heads() << ", T>=1] (" << s.to_string() << ")";
    return invalid_argument(m.str());
  }
  if (mask.defined() && (mask.scalar_type() != at::kBool || mask.dim() != 2 || mask.size(0) != features.size(0) ||
                         mask.size(1) != features.size(3))) {
    std::ostringstream m;
    m << "mapper input: mask must be bool [B, T] = [" << features.size(0) << ", " << features.size(3) << "], got "
      << mask.sizes() << " " << mask.scalar_type();
    return invalid_argument(m.str());
  }
  return Status::ok();
}

int64_t HybridAxialMapperImpl::receptive_field() const {
  if (config_.variant == "linear") return 0;
  return config_.conv_layers * (config_.conv_kernel / 2) + config_.time_layers * config_.time_window;
}

at::Tensor HybridAxialMapperImpl::transform_input(const at::Tensor& features) const {
  at::Tensor x = features.to(at::kFloat);
  const double eps = config_.input_eps, span = std::log(1.0 / eps);
  if (config_.input_transform == "log") return ((x.clamp_min(0) + eps).log() + span / 2) / (span / 4);
  if (config_.input_transform == "symlog") return x.sign() * at::log1p(x.abs() / eps) / std::log1p(1.0 / eps);
  return x;
}

at::Tensor HybridAxialMapperImpl::forward(const at::Tensor& features, const at::Tensor& mask) {
  Status input_ok = check_input(features, mask);
  TORCH_CHECK(input_ok.is_ok(), input_ok.message());
  const int64_t b = features.size(0), c = features.size(1), p = features.size(2), t = features.size(3);
  at::Tensor valid = mask.defined() ? mask.to(features.device())
                                    : at::ones({b, t}, at::TensorOptions().dtype(at::kBool).device(features.device()));
  at::Tensor transformed = transform_input(features);
  at::Tensor x = at::where(valid.view({b, 1, 1, t}), transformed, at::zeros({}, transformed.options()));
  at::Tensor scores;
  if (config_.variant == "linear") {
    scores = linear_->forward(x.permute({0, 3, 1, 2}).reshape({b, t, c * p})).permute({0, 2, 1});
  } else {
    at::Tensor rows_valid = valid.unsqueeze(1).expand({b, p, t}).reshape({b * p, t});
    at::Tensor h = conv_->forward(x.permute({0, 2, 1, 3}).reshape({b * p, c, t}),
                                  rows_valid.unsqueeze(1).to(at::kFloat));  // [B*P, d, T]
    h = h.transpose(1, 2).contiguous();                                     // [B*P, T, d]
    for (const auto& block : *time_) h = block->as<LocalTimeAttentionBlock>()->forward(h, rows_valid);
    h = h.view({b, p, t, config_.d_model});
    // The head-axis stage is per token: slicing time changes nothing but the peak memory ([B, T, Q, 2d] inside).
    const int64_t per_token = b * std::max(p, config_.shape.target_heads()) * 2 * config_.d_model;
    if (!at::GradMode::is_enabled() && t * per_token > max_chunk_elements_) {
      const int64_t step = std::max<int64_t>(1, max_chunk_elements_ / per_token);
      std::vector<at::Tensor> parts;
      for (int64_t s = 0; s < t; s += step) parts.push_back(cross_->forward(h.slice(2, s, std::min(t, s + step))));
      scores = at::cat(parts, 2);
    } else {
      scores = cross_->forward(h);
    }
  }
  return at::where(valid.unsqueeze(1), scores, at::zeros({}, scores.options()));
}

void HybridAxialMapperImpl::set_max_chunk_elements(int64_t elements) {
  max_chunk_elements_ = std::max<int64_t>(1, elements);
  if (time_) {
    for (const auto& block : *time_) block->as<LocalTimeAttentionBlock>()->set_max_chunk_elements(max_chunk_elements_);
  }
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace proxykv::mapper
