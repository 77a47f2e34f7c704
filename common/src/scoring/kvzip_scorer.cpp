// kvzip (KVzip, Kim et al. 2025, arXiv 2505.23416): query-agnostic importance by context reconstruction.
//
// After the prompt's prefill, the context entries [n_sink, T) are cut into chunks [s, e) of options.kvzip_chunk
// tokens. For each chunk the model is teacher-forced on a repeat input
//   repeat_prompt_first + context[s:e]                                         (first chunk)
//   repeat_prompt_rest + context[max(0, s - repeat_overlap):s] + context[s:e]  (later chunks)
// prefilled against the cache with commit = false (the cache is restored afterwards, so it never grows; the
// forward pass itself attends to the whole cache). Per layer, per prefill chunk of that input, for KV head h:
//   keys   = [sink entries 0..n_sink) | chunk entries [s, e) | repeat entries T..length)  (repeat so far)
//   p      = softmax over keys (float32) of q_j . k / sqrt(D), for the G query heads j of h, with a causal mask
//            on the repeat part (the query at cache position p sees repeat entries at positions <= p)
//   score[l, h, s:e] = max(score, max over the queries and over j of p[:, :, chunk columns])
// so logits are [G, n_new, n_sink + chunk + repeat_so_far], never T x T. Sinks get +inf.
#include <cmath>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "proxykv/scoring/scorers.h"

namespace proxykv::scoring {
namespace {

class KvzipObserver final : public AttentionObserver {
 public:
  KvzipObserver(at::Tensor scores, int64_t num_tokens, int64_t n_sink, double scale)
      : scores_(std::move(scores)), num_tokens_(num_tokens), n_sink_(n_sink), scale_(scale) {}

  void set_chunk(int64_t begin, int64_t end) {
    begin_ = begin;
    end_ = end;
  }
  const Status& error() const { return error_; }

  void on_queries(int64_t layer, const at::Tensor& q, const KvCache& cache, int64_t n_new) override {
    if (!error_.is_ok()) return;
    const int64_t kv_heads = cache.num_kv_heads();
    const int64_t group = q.size(0) / kv_heads;
    const int64_t chunk = end_ - begin_;
    at::Tensor qf = q.to(at::kFloat);
    for (int64_t h = 0; h < kv_heads; ++h) {
      const int64_t repeat = cache.length(layer, h) - num_tokens_;  // repeat tokens appended so far, incl. these
      if (repeat < n_new) {
        error_ = internal_error("kvzip: layer " + std::to_string(layer) + " holds fewer repeat entries than queries");
        return;
      }
      at::Tensor k = cache.keys(layer, h);
      at::Tensor sinks = k.narrow(0, 0, n_sink_);
      at::Tensor context = k.narrow(0, begin_, chunk);
      at::Tensor repeated = k.narrow(0, num_tokens_, repeat);
      at::Tensor keys = at::cat({sinks, context, repeated}).to(at::kFloat);                   // [S + C + R, D]
      at::Tensor logits = at::matmul(qf.narrow(0, h * group, group), keys.t()).mul_(scale_);  // [G, n, S + C + R]
      logits.narrow(2, n_sink_ + chunk, repeat)
          .masked_fill_(repeat_mask(n_new, repeat, q.device()), -std::numeric_limits<float>::infinity());
      at::Tensor best = at::softmax(logits, -1).narrow(2, n_sink_, chunk).amax({0, 1});  // [C]
      at::Tensor dst = scores_[layer][h].narrow(0, begin_, chunk);
      dst.copy_(at::maximum(dst, best));
    }
  }

 private:
  // Bool [n_new, repeat]: true where query i (the (repeat - n_new + i)-th repeat token) must not see column r.
  static at::Tensor repeat_mask(int64_t n_new, int64_t repeat, const at::Device& device) {
    auto opts = at::TensorOptions().dtype(at::kLong).device(device);
    return at::arange(repeat, opts).unsqueeze(0) > at::arange(n_new, opts).unsqueeze(1) + (repeat - n_new);
  }

  at::Tensor scores_;  // [L, H_kv, T] float32, shared with the scorer
  int64_t num_tokens_;
  int64_t n_sink_;
  double scale_;
  int64_t begin_ = 0;
  int64_t end_ = 0;
  Status error_;
};

// Puts the cache back to its snapshot however the reconstruction pass ends (prefill with commit = false restores
// only when it returns normally).
class RestoreOnExit {
 public:
  explicit RestoreOnExit(KvCache& cache) : cache_(cache), snapshot_(cache.snapshot()) {}
  ~RestoreOnExit() {
    try {
      cache_.restore(snapshot_);
    } catch (const std::exception&) {  // only a shrunk cache throws, and nothing here shrinks it
    }
  }
  RestoreOnExit(const RestoreOnExit&) = delete;
  RestoreOnExit& operator=(const RestoreOnExit&) = delete;

 private:
  KvCache& cache_;
  KvCache::Snapshot snapshot_;
};

Status check_ids(const std::vector<int64_t>& ids, int64_t vocab, const char* what) {
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab) {
      return invalid_argument(std::string("kvzip: ") + what + " holds token id " + std::to_string(id) +
                              ", outside the model's vocabulary of " + std::to_string(vocab));
    }
  }
  return Status::ok();
}

class KvzipScorer final : public ScorerBase {
 public:
  explicit KvzipScorer(const ScorerOptions& options) : ScorerBase("kvzip", options) {}

 protected:
  Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) override {
    const ScorerOptions& o = options();
    const ModelSpec& spec = model.spec();
    const int64_t T = context_ids.size(0);
    const int64_t* ctx = context_ids.data_ptr<int64_t>();
    const std::vector<int64_t> context(ctx, ctx + T);
    PROXYKV_RETURN_IF_ERROR(check_ids(context, spec.vocab_size, "the context"));
    PROXYKV_RETURN_IF_ERROR(check_ids(o.repeat_prompt_first, spec.vocab_size, "repeat_prompt_first"));
    PROXYKV_RETURN_IF_ERROR(check_ids(o.repeat_prompt_rest, spec.vocab_size, "repeat_prompt_rest"));

    const int64_t sinks = std::min(o.n_sink, T);
    at::Tensor scores = at::zeros({spec.num_layers, spec.num_kv_heads, T},
                                  at::TensorOptions().dtype(at::kFloat).device(model.options().device()));
    KvzipObserver observer(scores, T, sinks, 1.0 / std::sqrt(static_cast<double>(spec.head_dim)));
    PrefillOptions prefill;
    prefill.chunk_size = o.prefill_chunk;
    prefill.commit = false;
    prefill.observer = &observer;

    RestoreOnExit restore(cache);
    for (int64_t begin = sinks; begin < T; begin += o.kvzip_chunk) {
      const int64_t end = std::min(begin + o.kvzip_chunk, T);
      std::vector<int64_t> input = begin == sinks ? o.repeat_prompt_first : o.repeat_prompt_rest;
      if (begin != sinks) input.insert(input.end(), ctx + std::max<int64_t>(0, begin - o.repeat_overlap), ctx + begin);
      input.insert(input.end(), ctx + begin, ctx + end);  // teacher forcing: the chunk itself
      observer.set_chunk(begin, end);
      model.prefill(at::tensor(input, at::kLong), cache, prefill);
      PROXYKV_RETURN_IF_ERROR(observer.error());
    }
    return scores;
  }
};

}  // namespace

std::unique_ptr<Scorer> make_kvzip_scorer(const ScorerOptions& options) {
  return std::make_unique<KvzipScorer>(options);
}

}  // namespace proxykv::scoring
