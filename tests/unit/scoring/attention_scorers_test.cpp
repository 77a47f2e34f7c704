// h2o, snapkv and laprox (gathered chunk by chunk during the prefill) against slow references computed from the
// full [H, T, T] attention of the prompt in double.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <tuple>

#include <gtest/gtest.h>

#include "scoring_test_util.h"

namespace proxykv::scoring {
namespace {

using testing::full_attention;
using testing::FullAttention;
using testing::max_scaled_error;
using testing::random_prompt;
using testing::score_prompt;
using testing::scorer_for;
using testing::tiny_model;

constexpr double kTol = 1e-4;
constexpr double kInf = std::numeric_limits<double>::infinity();

const char* arch_name(Architecture arch) {
  return arch == Architecture::kLlama ? "llama" : "qwen3";
}

// h2o: sum over every query and over the query heads of the group.
at::Tensor h2o_reference(const DecoderLM& model, const FullAttention& full, int64_t n_sink) {
  const ModelSpec& spec = model.spec();
  const int64_t T = full.probs[0].size(1);
  at::Tensor out = at::zeros({spec.num_layers, spec.num_kv_heads, T}, at::kDouble);
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    for (int64_t j = 0; j < spec.num_heads; ++j) out[l][j / spec.group_size()] += full.probs[l][j].sum(0);
  }
  out.narrow(2, 0, std::min(n_sink, T)).fill_(kInf);
  return out;
}

// Window attention per query head: a[l][j][t] = sum over the last `window` queries of p_j(t' -> t).
at::Tensor window_attention(const FullAttention& full, int64_t window) {
  std::vector<at::Tensor> layers;
  for (const at::Tensor& p : full.probs) {
    const int64_t T = p.size(1), W = std::min(window, T);
    layers.push_back(p.narrow(1, T - W, W).sum(1));  // [H, T]
  }
  return at::stack(layers);  // [L, H, T]
}

// snapkv: mean over the group of the window attention, pooled over the prefix by explicit loops.
at::Tensor snapkv_reference(const DecoderLM& model, const FullAttention& full, const ScorerOptions& o) {
  const ModelSpec& spec = model.spec();
  const int64_t G = spec.group_size();
  at::Tensor a = window_attention(full, o.window);
  const int64_t T = a.size(2), prefix = T - std::min(o.window, T), half = o.pool_kernel / 2;
  at::Tensor out = at::full({spec.num_layers, spec.num_kv_heads, T}, kInf, at::kDouble);
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    for (int64_t h = 0; h < spec.num_kv_heads; ++h) {
      std::vector<double> mean(prefix, 0.0);
      for (int64_t t = 0; t < prefix; ++t) {
        for (int64_t g = 0; g < G; ++g) mean[t] += a[l][h * G + g][t].item<double>() / static_cast<double>(G);
      }
      for (int64_t t = 0; t < prefix; ++t) {
        double best = -kInf, sum = 0.0;
        for (int64_t u = t - half; u <= t + half; ++u) {
          if (u < 0 || u >= prefix) continue;  // max: -inf padding; avg: zero padding that still counts
          best = std::max(best, mean[u]);
          sum += mean[u];
        }
        out[l][h][t] = o.pool == "max" ? best : sum / static_cast<double>(o.pool_kernel);
      }
    }
  }
  out.narrow(2, 0, std::min(o.n_sink, T)).fill_(kInf);
  return out;
}

// laprox: sum over the group's query heads j of a_j(t) * ||W_o[:, jD:(j+1)D] v_t||, directly.
at::Tensor laprox_reference(const DecoderLM& model, const FullAttention& full, const ScorerOptions& o) {
  const ModelSpec& spec = model.spec();
  const int64_t G = spec.group_size(), D = spec.head_dim;
  at::Tensor a = window_attention(full, o.window);
  const int64_t T = a.size(2), prefix = T - std::min(o.window, T);
  at::Tensor out = at::full({spec.num_layers, spec.num_kv_heads, T}, kInf, at::kDouble);
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    at::Tensor w_o = model.weights().layers[l].w_o.to(at::kDouble);
    for (int64_t h = 0; h < spec.num_kv_heads; ++h) {
      for (int64_t t = 0; t < prefix; ++t) {
        double s = 0.0;
        for (int64_t j = h * G; j < (h + 1) * G; ++j) {
          at::Tensor moved = at::mv(w_o.narrow(1, j * D, D), full.v[l][h][t]);  // [hidden]
          s += a[l][j][t].item<double>() * moved.norm().item<double>();
        }
        out[l][h][t] = s;
      }
    }
  }
  out.narrow(2, 0, std::min(o.n_sink, T)).fill_(kInf);
  return out;
}

