// The CUDA RMSNorm kernel against its CPU reference on random inputs (CTest label gpu: needs a CUDA device).
#include <cuda_runtime.h>

#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "proxykv/kernels/rms_norm.h"

namespace proxykv::kernels {
namespace {

TEST(RmsNormKernel, MatchesReference) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 16}, {7, 64}, {33, 1000}, {128, 4096}}) {
    std::vector<float> x(rows * cols), w(cols), want(rows * cols), got(rows * cols);
    for (auto& v : x) v = normal(rng);
    for (auto& v : w) v = 1.f + 0.1f * normal(rng);
    rms_norm_reference(x.data(), w.data(), want.data(), rows, cols, 1e-6f);
    float *dx, *dw, *dout;
    ASSERT_EQ(cudaMalloc(&dx, x.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dw, w.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dout, got.size() * 4), cudaSuccess);
    cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
    ASSERT_EQ(launch_rms_norm_f32(dx, dw, dout, rows, cols, 1e-6f, nullptr), 0);
    ASSERT_EQ(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f * (1 + std::abs(want[i]))) << i;
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(dout);
  }
}

}  // namespace
}  // namespace proxykv::kernels
