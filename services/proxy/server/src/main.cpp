// proxykv-proxy: runs the small model over contexts and ships its importance features to the mapper pool.
// Every key is a JSON config key, a --flag and a PROXYKV_PROXY_* env var (docs/operations.md).
// First stdout line: {"service":"proxy","control":"tcp://...","admin":"http://...","data_plane":"zmq|ucx"}.

#include <filesystem>
#include <iostream>

#include <spdlog/spdlog.h>

#include "proxykv/core/logging.h"
#include "proxykv/model/prompt_format.h"
#include "proxykv/model/threads.h"
#include "proxykv/model/tokenizer.h"
#include "proxykv/proxy_server/proxy_server.h"
#include "proxykv/service/curve_config.h"
#include "proxykv/service/lifecycle.h"
#include "proxykv/service_config/config_schema.h"
#include "proxykv/service_config/validators.h"
#include "proxykv/telemetry/admin_server.h"
#include "proxykv/transport/codec.h"
#include "proxykv/transport/endpoint_resolver.h"

namespace {

struct ProxyServiceConfig {
  std::string model;
  std::string model_id;
  std::string control_endpoint = "tcp://127.0.0.1:0";
  std::string admin_host = "127.0.0.1";
  int64_t admin_port = 0;
  std::vector<std::string> mapper_endpoints;
  std::string data_plane = "zmq";
  std::string data_plane_bind = "tcp://127.0.0.1:0";
  bool inline_features = false;
  bool fallback_to_zmq = true;
  std::vector<std::string> channels{"kvzip"};
  int64_t kvzip_chunk = 2048;
  std::string device = "cpu";
  int64_t threads = 1;
  int64_t workers = 1;
  int64_t queue_capacity = 64;
  int64_t max_context_tokens = 65536;
  int64_t dns_refresh_ms = 5000;
  std::string curve_secret_key_file;
  std::string curve_server_public_key_file;
};

int run(int argc, char** argv) {
  using namespace proxykv;
  namespace sc = service_config;
  const sigset_t signals = service::block_shutdown_signals();
  ProxyServiceConfig cfg;
  sc::ConfigSchema schema("proxy", "proxykv-proxy: proxy-model importance features for the mapper");
  schema.add("model", &cfg.model, "proxy model directory (HF layout)", sc::non_empty())
      .add("model_id", &cfg.model_id, "the proxy's model id (default: the directory name)")
      .add("control_endpoint", &cfg.control_endpoint, "ROUTER endpoint for ScoreRequest (port 0: free)")
      .add("admin_host", &cfg.admin_host, "host of /health and /metrics")
      .add("admin_port", &cfg.admin_port, "port of /health and /metrics (0: free)", sc::in_range<int64_t>(0, 65535))
      .add("mapper_endpoints", &cfg.mapper_endpoints, "control endpoints of the mapper pool (comma-separated)")
      .add("dns_refresh_ms", &cfg.dns_refresh_ms,
           "how often host names in mapper_endpoints are re-resolved to all their addresses (0: once)",
           sc::at_least<int64_t>(0))
      .add("data_plane", &cfg.data_plane, "feature data plane: zmq | ucx", sc::one_of({"zmq", "ucx"}))
      .add("data_plane_bind", &cfg.data_plane_bind, "zmq data plane bind endpoint")
      .add("inline_features", &cfg.inline_features, "send features as control-message frames, not on the data plane")
      .add("fallback_to_zmq", &cfg.fallback_to_zmq, "use the zmq data plane when ucx cannot start")
      .add("channels", &cfg.channels, "feature channels (must match the mapper checkpoint's features.json)")
      .add("kvzip_chunk", &cfg.kvzip_chunk, "KVzip reconstruction chunk of the proxy (tokens)", sc::at_least<int64_t>(16))
      .add("device", &cfg.device, "cpu | cuda[:N]", sc::device_name())
      .add("threads", &cfg.threads, "compute threads: LibTorch's intra-op pool and OpenBLAS's", sc::at_least<int64_t>(1))
      .add("workers", &cfg.workers, "scoring threads", sc::in_range<int64_t>(1, 64))
      .add("queue_capacity", &cfg.queue_capacity, "accepted requests waiting", sc::at_least<int64_t>(1))
      .add("max_context_tokens", &cfg.max_context_tokens, "longest context scored", sc::at_least<int64_t>(1))
      .add("curve_secret_key_file", &cfg.curve_secret_key_file, "Z85 secret key file: CURVE on this service's ROUTERs (empty: plain)")
      .add("curve_server_public_key_file", &cfg.curve_server_public_key_file, "Z85 public key file of the servers this service connects to (empty: plain)");
  schema.add_check([&cfg] {
    for (const std::string& endpoint : cfg.mapper_endpoints) {
      if (auto parsed = transport::parse_tcp_endpoint(endpoint); !parsed.is_ok()) {
        return "mapper_endpoints: " + parsed.status().message();
      }
    }
    return std::string();
  });
  if (auto outcome = schema.load(argc, argv); outcome.exit) return outcome.exit_code;
  if (cfg.mapper_endpoints.empty()) throw ProxykvError(invalid_argument("mapper_endpoints is empty"));
  transport::route_protobuf_logs_to_spdlog();
  set_compute_threads(static_cast<int>(cfg.threads));
  if (cfg.model_id.empty()) cfg.model_id = std::filesystem::path(cfg.model).filename().string();

  LoadOptions load;
  load.device = cfg.device;
  auto model = value_or_throw(DecoderLM::load(cfg.model, load));
  auto tokenizer = value_or_throw(Tokenizer::from_file(cfg.model + "/tokenizer.json"));
  proxy::ProxyServerOptions options;
  options.control.endpoint = cfg.control_endpoint;
  options.control.service_name = "proxy";
  options.data_plane.transport = cfg.data_plane;
  options.data_plane.bind_endpoint = cfg.data_plane_bind;
  options.data_plane.fallback_to_zmq = cfg.fallback_to_zmq;
  options.mapper_endpoints = cfg.mapper_endpoints;
  options.dns_refresh = std::chrono::milliseconds(cfg.dns_refresh_ms);
  options.inline_features = cfg.inline_features;
  options.proxy_model_id = cfg.model_id;
  options.features.channels = cfg.channels;
  options.features.scorer.kvzip_chunk = cfg.kvzip_chunk;
  // The sinks and KVzip's repeat prompt of the proxy's prompt format, as the target scores (the family's `<repeat>`;
  // a model without the family's tokens gets the plain format's English instruction). A request's
  // num_sink_tokens still overrides the sinks.
  scoring::apply_prompt_format(PromptFormat::for_model(tokenizer, model->spec()), options.features.scorer);
  options.max_context_tokens = cfg.max_context_tokens;
  service::apply_curve(
      value_or_throw(service::load_curve_settings({cfg.curve_secret_key_file, cfg.curve_server_public_key_file})),
      options.control, options.data_plane, options.peer_curve);
  options.workers = static_cast<int>(cfg.workers);
  options.queue_capacity = static_cast<size_t>(cfg.queue_capacity);

  telemetry::Metrics metrics({"proxy", cfg.model_id});
  zmq::context_t context(1);
  auto server = value_or_throw(proxy::ProxyServer::start(context, options, *model, metrics));
  proxy::ProxyServer* raw = server.get();
  telemetry::AdminServerOptions admin_options;
  admin_options.host = cfg.admin_host;
  admin_options.port = static_cast<int>(cfg.admin_port);
  auto admin = value_or_throw(telemetry::AdminServer::start(
      admin_options, metrics, [raw, &cfg] { return service::health_of(*raw, {{"model", cfg.model_id}}); }));
  service::announce("proxy", server->control_endpoint(), *admin, server->data_plane_transport());
  const int sig = service::wait_for_shutdown(signals);
  get_logger("proxy")->info("signal {}: draining", sig);
  service::drain(*server);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "proxykv-proxy: " << e.what() << "\n";
    return 1;
  }
}
