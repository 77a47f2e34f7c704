#include "proxykv/mapper/hybrid_axial_mapper.h"

#include <tuple>

#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "mapper_test_util.h"

namespace proxykv::mapper {
namespace {

using testing::make_gen;
using testing::small_config;

// Registered once for the whole unit_mapper executable.
::testing::Environment* const kSingleThread = ::testing::AddGlobalTestEnvironment(new testing::SingleThreadEnvironment);

at::Tensor random_features(int64_t b, const MapperPairShape& s, int64_t t, uint64_t seed) {
  return testing::heavy_tailed({b, s.channels, s.proxy_heads(), t}, make_gen(seed));
}

TEST(HybridAxialMapper, OutputShapesForSeveralPairs) {
  at::NoGradGuard no_grad;
  // (C, proxy layers, proxy KV heads, target layers, target KV heads, T); T = 1, T < window, T not a multiple of it.
  const std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>> cases = {
      {1, 1, 1, 1, 1, 1}, {4, 2, 2, 4, 2, 37}, {2, 3, 1, 2, 4, 8}, {3, 2, 2, 3, 2, 100}};
  for (const auto& [c, pl, ph, tl, th, t] : cases) {
    for (const char* variant : {"hybrid", "linear"}) {
      MapperConfig config = small_config(c, pl, ph, tl, th);
      config.variant = variant;
      HybridAxialMapper mapper(config);
      mapper->eval();
      at::Tensor out = mapper->forward(random_features(2, config.shape, t, 1));
      EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, tl * th, t})) << variant << " C=" << c << " T=" << t;
      EXPECT_TRUE(out.isfinite().all().item<bool>());
    }
  }
}

TEST(HybridAxialMapper, RejectsInputThatDoesNotFitThePair) {
  HybridAxialMapper mapper(small_config(4, 2, 2, 4, 2));
  EXPECT_FALSE(mapper->check_input(at::zeros({1, 3, 4, 10})).is_ok());                               // wrong C
  EXPECT_FALSE(mapper->check_input(at::zeros({1, 4, 5, 10})).is_ok());                               // wrong P
  EXPECT_FALSE(mapper->check_input(at::zeros({4, 4, 10})).is_ok());                                  // no batch dim
  EXPECT_FALSE(mapper->check_input(at::zeros({1, 4, 4, 10}), at::ones({1, 9}, at::kBool)).is_ok());  // mask length
  EXPECT_FALSE(mapper->check_input(at::zeros({1, 4, 4, 10}), at::ones({1, 10})).is_ok());            // mask dtype
  EXPECT_TRUE(mapper->check_input(at::zeros({1, 4, 4, 10}), at::ones({1, 10}, at::kBool)).is_ok());
  EXPECT_THROW(mapper->forward(at::zeros({1, 3, 4, 10})), c10::Error);
}

TEST(HybridAxialMapper, PaddedTokensDoNotChangeValidOutputs) {
  at::NoGradGuard no_grad;
  for (const char* variant : {"hybrid", "linear"}) {
    MapperConfig config = small_config(2, 2, 2, 2, 2);
    config.variant = variant;
    config.time_layers = 2;
    HybridAxialMapper mapper(config);
    mapper->eval();
    const int64_t t = 29;
    at::Tensor x = random_features(1, config.shape, t, 2);
    at::Tensor alone = mapper->forward(x);

    // The same context followed by 19 padded tokens holding garbage.
    at::Tensor garbage = random_features(1, config.shape, 19, 3) * 100;
    at::Tensor padded_x = at::cat({x, garbage}, 3);
    at::Tensor mask = at::arange(t + 19).lt(t).unsqueeze(0);
    at::Tensor padded = mapper->forward(padded_x, mask);
    EXPECT_TRUE(at::allclose(padded.slice(2, 0, t), alone, 1e-5, 1e-5)) << variant;
    EXPECT_EQ(padded.slice(2, t).abs().max().item<float>(), 0.0f) << variant;

    // In a batch with a longer context: the short one's valid outputs are unchanged too.
    at::Tensor other = random_features(1, config.shape, t + 19, 4);
    at::Tensor batch_mask = at::stack({mask[0], at::ones({t + 19}, at::kBool)});
    at::Tensor batched = mapper->forward(at::cat({padded_x, other}, 0), batch_mask);
    EXPECT_TRUE(at::allclose(batched[0].slice(1, 0, t), alone[0], 1e-5, 1e-5)) << variant;
    EXPECT_TRUE(at::allclose(batched[1], mapper->forward(other)[0], 1e-5, 1e-5)) << variant;
  }
}

