// MaskProvider: where the "proxykv" method gets its keep set from (DESIGN.md §2 steps 2-6).
//
// The engine calls request() before it starts its own prefill, so the proxy and the mapper work concurrently
// with it, and PendingMask::wait() once its prefill is done. Any failure (no provider, a refused request, a
// deadline, an error reply, a mask that does not fit) makes the engine use its fallback method and record the
// failure's reason; a request is never lost because the proxy path failed.
//
// Reasons (CompressionStats::fallback_reason): "proxy_unavailable" (no provider, or it cannot take the request),
// "mask_deadline", "proxy_error", "mapper_error", "invalid_mask" (checked by the engine: shape, indices, ratio),
// "no_mapper", "disabled". They mirror telemetry::FallbackReason.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/scoring/selection.h"

namespace proxykv::target {

inline constexpr const char* kFallbackProxyUnavailable = "proxy_unavailable";
inline constexpr const char* kFallbackInvalidMask = "invalid_mask";

struct MaskRequest {
  std::string model_name;  // the target model id
  at::Tensor context_ids;  // int64 [T]: the tokens the target prefills
  int64_t num_layers = 0;  // target shape the mask must fit
  int64_t num_kv_heads = 0;
  double keep_ratio = 1.0;
  scoring::SelectionLevel level = scoring::SelectionLevel::kGlobal;
  int64_t n_sink = 2;
  double head_floor = 0.0;                         // scoring::select_entries' head floor (global and layer levels)
  std::chrono::steady_clock::time_point deadline;  // when the engine stops waiting
};

// Either a keep set or why there is none.
struct MaskOutcome {
  scoring::KeepSet keep;
  bool ok = false;
  std::string fallback_reason;  // set when !ok
  std::string detail;           // for the log

  static MaskOutcome success(scoring::KeepSet keep) {
    MaskOutcome m;
    m.keep = std::move(keep);
    m.ok = true;
    return m;
  }
  static MaskOutcome failure(std::string reason, std::string detail = {}) {
    MaskOutcome m;
    m.fallback_reason = std::move(reason);
    m.detail = std::move(detail);
    return m;
  }
};

class PendingMask {
 public:
  virtual ~PendingMask() = default;
  // Blocks until the mask arrives or the request's deadline passes (then failure("mask_deadline")).
  virtual MaskOutcome wait() = 0;
};

class MaskProvider {
 public:
  virtual ~MaskProvider() = default;
  // Starts the remote work for one context; must not block on it. nullptr = cannot take it (the engine records
  // "proxy_unavailable"). Must be thread-safe.
  virtual std::unique_ptr<PendingMask> request(const MaskRequest& request) = 0;
};

}  // namespace proxykv::target
