// Keep ratio -> which KV entries survive.
//
// Convention (KVzip's): the keep ratio rho is the FRACTION KEPT of the context's KV entries, counted over every
// (layer, KV head, token) entry of the scored prompt; kvpress's "compression ratio" is 1 - rho. The budget is
// round(rho * entries) at the chosen level, at least the sinks; sink tokens (the first n_sink) are always kept
// and count against the budget. Ties break deterministically: the earlier token wins.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"

namespace proxykv::scoring {

enum class SelectionLevel {
  kGlobal,  // top rho of all L*H*T entries (non-uniform per layer and head; KVzip's default)
  kLayer,   // top rho of each layer's H*T entries
  kHead,    // top rho of each head's T entries (uniform)
  kToken,   // top rho of the tokens by their best score over every (layer, head): the same tokens kept everywhere
};

Result<SelectionLevel> parse_selection_level(const std::string& name);
const char* selection_level_name(SelectionLevel level);

// The kept entries: keep[layer][head] is an ascending int64 index tensor, the form KvCache::compact takes.
struct KeepSet {
  std::vector<std::vector<at::Tensor>> keep;
  int64_t kept = 0;
  int64_t total = 0;
  double ratio() const { return total ? static_cast<double>(kept) / static_cast<double>(total) : 0.0; }
  // Bool mask [L, H, T] (true = kept).
  at::Tensor mask(int64_t num_tokens) const;
};

// scores: float [L, H, T]. rho in (0, 1].
//
// head_floor in [0, 1] (Ada-KV's safeguard budget) applies to the non-uniform levels, global and layer: each
// (layer, KV head) first keeps its own best floor(head_floor * B / heads) entries, B being the level's budget (the
// whole cache's at global, the layer's at layer level) and heads the number of heads sharing it; the rest of B
// goes to the best remaining entries, as without a floor. 0 is the plain level; 1 gives every head an equal share
// (head level, where B divides evenly). The count kept is B either way. Why: a global ranking over raw scores can
// starve a layer whose scores run low (docs/scoring.md, "Selection").
Result<KeepSet> select_entries(const at::Tensor& scores, double rho, SelectionLevel level, int64_t n_sink,
                               double head_floor = 0.0);
// The head floor select_entries accepts at `level` (a front end checks it before any work).
Status check_head_floor(double head_floor, SelectionLevel level);

// Fraction of `reference`'s kept entries that `candidate` also keeps (top-rho recall).
double keep_recall(const KeepSet& candidate, const KeepSet& reference, int64_t num_tokens);

}  // namespace proxykv::scoring
