#include "proxykv/telemetry/admin_server.h"

#include <chrono>
#include <exception>
#include <future>
#include <thread>
#include <utility>

#include <httplib.h>
#include <sys/socket.h>

namespace proxykv::telemetry {
namespace {

constexpr const char* kJsonContentType = "application/json";

void write_health(const Metrics& metrics, const HealthCheck& health, httplib::Response& res) {
  const MetricsIdentity& id = metrics.identity();
  HealthReport report;
  try {
    report = health ? health() : HealthReport{};
  } catch (const std::exception& e) {
    // No exception crosses a handler: a failing check is itself a health fact.
    report.state = ServingState::kNotServing;
    report.details = nlohmann::json{{"error", std::string("health check failed: ") + e.what()}};
  } catch (...) {
    report.state = ServingState::kNotServing;
    report.details = nlohmann::json{{"error", "health check failed"}};
  }
  res.status = health_http_status(report);
  res.set_content(health_json(report, id.service, id.model_name).dump(), kJsonContentType);
}

}  // namespace

void set_exclusive_bind(httplib::Server& server) {
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));  // quick restart over TIME_WAIT only
  });
}

void attach_admin_routes(httplib::Server& server, const Metrics& metrics, HealthCheck health) {
  server.Get("/health", [&metrics, health = std::move(health)](const httplib::Request&, httplib::Response& res) {
    write_health(metrics, health, res);
  });
  server.Get("/health/live", [&metrics](const httplib::Request&, httplib::Response& res) {
    const MetricsIdentity& id = metrics.identity();
    res.set_content(nlohmann::json{{"status", "alive"}, {"service", id.service}}.dump(), kJsonContentType);
  });
  server.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.serialize(), kPrometheusTextContentType);
  });
}

struct AdminServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::future<void> finished;
};

AdminServer::AdminServer(std::unique_ptr<Impl> impl, std::string host, int port)
    : impl_(std::move(impl)), host_(std::move(host)), port_(port) {}

Result<std::unique_ptr<AdminServer>> AdminServer::start(const AdminServerOptions& options, const Metrics& metrics,
                                                        HealthCheck health) {
  if (options.port < 0 || options.port > 65535) {
    return invalid_argument("admin server port " + std::to_string(options.port) + " is outside [0, 65535]");
  }
  auto impl = std::make_unique<Impl>();
  httplib::Server& server = impl->server;
  const int threads = options.threads > 0 ? options.threads : 1;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  set_exclusive_bind(server);
  attach_admin_routes(server, metrics, std::move(health));
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // a route's own error body
        const std::string message = res.status == 404 ? "no such path: " + req.path : "request failed";
        res.set_content(nlohmann::json{{"error", message}}.dump(), kJsonContentType);
        return httplib::Server::HandlerResponse::Handled;
      }));

  int port = options.port;
  if (port == 0) {
    port = server.bind_to_any_port(options.host);
    if (port < 0) return Status(StatusCode::kUnavailable, "admin server cannot bind " + options.host + ":0");
  } else if (!server.bind_to_port(options.host, port)) {
    return Status(StatusCode::kUnavailable,
                  "admin server cannot bind " + options.host + ":" + std::to_string(port) + " (in use?)");
  }

  std::promise<void> done;
  impl->finished = done.get_future();
  impl->thread = std::thread([&server, done = std::move(done)]() mutable {
    server.listen_after_bind();
    done.set_value();
  });
  // The socket is bound and listening already (connections queue in the backlog); wait only until the accept
  // loop runs, so that the destructor's stop() is not lost before it.
  while (!server.is_running() && impl->finished.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    std::this_thread::yield();
  }
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl), options.host, port));
}

AdminServer::~AdminServer() {
  if (!impl_) return;
  // stop() is a no-op until the accept loop has started; repeat it until the loop has ended.
  do {
    impl_->server.stop();
  } while (impl_->finished.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready);
  impl_->thread.join();
}

std::string AdminServer::base_url() const {
  return "http://" + host_ + ":" + std::to_string(port_);
}

}  // namespace proxykv::telemetry
