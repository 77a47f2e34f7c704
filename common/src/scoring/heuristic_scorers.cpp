// The scorers that need no attention: full (the ceiling), random (the floor), knorm and streaming.
//
//   full:      1 everywhere (the evaluation keeps every entry; the scores only carry the shape).
//   random:    uniform [0, 1) from a CPU generator seeded with options.seed, fresh for every finish(), so the same
//              seed and shape give the same scores.
//   knorm:     -||k_t||_2 of the cached key (after RoPE; RoPE preserves norms): low-norm keys are kept
//              (kvpress KnormPress).
//   streaming: t (the position), the same for every layer and head: with the sinks, the most recent tokens win
//              (StreamingLLM).
// Sinks get +inf (ScorerBase).
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/scoring/scorers.h"

namespace proxykv::scoring {
namespace {

class FullScorer final : public ScorerBase {
 public:
  explicit FullScorer(const ScorerOptions& options) : ScorerBase("full", options) {}

 protected:
  Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) override {
    return at::ones({cache.num_layers(), cache.num_kv_heads(), context_ids.size(0)}, at::kFloat);
  }
};

class RandomScorer final : public ScorerBase {
 public:
  explicit RandomScorer(const ScorerOptions& options) : ScorerBase("random", options) {}

 protected:
  Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) override {
    at::Generator gen = at::detail::createCPUGenerator(options().seed);
    return at::rand({cache.num_layers(), cache.num_kv_heads(), context_ids.size(0)}, gen, at::kFloat);
  }
};

class KnormScorer final : public ScorerBase {
 public:
  explicit KnormScorer(const ScorerOptions& options) : ScorerBase("knorm", options) {}

 protected:
  Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) override {
    std::vector<at::Tensor> layers;
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      // [H_kv, T, D] -> [H_kv, T]
      layers.push_back(at::linalg_vector_norm(cache.dense_keys(l).to(at::kFloat), 2, {-1}).neg_());
    }
    return at::stack(layers);
  }
};

class StreamingScorer final : public ScorerBase {
 public:
  explicit StreamingScorer(const ScorerOptions& options) : ScorerBase("streaming", options) {}

 protected:
  Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) override {
    const int64_t T = context_ids.size(0);
    return at::arange(T, at::kFloat).expand({cache.num_layers(), cache.num_kv_heads(), T}).contiguous();
  }
};

}  // namespace

std::unique_ptr<Scorer> make_full_scorer(const ScorerOptions& options) {
  return std::make_unique<FullScorer>(options);
}
std::unique_ptr<Scorer> make_random_scorer(const ScorerOptions& options) {
  return std::make_unique<RandomScorer>(options);
}
std::unique_ptr<Scorer> make_knorm_scorer(const ScorerOptions& options) {
  return std::make_unique<KnormScorer>(options);
}
std::unique_ptr<Scorer> make_streaming_scorer(const ScorerOptions& options) {
  return std::make_unique<StreamingScorer>(options);
}

}  // namespace proxykv::scoring
