#include "proxykv/service/wire_torch.h"

#include <cstring>
#include <vector>

#include "proxykv/tensor/torch_tensor.h"

namespace proxykv::service {

Result<transport::WireTensor> to_wire(const std::string& name, const at::Tensor& tensor) {
  PROXYKV_ASSIGN_OR_RETURN(DType dtype, from_scalar_type(tensor.scalar_type()));
  at::Tensor t = tensor.to(at::kCPU).contiguous();
  std::vector<uint8_t> bytes(static_cast<size_t>(t.numel()) * t.element_size());
  if (!bytes.empty()) std::memcpy(bytes.data(), t.data_ptr(), bytes.size());
  transport::WireTensor wire;
  wire.name = name;
  wire.dtype = dtype;
  wire.shape.assign(t.sizes().begin(), t.sizes().end());
  wire.data = transport::Blob::adopt(std::move(bytes));
  return wire;
}

Result<at::Tensor> from_wire(const transport::WireTensor& wire) {
  PROXYKV_ASSIGN_OR_RETURN(at::ScalarType type, to_scalar_type(wire.dtype));
  const int64_t n = wire.num_elements();
  if (static_cast<uint64_t>(n) * dtype_size(wire.dtype) != wire.data.size()) {
    return invalid_argument("tensor '" + wire.name + "': " + std::to_string(wire.data.size()) +
                            " bytes do not match its dtype and shape");
  }
  at::Tensor t = at::empty(wire.shape, at::TensorOptions().dtype(type));
  if (wire.data.size()) std::memcpy(t.data_ptr(), wire.data.data(), wire.data.size());
  return t;
}

v1::SelectionLevel to_wire(scoring::SelectionLevel level) {
  switch (level) {
    case scoring::SelectionLevel::kGlobal: return v1::SELECTION_LEVEL_GLOBAL;
    case scoring::SelectionLevel::kLayer: return v1::SELECTION_LEVEL_LAYER;
    case scoring::SelectionLevel::kHead: return v1::SELECTION_LEVEL_HEAD;
    case scoring::SelectionLevel::kToken: return v1::SELECTION_LEVEL_TOKEN;
  }
  return v1::SELECTION_LEVEL_GLOBAL;
}

Result<scoring::SelectionLevel> from_wire(v1::SelectionLevel level) {
  switch (level) {
    case v1::SELECTION_LEVEL_UNSPECIFIED:
    case v1::SELECTION_LEVEL_GLOBAL: return scoring::SelectionLevel::kGlobal;
    case v1::SELECTION_LEVEL_LAYER: return scoring::SelectionLevel::kLayer;
    case v1::SELECTION_LEVEL_HEAD: return scoring::SelectionLevel::kHead;
    case v1::SELECTION_LEVEL_TOKEN: return scoring::SelectionLevel::kToken;
    default: return invalid_argument("unknown selection level " + std::to_string(static_cast<int>(level)));
  }
}

}  // namespace proxykv::service
