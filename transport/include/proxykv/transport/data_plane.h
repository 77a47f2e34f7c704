// DataPlane: moves named tensor blobs (the proxy's feature tensors) between services, beside the control
// channel. Two implementations of one interface: "zmq" (ZeroMQ PUSH/PULL frames, always available) and "ucx"
// (UCP active messages; built when the build has UCX, PROXYKV_WITH_UCX). Peers learn each other's data-plane
// endpoint from the Handshake on the control channel (v1::DataPlaneEndpoint: "zmq" + tcp endpoint, or "ucx" +
// ucp worker address bytes); the control message that needs the bytes carries a v1::DataPlaneRef (key +
// descriptor) and the receiver waits for the key.
//
// Thread safety: send() and receive() may be called from any number of threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "proxykv/core/status.h"
#include "proxykv/transport/message.h"
#include "proxykv/transport/socket_options.h"
#include "proxykv/v1/control.pb.h"

namespace proxykv::transport {

struct DataPlaneStats {
  uint64_t blobs_sent = 0;
  uint64_t bytes_sent = 0;  // tensor bytes: proxykv_transfer_bytes_total{transport=...}
  uint64_t blobs_received = 0;
  uint64_t bytes_received = 0;
  uint64_t blobs_refused = 0;  // malformed, or the inbox was full
  uint64_t blobs_expired = 0;  // arrived but nobody asked for them within pending_ttl
};

class DataPlane {
 public:
  virtual ~DataPlane() = default;

  // "zmq" or "ucx": the transport actually in use, for logs and the `transport` metric label.
  virtual const char* transport_name() const = 0;
  // What a peer needs to send here; goes into Handshake.data_planes.
  virtual v1::DataPlaneEndpoint local_endpoint() const = 0;

  // Sends `tensor` under `key` to the plane at `peer`. Returns once the transport owns the bytes (zmq: queued
  // with a zero-copy reference; ucx: the send completed). UNAVAILABLE/DEADLINE_EXCEEDED when the peer could not
  // take it before `deadline`; INVALID_ARGUMENT when `peer` is of another transport. `described`: the
  // tensor's descriptor when the caller already made one (describe_tensor, for its DataPlaneRef); the blob then
  // carries it and its CRC-32 is not computed again. It must describe `tensor` (INVALID_ARGUMENT otherwise).
  virtual Status send(const v1::DataPlaneEndpoint& peer, const std::string& key, const WireTensor& tensor,
                      Deadline deadline, const v1::TensorDescriptor* described = nullptr) = 0;
  // Waits until `deadline` for the blob sent under `key` and removes it from the inbox. Its bytes have been
  // checked against the CRC-32 of the descriptor it arrived with, which `arrived` (optional) receives; the caller
  // checks it against the descriptor it was promised (DataPlaneRef) with matches_descriptor(tensor, promised,
  // arrived), which compares the checksums without hashing the bytes again.
  virtual Result<WireTensor> receive(const std::string& key, Deadline deadline,
                                     v1::TensorDescriptor* arrived = nullptr) = 0;

  virtual DataPlaneStats stats() const = 0;
};

// OK when `tensor` has the dtype, shape, byte length and (when the descriptor has one) CRC-32 that `descriptor`
// promised, and its name when the descriptor names one.
Status matches_descriptor(const WireTensor& tensor, const v1::TensorDescriptor& descriptor);
// The same for a received blob whose bytes the plane already checked against `arrived` (receive()'s): the
// promised CRC-32 is compared with the arrived one, the bytes are not hashed again. A promised CRC-32 with none
// arrived is a mismatch.
Status matches_descriptor(const WireTensor& tensor, const v1::TensorDescriptor& promised,
                          const v1::TensorDescriptor& arrived);

struct DataPlaneOptions {
  // "zmq" or "ucx".
  std::string transport = "zmq";
  // ucx: the transports UCX may use (UCX_TLS syntax, e.g. "tcp" or "rc,sm,self") and the devices
  // (UCX_NET_DEVICES syntax, e.g. "mlx5_0:1" or "lo"). Empty: UCX_TLS / UCX_NET_DEVICES from the environment,
  // else UCX's default (all). Set here, they override the environment.
  std::string ucx_tls;
  std::string ucx_net_devices;
  // zmq: where the receiving socket binds; port 0 picks a free port.
  std::string bind_endpoint = "tcp://127.0.0.1:0";
  // zmq: host put in local_endpoint() instead of the bound one (e.g. the pod IP when binding 0.0.0.0).
  std::string advertise_host;
  SocketOptions socket;
  std::optional<CurveServerConfig> curve_server;  // on the receiving socket
  std::optional<CurveClientConfig> curve_client;  // on sending sockets
  // Received blobs nobody has asked for yet are kept up to this many bytes (then new ones are refused) and
  // for at most this long.
  uint64_t max_pending_bytes = uint64_t{4} << 30;
  std::chrono::milliseconds pending_ttl{30000};
  // When `transport` cannot be built (UCX not built, or failing to start: no usable transport or device),
  // build "zmq" instead and log a warning; transport_name() then says "zmq", so the metric label shows the
  // fallback.
  bool fallback_to_zmq = true;
};

// Builds the data plane `options.transport` names. "ucx" when UCX cannot start (or this build has no UCX):
// with fallback_to_zmq the ZeroMQ plane (logged as a warning), without it UNAVAILABLE (UNIMPLEMENTED when the
// build has no UCX). Other names: INVALID_ARGUMENT. `context` must outlive the plane (the UCX plane does not
// use it).
Result<std::unique_ptr<DataPlane>> make_data_plane(zmq::context_t& context, const DataPlaneOptions& options);

}  // namespace proxykv::transport
