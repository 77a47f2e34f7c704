// Rotary position embedding as Hugging Face computes it ("rotate_half" layout, cos/sin of cat(freqs, freqs)),
// with the default and llama3 frequency schedules.
#pragma once

#include <ATen/ATen.h>

#include "proxykv/model/model_spec.h"

namespace proxykv {

// inv_freq [head_dim/2] float32, after llama3 scaling where the spec asks for it.
at::Tensor rope_inv_freq(const ModelSpec& spec);

class RotaryEmbedding {
 public:
  RotaryEmbedding(const ModelSpec& spec, const at::Device& device);
  // cos, sin [n, head_dim] float32 for integer positions [n].
  std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& positions) const;
  // x [heads, n, head_dim] rotated in the compute dtype of x.
  static at::Tensor apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
  const at::Tensor& inv_freq() const { return inv_freq_; }

 private:
  at::Tensor inv_freq_;
};

}  // namespace proxykv
