// Element types of tensors as safetensors names them.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace proxykv {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32", "BF16", ... -> DType; nullopt for names we do not support.
std::optional<DType> dtype_from_name(std::string_view name);
const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);

}  // namespace proxykv
