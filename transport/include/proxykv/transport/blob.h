// Blob: immutable bytes with shared ownership, the payload of a tensor frame.
//
// A received frame becomes a Blob without a copy (it keeps the zmq::message_t alive); a Blob handed to the
// encoder becomes a frame without a copy (ZeroMQ holds a reference until the bytes are on the wire). Copying
// a Blob shares the bytes; it never duplicates them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

namespace proxykv::transport {

class Blob {
 public:
  Blob() = default;

  static Blob copy_of(const void* data, size_t size);
  static Blob copy_of(std::string_view bytes) { return copy_of(bytes.data(), bytes.size()); }
  // Takes ownership of `bytes` without copying them.
  static Blob adopt(std::vector<uint8_t> bytes);
  // Takes ownership of a received ZeroMQ frame without copying it.
  static Blob adopt(zmq::message_t message);

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }

  // A ZeroMQ frame over the same bytes (zero-copy above a few dozen bytes; the frame keeps them alive).
  zmq::message_t to_frame() const;

 private:
  Blob(std::shared_ptr<const void> owner, const uint8_t* data, size_t size)
      : owner_(std::move(owner)), data_(data), size_(size) {}

  std::shared_ptr<const void> owner_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace proxykv::transport
