// The accuracy harness: answers every query of task files from each context's (compressed) KV cache.
//
// Per context: `<bos> <ctx> {context} </ctx>` is prefilled once; each query `<q> {question} <a>` is answered
// greedily from that cache and its KV dropped afterwards (query-agnostic compression: the context is compressed
// before any question is known). Scoring is string_match_all.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/tokenizer.h"
#include "proxykv/tasks/task_suite.h"

namespace proxykv::eval {

struct EvalOptions {
  std::vector<std::string> methods{"full"};
  int64_t limit = 0;               // contexts per file at most (0: all)
  int64_t max_answer_tokens = 48;  // greedy decoding budget per query
  int64_t chunk_size = 512;
};

// One (method, keep ratio, task) cell.
struct EvalRow {
  std::string method;
  double keep_ratio = 1.0;
  std::string task;
  int64_t correct = 0;
  int64_t queries = 0;
  double context_tokens_sum = 0;
  int64_t contexts = 0;
  double accuracy() const { return queries ? static_cast<double>(correct) / queries : 0.0; }
};

struct EvalReport {
  std::vector<EvalRow> rows;
  // {"results":[{method, keep_ratio, task, accuracy, queries, context_tokens_mean}],
  //  "summary":[{method, keep_ratio, accuracy}]}; summary averages over all queries of all files.
  nlohmann::json to_json() const;
};

// Called after each context with (contexts done, contexts total).
using ProgressFn = std::function<void(int64_t, int64_t)>;

class Evaluator {
 public:
  // Special tokens come from the tokenizer: <bos>, <ctx>, </ctx>, <q>, <a> and the stop token (<eos>, or the
  // model's eos_token_id). A tokenizer without them is refused with a message naming the missing token.
  static Result<Evaluator> create(const DecoderLM& target, const Tokenizer& tokenizer, EvalOptions options);

  Result<EvalReport> run(const std::vector<tasks::TaskContext>& contexts, const ProgressFn& progress = {}) const;

  // The answer text for one question from a prefilled context cache (exposed for tests and the services).
  std::string answer(KvCache& cache, const std::string& question) const;
  // Prefills the context prompt into a new cache; returns the cache and the number of context tokens.
  std::pair<KvCache, int64_t> prefill_context(const std::string& context) const;

 private:
  Evaluator(const DecoderLM& target, const Tokenizer& tokenizer, EvalOptions options)
      : target_(&target), tokenizer_(&tokenizer), options_(std::move(options)) {}
  at::Tensor encode(const std::string& text) const;

  const DecoderLM* target_;
  const Tokenizer* tokenizer_;
  EvalOptions options_;
  std::vector<int64_t> stop_ids_;
};

}  // namespace proxykv::eval
