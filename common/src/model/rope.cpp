#include "proxykv/model/rope.h"

#include <cmath>
#include <vector>

namespace proxykv {

at::Tensor rope_inv_freq(const ModelSpec& spec) {
  const int64_t dim = spec.head_dim;
  // Same float32 arithmetic as HF: base ** (arange(0, dim, 2).float() / dim).
  at::Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<float>(dim);
  at::Tensor inv_freq = 1.0 / at::pow(static_cast<float>(spec.rope_theta), exponents);
  if (spec.rope_scaling.type != RopeScaling::Type::kLlama3) return inv_freq;

  const auto& rs = spec.rope_scaling;
  const double old_len = static_cast<double>(rs.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / rs.low_freq_factor;
  const double high_freq_wavelen = old_len / rs.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / rs.factor, inv_freq);
  at::Tensor smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
  at::Tensor is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen);
  return at::where(is_medium, smoothed, scaled).to(at::kFloat);
}

RotaryEmbedding::RotaryEmbedding(const ModelSpec& spec, const at::Device& device)
    : inv_freq_(rope_inv_freq(spec).to(device)) {}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::cos_sin(const at::Tensor& positions) const {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq_.unsqueeze(0);  // [n, D/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

at::Tensor RotaryEmbedding::apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half);
  at::Tensor x2 = x.narrow(-1, half, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  at::Tensor c = cos.to(x.scalar_type());
  at::Tensor s = sin.to(x.scalar_type());
  return x * c + rotated * s;
}

}  // namespace proxykv
