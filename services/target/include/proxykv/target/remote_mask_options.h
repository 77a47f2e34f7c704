// RemoteMaskOptions: how the target reaches the proxy path (remote_mask_provider.h), free of LibTorch so that
// the config code compiles without it.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "proxykv/transport/curve.h"
#include "proxykv/transport/socket_options.h"

namespace proxykv::target {

struct RemoteMaskOptions {
  std::vector<std::string> proxy_endpoints;  // control endpoints of the proxy pool (tcp://host:port); >= 1
  std::string proxy_model_id;                // ScoreRequest.proxy_model_id; empty: whatever the proxy serves
  // The mask receiver's bind endpoint (port 0: a free port) and the host the proxy and mapper use to reach it
  // (empty: the bound host; needed when binding 0.0.0.0).
  std::string mask_endpoint = "tcp://127.0.0.1:0";
  std::string advertise_host;
  std::chrono::milliseconds submit_timeout{1000};  // waiting for the proxy's Accepted
  // Host names in proxy_endpoints (a headless Service) are resolved to all their addresses, and again at most
  // this often (before a submit); 0: once at the first submit (transport/endpoint_resolver.h).
  std::chrono::milliseconds dns_refresh{5000};
  size_t max_pending_submits = 64;                 // ScoreRequests waiting for the sender; more fall back
  transport::SocketOptions socket;
  std::optional<transport::CurveServerConfig> server_curve;  // on the mask receiver (ROUTER)
  std::optional<transport::CurveClientConfig> client_curve;  // on the DEALER to the proxy pool
  std::string service_name = "target";
};

}  // namespace proxykv::target