TEST(HybridAxialMapper, TimeContextIsWindowed) {
  at::NoGradGuard no_grad;
  MapperConfig config = small_config(2, 2, 2, 2, 2);
  config.time_layers = 2;
  HybridAxialMapper mapper(config);
  mapper->eval();
  const int64_t reach = mapper->receptive_field();
  EXPECT_EQ(reach, 2 * (3 / 2) + 2 * 8);  // conv_layers * (kernel / 2) + time_layers * time_window

  const int64_t t = 120, poked = 10;
  at::Tensor x = random_features(1, config.shape, t, 5);
  at::Tensor base = mapper->forward(x);
  at::Tensor y = x.clone();
  y.select(3, poked).fill_(0.9);
  at::Tensor changed = mapper->forward(y);
  at::Tensor diff = (changed - base).abs().amax({0, 1});  // [T]
  // Beyond the receptive field nothing moves; inside it, the poke is seen (the time context is real).
  EXPECT_EQ(diff.slice(0, poked + reach + 1).max().item<float>(), 0.0f);
  EXPECT_GT(diff[poked + reach - 1].item<float>(), 0.0f);
  EXPECT_GT(diff[poked].item<float>(), 0.0f);

  // The linear ablation has no time context at all.
  MapperConfig linear_config = config;
  linear_config.variant = "linear";
  HybridAxialMapper linear(linear_config);
  at::Tensor linear_diff = (linear->forward(y) - linear->forward(x)).abs().amax({0, 1});
  EXPECT_EQ(linear->receptive_field(), 0);
  EXPECT_EQ(linear_diff.slice(0, poked + 1).max().item<float>(), 0.0f);
  EXPECT_EQ(linear_diff.slice(0, 0, poked).max().item<float>(), 0.0f);
}

TEST(HybridAxialMapper, SlicedInferenceGivesTheSameScores) {
  at::NoGradGuard no_grad;
  MapperConfig config = small_config(2, 2, 2, 3, 2);
  HybridAxialMapper mapper(config);
  mapper->eval();
  at::Tensor x = random_features(2, config.shape, 77, 31);
  at::Tensor mask = at::ones({2, 77}, at::kBool);
  mask[0].slice(0, 60).fill_(false);
  at::Tensor whole = mapper->forward(x, mask);
  mapper->set_max_chunk_elements(1000);  // forces row slices in (b) and token slices in (c)
  at::Tensor sliced = mapper->forward(x, mask);
  EXPECT_TRUE(at::allclose(whole, sliced, 1e-5, 1e-5)) << (whole - sliced).abs().max();
}

TEST(HybridAxialMapper, BandAttentionMatchesDenseMaskedReference) {
  // Stage (b) against the obvious O(T^2) computation: full attention with an |i - j| <= radius mask.
  at::NoGradGuard no_grad;
  const int64_t d = 8, heads = 2, radius = 5, t = 23;
  LocalTimeAttentionBlock block(d, heads, radius, 0.0);
  block->eval();
  for (auto& p : block->named_parameters()) {
    if (p.key() == "rel_bias") p.value().copy_(at::randn(p.value().sizes(), make_gen(9)));
  }
  at::Tensor h = at::randn({3, t, d}, make_gen(6));
  at::Tensor valid = at::ones({3, t}, at::kBool);
  valid[1].slice(0, 17).fill_(false);
  at::Tensor got = block->forward(h, valid);

  auto params = block->named_parameters();
  auto lin = [&](const std::string& name, const at::Tensor& x) {
    return at::linear(x, params[name + ".weight"], params[name + ".bias"]);
  };
  auto ln = [&](const std::string& name, const at::Tensor& x) {
    return at::layer_norm(x, {d}, params[name + ".weight"], params[name + ".bias"]);
  };
  at::Tensor qkv = lin("qkv", ln("ln_attn", h)).view({3, t, 3, heads, d / heads});
  at::Tensor q = qkv.select(2, 0).transpose(1, 2), k = qkv.select(2, 1).transpose(1, 2),
             v = qkv.select(2, 2).transpose(1, 2);  // [N, H, T, dh]
  at::Tensor pos = at::arange(t);
  at::Tensor rel = pos.view({1, t}) - pos.view({t, 1});  // key - query
  at::Tensor bias =
      params["rel_bias"].index_select(1, (rel.clamp(-radius, radius) + radius).flatten()).view({heads, t, t});
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(d / heads) + bias;
  at::Tensor allowed = rel.abs().le(radius).view({1, 1, t, t}).logical_and(valid.view({3, 1, 1, t}));
  at::Tensor attn = at::softmax(scores.masked_fill(allowed.logical_not(), -INFINITY), -1);
  at::Tensor x = h + lin("out", at::matmul(attn, v).transpose(1, 2).reshape({3, t, d}));
  x = x + lin("ff_out", at::gelu(lin("ff_in", ln("ln_ff", x)), "tanh"));
  x = at::where(valid.unsqueeze(-1), x, at::zeros({}));  // padded queries see no key: NaN rows in the reference
  EXPECT_TRUE(at::allclose(got, x, 1e-5, 1e-5)) << (got - x).abs().max();
}

