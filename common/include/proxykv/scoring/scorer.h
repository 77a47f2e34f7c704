// Importance scorers: which context KV entries matter (higher score = keep).
//
// A scorer sees the context twice at most: during its prefill, through an AttentionObserver (chunk x context
// attention, never context x context), and after it, with the prefilled cache (KVzip's reconstruction passes run
// then, against the cache without growing it). It produces float32 scores [num_layers, num_kv_heads, T] over the
// T entries of the prefilled prompt, the same T for every head (scoring happens before any eviction).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/model/attention.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/kv_cache.h"
#include "proxykv/model/prompt_format.h"

namespace proxykv::scoring {

struct ScorerOptions {
  int64_t n_sink = 2;  // leading prompt tokens always kept (the family's `<bos> <ctx>`); they get +inf scores

  // kvzip: reconstruction chunks of the context, and the repeat prompts. The first chunk is preceded by
  // `repeat_prompt_first`, later chunks by `repeat_prompt_rest` followed by the last `repeat_overlap` tokens of the
  // previous chunk (KVzip: "Repeat the previous context exactly." / "... starting with" + 8 tokens). The tiny
  // family's prompt is its `<repeat>` token for both.
  int64_t kvzip_chunk = 2048;
  std::vector<int64_t> repeat_prompt_first;
  std::vector<int64_t> repeat_prompt_rest;
  int64_t repeat_overlap = 8;

  // snapkv / laprox: observation window (the last `window` prompt tokens) and pooling.
  int64_t window = 64;
  int64_t pool_kernel = 7;
  std::string pool = "max";  // "max" or "avg"

  // streaming: the recent tokens win; sinks are n_sink.
  uint64_t seed = 0;  // random
  int64_t prefill_chunk = 512;
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  virtual const std::string& name() const = 0;

  // Called before the context prefill with its length T (the whole prompt); returns the observer to attach to
  // that prefill, or nullptr when the scorer needs nothing from it.
  virtual AttentionObserver* begin(const DecoderLM& model, int64_t num_tokens) { return nullptr; }

  // Called after the prefill of `context_ids` ([T] int64) into `cache` (uniform length T); returns scores
  // [L, H_kv, T] float32 on the CPU. The cache must be left exactly as it was (length and position).
  virtual Result<at::Tensor> finish(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) = 0;
};

// The options that come from how prompts are written: the prompt format's sinks (`n_sink`) and KVzip's repeat
// prompt (both chunks). Every component that scores a prompt of that format (target engine, proxy, evaluator,
// make-mapper-data) sets them here, so they all score the same way.
void apply_prompt_format(const PromptFormat& format, ScorerOptions& options);

// "full", "kvzip", "snapkv", "streaming", "h2o", "laprox", "knorm", "random".
Result<std::unique_ptr<Scorer>> make_scorer(const std::string& method, const ScorerOptions& options);
const std::vector<std::string>& scorer_names();

}  // namespace proxykv::scoring
