#include "proxykv/eval/reconstruction.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace proxykv::eval {

Result<ReconstructionCount> reconstruction_accuracy(const DecoderLM& model, const PromptFormat& format,
                                                    const std::vector<int64_t>& context,
                                                    const ReconstructionOptions& options) {
  if (options.chunk < 1 || options.tail < 0) return invalid_argument("reconstruction: chunk >= 1 and tail >= 0");
  if (context.empty()) return invalid_argument("reconstruction: empty context");
  if (format.repeat_prompt.empty()) return invalid_argument("reconstruction: the prompt format has no repeat prompt");
  std::vector<int64_t> prefilled = format.context_prefix;
  prefilled.insert(prefilled.end(), context.begin(), context.end());
  prefilled.insert(prefilled.end(), format.context_suffix.begin(), format.context_suffix.end());
  const auto as_tensor = [](const std::vector<int64_t>& ids) {
    return at::tensor(ids, at::TensorOptions().dtype(at::kLong));
  };
  KvCache cache = model.new_cache();
  model.prefill(as_tensor(prefilled), cache);

  ReconstructionCount count;
  const int64_t n = static_cast<int64_t>(context.size());
  PrefillOptions teacher;
  teacher.all_logits = true;
  teacher.commit = false;  // each chunk sees the context only, not the chunks before it
  for (int64_t start = 0; start < n; start += options.chunk) {
    const int64_t end = std::min(n, start + options.chunk);
    std::vector<int64_t> ids = format.repeat_prompt;
    const int64_t tail_from = std::max<int64_t>(0, start - options.tail);
    ids.insert(ids.end(), context.begin() + tail_from, context.begin() + start);
    const int64_t first = static_cast<int64_t>(ids.size());  // index of the chunk's first token in ids
    ids.insert(ids.end(), context.begin() + start, context.begin() + end);
    // Position first-1+i predicts chunk token i; the last position of ids predicts nothing we score.
    at::Tensor logits = model.prefill(as_tensor(ids), cache, teacher);
    at::Tensor predicted = logits.slice(0, first - 1, first - 1 + (end - start)).argmax(-1).to(at::kLong);
    at::Tensor wanted = as_tensor(std::vector<int64_t>(context.begin() + start, context.begin() + end));
    count.correct += predicted.eq(wanted).sum().item<int64_t>();
    const int64_t* p = predicted.contiguous().data_ptr<int64_t>();
    count.predicted.insert(count.predicted.end(), p, p + (end - start));
    count.tokens += end - start;
  }
  return count;
}

}  // namespace proxykv::eval