// Regression: LibTorch 1.13's exact GELU has a wrong backward for non-contiguous incoming gradients; inside the
// mapper that gave parameter gradients of 1e22 and training stalled. Directional derivatives of the mapper must match
// central finite differences.
TEST(HybridAxialMapper, GradientsMatchFiniteDifferences) {
  MapperConfig config = small_config(2, 2, 2, 2, 2);
  HybridAxialMapper mapper(config);
  mapper->eval();
  at::Tensor x = random_features(3, config.shape, 40, 21);
  at::Tensor mask = at::ones({3, 40}, at::kBool);
  mask[1].slice(0, 25).fill_(false);  // padding makes the strided gradients that exposed the bug
  at::Tensor weights = at::randn({3, 4, 40}, make_gen(22));
  auto loss = [&] { return (mapper->forward(x, mask) * weights).sum(); };

  mapper->zero_grad();
  loss().backward();
  std::vector<at::Tensor> params = mapper->parameters(), dirs;
  at::Generator gen = make_gen(23);
  double analytic = 0;
  for (const auto& p : params) {
    dirs.push_back(at::randn(p.sizes(), gen));
    analytic += (p.grad() * dirs.back()).sum().item<double>();
  }
  auto shifted = [&](double step) {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) params[i].add_(dirs[i], step);
    const double value = loss().item<double>();
    for (size_t i = 0; i < params.size(); ++i) params[i].sub_(dirs[i], step);
    return value;
  };
  const double h = 1e-3;
  const double numeric = (shifted(h) - shifted(-h)) / (2 * h);
  EXPECT_NEAR(analytic, numeric, 0.02 * std::abs(numeric) + 0.05) << "analytic " << analytic << " numeric " << numeric;
}

TEST(MapperConfig, JsonRoundTripAndValidation) {
  MapperConfig c = small_config(4, 2, 2, 4, 2);
  c.variant = "linear";
  Result<MapperConfig> back = MapperConfig::from_json(c.to_json(), "test");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->to_json(), c.to_json());

  nlohmann::json j = c.to_json();
  j["d_modle"] = 3;
  EXPECT_NE(MapperConfig::from_json(j, "cfg.json").status().message().find("unknown key 'd_modle'"), std::string::npos);
  j = c.to_json();
  j.erase("target_layers");
  EXPECT_FALSE(MapperConfig::from_json(j, "cfg.json").is_ok());
  j = c.to_json();
  j["variant"] = "hybrid";
  j["conv_kernel"] = 4;
  EXPECT_FALSE(MapperConfig::from_json(j, "cfg.json").is_ok());
  j["conv_kernel"] = "five";
  EXPECT_FALSE(MapperConfig::from_json(j, "cfg.json").is_ok());
  EXPECT_THROW(HybridAxialMapper(MapperConfig{}), ProxykvError);  // the default pair shape is empty
}

TEST(HybridAxialMapper, ParameterCountOfTheDefaultArchitecture) {
  // The tiny family's pair: C=4 channels, proxy 2 layers x 2 KV heads, target 4 layers x 2 KV heads.
  MapperConfig c;
  c.shape = {4, 2, 2, 4, 2};
  HybridAxialMapper hybrid(c);
  c.variant = "linear";
  HybridAxialMapper linear(c);
  EXPECT_EQ(count_parameters(*linear), 4 * 4 * 8 + 8);
  const int64_t d = 32, k = 5, p = 4, q = 8, heads = 4, window = 64;
  const int64_t conv = (4 * d * k + d) + (d * d * k + d) + p * d;
  const int64_t block = 2 * (2 * d) + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * d + 2 * d) + (2 * d * d + d) +
                        heads * (2 * window + 1);
  const int64_t cross = q * d + 3 * (2 * d) + 3 * (d * d + d) + (2 * d * d + 2 * d) + (2 * d * d + d) + q * (d + 1);
  EXPECT_EQ(count_parameters(*hybrid), conv + block + cross);
  std::cout << "[ info ] default HybridAxialMapper for C=4, P=4, Q=8: " << count_parameters(*hybrid)
            << " parameters (linear ablation: " << count_parameters(*linear) << ")\n";
}

}  // namespace
}  // namespace proxykv::mapper
