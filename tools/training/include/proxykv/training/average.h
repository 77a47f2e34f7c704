// Checkpoint averaging (a "model soup" of one run, Izmailov et al.'s SWA without the schedule): the weighted mean
// of every weight tensor of models that share one spec. Checkpoints of one training run a few hundred steps apart
// sit in one basin, and their mean is often better and always less noisy than any one of them.
#pragma once

#include <memory>
#include <vector>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"

namespace proxykv::training {

// Returns a float32 model whose every tensor is sum_i w_i * models[i] / sum_i w_i. `weights` empty: equal weights.
// Refused: no model, a model whose config differs from the first's (names the first differing key), a weight count
// that is not the model count, a negative or non-finite weight, all weights zero.
Result<std::unique_ptr<DecoderLM>> average_decoders(const std::vector<const DecoderLM*>& models,
                                                    const std::vector<double>& weights = {});

}  // namespace proxykv::training
