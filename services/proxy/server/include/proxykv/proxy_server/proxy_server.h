// ProxyServer: proxykv-proxy's network side. A ROUTER control socket takes ScoreRequest (answered at once with
// Accepted, or an ErrorReply when it cannot be served), HealthRequest and Handshake. Worker threads run the
// proxy over the context (feature extraction, services/proxy) and send ProxyFeatures to one mapper, chosen
// round-robin among the configured endpoints: the feature tensor travels on the data plane (zmq or ucx, the
// mapper's endpoint learnt from its Handshake) or, with `inline_features`, as a frame of the control message.
// Any failure after Accepted sends an ErrorReply with the request id to the request's reply_to, so the target
// falls back at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/proxy/proxy_features.h"
#include "proxykv/service/version.h"
#include "proxykv/telemetry/metrics.h"
#include "proxykv/transport/control_server.h"
#include "proxykv/transport/data_plane.h"

namespace proxykv::proxy {

struct ProxyServerOptions {
  transport::ServerOptions control;  // service name "proxy"; control.curve: CURVE on the ROUTER
  // CURVE on the DEALERs this proxy opens (to the mapper pool and to reply_to); nullopt: plain.
  std::optional<transport::CurveClientConfig> peer_curve;
  transport::DataPlaneOptions data_plane;
  std::vector<std::string> mapper_endpoints;  // control endpoints of the mapper pool
  // Host names in mapper_endpoints (a headless Service) become one peer per address, re-resolved at most this
  // often (before a request); 0: once (transport/endpoint_resolver.h).
  std::chrono::milliseconds dns_refresh{5000};
  bool inline_features = false;               // features as a control-message frame instead of the data plane
  std::string proxy_model_id;                 // what ScoreRequest.proxy_model_id must name (or leave empty)
  FeatureOptions features;                    // channels (must match the mapper's), KVzip chunk and repeat prompt
  int64_t max_context_tokens = 65536;
  size_t queue_capacity = 64;
  int workers = 1;
  std::string service_version = service::version();
};

struct ProxyServerStats {
  uint64_t accepted = 0;
  uint64_t refused = 0;
  uint64_t features_sent = 0;    // ProxyFeatures accepted by a mapper
  uint64_t errors_sent = 0;      // ErrorReply sent to reply_to
  uint64_t delivery_failed = 0;  // reply_to unreachable after a failure
};

class ProxyServer {
 public:
  // `model` and `metrics` must outlive the server.
  static Result<std::unique_ptr<ProxyServer>> start(zmq::context_t& context, ProxyServerOptions options,
                                                    const DecoderLM& model, telemetry::Metrics& metrics);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  const std::string& control_endpoint() const;
  const char* data_plane_transport() const;
  void begin_drain();
  bool draining() const;
  size_t in_flight() const;
  ProxyServerStats stats() const;

  struct Impl;

 private:
  explicit ProxyServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace proxykv::proxy
