// train-lm: trains a tiny-family decoder (proxy or target) with the curriculum of TASKS.md.
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/training/lm_data.h"

namespace proxykv::training {

struct TrainLmConfig {
  nlohmann::json model_config;  // an HF config.json object (architecture and shape of the model to train)
  uint64_t seed = 1;
  std::string out_dir;
  int threads = 1;  // one thread per training process is fastest on these CPUs (TASKS.md)
  std::string device = "cpu";
  double init_std = 0.02;
  // A model directory (HF layout) whose weights start the run instead of a random init, e.g. one cut out of the
  // target by prune-model. Its config must describe the same model as "model". Ignored when resuming.
  std::string init_from;
  double lr = 2e-3, beta1 = 0.9, beta2 = 0.98, weight_decay = 0.1, clip = 1.0, min_lr_ratio = 0.1;
  int64_t warmup_steps = 100;
  std::vector<PhaseMix> phases;
  int64_t log_every = 25, checkpoint_every = 500, eval_every = 500;
  int64_t eval_length = 256;
  int eval_contexts = 4;
  int eval_queries = 4;
  uint64_t eval_seed = 987654321;       // held-out: training draws its task seeds from the training RNG
  std::vector<std::string> eval_tasks;  // empty: every family

  // Reads a JSON config; paths inside are relative to the current directory. Errors name the file and key.
  static Result<TrainLmConfig> from_file(const std::string& path);
  static Result<TrainLmConfig> from_json(const nlohmann::json& j, const std::string& origin);
};

struct TrainLmResult {
  int64_t steps = 0;
  std::vector<double> losses;  // one per step: the next-token loss (attention_supervision's term not included)
};

// The learning rate of `step` over the configured phase lengths (gated phases at their maximum): linear warm-up,
// then cosine decay to min_lr_ratio over the whole schedule; a phase with its own `lr` holds that rate after a
// warm-up over its first min(50, steps) steps.
double learning_rate_at(const TrainLmConfig& config, int64_t step);
// The loss of each target: -log p(target) from `logp` [B, T, V] (log-probabilities) and `targets` [B, T]; at the
// (row, position, token) triples of `also_right` (TrainingSequence::also_right, in the targets' frame) those
// tokens are right too, and the position's loss is -log of the summed probability of its right tokens.
at::Tensor answer_nll(const at::Tensor& logp, const at::Tensor& targets,
                      const std::vector<std::array<int64_t, 3>>& also_right);
// The also-right tokens of a batch's rows in the frame of its targets (targets[:, j] is the row's token j + 1, so a
// row's position i becomes j = i - 1), as answer_nll takes them: (row, j, token).
std::vector<std::array<int64_t, 3>> also_right_in_targets(const std::vector<TrainingSequence>& rows);
// The copy sources of a batch's rows in the frame of its inputs, as copy_attention_nll takes them: (row, query,
// key), where query = position - 1 is the input that predicts the copied token and key = its source.
std::vector<std::array<int64_t, 3>> copy_sources_in_inputs(const std::vector<TrainingSequence>& rows);
// TrainingSequence::chain_from in the same frame: (row, position, source); the position attends itself (a context
// token, not a prediction of the next one).
std::vector<std::array<int64_t, 3>> chain_sources_in_inputs(const std::vector<TrainingSequence>& rows);
// The attention loss of PhaseMix::attention_supervision, from `probs` [B, H, T, T], one value per (row, query, key) of
// `pairs` ([N], float), with p_h = probs[row, h, query, key]:
// - all heads (any_head false): -log(mean_h p_h + 1e-6), least when every head looks at the source;
// - any head (any_head true): -log(1 - prod_h (1 - p_h) + 1e-6), the "noisy or": least when at least one head looks
//   at the source, so the layer's other heads stay free for other work.
at::Tensor copy_attention_nll(const at::Tensor& probs, const std::vector<std::array<int64_t, 3>>& pairs,
                              bool any_head = false);

// Trains, writing checkpoints to out_dir/checkpoint and the final model (config.json, model.safetensors,
// tokenizer.json) to out_dir. With `resume`, continues from out_dir/checkpoint when it exists: batches are a
// pure function of (seed, step), so a resumed run sees the same data as an uninterrupted one.
// `stop_after` > 0 stops (with a checkpoint) after that many steps of this run: time-boxed runs on a CPU.
Result<TrainLmResult> train_lm(const TrainLmConfig& config, bool resume, std::ostream& progress,
                               int64_t stop_after = -1);

// forward_batch's key_drop for a batch (inputs [B, T], one token list per row, padded by the caller) under a phase's
// ContextDropOptions (lm_data.h): for each row
// that is a task sequence (a `<q>` after its `</ctx>`), with probability `share`, a rate r ~ U[min_rate, max_rate] and,
// per (layer, KV head), every droppable context entry is dropped with probability r for all queries after
// `</ctx>`, as an evicted cache entry is. Droppable: positions 2 .. `</ctx>`-1 (the `<bos> <ctx>` sinks stay, like
// the scorers' sinks) holding a filler or structure word that is not next to a digit, key or value, so the facts
// (and the words either side) are always seen: the model learns to answer from the facts with the filler thinned,
// the way a good scorer leaves it. With `facts` every entry of positions 2 .. `</ctx>`-1 is droppable, the facts
// too; with `structure` every one that is not a key, digit or value (what a token-level KVzip selection drops first:
// the `=` of variable_tracking's statements, the `.` after a fact). With `whole_tokens` the draw of a position's
// (layer 0, head 0) entry decides it in every thinned layer and head, as token-level eviction drops a token
// everywhere. `layers` non-empty: only those layers are thinned (the others keep every entry). The random draws
// do not depend on `facts`, `structure`, `whole_tokens` or `layers`. Undefined when no entry is dropped.
// Randomness from `rng` only.
at::Tensor context_drop_mask(const std::vector<std::vector<int32_t>>& rows, int64_t T, int64_t layers,
                             int64_t kv_heads, const ContextDropOptions& options, std::mt19937_64& rng);

// forward_batch's key_drop under a ContextDropOptions with a `scorer`: for each task row, with probability `share`,
// a rate r ~ U[min_rate, max_rate]; the row's prompt (through `</ctx>`) is prefilled into a fresh cache of `model`
// without gradients and scored by that scorer as the evaluator runs it (sinks `<bos> <ctx>`, `<repeat>` as KVzip's
// prompt); the entries scoring::select_entries(scores, 1 - r, level) does not keep are dropped for every query after
// `</ctx>` -- the cache the serving path would evict to. Undefined when nothing is dropped. Randomness from `rng`
// only (a "random" scorer also draws from its own seed).
Result<at::Tensor> scored_drop_mask(const DecoderLM& model, const std::vector<std::vector<int32_t>>& rows, int64_t T,
                                    const ContextDropOptions& options, std::mt19937_64& rng);

// forward_batch's key_drop that hides each question-and-answer of a row from the later ones, as the evaluator and
// the server answer every question from the context's cache alone (its own KV dropped after it): a row's position
// i belongs to segment n(i) = the number of `<q>` at positions <= i; query row i does not see key column j when
// 0 < n(j) < n(i). Without it, a later answer can be copied from an earlier one in the same row (niah_multiquery
// asks the same keys in each question; niah_multikey and variable_tracking repeat questions), and only the first
// question of a context teaches retrieval. Positions are not renumbered: a later question sits further from the
// context than at evaluation. Shape [1, B, 1, T, T]; undefined when no row has two `<q>`.
at::Tensor query_isolation_mask(const std::vector<std::vector<int32_t>>& rows, int64_t T);

// forward_batch's key_drop for PhaseMix::repeat_drop_openers: each reconstruction row (`<repeat>` right after
// `</ctx>`) is picked with probability `share` (one draw per such row; no draw for other rows); the repeated words
// of a picked row (every position after `</ctx>`) do not see the context's sentence openers, the positions j in
// (`<ctx>`, `</ctx>`) whose previous token is `.` or `<ctx>`. Shape [1, B, 1, T, T] (every layer and KV head);
// undefined when nothing is dropped. Randomness from `rng` only.
at::Tensor opener_drop_mask(const std::vector<std::vector<int32_t>>& rows, int64_t T, double share,
                            std::mt19937_64& rng);

struct RetrievalScore {
  std::map<std::string, double> accuracy;  // per task
  double mean = 0;
  int queries = 0;
};
// Held-out retrieval accuracy per task: contexts generated with `seed`, each query answered greedily from the
// context's KV cache (<bos> <ctx> context </ctx> prefilled once; <q> question <a> appended, decoded to <eos>,
// then dropped again). string_match_all scoring.
Result<RetrievalScore> evaluate_retrieval(const DecoderLM& model, const std::vector<std::string>& task_names,
                                          int64_t length, int contexts, int queries, uint64_t seed);

}  // namespace proxykv::training
