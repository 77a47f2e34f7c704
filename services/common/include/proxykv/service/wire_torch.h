// Tensors across the wire: WireTensor (transport, torch-free) <-> at::Tensor (services). Only service code that
// already uses LibTorch includes this.
#pragma once

#include <string>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/scoring/selection.h"
#include "proxykv/transport/message.h"
#include "proxykv/v1/scoring.pb.h"

namespace proxykv::service {

// A contiguous CPU copy of `tensor` as a WireTensor named `name` (the bytes are owned by the result).
Result<transport::WireTensor> to_wire(const std::string& name, const at::Tensor& tensor);

// A CPU tensor over a copy of the wire bytes (the WireTensor may be dropped afterwards).
Result<at::Tensor> from_wire(const transport::WireTensor& wire);

// The selection level on the wire and in scoring/selection.h. UNSPECIFIED reads as global (the receivers'
// default); a value this build does not know is an error.
v1::SelectionLevel to_wire(scoring::SelectionLevel level);
Result<scoring::SelectionLevel> from_wire(v1::SelectionLevel level);

}  // namespace proxykv::service
