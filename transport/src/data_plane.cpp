#include "proxykv/transport/data_plane.h"

#include "proxykv/transport/checksum.h"
#include "transport_log.h"
#include "zmq_data_plane.h"
#ifdef PROXYKV_WITH_UCX
#include "ucx_data_plane.h"
#endif

namespace proxykv::transport {
namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

namespace {

// Everything but the checksum.
Status matches_layout(const WireTensor& tensor, const v1::TensorDescriptor& descriptor) {
  const std::vector<int64_t> shape(descriptor.shape().begin(), descriptor.shape().end());
  if (descriptor.dtype() != dtype_name(tensor.dtype) || shape != tensor.shape ||
      descriptor.byte_length() != tensor.data.size()) {
    return invalid_argument(std::string("data plane blob is ") + dtype_name(tensor.dtype) + " " +
                            shape_string(tensor.shape) + " (" + std::to_string(tensor.data.size()) +
                            " bytes), the descriptor promised " + descriptor.dtype() + " " + shape_string(shape) +
                            " (" + std::to_string(descriptor.byte_length()) + " bytes)");
  }
  if (!descriptor.name().empty() && descriptor.name() != tensor.name) {
    return invalid_argument("data plane blob is named '" + tensor.name + "', the descriptor promised '" +
                            descriptor.name() + "'");
  }
  return Status::ok();
}

}  // namespace

Status matches_descriptor(const WireTensor& tensor, const v1::TensorDescriptor& descriptor) {
  PROXYKV_RETURN_IF_ERROR(matches_layout(tensor, descriptor));
  if (descriptor.checksum_type() == v1::CHECKSUM_TYPE_CRC32 &&
      crc32(tensor.data.data(), tensor.data.size()) != descriptor.checksum()) {
    return invalid_argument("data plane blob '" + tensor.name + "' does not have the CRC-32 its descriptor promised");
  }
  return Status::ok();
}

Status matches_descriptor(const WireTensor& tensor, const v1::TensorDescriptor& promised,
                          const v1::TensorDescriptor& arrived) {
  PROXYKV_RETURN_IF_ERROR(matches_layout(tensor, promised));
  if (promised.checksum_type() == v1::CHECKSUM_TYPE_CRC32 &&
      (arrived.checksum_type() != v1::CHECKSUM_TYPE_CRC32 || arrived.checksum() != promised.checksum())) {
    return invalid_argument("data plane blob '" + tensor.name + "' does not have the CRC-32 its descriptor promised");
  }
  return Status::ok();
}

Result<std::unique_ptr<DataPlane>> make_data_plane(zmq::context_t& context, const DataPlaneOptions& options) {
  if (options.transport == "zmq") return ZmqDataPlane::create(context, options);
  if (options.transport == "ucx") {
#ifdef PROXYKV_WITH_UCX
    Result<std::unique_ptr<DataPlane>> ucx = UcxDataPlane::create(options);
    if (ucx.is_ok() || !options.fallback_to_zmq) return ucx;
    const Status failure = ucx.status();
#else
    const Status failure = unimplemented("this build has no UCX data plane (configured with PROXYKV_WITH_UCX=OFF)");
    if (!options.fallback_to_zmq) return failure;
#endif
    transport_logger()->warn("data plane: {}; falling back to the ZeroMQ data plane (transport=zmq)",
                             failure.message());
    return ZmqDataPlane::create(context, options);
  }
  return invalid_argument("unknown data plane transport '" + options.transport + "' (expected zmq or ucx)");
}

}  // namespace proxykv::transport
