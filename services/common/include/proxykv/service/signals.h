// Shutdown signals for the service mains: block SIGTERM/SIGINT in every thread (call before starting any),
// then wait for one in main and drain.
#pragma once

#include <csignal>

namespace proxykv::service {

inline sigset_t block_shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// Returns the signal received.
inline int wait_for_shutdown(const sigset_t& set) {
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace proxykv::service
