#include "zmq_util.h"

#include <algorithm>

namespace proxykv::transport {

int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<bool> receive_bounded(zmq::socket_t& socket, zmq::multipart_t& out, size_t max_frames, bool* truncated) {
  out.clear();
  *truncated = false;
  try {
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::dontwait)) return false;
    bool more = frame.more();
    out.add(std::move(frame));
    while (more) {
      // The rest of a multipart message is already queued: these never block.
      zmq::message_t next;
      if (!socket.recv(next, zmq::recv_flags::none)) break;
      more = next.more();
      if (out.size() < max_frames) {
        out.add(std::move(next));
      } else {
        *truncated = true;
      }
    }
  } catch (const zmq::error_t& e) {
    return unavailable(std::string("receive: ") + e.what());
  }
  return true;
}

Result<bool> send_frames(zmq::socket_t& socket, zmq::multipart_t& frames, bool dont_wait) {
  if (frames.empty()) return internal_error("send of an empty message");
  try {
    for (size_t i = 0; i < frames.size(); ++i) {
      zmq::send_flags flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (i == 0 && dont_wait) flags = flags | zmq::send_flags::dontwait;
      if (!socket.send(frames[i], flags)) {
        if (i == 0) return false;
        return internal_error("send: ZeroMQ refused a later frame of a message");
      }
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return unavailable("peer is gone");
    return unavailable(std::string("send: ") + e.what());
  }
  frames.clear();
  return true;
}

short poll_socket(zmq::socket_t& socket, short events, std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{socket.handle(), 0, events, 0};
  zmq::poll(&item, 1, timeout);
  return item.revents;
}

std::string last_endpoint(zmq::socket_t& socket) {
  return socket.get(zmq::sockopt::last_endpoint);
}

std::chrono::milliseconds remaining(std::chrono::steady_clock::time_point deadline) {
  auto left = deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::steady_clock::duration::zero()) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(left);
}

}  // namespace proxykv::transport
