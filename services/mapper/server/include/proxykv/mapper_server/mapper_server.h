// MapperServer: proxykv-mapper's network side. A ROUTER control socket takes ProxyFeatures (answered at once
// with Accepted, or an ErrorReply when the request cannot be served), HealthRequest and Handshake; worker
// threads map the features (inline tensor frame, or bytes on the data plane) to target scores, select the keep
// set and send PruneMask to the request's reply_to. A failure after Accepted sends an ErrorReply (with the
// request id) to reply_to instead, so the target falls back at once rather than at its deadline.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <zmq.hpp>

#include "proxykv/core/status.h"
#include "proxykv/mapper/mapper_registry.h"
#include "proxykv/service/version.h"
#include "proxykv/telemetry/metrics.h"
#include "proxykv/transport/control_server.h"
#include "proxykv/transport/data_plane.h"

namespace proxykv::mapper {

struct MapperServerOptions {
  transport::ServerOptions control;  // endpoint (port 0: free), service name "mapper"; control.curve: CURVE
  // CURVE on the DEALERs to each request's reply_to (the target's mask receiver); nullopt: plain.
  std::optional<transport::CurveClientConfig> peer_curve;
  transport::DataPlaneOptions data_plane;
  size_t queue_capacity = 64;  // accepted but not yet mapped; beyond it: RESOURCE_EXHAUSTED
  int workers = 1;
  std::string service_version = service::version();
};

struct MapperServerStats {
  uint64_t accepted = 0;
  uint64_t refused = 0;          // ErrorReply to the proxy (bad request, unknown pair, queue full, draining)
  uint64_t masks_sent = 0;       // PruneMask acknowledged by the target
  uint64_t errors_sent = 0;      // ErrorReply sent to reply_to after a failure
  uint64_t delivery_failed = 0;  // reply_to unreachable: neither mask nor error arrived
};

class MapperServer {
 public:
  // Binds the control socket and the data plane and starts serving. `registry` and `metrics` must outlive it.
  static Result<std::unique_ptr<MapperServer>> start(zmq::context_t& context, MapperServerOptions options,
                                                     const MapperRegistry& registry, telemetry::Metrics& metrics);
  ~MapperServer();  // stops accepting, finishes queued work, joins every thread
  MapperServer(const MapperServer&) = delete;
  MapperServer& operator=(const MapperServer&) = delete;

  const std::string& control_endpoint() const;
  v1::DataPlaneEndpoint data_plane_endpoint() const;
  const char* data_plane_transport() const;
  // SIGTERM: new ProxyFeatures are refused (UNAVAILABLE) while queued work finishes.
  void begin_drain();
  bool draining() const;
  size_t in_flight() const;
  MapperServerStats stats() const;

  struct Impl;

 private:
  explicit MapperServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace proxykv::mapper
