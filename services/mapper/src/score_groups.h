// Private helpers of the mapper library: score maps cut into selection groups (the unit inside which a keep-ratio
// selection ranks entries: a sample at level global, a target layer at level layer, a target head at level head).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/scoring/selection.h"

namespace proxykv::mapper::detail {

struct ScoreGroups {
  at::Tensor pred;               // [G, N] float (undefined when no pred was given)
  at::Tensor label;              // [G, N] float (undefined when no label was given)
  at::Tensor valid;              // [G, N] bool
  std::vector<int64_t> n_valid;  // per group
  int64_t batch = 0;             // B; groups are sample-major, G = B * groups_per_sample
  int64_t groups_per_sample = 1;
};

// pred / label [B, Q, T] (either may be undefined, not both); valid [B, T] bool or undefined (all valid).
// Level layer needs heads_per_layer (target KV heads per layer) dividing Q. Throws c10::Error on bad shapes.
ScoreGroups make_groups(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid,
                        scoring::SelectionLevel level, int64_t heads_per_layer);

// Indices [G, N] of each group's entries by descending value, invalid entries last; ties: the earlier entry first
// (the selection convention of proxykv/scoring/selection.h).
at::Tensor descending_order(const at::Tensor& values, const at::Tensor& valid);

// Budget of each group at keep ratio rho: clamp(llround(rho * n_valid), 1, n_valid) (0 for an empty group), as
// scoring::select_entries counts it.
std::vector<int64_t> top_counts(const std::vector<int64_t>& n_valid, double rho);

// Bool [G, N]: the first k[g] entries of `order` in each group.
at::Tensor top_members(const at::Tensor& order, const std::vector<int64_t>& k);

at::Tensor to_long_tensor(const std::vector<int64_t>& v, const at::Device& device);

}  // namespace proxykv::mapper::detail
