// The CPU reference the CUDA kernel is checked against must itself be right: a hand-computed case.
#include <gtest/gtest.h>

#include "proxykv/kernels/rms_norm.h"

namespace proxykv::kernels {
namespace {

TEST(RmsNormReference, HandComputed) {
  // Row [3, 4]: mean of squares 12.5, rms 3.5355; weights [1, 2].
  const float x[] = {3.f, 4.f, 0.f, 0.f};
  const float w[] = {1.f, 2.f};
  float out[4];
  rms_norm_reference(x, w, out, 2, 2, 0.f);
  EXPECT_NEAR(out[0], 3.f / 3.5355339f, 1e-6);
  EXPECT_NEAR(out[1], 8.f / 3.5355339f, 1e-6);
  rms_norm_reference(x + 2, w, out, 1, 2, 1e-6f);  // an all-zero row stays zero (eps keeps it finite)
  EXPECT_EQ(out[0], 0.f);
  EXPECT_EQ(out[1], 0.f);
}

}  // namespace
}  // namespace proxykv::kernels
