// Tensors across the wire: WireTensor (transport, torch-free) <-> at::Tensor (services). Only service code that
// already uses LibTorch includes this.
#pragma once

#include <string>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/transport/message.h"

namespace proxykv::service {

// A contiguous CPU copy of `tensor` as a WireTensor named `name` (the bytes are owned by the result).
Result<transport::WireTensor> to_wire(const std::string& name, const at::Tensor& tensor);

// A CPU tensor over a copy of the wire bytes (the WireTensor may be dropped afterwards).
Result<at::Tensor> from_wire(const transport::WireTensor& wire);

}  // namespace proxykv::service
