#include "blob_inbox.h"

#include "zmq_util.h"

namespace proxykv::transport {

void BlobInbox::expire_locked(Clock::time_point now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now - it->second.arrived > ttl_) {
      bytes_ -= it->second.tensor.data.size();
      ++expired_;
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

bool BlobInbox::put(const std::string& key, WireTensor tensor, v1::TensorDescriptor descriptor) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return false;
    expire_locked(Clock::now());
    auto existing = entries_.find(key);
    const uint64_t replaced = existing != entries_.end() ? existing->second.tensor.data.size() : 0;
    if (bytes_ - replaced + tensor.data.size() > max_bytes_) return false;
    bytes_ = bytes_ - replaced + tensor.data.size();
    entries_[key] = Entry{std::move(tensor), std::move(descriptor), Clock::now()};
  }
  arrived_.notify_all();
  return true;
}

Result<WireTensor> BlobInbox::take(const std::string& key, Deadline deadline, v1::TensorDescriptor* descriptor) {
  std::unique_lock<std::mutex> lock(mutex_);
  const bool found = arrived_.wait_until(lock, deadline, [&] { return closed_ || entries_.count(key) != 0; });
  if (closed_) return unavailable("data plane closed");
  if (!found) return deadline_exceeded("data plane: no blob '" + key + "' arrived before the deadline");
  auto it = entries_.find(key);
  WireTensor tensor = std::move(it->second.tensor);
  if (descriptor) *descriptor = std::move(it->second.descriptor);
  bytes_ -= tensor.data.size();
  entries_.erase(it);
  return tensor;
}

void BlobInbox::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  arrived_.notify_all();
}

uint64_t BlobInbox::expired() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return expired_;
}

uint64_t BlobInbox::pending_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

}  // namespace proxykv::transport
