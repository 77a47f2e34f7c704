// The admin endpoints every service serves (DESIGN.md §8, §9):
//   GET /health        HealthReport as JSON; 200 when serving, 503 when starting, broken or draining
//                      (readiness and startup probes)
//   GET /health/live   200 while the process answers HTTP at all (liveness probe; never waits on models)
//   GET /metrics       Metrics::serialize(), Prometheus text format 0.0.4
//
// A service without an HTTP server of its own (proxy, mapper) runs an AdminServer; the target attaches the
// same routes to its public API server with attach_admin_routes().
#pragma once

#include <memory>
#include <string>

#include "proxykv/core/status.h"
#include "proxykv/telemetry/health.h"
#include "proxykv/telemetry/metrics.h"

namespace httplib {
class Server;
}

namespace proxykv::telemetry {

// Registers GET /health, /health/live and /metrics on `server`. `metrics` must outlive the server's use of the
// routes; `health` is called on the server's worker threads.
void attach_admin_routes(httplib::Server& server, const Metrics& metrics, HealthCheck health);

// httplib binds with SO_REUSEPORT by default, so a second process on a busy port shares it silently instead of
// failing. This keeps SO_REUSEADDR only: binding a port in use fails. AdminServer does it; call it on any other
// httplib server before binding.
void set_exclusive_bind(httplib::Server& server);

struct AdminServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port, see bound_port()
  int threads = 2;
};

// An HTTP server with only the admin routes, serving on its own thread from start() until destruction.
class AdminServer {
 public:
  // Binds host:port and starts serving. UNAVAILABLE when the address cannot be bound, INVALID_ARGUMENT for a
  // port outside [0, 65535].
  static Result<std::unique_ptr<AdminServer>> start(const AdminServerOptions& options, const Metrics& metrics,
                                                    HealthCheck health);
  ~AdminServer();  // stops accepting, finishes the requests in progress, joins the thread
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  const std::string& host() const { return host_; }
  int bound_port() const { return port_; }
  std::string base_url() const;  // "http://host:port"

 private:
  struct Impl;
  AdminServer(std::unique_ptr<Impl> impl, std::string host, int port);

  std::unique_ptr<Impl> impl_;
  std::string host_;
  int port_ = 0;
};

}  // namespace proxykv::telemetry
