#include "proxykv/telemetry/admin_server.h"

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "exposition_parse.h"
#include "proxykv/telemetry/metric_families.h"

namespace proxykv::telemetry {
namespace {

using testing::sample_value;

std::unique_ptr<AdminServer> start_server(const Metrics& metrics, HealthCheck health) {
  auto server = AdminServer::start({"127.0.0.1", 0}, metrics, std::move(health));
  EXPECT_TRUE(server.is_ok()) << server.status().to_string();
  return std::move(server).value();
}

TEST(AdminServerTest, BindsAnEphemeralPortAndServesMetrics) {
  Metrics metrics({"proxy", "tiny-llama-proxy"});
  auto server = start_server(metrics, {});
  ASSERT_GT(server->bound_port(), 0);
  EXPECT_EQ(server->base_url(), "http://127.0.0.1:" + std::to_string(server->bound_port()));

  metrics.fallback_total(FallbackReason::kMaskDeadline).Increment();
  httplib::Client client("127.0.0.1", server->bound_port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), kPrometheusTextContentType);
  for (const auto& family : metric_families()) {
    const std::string name(family.name);
    EXPECT_NE(res->body.find("# HELP " + name + " "), std::string::npos) << name;
    EXPECT_NE(res->body.find("# TYPE " + name + " " + metric_type_name(family.type) + "\n"), std::string::npos) << name;
  }
  EXPECT_EQ(sample_value(res->body, "proxykv_fallback_total", {{"reason", "mask_deadline"}, {"service", "proxy"}}),
            1.0);

  // A second scrape sees the counter move.
  metrics.fallback_total(FallbackReason::kMaskDeadline).Increment(2);
  res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(sample_value(res->body, "proxykv_fallback_total", {{"reason", "mask_deadline"}}), 3.0);
}

TEST(AdminServerTest, HealthIsJsonWith200WhenServingAnd503Otherwise) {
  Metrics metrics({"mapper", "tiny-llama"});
  std::atomic<ServingState> state{ServingState::kNotServing};
  auto server = start_server(metrics, [&state] {
    HealthReport report;
    report.state = state.load();
    report.details = {{"in_flight", 3}};
    return report;
  });
  httplib::Client client("127.0.0.1", server->bound_port());

  auto res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  auto body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body["status"], "not_serving");
  EXPECT_EQ(body["service"], "mapper");
  EXPECT_EQ(body["model_name"], "tiny-llama");
  EXPECT_EQ(body["details"]["in_flight"], 3);

  state = ServingState::kServing;
  res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(nlohmann::json::parse(res->body)["status"], "serving");

  state = ServingState::kDraining;
  res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(nlohmann::json::parse(res->body)["status"], "draining");

  // Liveness does not depend on the health check.
  res = client.Get("/health/live");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(nlohmann::json::parse(res->body)["status"], "alive");
}

TEST(AdminServerTest, ThrowingHealthCheckIsReportedNotPropagated) {
  Metrics metrics({"target", "m"});
  auto server = start_server(metrics, []() -> HealthReport { throw std::runtime_error("model not loaded"); });
  httplib::Client client("127.0.0.1", server->bound_port());
  auto res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  const auto body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body["status"], "not_serving");
  EXPECT_NE(body["details"]["error"].get<std::string>().find("model not loaded"), std::string::npos);
}

TEST(AdminServerTest, NoHealthCheckMeansServing) {
  Metrics metrics({"proxy", "m"});
  auto server = start_server(metrics, {});
  httplib::Client client("127.0.0.1", server->bound_port());
  auto res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(AdminServerTest, UnknownPathIs404WithJsonError) {
  Metrics metrics({"proxy", "m"});
  auto server = start_server(metrics, {});
  httplib::Client client("127.0.0.1", server->bound_port());
  auto res = client.Get("/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_NE(nlohmann::json::parse(res->body)["error"].get<std::string>().find("/nope"), std::string::npos);
}

// Regression: httplib's default SO_REUSEPORT let a second server bind a busy port and share its traffic.
TEST(AdminServerTest, PortInUseIsUnavailable) {
  Metrics metrics({"proxy", "m"});
  auto first = start_server(metrics, {});
  auto second = AdminServer::start({"127.0.0.1", first->bound_port()}, metrics, {});
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  auto bad = AdminServer::start({"127.0.0.1", 70000}, metrics, {});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(AdminServerTest, StartAndImmediateDestructionDoesNotHang) {
  Metrics metrics({"proxy", "m"});
  for (int i = 0; i < 20; ++i) start_server(metrics, {});
}

// The target attaches the admin routes to its own API server.
TEST(AttachAdminRoutesTest, ServesOnAnExistingServer) {
  Metrics metrics({"target", "m"});
  httplib::Server server;
  set_exclusive_bind(server);
  server.Get("/v1/models",
             [](const httplib::Request&, httplib::Response& res) { res.set_content("{}", "application/json"); });
  attach_admin_routes(server, metrics, [] { return HealthReport{}; });
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread thread([&server] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::yield();

  httplib::Client client("127.0.0.1", port);
  auto metrics_res = client.Get("/metrics");
  auto health_res = client.Get("/health");
  auto api_res = client.Get("/v1/models");
  server.stop();
  thread.join();

  ASSERT_TRUE(metrics_res);
  EXPECT_EQ(metrics_res->status, 200);
  EXPECT_NE(metrics_res->body.find("# TYPE proxykv_fallback_total counter"), std::string::npos);
  ASSERT_TRUE(health_res);
  EXPECT_EQ(health_res->status, 200);
  EXPECT_EQ(nlohmann::json::parse(health_res->body)["service"], "target");
  ASSERT_TRUE(api_res);
  EXPECT_EQ(api_res->status, 200);
}

}  // namespace
}  // namespace proxykv::telemetry
