// Envelope deadlines are absolute unix milliseconds (they cross machines); waits inside a process use the
// steady clock (immune to clock steps). These convert between the two.
#pragma once

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

}  // namespace proxykv::service
