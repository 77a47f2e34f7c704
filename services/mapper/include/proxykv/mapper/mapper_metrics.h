// Validation metrics of a mapper's score maps against the target's KVzip labels.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

#include "proxykv/scoring/selection.h"

namespace proxykv::mapper {

// Top-rho recall per sample: the fraction of the label's top-rho set that the predicted top-rho set recovers, with
// sets taken at `level` (global: over the sample's valid Q*T entries; layer: per target layer, heads_per_layer
// KV heads each; head: per target head), budget llround(rho * valid entries) per group (at least 1) and ties broken
// toward the earlier entry, as scoring::select_entries does (without sinks). Per sample,
// sum over groups |pred set ∩ label set| / sum over groups |label set|.
// pred, label: [B, Q, T] (or [Q, T]: B = 1); valid: [B, T] (or [T]) bool, undefined = all valid.
// Returns float64 [B]; NaN for a sample without valid entries. Throws c10::Error on inconsistent shapes.
at::Tensor topk_recall(const at::Tensor& pred, const at::Tensor& label, double rho, const at::Tensor& valid = {},
                       scoring::SelectionLevel level = scoring::SelectionLevel::kGlobal, int64_t heads_per_layer = 0);

// Spearman rank correlation per sample over its valid Q*T entries (ties get their average rank). Returns float64
// [B]; 0 where it is undefined (fewer than 2 entries, or constant pred or label).
at::Tensor spearman(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid = {});

}  // namespace proxykv::mapper
