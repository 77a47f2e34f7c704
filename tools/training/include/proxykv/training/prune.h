// Structured pruning of a decoder into a smaller one of the same family (the Minitron / Llama-3.2-1B recipe:
// prune a trained model in depth and width, then train the result on the same data).
//
// What is kept:
//   depth   the layers listed in `layers` (in that order; a dropped layer is the identity on the residual stream)
//   heads   per KV group, the `q_heads_per_group` query heads with the largest ||W_q rows|| * ||W_o columns||;
//           every KV head stays, so the cache layout (and a mapper's target heads) keeps the source's KV heads
//   MLP     the `intermediate` channels with the largest ||gate row|| * ||up row|| * ||down column||
// Kept heads and channels stay in their source order; ties go to the lower index. Embeddings, norms and the
// head are copied. The result computes exactly what the source computes with the dropped heads' W_o columns,
// the dropped channels' W_down columns and the dropped layers' W_o and W_down set to zero.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"

namespace proxykv::training {

struct PruneOptions {
  std::vector<int64_t> layers;     // source layer indices to keep; empty: all
  int64_t q_heads_per_group = 0;   // 0: all
  int64_t intermediate = 0;        // 0: all
};

Result<std::unique_ptr<DecoderLM>> prune_decoder(const DecoderLM& source, const PruneOptions& options);

// The indices of the `keep` largest scores, in ascending index order (ties: the lower index wins).
std::vector<int64_t> top_indices_in_order(const std::vector<double>& scores, int64_t keep);

}  // namespace proxykv::training
