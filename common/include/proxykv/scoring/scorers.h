// The scorers behind make_scorer, and what they share.
//
// Each method lives in its own source file (common/src/scoring/<method>_scorer.cpp, the cheap heuristics in
// heuristic_scorers.cpp); make_scorer (scorer.cpp) validates the options once and picks one of these
// constructors. The definitions are written out in docs/scoring.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/scoring/scorer.h"

namespace proxykv::scoring {

// What every scorer's finish() does around its own computation: checks that `cache` holds exactly the T prompt
// entries in every (layer, KV head) and fits the model, runs score() without letting an exception out, gives the
// sinks +inf and returns contiguous float32 CPU scores [L, H_kv, T]. A scorer holds the state of one prompt
// between begin() and finish(): one request at a time per scorer object.
class ScorerBase : public Scorer {
 public:
  ScorerBase(std::string name, const ScorerOptions& options) : name_(std::move(name)), options_(options) {}
  const std::string& name() const override { return name_; }
  Result<at::Tensor> finish(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) final;

 protected:
  // Scores [L, H_kv, T] on any device, in any float dtype; sink columns may hold anything. `context_ids` is int64
  // [T] on the CPU, and `cache` is uniform with length T.
  virtual Result<at::Tensor> score(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) = 0;
  const ScorerOptions& options() const { return options_; }

 private:
  std::string name_;
  ScorerOptions options_;
};

// Checks the fields of `options` that make_scorer relies on (every method; defaults are valid); the message
// names the field at fault.
Status validate_scorer_options(const ScorerOptions& options);

std::unique_ptr<Scorer> make_full_scorer(const ScorerOptions& options);
std::unique_ptr<Scorer> make_random_scorer(const ScorerOptions& options);
std::unique_ptr<Scorer> make_knorm_scorer(const ScorerOptions& options);
std::unique_ptr<Scorer> make_streaming_scorer(const ScorerOptions& options);
std::unique_ptr<Scorer> make_h2o_scorer(const ScorerOptions& options);
std::unique_ptr<Scorer> make_snapkv_scorer(const ScorerOptions& options);
std::unique_ptr<Scorer> make_laprox_scorer(const ScorerOptions& options);
std::unique_ptr<Scorer> make_kvzip_scorer(const ScorerOptions& options);

// SnapKV's 1-D pooling along the last (token) dimension: kernel `kernel` (odd), stride 1, padding kernel/2, so the
// length is unchanged. "max" pads with -inf (PyTorch max_pool1d); "avg" pads with zeros that count in the mean
// (avg_pool1d, count_include_pad), as SnapKV and kvpress do. Any leading shape; float input.
at::Tensor pool_along_tokens(const at::Tensor& scores, int64_t kernel, const std::string& pool);

}  // namespace proxykv::scoring
