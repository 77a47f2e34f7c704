// Attention of new queries over a (possibly ragged) KV cache, and the observer hook scorers use.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/model/kv_cache.h"

namespace proxykv {

// What a scorer sees while the model runs, without a T x T attention matrix ever being built: per layer and
// per chunk, the queries (after RoPE) and the cache they attend to; optionally the softmax probabilities of
// the chunk's queries ([group, n_new, length] per KV head: chunk x context, never context x context).
class AttentionObserver {
 public:
  virtual ~AttentionObserver() = default;
  // After the chunk's K/V were appended to `layer`: q is [num_heads, n_new, head_dim]; the last n_new
  // entries of every head of the layer belong to the chunk.
  virtual void on_queries(int64_t layer, const at::Tensor& q, const KvCache& cache, int64_t n_new) {}
  // Whether on_probs should be called for `layer`.
  virtual bool wants_probs(int64_t layer) const { return false; }
  // probs: float32 [group_size, n_new, cache.length(layer, kv_head)] for the query heads of kv_head.
  virtual void on_probs(int64_t layer, int64_t kv_head, const at::Tensor& probs) {}
};

// Forwards one prefill's observations to several observers (one scoring pass serving many scorers), adding the
// time each spends to its own counter when one is given.
class ObserverFanOut : public AttentionObserver {
 public:
  void add(AttentionObserver* child, double* seconds = nullptr) { children_.push_back({child, seconds}); }
  bool empty() const { return children_.empty(); }
  void on_queries(int64_t layer, const at::Tensor& q, const KvCache& cache, int64_t n_new) override;
  bool wants_probs(int64_t layer) const override;
  void on_probs(int64_t layer, int64_t kv_head, const at::Tensor& probs) override;

 private:
  struct Child {
    AttentionObserver* observer;
    double* seconds;
  };
  std::vector<Child> children_;
};

// q: [num_heads, n_new, head_dim], the queries of the n_new tokens whose K/V are the last n_new entries of each
// head of `layer`. New token i sees every older entry and new tokens 0..i (causal). Returns
// [num_heads, n_new, head_dim] in q's dtype; the softmax runs in float32.
at::Tensor cached_attention(const at::Tensor& q, const KvCache& cache, int64_t layer, int64_t n_new, double scale,
                            AttentionObserver* observer = nullptr);

// Reference: attention over full k, v [kv_heads, T, head_dim] where only entries with keep[h][t] (bool
// [kv_heads, T]) are visible, with the same causal rule for the last n_new positions. Slow and obvious: tests.
at::Tensor masked_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& keep, int64_t n_new, double scale);

}  // namespace proxykv
