// The accuracy harness: answers every query of task files from each context's (compressed) KV cache.
//
// Per context: `<bos> <ctx> {context} </ctx>` is prefilled once, with every requested scorer attached (one
// scoring pass per context and method). For each method and keep ratio the selection is applied by real
// eviction to a copy of the cache (KvCache::compact), and each query `<q> {question} <a>` is answered greedily
// from it, its KV dropped afterwards (query-agnostic compression: the context is compressed before any question
// is known). Scoring: string_match_all. Fidelity: the answer equals the full-cache answer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/model/prompt_format.h"
#include "proxykv/core/status.h"
#include "proxykv/eval/proxy_methods.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/tokenizer.h"
#include "proxykv/scoring/scorer.h"
#include "proxykv/scoring/selection.h"
#include "proxykv/tasks/task_suite.h"

namespace proxykv::eval {

struct EvalOptions {
  std::vector<std::string> methods{"full"};
  std::vector<double> ratios{0.1, 0.2, 0.3, 0.5, 0.7};  // keep ratios (fraction kept) for every method but full
  scoring::SelectionLevel level = scoring::SelectionLevel::kGlobal;
  double head_floor = 0.0;  // global/layer level: each head's guaranteed share (scoring::select_entries)
  int64_t kvzip_chunk = 2048;
  int64_t limit = 0;               // contexts per file at most (0: all)
  int64_t max_answer_tokens = 48;  // greedy decoding budget per query
  int64_t chunk_size = 512;        // prefill chunk
  uint64_t seed = 0;               // the random scorer's
  const ProxyMethods* proxy_methods = nullptr;  // proxykv, proxy_direct, kvzip_iam, ... (must outlive the run)
  // Diagnostic: these layers keep their whole cache whatever the method selects (kv_bytes counts them), to find
  // which layers' eviction costs the accuracy. Empty (default): every layer is compressed.
  std::vector<int64_t> whole_layers;
  // Diagnostic: context tokens with one of these ids keep their entries in every (layer, KV head) whatever the
  // method selects (beyond the budget; kv_bytes counts them), to find which words' eviction costs the accuracy.
  std::vector<int64_t> whole_token_ids;
  // Keep every query's answer text in EvalReport::answers (`proxykv eval --answers`), to read how a method fails.
  bool record_answers = false;
};

// One query's answer under one (method, keep ratio): what the model wrote and whether string_match_all accepts it.
struct EvalAnswer {
  std::string context_id, task, method;
  double keep_ratio = 1.0;
  std::string question;
  std::vector<std::string> expected;
  std::string output;
  bool correct = false;
  bool same_as_full = false;
  nlohmann::json to_json() const;
};

// One (method, keep ratio, task) cell.
struct EvalRow {
  std::string method;
  double keep_ratio = 1.0;
  std::string task;
  int64_t correct = 0;
  int64_t queries = 0;
  int64_t same_as_full = 0;  // fidelity numerator
  double context_tokens_sum = 0;
  double kv_bytes_sum = 0;
  double score_s_sum = 0;
  double recall_vs_kvzip_sum = 0;
  int64_t recall_count = 0;
  int64_t contexts = 0;
  double accuracy() const { return queries ? static_cast<double>(correct) / queries : 0.0; }
};

struct EvalReport {
  std::vector<EvalRow> rows;
  std::vector<EvalAnswer> answers;  // with EvalOptions::record_answers: in context, method, ratio, query order
  double prefill_s_sum = 0;
  int64_t contexts = 0;
  // {"results":[{method, keep_ratio, task, accuracy, queries, context_tokens_mean, kv_bytes, score_s, fidelity,
  //   recall_vs_kvzip?}], "summary":[{method, keep_ratio, accuracy, queries, kv_bytes, score_s, fidelity}],
  //  "prefill_s": mean prefill seconds per context}; summary averages over all queries of all files.
  nlohmann::json to_json() const;
};

// Called after each context with (contexts done, contexts total).
using ProgressFn = std::function<void(int64_t, int64_t)>;

class Evaluator {
 public:
  // Special tokens come from the tokenizer: <bos>, <ctx>, </ctx>, <q>, <a>, <repeat> (KVzip's repeat prompt) and
  // the stop token (<eos>, or the model's eos_token_id). A tokenizer without them is refused, naming the token.
  // `target` and `tokenizer` must outlive the Evaluator.
  static Result<Evaluator> create(const DecoderLM& target, const Tokenizer& tokenizer, EvalOptions options);

  Result<EvalReport> run(const std::vector<tasks::TaskContext>& contexts, const ProgressFn& progress = {}) const;

  // The answer text for one question from a prefilled context cache (its KV is dropped afterwards).
  std::string answer(KvCache& cache, const std::string& question) const;
  // Token ids of `<bos> <ctx> {context} </ctx>`.
  at::Tensor context_prompt(const std::string& context) const;

 private:
  Evaluator(const DecoderLM& target, const Tokenizer& tokenizer, EvalOptions options)
      : target_(&target), tokenizer_(&tokenizer), options_(std::move(options)) {}
  at::Tensor to_tensor(const std::vector<int64_t>& ids) const;

  const DecoderLM* target_;
  const Tokenizer* tokenizer_;
  EvalOptions options_;
  scoring::ScorerOptions scorer_options_;
  PromptFormat format_;  // the family's (create() refuses a tokenizer without its tokens)
};

// Writes an accuracy-vs-keep-ratio plot (one line per method, full as a horizontal line) with gnuplot.
Status plot_accuracy(const nlohmann::json& report, const std::string& png_path, const std::string& title);

}  // namespace proxykv::eval
