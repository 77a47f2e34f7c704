// h2o (Heavy-Hitter Oracle, Zhang et al. 2023): the attention each prompt key accumulates from every prompt query,
//   score[l, h, t] = sum over query heads j of KV group h, sum over prompt queries t' >= t, of p_j(t' -> t),
// gathered during the prefill from the per-chunk probabilities. Earlier keys are seen by more queries; that bias
// is H2O's own.
#include "proxykv/scoring/received_attention.h"
#include "proxykv/scoring/scorers.h"

namespace proxykv::scoring {
namespace {

class H2oScorer final : public ScorerBase {
 public:
  explicit H2oScorer(const ScorerOptions& options) : ScorerBase("h2o", options) {}

  AttentionObserver* begin(const DecoderLM& model, int64_t num_tokens) override {
    received_.reset(model, num_tokens, /*first_query=*/0, ReceivedAttention::Heads::kSumGroup);
    return &received_;
  }

 protected:
  Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) override {
    return received_.result(context_ids.size(0));
  }

 private:
  ReceivedAttention received_;
};

}  // namespace

std::unique_ptr<Scorer> make_h2o_scorer(const ScorerOptions& options) {
  return std::make_unique<H2oScorer>(options);
}

}  // namespace proxykv::scoring
