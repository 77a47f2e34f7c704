#include "proxykv/scoring/selection.h"

#include <cmath>
#include <limits>

namespace proxykv::scoring {
namespace {

// Indices of the `k` best entries of a 1-D score vector; equal scores keep the earlier index (stable sort).
at::Tensor top_indices(const at::Tensor& flat, int64_t k) {
  at::Tensor order = std::get<1>(flat.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  return order.narrow(0, 0, k);
}

int64_t budget(double rho, int64_t n) {
  return std::min<int64_t>(n, std::max<int64_t>(1, static_cast<int64_t>(std::llround(rho * static_cast<double>(n)))));
}

// Marks in `mask` ([L, H, T], a view) the k entries of `s` ([L, H, T]) a non-uniform level keeps: each head's
// best floor(head_floor * k / (L * H)) first, then the best of the rest until k are kept.
void select_with_floor(const at::Tensor& s, int64_t k, double head_floor, at::Tensor mask) {
  const int64_t L = s.size(0), H = s.size(1), T = s.size(2);
  const int64_t floor_per_head =
      std::min(T, static_cast<int64_t>(std::floor(head_floor * static_cast<double>(k) / static_cast<double>(L * H))));
  at::Tensor flat_mask = mask.view({-1});  // mask is contiguous here: a view, written through
  if (floor_per_head == 0) {  // the plain level (every call without a floor): one ranking, no gather
    flat_mask.index_fill_(0, top_indices(s.reshape({-1}), k), true);
    return;
  }
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t h = 0; h < H; ++h) mask[l][h].index_fill_(0, top_indices(s[l][h], floor_per_head), true);
  }
  const int64_t rest = k - floor_per_head * L * H;
  if (rest <= 0) return;
  const at::Tensor open = (~flat_mask).nonzero().squeeze(1);  // ascending, so the stable sort still favours earlier
  const at::Tensor chosen = open.index_select(0, top_indices(s.reshape({-1}).index_select(0, open), rest));
  flat_mask.index_fill_(0, chosen, true);
}

}  // namespace

Result<SelectionLevel> parse_selection_level(const std::string& name) {
  if (name == "global") return SelectionLevel::kGlobal;
  if (name == "layer") return SelectionLevel::kLayer;
  if (name == "head") return SelectionLevel::kHead;
  if (name == "token") return SelectionLevel::kToken;
  return invalid_argument("selection level '" + name + "' is not one of global, layer, head, token");
}

const char* selection_level_name(SelectionLevel level) {
  switch (level) {
    case SelectionLevel::kGlobal: return "global";
    case SelectionLevel::kLayer: return "layer";
    case SelectionLevel::kHead: return "head";
    case SelectionLevel::kToken: return "token";
  }
  return "?";
}

at::Tensor KeepSet::mask(int64_t num_tokens) const {
  const int64_t L = static_cast<int64_t>(keep.size());
  const int64_t H = L ? static_cast<int64_t>(keep[0].size()) : 0;
  at::Tensor m = at::zeros({L, H, num_tokens}, at::kBool);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t h = 0; h < H; ++h) m[l][h].index_fill_(0, keep[l][h], true);
  }
  return m;
}

Status check_head_floor(double head_floor, SelectionLevel level) {
  if (!(head_floor >= 0.0 && head_floor <= 1.0)) {
    return invalid_argument("head floor must lie in [0, 1], got " + std::to_string(head_floor));
  }
  if (head_floor > 0.0 && level != SelectionLevel::kGlobal && level != SelectionLevel::kLayer) {
    return invalid_argument(std::string("a head floor applies to the global and layer levels, not to level ") +
                            selection_level_name(level));
  }
  return Status::ok();
}

Result<KeepSet> select_entries(const at::Tensor& scores, double rho, SelectionLevel level, int64_t n_sink,
                               double head_floor) {
  if (scores.dim() != 3) return invalid_argument("scores must be [layers, kv_heads, tokens]");
  if (!(rho > 0.0 && rho <= 1.0)) return invalid_argument("keep ratio must lie in (0, 1], got " + std::to_string(rho));
  PROXYKV_RETURN_IF_ERROR(check_head_floor(head_floor, level));
  const int64_t L = scores.size(0), H = scores.size(1), T = scores.size(2);
  if (T == 0) return invalid_argument("no tokens to select from");
  at::Tensor s = scores.to(at::kCPU, at::kFloat).clone();
  s = at::nan_to_num(s, /*nan=*/-std::numeric_limits<float>::infinity());
  const int64_t sinks = std::min(n_sink, T);
  if (sinks > 0) s.narrow(2, 0, sinks).fill_(std::numeric_limits<float>::infinity());

  at::Tensor mask = at::zeros({L, H, T}, at::kBool);
  switch (level) {
    case SelectionLevel::kGlobal: {
      const int64_t k = std::max(budget(rho, L * H * T), sinks * L * H);
      select_with_floor(s, k, head_floor, mask);
      break;
    }
    case SelectionLevel::kLayer:
      for (int64_t l = 0; l < L; ++l) {
        const int64_t k = std::max(budget(rho, H * T), sinks * H);
        select_with_floor(s[l].unsqueeze(0), k, head_floor, mask[l].unsqueeze(0));
      }
      break;
    case SelectionLevel::kHead:
      for (int64_t l = 0; l < L; ++l) {
        for (int64_t h = 0; h < H; ++h) {
          const int64_t k = std::max(budget(rho, T), sinks);
          mask[l][h].index_fill_(0, top_indices(s[l][h], k), true);
        }
      }
      break;
    case SelectionLevel::kToken: {
      const at::Tensor best = std::get<0>(s.reshape({L * H, T}).max(0));  // [T]: a token's best entry
      const int64_t k = std::max(budget(rho, T), sinks);
      at::Tensor kept = at::zeros({T}, at::kBool);
      kept.index_fill_(0, top_indices(best, k), true);
      mask.copy_(kept.view({1, 1, T}).expand({L, H, T}));
      break;
    }
  }
  KeepSet out;
  out.total = L * H * T;
  out.keep.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t h = 0; h < H; ++h) {
      at::Tensor idx = mask[l][h].nonzero().squeeze(1);  // ascending
      out.kept += idx.numel();
      out.keep[l].push_back(idx);
    }
  }
  return out;
}

double keep_recall(const KeepSet& candidate, const KeepSet& reference, int64_t num_tokens) {
  at::Tensor ref = reference.mask(num_tokens);
  const int64_t n = ref.sum().item<int64_t>();
  if (n == 0) return 1.0;
  return static_cast<double>((candidate.mask(num_tokens) & ref).sum().item<int64_t>()) / static_cast<double>(n);
}

}  // namespace proxykv::scoring
