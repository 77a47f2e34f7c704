// Small ZeroMQ helpers shared by the control channel and the ZeroMQ data plane (not part of the public API).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "proxykv/core/status.h"

namespace proxykv::transport {

inline Status unavailable(std::string msg) {
  return {StatusCode::kUnavailable, std::move(msg)};
}
inline Status deadline_exceeded(std::string msg) {
  return {StatusCode::kDeadlineExceeded, std::move(msg)};
}
inline Status resource_exhausted(std::string msg) {
  return {StatusCode::kResourceExhausted, std::move(msg)};
}

int64_t unix_now_ms();

// Receives one whole multipart message if one is ready (false when none is). Keeps at most `max_frames`
// frames; the rest of an over-long message is read and dropped (`*truncated` = true), so a hostile peer
// cannot make us hold an unbounded number of frames.
Result<bool> receive_bounded(zmq::socket_t& socket, zmq::multipart_t& out, size_t max_frames, bool* truncated);

// Sends all frames as one message. With `dont_wait`, returns false when the socket cannot take the message
// now (HWM reached, or no peer with ZMQ_IMMEDIATE); the frames are then left untouched for a retry. ZeroMQ
// queues a multipart message atomically, so only the first frame can meet a full queue.
Result<bool> send_frames(zmq::socket_t& socket, zmq::multipart_t& frames, bool dont_wait);

// zmq_poll on one socket; returns the events that fired (0 on timeout).
short poll_socket(zmq::socket_t& socket, short events, std::chrono::milliseconds timeout);

// ZMQ_LAST_ENDPOINT: the endpoint actually bound ("tcp://127.0.0.1:40123" for port 0).
std::string last_endpoint(zmq::socket_t& socket);

// Milliseconds from now to `deadline`, rounded up, >= 0.
std::chrono::milliseconds remaining(std::chrono::steady_clock::time_point deadline);

}  // namespace proxykv::transport
