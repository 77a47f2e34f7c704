// Envelope deadlines are absolute unix milliseconds (they cross machines); waits inside a process use the
// steady clock (immune to clock steps). These convert between the two.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "proxykv/transport/socket_options.h"

namespace proxykv::service {

inline int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The steady-clock instant of `deadline_unix_ms`; 0 (none) means `fallback` from now.
inline transport::Deadline steady_deadline(int64_t deadline_unix_ms, std::chrono::milliseconds fallback) {
  const auto now = transport::Clock::now();
  if (deadline_unix_ms <= 0) return now + fallback;
  return now + std::chrono::milliseconds(deadline_unix_ms - unix_ms_now());
}

// What is left of `deadline` as a ControlClient timeout: at least 1 ms (a spent deadline still makes one try).
inline std::chrono::milliseconds time_left(transport::Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - transport::Clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

// When a worker's answer to reply_to (a mask, or the error that replaces it) must have arrived: the request's
// deadline, but never less than 0.5 s from now, so an answer finished just late is still delivered (the target
// discards what it no longer waits for).
inline transport::Deadline delivery_deadline(transport::Deadline deadline) {
  return std::max(deadline, transport::Clock::now() + std::chrono::milliseconds(500));
}

}  // namespace proxykv::service
