#include "proxykv/tensor/dtype.h"

namespace proxykv {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

// One row per supported dtype; the names are the ones safetensors writes in its header.
constexpr DTypeInfo kDTypes[] = {
    {DType::kF64, "F64", 8}, {DType::kF32, "F32", 4},   {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
    {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},   {DType::kI16, "I16", 2}, {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},   {DType::kBool, "BOOL", 1},
};

const DTypeInfo& info(DType dtype) {
  for (const DTypeInfo& row : kDTypes) {
    if (row.dtype == dtype) return row;
  }
  // Unreachable for a valid enum value; fall back to the first row rather than index out of the table.
  return kDTypes[0];
}

}  // namespace

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const DTypeInfo& row : kDTypes) {
    if (name == row.name) return row.dtype;
  }
  return std::nullopt;
}

const char* dtype_name(DType dtype) {
  return info(dtype).name;
}

size_t dtype_size(DType dtype) {
  return info(dtype).size;
}

}  // namespace proxykv
