// BlobInbox: received data-plane blobs waiting for the receive() that asks for their key. Bounded in bytes
// and in time; shared by the ZeroMQ plane and the UCX plane (whose progress thread fills it).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "proxykv/core/status.h"
#include "proxykv/transport/data_plane.h"
#include "proxykv/transport/message.h"
#include "proxykv/transport/socket_options.h"

namespace proxykv::transport {

// The counters every plane keeps; its stats() is a snapshot of them plus its inbox's expiries.
struct DataPlaneCounters {
  std::atomic<uint64_t> blobs_sent{0}, bytes_sent{0}, blobs_received{0}, bytes_received{0}, blobs_refused{0};

  DataPlaneStats snapshot(uint64_t blobs_expired) const {
    DataPlaneStats s;
    s.blobs_sent = blobs_sent;
    s.bytes_sent = bytes_sent;
    s.blobs_received = blobs_received;
    s.bytes_received = bytes_received;
    s.blobs_refused = blobs_refused;
    s.blobs_expired = blobs_expired;
    return s;
  }
};

class BlobInbox {
 public:
  BlobInbox(uint64_t max_bytes, std::chrono::milliseconds ttl) : max_bytes_(max_bytes), ttl_(ttl) {}

  // Stores a blob and the descriptor its bytes were checked against (replacing an older one with the same key).
  // False when it does not fit in max_bytes.
  bool put(const std::string& key, WireTensor tensor, v1::TensorDescriptor descriptor);
  // Waits until `deadline` for `key`; DEADLINE_EXCEEDED when it does not come, UNAVAILABLE after close().
  // `descriptor` (optional) gets the one put() was given.
  Result<WireTensor> take(const std::string& key, Deadline deadline, v1::TensorDescriptor* descriptor = nullptr);
  // Wakes every waiter; later takes fail at once.
  void close();

  uint64_t expired() const;
  uint64_t pending_bytes() const;

 private:
  struct Entry {
    WireTensor tensor;
    v1::TensorDescriptor descriptor;
    Clock::time_point arrived;
  };
  void expire_locked(Clock::time_point now);

  const uint64_t max_bytes_;
  const std::chrono::milliseconds ttl_;
  mutable std::mutex mutex_;
  std::condition_variable arrived_;
  std::map<std::string, Entry> entries_;
  uint64_t bytes_ = 0;
  uint64_t expired_ = 0;
  bool closed_ = false;
};

}  // namespace proxykv::transport
