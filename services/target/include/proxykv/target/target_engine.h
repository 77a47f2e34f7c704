// TargetEngine: the target model and its tokenizer, serving compressed contexts (DESIGN.md §2 steps 2, 5, 6).
//
//   auto engine = TargetEngine::load({.model_dir = "models/target"}).value();
//   auto ctx = engine->compress_context(text, {.method = "snapkv", .keep_ratio = 0.3});
//   auto out = engine->answer(**ctx, "what is the magic number for k017 ?", {.max_tokens = 16});
//
// Prompt format (shared/TASKS.md): a context is prefilled as `<bos> <ctx> {context} </ctx>`, a question as
// `<q> {question} <a>`, and the answer ends at `<eos>` (or the model's eos_token_id). A tokenizer without these
// tokens (a real checkpoint) gets a plain format instead: the model's BOS (when it has one) + context, and
// "\n" + question + "\n"; KVzip's repeat prompt is then its English sentence.
//
// Plain completions (`complete`): the prompt is raw prompt text, tokenized as written (nothing added). With a
// compression request, every prompt token but the last is prefilled and compressed like a context; the last one
// is then fed to produce the first output token, so the prompt's own KV is what gets compressed before decoding.
//
// Concurrency: one mutex serialises every use of the model (a proxykv request lets go of it while it waits for
// its mask after its prefill, so the next request can prefill); the tokenizer is used outside it. A context may be
// answered by many threads: each answer appends the question's KV and restores the cache afterwards under the
// lock, so the next question sees only the context. Errors are Result/Status; no exception leaves the engine.
//
// This header is free of LibTorch; CompressedContext is defined in compressed_context.h (LibTorch).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxykv/core/status.h"
#include "proxykv/model/tokenizer.h"
#include "proxykv/target/engine_types.h"

namespace proxykv {
class DecoderLM;
}

namespace proxykv::target {

struct CompressedContext;
class MaskProvider;

// The statistics of a compressed context (defined next to the engine, so callers need no LibTorch).
const CompressionStats& context_stats(const CompressedContext& context);

class TargetEngine {
 public:
  // Loads the model and `<model_dir>/tokenizer.json`; errors name the file at fault. Start-up path.
  static Result<std::unique_ptr<TargetEngine>> load(const EngineOptions& options);
  // Wraps a model already in memory (tests, tools). options.model_dir is not read.
  static Result<std::unique_ptr<TargetEngine>> create(std::unique_ptr<DecoderLM> model, Tokenizer tokenizer,
                                                      EngineOptions options);
  ~TargetEngine();
  TargetEngine(const TargetEngine&) = delete;
  TargetEngine& operator=(const TargetEngine&) = delete;

  const std::string& model_name() const;
  const EngineOptions& options() const;
  const Tokenizer& tokenizer() const;
  const DecoderLM& model() const;
  // Methods compress_context accepts: "full", every local scorer, and "proxykv".
  const std::vector<std::string>& methods() const;

  // Checks a compression request without running anything: known method, keep_ratio in (0, 1], known level.
  Status validate(const CompressionRequest& request) const;
  // Token count of the prefilled context prompt / of a raw prompt, checked against max_context_tokens
  // (OUT_OF_RANGE when too long, INVALID_ARGUMENT when empty). Thread-safe, does not take the model lock.
  Result<int64_t> context_tokens(const std::string& context) const;
  Result<int64_t> prompt_tokens(const std::string& prompt) const;

  // Tokenizes, prefills in chunks, scores, selects and evicts for real. "proxykv" asks the mask provider (see
  // set_mask_provider) before the prefill and waits for the mask after it; without a provider, or when it fails,
  // options().fallback_method is used and the reason recorded in the stats.
  Result<std::shared_ptr<CompressedContext>> compress_context(const std::string& context,
                                                              const CompressionRequest& request);
  // Appends `<q> question <a>`, decodes greedily until the stop token or max_tokens, streaming each token to
  // `on_token`, then drops the question's KV.
  Result<GenerationResult> answer(CompressedContext& context, const std::string& question,
                                  const GenerationOptions& options, const TokenCallback& on_token = {});
  // Completion of a raw prompt (see the header comment); `compression` empty = full cache.
  Result<GenerationResult> complete(const std::string& prompt, const std::optional<CompressionRequest>& compression,
                                    const GenerationOptions& options, const TokenCallback& on_token = {},
                                    CompressionStats* stats = nullptr);

  // The remote mask source for "proxykv" (nullptr: none; every proxykv request falls back). Thread-safe.
  void set_mask_provider(std::shared_ptr<MaskProvider> provider);

 private:
  struct Impl;
  explicit TargetEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace proxykv::target
