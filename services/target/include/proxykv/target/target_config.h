// TargetConfig: the proxykv-target service's configuration, one key per field (service_config::ConfigSchema):
// flag --max-context-tokens, env PROXYKV_TARGET_MAX_CONTEXT_TOKENS, JSON key max_context_tokens, and so on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxykv/service_config/config_schema.h"
#include "proxykv/target/api_server.h"
#include "proxykv/target/engine_types.h"
#include "proxykv/target/remote_mask_options.h"

namespace proxykv::target {

struct TargetConfig {
  std::string model;       // --model DIR (required)
  std::string model_name;  // default: the directory's name
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (the bound URL is printed as the first stdout line)
  int threads = 8;  // HTTP worker threads
  int torch_threads = 0;
  std::string device = "cpu";
  std::string dtype = "auto";
  int64_t max_context_tokens = 32768;
  int64_t max_new_tokens = 1024;
  int64_t context_cache_bytes = int64_t{1} << 30;
  std::string fallback_method = "snapkv";
  int64_t max_in_flight = 4;
  int64_t max_body_bytes = 8 << 20;
  std::string api_key_file;  // empty: the API is open
  int64_t prefill_chunk = 512;
  int64_t kvzip_chunk = 2048;
  std::string log_level = "info";
  // The proxy path ("proxykv" requests). No proxy endpoints: every proxykv request falls back
  // (reason proxy_unavailable).
  std::vector<std::string> proxy_endpoints;
  std::string proxy_model_id;  // empty: whatever the proxy serves
  std::string mask_endpoint = "tcp://127.0.0.1:0";
  std::string mask_advertise_host;
  int64_t mask_deadline_ms = 5000;
  int64_t mask_submit_timeout_ms = 1000;
  int64_t dns_refresh_ms = 5000;
  std::string curve_secret_key_file;         // CURVE on the mask receiver
  std::string curve_server_public_key_file;  // CURVE on the DEALER to the proxy pool
};

// Declares every key of `config` in `schema` (service "target"), with its validator.
void declare_target_config(service_config::ConfigSchema& schema, TargetConfig& config);

EngineOptions engine_options(const TargetConfig& config);
ApiServerOptions api_server_options(const TargetConfig& config);
RemoteMaskOptions remote_mask_options(const TargetConfig& config);

}  // namespace proxykv::target