// (architecture, prompt length, prefill chunk)
using Case = std::tuple<Architecture, int64_t, int64_t>;

class AttentionScorers : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const auto [arch, T, chunk] = GetParam();
    model_ = tiny_model(arch);
    ids_ = random_prompt(T, model_->spec().vocab_size, 10 + T);
    chunk_ = chunk;
    full_ = full_attention(*model_, ids_, /*prefill_chunk=*/T);  // one chunk: independent of the scorer's
  }
  at::Tensor run(const std::string& method, const ScorerOptions& o) {
    auto scored = score_prompt(*model_, *scorer_for(method, o), ids_, chunk_);
    EXPECT_TRUE(scored.scores.is_ok()) << scored.scores.status().to_string();
    return scored.scores.is_ok() ? *scored.scores : at::Tensor();
  }
  std::string label() const {
    return std::string(arch_name(std::get<0>(GetParam()))) + " T=" + std::to_string(ids_.size(0)) +
           " chunk=" + std::to_string(chunk_);
  }

  std::unique_ptr<DecoderLM> model_;
  at::Tensor ids_;
  int64_t chunk_ = 0;
  FullAttention full_;
};

TEST_P(AttentionScorers, H2oMatchesFullAttentionReference) {
  ScorerOptions o;
  o.n_sink = 2;
  const double err = max_scaled_error(run("h2o", o), h2o_reference(*model_, full_, o.n_sink));
  EXPECT_LE(err, kTol);
  std::cout << "[ max err ] h2o " << label() << ": " << err << "\n";
}

TEST_P(AttentionScorers, SnapkvMatchesFullAttentionReference) {
  // Windows: spanning two prefill chunks, exactly one chunk, the whole prompt and more; kernels 7/5/3/1.
  for (const auto& [window, kernel, pool] : std::vector<std::tuple<int64_t, int64_t, std::string>>{
           {20, 7, "max"}, {20, 7, "avg"}, {16, 5, "avg"}, {9, 3, "max"}, {33, 1, "max"}, {200, 7, "max"}}) {
    ScorerOptions o;
    o.n_sink = 3;
    o.window = window;
    o.pool_kernel = kernel;
    o.pool = pool;
    const double err = max_scaled_error(run("snapkv", o), snapkv_reference(*model_, full_, o));
    EXPECT_LE(err, kTol) << "window " << window << " kernel " << kernel << " " << pool;
    std::cout << "[ max err ] snapkv " << label() << " window=" << window << " k=" << kernel << " " << pool << ": "
              << err << "\n";
  }
}

TEST_P(AttentionScorers, LaproxMatchesFullAttentionReference) {
  for (int64_t window : {20, 7}) {
    ScorerOptions o;
    o.n_sink = 2;
    o.window = window;
    const double err = max_scaled_error(run("laprox", o), laprox_reference(*model_, full_, o));
    EXPECT_LE(err, kTol) << "window " << window;
    std::cout << "[ max err ] laprox " << label() << " window=" << window << ": " << err << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, AttentionScorers,
                         ::testing::Values(Case{Architecture::kQwen3, 70, 16}, Case{Architecture::kLlama, 70, 16},
                                           Case{Architecture::kLlama, 97, 13}, Case{Architecture::kQwen3, 41, 5}),
                         [](const auto& info) {
                           return std::string(arch_name(std::get<0>(info.param))) + "_T" +
                                  std::to_string(std::get<1>(info.param)) + "_chunk" +
                                  std::to_string(std::get<2>(info.param));
                         });

}  // namespace
}  // namespace proxykv::scoring
