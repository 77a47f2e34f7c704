// Message: what crosses a process boundary. A protobuf Envelope (routing metadata and a typed body) plus
// tensors whose bytes travel in raw frames, never inside protobuf (docs/protocol.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxykv/tensor/dtype.h"
#include "proxykv/transport/blob.h"
#include "proxykv/v1/envelope.pb.h"

namespace proxykv::transport {

// A tensor on the wire: element type, row-major shape, raw bytes (product(shape) * dtype_size(dtype) of them).
struct WireTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  Blob data;

  // product(shape); 1 for a scalar (empty shape).
  int64_t num_elements() const;
};

struct Message {
  // The body is set through the oneof (`envelope.mutable_score_request()`, ...). encode() derives
  // `envelope.type` from the body and rewrites `envelope.tensors` from `tensors`; decode() fills both.
  v1::Envelope envelope;
  std::vector<WireTensor> tensors;

  // The tensor called `name`, or nullptr.
  const WireTensor* find_tensor(std::string_view name) const;
  v1::MessageType type() const;
};

// The MessageType that goes with the envelope's body case (UNSPECIFIED when no body is set).
v1::MessageType message_type_of(const v1::Envelope& envelope);
// "SCORE_REQUEST", "PRUNE_MASK", ... for logs.
std::string_view message_type_name(v1::MessageType type);

}  // namespace proxykv::transport
