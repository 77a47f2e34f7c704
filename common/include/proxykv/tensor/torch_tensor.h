// Bridge between safetensors views and LibTorch tensors. Only code that already uses LibTorch includes this.
#pragma once

#include <string>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/tensor/safetensors.h"

namespace proxykv {

Result<at::ScalarType> to_scalar_type(DType dtype);
Result<DType> from_scalar_type(at::ScalarType type);

// Copies the view into a new CPU tensor of its own dtype (the mapping may be closed afterwards).
Result<at::Tensor> to_torch(const TensorView& view);

// Copies a tensor (any device, any layout) into a writer entry.
Result<TensorToWrite> from_torch(const std::string& name, const at::Tensor& tensor);

// Reads every tensor of a safetensors file into CPU tensors (for small files: goldens, checkpoints).
Result<std::map<std::string, at::Tensor>> load_all_tensors(const std::string& path);

}  // namespace proxykv
