// Options every ZeroMQ socket of the transport gets: bounded queues, ZMTP heartbeats, reconnect back-off,
// frame size limit and CURVE.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <zmq.hpp>

#include "proxykv/core/status.h"
#include "proxykv/transport/codec.h"
#include "proxykv/transport/curve.h"

namespace proxykv::transport {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct SocketOptions {
  // Messages queued per peer before sends block / fail with RESOURCE_EXHAUSTED (ZMQ_SNDHWM, ZMQ_RCVHWM).
  int send_hwm = 1000;
  int receive_hwm = 1000;
  // ZMTP PING every interval; a peer silent for `heartbeat_timeout` is dropped; the peer is told to drop us
  // after `heartbeat_ttl` (ZMQ_HEARTBEAT_IVL / _TIMEOUT / _TTL; TTL has 100 ms resolution).
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{3000};
  std::chrono::milliseconds heartbeat_ttl{3000};
  // Reconnect back-off of connecting sockets (ZMQ_RECONNECT_IVL, doubling up to ZMQ_RECONNECT_IVL_MAX).
  std::chrono::milliseconds reconnect_interval{100};
  std::chrono::milliseconds reconnect_interval_max{2000};
  // How long unsent messages are kept when the socket closes (ZMQ_LINGER).
  std::chrono::milliseconds linger{0};
  // Frames larger than this make ZeroMQ drop the connection before any byte is buffered (ZMQ_MAXMSGSIZE);
  // derived from `limits` when unset.
  std::optional<int64_t> max_frame_bytes;
  // What decode() accepts on this socket.
  CodecLimits limits;
};

// Applies the options shared by servers and clients (HWMs, heartbeats, reconnect, linger, max frame size).
Status apply_socket_options(zmq::socket_t& socket, const SocketOptions& options);
Status apply_curve_server(zmq::socket_t& socket, const CurveServerConfig& curve);
Status apply_curve_client(zmq::socket_t& socket, const CurveClientConfig& curve);

}  // namespace proxykv::transport
