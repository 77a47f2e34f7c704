// ContextCache: the compressed contexts clients registered (POST /v1/contexts), bounded by bytes, LRU.
//
// Ids are random (128 bits from std::random_device, "ctx_" + 32 hex digits): unguessable, so one client cannot
// reach another's context by counting. Entries are shared_ptr: evicting or deleting an entry that a request is
// still answering from only drops the cache's reference; the memory goes when that request ends. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "proxykv/core/status.h"

namespace proxykv::target {

// "ctx_" + 32 lowercase hex digits.
std::string random_context_id();

struct ContextCacheStats {
  int64_t entries = 0;
  int64_t bytes = 0;
  int64_t capacity_bytes = 0;
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t evictions = 0;  // entries dropped to make room (not explicit deletes)
};

template <typename T>
class ContextCache {
 public:
  explicit ContextCache(int64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // Stores `value` (accounted as `bytes`) under a fresh id, evicting least recently used entries until it fits.
  // RESOURCE_EXHAUSTED when `bytes` alone exceeds the capacity (nothing is evicted then).
  Result<std::string> insert(std::shared_ptr<T> value, int64_t bytes) {
    if (bytes < 0) return invalid_argument("negative context size");
    if (bytes > capacity_) {
      return Status(StatusCode::kResourceExhausted, "the context needs " + std::to_string(bytes) +
                                                        " bytes of KV cache, more than the context cache holds (" +
                                                        std::to_string(capacity_) + ")");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    while (bytes_ + bytes > capacity_ && !lru_.empty()) {
      const Entry& victim = lru_.back();
      bytes_ -= victim.bytes;
      index_.erase(victim.id);
      lru_.pop_back();
      ++evictions_;
    }
    std::string id = random_context_id();
    while (index_.count(id)) id = random_context_id();
    lru_.push_front(Entry{id, std::move(value), bytes});
    index_[id] = lru_.begin();
    bytes_ += bytes;
    return id;
  }

  // The entry, now the most recently used; nullptr (a miss) when unknown or evicted.
  std::shared_ptr<T> find(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = index_.find(id);
    if (it == index_.end()) {
      ++misses_;
      return nullptr;
    }
    ++hits_;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->value;
  }

  // False when there was no such entry.
  bool erase(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = index_.find(id);
    if (it == index_.end()) return false;
    bytes_ -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
    return true;
  }

  ContextCacheStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return ContextCacheStats{static_cast<int64_t>(lru_.size()), bytes_, capacity_, hits_, misses_, evictions_};
  }
  int64_t capacity_bytes() const { return capacity_; }

 private:
  struct Entry {
    std::string id;
    std::shared_ptr<T> value;
    int64_t bytes = 0;
  };

  const int64_t capacity_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string, typename std::list<Entry>::iterator> index_;
  int64_t bytes_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
  int64_t evictions_ = 0;
};

}  // namespace proxykv::target
