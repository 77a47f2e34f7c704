#include "proxykv/training/average.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../../support/tiny_model.h"

namespace proxykv::training {
namespace {

// Qwen2, untied head.
test_support::TinyModel qwen2() {
  test_support::TinyModel m;
  m.arch = Architecture::kQwen2;
  m.tied = false;
  m.max_positions = 64;
  return m;
}

// Every tensor of the mean, by name, is (1 * a + 3 * b) / 4, element by element.
TEST(AverageModels, EveryTensorIsTheWeightedMean) {
  torch::NoGradGuard no_grad;
  ModelSpec spec = qwen2().spec();
  spec.qkv_bias = true;  // as a Qwen2 config.json implies
  const auto a = value_or_throw(DecoderLM::random_init(spec, 1, 0.2));
  const auto b = value_or_throw(DecoderLM::random_init(spec, 2, 0.2));
  ASSERT_TRUE(a->weights().layers[0].b_qkv.defined());
  auto mean = average_decoders({a.get(), b.get()}, {1.0, 3.0});
  ASSERT_TRUE(mean.is_ok()) << mean.status().to_string();
  const ModelWeights& m = (*mean)->weights();
  auto expect_mean = [](const at::Tensor& got, const at::Tensor& x, const at::Tensor& y, const char* name) {
    ASSERT_TRUE(got.defined()) << name;
    const auto g = got.flatten();
    const auto xs = x.flatten();
    const auto ys = y.flatten();
    ASSERT_EQ(g.numel(), xs.numel()) << name;
    for (int64_t i = 0; i < g.numel(); i += 7) {
      EXPECT_NEAR(g[i].item<double>(), 0.25 * xs[i].item<double>() + 0.75 * ys[i].item<double>(), 1e-6) << name;
    }
  };
  expect_mean(m.embed, a->weights().embed, b->weights().embed, "embed");
  expect_mean(m.lm_head, a->weights().lm_head, b->weights().lm_head, "lm_head");
  expect_mean(m.final_norm, a->weights().final_norm, b->weights().final_norm, "final_norm");
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LayerWeights& x = a->weights().layers[l];
    const LayerWeights& y = b->weights().layers[l];
    expect_mean(m.layers[l].w_qkv, x.w_qkv, y.w_qkv, "w_qkv");
    expect_mean(m.layers[l].b_qkv, x.b_qkv, y.b_qkv, "b_qkv");
    expect_mean(m.layers[l].w_o, x.w_o, y.w_o, "w_o");
    expect_mean(m.layers[l].w_gate_up, x.w_gate_up, y.w_gate_up, "w_gate_up");
    expect_mean(m.layers[l].w_down, x.w_down, y.w_down, "w_down");
    expect_mean(m.layers[l].input_norm, x.input_norm, y.input_norm, "input_norm");
    expect_mean(m.layers[l].post_norm, x.post_norm, y.post_norm, "post_norm");
  }
}

// The mean of copies of one model is that model: the same logits.
TEST(AverageModels, TheMeanOfCopiesComputesWhatTheModelComputes) {
  torch::NoGradGuard no_grad;
  test_support::TinyModel tiny;  // Qwen3, tied
  tiny.max_positions = 64;
  const auto a = tiny.init(5, 0.2);
  auto mean = average_decoders({a.get(), a.get(), a.get()});
  ASSERT_TRUE(mean.is_ok()) << mean.status().to_string();
  const at::Tensor ids = at::randint(0, tiny.vocab, {2, 12}, at::TensorOptions().dtype(at::kLong));
  EXPECT_TRUE(at::allclose(a->forward_batch(ids), (*mean)->forward_batch(ids), 1e-5, 1e-5));
  EXPECT_TRUE((*mean)->weights().lm_head.is_same((*mean)->weights().embed));  // still tied
}

TEST(AverageModels, RefusesWhatCannotBeAveraged) {
  torch::NoGradGuard no_grad;
  const auto a = qwen2().init(1, 0.2);
  test_support::TinyModel wider = qwen2();
  wider.intermediate = 96;
  const auto c = wider.init(1, 0.2);
  EXPECT_FALSE(average_decoders({}).is_ok());
  const auto differ = average_decoders({a.get(), c.get()});
  ASSERT_FALSE(differ.is_ok());
  EXPECT_NE(differ.status().to_string().find("intermediate_size"), std::string::npos) << differ.status().to_string();
  EXPECT_FALSE(average_decoders({a.get(), a.get()}, {1.0}).is_ok());
  EXPECT_FALSE(average_decoders({a.get(), a.get()}, {1.0, -1.0}).is_ok());
  EXPECT_FALSE(average_decoders({a.get(), a.get()}, {0.0, 0.0}).is_ok());
  EXPECT_FALSE(average_decoders({a.get(), a.get()}, {1.0, std::nan("")}).is_ok());
}

}  // namespace
}  // namespace proxykv::training
