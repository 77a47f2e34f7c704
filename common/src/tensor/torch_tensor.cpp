#include "proxykv/tensor/torch_tensor.h"

#include <cstring>

namespace proxykv {

Result<at::ScalarType> to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::kF64: return at::kDouble;
    case DType::kF32: return at::kFloat;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    case DType::kI64: return at::kLong;
    case DType::kI32: return at::kInt;
    case DType::kI16: return at::kShort;
    case DType::kI8: return at::kChar;
    case DType::kU8: return at::kByte;
    case DType::kBool: return at::kBool;
  }
  return unimplemented("dtype has no LibTorch equivalent");
}

Result<DType> from_scalar_type(at::ScalarType type) {
  switch (type) {
    case at::kDouble: return DType::kF64;
    case at::kFloat: return DType::kF32;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    case at::kLong: return DType::kI64;
    case at::kInt: return DType::kI32;
    case at::kShort: return DType::kI16;
    case at::kChar: return DType::kI8;
    case at::kByte: return DType::kU8;
    case at::kBool: return DType::kBool;
    default: return unimplemented(std::string("tensor type ") + at::toString(type) + " cannot be stored");
  }
}

Result<at::Tensor> to_torch(const TensorView& view) {
  PROXYKV_ASSIGN_OR_RETURN(at::ScalarType type, to_scalar_type(view.dtype));
  at::Tensor out = at::empty(view.shape, at::TensorOptions().dtype(type));
  if (static_cast<size_t>(out.nbytes()) != view.nbytes) {
    return internal_error("tensor '" + view.name + "': view holds " + std::to_string(view.nbytes) +
                          " bytes, shape needs " + std::to_string(out.nbytes()));
  }
  if (view.nbytes > 0) std::memcpy(out.data_ptr(), view.data, view.nbytes);
  return out;
}

Result<TensorToWrite> from_torch(const std::string& name, const at::Tensor& tensor) {
  PROXYKV_ASSIGN_OR_RETURN(DType dtype, from_scalar_type(tensor.scalar_type()));
  at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
  TensorToWrite out;
  out.name = name;
  out.dtype = dtype;
  out.shape.assign(cpu.sizes().begin(), cpu.sizes().end());
  out.bytes.resize(cpu.nbytes());
  if (!out.bytes.empty()) std::memcpy(out.bytes.data(), cpu.data_ptr(), out.bytes.size());
  return out;
}

Result<std::map<std::string, at::Tensor>> load_all_tensors(const std::string& path) {
  PROXYKV_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(path));
  std::map<std::string, at::Tensor> out;
  for (const auto& name : file->names()) {
    PROXYKV_ASSIGN_OR_RETURN(TensorView view, file->get(name));
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor t, to_torch(view));
    out.emplace(name, std::move(t));
  }
  return out;
}

}  // namespace proxykv
