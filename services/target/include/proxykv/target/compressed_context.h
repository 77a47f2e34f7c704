// CompressedContext: a context's KV cache after eviction, ready to answer any number of questions.
// LibTorch header: the HTTP layer sees only the opaque type and context_stats() (target_engine.h).
#pragma once

#include <ATen/ATen.h>

#include "proxykv/model/kv_cache.h"
#include "proxykv/target/engine_types.h"

namespace proxykv::target {

struct CompressedContext {
  KvCache cache;          // ragged after eviction; each answer appends and then restores the question's KV
  at::Tensor prompt_ids;  // int64 [T] of the prefilled prompt
  CompressionStats stats;
};

}  // namespace proxykv::target
