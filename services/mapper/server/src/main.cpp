// proxykv-mapper: serves HybridAxialMapper checkpoints keyed by (proxy, target) model pair.
// Every key is a JSON config key, a --flag and a PROXYKV_MAPPER_* env var (docs/operations.md).
// First stdout line: {"service":"mapper","control":"tcp://...","admin":"http://...","data_plane":"zmq|ucx"}.

#include <iostream>

#include <spdlog/spdlog.h>

#include "proxykv/core/logging.h"
#include "proxykv/model/threads.h"
#include "proxykv/mapper_server/mapper_server.h"
#include "proxykv/service/curve_config.h"
#include "proxykv/service/lifecycle.h"
#include "proxykv/service_config/config_schema.h"
#include "proxykv/service_config/validators.h"
#include "proxykv/telemetry/admin_server.h"
#include "proxykv/transport/codec.h"

namespace {

struct MapperServiceConfig {
  std::string control_endpoint = "tcp://127.0.0.1:0";
  std::string admin_host = "127.0.0.1";
  int64_t admin_port = 0;
  std::string data_plane = "zmq";
  std::string data_plane_bind = "tcp://127.0.0.1:0";
  std::string advertise_host;
  std::vector<std::string> mappers;
  std::string device = "cpu";
  int64_t threads = 1;
  int64_t workers = 1;
  int64_t queue_capacity = 64;
  bool fallback_to_zmq = true;
  std::string curve_secret_key_file;
  std::string curve_server_public_key_file;
};

int run(int argc, char** argv) {
  using namespace proxykv;
  namespace sc = service_config;
  const sigset_t signals = service::block_shutdown_signals();
  MapperServiceConfig cfg;
  sc::ConfigSchema schema("mapper", "proxykv-mapper: proxy features -> target keep masks");
  schema.add("control_endpoint", &cfg.control_endpoint, "ROUTER endpoint for ProxyFeatures (port 0: free)")
      .add("admin_host", &cfg.admin_host, "host of /health and /metrics")
      .add("admin_port", &cfg.admin_port, "port of /health and /metrics (0: free)", sc::in_range<int64_t>(0, 65535))
      .add("data_plane", &cfg.data_plane, "feature data plane: zmq | ucx", sc::one_of({"zmq", "ucx"}))
      .add("data_plane_bind", &cfg.data_plane_bind, "zmq data plane bind endpoint")
      .add("advertise_host", &cfg.advertise_host, "host advertised for the zmq data plane (pod IP)")
      .add("mappers", &cfg.mappers, "checkpoints served, PROXY_ID:TARGET_ID=DIR (comma-separated)")
      .add("device", &cfg.device, "cpu, cuda or cuda:N (where the mappers run)", sc::device_name())
      .add("threads", &cfg.threads, "compute threads: LibTorch's intra-op pool and OpenBLAS's", sc::at_least<int64_t>(1))
      .add("workers", &cfg.workers, "mapping threads", sc::in_range<int64_t>(1, 64))
      .add("queue_capacity", &cfg.queue_capacity, "accepted requests waiting", sc::at_least<int64_t>(1))
      .add("fallback_to_zmq", &cfg.fallback_to_zmq, "use the zmq data plane when ucx cannot start")
      .add("curve_secret_key_file", &cfg.curve_secret_key_file, "Z85 secret key file: CURVE on this service's ROUTERs (empty: plain)")
      .add("curve_server_public_key_file", &cfg.curve_server_public_key_file, "Z85 public key file of the servers this service connects to (empty: plain)");
  if (auto outcome = schema.load(argc, argv); outcome.exit) return outcome.exit_code;
  transport::route_protobuf_logs_to_spdlog();
  set_compute_threads(static_cast<int>(cfg.threads));

  mapper::MapperRegistry registry;
  throw_if_error(registry.set_device(cfg.device));
  for (const auto& spec : cfg.mappers) throw_if_error(registry.add_spec(spec));
  const nlohmann::json trained_levels = registry.trained_levels();  // a named object: items() refers into it
  for (const auto& item : trained_levels.items()) {
    // stderr: the first stdout line is the announcement scripts/run-local.sh and the tests read
    get_logger("mapper")->info("mapper {}: trained for selection level {}", item.key(),
                               item.value().get<std::string>());
  }
  telemetry::Metrics metrics({"mapper", registry.empty() ? "" : registry.pair_names().front()});

  zmq::context_t context(1);
  mapper::MapperServerOptions options;
  options.control.endpoint = cfg.control_endpoint;
  options.control.service_name = "mapper";
  options.data_plane.transport = cfg.data_plane;
  options.data_plane.bind_endpoint = cfg.data_plane_bind;
  options.data_plane.advertise_host = cfg.advertise_host;
  options.data_plane.fallback_to_zmq = cfg.fallback_to_zmq;
  options.workers = static_cast<int>(cfg.workers);
  options.queue_capacity = static_cast<size_t>(cfg.queue_capacity);
  service::apply_curve(
      value_or_throw(service::load_curve_settings({cfg.curve_secret_key_file, cfg.curve_server_public_key_file})),
      options.control, options.data_plane, options.peer_curve);
  auto server = value_or_throw(mapper::MapperServer::start(context, options, registry, metrics));
  mapper::MapperServer* raw = server.get();
  telemetry::AdminServerOptions admin_options;
  admin_options.host = cfg.admin_host;
  admin_options.port = static_cast<int>(cfg.admin_port);
  auto admin = value_or_throw(telemetry::AdminServer::start(
      admin_options, metrics, [raw, &registry] { return service::health_of(*raw, {{"model_pairs", registry.pair_names()}, {"trained_levels", registry.trained_levels()}}); }));
  service::announce("mapper", server->control_endpoint(), *admin, server->data_plane_transport());
  const int sig = service::wait_for_shutdown(signals);
  get_logger("mapper")->info("signal {}: draining", sig);
  service::drain(*server);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "proxykv-mapper: " << e.what() << "\n";
    return 1;
  }
}
