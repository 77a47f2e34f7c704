#include "proxykv/model/attention.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace proxykv {
namespace {

// Bool [n_new, length]: true where new query i must not see entry j (j after the query's own entry).
at::Tensor causal_block_mask(int64_t n_new, int64_t length, const at::Device& device) {
  auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor cols = at::arange(length, opts).unsqueeze(0);                            // [1, length]
  at::Tensor last_visible = at::arange(n_new, opts).unsqueeze(1) + (length - n_new);  // [n_new, 1]
  return cols > last_visible;
}

// Runs f, adding its wall time to *seconds when a counter is given.
template <typename F>
void timed(double* seconds, F&& f) {
  if (!seconds) {
    f();
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  f();
  *seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void ObserverFanOut::on_queries(int64_t layer, const at::Tensor& q, const KvCache& cache, int64_t n_new) {
  for (auto& c : children_) timed(c.seconds, [&] { c.observer->on_queries(layer, q, cache, n_new); });
}

bool ObserverFanOut::wants_probs(int64_t layer) const {
  return std::any_of(children_.begin(), children_.end(),
                     [&](const Child& c) { return c.observer->wants_probs(layer); });
}

void ObserverFanOut::on_probs(int64_t layer, int64_t kv_head, const at::Tensor& probs) {
  for (auto& c : children_) {
    if (c.observer->wants_probs(layer)) timed(c.seconds, [&] { c.observer->on_probs(layer, kv_head, probs); });
  }
}

at::Tensor cached_attention(const at::Tensor& q, const KvCache& cache, int64_t layer, int64_t n_new, double scale,
                            AttentionObserver* observer) {
  const int64_t num_heads = q.size(0);
  const int64_t kv_heads = cache.num_kv_heads();
  const int64_t group = num_heads / kv_heads;
  const bool want_probs = observer != nullptr && observer->wants_probs(layer);
  at::Tensor out = at::empty_like(q);
  for (int64_t h = 0; h < kv_heads; ++h) {
    at::Tensor k = cache.keys(layer, h);    // [L, D]
    at::Tensor v = cache.values(layer, h);  // [L, D]
    const int64_t length = k.size(0);
    at::Tensor qg = q.narrow(0, h * group, group);                         // [G, n, D]
    at::Tensor scores = at::matmul(qg, k.t()).to(at::kFloat).mul_(scale);  // [G, n, L]
    if (n_new > 1) {
      scores.masked_fill_(causal_block_mask(n_new, length, q.device()), -std::numeric_limits<float>::infinity());
    }
    at::Tensor probs = at::softmax(scores, -1);
    if (want_probs) observer->on_probs(layer, h, probs);
    out.narrow(0, h * group, group).copy_(at::matmul(probs.to(v.scalar_type()), v));
  }
  return out;
}

at::Tensor masked_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& keep, int64_t n_new, double scale) {
  const int64_t num_heads = q.size(0);
  const int64_t kv_heads = k.size(0);
  const int64_t group = num_heads / kv_heads;
  const int64_t length = k.size(1);
  at::Tensor k_rep = k.repeat_interleave(group, 0).to(at::kDouble);  // [H, T, D]
  at::Tensor v_rep = v.repeat_interleave(group, 0).to(at::kDouble);
  at::Tensor scores = at::matmul(q.to(at::kDouble), k_rep.transpose(1, 2)) * scale;  // [H, n, T]
  at::Tensor hidden = keep.logical_not().repeat_interleave(group, 0).unsqueeze(1);   // [H, 1, T]
  at::Tensor blocked = hidden | causal_block_mask(n_new, length, q.device()).unsqueeze(0);
  scores = scores.masked_fill(blocked, -std::numeric_limits<double>::infinity());
  return at::matmul(at::softmax(scores, -1), v_rep).to(q.scalar_type());
}

}  // namespace proxykv
