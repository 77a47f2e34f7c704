#include "proxykv/model/kv_cache.h"

#include <stdexcept>
#include <string>

namespace proxykv {

KvCache::KvCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, at::TensorOptions options)
    : num_layers_(num_layers), num_kv_heads_(num_kv_heads), head_dim_(head_dim), options_(options) {
  slots_.resize(num_layers * num_kv_heads);
  for (auto& s : slots_) {
    s.k = at::empty({0, head_dim_}, options_);
    s.v = at::empty({0, head_dim_}, options_);
  }
}

at::Tensor KvCache::keys(int64_t layer, int64_t head) const {
  const HeadSlot& s = slot(layer, head);
  return s.k.narrow(0, 0, s.length);
}

at::Tensor KvCache::values(int64_t layer, int64_t head) const {
  const HeadSlot& s = slot(layer, head);
  return s.v.narrow(0, 0, s.length);
}

bool KvCache::is_uniform() const {
  for (const auto& s : slots_) {
    if (s.length != slots_.front().length) return false;
  }
  return true;
}

at::Tensor KvCache::dense_keys(int64_t layer) const {
  std::vector<at::Tensor> heads;
  for (int64_t h = 0; h < num_kv_heads_; ++h) heads.push_back(keys(layer, h));
  return at::stack(heads);  // throws if lengths differ
}

at::Tensor KvCache::dense_values(int64_t layer) const {
  std::vector<at::Tensor> heads;
  for (int64_t h = 0; h < num_kv_heads_; ++h) heads.push_back(values(layer, h));
  return at::stack(heads);
}

void KvCache::grow(HeadSlot& s, int64_t needed) {
  const int64_t capacity = s.k.size(0);
  if (needed <= capacity) return;
  // 1.25x growth: appends after eviction are short (a question), so doubling would waste what eviction freed.
  const int64_t new_capacity = std::max(needed, capacity + capacity / 4 + 64);
  at::Tensor k = at::empty({new_capacity, head_dim_}, options_);
  at::Tensor v = at::empty({new_capacity, head_dim_}, options_);
  if (s.length > 0) {
    k.narrow(0, 0, s.length).copy_(s.k.narrow(0, 0, s.length));
    v.narrow(0, 0, s.length).copy_(s.v.narrow(0, 0, s.length));
  }
  s.k = std::move(k);
  s.v = std::move(v);
}

void KvCache::reserve(int64_t extra) {
  for (auto& s : slots_) grow(s, s.length + extra);
}

void KvCache::append(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  if (k.dim() != 3 || k.size(0) != num_kv_heads_ || k.size(2) != head_dim_ || !v.sizes().equals(k.sizes())) {
    throw std::invalid_argument("KvCache::append: expected k, v of shape [kv_heads, n, head_dim]");
  }
  const int64_t n = k.size(1);
  for (int64_t h = 0; h < num_kv_heads_; ++h) {
    HeadSlot& s = slot(layer, h);
    grow(s, s.length + n);
    s.k.narrow(0, s.length, n).copy_(k[h]);
    s.v.narrow(0, s.length, n).copy_(v[h]);
    s.length += n;
  }
}

KvCache::Snapshot KvCache::snapshot() const {
  Snapshot snap;
  snap.next_position = next_position_;
  snap.lengths.reserve(slots_.size());
  for (const auto& s : slots_) snap.lengths.push_back(s.length);
  return snap;
}

void KvCache::restore(const Snapshot& snap) {
  if (snap.lengths.size() != slots_.size()) throw std::invalid_argument("KvCache::restore: snapshot of another cache");
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (snap.lengths[i] > slots_[i].length) throw std::invalid_argument("KvCache::restore: snapshot is longer");
    slots_[i].length = snap.lengths[i];
  }
  next_position_ = snap.next_position;
}

Status KvCache::compact(const std::vector<std::vector<at::Tensor>>& keep, int64_t headroom) {
  if (static_cast<int64_t>(keep.size()) != num_layers_) {
    return invalid_argument("compact: keep has " + std::to_string(keep.size()) + " layers, cache has " +
                            std::to_string(num_layers_));
  }
  // Validate everything first, so a bad mask leaves the cache untouched.
  for (int64_t l = 0; l < num_layers_; ++l) {
    if (static_cast<int64_t>(keep[l].size()) != num_kv_heads_) {
      return invalid_argument("compact: layer " + std::to_string(l) + " has " + std::to_string(keep[l].size()) +
                              " heads, cache has " + std::to_string(num_kv_heads_));
    }
    for (int64_t h = 0; h < num_kv_heads_; ++h) {
      const at::Tensor& idx = keep[l][h];
      if (idx.dim() != 1 || idx.scalar_type() != at::kLong) {
        return invalid_argument("compact: indices must be 1-D int64");
      }
      if (idx.numel() == 0) continue;
      at::Tensor cpu = idx.to(at::kCPU);
      const int64_t len = slot(l, h).length;
      if (cpu.min().item<int64_t>() < 0 || cpu.max().item<int64_t>() >= len) {
        return out_of_range("compact: layer " + std::to_string(l) + " head " + std::to_string(h) +
                            ": index outside [0, " + std::to_string(len) + ")");
      }
      if (idx.numel() > 1 && !(cpu.slice(0, 1) > cpu.slice(0, 0, -1)).all().item<bool>()) {
        return invalid_argument("compact: indices must be strictly ascending");
      }
    }
  }
  for (int64_t l = 0; l < num_layers_; ++l) {
    for (int64_t h = 0; h < num_kv_heads_; ++h) {
      HeadSlot& s = slot(l, h);
      at::Tensor idx = keep[l][h].to(options_.device());
      const int64_t n = idx.numel();
      at::Tensor k = at::empty({n + headroom, head_dim_}, options_);
      at::Tensor v = at::empty({n + headroom, head_dim_}, options_);
      if (n > 0) {
        k.narrow(0, 0, n).copy_(s.k.index_select(0, idx));
        v.narrow(0, 0, n).copy_(s.v.index_select(0, idx));
      }
      s.k = std::move(k);  // the old buffers are freed here
      s.v = std::move(v);
      s.length = n;
    }
  }
  return Status::ok();
}

int64_t KvCache::used_bytes() const {
  return total_entries() * 2 * head_dim_ * static_cast<int64_t>(c10::elementSize(options_.dtype().toScalarType()));
}

int64_t KvCache::allocated_bytes() const {
  int64_t n = 0;
  for (const auto& s : slots_) n += s.k.nbytes() + s.v.nbytes();
  return n;
}

int64_t KvCache::total_entries() const {
  int64_t n = 0;
  for (const auto& s : slots_) n += s.length;
  return n;
}

KvCache KvCache::clone() const {
  KvCache out(num_layers_, num_kv_heads_, head_dim_, options_);
  out.next_position_ = next_position_;
  for (size_t i = 0; i < slots_.size(); ++i) {
    out.slots_[i].k = slots_[i].k.clone();
    out.slots_[i].v = slots_[i].v.clone();
    out.slots_[i].length = slots_[i].length;
  }
  return out;
}

}  // namespace proxykv
