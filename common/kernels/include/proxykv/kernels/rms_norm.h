// RMSNorm over the rows of a float32 matrix: out[r, c] = w[c] * x[r, c] / sqrt(mean_c(x[r, c]^2) + eps).
// Host launcher only (no device types), as TensorRT-LLM keeps its kernel headers; the kernel is in rms_norm.cu
// and built only with PROXYKV_WITH_CUDA. rms_norm_reference is the CPU reference every test compares against.
#pragma once

#include <cstdint>

struct CUstream_st;  // cudaStream_t without including the CUDA runtime

namespace proxykv::kernels {

// Pointers are device pointers; `stream` may be null (the default stream). Returns the CUDA error code (0: ok).
int launch_rms_norm_f32(const float* x, const float* weight, float* out, int64_t rows, int64_t cols, float eps,
                        CUstream_st* stream);

void rms_norm_reference(const float* x, const float* weight, float* out, int64_t rows, int64_t cols, float eps);

}  // namespace proxykv::kernels
