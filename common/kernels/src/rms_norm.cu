#include <cuda_runtime.h>

#include "proxykv/kernels/rms_norm.h"

namespace proxykv::kernels {
namespace {

constexpr int kThreads = 256;

// One block per row: a block-wide sum of squares (warp shuffles, then one value per warp in shared memory).
__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out,
                                int64_t cols, float eps) {
  const int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float* outr = out + row * cols;
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c] * xr[c];
  for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  __shared__ float warp_sums[kThreads / 32];
  __shared__ float inv_rms;
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
    for (int i = 0; i < kThreads / 32; ++i) total += warp_sums[i];
    inv_rms = rsqrtf(total / static_cast<float>(cols) + eps);
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) outr[c] = w[c] * (xr[c] * inv_rms);
}

}  // namespace

int launch_rms_norm_f32(const float* x, const float* weight, float* out, int64_t rows, int64_t cols, float eps,
                        CUstream_st* stream) {
  if (rows <= 0 || cols <= 0) return 0;
  rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, weight, out, cols, eps);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace proxykv::kernels
