// In-process mapper training: sliding windows of long contexts, AdamW, the hybrid loss, and validation metrics per
// epoch. The CLI `proxykv train-mapper` wires it to files; tests run it on synthetic data.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"
#include "proxykv/mapper/hybrid_axial_mapper.h"
#include "proxykv/mapper/hybrid_loss.h"

namespace proxykv::mapper {

// One context: the proxy's features and the target's KVzip labels over the same T tokens.
struct MapperSample {
  at::Tensor features;  // [C, P, T] float
  at::Tensor labels;    // [Q, T] float
  std::string id;       // free-form, for messages
};

// Refuses samples whose shapes do not fit `shape` (naming the sample by index and id), or that are not float.
Status check_samples(const std::vector<MapperSample>& samples, const MapperPairShape& shape, const std::string& what);

// A training window: tokens [start, start + window) of one sample.
struct MapperWindow {
  size_t sample = 0;
  int64_t start = 0;
};

// Windows of `window` tokens every `stride` tokens, from 0 until one reaches the end of the sample: the last one
// may run past the end (its tail is padding). A sample shorter than `window` gives one padded window.
std::vector<MapperWindow> plan_windows(const std::vector<MapperSample>& samples, int64_t window, int64_t stride);
// The samples with their labels as MapperTrainConfig::label_rows asks: "each" unchanged, "max" every row the max
// over the rows (features shared, labels new tensors).
std::vector<MapperSample> with_label_rows(const std::vector<MapperSample>& samples, const std::string& label_rows);

struct MapperBatch {
  at::Tensor features;  // [B, C, P, window], zeros past a sample's end
  at::Tensor labels;    // [B, Q, window], zeros past the end
  at::Tensor valid;     // [B, window] bool, false past the end
};
MapperBatch gather_windows(const std::vector<MapperSample>& samples, const std::vector<MapperWindow>& windows,
                           int64_t window);

struct MapperTrainConfig {
  HybridLossConfig loss;  // loss.level is also the level of the validation recall
  int64_t window = 512;
  int64_t stride = 384;
  int64_t batch_size = 8;
  int64_t epochs = 10;
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double weight_decay = 0.01;  // on weight matrices only (not biases, norms, embeddings, queries, position biases)
  double clip = 1.0;           // gradient-norm clipping; 0 = off
  int64_t warmup_steps = 50;   // linear warm-up, then cosine decay to min_lr_ratio * lr
  double min_lr_ratio = 0.1;
  uint64_t seed = 1;  // window order and the loss's pair sampling
  std::vector<double> eval_ratios = {0.1, 0.2, 0.3, 0.5, 0.7};
  // "each" (default): every target (layer, KV head) row learns its own label row. "max": every row learns the
  // label's max over the rows, the token ranking of selection level token (train with loss.level global).
  std::string label_rows = "each";

  Status validate() const;
  // The selection level the trained mapper ranks for: "token" with label_rows "max" (one ranking for every row),
  // else the loss's level. Recorded in the checkpoint ("training.selection_level").
  std::string selection_level() const;
  nlohmann::json to_json() const;
  // Missing keys keep their defaults ("loss" is a nested HybridLossConfig object); unknown keys are refused.
  static Result<MapperTrainConfig> from_json(const nlohmann::json& j, const std::string& origin);
};

struct MapperEvalMetrics {
  int64_t samples = 0;
  std::map<double, double> recall;  // rho -> mean over samples of topk_recall at the loss's level
  double mean_recall = 0;           // mean over the ratios
  double spearman = 0;              // mean over samples
  double loss = 0;                  // mean hybrid loss (fixed pair-sampling seed)
};

// Scores every sample whole (one at a time, no windows: as the mapper runs at inference) in eval mode, no grad.
// The mapper's training/eval mode is restored afterwards.
Result<MapperEvalMetrics> evaluate_mapper(HybridAxialMapper& mapper, const std::vector<MapperSample>& samples,
                                          const std::vector<double>& ratios, const HybridLossConfig& loss,
                                          uint64_t seed = 0);

struct MapperStepInfo {
  int64_t epoch = 0;
  int64_t step = 0;  // optimizer steps done, over all epochs of this call
  int64_t total_steps = 0;
  double loss = 0;
  double lr = 0;
  double elapsed_seconds = 0;
};

struct MapperEpochMetrics {
  int64_t epoch = 0;                          // 1-based
  int64_t steps = 0;                          // optimizer steps done so far
  double train_loss = 0;                      // mean over the epoch's steps
  std::map<std::string, double> train_terms;  // mean of each computed loss term over the epoch
  MapperEvalMetrics val;                      // samples == 0 when no validation set was given
  double seconds = 0;                         // wall time of the epoch, validation included
};

struct MapperTrainHooks {
  std::function<void(const MapperStepInfo&)> on_step;       // after every optimizer step (progress lines, ETA)
  std::function<void(const MapperEpochMetrics&)> on_epoch;  // after every epoch's validation (checkpoints)
};

// Trains `mapper` in place for config.epochs epochs over the windows of `train` (shuffled each epoch), validating
// on `val` after each epoch. A layer-level loss with heads_per_layer 0 takes the mapper's target_kv_heads.
// Errors: INVALID_ARGUMENT for a bad config or samples that do not fit the mapper's pair shape.
Result<std::vector<MapperEpochMetrics>> train_mapper_epochs(HybridAxialMapper& mapper,
                                                            const std::vector<MapperSample>& train,
                                                            const std::vector<MapperSample>& val,
                                                            const MapperTrainConfig& config,
                                                            const MapperTrainHooks& hooks = {});

}  // namespace proxykv::mapper
