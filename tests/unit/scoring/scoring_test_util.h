// Shared by the scorer tests: a tiny random model, the scoring run as the evaluation drives it, and the full
// attention of a sequence (q and k after RoPE, probabilities [H, T, T] in double) for the slow references.
#pragma once

#include <cmath>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "proxykv/model/decoder_lm.h"
#include "proxykv/scoring/scorer.h"
#include "../../support/tiny_model.h"

namespace proxykv {
// Readable test parameters.
inline void PrintTo(Architecture arch, std::ostream* os) {
  *os << architecture_class_name(arch);
}
}  // namespace proxykv

namespace proxykv::scoring::testing {

// Qwen3-style (q/k norms) or Llama-style (no norms: larger logits, peaked attention); 4 query heads over 2 KV heads.
inline std::unique_ptr<DecoderLM> tiny_model(Architecture arch = Architecture::kQwen3, uint64_t seed = 3) {
  test_support::TinyModel m;
  m.arch = arch;
  m.vocab = 50;
  m.family_eos = false;
  return m.init(seed);
}

inline at::Tensor random_prompt(int64_t length, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randint(vocab, {length}, gen, at::kLong);
}

// What the evaluation does: begin(), prefill the prompt into an empty cache with the scorer's observer, finish().
struct ScoredPrompt {
  KvCache cache;
  Result<at::Tensor> scores;
};
inline ScoredPrompt score_prompt(const DecoderLM& model, Scorer& scorer, const at::Tensor& ids, int64_t prefill_chunk) {
  KvCache cache = model.new_cache();
  PrefillOptions opts;
  opts.chunk_size = prefill_chunk;
  opts.observer = scorer.begin(model, ids.size(0));
  model.prefill(ids, cache, opts);
  Result<at::Tensor> scores = scorer.finish(model, cache, ids);
  return {std::move(cache), std::move(scores)};
}

inline std::unique_ptr<Scorer> scorer_for(const std::string& method, const ScorerOptions& options) {
  return std::move(make_scorer(method, options).value());
}

// Records the queries of every layer, chunk after chunk.
class QueryRecorder : public AttentionObserver {
 public:
  explicit QueryRecorder(int64_t num_layers) : chunks_(num_layers) {}
  void on_queries(int64_t layer, const at::Tensor& q, const KvCache& cache, int64_t n_new) override {
    chunks_[layer].push_back(q.clone());
  }
  at::Tensor queries(int64_t layer) const { return at::cat(chunks_[layer], 1); }  // [H, T, D]

 private:
  std::vector<std::vector<at::Tensor>> chunks_;
};

// The full causal attention of `ids` (positions 0..T-1), in double, per layer.
struct FullAttention {
  std::vector<at::Tensor> q;      // [H, T, D]
  std::vector<at::Tensor> k;      // [H_kv, T, D] after RoPE
  std::vector<at::Tensor> v;      // [H_kv, T, D]
  std::vector<at::Tensor> probs;  // [H, T, T]; query head j uses KV head j / G
};

inline FullAttention full_attention(const DecoderLM& model, const at::Tensor& ids, int64_t prefill_chunk) {
  const ModelSpec& spec = model.spec();
  const int64_t T = ids.size(0), G = spec.group_size();
  KvCache cache = model.new_cache();
  QueryRecorder recorder(spec.num_layers);
  PrefillOptions opts;
  opts.chunk_size = prefill_chunk;
  opts.observer = &recorder;
  model.prefill(ids, cache, opts);
  at::Tensor causal = at::ones({T, T}, at::kBool).triu(1);
  FullAttention full;
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    full.q.push_back(recorder.queries(l).to(at::kDouble));
    full.k.push_back(cache.dense_keys(l).to(at::kDouble));
    full.v.push_back(cache.dense_values(l).to(at::kDouble));
    at::Tensor logits = at::matmul(full.q[l], full.k[l].repeat_interleave(G, 0).transpose(1, 2)) /
                        std::sqrt(static_cast<double>(spec.head_dim));
    full.probs.push_back(at::softmax(logits.masked_fill(causal, -std::numeric_limits<double>::infinity()), -1));
  }
  return full;
}

// Largest |actual - expected| / max(1, |expected|) over the finite expected entries; +inf expected entries must be
// +inf in `actual` (a mismatch fails the test).
inline double max_scaled_error(const at::Tensor& actual, const at::Tensor& expected) {
  EXPECT_EQ(actual.sizes(), expected.sizes());
  at::Tensor a = actual.to(at::kDouble), e = expected.to(at::kDouble);
  at::Tensor inf = e.isinf();
  EXPECT_TRUE(at::equal(a.isinf(), inf)) << "+inf entries differ";
  EXPECT_FALSE(a.isnan().any().item<bool>());
  at::Tensor finite = inf.logical_not();
  if (!finite.any().item<bool>()) return 0.0;
  at::Tensor err =
      (a.masked_select(finite) - e.masked_select(finite)).abs() / e.masked_select(finite).abs().clamp_min(1.0);
  return err.max().item<double>();
}

}  // namespace proxykv::scoring::testing
