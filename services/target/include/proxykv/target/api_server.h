// ApiServer: the target's public HTTP API (cpp-httplib) over a TargetEngine.
//
//   POST   /v1/completions                  OpenAI completions; `stream` uses SSE (`data: {json}` per token,
//                                           then `data: [DONE]`); extension `kv_compression`
//                                           {method, keep_ratio, level?, head_floor?}
//   GET    /v1/models                       the served model
//   POST   /v1/contexts                     compress a context once -> {"id", "context_tokens", "kv_bytes", ...}
//   POST   /v1/contexts/{id}/completions    answer a question (`prompt`) from that context
//   DELETE /v1/contexts/{id}
//   GET    /health, /health/live, /metrics  telemetry::attach_admin_routes
//
// Model work runs on a RequestScheduler; HTTP threads only parse, wait and write. Limits: body bytes (413),
// context tokens (400 context_length_exceeded), in-flight API requests (429 + Retry-After), draining (503 +
// Retry-After). Every error is JSON {"error": {"message", "type", "code"}}; no exception leaves a handler.
// Torch-free: the engine is reached through target_engine.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"
#include "proxykv/target/context_cache.h"
#include "proxykv/target/request_scheduler.h"
#include "proxykv/target/target_engine.h"
#include "proxykv/telemetry/metrics.h"

namespace httplib {
class Server;
}

namespace proxykv::target {

struct ApiServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                                    // 0: any free port, see port()
  int http_threads = 8;                            // must exceed max_in_flight, so /health always has a thread
  int64_t max_in_flight = 4;                       // API requests being served or queued at once
  int64_t max_body_bytes = 8 << 20;                // larger bodies get 413
  int64_t context_cache_bytes = int64_t{1} << 30;  // compressed contexts kept for /v1/contexts
  int retry_after_s = 1;
  // When not empty, every /v1/* request must carry "Authorization: Bearer <one of these>" (401 otherwise);
  // /health, /health/live and /metrics stay open for probes and Prometheus. See load_api_keys().
  std::vector<std::string> api_keys;
  // Extra members of /health's "details" (e.g. the proxy path's state); called per probe, must be thread-safe.
  std::function<nlohmann::json()> health_details;
};

// The API keys of `path`: one per line; blank lines and lines starting with '#' are skipped; surrounding
// whitespace is dropped. Errors (naming the file): unreadable, no key, a key shorter than 16 characters or with
// characters outside printable ASCII.
Result<std::vector<std::string>> load_api_keys(const std::string& path);

class ApiServer {
 public:
  // Binds host:port and starts serving on its own thread. `engine` and `metrics` must outlive the server.
  // UNAVAILABLE when the address cannot be bound; INVALID_ARGUMENT for inconsistent options.
  static Result<std::unique_ptr<ApiServer>> start(TargetEngine& engine, telemetry::Metrics& metrics,
                                                  const ApiServerOptions& options);
  ~ApiServer();  // shutdown()
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  int port() const { return port_; }
  std::string base_url() const;  // "http://host:port" (127.0.0.1 for a wildcard host)

  // Stops accepting connections, lets the requests in progress finish (streams included), joins. Idempotent.
  void shutdown();

  ContextCacheStats context_cache_stats() const;
  int64_t in_flight() const;

 private:
  struct Impl;
  ApiServer(std::unique_ptr<Impl> impl, std::string host, int port);

  std::unique_ptr<Impl> impl_;
  std::string host_;
  int port_ = 0;
};

}  // namespace proxykv::target
