#include "proxykv/training/prune.h"

#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../../support/tiny_model.h"

namespace proxykv::training {
namespace {

// 3 layers (one to drop), 48 MLP channels, vocabulary 50, no eos.
test_support::TinyModel small_model() {
  test_support::TinyModel m;
  m.vocab = 50;
  m.intermediate = 48;
  m.layers = 3;
  m.max_positions = 256;
  m.family_eos = false;
  return m;
}

ModelSpec small_spec() { return small_model().spec(); }

std::unique_ptr<DecoderLM> random_model(uint64_t seed) { return small_model().init(seed, 0.2); }

// Slow, obvious ranking: the `keep` indices whose score beats all but fewer than `keep` others.
std::set<int64_t> largest(const std::vector<double>& score, int64_t keep) {
  std::set<int64_t> out;
  for (size_t i = 0; i < score.size(); ++i) {
    int64_t better = 0;
    for (size_t j = 0; j < score.size(); ++j) better += score[j] > score[i] || (score[j] == score[i] && j < i);
    if (better < keep) out.insert(static_cast<int64_t>(i));
  }
  return out;
}

TEST(Prune, TopIndicesKeepTheLargestInIndexOrder) {
  EXPECT_EQ(top_indices_in_order({1, 3, 3, 2}, 2), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(top_indices_in_order({5, 3, 3, 2}, 2), (std::vector<int64_t>{0, 1}));  // tie: the lower index
  EXPECT_EQ(top_indices_in_order({1, 2}, 0), std::vector<int64_t>{});
  EXPECT_EQ(top_indices_in_order({1, 2}, 5), (std::vector<int64_t>{0, 1}));
}

// The pruned model computes what the source computes with the dropped heads, channels and layers zeroed out of
// their output projections (a layer with zero W_o and W_down is the identity on the residual stream).
TEST(Prune, EqualsTheSourceWithTheDroppedPartsZeroed) {
  torch::NoGradGuard no_grad;
  auto source = random_model(7);
  auto pruned = prune_decoder(*source, {{0, 2}, 1, 20});
  ASSERT_TRUE(pruned.is_ok()) << pruned.status().to_string();
  const ModelSpec& ps = (*pruned)->spec();
  EXPECT_EQ(ps.num_layers, 2);
  EXPECT_EQ(ps.num_heads, 2);
  EXPECT_EQ(ps.num_kv_heads, 2);
  EXPECT_EQ(ps.intermediate_size, 20);

  auto reference = random_model(7);  // the same weights as the source
  const ModelSpec s = small_spec();
  for (int64_t l = 0; l < s.num_layers; ++l) {
    LayerWeights& w = reference->weights().layers[static_cast<size_t>(l)];
    if (l == 1) {
      w.w_o.zero_();
      w.w_down.zero_();
      continue;
    }
    for (int64_t g = 0; g < s.num_kv_heads; ++g) {
      std::vector<double> score;
      for (int64_t i = 0; i < s.group_size(); ++i) {
        const int64_t h = g * s.group_size() + i;
        score.push_back(w.w_qkv.narrow(0, h * s.head_dim, s.head_dim).norm().item<double>() *
                        w.w_o.narrow(1, h * s.head_dim, s.head_dim).norm().item<double>());
      }
      const std::set<int64_t> keep = largest(score, 1);
      for (int64_t i = 0; i < s.group_size(); ++i) {
        if (!keep.count(i)) w.w_o.narrow(1, (g * s.group_size() + i) * s.head_dim, s.head_dim).zero_();
      }
    }
    std::vector<double> score;
    for (int64_t j = 0; j < s.intermediate_size; ++j) {
      score.push_back(w.w_gate_up[j].norm().item<double>() * w.w_gate_up[s.intermediate_size + j].norm().item<double>() *
                      w.w_down.select(1, j).norm().item<double>());
    }
    const std::set<int64_t> keep = largest(score, 20);
    for (int64_t j = 0; j < s.intermediate_size; ++j) {
      if (!keep.count(j)) w.w_down.select(1, j).zero_();
    }
  }
  const at::Tensor ids = at::randint(0, s.vocab_size, {2, 17}, at::TensorOptions().dtype(at::kLong));
  const at::Tensor want = reference->forward_batch(ids);
  const at::Tensor got = (*pruned)->forward_batch(ids);
  EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-5)) << (got - want).abs().max().item<double>();
  // And it is not the unpruned source (the dropped parts mattered).
  EXPECT_GT((source->forward_batch(ids) - want).abs().max().item<double>(), 1e-3);
}

TEST(Prune, KeepingEverythingIsTheSource) {
  torch::NoGradGuard no_grad;
  auto source = random_model(11);
  auto same = prune_decoder(*source, {});
  ASSERT_TRUE(same.is_ok());
  const at::Tensor ids = at::randint(0, 50, {1, 9}, at::TensorOptions().dtype(at::kLong));
  EXPECT_TRUE(at::allclose((*same)->forward_batch(ids), source->forward_batch(ids), 1e-5, 1e-6));
}

TEST(Prune, BadOptionsNameTheProblem) {
  auto source = random_model(3);
  struct Case {
    PruneOptions options;
    const char* says;
  };
  for (const Case& c : {Case{{{0, 3}, 0, 0}, "layer 3"}, Case{{{1, 1}, 0, 0}, "twice"},
                        Case{{{}, 3, 0}, "query heads per KV group"}, Case{{{}, 0, 49}, "intermediate 49"}}) {
    auto r = prune_decoder(*source, c.options);
    ASSERT_FALSE(r.is_ok()) << c.says;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace proxykv::training
