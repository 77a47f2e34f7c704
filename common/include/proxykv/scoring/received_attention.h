// ReceivedAttention: how much attention each prompt key receives from a range of prompt queries, gathered during
// the prompt's prefill from the chunk x context probabilities (never a T x T matrix). h2o uses every query;
// snapkv and laprox use the observation window (the last `window` queries), which may span prefill chunks.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/model/attention.h"
#include "proxykv/model/decoder_lm.h"

namespace proxykv::scoring {

class ReceivedAttention : public AttentionObserver {
 public:
  enum class Heads {
    kSumGroup,      // [L, H_kv, T]: summed over the query heads of each KV group
    kPerQueryHead,  // [L, H_kv, G, T]
  };

  // Prepares for the prefill of a `num_tokens`-token prompt into an empty cache; the queries at prompt positions
  // >= first_query count. Accumulators live on the model's device, in float32.
  void reset(const DecoderLM& model, int64_t num_tokens, int64_t first_query, Heads heads);

  void on_queries(int64_t layer, const at::Tensor& q, const KvCache& cache, int64_t n_new) override;
  bool wants_probs(int64_t layer) const override;
  void on_probs(int64_t layer, int64_t kv_head, const at::Tensor& probs) override;

  // sum over the counted queries t' of probs(t' -> t), per key t; an error when reset() was not called for this
  // `num_tokens`, or when the prefill of every layer did not run through this observer from an empty cache.
  Result<at::Tensor> result(int64_t num_tokens) const;

 private:
  at::Tensor sums_;
  std::vector<int64_t> seen_;       // per layer: prompt tokens whose queries were observed
  std::vector<int64_t> chunk_end_;  // per layer: cache length after the current chunk
  int64_t num_tokens_ = -1;
  int64_t first_query_ = 0;
  Heads heads_ = Heads::kSumGroup;
  Status error_;
};

}  // namespace proxykv::scoring
