// proxykv-target: the target service's thin main (config -> engine -> API server -> wait for SIGTERM/SIGINT).
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>

#include "proxykv/core/logging.h"
#include "proxykv/service/curve_config.h"
#include "proxykv/service/lifecycle.h"
#include "proxykv/service_config/config_schema.h"
#include "proxykv/target/api_server.h"
#include "proxykv/target/remote_mask_provider.h"
#include "proxykv/target/target_config.h"
#include "proxykv/target/target_engine.h"
#include "proxykv/telemetry/metrics.h"
#include "proxykv/transport/codec.h"

int main(int argc, char** argv) {
  using namespace proxykv;
  // Block the stop signals in every thread (threads inherit the mask); this thread waits for them with sigwait.
  const sigset_t stop_signals = service::block_shutdown_signals();
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up is a failed write, not a dead server

  target::TargetConfig config;
  try {
    service_config::ConfigSchema schema("target",
                                        "ProxyKV target service: OpenAI-compatible completions over a "
                                        "compressed KV cache");
    target::declare_target_config(schema, config);
    if (auto outcome = schema.load(argc, argv); outcome.exit) return outcome.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "proxykv-target: " << e.what() << "\n";
    return 2;
  }
  set_log_level(config.log_level);
  auto log = get_logger("target");

  auto engine = target::TargetEngine::load(target::engine_options(config));
  if (!engine.is_ok()) {
    log->critical("cannot load the model: {}", engine.status().to_string());
    return 1;
  }
  // The proxy path: masks for "proxykv" requests. Without proxy endpoints every proxykv request falls back.
  zmq::context_t zmq_context(1);
  std::shared_ptr<target::RemoteMaskProvider> provider;
  if (!config.proxy_endpoints.empty()) {
    transport::route_protobuf_logs_to_spdlog();
    target::RemoteMaskOptions mask_options = target::remote_mask_options(config);
    auto curve = service::load_curve_settings({config.curve_secret_key_file, config.curve_server_public_key_file});
    if (!curve.is_ok()) {
      log->critical("CURVE keys: {}", curve.status().to_string());
      return 1;
    }
    mask_options.server_curve = curve->server;
    mask_options.client_curve = curve->client;
    auto started = target::RemoteMaskProvider::start(zmq_context, mask_options);
    if (!started.is_ok()) {
      log->critical("cannot start the mask receiver: {}", started.status().to_string());
      return 1;
    }
    provider = std::move(started).value();
    (*engine)->set_mask_provider(provider);
  }
  // The engine lets go of the provider before the provider and the ZeroMQ context go, on every return path.
  struct ReleaseProvider {
    target::TargetEngine& engine;
    ~ReleaseProvider() { engine.set_mask_provider(nullptr); }
  } release_provider{**engine};
  if (!provider) {
    log->warn("no proxy_endpoints: proxykv requests fall back to {}", config.fallback_method);
  }
  telemetry::Metrics metrics({"target", (*engine)->model_name()});
  target::ApiServerOptions api_options = target::api_server_options(config);
  if (!config.api_key_file.empty()) {
    auto keys = target::load_api_keys(config.api_key_file);
    if (!keys.is_ok()) {
      log->critical("{}", keys.status().to_string());
      return 1;
    }
    api_options.api_keys = std::move(keys).value();
    log->info("API keys required on /v1/* ({} key(s) from {})", api_options.api_keys.size(), config.api_key_file);
  }
  api_options.health_details = [provider, &config] {
    if (!provider) return nlohmann::json{{"proxy_path", nullptr}};
    const target::RemoteMaskStats s = provider->stats();
    return nlohmann::json{{"proxy_path",
                           {{"proxy_endpoints", config.proxy_endpoints},
                            {"reply_to", provider->reply_to()},
                            {"requested", s.requested},
                            {"accepted", s.accepted},
                            {"masks", s.masks},
                            {"errors", s.errors},
                            {"late", s.late}}}};
  };
  auto server = target::ApiServer::start(**engine, metrics, api_options);
  if (!server.is_ok()) {
    log->critical("cannot start the API server: {}", server.status().to_string());
    return 1;
  }
  // Scripts read the bound URL from the first stdout line.
  std::printf("%s\n", (*server)->base_url().c_str());
  std::fflush(stdout);

  const int signal_number = service::wait_for_shutdown(stop_signals);
  log->info("signal {}: draining", signal_number);
  (*server)->shutdown();
  return 0;
}
