// snapkv (SnapKV, Li et al. 2024). Observation window: the last W = min(options.window, T) prompt tokens.
//   a[l, h, t] = mean over the G query heads j of KV group h of sum over window queries t' of p_j(t' -> t)
//   score[l, h, t] = pool(a[l, h, 0 .. T-W))[t]   for t < T - W (pool_along_tokens: options.pool_kernel, max/avg)
//   score[l, h, t] = +inf                        for t >= T - W (SnapKV always keeps the window)
// As in SnapKV's reference code, only the prefix before the window is pooled, so the window's own (causally
// truncated) attention does not spill into its neighbours. Gathered during the prefill; the window may span
// prefill chunks.
#include <limits>

#include "proxykv/scoring/received_attention.h"
#include "proxykv/scoring/scorers.h"

namespace proxykv::scoring {
namespace {

class SnapkvScorer final : public ScorerBase {
 public:
  explicit SnapkvScorer(const ScorerOptions& options) : ScorerBase("snapkv", options) {}

  AttentionObserver* begin(const DecoderLM& model, int64_t num_tokens) override {
    received_.reset(model, num_tokens, window_start(num_tokens), ReceivedAttention::Heads::kSumGroup);
    return &received_;
  }

 protected:
  Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) override {
    const int64_t T = context_ids.size(0);
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor summed, received_.result(T));
    const int64_t prefix = window_start(T);
    at::Tensor mean = summed / static_cast<double>(model.spec().group_size());
    at::Tensor scores = at::full_like(mean, std::numeric_limits<float>::infinity());
    if (prefix > 0) {
      scores.narrow(2, 0, prefix)
          .copy_(pool_along_tokens(mean.narrow(2, 0, prefix), options().pool_kernel, options().pool));
    }
    return scores;
  }

 private:
  int64_t window_start(int64_t num_tokens) const { return std::max<int64_t>(0, num_tokens - options().window); }

  ReceivedAttention received_;
};

}  // namespace

std::unique_ptr<Scorer> make_snapkv_scorer(const ScorerOptions& options) {
  return std::make_unique<SnapkvScorer>(options);
}

}  // namespace proxykv::scoring
