#include <cmath>

#include "proxykv/kernels/rms_norm.h"

namespace proxykv::kernels {

void rms_norm_reference(const float* x, const float* weight, float* out, int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += static_cast<double>(x[r * cols + c]) * x[r * cols + c];
    const double inv = 1.0 / std::sqrt(sum / static_cast<double>(cols) + eps);
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = static_cast<float>(weight[c] * x[r * cols + c] * inv);
  }
}

}  // namespace proxykv::kernels
