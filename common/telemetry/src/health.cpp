#include "proxykv/telemetry/health.h"

namespace proxykv::telemetry {

const char* serving_state_name(ServingState state) {
  switch (state) {
    case ServingState::kServing: return "serving";
    case ServingState::kNotServing: return "not_serving";
    case ServingState::kDraining: return "draining";
  }
  return "not_serving";
}

nlohmann::json health_json(const HealthReport& report, const std::string& service, const std::string& model_name) {
  return nlohmann::json{{"status", serving_state_name(report.state)},
                        {"service", service},
                        {"model_name", model_name},
                        {"details", report.details}};
}

int health_http_status(const HealthReport& report) {
  return report.serving() ? 200 : 503;
}

}  // namespace proxykv::telemetry
