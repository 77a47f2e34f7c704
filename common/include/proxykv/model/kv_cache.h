// KvCache: per layer, per KV head, a compact key/value store with its own length.
//
// Before eviction every head of every layer has the same length T (the "full" form, [kv_heads, T, head_dim] per
// layer). Eviction (compact) keeps a different subset per (layer, head), so lengths become ragged; each
// (layer, head) then owns buffers sized to what it kept, and the memory of dropped entries is released.
// Keys are stored after RoPE, so an entry keeps its original position; new tokens continue from
// next_position(), which eviction does not change.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"

namespace proxykv {

class KvCache {
 public:
  KvCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, at::TensorOptions options);

  int64_t num_layers() const { return num_layers_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  const at::TensorOptions& options() const { return options_; }

  // Position id the next appended token gets (number of tokens ever fed, evicted or not).
  int64_t next_position() const { return next_position_; }
  void advance_position(int64_t n) { next_position_ += n; }

  int64_t length(int64_t layer, int64_t head) const { return slot(layer, head).length; }
  // Views [length, head_dim] of the stored entries; valid until the next append/compact/restore.
  at::Tensor keys(int64_t layer, int64_t head) const;
  at::Tensor values(int64_t layer, int64_t head) const;
  // [kv_heads, T, head_dim] when every head of `layer` has the same length T (copies); throws otherwise.
  at::Tensor dense_keys(int64_t layer) const;
  at::Tensor dense_values(int64_t layer) const;
  bool is_uniform() const;

  // Grows every buffer so that `extra` more entries per head fit without reallocation.
  void reserve(int64_t extra);
  // Appends k, v of shape [kv_heads, n, head_dim] to every head of `layer` (each at its own length).
  void append(int64_t layer, const at::Tensor& k, const at::Tensor& v);

  // Lengths and position, to undo appends later (teacher forcing without growing the cache).
  struct Snapshot {
    std::vector<int64_t> lengths;
    int64_t next_position = 0;
  };
  Snapshot snapshot() const;
  // Truncates back to a snapshot taken earlier; lengths may only shrink.
  void restore(const Snapshot& snap);

  // Real eviction. keep[layer][head] is a 1-D int64 tensor of ascending, unique indices < length(layer, head):
  // the entries to keep. Each (layer, head) is copied into new buffers of the kept size (plus `headroom`
  // entries for the question that follows), and the old buffers are released.
  Status compact(const std::vector<std::vector<at::Tensor>>& keep, int64_t headroom = 64);

  // Bytes of stored entries (keys and values) and of allocated buffers.
  int64_t used_bytes() const;
  int64_t allocated_bytes() const;
  int64_t total_entries() const;

  // Deep copy (independent buffers).
  KvCache clone() const;

 private:
  struct HeadSlot {
    at::Tensor k;  // [capacity, head_dim]
    at::Tensor v;
    int64_t length = 0;
  };
  HeadSlot& slot(int64_t layer, int64_t head) { return slots_[layer * num_kv_heads_ + head]; }
  const HeadSlot& slot(int64_t layer, int64_t head) const { return slots_[layer * num_kv_heads_ + head]; }
  void grow(HeadSlot& s, int64_t needed);

  int64_t num_layers_;
  int64_t num_kv_heads_;
  int64_t head_dim_;
  at::TensorOptions options_;
  int64_t next_position_ = 0;
  std::vector<HeadSlot> slots_;
};

}  // namespace proxykv
