// What every service main does around its server: block SIGTERM/SIGINT in every thread (call before starting
// any), announce its endpoints on the first stdout line (scripts/run-local.sh reads it), report health, wait
// for a shutdown signal, then drain.
#pragma once

#include <chrono>
#include <csignal>
#include <iostream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "proxykv/telemetry/admin_server.h"
#include "proxykv/telemetry/health.h"

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

// {"service":NAME,"control":"tcp://...","admin":"http://host:port","data_plane":"zmq|ucx"} on stdout, flushed.
inline void announce(const std::string& service, const std::string& control, const telemetry::AdminServer& admin,
                     const std::string& data_plane) {
  std::cout << nlohmann::json{{"service", service},
                              {"control", control},
                              {"admin", "http://" + admin.host() + ":" + std::to_string(admin.bound_port())},
                              {"data_plane", data_plane}}
                   .dump()
            << std::endl;
}

// The /health report of a server with draining() and in_flight(), plus service-specific details.
template <typename Server>
telemetry::HealthReport health_of(const Server& server, nlohmann::json details) {
  telemetry::HealthReport r;
  r.state = server.draining() ? telemetry::ServingState::kDraining : telemetry::ServingState::kServing;
  details["in_flight"] = server.in_flight();
  details["data_plane"] = server.data_plane_transport();
  r.details = std::move(details);
  return r;
}

// SIGTERM: refuse new work, let what was accepted finish.
template <typename Server>
void drain(Server& server) {
  server.begin_drain();
  while (server.in_flight() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

}  // namespace proxykv::service
