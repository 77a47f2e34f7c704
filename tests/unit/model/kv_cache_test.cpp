// The ragged KV cache: attention over compacted (evicted) heads must equal attention over the full cache with
// the same entries masked out.
#include "proxykv/model/kv_cache.h"

#include <random>

#include <gtest/gtest.h>

#include "proxykv/model/attention.h"

namespace proxykv {
namespace {

struct Shape {
  int64_t layers, kv_heads, group, head_dim, context, n_new;
};

class RaggedAttention : public ::testing::TestWithParam<Shape> {};

TEST_P(RaggedAttention, EqualsMaskedFullCache) {
  const Shape s = GetParam();
  at::manual_seed(1234 + s.context);
  const int64_t H = s.kv_heads * s.group;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  KvCache cache(s.layers, s.kv_heads, s.head_dim, at::TensorOptions().dtype(at::kFloat));
  std::vector<at::Tensor> full_k, full_v;
  for (int64_t l = 0; l < s.layers; ++l) {
    full_k.push_back(at::randn({s.kv_heads, s.context, s.head_dim}));
    full_v.push_back(at::randn({s.kv_heads, s.context, s.head_dim}));
    cache.append(l, full_k[l], full_v[l]);
  }
  // A different random subset per (layer, head), each keeping at least one entry.
  std::vector<std::vector<at::Tensor>> keep(s.layers);
  std::vector<at::Tensor> keep_mask;
  for (int64_t l = 0; l < s.layers; ++l) {
    at::Tensor mask = at::rand({s.kv_heads, s.context}) < (0.2 + 0.6 * at::rand({s.kv_heads, 1}));
    mask.select(1, 0).fill_(true);
    keep_mask.push_back(mask);
    for (int64_t h = 0; h < s.kv_heads; ++h) keep[l].push_back(mask[h].nonzero().squeeze(1));
  }
  const int64_t full_bytes = cache.used_bytes();
  ASSERT_TRUE(cache.compact(keep, /*headroom=*/0).is_ok());
  for (int64_t l = 0; l < s.layers; ++l) {
    for (int64_t h = 0; h < s.kv_heads; ++h) {
      EXPECT_EQ(cache.length(l, h), keep_mask[l][h].sum().item<int64_t>());
    }
  }
  EXPECT_LT(cache.allocated_bytes(), full_bytes);
  EXPECT_EQ(cache.allocated_bytes(), cache.used_bytes());

  // New tokens after eviction: appended to every head at its own length; visible to both sides.
  for (int64_t l = 0; l < s.layers; ++l) {
    at::Tensor k_new = at::randn({s.kv_heads, s.n_new, s.head_dim});
    at::Tensor v_new = at::randn({s.kv_heads, s.n_new, s.head_dim});
    cache.append(l, k_new, v_new);
    at::Tensor k_all = at::cat({full_k[l], k_new}, 1);
    at::Tensor v_all = at::cat({full_v[l], v_new}, 1);
    at::Tensor mask_all = at::cat({keep_mask[l], at::ones({s.kv_heads, s.n_new}, at::kBool)}, 1);
    at::Tensor q = at::randn({H, s.n_new, s.head_dim});
    at::Tensor got = cached_attention(q, cache, l, s.n_new, scale);
    at::Tensor want = masked_attention_reference(q, k_all, v_all, mask_all, s.n_new, scale);
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-5) << "layer " << l;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, RaggedAttention,
                         ::testing::Values(Shape{1, 1, 1, 8, 5, 1}, Shape{2, 2, 2, 16, 37, 1},
                                           Shape{2, 2, 4, 16, 100, 7}, Shape{3, 4, 1, 32, 64, 3},
                                           Shape{1, 8, 4, 64, 300, 12}));

TEST(KvCache, AppendGrowsPerHeadAndKeepsContent) {
  KvCache cache(1, 2, 4, at::TensorOptions().dtype(at::kFloat));
  at::Tensor a = at::randn({2, 3, 4});
  at::Tensor b = at::randn({2, 500, 4});
  cache.append(0, a, a);
  cache.append(0, b, b);
  EXPECT_EQ(cache.length(0, 1), 503);
  EXPECT_TRUE(at::equal(cache.keys(0, 1), at::cat({a[1], b[1]}, 0)));
}

TEST(KvCache, CompactRejectsBadIndicesAndLeavesCacheIntact) {
  KvCache cache(1, 2, 4, at::TensorOptions().dtype(at::kFloat));
  cache.append(0, at::randn({2, 10, 4}), at::randn({2, 10, 4}));
  at::Tensor keys_before = cache.keys(0, 0).clone();
  auto idx = [](std::vector<int64_t> v) { return at::tensor(v, at::kLong); };
  EXPECT_EQ(cache.compact({{idx({0, 1}), idx({0, 10})}}).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(cache.compact({{idx({1, 0}), idx({0})}}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.compact({{idx({0})}}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.length(0, 0), 10);
  EXPECT_TRUE(at::equal(cache.keys(0, 0), keys_before));
}

TEST(KvCache, SnapshotRestoreTruncates) {
  KvCache cache(2, 1, 4, at::TensorOptions().dtype(at::kFloat));
  for (int l = 0; l < 2; ++l) cache.append(l, at::randn({1, 5, 4}), at::randn({1, 5, 4}));
  cache.advance_position(5);
  auto snap = cache.snapshot();
  for (int l = 0; l < 2; ++l) cache.append(l, at::randn({1, 3, 4}), at::randn({1, 3, 4}));
  cache.advance_position(3);
  cache.restore(snap);
  EXPECT_EQ(cache.length(1, 0), 5);
  EXPECT_EQ(cache.next_position(), 5);
}

TEST(KvCache, CloneIsIndependent) {
  KvCache cache(1, 1, 2, at::TensorOptions().dtype(at::kFloat));
  cache.append(0, at::zeros({1, 2, 2}), at::zeros({1, 2, 2}));
  KvCache copy = cache.clone();
  copy.append(0, at::ones({1, 1, 2}), at::ones({1, 1, 2}));
  EXPECT_EQ(cache.length(0, 0), 2);
  EXPECT_EQ(copy.length(0, 0), 3);
}

}  // namespace
}  // namespace proxykv
