// Reconstruction accuracy: how well a model repeats its context after the repeat prompt, teacher-forced. This is
// the ability KVzip's scoring relies on (the family issue's criterion: >= 0.95 for the target).
//
// The context is prefilled once (`<bos> <ctx> context </ctx>`); then, chunk by chunk as KVzip scores, the model
// reads the repeat prompt, the previous chunk's last `tail` context tokens (none for the first chunk) and the
// chunk's tokens, without growing the cache; a position counts as correct when the argmax of its prediction is
// the next context token. Every context token is predicted exactly once.
#pragma once

#include <cstdint>
#include <vector>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/prompt_format.h"

namespace proxykv::eval {

struct ReconstructionOptions {
  int64_t chunk = 256;  // context tokens per repeat chunk (the family trains with 256; KVzip scores with 2048)
  int64_t tail = 8;     // tokens of the previous chunk after the repeat prompt
};

struct ReconstructionCount {
  int64_t correct = 0;
  int64_t tokens = 0;  // context tokens predicted (= the context's length)
  std::vector<int64_t> predicted;  // the argmax at every context position
  double accuracy() const { return tokens > 0 ? static_cast<double>(correct) / static_cast<double>(tokens) : 0.0; }
};

// `context` is the context's token ids without prefix and suffix.
Result<ReconstructionCount> reconstruction_accuracy(const DecoderLM& model, const PromptFormat& format,
                                                    const std::vector<int64_t>& context,
                                                    const ReconstructionOptions& options = {});

}  // namespace proxykv::eval
