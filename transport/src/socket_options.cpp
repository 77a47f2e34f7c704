#include "proxykv/transport/socket_options.h"

#include <algorithm>

namespace proxykv::transport {
namespace {

int to_int_ms(std::chrono::milliseconds ms) {
  return static_cast<int>(std::clamp<int64_t>(ms.count(), 0, INT32_MAX));
}

}  // namespace

Status apply_socket_options(zmq::socket_t& socket, const SocketOptions& options) {
  if (options.send_hwm < 1 || options.receive_hwm < 1) {
    return invalid_argument("send_hwm and receive_hwm must be >= 1 (0 would mean unbounded queues)");
  }
  const int64_t max_frame = options.max_frame_bytes.value_or(
      static_cast<int64_t>(std::max<uint64_t>(options.limits.max_tensor_bytes, options.limits.max_envelope_bytes)));
  try {
    socket.set(zmq::sockopt::sndhwm, options.send_hwm);
    socket.set(zmq::sockopt::rcvhwm, options.receive_hwm);
    socket.set(zmq::sockopt::linger, to_int_ms(options.linger));
    socket.set(zmq::sockopt::heartbeat_ivl, to_int_ms(options.heartbeat_interval));
    socket.set(zmq::sockopt::heartbeat_timeout, to_int_ms(options.heartbeat_timeout));
    // The TTL travels in deciseconds in a 16-bit field: at most 6553.5 s.
    socket.set(zmq::sockopt::heartbeat_ttl, std::min(to_int_ms(options.heartbeat_ttl), 6553500));
    socket.set(zmq::sockopt::reconnect_ivl, to_int_ms(options.reconnect_interval));
    socket.set(zmq::sockopt::reconnect_ivl_max, to_int_ms(options.reconnect_interval_max));
    socket.set(zmq::sockopt::maxmsgsize, max_frame);
  } catch (const zmq::error_t& e) {
    return invalid_argument(std::string("socket options: ") + e.what());
  }
  return Status::ok();
}

Status apply_curve_server(zmq::socket_t& socket, const CurveServerConfig& curve) {
  if (!zmq_has("curve")) return unimplemented("libzmq was built without CURVE support");
  if (Status s = validate_curve_key(curve.secret_key); !s.is_ok()) {
    return invalid_argument("CURVE server secret key: " + s.message());
  }
  try {
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
    // Lets a CurveAuthenticator on the context (if any) know which sockets it guards.
    socket.set(zmq::sockopt::zap_domain, "proxykv");
  } catch (const zmq::error_t& e) {
    return invalid_argument(std::string("CURVE server options: ") + e.what());
  }
  return Status::ok();
}

Status apply_curve_client(zmq::socket_t& socket, const CurveClientConfig& curve) {
  if (!zmq_has("curve")) return unimplemented("libzmq was built without CURVE support");
  if (Status s = validate_curve_key(curve.server_public_key); !s.is_ok()) {
    return invalid_argument("CURVE server public key: " + s.message());
  }
  CurveKeyPair keys = curve.client_keys;
  if (keys.public_key.empty() && keys.secret_key.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(keys, generate_curve_keypair());
  }
  if (Status s = validate_curve_key(keys.public_key); !s.is_ok()) {
    return invalid_argument("CURVE client public key: " + s.message());
  }
  if (Status s = validate_curve_key(keys.secret_key); !s.is_ok()) {
    return invalid_argument("CURVE client secret key: " + s.message());
  }
  try {
    socket.set(zmq::sockopt::curve_serverkey, curve.server_public_key);
    socket.set(zmq::sockopt::curve_publickey, keys.public_key);
    socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
  } catch (const zmq::error_t& e) {
    return invalid_argument(std::string("CURVE client options: ") + e.what());
  }
  return Status::ok();
}

}  // namespace proxykv::transport
