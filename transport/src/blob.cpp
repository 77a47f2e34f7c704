#include "proxykv/transport/blob.h"

#include <cstring>

namespace proxykv::transport {
namespace {

// Below this a frame is copied: ZeroMQ stores up to 33 bytes inline, and a shared reference costs more.
constexpr size_t kZeroCopyThreshold = 64;

void release_owner(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

}  // namespace

Blob Blob::copy_of(const void* data, size_t size) {
  if (size == 0) return Blob();
  std::vector<uint8_t> bytes(size);
  std::memcpy(bytes.data(), data, size);
  return adopt(std::move(bytes));
}

Blob Blob::adopt(std::vector<uint8_t> bytes) {
  if (bytes.empty()) return Blob();
  auto owner = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  const uint8_t* data = owner->data();
  size_t size = owner->size();
  return Blob(std::move(owner), data, size);
}

Blob Blob::adopt(zmq::message_t message) {
  if (message.size() == 0) return Blob();
  auto owner = std::make_shared<const zmq::message_t>(std::move(message));
  const auto* data = static_cast<const uint8_t*>(owner->data());
  size_t size = owner->size();
  return Blob(std::move(owner), data, size);
}

zmq::message_t Blob::to_frame() const {
  if (size_ == 0) return zmq::message_t();
  if (size_ <= kZeroCopyThreshold) return zmq::message_t(data_, size_);
  // ZeroMQ never writes to the bytes of a frame it sends; the const_cast only satisfies its C signature.
  auto* hint = new std::shared_ptr<const void>(owner_);
  return zmq::message_t(const_cast<uint8_t*>(data_), size_, release_owner, hint);
}

}  // namespace proxykv::transport
