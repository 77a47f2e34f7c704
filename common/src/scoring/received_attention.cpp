#include "proxykv/scoring/received_attention.h"

#include <algorithm>
#include <string>

namespace proxykv::scoring {

void ReceivedAttention::reset(const DecoderLM& model, int64_t num_tokens, int64_t first_query, Heads heads) {
  const ModelSpec& spec = model.spec();
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(model.options().device());
  sums_ = heads == Heads::kSumGroup
              ? at::zeros({spec.num_layers, spec.num_kv_heads, num_tokens}, opts)
              : at::zeros({spec.num_layers, spec.num_kv_heads, spec.group_size(), num_tokens}, opts);
  seen_.assign(spec.num_layers, 0);
  chunk_end_.assign(spec.num_layers, 0);
  num_tokens_ = num_tokens;
  first_query_ = std::max<int64_t>(0, first_query);
  heads_ = heads;
  error_ = Status::ok();
}

void ReceivedAttention::on_queries(int64_t layer, const at::Tensor& q, const KvCache& cache, int64_t n_new) {
  if (!error_.is_ok() || num_tokens_ < 0) return;
  if (layer >= static_cast<int64_t>(seen_.size())) {
    error_ = failed_precondition("attention observer: layer " + std::to_string(layer) + " of a model with " +
                                 std::to_string(seen_.size()) + " layers (begin() was called with another model)");
    return;
  }
  const int64_t length = cache.length(layer, 0);
  // The chunk's queries are prompt positions length - n_new .. length - 1 only when the prefill started from an
  // empty cache and fed the prompt through this observer, chunk after chunk.
  if (length - n_new != seen_[layer] || length > num_tokens_) {
    error_ = failed_precondition("attention observer: layer " + std::to_string(layer) + " saw a chunk ending at " +
                                 std::to_string(length) + " after " + std::to_string(seen_[layer]) + " tokens of a " +
                                 std::to_string(num_tokens_) +
                                 "-token prompt (the prompt must be prefilled into an empty cache)");
    return;
  }
  seen_[layer] = length;
  chunk_end_[layer] = length;
}

bool ReceivedAttention::wants_probs(int64_t layer) const {
  return error_.is_ok() && layer < static_cast<int64_t>(chunk_end_.size()) && chunk_end_[layer] > first_query_;
}

void ReceivedAttention::on_probs(int64_t layer, int64_t kv_head, const at::Tensor& probs) {
  if (!wants_probs(layer)) return;
  // probs [G, n_new, length]: rows are prompt positions length - n_new .., columns the keys 0 .. length - 1.
  const int64_t n_new = probs.size(1), length = probs.size(2);
  const int64_t first_row = std::max<int64_t>(0, first_query_ - (length - n_new));
  if (first_row >= n_new) return;
  at::Tensor received = probs.narrow(1, first_row, n_new - first_row).sum(1);  // [G, length]
  if (heads_ == Heads::kSumGroup) {
    sums_[layer][kv_head].narrow(0, 0, length).add_(received.sum(0));
  } else {
    sums_[layer][kv_head].narrow(1, 0, length).add_(received);
  }
}

Result<at::Tensor> ReceivedAttention::result(int64_t num_tokens) const {
  if (num_tokens_ != num_tokens) {
    return failed_precondition("attention observer: begin() was not called for this " + std::to_string(num_tokens) +
                               "-token prompt");
  }
  if (!error_.is_ok()) return error_;
  for (size_t l = 0; l < seen_.size(); ++l) {
    if (seen_[l] != num_tokens) {
      return failed_precondition("attention observer: layer " + std::to_string(l) + " observed " +
                                 std::to_string(seen_[l]) + " of " + std::to_string(num_tokens) +
                                 " prompt tokens (prefill with the observer begin() returned)");
    }
  }
  return sums_;
}

}  // namespace proxykv::scoring
