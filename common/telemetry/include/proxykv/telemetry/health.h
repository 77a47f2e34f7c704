// HealthReport: what a service says about itself on GET /health. The states mirror v1::ServingStatus of the
// control channel, so the HTTP probe and the ZeroMQ health reply agree.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace proxykv::telemetry {

enum class ServingState {
  kServing,     // ready for requests: /health answers 200
  kNotServing,  // starting (loading models) or broken: 503
  kDraining,    // SIGTERM received, finishing in-flight work: 503, so the load balancer stops sending
};

const char* serving_state_name(ServingState state);  // "serving" | "not_serving" | "draining"

struct HealthReport {
  ServingState state = ServingState::kServing;
  // Service-specific facts for an operator (loaded models, data-plane transport, in-flight count, ...).
  nlohmann::json details = nlohmann::json::object();

  bool serving() const { return state == ServingState::kServing; }
};

// Produces the report on each request; runs on an HTTP worker thread, so it must be thread-safe. An exception
// it throws is caught and reported as not_serving.
using HealthCheck = std::function<HealthReport()>;

// {"status": "serving", "service": "...", "model_name": "...", "details": {...}}
nlohmann::json health_json(const HealthReport& report, const std::string& service, const std::string& model_name);

// 200 when serving, 503 otherwise.
int health_http_status(const HealthReport& report);

}  // namespace proxykv::telemetry
