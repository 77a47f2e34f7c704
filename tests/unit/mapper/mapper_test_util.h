// Shared by the mapper unit tests: single-threaded LibTorch (two cores, shared with long-running jobs) and small
// synthetic (proxy features, target labels) data.
#pragma once


#include <cstdint>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "proxykv/mapper/hybrid_axial_mapper.h"
#include "proxykv/mapper/mapper_trainer.h"
#include "proxykv/model/threads.h"

namespace proxykv::mapper::testing {

// One thread for LibTorch and for OpenBLAS's own pool (Debian's LibTorch BLAS; proxykv/model/threads.h): on a busy
// 2-core machine the spinning BLAS threads double the wall time.
class SingleThreadEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { set_compute_threads(1); }
};

inline at::Generator make_gen(uint64_t seed) {
  return at::detail::createCPUGenerator(seed);
}

inline MapperConfig small_config(int64_t channels, int64_t proxy_layers, int64_t proxy_kv_heads, int64_t target_layers,
                                 int64_t target_kv_heads) {
  MapperConfig c;
  c.shape = {channels, proxy_layers, proxy_kv_heads, target_layers, target_kv_heads};
  c.proxy_id = "tiny-proxy";
  c.target_id = "tiny-target";
  c.d_model = 16;
  c.conv_kernel = 3;
  c.conv_layers = 2;
  c.time_window = 8;
  c.time_layers = 1;
  c.n_attn_heads = 2;
  c.dropout = 0.0;
  return c;
}

// KVzip-like heavy-tailed values in (0, 1]: most ~1e-3, a few near 1.
inline at::Tensor heavy_tailed(at::IntArrayRef sizes, at::Generator gen) {
  return at::exp(at::randn(sizes, gen, at::TensorOptions().dtype(at::kFloat)) * 2.0 - 6.0).clamp_max(1.0);
}

// Labels that a mapper can fit: target row q copies proxy head (q * 3 + 1) % P of channel 0, delayed by q % 2 tokens
// and scaled by 1 / (1 + q % 3), so the global top-rho set mixes rows unevenly.
inline at::Tensor synthetic_labels(const at::Tensor& features, int64_t target_heads) {
  const int64_t p = features.size(1), t = features.size(2);
  std::vector<at::Tensor> rows;
  for (int64_t q = 0; q < target_heads; ++q) {
    at::Tensor src = features[0][(q * 3 + 1) % p];
    const int64_t shift = q % 2;
    at::Tensor row = at::cat({at::zeros({shift}, src.options()), src.slice(0, 0, t - shift)});
    rows.push_back(row / static_cast<double>(1 + q % 3));
  }
  return at::stack(rows);
}

inline std::vector<MapperSample> synthetic_samples(const MapperPairShape& shape, int64_t count, int64_t tokens,
                                                   uint64_t seed) {
  at::Generator gen = make_gen(seed);
  std::vector<MapperSample> out;
  for (int64_t i = 0; i < count; ++i) {
    at::Tensor f = heavy_tailed({shape.channels, shape.proxy_heads(), tokens}, gen);
    out.push_back({f, synthetic_labels(f, shape.target_heads()), "synthetic-" + std::to_string(i)});
  }
  return out;
}

}  // namespace proxykv::mapper::testing
