// laprox: an output-aware score, a token's contribution to the layer's output through attention x V x W_o.
//
// Head j's part of the attention output for query t' is sum_t p_j(t' -> t) v_t, and the layer adds
// W_o[:, j*D:(j+1)*D] times it to the residual stream. So token t moves the residual stream of query t' by
// p_j(t' -> t) * ||W_o,j v_t|| through head j (W_o,j = W_o[:, j*D:(j+1)*D], v_t the cached value of its KV head).
// Over the observation window (the last W = min(options.window, T) prompt queries, as snapkv) and the G query
// heads j = h*G .. h*G+G-1 of KV head h:
//   score[l, h, t] = sum_j a_j(t) * ||W_o,j v_t||_2,   a_j(t) = sum over window queries t' of p_j(t' -> t)
// for t < T - W, and +inf for the window itself (its attention from the window is cut short by causality, so,
// as snapkv, it is always kept). No pooling. The unit is the residual stream's, so scores compare across heads
// and layers (a global top-rho selection is meaningful). ||W_o,j v||^2 = v^T (W_o,j^T W_o,j) v: one [D, D] Gram
// matrix per query head instead of a [T, hidden] product.
#include <limits>

#include "proxykv/scoring/received_attention.h"
#include "proxykv/scoring/scorers.h"

namespace proxykv::scoring {
namespace {

class LaproxScorer final : public ScorerBase {
 public:
  explicit LaproxScorer(const ScorerOptions& options) : ScorerBase("laprox", options) {}

  AttentionObserver* begin(const DecoderLM& model, int64_t num_tokens) override {
    received_.reset(model, num_tokens, window_start(num_tokens), ReceivedAttention::Heads::kPerQueryHead);
    return &received_;
  }

 protected:
  Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) override {
    const int64_t T = context_ids.size(0);
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor attention, received_.result(T));  // [L, H_kv, G, T]
    const ModelSpec& spec = model.spec();
    const int64_t H = spec.num_heads, Hkv = spec.num_kv_heads, G = spec.group_size(), D = spec.head_dim;
    at::Tensor scores = at::empty({spec.num_layers, Hkv, T}, attention.options());
    for (int64_t l = 0; l < spec.num_layers; ++l) {
      const at::Tensor& w_o = model.weights().layers[l].w_o;                           // [hidden, H*D]
      at::Tensor w = w_o.to(at::kFloat).view({w_o.size(0), H, D}).permute({1, 0, 2});  // [H, hidden, D]
      at::Tensor gram = at::matmul(w.transpose(1, 2), w);                              // [H, D, D]
      for (int64_t h = 0; h < Hkv; ++h) {
        at::Tensor v = cache.values(l, h).to(at::kFloat);                           // [T, D]
        at::Tensor vm = at::matmul(v.unsqueeze(0), gram.narrow(0, h * G, G));       // [G, T, D]
        at::Tensor out_norm = (vm * v.unsqueeze(0)).sum(-1).clamp_min_(0).sqrt_();  // [G, T]
        scores[l][h].copy_((attention[l][h] * out_norm).sum(0));
      }
    }
    const int64_t prefix = window_start(T);
    scores.narrow(2, prefix, T - prefix).fill_(std::numeric_limits<float>::infinity());
    return scores;
  }

 private:
  int64_t window_start(int64_t num_tokens) const { return std::max<int64_t>(0, num_tokens - options().window); }

  ReceivedAttention received_;
};

}  // namespace

std::unique_ptr<Scorer> make_laprox_scorer(const ScorerOptions& options) {
  return std::make_unique<LaproxScorer>(options);
}

}  // namespace proxykv::scoring
